//! What-if backtesting: what would a proposed rule set or confidence model have done to the
//! incidents of the recorded signals?
//!
//! [`what_if`] reads the authoritative store (only reads: it takes a [`StoreRead`]) and runs
//! the same recorded history twice, each time through the real pipeline into its own empty
//! scratch store: once with the **baseline** configuration, once with the **proposed**
//! one. It then compares the incidents of the two runs and reports every difference with
//! its reason, taken from the decisions recorded in the scratch runs.
//!
//! # What is replayed
//!
//! - Every accepted signal (`SignalAccepted` of each `signal:` stream) whose event time is
//!   in `since <= t < until` (either bound optional), in event-time order (ties by signal
//!   id), each carried through every stage before the next, as if it arrived in real time.
//! - Every recorded close of an incident (`IncidentTransitioned` to CLOSED), at its recorded
//!   time, as the close of whatever incident of that environment and service is open in
//!   the scratch run at that moment (a close at the same millisecond as a signal comes after
//!   it). Without the closes, every outage after a service's first would attach to an
//!   incident nobody ever closed, and a backtest over a month would report one incident per
//!   service. The scratch close is a false-positive close unless the scratch incident is
//!   RESOLVED (then it closes as recorded): only that the incident ends matters here.
//!   Other human acts (acknowledge, notes, assignee, severity) are not replayed: they do not
//!   change which incidents exist, and severities are compared as the rules set them.
//!
//! # The baseline
//!
//! The rule set and model recorded in the store (content-addressed `ruleset:<hash>` and
//! `model:<hash>` streams), not whatever happens to be installed, so the comparison is
//! against what actually ran:
//! - the rule set named by the **latest evaluation**: the `SignalEvaluated` of the signal
//!   with the latest event time (ties: the greatest signal id). That is the rule set in
//!   force now; older ones are history the proposal does not compete with;
//! - the model named by the latest assessment (`ConfidenceAssessed` with the latest window
//!   start; ties: the greatest group stream id, then sequence). When the store holds one
//!   model, it is that one without reading the groups. When it holds none (nothing was
//!   ever assessed), the built-in model v1, which is what every opx build assesses with
//!   unless configured otherwise; the report says so;
//! - the correlation window of the latest `DetectionCorrelated` (the default if none).
//!
//! A store with no recorded rule set (no signal was ever evaluated) has no baseline: the
//! run is refused. The proposed configuration is the baseline with the given rule files
//! and/or model replaced.
//!
//! # The comparison
//!
//! Incidents are matched by id, which is derived from environment, service, evidence
//! group (the window) and generation — not from the rule set — so "the same incident" means
//! the same outage window of the same service in both runs. An incident only in the
//! proposed run **would be created**; one only in the baseline run is **no longer
//! created**; one in both with another severity **changes severity**. Each change carries
//! the decision of each run for that evidence group (outcome, reason code, score against
//! threshold, factor breakdown, the rules of the bundle) — in the run that opened the
//! incident the PROMOTE that opened it, in the other the decision on the same trigger
//! signal (else the latest before it), so the two are taken at the same point of the
//! replay — the factors whose value or weight differ between them, and the signals of the
//! incident whose evaluation differs (which rule matched, or why none did).
//!
//! # Limits of the simulation
//!
//! Signals replay in event-time order, as if each arrived when it happened: the store does
//! not record arrival order. A signal that arrived late (after a close, say) replays
//! before that close, so the baseline run can differ from what was recorded; both runs are
//! replayed the same way, so the comparison between them stays fair.

use crate::pipeline::{
    Pipeline, PipelineConfig, PipelineError, GROUP_EVENTS_READ_MAX, PROJECTION_INCIDENT,
};
use crate::ports::{NoPublisher, Store, StoreError, StoreRead};
use opx_domain::confidence::{Band, ConfidenceModel, Factor, FactorScore};
use opx_domain::correlation::{GroupId, WindowMs};
use opx_domain::detection::{DetectionId, DetectionOutcome, NotDetectedReason};
use opx_domain::hash::Digest;
use opx_domain::incident::{
    CloseAs, Incident, IncidentCommand, IncidentEvent, IncidentId, IncidentState, Principal,
};
use opx_domain::promotion::{Outcome, ReasonCode};
use opx_domain::record::{
    group_stream, model_stream, ruleset_stream, signal_stream, ConfidenceAssessed, PipelineEvent,
    RecordedFile, StreamKind,
};
use opx_domain::rules::{RuleFile, RuleSet};
use opx_domain::signal::{Severity, Signal, SignalId};
use opx_domain::source::SourceConfig;
use opx_domain::time::EpochMs;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most signals one what-if run replays; narrow `since`/`until` beyond it.
pub const WHATIF_SIGNALS_MAX: usize = 1_000_000;
/// Most recorded closes one what-if run replays.
pub const WHATIF_CLOSES_MAX: usize = 100_000;
/// Most incidents one scratch run may produce.
pub const WHATIF_INCIDENTS_MAX: usize = 100_000;
/// Most signals with a differing evaluation listed per change (all are counted).
pub const SIGNAL_CHANGES_PER_INCIDENT_MAX: usize = 20;
/// Most pipeline steps one replayed signal may cause in a scratch run (a signal causes a
/// handful: detect, correlate, assess, promote of up to two windows).
pub const STEPS_PER_SIGNAL_MAX: u64 = 10_000;
/// Page size for listing streams and projections.
pub const LIST_PAGE_SIZE: usize = 500;
/// The principal a replayed close is recorded under in a scratch store.
pub const REPLAY_PRINCIPAL: &str = "what-if";

/// Why a what-if run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum WhatIfError {
    /// Reading the recorded store or writing a scratch store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A scratch run failed.
    #[error("the scratch run failed: {0}")]
    Pipeline(#[from] PipelineError),
    /// The recorded store holds no baseline to compare with.
    #[error("no baseline: {0}")]
    NoBaseline(String),
    /// A scratch store passed in is not empty (or is the authoritative store).
    #[error("the {0} scratch store is not empty; pass a new, empty store (what-if never writes the recorded store)")]
    ScratchNotEmpty(&'static str),
    /// More input than the named limit allows.
    #[error("{what}: more than {limit}; narrow --since/--until")]
    TooMuch {
        /// What overflowed.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The proposed configuration is invalid.
    #[error("the proposed configuration is invalid: {0}")]
    Config(String),
    /// The recorded store is damaged where the run needs it; run `opx replay verify`.
    #[error("the recorded store is damaged: {0}; run `opx replay verify`")]
    Corrupt(String),
    /// A scratch run left work it could not do.
    #[error(
        "the {side} scratch run could not carry signal {signal} through every stage: {detail}"
    )]
    Stuck {
        /// `baseline` or `proposed`.
        side: &'static str,
        /// The signal being replayed.
        signal: SignalId,
        /// The steps left queued and why.
        detail: String,
    },
}

