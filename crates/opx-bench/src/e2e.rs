//! The end-to-end run: a generated workload through the whole pipeline over one SQLite
//! file, then replay verification of everything it wrote.
//!
//! What is timed as "ingest + drain" is exactly what the `opx` command does per payload:
//! parse the bytes, ingest each signal (one commit), and drain the work queue (detect,
//! correlate, assess, promote: one commit each). Generating the payloads and the
//! responders' transitions are timed apart and left out of signals/s.

use crate::clock::now;
use crate::generate::{Delivery, Workload, WorkloadConfig};
use crate::group_commit::WriteBehindStore;
use crate::instrumented::{CallStats, Instrumented};
use crate::memory;
use anyhow::Context as _;
use opx_app::pipeline::{IngestOutcome, Pipeline, PipelineConfig, DRAIN_PAGE_SIZE};
use opx_app::ports::{NoPublisher, StoreRead};
use opx_app::replay::{verify, VerifyOptions};
use opx_domain::incident::{CloseAs, IncidentCommand, IncidentState, Principal};
use opx_domain::rules::RuleSet;
use opx_domain::source::parse_payload;
use opx_domain::time::EpochMs;
use opx_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How an end-to-end run is set up.
#[derive(Clone, Debug)]
pub struct E2eOptions {
    /// The workload.
    pub workload: WorkloadConfig,
    /// Payloads ingested between two drains of the work queue (1 = the `opx ingest`
    /// behaviour: drain after every payload, as if alarms arrived in real time).
    pub drain_every: u64,
    /// SQLite durability.
    pub synchronous: Synchronous,
    /// Run the responders: acknowledge, resolve and close each storm's incident after its
    /// recoveries (without them one incident per service would grow forever).
    pub close_incidents: bool,
    /// Run replay verification afterwards.
    pub verify: bool,
    /// Keep the store file here instead of a temporary directory.
    pub keep: Option<PathBuf>,
    /// Group commit (the prototype in [`crate::group_commit`]): write up to this many
    /// steps' commits in one SQLite transaction. `None`: one transaction per commit through
    /// `Pipeline::drain`, as `opx` does today.
    pub group_commit: Option<usize>,
}

/// Replay verification of the store a run wrote.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifyFigures {
    /// Events whose chain and hash were verified.
    pub events: u64,
    /// Streams read.
    pub streams: u64,
    /// Decisions re-derived.
    pub decisions_rederived: u64,
    /// Projections compared.
    pub projections_checked: u64,
    /// Divergences found (0 for a correct store).
    pub divergences_total: u64,
    /// Work items still pending.
    pub pending: u64,
    /// Wall time of the verification.
    pub seconds: f64,
    /// `events / seconds`.
    pub events_per_second: f64,
}

/// What a run did and how fast.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct E2eReport {
    /// Distinct signals generated.
    pub signals: u64,
    /// Services the storms spread over.
    pub services: u32,
    /// Payloads delivered, redeliveries included.
    pub deliveries: u64,
    /// Signals ingested for the first time.
    pub accepted: u64,
    /// Redeliveries recognised as duplicates.
    pub duplicates: u64,
    /// Items refused by the parser or ingested as conflicts (0 for this generator).
    pub refused: u64,
    /// Pipeline steps run by the drains.
    pub steps: u64,
    /// Detections made.
    pub detections: u64,
    /// Incidents opened.
    pub incidents_opened: u64,
    /// Incidents closed by the responders.
    pub incidents_closed: u64,
    /// Human transitions executed.
    pub human_transitions: u64,
    /// Events committed (pipeline and human).
    pub events_written: u64,
    /// Work items left queued after the final drain (0 unless something failed).
    pub left_queued: u64,
    /// Payloads between drains.
    pub drain_every: u64,
    /// Most steps per SQLite transaction under group commit (absent: one per commit).
    pub group_commit: Option<usize>,
    /// SQLite write transactions under group commit.
    pub group_flushes: Option<u64>,
    /// Commits those transactions carried.
    pub group_commits: Option<u64>,
    /// `NORMAL` or `FULL`.
    pub synchronous: String,
    /// Wall time of parse + ingest + drain.
    pub ingest_drain_seconds: f64,
    /// `signals / ingest_drain_seconds`.
    pub signals_per_second: f64,
    /// `ingest_drain_seconds / signals`, in microseconds.
    pub microseconds_per_signal: f64,
    /// Wall time of the responders' transitions.
    pub human_seconds: f64,
    /// Microseconds per human transition.
    pub microseconds_per_human_transition: f64,
    /// The store file after a checkpoint, in bytes.
    pub store_bytes: u64,
    /// Store bytes per distinct signal.
    pub store_bytes_per_signal: f64,
    /// Peak resident memory of the process (VmHWM), in KiB.
    pub peak_rss_kib: Option<u64>,
    /// Resident memory before the run, in KiB.
    pub rss_before_kib: Option<u64>,
    /// Store port calls during ingest + drain + human transitions, by method.
    pub store_calls: BTreeMap<String, CallStats>,
    /// Share of the ingest + drain wall time spent in `commit`, in percent.
    pub commit_share_percent: f64,
    /// Share spent in store reads, in percent.
    pub read_share_percent: f64,
    /// Replay verification, if run.
    pub verify: Option<VerifyFigures>,
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

