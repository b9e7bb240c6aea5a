//! Human actions over the API: the request bodies of the four POST routes on an incident,
//! the domain command each becomes, and at-most-once execution per principal and
//! `Idempotency-Key`.
//!
//! A client key is scoped by the caller: the stored key is `api/<principal>/<key>`, so two
//! people cannot collide, and one person's retry finds their own record. The request hash
//! covers the route, the incident and the canonical body (the parsed body written back
//! with its fields in declaration order), so whitespace or key order do not make a retry
//! "different", while any change of meaning does: the same key and body gets the recorded
//! answer, the same key with another body is a 409.

use crate::auth::{Caller, Permission};
use crate::problem::{ApiError, ErrorCode};
use opx_app::pipeline::{HumanOutcome, HumanRequest, Pipeline};
use opx_app::ports::{Publisher, Store};
use opx_domain::hash::{Digest, FieldHasher};
use opx_domain::incident::{CloseAs, IncidentCommand, IncidentId, IncidentState, Principal};
use opx_domain::signal::Severity;
use opx_domain::time::EpochMs;
use serde::{Deserialize, Serialize};

/// The request header carrying the client's key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The response header set (to `true`) when the answer is a recorded one.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";
/// Longest client key, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 128;
/// The prefix of every API idempotency key in the store.
pub const API_KEY_PREFIX: &str = "api/";

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

/// One human action on an incident.
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
    /// The route template of this action.
    pub fn route(&self) -> &'static str {
        match self {
            HumanAction::Transition(_) => "/incidents/{id}/transitions",
            HumanAction::Note(_) => "/incidents/{id}/notes",
            HumanAction::Assign(_) => "/incidents/{id}/assignee",
            HumanAction::Severity(_) => "/incidents/{id}/severity",
        }
    }

    /// What the caller needs: a transition to CLOSED needs [`Permission::Close`], every
    /// other action [`Permission::Respond`].
    pub fn permission(&self) -> Permission {
        match self {
            HumanAction::Transition(request) if request.to == IncidentState::Closed => {
                Permission::Close
            }
            _ => Permission::Respond,
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

    /// The request hash stored with the idempotency record: route, incident, canonical body.
    pub fn request_hash(&self, incident_id: &IncidentId) -> Digest {
        FieldHasher::new("opx.api-request.v1")
            .str(self.route())
            .digest(&incident_id.0)
            .bytes(&self.canonical_body())
            .finish()
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

/// Checks a client's `Idempotency-Key`: 1 to [`IDEMPOTENCY_KEY_LEN_MAX`] characters of
/// `A-Z a-z 0-9 . _ : -` (a UUID fits).
pub fn check_client_key(key: Option<&str>) -> Result<&str, ApiError> {
    let Some(key) = key else {
        return Err(ApiError::new(
            ErrorCode::MissingIdempotencyKey,
            "send an Idempotency-Key header (e.g. a fresh UUID per action, reused for its retries)",
        )
        .with_field("Idempotency-Key"));
    };
    let allowed =
        |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-');
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_LEN_MAX || !key.bytes().all(allowed) {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            format!(
                "the Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} characters of A-Z a-z 0-9 . _ : - (e.g. a UUID)"
            ),
        )
        .with_field("Idempotency-Key"));
    }
    Ok(key)
}

/// Longest principal written into a store key as it is; a longer one (an IAM user with a
/// long path) is written as its SHA-256, so every key fits every store's key limit.
pub const PRINCIPAL_IN_KEY_LEN_MAX: usize = 512;

/// The store key of a client key: `api/<principal>/<key>`, or
/// `api/sha256:<hex>/<key>` for a principal longer than [`PRINCIPAL_IN_KEY_LEN_MAX`] (no
/// principal starts with `sha256:`, so the two forms cannot collide).
pub fn scoped_key(principal: &Principal, client_key: &str) -> String {
    let principal = principal.as_str();
    if principal.len() <= PRINCIPAL_IN_KEY_LEN_MAX {
        format!("{API_KEY_PREFIX}{principal}/{client_key}")
    } else {
        let digest = FieldHasher::new("opx.api-key-principal.v1")
            .str(principal)
            .finish();
        format!("{API_KEY_PREFIX}sha256:{digest}/{client_key}")
    }
}

/// Runs `action` on the incident at most once per (caller, `client_key`): checks the
/// caller's permission for it, then executes it through the pipeline with the idempotency
/// record in the action's own commit.
pub async fn execute<S: Store, P: Publisher>(
    pipeline: &Pipeline<'_, S, P>,
    incident_id: &IncidentId,
    action: &HumanAction,
    caller: &Caller,
    at: EpochMs,
    client_key: &str,
) -> Result<HumanOutcome, ApiError> {
    caller.require(action.permission())?;
    let request = HumanRequest {
        key: scoped_key(&caller.principal, client_key),
        request_hash: action.request_hash(incident_id),
    };
    let command = action.command(caller.principal.clone(), at);
    Ok(pipeline
        .execute_human_once(incident_id, &command, Some(&request))
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(body: &str) -> HumanAction {
        HumanAction::Transition(serde_json::from_str(body).unwrap())
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
                serde_json::from_str::<TransitionRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn scoped_keys_are_per_principal_and_bounded() {
        let bob = Principal::iam("arn:aws:sts::123456789012:assumed-role/Responder/bob").unwrap();
        let alice = Principal::local("alice").unwrap();
        assert_eq!(
            scoped_key(&bob, "k1"),
            "api/arn:aws:sts::123456789012:assumed-role/Responder/bob/k1"
        );
        assert_ne!(scoped_key(&bob, "k1"), scoped_key(&alice, "k1"));
        let long_path = "p/".repeat(400);
        let long =
            Principal::iam(&format!("arn:aws:iam::123456789012:user/{long_path}carol")).unwrap();
        let key = scoped_key(&long, &"k".repeat(IDEMPOTENCY_KEY_LEN_MAX));
        assert!(key.starts_with("api/sha256:"));
        assert!(key.len() <= API_KEY_PREFIX.len() + 7 + 64 + 1 + IDEMPOTENCY_KEY_LEN_MAX);
    }

    #[test]
    fn client_keys_are_checked() {
        assert!(check_client_key(Some("6f1c2d3e-0000-4000-8000-0123456789ab")).is_ok());
        assert_eq!(
            check_client_key(None).unwrap_err().code,
            ErrorCode::MissingIdempotencyKey
        );
        for bad in ["", "a b", "a/b", &"k".repeat(IDEMPOTENCY_KEY_LEN_MAX + 1)] {
            assert_eq!(
                check_client_key(Some(bad)).unwrap_err().code,
                ErrorCode::InvalidIdempotencyKey,
                "{bad}"
            );
        }
    }
}
