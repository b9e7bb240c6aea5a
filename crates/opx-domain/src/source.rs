//! Total parsers for the five signal sources: payload bytes in, canonical [`Signal`]s or
//! typed [`Rejection`]s out.
//!
//! Every input gets an answer and none panics: a payload that is too large, not UTF-8, not
//! JSON (truncated, nested deeper than serde_json's recursion limit, or with a duplicate
//! key), or of no recognised kind is refused as a whole; a payload of a recognised kind
//! yields one result per item (alert, SNS record, or the single alarm), so one bad alert of
//! an Alertmanager webhook is rejected while its neighbours are accepted. A [`Rejection`]
//! names the JSON path of the offending field and says what was expected and what was
//! found, never echoing more than [`QUOTED_CHARS_MAX`] characters of a value.
//!
//! # Detecting the kind
//!
//! [`detect_kind`] looks only at marker fields of the top-level object, in this order; the
//! first match wins. The payload is then validated in full as that kind, so a payload that
//! carries a kind's markers but breaks its rules (an Alertmanager webhook of version 3, an
//! EventBridge event of another `detail-type`, an SNS `SubscriptionConfirmation`) is refused
//! naming the broken field, instead of with a vague "unrecognised payload".
//!
//! | order | kind | marker fields | then required |
//! |---|---|---|---|
//! | 1 | [`SourceKind::Native`] | `opx_signal_version` | a supported version, see below |
//! | 2 | [`SourceKind::CloudwatchAlarmAction`] | `alarmArn` and `alarmData` | `source == "aws.cloudwatch"` |
//! | 3 | [`SourceKind::CloudwatchEventbridge`] | `source == "aws.cloudwatch"` and `detail-type` | `detail-type == "CloudWatch Alarm State Change"` |
//! | 4 | [`SourceKind::CloudwatchSns`] | `Records` (Lambda's SNS event), or `Type` and `Message` (one notification) | each record `EventSource == "aws:sns"`; `Type == "Notification"`; `Message` a JSON string |
//! | 5 | [`SourceKind::Alertmanager`] | `version` and `alerts` | `version == "4"`, 1 to [`ALERTS_PER_PAYLOAD_MAX`] alerts |
//!
//! Anything else is refused at `$`, listing the recognised kinds.
//!
//! # What each kind yields
//!
//! The three CloudWatch forms carry the same alarm state change in different envelopes and
//! yield the same [`Signal`] apart from `source` and labels, so the same change arriving by
//! EventBridge and by SNS has the same [`SignalId`] and the same [`Signal::fingerprint`].
//!
//! | signal field | EventBridge | alarm action | SNS `Message` | Alertmanager alert |
//! |---|---|---|---|---|
//! | `alarm` | `resources[0]` | `alarmArn` | `AlarmArn` | `alertmanager:` + `fingerprint`, else `alertmanager:` + hash of `alertname` and the sorted labels |
//! | `alarm_name` | `detail.alarmName` | `alarmData.alarmName` | `AlarmName` | label `alertname` |
//! | `state` | `detail.state.value` | `alarmData.state.value` | `NewStateValue` | `status`: `firing` → ALARM, `resolved` → OK |
//! | `event_time` | `detail.state.timestamp` | `alarmData.state.timestamp` | `StateChangeTime` | firing: `startsAt`; resolved: `endsAt` |
//! | `environment` | `account` | `accountId` | `AWSAccountId` | label [`SourceConfig::environment_label`], else [`SourceConfig::default_environment`] |
//! | `service` | [`SourceConfig::cloudwatch_service`] | same | same | first non-empty label of [`SourceConfig::service_labels`] |
//! | `severity` | [`cloudwatch_severity`] | same | same | [`alertmanager_severity`] of label `severity` |
//! | `summary` | `detail.state.reason` | `alarmData.state.reason` | `NewStateReason` | annotation `summary`, else `description`, else empty |
//! | `labels` | `region` | `region` | `region` (from the ARN), `region_name` (`Region`) | the alert's own `labels` |
//!
//! The EventBridge envelope's `time` is when EventBridge saw the event, not when the alarm
//! changed state, so it is ignored: using it would give one state change two ids.
//!
//! CloudWatch payloads must agree with themselves, or they are refused (fail closed): the
//! alarm ARN must look like `arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME` (any `aws-*`
//! partition), its account must equal the payload's 12-digit account id, its name must
//! equal the alarm name, and its region must equal the envelope's `region` where there is
//! one. The SNS `AlarmArn` is required: without it an SNS copy could not be recognised as
//! the same alarm as its EventBridge twin.
//!
//! An empty Alertmanager label counts as absent, as it does in Prometheus: `env=""` falls
//! back to the default environment and `service=""` to the next service label.
//!
//! An Alertmanager `endsAt` of `0001-01-01T00:00:00Z` is Go's zero time: "not ended". A
//! resolved alert without a real `endsAt` is refused, because its state-change time, and
//! so its id, would be unknown. A firing alert's `endsAt` is ignored.
//!
//! # Native opx signal JSON, version 1
//!
//! Our own contract, for every source that is none of the above. Unknown fields are
//! refused (fail closed), as is any `opx_signal_version` other than those in
//! [`NATIVE_SIGNAL_VERSIONS`].
//!
//! ```json
//! {
//!   "opx_signal_version": 1,
//!   "alarm": "synthetic:checkout-canary",
//!   "alarm_name": "checkout canary",
//!   "state": "ALARM",
//!   "time": "2026-11-24T03:00:09.512Z",
//!   "environment": "prod",
//!   "service": "checkout",
//!   "severity": "SEV1",
//!   "summary": "canary failed 3 of 3 probes",
//!   "labels": { "probe": "eu-west-1" }
//! }
//! ```
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `opx_signal_version` | yes | the integer `1` |
//! | `alarm` | yes | the alarm's stable identity; with `state` and `time` it makes the signal id |
//! | `alarm_name` | no | human-readable name; defaults to `alarm` |
//! | `state` | yes | exactly `ALARM`, `OK` or `INSUFFICIENT_DATA` |
//! | `time` | yes | when the state changed, RFC 3339 (`Z`, `+HH:MM` or `+HHMM`) |
//! | `environment` | yes | e.g. `prod`; signals of different environments never correlate |
//! | `service` | yes | the service the alarm belongs to |
//! | `severity` | yes | exactly `SEV1` (worst), `SEV2`, `SEV3` or `SEV4` |
//! | `summary` | no | free text, cut to [`SUMMARY_LEN_MAX`] bytes |
//! | `labels` | no | an object of string values, at most [`LABEL_COUNT_MAX`] |
//!
//! # Checks every signal passes
//!
//! The event time must parse with [`EpochMs::parse`] and be plausible
//! ([`EpochMs::is_plausible_event_time`]). `alarm`, `alarm_name`, `environment` and
//! `service` must be non-empty, at most [`IDENTIFIER_LEN_MAX`] bytes and free of control
//! characters. At most [`LABEL_COUNT_MAX`] labels; label names non-empty and free of
//! control characters; names and values at most [`LABEL_LEN_MAX`] bytes. The summary is
//! cut to [`SUMMARY_LEN_MAX`] bytes at a character boundary. Any other string content,
//! including SQL or shell metacharacters, is data and is kept verbatim.
//!
//! [`SourceConfig`] is applied as given; call [`SourceConfig::validate`] once when loading
//! it. An invalid configuration cannot produce an invalid signal, because every derived
//! value passes the checks above, but its rejections would be blamed on the payloads.

