//! A prototype of group commit for the embedded pipeline, with no change to `opx-app` or
//! `opx-store-sqlite`: the measurement behind the proposal in docs/PERFORMANCE.md.
//!
//! The pipeline commits one step at a time through [`Store::commit`]. SQLite's cost per
//! commit is mostly fixed: every page a transaction touches (the events, idempotency,
//! projections and work tables and their indexes, the header page) is appended to the log
//! whole, and the log is checkpointed into the database, with two syncs, every thousand
//! pages. Many small commits therefore cost far more than one large one.
//!
//! [`WriteBehindStore`] accepts a step's commit at once — after checking the same
//! conditions `SqliteStore` checks (stream head, idempotency key, projection version),
//! against the commits it holds and the file — and keeps it; reads see held commits as if
//! they were written. [`WriteBehindStore::flush`] writes everything held with one
//! [`SqliteStore::commit_many`] (one transaction, a savepoint per commit, every condition
//! checked again by SQLite). A step's outcome is durable once the flush that carries it
//! returns, so the driver flushes before it reports anything and before a responder acts.
//!
//! The steps still run one at a time, in the order `Pipeline::drain` would run them, so
//! nothing can conflict inside a batch. (Running steps concurrently and grouping the
//! commits that meet — tried first — lost most of its gain to conflicts: a storm's steps
//! all append to one group stream, and only one of them can win per transaction.)

use crate::clock::now;
use opx_app::ports::{
    Commit, Conflict, IdempotencyRecord, Page, Projection, ProjectionChange, RejectRecord, Store,
    StoreError, StoreRead, WorkItem, READ_PAGE_SIZE_MAX,
};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::hash::Digest;
use opx_store_sqlite::SqliteStore;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Held commits and what they wrote, as reads must see it.
#[derive(Default)]
struct Held {
    commits: Vec<Commit>,
    /// Per stream, the held events: they follow the stored head without a gap.
    events: BTreeMap<String, Vec<EventEnvelope>>,
    idempotency: BTreeMap<String, IdempotencyRecord>,
    /// `None`: deleted by a held commit.
    projections: BTreeMap<(String, String), Option<Projection>>,
}

/// A SQLite store that holds commits until [`WriteBehindStore::flush`]; see the module
/// documentation. With `holding` off every commit is written at once (the baseline).
pub struct WriteBehindStore {
    inner: SqliteStore,
    holding: bool,
    held: Mutex<Held>,
    flushes: AtomicU64,
    commits_flushed: AtomicU64,
    flush_ns: AtomicU64,
}

impl WriteBehindStore {
    /// Wraps `inner`.
    pub fn new(inner: SqliteStore, holding: bool) -> WriteBehindStore {
        WriteBehindStore {
            inner,
            holding,
            held: Mutex::new(Held::default()),
            flushes: AtomicU64::new(0),
            commits_flushed: AtomicU64::new(0),
            flush_ns: AtomicU64::new(0),
        }
    }

    /// The SQLite store (reads that must not see held commits, verification).
    pub fn inner(&self) -> &SqliteStore {
        &self.inner
    }

    /// Unwraps the SQLite store; held commits are dropped, so flush first.
    pub fn into_inner(self) -> SqliteStore {
        self.inner
    }

    /// SQLite transactions written by flushes.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Commits carried by those transactions.
    pub fn commits_flushed(&self) -> u64 {
        self.commits_flushed.load(Ordering::Relaxed)
    }

    /// Time spent in flushes, in nanoseconds.
    pub fn flush_ns(&self) -> u64 {
        self.flush_ns.load(Ordering::Relaxed)
    }

