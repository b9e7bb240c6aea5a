//! `signal-ingest`: alarm payloads in, `SignalAccepted` events committed.
//!
//! Accepts everything the domain's source parser recognises, in particular the three ways
//! CloudWatch reaches a Lambda function: the EventBridge `CloudWatch Alarm State Change`
//! event, the payload of an alarm action that invokes the function directly, and an SNS
//! event whose `Records[].Sns.Message` holds an alarm notification. The payload goes
//! through [`opx_app::ingest::ingest_payload`], the entry `opx ingest` and `POST /signals`
//! also use (each signal recorded with `Pipeline::ingest`, idempotent: a redelivery is a
//! duplicate), and nothing else happens here: the events table's stream and the fan-out
//! drive the next stage.
//!
//! A refused item is recorded as a reject naming this invocation and the offending field,
//! and the valid items around it are still recorded. The invocation fails (so the source
//! retries it) only when an item could not be recorded for a reason a retry can cure;
//! the retry finds the items already recorded and treats them as duplicates.

use crate::error::HandlerError;
use crate::invocation::Invocation;
use crate::telemetry::{Metric, METRIC_SIGNALS_INGESTED, METRIC_SIGNALS_REJECTED};
use opx_app::ingest::{ingest_payload, IngestPolicy, ItemOutcome, Payload};
use opx_app::pipeline::Pipeline;
use opx_app::ports::{Publisher, Store};
use opx_domain::source::Rejection;
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
    pipeline: &Pipeline<'_, S, P>,
    invocation: &Invocation<'_>,
    payload: &Value,
) -> Result<IngestSummary, HandlerError> {
    // Canonical bytes (object keys sorted): the same payload redelivered gives the same
    // reject ids.
    let bytes = serde_json::to_vec(payload).unwrap_or_default();
    let origin = invocation.origin();
    // The same entry, and so the same parser and limits, as `opx ingest` and
    // `POST /signals`; a transient failure goes back to Lambda, which retries.
    let report = ingest_payload(
        pipeline,
        &IngestPolicy::EVERY_KIND,
        Payload::new(&origin, &bytes),
    )
    .await;
    let mut summary = IngestSummary {
        source: report.source.map(|source| source.as_str().to_owned()),
        items: report.items.len() as u64,
        ..IngestSummary::default()
    };
    // The first failure to record an item; reported after every other item was handled.
    let mut failure: Option<HandlerError> = None;
    for item in report.items {
        match &item.outcome {
            ItemOutcome::Accepted(_) => summary.accepted += 1,
            ItemOutcome::Duplicate(_) => summary.duplicates += 1,
            ItemOutcome::Conflict { .. } => summary.conflicts += 1,
            ItemOutcome::Refused(_) => summary.rejected += 1,
            ItemOutcome::Failed { signal, error } if error.is_transient() => {
                tracing::warn!(function = invocation.function, retryable = true, %error, signal = %signal.id, "signal not recorded; the invocation will fail so the source retries it");
            }
            ItemOutcome::Failed { signal, error } => {
                tracing::error!(function = invocation.function, retryable = false, %error, signal = %signal.id, "signal refused by the store");
                summary.rejected += 1;
            }
        }
        if let Some(rejection) = &item.reject {
            tracing::warn!(function = invocation.function, request_id = invocation.request_id, item = item.index, field = %rejection.field, reason = %rejection.reason, "payload item rejected");
            summary.refuse(rejection);
        }
        if let Some(error) = item.reject_error {
            failure.get_or_insert(error.into());
        }
        if let ItemOutcome::Failed { error, .. } = item.outcome {
            if error.is_transient() {
                failure.get_or_insert(error.into());
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
