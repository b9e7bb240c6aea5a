//! Shared helpers for the handler tests: a real SQLite store on a temporary file, a fixed
//! clock, publishers that capture (standing in for the events table's stream, the fan-out
//! and EventBridge) or fail on purpose, and builders for real-shaped Lambda events.
// Test helpers: each test binary uses some of them, and a failed step is a failed test.
#![allow(dead_code, clippy::unwrap_used)]

use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use opx_app::pipeline::{read_all, Pipeline, PipelineConfig, PROJECTION_INCIDENT};
use opx_app::ports::{Clock, NoPublisher, Publisher, Stage, Store, StoreError, StoreRead};
use opx_domain::event::EventEnvelope;
use opx_domain::source::parse_value;
use opx_domain::time::EpochMs;
use opx_lambda::fanout::handle_fanout;
use opx_lambda::ingest::handle_signal_ingest;
use opx_lambda::stage::{handle_stage, StageOutcome};
use opx_lambda::sweeper::{handle_sweep, PendingWorkSource, SweepLimits};
use opx_lambda::telemetry::CapturedMetrics;
use opx_lambda::Invocation;
use opx_publisher_eventbridge::BusEntry;
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// A fixture from `tests/fixtures`, parsed.
#[macro_export]
macro_rules! fixture {
    ($name:literal) => {
        serde_json::from_str::<serde_json::Value>(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        )))
        .expect(concat!("fixture ", $name, " is JSON"))
    };
}

/// A store in its own temporary directory (removed when dropped).
pub struct TempStore {
    /// The store.
    pub store: SqliteStore,
    _dir: tempfile::TempDir,
}

/// A fresh SQLite store.
pub fn fresh_store() -> TempStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("opx.db"), SqliteOptions::default())
        .expect("store opens");
    TempStore { store, _dir: dir }
}

/// The configuration the functions use.
pub fn config() -> PipelineConfig {
    opx_lambda::config::pipeline_config().expect("built-in rules load")
}

/// A clock that says what it is told.
pub struct FixedClock(pub Mutex<EpochMs>);

impl FixedClock {
    /// 2026-11-24T03:10:00Z: shortly after the fixtures' storm.
    pub fn storm() -> FixedClock {
        FixedClock(Mutex::new(EpochMs(1_795_489_800_000)))
    }
}

impl FixedClock {
    /// The time, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.0.lock().unwrap().0
    }
}

impl Clock for FixedClock {
    fn now(&self) -> EpochMs {
        *self.0.lock().unwrap()
    }
}

/// What a test invocation needs to outlive.
pub struct Harness {
    /// The clock.
    pub clock: FixedClock,
    /// The metric lines written.
    pub metrics: CapturedMetrics,
}

impl Harness {
    /// A fixed clock and captured metrics.
    pub fn new() -> Harness {
        Harness {
            clock: FixedClock::storm(),
            metrics: CapturedMetrics::default(),
        }
    }

    /// An invocation of `function` with request id `request_id` and no deadline.
    pub fn invocation<'a>(&'a self, function: &'a str, request_id: &'a str) -> Invocation<'a> {
        Invocation {
            function,
            request_id,
            deadline: None,
            clock: &self.clock,
            metrics: &self.metrics,
        }
    }
}

/// Captures every published event, in order: stands in for the events table's stream.
#[derive(Default)]
pub struct CapturePublisher {
    events: Mutex<Vec<EventEnvelope>>,
}

