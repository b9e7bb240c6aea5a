//! The ports the stage handlers depend on. Every backend (SQLite, DynamoDB) implements
//! them and passes the one conformance suite (`opx_app::conformance`, behind the `conformance` feature).
//!
//! The central idea is the [`Commit`]: everything one step of the pipeline writes — sealed
//! events, idempotency records, projection changes and work-queue changes — is applied
//! all together or not at all, and every write is conditional. A lost race is a typed
//! [`Conflict`], never a silent overwrite.

use opx_domain::event::{EventEnvelope, EventPointer, PAYLOAD_LEN_MAX, STREAM_ID_LEN_MAX};
use opx_domain::hash::Digest;
use opx_domain::incident::{EvidenceAttached, IncidentOpened, RecoveryRecorded};
use opx_domain::record::{
    ConfidenceAssessed, ConfidenceModelRecorded, DetectionCorrelated, PromotionDecided,
    RuleSetRecorded, SignalAccepted, SignalEvaluated,
};
use serde::{Deserialize, Serialize};
use std::future::Future;

/// Most items one read or list returns (events, streams, projections, records, work);
/// callers page with `from_sequence` or the returned cursor. A limit of 0 is invalid.
pub const READ_PAGE_SIZE_MAX: usize = 1000;
/// Most writes (events + idempotency records + projection and work changes) in one commit.
/// DynamoDB allows 100 actions per transaction; a stream append may need two.
pub const COMMIT_WRITES_MAX: usize = 48;
/// Largest projection document, in bytes.
pub const PROJECTION_LEN_MAX: usize = 256 * 1024;
/// Longest key — idempotency key, projection kind or key, work-item key — in bytes. The
/// tighter of DynamoDB's two key limits, so every backend accepts the same keys.
pub const KEY_LEN_MAX: usize = 1024;
/// Largest sequence number and projection version: SQLite stores them as signed 64-bit.
pub const SEQUENCE_MAX: u64 = i64::MAX as u64;

/// The committed event types that page a human. The paging bus rule of the CDK app
/// (`PAGING_DETAIL_TYPES` in `infra/lib/paging.ts`) must match exactly these.
pub const PAGING_EVENT_TYPES: [&str; 2] = [
    IncidentOpened::EVENT_TYPE,
    opx_domain::incident::SeverityChanged::EVENT_TYPE,
];

/// A pipeline stage that consumes a committed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// `SignalAccepted` → rules → `SignalEvaluated`.
    Detect,
    /// `SignalEvaluated` → evidence group (or recovery onto the open incident).
    Correlate,
    /// `DetectionCorrelated` → confidence assessment of the affected windows.
    Assess,
    /// `ConfidenceAssessed` → promotion gate → incident opened or evidence attached.
    Promote,
    /// `IncidentOpened`/`SeverityChanged` → the paging notification published. An outbox
    /// item: queued in the commit that writes the event, done once a publish of the event
    /// succeeded. It writes no event, so delivery is at least once; the subscriber
    /// deduplicates by the notification's message id.
    Page,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 5] = [
        Stage::Detect,
        Stage::Correlate,
        Stage::Assess,
        Stage::Promote,
        Stage::Page,
    ];

    /// The stage's name as stored and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Detect => "detect",
            Stage::Correlate => "correlate",
            Stage::Assess => "assess",
            Stage::Promote => "promote",
            Stage::Page => "page",
        }
    }

    /// Parses [`Stage::as_str`] output.
    pub fn parse(text: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == text)
    }

    /// The event types the stage consumes.
    pub fn input_event_types(self) -> &'static [&'static str] {
        match self {
            Stage::Detect => &[SignalAccepted::EVENT_TYPE],
            Stage::Correlate => &[SignalEvaluated::EVENT_TYPE],
            Stage::Assess => &[DetectionCorrelated::EVENT_TYPE],
            Stage::Promote => &[ConfidenceAssessed::EVENT_TYPE],
            Stage::Page => &PAGING_EVENT_TYPES,
        }
    }

    /// The event types a step of the stage may write (a page writes none).
    pub fn output_event_types(self) -> &'static [&'static str] {
        match self {
            Stage::Detect => &[SignalEvaluated::EVENT_TYPE, RuleSetRecorded::EVENT_TYPE],
            Stage::Correlate => &[
                DetectionCorrelated::EVENT_TYPE,
                RecoveryRecorded::EVENT_TYPE,
            ],
            Stage::Assess => &[
                ConfidenceAssessed::EVENT_TYPE,
                ConfidenceModelRecorded::EVENT_TYPE,
            ],
            Stage::Promote => &[
                PromotionDecided::EVENT_TYPE,
                IncidentOpened::EVENT_TYPE,
                EvidenceAttached::EVENT_TYPE,
                RecoveryRecorded::EVENT_TYPE,
            ],
            Stage::Page => &[],
        }
    }

    /// The Lambda function that runs the stage. Page items have no function of their own:
    /// the fan-out completes a page when it publishes the event, the sweeper sends the
    /// pages the fan-out could not.
    pub fn function_name(self) -> &'static str {
        match self {
            Stage::Detect => "detection",
            Stage::Correlate => "evidence",
            Stage::Assess => "confidence",
            Stage::Promote => "promotion",
            Stage::Page => "fanout",
        }
    }

    /// Whether an opx bus event of the stage's input types invokes its function (every
    /// stage but [`Stage::Page`], whose events go to the pager, not to a stage).
    pub fn runs_from_bus(self) -> bool {
        self != Stage::Page
    }

    /// Whether the stage consumes events of `event_type`.
    pub fn consumes(self, event_type: &str) -> bool {
        self.input_event_types().contains(&event_type)
    }
}

