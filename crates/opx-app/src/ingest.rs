//! The one way a payload enters: bytes and their origin in, one outcome per item out.
//!
//! `opx ingest`, `POST /signals` and the `signal-ingest` function all call
//! [`ingest_payload`] and only format its [`IngestReport`]. The payload is parsed with the
//! domain's source parser; each item is numbered from 1 in payload order (index 0 is the
//! whole payload, as [`reject_id`](crate::ports::reject_id) documents); each signal is
//! recorded with [`Pipeline::ingest`] in its own commit; each refused item is recorded as
//! one [`RejectRecord`] and its neighbours are still processed. A store failure is reported
//! on its item and never hides the others: a transient one leaves the signal unrecorded
//! (sending the payload again records it; what was recorded is then a duplicate), a
//! permanent one is also recorded as a reject.

use crate::pipeline::{IngestOutcome, Pipeline, PipelineError};
use crate::ports::{Publisher, RejectRecord, Store, StoreError};
use opx_domain::hash::Digest;
use opx_domain::signal::{Signal, SourceKind};
use opx_domain::source::{parse_payload, Rejection, PAYLOAD_LEN_MAX};

/// The index of a reject that refuses the whole payload; items count from 1.
pub const WHOLE_PAYLOAD: u64 = 0;

/// How an entry point takes payloads.
#[derive(Clone, Copy, Debug)]
pub struct IngestPolicy {
    /// `Err(reason)` refuses a payload of this kind as a whole (it enters elsewhere).
    pub takes: fn(SourceKind) -> Result<(), String>,
    /// Attempts at recording one signal while the store fails transiently (at least 1).
    pub attempts_max: u32,
    /// Pause before attempt `n + 1` is `n` times this, in milliseconds.
    pub backoff_ms: u64,
}

impl IngestPolicy {
    /// Every kind, one attempt per signal: a transient failure goes straight back to the
    /// sender, which retries the payload.
    pub const EVERY_KIND: IngestPolicy = IngestPolicy {
        takes: every_kind,
        attempts_max: 1,
        backoff_ms: 0,
    };
}

fn every_kind(_: SourceKind) -> Result<(), String> {
    Ok(())
}

/// One payload as received.
#[derive(Clone, Copy, Debug)]
pub struct Payload<'a> {
    /// Recorded on its rejects: `alarms.ndjson:17`, `api:POST /signals by …`,
    /// `lambda:signal-ingest:<request id>`.
    pub origin: &'a str,
    /// Its bytes (a reader may keep only the first `PAYLOAD_LEN_MAX + 1` of them).
    pub bytes: &'a [u8],
    /// Its full length in bytes.
    pub len: usize,
}

impl<'a> Payload<'a> {
    /// A payload held whole.
    pub fn new(origin: &'a str, bytes: &'a [u8]) -> Payload<'a> {
        Payload {
            origin,
            bytes,
            len: bytes.len(),
        }
    }
}

/// Why a payload was refused as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadRefusal {
    /// Nothing in it could be attributed to an item: too large, not JSON, of no known kind.
    Unreadable,
    /// Of a kind this entry point does not take ([`IngestPolicy::takes`]).
    KindNotTaken,
}

/// What happened to one item.
#[derive(Debug)]
pub enum ItemOutcome {
    /// First delivery of the signal: recorded.
    Accepted(Box<Signal>),
    /// Already recorded with the same content.
    Duplicate(Box<Signal>),
    /// Already recorded with other content: the first record stands, this one is refused.
    Conflict {
        /// The signal offered.
        signal: Box<Signal>,
        /// The fingerprint recorded first.
        recorded: Digest,
        /// This delivery's fingerprint.
        offered: Digest,
    },
    /// Refused by the parser (for index 0, the whole payload).
    Refused(Rejection),
    /// The store failed to record the signal. Transient: not recorded, send the payload
    /// again. Otherwise: refused, and recorded as a reject.
    Failed {
        /// The signal offered.
        signal: Box<Signal>,
        /// Why.
        error: PipelineError,
    },
}

/// One item's outcome and the reject it left.
#[derive(Debug)]
pub struct ItemReport {
    /// Its position in the payload, from 1 ([`WHOLE_PAYLOAD`] for a payload refused whole).
    pub index: u64,
    /// What happened.
    pub outcome: ItemOutcome,
    /// The refusal recorded as its reject, if it was refused.
    pub reject: Option<Rejection>,
    /// Recording that reject failed; the caller should fail so the payload is sent again.
    pub reject_error: Option<StoreError>,
}

/// What one payload did.
#[derive(Debug, Default)]
pub struct IngestReport {
    /// The kind detected, when the payload was recognised.
    pub source: Option<SourceKind>,
    /// Set when the payload was refused as a whole; `items` then holds its one refusal,
    /// at index [`WHOLE_PAYLOAD`].
    pub refused: Option<PayloadRefusal>,
    /// One report per item, in payload order.
    pub items: Vec<ItemReport>,
}

