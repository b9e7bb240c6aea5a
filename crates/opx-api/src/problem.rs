//! Errors as RFC 9457 problem details: `application/problem+json` with `type`, `title`,
//! `status`, `detail` and a stable `code` that clients match on (never the text).
//!
//! Every refusal the API makes is an [`ApiError`]; its [`ErrorCode`] fixes the status and
//! the title, the detail says what happened and what to do next. The mapping from the
//! pipeline's and the domain's typed errors lives here, once, so the Lambda function and
//! `opx serve` answer the same request the same way.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use opx_app::pipeline::PipelineError;
use opx_app::ports::StoreError;
use opx_domain::incident::IncidentError;
use serde::{Deserialize, Serialize};

/// The media type of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
/// The prefix of every problem `type`: a URN, since the types are identifiers, not pages.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:opx:problem:";
/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;
/// The authentication scheme a 401 names in `WWW-Authenticate`.
pub const AUTHENTICATION_SCHEME: &str = "AWS4-HMAC-SHA256";

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal, $title:literal),)*) => {
        /// The stable machine-readable reason of a refusal. Clients match on
        /// [`ErrorCode::as_str`]; the OpenAPI document lists the same set.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ErrorCode {
            $(
                #[doc = $title]
                $variant,
            )*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears in the `code` member.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status this code is sent with.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// The short, fixed summary sent as `title`.
            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title,)* }
            }
        }
    };
}

error_codes! {
    InvalidBody => ("invalid_body", 400, "The request body is not valid for this route."),
    InvalidQuery => ("invalid_query", 400, "The query string is not valid for this route."),
    InvalidCursor => ("invalid_cursor", 400, "The cursor is not one this route issued for these filters."),
    MissingIdempotencyKey => ("missing_idempotency_key", 400, "This route needs an Idempotency-Key header."),
    InvalidIdempotencyKey => ("invalid_idempotency_key", 400, "The Idempotency-Key header is not a valid key."),
    InvalidPayload => ("invalid_payload", 400, "The signal payload was refused as a whole."),
    UnsupportedSource => ("unsupported_source", 400, "This kind of payload does not enter through this route."),
    Unauthenticated => ("unauthenticated", 401, "The request is not authenticated."),
    SignatureExpired => ("signature_expired", 401, "The request signature is too old or too far in the future."),
    NoPrincipal => ("no_principal", 403, "The request carries no caller identity."),
    UnknownAccessKey => ("unknown_access_key", 403, "The access key is not known here."),
    SignatureMismatch => ("signature_mismatch", 403, "The request signature does not match."),
    Forbidden => ("forbidden", 403, "The caller's roles do not allow this."),
    NotFound => ("not_found", 404, "No such incident."),
    RouteNotFound => ("route_not_found", 404, "No such route."),
    MethodNotAllowed => ("method_not_allowed", 405, "This route does not take this method."),
    VersionConflict => ("version_conflict", 409, "The incident moved since the caller read it."),
    IdempotencyKeyReused => ("idempotency_key_reused", 409, "The Idempotency-Key was already used for another request."),
    BodyTooLarge => ("body_too_large", 413, "The request body is too large."),
    TransitionNotAllowed => ("transition_not_allowed", 422, "The lifecycle does not allow this transition from the incident's state."),
    CloseAsRequired => ("close_as_required", 422, "Closing needs close_as."),
    CloseAsNotAllowed => ("close_as_not_allowed", 422, "This close_as is not allowed from the incident's state."),
    ResolutionSummaryRequired => ("resolution_summary_required", 422, "Resolving this incident needs a resolution summary."),
    IncidentClosed => ("incident_closed", 422, "The incident is CLOSED, which is final."),
    Internal => ("internal", 500, "The server failed; the request may not have been applied."),
    Unavailable => ("unavailable", 503, "The store is busy or unreachable; retry later."),
}

impl ErrorCode {
    /// The problem `type` URI of this code.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_TYPE_PREFIX}{}", self.as_str())
    }

    /// Parses [`ErrorCode::as_str`] output.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == text)
    }
}

/// An RFC 9457 problem document, as sent and as a client reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:opx:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The fixed summary of the code.
    pub title: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What happened here and what to do next.
    pub detail: String,
    /// The stable code ([`ErrorCode::as_str`]).
    pub code: String,
    /// The offending field (a JSON path, a header or a query parameter), when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `version_conflict`: the incident's current lifecycle version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// For lifecycle refusals: what is allowed from the incident's state (target states or
    /// `close_as` values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
}

/// A refusal, on its way to becoming a problem response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// Why.
    pub code: ErrorCode,
    /// What happened and what to do next.
    pub detail: String,
    /// The offending field, if one is to blame.
    pub field: Option<String>,
    /// The current lifecycle version, for conflicts.
    pub current_version: Option<u64>,
    /// What is allowed instead, for lifecycle refusals.
    pub allowed: Option<Vec<String>>,
}