use crate::glob::glob_match;
use crate::hash::{Digest, FieldHasher};
use crate::signal::{
    truncate_utf8, Severity, Signal, SignalId, SignalState, SourceKind, IDENTIFIER_LEN_MAX,
    LABEL_COUNT_MAX, LABEL_LEN_MAX, SIGNAL_SCHEMA_VERSION, SUMMARY_LEN_MAX,
};
use crate::time::{EpochMs, TimestampError, EVENT_TIME_MAX, EVENT_TIME_MIN};
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Largest payload accepted, in bytes (an SNS message is at most 256 KiB too).
pub const PAYLOAD_LEN_MAX: usize = 256 * 1024;
/// Most alerts in one Alertmanager webhook; set the receiver's `max_alerts` to at most this.
pub const ALERTS_PER_PAYLOAD_MAX: usize = 1000;
/// Most records in one Lambda SNS event (Lambda sends one; the bound is for hostile input).
pub const RECORDS_PER_PAYLOAD_MAX: usize = 100;
/// Most entries in [`SourceConfig::service_patterns`].
pub const SERVICE_PATTERNS_MAX: usize = 1000;
/// Most entries in [`SourceConfig::service_labels`].
pub const SERVICE_LABELS_MAX: usize = 16;
/// Most characters of a payload value quoted back in a rejection reason.
pub const QUOTED_CHARS_MAX: usize = 64;
/// Longest rejection reason, in bytes.
pub const REJECTION_REASON_LEN_MAX: usize = 1024;
/// The native signal versions this build understands.
pub const NATIVE_SIGNAL_VERSIONS: &[u64] = &[1];
/// The only Alertmanager webhook version understood.
pub const ALERTMANAGER_WEBHOOK_VERSION: &str = "4";
/// The `detail-type` of the only EventBridge CloudWatch event understood.
pub const CLOUDWATCH_STATE_CHANGE_DETAIL_TYPE: &str = "CloudWatch Alarm State Change";
/// The `source` of CloudWatch's EventBridge events and alarm-action payloads.
pub const CLOUDWATCH_EVENT_SOURCE: &str = "aws.cloudwatch";

/// Go's zero time, `0001-01-01T00:00:00Z`: Alertmanager's `endsAt` for "not ended".
const ALERTMANAGER_ZERO_TIME: EpochMs = EpochMs(-62_135_596_800_000);

/// The kinds named in a `$` rejection.
const RECOGNISED_KINDS: &str = "an EventBridge \"CloudWatch Alarm State Change\" event, a \
     CloudWatch alarm-action payload (alarmArn, alarmData), an SNS notification or Lambda SNS \
     event carrying a CloudWatch alarm, an Alertmanager webhook (version \"4\", alerts), or a \
     native opx signal (opx_signal_version)";

/// The fields of a native signal, version 1.
const NATIVE_FIELDS: [&str; 10] = [
    "opx_signal_version",
    "alarm",
    "alarm_name",
    "state",
    "time",
    "environment",
    "service",
    "severity",
    "summary",
    "labels",
];

/// How environment and service are derived where a payload does not say so directly.
///
/// Every derived signal depends on this configuration, so decisions record its
/// [`SourceConfig::fingerprint`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// The Alertmanager label that names the environment (default `env`).
    pub environment_label: String,
    /// The environment of an alert without that label (default `default`).
    pub default_environment: String,
    /// Alertmanager labels naming the service, first non-empty one wins (default
    /// `service`, `job`).
    pub service_labels: Vec<String>,
    /// CloudWatch alarm-name globs mapped to services, first match wins; an alarm that
    /// matches none belongs to the service named by its name up to the first `-`.
    pub service_patterns: Vec<ServicePattern>,
}

/// One CloudWatch alarm-name glob ([`glob_match`]: `*`, `?`) and the service it maps to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePattern {
    /// The glob the whole alarm name must match, case-sensitive.
    pub alarm_name_glob: String,
    /// The service of matching alarms.
    pub service: String,
}

impl Default for SourceConfig {
    fn default() -> SourceConfig {
        SourceConfig {
            environment_label: "env".to_owned(),
            default_environment: "default".to_owned(),
            service_labels: vec!["service".to_owned(), "job".to_owned()],
            service_patterns: Vec::new(),
        }
    }
}

impl SourceConfig {
    /// A digest over every field, in order, so a decision can record which configuration
    /// derived its signals' environment and service.
    pub fn fingerprint(&self) -> Digest {
        let mut hasher = FieldHasher::new("opx.source-config.v1")
            .str(&self.environment_label)
            .str(&self.default_environment)
            .u64(self.service_labels.len() as u64);
        for label in &self.service_labels {
            hasher = hasher.str(label);
        }
        hasher = hasher.u64(self.service_patterns.len() as u64);
        for pattern in &self.service_patterns {
            hasher = hasher.str(&pattern.alarm_name_glob).str(&pattern.service);
        }
        hasher.finish()
    }

    /// Checks the configuration once, at load time; the rejection's field is a path inside
    /// the configuration (`service_patterns[2].service`).
    pub fn validate(&self) -> Result<(), Rejection> {
        if let Some(problem) = label_name_problem(&self.environment_label) {
            return Err(Rejection::new("environment_label", problem));
        }
        if let Some(problem) = identifier_problem(&self.default_environment) {
            return Err(Rejection::new("default_environment", problem));
        }
        if self.service_labels.is_empty() || self.service_labels.len() > SERVICE_LABELS_MAX {
            return Err(Rejection::new(
                "service_labels",
                format!(
                    "expected 1 to {SERVICE_LABELS_MAX} label names, got {}",
                    self.service_labels.len()
                ),
            ));
        }
        for (index, label) in self.service_labels.iter().enumerate() {
            if let Some(problem) = label_name_problem(label) {
                return Err(Rejection::new(format!("service_labels[{index}]"), problem));
            }
        }
        if self.service_patterns.len() > SERVICE_PATTERNS_MAX {
            return Err(Rejection::new(
                "service_patterns",
                format!(
                    "expected at most {SERVICE_PATTERNS_MAX} patterns, got {}",
                    self.service_patterns.len()
                ),
            ));
        }
        for (index, pattern) in self.service_patterns.iter().enumerate() {
            if let Some(problem) = identifier_problem(&pattern.alarm_name_glob) {
                return Err(Rejection::new(
                    format!("service_patterns[{index}].alarm_name_glob"),
                    problem,
                ));
            }
            if let Some(problem) = identifier_problem(&pattern.service) {
                return Err(Rejection::new(
                    format!("service_patterns[{index}].service"),
                    problem,
                ));
            }
        }
        Ok(())
    }

