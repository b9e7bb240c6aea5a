//! Tamper detection on DynamoDB (moto, through `scripts/with-moto`): the tamper matrix of
//! the SQLite replay tests, done to the items themselves with the raw DynamoDB API — one
//! byte of a stored payload changed, an event deleted, two events swapped, a projection
//! edited, an idempotency record altered. Each is detected and named.

use aws_sdk_dynamodb::types::AttributeValue;
use opx_app::pipeline::{Pipeline, PROJECTION_INCIDENT};
use opx_app::ports::{NoPublisher, StoreRead};
use opx_app::replay::{verify, DivergenceKind, VerifyOptions, VerifyReport};
use opx_store_dynamodb::DynamoStore;
use opx_tests::dynamo::{client, dynamo_incidents, fresh_dynamo};
use opx_tests::{default_config, storm};

/// A store holding the storm carried through every stage, verified clean.
async fn scenario(name: &str) -> DynamoStore {
    let store = fresh_dynamo(name).await;
    let config = default_config();
    let pipeline = Pipeline::new(&store, &NoPublisher, &config);
    for signal in storm() {
        pipeline.ingest(&signal).await.expect("ingest");
    }
    pipeline.drain(u64::MAX).await.expect("drain");
    let report = verify(&store, &VerifyOptions::default())
        .await
        .expect("verify");
    assert!(
        report.ok(),
        "clean before tampering: {:#?}",
        report.divergences
    );
    store
}

async fn report(store: &DynamoStore) -> VerifyReport {
    verify(store, &VerifyOptions::default())
        .await
        .expect("verify reads a tampered store and reports, never fails")
}

/// The first group stream of the store (holding correlated, assessed, decided events).
async fn group_stream(store: &DynamoStore) -> String {
    let page = store.list_streams(None, 1000).await.expect("streams");
    page.items
        .into_iter()
        .find(|id| id.starts_with("group:"))
        .expect("a group stream")
}

fn event_key(stream_id: &str, sequence: u64) -> [(String, AttributeValue); 2] {
    [
        (
            "stream_id".to_owned(),
            AttributeValue::S(stream_id.to_owned()),
        ),
        (
            "sequence".to_owned(),
            AttributeValue::N(sequence.to_string()),
        ),
    ]
}

async fn get_event_item(
    store: &DynamoStore,
    stream_id: &str,
    sequence: u64,
) -> aws_sdk_dynamodb::operation::get_item::GetItemOutput {
    let [stream, seq] = event_key(stream_id, sequence);
    client()
        .get_item()
        .table_name(store.tables().events())
        .key(stream.0, stream.1)
        .key(seq.0, seq.1)
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
}

fn assert_named(report: &VerifyReport, kind: DivergenceKind, stream_or_record: &str) {
    assert!(!report.ok(), "the tamper went unnoticed");
    let found = report.divergences.iter().any(|divergence| {
        divergence.kind == kind
            && (divergence.stream_id.as_deref() == Some(stream_or_record)
                || divergence.record.as_deref() == Some(stream_or_record))
    });
    assert!(
        found,
        "no {kind:?} naming {stream_or_record}: {:#?}",
        report.divergences
    );
}

#[tokio::test]
async fn one_changed_payload_byte_is_named() {
    let store = scenario("byte").await;
    let stream_id = group_stream(&store).await;
    let output = get_event_item(&store, &stream_id, 1).await;
    let mut item = output.item.expect("the event exists");
    let Some(AttributeValue::B(payload)) = item.get("payload").cloned() else {
        panic!("payload is binary: {item:?}");
    };
    let mut bytes = payload.into_inner();
    bytes[10] ^= 0x01;
    item.insert("payload".to_owned(), AttributeValue::B(bytes.into()));
    client()
        .put_item()
        .table_name(store.tables().events())
        .set_item(Some(item))
        .send()
        .await
        .expect("tamper");
    assert_named(
        &report(&store).await,
        DivergenceKind::ChainBroken,
        &stream_id,
    );
}

#[tokio::test]
async fn a_deleted_event_is_named() {
    let store = scenario("deleted").await;
    let stream_id = group_stream(&store).await;
    let [stream, seq] = event_key(&stream_id, 2);
    client()
        .delete_item()
        .table_name(store.tables().events())
        .key(stream.0, stream.1)
        .key(seq.0, seq.1)
        .send()
        .await
        .expect("tamper");
    assert_named(
        &report(&store).await,
        DivergenceKind::ChainBroken,
        &stream_id,
    );
}

#[tokio::test]
async fn two_swapped_events_are_named() {
    let store = scenario("swapped").await;
    let stream_id = group_stream(&store).await;
    let first = get_event_item(&store, &stream_id, 1)
        .await
        .item
        .expect("event 1");
    let second = get_event_item(&store, &stream_id, 2)
        .await
        .item
        .expect("event 2");
    // Each item keeps its key and takes the other's content.
    for (mut target, source, sequence) in
        [(first.clone(), &second, 1u64), (second.clone(), &first, 2)]
    {
        for (name, value) in source {
            if name != "stream_id" && name != "sequence" {
                target.insert(name.clone(), value.clone());
            }
        }
        target.insert(
            "sequence".to_owned(),
            AttributeValue::N(sequence.to_string()),
        );
        client()
            .put_item()
            .table_name(store.tables().events())
            .set_item(Some(target))
            .send()
            .await
            .expect("tamper");
    }
    assert_named(
        &report(&store).await,
        DivergenceKind::ChainBroken,
        &stream_id,
    );
}

#[tokio::test]
async fn an_edited_projection_is_named() {
    let store = scenario("projection").await;
    let incidents = dynamo_incidents(&store).await;
    let (key, incident) = incidents.iter().next().expect("an incident");
    let mut edited = incident.clone();
    edited.note_count += 1;
    client()
        .update_item()
        .table_name(store.tables().projections())
        .key("kind", AttributeValue::S(PROJECTION_INCIDENT.to_owned()))
        .key("key", AttributeValue::S(key.clone()))
        .update_expression("SET #document = :document")
        .expression_attribute_names("#document", "document")
        .expression_attribute_values(
            ":document",
            AttributeValue::B(serde_json::to_vec(&edited).expect("json").into()),
        )
        .send()
        .await
        .expect("tamper");
    let report = report(&store).await;
    assert_named(
        &report,
        DivergenceKind::ProjectionMismatch,
        &format!("{PROJECTION_INCIDENT}/{key}"),
    );
}

#[tokio::test]
async fn an_altered_idempotency_record_is_named() {
    let store = scenario("idempotency").await;
    let signal = &storm()[0];
    let key = format!("signal/{}", signal.id);
    client()
        .update_item()
        .table_name(store.tables().idempotency())
        .key("key", AttributeValue::S(key.clone()))
        .update_expression("SET request_hash = :hash")
        .expression_attribute_values(":hash", AttributeValue::S("0".repeat(64)))
        .send()
        .await
        .expect("tamper");
    let report = report(&store).await;
    assert_named(&report, DivergenceKind::IdempotencyMismatch, &key);
}
