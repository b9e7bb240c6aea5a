//! No page is lost: an `IncidentOpened` or `SeverityChanged` is committed with its page
//! work item, the fan-out removes the item only once the event is published, and the
//! sweeper sends what the fan-out could not — with the same message id, so the
//! subscriber pages once. Over a real SQLite store, with publishers that fail on purpose.

// Test code: helpers outside #[test] functions unwrap too; a failed step is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use opx_app::pipeline::Pipeline;
use opx_app::ports::{
    Commit, IdempotencyRecord, NoPublisher, Page, Projection, Publisher, RejectRecord, Stage,
    Store, StoreError, StoreRead, WorkItem,
};
use opx_app::replay::{verify, DivergenceKind, VerifyOptions};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::incident::{IncidentCommand, IncidentEvent, IncidentId, Principal};
use opx_domain::signal::Severity;
use opx_domain::time::EpochMs;
use opx_lambda::fanout::{handle_fanout, FanoutReport};
use opx_lambda::ingest::handle_signal_ingest;
use opx_lambda::sweeper::{handle_sweep, AgeUnknown, SweepLimits, SweepReport};
use opx_publisher_eventbridge::{BusEntry, PointerDetail};
use opx_store_sqlite::SqliteStore;
use std::sync::Mutex;
use support::*;

/// Fails its first `failures` publishes (as a throttled or unreachable bus does), then
/// delivers. Records every event it was asked to publish and every event it delivered.
struct FlakyPublisher {
    failures_left: Mutex<u64>,
    attempted: CapturePublisher,
    delivered: CapturePublisher,
}

impl FlakyPublisher {
    fn failing_first(failures: u64) -> FlakyPublisher {
        FlakyPublisher {
            failures_left: Mutex::new(failures),
            attempted: CapturePublisher::default(),
            delivered: CapturePublisher::default(),
        }
    }

    fn always_failing() -> FlakyPublisher {
        FlakyPublisher::failing_first(u64::MAX)
    }
}

impl Publisher for FlakyPublisher {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        self.attempted.publish(events).await?;
        let fail = {
            let mut left = self.failures_left.lock().unwrap();
            let fail = *left > 0;
            *left = left.saturating_sub(1);
            fail
        };
        if fail {
            return Err(StoreError::Unavailable {
                message: "EventBridge is throttling (test)".to_owned(),
                source: None,
            });
        }
        self.delivered.publish(events).await
    }

    fn delivers(&self) -> bool {
        true
    }
}

/// The SQLite store, except that a commit that only completes work fails as unavailable
/// (the fan-out's removal of a page item, nothing else).
struct WorkDoneRefused<'a>(&'a SqliteStore);

impl StoreRead for WorkDoneRefused<'_> {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.0.read_stream(stream_id, from_sequence, limit).await
    }
    async fn stream_head(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        self.0.stream_head(stream_id).await
    }
    async fn list_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        self.0.list_streams(cursor, limit).await
    }
    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.0.idempotency(key).await
    }
    async fn list_idempotency(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<IdempotencyRecord>, StoreError> {
        self.0.list_idempotency(cursor, limit).await
    }
    async fn projection(&self, kind: &str, key: &str) -> Result<Option<Projection>, StoreError> {
        self.0.projection(kind, key).await
    }
    async fn list_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Projection>, StoreError> {
        self.0.list_projections(kind, cursor, limit).await
    }
    async fn pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<WorkItem>, StoreError> {
        self.0.pending_work(cursor, limit).await
    }
    async fn list_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RejectRecord>, StoreError> {
        self.0.list_rejects(cursor, limit).await
    }
}

impl Store for WorkDoneRefused<'_> {
    async fn commit(&self, commit: Commit) -> Result<Vec<EventPointer>, StoreError> {
        if commit.events.is_empty() && !commit.work_done.is_empty() {
            return Err(StoreError::Unavailable {
                message: "DynamoDB is throttling (test)".to_owned(),
                source: None,
            });
        }
        self.0.commit(commit).await
    }
    async fn record_reject(&self, reject: RejectRecord) -> Result<(), StoreError> {
        self.0.record_reject(reject).await
    }
}

