//! The DynamoDB cost model, measured: the pipeline runs over the DynamoDB store against a
//! DynamoDB protocol server (moto, `scripts/with-moto`), every request is recorded by an
//! SDK interceptor, and write and read units are computed from the recorded item sizes
//! with DynamoDB's published rules — moto does not report consumed capacity for
//! transactions.
//!
//! The flow is the Lambda deployment's, not `opx`'s: each payload is ingested (the
//! ingest function), and each work item a commit adds is run as the stage function
//! EventBridge would invoke for it (no work-queue listing: that is the sweeper's, every
//! few minutes, a fixed cost). Responders acknowledge, resolve and close each storm's
//! incident (the incident API).
//!
//! Units (on-demand, standard table class):
//! - a write of an item: 1 write request unit per started KB of the larger of the old and
//!   new item; in `TransactWriteItems` 2 per started KB for every action, a
//!   `ConditionCheck` included (it is billed as a transactional write);
//! - a strongly consistent `GetItem`: 1 read request unit per started 4 KB (1 if the
//!   item is absent); a strongly consistent `Query`: 1 per started 4 KB of all items
//!   returned (at least 1);
//! - a cancelled `TransactWriteItems` (a lost condition) is counted as if every action
//!   had been written: DynamoDB does not document a cheaper rate, so this is the
//!   conservative reading.

use crate::clock::now;
use crate::generate::{Delivery, Workload, WorkloadConfig};
use anyhow::Context as _;
use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use opx_app::pipeline::{IngestOutcome, Pipeline, PipelineConfig};
use opx_app::ports::{
    Commit, IdempotencyRecord, NoPublisher, Page, Projection, RejectRecord, Store, StoreError,
    StoreRead, WorkItem,
};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::incident::{CloseAs, IncidentCommand, IncidentState, Principal};
use opx_domain::rules::RuleSet;
use opx_domain::source::parse_payload;
use opx_domain::time::EpochMs;
use opx_store_dynamodb::{DynamoStore, TableNames};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// On-demand price of one million write request units, US East (N. Virginia), standard
/// table class, in US dollars: the price in force since the reduction of 1 November 2024.
pub const WRITE_REQUEST_UNITS_PRICE_PER_MILLION_USD: f64 = 0.625;
/// On-demand price of one million read request units, same region, class and date.
pub const READ_REQUEST_UNITS_PRICE_PER_MILLION_USD: f64 = 0.125;
/// Storage, standard table class, per GB-month, same region.
pub const STORAGE_PRICE_PER_GB_MONTH_USD: f64 = 0.25;
/// Continuous backups (point-in-time recovery), per GB-month, same region.
pub const PITR_PRICE_PER_GB_MONTH_USD: f64 = 0.20;
/// Days in the month the monthly figures assume.
pub const DAYS_PER_MONTH: f64 = 30.0;
/// The daily alarm volumes the model prices.
pub const ALARMS_PER_DAY: [u64; 3] = [100, 10_000, 1_000_000];
/// Bytes DynamoDB adds to every item for its own bookkeeping (the published sizing rule
/// counts 100 bytes of overhead per item for storage).
pub const ITEM_STORAGE_OVERHEAD_BYTES: u64 = 100;

/// One request as sent and answered.
#[derive(Clone, Debug)]
struct Recorded {
    operation: String,
    request: Value,
    response: Option<Value>,
    status: u16,
}

