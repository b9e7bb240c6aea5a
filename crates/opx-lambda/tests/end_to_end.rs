//! End to end on SQLite: recorded CloudWatch alarm payloads → `signal-ingest` → the
//! events "stream" (a capturing publisher) → `fanout` → the bus (a capturing publisher
//! standing in for EventBridge) → the stage handlers, driven from the published pointers
//! in the order the bus rules would call them — with duplicate deliveries, a late
//! redelivery and one dropped notification that the sweeper recovers. The store must end
//! exactly as `Pipeline::drain` leaves it on the same input: same streams, same event
//! hashes, same incidents, nothing pending.

mod support;

use opx_lambda::replay::{handle_replay, ReplayRequest};
use opx_lambda::sweeper::AgeUnknown;
use opx_lambda::telemetry::{METRIC_INCIDENTS_PROMOTED, METRIC_SIGNALS_INGESTED};
use support::*;

#[tokio::test]
async fn lambda_handlers_end_where_the_embedded_pipeline_ends() {
    let expected = reference_fingerprint().await;
    assert_eq!(
        expected.incidents.len(),
        1,
        "the orders storm is one incident"
    );
    // Nine signals, three evidence groups, one incident, the rule set and the model.
    assert_eq!(expected.streams.len(), 15, "{:#?}", expected.streams.keys());

    let temp = fresh_store();
    let store = &temp.store;
    let harness = Harness::new();
    let report = drive(
        store,
        &AgeUnknown(store),
        &InProcessTransport::default(),
        &harness,
    )
    .await;
    assert!(report.swept >= 1 && report.already_done > 2, "{report:?}");

    let actual = fingerprint(store).await;
    assert!(actual.pending.is_empty(), "{:?}", actual.pending);
    assert_eq!(
        actual.streams, expected.streams,
        "same streams and event hashes"
    );
    assert_eq!(actual.incidents, expected.incidents, "same incidents");

    // Rejected payload items are in the rejects store, and the store verifies.
    assert_eq!(
        rejects(store).await.len(),
        2,
        "the malformed event and the truncated SNS record"
    );
    let invocation = harness.invocation("replay", "replay-1");
    let replay = handle_replay(store, &invocation, &ReplayRequest::default())
        .await
        .unwrap();
    assert!(replay.ok, "{:#?}", replay.report.divergences);
    assert_eq!(harness.metrics.total(METRIC_SIGNALS_INGESTED), 9);
    assert_eq!(harness.metrics.total(METRIC_INCIDENTS_PROMOTED), 1);
}