/// The stage table the CDK app declares its bus rules from
/// (`infra/lib/generated/stages.json`; a test fails when the checked-in file differs):
/// each stage's function, the event types it consumes and writes, and whether the bus
/// invokes its function.
pub fn stage_table_json() -> String {
    let stages: Vec<serde_json::Value> = Stage::ALL
        .into_iter()
        .map(|stage| {
            serde_json::json!({
                "stage": stage.as_str(),
                "function": stage.function_name(),
                "input_event_types": stage.input_event_types(),
                "output_event_types": stage.output_event_types(),
                "runs_from_bus": stage.runs_from_bus(),
            })
        })
        .collect();
    crate::generated::document(
        "crates/opx-app (opx_app::ports::stage_table_json); regenerate with \
         OPX_WRITE_STAGES=1 cargo test -p opx-app --test stage_table",
        "stages",
        &stages,
    )
}

/// One unit of pending work: a stage that must still consume a committed event. Added in
/// the same commit as the event, removed in the same commit as the stage's output, so
/// after a crash the queue holds exactly the work that did not happen.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkItem {
    /// The consuming stage.
    pub stage: Stage,
    /// The event it consumes.
    pub input: EventPointer,
}

impl WorkItem {
    /// The page of a committed event, when its type pages a human.
    pub fn page_of(event: &EventEnvelope) -> Option<WorkItem> {
        Stage::Page.consumes(&event.event_type).then(|| WorkItem {
            stage: Stage::Page,
            input: event.pointer(),
        })
    }

    /// The work item's unique key: `stage/stream/sequence`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.stage.as_str(),
            self.input.stream_id,
            self.input.sequence
        )
    }
}

/// A permanent record that a request (a stage step, a human action, an ingest) was done,
/// and with what result. Never expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The key, e.g. `stage/detect/signal:ab12…/1` or `api/<principal>/<client key>`.
    pub key: String,
    /// Hash of the request's canonical content: the same key with another hash is a
    /// conflict, never a silent overwrite.
    pub request_hash: Digest,
    /// The response to give a retry (JSON), e.g. the pointers of the events written.
    pub response: Vec<u8>,
}

/// A materialised view, rebuilt from events at any time, updated with a version guard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projection {
    /// What kind of view, e.g. `incident`, `open_incident`, `group_closed`.
    pub kind: String,
    /// The view's key within its kind.
    pub key: String,
    /// Bumped by every change; guards concurrent updates.
    pub version: u64,
    /// The view (JSON).
    pub document: Vec<u8>,
}

/// A guarded change to one projection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectionChange {
    /// Create (`expected_version: None`, the key must not exist) or replace (the stored
    /// version must equal `expected_version`) with `projection`.
    Put {
        /// The new content; its `version` must be greater than `expected_version`.
        projection: Projection,
        /// The version the writer read.
        expected_version: Option<u64>,
    },
    /// Delete; the stored version must equal `expected_version`.
    Delete {
        /// The kind.
        kind: String,
        /// The key.
        key: String,
        /// The version the writer read.
        expected_version: u64,
    },
}