/// Records every DynamoDB request and its response.
#[derive(Clone, Debug, Default)]
struct Recorder {
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    fn take(&self) -> Vec<Recorded> {
        self.log
            .lock()
            .map(|mut log| std::mem::take(&mut *log))
            .unwrap_or_default()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "opx-bench request recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.split('.').nth(1))
            .unwrap_or("unknown")
            .to_owned();
        let body = request
            .body()
            .bytes()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or(Value::Null);
        if let Ok(mut log) = self.log.lock() {
            log.push(Recorded {
                operation,
                request: body,
                response: None,
                status: 0,
            });
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        let status = response.status().as_u16();
        let body = response
            .body()
            .bytes()
            .and_then(|bytes| serde_json::from_slice(bytes).ok());
        if let Ok(mut log) = self.log.lock() {
            if let Some(last) = log.last_mut() {
                last.response = body;
                last.status = status;
            }
        }
        Ok(())
    }
}

/// The size DynamoDB bills for an attribute value in its JSON wire form.
fn value_size(value: &Value) -> u64 {
    let Some((kind, inner)) = value.as_object().and_then(|object| object.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, |text| text.len() as u64),
        // Numbers: about one byte per two significant digits, plus one.
        "N" => inner.as_str().map_or(1, |text| {
            let digits = text.chars().filter(char::is_ascii_digit).count() as u64;
            digits.div_ceil(2) + 1
        }),
        // Binary travels as base64: 3 bytes per 4 characters.
        "B" => inner.as_str().map_or(0, |text| {
            let padding = text.chars().rev().take_while(|c| *c == '=').count() as u64;
            (text.len() as u64 / 4) * 3 - padding
        }),
        "BOOL" | "NULL" => 1,
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |items| {
            items
                .iter()
                .map(|item| item.as_str().map_or(0, |text| text.len() as u64))
                .sum()
        }),
        "L" => {
            3 + inner.as_array().map_or(0, |items| {
                items.iter().map(|item| 1 + value_size(item)).sum::<u64>()
            })
        }
        "M" => {
            3 + inner
                .as_object()
                .map_or(0, |object| item_size(object) + object.len() as u64)
        }
        _ => 0,
    }
}

/// The size of an item: attribute names plus values.
fn item_size(item: &serde_json::Map<String, Value>) -> u64 {
    item.iter()
        .map(|(name, value)| name.len() as u64 + value_size(value))
        .sum()
}

fn size_of(item: Option<&Value>) -> u64 {
    item.and_then(Value::as_object).map_or(0, item_size)
}

/// A table's key attributes as text, so a `ConditionCheck` can be sized by the item it
/// names (written earlier in the run).
fn key_text(table: &str, key: &Value) -> String {
    format!("{table}/{key}")
}

/// What a transaction action writes, for the breakdown: the table, or for the
/// projections table the kind; a `ConditionCheck` is labelled as such.
fn item_label(table: &str, action: &str, detail: &Value) -> String {
    if action == "ConditionCheck" {
        return "condition check".to_owned();
    }
    if table.ends_with("-events") {
        return "events".to_owned();
    }
    if table.ends_with("-idempotency") {
        return "idempotency".to_owned();
    }
    let kind = detail
        .get("Item")
        .or_else(|| detail.get("Key"))
        .and_then(|item| item["kind"]["S"].as_str())
        .unwrap_or("?");
    format!("projection {kind}")
}

/// Units and requests of a stretch of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    /// Requests by operation.
    pub requests: BTreeMap<String, u64>,
    /// Items written or checked, by action (`Put`, `Update`, `Delete`, `ConditionCheck`).
    pub write_actions: BTreeMap<String, u64>,
    /// Write request units.
    pub write_units: u64,
    /// Read request units.
    pub read_units: u64,
    /// Bytes of items put (net storage growth is at most this).
    pub bytes_put: u64,
    /// Write request units by what was written: `events`, `idempotency`, or the
    /// projection kind (`incident`, `service_recoveries`, `~work`, ...).
    pub write_units_by_item: BTreeMap<String, u64>,
    /// Transactions cancelled by a condition.
    pub cancelled_transactions: u64,
}

impl Tally {
    fn requests_total(&self) -> u64 {
        self.requests.values().sum()
    }

