//! Human actions over the API: at-most-once execution per principal and
//! `Idempotency-Key`. What the actions are — their routes, bodies, permissions and the
//! domain command each becomes — is [`opx_app::human`], re-exported here.
//!
//! A client key is scoped by the caller: the stored key is `api/<principal>/<key>`, so two
//! people cannot collide, and one person's retry finds their own record. The request hash
//! ([`HumanAction::request_hash`]) covers the route, the incident and the canonical body
//! (the parsed body written back with its fields in declaration order), so whitespace or
//! key order do not make a retry "different", while any change of meaning does: the same
//! key and body gets the recorded answer, the same key with another body is a 409.

use crate::auth::Caller;
use crate::problem::{ApiError, ErrorCode};
use opx_app::pipeline::{HumanOutcome, HumanRequest, Pipeline};
use opx_app::ports::{Publisher, Store};
use opx_domain::hash::FieldHasher;
use opx_domain::incident::{IncidentId, Principal};
use opx_domain::time::EpochMs;

pub use opx_app::human::{
    ActionKind, AssigneeRequest, HumanAction, NoteRequest, SeverityRequest, TransitionRequest,
};

/// The request header carrying the client's key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The response header set (to `true`) when the answer is a recorded one.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";
/// Longest client key, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 128;
/// The prefix of every API idempotency key in the store.
pub const API_KEY_PREFIX: &str = "api/";

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
