//! The golden store: a SQLite file written by an earlier version of opx from a fixed
//! scenario, checked in under `tests/golden/`. Every later version must open it (its
//! migrations accept the file), verify it without a single divergence, and read back the
//! very incidents it recorded (ids, states, versions, evidence counts, the hash of each
//! incident stream's head), as `tests/golden/expected.json` lists them.
//!
//! Regenerating the file is deliberate, never a side effect of a test run: see
//! `tests/golden/README.md`.

// Reading and writing the fixture files is the point here; the lint guards the domain.
#![allow(clippy::disallowed_methods)]

use opx_app::pipeline::{Pipeline, PipelineConfig, PROJECTION_INCIDENT};
use opx_app::ports::{NoPublisher, RejectRecord, Store, StoreRead, REJECT_EXCERPT_LEN_MAX};
use opx_app::replay::{verify, verify_slice, VerifyOptions};
use opx_domain::hash::{Digest, FieldHasher};
use opx_domain::incident::{
    CloseAs, Incident, IncidentCommand, IncidentId, IncidentState, Principal,
};
use opx_domain::rules::RuleSet;
use opx_domain::signal::{Severity, Signal};
use opx_domain::source::{parse_payload, SourceConfig};
use opx_domain::time::EpochMs;
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use std::path::{Path, PathBuf};

/// The environment variable that must be `1` for the generator to overwrite the fixture.
const REGENERATE_ENV: &str = "OPX_REGENERATE_GOLDEN";
/// The checked-in store file.
const STORE_FILE: &str = "store.db";
/// The checked-in expectation.
const EXPECTED_FILE: &str = "expected.json";
/// The largest the checked-in store may grow, in bytes.
const STORE_LEN_MAX: u64 = 512 * 1024;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A CloudWatch alarm state change as EventBridge delivers it (the payload bytes).
fn eventbridge_payload(alarm: &str, state: &str, previous: &str, at: &str) -> String {
    format!(
        r#"{{
  "version": "0",
  "id": "5d0e7c1b-3a9f-4f6e-8b2d-{suffix}",
  "detail-type": "CloudWatch Alarm State Change",
  "source": "aws.cloudwatch",
  "account": "123456789012",
  "time": "{at}Z",
  "region": "eu-west-1",
  "resources": ["arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{alarm}"],
  "detail": {{
    "alarmName": "{alarm}",
    "state": {{
      "value": "{state}",
      "reason": "Threshold Crossed: 1 out of the last 1 datapoints [9.0 (24/11/26 03:00:00)] was greater than the threshold (5.0).",
      "timestamp": "{at}.207+0000"
    }},
    "previousState": {{
      "value": "{previous}",
      "reason": "Threshold Crossed: 1 out of the last 1 datapoints [1.0 (24/11/26 02:55:00)] was not greater than the threshold (5.0).",
      "timestamp": "2026-11-23T22:41:09.660+0000"
    }},
    "configuration": {{ "description": "{alarm} above threshold" }}
  }}
}}"#,
        suffix = &format!(
            "{:012x}",
            alarm.len() * 100_000 + at.len() * 100 + state.len()
        )[..12],
    )
}

fn signal(alarm: &str, state: &str, previous: &str, at: &str) -> Signal {
    let payload = eventbridge_payload(alarm, state, previous, at);
    let parsed =
        parse_payload(payload.as_bytes(), &SourceConfig::default()).expect("the payload parses");
    let mut items = parsed.items;
    assert_eq!(items.len(), 1);
    items.remove(0).expect("the signal is valid")
}

fn firing(alarm: &str, at: &str) -> Signal {
    signal(alarm, "ALARM", "OK", at)
}

fn recovered(alarm: &str, at: &str) -> Signal {
    signal(alarm, "OK", "ALARM", at)
}

/// 2026-11-24T05:00:00Z, when people start acting; each act one minute after the last.
const HUMANS_FROM_MS: i64 = 1_795_496_400_000;

fn at_minute(minute: i64) -> EpochMs {
    EpochMs(HUMANS_FROM_MS + minute * 60_000)
}

fn principal(name: &str) -> Principal {
    Principal::local(name).expect("a local principal")
}

