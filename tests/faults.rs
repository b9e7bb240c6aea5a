//! Fault injection around the store and publisher ports: the k-th call (counted over both)
//! fails once, the way a network, a throttle or a lost race fails in production.

use opx_app::ports::{
    Commit, Conflict, IdempotencyRecord, Page, Projection, Publisher, RejectRecord, Store,
    StoreError, StoreRead, WorkItem,
};
use opx_domain::event::{EventEnvelope, EventPointer};
use std::sync::atomic::{AtomicU64, Ordering};

/// How the chosen call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The backend is unavailable: nothing happens, the caller sees a transient error.
    Transient,
    /// The call happens, then the caller sees a transient error (a timeout after the write
    /// succeeded): a retry must find its own work already done.
    TimeoutAfterWrite,
    /// A commit loses a race it did not really lose (a conditional failure); other calls
    /// fail as [`Fault::Transient`].
    Conditional,
}

/// Counts calls to the wrapped ports and fails call number `fail_at` (1-based) with `fault`.
pub struct FaultPlan {
    calls: AtomicU64,
    fail_at: u64,
    fault: Fault,
}

impl FaultPlan {
    /// A plan that fails call `fail_at` with `fault`.
    pub fn new(fail_at: u64, fault: Fault) -> FaultPlan {
        FaultPlan {
            calls: AtomicU64::new(0),
            fail_at,
            fault,
        }
    }

    /// A plan that never fails (to count the calls of a clean run).
    pub fn never() -> FaultPlan {
        FaultPlan::new(u64::MAX, Fault::Transient)
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Counts a call; `Some(fault)` when this is the one to fail.
    fn next(&self) -> Option<Fault> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        (call == self.fail_at).then_some(self.fault)
    }
}

fn injected(what: &str) -> StoreError {
    StoreError::Unavailable {
        message: format!("injected fault in {what}"),
        source: None,
    }
}

/// A store whose calls follow a [`FaultPlan`].
pub struct FaultyStore<'a, S> {
    inner: &'a S,
    plan: &'a FaultPlan,
}

impl<'a, S> FaultyStore<'a, S> {
    /// Wraps `inner`.
    pub fn new(inner: &'a S, plan: &'a FaultPlan) -> Self {
        FaultyStore { inner, plan }
    }
}

/// A read under the plan: any fault fails it, before (or, for a timeout, after) the read.
macro_rules! faulty_read {
    ($self:ident, $what:literal, $call:expr) => {{
        match $self.plan.next() {
            None => $call.await,
            Some(Fault::TimeoutAfterWrite) => {
                let _ = $call.await;
                Err(injected($what))
            }
            Some(_) => Err(injected($what)),
        }
    }};
}

impl<S: Store> StoreRead for FaultyStore<'_, S> {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        faulty_read!(
            self,
            "read_stream",
            self.inner.read_stream(stream_id, from_sequence, limit)
        )
    }

    async fn stream_head(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        faulty_read!(self, "stream_head", self.inner.stream_head(stream_id))
    }

    async fn list_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        faulty_read!(self, "list_streams", self.inner.list_streams(cursor, limit))
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        faulty_read!(self, "idempotency", self.inner.idempotency(key))
    }

    async fn list_idempotency(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<IdempotencyRecord>, StoreError> {
        faulty_read!(
            self,
            "list_idempotency",
            self.inner.list_idempotency(cursor, limit)
        )
    }

    async fn projection(&self, kind: &str, key: &str) -> Result<Option<Projection>, StoreError> {
        faulty_read!(self, "projection", self.inner.projection(kind, key))
    }

    async fn list_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Projection>, StoreError> {
        faulty_read!(
            self,
            "list_projections",
            self.inner.list_projections(kind, cursor, limit)
        )
    }

    async fn pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<WorkItem>, StoreError> {
        faulty_read!(self, "pending_work", self.inner.pending_work(cursor, limit))
    }

    async fn list_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RejectRecord>, StoreError> {
        faulty_read!(self, "list_rejects", self.inner.list_rejects(cursor, limit))
    }
}

impl<S: Store> Store for FaultyStore<'_, S> {
    async fn commit(&self, commit: Commit) -> Result<Vec<EventPointer>, StoreError> {
        match self.plan.next() {
            None => self.inner.commit(commit).await,
            Some(Fault::Transient) => Err(injected("commit")),
            Some(Fault::TimeoutAfterWrite) => {
                let _ = self.inner.commit(commit).await;
                Err(injected("commit (after it was applied)"))
            }
            Some(Fault::Conditional) => {
                let (stream_id, sequence) = commit
                    .events
                    .first()
                    .map_or((String::from("(none)"), 0), |event| {
                        (event.stream_id.clone(), event.sequence)
                    });
                Err(StoreError::Conflict(Conflict::StreamMoved {
                    stream_id,
                    sequence,
                }))
            }
        }
    }

    async fn record_reject(&self, reject: RejectRecord) -> Result<(), StoreError> {
        faulty_read!(self, "record_reject", self.inner.record_reject(reject))
    }
}

/// A publisher whose calls follow the same [`FaultPlan`] (it publishes nowhere).
pub struct FaultyPublisher<'a> {
    plan: &'a FaultPlan,
}

impl<'a> FaultyPublisher<'a> {
    /// A publisher counting under `plan`.
    pub fn new(plan: &'a FaultPlan) -> Self {
        FaultyPublisher { plan }
    }
}

impl Publisher for FaultyPublisher<'_> {
    async fn publish(&self, _events: &[EventEnvelope]) -> Result<(), StoreError> {
        match self.plan.next() {
            None => Ok(()),
            Some(_) => Err(injected("publish")),
        }
    }
}