    /// The service of a CloudWatch alarm: the service of the first pattern whose glob
    /// matches the whole name, else the name up to its first `-` (`orders-api-5xx` →
    /// `orders`), else the whole name.
    pub fn cloudwatch_service<'a>(&'a self, alarm_name: &'a str) -> &'a str {
        self.service_patterns
            .iter()
            .find(|pattern| glob_match(&pattern.alarm_name_glob, alarm_name))
            .map_or_else(
                || {
                    alarm_name
                        .split_once('-')
                        .map_or(alarm_name, |(head, _)| head)
                },
                |pattern| pattern.service.as_str(),
            )
    }
}

/// Why a payload, or one item of it, was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Rejection {
    /// The JSON path of the offending field (`detail.state.value`,
    /// `alerts[3].labels.alertname`, `Records[0].Sns.Message.AlarmArn`), or `$` for the
    /// whole payload.
    pub field: String,
    /// What was expected and what was found, at most [`REJECTION_REASON_LEN_MAX`] bytes.
    pub reason: String,
}

impl Rejection {
    /// A rejection of `field`; the reason is cut to [`REJECTION_REASON_LEN_MAX`] bytes.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Rejection {
        let reason = reason.into();
        Rejection {
            field: field.into(),
            reason: truncate_utf8(&reason, REJECTION_REASON_LEN_MAX).to_owned(),
        }
    }
}

/// A payload of a recognised kind, split into one result per item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedPayload {
    /// The kind of payload, as [`detect_kind`] saw it.
    pub source: SourceKind,
    /// One result per alert, SNS record or single alarm, in payload order.
    pub items: Vec<Result<Signal, Rejection>>,
}

/// Parses raw payload bytes; see the module documentation for what is accepted.
///
/// `Err` means nothing in the payload could be attributed to an item: it is larger than
/// [`PAYLOAD_LEN_MAX`], not UTF-8, not one JSON document without duplicate keys, of no
/// recognised kind, or an envelope that cannot be split into items.
pub fn parse_payload(bytes: &[u8], config: &SourceConfig) -> Result<ParsedPayload, Rejection> {
    if bytes.len() > PAYLOAD_LEN_MAX {
        return Err(Rejection::new(
            "$",
            format!(
                "expected at most {PAYLOAD_LEN_MAX} bytes, got {} bytes; send smaller batches",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|error| {
        Rejection::new(
            "$",
            format!(
                "expected UTF-8 text, found an invalid byte sequence at byte {}",
                error.valid_up_to()
            ),
        )
    })?;
    let value = parse_json_text(text).map_err(|reason| Rejection::new("$", reason))?;
    parse_value(&value, config)
}

/// Parses an already decoded JSON value; see [`parse_payload`].
///
/// Prefer [`parse_payload`] on received bytes: once a value is decoded, a duplicate key
/// has already been resolved silently and can no longer be refused.
pub fn parse_value(value: &Value, config: &SourceConfig) -> Result<ParsedPayload, Rejection> {
    let root = Node::root(value);
    let object = root.object()?;
    let Some(source) = detect_kind(value) else {
        let mut keys: Vec<String> = object.keys().take(8).map(|key| quote(key)).collect();
        if object.len() > keys.len() {
            keys.push(format!("and {} more", object.len() - keys.len()));
        }
        let found = if keys.is_empty() {
            "an empty object".to_owned()
        } else {
            format!("an object with the fields {}", keys.join(", "))
        };
        return Err(root.reject(format!("expected {RECOGNISED_KINDS}; got {found}")));
    };
    let items = match source {
        SourceKind::Native => vec![parse_native(&root)],
        SourceKind::CloudwatchAlarmAction => vec![parse_alarm_action(&root, config)],
        SourceKind::CloudwatchEventbridge => vec![parse_eventbridge(&root, config)],
        SourceKind::CloudwatchSns => parse_sns(&root, config)?,
        SourceKind::Alertmanager => parse_alertmanager(&root, config)?,
    };
    Ok(ParsedPayload { source, items })
}

/// The kind of a payload by its marker fields (see the module documentation), or `None`.
/// A detected kind is not yet a valid payload of that kind.
pub fn detect_kind(value: &Value) -> Option<SourceKind> {
    let object = value.as_object()?;
    let has = |key: &str| object.contains_key(key);
    let is_cloudwatch =
        object.get("source").and_then(Value::as_str) == Some(CLOUDWATCH_EVENT_SOURCE);
    if has("opx_signal_version") {
        Some(SourceKind::Native)
    } else if has("alarmArn") && has("alarmData") {
        Some(SourceKind::CloudwatchAlarmAction)
    } else if is_cloudwatch && has("detail-type") {
        Some(SourceKind::CloudwatchEventbridge)
    } else if has("Records") || (has("Type") && has("Message")) {
        Some(SourceKind::CloudwatchSns)
    } else if has("version") && has("alerts") {
        Some(SourceKind::Alertmanager)
    } else {
        None
    }
}

/// The severity of an Alertmanager alert from its `severity` label, compared
/// case-insensitively: `critical` → SEV1, `high` or `error` → SEV2, `warning` or `medium`
/// → SEV3, `sev1`…`sev4` as written, anything else or absent → SEV4.
pub fn alertmanager_severity(label: Option<&str>) -> Severity {
    let Some(label) = label else {
        return Severity::Sev4;
    };
    let is = |name: &str| label.eq_ignore_ascii_case(name);
    if is("critical") || is("sev1") {
        Severity::Sev1
    } else if is("high") || is("error") || is("sev2") {
        Severity::Sev2
    } else if is("warning") || is("medium") || is("sev3") {
        Severity::Sev3
    } else {
        Severity::Sev4
    }
}

/// The severity of a CloudWatch alarm: the token `sev1`…`sev4` (any case, delimited by
/// non-alphanumeric characters or the ends: `orders-5xx-sev1` yes, `sev10` and `mysev1`
/// no) in its name, else in its description, else SEV2. If one text carries several, the
/// worst wins, so an ambiguous alarm pages rather than sleeps.
pub fn cloudwatch_severity(alarm_name: &str, description: &str) -> Severity {
    severity_token(alarm_name)
        .or_else(|| severity_token(description))
        .unwrap_or(Severity::Sev2)
}

fn severity_token(text: &str) -> Option<Severity> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter_map(|token| {
            Severity::ALL
                .into_iter()
                .find(|severity| token.eq_ignore_ascii_case(severity.as_str()))
        })
        .min()
}

// ---------------------------------------------------------------------------------------
// JSON decoding that refuses duplicate keys.

/// Decodes one JSON document. serde_json's recursion limit (128) still applies, so deep
/// nesting is an error, not a stack overflow.
fn parse_json_text(text: &str) -> Result<Value, String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = StrictValue
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| {
            let message = error.to_string();
            format!(
                "expected one JSON document: {}",
                truncate_utf8(&message, 256)
            )
        })?;
    Ok(value)
}

