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
