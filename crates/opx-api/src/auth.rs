//! Who is calling, and what they may do.
//!
//! Authentication happens in one layer in front of the whole router, before routing and
//! before any body is parsed: an unauthenticated caller learns nothing, not even whether
//! a route or an incident exists. An [`Authenticator`] turns the request head (and the
//! bytes of the body, which a SigV4 signature covers) into a [`Caller`] — a principal and
//! its roles — or an [`AuthError`]. There are two: API Gateway's IAM identity on AWS
//! ([`crate::lambda`], behind the `lambda` feature) and SigV4 verification against a local
//! credentials file for `opx serve` ([`crate::sigv4`]).
//!
//! Authorization is a fixed matrix of [`Role`]s to [`Permission`]s ([`ROLE_PERMISSIONS`]);
//! each route needs one permission, and a transition to CLOSED needs [`Permission::Close`].
//! A caller with several roles has the union of their permissions.
//!
//! | role | may |
//! |---|---|
//! | reader | every GET |
//! | responder | what a reader may, and transitions except to CLOSED, notes, assignee, severity |
//! | approver | what a responder may, and transitions to CLOSED (a normal or a false-positive close) |
//! | ingester | POST /signals only |
//!
//! What the domain enforces on top, for every role: a transition needs a reason and the
//! current lifecycle version; resolving a SEV1 needs a `resolution_summary`; a normal
//! close only from RESOLVED; CLOSED is final.

use crate::problem::{ApiError, ErrorCode};
use crate::REQUEST_BODY_LEN_MAX;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use opx_domain::incident::Principal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A role a principal holds, from configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads incidents.
    Reader,
    /// Works incidents: every transition but a close, notes, assignee, severity.
    Responder,
    /// A responder who may also close.
    Approver,
    /// A system that sends signals (an Alertmanager relay, a synthetic check).
    Ingester,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [
        Role::Reader,
        Role::Responder,
        Role::Approver,
        Role::Ingester,
    ];

    /// The role's name in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Responder => "responder",
            Role::Approver => "approver",
            Role::Ingester => "ingester",
        }
    }

    /// Parses [`Role::as_str`] output.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// Whether this role grants `permission` (see [`ROLE_PERMISSIONS`]).
    pub fn grants(self, permission: Permission) -> bool {
        ROLE_PERMISSIONS
            .iter()
            .any(|(role, permissions)| *role == self && permissions.contains(&permission))
    }
}

/// What a route needs: the one definition is the human-action model's.
pub use opx_app::human::Permission;

/// The role matrix: what each role grants. The module documentation prints it.
pub const ROLE_PERMISSIONS: &[(Role, &[Permission])] = &[
    (Role::Reader, &[Permission::Read]),
    (Role::Responder, &[Permission::Read, Permission::Respond]),
    (
        Role::Approver,
        &[Permission::Read, Permission::Respond, Permission::Close],
    ),
    (Role::Ingester, &[Permission::Ingest]),
];

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Who: an IAM ARN as API Gateway reported it, or `local:NAME` from the credentials file.
    pub principal: Principal,
    /// What they hold (possibly nothing: authenticated, but allowed nothing).
    pub roles: BTreeSet<Role>,
}

impl Caller {
    /// Whether any of the caller's roles grants `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.roles.iter().any(|role| role.grants(permission))
    }

    /// `Ok` if the caller may, else a 403 naming what was needed.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.may(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                self.principal.as_str(),
                permission.description(),
            ))
        }
    }
}

/// Why a request was not authenticated. 401: the caller must authenticate (properly);
/// 403: the caller's claim was checked and refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or credentials that cannot be read (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The signature's time is outside the allowed clock skew (401).
    #[error("{0}")]
    SignatureExpired(String),
    /// The request context has no caller identity (403; fail closed).
    #[error("{0}")]
    NoPrincipal(String),
    /// The access key is not in the credentials file (403).
    #[error("{0}")]
    UnknownAccessKey(String),
    /// The signature does not match the request (403).
    #[error("{0}")]
    SignatureMismatch(String),
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        let code = match &error {
            AuthError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            AuthError::SignatureExpired(_) => ErrorCode::SignatureExpired,
            AuthError::NoPrincipal(_) => ErrorCode::NoPrincipal,
            AuthError::UnknownAccessKey(_) => ErrorCode::UnknownAccessKey,
            AuthError::SignatureMismatch(_) => ErrorCode::SignatureMismatch,
        };
        ApiError::new(code, error.to_string())
    }
}