/// A JSON value whose objects must not repeat a key: serde_json keeps the last of
/// duplicates silently, and two parsers disagreeing about which one counts is how a
/// payload says one thing to a validator and another to a decision.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("expected a finite number"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut elements = Vec::new();
        while let Some(element) = seq.next_element_seed(StrictValue)? {
            elements.push(element);
        }
        Ok(Value::Array(elements))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate key {}", quote(&key))));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

// ---------------------------------------------------------------------------------------
// Navigation with JSON paths, so every rejection names its field.

/// A JSON path as shown in rejections: `alerts[3].labels.alertname`; the root is `$`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct JsonPath(String);

impl JsonPath {
    fn root() -> JsonPath {
        JsonPath(String::new())
    }

    fn key(&self, key: &str) -> JsonPath {
        // Keys come from the payload: cut them so a hostile key cannot bloat a rejection.
        let key: String = key.chars().take(QUOTED_CHARS_MAX).collect();
        if self.0.is_empty() {
            JsonPath(key)
        } else {
            JsonPath(format!("{}.{key}", self.0))
        }
    }

    fn index(&self, index: usize) -> JsonPath {
        let base = if self.0.is_empty() {
            "$"
        } else {
            self.0.as_str()
        };
        JsonPath(format!("{base}[{index}]"))
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("$")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// A value and the path it was found at.
#[derive(Clone, Debug)]
struct Node<'v> {
    value: &'v Value,
    path: JsonPath,
}

impl<'v> Node<'v> {
    fn root(value: &'v Value) -> Node<'v> {
        Node {
            value,
            path: JsonPath::root(),
        }
    }

    fn reject(&self, reason: impl Into<String>) -> Rejection {
        Rejection::new(self.path.to_string(), reason)
    }

    fn object(&self) -> Result<&'v Map<String, Value>, Rejection> {
        self.value
            .as_object()
            .ok_or_else(|| self.reject(format!("expected an object, got {}", describe(self.value))))
    }

    fn array(&self) -> Result<&'v [Value], Rejection> {
        self.value
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| self.reject(format!("expected an array, got {}", describe(self.value))))
    }

    fn string(&self) -> Result<&'v str, Rejection> {
        self.value
            .as_str()
            .ok_or_else(|| self.reject(format!("expected a string, got {}", describe(self.value))))
    }

    /// A required field of this object.
    fn field(&self, key: &str) -> Result<Node<'v>, Rejection> {
        let path = self.path.key(key);
        match self.object()?.get(key) {
            Some(value) => Ok(Node { value, path }),
            None => Err(Rejection::new(
                path.to_string(),
                "required field is missing",
            )),
        }
    }

    /// An optional field of this object; `null` counts as absent.
    fn optional_field(&self, key: &str) -> Result<Option<Node<'v>>, Rejection> {
        let path = self.path.key(key);
        Ok(self
            .object()?
            .get(key)
            .filter(|value| !value.is_null())
            .map(|value| Node { value, path }))
    }

    /// An optional string field; `null` counts as absent.
    fn optional_string(&self, key: &str) -> Result<Option<&'v str>, Rejection> {
        self.optional_field(key)?
            .map(|node| node.string())
            .transpose()
    }

    fn element(&self, index: usize, value: &'v Value) -> Node<'v> {
        Node {
            value,
            path: self.path.index(index),
        }
    }
}

/// A value's type and a bounded excerpt of it, for rejection reasons.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) => format!("the number {}", bounded(&number.to_string())),
        Value::String(text) => format!("the string {}", quote(text)),
        Value::Array(elements) => format!("an array of length {}", elements.len()),
        Value::Object(fields) => format!("an object with {} field(s)", fields.len()),
    }
}

/// `text` quoted and escaped, cut to [`QUOTED_CHARS_MAX`] characters.
fn quote(text: &str) -> String {
    let mut chars = text.char_indices();
    match chars.nth(QUOTED_CHARS_MAX) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes in all)", &text[..cut], text.len()),
    }
}

fn bounded(text: &str) -> String {
    text.chars().take(QUOTED_CHARS_MAX).collect()
}

// ---------------------------------------------------------------------------------------
// Checks shared by every kind.

fn identifier_problem(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("expected a non-empty value, got an empty string".to_owned());
    }
    if text.len() > IDENTIFIER_LEN_MAX {
        return Some(format!(
            "expected at most {IDENTIFIER_LEN_MAX} bytes, got {} bytes: {}",
            text.len(),
            quote(text)
        ));
    }
    control_character_problem(text)
}

fn label_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("expected a non-empty label name".to_owned());
    }
    if name.len() > LABEL_LEN_MAX {
        return Some(format!(
            "expected a label name of at most {LABEL_LEN_MAX} bytes, got {} bytes: {}",
            name.len(),
            quote(name)
        ));
    }
    control_character_problem(name)
}

fn control_character_problem(text: &str) -> Option<String> {
    text.char_indices()
        .find(|(_, c)| c.is_control())
        .map(|(offset, c)| {
            format!(
                "expected no control characters, found U+{:04X} at byte {offset} of {}",
                u32::from(c),
                quote(text)
            )
        })
}

/// The string at `node`, checked as an identifier.
fn identifier<'v>(node: &Node<'v>) -> Result<&'v str, Rejection> {
    let text = node.string()?;
    match identifier_problem(text) {
        Some(problem) => Err(node.reject(problem)),
        None => Ok(text),
    }
}

/// The event time at `node`: a timestamp [`EpochMs::parse`] accepts, inside the plausible
/// range.
fn event_time(node: &Node<'_>) -> Result<EpochMs, Rejection> {
    let text = node.string()?;
    let time = EpochMs::parse(text).map_err(|error| match error {
        TimestampError::Malformed(_) => node.reject(error.to_string()),
        TimestampError::OutOfRange(_) => {
            node.reject(format!("expected a date and time that exist; {error}"))
        }
    })?;
    if !time.is_plausible_event_time() {
        return Err(node.reject(format!(
            "expected an event time from {EVENT_TIME_MIN} to {EVENT_TIME_MAX}, got {}",
            quote(text)
        )));
    }
    Ok(time)
}

