//! Concurrency against one SQLite file, each task with its own connection as separate
//! processes or Lambda instances would have: duplicate storms record each signal once and
//! open one incident; racing humans on one incident version — exactly one wins.

use opx_app::pipeline::{IngestOutcome, Pipeline, PipelineError};
use opx_app::ports::{NoPublisher, StoreRead};
use opx_app::replay::{verify, VerifyOptions};
use opx_domain::incident::{IncidentCommand, IncidentError, IncidentState, Principal};
use opx_domain::time::EpochMs;
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use opx_tests::{default_config, incidents, run, storm};
use std::path::Path;
use std::sync::Arc;

/// Concurrent deliveries, as the issue asks.
const DELIVERIES: usize = 32;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default()).expect("store opens")
}

async fn assert_verifies(store: &SqliteStore) {
    let report = verify(store, &VerifyOptions::default())
        .await
        .expect("verify reads the store");
    assert!(report.divergences.is_empty(), "{:#?}", report.divergences);
    assert!(report.pending.is_empty(), "pending: {:?}", report.pending);
}

#[test]
fn thirty_two_deliveries_of_one_signal_record_it_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = Arc::new(dir.path().join("opx.db"));
    let signal = storm().remove(0);
    runtime().block_on(async {
        open(&path).close().expect("schema");
        let mut tasks = Vec::new();
        for _ in 0..DELIVERIES {
            let path = Arc::clone(&path);
            let signal = signal.clone();
            tasks.push(tokio::spawn(async move {
                let store = open(&path);
                let config = default_config();
                let pipeline = Pipeline::new(&store, &NoPublisher, &config);
                let outcome = pipeline.ingest(&signal).await.expect("ingest");
                store.close().expect("close");
                outcome
            }));
        }
        let mut accepted = 0;
        let mut duplicates = 0;
        for task in tasks {
            match task.await.expect("task") {
                IngestOutcome::Accepted { .. } => accepted += 1,
                IngestOutcome::Duplicate { .. } => duplicates += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((accepted, duplicates), (1, DELIVERIES - 1));
        eprintln!("figure: concurrent_deliveries_of_one_signal = {DELIVERIES}");
        let store = open(&path);
        let events = store
            .read_stream(&opx_domain::record::signal_stream(&signal.id), 1, 10)
            .await
            .expect("read");
        assert_eq!(events.len(), 1, "one SignalAccepted, nothing else yet");
        assert_eq!(
            store
                .pending_work(None, 10)
                .await
                .expect("work")
                .items
                .len(),
            1
        );
    });
}

#[test]
fn thirty_two_deliveries_of_a_storm_give_the_incidents_of_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = Arc::new(dir.path().join("opx.db"));
    let signals = storm();
    runtime().block_on(async {
        let reference = {
            let reference_dir = tempfile::tempdir().expect("temp dir");
            let store = open(&reference_dir.path().join("opx.db"));
            run(&store, &default_config(), &signals, &[]).await;
            incidents(&store).await
        };
        open(&path).close().expect("schema");
        let mut tasks = Vec::new();
        for delivery in 0..DELIVERIES {
            let path = Arc::clone(&path);
            // Each delivery sees the storm in another rotation, and drains as it goes.
            let mut mine = signals.clone();
            mine.rotate_left(delivery % signals.len());
            tasks.push(tokio::spawn(async move {
                let store = open(&path);
                let config = default_config();
                let pipeline = Pipeline::new(&store, &NoPublisher, &config);
                for signal in &mine {
                    pipeline.ingest(signal).await.expect("ingest");
                    // Lost races leave work queued; a later drain (or another task)
                    // carries it through.
                    let _ = pipeline.drain(u64::MAX).await.expect("drain");
                }
                store.close().expect("close");
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        let store = open(&path);
        let config = default_config();
        let pipeline = Pipeline::new(&store, &NoPublisher, &config);
        let report = pipeline.drain(u64::MAX).await.expect("final drain");
        assert!(report.left_queued.is_empty(), "{:?}", report.left_queued);
        let found = incidents(&store).await;
        assert_eq!(found.len(), 1, "one incident: {found:#?}");
        assert_eq!(found, reference);
        eprintln!(
            "figure: concurrent_deliveries_of_a_storm = {}",
            DELIVERIES * signals.len()
        );
        assert_verifies(&store).await;
    });
}

#[test]
fn racing_transitions_on_one_version_have_exactly_one_winner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = Arc::new(dir.path().join("opx.db"));
    runtime().block_on(async {
        let incident_id = {
            let store = open(&path);
            run(&store, &default_config(), &storm(), &[]).await;
            let found = incidents(&store).await;
            let incident = found.values().next().expect("one incident").clone();
            assert_eq!(incident.lifecycle_version, 1);
            store.close().expect("close");
            incident.id
        };
        let mut tasks = Vec::new();
        for responder in 0..16 {
            let path = Arc::clone(&path);
            tasks.push(tokio::spawn(async move {
                let store = open(&path);
                let config = default_config();
                let pipeline = Pipeline::new(&store, &NoPublisher, &config);
                let command = IncidentCommand::Transition {
                    principal: Principal::local(&format!("responder-{responder}"))
                        .expect("principal"),
                    at: EpochMs(1_795_500_000_000 + responder),
                    to: IncidentState::Acknowledged,
                    reason: format!("responder {responder} is on it"),
                    expected_lifecycle_version: 1,
                    close_as: None,
                    resolution_summary: None,
                };
                let result = pipeline.execute_human(&incident_id, &command).await;
                store.close().expect("close");
                result
            }));
        }
        let mut winners = 0;
        let mut conflicts = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(incident) => {
                    winners += 1;
                    assert_eq!(incident.state, IncidentState::Acknowledged);
                }
                Err(PipelineError::Incident(IncidentError::VersionConflict {
                    expected: 1,
                    actual: 2,
                })) => conflicts += 1,
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert_eq!((winners, conflicts), (1, 15));
        eprintln!("figure: racing_transitions = {}", winners + conflicts);
        let store = open(&path);
        let events = store
            .read_stream(&opx_domain::incident::stream_id(&incident_id), 1, 100)
            .await
            .expect("read");
        let transitions = events
            .iter()
            .filter(|event| event.event_type == "IncidentTransitioned")
            .count();
        assert_eq!(transitions, 1, "applied exactly once");
        assert_verifies(&store).await;
    });
}