/// Turns a request into a [`Caller`]. Runs before routing, with the whole body read (at
/// most [`REQUEST_BODY_LEN_MAX`] bytes), so a signature over the body can be checked.
pub trait Authenticator: Send + Sync + 'static {
    /// The caller, or why not.
    fn authenticate(&self, head: &Parts, body: &[u8]) -> Result<Caller, AuthError>;
}

/// Refuses every request with 401, saying why: what `opx serve` runs without a credentials
/// file (it starts, so the operator sees the reason in the log and in every answer).
#[derive(Clone, Debug)]
pub struct RefuseAll {
    /// Why nobody can authenticate, and how to fix it.
    pub reason: String,
}

impl Authenticator for RefuseAll {
    fn authenticate(&self, _head: &Parts, _body: &[u8]) -> Result<Caller, AuthError> {
        Err(AuthError::Unauthenticated(self.reason.clone()))
    }
}

/// The authentication layer: reads the body (bounded), authenticates, and hands the request
/// on with the [`Caller`] in its extensions; anything else is answered here, before routing.
pub(crate) async fn authenticate(
    State(authenticator): State<Arc<dyn Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let declared_len = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > REQUEST_BODY_LEN_MAX as u64) {
        return ApiError::body_too_large(REQUEST_BODY_LEN_MAX).into_response();
    }
    let bytes = match axum::body::to_bytes(body, REQUEST_BODY_LEN_MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::body_too_large(REQUEST_BODY_LEN_MAX).into_response(),
    };
    match authenticator.authenticate(&parts, &bytes) {
        Ok(caller) => {
            tracing::debug!(principal = %caller.principal, method = %parts.method, path = parts.uri.path(), "authenticated");
            let mut request = Request::from_parts(parts, Body::from(bytes));
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => {
            tracing::info!(method = %parts.method, path = parts.uri.path(), %error, "request refused before routing");
            ApiError::from(error).into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Role map (OPX_ROLE_MAP on AWS)
// ---------------------------------------------------------------------------------------

/// Most ARNs a role map may list, over all roles.
pub const ROLE_MAP_ENTRIES_MAX: usize = 1000;

/// Why a role map was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoleMapError {
    /// Not a JSON object of role names to lists of strings.
    #[error("the role map is not a JSON object of role name to list of ARNs ({0}); write e.g. {{\"responder\":[\"arn:aws:iam::123456789012:role/oncall/Responder\"]}}")]
    Malformed(String),
    /// A key that is not a role.
    #[error(
        "the role map names role {0:?}; the roles are reader, responder, approver and ingester"
    )]
    UnknownRole(String),
    /// An entry that is not an IAM ARN of a role, a user or a role session.
    #[error("the role map entry {entry:?} under {role} is refused: {reason}")]
    InvalidEntry {
        /// The role.
        role: &'static str,
        /// The entry (cut to 128 bytes).
        entry: String,
        /// Why.
        reason: String,
    },
    /// More entries than [`ROLE_MAP_ENTRIES_MAX`].
    #[error("the role map lists {0} ARNs, more than {ROLE_MAP_ENTRIES_MAX}; grant roles to IAM roles, not to each user")]
    TooManyEntries(usize),
}

/// A parsed IAM ARN, as far as matching needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Arn {
    partition: String,
    service: String,
    account: String,
    resource: String,
}

impl Arn {
    fn parse(text: &str) -> Option<Arn> {
        let mut parts = text.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(_region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return None;
        };
        Some(Arn {
            partition: partition.to_owned(),
            service: service.to_owned(),
            account: account.to_owned(),
            resource: resource.to_owned(),
        })
    }

