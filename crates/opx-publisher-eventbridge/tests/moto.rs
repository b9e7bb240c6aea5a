//! `PutEvents` against moto's EventBridge: a bus, a rule matching source `opx` and an SQS
//! queue as its target, so the test reads back exactly what EventBridge delivered.
//!
//! Run through `scripts/with-moto cargo test -p opx-publisher-eventbridge`: the test reads
//! the server's URL from `OPX_DYNAMODB_ENDPOINT` and fails (never skips) without it.

// Test code: helpers outside #[test] functions unwrap too; a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_eventbridge::types::Target;
use aws_sdk_sqs::types::QueueAttributeName;
use opx_app::ports::{Publisher, StoreError};
use opx_domain::event::EventEnvelope;
use opx_domain::hash::Digest;
use opx_publisher_eventbridge::{EventBridgePublisher, PointerDetail, EVENT_SOURCE};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const ENDPOINT_VARIABLE: &str = "OPX_DYNAMODB_ENDPOINT";
/// Empty receives in a row after which the queue counts as drained.
const EMPTY_RECEIVES_MAX: u32 = 3;

#[allow(clippy::disallowed_methods)]
async fn sdk_config() -> aws_config::SdkConfig {
    let endpoint = match std::env::var(ENDPOINT_VARIABLE) {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!(
            "{ENDPOINT_VARIABLE} is not set: this test needs moto. Run it through scripts/with-moto: \
             `scripts/with-moto cargo test -p opx-publisher-eventbridge`"
        ),
    };
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "opx-tests"))
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

/// A bus whose every `opx` event lands in a fresh queue; returns (bus, queue URL).
async fn bus_with_queue(config: &aws_config::SdkConfig) -> (String, String) {
    let events = aws_sdk_eventbridge::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let bus = unique("opx-bus");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("opx-published"))
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
    events
        .put_rule()
        .name("all-opx-events")
        .event_bus_name(&bus)
        .event_pattern(json!({"source": [EVENT_SOURCE]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("all-opx-events")
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
    (bus, queue_url)
}

/// Every message in the queue, as JSON, deleting each.
async fn drain_queue(config: &aws_config::SdkConfig, queue_url: &str) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut bodies = Vec::new();
    let mut empty = 0;
    while empty < EMPTY_RECEIVES_MAX {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
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
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    bodies
}

fn events(count: u64) -> Vec<EventEnvelope> {
    (1..=count)
        .map(|index| {
            let (stream, event_type, payload) = if index % 5 == 0 {
                (
                    format!("incident:{index:064x}"),
                    "IncidentOpened",
                    json!({"environment": "111122223333", "service": "orders", "evidence": []}),
                )
            } else {
                (
                    format!("signal:{index:064x}"),
                    "SignalAccepted",
                    json!({"signal": {"alarm": "arn:aws:cloudwatch:us-east-1:111122223333:alarm:x"}}),
                )
            };
            EventEnvelope::seal(
                stream,
                1,
                event_type,
                1,
                serde_json::to_vec(&payload).unwrap(),
                Digest::ZERO,
            )
        })
        .collect()
}

#[tokio::test]
async fn every_event_arrives_once_as_a_pointer_with_its_type() {
    let config = sdk_config().await;
    let (bus, queue_url) = bus_with_queue(&config).await;
    let publisher = EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&config), &bus);
    // 23 events: three PutEvents requests (10, 10, 3).
    let published = events(23);
    publisher.publish(&published).await.unwrap();

    let delivered = drain_queue(&config, &queue_url).await;
    assert_eq!(delivered.len(), published.len());
    let mut by_pointer: BTreeMap<String, Value> = BTreeMap::new();
    for message in delivered {
        assert_eq!(message["source"], EVENT_SOURCE);
        let key = format!(
            "{}#{}",
            message["detail"]["stream_id"].as_str().unwrap(),
            message["detail"]["sequence"]
        );
        assert!(by_pointer.insert(key, message).is_none(), "delivered once");
    }
    for event in &published {
        let message = &by_pointer[&format!("{}#{}", event.stream_id, event.sequence)];
        assert_eq!(message["detail-type"], event.event_type.as_str());
        assert_eq!(
            message["detail"],
            serde_json::to_value(PointerDetail::of(event)).unwrap()
        );
        let detail: PointerDetail = serde_json::from_value(message["detail"].clone()).unwrap();
        assert_eq!(detail.pointer(), event.pointer());
    }
}

#[tokio::test]
async fn a_missing_bus_is_a_permanent_error() {
    let config = sdk_config().await;
    let publisher = EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::new(&config),
        unique("no-such-bus"),
    );
    let error = publisher.publish(&events(2)).await.unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error}");
}
