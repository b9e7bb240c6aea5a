//! The `opx` command's contract, tested through the built binary: exit codes, `--json`
//! shapes, stderr reject lines, and that every way of delivering the same alarms ends in
//! the same incidents.

// Test helpers outside `#[test]` functions: panicking is how they fail, and the files they
// write are the command's inputs.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SAMPLE: &str = include_str!("../demo/sample.ndjson");

fn opx_command(store: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_opx"));
    command.env_remove("OPX_STORE").env_remove("OPX_LOG");
    command
        .arg("--store")
        .arg(format!("sqlite:{}", store.display()));
    command
}

fn opx(store: &Path, args: &[&str]) -> Output {
    opx_command(store).args(args).output().expect("opx runs")
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

/// The incidents as `(id, severity, state, evidence_count)`, sorted.
/// Each incident as (id, severity, state, evidence count, recovery count).
fn incidents(store: &Path) -> Vec<(String, String, String, u64, u64)> {
    let output = opx(store, &["incidents", "--json"]);
    assert_eq!(code(&output), 0, "incidents: {}", stderr(&output));
    let rows: Vec<Value> = serde_json::from_str(&stdout(&output)).expect("a JSON array");
    let mut out: Vec<_> = rows
        .iter()
        .map(|row| {
            (
                row["id"].as_str().unwrap().to_owned(),
                row["severity"].as_str().unwrap().to_owned(),
                row["state"].as_str().unwrap().to_owned(),
                row["evidence_count"].as_u64().unwrap(),
                row["recovery_count"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn sample_lines() -> Vec<&'static str> {
    SAMPLE
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect()
}

fn assert_replay_verifies(store: &Path) {
    let output = opx(store, &["replay", "verify", "--json"]);
    assert_eq!(
        code(&output),
        0,
        "replay verify: {}{}",
        stdout(&output),
        stderr(&output)
    );
}

#[test]
fn demo_exits_zero_and_reports_two_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_opx"))
        .args(["demo", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}{}", stdout(&output), stderr(&output));
    let summary: Value = serde_json::from_str(stdout(&output).trim()).expect("one JSON object");
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["incident_count"], 2);
    assert_eq!(summary["incidents"].as_array().unwrap().len(), 2);
    assert_eq!(summary["flapping_promoted"], false);
    assert_eq!(summary["replay_ok"], true);
    // Nothing is left behind in the working directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn demo_keep_leaves_a_store_that_the_other_commands_read() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept.db");
    let output = Command::new(env!("CARGO_BIN_EXE_opx"))
        .args(["demo", "--keep"])
        .arg(&kept)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}{}", stdout(&output), stderr(&output));
    let rows = incidents(&kept);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|row| row.2 == "ACKNOWLEDGED"));
    // A kept store is never overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_opx"))
        .args(["demo", "--keep"])
        .arg(&kept)
        .output()
        .unwrap();
    assert_eq!(code(&again), 2);
}

#[test]
fn ingest_of_the_sample_gives_two_incidents_and_names_the_reject() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("opx.db");
    let input = write(dir.path(), "sample.ndjson", SAMPLE);
    let output = opx(&store, &["--json", "ingest", input.to_str().unwrap()]);
    assert_eq!(
        code(&output),
        1,
        "one payload is malformed: {}",
        stderr(&output)
    );
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    for (key, expected) in [
        ("accepted", 9),
        ("duplicates", 1),
        ("conflicts", 0),
        ("rejected", 1),
        ("detections", 7),
        ("incidents_created", 2),
    ] {
        assert_eq!(summary[key], expected, "{key} in {summary}");
    }
    assert!(summary.get("incidents_updated").is_some());
    let reject_line = format!("rejected {}:6: detail.state.timestamp: ", input.display());
    assert!(
        stderr(&output).contains(&reject_line),
        "stderr: {}",
        stderr(&output)
    );
    let rows = incidents(&store);
    assert_eq!(rows.len(), 2);
    let severities: Vec<&str> = rows.iter().map(|row| row.1.as_str()).collect();
    assert!(
        severities.contains(&"SEV1") && severities.contains(&"SEV2"),
        "{rows:?}"
    );
    assert_replay_verifies(&store);

    // `incidents --json` has the documented fields, and the filters work.
    let listed: Vec<Value> =
        serde_json::from_str(&stdout(&opx(&store, &["incidents", "--json"]))).unwrap();
    for field in [
        "id",
        "environment",
        "service",
        "severity",
        "state",
        "version",
        "opened_at",
        "evidence_count",
    ] {
        assert!(listed[0].get(field).is_some(), "missing {field}");
    }
    let payments: Vec<Value> = serde_json::from_str(&stdout(&opx(
        &store,
        &["incidents", "--service", "payments", "--json"],
    )))
    .unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["environment"], "prod");
    let acknowledged: Vec<Value> = serde_json::from_str(&stdout(&opx(
        &store,
        &["incidents", "--state", "ACKNOWLEDGED", "--json"],
    )))
    .unwrap();
    assert!(acknowledged.is_empty());
}