    fn add(&mut self, other: &Tally) {
        for (operation, count) in &other.requests {
            *self.requests.entry(operation.clone()).or_default() += count;
        }
        for (action, count) in &other.write_actions {
            *self.write_actions.entry(action.clone()).or_default() += count;
        }
        self.write_units += other.write_units;
        self.read_units += other.read_units;
        self.bytes_put += other.bytes_put;
        for (item, units) in &other.write_units_by_item {
            *self.write_units_by_item.entry(item.clone()).or_default() += units;
        }
        self.cancelled_transactions += other.cancelled_transactions;
    }
}

/// Prices recorded requests; remembers item sizes so condition checks can be sized.
#[derive(Default)]
struct Pricer {
    sizes: BTreeMap<String, u64>,
}

fn kb_units(bytes: u64, unit_bytes: u64) -> u64 {
    bytes.div_ceil(unit_bytes).max(1)
}

impl Pricer {
    fn price(&mut self, recorded: &[Recorded]) -> Tally {
        let mut tally = Tally::default();
        for request in recorded {
            *tally.requests.entry(request.operation.clone()).or_default() += 1;
            let body = &request.request;
            let response = request.response.as_ref();
            match request.operation.as_str() {
                "TransactWriteItems" => {
                    if request.status >= 400 {
                        tally.cancelled_transactions += 1;
                    }
                    for action in body["TransactItems"].as_array().into_iter().flatten() {
                        let Some((name, detail)) =
                            action.as_object().and_then(|object| object.iter().next())
                        else {
                            continue;
                        };
                        let table = detail["TableName"].as_str().unwrap_or_default();
                        let size = match name.as_str() {
                            "Put" => {
                                let size = size_of(detail.get("Item"));
                                tally.bytes_put += size;
                                if request.status < 400 {
                                    self.remember(table, &detail["Item"], size);
                                }
                                size
                            }
                            "Delete" => {
                                let key = key_text(table, &detail["Key"]);
                                let size = self.sizes.get(&key).copied().unwrap_or(0);
                                if request.status < 400 {
                                    self.sizes.remove(&key);
                                }
                                size
                            }
                            "ConditionCheck" | "Update" => self
                                .sizes
                                .get(&key_text(table, &detail["Key"]))
                                .copied()
                                .unwrap_or(0),
                            _ => 0,
                        };
                        *tally.write_actions.entry(name.clone()).or_default() += 1;
                        let units = 2 * kb_units(size, 1024);
                        tally.write_units += units;
                        *tally
                            .write_units_by_item
                            .entry(item_label(table, name, detail))
                            .or_default() += units;
                    }
                }
                "PutItem" | "DeleteItem" | "UpdateItem" => {
                    let size = size_of(body.get("Item"));
                    tally.bytes_put += size;
                    *tally
                        .write_actions
                        .entry(request.operation.clone())
                        .or_default() += 1;
                    tally.write_units += kb_units(size, 1024);
                }
                "GetItem" => {
                    let size = response.map_or(0, |response| size_of(response.get("Item")));
                    tally.read_units += kb_units(size, 4096);
                }
                "Query" | "Scan" => {
                    let size: u64 = response
                        .and_then(|response| response["Items"].as_array())
                        .map_or(0, |items| {
                            items.iter().map(|item| size_of(Some(item))).sum()
                        });
                    tally.read_units += kb_units(size, 4096);
                }
                "TransactGetItems" => {
                    for item in response
                        .and_then(|response| response["Responses"].as_array())
                        .into_iter()
                        .flatten()
                    {
                        tally.read_units += 2 * kb_units(size_of(item.get("Item")), 4096);
                    }
                }
                _ => {}
            }
        }
        tally
    }

    /// Bytes stored now by the items this run put and did not delete, DynamoDB's
    /// per-item overhead included (`~work` items, written by `Update`, are left out: they
    /// are deleted when their step is done).
    fn stored_bytes(&self) -> u64 {
        self.sizes
            .values()
            .map(|size| size + ITEM_STORAGE_OVERHEAD_BYTES)
            .sum()
    }