    /// For `arn:…:iam::ACCOUNT:role/PATH/NAME`: the role name (the path is dropped, as STS
    /// drops it in assumed-role ARNs).
    fn role_name(&self) -> Option<&str> {
        if self.service != "iam" {
            return None;
        }
        let path_and_name = self.resource.strip_prefix("role/")?;
        path_and_name
            .rsplit('/')
            .next()
            .filter(|name| !name.is_empty())
    }

    /// For `arn:…:sts::ACCOUNT:assumed-role/NAME/SESSION`: the role name.
    fn assumed_role_name(&self) -> Option<&str> {
        if self.service != "sts" {
            return None;
        }
        let rest = self.resource.strip_prefix("assumed-role/")?;
        let (name, session) = rest.split_once('/')?;
        (!name.is_empty() && !session.is_empty()).then_some(name)
    }
}

/// One entry of the role map.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RoleEntry {
    text: String,
    arn: Arn,
}

impl RoleEntry {
    /// Whether `caller` (an ARN as API Gateway reports it) is this entry: the same ARN, or
    /// a session of this IAM role (same partition, account and role name; the role's path
    /// is not in the session ARN, so it cannot be compared).
    fn matches(&self, caller: &str, caller_arn: Option<&Arn>) -> bool {
        if self.text == caller {
            return true;
        }
        let (Some(role_name), Some(caller_arn)) = (self.arn.role_name(), caller_arn) else {
            return false;
        };
        caller_arn.partition == self.arn.partition
            && caller_arn.account == self.arn.account
            && caller_arn.assumed_role_name() == Some(role_name)
    }
}

/// Which principals hold which roles: `OPX_ROLE_MAP` on AWS, e.g.
/// `{"reader":["arn:aws:iam::123456789012:role/ReadOnly"],"responder":["arn:aws:iam::123456789012:role/oncall/Responder"]}`.
///
/// An entry is an IAM role ARN (`arn:aws:iam::ACCOUNT:role/PATH/NAME`: it matches every
/// session of that role, `arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`), an IAM user
/// ARN (exact), or one assumed-role session ARN (exact). No wildcards: a typo must deny,
/// not widen. Missing roles are empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleMap {
    entries: BTreeMap<Role, Vec<RoleEntry>>,
}

impl RoleMap {
    /// Parses the JSON form; refuses unknown roles and anything that is not an IAM ARN.
    pub fn from_json(text: &str) -> Result<RoleMap, RoleMapError> {
        let raw: BTreeMap<String, Vec<String>> = serde_json::from_str(text)
            .map_err(|error| RoleMapError::Malformed(error.to_string()))?;
        let mut map = RoleMap::default();
        let mut count = 0;
        for (name, entries) in raw {
            let role = Role::parse(&name).ok_or_else(|| RoleMapError::UnknownRole(name.clone()))?;
            count += entries.len();
            if count > ROLE_MAP_ENTRIES_MAX {
                return Err(RoleMapError::TooManyEntries(count));
            }
            for entry in entries {
                map.insert(role, &entry)?;
            }
        }
        Ok(map)
    }

    fn insert(&mut self, role: Role, entry: &str) -> Result<(), RoleMapError> {
        let refuse = |reason: String| RoleMapError::InvalidEntry {
            role: role.as_str(),
            entry: opx_domain::signal::truncate_utf8(entry, 128).to_owned(),
            reason,
        };
        if entry.contains('*') || entry.contains('?') {
            return Err(refuse(
                "wildcards are not supported; list the role ARN (every session of it matches)"
                    .to_owned(),
            ));
        }
        Principal::iam(entry).map_err(|error| refuse(error.to_string()))?;
        let arn = Arn::parse(entry).ok_or_else(|| refuse("not an ARN".to_owned()))?;
        let is_role = arn.role_name().is_some();
        let is_user = arn.service == "iam" && arn.resource.starts_with("user/");
        let is_session = arn.assumed_role_name().is_some();
        if !(is_role || is_user || is_session) {
            return Err(refuse(
                "expected an IAM role (iam::ACCOUNT:role/PATH/NAME), an IAM user (iam::ACCOUNT:user/NAME) \
                 or a role session (sts::ACCOUNT:assumed-role/NAME/SESSION)"
                    .to_owned(),
            ));
        }
        self.entries.entry(role).or_default().push(RoleEntry {
            text: entry.to_owned(),
            arn,
        });
        Ok(())
    }

