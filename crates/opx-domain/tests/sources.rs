//! Given a real-shaped source payload (a file under `tests/fixtures/sources/`), when it is
//! parsed, then it yields the expected signals or names the field it rejects.

use opx_domain::hash::FieldHasher;
use opx_domain::signal::{Severity, Signal, SourceKind, IDENTIFIER_LEN_MAX, SUMMARY_LEN_MAX};
use opx_domain::source::{
    alertmanager_severity, cloudwatch_severity, detect_kind, parse_payload, parse_value,
    ParsedPayload, Rejection, ServicePattern, SourceConfig, ALERTS_PER_PAYLOAD_MAX,
    PAYLOAD_LEN_MAX,
};
use proptest::prelude::*;
use std::collections::BTreeSet;

const ACCOUNT: &str = "123456789012";
const ORDERS_ARN: &str = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-api-5xx";
const ORDERS_ALARM_TIME: &str = "2026-11-24T03:00:09.512Z";
/// `alertmanager:` + hash of `alertname` and the sorted labels of the alert in
/// `alertmanager_no_fingerprint_no_env.json`. Pinned: changing the formula changes the id of
/// every stored Alertmanager signal without a fingerprint.
const SLOW_QUERIES_ALARM: &str =
    "alertmanager:e2981d1fdc0e5ebd84e2cae9c3f63c3428a3a7695dcab7a0c45253f04c9eedb0";

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/sources/",
                $name
            )) as &[u8],
        )
    };
}

/// Which [`SourceConfig`] a case runs with.
#[derive(Clone, Copy, Debug)]
enum Config {
    Default,
    /// `Checkout*` → `checkout`.
    Patterns,
}

impl Config {
    fn build(self) -> SourceConfig {
        match self {
            Config::Default => SourceConfig::default(),
            Config::Patterns => SourceConfig {
                service_patterns: vec![ServicePattern {
                    alarm_name_glob: "Checkout*".to_owned(),
                    service: "checkout".to_owned(),
                }],
                ..SourceConfig::default()
            },
        }
    }
}

/// The identity-relevant fields of one expected signal.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    alarm: String,
    state: String,
    event_time: String,
    environment: String,
    service: String,
    severity: String,
}

