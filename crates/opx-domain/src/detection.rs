//! Detections: a signal that a versioned rule matched.
//!
//! A detection records which rule (id and semantic version) matched and the content hash
//! of the whole rule set that was active, so replay can re-derive it with the same rules.

use crate::hash::{Digest, FieldHasher};
use crate::rules::RuleSet;
use crate::signal::{Severity, Signal, SignalId, SignalState};
use crate::time::EpochMs;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A detection id: SHA-256 over the signal id, the rule id and version, and the rule-set hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DetectionId(pub Digest);

impl DetectionId {
    /// Derives the id of the detection of `signal` by a rule of a rule set.
    pub fn derive(
        signal: &SignalId,
        rule_id: &str,
        rule_version: &str,
        ruleset_hash: &Digest,
    ) -> DetectionId {
        DetectionId(
            FieldHasher::new("opx.detection.v1")
                .digest(&signal.0)
                .str(rule_id)
                .str(rule_version)
                .digest(ruleset_hash)
                .finish(),
        )
    }
}

impl fmt::Display for DetectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A signal that a rule matched: the unit of evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    /// Derived with [`DetectionId::derive`].
    pub id: DetectionId,
    /// The signal that was detected.
    pub signal_id: SignalId,
    /// The signal's alarm identity (distinct alarms are counted by this).
    pub alarm: String,
    /// The signal's alarm name, for people.
    pub alarm_name: String,
    /// Correlation key part 1.
    pub environment: String,
    /// Correlation key part 2.
    pub service: String,
    /// The rule's output severity (the signal's unless the rule overrides it).
    pub severity: Severity,
    /// The signal's event time.
    pub event_time: EpochMs,
    /// The matching rule's id.
    pub rule_id: String,
    /// The matching rule's semantic version, as written.
    pub rule_version: String,
    /// The content hash of the rule set the rule belongs to.
    pub ruleset_hash: Digest,
    /// The rule says one firing alarm it matches is enough to promote (a site-down canary).
    pub promotes_alone: bool,
}

/// What detection made of one signal: a detection, or the reason there is none. Every
/// signal gets an outcome, so the record shows why a signal did not count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "one short-lived outcome per signal; a Box would only make matching on it clumsier"
)]
pub enum DetectionOutcome {
    /// A rule matched.
    Detected(Detection),
    /// No detection, and why.
    NotDetected(NotDetectedReason),
}

/// Why a signal did not become a detection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NotDetectedReason {
    /// The signal is an OK / resolved state change: a recovery, recorded on the timeline,
    /// never a detection.
    Recovery,
    /// The signal is an `INSUFFICIENT_DATA` state change: recorded, not a detection.
    InsufficientData,
    /// A silence active at the signal's event time matched it.
    Silenced {
        /// The id of the first silence (in file order) that matched.
        silence_id: String,
    },
    /// The signal is firing but no rule of the set matched it.
    NoRuleMatched,
}