/// What to compare the recorded baseline with, and which signals to replay.
#[derive(Clone, Debug, Default)]
pub struct WhatIfRequest {
    /// The proposed rule files (e.g. of `--rules DIR`); `None` keeps the baseline's.
    pub rule_files: Option<Vec<RuleFile>>,
    /// The proposed confidence model (e.g. of `--model FILE`); `None` keeps the baseline's.
    pub model: Option<ConfidenceModel>,
    /// Replay signals with event time at or after this; `None`: from the first.
    pub since: Option<EpochMs>,
    /// Replay signals with event time before this; `None`: to the last.
    pub until: Option<EpochMs>,
}

/// One side's configuration, as the report names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigurationSummary {
    /// The rule-set hash.
    pub ruleset_hash: Digest,
    /// The rule files' paths.
    pub rule_files: Vec<String>,
    /// The model hash.
    pub model_hash: Digest,
    /// The model version.
    pub model_version: String,
    /// The promote threshold of the model.
    pub promote_threshold_bps: u32,
    /// The correlation window.
    pub window_ms: i64,
}

/// How a decision of one run read, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionSummary {
    /// PROMOTE, ATTACH or REJECT.
    pub outcome: Outcome,
    /// The gate rule that decided.
    pub reason: ReasonCode,
    /// The incident it opened or attached to.
    pub incident_id: Option<IncidentId>,
    /// The confidence score.
    pub score_bps: u32,
    /// The threshold it was held to.
    pub promote_threshold_bps: u32,
    /// The band of the score.
    pub band: Band,
    /// The per-factor breakdown.
    pub factors: Vec<FactorScore>,
    /// The rules of the bundle's detections (`id@version`), sorted.
    pub rules: Vec<String>,
    /// Those of them that promote alone.
    pub rules_promoting_alone: Vec<String>,
    /// How many detections the bundle held.
    pub members: u64,
}

/// One factor that differs between the two runs' decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorChange {
    /// The factor.
    pub factor: Factor,
    /// Its value in the baseline decision.
    pub baseline_value_bps: u32,
    /// Its value in the proposed decision.
    pub proposed_value_bps: u32,
    /// Its weight in the baseline model.
    pub baseline_weight_bps: u32,
    /// Its weight in the proposed model.
    pub proposed_weight_bps: u32,
}

/// How one run evaluated one signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// `detected`, `no_rule_matched`, `silenced`, `recovery`, `insufficient_data`, or
    /// `not_evaluated`.
    pub outcome: String,
    /// The matching rule, `id@version`.
    pub rule: Option<String>,
    /// The detection's severity.
    pub severity: Option<Severity>,
    /// The silence that matched.
    pub silence_id: Option<String>,
}

impl std::fmt::Display for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.rule, self.severity, &self.silence_id) {
            (Some(rule), Some(severity), _) => write!(f, "rule {rule} at {severity}"),
            (_, _, Some(silence)) => write!(f, "silenced by {silence}"),
            _ => f.write_str(&self.outcome.replace('_', " ")),
        }
    }
}

/// A signal of a changed incident that the two runs evaluated differently.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalChange {
    /// The signal.
    pub signal_id: SignalId,
    /// Its alarm name.
    pub alarm_name: String,
    /// Its event time.
    pub event_time: EpochMs,
    /// The baseline run's evaluation.
    pub baseline: Evaluation,
    /// The proposed run's evaluation.
    pub proposed: Evaluation,
}

/// What kind of difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Only the proposed run opens this incident.
    WouldBeCreated,
    /// Only the baseline run opens this incident.
    NoLongerCreated,
    /// Both open it, with different severities.
    SeverityChanged,
}

impl ChangeKind {
    /// The canonical text, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::WouldBeCreated => "would_be_created",
            ChangeKind::NoLongerCreated => "no_longer_created",
            ChangeKind::SeverityChanged => "severity_changed",
        }
    }
}

/// One incident that differs between the runs, with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentChange {
    /// What differs.
    pub kind: ChangeKind,
    /// The incident (the same id in both runs when it exists in both).
    pub incident_id: IncidentId,
    /// Its environment.
    pub environment: String,
    /// Its service.
    pub service: String,
    /// Its evidence group.
    pub group_id: GroupId,
    /// Its generation.
    pub generation: u32,
    /// When its evidence began.
    pub opened_at: EpochMs,
    /// Its severity in the baseline run, if it exists there.
    pub baseline_severity: Option<Severity>,
    /// Its severity in the proposed run, if it exists there.
    pub proposed_severity: Option<Severity>,
    /// Its evidence count in the baseline run.
    pub baseline_evidence: Option<u64>,
    /// Its evidence count in the proposed run.
    pub proposed_evidence: Option<u64>,
    /// The baseline run's decision for this group: the PROMOTE that opened the incident;
    /// in a run without the incident, the decision taken at the same point of the replay
    /// (on the same trigger signal, else the latest before it); `None` when the group had
    /// no assessment (nothing of this window was detected).
    pub baseline_decision: Option<DecisionSummary>,
    /// The proposed run's decision for this group, likewise.
    pub proposed_decision: Option<DecisionSummary>,
    /// Factors whose value or weight differ between the two decisions.
    pub factor_changes: Vec<FactorChange>,
    /// Signals of the incident evaluated differently (at most
    /// [`SIGNAL_CHANGES_PER_INCIDENT_MAX`]).
    pub signal_changes: Vec<SignalChange>,
    /// How many signals of the incident were evaluated differently.
    pub signal_changes_total: u64,
    /// One sentence for people: what changed and why.
    pub reason: String,
}