fn per_second(count: u64, duration: Duration) -> f64 {
    let elapsed = duration.as_secs_f64();
    if elapsed > 0.0 {
        count as f64 / elapsed
    } else {
        0.0
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0)
}

/// The store every run uses: SQLite, with commits written one at a time (baseline) or
/// grouped (the prototype), counted and timed.
type BenchStore = Instrumented<WriteBehindStore>;
type BenchPipeline<'a> = Pipeline<'a, BenchStore, NoPublisher>;

/// Everything the responder does with one storm's incident: acknowledge, resolve, close.
async fn close_incident(
    pipeline: &BenchPipeline<'_>,
    principal: &Principal,
    environment: &str,
    service: &str,
    at_ms: i64,
) -> anyhow::Result<u64> {
    let Some((pointer, _)) = pipeline.open_incident(environment, service).await? else {
        return Ok(0);
    };
    let Some(mut incident) = pipeline.load_incident(&pointer.incident_id).await? else {
        anyhow::bail!(
            "the open-incident pointer names {} which has no events",
            pointer.incident_id
        );
    };
    let mut transitions = 0;
    let steps: [(IncidentState, Option<CloseAs>, &str); 3] = [
        (IncidentState::Acknowledged, None, "looking"),
        (IncidentState::Resolved, None, "rolled back the deploy"),
        (
            IncidentState::Closed,
            Some(CloseAs::Resolved),
            "all alarms recovered",
        ),
    ];
    for (offset, (to, close_as, reason)) in steps.into_iter().enumerate() {
        if !incident.state.is_open() {
            break;
        }
        if incident.state == IncidentState::Resolved && to == IncidentState::Acknowledged {
            continue;
        }
        let command = IncidentCommand::Transition {
            principal: principal.clone(),
            at: EpochMs(at_ms + offset as i64),
            to,
            reason: reason.to_owned(),
            expected_lifecycle_version: incident.lifecycle_version,
            close_as,
            resolution_summary: (to == IncidentState::Resolved)
                .then(|| "bad deploy rolled back".to_owned()),
        };
        incident = pipeline
            .execute_human(&pointer.incident_id, &command)
            .await
            .with_context(|| format!("{to:?} on incident {}", pointer.incident_id))?;
        transitions += 1;
    }
    Ok(transitions)
}

/// What the run counted.
#[derive(Default)]
struct Counts {
    deliveries: u64,
    accepted: u64,
    duplicates: u64,
    refused: u64,
    steps: u64,
    detections: u64,
    incidents_opened: u64,
    incidents_closed: u64,
    human_transitions: u64,
}

/// The run in progress: the pipeline over the store, and what arrived since the last drain.
struct Runner<'a> {
    store: &'a BenchStore,
    pipeline: BenchPipeline<'a>,
    group_commit: Option<usize>,
    counts: Counts,
}

