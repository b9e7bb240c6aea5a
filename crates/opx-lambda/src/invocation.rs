//! What every handler receives besides its input: which function and request this is,
//! how long it may run, the Lambda's clock and where metrics go.

use crate::telemetry::{emf_line, Metric, MetricsSink};
use opx_app::ports::{Clock, RejectRecord, Store, StoreError};
use opx_domain::time::EpochMs;

pub use opx_app::ports::SystemClock;

/// One invocation's context.
pub struct Invocation<'a> {
    /// The function (`signal-ingest`, `detection`, ...), for logs, metrics and reject
    /// origins.
    pub function: &'a str,
    /// Lambda's request id, so a reject names the invocation that refused it.
    pub request_id: &'a str,
    /// When Lambda stops the invocation, if known.
    pub deadline: Option<EpochMs>,
    /// The Lambda's clock.
    pub clock: &'a dyn Clock,
    /// Where metric lines go.
    pub metrics: &'a dyn MetricsSink,
}

impl<'a> Invocation<'a> {
    /// The context of a Lambda invocation.
    pub fn from_lambda(
        function: &'a str,
        context: &'a lambda_runtime::Context,
        clock: &'a dyn Clock,
        metrics: &'a dyn MetricsSink,
    ) -> Invocation<'a> {
        Invocation {
            function,
            request_id: &context.request_id,
            deadline: i64::try_from(context.deadline).ok().map(EpochMs),
            clock,
            metrics,
        }
    }

    /// Milliseconds left before the deadline (`None`: no deadline).
    pub fn remaining_ms(&self) -> Option<i64> {
        self.deadline
            .map(|deadline| deadline.0.saturating_sub(self.clock.now().0))
    }

    /// The origin recorded on rejects: `lambda:<function>:<request id>`.
    pub fn origin(&self) -> String {
        format!("lambda:{}:{}", self.function, self.request_id)
    }

    /// Writes one EMF line with `metrics` (nothing if none has a value).
    pub fn emit(&self, metrics: &[Metric]) {
        if let Some(line) = emf_line(self.function, self.clock.now(), metrics) {
            self.metrics.write_line(&line);
        }
    }

    /// Records refused input in the store's rejects, so nothing is silently lost. The id
    /// covers the input bytes and the item index, so a redelivery records nothing new.
    pub async fn record_reject<S: Store>(
        &self,
        store: &S,
        input: &[u8],
        item_index: u64,
        field: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        store
            .record_reject(RejectRecord::new(
                self.origin(),
                input,
                item_index,
                field,
                reason,
            ))
            .await
    }
}

pub use opx_app::ports::reject_id;
