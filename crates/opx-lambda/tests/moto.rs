//! End to end on moto: the same arrivals and the same driving as `end_to_end.rs`, but over
//! the DynamoDB store, with stream images read from the events table itself and the
//! fan-out publishing with `PutEvents` to an EventBridge bus whose rule (the stage
//! inputs, as the CDK app routes them) targets an SQS queue that the test reads in place
//! of Lambda. The store must end with the same streams, event hashes and incidents as the
//! embedded pipeline on SQLite.
//!
//! Run through `scripts/with-moto cargo test -p opx-lambda`: the test reads the server's
//! URL from `OPX_DYNAMODB_ENDPOINT` and fails (never skips) without it.

// Test code: helpers outside #[test] functions unwrap too; a failed step is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_eventbridge::types::Target;
use aws_sdk_sqs::types::QueueAttributeName;
use opx_domain::event::EventEnvelope;
use opx_lambda::replay::{handle_replay, ReplayRequest};
use opx_lambda::sweeper::{handle_sweep, SweepLimits};
use opx_lambda::{Invocation, SystemClock};
use opx_publisher_eventbridge::{EventBridgePublisher, EVENT_SOURCE};
use opx_store_dynamodb::{retry_config, DynamoStore, TableNames};
use serde_json::{json, Value};
use support::*;

const ENDPOINT_VARIABLE: &str = "OPX_DYNAMODB_ENDPOINT";
/// Empty receives in a row after which the queue counts as drained.
const EMPTY_RECEIVES_MAX: u32 = 2;

#[allow(clippy::disallowed_methods)]
async fn sdk_config() -> aws_config::SdkConfig {
    let endpoint = match std::env::var(ENDPOINT_VARIABLE) {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!(
            "{ENDPOINT_VARIABLE} is not set: this test needs moto. Run it through scripts/with-moto: \
             `scripts/with-moto cargo test -p opx-lambda`"
        ),
    };
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "opx-tests"))
        .retry_config(retry_config())
        .load()
        .await
}

#[allow(clippy::disallowed_methods)]
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}

/// The events table read back for stream images, `PutEvents` to a bus, and the bus's
/// stage-input rule delivering to an SQS queue.
struct MotoTransport {
    store: DynamoStore,
    publisher: EventBridgePublisher,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl MotoTransport {
    async fn new(config: &aws_config::SdkConfig, store: DynamoStore) -> MotoTransport {
        let events = aws_sdk_eventbridge::Client::new(config);
        let sqs = aws_sdk_sqs::Client::new(config);
        let bus = unique("opx-bus");
        events.create_event_bus().name(&bus).send().await.unwrap();
        let queue_url = sqs
            .create_queue()
            .queue_name(unique("opx-stage-inputs"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        let queue_arn = attributes.attributes.unwrap()[&QueueAttributeName::QueueArn].clone();
        // The four stage rules of the CDK app, as one rule: the test routes by detail-type.
        let pattern = json!({
            "source": [EVENT_SOURCE],
            "detail-type": ["SignalAccepted", "SignalEvaluated", "DetectionCorrelated", "ConfidenceAssessed"]
        });
        events
            .put_rule()
            .name("stage-inputs")
            .event_bus_name(&bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("stage-inputs")
            .event_bus_name(&bus)
            .targets(
                Target::builder()
                    .id("queue")
                    .arn(queue_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        MotoTransport {
            store,
            publisher: EventBridgePublisher::new(events, bus),
            sqs,
            queue_url,
        }
    }
}

impl Transport for MotoTransport {
    type Publisher = EventBridgePublisher;

    fn fanout_publisher(&self) -> &EventBridgePublisher {
        &self.publisher
    }

    async fn image(&self, event: &EventEnvelope) -> Value {
        let output = self
            .store
            .client()
            .get_item()
            .table_name(self.store.tables().events())
            .key("stream_id", AttributeValue::S(event.stream_id.clone()))
            .key("sequence", AttributeValue::N(event.sequence.to_string()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        let item: serde_dynamo::Item = output.item.expect("the committed event is stored").into();
        let image = serde_json::to_value(&item).unwrap();
        // The in-process transport's images (and the recorded stream fixture) are built
        // the same way the store writes its items.
        assert_eq!(image, event_image(event), "the store's item format changed");
        image
    }

    async fn delivered(&self) -> Vec<Value> {
        let mut bodies = Vec::new();
        let mut empty = 0;
        while empty < EMPTY_RECEIVES_MAX {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                empty += 1;
                continue;
            }
            for message in messages {
                bodies.push(serde_json::from_str(message.body().unwrap()).unwrap());
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        bodies
    }
}

async fn fresh_dynamo(config: &aws_config::SdkConfig) -> DynamoStore {
    let tables = TableNames::for_prefix(&unique("opx-e2e")).unwrap();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(config), tables);
    store.create_tables().await.unwrap();
    store
}

#[tokio::test]
async fn lambda_handlers_on_dynamodb_and_eventbridge_end_where_sqlite_ends() {
    let expected = reference_fingerprint().await;
    let config = sdk_config().await;
    let store = fresh_dynamo(&config).await;
    let transport = MotoTransport::new(&config, store.clone()).await;
    let harness = Harness::new();
    let report = drive(&store, &store, &transport, &harness).await;
    assert!(report.swept >= 1, "{report:?}");

    let actual = fingerprint(&store).await;
    assert!(actual.pending.is_empty(), "{:?}", actual.pending);
    assert_eq!(
        actual.streams, expected.streams,
        "same streams and event hashes as SQLite"
    );
    assert_eq!(
        actual.incidents, expected.incidents,
        "same incidents as SQLite"
    );
    assert_eq!(rejects(&store).await.len(), 2);
    let invocation = harness.invocation("replay", "replay-1");
    let replay = handle_replay(&store, &invocation, &ReplayRequest::default())
        .await
        .unwrap();
    assert!(replay.ok, "{:#?}", replay.report.divergences);
}

#[tokio::test]
async fn the_sweeper_leaves_young_work_to_its_notification() {
    let config = sdk_config().await;
    let store = fresh_dynamo(&config).await;
    let pipeline_config = support::config();
    let pipeline =
        opx_app::pipeline::Pipeline::new(&store, &opx_app::ports::NoPublisher, &pipeline_config);
    let harness = Harness::new();
    let invocation = harness.invocation("signal-ingest", "ingest-1");
    opx_lambda::ingest::handle_signal_ingest(&pipeline, &invocation, &arrivals()[0])
        .await
        .unwrap();

    // By the Lambda's clock the work was added a moment ago: younger than five minutes.
    let clock = SystemClock;
    let sweeper = Invocation {
        function: "sweeper",
        request_id: "sweep-young",
        deadline: None,
        clock: &clock,
        metrics: &harness.metrics,
    };
    let young = handle_sweep(
        &pipeline,
        &opx_app::ports::NoPublisher,
        &store,
        &sweeper,
        &SweepLimits::with_min_age_ms(300_000),
    )
    .await
    .unwrap();
    assert_eq!(
        (young.seen, young.too_young, young.steps),
        (1, 1, 0),
        "{young:?}"
    );

    let old = handle_sweep(
        &pipeline,
        &opx_app::ports::NoPublisher,
        &store,
        &sweeper,
        &SweepLimits::with_min_age_ms(0),
    )
    .await
    .unwrap();
    assert_eq!(old.too_young, 0, "{old:?}");
    assert!(old.redriven >= 2, "detect, then correlate: {old:?}");
    assert!(fingerprint(&store).await.pending.is_empty());
}
