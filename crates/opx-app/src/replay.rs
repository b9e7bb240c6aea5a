//! Replay verification: proves that the store is complete, untampered and reproducible.
//!
//! [`verify`] reads the whole store page by page and checks, in this order:
//!
//! 1. **Every stream**: its id is one opx writes ([`StreamKind::of`]), its hash chain holds
//!    ([`ChainVerifier`]), and every event decodes as its declared type and schema version
//!    and sits where the pipeline puts it (e.g. `SignalEvaluated` is event 2 of a
//!    `signal:` stream). A stream whose chain breaks is not checked further: nothing after
//!    the break can be trusted.
//! 2. **Every decision, re-derived from its recorded inputs**: `SignalEvaluated` against
//!    the rule set recorded in `ruleset:<hash>`; `DetectionCorrelated` against the
//!    detection of the signal it names and its window; `ConfidenceAssessed` against the
//!    model recorded in `model:<hash>` and the bundle rebuilt from its recorded member ids;
//!    `PromotionDecided` against the gate over that bundle, the recorded assessment and
//!    what the gate saw (open incident, generation); every PROMOTE opened exactly its
//!    incident and every `IncidentOpened` comes from a PROMOTE.
//! 3. **Every projection, rebuilt from events**: `incident/<id>` is the folded incident at
//!    the stream's head sequence, `open_incident/<key>` exists exactly for incidents not
//!    CLOSED, `group_generation/<group>` counts the group's CLOSED incidents,
//!    `service_recoveries/<key>` is the bounded set of the service's correlated recoveries;
//!    no stored projection lacks a rebuilt one.
//! 4. **Every idempotency record**: `signal/<id>` holds the stored signal's fingerprint and
//!    the pointer of its `SignalAccepted`; `stage/<stage>/<stream>/<seq>` holds the hash of
//!    an existing input event and the pointers of outputs that exist.
//! 5. **Completeness**: every event a stage consumes was consumed (its `stage/...` record
//!    exists) or is still queued. Queued work is reported as pending, never as divergence:
//!    after a crash, `opx resume` carries it through. A page ([`Stage::Page`]) is an outbox
//!    item with no output event, so the log cannot tell a sent page from a lost one: a
//!    queued page must name a stored event that pages (`IncidentOpened`,
//!    `SeverityChanged`), and nothing is demanded of a page no longer queued.
//!
//! # Slices
//!
//! [`verify_slice`] does the same work a bounded number of items at a time and returns a
//! [`VerifyCursor`] to continue from, so a large store verifies across several Lambda
//! invocations; [`verify`] is the loop over slices. For the cursor to stay small, every
//! check is local to the item being checked and reads what else it needs by key: the
//! store-wide projections are proved from both sides instead of rebuilt in memory. A
//! closed incident finds its group's generation stored, and each stored generation equals
//! its group's CLOSED incidents counted generation by generation (incident ids are derived
//! from the generation); each correlated recovery is absorbed by its service's stored
//! recoveries (inserting it changes nothing), and each stored document is canonical and
//! keeps only correlated recoveries of its service — which, since the document is a
//! function of the set seen, is equality with the rebuild.
//!
//! Memory is bounded per stream: streams are read a page at a time, incident state is
//! folded event by event, and only the detections of the one evidence group being checked
//! (and of the window before it) are held, as the pipeline itself does. Pending work is
//! held whole (it is what is in flight) and re-read by every slice.

use crate::pipeline::{
    open_incident_key, GroupGeneration, OpenIncidentPointer, GROUP_EVENTS_READ_MAX,
    PROJECTION_GROUP_GENERATION, PROJECTION_INCIDENT, PROJECTION_OPEN_INCIDENT,
};
use crate::ports::{
    IdempotencyRecord, Projection, Stage, StoreError, StoreRead, WorkItem, READ_PAGE_SIZE_MAX,
};
use crate::recovery::{
    service_recoveries_key, RecoverySeen, ServiceRecoveries, PROJECTION_SERVICE_RECOVERIES,
};
use opx_domain::confidence::{assess, ConfidenceModel};
use opx_domain::correlation::{
    previous_window_start, window_start, CorrelationKey, EvidenceBundle, GroupId, WindowMs,
};
use opx_domain::detection::{detect, Detection, DetectionId, DetectionOutcome, NotDetectedReason};
use opx_domain::event::{ChainError, ChainVerifier, EventEnvelope, EventPointer};
use opx_domain::hash::Digest;
use opx_domain::incident::{self, Incident, IncidentEvent, IncidentId, IncidentState};
use opx_domain::promotion::{self, GateInput, Outcome};
use opx_domain::record::{
    group_stream, model_stream, ruleset_stream, signal_stream, ConfidenceAssessed,
    ConfidenceModelRecorded, DetectionCorrelated, PipelineEvent, PromotionDecided, RuleSetRecorded,
    SignalEvaluated, StreamKind,
};
use opx_domain::rules::{RuleFile, RuleSet};
use opx_domain::signal::{truncate_utf8, Signal};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How many divergences a report keeps by default; the rest are only counted.
pub const DIVERGENCES_MAX_DEFAULT: usize = 100;
/// Page size for listing streams, projections, idempotency records and pending work.
pub const LIST_PAGE_SIZE: usize = 500;
/// Longest rendering of an expected or actual value in a [`Divergence`], in bytes; longer
/// values are cut (on a UTF-8 boundary) and end with `…`.
pub const DIVERGENCE_VALUE_LEN_MAX: usize = 512;

/// How [`verify`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOptions {
    /// Most divergences kept in the report (all are counted in
    /// [`VerifyReport::divergences_total`]). At least the first one is always kept.
    pub divergences_max: usize,
}

impl Default for VerifyOptions {
    fn default() -> VerifyOptions {
        VerifyOptions {
            divergences_max: DIVERGENCES_MAX_DEFAULT,
        }
    }
}

/// What kind of difference a [`Divergence`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceKind {
    /// The hash chain breaks here: an event was altered, removed, inserted or reordered.
    ChainBroken,
    /// The stream id is not one opx writes.
    UnknownStream,
    /// The payload does not decode as its declared event type and schema version.
    UndecodableEvent,
    /// The event decodes but does not belong here (wrong stream, wrong position, or it does
    /// not apply to the state folded so far).
    MisplacedEvent,
    /// A stored projection differs from its rebuild from events, or has no rebuild, or a
    /// rebuilt one is not stored.
    ProjectionMismatch,
    /// A recorded decision differs from its re-derivation from the recorded inputs.
    DecisionMismatch,
    /// An input a decision or record names (rule set, model, signal, event) is absent or
    /// unusable, so the decision cannot be re-derived.
    InputUnavailable,
    /// An idempotency record does not match what it records.
    IdempotencyMismatch,
    /// An event a stage must consume was neither consumed nor queued: work was lost.
    WorkLost,
}

impl DivergenceKind {
    /// Whether the record itself is damaged (a broken chain, a foreign stream, an
    /// undecodable event), as opposed to a difference found by rebuilding from it. Such
    /// divergences are listed first: the others are often their consequences.
    pub fn is_integrity(self) -> bool {
        matches!(
            self,
            DivergenceKind::ChainBroken
                | DivergenceKind::UnknownStream
                | DivergenceKind::UndecodableEvent
        )
    }

    /// The canonical text, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            DivergenceKind::ChainBroken => "chain_broken",
            DivergenceKind::UnknownStream => "unknown_stream",
            DivergenceKind::UndecodableEvent => "undecodable_event",
            DivergenceKind::MisplacedEvent => "misplaced_event",
            DivergenceKind::ProjectionMismatch => "projection_mismatch",
            DivergenceKind::DecisionMismatch => "decision_mismatch",
            DivergenceKind::InputUnavailable => "input_unavailable",
            DivergenceKind::IdempotencyMismatch => "idempotency_mismatch",
            DivergenceKind::WorkLost => "work_lost",
        }
    }
}

/// One place where the store does not verify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// The stream concerned, when there is one.
    pub stream_id: Option<String>,
    /// The event concerned within `stream_id`, when there is one.
    pub sequence: Option<u64>,
    /// What kind of difference.
    pub kind: DivergenceKind,
    /// The projection (`kind/key`) or idempotency record (`key`) concerned, if any.
    pub record: Option<String>,
    /// The first differing field (a JSON path such as `assessment.score_bps`, or `hash`,
    /// `version`), when known.
    pub field: Option<String>,
    /// What the rebuild or re-derivation gives (the truth from the recorded inputs).
    pub expected: String,
    /// What is stored.
    pub actual: String,
    /// One sentence for a person: what is wrong and what it means.
    pub detail: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind.as_str())?;
        if let Some(stream_id) = &self.stream_id {
            write!(f, " at {stream_id}")?;
            if let Some(sequence) = self.sequence {
                write!(f, "#{sequence}")?;
            }
        }
        if let Some(record) = &self.record {
            write!(f, " ({record})")?;
        }
        if let Some(field) = &self.field {
            write!(f, " field {field}")?;
        }
        write!(
            f,
            ": {} (expected {}, stored {})",
            self.detail, self.expected, self.actual
        )
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Streams read.
    pub streams: u64,
    /// Events whose chain link and hash were verified.
    pub events: u64,
    /// Projections compared with their rebuild (stored ones and rebuilt ones).
    pub projections_checked: u64,
    /// Decisions re-derived from their recorded inputs (`SignalEvaluated`,
    /// `DetectionCorrelated`, `ConfidenceAssessed`, `PromotionDecided`).
    pub decisions_rederived: u64,
    /// Idempotency records checked.
    pub idempotency_checked: u64,
    /// Idempotency records with a key this version does not know how to check (e.g. API
    /// client keys); not a divergence.
    pub idempotency_skipped: u64,
    /// Work accepted but not yet carried through every stage (run `opx resume`).
    pub pending: Vec<WorkItem>,
    /// The first divergent stream overall (an integrity failure if there is one), if any.
    pub first_divergent_stream: Option<String>,
    /// The first divergent event of that stream, if the divergence names one.
    pub first_divergent_sequence: Option<u64>,
    /// How many divergences were found (the report keeps at most
    /// [`VerifyOptions::divergences_max`]).
    pub divergences_total: u64,
    /// The divergences kept: integrity failures first (broken chains, unknown streams,
    /// undecodable events: usually the root cause of everything else), then the rest; each
    /// part in the order found (streams in store order, then projections, idempotency
    /// records and pending work).
    pub divergences: Vec<Divergence>,
}

impl VerifyReport {
    /// Whether the store verified: no divergence at all (pending work is not one).
    pub fn ok(&self) -> bool {
        self.divergences_total == 0
    }

    /// The first divergence: the first integrity failure if there is one, else the first
    /// divergence found.
    pub fn first_divergence(&self) -> Option<&Divergence> {
        self.divergences.first()
    }
}

