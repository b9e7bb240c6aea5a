//! Human actions on an incident, described once: the kinds ([`ActionKind`]: route, command
//! name, what the caller needs), the strict request body of each ([`TransitionRequest`],
//! [`NoteRequest`], [`AssigneeRequest`], [`SeverityRequest`]), the action as requested
//! ([`HumanAction`]) and the domain command it becomes. The API parses and routes with
//! this module, the `opx` command builds the same actions for its local store and for the
//! API, and the OpenAPI contract and the CDK app's route table are checked against it.
//!
//! A request body is strict: unknown fields are refused, and `expected_version` accepts
//! any JSON number that JSON Schema calls an integer.

use opx_domain::hash::{Digest, FieldHasher};
use opx_domain::incident::{CloseAs, IncidentCommand, IncidentId, IncidentState, Principal};
use opx_domain::signal::Severity;
use opx_domain::time::EpochMs;
use serde::{Deserialize, Serialize};

/// What a caller needs for a route or an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Every GET.
    Read,
    /// Transitions other than to CLOSED, notes, assignee, severity.
    Respond,
    /// Transitions to CLOSED.
    Close,
    /// POST /signals.
    Ingest,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 4] = [
        Permission::Read,
        Permission::Respond,
        Permission::Close,
        Permission::Ingest,
    ];

    /// The name written into route tables (`read`, `respond`, `close`, `ingest`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Respond => "respond",
            Permission::Close => "close",
            Permission::Ingest => "ingest",
        }
    }

    /// What the permission allows, for refusals ("… may not {this}").
    pub fn description(self) -> &'static str {
        match self {
            Permission::Read => "read incidents (role reader, responder or approver)",
            Permission::Respond => {
                "act on incidents: transitions, notes, assignee, severity (role responder or approver)"
            }
            Permission::Close => "close incidents (role approver)",
            Permission::Ingest => "send signals (role ingester)",
        }
    }
}

/// The kinds of human action, one route each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionKind {
    /// Move along the lifecycle.
    Transition,
    /// Add a note.
    Note,
    /// Assign someone.
    Assign,
    /// Set the severity.
    Severity,
}

impl ActionKind {
    /// Every kind, in the order the OpenAPI document lists their routes.
    pub const ALL: [ActionKind; 4] = [
        ActionKind::Transition,
        ActionKind::Note,
        ActionKind::Assign,
        ActionKind::Severity,
    ];

    /// The route template (`POST`; `{id}` is the incident id).
    pub const fn path(self) -> &'static str {
        match self {
            ActionKind::Transition => "/incidents/{id}/transitions",
            ActionKind::Note => "/incidents/{id}/notes",
            ActionKind::Assign => "/incidents/{id}/assignee",
            ActionKind::Severity => "/incidents/{id}/severity",
        }
    }

    /// The OpenAPI `operationId` of the route.
    pub const fn operation_id(self) -> &'static str {
        match self {
            ActionKind::Transition => "transitionIncident",
            ActionKind::Note => "addNote",
            ActionKind::Assign => "assignIncident",
            ActionKind::Severity => "setSeverity",
        }
    }

    /// The `opx` subcommand.
    pub const fn command_name(self) -> &'static str {
        match self {
            ActionKind::Transition => "transition",
            ActionKind::Note => "note",
            ActionKind::Assign => "assign",
            ActionKind::Severity => "severity",
        }
    }

    /// What the route needs before the body is read; an action may need more
    /// ([`HumanAction::permission`]: closing needs [`Permission::Close`]).
    pub const fn permission(self) -> Permission {
        Permission::Respond
    }
}

/// `POST /incidents/{id}/transitions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    /// The target state.
    pub to: IncidentState,
    /// Why.
    pub reason: String,
    /// The lifecycle version the caller saw (required: a stale one is a 409). Any JSON
    /// number that is an integer by JSON Schema's rules is accepted (`2725` and `2725.0`).
    #[serde(deserialize_with = "integral_version")]
    pub expected_version: u64,
    /// How a close ends (`resolved` or `false_positive`); only with `to: CLOSED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_as: Option<CloseAs>,
    /// What fixed it; only with `to: RESOLVED`, required for a SEV1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_summary: Option<String>,
}

/// The largest float that is taken as a version: above 2^53 a float no longer names one
/// integer, so a client must send such a version as a JSON integer.
const FLOAT_VERSION_MAX: f64 = 9_007_199_254_740_992.0;

/// A version from any JSON number that JSON Schema calls an integer: a non-negative integer,
/// or a number with a zero fraction (`2725.0`, as some JSON encoders write every number).
/// A fraction, a negative number or a float past [`FLOAT_VERSION_MAX`] is refused by name.
fn integral_version<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(version) = number.as_u64() {
        return Ok(version);
    }
    match number.as_f64() {
        Some(float) if (0.0..=FLOAT_VERSION_MAX).contains(&float) && float.fract() == 0.0 => {
            // Exact: a float with no fraction at most 2^53 is that integer.
            Ok(float as u64)
        }
        _ => Err(serde::de::Error::custom(format!(
            "{number} is not a version: send the incident's `version`, a whole number \
             from 0 to {}",
            u64::MAX
        ))),
    }
}