/// What [`what_if`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatIfReport {
    /// The baseline configuration.
    pub baseline: ConfigurationSummary,
    /// Why this baseline (which recorded rule set and model, and how it was chosen).
    pub baseline_choice: String,
    /// The proposed configuration.
    pub proposed: ConfigurationSummary,
    /// The replayed range's start, if bounded.
    pub since: Option<EpochMs>,
    /// The replayed range's end (exclusive), if bounded.
    pub until: Option<EpochMs>,
    /// Signals replayed.
    pub signals: u64,
    /// Recorded closes replayed.
    pub closes: u64,
    /// Incidents of the baseline run.
    pub baseline_incidents: u64,
    /// Incidents of the proposed run.
    pub proposed_incidents: u64,
    /// The differences, by time the evidence began (then incident id).
    pub changes: Vec<IncidentChange>,
}

impl WhatIfReport {
    /// Whether the proposal changes any incident.
    pub fn has_difference(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// The configuration of one run.
#[derive(Clone, Debug)]
struct Configuration {
    rule_files: Vec<RecordedFile>,
    model: ConfidenceModel,
    window_ms: WindowMs,
}

impl Configuration {
    fn pipeline_config(&self) -> Result<PipelineConfig, WhatIfError> {
        PipelineConfig::from_recorded(
            SourceConfig::default(),
            self.rule_files.clone(),
            self.model.clone(),
            self.window_ms,
        )
        .map_err(|error| WhatIfError::Config(error.to_string()))
    }

    fn summary(&self, config: &PipelineConfig) -> ConfigurationSummary {
        ConfigurationSummary {
            ruleset_hash: config.rules.hash(),
            rule_files: self
                .rule_files
                .iter()
                .map(|file| file.path.clone())
                .collect(),
            model_hash: self.model.hash(),
            model_version: self.model.version().to_owned(),
            promote_threshold_bps: self.model.promote_threshold_bps(),
            window_ms: self.window_ms.get(),
        }
    }
}

/// A recorded close of an incident.
#[derive(Clone, Debug)]
struct RecordedClose {
    at: EpochMs,
    incident_id: IncidentId,
    environment: String,
    service: String,
    close_as: Option<CloseAs>,
}

/// One replayed item.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// A signal.
    Signal(SignalId),
    /// A close: index into the closes.
    Close(usize),
}

/// The "latest" of something: kept by the greatest ordering key.
struct Latest<K: Ord, V> {
    best: Option<(K, V)>,
}

impl<K: Ord, V> Latest<K, V> {
    fn new() -> Self {
        Latest { best: None }
    }

    fn offer(&mut self, key: K, value: V) {
        if self.best.as_ref().is_none_or(|(best, _)| key > *best) {
            self.best = Some((key, value));
        }
    }

