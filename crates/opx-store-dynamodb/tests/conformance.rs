//! The store conformance suite on DynamoDB (moto's server), plus what only DynamoDB has:
//! cancellation reasons, item and transaction limits, 1 MB query pages, table creation.
//!
//! Run through `scripts/with-moto cargo test -p opx-store-dynamodb`: the tests read the
//! server's URL from `OPX_DYNAMODB_ENDPOINT` and fail (never skip) without it. Each test
//! works on its own freshly created tables (a unique table prefix), so tests never see
//! each other's data, even against a long-running server.

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use opx_app::conformance::StoreHarness;
use opx_app::ports::{
    Commit, Conflict, IdempotencyRecord, Projection, ProjectionChange, Stage, Store, StoreError,
    StoreRead, WorkItem, PROJECTION_LEN_MAX,
};
use opx_domain::event::{verify_stream, EventEnvelope, PAYLOAD_LEN_MAX};
use opx_domain::hash::Digest;
use opx_store_dynamodb::{event_from_item, retry_config, DynamoStore, TableNames, ITEM_LEN_MAX};
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable `scripts/with-moto` sets to the server's URL.
const ENDPOINT_VARIABLE: &str = "OPX_DYNAMODB_ENDPOINT";

/// A client for the moto server named by `OPX_DYNAMODB_ENDPOINT`, with fake credentials
/// (the tests never talk to AWS, whatever the environment holds).
#[allow(clippy::disallowed_methods)]
fn client() -> Client {
    let endpoint = match std::env::var(ENDPOINT_VARIABLE) {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!(
            "{ENDPOINT_VARIABLE} is not set: these tests need a DynamoDB protocol server. Run \
             them through scripts/with-moto, which starts moto on a free loopback port and sets \
             it: `scripts/with-moto cargo test -p opx-store-dynamodb`"
        ),
    };
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "opx-tests"))
        .retry_config(retry_config())
        .build();
    Client::from_conf(config)
}

/// A table prefix no other test (in this run or an earlier one against the same server)
/// uses.
#[allow(clippy::disallowed_methods)]
fn unique_prefix(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("{name}-{}-{count}-{nanos}", std::process::id())
}

async fn fresh_store(name: &str) -> DynamoStore {
    let tables = TableNames::for_prefix(&unique_prefix(name)).expect("a valid prefix");
    let store = DynamoStore::new(client(), tables);
    store.create_tables().await.expect("the tables are created");
    store
}

struct DynamoHarness;

impl StoreHarness for DynamoHarness {
    type Store = DynamoStore;

    async fn fresh(&self) -> DynamoStore {
        fresh_store("conf").await
    }

    async fn another_handle(&self, store: &DynamoStore) -> DynamoStore {
        // Its own client (and connection pool), as another Lambda instance would have.
        DynamoStore::new(client(), store.tables().clone())
    }

    fn pending_work_in_insertion_order(&self) -> bool {
        // Work items are keyed by `stage/stream/sequence` so that completing one is a
        // delete by key; a Query returns them in key order.
        false
    }
}

opx_app::store_conformance_suite!(DynamoHarness);

// ---------------------------------------------------------------------------------------
// DynamoDB only.
// ---------------------------------------------------------------------------------------

fn run(test: impl std::future::Future<Output = ()>) {
    opx_app::conformance::run_case(test);
}

fn chain(stream: &str, count: u64, payload_len: usize) -> Vec<EventEnvelope> {
    let mut previous = Digest::ZERO;
    (1..=count)
        .map(|sequence| {
            let mut payload = format!("{{\"n\":{sequence},\"pad\":\"").into_bytes();
            payload.resize(payload_len.saturating_sub(2).max(payload.len()), b'x');
            payload.extend_from_slice(b"\"}");
            let event =
                EventEnvelope::seal(stream, sequence, "ConformanceChecked", 1, payload, previous);
            previous = event.hash;
            event
        })
        .collect()
}

fn events(events: Vec<EventEnvelope>) -> Commit {
    Commit {
        events,
        ..Commit::default()
    }
}

