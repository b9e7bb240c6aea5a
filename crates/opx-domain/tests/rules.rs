//! Detection rules, silences and `detect`, as given/when/then tables over real-shaped
//! signals and the rule files under `tests/fixtures/rules/` and the repository's `rules/`.

use opx_domain::detection::{detect, DetectionId, DetectionOutcome, NotDetectedReason};
use opx_domain::rules::{RuleError, RuleFile, RuleSet};
use opx_domain::signal::{
    Severity, Signal, SignalId, SignalState, SourceKind, SIGNAL_SCHEMA_VERSION,
};
use opx_domain::time::EpochMs;
use proptest::prelude::*;
use std::collections::BTreeMap;

// ---- Given: rule files.

macro_rules! fixture {
    ($name:literal) => {
        RuleFile {
            path: concat!("tests/fixtures/rules/", $name).to_string(),
            text: include_str!(concat!("fixtures/rules/", $name)).to_string(),
        }
    };
}

const DEFAULT_RULE_FILES: [(&str, &str); 4] = [
    (
        "rules/alertmanager.yaml",
        include_str!("../../../rules/alertmanager.yaml"),
    ),
    (
        "rules/cloudwatch.yaml",
        include_str!("../../../rules/cloudwatch.yaml"),
    ),
    (
        "rules/native.yaml",
        include_str!("../../../rules/native.yaml"),
    ),
    (
        "rules/silences.yaml",
        include_str!("../../../rules/silences.yaml"),
    ),
];

fn default_files() -> Vec<RuleFile> {
    DEFAULT_RULE_FILES
        .iter()
        .map(|(path, text)| RuleFile {
            path: path.to_string(),
            text: text.to_string(),
        })
        .collect()
}

fn load(files: &[RuleFile]) -> RuleSet {
    match RuleSet::from_files(files) {
        Ok(rules) => rules,
        Err(error) => panic!("the rule set should load: {error}"),
    }
}

// ---- Given: real-shaped signals, as the source parsers produce them.