/// `POST /incidents/{id}/notes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// The note.
    pub text: String,
}

/// `POST /incidents/{id}/assignee`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssigneeRequest {
    /// Who takes it.
    pub assignee: String,
}

/// `POST /incidents/{id}/severity`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityRequest {
    /// `SEV1` (worst) to `SEV4`.
    pub severity: Severity,
    /// Why.
    pub reason: String,
}

/// One human action on an incident, as requested: the body of its route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HumanAction {
    /// Move along the lifecycle.
    Transition(TransitionRequest),
    /// Add a note.
    Note(NoteRequest),
    /// Assign someone.
    Assign(AssigneeRequest),
    /// Set the severity.
    Severity(SeverityRequest),
}

impl HumanAction {
    /// Parses the body of `kind`'s route.
    pub fn parse(kind: ActionKind, body: &[u8]) -> Result<HumanAction, serde_json::Error> {
        Ok(match kind {
            ActionKind::Transition => HumanAction::Transition(serde_json::from_slice(body)?),
            ActionKind::Note => HumanAction::Note(serde_json::from_slice(body)?),
            ActionKind::Assign => HumanAction::Assign(serde_json::from_slice(body)?),
            ActionKind::Severity => HumanAction::Severity(serde_json::from_slice(body)?),
        })
    }

    /// The kind of this action.
    pub fn kind(&self) -> ActionKind {
        match self {
            HumanAction::Transition(_) => ActionKind::Transition,
            HumanAction::Note(_) => ActionKind::Note,
            HumanAction::Assign(_) => ActionKind::Assign,
            HumanAction::Severity(_) => ActionKind::Severity,
        }
    }

