//! `opx --store dynamodb:PREFIX` against a DynamoDB protocol server (moto): `init` creates
//! the tables (twice is fine), and the sample ends in the same incidents — the same ids,
//! the same event hashes — as on SQLite, and replays clean.
//!
//! Run through `scripts/with-moto cargo test -p opx-cli --test dynamodb`; the test reads
//! the server's URL from `OPX_DYNAMODB_ENDPOINT` and fails (never skips) without it.

// Test helpers outside `#[test]` functions: panicking is how they fail, and reading the
// environment is how they find the server.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const SAMPLE: &str = include_str!("../demo/sample.ndjson");

fn endpoint() -> String {
    match std::env::var("OPX_DYNAMODB_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => panic!(
            "OPX_DYNAMODB_ENDPOINT is not set: this test needs a DynamoDB protocol server. Run \
             it through scripts/with-moto, which starts moto on a free loopback port and sets \
             it: `scripts/with-moto cargo test -p opx-cli --test dynamodb`"
        ),
    }
}

/// `opx --store STORE ARGS...`, with the AWS environment pointing at the test server only.
fn opx(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opx"))
        .env_remove("OPX_STORE")
        .env_remove("OPX_LOG")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("opx runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

fn json(output: &Output, doing: &str) -> Value {
    serde_json::from_str(stdout(output).trim())
        .unwrap_or_else(|error| panic!("{doing}: not JSON ({error}): {}", stdout(output)))
}

/// A table prefix no earlier run against the same server used.
fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("cli-{}-{nanos}", std::process::id())
}

/// Ingests the sample, then returns the ingest summary, the incident ids and each
/// incident's `show --json` (timeline hashes included), in id order.
fn ingest_sample(store: &str, input: &Path) -> (Value, Vec<String>, Vec<Value>) {
    let ingest = opx(store, &["--json", "ingest", input.to_str().unwrap()]);
    assert_eq!(
        code(&ingest),
        1,
        "{store}: the sample holds one malformed payload: {}",
        stderr(&ingest)
    );
    let summary = json(&ingest, "ingest");
    let listed = opx(store, &["incidents", "--json"]);
    assert_eq!(code(&listed), 0, "{store} incidents: {}", stderr(&listed));
    let mut ids: Vec<String> = json(&listed, "incidents")
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let shown = ids
        .iter()
        .map(|id| {
            let output = opx(store, &["show", id, "--json"]);
            assert_eq!(code(&output), 0, "{store} show {id}: {}", stderr(&output));
            json(&output, "show")
        })
        .collect();
    (summary, ids, shown)
}

#[test]
fn the_sample_on_dynamodb_equals_the_sample_on_sqlite() {
    let directory = tempfile::tempdir().unwrap();
    let input = directory.path().join("sample.ndjson");
    std::fs::write(&input, SAMPLE).unwrap();
    let dynamo = format!("dynamodb:{}", unique_prefix());

    for round in ["first", "second"] {
        let init = opx(&dynamo, &["--json", "init"]);
        assert_eq!(code(&init), 0, "{round} init: {}", stderr(&init));
        assert_eq!(json(&init, "init")["initialized"], true);
    }
    let (dynamo_summary, dynamo_ids, dynamo_shown) = ingest_sample(&dynamo, &input);

    let sqlite = format!("sqlite:{}", directory.path().join("opx.db").display());
    let (sqlite_summary, sqlite_ids, sqlite_shown) = ingest_sample(&sqlite, &input);

    assert_eq!(sqlite_ids.len(), 2, "the sample makes two incidents");
    assert_eq!(dynamo_ids, sqlite_ids, "the same incident ids");
    assert_eq!(dynamo_summary, sqlite_summary, "the same ingest summary");
    assert_eq!(
        dynamo_shown, sqlite_shown,
        "the same incidents, timelines and event hashes"
    );

    let verify = opx(&dynamo, &["replay", "verify", "--json"]);
    assert_eq!(
        code(&verify),
        0,
        "replay verify on DynamoDB: {}{}",
        stdout(&verify),
        stderr(&verify)
    );
    assert_eq!(json(&verify, "replay verify")["ok"], true);

    // Ingesting the same file again changes nothing: every payload is a duplicate.
    let again = opx(&dynamo, &["--json", "ingest", input.to_str().unwrap()]);
    assert_eq!(code(&again), 1, "{}", stderr(&again));
    let again = json(&again, "second ingest");
    assert_eq!(again["accepted"], 0, "{again}");
    assert_eq!(again["incidents_created"], 0, "{again}");
    let (_, ids_after, shown_after) = ingest_sample(&dynamo, &input);
    assert_eq!(ids_after, dynamo_ids);
    assert_eq!(shown_after, dynamo_shown);
}

#[test]
fn a_bad_prefix_is_a_usage_error_and_missing_tables_say_to_run_init() {
    let bad = opx("dynamodb:no/slashes", &["incidents"]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(stderr(&bad).contains("a-z, A-Z, 0-9"), "{}", stderr(&bad));

    let missing = opx(&format!("dynamodb:{}", unique_prefix()), &["incidents"]);
    assert_eq!(code(&missing), 1, "{}", stderr(&missing));
    assert!(stderr(&missing).contains("init"), "{}", stderr(&missing));
}

/// A bus whose every `opx` event lands in a fresh SQS queue, on moto; returns the bus name,
/// the queue URL and the SQS client.
async fn bus_with_queue() -> (String, String, aws_sdk_sqs::Client) {
    use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
    let credentials = Credentials::new("test", "test", None, None, "opx-cli-tests");
    let events = aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials.clone())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .endpoint_url(endpoint())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .build(),
    );
    let bus = format!("{}-bus", unique_prefix());
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{}-q", unique_prefix()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn_attribute = aws_sdk_sqs::types::QueueAttributeName::QueueArn;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(arn_attribute.clone())
        .send()
        .await
        .unwrap();
    let queue_arn = attributes.attributes.unwrap()[&arn_attribute].clone();
    events
        .put_rule()
        .name("all-opx")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":["opx"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("all-opx")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    (bus, queue_url, sqs)
}