    fn held(&self) -> Result<MutexGuard<'_, Held>, StoreError> {
        self.held
            .lock()
            .map_err(|_| StoreError::Corrupt("the held commits were poisoned by a panic".into()))
    }

    /// Writes every held commit in one transaction. A refused commit is a bug in the
    /// holding checks (or another process wrote the file): the error names it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let commits = std::mem::take(&mut *self.held()?).commits;
        if commits.is_empty() {
            return Ok(());
        }
        let count = commits.len() as u64;
        let started = now();
        let outcomes = self.inner.commit_many(commits).await;
        self.flush_ns.fetch_add(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.commits_flushed.fetch_add(count, Ordering::Relaxed);
        for (index, outcome) in outcomes.into_iter().enumerate() {
            if let Err(error) = outcome {
                return Err(StoreError::Corrupt(format!(
                    "held commit {index} of {count} was refused at flush: {error}"
                )));
            }
        }
        Ok(())
    }

    async fn head(&self, stream_id: &str) -> Result<(u64, Digest), StoreError> {
        let held = self
            .held()?
            .events
            .get(stream_id)
            .and_then(|events| events.last())
            .map(|event| (event.sequence, event.hash));
        match held {
            Some(head) => Ok(head),
            None => Ok(self
                .inner
                .stream_head(stream_id)
                .await?
                .map_or((0, Digest::ZERO), |event| (event.sequence, event.hash))),
        }
    }

    /// Checks `commit` as SQLite would, against held commits and the file, then holds it.
    async fn hold(&self, commit: Commit) -> Result<Vec<EventPointer>, StoreError> {
        let mut heads: BTreeMap<&str, (u64, Digest)> = BTreeMap::new();
        for event in &commit.events {
            let (sequence, hash) = match heads.get(event.stream_id.as_str()) {
                Some(head) => *head,
                None => self.head(&event.stream_id).await?,
            };
            if event.sequence != sequence + 1 || event.previous_hash != hash {
                return Err(Conflict::StreamMoved {
                    stream_id: event.stream_id.clone(),
                    sequence: event.sequence,
                }
                .into());
            }
            heads.insert(&event.stream_id, (event.sequence, event.hash));
        }
        for record in &commit.idempotency {
            if let Some(existing) = self.idempotency(&record.key).await? {
                return Err(Conflict::IdempotencyKeyUsed { existing }.into());
            }
        }
        for change in &commit.projections {
            let (kind, key, expected) = match change {
                ProjectionChange::Put {
                    projection,
                    expected_version,
                } => (&projection.kind, &projection.key, *expected_version),
                ProjectionChange::Delete {
                    kind,
                    key,
                    expected_version,
                } => (kind, key, Some(*expected_version)),
            };
            let actual = self
                .projection(kind, key)
                .await?
                .map(|stored| stored.version);
            if actual != expected {
                return Err(Conflict::ProjectionVersion {
                    kind: kind.clone(),
                    key: key.clone(),
                    expected,
                    actual,
                }
                .into());
            }
        }
        let pointers = commit.events.iter().map(EventEnvelope::pointer).collect();
        let mut held = self.held()?;
        for event in &commit.events {
            held.events
                .entry(event.stream_id.clone())
                .or_default()
                .push(event.clone());
        }
        for record in &commit.idempotency {
            held.idempotency.insert(record.key.clone(), record.clone());
        }
        for change in &commit.projections {
            match change {
                ProjectionChange::Put { projection, .. } => {
                    held.projections.insert(
                        (projection.kind.clone(), projection.key.clone()),
                        Some(projection.clone()),
                    );
                }
                ProjectionChange::Delete { kind, key, .. } => {
                    held.projections.insert((kind.clone(), key.clone()), None);
                }
            }
        }
        held.commits.push(commit);
        Ok(pointers)
    }
}

impl StoreRead for WriteBehindStore {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let mut events = self
            .inner
            .read_stream(stream_id, from_sequence, limit)
            .await?;
        let limit = limit.min(READ_PAGE_SIZE_MAX);
        if events.len() < limit {
            let after = events
                .last()
                .map_or(from_sequence, |event| event.sequence + 1);
            let held = self.held()?;
            if let Some(more) = held.events.get(stream_id) {
                events.extend(
                    more.iter()
                        .filter(|event| event.sequence >= after)
                        .take(limit - events.len())
                        .cloned(),
                );
            }
        }
        Ok(events)
    }

    async fn stream_head(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        let held = self
            .held()?
            .events
            .get(stream_id)
            .and_then(|events| events.last().cloned());
        match held {
            Some(head) => Ok(Some(head)),
            None => self.inner.stream_head(stream_id).await,
        }
    }

    fn list_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<String>, StoreError>> + Send {
        self.inner.list_streams(cursor, limit)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let held = self.held()?.idempotency.get(key).cloned();
        match held {
            Some(record) => Ok(Some(record)),
            None => self.inner.idempotency(key).await,
        }
    }

    fn list_idempotency(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<IdempotencyRecord>, StoreError>> + Send {
        self.inner.list_idempotency(cursor, limit)
    }

    async fn projection(&self, kind: &str, key: &str) -> Result<Option<Projection>, StoreError> {
        let held = self
            .held()?
            .projections
            .get(&(kind.to_owned(), key.to_owned()))
            .cloned();
        match held {
            Some(projection) => Ok(projection),
            None => self.inner.projection(kind, key).await,
        }
    }

    fn list_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<Projection>, StoreError>> + Send {
        self.inner.list_projections(kind, cursor, limit)
    }

    /// The stored queue only: the driver flushes before it lists work.
    fn pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<WorkItem>, StoreError>> + Send {
        self.inner.pending_work(cursor, limit)
    }

    fn list_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<RejectRecord>, StoreError>> + Send {
        self.inner.list_rejects(cursor, limit)
    }
}

impl Store for WriteBehindStore {
    async fn commit(&self, commit: Commit) -> Result<Vec<EventPointer>, StoreError> {
        if self.holding {
            self.hold(commit).await
        } else {
            self.inner.commit(commit).await
        }
    }

    fn record_reject(
        &self,
        reject: RejectRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.record_reject(reject)
    }
}
