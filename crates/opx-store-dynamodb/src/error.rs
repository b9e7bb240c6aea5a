//! Classifying DynamoDB failures by what the caller should do. Everything is decided by
//! error codes (the service's exception name, a cancellation reason's `Code`) and the
//! position of a cancellation reason, never by message text.

use crate::items::{self, IdempotencyItem, Item, VersionOnly};
use crate::plan::Action;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::CancellationReason;
use opx_app::ports::{Conflict, IdempotencyRecord, StoreError};
use std::error::Error;
use std::fmt::Debug;

/// A cancellation reason's code for a failed condition.
const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailed";
/// Cancellation reason codes that a later attempt can get past.
const TRANSIENT_REASONS: [&str; 4] = [
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
];
/// Service error codes that mean the request itself is malformed.
const INVALID_REQUEST_CODES: [&str; 2] = ["ValidationException", "SerializationException"];

/// A failed SDK call as a [`StoreError`]: a malformed request is `Invalid`, anything else
/// (throttling the SDK's retries did not get past, a missing table, credentials, the
/// network) is `Unavailable` with the SDK's full error as the source.
pub(crate) fn sdk_error<E, R>(doing: &str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    let code = error.as_service_error().and_then(|service| service.code());
    let detail = DisplayErrorContext(&error).to_string();
    match (&error, code) {
        (SdkError::ConstructionFailure(_), _) => StoreError::Invalid(format!(
            "{doing}: the request could not be built ({detail}); check the store's \
             configuration (region, endpoint)"
        )),
        (_, Some(code)) if INVALID_REQUEST_CODES.contains(&code) => {
            StoreError::Invalid(format!("{doing}: DynamoDB refused the request: {detail}"))
        }
        (_, Some("ResourceNotFoundException")) => StoreError::Unavailable {
            message: format!(
                "{doing}: a table does not exist ({detail}); create the tables with \
                 `opx --store dynamodb:PREFIX init` (or the deployment) for this prefix and \
                 region"
            ),
            source: Some(Box::new(error)),
        },
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => StoreError::Unavailable {
            message: format!(
                "{doing}: DynamoDB could not be reached ({detail}); check the network, \
                     the region and AWS_ENDPOINT_URL, then retry"
            ),
            source: Some(Box::new(error)),
        },
        _ => StoreError::Unavailable {
            message: format!("{doing}: {detail}; retry later, or check credentials and region"),
            source: Some(Box::new(error)),
        },
    }
}

/// Why a transaction was cancelled, read from its reasons.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A typed conflict, complete.
    Conflict(Conflict),
    /// An idempotency key is used; the stored record, when the reason carried it.
    IdempotencyKeyUsed { key: String, old: Option<Item> },
    /// A projection is at another version; its old item, when the reason carried it.
    ProjectionVersion {
        kind: String,
        key: String,
        expected: Option<u64>,
        old: Option<Item>,
    },
    /// Retrying can help (contention, throttling).
    Transient(String),
    /// The request is wrong; retrying cannot help.
    Invalid(String),
    /// A reason this store does not know how to read.
    Unknown(String),
}

