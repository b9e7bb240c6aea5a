//! The embedded store of opx: the application's storage ports
//! ([`opx_app::ports::StoreRead`] and [`opx_app::ports::Store`]) over one SQLite file.
//!
//! # Durability and concurrency
//! - One file in write-ahead-log mode (`journal_mode=WAL`). With the default
//!   `synchronous=NORMAL` a commit survives the process being killed (SIGKILL) at any
//!   instant; the last commits before a power loss or OS crash may be lost (never torn).
//!   [`Synchronous::Full`] syncs the log at every commit and survives power loss too.
//! - Several processes may share the file. Every commit starts with `BEGIN IMMEDIATE`, which
//!   takes SQLite's single write lock before reading anything, so the conditions a commit
//!   checks cannot change before it writes. A writer that waits longer than the busy timeout
//!   gets [`StoreError::Unavailable`] (transient: retry).
//! - Readers never block the writer and always see whole commits.
//! - One [`SqliteStore`] is one connection behind a [`std::sync::Mutex`]. Its async methods
//!   do short synchronous work and **block the calling thread** while they run (and while
//!   waiting for the write lock, up to the busy timeout). That is fine for the CLI and the
//!   tests; open one store per worker for more parallel readers.
//! - [`SqliteStore::commit_many`] is group commit: many commits in one transaction with one
//!   savepoint each, so a conflicting commit rolls back alone, and the batch costs one log
//!   sync under `synchronous=FULL`.
//! - [`SqliteStore::close`] checkpoints the log into the database file
//!   (`wal_checkpoint(TRUNCATE)`); dropping a store does the same on a best-effort basis.
//!
//! # Schema (version [`SCHEMA_VERSION`])
//! Applied automatically when a file is opened; tracked with `PRAGMA user_version`, and the
//! file is marked with `PRAGMA application_id` = [`APPLICATION_ID`] (`opx1`). A file from a
//! newer opx, or another application's SQLite file, is refused ([`OpenError`]).
//!
//! | table | key | columns | notes |
//! | --- | --- | --- | --- |
//! | `events` | `(stream_id, sequence)`, WITHOUT ROWID | `event_type`, `schema_version`, `payload` BLOB, `previous_hash`, `hash` (32-byte BLOBs) | the hash-chained log; payload bytes stored exactly as hashed |
//! | `idempotency` | `key` | `request_hash`, `response` BLOB | permanent, never expires |
//! | `projections` | `(kind, key)`, WITHOUT ROWID | `version`, `document` BLOB | updated with a version guard |
//! | `work` | `position` INTEGER AUTOINCREMENT; `key` UNIQUE | `stage`, `stream_id`, `sequence`, `hash` | pending work in insertion order; a foreign key to `events` |
//! | `rejects` | `position` INTEGER AUTOINCREMENT; `id` UNIQUE | `origin`, `field`, `reason`, `excerpt` | refused payloads in arrival order |
//!
//! There is no separate table of streams: [`list_streams`](opx_app::ports::StoreRead::list_streams)
//! walks the distinct stream ids of the `events` primary key with one index seek per id.
//!
//! # Commits
//! A commit is validated first (sizes, limits, well-formed keys, events whose hash covers
//! their content, no item written twice) and refused with
//! [`StoreError::Invalid`] before any lock is taken.
//! Then, inside one transaction:
//! - each event must be the next of its stream: its sequence one past the head's and its
//!   `previous_hash` the head's hash, counting earlier events of the same commit; else
//!   [`Conflict::StreamMoved`](opx_app::ports::Conflict::StreamMoved). A gap (sequence 3 on
//!   a one-event stream) is refused the same way;
//! - idempotency keys must be new, else
//!   [`Conflict::IdempotencyKeyUsed`](opx_app::ports::Conflict::IdempotencyKeyUsed) with the
//!   stored record;
//! - projection changes must find the expected version, else
//!   [`Conflict::ProjectionVersion`](opx_app::ports::Conflict::ProjectionVersion);
//! - work added must point at a stored event with that hash, else `Invalid`.
//!
//! Any refusal rolls back the whole commit.
//!
//! # Pagination
//! Every read takes a limit (1 to [`READ_PAGE_SIZE_MAX`](opx_app::ports::READ_PAGE_SIZE_MAX),
//! larger limits are capped, 0 is invalid). Cursors are opaque strings bound to the list
//! that issued them. Order: streams, idempotency records and projections by key (byte
//! order); pending work and rejects by insertion.

mod cursor;
mod error;
mod read;
mod schema;
mod write;

pub use error::OpenError;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};