/// An object of string labels, checked against the label limits.
fn string_labels(node: &Node<'_>) -> Result<BTreeMap<String, String>, Rejection> {
    let object = node.object()?;
    if object.len() > LABEL_COUNT_MAX {
        return Err(node.reject(format!(
            "expected at most {LABEL_COUNT_MAX} labels, got {}",
            object.len()
        )));
    }
    let mut labels = BTreeMap::new();
    for (name, value) in object {
        let label = Node {
            value,
            path: node.path.key(name),
        };
        if let Some(problem) = label_name_problem(name) {
            return Err(label.reject(problem));
        }
        let text = label.string()?;
        if text.len() > LABEL_LEN_MAX {
            return Err(label.reject(format!(
                "expected a label value of at most {LABEL_LEN_MAX} bytes, got {} bytes: {}",
                text.len(),
                quote(text)
            )));
        }
        labels.insert(name.clone(), text.to_owned());
    }
    Ok(labels)
}

/// Everything a signal is made of, validated; [`Draft::into_signal`] derives the id.
struct Draft<'a> {
    source: SourceKind,
    alarm: &'a str,
    alarm_name: &'a str,
    state: SignalState,
    event_time: EpochMs,
    environment: &'a str,
    service: &'a str,
    severity: Severity,
    summary: &'a str,
    labels: BTreeMap<String, String>,
}

impl Draft<'_> {
    fn into_signal(self) -> Signal {
        Signal {
            schema_version: SIGNAL_SCHEMA_VERSION,
            id: SignalId::derive(self.alarm, self.state, self.event_time),
            alarm: self.alarm.to_owned(),
            alarm_name: self.alarm_name.to_owned(),
            state: self.state,
            event_time: self.event_time,
            environment: self.environment.to_owned(),
            service: self.service.to_owned(),
            severity: self.severity,
            source: self.source,
            summary: truncate_utf8(self.summary, SUMMARY_LEN_MAX).to_owned(),
            labels: self.labels,
        }
    }
}

// ---------------------------------------------------------------------------------------
// CloudWatch: EventBridge, alarm action, SNS.

/// The parts of `arn:PARTITION:cloudwatch:REGION:ACCOUNT:alarm:NAME`.
struct AlarmArn<'a> {
    region: &'a str,
    account: &'a str,
    name: &'a str,
}

fn parse_alarm_arn(text: &str) -> Result<AlarmArn<'_>, String> {
    let shape = |what: &str| {
        format!(
            "expected a CloudWatch alarm ARN shaped arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME \
             ({what}), got {}",
            quote(text)
        )
    };
    // The name is everything after the sixth colon: alarm names may contain colons.
    let parts: Vec<&str> = text.splitn(7, ':').collect();
    let [prefix, partition, service, region, account, resource, name] = parts.as_slice() else {
        return Err(shape("too few parts"));
    };
    if *prefix != "arn" {
        return Err(shape("it must start with arn:"));
    }
    if *partition != "aws" && !partition.starts_with("aws-") {
        return Err(shape("the partition must be aws or aws-*"));
    }
    if *service != "cloudwatch" {
        return Err(shape("the service must be cloudwatch"));
    }
    if !is_region(region) {
        return Err(shape(
            "the region must be lowercase letters, digits and dashes",
        ));
    }
    if !is_account_id(account) {
        return Err(shape("the account must be 12 digits"));
    }
    if *resource != "alarm" || name.is_empty() {
        return Err(shape("the resource must be alarm:NAME"));
    }
    Ok(AlarmArn {
        region,
        account,
        name,
    })
}

fn is_region(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 32
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// Where each CloudWatch field sits in one of the three envelopes.
struct CloudwatchFields<'v> {
    source: SourceKind,
    alarm_arn: Node<'v>,
    account: Node<'v>,
    /// The envelope's short region (`us-east-1`), where it has one.
    region: Option<Node<'v>>,
    alarm_name: Node<'v>,
    state: Node<'v>,
    state_time: Node<'v>,
    reason: Option<&'v str>,
    description: Option<&'v str>,
    /// SNS's long region name (`US East (N. Virginia)`).
    region_name: Option<Node<'v>>,
}

fn cloudwatch_signal(
    fields: CloudwatchFields<'_>,
    config: &SourceConfig,
) -> Result<Signal, Rejection> {
    let alarm = identifier(&fields.alarm_arn)?;
    let arn = parse_alarm_arn(alarm).map_err(|reason| fields.alarm_arn.reject(reason))?;
    let account = fields.account.string()?;
    if !is_account_id(account) {
        return Err(fields.account.reject(format!(
            "expected a 12-digit AWS account id, got {}",
            quote(account)
        )));
    }
    if arn.account != account {
        return Err(fields.alarm_arn.reject(format!(
            "expected the alarm ARN's account to equal {} ({}), got {}; the payload disagrees \
             with itself",
            fields.account.path,
            quote(account),
            quote(arn.account)
        )));
    }
    if let Some(region_node) = &fields.region {
        let region = region_node.string()?;
        if region != arn.region {
            return Err(region_node.reject(format!(
                "expected the alarm ARN's region {}, got {}; the payload disagrees with itself",
                quote(arn.region),
                quote(region)
            )));
        }
    }
    let alarm_name = identifier(&fields.alarm_name)?;
    if alarm_name != arn.name {
        return Err(fields.alarm_name.reject(format!(
            "expected the alarm name in the alarm ARN, {}, got {}; the payload disagrees with \
             itself",
            quote(arn.name),
            quote(alarm_name)
        )));
    }
    let state = cloudwatch_state(&fields.state)?;
    let event_time = event_time(&fields.state_time)?;
    let service = config.cloudwatch_service(alarm_name);
    if let Some(problem) = identifier_problem(service) {
        return Err(fields.alarm_name.reject(format!(
            "the service derived from this alarm name, {}, is unusable ({problem}); map the \
             name in service_patterns",
            quote(service)
        )));
    }
    let mut labels = BTreeMap::new();
    labels.insert("region".to_owned(), arn.region.to_owned());
    if let Some(node) = &fields.region_name {
        let region_name = node.string()?;
        if region_name.len() > LABEL_LEN_MAX {
            return Err(node.reject(format!(
                "expected at most {LABEL_LEN_MAX} bytes, got {}",
                region_name.len()
            )));
        }
        labels.insert("region_name".to_owned(), region_name.to_owned());
    }
    let description = fields.description.unwrap_or("");
    Ok(Draft {
        source: fields.source,
        alarm,
        alarm_name,
        state,
        event_time,
        environment: account,
        service,
        severity: cloudwatch_severity(alarm_name, description),
        summary: fields.reason.unwrap_or(""),
        labels,
    }
    .into_signal())
}