/// Every pending work item.
async fn pending<S: StoreRead>(store: &S) -> Vec<WorkItem> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.pending_work(cursor.as_deref(), 100).await.unwrap();
        items.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return items,
        }
    }
}

async fn pending_keys<S: StoreRead>(store: &S) -> Vec<String> {
    pending(store).await.iter().map(WorkItem::key).collect()
}

/// The EventBridge storm ingested and carried through every stage as the stage functions
/// do — each runs its own work items and publishes nothing; no page is sent — until only
/// pages are left. Returns every committed event in commit order: what the events
/// table's stream carries to the fan-out.
async fn storm_through_the_stages(store: &SqliteStore) -> Vec<EventEnvelope> {
    let config = config();
    let table_stream = CapturePublisher::default();
    let pipeline = Pipeline::new(store, &table_stream, &config);
    let harness = Harness::new();
    let events = fixture!("eventbridge_alarm_events.json");
    for (index, event) in events.as_array().unwrap().iter().enumerate() {
        let request_id = format!("req-{index}");
        let invocation = harness.invocation("signal-ingest", &request_id);
        handle_signal_ingest(&pipeline, &invocation, event)
            .await
            .unwrap();
    }
    loop {
        let stage_work: Vec<WorkItem> = pending(store)
            .await
            .into_iter()
            .filter(|item| item.stage != Stage::Page)
            .collect();
        if stage_work.is_empty() {
            return table_stream.take();
        }
        for item in &stage_work {
            pipeline.run(item).await.unwrap();
        }
    }
}

/// The one `IncidentOpened` among `committed`, and its page's work item.
fn the_opened(committed: &[EventEnvelope]) -> (EventEnvelope, WorkItem) {
    let opened: Vec<&EventEnvelope> = committed
        .iter()
        .filter(|event| event.event_type == "IncidentOpened")
        .collect();
    assert_eq!(opened.len(), 1, "the storm opens one incident");
    let page = WorkItem {
        stage: Stage::Page,
        input: opened[0].pointer(),
    };
    (opened[0].clone(), page)
}

async fn fan_out<S: Store, P: Publisher>(
    store: &S,
    bus: &P,
    committed: &[EventEnvelope],
    request_id: &str,
) -> FanoutReport {
    let mut sequence_number = 4_600_000_000_000_000_000_u64;
    let batch = stream_batch(
        &InProcessTransport::default(),
        committed,
        &mut sequence_number,
    )
    .await;
    let harness = Harness::new();
    let invocation = harness.invocation("fanout", request_id);
    let outcome = handle_fanout(store, bus, &invocation, &batch)
        .await
        .unwrap();
    assert_eq!(
        outcome.response.batch_item_failures.len() as u64,
        outcome.report.failed
    );
    outcome.report
}

/// One sweep as the sweeper function runs it: stage steps publish nothing, pages go
/// through `pager`.
async fn sweep<P: Publisher>(store: &SqliteStore, pager: &P, request_id: &str) -> SweepReport {
    let config = config();
    let pipeline = Pipeline::new(store, &NoPublisher, &config);
    let harness = Harness::new();
    let invocation = harness.invocation("sweeper", request_id);
    handle_sweep(
        &pipeline,
        pager,
        &AgeUnknown(store),
        &invocation,
        &SweepLimits::with_min_age_ms(0),
    )
    .await
    .unwrap()
}

fn message_id(event: &EventEnvelope) -> String {
    let entry = BusEntry::of(event).unwrap();
    serde_json::from_str::<PointerDetail>(&entry.detail)
        .unwrap()
        .message_id
}

