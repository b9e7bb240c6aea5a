//! `opx ingest` and `opx resume`: payloads in, every stage carried through.
//!
//! Each payload goes through [`opx_app::ingest::ingest_payload`] (its source kind
//! detected, each of its signals and refusals recorded), and the work queue is drained
//! right after, as if the payloads arrived one by one in real time: that way a recovery
//! that follows its storm in the input finds the storm's incident.
//! Everything is idempotent, so re-running an interrupted ingest converges to the state
//! of an uninterrupted run.

use crate::publish::CliPublisher;
use crate::reader::{PayloadReader, RawPayload};
use crate::{EXIT_OK, EXIT_REFUSED};
use opx_app::ingest::{ingest_payload, IngestPolicy, ItemOutcome, ItemReport, Payload};
use opx_app::pipeline::{DrainReport, Pipeline, PipelineConfig};
use opx_app::ports::Store;

use opx_domain::incident::IncidentId;
use opx_domain::signal::SourceKind;
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, IsTerminal};

/// How often (in payloads) the progress bar on a terminal is refreshed.
pub const PROGRESS_EVERY_PAYLOADS: u64 = 200;
/// Width of the progress bar, in characters between the brackets.
pub const PROGRESS_BAR_WIDTH: usize = 30;

/// The progress bar drawn on a terminal: `name [=====>    ]  42%  1234 payloads` when the
/// input's size is known (a file), `name  1234 payloads` otherwise (stdin, a pipe).
pub fn progress_bar(
    name: &str,
    bytes_done: u64,
    bytes_total: Option<u64>,
    payloads: u64,
) -> String {
    match bytes_total {
        Some(total) if total > 0 => {
            let done = bytes_done.min(total);
            let percent = done.saturating_mul(100) / total;
            let width = PROGRESS_BAR_WIDTH as u64;
            let filled = usize::try_from(done.saturating_mul(width) / total).unwrap_or(0);
            let mut bar = "=".repeat(filled);
            if filled < PROGRESS_BAR_WIDTH {
                bar.push('>');
            }
            format!("{name} [{bar:<PROGRESS_BAR_WIDTH$}] {percent:>3}%  {payloads} payloads")
        }
        _ => format!("{name}  {payloads} payloads"),
    }
}

/// The size of a named input, when it is a regular file.
#[allow(clippy::disallowed_methods)]
fn input_len(name: &str) -> Option<u64> {
    if name == "-" {
        return None;
    }
    std::fs::metadata(name)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|metadata| metadata.len())
}

/// How many times recording one signal is tried when the store is busy.
pub const INGEST_ATTEMPTS_MAX: u32 = 5;
/// Back-off before retry `n` is `n` times this, in milliseconds.
pub const INGEST_RETRY_BACKOFF_MS: u64 = 200;

/// Every kind of payload; a busy store (another process holding the write lock longer
/// than the busy timeout) is waited for a few times before the command gives up.
pub const CLI_INGEST_POLICY: IngestPolicy = IngestPolicy {
    attempts_max: INGEST_ATTEMPTS_MAX,
    backoff_ms: INGEST_RETRY_BACKOFF_MS,
    ..IngestPolicy::EVERY_KIND
};

/// Most incident ids the human summary lists per kind (`--json` lists them all).
pub const IDS_LISTED_MAX: usize = 20;

/// What one payload did.
#[derive(Debug)]
pub struct PayloadReport {
    /// `FILE:INDEX`.
    pub origin: String,
    /// The kind detected, when the payload was recognised.
    pub source: Option<SourceKind>,
    /// One report per item (one, at index 0, for a payload refused whole).
    pub items: Vec<ItemReport>,
    /// What draining the work queue after this payload did.
    pub drain: DrainReport,
}

/// The totals an ingest reports (`--json` prints exactly this object).
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestSummary {
    /// Payloads read.
    pub payloads: u64,
    /// Signals recorded for the first time.
    pub accepted: u64,
    /// Signals already recorded with the same content.
    pub duplicates: u64,
    /// Signals already recorded with different content (refused).
    pub conflicts: u64,
    /// Payloads or payload items refused by the parser.
    pub rejected: u64,
    /// Detections the rules made.
    pub detections: u64,
    /// Incidents opened.
    pub incidents_created: u64,
    /// Incidents (not opened by this run) that gained evidence or a recovery.
    pub incidents_updated: u64,
    /// Work items left queued after transient failures (`opx resume` carries them on).
    pub left_queued: u64,
    /// The incidents opened, by id.
    pub created_ids: Vec<String>,
    /// The incidents updated, by id.
    pub updated_ids: Vec<String>,
}