/// Writes the scenario into `store`: an orders storm, a checkout storm, a flapping payments
/// alarm (never an incident), a recovery, one rejected payload; then people act: orders is
/// assigned, noted, raised to SEV1 and acknowledged; checkout is walked through to CLOSED;
/// then a late checkout alarm of the same window opens the group's second generation.
async fn write_scenario(store: &SqliteStore) {
    let config = PipelineConfig::with_rule_files(RuleSet::default_rule_files())
        .expect("the default rules load");
    let pipeline = Pipeline::new(store, &NoPublisher, &config);
    let deliver = |signals: Vec<Signal>| {
        let pipeline = &pipeline;
        async move {
            for signal in signals {
                pipeline.ingest(&signal).await.expect("ingest");
                let report = pipeline.drain(u64::MAX).await.expect("drain");
                assert!(report.left_queued.is_empty());
            }
        }
    };
    deliver(vec![
        firing("orders-api-5xx", "2026-11-24T03:00:10"),
        firing("orders-api-latency", "2026-11-24T03:00:40"),
        firing("checkout-api-5xx", "2026-11-24T03:02:00"),
        firing("orders-db-connections", "2026-11-24T03:01:30"),
        firing("checkout-api-latency", "2026-11-24T03:02:20"),
        firing("payments-api-5xx", "2026-11-24T03:10:00"),
        recovered("payments-api-5xx", "2026-11-24T03:11:00"),
        firing("payments-api-5xx", "2026-11-24T03:12:00"),
        recovered("payments-api-5xx", "2026-11-24T03:13:00"),
        firing("payments-api-5xx", "2026-11-24T03:14:00"),
        recovered("orders-api-5xx", "2026-11-24T03:20:41"),
    ])
    .await;

    // One payload that is refused: a state CloudWatch never sends.
    let bad = eventbridge_payload("orders-api-5xx", "BROKEN", "OK", "2026-11-24T03:21:00");
    let parsed = parse_payload(bad.as_bytes(), &SourceConfig::default()).expect("attributable");
    let rejection = parsed
        .items
        .into_iter()
        .next()
        .expect("one item")
        .expect_err("the state is refused");
    store
        .record_reject(RejectRecord {
            id: FieldHasher::new("opx.reject.v1")
                .bytes(bad.as_bytes())
                .u64(0)
                .finish(),
            origin: "golden.ndjson:12".to_owned(),
            field: rejection.field,
            reason: rejection.reason,
            excerpt: bad.chars().take(REJECT_EXCERPT_LEN_MAX / 4).collect(),
        })
        .await
        .expect("the reject is recorded");

    let incidents = incidents(store).await;
    let orders = find(&incidents, "orders", 0);
    let checkout = find(&incidents, "checkout", 0);
    let human = |id: IncidentId, command: IncidentCommand| {
        let pipeline = &pipeline;
        async move {
            pipeline
                .execute_human(&id, &command)
                .await
                .expect("the action is allowed")
        }
    };
    human(
        orders.id,
        IncidentCommand::Assign {
            principal: principal("alice"),
            at: at_minute(0),
            assignee: "bob".to_owned(),
        },
    )
    .await;
    human(
        orders.id,
        IncidentCommand::AddNote {
            principal: principal("bob"),
            at: at_minute(1),
            text: "Rolling back deploy 4121; the db connection pool is exhausted.".to_owned(),
        },
    )
    .await;
    human(
        orders.id,
        IncidentCommand::SetSeverity {
            principal: principal("bob"),
            at: at_minute(2),
            severity: Severity::Sev1,
            reason: "checkout cannot place orders".to_owned(),
        },
    )
    .await;
    human(
        orders.id,
        IncidentCommand::Transition {
            principal: principal("bob"),
            at: at_minute(3),
            to: IncidentState::Acknowledged,
            reason: "on it".to_owned(),
            expected_lifecycle_version: orders.lifecycle_version,
            close_as: None,
            resolution_summary: None,
        },
    )
    .await;
    let steps = [
        (IncidentState::Acknowledged, None, None),
        (IncidentState::Mitigating, None, None),
        (
            IncidentState::Resolved,
            None,
            Some("scaled the queue consumers".to_owned()),
        ),
        (IncidentState::Closed, Some(CloseAs::Resolved), None),
    ];
    let mut version = checkout.lifecycle_version;
    for (minute, (to, close_as, resolution_summary)) in (10..).zip(steps) {
        let after = human(
            checkout.id,
            IncidentCommand::Transition {
                principal: principal("carol"),
                at: at_minute(minute),
                to,
                reason: format!("moving to {}", to.as_str()),
                expected_lifecycle_version: version,
                close_as,
                resolution_summary,
            },
        )
        .await;
        version = after.lifecycle_version;
    }

    // A late alarm of the closed incident's window: the group's second generation.
    deliver(vec![firing("checkout-queue-depth", "2026-11-24T03:04:50")]).await;
}