#[tokio::test]
async fn a_page_the_fanout_could_not_publish_is_sent_by_the_sweeper_exactly_once() {
    let temp = fresh_store();
    let committed = storm_through_the_stages(&temp.store).await;
    let (opened, page) = the_opened(&committed);
    assert_eq!(
        pending_keys(&temp.store).await,
        vec![page.key()],
        "the incident's page is queued in the commit that opened it"
    );

    // The bus is down for the whole batch, and Lambda gives up on it.
    let bus_down = FlakyPublisher::always_failing();
    let fanned = fan_out(&temp.store, &bus_down, &committed, "fanout-down").await;
    assert_eq!(fanned.failed, committed.len() as u64, "{fanned:?}");
    assert_eq!((fanned.published, fanned.pages_sent), (0, 0));
    assert_eq!(pending_keys(&temp.store).await, vec![page.key()]);

    // The sweeper's first publish fails too: the page stays queued, as retryable.
    let pager = FlakyPublisher::failing_first(1);
    let first = sweep(&temp.store, &pager, "sweep-1").await;
    assert_eq!(
        (
            first.steps,
            first.pages_sent,
            first.failed_retryable,
            first.failed_permanent
        ),
        (1, 0, 1, 0),
        "{first:?}"
    );
    assert_eq!(pending_keys(&temp.store).await, vec![page.key()]);

    let second = sweep(&temp.store, &pager, "sweep-2").await;
    assert_eq!(
        (second.steps, second.pages_sent, second.failed_retryable),
        (1, 1, 0),
        "{second:?}"
    );
    assert!(pending_keys(&temp.store).await.is_empty());
    let third = sweep(&temp.store, &pager, "sweep-3").await;
    assert_eq!((third.seen, third.steps, third.pages_sent), (0, 0, 0));

    let delivered = pager.delivered.take();
    assert_eq!(delivered, vec![opened.clone()], "paged exactly once");
    // The page the fan-out tried and the one the sweeper sent are one message to the
    // subscriber.
    let tried = bus_down.attempted.take();
    let tried_opened = tried
        .iter()
        .find(|event| event.event_type == "IncidentOpened")
        .unwrap();
    assert_eq!(message_id(tried_opened), message_id(&delivered[0]));
    assert_eq!(message_id(&delivered[0]), opened.hash.to_hex());
    assert_eq!(
        BusEntry::of(tried_opened).unwrap(),
        BusEntry::of(&delivered[0]).unwrap()
    );
}

#[tokio::test]
async fn a_published_page_is_done_and_no_sweep_sends_it_again() {
    let temp = fresh_store();
    let committed = storm_through_the_stages(&temp.store).await;
    let (opened, page) = the_opened(&committed);
    assert_eq!(pending_keys(&temp.store).await, vec![page.key()]);

    let bus = CapturePublisher::default();
    let fanned = fan_out(&temp.store, &bus, &committed, "fanout-1").await;
    assert_eq!(fanned.failed, 0, "{fanned:?}");
    assert_eq!(fanned.published, committed.len() as u64);
    assert_eq!((fanned.pages_sent, fanned.pages_left_queued), (1, 0));
    assert!(pending_keys(&temp.store).await.is_empty());
    let on_bus = bus.take();
    assert_eq!(
        on_bus
            .iter()
            .filter(|event| Stage::Page.consumes(&event.event_type))
            .collect::<Vec<_>>(),
        vec![&opened]
    );

    let pager = CapturePublisher::default();
    let swept = sweep(&temp.store, &pager, "sweep-1").await;
    assert_eq!((swept.steps, swept.pages_sent), (0, 0), "{swept:?}");
    assert!(pager.take().is_empty());

    // Lambda delivers the record again: published again, the item stays done.
    let again = fan_out(&temp.store, &bus, &committed, "fanout-2").await;
    assert_eq!((again.failed, again.pages_sent), (0, 1));
    assert!(pending_keys(&temp.store).await.is_empty());
}