impl Runner<'_> {
    fn count_ingest(&mut self, outcome: IngestOutcome) {
        match outcome {
            IngestOutcome::Accepted { .. } => self.counts.accepted += 1,
            IngestOutcome::Duplicate { .. } => self.counts.duplicates += 1,
            IngestOutcome::Conflict { .. } => self.counts.refused += 1,
        }
    }

    /// Parses one payload and ingests its signals (under group commit they are durable at
    /// the next flush).
    async fn deliver(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.counts.deliveries += 1;
        let parsed = match parse_payload(bytes, &self.pipeline.config().source) {
            Ok(parsed) => parsed,
            Err(_) => {
                self.counts.refused += 1;
                return Ok(());
            }
        };
        for item in parsed.items {
            match item {
                Ok(signal) => {
                    let outcome = self.pipeline.ingest(&signal).await?;
                    self.count_ingest(outcome);
                }
                Err(_) => self.counts.refused += 1,
            }
        }
        Ok(())
    }

    /// Drains the work queue (and, under group commit, makes everything durable).
    async fn drain(&mut self) -> anyhow::Result<()> {
        let Some(steps_per_flush) = self.group_commit else {
            let drained = self.pipeline.drain(u64::MAX).await?;
            self.counts.steps += drained.steps;
            self.counts.detections += drained.detections;
            self.counts.incidents_opened += drained.incidents_opened.len() as u64;
            return Ok(());
        };
        self.drain_grouped(steps_per_flush.max(1)).await
    }

    /// `Pipeline::drain` in rounds: flush, list the stored queue, run up to
    /// `steps_per_flush` items one after the other (their commits are held), repeat until
    /// a round runs nothing. An item that fails is left queued and skipped, as
    /// `Pipeline::drain` does.
    async fn drain_grouped(&mut self, steps_per_flush: usize) -> anyhow::Result<()> {
        let mut failed: BTreeSet<String> = BTreeSet::new();
        loop {
            self.store.inner().flush().await?;
            let mut ran = 0usize;
            let mut cursor: Option<String> = None;
            'round: loop {
                let page = self
                    .store
                    .inner()
                    .inner()
                    .pending_work(cursor.as_deref(), DRAIN_PAGE_SIZE)
                    .await?;
                for item in &page.items {
                    if ran >= steps_per_flush {
                        break 'round;
                    }
                    if failed.contains(&item.key()) {
                        continue;
                    }
                    ran += 1;
                    match self.pipeline.run(item).await {
                        Ok(step) => {
                            self.counts.steps += 1;
                            self.counts.detections += step.detections;
                            self.counts.incidents_opened += step.incidents_opened.len() as u64;
                        }
                        Err(_) => {
                            failed.insert(item.key());
                        }
                    }
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            if ran == 0 {
                return Ok(());
            }
        }
    }

    async fn close(
        &mut self,
        principal: &Principal,
        environment: &str,
        service: &str,
        at_ms: i64,
    ) -> anyhow::Result<()> {
        let transitions =
            close_incident(&self.pipeline, principal, environment, service, at_ms).await?;
        // Under group commit the responder's acts are durable before anything else runs.
        self.store.inner().flush().await?;
        self.counts.human_transitions += transitions;
        if transitions > 0 {
            self.counts.incidents_closed += 1;
        }
        Ok(())
    }
}

/// Work items still queued.
async fn pending_count(store: &SqliteStore) -> anyhow::Result<u64> {
    let mut count = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .pending_work(cursor.as_deref(), DRAIN_PAGE_SIZE)
            .await?;
        count += page.items.len() as u64;
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(count),
        }
    }
}