#[test]
fn every_way_of_delivering_the_sample_ends_in_the_same_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let lines = sample_lines();
    let reference_store = dir.path().join("reference.db");
    let input = write(dir.path(), "sample.ndjson", SAMPLE);
    opx(&reference_store, &["ingest", input.to_str().unwrap()]);
    let reference = incidents(&reference_store);
    assert_eq!(reference.len(), 2);

    // Duplicates: every payload twice, and the whole file again.
    let doubled: String = lines
        .iter()
        .flat_map(|line| [*line, *line])
        .map(|line| format!("{line}\n"))
        .collect();
    // Reordered: reversed, and rotated.
    let reversed: String = lines.iter().rev().map(|line| format!("{line}\n")).collect();
    let rotated: String = lines
        .iter()
        .cycle()
        .skip(4)
        .take(lines.len())
        .map(|line| format!("{line}\n"))
        .collect();
    // Malformed payloads mixed in.
    let mixed: String = lines
        .iter()
        .enumerate()
        .flat_map(|(i, line)| {
            let junk = match i % 3 {
                0 => "{\"truncated\": ",
                1 => "not json at all",
                _ => "{\"version\":\"4\",\"alerts\":[]}",
            };
            [junk.to_owned(), (*line).to_owned()]
        })
        .map(|line| format!("{line}\n"))
        .collect();
    // A JSON array of all payloads.
    let array = format!("[\n{}\n]\n", lines.join(",\n"));
    for (name, text, second_pass) in [
        ("doubled.ndjson", doubled.as_str(), true),
        ("reversed.ndjson", reversed.as_str(), false),
        ("rotated.ndjson", rotated.as_str(), false),
        ("mixed.ndjson", mixed.as_str(), false),
        ("array.json", array.as_str(), false),
    ] {
        let store = dir.path().join(format!("{name}.db"));
        let path = write(dir.path(), name, text);
        let output = opx(&store, &["ingest", path.to_str().unwrap()]);
        assert!(
            matches!(code(&output), 0 | 1),
            "{name}: {}",
            stderr(&output)
        );
        if second_pass {
            opx(&store, &["ingest", path.to_str().unwrap()]);
        }
        assert_eq!(incidents(&store), reference, "{name}");
        assert_replay_verifies(&store);
    }

    // One payload per invocation, through stdin.
    let store = dir.path().join("one-by-one.db");
    for line in &lines {
        let mut child = opx_command(&store)
            .args(["ingest", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        assert!(matches!(child.wait().unwrap().code(), Some(0 | 1)));
    }
    assert_eq!(incidents(&store), reference, "one payload per invocation");
    assert_replay_verifies(&store);
}

#[test]
fn a_malformed_payload_exits_one_and_the_valid_ones_are_still_processed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("opx.db");
    let lines = sample_lines();
    let text = format!(
        "{}\n{{\"opx_signal_version\":1,\"alarm\":\"x\"\n{}\n",
        lines[0], lines[1]
    );
    let input = write(dir.path(), "bad.ndjson", &text);
    let output = opx(&store, &["--json", "ingest", input.to_str().unwrap()]);
    assert_eq!(code(&output), 1);
    let err = stderr(&output);
    assert!(
        err.contains(&format!("rejected {}:2: $: ", input.display())),
        "stderr: {err}"
    );
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(
        (summary["accepted"].as_u64(), summary["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(summary["incidents_created"], 1);
}

#[test]
fn transitions_guard_the_lifecycle_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("opx.db");
    let input = write(dir.path(), "sample.ndjson", SAMPLE);
    opx(&store, &["ingest", input.to_str().unwrap()]);
    let id = incidents(&store)[0].0.clone();
    let prefix = &id[..10];

    let first = opx(
        &store,
        &[
            "transition",
            prefix,
            "--to",
            "acknowledged",
            "--reason",
            "on it",
            "--as",
            "alice",
        ],
    );
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert!(
        stderr(&first).contains("current lifecycle version 1"),
        "{}",
        stderr(&first)
    );

    let stale = opx(
        &store,
        &[
            "transition",
            &id,
            "--to",
            "mitigating",
            "--reason",
            "x",
            "--expected-version",
            "1",
        ],
    );
    assert_eq!(code(&stale), 1);
    assert!(stderr(&stale).contains("conflict"), "{}", stderr(&stale));

    let fresh = opx(
        &store,
        &[
            "--json",
            "transition",
            &id,
            "--to",
            "MITIGATING",
            "--reason",
            "rolling back",
            "--expected-version",
            "2",
        ],
    );
    assert_eq!(code(&fresh), 0, "{}", stderr(&fresh));
    let row: Value = serde_json::from_str(stdout(&fresh).trim()).unwrap();
    assert_eq!(
        (row["state"].as_str(), row["version"].as_u64()),
        (Some("MITIGATING"), Some(3))
    );

    let not_allowed = opx(
        &store,
        &["transition", &id, "--to", "open", "--reason", "x"],
    );
    assert_eq!(code(&not_allowed), 1);

    assert_eq!(code(&opx(&store, &["note", &id, "rolled back 1.42"])), 0);
    assert_eq!(code(&opx(&store, &["assign", &id, "bob"])), 0);
    assert_eq!(
        code(&opx(
            &store,
            &["severity", &id, "sev1", "--reason", "checkout down"]
        )),
        0
    );

    let show = opx(&store, &["show", prefix, "--json"]);
    assert_eq!(code(&show), 0, "{}", stderr(&show));
    let view: Value = serde_json::from_str(stdout(&show).trim()).unwrap();
    let types: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for wanted in [
        "IncidentOpened",
        "IncidentTransitioned",
        "NoteAdded",
        "AssigneeChanged",
        "SeverityChanged",
    ] {
        assert!(types.contains(&wanted), "{wanted} in {types:?}");
    }
    assert!(!view["decisions"].as_array().unwrap().is_empty());
    assert_eq!(view["decisions"][0]["decision"]["outcome"], "PROMOTE");
    assert!(
        view["decisions"][0]["assessment"]["assessment"]["score_bps"]
            .as_u64()
            .is_some()
    );
    assert_eq!(view["summary"]["severity"], "SEV1");
    assert_replay_verifies(&store);
}

#[test]
fn usage_errors_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("opx.db");
    assert_eq!(code(&opx(&store, &["no-such-command"])), 2);
    assert_eq!(code(&opx(&store, &["incidents", "--state", "sleeping"])), 2);
    assert_eq!(code(&opx(&store, &["show", "abc"])), 2);
    let dynamo = Command::new(env!("CARGO_BIN_EXE_opx"))
        .args(["--store", "dynamodb:no/slashes", "incidents"])
        .output()
        .unwrap();
    assert_eq!(code(&dynamo), 2);
    assert!(
        stderr(&dynamo).contains("a-z, A-Z, 0-9"),
        "{}",
        stderr(&dynamo)
    );
    let unknown = Command::new(env!("CARGO_BIN_EXE_opx"))
        .args(["--store", "postgres:x", "incidents"])
        .output()
        .unwrap();
    assert_eq!(code(&unknown), 2);
}

#[test]
fn the_store_can_be_named_by_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("from-env.db");
    let input = write(dir.path(), "sample.ndjson", SAMPLE);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_opx"))
            .env("OPX_STORE", format!("sqlite:{}", store.display()))
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(code(&run(&["init"])), 0);
    assert_eq!(code(&run(&["init"])), 0, "init is idempotent");
    run(&["ingest", input.to_str().unwrap()]);
    assert!(store.exists());
    assert!(
        !dir.path().join("opx.db").exists(),
        "the default store was not used"
    );
    assert_eq!(incidents(&store).len(), 2);
}