    /// The roles `principal` (an ARN) holds.
    pub fn roles_of(&self, principal: &str) -> BTreeSet<Role> {
        let caller_arn = Arn::parse(principal);
        self.entries
            .iter()
            .filter(|(_, entries)| {
                entries
                    .iter()
                    .any(|entry| entry.matches(principal, caller_arn.as_ref()))
            })
            .map(|(role, _)| *role)
            .collect()
    }

    /// How many entries the map holds.
    pub fn len(&self) -> usize {
        self.entries.values().map(Vec::len).sum()
    }

    /// Whether the map grants nothing to anyone.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = r#"{
        "reader": ["arn:aws:iam::123456789012:role/ReadOnly"],
        "responder": ["arn:aws:iam::123456789012:role/oncall/teams/Responder"],
        "approver": ["arn:aws:iam::123456789012:user/alice"],
        "ingester": ["arn:aws:sts::123456789012:assumed-role/Relay/alertmanager"]
    }"#;

    fn roles(principal: &str) -> Vec<&'static str> {
        RoleMap::from_json(MAP)
            .unwrap()
            .roles_of(principal)
            .into_iter()
            .map(Role::as_str)
            .collect()
    }

    #[test]
    fn a_session_of_a_role_with_a_path_matches_the_role() {
        assert_eq!(
            roles("arn:aws:sts::123456789012:assumed-role/Responder/bob"),
            ["responder"]
        );
        assert_eq!(
            roles("arn:aws:sts::123456789012:assumed-role/ReadOnly/carol@example.com"),
            ["reader"]
        );
    }

    #[test]
    fn another_account_partition_or_role_does_not_match() {
        assert!(roles("arn:aws:sts::210987654321:assumed-role/Responder/bob").is_empty());
        assert!(roles("arn:aws-cn:sts::123456789012:assumed-role/Responder/bob").is_empty());
        assert!(roles("arn:aws:sts::123456789012:assumed-role/Responder2/bob").is_empty());
        assert!(roles("arn:aws:sts::123456789012:assumed-role/teams/bob").is_empty());
    }

    #[test]
    fn users_and_sessions_match_exactly() {
        assert_eq!(roles("arn:aws:iam::123456789012:user/alice"), ["approver"]);
        assert!(roles("arn:aws:iam::123456789012:user/alice2").is_empty());
        assert_eq!(
            roles("arn:aws:sts::123456789012:assumed-role/Relay/alertmanager"),
            ["ingester"]
        );
        assert!(roles("arn:aws:sts::123456789012:assumed-role/Relay/other").is_empty());
    }

    #[test]
    fn bad_maps_are_refused() {
        for bad in [
            r#"{"admin":["arn:aws:iam::123456789012:role/A"]}"#,
            r#"{"reader":["arn:aws:iam::123456789012:role/*"]}"#,
            r#"{"reader":["arn:aws:s3:::bucket"]}"#,
            r#"{"reader":["arn:aws:iam::123456789012:group/G"]}"#,
            r#"{"reader":"arn:aws:iam::123456789012:role/A"}"#,
            r#"[]"#,
        ] {
            assert!(RoleMap::from_json(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn the_matrix_is_the_documented_one() {
        let allowed = |role: Role| -> Vec<Permission> {
            [
                Permission::Read,
                Permission::Respond,
                Permission::Close,
                Permission::Ingest,
            ]
            .into_iter()
            .filter(|permission| role.grants(*permission))
            .collect()
        };
        assert_eq!(allowed(Role::Reader), [Permission::Read]);
        assert_eq!(
            allowed(Role::Responder),
            [Permission::Read, Permission::Respond]
        );
        assert_eq!(
            allowed(Role::Approver),
            [Permission::Read, Permission::Respond, Permission::Close]
        );
        assert_eq!(allowed(Role::Ingester), [Permission::Ingest]);
    }
}
