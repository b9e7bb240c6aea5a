//! Shared helpers for the scenario tests: a fresh SQLite store, real-shaped payloads, and
//! a canonical summary of the incidents a run produced.

#[path = "dynamo.rs"]
pub mod dynamo;
#[path = "faults.rs"]
pub mod faults;

use opx_app::pipeline::{Pipeline, PipelineConfig, PROJECTION_INCIDENT};
use opx_app::ports::{NoPublisher, StoreRead};
use opx_domain::incident::Incident;
use opx_domain::rules::RuleSet;
use opx_domain::signal::Signal;
use opx_domain::source::{parse_payload, SourceConfig};
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use std::collections::BTreeMap;

/// A store in its own temporary directory (removed when dropped).
pub struct TempStore {
    /// The store.
    pub store: SqliteStore,
    _dir: tempfile::TempDir,
}

/// Opens a fresh store.
pub fn fresh_store() -> TempStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("opx.db"), SqliteOptions::default())
        .expect("store opens");
    TempStore { store, _dir: dir }
}

/// The default pipeline configuration with the repository's rules.
pub fn default_config() -> PipelineConfig {
    let files = RuleSet::default_rule_files();
    PipelineConfig::with_rule_files(files).expect("default rules load")
}

/// A native opx signal payload.
pub fn native_payload(
    alarm: &str,
    state: &str,
    time: &str,
    service: &str,
    severity: &str,
) -> String {
    serde_json::json!({
        "opx_signal_version": 1,
        "alarm": alarm,
        "state": state,
        "time": time,
        "environment": "prod",
        "service": service,
        "severity": severity,
    })
    .to_string()
}

/// Parses one payload that must yield exactly one signal.
pub fn signal(payload: &str) -> Signal {
    let parsed =
        parse_payload(payload.as_bytes(), &SourceConfig::default()).expect("payload parses");
    let mut items = parsed.items;
    assert_eq!(items.len(), 1, "one signal per payload");
    items.remove(0).expect("signal is valid")
}

/// Ingests `signals` in order, draining the pipeline after the indices in `drain_after`
/// and at the end.
pub async fn run(
    store: &SqliteStore,
    config: &PipelineConfig,
    signals: &[Signal],
    drain_after: &[usize],
) {
    let pipeline = Pipeline::new(store, &NoPublisher, config);
    for (index, signal) in signals.iter().enumerate() {
        pipeline.ingest(signal).await.expect("ingest");
        if drain_after.contains(&index) {
            pipeline.drain(u64::MAX).await.expect("drain");
        }
    }
    let report = pipeline.drain(u64::MAX).await.expect("drain");
    assert!(
        report.left_queued.is_empty(),
        "nothing left queued: {:?}",
        report.left_queued
    );
    let verified = opx_app::replay::verify(store, &opx_app::replay::VerifyOptions::default())
        .await
        .expect("verify reads the store");
    assert!(
        verified.divergences.is_empty(),
        "the store verifies after the run: {:#?}",
        verified.divergences
    );
}

/// The incidents in the store, keyed by id, as their canonical JSON.
pub async fn incidents(store: &SqliteStore) -> BTreeMap<String, Incident> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_projections(PROJECTION_INCIDENT, cursor.as_deref(), 100)
            .await
            .expect("list");
        for projection in page.items {
            let incident: Incident =
                serde_json::from_slice(&projection.document).expect("incident decodes");
            out.insert(projection.key, incident);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

/// A storm of four orders alarms (one incident), the recovery of one of them, an earlier
/// episode's recovery that does not belong, and a lone flapping alarm of another service
/// (never an incident).
pub fn storm() -> Vec<Signal> {
    vec![
        signal(&native_payload(
            "orders-api-5xx",
            "ALARM",
            "2026-11-24T03:00:09.512+0000",
            "orders",
            "SEV2",
        )),
        signal(&native_payload(
            "orders-api-p99",
            "ALARM",
            "2026-11-24T03:01:10.000+0000",
            "orders",
            "SEV2",
        )),
        signal(&native_payload(
            "orders-db-cpu",
            "ALARM",
            "2026-11-24T03:02:30.000+0000",
            "orders",
            "SEV3",
        )),
        signal(&native_payload(
            "orders-queue",
            "ALARM",
            "2026-11-24T03:04:59.999+0000",
            "orders",
            "SEV1",
        )),
        // The 5xx alarm recovers after the storm: recorded on the incident whatever the
        // processing order.
        signal(&native_payload(
            "orders-api-5xx",
            "OK",
            "2026-11-24T03:06:00.000+0000",
            "orders",
            "SEV2",
        )),
        // An earlier episode's recovery: before the alarm went bad, so it does not belong.
        signal(&native_payload(
            "orders-db-cpu",
            "OK",
            "2026-11-24T02:50:00.000+0000",
            "orders",
            "SEV3",
        )),
        // A lone flapping alarm of another service: never an incident.
        signal(&native_payload(
            "search-lag",
            "ALARM",
            "2026-11-24T03:00:30.000+0000",
            "search",
            "SEV1",
        )),
        signal(&native_payload(
            "search-lag",
            "OK",
            "2026-11-24T03:02:00.000+0000",
            "search",
            "SEV1",
        )),
        signal(&native_payload(
            "search-lag",
            "ALARM",
            "2026-11-24T03:03:00.000+0000",
            "search",
            "SEV1",
        )),
    ]
}
