//! The reliability attacks against DynamoDB (moto on loopback, started by
//! `scripts/with-moto`): 32 concurrent deliveries of a signal and of a storm, racing
//! humans, and a sample of injected faults — each ending in the incidents a fault-free
//! SQLite run gives. moto handles about 250 requests a second, so the fault sample is a
//! sample; every fault at every call runs on SQLite (`fault_injection.rs`).

// The figures RELIABILITY.md reports are printed from helpers, not only from tests.
#![allow(clippy::print_stderr)]

use opx_app::pipeline::{IngestOutcome, Pipeline, PipelineError};
use opx_app::ports::{NoPublisher, StoreRead};
use opx_app::replay::{verify, VerifyOptions};
use opx_domain::incident::{Incident, IncidentCommand, IncidentError, IncidentState, Principal};
use opx_domain::signal::Signal;
use opx_domain::time::EpochMs;
use opx_store_dynamodb::DynamoStore;
use opx_tests::dynamo::{another_handle, dynamo_incidents, fresh_dynamo};
use opx_tests::faults::{Fault, FaultPlan, FaultyPublisher, FaultyStore};
use opx_tests::{default_config, fresh_store, incidents, run, storm};
use std::collections::BTreeMap;

/// Concurrent deliveries, as the reliability issue asks.
const DELIVERIES: usize = 32;
/// Faults injected per kind on DynamoDB (spread over the scenario's calls).
const FAULT_SAMPLES_PER_KIND: u64 = 4;

async fn assert_verifies(store: &DynamoStore) {
    let report = verify(store, &VerifyOptions::default())
        .await
        .expect("verify reads the store");
    assert!(report.divergences.is_empty(), "{:#?}", report.divergences);
    assert!(report.pending.is_empty(), "pending: {:?}", report.pending);
}

