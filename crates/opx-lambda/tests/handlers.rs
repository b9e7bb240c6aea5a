//! Every handler fed recorded, real-shaped Lambda events over a real SQLite store:
//! duplicates, redeliveries, poison input and partial batch failure.

mod support;

use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use opx_app::pipeline::Pipeline;
use opx_app::ports::{NoPublisher, Stage, StoreRead};
use opx_domain::event::EventEnvelope;
use opx_lambda::fanout::handle_fanout;
use opx_lambda::ingest::handle_signal_ingest;
use opx_lambda::replay::{handle_replay, ReplayRequest};
use opx_lambda::stage::{handle_stage, StageOutcome};
use opx_lambda::sweeper::{handle_sweep, AgeUnknown, SweepEnd, SweepLimits};
use opx_lambda::telemetry::{
    METRIC_END_TO_END_LAG_MS, METRIC_INCIDENTS_PROMOTED, METRIC_SIGNALS_INGESTED,
    METRIC_SIGNALS_REJECTED,
};
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};
use support::*;

fn eventbridge_events() -> Vec<Value> {
    fixture!("eventbridge_alarm_events.json")
        .as_array()
        .expect("an array of events")
        .clone()
}

#[tokio::test]
async fn eventbridge_alarm_events_are_recorded_and_a_redelivery_is_a_duplicate() {
    let temp = fresh_store();
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let harness = Harness::new();
    let events = eventbridge_events();

    let mut accepted = 0;
    let mut rejected = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let request_id = format!("req-first-{index}");
        let invocation = harness.invocation("signal-ingest", &request_id);
        let summary = handle_signal_ingest(&pipeline, &invocation, event)
            .await
            .expect("ingest");
        assert_eq!(summary.source.as_deref(), Some("cloudwatch_eventbridge"));
        assert_eq!(summary.items, 1);
        accepted += summary.accepted;
        rejected.extend(summary.rejections);
    }
    assert_eq!(accepted, 7, "seven valid alarm state changes");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].starts_with("detail.state.timestamp:"),
        "{rejected:?}"
    );

    // Ingest only commits: every signal waits for detection, nothing ran in-process.
    let pending = fingerprint(&temp.store).await.pending;
    assert_eq!(pending.len(), 7);
    assert!(
        pending.iter().all(|key| key.starts_with("detect/signal:")),
        "{pending:?}"
    );

    // EventBridge delivers at least once: the same events again change nothing.
    for (index, event) in events.iter().enumerate() {
        let request_id = format!("req-again-{index}");
        let invocation = harness.invocation("signal-ingest", &request_id);
        let summary = handle_signal_ingest(&pipeline, &invocation, event)
            .await
            .expect("ingest");
        assert_eq!(summary.accepted, 0);
        assert_eq!(summary.duplicates + summary.rejected, 1);
    }
    assert_eq!(fingerprint(&temp.store).await.pending.len(), 7);

    // The malformed event is one reject, named by the invocation that first refused it.
    let rejects = rejects(&temp.store).await;
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0].origin, "lambda:signal-ingest:req-first-3");
    assert_eq!(rejects[0].field, "detail.state.timestamp");
    assert!(rejects[0].excerpt.contains("orders-api-errors"));

    assert_eq!(harness.metrics.total(METRIC_SIGNALS_INGESTED), 7);
    assert_eq!(harness.metrics.total(METRIC_SIGNALS_REJECTED), 2);
}

#[tokio::test]
async fn the_sns_copy_of_an_eventbridge_event_is_the_same_signal() {
    let temp = fresh_store();
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let harness = Harness::new();
    let invocation = harness.invocation("signal-ingest", "req-1");
    let first = handle_signal_ingest(&pipeline, &invocation, &eventbridge_events()[0])
        .await
        .unwrap();
    assert_eq!(first.accepted, 1);
    let copy = handle_signal_ingest(
        &pipeline,
        &invocation,
        &fixture!("sns_event_orders_5xx.json"),
    )
    .await
    .unwrap();
    assert_eq!(copy.source.as_deref(), Some("cloudwatch_sns"));
    assert_eq!((copy.accepted, copy.duplicates, copy.conflicts), (0, 1, 0));
}