/// Decides what `rules` make of `signal`. Pure: the outcome depends only on the two
/// arguments; time is the signal's event time.
///
/// In order: an OK signal is a recovery and an `INSUFFICIENT_DATA` signal is recorded as
/// such, whatever the rules say; a firing signal that an active silence matches is
/// silenced; otherwise the first rule in evaluation order that holds detects it, with the
/// rule's severity and `promotes_alone`; otherwise no rule matched.
pub fn detect(rules: &RuleSet, signal: &Signal) -> DetectionOutcome {
    match signal.state {
        SignalState::Ok => return DetectionOutcome::NotDetected(NotDetectedReason::Recovery),
        SignalState::InsufficientData => {
            return DetectionOutcome::NotDetected(NotDetectedReason::InsufficientData)
        }
        SignalState::Alarm => {}
    }
    if let Some(silence) = rules.active_silence(signal) {
        return DetectionOutcome::NotDetected(NotDetectedReason::Silenced {
            silence_id: silence.id.clone(),
        });
    }
    let Some(rule) = rules.first_matching_rule(signal) else {
        return DetectionOutcome::NotDetected(NotDetectedReason::NoRuleMatched);
    };
    let ruleset_hash = rules.hash();
    let rule_version = rule.version.to_string();
    DetectionOutcome::Detected(Detection {
        id: DetectionId::derive(&signal.id, &rule.id, &rule_version, &ruleset_hash),
        signal_id: signal.id,
        alarm: signal.alarm.clone(),
        alarm_name: signal.alarm_name.clone(),
        environment: signal.environment.clone(),
        service: signal.service.clone(),
        severity: rule.severity.apply(signal.severity),
        event_time: signal.event_time,
        rule_id: rule.id.clone(),
        rule_version,
        ruleset_hash,
        promotes_alone: rule.promotes_alone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleFile;
    use crate::signal::{SourceKind, SIGNAL_SCHEMA_VERSION};
    use std::collections::BTreeMap;

    fn rules(severity: &str) -> RuleSet {
        let text = format!(
            "rules:\n  - id: orders-errors\n    version: 1.2.0\n    description: orders\n    \
             match:\n      service: orders\n    severity: {severity}\n"
        );
        RuleSet::from_files(&[RuleFile {
            path: "rules/orders.yaml".to_string(),
            text,
        }])
        .expect("loads")
    }

    fn signal(state: SignalState, service: &str) -> Signal {
        let alarm = format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{service}-api-5xx");
        let event_time = EpochMs(1_795_489_209_512);
        Signal {
            schema_version: SIGNAL_SCHEMA_VERSION,
            id: SignalId::derive(&alarm, state, event_time),
            alarm,
            alarm_name: format!("{service}-api-5xx"),
            state,
            event_time,
            environment: "123456789012".to_string(),
            service: service.to_string(),
            severity: Severity::Sev2,
            source: SourceKind::CloudwatchEventbridge,
            summary: String::new(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn given_a_signal_when_detected_then_the_outcome_follows_state_and_rules() {
        let cases = [
            (
                "inherit",
                SignalState::Alarm,
                "orders",
                Some(Severity::Sev2),
            ),
            ("SEV1", SignalState::Alarm, "orders", Some(Severity::Sev1)),
            ("SEV4", SignalState::Alarm, "orders", Some(Severity::Sev4)),
            ("SEV1", SignalState::Alarm, "payments", None),
            ("SEV1", SignalState::Ok, "orders", None),
            ("SEV1", SignalState::InsufficientData, "orders", None),
        ];
        for (rule_severity, state, service, expected) in cases {
            let rules = rules(rule_severity);
            let signal = signal(state, service);
            let severity = match detect(&rules, &signal) {
                DetectionOutcome::Detected(detection) => {
                    assert_eq!(detection.rule_version, "1.2.0");
                    assert_eq!(
                        detection.id,
                        DetectionId::derive(&signal.id, "orders-errors", "1.2.0", &rules.hash())
                    );
                    Some(detection.severity)
                }
                DetectionOutcome::NotDetected(_) => None,
            };
            assert_eq!(severity, expected, "{rule_severity} {state} {service}");
        }
    }

    #[test]
    fn outcomes_serialise_with_snake_case_tags() {
        let cases = [
            (
                NotDetectedReason::Recovery,
                r#"{"outcome":"not_detected","reason":"recovery"}"#,
            ),
            (
                NotDetectedReason::InsufficientData,
                r#"{"outcome":"not_detected","reason":"insufficient_data"}"#,
            ),
            (
                NotDetectedReason::Silenced {
                    silence_id: "drill".to_string(),
                },
                r#"{"outcome":"not_detected","reason":"silenced","silence_id":"drill"}"#,
            ),
            (
                NotDetectedReason::NoRuleMatched,
                r#"{"outcome":"not_detected","reason":"no_rule_matched"}"#,
            ),
        ];
        for (reason, json) in cases {
            let outcome = DetectionOutcome::NotDetected(reason);
            assert_eq!(serde_json::to_string(&outcome).expect("serialises"), json);
            assert_eq!(
                serde_json::from_str::<DetectionOutcome>(json).expect("parses"),
                outcome
            );
        }
        let detected = detect(&rules("inherit"), &signal(SignalState::Alarm, "orders"));
        let json = serde_json::to_string(&detected).expect("serialises");
        assert!(
            json.starts_with(r#"{"outcome":"detected","id":""#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<DetectionOutcome>(&json).expect("parses"),
            detected
        );
    }
}