impl CapturePublisher {
    /// Takes the events captured so far.
    pub fn take(&self) -> Vec<EventEnvelope> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

impl Publisher for CapturePublisher {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        self.events.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

/// Fails, on purpose, for every event of one stream (transiently), and captures the rest.
pub struct FailingPublisher {
    /// The stream whose events fail.
    pub failing_stream: String,
    /// What was published.
    pub published: CapturePublisher,
}

impl Publisher for FailingPublisher {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        if events
            .iter()
            .any(|event| event.stream_id == self.failing_stream)
        {
            return Err(StoreError::Unavailable {
                message: format!("{}: EventBridge is throttling (test)", self.failing_stream),
                source: None,
            });
        }
        self.published.publish(events).await
    }
}

/// The stage a bus rule sends an event type to (the routing the CDK app declares).
pub fn stage_for(event_type: &str) -> Option<Stage> {
    match event_type {
        "SignalAccepted" => Some(Stage::Detect),
        "SignalEvaluated" => Some(Stage::Correlate),
        "DetectionCorrelated" => Some(Stage::Assess),
        "ConfidenceAssessed" => Some(Stage::Promote),
        _ => None,
    }
}

/// The event EventBridge delivers to a rule's target for a published opx event, exactly
/// as `PutEvents` would carry it (detail built by the real publisher code).
pub fn bus_event(event: &EventEnvelope) -> Value {
    let entry = BusEntry::of(event).expect("entry");
    let id = &event.hash.to_hex();
    json!({
        "version": "0",
        "id": format!("{}-{}-{}-{}-{}", &id[0..8], &id[8..12], &id[12..16], &id[16..20], &id[20..32]),
        "detail-type": entry.detail_type,
        "source": "opx",
        "account": "111122223333",
        "time": "2026-11-24T03:05:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": serde_json::from_str::<Value>(&entry.detail).expect("detail is JSON"),
    })
}

/// Standard base64 (the encoding of DynamoDB `B` values in stream records).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `NewImage` of an events-table item as a DynamoDB stream record carries it (the
/// store's item format: binary payload, hex digests, `format` 1).
pub fn event_image(event: &EventEnvelope) -> Value {
    json!({
        "stream_id": {"S": event.stream_id},
        "sequence": {"N": event.sequence.to_string()},
        "event_type": {"S": event.event_type},
        "schema_version": {"N": event.schema_version.to_string()},
        "payload": {"B": base64(&event.payload)},
        "previous_hash": {"S": event.previous_hash.to_hex()},
        "hash": {"S": event.hash.to_hex()},
        "format": {"N": "1"}
    })
}

/// One DynamoDB stream record of the events table, as Lambda delivers it.
pub fn stream_record(event_name: &str, image: Value, sequence_number: &str) -> Value {
    let keys = json!({
        "stream_id": image["stream_id"].clone(),
        "sequence": image["sequence"].clone(),
    });
    let mut change = json!({
        "ApproximateCreationDateTime": 1795489510.0,
        "Keys": keys,
        "SequenceNumber": sequence_number,
        "SizeBytes": 512,
        "StreamViewType": "NEW_IMAGE"
    });
    if event_name != "REMOVE" {
        change["NewImage"] = image;
    }
    json!({
        "eventID": format!("c81e728d9d4c2f636f067f89cc14862c-{sequence_number}"),
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": change,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:111122223333:table/opx-events/stream/2026-11-20T00:00:00.000"
    })
}

/// Everything a run leaves that must not depend on how it was driven: every stream's
/// event hashes, and every incident's projection document.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreFingerprint {
    /// Stream id → the hashes of its events, in order.
    pub streams: BTreeMap<String, Vec<String>>,
    /// Incident id → projection document.
    pub incidents: BTreeMap<String, String>,
    /// Pending work keys.
    pub pending: Vec<String>,
}

