//! `signal-ingest`: alarm payloads in, `SignalAccepted` events committed.
//!
//! Accepts everything the domain's source parser recognises, in particular the three ways
//! CloudWatch reaches a Lambda function: the EventBridge `CloudWatch Alarm State Change`
//! event, the payload of an alarm action that invokes the function directly, and an SNS
//! event whose `Records[].Sns.Message` holds an alarm notification. Each item is recorded
//! with [`Pipeline::ingest`] (idempotent: a redelivery is a duplicate) and nothing else
//! happens here: the events table's stream and the fan-out drive the next stage.
//!
//! A refused item is recorded as a reject naming this invocation and the offending field,
//! and the valid items around it are still recorded. The invocation fails (so the source
//! retries it) only when an item could not be recorded for a reason a retry can cure;
//! the retry finds the items already recorded and treats them as duplicates.

use crate::error::HandlerError;
use crate::invocation::Invocation;
use crate::telemetry::{Metric, METRIC_SIGNALS_INGESTED, METRIC_SIGNALS_REJECTED};
use opx_app::pipeline::{IngestOutcome, Pipeline};
use opx_app::ports::{Publisher, Store};
use opx_domain::source::{parse_payload, Rejection};
use serde::Serialize;
use serde_json::Value;

/// Most rejections listed in an [`IngestSummary`] (all are counted and recorded).
pub const REJECTIONS_LISTED_MAX: usize = 10;

/// What one invocation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    /// The payload kind detected (`cloudwatch_eventbridge`, ...), if recognised.
    pub source: Option<String>,
    /// Items in the payload (1 for a payload refused as a whole).
    pub items: u64,
    /// Signals recorded for the first time.
    pub accepted: u64,
    /// Signals already recorded with the same content (redeliveries, the SNS copy of an
    /// EventBridge event).
    pub duplicates: u64,
    /// Signals already recorded with different content: refused and recorded as rejects.
    pub conflicts: u64,
    /// Items refused by the parser or the store, recorded as rejects.
    pub rejected: u64,
    /// The first [`REJECTIONS_LISTED_MAX`] refusals, as `field: reason`.
    pub rejections: Vec<String>,
}

impl IngestSummary {
    fn refuse(&mut self, rejection: &Rejection) {
        if self.rejections.len() < REJECTIONS_LISTED_MAX {
            self.rejections.push(rejection.to_string());
        }
    }
}

/// Ingests one invocation's payload; see the module documentation.
pub async fn handle_signal_ingest<S: Store, P: Publisher>(
    store: &S,
    pipeline: &Pipeline<'_, S, P>,
    invocation: &Invocation<'_>,
    payload: &Value,
) -> Result<IngestSummary, HandlerError> {
    // Canonical bytes (object keys sorted): the same payload redelivered gives the same
    // reject ids.
    let bytes = serde_json::to_vec(payload).unwrap_or_default();
    let mut summary = IngestSummary::default();
    // The first failure to record an item; reported after every other item was handled.
    let mut failure: Option<HandlerError> = None;
    // The same parser, and so the same limits (payload size first), as `opx ingest` and
    // `POST /signals`.
    match parse_payload(&bytes, &pipeline.config().source) {
        Err(rejection) => {
            summary.items = 1;
            summary.rejected += 1;
            summary.refuse(&rejection);
            if let Err(error) = reject(store, invocation, &bytes, 0, &rejection).await {
                failure.get_or_insert(error);
            }
        }
        Ok(parsed) => {
            summary.source = serde_json::to_value(parsed.source)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned));
            summary.items = parsed.items.len() as u64;
            for (index, item) in parsed.items.into_iter().enumerate() {
                let index = index as u64;
                let signal = match item {
                    Ok(signal) => signal,
                    Err(rejection) => {
                        summary.rejected += 1;
                        summary.refuse(&rejection);
                        if let Err(error) =
                            reject(store, invocation, &bytes, index, &rejection).await
                        {
                            failure.get_or_insert(error);
                        }
                        continue;
                    }
                };
                match pipeline.ingest(&signal).await {
                    Ok(IngestOutcome::Accepted { .. }) => summary.accepted += 1,
                    Ok(IngestOutcome::Duplicate { .. }) => summary.duplicates += 1,
                    Ok(IngestOutcome::Conflict {
                        signal_id,
                        recorded,
                        offered,
                    }) => {
                        summary.conflicts += 1;
                        let rejection = Rejection::new(
                            "$",
                            format!(
                                "signal {signal_id} is already recorded with fingerprint {recorded}, this delivery has {offered}: the first record stands (did the source configuration change?)"
                            ),
                        );
                        summary.refuse(&rejection);
                        if let Err(error) =
                            reject(store, invocation, &bytes, index, &rejection).await
                        {
                            failure.get_or_insert(error);
                        }
                    }
                    Err(error) if error.is_transient() => {
                        tracing::warn!(function = invocation.function, retryable = true, %error, signal = %signal.id, "signal not recorded; the invocation will fail so the source retries it");
                        failure.get_or_insert(HandlerError::from(error));
                    }
                    Err(error) => {
                        tracing::error!(function = invocation.function, retryable = false, %error, signal = %signal.id, "signal refused by the store");
                        summary.rejected += 1;
                        let rejection = Rejection::new("$", error.to_string());
                        summary.refuse(&rejection);
                        if let Err(error) =
                            reject(store, invocation, &bytes, index, &rejection).await
                        {
                            failure.get_or_insert(error);
                        }
                    }
                }
            }
        }
    }
    invocation.emit(&[
        Metric::count(METRIC_SIGNALS_INGESTED, summary.accepted),
        Metric::count(
            METRIC_SIGNALS_REJECTED,
            summary.rejected + summary.conflicts,
        ),
    ]);
    tracing::info!(
        function = invocation.function,
        request_id = invocation.request_id,
        source = summary.source.as_deref().unwrap_or("unrecognised"),
        items = summary.items,
        accepted = summary.accepted,
        duplicates = summary.duplicates,
        conflicts = summary.conflicts,
        rejected = summary.rejected,
        "payload ingested"
    );
    match failure {
        Some(error) => Err(error),
        None => Ok(summary),
    }
}

async fn reject<S: Store>(
    store: &S,
    invocation: &Invocation<'_>,
    bytes: &[u8],
    index: u64,
    rejection: &Rejection,
) -> Result<(), HandlerError> {
    tracing::warn!(function = invocation.function, request_id = invocation.request_id, item = index, field = %rejection.field, reason = %rejection.reason, "payload item rejected");
    invocation
        .record_reject(store, bytes, index, &rejection.field, &rejection.reason)
        .await
        .map_err(HandlerError::from)
}
