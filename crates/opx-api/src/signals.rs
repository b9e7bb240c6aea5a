//! `POST /signals`: native opx signals and Alertmanager webhooks (version 4), through the
//! same parser and the same ingest step as every other way in.
//!
//! Each item gets its own outcome (accepted, duplicate, conflict, rejected); a rejected
//! item is recorded as a reject and its neighbours are still ingested. A payload refused as
//! a whole (not JSON, of no known kind, or of a kind that enters elsewhere) is recorded as
//! a reject and answered with a 400 naming the field. What happens next depends on where
//! the router runs ([`AfterIngest`]): on AWS the events table's stream drives the next
//! stages, so the request ends once the signals are recorded; `opx serve` carries them
//! through every stage before answering.

use crate::problem::{ApiError, ErrorCode};
use opx_app::pipeline::{IngestOutcome, Pipeline};
use opx_app::ports::{Publisher, RejectRecord, Store, REJECT_EXCERPT_LEN_MAX};

use opx_domain::incident::Principal;
use opx_domain::signal::{truncate_utf8, SourceKind};
use opx_domain::source::{parse_payload, Rejection};
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

pub use opx_app::ports::reject_id;

async fn record_reject<S: Store>(
    store: &S,
    principal: &Principal,
    bytes: &[u8],
    item_index: u64,
    rejection: &Rejection,
) -> Result<(), ApiError> {
    let excerpt =
        String::from_utf8_lossy(&bytes[..bytes.len().min(REJECT_EXCERPT_LEN_MAX)]).into_owned();
    store
        .record_reject(RejectRecord {
            id: reject_id(bytes, item_index),
            origin: format!("api:POST /signals by {principal}"),
            field: rejection.field.clone(),
            reason: rejection.reason.clone(),
            excerpt: truncate_utf8(&excerpt, REJECT_EXCERPT_LEN_MAX).to_owned(),
        })
        .await?;
    Ok(())
}

/// Parses, records and (with [`AfterIngest::Drain`]) processes one payload.
pub async fn ingest<S: Store, P: Publisher>(
    pipeline: &Pipeline<'_, S, P>,
    store: &S,
    principal: &Principal,
    bytes: &[u8],
    after: AfterIngest,
) -> Result<SignalsResponse, ApiError> {
    let parsed = match parse_payload(bytes, &pipeline.config().source) {
        Ok(parsed) => parsed,
        Err(rejection) => {
            record_reject(store, principal, bytes, 0, &rejection).await?;
            return Err(ApiError::new(
                ErrorCode::InvalidPayload,
                format!("the payload is refused: {rejection}; fix it and send it again"),
            )
            .with_field(rejection.field));
        }
    };
    if !API_SOURCE_KINDS.contains(&parsed.source) {
        let rejection = Rejection::new(
            "$",
            format!(
                "a {} payload does not enter through POST /signals (it takes native opx signals and Alertmanager webhooks); \
                 route CloudWatch alarms through EventBridge or SNS",
                parsed.source
            ),
        );
        record_reject(store, principal, bytes, 0, &rejection).await?;
        return Err(ApiError::new(ErrorCode::UnsupportedSource, rejection.reason).with_field("$"));
    }
    let mut response = SignalsResponse {
        source: parsed.source,
        accepted: 0,
        duplicates: 0,
        conflicts: 0,
        rejected: 0,
        items: Vec::new(),
        processed: None,
    };
    for (position, item) in parsed.items.into_iter().enumerate() {
        let index = u64::try_from(position)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let outcome = match item {
            Err(rejection) => {
                record_reject(store, principal, bytes, index, &rejection).await?;
                response.rejected += 1;
                SignalItemOutcome {
                    index,
                    outcome: "rejected".to_owned(),
                    signal_id: None,
                    field: Some(rejection.field),
                    reason: Some(rejection.reason),
                }
            }
            Ok(signal) => match pipeline.ingest(&signal).await? {
                IngestOutcome::Accepted { signal_id } => {
                    response.accepted += 1;
                    item_outcome(index, "accepted", signal_id.to_string(), None)
                }
                IngestOutcome::Duplicate { signal_id } => {
                    response.duplicates += 1;
                    item_outcome(index, "duplicate", signal_id.to_string(), None)
                }
                IngestOutcome::Conflict {
                    signal_id,
                    recorded,
                    offered,
                } => {
                    response.conflicts += 1;
                    item_outcome(
                        index,
                        "conflict",
                        signal_id.to_string(),
                        Some(format!(
                            "already recorded with other content (fingerprint {recorded}, this delivery {offered}); the first record stands"
                        )),
                    )
                }
            },
        };
        response.items.push(outcome);
    }
    if after == AfterIngest::Drain {
        response.processed = Some(drain(pipeline).await);
    }
    Ok(response)
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
