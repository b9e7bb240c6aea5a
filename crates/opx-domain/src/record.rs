//! The pipeline's own events and the streams they live in.
//!
//! Every stage of the pipeline writes events; these are the canonical, versioned payloads
//! of the non-incident ones (incident events live in [`crate::incident`]). The stream
//! layout:
//!
//! | stream | events |
//! |---|---|
//! | `signal:<signal id>` | 1 `SignalAccepted`, 2 `SignalEvaluated` |
//! | `ruleset:<rule-set hash>` | 1 `RuleSetRecorded` (the exact files, content-addressed) |
//! | `model:<model hash>` | 1 `ConfidenceModelRecorded` |
//! | `group:<group id>` | `DetectionCorrelated`, `ConfidenceAssessed`, `PromotionDecided` |
//! | `incident:<incident id>` | see [`crate::incident`] ([`crate::incident::stream_id`]) |
//!
//! Payload bytes are `serde_json::to_vec` of the structs below (field order fixed by the
//! struct, maps are `BTreeMap`), stored as they are and hashed as stored.

use crate::confidence::{ConfidenceAssessment, ConfidenceModel};
use crate::correlation::{CorrelationKey, GroupId};
use crate::detection::{Detection, DetectionId, DetectionOutcome};
use crate::event::EventPointer;
use crate::hash::Digest;
use crate::promotion::PromotionDecision;
use crate::signal::{Signal, SignalId};
use crate::time::EpochMs;
use serde::{Deserialize, Serialize};

/// Stream id of a signal.
pub fn signal_stream(id: &SignalId) -> String {
    format!("signal:{id}")
}

/// Stream id of a recorded rule set.
pub fn ruleset_stream(hash: &Digest) -> String {
    format!("ruleset:{hash}")
}

/// Stream id of a recorded confidence model.
pub fn model_stream(hash: &Digest) -> String {
    format!("model:{hash}")
}

/// Stream id of an evidence group.
pub fn group_stream(id: &GroupId) -> String {
    format!("group:{id}")
}

/// The kind of a stream, from its id prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamKind {
    /// `signal:`
    Signal,
    /// `ruleset:`
    RuleSet,
    /// `model:`
    Model,
    /// `group:`
    Group,
    /// `incident:`
    Incident,
}

impl StreamKind {
    /// Classifies a stream id; `None` for an id opx never writes.
    pub fn of(stream_id: &str) -> Option<StreamKind> {
        let (prefix, rest) = stream_id.split_once(':')?;
        Digest::from_hex(rest)?;
        match prefix {
            "signal" => Some(StreamKind::Signal),
            "ruleset" => Some(StreamKind::RuleSet),
            "model" => Some(StreamKind::Model),
            "group" => Some(StreamKind::Group),
            "incident" => Some(StreamKind::Incident),
            _ => None,
        }
    }
}

/// One rule file exactly as it was active.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFile {
    /// Its path relative to the rules directory.
    pub path: String,
    /// Its exact text.
    pub text: String,
}

/// A signal was accepted (first delivery of this state change).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalAccepted {
    /// The canonical signal.
    pub signal: Signal,
}

/// The detect stage evaluated a signal against a rule set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalEvaluated {
    /// The signal.
    pub signal_id: SignalId,
    /// The rule set used (its files are in `ruleset:<hash>`).
    pub ruleset_hash: Digest,
    /// What the rules said.
    pub outcome: DetectionOutcome,
}

/// A rule set became active (content-addressed: recorded once per distinct content).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSetRecorded {
    /// The rule-set hash.
    pub hash: Digest,
    /// The files, in path order.
    pub files: Vec<RecordedFile>,
}

/// A confidence model became active (content-addressed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfidenceModelRecorded {
    /// The model hash.
    pub hash: Digest,
    /// The model.
    pub model: ConfidenceModel,
}

/// A detection joined its evidence group (the window containing its event time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectionCorrelated {
    /// The detection.
    pub detection: Detection,
    /// The start of the group's window.
    pub window_start: EpochMs,
    /// The window length.
    pub window_ms: i64,
}

/// The assess stage scored the bundle of one window (that window and the one before).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfidenceAssessed {
    /// The correlation key.
    pub key: CorrelationKey,
    /// The window the bundle was evaluated for.
    pub window_start: EpochMs,
    /// The window length.
    pub window_ms: i64,
    /// The detection whose arrival triggered this assessment.
    pub trigger: DetectionId,
    /// The members the bundle held, sorted: what the assessment saw.
    pub member_ids: Vec<DetectionId>,
    /// Whether the bundle was truncated to its member limit.
    pub truncated: bool,
    /// The model used (its content is in `model:<hash>`).
    pub model_hash: Digest,
    /// The assessment, with its per-factor breakdown.
    pub assessment: ConfidenceAssessment,
}