#[tokio::test]
async fn a_bad_sns_record_is_rejected_and_its_neighbour_recorded() {
    let temp = fresh_store();
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let harness = Harness::new();
    let invocation = harness.invocation("signal-ingest", "8f5c1a2e-sns");
    let summary = handle_signal_ingest(
        &pipeline,
        &invocation,
        &fixture!("sns_event_queue_depth_and_truncated.json"),
    )
    .await
    .unwrap();
    assert_eq!(
        (summary.items, summary.accepted, summary.rejected),
        (2, 1, 1)
    );
    let rejects = rejects(&temp.store).await;
    assert_eq!(rejects.len(), 1);
    assert!(
        rejects[0].field.starts_with("Records[1].Sns.Message"),
        "{:?}",
        rejects[0]
    );
    assert_eq!(rejects[0].origin, "lambda:signal-ingest:8f5c1a2e-sns");
}

#[tokio::test]
async fn the_first_bad_sns_record_is_item_one_and_its_reject_is_not_the_whole_payloads() {
    let temp = fresh_store();
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let harness = Harness::new();
    let invocation = harness.invocation("signal-ingest", "req-sns-first-bad");
    // The recorded batch with its truncated record moved first.
    let mut batch = fixture!("sns_event_queue_depth_and_truncated.json");
    batch["Records"].as_array_mut().unwrap().reverse();
    let summary = handle_signal_ingest(&pipeline, &invocation, &batch)
        .await
        .unwrap();
    assert_eq!(
        (summary.items, summary.accepted, summary.rejected),
        (2, 1, 1)
    );
    let rejects = rejects(&temp.store).await;
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert!(
        rejects[0].field.starts_with("Records[0].Sns.Message"),
        "{:?}",
        rejects[0]
    );
    // The handler's bytes are the canonical JSON of the payload.
    let bytes = serde_json::to_vec(&batch).unwrap();
    assert_eq!(rejects[0].id, opx_app::ports::reject_id(&bytes, 1));
    assert_ne!(rejects[0].id, opx_app::ports::reject_id(&bytes, 0));

    // As recorded (the bad record second), the reject is item 2's.
    let (temp, harness) = (fresh_store(), Harness::new());
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let invocation = harness.invocation("signal-ingest", "req-sns-second-bad");
    let recorded = fixture!("sns_event_queue_depth_and_truncated.json");
    handle_signal_ingest(&pipeline, &invocation, &recorded)
        .await
        .unwrap();
    let bytes = serde_json::to_vec(&recorded).unwrap();
    let ids: Vec<_> = crate::rejects(&temp.store)
        .await
        .iter()
        .map(|reject| reject.id)
        .collect();
    assert_eq!(ids, vec![opx_app::ports::reject_id(&bytes, 2)]);
}

#[tokio::test]
async fn a_direct_alarm_action_payload_is_recorded() {
    let temp = fresh_store();
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let harness = Harness::new();
    let invocation = harness.invocation("signal-ingest", "req-action");
    let payload = fixture!("alarm_action_orders_healthy_hosts.json");
    let summary = handle_signal_ingest(&pipeline, &invocation, &payload)
        .await
        .unwrap();
    assert_eq!(summary.source.as_deref(), Some("cloudwatch_alarm_action"));
    assert_eq!(summary.accepted, 1);
    let again = handle_signal_ingest(&pipeline, &invocation, &payload)
        .await
        .unwrap();
    assert_eq!(again.duplicates, 1);
}