#[tokio::test]
async fn a_page_whose_removal_failed_is_not_a_failed_record_and_is_sent_again() {
    let temp = fresh_store();
    let committed = storm_through_the_stages(&temp.store).await;
    let (opened, page) = the_opened(&committed);

    let bus = CapturePublisher::default();
    let fanned = fan_out(&WorkDoneRefused(&temp.store), &bus, &committed, "fanout-1").await;
    assert_eq!(
        fanned.failed, 0,
        "published records are not retried: {fanned:?}"
    );
    assert_eq!((fanned.pages_sent, fanned.pages_left_queued), (0, 1));
    assert_eq!(pending_keys(&temp.store).await, vec![page.key()]);

    let pager = CapturePublisher::default();
    let swept = sweep(&temp.store, &pager, "sweep-1").await;
    assert_eq!(swept.pages_sent, 1, "{swept:?}");
    let resent = pager.take();
    assert_eq!(resent, vec![opened.clone()]);
    let first = bus
        .take()
        .into_iter()
        .find(|event| event.event_type == "IncidentOpened")
        .unwrap();
    assert_eq!(
        message_id(&first),
        message_id(&resent[0]),
        "the subscriber sees the re-send as the same message"
    );
    assert!(pending_keys(&temp.store).await.is_empty());
}

#[tokio::test]
async fn a_human_severity_change_queues_its_page() {
    let temp = fresh_store();
    let committed = storm_through_the_stages(&temp.store).await;
    let (opened, _) = the_opened(&committed);
    let fanned = fan_out(
        &temp.store,
        &CapturePublisher::default(),
        &committed,
        "fanout-1",
    )
    .await;
    assert_eq!(fanned.pages_sent, 1);
    assert!(pending_keys(&temp.store).await.is_empty());

    let IncidentEvent::IncidentOpened(decoded) =
        IncidentEvent::from_payload(&opened.event_type, opened.schema_version, &opened.payload)
            .unwrap()
    else {
        panic!("not an IncidentOpened");
    };
    let incident_id: IncidentId = decoded.incident_id;
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let before = pipeline.load_incident(&incident_id).await.unwrap().unwrap();
    let severity = if before.severity == Severity::Sev1 {
        Severity::Sev2
    } else {
        Severity::Sev1
    };
    let command = IncidentCommand::SetSeverity {
        principal: Principal::iam("arn:aws:sts::123456789012:assumed-role/Responder/alice")
            .unwrap(),
        at: EpochMs(1_795_489_900_000),
        severity,
        reason: "customers report checkout failures".to_owned(),
    };
    pipeline
        .execute_human(&incident_id, &command)
        .await
        .unwrap();

    let head = temp
        .store
        .stream_head(&opened.stream_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.event_type, "SeverityChanged");
    let page = WorkItem {
        stage: Stage::Page,
        input: head.pointer(),
    };
    assert_eq!(pending(&temp.store).await, vec![page]);
    // A queued page is pending work, not a divergence.
    let report = verify(&temp.store, &VerifyOptions::default())
        .await
        .unwrap();
    assert!(report.ok(), "{:#?}", report.divergences);
    assert_eq!(report.pending.len(), 1);

    let pager = CapturePublisher::default();
    let swept = sweep(&temp.store, &pager, "sweep-1").await;
    assert_eq!(swept.pages_sent, 1, "{swept:?}");
    assert_eq!(pager.take(), vec![head]);
    assert!(pending_keys(&temp.store).await.is_empty());
    let report = verify(&temp.store, &VerifyOptions::default())
        .await
        .unwrap();
    assert!(report.ok(), "{:#?}", report.divergences);
}

#[tokio::test]
async fn the_embedded_drain_completes_pages_and_a_failing_publisher_leaves_only_them() {
    let temp = fresh_store();
    ingest_storm(&temp.store).await;
    let config = config();
    let bus_down = FlakyPublisher::always_failing();
    let pipeline = Pipeline::new(&temp.store, &bus_down, &config);
    let report = pipeline.drain(u64::MAX).await.unwrap();
    assert_eq!(report.incidents_opened.len(), 1);
    assert_eq!(report.pages_sent, 0);
    assert_eq!(report.left_queued.len(), 1, "{:?}", report.left_queued);
    let queued = pending(&temp.store).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].stage, Stage::Page);

    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let report = pipeline.drain(u64::MAX).await.unwrap();
    assert_eq!((report.steps, report.pages_sent), (1, 1));
    assert!(report.left_queued.is_empty());
    assert!(pending(&temp.store).await.is_empty());
}