impl Expected {
    fn of(signal: &Signal) -> Expected {
        Expected {
            alarm: signal.alarm.clone(),
            state: signal.state.as_str().to_owned(),
            event_time: signal.event_time.to_rfc3339(),
            environment: signal.environment.clone(),
            service: signal.service.clone(),
            severity: signal.severity.as_str().to_owned(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Item {
    Signal(Expected),
    Rejected(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Then {
    Items(SourceKind, Vec<Item>),
    PayloadRejected(String),
}

fn signal(
    alarm: &str,
    state: &str,
    event_time: &str,
    environment: &str,
    service: &str,
    severity: &str,
) -> Item {
    Item::Signal(Expected {
        alarm: alarm.to_owned(),
        state: state.to_owned(),
        event_time: event_time.to_owned(),
        environment: environment.to_owned(),
        service: service.to_owned(),
        severity: severity.to_owned(),
    })
}

fn rejected(field: &str) -> Item {
    Item::Rejected(field.to_owned())
}

fn items(kind: SourceKind, items: Vec<Item>) -> Then {
    Then::Items(kind, items)
}

fn payload_rejected(field: &str) -> Then {
    Then::PayloadRejected(field.to_owned())
}

fn observe(result: &Result<ParsedPayload, Rejection>) -> Then {
    match result {
        Ok(parsed) => Then::Items(
            parsed.source,
            parsed
                .items
                .iter()
                .map(|item| match item {
                    Ok(signal) => Item::Signal(Expected::of(signal)),
                    Err(rejection) => Item::Rejected(rejection.field.clone()),
                })
                .collect(),
        ),
        Err(rejection) => Then::PayloadRejected(rejection.field.clone()),
    }
}

fn parse(bytes: &[u8]) -> Result<ParsedPayload, Rejection> {
    parse_payload(bytes, &SourceConfig::default())
}

fn only_signal(bytes: &[u8]) -> Signal {
    let parsed = parse(bytes).expect("payload accepted");
    assert_eq!(parsed.items.len(), 1, "{parsed:?}");
    parsed.items[0].clone().expect("item accepted")
}

/// A fixture's file name and bytes.
type Fixture = (&'static str, &'static [u8]);

/// Given a fixture and a configuration, then this.
type Case = (Fixture, Config, Then);

fn cases() -> Vec<Case> {
    use SourceKind::*;
    let orders =
        |state: &str, time: &str| signal(ORDERS_ARN, state, time, ACCOUNT, "orders", "SEV2");
    let checkout_firing = |alarm: &str, environment: &str| {
        signal(
            alarm,
            "ALARM",
            ORDERS_ALARM_TIME,
            environment,
            "checkout",
            "SEV1",
        )
    };
    let native_time = "2026-11-24T03:00:09.512Z";
    let native =
        |alarm: &str, service: &str| signal(alarm, "ALARM", native_time, "prod", service, "SEV1");
    vec![
        // CloudWatch through EventBridge: the state timestamp, not the envelope time.
        (
            fixture!("eventbridge_alarm.json"),
            Config::Default,
            items(
                CloudwatchEventbridge,
                vec![orders("ALARM", ORDERS_ALARM_TIME)],
            ),
        ),
        (
            fixture!("eventbridge_ok.json"),
            Config::Default,
            items(
                CloudwatchEventbridge,
                vec![orders("OK", "2026-11-24T03:20:41.007Z")],
            ),
        ),
        (
            fixture!("eventbridge_insufficient_data.json"),
            Config::Default,
            items(
                CloudwatchEventbridge,
                vec![orders("INSUFFICIENT_DATA", "2026-11-24T04:00:00.000Z")],
            ),
        ),
        (
            fixture!("eventbridge_pattern_mapped.json"),
            Config::Patterns,
            items(
                CloudwatchEventbridge,
                vec![signal(
                    "arn:aws:cloudwatch:us-east-1:123456789012:alarm:CheckoutLatencyP99",
                    "ALARM",
                    "2026-11-24T03:05:00.000Z",
                    ACCOUNT,
                    "checkout",
                    "SEV2",
                )],
            ),
        ),
        (
            fixture!("eventbridge_pattern_mapped.json"),
            Config::Default,
            items(
                CloudwatchEventbridge,
                vec![signal(
                    "arn:aws:cloudwatch:us-east-1:123456789012:alarm:CheckoutLatencyP99",
                    "ALARM",
                    "2026-11-24T03:05:00.000Z",
                    ACCOUNT,
                    "CheckoutLatencyP99",
                    "SEV2",
                )],
            ),
        ),
        (
            fixture!("eventbridge_name_token_sev1.json"),
            Config::Default,
            items(
                CloudwatchEventbridge,
                vec![signal(
                    "arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-db-down-SEV1",
                    "ALARM",
                    "2026-11-24T03:05:00.000Z",
                    ACCOUNT,
                    "orders",
                    "SEV1",
                )],
            ),
        ),
        (
            fixture!("eventbridge_sev10_not_a_token.json"),
            Config::Default,
            items(
                CloudwatchEventbridge,
                vec![signal(
                    "arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-queue-sev10",
                    "ALARM",
                    "2026-11-24T03:05:00.000Z",
                    ACCOUNT,
                    "orders",
                    "SEV2",
                )],
            ),
        ),
        (
            fixture!("eventbridge_unknown_state.json"),
            Config::Default,
            items(CloudwatchEventbridge, vec![rejected("detail.state.value")]),
        ),
        (
            fixture!("eventbridge_account_mismatch.json"),
            Config::Default,
            items(CloudwatchEventbridge, vec![rejected("resources[0]")]),
        ),
        (
            fixture!("eventbridge_region_mismatch.json"),
            Config::Default,
            items(CloudwatchEventbridge, vec![rejected("region")]),
        ),
        (
            fixture!("eventbridge_name_mismatch.json"),
            Config::Default,
            items(CloudwatchEventbridge, vec![rejected("detail.alarmName")]),
        ),
        (
            fixture!("eventbridge_account_is_a_number.json"),
            Config::Default,
            items(CloudwatchEventbridge, vec![rejected("account")]),
        ),
        (
            fixture!("eventbridge_timestamp_before_range.json"),
            Config::Default,
            items(
                CloudwatchEventbridge,
                vec![rejected("detail.state.timestamp")],
            ),
        ),
        (
            fixture!("eventbridge_timestamp_after_range.json"),
            Config::Default,
            items(
                CloudwatchEventbridge,
                vec![rejected("detail.state.timestamp")],
            ),
        ),
        (
            fixture!("eventbridge_timestamp_impossible_date.json"),
            Config::Default,
            items(
                CloudwatchEventbridge,
                vec![rejected("detail.state.timestamp")],
            ),
        ),
        (
            fixture!("eventbridge_timestamp_is_a_number.json"),
            Config::Default,
            items(
                CloudwatchEventbridge,
                vec![rejected("detail.state.timestamp")],
            ),
        ),
        (
            fixture!("eventbridge_no_resources.json"),
            Config::Default,
            items(CloudwatchEventbridge, vec![rejected("resources")]),
        ),
        (
            fixture!("eventbridge_resource_not_an_alarm_arn.json"),
            Config::Default,
            items(CloudwatchEventbridge, vec![rejected("resources[0]")]),
        ),
        (
            fixture!("eventbridge_missing_state.json"),
            Config::Default,
            items(CloudwatchEventbridge, vec![rejected("detail.state")]),
        ),
        (
            fixture!("eventbridge_configuration_change.json"),
            Config::Default,
            items(CloudwatchEventbridge, vec![rejected("detail-type")]),
        ),
        // CloudWatch alarm action invoking a Lambda function directly.
        (
            fixture!("alarm_action_alarm.json"),
            Config::Default,
            items(
                CloudwatchAlarmAction,
                vec![signal(
                    "arn:aws:cloudwatch:us-east-1:123456789012:alarm:payments-db-cpu-high",
                    "ALARM",
                    "2026-11-24T03:02:41.198Z",
                    ACCOUNT,
                    "payments",
                    "SEV1",
                )],
            ),
        ),
        (
            fixture!("alarm_action_short_account.json"),
            Config::Default,
            items(CloudwatchAlarmAction, vec![rejected("accountId")]),
        ),
        (
            fixture!("alarm_action_timestamp_after_range.json"),
            Config::Default,
            items(
                CloudwatchAlarmAction,
                vec![rejected("alarmData.state.timestamp")],
            ),
        ),
        // CloudWatch through SNS: the same state change as eventbridge_alarm.json.
        (
            fixture!("sns_notification.json"),
            Config::Default,
            items(CloudwatchSns, vec![orders("ALARM", ORDERS_ALARM_TIME)]),
        ),
        (
            fixture!("sns_lambda_records.json"),
            Config::Default,
            items(CloudwatchSns, vec![orders("ALARM", ORDERS_ALARM_TIME)]),
        ),
        (
            fixture!("sns_notification_null_description.json"),
            Config::Default,
            items(CloudwatchSns, vec![orders("ALARM", ORDERS_ALARM_TIME)]),
        ),
        (
            fixture!("sns_lambda_records_one_without_alarm_arn.json"),
            Config::Default,
            items(
                CloudwatchSns,
                vec![
                    orders("OK", "2026-11-24T03:20:41.007Z"),
                    rejected("Records[1].Sns.Message.AlarmArn"),
                ],
            ),
        ),
        (
            fixture!("sns_message_not_json.json"),
            Config::Default,
            items(CloudwatchSns, vec![rejected("Message")]),
        ),
        (
            fixture!("sns_subscription_confirmation.json"),
            Config::Default,
            items(CloudwatchSns, vec![rejected("Type")]),
        ),
        (
            fixture!("s3_event_records.json"),
            Config::Default,
            items(CloudwatchSns, vec![rejected("Records[0].EventSource")]),
        ),
        // Alertmanager webhook v4: one item per alert.
        (
            fixture!("alertmanager_three_alerts.json"),
            Config::Default,
            items(
                Alertmanager,
                vec![
                    checkout_firing("alertmanager:3f2a9c1d8e7b6a50", "prod"),
                    signal(
                        "alertmanager:b81c0e6e2d4f7a13",
                        "OK",
                        "2026-11-24T02:01:30.250Z",
                        "prod",
                        "node-exporter",
                        "SEV3",
                    ),
                    rejected("alerts[2].startsAt"),
                ],
            ),
        ),
        (
            fixture!("alertmanager_resend_changed_annotation.json"),
            Config::Default,
            items(
                Alertmanager,
                vec![checkout_firing("alertmanager:3f2a9c1d8e7b6a50", "prod")],
            ),
        ),
        (
            fixture!("alertmanager_staging.json"),
            Config::Default,
            items(
                Alertmanager,
                vec![checkout_firing("alertmanager:7d01b2c3e4f5a697", "staging")],
            ),
        ),
        (
            fixture!("alertmanager_no_fingerprint_no_env.json"),
            Config::Default,
            items(
                Alertmanager,
                vec![signal(
                    SLOW_QUERIES_ALARM,
                    "ALARM",
                    "2026-11-24T03:04:00.000Z",
                    "default",
                    "postgres-exporter",
                    "SEV2",
                )],
            ),
        ),
        (
            fixture!("alertmanager_no_service_label.json"),
            Config::Default,
            items(Alertmanager, vec![rejected("alerts[0].labels.service")]),
        ),
        (
            fixture!("alertmanager_resolved_without_end.json"),
            Config::Default,
            items(Alertmanager, vec![rejected("alerts[0].endsAt")]),
        ),
        (
            fixture!("alertmanager_missing_alertname.json"),
            Config::Default,
            items(Alertmanager, vec![rejected("alerts[0].labels.alertname")]),
        ),
        (
            fixture!("alertmanager_label_is_a_number.json"),
            Config::Default,
            items(Alertmanager, vec![rejected("alerts[0].labels.instance")]),
        ),
        (
            fixture!("alertmanager_unknown_status.json"),
            Config::Default,
            items(Alertmanager, vec![rejected("alerts[0].status")]),
        ),
        (
            fixture!("alertmanager_version_3.json"),
            Config::Default,
            payload_rejected("version"),
        ),
        (
            fixture!("alertmanager_no_alerts.json"),
            Config::Default,
            payload_rejected("alerts"),
        ),
        // Native opx signal v1.
        (
            fixture!("native_valid.json"),
            Config::Default,
            items(
                Native,
                vec![native("synthetic:checkout-canary", "checkout")],
            ),
        ),
        (
            fixture!("native_minimal_ok.json"),
            Config::Default,
            items(
                Native,
                vec![signal(
                    "synthetic:checkout-canary",
                    "OK",
                    "2026-11-24T03:10:00.000Z",
                    "prod",
                    "checkout",
                    "SEV4",
                )],
            ),
        ),
        (
            fixture!("native_metacharacters.json"),
            Config::Default,
            items(
                Native,
                vec![native(
                    "'; DROP TABLE signals; --",
                    "orders\"; DELETE FROM incidents WHERE '1'='1",
                )],
            ),
        ),
        (
            fixture!("native_unknown_field.json"),
            Config::Default,
            items(Native, vec![rejected("priority")]),
        ),
        (
            fixture!("native_unsupported_version.json"),
            Config::Default,
            items(Native, vec![rejected("opx_signal_version")]),
        ),
        (
            fixture!("native_version_is_a_string.json"),
            Config::Default,
            items(Native, vec![rejected("opx_signal_version")]),
        ),
        (
            fixture!("native_bad_severity.json"),
            Config::Default,
            items(Native, vec![rejected("severity")]),
        ),
        (
            fixture!("native_lowercase_severity.json"),
            Config::Default,
            items(Native, vec![rejected("severity")]),
        ),
        (
            fixture!("native_unknown_state.json"),
            Config::Default,
            items(Native, vec![rejected("state")]),
        ),
        (
            fixture!("native_empty_environment.json"),
            Config::Default,
            items(Native, vec![rejected("environment")]),
        ),
        (
            fixture!("native_control_character.json"),
            Config::Default,
            items(Native, vec![rejected("service")]),
        ),
        (
            fixture!("native_label_not_a_string.json"),
            Config::Default,
            items(Native, vec![rejected("labels.probe")]),
        ),
        // Not a payload at all.
        (
            fixture!("not_json_truncated.json"),
            Config::Default,
            payload_rejected("$"),
        ),
        (
            fixture!("not_json_trailing_garbage.json"),
            Config::Default,
            payload_rejected("$"),
        ),
        (
            fixture!("not_utf8.json"),
            Config::Default,
            payload_rejected("$"),
        ),
        (
            fixture!("duplicate_key.json"),
            Config::Default,
            payload_rejected("$"),
        ),
        (
            fixture!("empty_object.json"),
            Config::Default,
            payload_rejected("$"),
        ),
        (
            fixture!("not_an_object.json"),
            Config::Default,
            payload_rejected("$"),
        ),
        (
            fixture!("unknown_kind.json"),
            Config::Default,
            payload_rejected("$"),
        ),
    ]
}

#[test]
fn every_fixture_parses_as_expected() {
    let mut failures = Vec::new();
    for ((name, bytes), config, expected) in cases() {
        let result = parse_payload(bytes, &config.build());
        let actual = observe(&result);
        if actual != expected {
            failures.push(format!(
                "given {name} with {config:?}\n  expected {expected:?}\n  actual   {actual:?}\n  result   {result:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_fixture_file_is_in_the_table() {
    let listed: BTreeSet<&str> = cases().iter().map(|((name, _), _, _)| *name).collect();
    let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sources");
    let on_disk: BTreeSet<String> = std::fs::read_dir(directory)
        .expect("fixtures directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let missing: Vec<&String> = on_disk
        .iter()
        .filter(|name| !listed.contains(name.as_str()))
        .collect();
    assert!(missing.is_empty(), "fixtures without a case: {missing:?}");
}

#[test]
fn rejections_say_what_was_expected_and_stay_short() {
    for ((name, bytes), config, _) in cases() {
        let result = parse_payload(bytes, &config.build());
        let rejections: Vec<Rejection> = match result {
            Ok(parsed) => parsed.items.into_iter().filter_map(Result::err).collect(),
            Err(rejection) => vec![rejection],
        };
        for rejection in rejections {
            assert!(
                rejection.reason.contains("expected") || rejection.reason.contains("required"),
                "{name}: {rejection}"
            );
            assert!(rejection.reason.len() <= 700, "{name}: {rejection}");
            assert_eq!(
                rejection.to_string(),
                format!("{}: {}", rejection.field, rejection.reason)
            );
        }
    }
}

#[test]
fn parse_value_agrees_with_parse_payload_and_detect_kind() {
    for ((name, bytes), config, _) in cases() {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            continue;
        };
        if name == "duplicate_key.json" {
            continue; // serde_json keeps the last duplicate; only the byte parser can refuse it
        }
        let config = config.build();
        assert_eq!(
            parse_value(&value, &config),
            parse_payload(bytes, &config),
            "{name}"
        );
        if let Ok(parsed) = parse_value(&value, &config) {
            assert_eq!(detect_kind(&value), Some(parsed.source), "{name}");
        }
    }
}

#[test]
fn one_state_change_by_eventbridge_and_by_sns_is_one_signal() {
    let copies = [
        only_signal(fixture!("eventbridge_alarm.json").1),
        only_signal(fixture!("sns_notification.json").1),
        only_signal(fixture!("sns_lambda_records.json").1),
        only_signal(fixture!("sns_notification_null_description.json").1),
    ];
    let first = &copies[0];
    for copy in &copies[1..] {
        assert_eq!(copy.id, first.id);
        assert_eq!(copy.fingerprint(), first.fingerprint());
        assert_eq!(copy.summary, first.summary);
        assert_eq!(copy.labels.get("region"), Some(&"us-east-1".to_owned()));
    }
    assert_eq!(
        copies[1].labels.get("region_name").map(String::as_str),
        Some("US East (N. Virginia)")
    );
    let sources: BTreeSet<SourceKind> = copies.iter().map(|signal| signal.source).collect();
    assert_eq!(sources.len(), 2);
}

#[test]
fn an_alertmanager_resend_with_a_new_annotation_is_a_duplicate() {
    let first = parse(fixture!("alertmanager_three_alerts.json").1)
        .unwrap()
        .items[0]
        .clone()
        .unwrap();
    let resend = only_signal(fixture!("alertmanager_resend_changed_annotation.json").1);
    assert_ne!(first.summary, resend.summary);
    assert_eq!(first.id, resend.id);
    assert_eq!(first.fingerprint(), resend.fingerprint());
    assert_eq!(first.summary, "checkout 5xx ratio 7.3% over 5m");
}

#[test]
fn an_alert_without_fingerprint_is_identified_by_alertname_and_sorted_labels() {
    // An independent oracle for the documented formula, over the fixture's labels.
    let oracle = FieldHasher::new("opx.alertmanager-alarm.v1")
        .str("SlowQueries")
        .u64(4)
        .str("alertname")
        .str("SlowQueries")
        .str("instance")
        .str("db-1:9187")
        .str("job")
        .str("postgres-exporter")
        .str("severity")
        .str("high")
        .finish();
    assert_eq!(
        SLOW_QUERIES_ALARM,
        format!("alertmanager:{}", oracle.to_hex())
    );
    // Key order in the payload does not matter; an empty fingerprint counts as absent.
    let reordered = br#"{"version":"4","alerts":[{"status":"firing","fingerprint":"",
        "labels":{"severity":"high","job":"postgres-exporter","instance":"db-1:9187","alertname":"SlowQueries"},
        "startsAt":"2026-11-24T03:04:00Z"}]}"#;
    assert_eq!(only_signal(reordered).alarm, SLOW_QUERIES_ALARM);
}

#[test]
fn staging_and_prod_never_merge() {
    let prod = parse(fixture!("alertmanager_three_alerts.json").1)
        .unwrap()
        .items[0]
        .clone()
        .unwrap();
    let staging = only_signal(fixture!("alertmanager_staging.json").1);
    assert_eq!(
        (prod.environment.as_str(), staging.environment.as_str()),
        ("prod", "staging")
    );
    assert_eq!(prod.service, staging.service);
    assert_ne!(prod.id, staging.id);
    assert_ne!(prod.fingerprint(), staging.fingerprint());
}

#[test]
fn the_malformed_alert_is_named_and_its_neighbours_survive() {
    let parsed = parse(fixture!("alertmanager_three_alerts.json").1).unwrap();
    assert_eq!(parsed.items.iter().filter(|item| item.is_ok()).count(), 2);
    let rejection = parsed.items[2].clone().unwrap_err();
    assert_eq!(rejection.field, "alerts[2].startsAt");
    assert!(rejection.reason.contains("yesterday at 3"), "{rejection}");
    let resolved = parsed.items[1].clone().unwrap();
    assert_eq!(
        resolved.summary,
        "/var on 10.0.5.2 will fill within 4 hours."
    );
    assert_eq!(
        resolved.labels.get("mountpoint").map(String::as_str),
        Some("/var")
    );
}

/// An Alertmanager webhook with one alert carrying `labels`.
fn alertmanager_payload(labels: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": "4",
        "status": "firing",
        "receiver": "opx",
        "alerts": [{
            "status": "firing",
            "labels": labels,
            "annotations": {},
            "startsAt": "2026-11-24T03:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "00000000000000aa"
        }]
    }))
    .expect("serialisable")
}

#[test]
fn alertmanager_severity_table() {
    let rows: [(Option<&str>, Severity); 17] = [
        (Some("critical"), Severity::Sev1),
        (Some("Critical"), Severity::Sev1),
        (Some("high"), Severity::Sev2),
        (Some("error"), Severity::Sev2),
        (Some("warning"), Severity::Sev3),
        (Some("medium"), Severity::Sev3),
        (Some("sev1"), Severity::Sev1),
        (Some("SEV2"), Severity::Sev2),
        (Some("Sev3"), Severity::Sev3),
        (Some("sev4"), Severity::Sev4),
        (Some("info"), Severity::Sev4),
        (Some("none"), Severity::Sev4),
        (Some("sev5"), Severity::Sev4),
        (Some(""), Severity::Sev4),
        (Some("critical "), Severity::Sev4),
        (Some("page"), Severity::Sev4),
        (None, Severity::Sev4),
    ];
    for (label, expected) in rows {
        assert_eq!(alertmanager_severity(label), expected, "{label:?}");
        let mut labels = serde_json::json!({"alertname": "A", "service": "s"});
        if let Some(label) = label {
            labels["severity"] = serde_json::Value::from(label);
        }
        assert_eq!(
            only_signal(&alertmanager_payload(&labels)).severity,
            expected,
            "{label:?}"
        );
    }
}

#[test]
fn cloudwatch_severity_table() {
    let rows = [
        ("orders-api-5xx", "", Severity::Sev2),
        ("orders-api-5xx-sev1", "", Severity::Sev1),
        ("orders-api-5xx-SEV3", "", Severity::Sev3),
        ("sev4-orders", "", Severity::Sev4),
        ("orders.sev2.latency", "", Severity::Sev2),
        ("orders-api-5xx", "page: Sev1 immediately", Severity::Sev1),
        ("orders-api-5xx-sev3", "sev1", Severity::Sev3),
        ("orders-sev10", "", Severity::Sev2),
        ("mysev1", "", Severity::Sev2),
        ("orders-sev1x", "", Severity::Sev2),
        ("orders", "severity sev 1", Severity::Sev2),
        ("orders", "(sev4)", Severity::Sev4),
    ];
    for (name, description, expected) in rows {
        assert_eq!(
            cloudwatch_severity(name, description),
            expected,
            "{name:?} {description:?}"
        );
    }
}

#[test]
fn service_label_fallbacks() {
    let rows = [
        (
            serde_json::json!({"alertname": "A", "service": "svc", "job": "jb"}),
            "svc",
        ),
        (serde_json::json!({"alertname": "A", "job": "jb"}), "jb"),
        (
            serde_json::json!({"alertname": "A", "service": "", "job": "jb"}),
            "jb",
        ),
    ];
    for (labels, expected) in rows {
        assert_eq!(
            only_signal(&alertmanager_payload(&labels)).service,
            expected,
            "{labels}"
        );
    }
    let job_first = SourceConfig {
        service_labels: vec!["job".into(), "service".into()],
        ..SourceConfig::default()
    };
    let bytes =
        alertmanager_payload(&serde_json::json!({"alertname": "A", "service": "svc", "job": "jb"}));
    assert_eq!(
        parse_payload(&bytes, &job_first).unwrap().items[0]
            .as_ref()
            .unwrap()
            .service,
        "jb"
    );
    let custom_environment = SourceConfig {
        environment_label: "stage".into(),
        default_environment: "unknown".into(),
        ..SourceConfig::default()
    };
    let bytes =
        alertmanager_payload(&serde_json::json!({"alertname": "A", "service": "s", "env": "prod"}));
    assert_eq!(
        parse_payload(&bytes, &custom_environment).unwrap().items[0]
            .as_ref()
            .unwrap()
            .environment,
        "unknown"
    );
}

#[test]
fn metacharacters_are_kept_verbatim_as_data() {
    let signal = only_signal(fixture!("native_metacharacters.json").1);
    assert_eq!(signal.alarm, "'; DROP TABLE signals; --");
    assert_eq!(signal.alarm_name, "$(rm -rf /) `id` && echo pwned | sh");
    assert_eq!(
        signal.summary,
        "<script>alert(1)</script> %s %n ${jndi:ldap://x/a}"
    );
    assert_eq!(
        signal.labels.get("$(whoami)").map(String::as_str),
        Some("; ls -la")
    );
    assert_eq!(
        signal.labels.get("q").map(String::as_str),
        Some("' OR 1=1 --")
    );
}

#[test]
fn deep_nesting_is_a_rejection_not_a_crash() {
    for depth in [200usize, 100_000] {
        let bytes = "[".repeat(depth).into_bytes();
        let rejection = parse(&bytes).unwrap_err();
        assert_eq!(rejection.field, "$");
        let nested_objects = r#"{"a":"#.repeat(depth / 5) + "1" + &"}".repeat(depth / 5);
        assert_eq!(parse(nested_objects.as_bytes()).unwrap_err().field, "$");
    }
    // Nesting inside an SNS message is caught when the message is decoded.
    let message = "[".repeat(10_000);
    let notification = serde_json::json!({"Type": "Notification", "Message": message});
    let parsed = parse(&serde_json::to_vec(&notification).unwrap()).unwrap();
    assert_eq!(parsed.items[0].as_ref().unwrap_err().field, "Message");
}

fn native_with_summary(summary_len: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "opx_signal_version": 1,
        "alarm": "a",
        "state": "ALARM",
        "time": "2026-11-24T03:00:00Z",
        "environment": "prod",
        "service": "s",
        "severity": "SEV2",
        "summary": "é".repeat(summary_len / 2),
    }))
    .expect("serialisable")
}

#[test]
fn payload_size_limit_is_exact() {
    let overhead = native_with_summary(0).len();
    let at_limit = native_with_summary(PAYLOAD_LEN_MAX - overhead);
    assert_eq!(at_limit.len(), PAYLOAD_LEN_MAX);
    let signal = only_signal(&at_limit);
    assert!(signal.summary.len() <= SUMMARY_LEN_MAX && signal.summary.len() >= SUMMARY_LEN_MAX - 1);
    let over = native_with_summary(PAYLOAD_LEN_MAX - overhead + 2);
    let rejection = parse(&over).unwrap_err();
    assert_eq!(rejection.field, "$");
    assert!(rejection.reason.contains("262144"), "{rejection}");
}

#[test]
fn list_limits_are_enforced() {
    let alert = serde_json::json!({
        "status": "firing",
        "labels": {"alertname": "A", "service": "s"},
        "startsAt": "2026-11-24T03:00:00Z"
    });
    let webhook = |count: usize| {
        serde_json::to_vec(
            &serde_json::json!({"version": "4", "alerts": vec![alert.clone(); count]}),
        )
        .unwrap()
    };
    assert_eq!(
        parse(&webhook(ALERTS_PER_PAYLOAD_MAX)).unwrap().items.len(),
        ALERTS_PER_PAYLOAD_MAX
    );
    assert_eq!(
        parse(&webhook(ALERTS_PER_PAYLOAD_MAX + 1))
            .unwrap_err()
            .field,
        "alerts"
    );

    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), "A".into());
    labels.insert("service".into(), "s".into());
    for index in 0..63 {
        labels.insert(format!("l{index:02}"), "v".into());
    }
    let labels = serde_json::Value::Object(labels);
    let parsed = parse(&alertmanager_payload(&labels)).unwrap();
    assert_eq!(
        parsed.items[0].as_ref().unwrap_err().field,
        "alerts[0].labels"
    );
}

