//! The one error type every handler returns: it says whether a retry can help.
//!
//! Lambda retries a failed invocation (EventBridge and SNS asynchronous invokes, a stream
//! batch), so returning an error is a request to try again. Handlers therefore return an
//! error only when a retry can succeed ([`HandlerError::is_retryable`]), or when nothing
//! sensible can be done with the input at all (a bad replay request, a broken
//! configuration). Poison input is recorded as a reject and answered with `Ok`, so it never
//! blocks or loops.

use opx_app::pipeline::PipelineError;
use opx_app::ports::StoreError;

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A store or publisher failure a later retry can cure (throttling, unreachable,
    /// lost races).
    #[error("retryable: {0}")]
    Retryable(String),
    /// The request itself is unusable (retrying the same request cannot help): fix it.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Stored data is corrupt: stop and investigate with `opx replay verify`.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The function's configuration is unusable: fix the environment and redeploy.
    #[error("configuration: {0}")]
    Config(String),
}

impl HandlerError {
    /// Whether retrying the same invocation later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, HandlerError::Retryable(_))
    }

    /// The Lambda error type reported for this error (`errorType` in the invocation
    /// result, the function's error metric and the async-invoke destination), so an
    /// operator sees from the type alone whether a retry can help.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::Retryable(_) => "Retryable",
            HandlerError::InvalidRequest(_) => "Permanent.InvalidRequest",
            HandlerError::Corrupt(_) => "Permanent.CorruptStore",
            HandlerError::Config(_) => "Permanent.Configuration",
        }
    }

    /// Logs the error once, with `retryable = true/false`, and returns it.
    pub fn logged(self, function: &str) -> HandlerError {
        if self.is_retryable() {
            tracing::warn!(function, retryable = true, error_type = self.error_type(), error = %self, "invocation failed; Lambda retries it");
        } else {
            tracing::error!(function, retryable = false, error_type = self.error_type(), error = %self, "invocation failed; a retry cannot help");
        }
        self
    }
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> HandlerError {
        match error {
            StoreError::Unavailable { .. } => HandlerError::Retryable(error.to_string()),
            // A conflict reaching a handler means a step lost every race it was allowed:
            // the work stays queued and a later run decides again.
            StoreError::Conflict(_) => HandlerError::Retryable(error.to_string()),
            StoreError::Invalid(message) => HandlerError::InvalidRequest(message),
            StoreError::Corrupt(message) => HandlerError::Corrupt(message),
        }
    }
}

impl From<PipelineError> for HandlerError {
    fn from(error: PipelineError) -> HandlerError {
        if error.is_transient() {
            return HandlerError::Retryable(error.to_string());
        }
        match error {
            PipelineError::Store(store) => HandlerError::from(store),
            PipelineError::Corrupt(message) => HandlerError::Corrupt(message),
            PipelineError::Config(message) => HandlerError::Config(message),
            other => HandlerError::InvalidRequest(other.to_string()),
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> lambda_runtime::Diagnostic {
        lambda_runtime::Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opx_app::ports::Conflict;

    #[test]
    fn only_transient_failures_are_retryable() {
        let unavailable = StoreError::Unavailable {
            message: "throttled".into(),
            source: None,
        };
        assert!(HandlerError::from(unavailable).is_retryable());
        assert!(HandlerError::from(PipelineError::Contended {
            stage: "detect",
            input: "x".into()
        })
        .is_retryable());
        assert!(
            HandlerError::from(StoreError::Conflict(Conflict::StreamMoved {
                stream_id: "s".into(),
                sequence: 1
            }))
            .is_retryable()
        );
        for permanent in [
            HandlerError::from(StoreError::Invalid("too big".into())),
            HandlerError::from(PipelineError::Corrupt("hash".into())),
            HandlerError::from(PipelineError::Config("rules".into())),
            HandlerError::from(PipelineError::IncidentNotFound("x".into())),
        ] {
            assert!(!permanent.is_retryable(), "{permanent}");
            assert!(permanent.error_type().starts_with("Permanent."));
        }
    }

    #[test]
    fn the_lambda_error_type_says_whether_to_retry() {
        let diagnostic = lambda_runtime::Diagnostic::from(HandlerError::Retryable("busy".into()));
        assert_eq!(diagnostic.error_type, "Retryable");
        assert_eq!(diagnostic.error_message, "retryable: busy");
    }
}