#[tokio::test]
async fn a_pipeline_announcing_on_a_bus_sends_each_page_once() {
    // As `opx --bus NAME` runs: every commit published to the bus, then the queue drained.
    let temp = fresh_store();
    ingest_storm(&temp.store).await;
    let config = config();
    let bus = FlakyPublisher::failing_first(0);
    let pipeline = Pipeline::new(&temp.store, &bus, &config);
    let report = pipeline.drain(u64::MAX).await.unwrap();
    assert_eq!(report.incidents_opened.len(), 1);
    assert!(report.left_queued.is_empty(), "{:?}", report.left_queued);
    assert_eq!(
        report.pages_sent, 0,
        "the page went out with its commit; no page step re-sent it"
    );
    let pages: Vec<EventEnvelope> = bus
        .delivered
        .take()
        .into_iter()
        .filter(|event| Stage::Page.consumes(&event.event_type))
        .collect();
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0].event_type, "IncidentOpened");
    assert!(pending(&temp.store).await.is_empty());
}

/// The storm ingested, nothing run.
async fn ingest_storm(store: &SqliteStore) {
    let config = config();
    let pipeline = Pipeline::new(store, &NoPublisher, &config);
    let harness = Harness::new();
    let events = fixture!("eventbridge_alarm_events.json");
    for (index, event) in events.as_array().unwrap().iter().enumerate() {
        let request_id = format!("req-{index}");
        let invocation = harness.invocation("signal-ingest", &request_id);
        handle_signal_ingest(&pipeline, &invocation, event)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn replay_accepts_a_queued_page_only_on_an_event_that_pages() {
    let temp = fresh_store();
    let committed = storm_through_the_stages(&temp.store).await;
    let report = verify(&temp.store, &VerifyOptions::default())
        .await
        .unwrap();
    assert!(report.ok(), "{:#?}", report.divergences);
    assert_eq!(report.pending.len(), 1, "the queued page is pending");

    // A page item on an event that pages nobody.
    let accepted = committed
        .iter()
        .find(|event| event.event_type == "SignalAccepted")
        .unwrap();
    temp.store
        .commit(Commit {
            work_added: vec![WorkItem {
                stage: Stage::Page,
                input: accepted.pointer(),
            }],
            ..Commit::default()
        })
        .await
        .unwrap();
    let report = verify(&temp.store, &VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.divergences.len(), 1, "{:#?}", report.divergences);
    let divergence = &report.divergences[0];
    assert_eq!(divergence.kind, DivergenceKind::InputUnavailable);
    assert_eq!(divergence.field.as_deref(), Some("event_type"));
    assert_eq!(divergence.actual, "SignalAccepted");
    assert_eq!(
        divergence.stream_id.as_deref(),
        Some(accepted.stream_id.as_str())
    );
}

#[tokio::test]
async fn replay_refuses_an_idempotency_record_for_a_page() {
    let temp = fresh_store();
    let committed = storm_through_the_stages(&temp.store).await;
    let (opened, page) = the_opened(&committed);
    temp.store
        .commit(Commit {
            idempotency: vec![IdempotencyRecord {
                key: format!("stage/{}", page.key()),
                request_hash: opened.hash,
                response: b"[]".to_vec(),
            }],
            ..Commit::default()
        })
        .await
        .unwrap();
    let report = verify(&temp.store, &VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.divergences.len(), 1, "{:#?}", report.divergences);
    assert_eq!(
        report.divergences[0].kind,
        DivergenceKind::IdempotencyMismatch
    );
}
