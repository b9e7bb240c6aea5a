//! The stage handlers: ingest, detect, correlate, assess, promote, and the page.
//!
//! Each handler reads its input event from the store by pointer, decides with pure domain
//! code, and writes everything it produces in one [`Commit`]: its output events, a
//! permanent idempotency record keyed by its input, projection updates, and the work-queue
//! change (its own item removed, the next stage's added). A lost race ([`Conflict`]) makes
//! the handler read again and decide again, a bounded number of times; a redelivered input
//! finds the idempotency record and does nothing but clear its work item.

use crate::ports::{
    Commit, Conflict, IdempotencyRecord, Projection, ProjectionChange, Publisher, Stage, Store,
    StoreError, WorkItem, READ_PAGE_SIZE_MAX,
};
use crate::recovery::{
    service_recoveries_key, RecoverySeen, ServiceRecoveries, PROJECTION_SERVICE_RECOVERIES,
};
use opx_domain::confidence::{assess, ConfidenceModel};
use opx_domain::correlation::{
    previous_window_start, window_start, windows_to_evaluate, CorrelationKey, EvidenceBundle,
    GroupId, WindowMs,
};
use opx_domain::detection::{detect, Detection, DetectionOutcome, NotDetectedReason};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::hash::{Digest, FieldHasher};
use opx_domain::incident::{
    self, EvidenceItem, Incident, IncidentCommand, IncidentEvent, IncidentId, IncidentState,
};
use opx_domain::promotion::{self, GateInput, Outcome, SeenIncident};
use opx_domain::record::{
    group_stream, model_stream, ruleset_stream, signal_stream, ConfidenceAssessed,
    ConfidenceModelRecorded, DetectionCorrelated, PipelineEvent, PromotionDecided, RecordedFile,
    RuleSetRecorded, SignalAccepted, SignalEvaluated, PIPELINE_SCHEMA_VERSION,
};
use opx_domain::rules::{RuleFile, RuleSet};
use opx_domain::signal::{Signal, SignalId};
use opx_domain::source::SourceConfig;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How many times one step re-reads and decides again after losing a race before it gives
/// up and leaves its work item for a later run (the sweeper, `opx resume`).
pub const STEP_ATTEMPTS_MAX: u32 = 16;
/// Most events read from one group stream when building a bundle. A group holds at most
/// three events per detection (correlated, assessed, decided); beyond this the step fails
/// closed rather than decide on a partial read.
pub const GROUP_EVENTS_READ_MAX: usize = 20_000;
/// Most events read from one incident stream to fold it.
pub const INCIDENT_EVENTS_READ_MAX: usize = 50_000;
/// Work items fetched per page while draining.
pub const DRAIN_PAGE_SIZE: usize = 256;

/// Projection kind: one incident's folded state (`key` = incident id, `version` = the
/// incident stream's head sequence).
pub const PROJECTION_INCIDENT: &str = "incident";
/// Projection kind: the one open incident of an (environment, service); created with the
/// incident, deleted when it closes. Its conditional create is what enforces "one open
/// incident per (environment, service)".
pub const PROJECTION_OPEN_INCIDENT: &str = "open_incident";
/// Projection kind: how many incidents of an evidence group were closed (the next
/// incident's generation).
pub const PROJECTION_GROUP_GENERATION: &str = "group_generation";

/// The fixed configuration every stage decides with.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// How source payloads map to environment, service and severity.
    pub source: SourceConfig,
    /// The active rule set.
    pub rules: RuleSet,
    /// The exact files of the active rule set, recorded content-addressed on first use.
    pub rule_files: Vec<RecordedFile>,
    /// The active confidence model.
    pub model: ConfidenceModel,
    /// The correlation window.
    pub window_ms: WindowMs,
}

impl PipelineConfig {
    /// The default rules and model, 5-minute windows.
    pub fn with_rule_files(files: Vec<RuleFile>) -> Result<PipelineConfig, PipelineError> {
        let rules = RuleSet::from_files(&files)
            .map_err(|error| PipelineError::Config(format!("rules: {error}")))?;
        let mut rule_files: Vec<RecordedFile> = files
            .into_iter()
            .map(|file| RecordedFile {
                path: file.path,
                text: file.text,
            })
            .collect();
        rule_files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(PipelineConfig {
            source: SourceConfig::default(),
            rules,
            rule_files,
            model: ConfidenceModel::v1(),
            window_ms: WindowMs::DEFAULT,
        })
    }

    /// The rule set recorded from its files, so replay can load it from the store.
    pub fn from_recorded(
        source: SourceConfig,
        rule_files: Vec<RecordedFile>,
        model: ConfidenceModel,
        window_ms: WindowMs,
    ) -> Result<PipelineConfig, PipelineError> {
        let files: Vec<RuleFile> = rule_files
            .iter()
            .map(|file| RuleFile {
                path: file.path.clone(),
                text: file.text.clone(),
            })
            .collect();
        let rules = RuleSet::from_files(&files)
            .map_err(|error| PipelineError::Config(format!("rules: {error}")))?;
        Ok(PipelineConfig {
            source,
            rules,
            rule_files,
            model,
            window_ms,
        })
    }
}

/// Why a step could not finish.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The store failed; see [`StoreError`] for whether a retry can help.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The step lost [`STEP_ATTEMPTS_MAX`] races in a row; its work item stays queued and a
    /// later run picks it up.
    #[error("{stage} step on {input} lost {STEP_ATTEMPTS_MAX} races in a row; left queued for a later run")]
    Contended {
        /// The stage.
        stage: &'static str,
        /// The input event.
        input: String,
    },
    /// Stored data does not decode or does not match its pointer: stop and investigate
    /// (`opx replay verify` names the place).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// A human command was refused by the incident's rules.
    #[error(transparent)]
    Incident(#[from] incident::IncidentError),
    /// No such incident.
    #[error("no incident {0}")]
    IncidentNotFound(String),
    /// The page of an event could not be published; its [`Stage::Page`] item stays queued
    /// and a later run (the sweeper, `opx resume`) sends it again.
    #[error("the page of {input} was not sent ({source}); left queued for a later run")]
    PageNotSent {
        /// The page's work item.
        input: String,
        /// The publisher's error.
        #[source]
        source: StoreError,
    },
    /// A human request reused an idempotency key for a different request.
    #[error("idempotency key {key} was already used for a different request; use a new key for a new action")]
    RequestKeyReused {
        /// The key.
        key: String,
    },
}

