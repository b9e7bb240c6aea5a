//! `replay`: verifies the store (chains, projections, decisions re-derived, idempotency
//! records) with [`opx_app::replay::verify`].
//!
//! The request and response already have the shape of a resumable verification
//! (`{cursor?}` in, `{report, next_cursor}` out) so that bounded slices can be added
//! without changing callers. Today `verify` has no cursor: the handler verifies the whole
//! store in one invocation, always answers `next_cursor: null`, and refuses a request that
//! carries a cursor rather than pretend to resume. On a large store this can exceed the
//! function's timeout; run `opx replay verify --store dynamodb:PREFIX` from a machine
//! instead until verification is sliced.

use crate::error::HandlerError;
use crate::invocation::Invocation;
use opx_app::ports::StoreRead;
use opx_app::replay::{verify, VerifyOptions, VerifyReport, DIVERGENCES_MAX_DEFAULT};
use serde::{Deserialize, Serialize};

/// Most divergences a request may ask to keep in its report.
pub const REPLAY_DIVERGENCES_MAX: usize = 1_000;

/// What to verify.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Where a previous invocation stopped (`next_cursor`); absent or null to start.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Most divergences kept in the report (default
    /// [`opx_app::replay::DIVERGENCES_MAX_DEFAULT`], at most [`REPLAY_DIVERGENCES_MAX`]).
    #[serde(default)]
    pub divergences_max: Option<usize>,
}

/// What was verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplayResponse {
    /// The verification report.
    pub report: VerifyReport,
    /// Pass back as `cursor` to continue; `null` when the whole store was verified.
    pub next_cursor: Option<String>,
    /// Whether the report is clean.
    pub ok: bool,
}

/// Verifies the store; see the module documentation.
pub async fn handle_replay<S: StoreRead>(
    store: &S,
    invocation: &Invocation<'_>,
    request: &ReplayRequest,
) -> Result<ReplayResponse, HandlerError> {
    if let Some(cursor) = &request.cursor {
        return Err(HandlerError::InvalidRequest(format!(
            "cursor {cursor:?}: resumable verification is not implemented yet (every replay verifies the whole store and answers next_cursor null); send the request without a cursor"
        ))
        .logged(invocation.function));
    }
    let divergences_max = request.divergences_max.unwrap_or(DIVERGENCES_MAX_DEFAULT);
    if divergences_max == 0 || divergences_max > REPLAY_DIVERGENCES_MAX {
        return Err(HandlerError::InvalidRequest(format!(
            "divergences_max {divergences_max}: expected 1 to {REPLAY_DIVERGENCES_MAX}"
        ))
        .logged(invocation.function));
    }
    // Boxed: verification over the DynamoDB store is a deep future, deeper than the
    // compiler's layout limit allows inside the function binary's runtime loop.
    let report = Box::pin(verify(store, &VerifyOptions { divergences_max }))
        .await
        .map_err(|error| HandlerError::from(error).logged(invocation.function))?;
    let ok = report.ok();
    if ok {
        tracing::info!(
            function = invocation.function,
            streams = report.streams,
            events = report.events,
            pending = report.pending.len(),
            "replay verified: no divergence"
        );
    } else {
        tracing::error!(
            function = invocation.function,
            divergences = report.divergences_total,
            first_stream = report.first_divergent_stream.as_deref().unwrap_or(""),
            first_sequence = report.first_divergent_sequence.unwrap_or(0),
            "replay found divergences"
        );
    }
    Ok(ReplayResponse {
        report,
        next_cursor: None,
        ok,
    })
}
