//! `fanout`: the events table's stream in, one EventBridge notification per committed
//! event out.
//!
//! The fan-out is the only reader of the stream. Events are immutable, so only `INSERT`
//! records matter; `MODIFY` and `REMOVE` are counted and ignored. Each inserted event is
//! read from its `NewImage` and checked (known item format, hash over its content) before
//! it is published; an image that fails the check is poison: it is recorded as a reject
//! and not retried (the stage's work item, committed with the event, still holds the
//! work, and the sweeper re-drives it).
//!
//! Each record is published on its own, in stream order, and a record whose publish
//! failed is returned in `batchItemFailures` by its sequence number. Lambda then retries
//! from the earliest failed record, so later records may be published twice: harmless,
//! because every stage is idempotent. Records beyond [`FANOUT_BATCH_RECORDS_MAX`], or
//! left when the invocation is about to time out, are reported as failures too, so they
//! are retried instead of lost with a timed-out batch.
//!
//! An event that pages a human (`IncidentOpened`, `SeverityChanged`) was committed with
//! its [`Stage::Page`] work item. Once its publish succeeded, the fan-out removes that
//! item; if the publish fails, the item stays queued, so even when Lambda gives up on
//! the record the sweeper still sends the page. Removing the item is best effort: if that
//! commit fails, the record is not reported (it was published), and the sweeper sends
//! the page again, which the subscriber deduplicates by its message id.
//!
//! [`Stage::Page`]: opx_app::ports::Stage::Page

use crate::error::HandlerError;
use crate::invocation::Invocation;
use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use opx_app::pipeline::complete_pages;
use opx_app::ports::{Publisher, Store};
use serde::Serialize;

/// Most stream records one invocation handles (set the event source mapping's batch size
/// to at most this); the rest are reported as failures and come back in the next batch.
pub const FANOUT_BATCH_RECORDS_MAX: usize = 1000;
/// Time kept in reserve before the invocation's deadline, in milliseconds: once less is
/// left, the remaining records are reported as failures rather than risk a timeout that
/// would fail the whole batch.
pub const FANOUT_TIME_RESERVE_MS: i64 = 3_000;

/// What one invocation did (logged; Lambda only reads the failures).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FanoutReport {
    /// Records in the batch.
    pub records: u64,
    /// `INSERT` records published.
    pub published: u64,
    /// Published events that page a human whose page item was then removed.
    pub pages_sent: u64,
    /// Published events that page a human whose page item could not be removed (the
    /// sweeper sends the page again).
    pub pages_left_queued: u64,
    /// `MODIFY` and `REMOVE` records (events are immutable; nothing to do).
    pub ignored: u64,
    /// Records whose image was refused and recorded as a reject.
    pub poison: u64,
    /// Records reported as failed (publish failed, over the batch limit, out of time).
    pub failed: u64,
}

/// The Lambda response with the fan-out's report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FanoutOutcome {
    /// What Lambda reads: the records to retry.
    pub response: DynamoDbEventResponse,
    /// What happened.
    pub report: FanoutReport,
}

fn failure(sequence_number: &str) -> DynamoDbBatchItemFailure {
    let mut failure = DynamoDbBatchItemFailure::default();
    failure.item_identifier = Some(sequence_number.to_owned());
    failure
}

/// Publishes one stream batch; see the module documentation.
pub async fn handle_fanout<S: Store, P: Publisher>(
    store: &S,
    publisher: &P,
    invocation: &Invocation<'_>,
    batch: &StreamBatch,
) -> Result<FanoutOutcome, HandlerError> {
    let mut outcome = FanoutOutcome::default();
    outcome.report.records = batch.records.len() as u64;
    for (index, record) in batch.records.iter().enumerate() {
        if record.event_name != "INSERT" {
            outcome.report.ignored += 1;
            continue;
        }
        let Some(sequence_number) = record.change.sequence_number.as_deref() else {
            // Without a sequence number a failure cannot be reported for this record
            // alone; failing the whole batch makes Lambda retry it.
            return Err(HandlerError::Retryable(format!(
                "stream record {index} ({}) has no SequenceNumber; retrying the whole batch",
                record.event_id
            )));
        };
        let out_of_time = invocation
            .remaining_ms()
            .is_some_and(|remaining| remaining < FANOUT_TIME_RESERVE_MS);
        if index >= FANOUT_BATCH_RECORDS_MAX || out_of_time {
            outcome.report.failed += 1;
            outcome
                .response
                .batch_item_failures
                .push(failure(sequence_number));
            continue;
        }
        let event = match opx_store_dynamodb::event_from_item(record.change.new_image.clone()) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(function = invocation.function, retryable = false, record = %record.event_id, sequence_number, %error, "stream image refused; recorded as a reject, the work queue still holds the work");
                // Through a JSON value, so attributes come out in name order and a redelivered
                // record gets the same reject id.
                let input = serde_json::to_value(&record.change.new_image)
                    .and_then(|image| serde_json::to_vec(&image))
                    .unwrap_or_else(|_| sequence_number.as_bytes().to_vec());
                let field = format!("Records[{index}].dynamodb.NewImage");
                match invocation
                    .record_reject(store, &input, index as u64, &field, &error.to_string())
                    .await
                {
                    Ok(()) => outcome.report.poison += 1,
                    Err(reject_error) => {
                        tracing::warn!(function = invocation.function, retryable = reject_error.is_transient(), error = %reject_error, "the reject could not be recorded; the record will be retried");
                        outcome.report.failed += 1;
                        outcome
                            .response
                            .batch_item_failures
                            .push(failure(sequence_number));
                    }
                }
                continue;
            }
        };
        match publisher.publish(std::slice::from_ref(&event)).await {
            Ok(()) => {
                outcome.report.published += 1;
                match complete_pages(store, std::slice::from_ref(&event)).await {
                    Ok(pages) => outcome.report.pages_sent += pages as u64,
                    Err(error) => {
                        outcome.report.pages_left_queued += 1;
                        tracing::warn!(function = invocation.function, retryable = error.is_transient(), stream = %event.stream_id, sequence = event.sequence, %error, "page published but its work item could not be removed; the sweeper will send it again");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(function = invocation.function, retryable = error.is_transient(), stream = %event.stream_id, sequence = event.sequence, sequence_number, %error, "publish failed; the record is reported for retry");
                outcome.report.failed += 1;
                outcome
                    .response
                    .batch_item_failures
                    .push(failure(sequence_number));
            }
        }
    }
    tracing::info!(
        function = invocation.function,
        request_id = invocation.request_id,
        records = outcome.report.records,
        published = outcome.report.published,
        pages_sent = outcome.report.pages_sent,
        pages_left_queued = outcome.report.pages_left_queued,
        ignored = outcome.report.ignored,
        poison = outcome.report.poison,
        failed = outcome.report.failed,
        "stream batch fanned out"
    );
    Ok(outcome)
}