fn record(key: &str, response_len: usize) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.to_string(),
        request_hash: Digest::of_bytes(key.as_bytes()),
        response: vec![b'r'; response_len],
    }
}

fn create(kind: &str, key: &str, document_len: usize) -> ProjectionChange {
    ProjectionChange::Put {
        projection: Projection {
            kind: kind.to_string(),
            key: key.to_string(),
            version: 1,
            document: vec![b'd'; document_len],
        },
        expected_version: None,
    }
}

#[test]
fn create_tables_is_idempotent_and_refuses_a_foreign_table() {
    run(async {
        let store = fresh_store("tables").await;
        store
            .commit(events(chain("signal:kept", 2, 20)))
            .await
            .unwrap();
        store.create_tables().await.expect("again: nothing to do");
        store.create_tables().await.expect("and again");
        assert_eq!(
            store.read_stream("signal:kept", 1, 10).await.unwrap(),
            chain("signal:kept", 2, 20),
            "existing tables are kept as they are"
        );
        let description = store
            .client()
            .describe_table()
            .table_name(store.tables().events())
            .send()
            .await
            .unwrap()
            .table
            .unwrap();
        let stream = description.stream_specification().unwrap();
        assert!(stream.stream_enabled());
        assert_eq!(
            stream.stream_view_type(),
            Some(&aws_sdk_dynamodb::types::StreamViewType::NewImage)
        );
        assert_eq!(
            description
                .billing_mode_summary()
                .and_then(|summary| summary.billing_mode()),
            Some(&aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        );

        // Someone else's table under the name opx would use.
        let prefix = unique_prefix("foreign");
        let tables = TableNames::for_prefix(&prefix).unwrap();
        store
            .client()
            .create_table()
            .table_name(tables.idempotency())
            .attribute_definitions(
                aws_sdk_dynamodb::types::AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::N)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                aws_sdk_dynamodb::types::KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        let foreign = DynamoStore::new(client(), tables.clone());
        match foreign.create_tables().await {
            Err(StoreError::Invalid(message)) => {
                assert!(message.contains(tables.idempotency()), "{message}");
                assert!(message.contains("id N HASH"), "{message}");
                assert!(message.contains("key S HASH"), "{message}");
            }
            other => panic!("expected Invalid for a foreign table, got {other:?}"),
        }
    });
}

#[test]
fn a_missing_table_is_a_transient_error_that_says_to_run_init() {
    run(async {
        let tables = TableNames::for_prefix(&unique_prefix("missing")).unwrap();
        let store = DynamoStore::new(client(), tables);
        let error = store.stream_head("signal:any").await.unwrap_err();
        assert!(error.is_transient(), "{error:?}");
        assert!(error.to_string().contains("init"), "{error}");
    });
}

#[test]
fn cancellation_reasons_map_to_the_refused_write_by_position() {
    run(async {
        let store = fresh_store("reasons").await;
        let stream = chain("incident:reasons", 2, 20);
        store
            .commit(Commit {
                events: vec![stream[0].clone()],
                idempotency: vec![record("stage/promote/reasons", 10)],
                projections: vec![create("incident", "reasons", 10)],
                ..Commit::default()
            })
            .await
            .unwrap();
        // Everything in the commit is fine except the one write at the end, so the reason
        // that refuses it is the last of many.
        let many_before = |last: Commit| -> Commit {
            let mut commit = Commit {
                events: chain("signal:bystander", 3, 20),
                idempotency: (0..5)
                    .map(|index| record(&format!("bystander/{index}"), 4))
                    .collect(),
                projections: (0..5)
                    .map(|index| create("evidence", &format!("e-{index}"), 4))
                    .collect(),
                ..Commit::default()
            };
            commit.events.extend(last.events);
            commit.idempotency.extend(last.idempotency);
            commit.projections.extend(last.projections);
            commit
        };

        let used_key = store
            .commit(many_before(Commit {
                idempotency: vec![record("stage/promote/reasons", 99)],
                ..Commit::default()
            }))
            .await;
        match used_key {
            Err(StoreError::Conflict(Conflict::IdempotencyKeyUsed { existing })) => {
                assert_eq!(
                    existing,
                    record("stage/promote/reasons", 10),
                    "the stored record"
                );
            }
            other => panic!("expected IdempotencyKeyUsed, got {other:?}"),
        }

        let stale = store
            .commit(many_before(Commit {
                projections: vec![ProjectionChange::Delete {
                    kind: "incident".into(),
                    key: "reasons".into(),
                    expected_version: 4,
                }],
                ..Commit::default()
            }))
            .await;
        match stale {
            Err(StoreError::Conflict(Conflict::ProjectionVersion {
                kind,
                key,
                expected,
                actual,
            })) => {
                assert_eq!((kind.as_str(), key.as_str()), ("incident", "reasons"));
                assert_eq!((expected, actual), (Some(4), Some(1)));
            }
            other => panic!("expected ProjectionVersion, got {other:?}"),
        }

        let forged = EventEnvelope::seal(
            "incident:reasons",
            2,
            "Forged",
            1,
            b"{}".to_vec(),
            Digest::of_bytes(b"another head"),
        );
        let moved = store.commit(many_before(events(vec![forged]))).await;
        assert!(
            matches!(
                moved,
                Err(StoreError::Conflict(Conflict::StreamMoved { ref stream_id, sequence: 2 }))
                    if stream_id == "incident:reasons"
            ),
            "{moved:?}"
        );

        // Work for an event that is not stored is refused by its condition check.
        let unstored = chain("signal:unstored", 1, 20).remove(0);
        let refused = store
            .commit(Commit {
                work_added: vec![WorkItem {
                    stage: Stage::Detect,
                    input: unstored.pointer(),
                }],
                ..Commit::default()
            })
            .await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{refused:?}"
        );

        // Nothing of the refused commits was written.
        assert_eq!(store.stream_head("signal:bystander").await.unwrap(), None);
        assert_eq!(store.idempotency("bystander/0").await.unwrap(), None);
        assert_eq!(store.projection("evidence", "e-0").await.unwrap(), None);
        assert!(store.pending_work(None, 10).await.unwrap().items.is_empty());
        assert_eq!(
            store.read_stream("incident:reasons", 1, 10).await.unwrap(),
            vec![stream[0].clone()]
        );
    });
}