#[tokio::test]
async fn a_payload_of_no_known_kind_is_rejected_whole() {
    let temp = fresh_store();
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let harness = Harness::new();
    let invocation = harness.invocation("signal-ingest", "req-unknown");
    let payload = json!({"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "x"}}}]});
    let summary = handle_signal_ingest(&pipeline, &invocation, &payload)
        .await
        .unwrap();
    assert_eq!(summary.accepted, 0);
    assert_eq!(summary.rejected, 1);
    assert_eq!(rejects(&temp.store).await.len(), 1);
    assert!(fingerprint(&temp.store).await.streams.is_empty());
}

/// Ingests the first EventBridge fixture (orders-api-5xx) and returns its
/// `SignalAccepted`.
async fn ingest_orders_5xx(store: &SqliteStore) -> EventEnvelope {
    let config = config();
    let bus = CapturePublisher::default();
    let pipeline = Pipeline::new(store, &bus, &config);
    let harness = Harness::new();
    let invocation = harness.invocation("signal-ingest", "req-ingest");
    handle_signal_ingest(&pipeline, &invocation, &eventbridge_events()[0])
        .await
        .expect("ingest");
    let mut published = bus.take();
    assert_eq!(published.len(), 1);
    published.remove(0)
}

#[tokio::test]
async fn the_recorded_bus_event_points_at_the_committed_signal() {
    let temp = fresh_store();
    let accepted = ingest_orders_5xx(&temp.store).await;
    // The fixture was recorded from this exact input: the same alarm state change always
    // gets the same signal id, event and hash.
    let recorded = fixture!("bus_event_signal_accepted_orders_5xx.json");
    assert_eq!(recorded["detail"], bus_event(&accepted)["detail"]);
}

#[tokio::test]
async fn detection_runs_once_and_a_redelivery_is_already_done() {
    let temp = fresh_store();
    ingest_orders_5xx(&temp.store).await;
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let harness = Harness::new();
    let event = fixture!("bus_event_signal_accepted_orders_5xx.json");

    let invocation = harness.invocation("detection", "req-detect-1");
    let outcome = handle_stage(&temp.store, &pipeline, Stage::Detect, &invocation, &event)
        .await
        .unwrap();
    let StageOutcome::Done { work, events, .. } = outcome else {
        panic!("expected the step to run, got {outcome:?}");
    };
    assert!(work.starts_with("detect/signal:"));
    // SignalEvaluated is the signal's second event; the first detection also records the
    // rule set it decided with.
    let evaluated: Vec<_> = events.iter().filter(|e| e.starts_with("signal:")).collect();
    assert_eq!(evaluated.len(), 1, "{events:?}");
    assert!(evaluated[0].ends_with("#2"), "{events:?}");

    for request_id in ["req-detect-2", "req-detect-3"] {
        let invocation = harness.invocation("detection", request_id);
        let outcome = handle_stage(&temp.store, &pipeline, Stage::Detect, &invocation, &event)
            .await
            .unwrap();
        assert!(
            matches!(outcome, StageOutcome::AlreadyDone { .. }),
            "{outcome:?}"
        );
    }
    let state = fingerprint(&temp.store).await;
    assert_eq!(state.pending.len(), 1, "only the correlate step is queued");
    assert!(state.pending[0].starts_with("correlate/"));
    assert!(rejects(&temp.store).await.is_empty());
}

#[tokio::test]
async fn poison_bus_events_are_rejected_and_acknowledged() {
    let temp = fresh_store();
    let accepted = ingest_orders_5xx(&temp.store).await;
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let harness = Harness::new();
    let before = fingerprint(&temp.store).await;

    let mut forged = bus_event(&accepted);
    forged["detail"]["hash"] = json!("ab".repeat(32));
    let mut missing = bus_event(&accepted);
    missing["detail"]["sequence"] = json!(7);
    let cases = [
        (
            fixture!("bus_event_malformed_detail.json"),
            Stage::Detect,
            "detail",
        ),
        (
            fixture!("bus_event_misrouted.json"),
            Stage::Detect,
            "detail.event_type",
        ),
        (bus_event(&accepted), Stage::Promote, "detail.event_type"),
        (forged, Stage::Detect, "detail"),
        (missing, Stage::Detect, "detail"),
    ];
    for (index, (event, stage, field)) in cases.iter().enumerate() {
        let request_id = format!("req-poison-{index}");
        let invocation = harness.invocation("detection", &request_id);
        let outcome = handle_stage(&temp.store, &pipeline, *stage, &invocation, event)
            .await
            .expect("poison is acknowledged, never retried");
        match outcome {
            StageOutcome::Rejected { field: found, .. } => {
                assert_eq!(&found, field, "case {index}")
            }
            other => panic!("case {index}: expected a reject, got {other:?}"),
        }
    }
    let rejects = rejects(&temp.store).await;
    assert_eq!(rejects.len(), cases.len());
    assert!(rejects
        .iter()
        .all(|reject| reject.origin.starts_with("lambda:detection:req-poison-")));
    // Nothing was written and the real work is still queued for its real notification.
    assert_eq!(fingerprint(&temp.store).await, before);
}

#[tokio::test]
async fn a_busy_store_fails_signal_ingest_as_retryable_and_the_retry_records_the_batch() {
    let temp = fresh_store();
    let busy = SqliteStore::open(
        temp.store.path(),
        SqliteOptions {
            busy_timeout_ms: 50,
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    let blocker = rusqlite::Connection::open(temp.store.path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let config = config();
    let pipeline = Pipeline::new(&busy, &NoPublisher, &config);
    let harness = Harness::new();
    let invocation = harness.invocation("signal-ingest", "req-busy");
    let mut batch = fixture!("sns_event_queue_depth_and_truncated.json");
    batch["Records"].as_array_mut().unwrap().reverse();
    let error = handle_signal_ingest(&pipeline, &invocation, &batch)
        .await
        .expect_err("a locked store records nothing");
    assert!(error.is_retryable(), "{error}");

    blocker.execute_batch("ROLLBACK").unwrap();
    let retried = handle_signal_ingest(&pipeline, &invocation, &batch)
        .await
        .unwrap();
    assert_eq!(
        (retried.items, retried.accepted, retried.rejected),
        (2, 1, 1)
    );
    let bytes = serde_json::to_vec(&batch).unwrap();
    let ids: Vec<_> = rejects(&temp.store)
        .await
        .iter()
        .map(|reject| reject.id)
        .collect();
    assert_eq!(ids, vec![opx_app::ports::reject_id(&bytes, 1)]);
}

#[tokio::test]
async fn a_busy_store_fails_the_invocation_as_retryable() {
    let temp = fresh_store();
    let accepted = ingest_orders_5xx(&temp.store).await;
    let busy = SqliteStore::open(
        temp.store.path(),
        SqliteOptions {
            busy_timeout_ms: 50,
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    // Another writer holds the write lock for the whole attempt.
    let blocker = rusqlite::Connection::open(temp.store.path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let config = config();
    let pipeline = Pipeline::new(&busy, &NoPublisher, &config);
    let harness = Harness::new();
    let invocation = harness.invocation("detection", "req-busy");
    let error = handle_stage(
        &busy,
        &pipeline,
        Stage::Detect,
        &invocation,
        &bus_event(&accepted),
    )
    .await
    .expect_err("a locked store cannot commit");
    assert!(error.is_retryable(), "{error}");
    assert_eq!(
        lambda_runtime::Diagnostic::from(error).error_type,
        "Retryable"
    );

    blocker.execute_batch("ROLLBACK").unwrap();
    let outcome = handle_stage(
        &busy,
        &pipeline,
        Stage::Detect,
        &invocation,
        &bus_event(&accepted),
    )
    .await
    .unwrap();
    assert!(
        matches!(outcome, StageOutcome::Done { .. }),
        "Lambda's retry succeeds"
    );
}

#[tokio::test]
async fn the_recorded_stream_batch_is_the_store_s_own_events() {
    let temp = fresh_store();
    let accepted = ingest_orders_5xx(&temp.store).await;
    let recorded = fixture!("dynamodb_stream_batch.json");
    let image = &recorded["Records"][0]["dynamodb"]["NewImage"];
    assert_eq!(image, &event_image(&accepted));
    let decoded = opx_store_dynamodb::event_from_item(
        serde_json::from_value::<serde_dynamo::Item>(image.clone()).unwrap(),
    )
    .unwrap();
    assert_eq!(decoded, accepted);
}

#[tokio::test]
async fn fanout_publishes_inserts_reports_failures_and_rejects_poison_images() {
    let temp = fresh_store();
    ingest_orders_5xx(&temp.store).await;
    let batch: StreamBatch =
        serde_json::from_value(fixture!("dynamodb_stream_batch.json")).expect("a stream batch");
    assert_eq!(batch.records.len(), 6);
    let failing_stream = batch.records[2].change.new_image.clone();
    let failing_stream = opx_store_dynamodb::event_from_item(failing_stream)
        .unwrap()
        .stream_id;
    let publisher = FailingPublisher {
        failing_stream,
        published: CapturePublisher::default(),
    };
    let harness = Harness::new();
    let invocation = harness.invocation("fanout", "req-stream-1");
    let outcome = handle_fanout(&temp.store, &publisher, &invocation, &batch)
        .await
        .unwrap();

    let failures: Vec<_> = outcome
        .response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failures, vec!["4600000000000000000102"]);
    let response = serde_json::to_value(&outcome.response).unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "4600000000000000000102"}]})
    );
    assert_eq!(outcome.report.published, 2, "{:?}", outcome.report);
    assert_eq!(outcome.report.ignored, 2);
    assert_eq!(outcome.report.poison, 1);
    let published = publisher.published.take();
    assert_eq!(
        published[0], published[1],
        "the duplicate record is published again"
    );

    let rejects = rejects(&temp.store).await;
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].field, "Records[4].dynamodb.NewImage");
    assert_eq!(rejects[0].origin, "lambda:fanout:req-stream-1");

    // Lambda retries the batch from the failed record: the poison record is not
    // recorded twice and the rest publishes.
    let healthy = CapturePublisher::default();
    let invocation = harness.invocation("fanout", "req-stream-2");
    let retry = handle_fanout(&temp.store, &healthy, &invocation, &batch)
        .await
        .unwrap();
    assert!(retry.response.batch_item_failures.is_empty());
    assert_eq!(retry.report.published, 3);
    assert_eq!(opx_lambda::fanout::FANOUT_BATCH_RECORDS_MAX, 1000);
    assert_eq!(crate::rejects(&temp.store).await.len(), 1);
}