#[test]
fn long_values_are_refused_without_being_echoed() {
    let long = "x".repeat(IDENTIFIER_LEN_MAX + 1);
    let labels = serde_json::json!({"alertname": "A", "service": long});
    let parsed = parse(&alertmanager_payload(&labels)).unwrap();
    let rejection = parsed.items[0].as_ref().unwrap_err();
    assert_eq!(rejection.field, "alerts[0].labels.service");
    assert!(rejection.reason.len() < 300, "{rejection}");

    let huge = "y".repeat(100_000);
    let native = serde_json::json!({"opx_signal_version": 1, "alarm": huge, "state": "NOPE"});
    let parsed = parse_value(&native, &SourceConfig::default()).unwrap();
    let rejection = parsed.items[0].as_ref().unwrap_err();
    assert_eq!(rejection.field, "alarm");
    assert!(rejection.reason.len() < 300, "{rejection}");
}

#[test]
fn the_unrecognised_payload_reason_lists_the_kinds_and_what_was_found() {
    let rejection = parse(fixture!("unknown_kind.json").1).unwrap_err();
    for needle in [
        "EventBridge",
        "alarm-action",
        "SNS",
        "Alertmanager",
        "native",
        "\"hello\"",
    ] {
        assert!(rejection.reason.contains(needle), "{needle}: {rejection}");
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

fn all_fixtures() -> Vec<&'static [u8]> {
    cases()
        .into_iter()
        .map(|((_, bytes), _, _)| bytes)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let first = parse(&bytes);
        prop_assert_eq!(first, parse(&bytes));
    }

    #[test]
    fn never_panics_on_json_ish_text(text in r#"[\[\]{}":,0-9a-zA-Z_ .+\-\\é\u{0}]{0,300}"#) {
        let first = parse(text.as_bytes());
        prop_assert_eq!(first, parse(text.as_bytes()));
    }

    #[test]
    fn never_panics_on_mutated_fixtures(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let fixtures = all_fixtures();
        let mut bytes = fixtures[which.index(fixtures.len())].to_vec();
        for (position, byte) in edits {
            if !bytes.is_empty() {
                let at = position.index(bytes.len());
                bytes[at] = byte;
            }
        }
        let first = parse(&bytes);
        prop_assert_eq!(first, parse(&bytes));
    }

    #[test]
    fn never_panics_on_arbitrary_field_values(
        which in any::<prop::sample::Index>(),
        field in any::<prop::sample::Index>(),
        replacement in prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "\\PC{0,40}".prop_map(serde_json::Value::from),
            Just(serde_json::json!([])),
            Just(serde_json::json!({})),
        ],
    ) {
        // Replace one top-level field of a well-formed fixture: reaches the per-kind code.
        let fixtures = all_fixtures();
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(fixtures[which.index(fixtures.len())]) else {
            return Ok(());
        };
        if let Some(object) = value.as_object_mut() {
            if !object.is_empty() {
                let key = object.keys().nth(field.index(object.len())).cloned().unwrap();
                object.insert(key, replacement);
            }
        }
        let config = SourceConfig::default();
        let first = parse_value(&value, &config);
        prop_assert_eq!(&first, &parse_value(&value, &config));
        let bytes = serde_json::to_vec(&value).unwrap();
        prop_assert_eq!(first, parse_payload(&bytes, &config));
    }
}

#[test]
#[ignore = "prints every fixture's rejections for review"]
fn print_rejections() {
    for ((name, bytes), config, _) in cases() {
        match parse_payload(bytes, &config.build()) {
            Ok(parsed) => {
                for rejection in parsed.items.into_iter().filter_map(Result::err) {
                    println!("{name}: {rejection}");
                }
            }
            Err(rejection) => println!("{name}: {rejection}"),
        }
    }
}