impl PipelineError {
    /// Whether retrying the same step later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Store(error) => error.is_transient(),
            // Whatever the publisher said, the event is committed and the page queued:
            // once the bus takes notifications again (or its permissions are fixed), the
            // same page goes out.
            PipelineError::Contended { .. } | PipelineError::PageNotSent { .. } => true,
            _ => false,
        }
    }
}

/// What ingesting one signal did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IngestOutcome {
    /// First delivery: recorded, detection queued.
    Accepted {
        /// The signal.
        signal_id: SignalId,
    },
    /// Already recorded with the same canonical content.
    Duplicate {
        /// The signal.
        signal_id: SignalId,
    },
    /// Already recorded with different canonical content (e.g. the configuration mapping
    /// environment or service changed): the first record stands, this one is refused.
    Conflict {
        /// The signal.
        signal_id: SignalId,
        /// The fingerprint recorded first.
        recorded: Digest,
        /// This delivery's fingerprint.
        offered: Digest,
    },
}

/// What one stage step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Events written.
    pub events: Vec<EventPointer>,
    /// The step had already been done (a redelivery).
    pub already_done: bool,
    /// Incidents this step opened.
    pub incidents_opened: Vec<IncidentId>,
    /// Incidents this step attached evidence or a recovery to.
    pub incidents_updated: Vec<IncidentId>,
    /// The step produced a detection.
    pub detections: u64,
    /// Pages published (a [`Stage::Page`] step).
    pub pages_sent: u64,
}

/// The pipeline over a store and a publisher, with one configuration.
pub struct Pipeline<'a, S: Store, P: Publisher> {
    store: &'a S,
    publisher: &'a P,
    config: &'a PipelineConfig,
    /// Content-addressed streams (rule set, model) known to be in the store.
    recorded_streams: std::sync::Mutex<BTreeSet<String>>,
}

/// Removes the [`Stage::Page`] items of `events` once a publish of them reached the
/// subscribers; returns how many there were (no commit when none of the events pages).
/// Removing a missing item is no conflict, so completing a page twice is harmless.
pub async fn complete_pages<S: Store>(
    store: &S,
    events: &[EventEnvelope],
) -> Result<usize, StoreError> {
    let pages: Vec<WorkItem> = events.iter().filter_map(WorkItem::page_of).collect();
    if pages.is_empty() {
        return Ok(0);
    }
    let count = pages.len();
    store
        .commit(Commit {
            work_done: pages,
            ..Commit::default()
        })
        .await?;
    Ok(count)
}

/// The key of the open-incident pointer of an (environment, service).
pub fn open_incident_key(environment: &str, service: &str) -> String {
    FieldHasher::new("opx.open-incident-key.v1")
        .str(environment)
        .str(service)
        .finish()
        .to_hex()
}

/// The open-incident pointer document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenIncidentPointer {
    /// The open incident.
    pub incident_id: IncidentId,
    /// Its environment.
    pub environment: String,
    /// Its service.
    pub service: String,
}