#[test]
fn with_a_bus_named_every_commit_is_announced_by_pointer() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (bus, queue_url, sqs) = runtime.block_on(bus_with_queue());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sample.ndjson");
    std::fs::write(&input, SAMPLE).unwrap();
    let store = format!("dynamodb:{}", unique_prefix());
    assert_eq!(code(&opx(&store, &["init"])), 0);
    let ingest = opx(&store, &["--bus", &bus, "ingest", input.to_str().unwrap()]);
    assert_eq!(
        code(&ingest),
        1,
        "one malformed payload: {}",
        stderr(&ingest)
    );
    let verify = json(&opx(&store, &["--json", "replay", "verify"]), "verify");
    let events_stored = verify["report"]["events"].as_u64().unwrap();

    let announced: Vec<Value> = runtime.block_on(async {
        let mut bodies = Vec::new();
        let mut empty = 0;
        while empty < 3 {
            let received = sqs
                .receive_message()
                .queue_url(&queue_url)
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
                    .queue_url(&queue_url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        bodies
    });
    assert_eq!(
        announced.len() as u64,
        events_stored,
        "one announcement per event"
    );
    for body in &announced {
        let detail = &body["detail"];
        assert_eq!(body["source"], "opx");
        assert_eq!(body["detail-type"], detail["event_type"]);
        assert!(detail["stream_id"].is_string() && detail["sequence"].is_u64());
        assert_eq!(detail["hash"].as_str().map(str::len), Some(64), "{detail}");
        assert!(
            detail.get("payload").is_none(),
            "never the decision data: {detail}"
        );
    }
}