/// Verifies the whole store; see the module documentation. Returns an error only when
/// the store cannot be read (retry later); everything wrong with the data is a
/// [`Divergence`] in the report.
///
/// This is the loop over [`verify_slice`] with [`ONE_PASS_SLICE_ITEMS`] items per slice,
/// so a one-pass and a sliced verification cannot drift apart.
pub async fn verify<S: StoreRead>(
    store: &S,
    options: &VerifyOptions,
) -> Result<VerifyReport, StoreError> {
    let mut cursor: Option<VerifyCursor> = None;
    loop {
        let (report, next) = verify_slice(store, options, cursor, ONE_PASS_SLICE_ITEMS).await?;
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(report),
        }
    }
}

/// Items [`verify`] checks per slice: large, so a local verification is one or a few slices.
pub const ONE_PASS_SLICE_ITEMS: usize = 100_000;
/// The format of [`VerifyCursor`]; a cursor of another format is refused (start over).
pub const VERIFY_CURSOR_FORMAT: u32 = 1;

/// Where a sliced verification stands, to pass to the next [`verify_slice`]. Opaque to
/// callers; serialisable (JSON) so a Lambda function can carry it between invocations.
///
/// **Bounded.** It carries the phase and the store's list cursor within it, the report's
/// counters, and the divergences kept so far: at most [`VerifyOptions::divergences_max`]
/// integrity ones and as many others, each of whose six texts is cut to
/// [`DIVERGENCE_VALUE_LEN_MAX`] bytes — about 3.2 KB per divergence at worst, so choose
/// `divergences_max` for the size a caller can carry (20 keeps the cursor under 130 KB).
/// It carries no per-stream or per-group state: every check is local to the stream or
/// record being checked (it reads what else it needs by key), so nothing accumulates
/// across slices. Pending work is re-read by every slice and reported by the last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyCursor {
    format: u32,
    phase: Phase,
    list_cursor: Option<String>,
    report: VerifyReport,
    integrity: Vec<Divergence>,
}

impl VerifyCursor {
    /// The cursor as text (JSON), to hand to the next invocation.
    pub fn encode(&self) -> String {
        // A struct of strings, integers and vectors always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads [`VerifyCursor::encode`] output. Text that is not a cursor of this format is
    /// [`StoreError::Invalid`]: start the verification over without a cursor.
    pub fn decode(text: &str) -> Result<VerifyCursor, StoreError> {
        let cursor: VerifyCursor = serde_json::from_str(text).map_err(|error| {
            StoreError::Invalid(format!(
                "the verification cursor does not decode ({error}); start over without a cursor"
            ))
        })?;
        if cursor.format != VERIFY_CURSOR_FORMAT {
            return Err(StoreError::Invalid(format!(
                "the verification cursor has format {}, this opx writes format {VERIFY_CURSOR_FORMAT}; \
                 start the verification over without a cursor",
                cursor.format
            )));
        }
        Ok(cursor)
    }
}

/// The parts of a verification, in order. Each walks one listing of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    /// Every stream (chains, events, decisions, projections of the stream).
    Streams,
    /// Stored `service_recoveries` documents.
    ServiceRecoveries,
    /// Stored `incident` projections without a stream.
    IncidentProjections,
    /// Stored `open_incident` pointers.
    OpenIncidents,
    /// Stored `group_generation` counts.
    GroupGenerations,
    /// Idempotency records.
    Idempotency,
    /// Pending work names stored events (one step, the last).
    Pending,
}

impl Phase {
    fn next(self) -> Option<Phase> {
        match self {
            Phase::Streams => Some(Phase::ServiceRecoveries),
            Phase::ServiceRecoveries => Some(Phase::IncidentProjections),
            Phase::IncidentProjections => Some(Phase::OpenIncidents),
            Phase::OpenIncidents => Some(Phase::GroupGenerations),
            Phase::GroupGenerations => Some(Phase::Idempotency),
            Phase::Idempotency => Some(Phase::Pending),
            Phase::Pending => None,
        }
    }
}

/// Verifies the next slice of the store: at most `items_max` items (streams, stored
/// projections, idempotency records; at least one), starting where `cursor` stopped
/// (`None`: from the start). Returns the report so far and the cursor to continue with,
/// or the final report and `None` when the whole store is verified. Pass the same
/// `options` to every slice.
///
/// The slices together give exactly the report of one [`verify`] of a store that did not
/// change meanwhile: the items are checked in the same order, and every check is local to
/// its item. On a store that is written meanwhile, each item is checked as it is when its
/// slice reads it. A cursor of another [`VERIFY_CURSOR_FORMAT`] is [`StoreError::Invalid`]:
/// start over without it.
pub async fn verify_slice<S: StoreRead>(
    store: &S,
    options: &VerifyOptions,
    cursor: Option<VerifyCursor>,
    items_max: usize,
) -> Result<(VerifyReport, Option<VerifyCursor>), StoreError> {
    let cursor = cursor.unwrap_or(VerifyCursor {
        format: VERIFY_CURSOR_FORMAT,
        phase: Phase::Streams,
        list_cursor: None,
        report: VerifyReport::default(),
        integrity: Vec::new(),
    });
    if cursor.format != VERIFY_CURSOR_FORMAT {
        return Err(StoreError::Invalid(format!(
            "the verification cursor has format {}, this opx writes format {VERIFY_CURSOR_FORMAT}; \
             start the verification over without a cursor",
            cursor.format
        )));
    }
    let mut verifier = Verifier {
        store,
        divergences_max: options.divergences_max.max(1),
        report: cursor.report,
        integrity: cursor.integrity,
        pending: Vec::new(),
        pending_keys: BTreeSet::new(),
        rulesets: BTreeMap::new(),
        models: BTreeMap::new(),
    };
    verifier.report.pending.clear();
    verifier.load_pending().await?;
    let mut phase = cursor.phase;
    let mut list_cursor = cursor.list_cursor;
    let mut budget = items_max.max(1);
    loop {
        if budget == 0 {
            let report = verifier.finished_report();
            let next = VerifyCursor {
                format: VERIFY_CURSOR_FORMAT,
                phase,
                list_cursor,
                report: VerifyReport {
                    pending: Vec::new(),
                    first_divergent_stream: None,
                    first_divergent_sequence: None,
                    ..verifier.report
                },
                integrity: verifier.integrity,
            };
            return Ok((report, Some(next)));
        }
        let limit = budget.min(LIST_PAGE_SIZE);
        let (items, next) = match phase {
            Phase::Streams => verifier.streams_page(list_cursor.as_deref(), limit).await?,
            Phase::ServiceRecoveries => {
                verifier
                    .service_recoveries_page(list_cursor.as_deref(), limit)
                    .await?
            }
            Phase::IncidentProjections => {
                verifier
                    .incident_projections_page(list_cursor.as_deref(), limit)
                    .await?
            }
            Phase::OpenIncidents => {
                verifier
                    .open_incidents_page(list_cursor.as_deref(), limit)
                    .await?
            }
            Phase::GroupGenerations => {
                verifier
                    .group_generations_page(list_cursor.as_deref(), limit)
                    .await?
            }
            Phase::Idempotency => {
                verifier
                    .idempotency_page(list_cursor.as_deref(), limit)
                    .await?
            }
            Phase::Pending => {
                verifier.check_pending_inputs().await?;
                (1, None)
            }
        };
        // An empty page still costs one item, so a slice always ends.
        budget = budget.saturating_sub(items.max(1));
        list_cursor = next;
        if list_cursor.is_none() {
            match phase.next() {
                Some(following) => phase = following,
                None => return Ok((verifier.finished_report(), None)),
            }
        }
    }
}

/// A loaded rule set or model, or why it cannot be used.
type Loaded<T> = Result<T, String>;

struct Verifier<'a, S: StoreRead> {
    store: &'a S,
    divergences_max: usize,
    report: VerifyReport,
    /// Integrity divergences, kept apart so they lead the report.
    integrity: Vec<Divergence>,
    /// The pending work, as this slice read it.
    pending: Vec<WorkItem>,
    /// [`WorkItem::key`] of every pending item.
    pending_keys: BTreeSet<String>,
    rulesets: BTreeMap<Digest, Loaded<RuleSet>>,
    models: BTreeMap<Digest, Loaded<ConfidenceModel>>,
}

/// Builds a [`Divergence`] without the noise of `Some(...)` at every call site.
struct At<'s> {
    stream_id: Option<&'s str>,
    sequence: Option<u64>,
    record: Option<String>,
}

impl<'s> At<'s> {
    fn event(stream_id: &'s str, sequence: u64) -> At<'s> {
        At {
            stream_id: Some(stream_id),
            sequence: Some(sequence),
            record: None,
        }
    }

    fn stream(stream_id: &'s str) -> At<'s> {
        At {
            stream_id: Some(stream_id),
            sequence: None,
            record: None,
        }
    }

    fn record(record: String) -> At<'s> {
        At {
            stream_id: None,
            sequence: None,
            record: Some(record),
        }
    }

    fn with_record(mut self, record: String) -> At<'s> {
        self.record = Some(record);
        self
    }
}

fn render(text: &str) -> String {
    if text.len() > DIVERGENCE_VALUE_LEN_MAX {
        format!("{}…", truncate_utf8(text, DIVERGENCE_VALUE_LEN_MAX))
    } else {
        text.to_owned()
    }
}

fn render_json(value: &serde_json::Value) -> String {
    render(&value.to_string())
}

/// The first place two JSON values differ: `(path, expected, actual)`. Object keys are
/// walked in sorted order, so the answer does not depend on field order.
fn first_json_difference(
    path: &str,
    expected: &serde_json::Value,
    actual: &serde_json::Value,
) -> Option<(String, String, String)> {
    use serde_json::Value;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (expected, actual) {
        (Value::Object(left), Value::Object(right)) => {
            let keys: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
            for key in keys {
                let missing = Value::String("(absent)".to_owned());
                let l = left.get(key).unwrap_or(&missing);
                let r = right.get(key).unwrap_or(&missing);
                if let Some(found) = first_json_difference(&join(key), l, r) {
                    return Some(found);
                }
            }
            None
        }
        (Value::Array(left), Value::Array(right)) => {
            for (index, (l, r)) in left.iter().zip(right.iter()).enumerate() {
                if let Some(found) = first_json_difference(&format!("{path}[{index}]"), l, r) {
                    return Some(found);
                }
            }
            if left.len() != right.len() {
                return Some((
                    format!("{path}.length"),
                    left.len().to_string(),
                    right.len().to_string(),
                ));
            }
            None
        }
        _ if expected == actual => None,
        _ => Some((path.to_owned(), render_json(expected), render_json(actual))),
    }
}