/// The promotion gate decided on an assessment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionDecided {
    /// The `ConfidenceAssessed` event decided on.
    pub assessment_event: EventPointer,
    /// The decision, with the inputs' hashes and what the gate saw.
    pub decision: PromotionDecision,
}

impl SignalAccepted {
    /// The event type stored in the envelope.
    pub const EVENT_TYPE: &'static str = "SignalAccepted";
}

impl SignalEvaluated {
    /// The event type stored in the envelope.
    pub const EVENT_TYPE: &'static str = "SignalEvaluated";
}

impl RuleSetRecorded {
    /// The event type stored in the envelope.
    pub const EVENT_TYPE: &'static str = "RuleSetRecorded";
}

impl ConfidenceModelRecorded {
    /// The event type stored in the envelope.
    pub const EVENT_TYPE: &'static str = "ConfidenceModelRecorded";
}

impl DetectionCorrelated {
    /// The event type stored in the envelope.
    pub const EVENT_TYPE: &'static str = "DetectionCorrelated";
}

impl ConfidenceAssessed {
    /// The event type stored in the envelope.
    pub const EVENT_TYPE: &'static str = "ConfidenceAssessed";
}

impl PromotionDecided {
    /// The event type stored in the envelope.
    pub const EVENT_TYPE: &'static str = "PromotionDecided";
}

/// Every pipeline event, by type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PipelineEvent {
    /// See [`SignalAccepted`].
    SignalAccepted(SignalAccepted),
    /// See [`SignalEvaluated`].
    SignalEvaluated(SignalEvaluated),
    /// See [`RuleSetRecorded`].
    RuleSetRecorded(RuleSetRecorded),
    /// See [`ConfidenceModelRecorded`].
    ConfidenceModelRecorded(ConfidenceModelRecorded),
    /// See [`DetectionCorrelated`].
    DetectionCorrelated(DetectionCorrelated),
    /// See [`ConfidenceAssessed`].
    ConfidenceAssessed(ConfidenceAssessed),
    /// See [`PromotionDecided`].
    PromotionDecided(Box<PromotionDecided>),
}

/// The schema version every pipeline event payload is written with today.
pub const PIPELINE_SCHEMA_VERSION: u32 = 1;

/// A payload that cannot be read as the event it claims to be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The event type is not a pipeline event.
    #[error("unknown pipeline event type {0:?}")]
    UnknownType(String),
    /// The schema version is not one this build reads.
    #[error("{event_type} schema version {found} is not supported (this build reads version {PIPELINE_SCHEMA_VERSION}); upgrade opx")]
    UnsupportedSchema {
        /// The event type.
        event_type: String,
        /// The version found.
        found: u32,
    },
    /// The bytes do not decode.
    #[error("{event_type} payload does not decode: {message}")]
    Malformed {
        /// The event type.
        event_type: String,
        /// The decoder's message.
        message: String,
    },
}

impl PipelineEvent {
    /// Every pipeline event type, in pipeline order.
    pub const EVENT_TYPES: [&'static str; 7] = [
        SignalAccepted::EVENT_TYPE,
        SignalEvaluated::EVENT_TYPE,
        RuleSetRecorded::EVENT_TYPE,
        ConfidenceModelRecorded::EVENT_TYPE,
        DetectionCorrelated::EVENT_TYPE,
        ConfidenceAssessed::EVENT_TYPE,
        PromotionDecided::EVENT_TYPE,
    ];