    /// The route template of this action.
    pub fn route(&self) -> &'static str {
        self.kind().path()
    }

    /// What the caller needs: a transition to CLOSED needs [`Permission::Close`], every
    /// other action its route's permission.
    pub fn permission(&self) -> Permission {
        match self {
            HumanAction::Transition(request) if request.to == IncidentState::Closed => {
                Permission::Close
            }
            _ => self.kind().permission(),
        }
    }

    /// The canonical body: the parsed request written back (fields in declaration order).
    pub fn canonical_body(&self) -> Vec<u8> {
        let encoded = match self {
            HumanAction::Transition(request) => serde_json::to_vec(request),
            HumanAction::Note(request) => serde_json::to_vec(request),
            HumanAction::Assign(request) => serde_json::to_vec(request),
            HumanAction::Severity(request) => serde_json::to_vec(request),
        };
        // These plain structs always encode; an empty body would still hash distinctly.
        encoded.unwrap_or_default()
    }

    /// The request hash stored with an idempotency record: route, incident, canonical body.
    /// Whitespace or key order do not make a retry "different"; any change of meaning does.
    pub fn request_hash(&self, incident_id: &IncidentId) -> Digest {
        FieldHasher::new("opx.api-request.v1")
            .str(self.route())
            .digest(&incident_id.0)
            .bytes(&self.canonical_body())
            .finish()
    }

    /// The lifecycle version this action expects, if it guards on one.
    pub fn expected_version_mut(&mut self) -> Option<&mut u64> {
        match self {
            HumanAction::Transition(request) => Some(&mut request.expected_version),
            HumanAction::Note(_) | HumanAction::Assign(_) | HumanAction::Severity(_) => None,
        }
    }

    /// The domain command, acted by `principal` at `at`.
    pub fn command(&self, principal: Principal, at: EpochMs) -> IncidentCommand {
        match self.clone() {
            HumanAction::Transition(request) => IncidentCommand::Transition {
                principal,
                at,
                to: request.to,
                reason: request.reason,
                expected_lifecycle_version: request.expected_version,
                close_as: request.close_as,
                resolution_summary: request.resolution_summary,
            },
            HumanAction::Note(request) => IncidentCommand::AddNote {
                principal,
                at,
                text: request.text,
            },
            HumanAction::Assign(request) => IncidentCommand::Assign {
                principal,
                at,
                assignee: request.assignee,
            },
            HumanAction::Severity(request) => IncidentCommand::SetSeverity {
                principal,
                at,
                severity: request.severity,
                reason: request.reason,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn transition(body: &str) -> HumanAction {
        HumanAction::parse(ActionKind::Transition, body.as_bytes()).unwrap()
    }

    #[test]
    fn the_request_hash_ignores_layout_but_not_meaning() {
        let id = IncidentId(Digest([7; 32]));
        let a = transition(r#"{"to":"ACKNOWLEDGED","reason":"on it","expected_version":1}"#);
        let b = transition(r#"{ "expected_version": 1, "reason": "on it", "to": "ACKNOWLEDGED" }"#);
        let c = transition(r#"{"to":"ACKNOWLEDGED","reason":"on it","expected_version":2}"#);
        assert_eq!(a.request_hash(&id), b.request_hash(&id));
        assert_ne!(a.request_hash(&id), c.request_hash(&id));
        assert_ne!(
            a.request_hash(&id),
            a.request_hash(&IncidentId(Digest([8; 32])))
        );
        let note = HumanAction::Note(NoteRequest {
            text: "on it".to_owned(),
        });
        assert_ne!(note.request_hash(&id), a.request_hash(&id));
    }

    #[test]
    fn an_integral_float_is_the_same_version_and_the_same_request() {
        let id = IncidentId(Digest([7; 32]));
        let integer =
            transition(r#"{"to":"ACKNOWLEDGED","reason":"on it","expected_version":2725}"#);
        for float in ["2725.0", "2725.000", "2.725e3"] {
            let body =
                format!(r#"{{"to":"ACKNOWLEDGED","reason":"on it","expected_version":{float}}}"#);
            let parsed = transition(&body);
            assert_eq!(parsed, integer, "{float}");
            assert_eq!(
                parsed.request_hash(&id),
                integer.request_hash(&id),
                "{float}"
            );
        }
    }

    #[test]
    fn closing_needs_the_close_permission() {
        let close = transition(
            r#"{"to":"CLOSED","reason":"done","expected_version":4,"close_as":"resolved"}"#,
        );
        assert_eq!(close.permission(), Permission::Close);
        let resolve = transition(
            r#"{"to":"RESOLVED","reason":"done","expected_version":3,"resolution_summary":"rolled back"}"#,
        );
        assert_eq!(resolve.permission(), Permission::Respond);
    }

    #[test]
    fn bodies_are_strict() {
        for bad in [
            r#"{"to":"ACKNOWLEDGED","reason":"x"}"#,
            r#"{"to":"ACKNOWLEDGED","reason":"x","expected_version":1,"extra":1}"#,
            r#"{"to":"acknowledged","reason":"x","expected_version":1}"#,
            r#"{"to":"ACKNOWLEDGED","reason":"x","expected_version":-1}"#,
            r#"{"to":"ACKNOWLEDGED","reason":"x","expected_version":1.5}"#,
            r#"{"to":"ACKNOWLEDGED","reason":"x","expected_version":-1.0}"#,
            r#"{"to":"ACKNOWLEDGED","reason":"x","expected_version":1e300}"#,
            r#"{"to":"ACKNOWLEDGED","reason":"x","expected_version":"1"}"#,
        ] {
            assert!(
                HumanAction::parse(ActionKind::Transition, bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
        assert!(HumanAction::parse(ActionKind::Note, br#"{"text":"x","to":"CLOSED"}"#).is_err());
    }

    #[test]
    fn each_kind_parses_its_own_body_and_round_trips() {
        let bodies = [
            (
                ActionKind::Transition,
                r#"{"to":"RESOLVED","reason":"r","expected_version":3,"resolution_summary":"s"}"#,
            ),
            (ActionKind::Note, r#"{"text":"t"}"#),
            (ActionKind::Assign, r#"{"assignee":"a"}"#),
            (ActionKind::Severity, r#"{"severity":"SEV2","reason":"r"}"#),
        ];
        for (kind, body) in bodies {
            let action = HumanAction::parse(kind, body.as_bytes()).unwrap();
            assert_eq!(action.kind(), kind);
            assert_eq!(action.canonical_body(), body.as_bytes(), "{kind:?}");
            for (other, _) in bodies.iter().filter(|(other, _)| *other != kind) {
                assert!(
                    HumanAction::parse(*other, body.as_bytes()).is_err(),
                    "{kind:?} body taken by {other:?}"
                );
            }
        }
    }

    #[test]
    fn kinds_have_distinct_routes_names_and_operations() {
        let paths: BTreeSet<_> = ActionKind::ALL.iter().map(|kind| kind.path()).collect();
        let names: BTreeSet<_> = ActionKind::ALL.iter().map(|k| k.command_name()).collect();
        let operations: BTreeSet<_> = ActionKind::ALL.iter().map(|k| k.operation_id()).collect();
        assert_eq!(paths.len(), ActionKind::ALL.len());
        assert_eq!(names.len(), ActionKind::ALL.len());
        assert_eq!(operations.len(), ActionKind::ALL.len());
        for kind in ActionKind::ALL {
            assert!(kind.path().starts_with("/incidents/{id}/"), "{kind:?}");
        }
    }

    #[test]
    fn the_command_carries_the_body_and_the_actor() {
        let principal = Principal::local("alice").unwrap();
        let mut action =
            transition(r#"{"to":"ACKNOWLEDGED","reason":"on it","expected_version":1}"#);
        *action.expected_version_mut().unwrap() = 5;
        match action.command(principal.clone(), EpochMs(9)) {
            IncidentCommand::Transition {
                principal: who,
                at,
                to,
                expected_lifecycle_version,
                ..
            } => {
                assert_eq!(
                    (who, at, to),
                    (principal, EpochMs(9), IncidentState::Acknowledged)
                );
                assert_eq!(expected_lifecycle_version, 5);
            }
            other => panic!("{other:?}"),
        }
        let mut note = HumanAction::Note(NoteRequest {
            text: "t".to_owned(),
        });
        assert!(note.expected_version_mut().is_none());
    }
}
