//! The canonical signal: one state change of one alarm, whatever source it came from.
//!
//! Every source parser in [`crate::source`] produces this one type. A signal's id is a
//! SHA-256 over the canonical identity of the state change (alarm, new state, state-change
//! time), never over raw bytes, so a redelivery, a resend with a changed annotation, or one
//! alarm arriving by both EventBridge and SNS is the same signal.

use crate::hash::{Digest, FieldHasher};
use crate::time::EpochMs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The schema version of [`Signal`] as stored in events.
pub const SIGNAL_SCHEMA_VERSION: u32 = 1;
/// Longest alarm identity, environment, service or alarm name accepted, in bytes.
pub const IDENTIFIER_LEN_MAX: usize = 512;
/// Longest summary kept on a signal, in bytes; longer text is cut at a character boundary.
pub const SUMMARY_LEN_MAX: usize = 2048;
/// Most labels kept on one signal.
pub const LABEL_COUNT_MAX: usize = 64;
/// Longest label name or value, in bytes.
pub const LABEL_LEN_MAX: usize = 1024;

/// Incident severity; `SEV1` is the worst. Ordered so that `Sev1 < Sev4`, i.e. "worse is
/// smaller": `min` of a set is its worst member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Worst: customer-facing outage.
    #[serde(rename = "SEV1")]
    Sev1,
    /// Major degradation.
    #[serde(rename = "SEV2")]
    Sev2,
    /// Minor degradation.
    #[serde(rename = "SEV3")]
    Sev3,
    /// Informational.
    #[serde(rename = "SEV4")]
    Sev4,
}

impl Severity {
    /// All severities, worst first.
    pub const ALL: [Severity; 4] = [
        Severity::Sev1,
        Severity::Sev2,
        Severity::Sev3,
        Severity::Sev4,
    ];

    /// The exact text used in every output: `SEV1` … `SEV4`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev1 => "SEV1",
            Severity::Sev2 => "SEV2",
            Severity::Sev3 => "SEV3",
            Severity::Sev4 => "SEV4",
        }
    }

    /// Whether `self` is as bad as or worse than `other`.
    pub fn at_least(self, other: Severity) -> bool {
        self <= other
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    /// Accepts `SEV1`…`SEV4` in any case.
    fn from_str(text: &str) -> Result<Severity, String> {
        match text.to_ascii_uppercase().as_str() {
            "SEV1" => Ok(Severity::Sev1),
            "SEV2" => Ok(Severity::Sev2),
            "SEV3" => Ok(Severity::Sev3),
            "SEV4" => Ok(Severity::Sev4),
            _ => Err(format!(
                "expected one of SEV1, SEV2, SEV3, SEV4, got {text:?}"
            )),
        }
    }
}

/// The state an alarm changed into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignalState {
    /// CloudWatch `ALARM`, Alertmanager `firing`: may become a detection.
    Alarm,
    /// CloudWatch `OK`, Alertmanager `resolved`: a recovery, never a detection.
    Ok,
    /// CloudWatch `INSUFFICIENT_DATA`: recorded, not a detection by default.
    InsufficientData,
}

impl SignalState {
    /// The canonical text: `ALARM`, `OK`, `INSUFFICIENT_DATA`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalState::Alarm => "ALARM",
            SignalState::Ok => "OK",
            SignalState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl fmt::Display for SignalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of payload a signal was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// EventBridge "CloudWatch Alarm State Change" event.
    CloudwatchEventbridge,
    /// The payload a CloudWatch alarm action sends when it invokes a Lambda function.
    CloudwatchAlarmAction,
    /// The SNS notification a CloudWatch alarm publishes.
    CloudwatchSns,
    /// One alert of a Prometheus Alertmanager webhook (version 4).
    Alertmanager,
    /// The native opx signal JSON.
    Native,
}

