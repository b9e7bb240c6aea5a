//! `POST /signals`: native opx signals and Alertmanager webhooks (version 4), through the
//! same entry as every other way in ([`opx_app::ingest::ingest_payload`]); this module
//! only turns its report into the answer.
//!
//! Each item gets its own outcome (accepted, duplicate, conflict, rejected); a rejected
//! item is recorded as a reject and its neighbours are still ingested. A payload refused as
//! a whole (not JSON, of no known kind, or of a kind that enters elsewhere) is recorded as
//! a reject and answered with a 400 naming the field. What happens next depends on where
//! the router runs ([`AfterIngest`]): on AWS the events table's stream drives the next
//! stages, so the request ends once the signals are recorded; `opx serve` carries them
//! through every stage before answering.

use crate::problem::{ApiError, ErrorCode};
use opx_app::ingest::{
    ingest_payload, IngestPolicy, IngestReport, ItemOutcome, Payload, PayloadRefusal,
};
use opx_app::pipeline::Pipeline;
use opx_app::ports::{Publisher, Store};

use opx_domain::incident::Principal;
use opx_domain::signal::SourceKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The source kinds this route takes. CloudWatch reaches opx by EventBridge and SNS.
pub const API_SOURCE_KINDS: [SourceKind; 2] = [SourceKind::Native, SourceKind::Alertmanager];
/// Most pipeline steps one `POST /signals` runs when the router drains ([`AfterIngest::Drain`]).
pub const DRAIN_STEPS_MAX: u64 = 100_000;

/// What the router does after recording signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterIngest {
    /// Nothing: on AWS the events table's stream and the fan-out drive the next stages.
    LeaveToFanOut,
    /// Run the queued work to completion before answering (`opx serve`, embedded).
    Drain,
}

/// The outcome of one item of the payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalItemOutcome {
    /// 1-based position of the item in the payload (the alert, or 1 for a single signal).
    pub index: u64,
    /// `accepted`, `duplicate`, `conflict` (already recorded with other content; the first
    /// record stands) or `rejected`.
    pub outcome: String,
    /// The signal id, unless rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_id: Option<String>,
    /// For a rejected item: the offending field (a JSON path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For a rejected or conflicting item: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the embedded pipeline did with the signals before answering.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessedSummary {
    /// Pipeline steps run.
    pub steps: u64,
    /// Detections the rules made.
    pub detections: u64,
    /// Incidents opened.
    pub incidents_opened: Vec<String>,
    /// Incidents that gained evidence or a recovery.
    pub incidents_updated: Vec<String>,
    /// Steps left queued (a later request or `opx resume` carries them on).
    pub left_queued: u64,
}

/// The answer of `POST /signals`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalsResponse {
    /// The payload kind detected.
    pub source: SourceKind,
    /// Signals recorded for the first time.
    pub accepted: u64,
    /// Signals already recorded with the same content.
    pub duplicates: u64,
    /// Signals already recorded with other content (refused; the first record stands).
    pub conflicts: u64,
    /// Items refused (each recorded as a reject).
    pub rejected: u64,
    /// One outcome per item, in payload order.
    pub items: Vec<SignalItemOutcome>,
    /// What the embedded pipeline did (absent on AWS, where the fan-out carries on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed: Option<ProcessedSummary>,
}

/// What `POST /signals` takes: native signals and Alertmanager webhooks, one attempt per
/// signal (a busy store is a 503 the client retries).
pub const API_INGEST_POLICY: IngestPolicy = IngestPolicy {
    takes: api_takes,
    ..IngestPolicy::EVERY_KIND
};

fn api_takes(kind: SourceKind) -> Result<(), String> {
    if API_SOURCE_KINDS.contains(&kind) {
        return Ok(());
    }
    Err(format!(
        "a {kind} payload does not enter through POST /signals (it takes native opx signals and Alertmanager webhooks); \
         route CloudWatch alarms through EventBridge or SNS"
    ))
}