impl IngestReport {
    /// Whether a retry of the same payload can record what this one could not: a signal
    /// failed transiently or a reject was not recorded.
    pub fn incomplete(&self) -> bool {
        self.items.iter().any(|item| {
            item.reject_error.is_some()
                || matches!(&item.outcome, ItemOutcome::Failed { error, .. } if error.is_transient())
        })
    }
}

/// Parses `payload`, records each of its signals and each refusal; see the module
/// documentation.
pub async fn ingest_payload<S: Store, P: Publisher>(
    pipeline: &Pipeline<'_, S, P>,
    policy: &IngestPolicy,
    payload: Payload<'_>,
) -> IngestReport {
    let mut report = IngestReport::default();
    let parsed = if payload.len > PAYLOAD_LEN_MAX {
        // A reader that cut the bytes still reports the real length.
        Err(Rejection::new(
            "$",
            format!(
                "expected at most {PAYLOAD_LEN_MAX} bytes, got {} bytes; send smaller batches",
                payload.len
            ),
        ))
    } else {
        parse_payload(payload.bytes, &pipeline.config().source)
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(rejection) => {
            report.refused = Some(PayloadRefusal::Unreadable);
            report
                .items
                .push(refused(pipeline, payload, WHOLE_PAYLOAD, rejection).await);
            return report;
        }
    };
    report.source = Some(parsed.source);
    if let Err(reason) = (policy.takes)(parsed.source) {
        report.refused = Some(PayloadRefusal::KindNotTaken);
        let rejection = Rejection::new("$", reason);
        report
            .items
            .push(refused(pipeline, payload, WHOLE_PAYLOAD, rejection).await);
        return report;
    }
    for (index, item) in (1..).zip(parsed.items) {
        let item = match item {
            Err(rejection) => refused(pipeline, payload, index, rejection).await,
            Ok(signal) => recorded(pipeline, policy, payload, index, signal).await,
        };
        report.items.push(item);
    }
    report
}

async fn refused<S: Store, P: Publisher>(
    pipeline: &Pipeline<'_, S, P>,
    payload: Payload<'_>,
    index: u64,
    rejection: Rejection,
) -> ItemReport {
    let mut item = ItemReport {
        index,
        outcome: ItemOutcome::Refused(rejection.clone()),
        reject: None,
        reject_error: None,
    };
    record_reject(pipeline, payload, &mut item, rejection).await;
    item
}

async fn recorded<S: Store, P: Publisher>(
    pipeline: &Pipeline<'_, S, P>,
    policy: &IngestPolicy,
    payload: Payload<'_>,
    index: u64,
    signal: Signal,
) -> ItemReport {
    let mut attempt = 1;
    let result = loop {
        match pipeline.ingest(&signal).await {
            Err(error) if error.is_transient() && attempt < policy.attempts_max => {
                // Another writer holds the store (a busy SQLite file, throttling): recording
                // a signal is idempotent, so back off and try again.
                tracing::warn!(%error, attempt, signal = %signal.id, "recording a signal failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(
                    policy.backoff_ms.saturating_mul(u64::from(attempt)),
                ))
                .await;
                attempt += 1;
            }
            other => break other,
        }
    };
    let signal = Box::new(signal);
    let (outcome, rejection) = match result {
        Ok(IngestOutcome::Accepted { .. }) => (ItemOutcome::Accepted(signal), None),
        Ok(IngestOutcome::Duplicate { .. }) => (ItemOutcome::Duplicate(signal), None),
        Ok(IngestOutcome::Conflict {
            signal_id,
            recorded,
            offered,
        }) => {
            let rejection = Rejection::new(
                "$",
                format!(
                    "signal {signal_id} is already recorded with fingerprint {recorded}, this delivery has {offered}: the first record stands (did the source configuration change?)"
                ),
            );
            (
                ItemOutcome::Conflict {
                    signal,
                    recorded,
                    offered,
                },
                Some(rejection),
            )
        }
        Err(error) if error.is_transient() => (ItemOutcome::Failed { signal, error }, None),
        Err(error) => {
            let rejection = Rejection::new("$", error.to_string());
            (ItemOutcome::Failed { signal, error }, Some(rejection))
        }
    };
    let mut item = ItemReport {
        index,
        outcome,
        reject: None,
        reject_error: None,
    };
    if let Some(rejection) = rejection {
        record_reject(pipeline, payload, &mut item, rejection).await;
    }
    item
}

async fn record_reject<S: Store, P: Publisher>(
    pipeline: &Pipeline<'_, S, P>,
    payload: Payload<'_>,
    item: &mut ItemReport,
    rejection: Rejection,
) {
    let record = RejectRecord::new(
        payload.origin,
        payload.bytes,
        item.index,
        rejection.field.as_str(),
        rejection.reason.as_str(),
    );
    item.reject_error = pipeline.store().record_reject(record).await.err();
    item.reject = Some(rejection);
}