#[test]
fn items_over_400_kb_and_transactions_over_4_mb_are_refused_before_sending() {
    run(async {
        let store = fresh_store("limits").await;
        let big = store
            .commit(Commit {
                idempotency: vec![record("api/big", ITEM_LEN_MAX)],
                ..Commit::default()
            })
            .await;
        match big {
            Err(StoreError::Invalid(message)) => {
                assert!(
                    message.contains("idempotency record \"api/big\""),
                    "{message}"
                );
                assert!(message.contains("400 KB"), "{message}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        let long_type = EventEnvelope::seal(
            "signal:long-type",
            1,
            "T".repeat(200 * 1024),
            1,
            vec![b'1'; PAYLOAD_LEN_MAX],
            Digest::ZERO,
        );
        let refused = store.commit(events(vec![long_type])).await;
        assert!(
            matches!(&refused, Err(StoreError::Invalid(message)) if message.contains("event signal:long-type#1")),
            "{refused:?}"
        );
        let heavy = Commit {
            projections: (0..17)
                .map(|index| create("incident", &format!("heavy-{index:02}"), PROJECTION_LEN_MAX))
                .collect(),
            ..Commit::default()
        };
        let refused = store.commit(heavy).await;
        assert!(
            matches!(&refused, Err(StoreError::Invalid(message)) if message.contains("4 MB")),
            "{refused:?}"
        );
        assert_eq!(store.idempotency("api/big").await.unwrap(), None);
        assert_eq!(store.stream_head("signal:long-type").await.unwrap(), None);
        assert_eq!(
            store.projection("incident", "heavy-00").await.unwrap(),
            None
        );
    });
}

#[test]
fn reads_follow_dynamodb_pages_past_one_megabyte() {
    run(async {
        let store = fresh_store("pages").await;
        // Six events and six projections of ~250 KB: 1.5 MB each, more than one DynamoDB
        // page (1 MB), fewer than one opx page.
        let stream = chain("incident:heavy", 6, 250 * 1024);
        for pair in stream.chunks(2) {
            store.commit(events(pair.to_vec())).await.unwrap();
        }
        let read = store.read_stream("incident:heavy", 1, 100).await.unwrap();
        assert_eq!(read.len(), 6, "one read returns every event");
        assert_eq!(read, stream);
        assert!(verify_stream("incident:heavy", &read).is_ok());
        for index in 0..6 {
            store
                .commit(Commit {
                    projections: vec![create("heavy", &format!("h-{index}"), 250 * 1024)],
                    ..Commit::default()
                })
                .await
                .unwrap();
        }
        let page = store.list_projections("heavy", None, 100).await.unwrap();
        assert_eq!(page.items.len(), 6, "one page returns every projection");
        assert_eq!(page.next, None, "and says it is the last");
        let first = store.list_projections("heavy", None, 4).await.unwrap();
        assert_eq!(first.items.len(), 4);
        let rest = store
            .list_projections("heavy", first.next.as_deref(), 4)
            .await
            .unwrap();
        assert_eq!(rest.items.len(), 2);
        assert_eq!(rest.next, None, "exactly the rest, no empty page after it");
    });
}

#[test]
fn events_are_stored_with_binary_payloads_that_a_stream_image_reader_can_check() {
    run(async {
        let store = fresh_store("items").await;
        let stream = chain("signal:image", 2, 40);
        store.commit(events(stream.clone())).await.unwrap();
        let output = store
            .client()
            .get_item()
            .table_name(store.tables().events())
            .key(
                "stream_id",
                aws_sdk_dynamodb::types::AttributeValue::S("signal:image".into()),
            )
            .key(
                "sequence",
                aws_sdk_dynamodb::types::AttributeValue::N("2".into()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        let item = output.item.expect("the event item");
        assert!(matches!(
            item.get("payload"),
            Some(aws_sdk_dynamodb::types::AttributeValue::B(_))
        ));
        assert_eq!(event_from_item(item).unwrap(), stream[1]);
    });
}

#[test]
fn pending_work_records_when_it_was_first_added() {
    run(async {
        let store = fresh_store("work").await;
        let signal = chain("signal:aged", 1, 20).remove(0);
        let item = WorkItem {
            stage: Stage::Detect,
            input: signal.pointer(),
        };
        store
            .commit(Commit {
                events: vec![signal],
                work_added: vec![item.clone()],
                ..Commit::default()
            })
            .await
            .unwrap();
        let first = store.pending_work_added(None, 10).await.unwrap().items;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].item, item);
        assert!(first[0].added_at_ms > 1_600_000_000_000, "{first:?}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store
            .commit(Commit {
                work_added: vec![item.clone()],
                ..Commit::default()
            })
            .await
            .unwrap();
        let again = store.pending_work_added(None, 10).await.unwrap().items;
        assert_eq!(again, first, "adding it again keeps the first time");
    });
}

#[test]
#[allow(clippy::disallowed_methods)]
fn connect_uses_the_standard_aws_configuration() {
    run(async {
        // scripts/with-moto points AWS_ENDPOINT_URL at moto too.
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "AWS_ENDPOINT_URL is not set: run through scripts/with-moto"
        );
        let store = DynamoStore::connect(&unique_prefix("connect"))
            .await
            .unwrap();
        store.create_tables().await.unwrap();
        store
            .commit(events(chain("signal:connected", 1, 20)))
            .await
            .unwrap();
        assert!(store
            .stream_head("signal:connected")
            .await
            .unwrap()
            .is_some());
        assert!(matches!(
            DynamoStore::connect("no/slashes").await,
            Err(StoreError::Invalid(_))
        ));
    });
}