/// Ingests payloads through a pipeline and keeps the totals.
pub struct Ingestor<'a, S: Store> {
    pipeline: Pipeline<'a, S, CliPublisher>,
    /// Print `rejected FILE:INDEX: ...` lines on stderr.
    pub print_rejects: bool,
    summary: IngestSummary,
    created: BTreeSet<IncidentId>,
    updated: BTreeSet<IncidentId>,
}

impl<'a, S: Store> Ingestor<'a, S> {
    /// An ingestor over `store` deciding with `config`, announcing commits on `publisher`.
    pub fn new(store: &'a S, publisher: &'a CliPublisher, config: &'a PipelineConfig) -> Self {
        Ingestor {
            pipeline: Pipeline::new(store, publisher, config),
            print_rejects: true,
            summary: IngestSummary::default(),
            created: BTreeSet::new(),
            updated: BTreeSet::new(),
        }
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline<'a, S, CliPublisher> {
        &self.pipeline
    }

    /// Ingests one raw payload read from `file`, then drains the work queue. Fails when
    /// a signal or a reject could not be recorded (after [`INGEST_ATTEMPTS_MAX`] attempts
    /// at a busy store), once every item of the payload was handled.
    pub async fn payload(&mut self, file: &str, raw: &RawPayload) -> anyhow::Result<PayloadReport> {
        self.summary.payloads += 1;
        let origin = format!("{file}:{}", raw.index);
        let payload = Payload {
            origin: &origin,
            bytes: &raw.bytes,
            len: raw.len,
        };
        let ingested = ingest_payload(&self.pipeline, &CLI_INGEST_POLICY, payload).await;
        let mut failure: Option<anyhow::Error> = None;
        for item in &ingested.items {
            match &item.outcome {
                ItemOutcome::Accepted(_) => self.summary.accepted += 1,
                ItemOutcome::Duplicate(_) => self.summary.duplicates += 1,
                ItemOutcome::Conflict {
                    signal,
                    recorded,
                    offered,
                } => {
                    self.summary.conflicts += 1;
                    if self.print_rejects {
                        eprintln!(
                            "conflict {origin}: signal {} is already recorded with other content \
                             (fingerprint {recorded}, this delivery {offered}); the first record stands",
                            signal.id
                        );
                    }
                }
                ItemOutcome::Refused(rejection) => {
                    self.summary.rejected += 1;
                    if self.print_rejects {
                        eprintln!("rejected {origin}: {rejection}");
                    }
                }
                ItemOutcome::Failed { signal, error } => {
                    failure.get_or_insert_with(|| {
                        anyhow::anyhow!("{origin}: signal {} not recorded: {error}", signal.id)
                    });
                }
            }
            if let Some(error) = &item.reject_error {
                failure.get_or_insert_with(|| {
                    anyhow::anyhow!(
                        "{origin}: item {} refused, but its reject was not recorded: {error}",
                        item.index
                    )
                });
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        let drain = self.drain().await?;
        Ok(PayloadReport {
            origin,
            source: ingested.source,
            items: ingested.items,
            drain,
        })
    }

    /// Drains the work queue and adds what it did to the totals.
    pub async fn drain(&mut self) -> anyhow::Result<DrainReport> {
        let report = match self.pipeline.drain(u64::MAX).await {
            Ok(report) => report,
            Err(error) if error.is_transient() => {
                // The work stays queued; the next drain (or `opx resume`) carries it on.
                tracing::warn!(%error, "draining the work queue failed; will retry");
                self.summary.left_queued = self.summary.left_queued.max(1);
                return Ok(DrainReport::default());
            }
            Err(error) => return Err(error.into()),
        };
        self.summary.detections += report.detections;
        self.summary.left_queued = report.left_queued.len() as u64;
        self.created.extend(report.incidents_opened.iter().copied());
        self.updated
            .extend(report.incidents_updated.iter().copied());
        Ok(report)
    }

    /// The totals so far.
    pub fn summary(&self) -> IngestSummary {
        let mut summary = self.summary.clone();
        let updated: Vec<&IncidentId> = self
            .updated
            .iter()
            .filter(|id| !self.created.contains(id))
            .collect();
        summary.incidents_created = self.created.len() as u64;
        summary.incidents_updated = updated.len() as u64;
        summary.created_ids = self.created.iter().map(ToString::to_string).collect();
        summary.updated_ids = updated.iter().map(ToString::to_string).collect();
        summary
    }
}

/// Opens an input: a file, or stdin for `-`.
// Reading the named inputs is this command's job; the workspace lint against file access
// exists for the pure domain crate.
#[allow(clippy::disallowed_methods)]
fn open_input(name: &str) -> anyhow::Result<Box<dyn BufRead>> {
    if name == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin().lock())));
    }
    let file = std::fs::File::open(name)
        .map_err(|error| anyhow::anyhow!("cannot open {name}: {error}"))?;
    Ok(Box::new(BufReader::with_capacity(64 * 1024, file)))
}