/// Ingests the EventBridge storm, delivering no notification at all.
async fn ingest_storm_without_notifications(store: &SqliteStore) {
    let config = config();
    let pipeline = Pipeline::new(store, &NoPublisher, &config);
    let harness = Harness::new();
    for (index, event) in eventbridge_events().iter().enumerate() {
        let request_id = format!("req-{index}");
        let invocation = harness.invocation("signal-ingest", &request_id);
        handle_signal_ingest(&pipeline, &invocation, event)
            .await
            .expect("ingest");
    }
}

#[tokio::test]
async fn the_sweeper_carries_work_whose_notifications_were_lost() {
    let temp = fresh_store();
    ingest_storm_without_notifications(&temp.store).await;
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let harness = Harness::new();
    let pager = CapturePublisher::default();
    let invocation = harness.invocation("sweeper", "req-sweep-1");
    let report = handle_sweep(
        &pipeline,
        &pager,
        &AgeUnknown(&temp.store),
        &invocation,
        &SweepLimits::with_min_age_ms(300_000),
    )
    .await
    .unwrap();
    assert_eq!(report.end, SweepEnd::QueueEnd);
    assert_eq!(report.incidents_opened, 1, "{report:?}");
    assert_eq!(report.failed_retryable + report.failed_permanent, 0);
    // Every step re-driven, and the opened incident's page (queued with it) sent.
    assert_eq!(report.pages_sent, 1, "{report:?}");
    assert_eq!(report.redriven + report.pages_sent, report.steps);
    let pages = pager.take();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].event_type, "IncidentOpened");
    assert!(fingerprint(&temp.store).await.pending.is_empty());
    assert_eq!(harness.metrics.total(METRIC_INCIDENTS_PROMOTED), 1);
    // From the storm's first alarm (03:00:09.512) to the clock (03:10:00.000).
    assert_eq!(
        harness.metrics.values(METRIC_END_TO_END_LAG_MS),
        vec![590_488]
    );

    let invocation = harness.invocation("sweeper", "req-sweep-2");
    let again = handle_sweep(
        &pipeline,
        &pager,
        &AgeUnknown(&temp.store),
        &invocation,
        &SweepLimits::with_min_age_ms(300_000),
    )
    .await
    .unwrap();
    assert_eq!((again.seen, again.steps), (0, 0));
    assert!(pager.take().is_empty());
}