fn cloudwatch_state(node: &Node<'_>) -> Result<SignalState, Rejection> {
    match node.string()? {
        "ALARM" => Ok(SignalState::Alarm),
        "OK" => Ok(SignalState::Ok),
        "INSUFFICIENT_DATA" => Ok(SignalState::InsufficientData),
        other => Err(node.reject(format!(
            "expected ALARM, OK or INSUFFICIENT_DATA, got {}",
            quote(other)
        ))),
    }
}

fn parse_eventbridge(root: &Node<'_>, config: &SourceConfig) -> Result<Signal, Rejection> {
    let detail_type = root.field("detail-type")?;
    if detail_type.string()? != CLOUDWATCH_STATE_CHANGE_DETAIL_TYPE {
        return Err(detail_type.reject(format!(
            "expected {CLOUDWATCH_STATE_CHANGE_DETAIL_TYPE:?}, got {}; route only alarm state \
             changes to opx",
            describe(detail_type.value)
        )));
    }
    let resources = root.field("resources")?;
    let Some(first) = resources.array()?.first() else {
        return Err(
            resources.reject("expected the alarm ARN as the first element, got an empty array")
        );
    };
    let detail = root.field("detail")?;
    let state = detail.field("state")?;
    let description = match detail.optional_field("configuration")? {
        Some(configuration) => configuration.optional_string("description")?,
        None => None,
    };
    cloudwatch_signal(
        CloudwatchFields {
            source: SourceKind::CloudwatchEventbridge,
            alarm_arn: resources.element(0, first),
            account: root.field("account")?,
            region: Some(root.field("region")?),
            alarm_name: detail.field("alarmName")?,
            state: state.field("value")?,
            state_time: state.field("timestamp")?,
            reason: state.optional_string("reason")?,
            description,
            region_name: None,
        },
        config,
    )
}

fn parse_alarm_action(root: &Node<'_>, config: &SourceConfig) -> Result<Signal, Rejection> {
    let source = root.field("source")?;
    if source.string()? != CLOUDWATCH_EVENT_SOURCE {
        return Err(source.reject(format!(
            "expected {CLOUDWATCH_EVENT_SOURCE:?}, got {}",
            describe(source.value)
        )));
    }
    let alarm_data = root.field("alarmData")?;
    let state = alarm_data.field("state")?;
    let description = match alarm_data.optional_field("configuration")? {
        Some(configuration) => configuration.optional_string("description")?,
        None => None,
    };
    cloudwatch_signal(
        CloudwatchFields {
            source: SourceKind::CloudwatchAlarmAction,
            alarm_arn: root.field("alarmArn")?,
            account: root.field("accountId")?,
            region: Some(root.field("region")?),
            alarm_name: alarm_data.field("alarmName")?,
            state: state.field("value")?,
            state_time: state.field("timestamp")?,
            reason: state.optional_string("reason")?,
            description,
            region_name: None,
        },
        config,
    )
}

/// An SNS payload: a Lambda SNS event (one item per record) or one notification.
fn parse_sns(
    root: &Node<'_>,
    config: &SourceConfig,
) -> Result<Vec<Result<Signal, Rejection>>, Rejection> {
    if root.optional_field("Records")?.is_none() {
        return Ok(vec![sns_notification(root, config)]);
    }
    let records = root.field("Records")?;
    let list = records.array()?;
    if list.is_empty() || list.len() > RECORDS_PER_PAYLOAD_MAX {
        return Err(records.reject(format!(
            "expected 1 to {RECORDS_PER_PAYLOAD_MAX} records, got {}",
            list.len()
        )));
    }
    Ok(list
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let record = records.element(index, value);
            let event_source = record.field("EventSource")?;
            if event_source.string()? != "aws:sns" {
                return Err(event_source.reject(format!(
                    "expected \"aws:sns\", got {}",
                    describe(event_source.value)
                )));
            }
            sns_notification(&record.field("Sns")?, config)
        })
        .collect())
}

/// One SNS notification whose `Message` is a CloudWatch alarm as a JSON string.
fn sns_notification(notification: &Node<'_>, config: &SourceConfig) -> Result<Signal, Rejection> {
    let kind = notification.field("Type")?;
    if kind.string()? != "Notification" {
        return Err(kind.reject(format!(
            "expected \"Notification\", got {}; confirm SNS subscriptions out of band",
            describe(kind.value)
        )));
    }
    let message_node = notification.field("Message")?;
    let text = message_node.string()?;
    if text.len() > PAYLOAD_LEN_MAX {
        return Err(message_node.reject(format!(
            "expected at most {PAYLOAD_LEN_MAX} bytes, got {} bytes",
            text.len()
        )));
    }
    let message = parse_json_text(text).map_err(|reason| {
        message_node.reject(format!(
            "expected a CloudWatch alarm as a JSON string: {reason}"
        ))
    })?;
    let message = Node {
        value: &message,
        path: message_node.path.clone(),
    };
    message.object()?;
    cloudwatch_signal(
        CloudwatchFields {
            source: SourceKind::CloudwatchSns,
            alarm_arn: message.field("AlarmArn")?,
            account: message.field("AWSAccountId")?,
            region: None,
            alarm_name: message.field("AlarmName")?,
            state: message.field("NewStateValue")?,
            state_time: message.field("StateChangeTime")?,
            reason: message.optional_string("NewStateReason")?,
            description: message.optional_string("AlarmDescription")?,
            region_name: message.optional_field("Region")?,
        },
        config,
    )
}

// ---------------------------------------------------------------------------------------
// Alertmanager webhook, version 4.

fn parse_alertmanager(
    root: &Node<'_>,
    config: &SourceConfig,
) -> Result<Vec<Result<Signal, Rejection>>, Rejection> {
    let version = root.field("version")?;
    if version.value.as_str() != Some(ALERTMANAGER_WEBHOOK_VERSION) {
        return Err(version.reject(format!(
            "expected {ALERTMANAGER_WEBHOOK_VERSION:?} (Alertmanager webhook version 4), got {}",
            describe(version.value)
        )));
    }
    let alerts = root.field("alerts")?;
    let list = alerts.array()?;
    if list.is_empty() || list.len() > ALERTS_PER_PAYLOAD_MAX {
        return Err(alerts.reject(format!(
            "expected 1 to {ALERTS_PER_PAYLOAD_MAX} alerts, got {}; set max_alerts on the \
             webhook receiver",
            list.len()
        )));
    }
    Ok(list
        .iter()
        .enumerate()
        .map(|(index, value)| parse_alert(&alerts.element(index, value), config))
        .collect())
}