fn time(text: &str) -> EpochMs {
    EpochMs::parse(text).expect("a valid timestamp")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// `orders-api-5xx` in account 123456789012, firing at 03:00:09.512 (+0000, as CloudWatch writes it).
fn cloudwatch(source: SourceKind) -> Signal {
    let alarm = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-api-5xx".to_string();
    let event_time = time("2026-11-24T03:00:09.512+0000");
    Signal {
        schema_version: SIGNAL_SCHEMA_VERSION,
        id: SignalId::derive(&alarm, SignalState::Alarm, event_time),
        alarm,
        alarm_name: "orders-api-5xx".to_string(),
        state: SignalState::Alarm,
        event_time,
        environment: "123456789012".to_string(),
        service: "orders".to_string(),
        severity: Severity::Sev2,
        source,
        summary: "Threshold Crossed: 1 out of the last 1 datapoints [12.0 (24/11/26 02:59:00)] \
                  was greater than the threshold (5.0) (minimum 1 datapoint for OK -> ALARM \
                  transition)."
            .to_string(),
        labels: labels(&[("region", "us-east-1")]),
    }
}

/// One alert of an Alertmanager webhook (version 4) from the payments team's Prometheus.
fn alertmanager(alertname: &str, severity: Severity) -> Signal {
    let alarm = "alertmanager:6f1a2b3c4d5e6f70".to_string();
    let event_time = time("2026-11-24T03:01:12.000Z");
    Signal {
        schema_version: SIGNAL_SCHEMA_VERSION,
        id: SignalId::derive(&alarm, SignalState::Alarm, event_time),
        alarm,
        alarm_name: alertname.to_string(),
        state: SignalState::Alarm,
        event_time,
        environment: "prod".to_string(),
        service: "payments".to_string(),
        severity,
        source: SourceKind::Alertmanager,
        summary: "5xx ratio above 5% for 5 minutes".to_string(),
        labels: labels(&[
            ("alertname", alertname),
            ("env", "prod"),
            ("job", "payments-api"),
            ("namespace", "payments"),
            ("service", "payments"),
            ("severity", "critical"),
            ("team", "payments-core"),
        ]),
    }
}

/// A native signal from a synthetic canary that checks the checkout page.
fn native() -> Signal {
    let alarm = "synthetics:checkout-canary".to_string();
    let event_time = time("2026-11-24T03:02:00.000Z");
    Signal {
        schema_version: SIGNAL_SCHEMA_VERSION,
        id: SignalId::derive(&alarm, SignalState::Alarm, event_time),
        alarm,
        alarm_name: "checkout-canary".to_string(),
        state: SignalState::Alarm,
        event_time,
        environment: "prod".to_string(),
        service: "checkout".to_string(),
        severity: Severity::Sev3,
        source: SourceKind::Native,
        summary: "checkout returned 503 from 3 of 3 probe regions".to_string(),
        labels: labels(&[("probe", "eu-west-1")]),
    }
}

/// The same alarm changing into `state` at `event_time` (the id follows the identity).
fn changed(mut signal: Signal, state: SignalState, event_time: &str) -> Signal {
    signal.state = state;
    signal.event_time = time(event_time);
    signal.id = SignalId::derive(&signal.alarm, state, signal.event_time);
    signal
}

// ---- Then: the outcome in words, so tables read as sentences.

fn outcome(rules: &RuleSet, signal: &Signal) -> String {
    match detect(rules, signal) {
        DetectionOutcome::Detected(detection) => format!(
            "detected by {} {} at {}{}",
            detection.rule_id,
            detection.rule_version,
            detection.severity,
            if detection.promotes_alone {
                ", promotes alone"
            } else {
                ""
            }
        ),
        DetectionOutcome::NotDetected(NotDetectedReason::Recovery) => "recovery".to_string(),
        DetectionOutcome::NotDetected(NotDetectedReason::InsufficientData) => {
            "insufficient data".to_string()
        }
        DetectionOutcome::NotDetected(NotDetectedReason::Silenced { silence_id }) => {
            format!("silenced by {silence_id}")
        }
        DetectionOutcome::NotDetected(NotDetectedReason::NoRuleMatched) => {
            "no rule matched".to_string()
        }
    }
}

fn then_outcomes(rules: &RuleSet, cases: &[(&str, Signal, &str)]) {
    for (given, signal, expected) in cases {
        assert_eq!(&outcome(rules, signal), expected, "given {given}");
    }
}

// ---- The default rule set.

#[test]
fn each_default_rule_matches_a_real_signal_of_its_source() {
    let rules = RuleSet::default_rules().expect("the shipped rules load");
    assert_eq!(
        rules,
        load(&default_files()),
        "default_rules is the rules/ directory"
    );
    then_outcomes(
        &rules,
        &[
            (
                "an EventBridge alarm state change",
                cloudwatch(SourceKind::CloudwatchEventbridge),
                "detected by cloudwatch-alarm 1.0.0 at SEV2",
            ),
            (
                "an alarm action invoking the function",
                cloudwatch(SourceKind::CloudwatchAlarmAction),
                "detected by cloudwatch-alarm 1.0.0 at SEV2",
            ),
            (
                "an SNS alarm notification",
                cloudwatch(SourceKind::CloudwatchSns),
                "detected by cloudwatch-alarm 1.0.0 at SEV2",
            ),
            (
                "a firing Alertmanager alert",
                alertmanager("PaymentsHighErrorRate", Severity::Sev1),
                "detected by alertmanager-alert 1.0.0 at SEV1",
            ),
            (
                "the always-firing Watchdog alert",
                alertmanager("Watchdog", Severity::Sev4),
                "no rule matched",
            ),
            (
                "a native signal",
                native(),
                "detected by native-signal 1.0.0 at SEV3",
            ),
            (
                "a CloudWatch OK",
                changed(
                    cloudwatch(SourceKind::CloudwatchEventbridge),
                    SignalState::Ok,
                    "2026-11-24T03:10:09.512+0000",
                ),
                "recovery",
            ),
            (
                "a resolved Alertmanager alert",
                changed(
                    alertmanager("PaymentsHighErrorRate", Severity::Sev1),
                    SignalState::Ok,
                    "2026-11-24T03:20:00Z",
                ),
                "recovery",
            ),
            (
                "a CloudWatch INSUFFICIENT_DATA",
                changed(
                    cloudwatch(SourceKind::CloudwatchSns),
                    SignalState::InsufficientData,
                    "2026-11-24T03:05:00.000+0000",
                ),
                "insufficient data",
            ),
        ],
    );
    assert!(
        rules.rules().iter().all(|rule| !rule.promotes_alone),
        "no default canary"
    );
}

#[test]
fn every_yaml_file_in_the_rules_directory_is_compiled_in() {
    // `RuleSet::default_rules` embeds the files with `include_str!`; a file added to `rules/`
    // but not to that list would silently not be part of the default set.
    let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules");
    let mut on_disk: Vec<String> = std::fs::read_dir(directory)
        .expect("the rules directory exists")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .map(|name| format!("rules/{name}"))
        .collect();
    on_disk.sort();
    let embedded: Vec<String> = DEFAULT_RULE_FILES
        .iter()
        .map(|(path, _)| path.to_string())
        .collect();
    assert_eq!(on_disk, embedded);
}

#[test]
fn a_detection_records_the_rule_and_the_rule_set() {
    let rules = RuleSet::default_rules().expect("loads");
    let signal = cloudwatch(SourceKind::CloudwatchEventbridge);
    let DetectionOutcome::Detected(detection) = detect(&rules, &signal) else {
        panic!("a firing CloudWatch alarm is detected");
    };
    assert_eq!(
        detection.id,
        DetectionId::derive(&signal.id, "cloudwatch-alarm", "1.0.0", &rules.hash())
    );
    assert_eq!(detection.signal_id, signal.id);
    assert_eq!(detection.ruleset_hash, rules.hash());
    assert_eq!(
        (
            detection.alarm.as_str(),
            detection.environment.as_str(),
            detection.service.as_str()
        ),
        (signal.alarm.as_str(), "123456789012", "orders")
    );
    assert_eq!(detection.event_time, signal.event_time);
    assert!(!detection.promotes_alone);
}

// ---- Files that must be refused, with path and line.

#[test]
fn broken_files_are_refused_with_path_and_line() {
    let cases: [(&str, Vec<RuleFile>, &str, u64, &str); 6] = [
        (
            "a misspelled key",
            vec![fixture!("typo-key.yaml")],
            "tests/fixtures/rules/typo-key.yaml",
            8,
            "unknown field `severty`",
        ),
        (
            "a version that is not semantic",
            vec![fixture!("bad-semver.yaml")],
            "tests/fixtures/rules/bad-semver.yaml",
            9,
            "is not a semantic version",
        ),
        (
            "one rule id in two files",
            vec![
                fixture!("duplicate-id-b.yaml"),
                fixture!("duplicate-id-a.yaml"),
            ],
            "tests/fixtures/rules/duplicate-id-b.yaml",
            8,
            "rule id `orders-errors` is already used at tests/fixtures/rules/duplicate-id-a.yaml:2",
        ),
        (
            "a severity that is not SEV1..SEV4",
            vec![fixture!("bad-severity.yaml")],
            "tests/fixtures/rules/bad-severity.yaml",
            8,
            "\"critical\" is not a severity",
        ),
        (
            "a silence that ends before it starts",
            vec![fixture!("silence-ends-before-starts.yaml")],
            "tests/fixtures/rules/silence-ends-before-starts.yaml",
            12,
            "ends_at 2026-11-24T02:00:00Z is not after starts_at 2026-11-24T04:00:00Z",
        ),
        (
            "a valid file next to a file that is not YAML",
            vec![
                fixture!("ordered.yaml"),
                RuleFile {
                    path: "rules/broken.yaml".to_string(),
                    text: "rules: [\n".to_string(),
                },
            ],
            "rules/broken.yaml",
            1,
            "fix the YAML",
        ),
    ];
    for (given, files, path, line, needle) in cases {
        let error: RuleError = RuleSet::from_files(&files).expect_err(given);
        assert_eq!(
            (error.path.as_str(), error.line),
            (path, Some(line)),
            "given {given}: {error}"
        );
        assert!(error.message.contains(needle), "given {given}: {error}");
        assert!(
            error.to_string().starts_with(&format!("{path}:{line}: ")),
            "given {given}: {error}"
        );
    }
}

// ---- Versions, order and severity.

#[test]
fn versions_order_semantically() {
    let cases = [
        ("1.10.0", "1.9.0"),
        ("2.0.0", "1.99.99"),
        ("1.0.0", "1.0.0-rc.1"),
        ("0.10.1", "0.10.0"),
    ];
    for (newer, older) in cases {
        let (newer, older) = (semver::Version::parse(newer), semver::Version::parse(older));
        assert!(newer.expect("semver") > older.expect("semver"));
    }
    let rules = load(&[fixture!("ordered.yaml")]);
    let version = |id: &str| {
        rules
            .rules()
            .iter()
            .find(|rule| rule.id == id)
            .map(|rule| rule.version.clone())
    };
    assert!(
        version("checkout-canary") > version("payments-critical"),
        "1.10.0 > 1.9.0"
    );
}

#[test]
fn the_first_rule_that_holds_wins_and_sets_the_severity() {
    let rules = load(&[fixture!("ordered.yaml")]);
    let mut no_team = alertmanager("PaymentsHighErrorRate", Severity::Sev2);
    no_team.labels.remove("team");
    then_outcomes(
        &rules,
        &[
            (
                "the checkout canary (also matched by any-alarm, later)",
                native(),
                "detected by checkout-canary 1.10.0 at SEV1, promotes alone",
            ),
            (
                "a SEV2 payments alert: overridden to SEV1",
                alertmanager("PaymentsHighErrorRate", Severity::Sev2),
                "detected by payments-critical 1.9.0 at SEV1",
            ),
            (
                "a SEV3 payments alert fails severity_at_least and falls through, inheriting",
                alertmanager("PaymentsSlowRequests", Severity::Sev3),
                "detected by any-alarm 1.0.0 at SEV3",
            ),
            (
                "a payments alert without the team label falls through",
                no_team,
                "detected by any-alarm 1.0.0 at SEV2",
            ),
            (
                "an orders alarm inherits its severity",
                cloudwatch(SourceKind::CloudwatchSns),
                "detected by any-alarm 1.0.0 at SEV2",
            ),
        ],
    );
}

#[test]
fn files_are_evaluated_in_path_order_whatever_order_they_are_passed_in() {
    let catch_all = |id: &str| {
        format!("rules:\n  - id: {id}\n    version: 1.0.0\n    description: all\n    match:\n      source: \"*\"\n")
    };
    let a = RuleFile {
        path: "rules/a.yaml".to_string(),
        text: catch_all("from-a"),
    };
    let b = RuleFile {
        path: "rules/b.yaml".to_string(),
        text: catch_all("from-b"),
    };
    for files in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
        let rules = load(&files);
        then_outcomes(
            &rules,
            &[("any signal", native(), "detected by from-a 1.0.0 at SEV3")],
        );
    }
}