async fn incidents(store: &SqliteStore) -> Vec<Incident> {
    let config = PipelineConfig::with_rule_files(RuleSet::default_rule_files())
        .expect("the default rules load");
    let pipeline = Pipeline::new(store, &NoPublisher, &config);
    let mut incidents = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_projections(PROJECTION_INCIDENT, cursor.as_deref(), 100)
            .await
            .expect("list incidents");
        for projection in &page.items {
            let id = IncidentId(Digest::from_hex(&projection.key).expect("a digest key"));
            incidents.push(
                pipeline
                    .load_incident(&id)
                    .await
                    .expect("load")
                    .expect("the incident has events"),
            );
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    incidents
        .sort_by(|a, b| (&a.service, a.generation, a.id).cmp(&(&b.service, b.generation, b.id)));
    incidents
}

fn find<'a>(incidents: &'a [Incident], service: &str, generation: u32) -> &'a Incident {
    incidents
        .iter()
        .find(|incident| incident.service == service && incident.generation == generation)
        .unwrap_or_else(|| panic!("an incident of {service}, generation {generation}"))
}

/// A JSON string literal (the values here are identifiers and short texts).
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What the store holds, as the checked-in expectation writes it: stream, event and reject
/// counts, and per incident its identity, state, versions, counts and head hash.
async fn expectation(store: &SqliteStore) -> String {
    let mut streams = 0;
    let mut events = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_streams(cursor.as_deref(), 500)
            .await
            .expect("list streams");
        for stream_id in &page.items {
            streams += 1;
            events += store
                .read_stream(stream_id, 1, 1000)
                .await
                .expect("read")
                .len();
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let rejects = store
        .list_rejects(None, 100)
        .await
        .expect("rejects")
        .items
        .len();
    let mut lines = vec![
        "{".to_owned(),
        format!("  \"streams\": {streams},"),
        format!("  \"events\": {events},"),
        format!("  \"rejects\": {rejects},"),
        "  \"incidents\": [".to_owned(),
    ];
    let incidents = incidents(store).await;
    for (index, incident) in incidents.iter().enumerate() {
        let head = store
            .stream_head(&incident.stream_id())
            .await
            .expect("head")
            .expect("the incident has events");
        let comma = if index + 1 < incidents.len() { "," } else { "" };
        let fields = [
            ("id", json_string(&incident.id.to_string())),
            ("environment", json_string(&incident.environment)),
            ("service", json_string(&incident.service)),
            ("generation", incident.generation.to_string()),
            ("state", json_string(incident.state.as_str())),
            ("lifecycle_version", incident.lifecycle_version.to_string()),
            ("stream_version", head.sequence.to_string()),
            ("severity", json_string(incident.severity.as_str())),
            ("evidence_count", incident.evidence_count.to_string()),
            ("recovery_count", incident.recovery_count.to_string()),
            ("note_count", incident.note_count.to_string()),
            (
                "assignee",
                incident
                    .assignee
                    .as_deref()
                    .map_or("null".to_owned(), json_string),
            ),
            ("head_hash", json_string(&head.hash.to_hex())),
        ];
        lines.push("    {".to_owned());
        for (position, (name, value)) in fields.iter().enumerate() {
            let separator = if position + 1 < fields.len() { "," } else { "" };
            lines.push(format!("      \"{name}\": {value}{separator}"));
        }
        lines.push(format!("    }}{comma}"));
    }
    lines.push("  ]".to_owned());
    lines.push("}".to_owned());
    lines.join("\n") + "\n"
}

#[tokio::test]
async fn the_golden_store_opens_verifies_and_holds_its_incidents() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let copy = dir.path().join(STORE_FILE);
    let source = golden_dir().join(STORE_FILE);
    std::fs::copy(&source, &copy).unwrap_or_else(|error| {
        panic!(
            "{} is missing ({error}); see tests/golden/README.md",
            source.display()
        )
    });
    // The current code opens the old file: its migrations accept it.
    let store = SqliteStore::open(&copy, SqliteOptions::default()).expect("the golden store opens");

    let report = verify(&store, &VerifyOptions::default())
        .await
        .expect("the store is readable");
    let all: Vec<String> = report.divergences.iter().map(ToString::to_string).collect();
    assert!(
        report.ok(),
        "the golden store diverges:\n{}",
        all.join("\n")
    );
    assert!(report.pending.is_empty(), "nothing was left pending");
    assert!(report.decisions_rederived > 20, "{report:?}");

    // In slices as well.
    let mut cursor = None;
    let sliced = loop {
        let (partial, next) = verify_slice(&store, &VerifyOptions::default(), cursor, 3)
            .await
            .expect("readable");
        match next {
            Some(next) => cursor = Some(next),
            None => break partial,
        }
    };
    assert_eq!(sliced, report);

    let expected = std::fs::read_to_string(golden_dir().join(EXPECTED_FILE))
        .expect("tests/golden/expected.json is checked in");
    assert_eq!(
        expectation(&store).await,
        expected,
        "the incidents read back differ from those recorded"
    );

    // The scenario's shape, so a regenerated fixture cannot silently lose a part of it.
    let incidents = incidents(&store).await;
    let shape: Vec<(&str, u32, IncidentState)> = incidents
        .iter()
        .map(|incident| {
            (
                incident.service.as_str(),
                incident.generation,
                incident.state,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("checkout", 0, IncidentState::Closed),
            ("checkout", 1, IncidentState::Open),
            ("orders", 0, IncidentState::Acknowledged),
        ]
    );
    let orders = find(&incidents, "orders", 0);
    assert_eq!(orders.severity, Severity::Sev1);
    assert!(orders.severity_set_by_human);
    assert_eq!(orders.assignee.as_deref(), Some("bob"));
    assert_eq!((orders.note_count, orders.recovery_count), (1, 1));
}

/// Writes `tests/golden/` anew from the current code. Deliberate only: ignored, and it
/// does nothing unless `OPX_REGENERATE_GOLDEN=1`. See `tests/golden/README.md`.
#[tokio::test]
#[ignore = "regenerates the checked-in golden store; see tests/golden/README.md"]
async fn regenerate_golden_store() {
    // `--include-ignored` alone must not overwrite the fixture.
    if std::env::var(REGENERATE_ENV).as_deref() != Ok("1") {
        eprintln!("not regenerating: set {REGENERATE_ENV}=1 to overwrite tests/golden/ (see its README.md)");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(STORE_FILE);
    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("a new store");
    write_scenario(&store).await;
    store.close().expect("checkpointed and closed");
    // Compact it: the checked-in file should be small.
    let connection = rusqlite::Connection::open(&path).expect("opens");
    connection.execute_batch("VACUUM").expect("vacuum");
    connection.close().expect("closes");
    assert!(
        !dir.path().join(format!("{STORE_FILE}-wal")).exists(),
        "the store is one file after a clean close"
    );
    let length = std::fs::metadata(&path).expect("metadata").len();
    assert!(
        length <= STORE_LEN_MAX,
        "the golden store is {length} bytes"
    );
    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("reopens");
    let expected = expectation(&store).await;
    store.close().expect("closes");

    let golden = golden_dir();
    std::fs::create_dir_all(&golden).expect("the golden directory");
    std::fs::copy(&path, golden.join(STORE_FILE)).expect("copy the store");
    std::fs::write(golden.join(EXPECTED_FILE), expected).expect("write the expectation");
}