fn parse_alert(alert: &Node<'_>, config: &SourceConfig) -> Result<Signal, Rejection> {
    let status = alert.field("status")?;
    let state = match status.string()? {
        "firing" => SignalState::Alarm,
        "resolved" => SignalState::Ok,
        other => {
            return Err(status.reject(format!("expected firing or resolved, got {}", quote(other))))
        }
    };
    let labels_node = alert.field("labels")?;
    let labels = string_labels(&labels_node)?;
    let label = |name: &str| {
        labels
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    };

    let alertname_path = labels_node.path.key("alertname");
    let alarm_name = label("alertname")
        .ok_or_else(|| Rejection::new(alertname_path.to_string(), "required label is missing"))?;
    if let Some(problem) = identifier_problem(alarm_name) {
        return Err(Rejection::new(alertname_path.to_string(), problem));
    }

    let alarm = match alert.optional_field("fingerprint")? {
        Some(node) if !node.string()?.is_empty() => {
            let fingerprint = identifier(&node)?;
            format!("alertmanager:{fingerprint}")
        }
        _ => {
            let mut hasher = FieldHasher::new("opx.alertmanager-alarm.v1")
                .str(alarm_name)
                .u64(labels.len() as u64);
            for (name, value) in &labels {
                hasher = hasher.str(name).str(value);
            }
            format!("alertmanager:{}", hasher.finish().to_hex())
        }
    };

    let event_time = match state {
        SignalState::Ok => resolved_time(alert)?,
        _ => event_time(&alert.field("startsAt")?)?,
    };

    let environment_path = labels_node.path.key(&config.environment_label);
    let environment = match label(&config.environment_label) {
        Some(environment) => {
            if let Some(problem) = identifier_problem(environment) {
                return Err(Rejection::new(environment_path.to_string(), problem));
            }
            environment
        }
        None => {
            if let Some(problem) = identifier_problem(&config.default_environment) {
                return Err(Rejection::new(
                    environment_path.to_string(),
                    format!(
                        "label is absent and the configured default_environment is unusable: \
                         {problem}"
                    ),
                ));
            }
            config.default_environment.as_str()
        }
    };

    let service_label = config
        .service_labels
        .iter()
        .find(|name| label(name).is_some());
    let Some(service_label) = service_label else {
        let first = config
            .service_labels
            .first()
            .map_or("service", String::as_str);
        return Err(Rejection::new(
            labels_node.path.key(first).to_string(),
            format!(
                "expected one of the service labels [{}], found none; add one to the alert \
                 or configure service_labels",
                config
                    .service_labels
                    .iter()
                    .map(|name| quote(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let service = label(service_label).unwrap_or_default();
    if let Some(problem) = identifier_problem(service) {
        return Err(Rejection::new(
            labels_node.path.key(service_label).to_string(),
            problem,
        ));
    }

    let summary = match alert.optional_field("annotations")? {
        Some(annotations) => {
            let summary = annotations
                .optional_string("summary")?
                .filter(|text| !text.is_empty());
            match summary {
                Some(summary) => summary,
                None => annotations.optional_string("description")?.unwrap_or(""),
            }
        }
        None => "",
    };

    let severity = alertmanager_severity(label("severity"));
    Ok(Draft {
        source: SourceKind::Alertmanager,
        alarm: &alarm,
        alarm_name,
        state,
        event_time,
        environment,
        service,
        severity,
        summary,
        labels: labels.clone(),
    }
    .into_signal())
}

/// The state-change time of a resolved alert: its `endsAt`, which must be a real time.
fn resolved_time(alert: &Node<'_>) -> Result<EpochMs, Rejection> {
    let not_ended = "expected the time the alert resolved, got no end time (Alertmanager's \
                     zero time 0001-01-01T00:00:00Z means not ended)";
    let Some(ends_at) = alert.optional_field("endsAt")? else {
        return Err(Rejection::new(
            alert.path.key("endsAt").to_string(),
            not_ended,
        ));
    };
    let text = ends_at.string()?;
    if EpochMs::parse(text) == Ok(ALERTMANAGER_ZERO_TIME) || text.is_empty() {
        return Err(ends_at.reject(not_ended));
    }
    event_time(&ends_at)
}

// ---------------------------------------------------------------------------------------
// Native opx signal, version 1.

fn parse_native(root: &Node<'_>) -> Result<Signal, Rejection> {
    // The version first: a newer payload's new fields should be reported as a version
    // this build does not support, not as unknown fields.
    let version = root.field("opx_signal_version")?;
    let supported = version
        .value
        .as_u64()
        .filter(|number| NATIVE_SIGNAL_VERSIONS.contains(number));
    if supported.is_none() {
        let versions: Vec<String> = NATIVE_SIGNAL_VERSIONS.iter().map(u64::to_string).collect();
        return Err(version.reject(format!(
            "expected a supported version (the integer {}), got {}",
            versions.join(" or "),
            describe(version.value)
        )));
    }
    if let Some(unknown) = root
        .object()?
        .keys()
        .find(|key| !NATIVE_FIELDS.contains(&key.as_str()))
    {
        return Err(Rejection::new(
            root.path.key(unknown).to_string(),
            format!(
                "expected only the fields of a native signal v1 ({}), got an unknown field; remove it or raise opx_signal_version when the contract grows",
                NATIVE_FIELDS.join(", ")
            ),
        ));
    }

    let alarm = identifier(&root.field("alarm")?)?;
    let alarm_name = match root.optional_field("alarm_name")? {
        Some(node) => identifier(&node)?,
        None => alarm,
    };
    let state_node = root.field("state")?;
    let state = cloudwatch_state(&state_node)?;
    let event_time = event_time(&root.field("time")?)?;
    let environment = identifier(&root.field("environment")?)?;
    let service = identifier(&root.field("service")?)?;
    let severity_node = root.field("severity")?;
    let severity = Severity::ALL
        .into_iter()
        .find(|severity| severity_node.value.as_str() == Some(severity.as_str()))
        .ok_or_else(|| {
            severity_node.reject(format!(
                "expected exactly SEV1, SEV2, SEV3 or SEV4, got {}",
                describe(severity_node.value)
            ))
        })?;
    let summary = root.optional_string("summary")?.unwrap_or("");
    let labels = match root.optional_field("labels")? {
        Some(node) => string_labels(&node)?,
        None => BTreeMap::new(),
    };
    Ok(Draft {
        source: SourceKind::Native,
        alarm,
        alarm_name,
        state,
        event_time,
        environment,
        service,
        severity,
        summary,
        labels,
    }
    .into_signal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_strict_fields() {
        let config: SourceConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, SourceConfig::default());
        assert_eq!(config.environment_label, "env");
        assert_eq!(config.default_environment, "default");
        assert_eq!(config.service_labels, ["service", "job"]);
        assert!(config.validate().is_ok());
        assert!(serde_json::from_str::<SourceConfig>(r#"{"enviroment_label":"x"}"#).is_err());
    }

    #[test]
    fn config_fingerprint_covers_every_field() {
        let base = SourceConfig::default();
        let pattern = |glob: &str, service: &str| ServicePattern {
            alarm_name_glob: glob.to_owned(),
            service: service.to_owned(),
        };
        let variants = [
            SourceConfig {
                environment_label: "stage".into(),
                ..base.clone()
            },
            SourceConfig {
                default_environment: "prod".into(),
                ..base.clone()
            },
            SourceConfig {
                service_labels: vec!["job".into(), "service".into()],
                ..base.clone()
            },
            SourceConfig {
                service_patterns: vec![pattern("a*", "b")],
                ..base.clone()
            },
            SourceConfig {
                service_patterns: vec![pattern("a", "*b")],
                ..base.clone()
            },
            SourceConfig {
                service_labels: vec!["servicejob".into()],
                ..base.clone()
            },
        ];
        assert_eq!(base.fingerprint(), SourceConfig::default().fingerprint());
        let mut seen = vec![base.fingerprint()];
        for variant in variants {
            let fingerprint = variant.fingerprint();
            assert!(!seen.contains(&fingerprint), "{variant:?}");
            seen.push(fingerprint);
        }
    }

    #[test]
    fn config_validation_names_the_field() {
        let cases: [(SourceConfig, &str); 5] = [
            (
                SourceConfig {
                    environment_label: String::new(),
                    ..Default::default()
                },
                "environment_label",
            ),
            (
                SourceConfig {
                    default_environment: "a\nb".into(),
                    ..Default::default()
                },
                "default_environment",
            ),
            (
                SourceConfig {
                    service_labels: vec![],
                    ..Default::default()
                },
                "service_labels",
            ),
            (
                SourceConfig {
                    service_labels: vec!["ok".into(), String::new()],
                    ..Default::default()
                },
                "service_labels[1]",
            ),
            (
                SourceConfig {
                    service_patterns: vec![ServicePattern {
                        alarm_name_glob: "x*".into(),
                        service: String::new(),
                    }],
                    ..Default::default()
                },
                "service_patterns[0].service",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(
                config.validate().map_err(|r| r.field),
                Err(field.to_owned())
            );
        }
    }

    #[test]
    fn cloudwatch_service_mapping() {
        let config = SourceConfig {
            service_patterns: vec![
                ServicePattern {
                    alarm_name_glob: "Checkout*".into(),
                    service: "checkout".into(),
                },
                ServicePattern {
                    alarm_name_glob: "*".into(),
                    service: "catch-all".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(config.cloudwatch_service("CheckoutLatencyP99"), "checkout");
        assert_eq!(config.cloudwatch_service("orders-api-5xx"), "catch-all");
        let plain = SourceConfig::default();
        for (name, service) in [
            ("orders-api-5xx", "orders"),
            ("orders", "orders"),
            ("-leading", ""),
            ("a-b-c", "a"),
        ] {
            assert_eq!(plain.cloudwatch_service(name), service, "{name}");
        }
    }

    #[test]
    fn severity_tokens_are_delimited() {
        let cases = [
            ("orders-api-5xx-sev1", "", Severity::Sev1),
            ("orders-api-5xx", "page: SEV3", Severity::Sev3),
            ("orders-sev10", "", Severity::Sev2),
            ("mysev1", "", Severity::Sev2),
            ("sev4", "sev1", Severity::Sev4),
            ("x_sev3", "", Severity::Sev3),
            ("x.Sev3.y", "", Severity::Sev3),
            ("a-sev3-sev1", "", Severity::Sev1),
            ("", "", Severity::Sev2),
            ("ésev1", "", Severity::Sev2),
        ];
        for (name, description, expected) in cases {
            assert_eq!(
                cloudwatch_severity(name, description),
                expected,
                "{name:?} {description:?}"
            );
        }
    }

    #[test]
    fn alarm_arns_are_checked_part_by_part() {
        let good = parse_alarm_arn("arn:aws:cloudwatch:us-east-1:123456789012:alarm:a:b").unwrap();
        assert_eq!(
            (good.region, good.account, good.name),
            ("us-east-1", "123456789012", "a:b")
        );
        assert!(parse_alarm_arn("arn:aws-cn:cloudwatch:cn-north-1:123456789012:alarm:x").is_ok());
        for bad in [
            "",
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:",
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm",
            "arn:gcp:cloudwatch:us-east-1:123456789012:alarm:x",
            "arn:aws:sns:us-east-1:123456789012:alarm:x",
            "arn:aws:cloudwatch:US-EAST-1:123456789012:alarm:x",
            "arn:aws:cloudwatch:us-east-1:12345678901:alarm:x",
            "arn:aws:cloudwatch:us-east-1:123456789012:dashboard:x",
            "urn:aws:cloudwatch:us-east-1:123456789012:alarm:x",
        ] {
            assert!(parse_alarm_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(parse_json_text(r#"{"a":1,"b":{"c":1}}"#).is_ok());
        for text in [r#"{"a":1,"a":1}"#, r#"{"x":[{"c":1,"c":2}]}"#] {
            let reason = parse_json_text(text).unwrap_err();
            assert!(reason.contains("duplicate key"), "{reason}");
        }
    }

    #[test]
    fn quoting_is_bounded() {
        assert_eq!(quote("abc"), "\"abc\"");
        let long = "x".repeat(10_000);
        let quoted = quote(&long);
        assert!(quoted.len() < 120, "{quoted}");
        assert!(quoted.contains("10000 bytes"));
        assert!(Rejection::new("f", "y".repeat(5000)).reason.len() <= REJECTION_REASON_LEN_MAX);
        assert_eq!(JsonPath::root().key(&long).0.len(), QUOTED_CHARS_MAX);
    }

    #[test]
    fn paths_render_like_the_documentation() {
        let path = JsonPath::root()
            .key("alerts")
            .index(3)
            .key("labels")
            .key("alertname");
        assert_eq!(path.to_string(), "alerts[3].labels.alertname");
        assert_eq!(JsonPath::root().to_string(), "$");
        assert_eq!(JsonPath::root().index(0).to_string(), "$[0]");
    }

    #[test]
    fn rejection_displays_field_then_reason() {
        let rejection = Rejection::new("detail.state.value", "expected ALARM");
        assert_eq!(rejection.to_string(), "detail.state.value: expected ALARM");
    }

    #[test]
    fn zero_time_constant_is_gos_zero_time() {
        assert_eq!(
            EpochMs::parse("0001-01-01T00:00:00Z"),
            Ok(ALERTMANAGER_ZERO_TIME)
        );
    }
}