/// Compares a re-derived value with the recorded one: `None` when equal, else the first
/// differing field and both renderings.
fn compare<T: Serialize + PartialEq>(
    expected: &T,
    actual: &T,
) -> Option<(Option<String>, String, String)> {
    if expected == actual {
        return None;
    }
    let left = serde_json::to_value(expected).unwrap_or(serde_json::Value::Null);
    let right = serde_json::to_value(actual).unwrap_or(serde_json::Value::Null);
    match first_json_difference("", &left, &right) {
        Some((field, expected, actual)) => Some((
            Some(field).filter(|field| !field.is_empty()),
            expected,
            actual,
        )),
        None => Some((None, render_json(&left), render_json(&right))),
    }
}

fn decode_pipeline(event: &EventEnvelope) -> Result<PipelineEvent, String> {
    PipelineEvent::from_payload(&event.event_type, event.schema_version, &event.payload)
        .map_err(|error| error.to_string())
}

/// Parses `stage/<stage>/<stream id>/<sequence>`.
fn parse_stage_key(key: &str) -> Option<(Stage, String, u64)> {
    let rest = key.strip_prefix("stage/")?;
    let (stage, rest) = rest.split_once('/')?;
    let (stream_id, sequence) = rest.rsplit_once('/')?;
    Some((
        Stage::parse(stage)?,
        stream_id.to_owned(),
        sequence.parse().ok()?,
    ))
}

/// An incident stream as [`Verifier::fold_verified`] found it.
enum Folded {
    /// No events.
    Absent,
    /// Its chain, an event or its stream id does not verify (reported where it is stored).
    Damaged,
    /// The folded incident.
    Incident(Box<Incident>),
}

/// The state kept while reading one group stream.
#[derive(Default)]
struct GroupScan {
    detections: Vec<Detection>,
    /// The detections of one other group (the window before), read once.
    other: Option<(String, Vec<Detection>)>,
}

impl<'a, S: StoreRead> Verifier<'a, S> {
    fn diverge(
        &mut self,
        at: At<'_>,
        kind: DivergenceKind,
        field: Option<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.report.divergences_total += 1;
        let kept = if kind.is_integrity() {
            &mut self.integrity
        } else {
            &mut self.report.divergences
        };
        if kept.len() < self.divergences_max {
            kept.push(Divergence {
                stream_id: at.stream_id.map(render),
                sequence: at.sequence,
                kind,
                // Every text is cut to DIVERGENCE_VALUE_LEN_MAX, so a report (and a cursor)
                // stays bounded whatever the store holds: field paths can carry stored
                // keys, details can quote decoder errors.
                record: at.record.as_deref().map(render),
                field: field.as_deref().map(render),
                expected: render(&expected.into()),
                actual: render(&actual.into()),
                detail: render(&detail.into()),
            });
        }
    }

    /// Records a decision mismatch when `expected != actual`; returns whether they matched.
    fn check_equal<T: Serialize + PartialEq>(
        &mut self,
        at: At<'_>,
        kind: DivergenceKind,
        prefix: &str,
        expected: &T,
        actual: &T,
        detail: &str,
    ) -> bool {
        match compare(expected, actual) {
            None => true,
            Some((field, expected, actual)) => {
                let field = match field {
                    Some(field) if prefix.is_empty() => Some(field),
                    Some(field) => Some(format!("{prefix}.{field}")),
                    None => Some(prefix.to_owned()).filter(|prefix| !prefix.is_empty()),
                };
                self.diverge(at, kind, field, expected, actual, detail);
                false
            }
        }
    }

    async fn read_event(
        &self,
        stream_id: &str,
        sequence: u64,
    ) -> Result<Option<EventEnvelope>, StoreError> {
        let mut events = self.store.read_stream(stream_id, sequence, 1).await?;
        Ok(events.pop().filter(|event| event.sequence == sequence))
    }

    // ---------------------------------------------------------------------------------
    // Pending work
    // ---------------------------------------------------------------------------------

    /// The report as it stands: integrity divergences first, then the rest, at most
    /// `divergences_max` in all; the pending work this slice read.
    fn finished_report(&self) -> VerifyReport {
        let mut report = self.report.clone();
        let mut divergences = self.integrity.clone();
        divergences.append(&mut report.divergences);
        divergences.truncate(self.divergences_max);
        report.divergences = divergences;
        report.pending = self.pending.clone();
        if let Some(first) = report
            .divergences
            .iter()
            .find(|divergence| divergence.stream_id.is_some())
        {
            report.first_divergent_stream = first.stream_id.clone();
            report.first_divergent_sequence = first.sequence;
        }
        report
    }