/// Everything one step writes, applied atomically. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    /// Sealed events. Each must be the next event of its stream: `sequence` one past the
    /// stored head and `previous_hash` the head's hash (several events of one stream may
    /// follow each other in one commit). A taken sequence, a gap or a wrong previous hash
    /// is [`Conflict::StreamMoved`]: the writer's idea of the head is wrong, re-read.
    /// Touching one item twice in a commit (key, projection, work item) is
    /// [`StoreError::Invalid`], as DynamoDB refuses it too.
    pub events: Vec<EventEnvelope>,
    /// Idempotency records; each key must not exist yet.
    pub idempotency: Vec<IdempotencyRecord>,
    /// Guarded projection changes.
    pub projections: Vec<ProjectionChange>,
    /// Work to enqueue (idempotent: adding an existing item is not a conflict).
    pub work_added: Vec<WorkItem>,
    /// Work this step completes (idempotent: removing a missing item is not a conflict).
    pub work_done: Vec<WorkItem>,
}

impl Commit {
    /// The number of writes, to check against [`COMMIT_WRITES_MAX`].
    pub fn write_count(&self) -> usize {
        self.events.len()
            + self.idempotency.len()
            + self.projections.len()
            + self.work_added.len()
            + self.work_done.len()
    }

    /// Checks everything about the commit that does not depend on stored data: the write
    /// count, every limit, every event sealed over its content, and no item touched twice
    /// (DynamoDB refuses two actions on one item in a transaction, so no backend accepts
    /// it). Every backend calls this before it writes anything.
    pub fn validate(&self) -> Result<(), StoreError> {
        let writes = self.write_count();
        if writes > COMMIT_WRITES_MAX {
            return Err(invalid(format!(
                "commit has {writes} writes, more than COMMIT_WRITES_MAX ({COMMIT_WRITES_MAX}); \
                 split the step into smaller commits"
            )));
        }
        for event in &self.events {
            validate_event(event)?;
        }
        let mut keys = std::collections::BTreeSet::new();
        for record in &self.idempotency {
            check_key("idempotency key", &record.key)?;
            if !keys.insert(record.key.as_str()) {
                return Err(invalid(format!(
                    "idempotency key {:?} appears twice in one commit; write each record once",
                    shorten(&record.key)
                )));
            }
        }
        let mut projections = std::collections::BTreeSet::new();
        for change in &self.projections {
            let (kind, key) = validate_projection_change(change)?;
            if !projections.insert((kind, key)) {
                return Err(invalid(format!(
                    "projection {kind}/{key} is changed twice in one commit; merge the changes \
                     into one"
                )));
            }
        }
        let mut work = std::collections::BTreeSet::new();
        for item in self.work_added.iter().chain(&self.work_done) {
            check_sequence(&item.input.stream_id, item.input.sequence)?;
            let key = item.key();
            check_key("work item key", &key)?;
            if !work.insert(key) {
                return Err(invalid(format!(
                    "work item {} appears twice in one commit (added and done, or listed \
                     twice); list it once",
                    item.key()
                )));
            }
        }
        Ok(())
    }
}

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}

