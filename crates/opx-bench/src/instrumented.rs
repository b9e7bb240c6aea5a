//! A store wrapper that counts and times every port call, so a run can say where its time
//! went (commits, reads, or the pipeline's own work) without a profiler.

use crate::clock::now;
use opx_app::ports::{
    Commit, IdempotencyRecord, Page, Projection, RejectRecord, Store, StoreError, StoreRead,
    WorkItem,
};
use opx_domain::event::{EventEnvelope, EventPointer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Calls and time of one port method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStats {
    /// How many calls.
    pub calls: u64,
    /// Time spent inside them, in nanoseconds.
    pub total_ns: u64,
}

/// `store` with every call counted and timed.
pub struct Instrumented<S> {
    store: S,
    stats: Mutex<BTreeMap<&'static str, CallStats>>,
    events_committed: AtomicU64,
}

impl<S> Instrumented<S> {
    /// Wraps `store`.
    pub fn new(store: S) -> Instrumented<S> {
        Instrumented {
            store,
            stats: Mutex::new(BTreeMap::new()),
            events_committed: AtomicU64::new(0),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.store
    }

    /// Unwraps the store.
    pub fn into_inner(self) -> S {
        self.store
    }

    /// The stats so far, by method name.
    pub fn stats(&self) -> BTreeMap<&'static str, CallStats> {
        self.stats
            .lock()
            .map(|stats| stats.clone())
            .unwrap_or_default()
    }

    /// Events written by successful commits so far.
    pub fn events_committed(&self) -> u64 {
        self.events_committed.load(Ordering::Relaxed)
    }

    fn record(&self, method: &'static str, elapsed: Duration) {
        if let Ok(mut stats) = self.stats.lock() {
            let entry = stats.entry(method).or_default();
            entry.calls += 1;
            entry.total_ns += u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        }
    }

    async fn timed<T>(&self, method: &'static str, call: impl Future<Output = T>) -> T {
        let started = now();
        let result = call.await;
        self.record(method, started.elapsed());
        result
    }
}

impl<S: StoreRead> StoreRead for Instrumented<S> {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.timed(
            "read_stream",
            self.store.read_stream(stream_id, from_sequence, limit),
        )
        .await
    }

    async fn stream_head(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        self.timed("stream_head", self.store.stream_head(stream_id))
            .await
    }

    async fn list_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        self.timed("list_streams", self.store.list_streams(cursor, limit))
            .await
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.timed("idempotency", self.store.idempotency(key)).await
    }

    async fn list_idempotency(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<IdempotencyRecord>, StoreError> {
        self.timed(
            "list_idempotency",
            self.store.list_idempotency(cursor, limit),
        )
        .await
    }

    async fn projection(&self, kind: &str, key: &str) -> Result<Option<Projection>, StoreError> {
        self.timed("projection", self.store.projection(kind, key))
            .await
    }

    async fn list_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Projection>, StoreError> {
        self.timed(
            "list_projections",
            self.store.list_projections(kind, cursor, limit),
        )
        .await
    }

    async fn pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<WorkItem>, StoreError> {
        self.timed("pending_work", self.store.pending_work(cursor, limit))
            .await
    }

    async fn list_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RejectRecord>, StoreError> {
        self.timed("list_rejects", self.store.list_rejects(cursor, limit))
            .await
    }
}

impl<S: Store> Store for Instrumented<S> {
    async fn commit(&self, commit: Commit) -> Result<Vec<EventPointer>, StoreError> {
        let events = commit.events.len() as u64;
        let result = self.timed("commit", self.store.commit(commit)).await;
        if result.is_ok() {
            self.events_committed.fetch_add(events, Ordering::Relaxed);
        }
        result
    }

    async fn record_reject(&self, reject: RejectRecord) -> Result<(), StoreError> {
        self.timed("record_reject", self.store.record_reject(reject))
            .await
    }
}