/// A storm per service: `services` services × 3 distinct native alarms, one window each.
fn generated_storm(services: usize) -> String {
    let mut out = String::new();
    for service in 0..services {
        for alarm in 0..3 {
            let minute = (service * 7) % 50;
            out.push_str(&format!(
                "{{\"opx_signal_version\":1,\"alarm\":\"synthetic:svc{service}-a{alarm}\",\"state\":\"ALARM\",\
                 \"time\":\"2026-11-24T04:{minute:02}:{:02}.000Z\",\"environment\":\"prod\",\"service\":\"svc{service}\",\
                 \"severity\":\"SEV2\"}}\n",
                10 + alarm * 5
            ));
        }
    }
    out
}

// Killing `opx ingest` and `opx resume` fifty times: tests/kill.rs.

#[test]
fn concurrent_ingests_of_the_same_input_give_the_same_incidents_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "storm.ndjson", &generated_storm(30));
    let reference_store = dir.path().join("reference.db");
    opx(&reference_store, &["ingest", input.to_str().unwrap()]);
    let reference = incidents(&reference_store);

    let store = dir.path().join("shared.db");
    assert_eq!(code(&opx(&store, &["init"])), 0);
    let children: Vec<_> = (0..3)
        .map(|_| {
            opx_command(&store)
                .args(["ingest", input.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert_eq!(code(&output), 0, "{}", stderr(&output));
    }
    assert_eq!(incidents(&store), reference);
    assert_replay_verifies(&store);
}

#[test]
fn what_if_exits_by_whether_the_incidents_would_differ() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("opx.db");
    let input = write(dir.path(), "sample.ndjson", SAMPLE);
    opx(&store, &["ingest", input.to_str().unwrap()]);
    let before = std::fs::read(&store).unwrap();

    // The shipped rules are what the store recorded: nothing would change.
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let same = opx(
        &store,
        &["replay", "what-if", "--rules", rules.to_str().unwrap()],
    );
    assert_eq!(code(&same), 0, "{}{}", stdout(&same), stderr(&same));

    // Without the CloudWatch rules, the orders storm is no longer an incident.
    let proposed = dir.path().join("proposed");
    std::fs::create_dir(&proposed).unwrap();
    for entry in std::fs::read_dir(&rules).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if path.extension().is_some_and(|ext| ext == "yaml") && name != "cloudwatch.yaml" {
            std::fs::copy(&path, proposed.join(name)).unwrap();
        }
    }
    let changed = opx(
        &store,
        &[
            "--json",
            "replay",
            "what-if",
            "--rules",
            proposed.to_str().unwrap(),
        ],
    );
    assert_eq!(
        code(&changed),
        1,
        "{}{}",
        stdout(&changed),
        stderr(&changed)
    );
    let report: Value = serde_json::from_str(&stdout(&changed)).unwrap();
    assert!(report.to_string().contains("no_longer_created"), "{report}");

    let bad = opx(&store, &["replay", "what-if", "--since", "yesterday"]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert_eq!(
        std::fs::read(&store).unwrap(),
        before,
        "what-if never writes the store"
    );
}

fn stored_rejects(store: &Path) -> Vec<opx_app::ports::RejectRecord> {
    use opx_app::ports::StoreRead;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store =
            opx_store_sqlite::SqliteStore::open(store, opx_store_sqlite::SqliteOptions::default())
                .unwrap();
        store.list_rejects(None, 100).await.unwrap().items
    })
}