/// The fingerprint of a store.
pub async fn fingerprint<S: StoreRead>(store: &S) -> StoreFingerprint {
    let mut streams = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_streams(cursor.as_deref(), 100)
            .await
            .expect("list streams");
        for stream_id in page.items {
            let events = read_all(store, &stream_id, 100_000)
                .await
                .expect("read stream");
            streams.insert(
                stream_id,
                events.iter().map(|event| event.hash.to_hex()).collect(),
            );
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut incidents = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_projections(PROJECTION_INCIDENT, cursor.as_deref(), 100)
            .await
            .expect("list incidents");
        for projection in page.items {
            incidents.insert(
                projection.key,
                String::from_utf8(projection.document).expect("UTF-8 document"),
            );
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut pending = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .pending_work(cursor.as_deref(), 100)
            .await
            .expect("pending");
        pending.extend(page.items.iter().map(|item| item.key()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    StoreFingerprint {
        streams,
        incidents,
        pending,
    }
}

/// Every reject in the store.
pub async fn rejects<S: StoreRead>(store: &S) -> Vec<opx_app::ports::RejectRecord> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_rejects(cursor.as_deref(), 100)
            .await
            .expect("rejects");
        out.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

/// The invocations of `signal-ingest`, in arrival order: the orders storm by EventBridge,
/// the SNS copy of its first alarm, an SNS-only alarm next to a truncated record, a
/// direct alarm action, a malformed event, the recovery, and a flapping search alarm.
pub fn arrivals() -> Vec<Value> {
    let events = crate::fixture!("eventbridge_alarm_events.json");
    vec![
        events[0].clone(),
        crate::fixture!("sns_event_orders_5xx.json"),
        events[1].clone(),
        crate::fixture!("sns_event_queue_depth_and_truncated.json"),
        crate::fixture!("alarm_action_orders_healthy_hosts.json"),
        events[2].clone(),
        events[3].clone(),
        events[4].clone(),
        events[5].clone(),
        events[6].clone(),
        events[7].clone(),
    ]
}

/// The arrival whose first notification (`SignalAccepted`) is dropped on the bus.
pub const DROPPED_ARRIVAL: usize = 4;

/// The reference: the embedded pipeline, draining after each payload as `opx ingest`
/// does.
pub async fn reference_fingerprint() -> StoreFingerprint {
    let temp = fresh_store();
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    for payload in arrivals() {
        if let Ok(parsed) = parse_value(&payload, &config.source) {
            for signal in parsed.items.into_iter().flatten() {
                pipeline.ingest(&signal).await.unwrap();
            }
        }
        let report = pipeline.drain(u64::MAX).await.unwrap();
        assert!(report.left_queued.is_empty(), "{:?}", report.left_queued);
    }
    fingerprint(&temp.store).await
}

/// How committed events travel from the events table to the stage functions: the
/// stream image of each event, the fan-out's publisher, and what the bus then delivers to
/// the stage rules' targets.
pub trait Transport {
    /// The fan-out's publisher.
    type Publisher: Publisher;
    /// The fan-out's publisher.
    fn fanout_publisher(&self) -> &Self::Publisher;
    /// The stream record's `NewImage` of a committed event.
    async fn image(&self, event: &EventEnvelope) -> Value;
    /// The bus events delivered since the last call, in delivery order.
    async fn delivered(&self) -> Vec<Value>;
}

/// The in-process transport: images built like the store builds its items, the bus a
/// capturing publisher.
#[derive(Default)]
pub struct InProcessTransport {
    bus: CapturePublisher,
}

impl Transport for InProcessTransport {
    type Publisher = CapturePublisher;

    fn fanout_publisher(&self) -> &CapturePublisher {
        &self.bus
    }

    async fn image(&self, event: &EventEnvelope) -> Value {
        event_image(event)
    }

    async fn delivered(&self) -> Vec<Value> {
        self.bus.take().iter().map(bus_event).collect()
    }
}

/// What driving the arrivals through the functions did.
#[derive(Debug, Default)]
pub struct DriveReport {
    /// Stage invocations.
    pub deliveries: u64,
    /// Deliveries that found their step already done.
    pub already_done: u64,
    /// Stream records fanned out.
    pub stream_records: u64,
    /// Steps the sweeper re-drove.
    pub swept: u64,
}

/// The events-table stream records of committed events, as the fan-out receives them.
pub async fn stream_batch<T: Transport>(
    transport: &T,
    events: &[EventEnvelope],
    next_sequence_number: &mut u64,
) -> StreamBatch {
    let mut records = Vec::new();
    for event in events {
        *next_sequence_number += 1;
        let image = transport.image(event).await;
        records.push(stream_record(
            "INSERT",
            image,
            &next_sequence_number.to_string(),
        ));
    }
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// Drives [`arrivals`] through the functions as AWS would: `signal-ingest` per arrival;
/// every commit's events through the stream to `fanout`; every delivered bus event to its
/// stage function in delivery order, `SignalEvaluated` delivered twice in a row; the
/// first notification of [`DROPPED_ARRIVAL`] lost, and the sweeper run once that
/// arrival's notifications are exhausted; finally one `DetectionCorrelated` redelivered
/// long after its step ran.
pub async fn drive<S: Store, W: PendingWorkSource, T: Transport>(
    store: &S,
    work: &W,
    transport: &T,
    harness: &Harness,
) -> DriveReport {
    let config = config();
    // Every commit's events, in commit order: what the events table's stream carries.
    let table_stream = CapturePublisher::default();
    let pipeline = Pipeline::new(store, &table_stream, &config);
    let mut report = DriveReport::default();
    let mut sequence_number = 4_600_000_000_000_000_000_u64;
    let mut late_redelivery: Option<Value> = None;

    for (arrival, payload) in arrivals().iter().enumerate() {
        let request_id = format!("ingest-{arrival}");
        let invocation = harness.invocation("signal-ingest", &request_id);
        handle_signal_ingest(&pipeline, &invocation, payload)
            .await
            .unwrap();

        let mut queue: VecDeque<Value> = VecDeque::new();
        let mut dropped = arrival != DROPPED_ARRIVAL;
        loop {
            let committed = table_stream.take();
            if !committed.is_empty() {
                report.stream_records += committed.len() as u64;
                let batch = stream_batch(transport, &committed, &mut sequence_number).await;
                let request_id = format!("fanout-{sequence_number}");
                let invocation = harness.invocation("fanout", &request_id);
                let fanned =
                    handle_fanout(store, transport.fanout_publisher(), &invocation, &batch)
                        .await
                        .unwrap();
                assert!(
                    fanned.response.batch_item_failures.is_empty(),
                    "{:?}",
                    fanned.report
                );
                assert_eq!(fanned.report.published, committed.len() as u64);
                for event in transport.delivered().await {
                    let routed = event["detail-type"].as_str().and_then(stage_for).is_some();
                    if !routed {
                        continue; // IncidentOpened and friends page people; no stage consumes them.
                    }
                    if !dropped {
                        dropped = true;
                        continue;
                    }
                    queue.push_back(event);
                }
            }
            let Some(event) = queue.pop_front() else {
                break;
            };
            let detail_type = event["detail-type"].as_str().unwrap().to_owned();
            let stage = stage_for(&detail_type).unwrap();
            let copies = if detail_type == "SignalEvaluated" {
                2
            } else {
                1
            };
            for copy in 0..copies {
                report.deliveries += 1;
                let request_id = format!("stage-{}", report.deliveries);
                let function = stage.function_name();
                let invocation = harness.invocation(function, &request_id);
                let outcome = handle_stage(store, &pipeline, stage, &invocation, &event)
                    .await
                    .unwrap();
                match (&outcome, copy) {
                    (StageOutcome::Done { .. }, 0) => {}
                    (StageOutcome::AlreadyDone { .. }, 1) => report.already_done += 1,
                    other => panic!("{detail_type} copy {copy}: {other:?}"),
                }
            }
            if detail_type == "DetectionCorrelated" && late_redelivery.is_none() {
                late_redelivery = Some(event.clone());
            }
        }
        if arrival == DROPPED_ARRIVAL {
            assert!(dropped);
            // The lost notification's work is still queued; the scheduled sweeper finds it.
            let pending = fingerprint(store).await.pending;
            assert_eq!(pending.len(), 1, "{pending:?}");
            let invocation = harness.invocation("sweeper", "sweep-1");
            let swept = handle_sweep(
                &pipeline,
                transport.fanout_publisher(),
                work,
                &invocation,
                &SweepLimits::with_min_age_ms(0),
            )
            .await
            .unwrap();
            assert!(swept.redriven >= 1, "{swept:?}");
            assert_eq!(
                swept.failed_retryable + swept.failed_permanent,
                0,
                "{swept:?}"
            );
            report.swept += swept.redriven;
            // The sweeper's commits are fanned out like any other; their stages find the
            // work done.
            let committed = table_stream.take();
            report.stream_records += committed.len() as u64;
            let batch = stream_batch(transport, &committed, &mut sequence_number).await;
            let invocation = harness.invocation("fanout", "fanout-after-sweep");
            handle_fanout(store, transport.fanout_publisher(), &invocation, &batch)
                .await
                .unwrap();
            for event in transport.delivered().await {
                let Some(stage) = event["detail-type"].as_str().and_then(stage_for) else {
                    continue;
                };
                report.deliveries += 1;
                let invocation = harness.invocation("stage", "after-sweep");
                let outcome = handle_stage(store, &pipeline, stage, &invocation, &event)
                    .await
                    .unwrap();
                assert!(
                    matches!(outcome, StageOutcome::AlreadyDone { .. }),
                    "{outcome:?}"
                );
                report.already_done += 1;
            }
        }
    }

    // A notification redelivered long after its step ran changes nothing.
    let late = late_redelivery.expect("a DetectionCorrelated was delivered");
    let invocation = harness.invocation("confidence", "late-redelivery");
    let outcome = handle_stage(store, &pipeline, Stage::Assess, &invocation, &late)
        .await
        .unwrap();
    assert!(
        matches!(outcome, StageOutcome::AlreadyDone { .. }),
        "{outcome:?}"
    );
    report.already_done += 1;
    report
}