// ---- Silences.

#[test]
fn silences_use_event_time_and_their_matchers() {
    let rules = load(&[fixture!("ordered.yaml"), fixture!("maintenance.yaml")]);
    let orders = || cloudwatch(SourceKind::CloudwatchEventbridge);
    let firing_at = |at: &str| changed(orders(), SignalState::Alarm, at);
    let mut staging = firing_at("2026-11-24T03:00:00Z");
    staging.environment = "210987654321".to_string();
    then_outcomes(
        &rules,
        &[
            (
                "orders firing inside the window",
                firing_at("2026-11-24T03:00:09.512+0000"),
                "silenced by orders-failover-drill",
            ),
            (
                "orders firing at starts_at",
                firing_at("2026-11-24T02:00:00Z"),
                "silenced by orders-failover-drill",
            ),
            (
                "orders firing 1 ms before ends_at",
                firing_at("2026-11-24T03:59:59.999Z"),
                "silenced by orders-failover-drill",
            ),
            (
                "orders firing at ends_at",
                firing_at("2026-11-24T04:00:00Z"),
                "detected by any-alarm 1.0.0 at SEV2",
            ),
            (
                "orders firing before starts_at",
                firing_at("2026-11-24T01:59:59.999Z"),
                "detected by any-alarm 1.0.0 at SEV2",
            ),
            (
                "orders in another account inside the window",
                staging,
                "detected by any-alarm 1.0.0 at SEV2",
            ),
            (
                "payments inside the window",
                alertmanager("PaymentsHighErrorRate", Severity::Sev1),
                "detected by payments-critical 1.9.0 at SEV1",
            ),
            (
                "orders recovering inside the window",
                changed(orders(), SignalState::Ok, "2026-11-24T03:30:00Z"),
                "recovery",
            ),
            (
                "orders with insufficient data inside the window",
                changed(
                    orders(),
                    SignalState::InsufficientData,
                    "2026-11-24T03:30:00Z",
                ),
                "insufficient data",
            ),
        ],
    );
}

