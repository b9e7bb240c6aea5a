//! `replay`: verifies the store (chains, projections, decisions re-derived, idempotency
//! records) with [`opx_app::replay::verify_slice`], in bounded slices within the
//! invocation's time: it verifies slice after slice of [`REPLAY_SLICE_ITEMS`] items while
//! more than [`REPLAY_TIME_RESERVE_MS`] remain, then answers `next_cursor` (or `null` when
//! the whole store was verified). Call again with that cursor — a Step Functions loop or a
//! script — until it is `null`; the last response's report covers the whole store.

use crate::error::HandlerError;
use crate::invocation::Invocation;
use opx_app::ports::StoreRead;
use opx_app::replay::{
    verify_slice, VerifyCursor, VerifyOptions, VerifyReport, DIVERGENCES_MAX_DEFAULT,
};
use serde::{Deserialize, Serialize};

/// Most divergences a request may ask to keep in its report. The cursor carries the kept
/// divergences from one invocation to the next, so this also bounds its size (about
/// 6.5 KB per divergence; Lambda responses are at most 6 MB).
pub const REPLAY_DIVERGENCES_MAX: usize = 200;
/// Items (streams, stored projections, records) verified per slice.
pub const REPLAY_SLICE_ITEMS: usize = 200;
/// Time kept in reserve before the deadline: no new slice starts with less remaining.
pub const REPLAY_TIME_RESERVE_MS: i64 = 30_000;

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
    /// Items verified per slice (default and most: [`REPLAY_SLICE_ITEMS`]).
    #[serde(default)]
    pub slice_items: Option<usize>,
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
    let divergences_max = request.divergences_max.unwrap_or(DIVERGENCES_MAX_DEFAULT);
    if divergences_max == 0 || divergences_max > REPLAY_DIVERGENCES_MAX {
        return Err(HandlerError::InvalidRequest(format!(
            "divergences_max {divergences_max}: expected 1 to {REPLAY_DIVERGENCES_MAX}"
        ))
        .logged(invocation.function));
    }
    let slice_items = request.slice_items.unwrap_or(REPLAY_SLICE_ITEMS);
    if slice_items == 0 || slice_items > REPLAY_SLICE_ITEMS {
        return Err(HandlerError::InvalidRequest(format!(
            "slice_items {slice_items}: expected 1 to {REPLAY_SLICE_ITEMS}"
        ))
        .logged(invocation.function));
    }
    let mut cursor = match &request.cursor {
        Some(text) => Some(
            VerifyCursor::decode(text)
                .map_err(|error| HandlerError::from(error).logged(invocation.function))?,
        ),
        None => None,
    };
    let options = VerifyOptions { divergences_max };
    let report = loop {
        // Boxed: verification over the DynamoDB store is a deep future, deeper than the
        // compiler's layout limit allows inside the function binary's runtime loop.
        let (report, next) = Box::pin(verify_slice(store, &options, cursor.take(), slice_items))
            .await
            .map_err(|error| HandlerError::from(error).logged(invocation.function))?;
        match next {
            None => break report,
            Some(next) => {
                let out_of_time = invocation
                    .remaining_ms()
                    .is_some_and(|remaining| remaining < REPLAY_TIME_RESERVE_MS);
                if out_of_time {
                    tracing::info!(
                        function = invocation.function,
                        streams = report.streams,
                        "replay slice budget spent; answering a cursor to continue"
                    );
                    return Ok(ReplayResponse {
                        ok: report.divergences_total == 0,
                        report,
                        next_cursor: Some(next.encode()),
                    });
                }
                cursor = Some(next);
            }
        }
    };
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