/// Maps the cancellation reasons of a transaction to the first refused action, by
/// position. A failed condition wins over contention: it is a fact about stored data,
/// which a retry would only see again.
pub(crate) fn read_cancellation(actions: &[Action], reasons: &[CancellationReason]) -> Refusal {
    if reasons.len() != actions.len() {
        return Refusal::Unknown(format!(
            "DynamoDB gave {} cancellation reasons for a transaction of {} actions",
            reasons.len(),
            actions.len()
        ));
    }
    let failed_condition = actions
        .iter()
        .zip(reasons)
        .find(|(_, reason)| reason.code() == Some(CONDITIONAL_CHECK_FAILED));
    if let Some((action, reason)) = failed_condition {
        return refused_action(action, reason.item().cloned());
    }
    let codes: Vec<&str> = reasons
        .iter()
        .filter_map(CancellationReason::code)
        .filter(|code| *code != "None")
        .collect();
    let summary = reasons
        .iter()
        .zip(actions)
        .filter(|(reason, _)| reason.code().is_some_and(|code| code != "None"))
        .map(|(reason, action)| {
            format!(
                "{} on {action:?}: {}",
                reason.code().unwrap_or("?"),
                reason.message().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    if codes.iter().any(|code| TRANSIENT_REASONS.contains(code)) {
        Refusal::Transient(format!(
            "the transaction was cancelled by contention or throttling ({summary})"
        ))
    } else if codes.contains(&"ValidationError") {
        Refusal::Invalid(format!("DynamoDB refused the transaction ({summary})"))
    } else {
        Refusal::Unknown(format!("the transaction was cancelled ({summary})"))
    }
}

fn refused_action(action: &Action, old: Option<Item>) -> Refusal {
    match action {
        Action::EventPut {
            stream_id,
            sequence,
        }
        | Action::EventLink {
            stream_id,
            sequence,
        } => Refusal::Conflict(Conflict::StreamMoved {
            stream_id: stream_id.clone(),
            sequence: *sequence,
        }),
        Action::StreamRegistered { stream_id } => Refusal::Conflict(Conflict::StreamMoved {
            stream_id: stream_id.clone(),
            sequence: 1,
        }),
        Action::WorkEventCheck {
            work_key,
            stream_id,
            sequence,
        } => Refusal::Invalid(format!(
            "work item {work_key} points at {stream_id}#{sequence}, which is not stored with \
             that hash; enqueue work in the commit that writes the event, or later, with the \
             committed event's pointer"
        )),
        Action::Idempotency { key } => Refusal::IdempotencyKeyUsed {
            key: key.clone(),
            old,
        },
        Action::Projection {
            kind,
            key,
            expected,
        } => Refusal::ProjectionVersion {
            kind: kind.clone(),
            key: key.clone(),
            expected: *expected,
            old,
        },
        Action::Work { key } => Refusal::Unknown(format!(
            "the unconditional change of work item {key} failed a condition"
        )),
    }
}

/// The stored record from a refused put's old item.
pub(crate) fn idempotency_record(old: Item) -> Result<IdempotencyRecord, StoreError> {
    items::from_item::<IdempotencyItem>("idempotency record", old)?.into_record()
}

/// The stored version from a refused projection change's old item.
pub(crate) fn projection_version(old: Item) -> Result<u64, StoreError> {
    Ok(items::from_item::<VersionOnly>("projection", old)?.version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn reason(code: &str) -> CancellationReason {
        CancellationReason::builder().code(code).build()
    }

    fn actions() -> Vec<Action> {
        vec![
            Action::EventPut {
                stream_id: "s".into(),
                sequence: 2,
            },
            Action::EventLink {
                stream_id: "s".into(),
                sequence: 2,
            },
            Action::Idempotency { key: "k".into() },
            Action::Projection {
                kind: "incident".into(),
                key: "i".into(),
                expected: Some(1),
            },
        ]
    }

    #[test]
    fn a_failed_condition_maps_by_position_to_its_action() {
        let refusal = read_cancellation(
            &actions(),
            &[
                reason("None"),
                reason("ConditionalCheckFailed"),
                reason("None"),
                reason("None"),
            ],
        );
        assert!(matches!(
            refusal,
            Refusal::Conflict(Conflict::StreamMoved { ref stream_id, sequence: 2 }) if stream_id == "s"
        ));
        let old = CancellationReason::builder()
            .code("ConditionalCheckFailed")
            .item("version", AttributeValue::N("3".into()))
            .build();
        match read_cancellation(
            &actions(),
            &[reason("None"), reason("None"), reason("None"), old],
        ) {
            Refusal::ProjectionVersion {
                kind,
                key,
                expected,
                old: Some(old),
            } => {
                assert_eq!(
                    (kind.as_str(), key.as_str(), expected),
                    ("incident", "i", Some(1))
                );
                assert_eq!(projection_version(old).unwrap(), 3);
            }
            other => panic!("expected ProjectionVersion, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_condition_wins_over_contention_and_contention_is_transient() {
        let refusal = read_cancellation(
            &actions(),
            &[
                reason("TransactionConflict"),
                reason("None"),
                reason("ConditionalCheckFailed"),
                reason("None"),
            ],
        );
        assert!(
            matches!(refusal, Refusal::IdempotencyKeyUsed { ref key, old: None } if key == "k")
        );
        for code in [
            "TransactionConflict",
            "ThrottlingError",
            "ProvisionedThroughputExceeded",
        ] {
            let refusal = read_cancellation(
                &actions(),
                &[reason("None"), reason(code), reason("None"), reason("None")],
            );
            assert!(
                matches!(refusal, Refusal::Transient(_)),
                "{code}: {refusal:?}"
            );
        }
        assert!(matches!(
            read_cancellation(
                &actions(),
                &[
                    reason("ValidationError"),
                    reason("None"),
                    reason("None"),
                    reason("None")
                ]
            ),
            Refusal::Invalid(_)
        ));
        assert!(matches!(
            read_cancellation(&actions(), &[reason("None")]),
            Refusal::Unknown(_)
        ));
    }
}
