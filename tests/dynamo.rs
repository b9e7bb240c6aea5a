//! DynamoDB on moto for the scenario tests: a client from `OPX_DYNAMODB_ENDPOINT` (set by
//! `scripts/with-moto`), fresh tables per test, and the incidents a store holds.

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use opx_app::pipeline::PROJECTION_INCIDENT;
use opx_app::ports::StoreRead;
use opx_domain::incident::Incident;
use opx_store_dynamodb::{retry_config, DynamoStore, TableNames};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A client for moto; fails, never skips, without `OPX_DYNAMODB_ENDPOINT`.
#[allow(clippy::disallowed_methods)]
pub fn client() -> aws_sdk_dynamodb::Client {
    let endpoint = match std::env::var("OPX_DYNAMODB_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!(
            "OPX_DYNAMODB_ENDPOINT is not set: run these tests through scripts/with-moto, \
             which starts moto on loopback: `scripts/with-moto cargo test -p opx-tests`"
        ),
    };
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "opx-tests"))
        .retry_config(retry_config())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A store on fresh tables (a unique prefix).
pub async fn fresh_dynamo(name: &str) -> DynamoStore {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = format!(
        "rel-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let store = DynamoStore::new(client(), TableNames::for_prefix(&prefix).expect("prefix"));
    store.create_tables().await.expect("tables");
    store
}

/// Another handle on the same tables, with its own client, as another Lambda instance has.
pub fn another_handle(store: &DynamoStore) -> DynamoStore {
    DynamoStore::new(client(), store.tables().clone())
}

/// The incidents in the store, keyed by id.
pub async fn dynamo_incidents(store: &DynamoStore) -> BTreeMap<String, Incident> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_projections(PROJECTION_INCIDENT, cursor.as_deref(), 100)
            .await
            .expect("list");
        for projection in page.items {
            out.insert(
                projection.key,
                serde_json::from_slice(&projection.document).expect("incident"),
            );
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}