use opx_app::ports::{
    Commit, IdempotencyRecord, Page, Projection, RejectRecord, Store, StoreError, StoreRead,
    WorkItem,
};
use opx_domain::event::{EventEnvelope, EventPointer};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Longest idempotency key, projection kind or projection key accepted, in bytes: the
/// ports' limit, which every backend honours.
pub use opx_app::ports::KEY_LEN_MAX;

/// Prepared statements kept per connection: more than the store has, so none is
/// re-prepared.
const STATEMENT_CACHE_CAPACITY: usize = 32;

/// Default time a writer waits for another writer's lock before giving up.
pub const BUSY_TIMEOUT_MS_DEFAULT: u32 = 5_000;

/// How hard SQLite works to make a commit durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// `synchronous=NORMAL`: survives the process being killed at any instant; a power loss
    /// may lose the last commits (never corrupts the file).
    #[default]
    Normal,
    /// `synchronous=FULL`: the log is synced at every commit; survives power loss too.
    Full,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// How to open a store file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Durability of each commit.
    pub synchronous: Synchronous,
    /// How long a writer waits for another process's write lock before the commit fails
    /// with a transient error.
    pub busy_timeout_ms: u32,
}

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions {
            synchronous: Synchronous::Normal,
            busy_timeout_ms: BUSY_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// The settings a connection actually runs with, read back from SQLite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveSettings {
    /// `PRAGMA journal_mode` (`wal` for an opx store).
    pub journal_mode: String,
    /// `PRAGMA synchronous`: 1 is NORMAL, 2 is FULL.
    pub synchronous_level: i64,
    /// `PRAGMA foreign_keys`.
    pub foreign_keys: bool,
    /// `PRAGMA busy_timeout`, in milliseconds.
    pub busy_timeout_ms: i64,
    /// `PRAGMA user_version`: the schema version of the file.
    pub schema_version: i64,
    /// `PRAGMA application_id`.
    pub application_id: i64,
}

/// An opx store in one SQLite file. See the crate documentation.
#[derive(Debug)]
pub struct SqliteStore {
    /// `None` only after [`SqliteStore::close`] took it, which consumes the store.
    connection: Mutex<Option<Connection>>,
    path: PathBuf,
    options: SqliteOptions,
}