// ---- The rule-set hash.

#[test]
fn the_hash_changes_with_any_byte_of_any_file_and_not_with_file_order() {
    let files = default_files();
    let original = load(&files);
    let mut reversed = files.clone();
    reversed.reverse();
    assert_eq!(load(&reversed).hash(), original.hash());

    // Every single-byte change that still loads must change the hash.
    let mut still_loading = 0usize;
    for (index, file) in files.iter().enumerate() {
        for position in 0..file.text.len() {
            let mut bytes = file.text.clone().into_bytes();
            bytes[position] = if bytes[position] == b'x' { b'y' } else { b'x' };
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            let mut changed = files.clone();
            changed[index].text = text;
            if let Ok(rules) = RuleSet::from_files(&changed) {
                still_loading += 1;
                assert_ne!(
                    rules.hash(),
                    original.hash(),
                    "{}: byte {position}",
                    file.path
                );
            }
        }
    }
    assert!(
        still_loading > 100,
        "comments and descriptions can change and still load"
    );
}

#[test]
fn a_new_rule_set_hash_gives_new_detection_ids() {
    let before = RuleSet::default_rules().expect("loads");
    let mut files = default_files();
    files[1].text.push_str("# reviewed 2026-11-25\n");
    let after = load(&files);
    let signal = cloudwatch(SourceKind::CloudwatchEventbridge);
    let id = |rules: &RuleSet| match detect(rules, &signal) {
        DetectionOutcome::Detected(detection) => detection.id,
        other => panic!("expected a detection, got {other:?}"),
    };
    assert_ne!(id(&before), id(&after));
}