    fn take(self) -> Option<V> {
        self.best.map(|(_, value)| value)
    }
}

/// What the recorded store holds that a run needs.
struct Recording {
    /// `(event time, signal id)` of the signals to replay, sorted.
    signals: Vec<(EpochMs, SignalId)>,
    closes: Vec<RecordedClose>,
    baseline: Configuration,
    baseline_choice: String,
}

/// Runs the recorded signals through the recorded (baseline) configuration and the proposed
/// one, each into its own empty scratch store, and reports how the incidents differ; see
/// the module documentation. `recorded` is only read. Fails if a scratch store is not
/// empty.
pub async fn what_if<R: StoreRead, B: Store, P: Store>(
    recorded: &R,
    request: &WhatIfRequest,
    baseline_scratch: &B,
    proposed_scratch: &P,
) -> Result<WhatIfReport, WhatIfError> {
    ensure_empty(baseline_scratch, "baseline").await?;
    ensure_empty(proposed_scratch, "proposed").await?;
    let recording = read_recording(recorded, request).await?;
    let mut proposed = recording.baseline.clone();
    if let Some(files) = &request.rule_files {
        let mut files: Vec<RecordedFile> = files
            .iter()
            .map(|file| RecordedFile {
                path: file.path.clone(),
                text: file.text.clone(),
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        proposed.rule_files = files;
    }
    if let Some(model) = &request.model {
        proposed.model = model.clone();
    }
    let baseline_config = recording.baseline.pipeline_config()?;
    let proposed_config = proposed.pipeline_config()?;

    let steps = replay_order(&recording);
    let baseline_run = Run {
        side: "baseline",
        pipeline: Pipeline::new(baseline_scratch, &NoPublisher, &baseline_config),
        store: baseline_scratch,
    };
    let proposed_run = Run {
        side: "proposed",
        pipeline: Pipeline::new(proposed_scratch, &NoPublisher, &proposed_config),
        store: proposed_scratch,
    };
    baseline_run.replay(recorded, &recording, &steps).await?;
    proposed_run.replay(recorded, &recording, &steps).await?;

    let baseline_incidents = baseline_run.incidents().await?;
    let proposed_incidents = proposed_run.incidents().await?;
    let mut changes = Vec::new();
    let ids: BTreeSet<IncidentId> = baseline_incidents
        .keys()
        .chain(proposed_incidents.keys())
        .copied()
        .collect();
    for id in ids {
        let before = baseline_incidents.get(&id);
        let after = proposed_incidents.get(&id);
        let kind = match (before, after) {
            (None, Some(_)) => ChangeKind::WouldBeCreated,
            (Some(_), None) => ChangeKind::NoLongerCreated,
            (Some(before), Some(after)) if before.severity != after.severity => {
                ChangeKind::SeverityChanged
            }
            _ => continue,
        };
        changes.push(explain(kind, &id, before, after, &baseline_run, &proposed_run).await?);
    }
    changes.sort_by_key(|change| (change.opened_at, change.incident_id));
    Ok(WhatIfReport {
        baseline: recording.baseline.summary(&baseline_config),
        baseline_choice: recording.baseline_choice.clone(),
        proposed: proposed.summary(&proposed_config),
        since: request.since,
        until: request.until,
        signals: recording.signals.len() as u64,
        closes: recording.closes.len() as u64,
        baseline_incidents: baseline_incidents.len() as u64,
        proposed_incidents: proposed_incidents.len() as u64,
        changes,
    })
}

async fn ensure_empty<S: StoreRead>(store: &S, side: &'static str) -> Result<(), WhatIfError> {
    let streams = store.list_streams(None, 1).await?;
    let work = store.pending_work(None, 1).await?;
    let incidents = store.list_projections(PROJECTION_INCIDENT, None, 1).await?;
    if streams.items.is_empty() && work.items.is_empty() && incidents.items.is_empty() {
        Ok(())
    } else {
        Err(WhatIfError::ScratchNotEmpty(side))
    }
}

fn decode(event: &opx_domain::event::EventEnvelope) -> Result<PipelineEvent, WhatIfError> {
    PipelineEvent::from_payload(&event.event_type, event.schema_version, &event.payload).map_err(
        |error| WhatIfError::Corrupt(format!("{}#{}: {error}", event.stream_id, event.sequence)),
    )
}

/// Every event of a stream, page by page, up to `events_max`.
async fn read_stream_all<S: StoreRead>(
    store: &S,
    stream_id: &str,
    events_max: usize,
) -> Result<Vec<opx_domain::event::EventEnvelope>, WhatIfError> {
    crate::pipeline::read_all(store, stream_id, events_max)
        .await
        .map_err(|error| match error {
            PipelineError::Store(error) => WhatIfError::Store(error),
            other => WhatIfError::Corrupt(other.to_string()),
        })
}

/// Reads what the runs need from the recorded store: the signals in range, the closes,
/// and the baseline configuration.
async fn read_recording<R: StoreRead>(
    store: &R,
    request: &WhatIfRequest,
) -> Result<Recording, WhatIfError> {
    let mut signals = Vec::new();
    let mut closes = Vec::new();
    let mut rulesets = BTreeSet::new();
    let mut models = BTreeSet::new();
    let mut groups = Vec::new();
    let mut latest_evaluation: Latest<(EpochMs, SignalId), Digest> = Latest::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_streams(cursor.as_deref(), LIST_PAGE_SIZE)
            .await?;
        for stream_id in &page.items {
            let Some(kind) = StreamKind::of(stream_id) else {
                continue;
            };
            let hash = stream_id
                .split_once(':')
                .and_then(|(_, hex)| Digest::from_hex(hex));
            match kind {
                StreamKind::Signal => {
                    let events = store.read_stream(stream_id, 1, 2).await?;
                    let Some(first) = events.first() else {
                        continue;
                    };
                    let PipelineEvent::SignalAccepted(accepted) = decode(first)? else {
                        return Err(WhatIfError::Corrupt(format!(
                            "{stream_id}#1 is not SignalAccepted"
                        )));
                    };
                    let signal = accepted.signal;
                    if let Some(second) = events.get(1) {
                        if let PipelineEvent::SignalEvaluated(evaluated) = decode(second)? {
                            latest_evaluation
                                .offer((signal.event_time, signal.id), evaluated.ruleset_hash);
                        }
                    }
                    let in_range = request.since.is_none_or(|since| signal.event_time >= since)
                        && request.until.is_none_or(|until| signal.event_time < until);
                    if in_range {
                        if signals.len() >= WHATIF_SIGNALS_MAX {
                            return Err(WhatIfError::TooMuch {
                                what: "signals in range",
                                limit: WHATIF_SIGNALS_MAX,
                            });
                        }
                        signals.push((signal.event_time, signal.id));
                    }
                }
                StreamKind::RuleSet => rulesets.extend(hash),
                StreamKind::Model => models.extend(hash),
                StreamKind::Group => groups.push(stream_id.clone()),
                StreamKind::Incident => read_closes(store, stream_id, &mut closes).await?,
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    signals.sort();

    // The rule set of the latest evaluation.
    let Some(ruleset_hash) = latest_evaluation.take() else {
        return Err(WhatIfError::NoBaseline(
            "no signal in the store was ever evaluated, so no rule set is recorded; \
             run `opx resume` (or ingest signals) first"
                .to_owned(),
        ));
    };
    let rule_files = load_ruleset(store, &ruleset_hash).await?;

    // The window of the latest correlation and, if several models are recorded, the
    // model of the latest assessment.
    let mut latest_window: Latest<(EpochMs, String), i64> = Latest::new();
    let mut latest_model: Latest<(EpochMs, String, u64), Digest> = Latest::new();
    for stream_id in &groups {
        if models.len() > 1 {
            let events = read_stream_all(store, stream_id, GROUP_EVENTS_READ_MAX).await?;
            for event in &events {
                match decode(event)? {
                    PipelineEvent::DetectionCorrelated(correlated) => latest_window.offer(
                        (correlated.window_start, stream_id.clone()),
                        correlated.window_ms,
                    ),
                    PipelineEvent::ConfidenceAssessed(assessed) => latest_model.offer(
                        (assessed.window_start, stream_id.clone(), event.sequence),
                        assessed.model_hash,
                    ),
                    _ => {}
                }
            }
        } else if let Some(first) = store.read_stream(stream_id, 1, 1).await?.first() {
            if let PipelineEvent::DetectionCorrelated(correlated) = decode(first)? {
                latest_window.offer(
                    (correlated.window_start, stream_id.clone()),
                    correlated.window_ms,
                );
            }
        }
    }
    let window_ms = match latest_window.take() {
        Some(window_ms) => WindowMs::new(window_ms)
            .map_err(|error| WhatIfError::Corrupt(format!("recorded window: {error}")))?,
        None => WindowMs::DEFAULT,
    };
    let (model, model_choice) = match models.len() {
        0 => (
            ConfidenceModel::v1(),
            "no confidence model is recorded (nothing was ever assessed), so the built-in model v1"
                .to_owned(),
        ),
        count => {
            let hash = if count == 1 {
                models.first().copied()
            } else {
                latest_model.take()
            };
            let Some(hash) = hash else {
                return Err(WhatIfError::NoBaseline(format!(
                    "{count} confidence models are recorded but no assessment names one"
                )));
            };
            let choice = if count == 1 {
                format!("model {hash}, the only one recorded")
            } else {
                format!("model {hash}, named by the latest assessment (of {count} recorded)")
            };
            (load_model(store, &hash).await?, choice)
        }
    };
    let ruleset_choice = if rulesets.len() == 1 {
        format!("rule set {ruleset_hash}, the only one recorded")
    } else {
        format!(
            "rule set {ruleset_hash}, named by the latest evaluation (of {} recorded)",
            rulesets.len()
        )
    };
    if closes.len() > WHATIF_CLOSES_MAX {
        return Err(WhatIfError::TooMuch {
            what: "recorded closes",
            limit: WHATIF_CLOSES_MAX,
        });
    }
    Ok(Recording {
        signals,
        closes,
        baseline: Configuration {
            rule_files,
            model,
            window_ms,
        },
        baseline_choice: format!("{ruleset_choice}; {model_choice}"),
    })
}

/// The closes recorded in one incident stream.
async fn read_closes<R: StoreRead>(
    store: &R,
    stream_id: &str,
    closes: &mut Vec<RecordedClose>,
) -> Result<(), WhatIfError> {
    let events =
        read_stream_all(store, stream_id, crate::pipeline::INCIDENT_EVENTS_READ_MAX).await?;
    let mut opened: Option<(IncidentId, String, String)> = None;
    for event in &events {
        let decoded =
            IncidentEvent::from_payload(&event.event_type, event.schema_version, &event.payload)
                .map_err(|error| {
                    WhatIfError::Corrupt(format!("{stream_id}#{}: {error}", event.sequence))
                })?;
        match decoded {
            IncidentEvent::IncidentOpened(first) => {
                opened = Some((first.incident_id, first.environment, first.service));
            }
            IncidentEvent::IncidentTransitioned(transition)
                if transition.to == IncidentState::Closed =>
            {
                let Some((incident_id, environment, service)) = &opened else {
                    return Err(WhatIfError::Corrupt(format!(
                        "{stream_id} closes before it opens"
                    )));
                };
                if closes.len() > WHATIF_CLOSES_MAX {
                    return Err(WhatIfError::TooMuch {
                        what: "recorded closes",
                        limit: WHATIF_CLOSES_MAX,
                    });
                }
                closes.push(RecordedClose {
                    at: transition.at,
                    incident_id: *incident_id,
                    environment: environment.clone(),
                    service: service.clone(),
                    close_as: transition.close_as,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

async fn load_ruleset<R: StoreRead>(
    store: &R,
    hash: &Digest,
) -> Result<Vec<RecordedFile>, WhatIfError> {
    let stream_id = ruleset_stream(hash);
    let events = store.read_stream(&stream_id, 1, 1).await?;
    let Some(first) = events.first() else {
        return Err(WhatIfError::NoBaseline(format!(
            "the latest evaluation names rule set {hash}, but {stream_id} is not stored"
        )));
    };
    let PipelineEvent::RuleSetRecorded(recorded) = decode(first)? else {
        return Err(WhatIfError::Corrupt(format!(
            "{stream_id}#1 is not RuleSetRecorded"
        )));
    };
    let files: Vec<RuleFile> = recorded
        .files
        .iter()
        .map(|file| RuleFile {
            path: file.path.clone(),
            text: file.text.clone(),
        })
        .collect();
    match RuleSet::from_files(&files) {
        Ok(rules) if rules.hash() == *hash => Ok(recorded.files),
        Ok(rules) => Err(WhatIfError::Corrupt(format!(
            "{stream_id}: the recorded files compile to rule set {}",
            rules.hash()
        ))),
        Err(error) => Err(WhatIfError::Corrupt(format!(
            "{stream_id}: the recorded files do not compile: {error}"
        ))),
    }
}

async fn load_model<R: StoreRead>(
    store: &R,
    hash: &Digest,
) -> Result<ConfidenceModel, WhatIfError> {
    let stream_id = model_stream(hash);
    let events = store.read_stream(&stream_id, 1, 1).await?;
    let Some(first) = events.first() else {
        return Err(WhatIfError::NoBaseline(format!(
            "{stream_id} is not stored"
        )));
    };
    match decode(first)? {
        PipelineEvent::ConfidenceModelRecorded(recorded) if recorded.model.hash() == *hash => {
            Ok(recorded.model)
        }
        PipelineEvent::ConfidenceModelRecorded(recorded) => Err(WhatIfError::Corrupt(format!(
            "{stream_id}: the recorded model hashes to {}",
            recorded.model.hash()
        ))),
        _ => Err(WhatIfError::Corrupt(format!(
            "{stream_id}#1 is not ConfidenceModelRecorded"
        ))),
    }
}

/// Signals and closes merged by time; at the same millisecond a signal comes first.
fn replay_order(recording: &Recording) -> Vec<Step> {
    let mut keyed: Vec<((EpochMs, u8, Digest, usize), Step)> = recording
        .signals
        .iter()
        .map(|(time, id)| ((*time, 0, id.0, 0), Step::Signal(*id)))
        .collect();
    keyed.extend(recording.closes.iter().enumerate().map(|(index, close)| {
        (
            (close.at, 1, close.incident_id.0, index),
            Step::Close(index),
        )
    }));
    keyed.sort();
    keyed.into_iter().map(|(_, step)| step).collect()
}

/// An incident as a run left it: what the comparison needs.
struct IncidentSummary {
    environment: String,
    service: String,
    group_id: GroupId,
    generation: u32,
    severity: Severity,
    opened_at: EpochMs,
    evidence_count: u64,
    /// The signals of the kept evidence.
    signals: BTreeSet<SignalId>,
}

impl From<&Incident> for IncidentSummary {
    fn from(incident: &Incident) -> IncidentSummary {
        IncidentSummary {
            environment: incident.environment.clone(),
            service: incident.service.clone(),
            group_id: incident.group_id,
            generation: incident.generation,
            severity: incident.severity,
            opened_at: incident.opened_at,
            evidence_count: incident.evidence_count,
            signals: incident
                .evidence
                .values()
                .map(|item| item.signal_id)
                .collect(),
        }
    }
}

/// One scratch run.
struct Run<'a, S: Store> {
    side: &'static str,
    pipeline: Pipeline<'a, S, NoPublisher>,
    store: &'a S,
}

impl<S: Store> Run<'_, S> {
    async fn replay<R: StoreRead>(
        &self,
        recorded: &R,
        recording: &Recording,
        steps: &[Step],
    ) -> Result<(), WhatIfError> {
        for step in steps {
            match step {
                Step::Signal(id) => {
                    let signal = read_signal(recorded, id).await?;
                    self.pipeline.ingest(&signal).await?;
                    let drained = self.pipeline.drain(STEPS_PER_SIGNAL_MAX).await?;
                    if !drained.left_queued.is_empty() || drained.stopped_at_limit {
                        return Err(WhatIfError::Stuck {
                            side: self.side,
                            signal: *id,
                            detail: if drained.stopped_at_limit {
                                format!("more than {STEPS_PER_SIGNAL_MAX} steps")
                            } else {
                                drained.left_queued.join("; ")
                            },
                        });
                    }
                }
                Step::Close(index) => {
                    if let Some(close) = recording.closes.get(*index) {
                        self.close(close).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Closes the open incident of the close's environment and service, if any.
    async fn close(&self, close: &RecordedClose) -> Result<(), WhatIfError> {
        let Some((pointer, _)) = self
            .pipeline
            .open_incident(&close.environment, &close.service)
            .await?
        else {
            return Ok(());
        };
        let Some(incident) = self.pipeline.load_incident(&pointer.incident_id).await? else {
            return Ok(());
        };
        let close_as = match (incident.state, close.close_as) {
            (IncidentState::Closed, _) => return Ok(()),
            (IncidentState::Resolved, Some(close_as)) => close_as,
            _ => CloseAs::FalsePositive,
        };
        let principal = Principal::local(REPLAY_PRINCIPAL)
            .map_err(|error| WhatIfError::Config(error.to_string()))?;
        let command = IncidentCommand::Transition {
            principal,
            at: close.at,
            to: IncidentState::Closed,
            reason: format!(
                "replays the recorded close of incident {}",
                close.incident_id
            ),
            expected_lifecycle_version: incident.lifecycle_version,
            close_as: Some(close_as),
            resolution_summary: None,
        };
        self.pipeline
            .execute_human(&pointer.incident_id, &command)
            .await?;
        Ok(())
    }

    /// Every incident of the run.
    async fn incidents(&self) -> Result<BTreeMap<IncidentId, IncidentSummary>, WhatIfError> {
        let mut incidents = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .store
                .list_projections(PROJECTION_INCIDENT, cursor.as_deref(), LIST_PAGE_SIZE)
                .await?;
            for projection in &page.items {
                let Some(id) = Digest::from_hex(&projection.key).map(IncidentId) else {
                    continue;
                };
                if let Some(incident) = self.pipeline.load_incident(&id).await? {
                    if incidents.len() >= WHATIF_INCIDENTS_MAX {
                        return Err(WhatIfError::TooMuch {
                            what: "incidents of one run",
                            limit: WHATIF_INCIDENTS_MAX,
                        });
                    }
                    incidents.insert(id, IncidentSummary::from(&incident));
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(incidents),
            }
        }
    }

    /// The run's decision for a group, and the signal whose detection triggered it: the
    /// PROMOTE that opened `incident_id` if this run opened it; else the decision on the
    /// assessment triggered by the `anchor` signal (the other run's opening trigger), else
    /// the latest decided before it (in replay order, which is event-time order), else the
    /// first after it; without an anchor, the group's last decision. So both runs'
    /// decisions are taken at the same point of the replay and their factors compare.
    async fn decision(
        &self,
        group: &GroupId,
        incident_id: &IncidentId,
        anchor: Option<(EpochMs, SignalId)>,
    ) -> Result<Option<(DecisionSummary, Option<(EpochMs, SignalId)>)>, WhatIfError> {
        let events =
            read_stream_all(self.store, &group_stream(group), GROUP_EVENTS_READ_MAX).await?;
        let mut detections: BTreeMap<DetectionId, (EpochMs, SignalId)> = BTreeMap::new();
        let mut assessments: BTreeMap<u64, ConfidenceAssessed> = BTreeMap::new();
        let mut decided_all = Vec::new();
        for event in &events {
            match decode(event)? {
                PipelineEvent::DetectionCorrelated(correlated) => {
                    let detection = correlated.detection;
                    detections.insert(detection.id, (detection.event_time, detection.signal_id));
                }
                PipelineEvent::ConfidenceAssessed(assessed) => {
                    assessments.insert(event.sequence, assessed);
                }
                PipelineEvent::PromotionDecided(decided) => decided_all.push(decided),
                _ => {}
            }
        }
        // Each decision with its assessment and trigger.
        let mut candidates = Vec::new();
        for decided in decided_all {
            let pointer = &decided.assessment_event;
            let assessed = if pointer.stream_id == group_stream(group) {
                assessments.get(&pointer.sequence).cloned()
            } else {
                let events = self
                    .store
                    .read_stream(&pointer.stream_id, pointer.sequence, 1)
                    .await?;
                match events.first().map(decode).transpose()? {
                    Some(PipelineEvent::ConfidenceAssessed(assessed)) => Some(assessed),
                    _ => None,
                }
            };
            let Some(assessed) = assessed else {
                return Err(WhatIfError::Corrupt(format!(
                    "the {} run's decision names {}#{}, which is not an assessment",
                    self.side, pointer.stream_id, pointer.sequence
                )));
            };
            let trigger = match detections.get(&assessed.trigger) {
                Some(trigger) => Some(*trigger),
                // The trigger lies in the window before (an assessment of the next window).
                None => self
                    .pipeline
                    .bundle_as_assessed(&assessed)
                    .await?
                    .members
                    .iter()
                    .find(|member| member.id == assessed.trigger)
                    .map(|member| (member.event_time, member.signal_id)),
            };
            candidates.push((decided, assessed, trigger));
        }
        let opening = candidates.iter().position(|(decided, _, _)| {
            decided.decision.outcome == Outcome::Promote
                && decided.decision.incident_id == Some(*incident_id)
        });
        let chosen = match (opening, anchor) {
            (Some(index), _) => Some(index),
            (None, None) => candidates.len().checked_sub(1),
            (None, Some(anchor)) => {
                let exact = candidates
                    .iter()
                    .rposition(|(_, _, trigger)| *trigger == Some(anchor));
                let before = candidates
                    .iter()
                    .rposition(|(_, _, trigger)| trigger.is_some_and(|trigger| trigger <= anchor));
                exact
                    .or(before)
                    .or(if candidates.is_empty() { None } else { Some(0) })
            }
        };
        let Some((decided, assessed, trigger)) = chosen.and_then(|index| candidates.get(index))
        else {
            return Ok(None);
        };
        let (rules, rules_promoting_alone) = self.bundle_rules(assessed).await?;
        let decision = &decided.decision;
        Ok(Some((
            DecisionSummary {
                outcome: decision.outcome,
                reason: decision.reason,
                incident_id: decision.incident_id,
                score_bps: assessed.assessment.score_bps,
                promote_threshold_bps: assessed.assessment.promote_threshold_bps,
                band: assessed.assessment.band,
                factors: assessed.assessment.factors.clone(),
                rules,
                rules_promoting_alone,
                members: assessed.member_ids.len() as u64,
            },
            *trigger,
        )))
    }

    /// The rules (`id@version`) of an assessed bundle's members, and those that promote alone.
    async fn bundle_rules(
        &self,
        assessed: &ConfidenceAssessed,
    ) -> Result<(Vec<String>, Vec<String>), WhatIfError> {
        let bundle = self.pipeline.bundle_as_assessed(assessed).await?;
        let mut rules = BTreeSet::new();
        let mut alone = BTreeSet::new();
        for member in &bundle.members {
            let rule = format!("{}@{}", member.rule_id, member.rule_version);
            if member.promotes_alone {
                alone.insert(rule.clone());
            }
            rules.insert(rule);
        }
        Ok((rules.into_iter().collect(), alone.into_iter().collect()))
    }

    /// How this run evaluated a signal.
    async fn evaluation(
        &self,
        signal: &SignalId,
    ) -> Result<(Evaluation, Option<Signal>), WhatIfError> {
        let events = self.store.read_stream(&signal_stream(signal), 1, 2).await?;
        let accepted = match events.first().map(decode).transpose()? {
            Some(PipelineEvent::SignalAccepted(accepted)) => Some(accepted.signal),
            _ => None,
        };
        let evaluation = match events.get(1).map(decode).transpose()? {
            Some(PipelineEvent::SignalEvaluated(evaluated)) => evaluation_of(&evaluated.outcome),
            _ => Evaluation {
                outcome: "not_evaluated".to_owned(),
                rule: None,
                severity: None,
                silence_id: None,
            },
        };
        Ok((evaluation, accepted))
    }
}

fn evaluation_of(outcome: &DetectionOutcome) -> Evaluation {
    let plain = |outcome: &str| Evaluation {
        outcome: outcome.to_owned(),
        rule: None,
        severity: None,
        silence_id: None,
    };
    match outcome {
        DetectionOutcome::Detected(detection) => Evaluation {
            outcome: "detected".to_owned(),
            rule: Some(format!("{}@{}", detection.rule_id, detection.rule_version)),
            severity: Some(detection.severity),
            silence_id: None,
        },
        DetectionOutcome::NotDetected(NotDetectedReason::Silenced { silence_id }) => Evaluation {
            silence_id: Some(silence_id.clone()),
            ..plain("silenced")
        },
        DetectionOutcome::NotDetected(NotDetectedReason::NoRuleMatched) => plain("no_rule_matched"),
        DetectionOutcome::NotDetected(NotDetectedReason::Recovery) => plain("recovery"),
        DetectionOutcome::NotDetected(NotDetectedReason::InsufficientData) => {
            plain("insufficient_data")
        }
    }
}

async fn read_signal<R: StoreRead>(store: &R, id: &SignalId) -> Result<Signal, WhatIfError> {
    let stream_id = signal_stream(id);
    let events = store.read_stream(&stream_id, 1, 1).await?;
    match events.first().map(decode).transpose()? {
        Some(PipelineEvent::SignalAccepted(accepted)) => Ok(accepted.signal),
        _ => Err(WhatIfError::Corrupt(format!(
            "{stream_id} does not start with SignalAccepted"
        ))),
    }
}

/// Builds the change of one incident, with its reasons.
async fn explain<B: Store, P: Store>(
    kind: ChangeKind,
    incident_id: &IncidentId,
    before: Option<&IncidentSummary>,
    after: Option<&IncidentSummary>,
    baseline: &Run<'_, B>,
    proposed: &Run<'_, P>,
) -> Result<IncidentChange, WhatIfError> {
    // One of them exists: `kind` says which.
    let Some(either) = after.or(before) else {
        return Err(WhatIfError::Corrupt(
            "a change without an incident".to_owned(),
        ));
    };
    // The run that opened the incident first: its opening trigger anchors the other's.
    let (baseline_decision, proposed_decision) = if after.is_some() {
        let proposed_decision = proposed
            .decision(&either.group_id, incident_id, None)
            .await?;
        let anchor = proposed_decision.as_ref().and_then(|(_, trigger)| *trigger);
        let baseline_decision = baseline
            .decision(&either.group_id, incident_id, anchor)
            .await?;
        (baseline_decision, proposed_decision)
    } else {
        let baseline_decision = baseline
            .decision(&either.group_id, incident_id, None)
            .await?;
        let anchor = baseline_decision.as_ref().and_then(|(_, trigger)| *trigger);
        let proposed_decision = proposed
            .decision(&either.group_id, incident_id, anchor)
            .await?;
        (baseline_decision, proposed_decision)
    };
    let baseline_decision = baseline_decision.map(|(decision, _)| decision);
    let proposed_decision = proposed_decision.map(|(decision, _)| decision);
    let factor_changes = match (&baseline_decision, &proposed_decision) {
        (Some(b), Some(p)) => factor_changes(&b.factors, &p.factors),
        _ => Vec::new(),
    };
    // The signals of the incident in either run, evaluated by both.
    let signals: BTreeSet<SignalId> = before
        .iter()
        .chain(after.iter())
        .flat_map(|summary| summary.signals.iter().copied())
        .collect();
    let mut signal_changes = Vec::new();
    let mut signal_changes_total = 0;
    for signal_id in &signals {
        let (was, signal) = baseline.evaluation(signal_id).await?;
        let (now, _) = proposed.evaluation(signal_id).await?;
        if was == now {
            continue;
        }
        signal_changes_total += 1;
        if signal_changes.len() < SIGNAL_CHANGES_PER_INCIDENT_MAX {
            signal_changes.push(SignalChange {
                signal_id: *signal_id,
                alarm_name: signal
                    .as_ref()
                    .map(|signal| signal.alarm_name.clone())
                    .unwrap_or_default(),
                event_time: signal.map(|signal| signal.event_time).unwrap_or(EpochMs(0)),
                baseline: was,
                proposed: now,
            });
        }
    }
    signal_changes.sort_by_key(|change| (change.event_time, change.signal_id));
    let mut change = IncidentChange {
        kind,
        incident_id: *incident_id,
        environment: either.environment.clone(),
        service: either.service.clone(),
        group_id: either.group_id,
        generation: either.generation,
        opened_at: either.opened_at,
        baseline_severity: before.map(|summary| summary.severity),
        proposed_severity: after.map(|summary| summary.severity),
        baseline_evidence: before.map(|summary| summary.evidence_count),
        proposed_evidence: after.map(|summary| summary.evidence_count),
        baseline_decision,
        proposed_decision,
        factor_changes,
        signal_changes,
        signal_changes_total,
        reason: String::new(),
    };
    change.reason = reason(&change);
    Ok(change)
}

fn factor_changes(baseline: &[FactorScore], proposed: &[FactorScore]) -> Vec<FactorChange> {
    baseline
        .iter()
        .filter_map(|b| {
            let p = proposed.iter().find(|p| p.factor == b.factor)?;
            (b.value_bps != p.value_bps || b.weight_bps != p.weight_bps).then_some(FactorChange {
                factor: b.factor,
                baseline_value_bps: b.value_bps,
                proposed_value_bps: p.value_bps,
                baseline_weight_bps: b.weight_bps,
                proposed_weight_bps: p.weight_bps,
            })
        })
        .collect()
}

/// What a decision did and why, in a few words.
pub fn decision_phrase(decision: &DecisionSummary) -> String {
    let outcome = decision.outcome.as_str();
    match decision.reason {
        ReasonCode::RulePromotesAlone => format!(
            "{outcome}: rule {} promotes alone",
            decision.rules_promoting_alone.join(", ")
        ),
        ReasonCode::ConfidenceAtOrAboveThreshold => format!(
            "{outcome}: confidence {} bps reaches the threshold {} bps",
            decision.score_bps, decision.promote_threshold_bps
        ),
        ReasonCode::ConfidenceBelowThreshold => format!(
            "{outcome}: confidence {} bps is below the threshold {} bps",
            decision.score_bps, decision.promote_threshold_bps
        ),
        ReasonCode::OpenIncidentFound => format!(
            "{outcome}: incident {} was already open",
            decision
                .incident_id
                .map(|id| id.to_string())
                .unwrap_or_default()
        ),
        ReasonCode::InconsistentInput => format!("{outcome}: inconsistent input"),
    }
}

fn reason(change: &IncidentChange) -> String {
    let side = |decision: &Option<DecisionSummary>| match decision {
        Some(decision) => decision_phrase(decision),
        None => "nothing of this window was detected".to_owned(),
    };
    let mut text = match change.kind {
        ChangeKind::WouldBeCreated | ChangeKind::NoLongerCreated => format!(
            "proposed {}; baseline {}",
            side(&change.proposed_decision),
            side(&change.baseline_decision)
        ),
        ChangeKind::SeverityChanged => format!(
            "severity {} in the baseline, {} proposed",
            change
                .baseline_severity
                .map_or("-", |severity| severity.as_str()),
            change
                .proposed_severity
                .map_or("-", |severity| severity.as_str()),
        ),
    };
    if let Some(first) = change.factor_changes.first() {
        text.push_str(&format!(
            "; factor {} {}×{} → {}×{} (value×weight)",
            first.factor,
            first.baseline_value_bps,
            first.baseline_weight_bps,
            first.proposed_value_bps,
            first.proposed_weight_bps
        ));
        if change.factor_changes.len() > 1 {
            text.push_str(&format!(
                " and {} more factor(s)",
                change.factor_changes.len() - 1
            ));
        }
    }
    if let Some(first) = change.signal_changes.first() {
        text.push_str(&format!(
            "; {} signal(s) evaluated differently, e.g. {}: {} → {}",
            change.signal_changes_total, first.alarm_name, first.baseline, first.proposed
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close_at(at: i64, id: u8) -> RecordedClose {
        RecordedClose {
            at: EpochMs(at),
            incident_id: IncidentId(Digest([id; 32])),
            environment: "prod".to_owned(),
            service: "orders".to_owned(),
            close_as: None,
        }
    }

    #[test]
    fn signals_and_closes_replay_by_time_and_a_close_follows_a_signal_of_its_millisecond() {
        let signal = |id: u8| SignalId(Digest([id; 32]));
        let recording = Recording {
            signals: vec![
                (EpochMs(10), signal(9)),
                (EpochMs(20), signal(1)),
                (EpochMs(30), signal(2)),
            ],
            closes: vec![close_at(25, 7), close_at(20, 8)],
            baseline: Configuration {
                rule_files: Vec::new(),
                model: ConfidenceModel::v1(),
                window_ms: WindowMs::DEFAULT,
            },
            baseline_choice: String::new(),
        };
        assert_eq!(
            replay_order(&recording),
            vec![
                Step::Signal(signal(9)),
                Step::Signal(signal(1)),
                Step::Close(1),
                Step::Close(0),
                Step::Signal(signal(2)),
            ]
        );
    }

    #[test]
    fn the_latest_keeps_the_greatest_key_and_the_first_of_equals() {
        let mut latest = Latest::new();
        for (key, value) in [(2, "b"), (5, "e"), (5, "f"), (1, "a")] {
            latest.offer(key, value);
        }
        assert_eq!(latest.take(), Some("e"));
        assert_eq!(Latest::<u8, u8>::new().take(), None);
    }

    #[test]
    fn only_differing_factors_are_listed() {
        let line = |factor: Factor, value_bps: u32, weight_bps: u32| FactorScore {
            factor,
            value_bps,
            weight_bps,
            contribution_bps: value_bps * weight_bps / 10_000,
            explanation: String::new(),
        };
        let baseline = [
            line(Factor::DistinctAlarms, 7500, 4500),
            line(Factor::BurstVolume, 5000, 1000),
        ];
        let proposed = [
            line(Factor::DistinctAlarms, 7500, 6000),
            line(Factor::BurstVolume, 5000, 1000),
        ];
        assert_eq!(
            factor_changes(&baseline, &proposed),
            vec![FactorChange {
                factor: Factor::DistinctAlarms,
                baseline_value_bps: 7500,
                proposed_value_bps: 7500,
                baseline_weight_bps: 4500,
                proposed_weight_bps: 6000,
            }]
        );
        assert!(factor_changes(&baseline, &baseline).is_empty());
    }
}