/// Hostile input can be long; error messages quote only its start.
pub fn shorten(text: &str) -> &str {
    let mut end = text.len().min(80);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A key every backend accepts: 1 to [`KEY_LEN_MAX`] bytes.
pub fn check_key(what: &str, key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > KEY_LEN_MAX {
        return Err(invalid(format!(
            "{what} {:?} is {} bytes; it must be 1 to KEY_LEN_MAX ({KEY_LEN_MAX}) bytes",
            shorten(key),
            key.len()
        )));
    }
    Ok(())
}

fn check_sequence(stream: &str, sequence: u64) -> Result<(), StoreError> {
    if sequence == 0 || sequence > SEQUENCE_MAX {
        return Err(invalid(format!(
            "stream {stream}: sequence {sequence} is out of range; sequences start at 1 and \
             are at most SEQUENCE_MAX ({SEQUENCE_MAX})"
        )));
    }
    Ok(())
}

fn validate_event(event: &EventEnvelope) -> Result<(), StoreError> {
    let stream = &event.stream_id;
    if stream.is_empty() || stream.len() > STREAM_ID_LEN_MAX {
        return Err(invalid(format!(
            "event stream id {:?} is {} bytes; it must be 1 to STREAM_ID_LEN_MAX \
             ({STREAM_ID_LEN_MAX}) bytes",
            shorten(stream),
            stream.len()
        )));
    }
    check_sequence(stream, event.sequence)?;
    if event.event_type.is_empty() {
        return Err(invalid(format!(
            "event {stream}#{}: event_type is empty; name the event",
            event.sequence
        )));
    }
    if event.payload.len() > PAYLOAD_LEN_MAX {
        return Err(invalid(format!(
            "event {stream}#{}: payload is {} bytes, more than PAYLOAD_LEN_MAX \
             ({PAYLOAD_LEN_MAX}); store large content elsewhere and reference it",
            event.sequence,
            event.payload.len()
        )));
    }
    // A store that accepted an envelope whose hash does not cover its content would carry
    // a chain that fails verification from the moment it is written.
    let computed = event.computed_hash();
    if computed != event.hash {
        return Err(invalid(format!(
            "event {stream}#{}: hash {} does not match its content (which hashes to {}); seal \
             events with EventEnvelope::seal and do not change them afterwards",
            event.sequence, event.hash, computed
        )));
    }
    Ok(())
}

/// Returns the projection's (kind, key).
fn validate_projection_change(change: &ProjectionChange) -> Result<(&str, &str), StoreError> {
    match change {
        ProjectionChange::Put {
            projection,
            expected_version,
        } => {
            check_key("projection kind", &projection.kind)?;
            check_key("projection key", &projection.key)?;
            let name = format!("projection {}/{}", projection.kind, projection.key);
            if projection.document.len() > PROJECTION_LEN_MAX {
                return Err(invalid(format!(
                    "{name}: document is {} bytes, more than PROJECTION_LEN_MAX \
                     ({PROJECTION_LEN_MAX}); keep projections small and page large content",
                    projection.document.len()
                )));
            }
            let floor = expected_version.unwrap_or(0);
            if projection.version <= floor || projection.version > SEQUENCE_MAX {
                return Err(invalid(format!(
                    "{name}: new version {} must be greater than the expected version ({floor}) \
                     and at most SEQUENCE_MAX ({SEQUENCE_MAX})",
                    projection.version
                )));
            }
            Ok((&projection.kind, &projection.key))
        }
        ProjectionChange::Delete { kind, key, .. } => {
            check_key("projection kind", kind)?;
            check_key("projection key", key)?;
            Ok((kind, key))
        }
    }
}

/// Why a commit lost a race. Typed, so callers never match on message text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// Another writer appended at this sequence first (or the expected previous hash is not
    /// the stream's head). Re-read the stream and decide again.
    #[error("stream {stream_id} already has an event at sequence {sequence}, or its head moved; re-read and retry")]
    StreamMoved {
        /// The stream.
        stream_id: String,
        /// The sequence that was taken.
        sequence: u64,
    },
    /// The idempotency key exists. Compare `existing.request_hash` with yours: equal means
    /// this is a duplicate (answer with `existing.response`), different means the key was
    /// reused for another request.
    #[error("idempotency key {} is already recorded", existing.key)]
    IdempotencyKeyUsed {
        /// The stored record.
        existing: IdempotencyRecord,
    },
    /// The projection is not at the version the writer read.
    #[error("projection {kind}/{key} is at version {actual:?}, expected {expected:?}; re-read and retry")]
    ProjectionVersion {
        /// The kind.
        kind: String,
        /// The key.
        key: String,
        /// What the writer expected (`None`: absent).
        expected: Option<u64>,
        /// What is stored (`None`: absent).
        actual: Option<u64>,
    },
}