// ---- Properties.

fn any_signal() -> impl Strategy<Value = Signal> {
    let source = prop::sample::select(vec![
        SourceKind::CloudwatchEventbridge,
        SourceKind::CloudwatchAlarmAction,
        SourceKind::CloudwatchSns,
        SourceKind::Alertmanager,
        SourceKind::Native,
    ]);
    let state = prop::sample::select(vec![
        SignalState::Alarm,
        SignalState::Ok,
        SignalState::InsufficientData,
    ]);
    let severity = prop::sample::select(Severity::ALL.to_vec());
    let name = prop::sample::select(vec![
        "orders",
        "payments",
        "checkout",
        "Watchdog",
        "checkout-canary",
    ]);
    let environment = prop::sample::select(vec!["123456789012", "210987654321", "prod"]);
    let team = prop::option::of(prop::sample::select(vec!["payments-core", "orders"]));
    // 01:00 to 05:00 on 2026-11-24, around the maintenance silence.
    let event_time = 1_795_482_000_000i64..1_795_496_400_000i64;
    (source, state, severity, name, environment, team, event_time).prop_map(
        |(source, state, severity, name, environment, team, event_time)| {
            let alarm = format!("arn:aws:cloudwatch:us-east-1:{environment}:alarm:{name}");
            let mut labels = labels(&[("region", "us-east-1")]);
            if let Some(team) = team {
                labels.insert("team".to_string(), team.to_string());
            }
            Signal {
                schema_version: SIGNAL_SCHEMA_VERSION,
                id: SignalId::derive(&alarm, state, EpochMs(event_time)),
                alarm,
                alarm_name: name.to_string(),
                state,
                event_time: EpochMs(event_time),
                environment: environment.to_string(),
                service: name.split('-').next().unwrap_or(name).to_string(),
                severity,
                source,
                summary: String::new(),
                labels,
            }
        },
    )
}

proptest! {
    #[test]
    fn from_files_never_panics_on_arbitrary_text(
        first in "\\PC{0,400}",
        second in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let second = String::from_utf8_lossy(&second).into_owned();
        let _ = RuleSet::from_files(&[
            RuleFile { path: "rules/a.yaml".to_string(), text: first },
            RuleFile { path: "rules/b.yaml".to_string(), text: second },
        ]);
    }

    #[test]
    fn from_files_never_panics_on_mangled_rule_files(
        cut in 0usize..2000,
        insert in "[-:{}\\[\\]&*!|>'\" \n#a-z0-9]{0,12}",
    ) {
        let text = include_str!("fixtures/rules/ordered.yaml");
        let mut cut = cut.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mangled = format!("{}{insert}{}", &text[..cut], &text[cut..]);
        let _ = RuleSet::from_files(&[RuleFile { path: "rules/m.yaml".to_string(), text: mangled }]);
    }

    #[test]
    fn detect_is_deterministic(signal in any_signal()) {
        let rules = load(&[fixture!("ordered.yaml"), fixture!("maintenance.yaml")]);
        let rebuilt = load(&[fixture!("maintenance.yaml"), fixture!("ordered.yaml")]);
        let first = detect(&rules, &signal);
        prop_assert_eq!(&first, &detect(&rules, &signal));
        prop_assert_eq!(&first, &detect(&rebuilt, &signal.clone()));
        let defaults = RuleSet::default_rules().expect("loads");
        prop_assert_eq!(detect(&defaults, &signal), detect(&defaults, &signal));
    }
}