    /// Remembers an item's size under its key (the key attributes of each opx table).
    fn remember(&mut self, table: &str, item: &Value, size: u64) {
        let key_names: &[&str] = if table.ends_with("-events") {
            &["stream_id", "sequence"]
        } else if table.ends_with("-idempotency") {
            &["key"]
        } else {
            &["kind", "key"]
        };
        let mut key = serde_json::Map::new();
        for name in key_names {
            if let Some(value) = item.get(*name) {
                key.insert((*name).to_owned(), value.clone());
            }
        }
        self.sizes
            .insert(key_text(table, &Value::Object(key)), size);
    }
}

/// A store wrapper that notes the work each successful commit adds: the notifications
/// the fan-out function and EventBridge would deliver to the stage functions.
struct Routed<S> {
    store: S,
    added: Mutex<VecDeque<WorkItem>>,
    events: std::sync::atomic::AtomicU64,
}

impl<S> Routed<S> {
    fn next_work(&self) -> Option<WorkItem> {
        self.added
            .lock()
            .ok()
            .and_then(|mut added| added.pop_front())
    }
}

impl<S: StoreRead> StoreRead for Routed<S> {
    fn read_stream(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<EventEnvelope>, StoreError>> + Send {
        self.store.read_stream(stream_id, from_sequence, limit)
    }
    fn stream_head(
        &self,
        stream_id: &str,
    ) -> impl Future<Output = Result<Option<EventEnvelope>, StoreError>> + Send {
        self.store.stream_head(stream_id)
    }
    fn list_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<String>, StoreError>> + Send {
        self.store.list_streams(cursor, limit)
    }
    fn idempotency(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>, StoreError>> + Send {
        self.store.idempotency(key)
    }
    fn list_idempotency(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<IdempotencyRecord>, StoreError>> + Send {
        self.store.list_idempotency(cursor, limit)
    }
    fn projection(
        &self,
        kind: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Projection>, StoreError>> + Send {
        self.store.projection(kind, key)
    }
    fn list_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<Projection>, StoreError>> + Send {
        self.store.list_projections(kind, cursor, limit)
    }
    fn pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<WorkItem>, StoreError>> + Send {
        self.store.pending_work(cursor, limit)
    }
    fn list_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<RejectRecord>, StoreError>> + Send {
        self.store.list_rejects(cursor, limit)
    }
}

impl<S: Store> Store for Routed<S> {
    async fn commit(&self, commit: Commit) -> Result<Vec<EventPointer>, StoreError> {
        let work = commit.work_added.clone();
        let events = commit.events.len() as u64;
        let outcome = self.store.commit(commit).await;
        if outcome.is_ok() {
            self.events
                .fetch_add(events, std::sync::atomic::Ordering::Relaxed);
            if let Ok(mut added) = self.added.lock() {
                added.extend(work);
            }
        }
        outcome
    }
    fn record_reject(
        &self,
        reject: RejectRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.record_reject(reject)
    }
}

/// The model's result.
#[derive(Clone, Debug, Serialize)]
pub struct CostReport {
    /// Distinct signals in the workload.
    pub signals: u64,
    /// Services.
    pub services: u32,
    /// Duplicate deliveries in the workload.
    pub duplicates: u64,
    /// Human transitions in the workload.
    pub human_transitions: u64,
    /// Incidents opened.
    pub incidents_opened: u64,
    /// Everything the signals cost: ingest and every stage step (duplicates excluded).
    pub signals_tally: Tally,
    /// Everything the duplicate deliveries cost.
    pub duplicates_tally: Tally,
    /// Everything the human transitions cost (reading the incident included).
    pub humans_tally: Tally,
    /// Per accepted signal, end to end.
    pub per_signal: PerUnit,
    /// Per duplicate delivery.
    pub per_duplicate: PerUnit,
    /// Per human transition.
    pub per_human_transition: PerUnit,
    /// Bytes stored at the end of the run (items put and not deleted, with overhead).
    pub stored_bytes: u64,
    /// `stored_bytes` per accepted signal (its share of incidents and transitions included).
    pub stored_bytes_per_signal: f64,
    /// Events committed per accepted signal: each is one EventBridge entry from the
    /// fan-out function (EventBridge bills custom events at $1.00 per million).
    pub events_per_signal: f64,
    /// Monthly cost at each volume in [`ALARMS_PER_DAY`].
    pub monthly: Vec<MonthlyCost>,
    /// Wall time against the server, in seconds (moto is slow; not a DynamoDB figure).
    pub seconds: f64,
}

/// Averages per event of one kind.
#[derive(Clone, Debug, Serialize)]
pub struct PerUnit {
    /// Requests.
    pub requests: f64,
    /// `TransactWriteItems` requests.
    pub transactions: f64,
    /// Write request units.
    pub write_units: f64,
    /// Read request units.
    pub read_units: f64,
    /// Item bytes put.
    pub bytes_put: f64,
}

impl PerUnit {
    fn of(tally: &Tally, count: u64) -> PerUnit {
        let per = |value: u64| {
            if count == 0 {
                0.0
            } else {
                value as f64 / count as f64
            }
        };
        PerUnit {
            requests: per(tally.requests_total()),
            transactions: per(tally
                .requests
                .get("TransactWriteItems")
                .copied()
                .unwrap_or(0)),
            write_units: per(tally.write_units),
            read_units: per(tally.read_units),
            bytes_put: per(tally.bytes_put),
        }
    }
}

/// The monthly bill implied by one daily volume.
#[derive(Clone, Debug, Serialize)]
pub struct MonthlyCost {
    /// Alarm state changes per day.
    pub alarms_per_day: u64,
    /// Write request units per month.
    pub write_units: f64,
    /// Read request units per month.
    pub read_units: f64,
    /// Requests (write and read) in US dollars.
    pub requests_usd: f64,
    /// Storage added in one month, in GB.
    pub storage_added_gb: f64,
    /// Storage and PITR of one month's data, per month, in US dollars (the table keeps
    /// everything, so this adds up month after month).
    pub storage_usd_per_month_of_data: f64,
    /// EventBridge entries the fan-out publishes in one month.
    pub eventbridge_events: f64,
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct CostOptions {
    /// The workload (same generator as `e2e`).
    pub workload: WorkloadConfig,
}

async fn human_close<S: Store>(
    pipeline: &Pipeline<'_, S, NoPublisher>,
    principal: &Principal,
    environment: &str,
    service: &str,
    at_ms: i64,
) -> anyhow::Result<u64> {
    let Some((pointer, _)) = pipeline.open_incident(environment, service).await? else {
        return Ok(0);
    };
    let Some(mut incident) = pipeline.load_incident(&pointer.incident_id).await? else {
        return Ok(0);
    };
    let mut transitions = 0;
    for (offset, (to, close_as)) in [
        (IncidentState::Acknowledged, None),
        (IncidentState::Resolved, None),
        (IncidentState::Closed, Some(CloseAs::Resolved)),
    ]
    .into_iter()
    .enumerate()
    {
        if !incident.state.is_open()
            || (incident.state == IncidentState::Resolved && to == IncidentState::Acknowledged)
        {
            continue;
        }
        incident = pipeline
            .execute_human(
                &pointer.incident_id,
                &IncidentCommand::Transition {
                    principal: principal.clone(),
                    at: EpochMs(at_ms + offset as i64),
                    to,
                    reason: "bench".to_owned(),
                    expected_lifecycle_version: incident.lifecycle_version,
                    close_as,
                    resolution_summary: (to == IncidentState::Resolved)
                        .then(|| "bad deploy rolled back".to_owned()),
                },
            )
            .await?;
        transitions += 1;
    }
    Ok(transitions)
}

/// Runs the workload against the DynamoDB endpoint in the environment and prices it.
pub async fn run(options: &CostOptions) -> anyhow::Result<CostReport> {
    let recorder = Recorder::default();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(opx_store_dynamodb::retry_config())
        .load()
        .await;
    anyhow::ensure!(
        shared.region().is_some(),
        "no AWS region: run under scripts/with-moto, or set AWS_REGION and AWS_ENDPOINT_URL"
    );
    let config = aws_sdk_dynamodb::config::Builder::from(&shared)
        .interceptor(recorder.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let prefix = format!("opx-bench-{}", std::process::id());
    let dynamo = DynamoStore::new(client, TableNames::for_prefix(&prefix)?);
    dynamo
        .create_tables()
        .await
        .context("creating the tables (is the DynamoDB endpoint up?)")?;
    let store = Routed {
        store: dynamo,
        added: Mutex::new(VecDeque::new()),
        events: std::sync::atomic::AtomicU64::new(0),
    };
    let pipeline_config = PipelineConfig::with_rule_files(RuleSet::default_rule_files())?;
    let pipeline = Pipeline::new(&store, &NoPublisher, &pipeline_config);
    let principal = Principal::local("bench-responder")?;
    let _ = recorder.take();
    let started = now();

    let mut pricer = Pricer::default();
    let mut signals_tally = Tally::default();
    let mut duplicates_tally = Tally::default();
    let mut humans_tally = Tally::default();
    let (mut accepted, mut duplicates, mut transitions, mut opened) = (0u64, 0u64, 0u64, 0u64);
    for delivery in Workload::new(options.workload)? {
        match delivery {
            Delivery::Payload { bytes, .. } => {
                let Ok(parsed) = parse_payload(&bytes, &pipeline_config.source) else {
                    continue;
                };
                for signal in parsed.items.into_iter().flatten() {
                    let outcome = pipeline.ingest(&signal).await?;
                    let duplicate = !matches!(outcome, IngestOutcome::Accepted { .. });
                    // The stage functions, in the order EventBridge would invoke them.
                    while let Some(item) = store.next_work() {
                        let step = pipeline.run(&item).await?;
                        opened += step.incidents_opened.len() as u64;
                    }
                    let tally = pricer.price(&recorder.take());
                    if duplicate {
                        duplicates += 1;
                        duplicates_tally.add(&tally);
                    } else {
                        accepted += 1;
                        signals_tally.add(&tally);
                    }
                }
            }
            Delivery::CloseIncident {
                environment,
                service,
                at_ms,
            } => {
                transitions +=
                    human_close(&pipeline, &principal, &environment, &service, at_ms).await?;
                humans_tally.add(&pricer.price(&recorder.take()));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let events = store.events.load(std::sync::atomic::Ordering::Relaxed);
    let per_signal = PerUnit::of(&signals_tally, accepted);
    let per_duplicate = PerUnit::of(&duplicates_tally, duplicates);
    let per_human_transition = PerUnit::of(&humans_tally, transitions);
    // A day's alarms carry the workload's share of duplicates and human transitions.
    let duplicates_per_signal = duplicates as f64 / accepted.max(1) as f64;
    let transitions_per_signal = transitions as f64 / accepted.max(1) as f64;
    let stored_bytes = pricer.stored_bytes();
    let stored_bytes_per_signal = stored_bytes as f64 / accepted.max(1) as f64;
    let events_per_signal = events as f64 / accepted.max(1) as f64;
    let monthly = ALARMS_PER_DAY
        .iter()
        .map(|&per_day| {
            let signals = per_day as f64 * DAYS_PER_MONTH;
            let units = |pick: fn(&PerUnit) -> f64| {
                signals
                    * (pick(&per_signal)
                        + duplicates_per_signal * pick(&per_duplicate)
                        + transitions_per_signal * pick(&per_human_transition))
            };
            let write_units = units(|per| per.write_units);
            let read_units = units(|per| per.read_units);
            let storage_added_gb = signals * stored_bytes_per_signal / 1e9;
            MonthlyCost {
                alarms_per_day: per_day,
                write_units,
                read_units,
                requests_usd: write_units / 1e6 * WRITE_REQUEST_UNITS_PRICE_PER_MILLION_USD
                    + read_units / 1e6 * READ_REQUEST_UNITS_PRICE_PER_MILLION_USD,
                storage_added_gb,
                storage_usd_per_month_of_data: storage_added_gb
                    * (STORAGE_PRICE_PER_GB_MONTH_USD + PITR_PRICE_PER_GB_MONTH_USD),
                eventbridge_events: signals * events_per_signal,
            }
        })
        .collect();
    Ok(CostReport {
        signals: accepted,
        services: options.workload.services,
        duplicates,
        human_transitions: transitions,
        incidents_opened: opened,
        signals_tally,
        duplicates_tally,
        humans_tally,
        per_signal,
        per_duplicate,
        per_human_transition,
        stored_bytes,
        stored_bytes_per_signal,
        events_per_signal,
        monthly,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn item_sizes_follow_the_published_rules() {
        let item = json!({
            "stream_id": {"S": "signal:abc"},
            "sequence": {"N": "12"},
            "payload": {"B": "AAECAw=="},
            "flag": {"BOOL": true},
        });
        let size = size_of(Some(&item));
        // names 9 + 8 + 7 + 4, values 10 + 2 + 4 + 1
        assert_eq!(size, 28 + 17);
    }

    fn transaction(actions: Value) -> Recorded {
        Recorded {
            operation: "TransactWriteItems".into(),
            request: json!({ "TransactItems": actions }),
            response: Some(json!({})),
            status: 200,
        }
    }

    #[test]
    fn a_transaction_costs_two_units_per_started_kilobyte_of_each_action() {
        let big = "x".repeat(1500);
        let mut pricer = Pricer::default();
        let tally = pricer.price(&[transaction(json!([
            {"Put": {"TableName": "p-events", "Item": {"stream_id": {"S": "s"}, "sequence": {"N": "1"}, "payload": {"S": big}}}},
            {"Put": {"TableName": "p-idempotency", "Item": {"key": {"S": "k"}}}},
            {"ConditionCheck": {"TableName": "p-events", "Key": {"stream_id": {"S": "s"}, "sequence": {"N": "0"}}}},
        ]))]);
        // 1.5 KB put: 2 × 2; small put: 2 × 1; a check of an item never seen: 2 × 1.
        assert_eq!(tally.write_units, 4 + 2 + 2);
        assert_eq!(tally.read_units, 0);
        assert_eq!(tally.requests["TransactWriteItems"], 1);
        assert_eq!(tally.write_units_by_item["events"], 4);
        // A later check of the 1.5 KB event is sized by it: 2 × 2.
        let later = pricer.price(&[transaction(json!([
            {"ConditionCheck": {"TableName": "p-events", "Key": {"stream_id": {"S": "s"}, "sequence": {"N": "1"}}}},
        ]))]);
        assert_eq!(later.write_units, 4);
        assert_eq!(later.write_units_by_item["condition check"], 4);
    }

    #[test]
    fn reads_cost_one_unit_per_started_four_kilobytes() {
        let recorded = vec![
            Recorded {
                operation: "GetItem".into(),
                request: json!({}),
                response: Some(json!({})),
                status: 200,
            },
            Recorded {
                operation: "Query".into(),
                request: json!({}),
                response: Some(json!({"Items": [{"a": {"S": "x".repeat(5000)}}]})),
                status: 200,
            },
        ];
        let tally = Pricer::default().price(&recorded);
        assert_eq!(
            tally.read_units,
            1 + 2,
            "an absent item costs 1, 5 KB costs 2"
        );
    }
}