impl SqliteStore {
    /// Opens (creating if missing) the store file at `path` and brings its schema up to
    /// date. The file's directory must exist.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore, OpenError> {
        let path = path.as_ref();
        let sqlite = |source| OpenError::from_sqlite(path, source);
        // No URI interpretation: a path is a path. NO_MUTEX because the store serialises
        // access to its connection itself.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut connection = Connection::open_with_flags(path, flags).map_err(sqlite)?;
        // The busy timeout comes first so that every later step waits for other processes
        // instead of failing.
        connection
            .busy_timeout(Duration::from_millis(u64::from(options.busy_timeout_ms)))
            .map_err(sqlite)?;
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::WalRefused {
                path: path.to_path_buf(),
                mode,
            });
        }
        connection
            .pragma_update(None, "synchronous", options.synchronous.pragma_value())
            .map_err(sqlite)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite)?;
        schema::migrate(&mut connection, path)?;
        // Every statement the store runs stays prepared (about twenty of them).
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        Ok(SqliteStore {
            connection: Mutex::new(Some(connection)),
            path: path.to_path_buf(),
            options,
        })
    }

    /// A second, independent connection to the same file, with the same options.
    pub fn reopen(&self) -> Result<SqliteStore, OpenError> {
        SqliteStore::open(&self.path, self.options)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> SqliteOptions {
        self.options
    }

    /// Creates the schema if it is missing; idempotent. [`SqliteStore::open`] already did
    /// this, so for SQLite it only re-checks the file (this exists for `opx init`, which
    /// other backends need).
    pub async fn init(&self) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.with_connection(|connection| {
            schema::migrate(connection, &path).map_err(StoreError::from)
        })
    }

    /// Group commit: applies each commit as if by [`Store::commit`], in order, inside one
    /// SQLite transaction (one savepoint per commit). A commit that conflicts or is invalid
    /// is rolled back alone and reported in its slot; the others are written. If the
    /// backend fails (I/O, busy), the whole batch is rolled back and every commit not
    /// refused on its own merits reports a transient error. Returns one outcome per commit,
    /// in order.
    pub async fn commit_many(
        &self,
        commits: Vec<Commit>,
    ) -> Vec<Result<Vec<EventPointer>, StoreError>> {
        let outcome =
            self.with_connection(|connection| Ok(write::commit_many(connection, &commits)));
        match outcome {
            Ok(outcomes) => outcomes,
            // Only reachable if the connection is gone, which `close` makes impossible.
            Err(error) => {
                let message = error.to_string();
                commits
                    .iter()
                    .map(|_| {
                        Err(StoreError::Unavailable {
                            message: message.clone(),
                            source: None,
                        })
                    })
                    .collect()
            }
        }
    }

    /// The settings the connection runs with, read back from SQLite.
    pub fn effective_settings(&self) -> Result<EffectiveSettings, StoreError> {
        self.with_connection(|connection| {
            let read = |name: &str| -> Result<i64, StoreError> {
                connection
                    .pragma_query_value(None, name, |row| row.get(0))
                    .map_err(|error| error::store_error(&format!("reading PRAGMA {name}"), error))
            };
            let journal_mode: String = connection
                .pragma_query_value(None, "journal_mode", |row| row.get(0))
                .map_err(|error| error::store_error("reading PRAGMA journal_mode", error))?;
            Ok(EffectiveSettings {
                journal_mode,
                synchronous_level: read("synchronous")?,
                foreign_keys: read("foreign_keys")? == 1,
                busy_timeout_ms: read("busy_timeout")?,
                schema_version: read("user_version")?,
                application_id: read("application_id")?,
            })
        })
    }

    /// Checkpoints the write-ahead log into the database file and closes the connection.
    /// If another connection is still reading, the log is left for the last one to close
    /// (SQLite checkpoints it then); that is not an error.
    pub fn close(mut self) -> Result<(), StoreError> {
        let connection = match self.connection.get_mut() {
            Ok(slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some(connection) = connection else {
            return Ok(());
        };
        checkpoint(&connection).map_err(|error| error::store_error("checkpointing", error))?;
        connection
            .close()
            .map_err(|(_, error)| error::store_error("closing the store file", error))
    }

    /// Runs `work` with the connection. A panic in an earlier holder poisons the mutex; the
    /// connection is still sound (an unfinished transaction rolls back when its guard is
    /// dropped during the unwind, and any left open is rolled back here), so the store
    /// recovers instead of failing every later call.
    fn with_connection<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.lock();
        let connection = guard.as_mut().ok_or_else(|| {
            StoreError::Corrupt("the store was closed; open it again".to_string())
        })?;
        work(connection)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        match self.connection.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                self.connection.clear_poison();
                let guard = poisoned.into_inner();
                if let Some(connection) = guard.as_ref() {
                    if !connection.is_autocommit() {
                        // Best effort: if this fails the next BEGIN fails and reports it.
                        let _ = connection.execute_batch("ROLLBACK");
                    }
                }
                guard
            }
        }
    }
}

/// `wal_checkpoint(TRUNCATE)`: copies the log into the database and empties it.
fn checkpoint(connection: &Connection) -> rusqlite::Result<()> {
    // The pragma returns (busy, log frames, checkpointed frames); busy means another
    // connection kept part of the log, which it checkpoints when it closes.
    connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        let connection = match self.connection.get_mut() {
            Ok(slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(connection) = connection {
            // Best effort, and never wait for other processes while dropping.
            let _ = connection.busy_timeout(Duration::ZERO);
            let _ = checkpoint(&connection);
        }
    }
}

impl StoreRead for SqliteStore {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.with_connection(|connection| {
            read::read_stream(connection, stream_id, from_sequence, limit)
        })
    }

    async fn stream_head(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        self.with_connection(|connection| read::stream_head(connection, stream_id))
    }

    async fn list_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        self.with_connection(|connection| read::list_streams(connection, cursor, limit))
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.with_connection(|connection| read::idempotency(connection, key))
    }

    async fn list_idempotency(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<IdempotencyRecord>, StoreError> {
        self.with_connection(|connection| read::list_idempotency(connection, cursor, limit))
    }

    async fn projection(&self, kind: &str, key: &str) -> Result<Option<Projection>, StoreError> {
        self.with_connection(|connection| read::projection(connection, kind, key))
    }

    async fn list_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Projection>, StoreError> {
        self.with_connection(|connection| read::list_projections(connection, kind, cursor, limit))
    }

    async fn pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<WorkItem>, StoreError> {
        self.with_connection(|connection| read::pending_work(connection, cursor, limit))
    }

    async fn list_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RejectRecord>, StoreError> {
        self.with_connection(|connection| read::list_rejects(connection, cursor, limit))
    }
}

impl Store for SqliteStore {
    async fn commit(&self, commit: Commit) -> Result<Vec<EventPointer>, StoreError> {
        self.with_connection(|connection| write::commit_one(connection, &commit))
    }

    async fn record_reject(&self, reject: RejectRecord) -> Result<(), StoreError> {
        self.with_connection(|connection| write::record_reject(connection, &reject))
    }
}