impl SourceKind {
    /// The canonical text, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::CloudwatchEventbridge => "cloudwatch_eventbridge",
            SourceKind::CloudwatchAlarmAction => "cloudwatch_alarm_action",
            SourceKind::CloudwatchSns => "cloudwatch_sns",
            SourceKind::Alertmanager => "alertmanager",
            SourceKind::Native => "native",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signal id: SHA-256 over the canonical identity of one state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignalId(pub Digest);

impl SignalId {
    /// Derives the id from the identity fields: the alarm, the state it changed into, and
    /// the time of the change. Nothing else (annotations, reason text, transport) enters.
    pub fn derive(alarm: &str, state: SignalState, state_changed_at: EpochMs) -> SignalId {
        SignalId(
            FieldHasher::new("opx.signal.v1")
                .str(alarm)
                .str(state.as_str())
                .i64(state_changed_at.0)
                .finish(),
        )
    }
}

impl fmt::Display for SignalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One canonical state change of one alarm.
///
/// Field order is the serialised order; the struct is stored as canonical JSON bytes in the
/// `SignalAccepted` event and never re-serialised for hashing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// [`SIGNAL_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Derived with [`SignalId::derive`] from `alarm`, `state` and `event_time`.
    pub id: SignalId,
    /// The alarm's identity: a CloudWatch alarm ARN, `alertmanager:<fingerprint>`, or a
    /// native signal's `alarm` field.
    pub alarm: String,
    /// Human-readable alarm name (CloudWatch alarm name, Alertmanager `alertname`).
    pub alarm_name: String,
    /// The state the alarm changed into.
    pub state: SignalState,
    /// When the state changed, per the source (never when opx received it).
    pub event_time: EpochMs,
    /// The environment: AWS account id for CloudWatch, a label for Alertmanager.
    pub environment: String,
    /// The service the alarm belongs to.
    pub service: String,
    /// Severity as derived from the source.
    pub severity: Severity,
    /// Where the payload came from. Not part of the identity.
    pub source: SourceKind,
    /// Reason or summary text, at most [`SUMMARY_LEN_MAX`] bytes. Not part of the identity.
    pub summary: String,
    /// Labels (Alertmanager labels, native labels; for CloudWatch `region`), sorted.
    pub labels: BTreeMap<String, String>,
}

impl Signal {
    /// The fields that must agree for two deliveries with the same id to be duplicates
    /// rather than a conflict: identity plus everything a decision reads. Transport
    /// (`source`), summary text and labels a rule does not read are left out on purpose so
    /// that an Alertmanager resend with a new annotation, or EventBridge and SNS copies of
    /// one alarm, are duplicates.
    pub fn fingerprint(&self) -> Digest {
        FieldHasher::new("opx.signal-fingerprint.v1")
            .digest(&self.id.0)
            .str(&self.alarm)
            .str(self.state.as_str())
            .i64(self.event_time.0)
            .str(&self.environment)
            .str(&self.service)
            .str(self.severity.as_str())
            .finish()
    }
}

/// Cuts `text` to at most `len_max` bytes at a character boundary.
pub fn truncate_utf8(text: &str, len_max: usize) -> &str {
    if text.len() <= len_max {
        return text;
    }
    let mut end = len_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_orders_worst_first_and_prints_exactly() {
        assert!(Severity::Sev1 < Severity::Sev4);
        assert!(Severity::Sev1.at_least(Severity::Sev2));
        assert!(!Severity::Sev3.at_least(Severity::Sev2));
        assert_eq!(
            serde_json::to_string(&Severity::Sev2).ok().as_deref(),
            Some("\"SEV2\"")
        );
        assert_eq!("sev3".parse::<Severity>(), Ok(Severity::Sev3));
        assert!("SEV5".parse::<Severity>().is_err());
    }

    #[test]
    fn signal_id_depends_only_on_identity() {
        let a = SignalId::derive("arn:a", SignalState::Alarm, EpochMs(1));
        assert_eq!(a, SignalId::derive("arn:a", SignalState::Alarm, EpochMs(1)));
        assert_ne!(a, SignalId::derive("arn:a", SignalState::Ok, EpochMs(1)));
        assert_ne!(a, SignalId::derive("arn:a", SignalState::Alarm, EpochMs(2)));
        assert_ne!(a, SignalId::derive("arn:b", SignalState::Alarm, EpochMs(1)));
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