/// Runs the workload through the pipeline and (optionally) verifies the store.
pub async fn run(options: &E2eOptions) -> anyhow::Result<E2eReport> {
    anyhow::ensure!(options.drain_every >= 1, "--drain-every must be at least 1");
    if let Some(width) = options.group_commit {
        anyhow::ensure!(width >= 1, "--group-commit must be at least 1");
    }
    let scratch = tempfile::tempdir().context("creating a temporary directory for the store")?;
    let path = match &options.keep {
        Some(path) => {
            anyhow::ensure!(
                !path.exists(),
                "--keep {} already exists; pass a new file name",
                path.display()
            );
            path.clone()
        }
        None => scratch.path().join("opx-bench.db"),
    };
    let sqlite = SqliteStore::open(
        &path,
        SqliteOptions {
            synchronous: options.synchronous,
            ..SqliteOptions::default()
        },
    )
    .with_context(|| format!("opening the store {}", path.display()))?;
    let store = Instrumented::new(WriteBehindStore::new(
        sqlite,
        options.group_commit.is_some(),
    ));
    let config = PipelineConfig::with_rule_files(RuleSet::default_rule_files())
        .context("loading the default rules")?;
    let principal = Principal::local("bench-responder").context("the responder's name")?;
    let rss_before_kib = memory::resident_kib();
    let mut runner = Runner {
        store: &store,
        pipeline: Pipeline::new(&store, &NoPublisher, &config),
        group_commit: options.group_commit,
        counts: Counts::default(),
    };

    let mut work = Duration::ZERO;
    let mut human = Duration::ZERO;
    let mut since_drain = 0u64;
    // Generation is the benchmark's own work: outside every timer.
    for delivery in Workload::new(options.workload)? {
        match delivery {
            Delivery::Payload { bytes, .. } => {
                let started = now();
                runner.deliver(&bytes).await?;
                since_drain += 1;
                if since_drain >= options.drain_every {
                    since_drain = 0;
                    runner.drain().await?;
                }
                work += started.elapsed();
            }
            Delivery::CloseIncident {
                environment,
                service,
                at_ms,
            } => {
                if !options.close_incidents {
                    continue;
                }
                // The storm's own work must be done before its incident can be closed.
                let started = now();
                since_drain = 0;
                runner.drain().await?;
                work += started.elapsed();
                let started = now();
                runner
                    .close(&principal, &environment, &service, at_ms)
                    .await?;
                human += started.elapsed();
            }
        }
    }
    let started = now();
    runner.drain().await?;
    work += started.elapsed();
    let counts = runner.counts;
    let left_queued = pending_count(store.inner().inner()).await?;

    let store_calls: BTreeMap<String, CallStats> = store
        .stats()
        .into_iter()
        .map(|(method, stats)| (method.to_owned(), stats))
        .collect();
    let events_written = store.events_committed();
    let total_ns = |methods: &[&str]| -> u64 {
        store_calls
            .iter()
            .filter(|(method, _)| methods.contains(&method.as_str()))
            .map(|(_, stats)| stats.total_ns)
            .sum()
    };
    let work_ns = work.as_nanos().max(1) as f64;
    // Under group commit a commit call only checks and holds; the flushes write. Human
    // transitions also commit and read; their share is small and counted here too.
    let commit_ns = total_ns(&["commit"]) + store.inner().flush_ns();
    let commit_share_percent = 100.0 * commit_ns as f64 / work_ns;
    let read_share_percent = 100.0
        * total_ns(&[
            "read_stream",
            "stream_head",
            "idempotency",
            "projection",
            "pending_work",
        ]) as f64
        / work_ns;
    let group_flushes = options.group_commit.map(|_| store.inner().flushes());
    let store_commits = store.inner().commits_flushed();

    let verify_figures = if options.verify {
        let started = now();
        let verified = verify(store.inner().inner(), &VerifyOptions::default())
            .await
            .context("replay verification could not read the store")?;
        let elapsed = started.elapsed();
        Some(VerifyFigures {
            events: verified.events,
            streams: verified.streams,
            decisions_rederived: verified.decisions_rederived,
            projections_checked: verified.projections_checked,
            divergences_total: verified.divergences_total,
            pending: verified.pending.len() as u64,
            seconds: seconds(elapsed),
            events_per_second: per_second(verified.events, elapsed),
        })
    } else {
        None
    };
    let peak_rss_kib = memory::peak_resident_kib();
    store
        .into_inner()
        .into_inner()
        .close()
        .context("closing (checkpointing) the store")?;
    let store_bytes = file_len(&path) + file_len(&path.with_extension("db-wal"));
    let signals = options.workload.signals;
    Ok(E2eReport {
        signals,
        services: options.workload.services,
        deliveries: counts.deliveries,
        accepted: counts.accepted,
        duplicates: counts.duplicates,
        refused: counts.refused,
        steps: counts.steps,
        detections: counts.detections,
        incidents_opened: counts.incidents_opened,
        incidents_closed: counts.incidents_closed,
        human_transitions: counts.human_transitions,
        events_written,
        left_queued,
        drain_every: options.drain_every,
        group_commit: options.group_commit,
        group_flushes,
        group_commits: options.group_commit.map(|_| store_commits),
        synchronous: match options.synchronous {
            Synchronous::Normal => "NORMAL".to_owned(),
            Synchronous::Full => "FULL".to_owned(),
        },
        ingest_drain_seconds: seconds(work),
        signals_per_second: per_second(signals, work),
        microseconds_per_signal: if signals > 0 {
            work.as_secs_f64() * 1e6 / signals as f64
        } else {
            0.0
        },
        human_seconds: seconds(human),
        microseconds_per_human_transition: if counts.human_transitions > 0 {
            human.as_secs_f64() * 1e6 / counts.human_transitions as f64
        } else {
            0.0
        },
        store_bytes,
        store_bytes_per_signal: if signals > 0 {
            store_bytes as f64 / signals as f64
        } else {
            0.0
        },
        peak_rss_kib,
        rss_before_kib,
        store_calls,
        commit_share_percent,
        read_share_percent,
        verify: verify_figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(signals: u64) -> E2eOptions {
        E2eOptions {
            workload: WorkloadConfig {
                signals,
                services: 8,
                duplicate_permille: 50,
                seed: 1,
            },
            drain_every: 1,
            synchronous: Synchronous::Normal,
            close_incidents: true,
            verify: true,
            keep: None,
            group_commit: None,
        }
    }

    #[tokio::test]
    async fn a_small_run_opens_and_closes_incidents_and_verifies() {
        let report = run(&options(300)).await.expect("the run completes");
        assert_eq!(
            report.accepted, 300,
            "every distinct signal is accepted once"
        );
        assert!(report.duplicates > 0, "redeliveries are duplicates");
        assert_eq!(report.refused, 0, "the generator's payloads are all valid");
        assert_eq!(report.left_queued, 0);
        assert!(report.incidents_opened > 0, "storms open incidents");
        assert!(report.incidents_closed > 0, "responders close them");
        assert!(
            report.incidents_opened < report.detections,
            "a storm is one incident, not one per alarm"
        );
        let verified = report.verify.expect("verification ran");
        assert_eq!(verified.divergences_total, 0, "the store verifies");
        assert_eq!(verified.pending, 0);
        assert_eq!(verified.events, report.events_written);
        assert!(report.store_bytes > 0);
        assert!(report
            .store_calls
            .get("commit")
            .is_some_and(|c| c.calls > 300));
    }

    #[tokio::test]
    async fn batching_the_drains_opens_the_same_incidents() {
        let one = run(&options(300)).await.expect("the run completes");
        let batched = run(&E2eOptions {
            drain_every: 64,
            ..options(300)
        })
        .await
        .expect("the run completes");
        assert_eq!(one.accepted, batched.accepted);
        assert_eq!(one.detections, batched.detections);
        assert_eq!(one.incidents_opened, batched.incidents_opened);
        assert_eq!(batched.verify.map(|v| v.divergences_total), Some(0));
    }

    #[tokio::test]
    async fn group_commit_writes_the_same_incidents_in_fewer_transactions() {
        let baseline = run(&E2eOptions {
            drain_every: 64,
            ..options(400)
        })
        .await
        .expect("the baseline run completes");
        let grouped = run(&E2eOptions {
            drain_every: 64,
            group_commit: Some(256),
            ..options(400)
        })
        .await
        .expect("the grouped run completes");
        assert_eq!(grouped.accepted, baseline.accepted);
        assert_eq!(grouped.duplicates, baseline.duplicates);
        assert_eq!(grouped.detections, baseline.detections);
        assert_eq!(grouped.incidents_opened, baseline.incidents_opened);
        assert_eq!(grouped.incidents_closed, baseline.incidents_closed);
        assert_eq!(grouped.left_queued, 0);
        let verified = grouped.verify.expect("verification ran");
        assert_eq!(verified.divergences_total, 0, "the grouped store verifies");
        let flushes = grouped.group_flushes.expect("grouped");
        let commits = baseline.store_calls["commit"].calls;
        assert!(
            flushes * 4 < commits,
            "{flushes} transactions for {commits} commits is not grouping"
        );
    }
}