#[tokio::test]
async fn the_sweeper_stops_at_its_limits_and_before_the_deadline() {
    let temp = fresh_store();
    ingest_storm_without_notifications(&temp.store).await;
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let harness = Harness::new();

    let limits = SweepLimits {
        steps_max: 2,
        ..SweepLimits::with_min_age_ms(0)
    };
    let invocation = harness.invocation("sweeper", "req-steps");
    let report = handle_sweep(
        &pipeline,
        &NoPublisher,
        &AgeUnknown(&temp.store),
        &invocation,
        &limits,
    )
    .await
    .unwrap();
    assert_eq!((report.end, report.steps), (SweepEnd::StepLimit, 2));

    let limits = SweepLimits {
        page_size: 1,
        pages_max: 3,
        ..SweepLimits::with_min_age_ms(0)
    };
    let report = handle_sweep(
        &pipeline,
        &NoPublisher,
        &AgeUnknown(&temp.store),
        &invocation,
        &limits,
    )
    .await
    .unwrap();
    assert_eq!((report.end, report.pages), (SweepEnd::PageLimit, 3));

    let mut invocation = harness.invocation("sweeper", "req-late");
    invocation.deadline = Some(opx_domain::time::EpochMs(harness.clock.now_ms() + 5_000));
    let report = handle_sweep(
        &pipeline,
        &NoPublisher,
        &AgeUnknown(&temp.store),
        &invocation,
        &SweepLimits::with_min_age_ms(0),
    )
    .await
    .unwrap();
    assert_eq!((report.end, report.steps), (SweepEnd::OutOfTime, 0));
}