/// `opx ingest FILE...`: returns the exit code (0 nothing refused, 1 something refused).
pub async fn run<S: Store>(
    store: &S,
    publisher: &CliPublisher,
    config: &PipelineConfig,
    files: &[String],
    json: bool,
) -> anyhow::Result<u8> {
    let stdin = ["-".to_owned()];
    let inputs: &[String] = if files.is_empty() { &stdin } else { files };
    let mut ingestor = Ingestor::new(store, publisher, config);
    let progress = std::io::stderr().is_terminal();
    for name in inputs {
        let mut reader = PayloadReader::new(open_input(name)?);
        let bytes_total = input_len(name);
        // Payload bytes only (separators are not counted): the bar under-reads slightly.
        let mut bytes_done: u64 = 0;
        while let Some(raw) = reader
            .next_payload()
            .map_err(|error| anyhow::anyhow!("reading {name}: {error}"))?
        {
            ingestor.payload(name, &raw).await?;
            bytes_done = bytes_done.saturating_add(raw.len as u64);
            if progress && raw.index % PROGRESS_EVERY_PAYLOADS == 0 {
                eprint!(
                    "\r\x1b[2K{}",
                    progress_bar(name, bytes_done, bytes_total, raw.index)
                );
            }
        }
        if progress {
            eprint!("\r\x1b[2K");
        }
    }
    // Whatever a transient failure left queued gets one more chance.
    if ingestor.summary.left_queued > 0 {
        ingestor.drain().await?;
    }
    let summary = ingestor.summary();
    print_summary(&summary, json)?;
    Ok(if summary.rejected > 0 || summary.conflicts > 0 {
        EXIT_REFUSED
    } else {
        EXIT_OK
    })
}

/// `opx resume`: carries pending work through.
pub async fn resume<S: Store>(
    store: &S,
    publisher: &CliPublisher,
    config: &PipelineConfig,
    json: bool,
) -> anyhow::Result<u8> {
    let mut ingestor = Ingestor::new(store, publisher, config);
    let report = ingestor.drain().await?;
    let summary = ingestor.summary();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "steps": report.steps,
                "detections": summary.detections,
                "incidents_created": summary.incidents_created,
                "incidents_updated": summary.incidents_updated,
                "left_queued": report.left_queued.len(),
                "created_ids": summary.created_ids,
                "updated_ids": summary.updated_ids,
            })
        );
    } else {
        println!(
            "resumed: {} steps, {} detections, {} incidents created, {} updated, {} left queued",
            report.steps,
            summary.detections,
            summary.incidents_created,
            summary.incidents_updated,
            report.left_queued.len()
        );
        for item in &report.left_queued {
            eprintln!("left queued: {item}");
        }
    }
    Ok(EXIT_OK)
}

fn print_summary(summary: &IngestSummary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
        return Ok(());
    }
    println!(
        "{} payloads: {} accepted, {} duplicates, {} conflicts, {} rejected; {} detections; \
         {} incidents created, {} updated",
        summary.payloads,
        summary.accepted,
        summary.duplicates,
        summary.conflicts,
        summary.rejected,
        summary.detections,
        summary.incidents_created,
        summary.incidents_updated
    );
    for (label, ids) in [
        ("created", &summary.created_ids),
        ("updated", &summary.updated_ids),
    ] {
        for id in ids.iter().take(IDS_LISTED_MAX) {
            println!("  {label} {id}");
        }
        if ids.len() > IDS_LISTED_MAX {
            println!(
                "  … and {} more {label} (see `opx incidents`)",
                ids.len() - IDS_LISTED_MAX
            );
        }
    }
    if summary.left_queued > 0 {
        println!(
            "  {} work items left queued; run `opx resume`",
            summary.left_queued
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_fills_with_the_bytes_read() {
        let empty = progress_bar("a.ndjson", 0, Some(1000), 0);
        assert_eq!(
            empty,
            format!(
                "a.ndjson [>{}]   0%  0 payloads",
                " ".repeat(PROGRESS_BAR_WIDTH - 1)
            )
        );
        let half = progress_bar("a.ndjson", 500, Some(1000), 7);
        assert!(half.contains(&"=".repeat(PROGRESS_BAR_WIDTH / 2)), "{half}");
        assert!(half.ends_with(" 50%  7 payloads"), "{half}");
        let full = progress_bar("a.ndjson", 2000, Some(1000), 9);
        assert_eq!(
            full,
            format!(
                "a.ndjson [{}] 100%  9 payloads",
                "=".repeat(PROGRESS_BAR_WIDTH)
            )
        );
    }

    #[test]
    fn without_a_size_the_bar_is_a_count() {
        assert_eq!(progress_bar("-", 10, None, 3), "-  3 payloads");
        assert_eq!(progress_bar("-", 10, Some(0), 3), "-  3 payloads");
    }
}