    async fn load_pending(&mut self) -> Result<(), StoreError> {
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .store
                .pending_work(cursor.as_deref(), LIST_PAGE_SIZE)
                .await?;
            for item in page.items {
                self.pending_keys.insert(item.key());
                self.pending.push(item);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn check_pending_inputs(&mut self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        for item in &pending {
            let input = &item.input;
            match self.read_event(&input.stream_id, input.sequence).await? {
                Some(event) if event.hash == input.hash && item.stage.consumes(&event.event_type) => {}
                // A page is queued for exactly the events that page a human; a page item on
                // any other event would send a page nobody asked for.
                Some(event) if event.hash == input.hash => self.diverge(
                    At::event(&input.stream_id, input.sequence).with_record(format!("work/{}", item.key())),
                    DivergenceKind::InputUnavailable,
                    Some("event_type".to_owned()),
                    item.stage.input_event_types().join(" or "),
                    event.event_type.clone(),
                    format!(
                        "a pending {} work item names an event its stage never consumes",
                        item.stage.as_str()
                    ),
                ),
                Some(event) => self.diverge(
                    At::event(&input.stream_id, input.sequence).with_record(format!("work/{}", item.key())),
                    DivergenceKind::InputUnavailable,
                    Some("hash".to_owned()),
                    event.hash.to_hex(),
                    input.hash.to_hex(),
                    "a pending work item names this event with another hash than the stored event's",
                ),
                None => self.diverge(
                    At::event(&input.stream_id, input.sequence).with_record(format!("work/{}", item.key())),
                    DivergenceKind::InputUnavailable,
                    None,
                    "the event",
                    "(absent)",
                    "a pending work item names an event that is not stored",
                ),
            }
        }
        self.pending = pending;
        Ok(())
    }

    /// Checks that a stage consumed `event` (its idempotency record exists) or that the
    /// work is still queued.
    async fn check_consumed(
        &mut self,
        stage: Stage,
        event: &EventEnvelope,
    ) -> Result<(), StoreError> {
        let item = WorkItem {
            stage,
            input: event.pointer(),
        };
        let work_key = item.key();
        if self.pending_keys.contains(&work_key) {
            return Ok(());
        }
        let key = format!("stage/{work_key}");
        if self.store.idempotency(&key).await?.is_none() {
            self.diverge(
                At::event(&event.stream_id, event.sequence).with_record(key),
                DivergenceKind::WorkLost,
                None,
                format!("consumed by the {} stage, or queued for it", stage.as_str()),
                "neither consumed nor queued",
                format!(
                    "this {} was never carried through the {} stage and no work item is queued for it",
                    event.event_type,
                    stage.as_str()
                ),
            );
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // Streams
    // ---------------------------------------------------------------------------------

    /// Checks one page of streams; returns how many and the cursor of the next page.
    async fn streams_page(
        &mut self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(usize, Option<String>), StoreError> {
        let page = self.store.list_streams(cursor, limit).await?;
        for stream_id in &page.items {
            self.report.streams += 1;
            match self.check_stream(stream_id).await {
                Ok(()) => {}
                // A store that checks what it reads back (DynamoDB re-hashes every event)
                // refuses an altered item: that is a finding about this stream, not a
                // reason to stop verifying the others.
                Err(StoreError::Corrupt(reason)) => self.unreadable(stream_id, &reason),
                Err(other) => return Err(other),
            }
        }
        Ok((page.items.len(), page.next))
    }

    fn unreadable(&mut self, stream_id: &str, reason: &str) {
        self.diverge(
            At::stream(stream_id),
            DivergenceKind::ChainBroken,
            None,
            "events that read back as they were written",
            render(reason),
            "the store refuses to read this stream back: an item was altered after it was \
             written; nothing in this stream can be trusted",
        );
    }

    fn chain_broken(&mut self, error: &ChainError) {
        let (stream_id, sequence, field, expected, actual) = match error {
            ChainError::WrongStream {
                stream_id,
                position,
                found,
            } => (
                stream_id,
                *position,
                "stream_id",
                stream_id.clone(),
                found.clone(),
            ),
            ChainError::SequenceGap {
                stream_id,
                expected,
                found,
            } => (
                stream_id,
                *expected,
                "sequence",
                expected.to_string(),
                found.to_string(),
            ),
            ChainError::BrokenLink {
                stream_id,
                sequence,
                expected,
                found,
                ..
            } => (
                stream_id,
                *sequence,
                "previous_hash",
                expected.to_hex(),
                found.to_hex(),
            ),
            ChainError::HashMismatch {
                stream_id,
                sequence,
                stored,
                computed,
            } => (
                stream_id,
                *sequence,
                "hash",
                computed.to_hex(),
                stored.to_hex(),
            ),
        };
        let stream_id = stream_id.clone();
        self.diverge(
            At::event(&stream_id, sequence),
            DivergenceKind::ChainBroken,
            Some(field.to_owned()),
            expected,
            actual,
            format!("{error}; nothing after this point of the stream can be trusted"),
        );
    }

    /// Verifies one stream page by page: its id, its chain, each event's decoding and
    /// place, then the decisions and projections it holds. Stops checking a stream at its
    /// first integrity failure.
    async fn check_stream(&mut self, stream_id: &str) -> Result<(), StoreError> {
        let kind = StreamKind::of(stream_id);
        if kind.is_none() {
            self.diverge(
                At::stream(stream_id),
                DivergenceKind::UnknownStream,
                Some("stream_id".to_owned()),
                "signal:, ruleset:, model:, group: or incident: followed by a SHA-256 hex digest",
                stream_id,
                "opx never writes a stream with this id; something else wrote to the store",
            );
        }
        let mut chain = ChainVerifier::new(stream_id);
        let mut signal: Option<Signal> = None;
        let mut incident: Option<Incident> = None;
        let mut group = GroupScan::default();
        let mut semantics_ok = true;
        loop {
            let from = chain.verified_count() + 1;
            let page = self
                .store
                .read_stream(stream_id, from, READ_PAGE_SIZE_MAX)
                .await?;
            let done = page.len() < READ_PAGE_SIZE_MAX;
            for event in &page {
                if let Err(error) = chain.push(event) {
                    self.chain_broken(&error);
                    return Ok(());
                }
                self.report.events += 1;
                if !semantics_ok {
                    continue;
                }
                semantics_ok = match kind {
                    Some(StreamKind::Signal) => self.signal_event(event, &mut signal).await?,
                    Some(StreamKind::RuleSet) => {
                        self.recorded_event(event, RuleSetRecorded::EVENT_TYPE)
                    }
                    Some(StreamKind::Model) => {
                        self.recorded_event(event, ConfidenceModelRecorded::EVENT_TYPE)
                    }
                    Some(StreamKind::Group) => {
                        self.group_event_first_pass(event, &mut group).await?
                    }
                    Some(StreamKind::Incident) => self.incident_event(event, &mut incident).await?,
                    None => false,
                };
            }
            if done || page.is_empty() {
                break;
            }
        }
        if !semantics_ok {
            return Ok(());
        }
        match kind {
            Some(StreamKind::RuleSet) => {
                if let Some(hash) = stream_id
                    .strip_prefix("ruleset:")
                    .and_then(Digest::from_hex)
                {
                    if let Err(reason) = self.ruleset(&hash).await? {
                        self.diverge(
                            At::event(stream_id, 1),
                            DivergenceKind::UndecodableEvent,
                            None,
                            "a rule set that compiles to its recorded hash",
                            reason.clone(),
                            format!("the recorded rule set is unusable: {reason}"),
                        );
                    }
                }
            }
            Some(StreamKind::Model) => {
                if let Some(hash) = stream_id.strip_prefix("model:").and_then(Digest::from_hex) {
                    if let Err(reason) = self.model(&hash).await? {
                        self.diverge(
                            At::event(stream_id, 1),
                            DivergenceKind::UndecodableEvent,
                            None,
                            "a valid model whose hash is the recorded one",
                            reason.clone(),
                            format!("the recorded confidence model is unusable: {reason}"),
                        );
                    }
                }
            }
            Some(StreamKind::Group) => {
                self.group_second_pass(stream_id, chain.verified_count(), group)
                    .await?
            }
            Some(StreamKind::Incident) => {
                self.incident_projections(stream_id, chain.verified_count(), incident)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    fn undecodable(&mut self, event: &EventEnvelope, reason: &str) {
        self.diverge(
            At::event(&event.stream_id, event.sequence),
            DivergenceKind::UndecodableEvent,
            Some("payload".to_owned()),
            format!(
                "{} schema {} payload",
                event.event_type, event.schema_version
            ),
            render(&String::from_utf8_lossy(&event.payload)),
            format!("the payload does not decode as its declared type: {reason}"),
        );
    }

    fn misplaced(
        &mut self,
        event: &EventEnvelope,
        expected: impl Into<String>,
        detail: impl Into<String>,
    ) {
        let actual = event.event_type.clone();
        self.diverge(
            At::event(&event.stream_id, event.sequence),
            DivergenceKind::MisplacedEvent,
            Some("event_type".to_owned()),
            expected,
            actual,
            detail,
        );
    }

    /// Event 1 of a `ruleset:` or `model:` stream; there is no event 2.
    fn recorded_event(&mut self, event: &EventEnvelope, wanted: &str) -> bool {
        if event.sequence != 1 || event.event_type != wanted {
            self.misplaced(
                event,
                format!("one {wanted} at sequence 1"),
                "a content-addressed stream holds exactly one recording event",
            );
            return false;
        }
        if let Err(reason) = decode_pipeline(event) {
            self.undecodable(event, &reason);
            return false;
        }
        true
    }

    async fn signal_event(
        &mut self,
        event: &EventEnvelope,
        signal: &mut Option<Signal>,
    ) -> Result<bool, StoreError> {
        let decoded = match decode_pipeline(event) {
            Ok(decoded) => decoded,
            Err(reason) => {
                self.undecodable(event, &reason);
                return Ok(false);
            }
        };
        match (event.sequence, decoded, signal.as_ref()) {
            (1, PipelineEvent::SignalAccepted(accepted), None) => {
                let expected_stream = signal_stream(&accepted.signal.id);
                if expected_stream != event.stream_id {
                    self.diverge(
                        At::event(&event.stream_id, 1),
                        DivergenceKind::MisplacedEvent,
                        Some("signal.id".to_owned()),
                        expected_stream,
                        event.stream_id.clone(),
                        "the accepted signal belongs to another stream than the one holding it",
                    );
                    return Ok(false);
                }
                let key = format!("signal/{}", accepted.signal.id);
                if self.store.idempotency(&key).await?.is_none() {
                    self.diverge(
                        At::event(&event.stream_id, 1).with_record(key),
                        DivergenceKind::IdempotencyMismatch,
                        None,
                        "the signal's idempotency record",
                        "(absent)",
                        "an accepted signal has no idempotency record (they are written in one commit)",
                    );
                }
                self.check_consumed(Stage::Detect, event).await?;
                *signal = Some(accepted.signal);
                Ok(true)
            }
            (2, PipelineEvent::SignalEvaluated(evaluated), Some(accepted)) => {
                let accepted = accepted.clone();
                self.check_evaluated(event, &accepted, &evaluated).await?;
                self.check_consumed(Stage::Correlate, event).await?;
                Ok(true)
            }
            _ => {
                self.misplaced(
                    event,
                    "SignalAccepted at sequence 1, SignalEvaluated at sequence 2, nothing after",
                    "a signal stream holds its acceptance and its evaluation only",
                );
                Ok(false)
            }
        }
    }

    async fn ruleset(&mut self, hash: &Digest) -> Result<Loaded<RuleSet>, StoreError> {
        if let Some(loaded) = self.rulesets.get(hash) {
            return Ok(loaded.clone());
        }
        let stream_id = ruleset_stream(hash);
        let loaded = match self.read_event(&stream_id, 1).await? {
            None => Err(format!("{stream_id} holds no event")),
            Some(event) => match decode_pipeline(&event) {
                Ok(PipelineEvent::RuleSetRecorded(recorded)) => {
                    let files: Vec<RuleFile> = recorded
                        .files
                        .iter()
                        .map(|file| RuleFile {
                            path: file.path.clone(),
                            text: file.text.clone(),
                        })
                        .collect();
                    match RuleSet::from_files(&files) {
                        Err(error) => Err(format!("{stream_id}: the recorded files do not compile: {error}")),
                        Ok(rules) if rules.hash() != *hash || recorded.hash != *hash => Err(format!(
                            "{stream_id}: the recorded files compile to rule set {} (recorded hash {})",
                            rules.hash(),
                            recorded.hash
                        )),
                        Ok(rules) => Ok(rules),
                    }
                }
                Ok(other) => Err(format!(
                    "{stream_id}#1 is {}, not RuleSetRecorded",
                    other.event_type()
                )),
                Err(reason) => Err(format!("{stream_id}#1: {reason}")),
            },
        };
        self.rulesets.insert(*hash, loaded.clone());
        Ok(loaded)
    }

    async fn model(&mut self, hash: &Digest) -> Result<Loaded<ConfidenceModel>, StoreError> {
        if let Some(loaded) = self.models.get(hash) {
            return Ok(loaded.clone());
        }
        let stream_id = model_stream(hash);
        let loaded = match self.read_event(&stream_id, 1).await? {
            None => Err(format!("{stream_id} holds no event")),
            Some(event) => match decode_pipeline(&event) {
                Ok(PipelineEvent::ConfidenceModelRecorded(recorded)) => {
                    if let Err(error) = recorded.model.validate() {
                        Err(format!(
                            "{stream_id}: the recorded model is invalid: {error}"
                        ))
                    } else if recorded.model.hash() != *hash || recorded.hash != *hash {
                        Err(format!(
                            "{stream_id}: the recorded model hashes to {} (recorded hash {})",
                            recorded.model.hash(),
                            recorded.hash
                        ))
                    } else {
                        Ok(recorded.model)
                    }
                }
                Ok(other) => Err(format!(
                    "{stream_id}#1 is {}, not ConfidenceModelRecorded",
                    other.event_type()
                )),
                Err(reason) => Err(format!("{stream_id}#1: {reason}")),
            },
        };
        self.models.insert(*hash, loaded.clone());
        Ok(loaded)
    }

    async fn check_evaluated(
        &mut self,
        event: &EventEnvelope,
        signal: &Signal,
        evaluated: &SignalEvaluated,
    ) -> Result<(), StoreError> {
        let at = || At::event(&event.stream_id, event.sequence);
        if evaluated.signal_id != signal.id {
            self.diverge(
                at(),
                DivergenceKind::DecisionMismatch,
                Some("signal_id".to_owned()),
                signal.id.to_string(),
                evaluated.signal_id.to_string(),
                "the evaluation names another signal than the one accepted in this stream",
            );
            return Ok(());
        }
        let rules = match self.ruleset(&evaluated.ruleset_hash).await? {
            Ok(rules) => rules,
            Err(reason) => {
                self.diverge(
                    at(),
                    DivergenceKind::InputUnavailable,
                    Some("ruleset_hash".to_owned()),
                    format!("rule set {} recorded in the store", evaluated.ruleset_hash),
                    reason.clone(),
                    "the rule set this evaluation names cannot be loaded, so detection cannot be re-derived",
                );
                return Ok(());
            }
        };
        self.report.decisions_rederived += 1;
        let rederived = detect(&rules, signal);
        self.check_equal(
            at(),
            DivergenceKind::DecisionMismatch,
            "outcome",
            &rederived,
            &evaluated.outcome,
            "re-running detection on the recorded signal with the recorded rule set gives another outcome",
        );
        let correlate = WorkItem {
            stage: Stage::Correlate,
            input: event.pointer(),
        };
        // A recovery whose correlate step is still queued is not in the projection yet.
        if evaluated.outcome == DetectionOutcome::NotDetected(NotDetectedReason::Recovery)
            && !self.pending_keys.contains(&correlate.key())
        {
            self.check_recovery_kept(event, signal).await?;
        }
        Ok(())
    }

    /// The stored recoveries of the signal's service hold this recovery, or its bounds
    /// account for its absence: adding it changes nothing ([`ServiceRecoveries::insert`]).
    /// With the check of every stored document in [`Verifier::service_recoveries_page`]
    /// (canonical, and every kept recovery is a recovery signal of the service), this
    /// proves the document equals its rebuild from all recovery signals, without holding
    /// them all: the document is a function of the set seen, and inserting is idempotent.
    async fn check_recovery_kept(
        &mut self,
        event: &EventEnvelope,
        signal: &Signal,
    ) -> Result<(), StoreError> {
        let key = service_recoveries_key(&signal.environment, &signal.service);
        let record = format!("{PROJECTION_SERVICE_RECOVERIES}/{key}");
        let seen = RecoverySeen::of(signal);
        let at = || At::event(&event.stream_id, event.sequence).with_record(record.clone());
        let seen_json = serde_json::to_value(&seen).unwrap_or(serde_json::Value::Null);
        let Some(stored) = self
            .store
            .projection(PROJECTION_SERVICE_RECOVERIES, &key)
            .await?
        else {
            self.report.projections_checked += 1;
            self.diverge(
                at(),
                DivergenceKind::ProjectionMismatch,
                None,
                render_json(&seen_json),
                "(absent)",
                "the recoveries seen of this service are not stored, though this recovery was correlated",
            );
            return Ok(());
        };
        // A document that does not decode is reported once, by the projection check.
        let Ok(kept) = serde_json::from_slice::<ServiceRecoveries>(&stored.document) else {
            return Ok(());
        };
        let mut with = kept.clone();
        with.insert(seen.clone());
        if with != kept {
            let actual = kept
                .alarms
                .get(&seen.alarm)
                .and_then(|kept| serde_json::to_string(kept).ok())
                .unwrap_or_else(|| "(absent)".to_owned());
            self.diverge(
                at(),
                DivergenceKind::ProjectionMismatch,
                Some(format!("alarms.{}", seen.alarm)),
                render_json(&seen_json),
                render(&actual),
                "the stored recoveries of this service lack this recovery, and their bounds do not account for it",
            );
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // Groups
    // ---------------------------------------------------------------------------------

    async fn group_event_first_pass(
        &mut self,
        event: &EventEnvelope,
        scan: &mut GroupScan,
    ) -> Result<bool, StoreError> {
        let decoded = match decode_pipeline(event) {
            Ok(decoded) => decoded,
            Err(reason) => {
                self.undecodable(event, &reason);
                return Ok(false);
            }
        };
        match decoded {
            PipelineEvent::DetectionCorrelated(correlated) => {
                self.check_correlated(event, &correlated).await?;
                self.check_consumed(Stage::Assess, event).await?;
                if scan.detections.len() < GROUP_EVENTS_READ_MAX {
                    scan.detections.push(correlated.detection);
                }
                Ok(true)
            }
            PipelineEvent::ConfidenceAssessed(_) => {
                self.check_consumed(Stage::Promote, event).await?;
                Ok(true)
            }
            PipelineEvent::PromotionDecided(_) => Ok(true),
            other => {
                self.misplaced(
                    event,
                    "DetectionCorrelated, ConfidenceAssessed or PromotionDecided",
                    format!("a group stream never holds {}", other.event_type()),
                );
                Ok(false)
            }
        }
    }

    async fn check_correlated(
        &mut self,
        event: &EventEnvelope,
        correlated: &DetectionCorrelated,
    ) -> Result<(), StoreError> {
        let at = || At::event(&event.stream_id, event.sequence);
        let detection = &correlated.detection;
        self.report.decisions_rederived += 1;
        let window_ms = match WindowMs::new(correlated.window_ms) {
            Ok(window_ms) => window_ms,
            Err(error) => {
                self.diverge(
                    at(),
                    DivergenceKind::DecisionMismatch,
                    Some("window_ms".to_owned()),
                    "a valid window length",
                    correlated.window_ms.to_string(),
                    format!("the recorded window length is invalid: {error}"),
                );
                return Ok(());
            }
        };
        let expected_start = window_start(detection.event_time, window_ms);
        if !self.check_equal(
            at(),
            DivergenceKind::DecisionMismatch,
            "window_start",
            &expected_start,
            &correlated.window_start,
            "the window start is not the detection's event time aligned down to the window length",
        ) {
            return Ok(());
        }
        let expected_stream = group_stream(&CorrelationKey::of(detection).group_id(expected_start));
        if expected_stream != event.stream_id {
            self.diverge(
                at(),
                DivergenceKind::MisplacedEvent,
                Some("stream_id".to_owned()),
                expected_stream,
                event.stream_id.clone(),
                "the detection was correlated into another group than its key and window give",
            );
            return Ok(());
        }
        let signal_stream_id = signal_stream(&detection.signal_id);
        let evaluated = match self.read_event(&signal_stream_id, 2).await? {
            Some(source) => match decode_pipeline(&source) {
                Ok(PipelineEvent::SignalEvaluated(evaluated)) => Some(evaluated),
                _ => None,
            },
            None => None,
        };
        match evaluated {
            Some(SignalEvaluated {
                outcome: DetectionOutcome::Detected(recorded),
                ..
            }) => {
                self.check_equal(
                    at(),
                    DivergenceKind::DecisionMismatch,
                    "detection",
                    &recorded,
                    detection,
                    "the correlated detection differs from the detection its signal's evaluation recorded",
                );
            }
            _ => self.diverge(
                at(),
                DivergenceKind::InputUnavailable,
                Some("detection.signal_id".to_owned()),
                format!("{signal_stream_id}#2 SignalEvaluated with a detection"),
                "absent, undecodable or not a detection",
                "the signal this detection names has no recorded detection",
            ),
        }
        Ok(())
    }

    /// The detections of another group stream, read once per group stream checked.
    async fn other_group<'g>(
        &self,
        other: &'g mut Option<(String, Vec<Detection>)>,
        stream_id: &str,
    ) -> Result<&'g [Detection], StoreError> {
        let cached = matches!(other, Some((id, _)) if id == stream_id);
        if !cached {
            let mut detections = Vec::new();
            let mut from = 1;
            loop {
                let page = self
                    .store
                    .read_stream(stream_id, from, READ_PAGE_SIZE_MAX)
                    .await?;
                let done = page.len() < READ_PAGE_SIZE_MAX;
                for event in &page {
                    from = event.sequence + 1;
                    if event.event_type == DetectionCorrelated::EVENT_TYPE
                        && detections.len() < GROUP_EVENTS_READ_MAX
                    {
                        if let Ok(PipelineEvent::DetectionCorrelated(correlated)) =
                            decode_pipeline(event)
                        {
                            detections.push(correlated.detection);
                        }
                    }
                }
                if done || page.is_empty() {
                    break;
                }
            }
            *other = Some((stream_id.to_owned(), detections));
        }
        Ok(other
            .as_ref()
            .map_or(&[][..], |(_, detections)| detections.as_slice()))
    }

    /// Rebuilds the bundle an assessment saw, from the detections of its group (`own`, the
    /// stream being checked, when it is that group) and of the window before.
    async fn bundle_of(
        &self,
        stream_id: &str,
        scan: &mut GroupScan,
        assessed: &ConfidenceAssessed,
        window_ms: WindowMs,
    ) -> Result<EvidenceBundle, StoreError> {
        let own_stream = group_stream(&assessed.key.group_id(assessed.window_start));
        let previous_stream = group_stream(
            &assessed
                .key
                .group_id(previous_window_start(assessed.window_start, window_ms)),
        );
        if own_stream == stream_id {
            // The usual case: no copy of either detection list.
            let previous = self.other_group(&mut scan.other, &previous_stream).await?;
            return Ok(EvidenceBundle::as_recorded(
                assessed.key.clone(),
                assessed.window_start,
                window_ms,
                previous.iter().chain(scan.detections.iter()).cloned(),
                &assessed.member_ids,
                assessed.truncated,
            ));
        }
        // An assessment stored outside its own group (reported where it is stored): both
        // lists come from other streams, so hold one copy.
        let previous = self
            .other_group(&mut scan.other, &previous_stream)
            .await?
            .to_vec();
        let own = self.other_group(&mut scan.other, &own_stream).await?;
        Ok(EvidenceBundle::as_recorded(
            assessed.key.clone(),
            assessed.window_start,
            window_ms,
            previous.iter().chain(own.iter()).cloned(),
            &assessed.member_ids,
            assessed.truncated,
        ))
    }

    async fn group_second_pass(
        &mut self,
        stream_id: &str,
        events: u64,
        mut scan: GroupScan,
    ) -> Result<(), StoreError> {
        let mut from = 1;
        while from <= events {
            let page = self
                .store
                .read_stream(stream_id, from, READ_PAGE_SIZE_MAX)
                .await?;
            if page.is_empty() {
                break;
            }
            for event in &page {
                from = event.sequence + 1;
                if event.sequence > events {
                    break;
                }
                match decode_pipeline(event) {
                    Ok(PipelineEvent::ConfidenceAssessed(assessed)) => {
                        self.check_assessed(event, &assessed, &mut scan).await?;
                    }
                    Ok(PipelineEvent::PromotionDecided(decided)) => {
                        self.check_decided(event, &decided, &mut scan).await?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn check_assessed(
        &mut self,
        event: &EventEnvelope,
        assessed: &ConfidenceAssessed,
        scan: &mut GroupScan,
    ) -> Result<(), StoreError> {
        let at = || At::event(&event.stream_id, event.sequence);
        let window_ms = match WindowMs::new(assessed.window_ms) {
            Ok(window_ms) => window_ms,
            Err(error) => {
                self.diverge(
                    at(),
                    DivergenceKind::DecisionMismatch,
                    Some("window_ms".to_owned()),
                    "a valid window length",
                    assessed.window_ms.to_string(),
                    format!("the recorded window length is invalid: {error}"),
                );
                return Ok(());
            }
        };
        let expected_stream = group_stream(&assessed.key.group_id(assessed.window_start));
        if expected_stream != event.stream_id {
            self.diverge(
                at(),
                DivergenceKind::MisplacedEvent,
                Some("window_start".to_owned()),
                expected_stream,
                event.stream_id.clone(),
                "the assessment is stored in another group than its key and window give",
            );
            return Ok(());
        }
        let model = match self.model(&assessed.model_hash).await? {
            Ok(model) => model,
            Err(reason) => {
                self.diverge(
                    at(),
                    DivergenceKind::InputUnavailable,
                    Some("model_hash".to_owned()),
                    format!("model {} recorded in the store", assessed.model_hash),
                    reason.clone(),
                    "the confidence model this assessment names cannot be loaded, so it cannot be re-derived",
                );
                return Ok(());
            }
        };
        self.report.decisions_rederived += 1;
        let bundle = self
            .bundle_of(&event.stream_id, scan, assessed, window_ms)
            .await?;
        let member_ids: Vec<DetectionId> = bundle.members.iter().map(|member| member.id).collect();
        if !self.check_equal(
            at(),
            DivergenceKind::DecisionMismatch,
            "member_ids",
            &member_ids,
            &assessed.member_ids,
            "the recorded members are not all found among the detections of this window and the one before",
        ) {
            return Ok(());
        }
        let rederived = assess(&model, &bundle);
        self.check_equal(
            at(),
            DivergenceKind::DecisionMismatch,
            "assessment",
            &rederived,
            &assessed.assessment,
            "re-assessing the recorded members with the recorded model gives another assessment",
        );
        Ok(())
    }

    async fn check_decided(
        &mut self,
        event: &EventEnvelope,
        decided: &PromotionDecided,
        scan: &mut GroupScan,
    ) -> Result<(), StoreError> {
        let at = || At::event(&event.stream_id, event.sequence);
        let pointer = &decided.assessment_event;
        let assessed = match self
            .read_event(&pointer.stream_id, pointer.sequence)
            .await?
        {
            Some(source) if source.hash == pointer.hash => match decode_pipeline(&source) {
                Ok(PipelineEvent::ConfidenceAssessed(assessed)) => Some(assessed),
                _ => None,
            },
            _ => None,
        };
        let Some(assessed) = assessed else {
            self.diverge(
                at(),
                DivergenceKind::InputUnavailable,
                Some("assessment_event".to_owned()),
                format!(
                    "{}#{} ConfidenceAssessed with hash {}",
                    pointer.stream_id, pointer.sequence, pointer.hash
                ),
                "absent, with another hash, or not an assessment",
                "the assessment this decision names is not stored as recorded",
            );
            return Ok(());
        };
        let Ok(window_ms) = WindowMs::new(assessed.window_ms) else {
            // The assessment itself is reported where it is stored.
            return Ok(());
        };
        self.report.decisions_rederived += 1;
        // The promote stage rebuilds its bundle from the recorded members only (without
        // the truncation flag); re-derive exactly what it did.
        let bundle = self
            .bundle_of(&event.stream_id, scan, &assessed, window_ms)
            .await?;
        let decision = &decided.decision;
        let rederived = promotion::decide(&GateInput {
            bundle: &bundle,
            assessment: &assessed.assessment,
            open_incident: decision.saw_open_incident,
            closed_generations: decision.generation,
        });
        if !self.check_equal(
            at(),
            DivergenceKind::DecisionMismatch,
            "decision",
            &rederived,
            decision,
            "re-running the promotion gate on the recorded bundle, assessment and what it saw gives another decision",
        ) {
            return Ok(());
        }
        if let (Outcome::Promote, Some(incident_id)) = (decision.outcome, decision.incident_id) {
            let incident_stream = incident::stream_id(&incident_id);
            let opened = match self.read_event(&incident_stream, 1).await? {
                Some(first) => match IncidentEvent::from_payload(
                    &first.event_type,
                    first.schema_version,
                    &first.payload,
                ) {
                    Ok(IncidentEvent::IncidentOpened(opened)) => Some(opened),
                    _ => None,
                },
                None => None,
            };
            let expected = format!(
                "{incident_stream}#1 IncidentOpened with decision hash {}",
                decision.hash()
            );
            match opened {
                Some(opened)
                    if opened.incident_id == incident_id
                        && opened.decision_hash == decision.hash() => {}
                Some(opened) => self.diverge(
                    at(),
                    DivergenceKind::DecisionMismatch,
                    Some("decision.incident_id".to_owned()),
                    expected,
                    format!(
                        "IncidentOpened of {} with decision hash {}",
                        opened.incident_id, opened.decision_hash
                    ),
                    "the incident this PROMOTE names was opened by another decision",
                ),
                None => self.diverge(
                    at(),
                    DivergenceKind::DecisionMismatch,
                    Some("decision.incident_id".to_owned()),
                    expected,
                    "(absent)",
                    "this PROMOTE decision opened no incident (they are written in one commit)",
                ),
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // Incidents
    // ---------------------------------------------------------------------------------

    async fn incident_event(
        &mut self,
        event: &EventEnvelope,
        state: &mut Option<Incident>,
    ) -> Result<bool, StoreError> {
        let decoded = match IncidentEvent::from_payload(
            &event.event_type,
            event.schema_version,
            &event.payload,
        ) {
            Ok(decoded) => decoded,
            Err(error) => {
                self.undecodable(event, &error.to_string());
                return Ok(false);
            }
        };
        let next = match incident::apply(state.take(), &decoded) {
            Ok(next) => next,
            Err(error) => {
                self.misplaced(
                    event,
                    "an event that applies to the incident folded so far",
                    format!("the event does not apply to the incident: {error}"),
                );
                return Ok(false);
            }
        };
        if next.stream_id() != event.stream_id {
            self.diverge(
                At::event(&event.stream_id, event.sequence),
                DivergenceKind::MisplacedEvent,
                Some("incident_id".to_owned()),
                event.stream_id.clone(),
                next.stream_id(),
                "the event belongs to another incident's stream",
            );
            return Ok(false);
        }
        match &decoded {
            IncidentEvent::IncidentOpened(opened) => {
                self.check_opened_by_promotion(event, opened).await?;
            }
            IncidentEvent::RecoveryRecorded(recovery) => {
                self.check_recovery(event, &next, recovery).await?;
            }
            _ => {}
        }
        *state = Some(next);
        Ok(true)
    }

    /// A recorded recovery must be an accepted recovery signal of the incident's service
    /// that belongs on it ([`Incident::is_recovered_by`]).
    async fn check_recovery(
        &mut self,
        event: &EventEnvelope,
        incident: &Incident,
        recovery: &incident::RecoveryRecorded,
    ) -> Result<(), StoreError> {
        let at = || At::event(&event.stream_id, event.sequence);
        self.report.decisions_rederived += 1;
        let stream_id = signal_stream(&recovery.signal_id);
        let events = self.store.read_stream(&stream_id, 1, 2).await?;
        let accepted = events
            .first()
            .and_then(|first| match decode_pipeline(first) {
                Ok(PipelineEvent::SignalAccepted(accepted)) => Some(accepted.signal),
                _ => None,
            });
        let evaluated_recovery = events.get(1).is_some_and(|second| {
            matches!(
                decode_pipeline(second),
                Ok(PipelineEvent::SignalEvaluated(SignalEvaluated {
                    outcome: DetectionOutcome::NotDetected(NotDetectedReason::Recovery),
                    ..
                }))
            )
        });
        let Some(signal) = accepted.filter(|_| evaluated_recovery) else {
            self.diverge(
                at(),
                DivergenceKind::DecisionMismatch,
                Some("signal_id".to_owned()),
                format!("{stream_id} holding a signal evaluated as a recovery"),
                "(absent, or not evaluated as a recovery)",
                "the incident records a recovery that no recovery signal accounts for",
            );
            return Ok(());
        };
        let seen = RecoverySeen::of(&signal);
        let recorded = RecoverySeen {
            event_time: recovery.event_time,
            signal_id: recovery.signal_id,
            alarm: recovery.alarm.clone(),
            alarm_name: recovery.alarm_name.clone(),
        };
        self.check_equal(
            at(),
            DivergenceKind::DecisionMismatch,
            "recovery",
            &seen,
            &recorded,
            "the recorded recovery differs from the recovery signal it names",
        );
        let same_service =
            signal.environment == incident.environment && signal.service == incident.service;
        if !same_service || !incident.is_recovered_by(&recovery.alarm, recovery.event_time) {
            self.diverge(
                at(),
                DivergenceKind::DecisionMismatch,
                Some("alarm".to_owned()),
                "a recovery of an evidence alarm of this service, no earlier than its detection",
                format!(
                    "{} of {}/{} at {}",
                    recovery.alarm, signal.environment, signal.service, recovery.event_time.0
                ),
                "the incident records a recovery that does not belong on it",
            );
        }
        Ok(())
    }

    /// Finds the PROMOTE decision that opened the incident in its group's stream.
    async fn check_opened_by_promotion(
        &mut self,
        event: &EventEnvelope,
        opened: &incident::IncidentOpened,
    ) -> Result<(), StoreError> {
        let group = group_stream(&opened.group_id);
        let mut from = 1;
        loop {
            let page = self
                .store
                .read_stream(&group, from, READ_PAGE_SIZE_MAX)
                .await?;
            let done = page.len() < READ_PAGE_SIZE_MAX;
            for candidate in &page {
                from = candidate.sequence + 1;
                if candidate.event_type != PromotionDecided::EVENT_TYPE {
                    continue;
                }
                if let Ok(PipelineEvent::PromotionDecided(decided)) = decode_pipeline(candidate) {
                    let decision = &decided.decision;
                    if decision.outcome == Outcome::Promote
                        && decision.incident_id == Some(opened.incident_id)
                        && decision.hash() == opened.decision_hash
                    {
                        return Ok(());
                    }
                }
            }
            if done || page.is_empty() {
                break;
            }
        }
        self.diverge(
            At::event(&event.stream_id, event.sequence),
            DivergenceKind::DecisionMismatch,
            Some("decision_hash".to_owned()),
            format!(
                "a PROMOTE decision in {group} with hash {}",
                opened.decision_hash
            ),
            "(none)",
            "this incident was opened without a recorded PROMOTE decision",
        );
        Ok(())
    }

    async fn incident_projections(
        &mut self,
        stream_id: &str,
        head: u64,
        state: Option<Incident>,
    ) -> Result<(), StoreError> {
        let Some(incident) = state else { return Ok(()) };
        let key = incident.id.to_string();
        let record = format!("{PROJECTION_INCIDENT}/{key}");
        let document = serde_json::to_vec(&incident).unwrap_or_default();
        self.report.projections_checked += 1;
        let stored = self.store.projection(PROJECTION_INCIDENT, &key).await?;
        self.compare_projection(
            At::event(stream_id, head).with_record(record),
            &document,
            head,
            stored.as_ref(),
        );
        if incident.state == IncidentState::Closed {
            self.check_generation_stored(&incident).await?;
        } else {
            let pointer_key = open_incident_key(&incident.environment, &incident.service);
            let pointer = OpenIncidentPointer {
                incident_id: incident.id,
                environment: incident.environment.clone(),
                service: incident.service.clone(),
            };
            let document = serde_json::to_vec(&pointer).unwrap_or_default();
            self.report.projections_checked += 1;
            let stored = self
                .store
                .projection(PROJECTION_OPEN_INCIDENT, &pointer_key)
                .await?;
            // The pointer is created once (version 1) and deleted on close, never updated.
            self.compare_projection(
                At::event(stream_id, head)
                    .with_record(format!("{PROJECTION_OPEN_INCIDENT}/{pointer_key}")),
                &document,
                1,
                stored.as_ref(),
            );
        }
        Ok(())
    }

    fn compare_projection(
        &mut self,
        at: At<'_>,
        document: &[u8],
        version: u64,
        stored: Option<&Projection>,
    ) {
        let Some(stored) = stored else {
            self.diverge(
                at,
                DivergenceKind::ProjectionMismatch,
                None,
                render(&String::from_utf8_lossy(document)),
                "(absent)",
                "the rebuilt projection is not stored",
            );
            return;
        };
        if stored.document != document {
            let rebuilt: serde_json::Value =
                serde_json::from_slice(document).unwrap_or(serde_json::Value::Null);
            let found = serde_json::from_slice::<serde_json::Value>(&stored.document)
                .ok()
                .and_then(|found| first_json_difference("", &rebuilt, &found));
            let (field, expected, actual) = match found {
                Some((field, expected, actual)) => (
                    Some(field).filter(|field| !field.is_empty()),
                    expected,
                    actual,
                ),
                None => (
                    Some("document".to_owned()),
                    String::from_utf8_lossy(document).into_owned(),
                    String::from_utf8_lossy(&stored.document).into_owned(),
                ),
            };
            self.diverge(
                at,
                DivergenceKind::ProjectionMismatch,
                field,
                expected,
                actual,
                "the stored projection document differs from its rebuild from events",
            );
            return;
        }
        if stored.version != version {
            self.diverge(
                at,
                DivergenceKind::ProjectionMismatch,
                Some("version".to_owned()),
                version.to_string(),
                stored.version.to_string(),
                "the stored projection version differs from its rebuild from events",
            );
        }
    }

    /// Checks one page of stored `service_recoveries` documents: each is canonical (equal
    /// to its rebuild from its own entries, so within its bounds) and every recovery it
    /// keeps is a correlated recovery signal of its service. See
    /// [`Verifier::check_recovery_kept`] for the other half. Only the document is
    /// compared: its version also counts the promotions that guarded on it.
    async fn service_recoveries_page(
        &mut self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(usize, Option<String>), StoreError> {
        let page = self
            .store
            .list_projections(PROJECTION_SERVICE_RECOVERIES, cursor, limit)
            .await?;
        for projection in &page.items {
            self.report.projections_checked += 1;
            let record = format!("{PROJECTION_SERVICE_RECOVERIES}/{}", projection.key);
            let kept: ServiceRecoveries = match serde_json::from_slice(&projection.document) {
                Ok(kept) => kept,
                Err(error) => {
                    self.diverge(
                        At::record(record),
                        DivergenceKind::ProjectionMismatch,
                        Some("document".to_owned()),
                        "the recoveries seen of a service",
                        render(&String::from_utf8_lossy(&projection.document)),
                        format!("the stored recoveries do not decode: {error}"),
                    );
                    continue;
                }
            };
            let mut rebuilt = ServiceRecoveries::default();
            for recovery in kept.alarms.values().flatten() {
                rebuilt.insert(recovery.clone());
            }
            let document = serde_json::to_vec(&rebuilt).unwrap_or_default();
            if projection.document != document {
                self.compare_projection(
                    At::record(record),
                    &document,
                    projection.version,
                    Some(projection),
                );
                continue;
            }
            for recovery in kept.alarms.values().flatten() {
                if let Some(reason) = self.recovery_unaccounted(&projection.key, recovery).await? {
                    let seen_json =
                        serde_json::to_value(recovery).unwrap_or(serde_json::Value::Null);
                    self.diverge(
                        At::event(&signal_stream(&recovery.signal_id), 2)
                            .with_record(record.clone()),
                        DivergenceKind::ProjectionMismatch,
                        Some(format!("alarms.{}", recovery.alarm)),
                        "(absent: no correlated recovery signal of this service accounts for it)",
                        render_json(&seen_json),
                        format!(
                            "the stored recoveries keep a recovery that is not recorded: {reason}"
                        ),
                    );
                    break;
                }
            }
        }
        Ok((page.items.len(), page.next))
    }

    /// Why a kept recovery is not a correlated recovery signal of the service with
    /// projection key `key`, or `None` when it is.
    async fn recovery_unaccounted(
        &mut self,
        key: &str,
        recovery: &RecoverySeen,
    ) -> Result<Option<String>, StoreError> {
        let stream_id = signal_stream(&recovery.signal_id);
        let events = self.store.read_stream(&stream_id, 1, 2).await?;
        let signal = events
            .first()
            .and_then(|first| match decode_pipeline(first) {
                Ok(PipelineEvent::SignalAccepted(accepted)) => Some(accepted.signal),
                _ => None,
            });
        let Some(signal) = signal else {
            return Ok(Some(format!("{stream_id} holds no accepted signal")));
        };
        let Some(evaluated) = events.get(1) else {
            return Ok(Some(format!("{stream_id} was never evaluated")));
        };
        if !matches!(
            decode_pipeline(evaluated),
            Ok(PipelineEvent::SignalEvaluated(SignalEvaluated {
                outcome: DetectionOutcome::NotDetected(NotDetectedReason::Recovery),
                ..
            }))
        ) {
            return Ok(Some(format!("{stream_id} is not evaluated as a recovery")));
        }
        let correlate = WorkItem {
            stage: Stage::Correlate,
            input: evaluated.pointer(),
        };
        if self.pending_keys.contains(&correlate.key()) {
            return Ok(Some(format!(
                "the recovery of {stream_id} is not correlated yet (its work is queued)"
            )));
        }
        if service_recoveries_key(&signal.environment, &signal.service) != key {
            return Ok(Some(format!(
                "{stream_id} is a recovery of {}/{}, another service",
                signal.environment, signal.service
            )));
        }
        if RecoverySeen::of(&signal) != *recovery {
            return Ok(Some(format!(
                "{stream_id} recovered at {} as alarm {}",
                signal.event_time.0, signal.alarm
            )));
        }
        Ok(None)
    }

    /// Checks one page of stored incident projections: each has a stream (one that does is
    /// compared with its rebuild while its stream is checked).
    async fn incident_projections_page(
        &mut self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(usize, Option<String>), StoreError> {
        let page = self
            .store
            .list_projections(PROJECTION_INCIDENT, cursor, limit)
            .await?;
        for projection in &page.items {
            let record = format!("{PROJECTION_INCIDENT}/{}", projection.key);
            let stream_id = format!("{}{}", incident::STREAM_ID_PREFIX, projection.key);
            if self.store.stream_head(&stream_id).await?.is_none() {
                self.report.projections_checked += 1;
                self.diverge(
                    At::stream(&stream_id).with_record(record),
                    DivergenceKind::ProjectionMismatch,
                    None,
                    "(absent: the incident has no events)",
                    render(&String::from_utf8_lossy(&projection.document)),
                    "a stored incident projection has no incident stream to rebuild it from",
                );
            }
        }
        Ok((page.items.len(), page.next))
    }

    /// Checks one page of open-incident pointers: each names an incident that is not CLOSED
    /// and whose key it is.
    async fn open_incidents_page(
        &mut self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(usize, Option<String>), StoreError> {
        let page = self
            .store
            .list_projections(PROJECTION_OPEN_INCIDENT, cursor, limit)
            .await?;
        for projection in &page.items {
            self.check_open_pointer(projection).await?;
        }
        Ok((page.items.len(), page.next))
    }

    /// Checks one page of group generations: each equals the number of CLOSED incidents of
    /// its group, counted generation by generation (see [`Verifier::closed_generations`]).
    /// A group with CLOSED incidents and no stored generation is found while the first of
    /// them is checked ([`Verifier::check_generation_stored`]).
    async fn group_generations_page(
        &mut self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(usize, Option<String>), StoreError> {
        let page = self
            .store
            .list_projections(PROJECTION_GROUP_GENERATION, cursor, limit)
            .await?;
        for projection in &page.items {
            self.report.projections_checked += 1;
            let record = format!("{PROJECTION_GROUP_GENERATION}/{}", projection.key);
            let group = Digest::from_hex(&projection.key).map(GroupId);
            let closed = match &group {
                Some(group) => match self.group_key(group).await? {
                    Some((environment, service)) => {
                        self.closed_generations(group, &environment, &service)
                            .await?
                            .0
                    }
                    None => 0,
                },
                None => 0,
            };
            let stream_id = group_stream_of_key(&projection.key);
            let at = At {
                stream_id: stream_id.as_deref(),
                sequence: None,
                record: Some(record),
            };
            if closed == 0 {
                self.diverge(
                    at,
                    DivergenceKind::ProjectionMismatch,
                    None,
                    "(absent: no incident of this group is CLOSED)",
                    render(&String::from_utf8_lossy(&projection.document)),
                    "a stored group generation has no CLOSED incident to rebuild it from",
                );
            } else {
                let document = serde_json::to_vec(&GroupGeneration { closed }).unwrap_or_default();
                self.compare_projection(at, &document, u64::from(closed), Some(projection));
            }
        }
        Ok((page.items.len(), page.next))
    }

    /// A CLOSED incident's group has a stored generation. When it has none, the first
    /// CLOSED incident of the group (by generation) reports it, so it is reported once.
    async fn check_generation_stored(&mut self, incident: &Incident) -> Result<(), StoreError> {
        let key = incident.group_id.to_string();
        if self
            .store
            .projection(PROJECTION_GROUP_GENERATION, &key)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let (closed, first_closed) = self
            .closed_generations(&incident.group_id, &incident.environment, &incident.service)
            .await?;
        if first_closed != Some(incident.generation) {
            return Ok(());
        }
        self.report.projections_checked += 1;
        let stream_id = group_stream(&incident.group_id);
        let document = serde_json::to_vec(&GroupGeneration { closed }).unwrap_or_default();
        self.compare_projection(
            At::stream(&stream_id).with_record(format!("{PROJECTION_GROUP_GENERATION}/{key}")),
            &document,
            u64::from(closed),
            None,
        );
        Ok(())
    }

    /// The (environment, service) of a group, from its first detection.
    async fn group_key(&self, group: &GroupId) -> Result<Option<(String, String)>, StoreError> {
        let first = self.read_event(&group_stream(group), 1).await?;
        Ok(match first.as_ref().map(decode_pipeline) {
            Some(Ok(PipelineEvent::DetectionCorrelated(correlated))) => Some((
                correlated.detection.environment,
                correlated.detection.service,
            )),
            _ => None,
        })
    }

    /// The incidents of a group, generation by generation from 0 for as long as their
    /// streams exist (a generation exists only once the one before is CLOSED): how many
    /// fold, from a verified stream, to CLOSED, and the first such generation.
    async fn closed_generations(
        &self,
        group: &GroupId,
        environment: &str,
        service: &str,
    ) -> Result<(u32, Option<u32>), StoreError> {
        let mut closed = 0;
        let mut first_closed = None;
        for generation in 0..=u32::MAX {
            let incident_id = IncidentId::derive(environment, service, group, generation);
            match self
                .fold_verified(&incident::stream_id(&incident_id))
                .await?
            {
                Folded::Absent => break,
                Folded::Damaged => {}
                Folded::Incident(incident) => {
                    if incident.state == IncidentState::Closed {
                        closed += 1;
                        first_closed.get_or_insert(generation);
                    }
                }
            }
        }
        Ok((closed, first_closed))
    }

    /// Folds an incident stream whose chain, events and stream id all verify.
    async fn fold_verified(&self, stream_id: &str) -> Result<Folded, StoreError> {
        let mut chain = ChainVerifier::new(stream_id);
        let mut state: Option<Incident> = None;
        loop {
            let page = self
                .store
                .read_stream(stream_id, chain.verified_count() + 1, READ_PAGE_SIZE_MAX)
                .await?;
            let done = page.len() < READ_PAGE_SIZE_MAX;
            for event in &page {
                if chain.push(event).is_err() {
                    return Ok(Folded::Damaged);
                }
                let Ok(decoded) = IncidentEvent::from_payload(
                    &event.event_type,
                    event.schema_version,
                    &event.payload,
                ) else {
                    return Ok(Folded::Damaged);
                };
                match incident::apply(state.take(), &decoded) {
                    Ok(next) if next.stream_id() == stream_id => state = Some(next),
                    _ => return Ok(Folded::Damaged),
                }
            }
            if done || page.is_empty() {
                break;
            }
        }
        Ok(match state {
            None => Folded::Absent,
            Some(incident) => Folded::Incident(Box::new(incident)),
        })
    }

    async fn check_open_pointer(&mut self, projection: &Projection) -> Result<(), StoreError> {
        let record = format!("{PROJECTION_OPEN_INCIDENT}/{}", projection.key);
        let pointer: OpenIncidentPointer = match serde_json::from_slice(&projection.document) {
            Ok(pointer) => pointer,
            Err(error) => {
                self.report.projections_checked += 1;
                self.diverge(
                    At::record(record),
                    DivergenceKind::ProjectionMismatch,
                    Some("document".to_owned()),
                    "an open-incident pointer",
                    render(&String::from_utf8_lossy(&projection.document)),
                    format!("the stored open-incident pointer does not decode: {error}"),
                );
                return Ok(());
            }
        };
        let stream_id = incident::stream_id(&pointer.incident_id);
        let head = self.store.stream_head(&stream_id).await?;
        let open = match &head {
            None => false,
            Some(_) => {
                self.incident_is_open(&stream_id, &pointer.incident_id, &projection.key)
                    .await?
            }
        };
        if !open {
            // A pointer to an open incident under its own key was compared (and counted)
            // while its stream was checked.
            self.report.projections_checked += 1;
            self.diverge(
                At { stream_id: Some(&stream_id), sequence: head.map(|event| event.sequence), record: Some(record) },
                DivergenceKind::ProjectionMismatch,
                Some("incident_id".to_owned()),
                "(absent: no open incident of this environment and service)",
                pointer.incident_id.to_string(),
                "the open-incident pointer names an incident that is CLOSED, missing, or of another environment and service",
            );
        }
        Ok(())
    }

    /// Whether the incident's stream folds to an incident that is not CLOSED and whose
    /// open-incident key is `key`. Folds page by page (bounded memory).
    async fn incident_is_open(
        &self,
        stream_id: &str,
        incident_id: &IncidentId,
        key: &str,
    ) -> Result<bool, StoreError> {
        let mut state: Option<Incident> = None;
        let mut from = 1;
        loop {
            let page = self
                .store
                .read_stream(stream_id, from, READ_PAGE_SIZE_MAX)
                .await?;
            let done = page.len() < READ_PAGE_SIZE_MAX;
            for event in &page {
                from = event.sequence + 1;
                let Ok(decoded) = IncidentEvent::from_payload(
                    &event.event_type,
                    event.schema_version,
                    &event.payload,
                ) else {
                    return Ok(false);
                };
                match incident::apply(state.take(), &decoded) {
                    Ok(next) => state = Some(next),
                    Err(_) => return Ok(false),
                }
            }
            if done || page.is_empty() {
                break;
            }
        }
        Ok(state.is_some_and(|incident| {
            incident.id == *incident_id
                && incident.state != IncidentState::Closed
                && open_incident_key(&incident.environment, &incident.service) == key
        }))
    }

    // ---------------------------------------------------------------------------------
    // Idempotency
    // ---------------------------------------------------------------------------------

    /// Checks one page of idempotency records.
    async fn idempotency_page(
        &mut self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(usize, Option<String>), StoreError> {
        let page = self.store.list_idempotency(cursor, limit).await?;
        for record in &page.items {
            if record.key.starts_with("signal/") {
                self.report.idempotency_checked += 1;
                self.check_signal_record(record).await?;
            } else if record.key.starts_with("stage/") {
                self.report.idempotency_checked += 1;
                self.check_stage_record(record).await?;
            } else {
                self.report.idempotency_skipped += 1;
            }
        }
        Ok((page.items.len(), page.next))
    }

    async fn check_signal_record(&mut self, record: &IdempotencyRecord) -> Result<(), StoreError> {
        let id = record.key.trim_start_matches("signal/");
        let stream_id = format!("signal:{id}");
        let accepted = match self.read_event(&stream_id, 1).await? {
            Some(event) => match decode_pipeline(&event) {
                Ok(PipelineEvent::SignalAccepted(accepted)) => Some((event, accepted)),
                _ => None,
            },
            None => None,
        };
        let Some((event, accepted)) = accepted else {
            self.diverge(
                At::event(&stream_id, 1).with_record(record.key.clone()),
                DivergenceKind::IdempotencyMismatch,
                None,
                format!("{stream_id}#1 SignalAccepted"),
                "absent or not a SignalAccepted",
                "the idempotency record names a signal that is not stored (they are written in one commit)",
            );
            return Ok(());
        };
        let at = || At::event(&stream_id, 1).with_record(record.key.clone());
        let fingerprint = accepted.signal.fingerprint();
        if fingerprint != record.request_hash {
            self.diverge(
                at(),
                DivergenceKind::IdempotencyMismatch,
                Some("request_hash".to_owned()),
                fingerprint.to_hex(),
                record.request_hash.to_hex(),
                "the idempotency record's request hash is not the stored signal's fingerprint",
            );
            return Ok(());
        }
        let expected = serde_json::to_vec(&event.pointer()).unwrap_or_default();
        if expected != record.response {
            self.diverge(
                at(),
                DivergenceKind::IdempotencyMismatch,
                Some("response".to_owned()),
                String::from_utf8_lossy(&expected).into_owned(),
                String::from_utf8_lossy(&record.response).into_owned(),
                "the idempotency record's response is not the pointer of the stored SignalAccepted",
            );
        }
        Ok(())
    }

    async fn check_stage_record(&mut self, record: &IdempotencyRecord) -> Result<(), StoreError> {
        let Some((stage, stream_id, sequence)) = parse_stage_key(&record.key) else {
            self.diverge(
                At::record(record.key.clone()),
                DivergenceKind::IdempotencyMismatch,
                Some("key".to_owned()),
                "stage/<detect|correlate|assess|promote>/<stream id>/<sequence>",
                record.key.clone(),
                "the stage idempotency key is malformed",
            );
            return Ok(());
        };
        let at = || At::event(&stream_id, sequence).with_record(record.key.clone());
        if stage == Stage::Page {
            self.diverge(
                at(),
                DivergenceKind::IdempotencyMismatch,
                Some("key".to_owned()),
                "stage/<detect|correlate|assess|promote>/<stream id>/<sequence>",
                record.key.clone(),
                "a page is an outbox item and records no idempotency; nothing opx runs writes this record",
            );
            return Ok(());
        }
        let wanted = stage.input_event_types().join(" or ");
        match self.read_event(&stream_id, sequence).await? {
            None => {
                self.diverge(
                    at(),
                    DivergenceKind::IdempotencyMismatch,
                    None,
                    format!("{stream_id}#{sequence} {wanted}"),
                    "(absent)",
                    "the idempotency record names an input event that is not stored",
                );
                return Ok(());
            }
            Some(input) if input.hash != record.request_hash => {
                self.diverge(
                    at(),
                    DivergenceKind::IdempotencyMismatch,
                    Some("request_hash".to_owned()),
                    input.hash.to_hex(),
                    record.request_hash.to_hex(),
                    "the idempotency record's request hash is not the hash of the input event it names",
                );
                return Ok(());
            }
            Some(input) if !stage.consumes(&input.event_type) => {
                self.diverge(
                    at(),
                    DivergenceKind::IdempotencyMismatch,
                    Some("event_type".to_owned()),
                    wanted,
                    input.event_type.clone(),
                    format!(
                        "the {} stage never consumes this event type",
                        stage.as_str()
                    ),
                );
                return Ok(());
            }
            Some(_) => {}
        }
        let outputs: Vec<EventPointer> = match serde_json::from_slice(&record.response) {
            Ok(outputs) => outputs,
            Err(error) => {
                self.diverge(
                    at(),
                    DivergenceKind::IdempotencyMismatch,
                    Some("response".to_owned()),
                    "a JSON array of event pointers",
                    render(&String::from_utf8_lossy(&record.response)),
                    format!("the idempotency record's response does not decode: {error}"),
                );
                return Ok(());
            }
        };
        for output in &outputs {
            let stored = self.read_event(&output.stream_id, output.sequence).await?;
            if stored.as_ref().map(|event| event.hash) != Some(output.hash) {
                self.diverge(
                    At::event(&output.stream_id, output.sequence).with_record(record.key.clone()),
                    DivergenceKind::IdempotencyMismatch,
                    Some("response".to_owned()),
                    output.hash.to_hex(),
                    stored.map_or("(absent)".to_owned(), |event| event.hash.to_hex()),
                    format!(
                        "the {} step recorded writing this event, but it is not stored with that hash (deleted or rewritten)",
                        stage.as_str()
                    ),
                );
                return Ok(());
            }
        }
        Ok(())
    }
}

/// `group:<key>` when the key is a digest.
fn group_stream_of_key(key: &str) -> Option<String> {
    Digest::from_hex(key).map(|digest| group_stream(&GroupId(digest)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_json_difference_names_the_path() {
        let cases = [
            (
                json!({"a": 1, "b": {"c": [1, 2]}}),
                json!({"a": 1, "b": {"c": [1, 3]}}),
                Some("b.c[1]"),
            ),
            (json!({"a": 1}), json!({"a": 1, "z": 2}), Some("z")),
            (json!([1, 2]), json!([1, 2, 3]), Some(".length")),
            (json!({"a": "x"}), json!({"a": "x"}), None),
        ];
        for (expected, actual, path) in cases {
            let found = first_json_difference("", &expected, &actual).map(|(field, _, _)| field);
            assert_eq!(found.as_deref(), path, "{expected} vs {actual}");
        }
    }

    #[test]
    fn stage_keys_parse_and_malformed_ones_do_not() {
        let digest = Digest::of_bytes(b"s");
        let key = format!("stage/detect/signal:{digest}/1");
        assert_eq!(
            parse_stage_key(&key),
            Some((Stage::Detect, format!("signal:{digest}"), 1))
        );
        assert_eq!(parse_stage_key("stage/nope/signal:x/1"), None);
        assert_eq!(parse_stage_key("stage/detect/signal:x/one"), None);
        assert_eq!(parse_stage_key("signal/x"), None);
    }

    #[test]
    fn a_report_serialises_with_snake_case_kinds() {
        let report = VerifyReport {
            divergences_total: 1,
            divergences: vec![Divergence {
                stream_id: Some("signal:ab".to_owned()),
                sequence: Some(2),
                kind: DivergenceKind::ChainBroken,
                record: None,
                field: Some("hash".to_owned()),
                expected: "aa".to_owned(),
                actual: "bb".to_owned(),
                detail: "altered".to_owned(),
            }],
            ..VerifyReport::default()
        };
        let json = serde_json::to_value(&report).expect("serialises");
        assert_eq!(json["divergences"][0]["kind"], "chain_broken");
        assert!(!report.ok());
        let back: VerifyReport = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back, report);
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(DIVERGENCE_VALUE_LEN_MAX);
        let cut = render(&long);
        assert!(cut.len() <= DIVERGENCE_VALUE_LEN_MAX + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