impl ApiError {
    /// A refusal with `code` and `detail`.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: detail.into(),
            field: None,
            current_version: None,
            allowed: None,
        }
    }

    /// Names the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        Problem {
            problem_type: self.code.type_uri(),
            title: self.code.title().to_owned(),
            status: self.code.status(),
            detail: self.detail.clone(),
            code: self.code.as_str().to_owned(),
            field: self.field.clone(),
            current_version: self.current_version,
            allowed: self.allowed.clone(),
        }
    }

    /// A body larger than `len_max` bytes.
    pub fn body_too_large(len_max: usize) -> ApiError {
        ApiError::new(
            ErrorCode::BodyTooLarge,
            format!(
                "the request body is larger than {len_max} bytes (or could not be read to the end); \
                 send a smaller body, e.g. split a batch of signals"
            ),
        )
    }

    /// A refused request body: `what` is the parser's message (it names the field).
    pub fn invalid_body(what: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            ErrorCode::InvalidBody,
            format!(
                "the request body is refused: {what}; see api/openapi.yaml for this route's body"
            ),
        )
    }

    /// The caller's roles lack `permission` (its description names what it allows).
    pub fn forbidden(principal: &str, needed: &str) -> ApiError {
        ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{principal} may not {needed}; ask for a role that allows it (see the role matrix in the README)"
            ),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.status(),
            self.code.as_str(),
            self.detail
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(code = self.code.as_str(), detail = %self.detail, "request failed");
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(AUTHENTICATION_SCHEME),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

impl From<IncidentError> for ApiError {
    fn from(error: IncidentError) -> ApiError {
        let detail = error.to_string();
        match error {
            IncidentError::NotFound => ApiError::new(ErrorCode::NotFound, detail),
            IncidentError::VersionConflict { actual, .. } => ApiError {
                current_version: Some(actual),
                ..ApiError::new(ErrorCode::VersionConflict, detail)
            },
            IncidentError::TransitionNotAllowed { allowed, .. } => ApiError {
                allowed: Some(
                    allowed
                        .iter()
                        .map(|state| state.as_str().to_owned())
                        .collect(),
                ),
                ..ApiError::new(ErrorCode::TransitionNotAllowed, detail)
            },
            IncidentError::CloseAsRequired { allowed, .. } => ApiError {
                allowed: Some(
                    allowed
                        .iter()
                        .map(|close| close.as_str().to_owned())
                        .collect(),
                ),
                field: Some("close_as".to_owned()),
                ..ApiError::new(ErrorCode::CloseAsRequired, detail)
            },
            IncidentError::CloseAsNotAllowed { allowed, .. } => ApiError {
                allowed: Some(
                    allowed
                        .iter()
                        .map(|close| close.as_str().to_owned())
                        .collect(),
                ),
                field: Some("close_as".to_owned()),
                ..ApiError::new(ErrorCode::CloseAsNotAllowed, detail)
            },
            IncidentError::ResolutionSummaryRequired { .. } => {
                ApiError::new(ErrorCode::ResolutionSummaryRequired, detail)
                    .with_field("resolution_summary")
            }
            IncidentError::Closed { .. } => ApiError::new(ErrorCode::IncidentClosed, detail),
            IncidentError::MissingReason => ApiError::invalid_body(detail).with_field("reason"),
            IncidentError::EmptyText { field } | IncidentError::FieldTooLong { field, .. } => {
                ApiError::invalid_body(detail).with_field(field)
            }
            IncidentError::CloseAsNotApplicable { .. } => {
                ApiError::invalid_body(detail).with_field("close_as")
            }
            IncidentError::ResolutionSummaryNotApplicable { .. } => {
                ApiError::invalid_body(detail).with_field("resolution_summary")
            }
            IncidentError::PayloadTooLarge { .. } => ApiError::invalid_body(detail),
            // The rest are refusals of system commands (open, attach, recover) or of the
            // server's own clock: never the caller's doing.
            _ => ApiError::new(ErrorCode::Internal, detail),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match &error {
            StoreError::Unavailable { .. } | StoreError::Conflict(_) => ApiError::new(
                ErrorCode::Unavailable,
                format!("{error}; retry the same request (with the same Idempotency-Key)"),
            ),
            StoreError::Invalid(_) => ApiError::new(ErrorCode::Internal, error.to_string()),
            StoreError::Corrupt(_) => ApiError::new(
                ErrorCode::Internal,
                format!("{error}; an operator should run `opx replay verify`"),
            ),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(error: PipelineError) -> ApiError {
        match error {
            PipelineError::Store(error) => error.into(),
            PipelineError::Incident(error) => error.into(),
            PipelineError::IncidentNotFound(id) => ApiError::new(
                ErrorCode::NotFound,
                format!("no incident {id}; list incidents with GET /incidents"),
            ),
            PipelineError::RequestKeyReused { .. } => ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was already used by you for a different request \
                 (another route, incident or body); use a new key for a new action",
            ),
            error @ PipelineError::Contended { .. } => ApiError::new(
                ErrorCode::Unavailable,
                format!("{error}; retry the same request (with the same Idempotency-Key)"),
            ),
            error @ PipelineError::Corrupt(_) => ApiError::new(
                ErrorCode::Internal,
                format!("{error}; an operator should run `opx replay verify`"),
            ),
            error => ApiError::new(ErrorCode::Internal, error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{} twice", code.as_str());
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            assert!(StatusCode::from_u16(code.status()).is_ok());
        }
    }

    #[test]
    fn stale_version_is_a_conflict_naming_the_current_version() {
        let error = ApiError::from(PipelineError::Incident(IncidentError::VersionConflict {
            expected: 1,
            actual: 2,
        }));
        assert_eq!(error.code, ErrorCode::VersionConflict);
        assert_eq!(error.problem().current_version, Some(2));
        assert_eq!(error.problem().status, 409);
    }
}