/// A store failure, classified by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A concurrent writer won; see [`Conflict`] for what to do.
    #[error("conflict: {0}")]
    Conflict(#[from] Conflict),
    /// The request itself is invalid (too large, too many writes, malformed key): a bug in
    /// the caller or hostile input; retrying cannot help.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// The backend is busy or unreachable; retry with backoff.
    #[error("store temporarily unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// The backend's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Stored data cannot be read back (corruption, unknown schema): stop and investigate.
    #[error("stored data is corrupt or unreadable: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether retrying the same request later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// A page of results and the cursor for the next one (`None` when done).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, in the store's stable order.
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` at the end.
    pub next: Option<String>,
}

/// A payload that was refused, kept so nothing is silently lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectRecord {
    /// SHA-256 of the payload bytes and the item index: recording the same reject twice is
    /// a no-op.
    pub id: Digest,
    /// Where it came from, e.g. `alarms.ndjson:17` or `api:POST /signals`.
    pub origin: String,
    /// The JSON path of the offending field (`$` for the whole payload).
    pub field: String,
    /// Why it was refused.
    pub reason: String,
    /// The start of the payload (bounded), for people investigating.
    pub excerpt: String,
}

/// Longest payload excerpt kept in a [`RejectRecord`], in bytes.
pub const REJECT_EXCERPT_LEN_MAX: usize = 1024;

impl RejectRecord {
    /// The reject of item `item_index` of `input` (0 = the whole input; items count from
    /// 1), refused at `field` for `reason`. The one way a reject is built, so every entry
    /// point gives the same refusal the same id and excerpt.
    pub fn new(
        origin: impl Into<String>,
        input: &[u8],
        item_index: u64,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> RejectRecord {
        let excerpt = String::from_utf8_lossy(&input[..input.len().min(REJECT_EXCERPT_LEN_MAX)]);
        RejectRecord {
            id: reject_id(input, item_index),
            origin: origin.into(),
            field: field.into(),
            reason: reason.into(),
            // A lossy decoding can grow the excerpt past the limit (U+FFFD is 3 bytes).
            excerpt: opx_domain::signal::truncate_utf8(&excerpt, REJECT_EXCERPT_LEN_MAX).to_owned(),
        }
    }
}

/// The id of a reject record: the payload bytes and the item index (0 = the whole
/// payload). Every entry point (`opx ingest`, `POST /signals`, `signal-ingest`) uses it, so
/// recording the same refusal twice, or by two of them, is one reject.
pub fn reject_id(bytes: &[u8], item_index: u64) -> Digest {
    opx_domain::hash::FieldHasher::new("opx.reject.v1")
        .bytes(bytes)
        .u64(item_index)
        .finish()
}

/// Reading the store. Handlers that only read take this.
pub trait StoreRead: Send + Sync {
    /// Events of `stream_id` with `sequence >= from_sequence`, in order, at most `limit`
    /// (capped at [`READ_PAGE_SIZE_MAX`]). Strongly consistent.
    fn read_stream(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<EventEnvelope>, StoreError>> + Send;

    /// The last event of a stream, if any. Strongly consistent.
    fn stream_head(
        &self,
        stream_id: &str,
    ) -> impl Future<Output = Result<Option<EventEnvelope>, StoreError>> + Send;

    /// Stream ids in the store's stable order, a page at a time.
    fn list_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<String>, StoreError>> + Send;

    /// The idempotency record for `key`, if any.
    fn idempotency(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>, StoreError>> + Send;

    /// Idempotency records in a stable order, each exactly once, a page at a time (for
    /// verification).
    fn list_idempotency(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<IdempotencyRecord>, StoreError>> + Send;

    /// One projection.
    fn projection(
        &self,
        kind: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Projection>, StoreError>> + Send;

    /// Projections of one kind in key order, a page at a time.
    fn list_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<Projection>, StoreError>> + Send;

    /// Pending work in the order it was added (best effort on backends without an order),
    /// a page at a time.
    fn pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<WorkItem>, StoreError>> + Send;

    /// Recorded rejects, a page at a time.
    fn list_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<RejectRecord>, StoreError>> + Send;
}

/// Writing the store.
pub trait Store: StoreRead {
    /// Applies `commit` atomically; see [`Commit`]. On success returns the pointers of the
    /// events written, in order.
    fn commit(
        &self,
        commit: Commit,
    ) -> impl Future<Output = Result<Vec<EventPointer>, StoreError>> + Send;

    /// Records a reject (idempotent by its id).
    fn record_reject(
        &self,
        reject: RejectRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Fan-out of committed events to other consumers. Never carries the data a stage decides
/// on (stages re-read the store by pointer); a failure delays work, never loses it.
pub trait Publisher: Send + Sync {
    /// Publishes notifications for committed events.
    fn publish(
        &self,
        events: &[EventEnvelope],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether a successful publish reaches the subscribers, pagers included (a bus). Then
    /// the pipeline completes the [`Stage::Page`] items of a commit it published, as the
    /// fan-out does, instead of sending those pages again. False (the default) for a
    /// publisher that sends nowhere, such as the stage functions' [`NoPublisher`], whose
    /// commits the fan-out publishes from the events table's stream.
    fn delivers(&self) -> bool {
        false
    }
}

/// A publisher that does nothing: the embedded pipeline drains its work queue in process.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPublisher;

impl Publisher for NoPublisher {
    async fn publish(&self, _events: &[EventEnvelope]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The time of a human action. Used for nothing else: event time comes from payloads.
pub trait Clock: Send + Sync {
    /// Now, in milliseconds since the epoch.
    fn now(&self) -> opx_domain::time::EpochMs;
}

/// The wall clock, for the adapters (the `opx` command, the API, the Lambda functions):
/// human-action time, signature skew, deadlines and metrics. Event time never comes from
/// here, and the domain never sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one wall-clock reading of opx; the workspace lint against it guards the domain.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> opx_domain::time::EpochMs {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        opx_domain::time::EpochMs(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}