/// The group-generation document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupGeneration {
    /// Incidents of the group closed so far.
    pub closed: u32,
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, PipelineError> {
    serde_json::to_vec(value).map_err(|error| PipelineError::Corrupt(error.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, PipelineError> {
    serde_json::from_slice(bytes)
        .map_err(|error| PipelineError::Corrupt(format!("{what} does not decode: {error}")))
}

/// Stream heads within one commit being built: the next sequence and previous hash of each
/// stream the step appends to.
#[derive(Default)]
struct Appender {
    heads: BTreeMap<String, (u64, Digest)>,
    events: Vec<EventEnvelope>,
}

impl Appender {
    async fn append<S: Store>(
        &mut self,
        store: &S,
        stream_id: &str,
        event_type: &str,
        schema_version: u32,
        payload: Vec<u8>,
    ) -> Result<EventPointer, PipelineError> {
        if !self.heads.contains_key(stream_id) {
            let head = store.stream_head(stream_id).await?;
            let position = head.map_or((0, Digest::ZERO), |event| (event.sequence, event.hash));
            self.heads.insert(stream_id.to_owned(), position);
        }
        let (sequence, previous) = self.heads[stream_id];
        let event = EventEnvelope::seal(
            stream_id,
            sequence + 1,
            event_type,
            schema_version,
            payload,
            previous,
        );
        self.heads
            .insert(stream_id.to_owned(), (event.sequence, event.hash));
        let pointer = event.pointer();
        self.events.push(event);
        Ok(pointer)
    }

    async fn append_pipeline<S: Store>(
        &mut self,
        store: &S,
        stream_id: &str,
        event: &PipelineEvent,
    ) -> Result<EventPointer, PipelineError> {
        self.append(
            store,
            stream_id,
            event.event_type(),
            PIPELINE_SCHEMA_VERSION,
            event.to_payload(),
        )
        .await
    }

    fn head_sequence(&self, stream_id: &str) -> Option<u64> {
        self.heads.get(stream_id).map(|(sequence, _)| *sequence)
    }
}

/// Whether a commit failure means "decide again".
fn is_retryable_conflict(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Conflict(Conflict::StreamMoved { .. } | Conflict::ProjectionVersion { .. })
    )
}

impl<'a, S: Store, P: Publisher> Pipeline<'a, S, P> {
    /// A pipeline over `store`, notifying through `publisher`, deciding with `config`.
    pub fn new(store: &'a S, publisher: &'a P, config: &'a PipelineConfig) -> Self {
        Pipeline {
            store,
            publisher,
            config,
            recorded_streams: std::sync::Mutex::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        self.config
    }

    /// The store it writes to.
    pub fn store(&self) -> &'a S {
        self.store
    }

    /// Commits a step's or a human action's writes, adding the [`Stage::Page`] item of
    /// every event in it that pages a human: every event is written through here, so no
    /// path can open an incident or change its severity without queueing its page.
    async fn commit_and_publish(
        &self,
        mut commit: Commit,
    ) -> Result<Vec<EventPointer>, StoreError> {
        for page in commit.events.iter().filter_map(WorkItem::page_of) {
            if !commit.work_added.contains(&page) {
                commit.work_added.push(page);
            }
        }
        let events = commit.events.clone();
        let pointers = self.store.commit(commit).await?;
        match self.publisher.publish(&events).await {
            Ok(()) if self.publisher.delivers() => {
                // Published to the subscribers: the pages are sent, as when the fan-out
                // publishes them. If removing them fails, a later run sends them again.
                if let Err(error) = complete_pages(self.store, &events).await {
                    tracing::warn!(%error, "pages published but their work items could not be removed; a later run sends them again");
                }
            }
            Ok(()) => {}
            // The events are committed and their work items are queued: a failed
            // notification only delays the next stage until the sweeper runs.
            Err(error) => {
                tracing::warn!(%error, "publishing committed events failed; the sweeper will re-drive them");
            }
        }
        Ok(pointers)
    }

    /// Records one accepted signal: `SignalAccepted` plus its idempotency record (keyed by
    /// the signal id, request hash = the signal's fingerprint) and the detect work item.
    pub async fn ingest(&self, signal: &Signal) -> Result<IngestOutcome, PipelineError> {
        let stream_id = signal_stream(&signal.id);
        let key = format!("signal/{}", signal.id);
        let fingerprint = signal.fingerprint();
        let event = PipelineEvent::SignalAccepted(SignalAccepted {
            signal: signal.clone(),
        });
        let sealed = EventEnvelope::seal(
            &stream_id,
            1,
            event.event_type(),
            PIPELINE_SCHEMA_VERSION,
            event.to_payload(),
            Digest::ZERO,
        );
        let pointer = sealed.pointer();
        let commit = Commit {
            events: vec![sealed],
            idempotency: vec![IdempotencyRecord {
                key: key.clone(),
                request_hash: fingerprint,
                response: to_json(&pointer)?,
            }],
            work_added: vec![WorkItem {
                stage: Stage::Detect,
                input: pointer,
            }],
            ..Commit::default()
        };
        match self.commit_and_publish(commit).await {
            Ok(_) => Ok(IngestOutcome::Accepted {
                signal_id: signal.id,
            }),
            Err(StoreError::Conflict(Conflict::IdempotencyKeyUsed { existing })) => {
                Ok(self.classify_redelivery(signal, &existing.request_hash, fingerprint))
            }
            Err(StoreError::Conflict(Conflict::StreamMoved { .. })) => {
                // The stream exists, so its idempotency record does too (same commit).
                match self.store.idempotency(&key).await? {
                    Some(existing) => {
                        Ok(self.classify_redelivery(signal, &existing.request_hash, fingerprint))
                    }
                    // The stream is not there either: the conflict came from the backend
                    // (e.g. a transaction conflict), not from a stored signal. Retry.
                    None if self.store.stream_head(&stream_id).await?.is_none() => {
                        Err(PipelineError::Contended {
                            stage: "ingest",
                            input: stream_id,
                        })
                    }
                    None => Err(PipelineError::Corrupt(format!(
                        "{stream_id} exists without its idempotency record {key}"
                    ))),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    fn classify_redelivery(
        &self,
        signal: &Signal,
        recorded: &Digest,
        offered: Digest,
    ) -> IngestOutcome {
        if *recorded == offered {
            IngestOutcome::Duplicate {
                signal_id: signal.id,
            }
        } else {
            IngestOutcome::Conflict {
                signal_id: signal.id,
                recorded: *recorded,
                offered,
            }
        }
    }

    /// Runs one work item to completion, re-deciding after lost races. A [`Stage::Page`]
    /// item is sent through the pipeline's publisher ([`Pipeline::page`]).
    pub async fn run(&self, item: &WorkItem) -> Result<StepReport, PipelineError> {
        if item.stage == Stage::Page {
            return self.page(item, self.publisher).await;
        }
        for _ in 0..STEP_ATTEMPTS_MAX {
            match self.attempt(item).await {
                Err(PipelineError::Store(error)) if is_retryable_conflict(&error) => continue,
                other => return other,
            }
        }
        Err(PipelineError::Contended {
            stage: item.stage.as_str(),
            input: item.key(),
        })
    }

    /// Sends the page of a [`Stage::Page`] item through `pager`, then removes the item. The
    /// event is read by its pointer and its hash checked, as a stage does. A failed publish
    /// leaves the item queued ([`PipelineError::PageNotSent`]); a publish whose removal
    /// then fails is sent again by a later run, which the subscriber deduplicates by the
    /// notification's message id. Nothing else is written, so a page has no output event.
    pub async fn page<Q: Publisher>(
        &self,
        item: &WorkItem,
        pager: &Q,
    ) -> Result<StepReport, PipelineError> {
        if item.stage != Stage::Page {
            return Err(PipelineError::Config(format!(
                "{} is not a page; run it with Pipeline::run",
                item.key()
            )));
        }
        let event = self.read_pointer(&item.input).await?;
        if !Stage::Page.consumes(&event.event_type) {
            return Err(PipelineError::Corrupt(format!(
                "page item {} names a {}, which pages nobody",
                item.key(),
                event.event_type
            )));
        }
        pager
            .publish(std::slice::from_ref(&event))
            .await
            .map_err(|source| PipelineError::PageNotSent {
                input: item.key(),
                source,
            })?;
        self.store
            .commit(Commit {
                work_done: vec![item.clone()],
                ..Commit::default()
            })
            .await?;
        Ok(StepReport {
            pages_sent: 1,
            ..StepReport::default()
        })
    }

    /// Drains the work queue: runs pending items, pass after pass, until a pass makes no
    /// progress or `steps_max` steps have run. An item that keeps losing races or fails
    /// with a non-transient error stays queued (and is reported) without blocking the rest.
    pub async fn drain(&self, steps_max: u64) -> Result<DrainReport, PipelineError> {
        let mut report = DrainReport::default();
        let mut failed: BTreeSet<String> = BTreeSet::new();
        loop {
            let mut progressed = false;
            let mut cursor: Option<String> = None;
            loop {
                let page = self
                    .store
                    .pending_work(cursor.as_deref(), DRAIN_PAGE_SIZE)
                    .await?;
                for item in &page.items {
                    if failed.contains(&item.key()) {
                        continue;
                    }
                    if report.steps >= steps_max {
                        report.stopped_at_limit = true;
                        return Ok(report);
                    }
                    report.steps += 1;
                    match self.run(item).await {
                        Ok(step) => {
                            progressed = true;
                            report.detections += step.detections;
                            report.incidents_opened.extend(step.incidents_opened);
                            report.incidents_updated.extend(step.incidents_updated);
                            report.pages_sent += step.pages_sent;
                        }
                        Err(error) => {
                            if error.is_transient() {
                                tracing::warn!(%error, work = %item.key(), "step left queued; a later run retries it");
                            } else {
                                tracing::error!(%error, work = %item.key(), "step failed; left queued for investigation");
                            }
                            report.left_queued.push(format!("{}: {error}", item.key()));
                            failed.insert(item.key());
                        }
                    }
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            if !progressed {
                return Ok(report);
            }
        }
    }

    async fn attempt(&self, item: &WorkItem) -> Result<StepReport, PipelineError> {
        let input = self.read_pointer(&item.input).await?;
        let key = format!(
            "stage/{}/{}/{}",
            item.stage.as_str(),
            item.input.stream_id,
            item.input.sequence
        );
        if let Some(existing) = self.store.idempotency(&key).await? {
            return self.finish_redelivery(item, &existing).await;
        }
        let mut appender = Appender::default();
        let mut commit = Commit::default();
        let mut report = StepReport::default();
        let next_stage = match item.stage {
            Stage::Detect => self.detect_step(&input, &mut appender, &mut report).await?,
            Stage::Correlate => {
                self.correlate_step(&input, &mut appender, &mut commit, &mut report)
                    .await?
            }
            Stage::Assess => self.assess_step(&input, &mut appender, &mut report).await?,
            Stage::Promote => {
                self.promote_step(&input, &mut appender, &mut commit, &mut report)
                    .await?
            }
            Stage::Page => return self.page(item, self.publisher).await,
        };
        let outputs: Vec<EventPointer> =
            appender.events.iter().map(EventEnvelope::pointer).collect();
        if let Some(stage) = next_stage {
            for pointer in &outputs {
                if pointer.stream_id.starts_with(stage.input_stream_prefix())
                    && stage.consumes_output(&appender, pointer)
                {
                    commit.work_added.push(WorkItem {
                        stage,
                        input: pointer.clone(),
                    });
                }
            }
        }
        commit.events = appender.events;
        commit.idempotency.push(IdempotencyRecord {
            key,
            request_hash: item.input.hash,
            response: to_json(&outputs)?,
        });
        commit.work_done.push(item.clone());
        match self.commit_and_publish(commit).await {
            Ok(pointers) => {
                report.events = pointers;
                Ok(report)
            }
            Err(StoreError::Conflict(Conflict::IdempotencyKeyUsed { existing })) => {
                self.finish_redelivery(item, &existing).await
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn finish_redelivery(
        &self,
        item: &WorkItem,
        existing: &IdempotencyRecord,
    ) -> Result<StepReport, PipelineError> {
        if existing.request_hash != item.input.hash {
            return Err(PipelineError::Corrupt(format!(
                "idempotency record {} was written for input hash {}, but the input is {}",
                existing.key, existing.request_hash, item.input.hash
            )));
        }
        self.store
            .commit(Commit {
                work_done: vec![item.clone()],
                ..Commit::default()
            })
            .await?;
        Ok(StepReport {
            already_done: true,
            ..StepReport::default()
        })
    }

    /// Reads the event a pointer names and checks its hash.
    pub async fn read_pointer(
        &self,
        pointer: &EventPointer,
    ) -> Result<EventEnvelope, PipelineError> {
        let mut events = self
            .store
            .read_stream(&pointer.stream_id, pointer.sequence, 1)
            .await?;
        match events.pop() {
            // The stored hash must be the pointer's and must cover the stored content: a
            // stage never decides on an event altered after it was written.
            Some(event)
                if event.sequence == pointer.sequence
                    && event.hash == pointer.hash
                    && event.computed_hash() == event.hash =>
            {
                Ok(event)
            }
            Some(event) => Err(PipelineError::Corrupt(format!(
                "{}#{} is stored with hash {} and its content hashes to {}, but the pointer says \
                 {}; stop and run `opx replay verify`",
                pointer.stream_id,
                pointer.sequence,
                event.hash,
                event.computed_hash(),
                pointer.hash
            ))),
            None => Err(PipelineError::Corrupt(format!(
                "{}#{} named by a work item does not exist",
                pointer.stream_id, pointer.sequence
            ))),
        }
    }

    fn decode(event: &EventEnvelope) -> Result<PipelineEvent, PipelineError> {
        PipelineEvent::from_payload(&event.event_type, event.schema_version, &event.payload)
            .map_err(|error| {
                PipelineError::Corrupt(format!("{}#{}: {error}", event.stream_id, event.sequence))
            })
    }

    /// Adds the rule set's `RuleSetRecorded` to the commit if the store does not hold it.
    async fn record_rules_if_missing(&self, appender: &mut Appender) -> Result<(), PipelineError> {
        let hash = self.config.rules.hash();
        self.record_once(appender, ruleset_stream(&hash), || {
            PipelineEvent::RuleSetRecorded(RuleSetRecorded {
                hash,
                files: self.config.rule_files.clone(),
            })
        })
        .await
    }

    /// Adds the model's `ConfidenceModelRecorded` to the commit if the store does not hold it.
    async fn record_model_if_missing(&self, appender: &mut Appender) -> Result<(), PipelineError> {
        let hash = self.config.model.hash();
        self.record_once(appender, model_stream(&hash), || {
            PipelineEvent::ConfidenceModelRecorded(ConfidenceModelRecorded {
                hash,
                model: self.config.model.clone(),
            })
        })
        .await
    }

    /// Appends the one event of a content-addressed stream unless this commit or the store
    /// already holds it. A stream once seen in the store is remembered, so steady-state
    /// steps do not re-read its head.
    async fn record_once(
        &self,
        appender: &mut Appender,
        stream_id: String,
        event: impl FnOnce() -> PipelineEvent,
    ) -> Result<(), PipelineError> {
        if self.known_recorded(&stream_id) || appender.head_sequence(&stream_id).is_some() {
            return Ok(());
        }
        if self.store.stream_head(&stream_id).await?.is_some() {
            if let Ok(mut known) = self.recorded_streams.lock() {
                known.insert(stream_id);
            }
            return Ok(());
        }
        appender
            .append_pipeline(self.store, &stream_id, &event())
            .await?;
        Ok(())
    }

    fn known_recorded(&self, stream_id: &str) -> bool {
        self.recorded_streams
            .lock()
            .is_ok_and(|known| known.contains(stream_id))
    }

    async fn detect_step(
        &self,
        input: &EventEnvelope,
        appender: &mut Appender,
        report: &mut StepReport,
    ) -> Result<Option<Stage>, PipelineError> {
        let PipelineEvent::SignalAccepted(accepted) = Self::decode(input)? else {
            return Err(PipelineError::Corrupt(format!(
                "detect got {}",
                input.event_type
            )));
        };
        self.record_rules_if_missing(appender).await?;
        let outcome = detect(&self.config.rules, &accepted.signal);
        if matches!(outcome, DetectionOutcome::Detected(_)) {
            report.detections += 1;
        }
        let event = PipelineEvent::SignalEvaluated(SignalEvaluated {
            signal_id: accepted.signal.id,
            ruleset_hash: self.config.rules.hash(),
            outcome,
        });
        let next = match &event {
            // Only detections and recoveries have anything to correlate.
            PipelineEvent::SignalEvaluated(SignalEvaluated {
                outcome:
                    DetectionOutcome::Detected(_)
                    | DetectionOutcome::NotDetected(NotDetectedReason::Recovery),
                ..
            }) => Some(Stage::Correlate),
            _ => None,
        };
        appender
            .append_pipeline(self.store, &input.stream_id, &event)
            .await?;
        Ok(next)
    }

    async fn correlate_step(
        &self,
        input: &EventEnvelope,
        appender: &mut Appender,
        commit: &mut Commit,
        report: &mut StepReport,
    ) -> Result<Option<Stage>, PipelineError> {
        let PipelineEvent::SignalEvaluated(evaluated) = Self::decode(input)? else {
            return Err(PipelineError::Corrupt(format!(
                "correlate got {}",
                input.event_type
            )));
        };
        match evaluated.outcome {
            DetectionOutcome::Detected(detection) => {
                let window_ms = self.config.window_ms;
                let start = window_start(detection.event_time, window_ms);
                let group = CorrelationKey::of(&detection).group_id(start);
                let event = PipelineEvent::DetectionCorrelated(DetectionCorrelated {
                    detection,
                    window_start: start,
                    window_ms: window_ms.get(),
                });
                appender
                    .append_pipeline(self.store, &group_stream(&group), &event)
                    .await?;
                Ok(Some(Stage::Assess))
            }
            DetectionOutcome::NotDetected(NotDetectedReason::Recovery) => {
                let signal = self.read_signal(&evaluated.signal_id).await?;
                let recoveries = self
                    .remember_recovery(
                        &signal.environment,
                        &signal.service,
                        Some(RecoverySeen::of(&signal)),
                        commit,
                    )
                    .await?;
                if let Some((pointer, _)) = self
                    .open_incident(&signal.environment, &signal.service)
                    .await?
                {
                    if self
                        .apply_incident_command(
                            &pointer.incident_id,
                            None,
                            Some(&recoveries),
                            appender,
                            commit,
                        )
                        .await?
                    {
                        report.incidents_updated.push(pointer.incident_id);
                    }
                }
                Ok(None)
            }
            DetectionOutcome::NotDetected(_) => Ok(None),
        }
    }

    /// Reads the recoveries seen for a service, adds `recovery`, and writes the document
    /// back with a version guard (also when nothing changed: the guard is what makes a
    /// concurrent recovery and promotion see each other; see [`crate::recovery`]).
    async fn remember_recovery(
        &self,
        environment: &str,
        service: &str,
        recovery: Option<RecoverySeen>,
        commit: &mut Commit,
    ) -> Result<ServiceRecoveries, PipelineError> {
        let key = service_recoveries_key(environment, service);
        let stored = self
            .store
            .projection(PROJECTION_SERVICE_RECOVERIES, &key)
            .await?;
        let (mut recoveries, version) = match stored {
            Some(projection) => (
                from_json::<ServiceRecoveries>("service recoveries", &projection.document)?,
                Some(projection.version),
            ),
            None => (ServiceRecoveries::default(), None),
        };
        if let Some(recovery) = recovery {
            recoveries.insert(recovery);
        }
        commit.projections.push(ProjectionChange::Put {
            projection: Projection {
                kind: PROJECTION_SERVICE_RECOVERIES.to_owned(),
                key,
                version: version.unwrap_or_default() + 1,
                document: to_json(&recoveries)?,
            },
            expected_version: version,
        });
        Ok(recoveries)
    }

    async fn read_signal(&self, signal_id: &SignalId) -> Result<Signal, PipelineError> {
        let stream_id = signal_stream(signal_id);
        let events = self.store.read_stream(&stream_id, 1, 1).await?;
        match events.first().map(Self::decode).transpose()? {
            Some(PipelineEvent::SignalAccepted(accepted)) => Ok(accepted.signal),
            _ => Err(PipelineError::Corrupt(format!(
                "{stream_id} does not start with SignalAccepted"
            ))),
        }
    }

    /// The open incident of an (environment, service), with the pointer's version.
    pub async fn open_incident(
        &self,
        environment: &str,
        service: &str,
    ) -> Result<Option<(OpenIncidentPointer, u64)>, PipelineError> {
        let key = open_incident_key(environment, service);
        match self
            .store
            .projection(PROJECTION_OPEN_INCIDENT, &key)
            .await?
        {
            Some(projection) => Ok(Some((
                from_json("open-incident pointer", &projection.document)?,
                projection.version,
            ))),
            None => Ok(None),
        }
    }

    /// Reads and folds an incident's stream.
    pub async fn load_incident(
        &self,
        incident_id: &IncidentId,
    ) -> Result<Option<Incident>, PipelineError> {
        let stream_id = incident::stream_id(incident_id);
        let events = read_all(self.store, &stream_id, INCIDENT_EVENTS_READ_MAX).await?;
        incident::fold_envelopes(&events)
            .map_err(|error| PipelineError::Corrupt(format!("{stream_id}: {error}")))
    }

    /// Decides `command` on the incident, then records every recovery in `recoveries` that
    /// now belongs on it, appends the events and updates the incident projection. Returns
    /// whether anything changed.
    async fn apply_incident_command(
        &self,
        incident_id: &IncidentId,
        command: Option<&IncidentCommand>,
        recoveries: Option<&ServiceRecoveries>,
        appender: &mut Appender,
        commit: &mut Commit,
    ) -> Result<bool, PipelineError> {
        let stream_id = incident::stream_id(incident_id);
        let events = read_all(self.store, &stream_id, INCIDENT_EVENTS_READ_MAX).await?;
        let mut state = incident::fold_envelopes(&events)
            .map_err(|error| PipelineError::Corrupt(format!("{stream_id}: {error}")))?;
        let previous_version = events.last().map(|event| event.sequence);
        let mut changed = false;
        if let Some(command) = command {
            changed |= self
                .decide_and_append(&stream_id, &mut state, command, appender)
                .await?;
        }
        if let (Some(recoveries), Some(current)) = (recoveries, state.clone()) {
            for recovery in recoveries.belonging_to(&current) {
                let command = IncidentCommand::RecordRecovery {
                    signal_id: recovery.signal_id,
                    alarm: recovery.alarm.clone(),
                    alarm_name: recovery.alarm_name.clone(),
                    event_time: recovery.event_time,
                };
                changed |= self
                    .decide_and_append(&stream_id, &mut state, &command, appender)
                    .await?;
            }
        }
        if !changed {
            return Ok(false);
        }
        let Some(state) = state else {
            return Err(PipelineError::Corrupt(format!(
                "{stream_id}: no state after decide"
            )));
        };
        let version = appender.head_sequence(&stream_id).unwrap_or_default();
        commit.projections.push(ProjectionChange::Put {
            projection: Projection {
                kind: PROJECTION_INCIDENT.to_owned(),
                key: incident_id.to_string(),
                version,
                document: to_json(&state)?,
            },
            expected_version: previous_version,
        });
        Ok(true)
    }

    /// Decides `command` on `state`, appends the resulting events and folds them into
    /// `state`. Returns whether there were any.
    async fn decide_and_append(
        &self,
        stream_id: &str,
        state: &mut Option<Incident>,
        command: &IncidentCommand,
        appender: &mut Appender,
    ) -> Result<bool, PipelineError> {
        let events = incident::decide(state.as_ref(), command)?;
        for event in &events {
            self.append_incident_event(stream_id, event, appender)
                .await?;
            *state = Some(
                incident::apply(state.take(), event)
                    .map_err(|error| PipelineError::Corrupt(format!("{stream_id}: {error}")))?,
            );
        }
        Ok(!events.is_empty())
    }

    async fn append_incident_event(
        &self,
        stream_id: &str,
        event: &IncidentEvent,
        appender: &mut Appender,
    ) -> Result<(), PipelineError> {
        let payload = event
            .to_payload()
            .map_err(|error| PipelineError::Corrupt(format!("{stream_id}: {error}")))?;
        appender
            .append(
                self.store,
                stream_id,
                event.event_type(),
                event.schema_version(),
                payload,
            )
            .await?;
        Ok(())
    }

    /// Every detection correlated into the group of `(key, window)`.
    async fn group_detections(
        &self,
        key: &CorrelationKey,
        window: opx_domain::time::EpochMs,
    ) -> Result<Vec<Detection>, PipelineError> {
        let stream_id = group_stream(&key.group_id(window));
        let events = read_all(self.store, &stream_id, GROUP_EVENTS_READ_MAX).await?;
        let mut detections = Vec::new();
        for event in &events {
            if event.event_type == DetectionCorrelated::EVENT_TYPE {
                if let PipelineEvent::DetectionCorrelated(correlated) = Self::decode(event)? {
                    detections.push(correlated.detection);
                }
            }
        }
        Ok(detections)
    }

    async fn bundle_candidates(
        &self,
        key: &CorrelationKey,
        window: opx_domain::time::EpochMs,
    ) -> Result<(Vec<Detection>, bool), PipelineError> {
        let own = self.group_detections(key, window).await?;
        let own_is_empty = own.is_empty();
        let mut candidates = self
            .group_detections(key, previous_window_start(window, self.config.window_ms))
            .await?;
        candidates.extend(own);
        Ok((candidates, own_is_empty))
    }

    async fn assess_step(
        &self,
        input: &EventEnvelope,
        appender: &mut Appender,
        _report: &mut StepReport,
    ) -> Result<Option<Stage>, PipelineError> {
        let PipelineEvent::DetectionCorrelated(correlated) = Self::decode(input)? else {
            return Err(PipelineError::Corrupt(format!(
                "assess got {}",
                input.event_type
            )));
        };
        self.record_model_if_missing(appender).await?;
        let window_ms = self.config.window_ms;
        let key = CorrelationKey::of(&correlated.detection);
        for window in windows_to_evaluate(correlated.detection.event_time, window_ms) {
            let (candidates, own_is_empty) = self.bundle_candidates(&key, window).await?;
            // The next window is evaluated only when it already has detections: a late
            // detection can complete a storm whose later part is there.
            if own_is_empty {
                continue;
            }
            let bundle = EvidenceBundle::for_window(key.clone(), window, window_ms, candidates);
            let assessment = assess(&self.config.model, &bundle);
            let event = PipelineEvent::ConfidenceAssessed(ConfidenceAssessed {
                key: key.clone(),
                window_start: window,
                window_ms: window_ms.get(),
                trigger: correlated.detection.id,
                member_ids: bundle.members.iter().map(|member| member.id).collect(),
                truncated: bundle.truncated,
                model_hash: self.config.model.hash(),
                assessment,
            });
            appender
                .append_pipeline(self.store, &group_stream(&bundle.group_id), &event)
                .await?;
        }
        Ok(Some(Stage::Promote))
    }

    /// Rebuilds the bundle an assessment saw from its recorded member ids.
    pub async fn bundle_as_assessed(
        &self,
        assessed: &ConfidenceAssessed,
    ) -> Result<EvidenceBundle, PipelineError> {
        let window_ms = WindowMs::new(assessed.window_ms)
            .map_err(|error| PipelineError::Corrupt(format!("recorded window: {error}")))?;
        let (candidates, _) = self
            .bundle_candidates(&assessed.key, assessed.window_start)
            .await?;
        Ok(EvidenceBundle::as_recorded(
            assessed.key.clone(),
            assessed.window_start,
            window_ms,
            candidates,
            &assessed.member_ids,
            assessed.truncated,
        ))
    }

    async fn group_generation(
        &self,
        group: &GroupId,
    ) -> Result<(GroupGeneration, Option<u64>), PipelineError> {
        match self
            .store
            .projection(PROJECTION_GROUP_GENERATION, &group.to_string())
            .await?
        {
            Some(projection) => Ok((
                from_json("group generation", &projection.document)?,
                Some(projection.version),
            )),
            None => Ok((GroupGeneration::default(), None)),
        }
    }

    async fn promote_step(
        &self,
        input: &EventEnvelope,
        appender: &mut Appender,
        commit: &mut Commit,
        report: &mut StepReport,
    ) -> Result<Option<Stage>, PipelineError> {
        let PipelineEvent::ConfidenceAssessed(assessed) = Self::decode(input)? else {
            return Err(PipelineError::Corrupt(format!(
                "promote got {}",
                input.event_type
            )));
        };
        let bundle = self.bundle_as_assessed(&assessed).await?;
        let open = self
            .open_incident(&assessed.key.environment, &assessed.key.service)
            .await?;
        let seen = match &open {
            Some((pointer, _)) => {
                let incident =
                    self.load_incident(&pointer.incident_id)
                        .await?
                        .ok_or_else(|| {
                            PipelineError::Corrupt(format!(
                                "open-incident pointer names {} which has no events",
                                pointer.incident_id
                            ))
                        })?;
                Some(SeenIncident {
                    incident_id: incident.id,
                    state: incident.state,
                })
            }
            None => None,
        };
        let (generation, _) = self.group_generation(&bundle.group_id).await?;
        let decision = promotion::decide(&GateInput {
            bundle: &bundle,
            assessment: &assessed.assessment,
            open_incident: seen,
            closed_generations: generation.closed,
        });
        let decision_hash = decision.hash();
        let evidence: Vec<EvidenceItem> = bundle.members.iter().map(EvidenceItem::from).collect();
        match (decision.outcome, decision.incident_id) {
            (Outcome::Promote, Some(incident_id)) => {
                let command = IncidentCommand::Open {
                    incident_id,
                    environment: bundle.key.environment.clone(),
                    service: bundle.key.service.clone(),
                    group_id: bundle.group_id,
                    generation: decision.generation,
                    evidence,
                    decision_hash,
                };
                let recoveries = self
                    .remember_recovery(&bundle.key.environment, &bundle.key.service, None, commit)
                    .await?;
                self.apply_incident_command(
                    &incident_id,
                    Some(&command),
                    Some(&recoveries),
                    appender,
                    commit,
                )
                .await?;
                commit.projections.push(ProjectionChange::Put {
                    projection: Projection {
                        kind: PROJECTION_OPEN_INCIDENT.to_owned(),
                        key: open_incident_key(&bundle.key.environment, &bundle.key.service),
                        version: 1,
                        document: to_json(&OpenIncidentPointer {
                            incident_id,
                            environment: bundle.key.environment.clone(),
                            service: bundle.key.service.clone(),
                        })?,
                    },
                    expected_version: None,
                });
                report.incidents_opened.push(incident_id);
            }
            (Outcome::Attach, Some(incident_id)) => {
                let command = IncidentCommand::AttachEvidence {
                    evidence,
                    decision_hash,
                };
                let recoveries = self
                    .remember_recovery(&bundle.key.environment, &bundle.key.service, None, commit)
                    .await?;
                if self
                    .apply_incident_command(
                        &incident_id,
                        Some(&command),
                        Some(&recoveries),
                        appender,
                        commit,
                    )
                    .await?
                {
                    report.incidents_updated.push(incident_id);
                }
            }
            _ => {}
        }
        let event = PipelineEvent::PromotionDecided(Box::new(PromotionDecided {
            assessment_event: input.pointer(),
            decision,
        }));
        appender
            .append_pipeline(self.store, &input.stream_id, &event)
            .await?;
        Ok(None)
    }

    /// Runs a human command against an incident (transition, note, assignee, severity),
    /// maintaining the open-incident pointer and the group generation when it closes.
    pub async fn execute_human(
        &self,
        incident_id: &IncidentId,
        command: &IncidentCommand,
    ) -> Result<Incident, PipelineError> {
        match self.execute_human_once(incident_id, command, None).await? {
            HumanOutcome::Applied(incident) => Ok(incident),
            HumanOutcome::Repeated { incident, .. } => Ok(incident),
        }
    }

    /// Like [`Pipeline::execute_human`], but at most once per `request.key`: the idempotency
    /// record (holding the resulting incident) is written in the same commit as the
    /// action's events. A retry with the same key and hash gets the recorded result without
    /// acting again; the same key with another hash is [`PipelineError::RequestKeyReused`].
    pub async fn execute_human_once(
        &self,
        incident_id: &IncidentId,
        command: &IncidentCommand,
        request: Option<&HumanRequest>,
    ) -> Result<HumanOutcome, PipelineError> {
        for _ in 0..STEP_ATTEMPTS_MAX {
            if let Some(request) = request {
                if let Some(existing) = self.store.idempotency(&request.key).await? {
                    return Self::repeated(request, &existing);
                }
            }
            match self.attempt_human(incident_id, command, request).await {
                Err(PipelineError::Store(error)) if is_retryable_conflict(&error) => continue,
                Err(PipelineError::Store(StoreError::Conflict(Conflict::IdempotencyKeyUsed {
                    existing,
                }))) => {
                    if let Some(request) = request {
                        return Self::repeated(request, &existing);
                    }
                    return Err(PipelineError::Corrupt(format!(
                        "a human action without a key met idempotency record {}",
                        existing.key
                    )));
                }
                other => return other.map(HumanOutcome::Applied),
            }
        }
        Err(PipelineError::Contended {
            stage: "incident",
            input: incident_id.to_string(),
        })
    }

    fn repeated(
        request: &HumanRequest,
        existing: &IdempotencyRecord,
    ) -> Result<HumanOutcome, PipelineError> {
        if existing.request_hash != request.request_hash {
            return Err(PipelineError::RequestKeyReused {
                key: request.key.clone(),
            });
        }
        Ok(HumanOutcome::Repeated {
            incident: from_json("recorded human response", &existing.response)?,
        })
    }

    async fn attempt_human(
        &self,
        incident_id: &IncidentId,
        command: &IncidentCommand,
        request: Option<&HumanRequest>,
    ) -> Result<Incident, PipelineError> {
        let before = self
            .load_incident(incident_id)
            .await?
            .ok_or_else(|| PipelineError::IncidentNotFound(incident_id.to_string()))?;
        let mut appender = Appender::default();
        let mut commit = Commit::default();
        self.apply_incident_command(incident_id, Some(command), None, &mut appender, &mut commit)
            .await?;
        let stream_id = incident::stream_id(incident_id);
        let mut after = Some(before.clone());
        for event in &appender.events {
            let decoded = IncidentEvent::from_payload(
                &event.event_type,
                event.schema_version,
                &event.payload,
            )
            .map_err(|error| PipelineError::Corrupt(format!("{stream_id}: {error}")))?;
            after = Some(
                incident::apply(after, &decoded)
                    .map_err(|error| PipelineError::Corrupt(format!("{stream_id}: {error}")))?,
            );
        }
        let after = after.unwrap_or(before.clone());
        if before.state != IncidentState::Closed && after.state == IncidentState::Closed {
            let key = open_incident_key(&after.environment, &after.service);
            if let Some((pointer, version)) = self
                .open_incident(&after.environment, &after.service)
                .await?
            {
                if pointer.incident_id == after.id {
                    commit.projections.push(ProjectionChange::Delete {
                        kind: PROJECTION_OPEN_INCIDENT.to_owned(),
                        key,
                        expected_version: version,
                    });
                }
            }
            let (generation, version) = self.group_generation(&after.group_id).await?;
            commit.projections.push(ProjectionChange::Put {
                projection: Projection {
                    kind: PROJECTION_GROUP_GENERATION.to_owned(),
                    key: after.group_id.to_string(),
                    version: version.unwrap_or_default() + 1,
                    document: to_json(&GroupGeneration {
                        closed: generation.closed + 1,
                    })?,
                },
                expected_version: version,
            });
        }
        commit.events = appender.events;
        if let Some(request) = request {
            commit.idempotency.push(IdempotencyRecord {
                key: request.key.clone(),
                request_hash: request.request_hash,
                response: to_json(&after)?,
            });
        }
        if !commit.events.is_empty() || !commit.idempotency.is_empty() {
            self.commit_and_publish(commit).await?;
        }
        Ok(after)
    }
}

/// The identity of a human request, for at-most-once execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HumanRequest {
    /// The idempotency key, scoped by the caller, e.g. `api/<principal>/<client key>`.
    pub key: String,
    /// Hash of the request's canonical content (incident, command, body).
    pub request_hash: Digest,
}

/// What a human request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HumanOutcome {
    /// The action was applied now; the incident after it.
    Applied(Incident),
    /// The same request was applied before; the incident as recorded then.
    Repeated {
        /// The incident as it was right after the first execution.
        incident: Incident,
    },
}

impl Stage {
    fn input_stream_prefix(self) -> &'static str {
        match self {
            Stage::Detect | Stage::Correlate => "signal:",
            Stage::Assess | Stage::Promote => "group:",
            Stage::Page => "incident:",
        }
    }

    /// Whether an output event of the previous stage is this stage's input.
    fn consumes_output(self, appender: &Appender, pointer: &EventPointer) -> bool {
        appender
            .events
            .iter()
            .any(|event| event.pointer() == *pointer && self.consumes(&event.event_type))
    }
}

/// What draining the work queue did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Steps run.
    pub steps: u64,
    /// Detections made.
    pub detections: u64,
    /// Incidents opened.
    pub incidents_opened: Vec<IncidentId>,
    /// Incidents that gained evidence or a recovery.
    pub incidents_updated: Vec<IncidentId>,
    /// Page steps done, through the pipeline's publisher (which sends nothing embedded).
    pub pages_sent: u64,
    /// Steps left queued, with why (transient failures, lost races, corrupt input).
    pub left_queued: Vec<String>,
    /// Stopped because `steps_max` was reached.
    pub stopped_at_limit: bool,
}

/// Reads a whole stream page by page, failing closed past `events_max`.
pub async fn read_all<S: crate::ports::StoreRead>(
    store: &S,
    stream_id: &str,
    events_max: usize,
) -> Result<Vec<EventEnvelope>, PipelineError> {
    let mut events: Vec<EventEnvelope> = Vec::new();
    loop {
        let from = events.last().map_or(1, |event| event.sequence + 1);
        let page = store
            .read_stream(stream_id, from, READ_PAGE_SIZE_MAX)
            .await?;
        let done = page.len() < READ_PAGE_SIZE_MAX;
        events.extend(page);
        if events.len() > events_max {
            return Err(PipelineError::Corrupt(format!(
                "{stream_id} holds more than {events_max} events; refusing to decide on a partial read"
            )));
        }
        if done {
            return Ok(events);
        }
    }
}