async fn sqlite_reference(signals: &[Signal]) -> BTreeMap<String, Incident> {
    let temp = fresh_store();
    run(&temp.store, &default_config(), signals, &[]).await;
    incidents(&temp.store).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_deliveries_of_one_signal_record_it_once() {
    let store = fresh_dynamo("one").await;
    let signal = storm().remove(0);
    let mut tasks = Vec::new();
    for _ in 0..DELIVERIES {
        let store = another_handle(&store);
        let signal = signal.clone();
        tasks.push(tokio::spawn(async move {
            let config = default_config();
            Pipeline::new(&store, &NoPublisher, &config)
                .ingest(&signal)
                .await
                .expect("ingest")
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        match task.await.expect("task") {
            IngestOutcome::Accepted { .. } => accepted += 1,
            IngestOutcome::Duplicate { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 1);
    let events = store
        .read_stream(&opx_domain::record::signal_stream(&signal.id), 1, 10)
        .await
        .expect("read");
    assert_eq!(events.len(), 1);
    eprintln!("figure: dynamodb_concurrent_deliveries_of_one_signal = {DELIVERIES}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_deliveries_of_a_storm_give_the_incidents_of_one_sqlite_run() {
    let signals = storm();
    let reference = sqlite_reference(&signals).await;
    let store = fresh_dynamo("storm").await;
    let mut tasks = Vec::new();
    for delivery in 0..DELIVERIES {
        let store = another_handle(&store);
        let mut mine = signals.clone();
        mine.rotate_left(delivery % signals.len());
        tasks.push(tokio::spawn(async move {
            let config = default_config();
            let pipeline = Pipeline::new(&store, &NoPublisher, &config);
            for signal in &mine {
                pipeline.ingest(signal).await.expect("ingest");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    // Two stage runners race over the queue, as two Lambda instances would.
    let mut runners = Vec::new();
    for _ in 0..2 {
        let store = another_handle(&store);
        runners.push(tokio::spawn(async move {
            let config = default_config();
            let _ = Pipeline::new(&store, &NoPublisher, &config)
                .drain(u64::MAX)
                .await;
        }));
    }
    for runner in runners {
        runner.await.expect("runner");
    }
    let config = default_config();
    let report = Pipeline::new(&store, &NoPublisher, &config)
        .drain(u64::MAX)
        .await
        .expect("final drain");
    assert!(report.left_queued.is_empty(), "{:?}", report.left_queued);
    assert_eq!(dynamo_incidents(&store).await, reference);
    assert_verifies(&store).await;
    eprintln!(
        "figure: dynamodb_concurrent_deliveries_of_a_storm = {}",
        DELIVERIES * signals.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_transitions_on_dynamodb_have_exactly_one_winner() {
    let store = fresh_dynamo("race").await;
    let config = default_config();
    let pipeline = Pipeline::new(&store, &NoPublisher, &config);
    for signal in storm() {
        pipeline.ingest(&signal).await.expect("ingest");
    }
    pipeline.drain(u64::MAX).await.expect("drain");
    let incident = dynamo_incidents(&store)
        .await
        .into_values()
        .next()
        .expect("one incident");
    let mut tasks = Vec::new();
    for responder in 0..8i64 {
        let store = another_handle(&store);
        let incident_id = incident.id;
        tasks.push(tokio::spawn(async move {
            let config = default_config();
            let command = IncidentCommand::Transition {
                principal: Principal::local(&format!("responder-{responder}")).expect("name"),
                at: EpochMs(1_795_500_000_000 + responder),
                to: IncidentState::Acknowledged,
                reason: "on it".to_owned(),
                expected_lifecycle_version: 1,
                close_as: None,
                resolution_summary: None,
            };
            Pipeline::new(&store, &NoPublisher, &config)
                .execute_human(&incident_id, &command)
                .await
        }));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => winners += 1,
            Err(PipelineError::Incident(IncidentError::VersionConflict { .. })) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners, 1);
    assert_verifies(&store).await;
}

#[tokio::test]
async fn a_sample_of_injected_faults_converges_on_dynamodb() {
    let signals = storm();
    let reference = sqlite_reference(&signals).await;
    let config = default_config();
    // Count the calls of a clean run on DynamoDB.
    let counter = FaultPlan::never();
    {
        let store = fresh_dynamo("count").await;
        deliver(&store, &counter, &config, &signals).await;
        assert_eq!(dynamo_incidents(&store).await, reference);
    }
    let calls = counter.calls();
    let mut injected = 0;
    for fault in [
        Fault::Transient,
        Fault::TimeoutAfterWrite,
        Fault::Conditional,
    ] {
        for sample in 1..=FAULT_SAMPLES_PER_KIND {
            let fail_at = calls * sample / (FAULT_SAMPLES_PER_KIND + 1);
            let store = fresh_dynamo("fault").await;
            let plan = FaultPlan::new(fail_at, fault);
            deliver(&store, &plan, &config, &signals).await;
            assert_eq!(
                dynamo_incidents(&store).await,
                reference,
                "{fault:?} at call {fail_at} of {calls}"
            );
            assert_verifies(&store).await;
            injected += 1;
        }
    }
    eprintln!("figure: dynamodb_injected_faults = {injected} (of {calls} calls per run)");
}

/// Delivers every signal and drives the queue to empty, retrying what fails, as Lambda
/// retries a failed invocation and the sweeper re-drives queued work.
async fn deliver(
    store: &DynamoStore,
    plan: &FaultPlan,
    config: &opx_app::pipeline::PipelineConfig,
    signals: &[Signal],
) {
    let faulty = FaultyStore::new(store, plan);
    let publisher = FaultyPublisher::new(plan);
    let pipeline = Pipeline::new(&faulty, &publisher, config);
    for signal in signals {
        let mut delivered = false;
        for _ in 0..4 {
            match pipeline.ingest(signal).await {
                Ok(_) => {
                    delivered = true;
                    break;
                }
                Err(error) if error.is_transient() => {}
                Err(error) => panic!("ingest failed for good: {error}"),
            }
        }
        assert!(delivered, "ingest of {} never succeeded", signal.id);
    }
    for _ in 0..4 {
        if let Ok(report) = pipeline.drain(u64::MAX).await {
            if report.left_queued.is_empty() {
                return;
            }
        }
    }
    panic!("work still queued after four sweeps");
}