    /// The event type name stored in the envelope.
    pub fn event_type(&self) -> &'static str {
        match self {
            PipelineEvent::SignalAccepted(_) => SignalAccepted::EVENT_TYPE,
            PipelineEvent::SignalEvaluated(_) => SignalEvaluated::EVENT_TYPE,
            PipelineEvent::RuleSetRecorded(_) => RuleSetRecorded::EVENT_TYPE,
            PipelineEvent::ConfidenceModelRecorded(_) => ConfidenceModelRecorded::EVENT_TYPE,
            PipelineEvent::DetectionCorrelated(_) => DetectionCorrelated::EVENT_TYPE,
            PipelineEvent::ConfidenceAssessed(_) => ConfidenceAssessed::EVENT_TYPE,
            PipelineEvent::PromotionDecided(_) => PromotionDecided::EVENT_TYPE,
        }
    }

    /// The canonical payload bytes.
    pub fn to_payload(&self) -> Vec<u8> {
        let bytes = match self {
            PipelineEvent::SignalAccepted(e) => serde_json::to_vec(e),
            PipelineEvent::SignalEvaluated(e) => serde_json::to_vec(e),
            PipelineEvent::RuleSetRecorded(e) => serde_json::to_vec(e),
            PipelineEvent::ConfidenceModelRecorded(e) => serde_json::to_vec(e),
            PipelineEvent::DetectionCorrelated(e) => serde_json::to_vec(e),
            PipelineEvent::ConfidenceAssessed(e) => serde_json::to_vec(e),
            PipelineEvent::PromotionDecided(e) => serde_json::to_vec(e),
        };
        // Serialising these plain structs (strings, integers, BTreeMaps) cannot fail.
        bytes.unwrap_or_default()
    }

    /// Decodes a stored payload.
    pub fn from_payload(
        event_type: &str,
        schema_version: u32,
        payload: &[u8],
    ) -> Result<PipelineEvent, RecordError> {
        fn decode<T: serde::de::DeserializeOwned>(
            event_type: &str,
            payload: &[u8],
        ) -> Result<T, RecordError> {
            serde_json::from_slice(payload).map_err(|error| RecordError::Malformed {
                event_type: event_type.to_owned(),
                message: error.to_string(),
            })
        }
        if !PipelineEvent::EVENT_TYPES.contains(&event_type) {
            return Err(RecordError::UnknownType(event_type.to_owned()));
        }
        if schema_version != PIPELINE_SCHEMA_VERSION {
            return Err(RecordError::UnsupportedSchema {
                event_type: event_type.to_owned(),
                found: schema_version,
            });
        }
        Ok(match event_type {
            SignalAccepted::EVENT_TYPE => {
                PipelineEvent::SignalAccepted(decode(event_type, payload)?)
            }
            SignalEvaluated::EVENT_TYPE => {
                PipelineEvent::SignalEvaluated(decode(event_type, payload)?)
            }
            RuleSetRecorded::EVENT_TYPE => {
                PipelineEvent::RuleSetRecorded(decode(event_type, payload)?)
            }
            ConfidenceModelRecorded::EVENT_TYPE => {
                PipelineEvent::ConfidenceModelRecorded(decode(event_type, payload)?)
            }
            DetectionCorrelated::EVENT_TYPE => {
                PipelineEvent::DetectionCorrelated(decode(event_type, payload)?)
            }
            ConfidenceAssessed::EVENT_TYPE => {
                PipelineEvent::ConfidenceAssessed(decode(event_type, payload)?)
            }
            PromotionDecided::EVENT_TYPE => {
                PipelineEvent::PromotionDecided(Box::new(decode(event_type, payload)?))
            }
            other => return Err(RecordError::UnknownType(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pipeline_event_type_has_its_own_decoder_and_nothing_else_decodes() {
        for event_type in PipelineEvent::EVENT_TYPES {
            // Garbage bytes reach the type's own decoder: refused as malformed under that
            // type, never as unknown and never decoded as another type.
            match PipelineEvent::from_payload(event_type, PIPELINE_SCHEMA_VERSION, b"[]") {
                Err(RecordError::Malformed {
                    event_type: named, ..
                }) => {
                    assert_eq!(named, event_type)
                }
                other => panic!("{event_type}: {other:?}"),
            }
        }
        for unknown in ["PromotionDecidedV2", "IncidentOpened", ""] {
            assert_eq!(
                PipelineEvent::from_payload(unknown, PIPELINE_SCHEMA_VERSION, b"{}"),
                Err(RecordError::UnknownType(unknown.to_owned()))
            );
        }
    }

    #[test]
    fn stream_kinds_are_recognised_by_prefix_and_digest() {
        let digest = Digest::of_bytes(b"x");
        assert_eq!(
            StreamKind::of(&format!("group:{digest}")),
            Some(StreamKind::Group)
        );
        assert_eq!(
            StreamKind::of(&format!("incident:{digest}")),
            Some(StreamKind::Incident)
        );
        assert_eq!(StreamKind::of("group:nothex"), None);
        assert_eq!(StreamKind::of(&format!("other:{digest}")), None);
    }

    #[test]
    fn payloads_round_trip_and_unknown_versions_are_refused() {
        let event = PipelineEvent::RuleSetRecorded(RuleSetRecorded {
            hash: Digest::of_bytes(b"r"),
            files: vec![RecordedFile {
                path: "a.yaml".into(),
                text: "rules: []".into(),
            }],
        });
        let bytes = event.to_payload();
        assert_eq!(
            PipelineEvent::from_payload("RuleSetRecorded", 1, &bytes),
            Ok(event)
        );
        assert!(matches!(
            PipelineEvent::from_payload("RuleSetRecorded", 2, &bytes),
            Err(RecordError::UnsupportedSchema { found: 2, .. })
        ));
        assert!(matches!(
            PipelineEvent::from_payload("Nope", 1, &bytes),
            Err(RecordError::UnknownType(_))
        ));
        assert!(matches!(
            PipelineEvent::from_payload("RuleSetRecorded", 1, b"{"),
            Err(RecordError::Malformed { .. })
        ));
    }
}