#[tokio::test]
async fn replay_verifies_in_slices_across_invocations_and_ends_with_the_whole_report() {
    let temp = fresh_store();
    ingest_storm_without_notifications(&temp.store).await;
    let harness = Harness::new();
    let invocation = harness.invocation("replay", "req-replay");

    // No deadline: one invocation verifies everything.
    let request: ReplayRequest = serde_json::from_value(json!({"cursor": null})).unwrap();
    let whole = handle_replay(&temp.store, &invocation, &request)
        .await
        .unwrap();
    assert!(whole.ok, "{:?}", whole.report.divergences);
    assert_eq!(whole.next_cursor, None);
    assert_eq!(
        whole.report.pending.len(),
        7,
        "pending work is reported, not divergent"
    );
    let body = serde_json::to_value(&whole).unwrap();
    assert!(body.get("next_cursor").is_some_and(Value::is_null));

    // Less time left than the reserve: one slice per invocation, resumed by cursor.
    let mut tight = harness.invocation("replay", "req-replay-slices");
    tight.deadline = Some(opx_domain::time::EpochMs(harness.clock.now_ms() + 1_000));
    let mut cursor: Option<String> = None;
    let mut invocations = 0;
    let last = loop {
        invocations += 1;
        let request: ReplayRequest =
            serde_json::from_value(json!({"cursor": cursor, "slice_items": 2})).unwrap();
        let response = handle_replay(&temp.store, &tight, &request).await.unwrap();
        match response.next_cursor {
            Some(next) => cursor = Some(next),
            None => break response,
        }
        assert!(invocations < 1_000, "the slices end");
    };
    assert!(invocations > 3, "{invocations} invocations");
    assert_eq!(last.report, whole.report);

    let garbage: ReplayRequest = serde_json::from_value(json!({"cursor": "abc"})).unwrap();
    let error = handle_replay(&temp.store, &invocation, &garbage)
        .await
        .unwrap_err();
    assert!(!error.is_retryable());
    let zero: ReplayRequest = serde_json::from_value(json!({"slice_items": 0})).unwrap();
    assert!(handle_replay(&temp.store, &invocation, &zero)
        .await
        .is_err());
    assert!(serde_json::from_value::<ReplayRequest>(json!({"cursr": "x"})).is_err());
}

#[tokio::test]
async fn store_reads_in_tests_use_the_real_store() {
    // Guard for the helpers above: the fingerprint sees what was written.
    let temp = fresh_store();
    ingest_orders_5xx(&temp.store).await;
    let state = fingerprint(&temp.store).await;
    assert_eq!(state.streams.len(), 1);
    assert!(temp
        .store
        .list_rejects(None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
}