#[test]
fn the_first_bad_item_of_a_payload_is_item_one_not_the_whole_payload() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("opx.db");
    let alert = |name: Option<&str>, fingerprint: &str| {
        let mut labels =
            serde_json::json!({"service": "payments", "severity": "critical", "env": "prod"});
        if let Some(name) = name {
            labels["alertname"] = name.into();
        }
        serde_json::json!({
            "status": "firing",
            "labels": labels,
            "annotations": {"summary": "payments 5xx ratio 9.1% over 5m"},
            "startsAt": "2026-11-24T03:02:05.118Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint,
        })
    };
    let webhook = serde_json::json!({
        "version": "4",
        "status": "firing",
        "receiver": "opx",
        "alerts": [alert(None, "8c41d07e2a9b3f65"), alert(Some("PaymentsHighErrorRate"), "1e7b94c0d25a6f38")],
    });
    let line = webhook.to_string();
    let input = write(dir.path(), "webhook.ndjson", &format!("{line}\n"));
    let output = opx(&store, &["--json", "ingest", input.to_str().unwrap()]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(
        (summary["accepted"].as_u64(), summary["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        stderr(&output).contains(&format!("rejected {}:1: alerts[0]", input.display())),
        "{}",
        stderr(&output)
    );
    // The reject is the first item's, not the whole payload's (index 0).
    let rejects = stored_rejects(&store);
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0].id, opx_app::ports::reject_id(line.as_bytes(), 1));
    assert_ne!(rejects[0].id, opx_app::ports::reject_id(line.as_bytes(), 0));
    assert!(
        rejects[0].field.starts_with("alerts[0]"),
        "{:?}",
        rejects[0]
    );
}