/// Parses, records and (with [`AfterIngest::Drain`]) processes one payload.
///
/// A signal or a reject the store could not record fails the request (503 when a retry
/// can help), after every item was handled: the retry finds what was recorded and answers
/// it as duplicates.
pub async fn ingest<S: Store, P: Publisher>(
    pipeline: &Pipeline<'_, S, P>,
    principal: &Principal,
    bytes: &[u8],
    after: AfterIngest,
) -> Result<SignalsResponse, ApiError> {
    let origin = format!("api:POST /signals by {principal}");
    let report = ingest_payload(pipeline, &API_INGEST_POLICY, Payload::new(&origin, bytes)).await;
    let (Some(source), None) = (report.source, report.refused) else {
        return Err(refused_whole(report));
    };
    let mut failure: Option<ApiError> = None;
    let mut response = SignalsResponse {
        source,
        accepted: 0,
        duplicates: 0,
        conflicts: 0,
        rejected: 0,
        items: Vec::new(),
        processed: None,
    };
    for item in report.items {
        if let Some(error) = item.reject_error {
            failure.get_or_insert(error.into());
        }
        let index = item.index;
        let outcome = match item.outcome {
            ItemOutcome::Accepted(signal) => {
                response.accepted += 1;
                item_outcome(index, "accepted", signal.id.to_string(), None)
            }
            ItemOutcome::Duplicate(signal) => {
                response.duplicates += 1;
                item_outcome(index, "duplicate", signal.id.to_string(), None)
            }
            ItemOutcome::Conflict {
                signal,
                recorded,
                offered,
            } => {
                response.conflicts += 1;
                item_outcome(
                    index,
                    "conflict",
                    signal.id.to_string(),
                    Some(format!(
                        "already recorded with other content (fingerprint {recorded}, this delivery {offered}); the first record stands"
                    )),
                )
            }
            ItemOutcome::Refused(rejection) => {
                response.rejected += 1;
                SignalItemOutcome {
                    index,
                    outcome: "rejected".to_owned(),
                    signal_id: None,
                    field: Some(rejection.field),
                    reason: Some(rejection.reason),
                }
            }
            ItemOutcome::Failed { error, .. } => {
                failure.get_or_insert(error.into());
                continue;
            }
        };
        response.items.push(outcome);
    }
    if let Some(error) = failure {
        return Err(error);
    }
    if after == AfterIngest::Drain {
        response.processed = Some(drain(pipeline).await);
    }
    Ok(response)
}

/// The answer to a payload refused as a whole: 400 naming the field, once its reject is
/// recorded.
fn refused_whole(report: IngestReport) -> ApiError {
    let refusal = report
        .items
        .into_iter()
        .find_map(|item| match item.outcome {
            ItemOutcome::Refused(rejection) => Some((rejection, item.reject_error)),
            _ => None,
        });
    match (report.refused, refusal) {
        (_, Some((_, Some(error)))) => error.into(),
        (Some(PayloadRefusal::Unreadable), Some((rejection, None))) => ApiError::new(
            ErrorCode::InvalidPayload,
            format!("the payload is refused: {rejection}; fix it and send it again"),
        )
        .with_field(rejection.field),
        (Some(PayloadRefusal::KindNotTaken), Some((rejection, None))) => {
            ApiError::new(ErrorCode::UnsupportedSource, rejection.reason)
                .with_field(rejection.field)
        }
        _ => ApiError::new(
            ErrorCode::Internal,
            "the ingest of this payload reported no outcome; this is a bug in opx",
        ),
    }
}

fn item_outcome(
    index: u64,
    outcome: &str,
    signal_id: String,
    reason: Option<String>,
) -> SignalItemOutcome {
    SignalItemOutcome {
        index,
        outcome: outcome.to_owned(),
        signal_id: Some(signal_id),
        field: None,
        reason,
    }
}

/// Runs the queued work; a failure leaves work queued (reported), never loses it.
async fn drain<S: Store, P: Publisher>(pipeline: &Pipeline<'_, S, P>) -> ProcessedSummary {
    match pipeline.drain(DRAIN_STEPS_MAX).await {
        Ok(report) => {
            let opened: BTreeSet<String> = report
                .incidents_opened
                .iter()
                .map(ToString::to_string)
                .collect();
            let updated: BTreeSet<String> = report
                .incidents_updated
                .iter()
                .map(ToString::to_string)
                .filter(|id| !opened.contains(id))
                .collect();
            ProcessedSummary {
                steps: report.steps,
                detections: report.detections,
                incidents_opened: opened.into_iter().collect(),
                incidents_updated: updated.into_iter().collect(),
                left_queued: report.left_queued.len() as u64,
            }
        }
        Err(error) => {
            // The signals are recorded and their work is queued: the next request (or
            // `opx resume`) carries it on.
            tracing::warn!(%error, "draining after POST /signals failed; work stays queued");
            ProcessedSummary {
                left_queued: 1,
                ..ProcessedSummary::default()
            }
        }
    }
}
