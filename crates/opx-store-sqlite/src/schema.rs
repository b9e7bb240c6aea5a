//! The versioned schema and its migrations.
//!
//! The schema version lives in `PRAGMA user_version` and the file is marked as an opx store
//! with `PRAGMA application_id`, so a foreign SQLite file is refused instead of being
//! "migrated". Each migration runs inside one `BEGIN IMMEDIATE` transaction together with
//! the version bump: a crash mid-migration leaves the previous version, never half of one.

use crate::error::OpenError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// `PRAGMA application_id` of an opx store: the ASCII bytes `opx1`.
pub const APPLICATION_ID: i64 = 0x6f70_7831;

/// Migration `n` (1-based: `MIGRATIONS[n - 1]`) takes a file from schema version `n - 1`
/// to `n`. Append only: a released migration is never edited, because files written by
/// earlier versions of opx must keep opening.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    //
    // `events`: the hash-chained log. WITHOUT ROWID keeps each stream's events together
    // in primary-key order, so a stream read and the head lookup are one index range.
    //
    // `work.position` uses AUTOINCREMENT so a position is never reused after the newest item
    // is removed: a pending-work cursor (the last position seen) can never skip an item
    // added later. The foreign key keeps a work item from pointing at an event that is not
    // stored.
    //
    // `rejects.position` orders rejects by arrival, which is how people read them.
    r"
CREATE TABLE events (
    stream_id      TEXT    NOT NULL CHECK (length(stream_id) > 0),
    sequence       INTEGER NOT NULL CHECK (sequence >= 1),
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL CHECK (schema_version >= 0),
    payload        BLOB    NOT NULL,
    previous_hash  BLOB    NOT NULL CHECK (length(previous_hash) = 32),
    hash           BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (stream_id, sequence)
) WITHOUT ROWID;

CREATE TABLE idempotency (
    key          TEXT NOT NULL PRIMARY KEY,
    request_hash BLOB NOT NULL CHECK (length(request_hash) = 32),
    response     BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE projections (
    kind     TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    version  INTEGER NOT NULL CHECK (version >= 0),
    document BLOB    NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;

CREATE TABLE work (
    position  INTEGER PRIMARY KEY AUTOINCREMENT,
    key       TEXT    NOT NULL UNIQUE,
    stage     TEXT    NOT NULL,
    stream_id TEXT    NOT NULL,
    sequence  INTEGER NOT NULL,
    hash      BLOB    NOT NULL CHECK (length(hash) = 32),
    FOREIGN KEY (stream_id, sequence) REFERENCES events (stream_id, sequence)
);

CREATE TABLE rejects (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    id       BLOB NOT NULL UNIQUE CHECK (length(id) = 32),
    origin   TEXT NOT NULL,
    field    TEXT NOT NULL,
    reason   TEXT NOT NULL,
    excerpt  TEXT NOT NULL
);
",
];

/// The schema version this build of opx writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// What the file's header says about it.
struct FileMarks {
    application_id: i64,
    user_version: i64,
    has_tables: bool,
}

fn read_marks(connection: &Connection) -> rusqlite::Result<FileMarks> {
    let application_id = connection.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let user_version = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let table_count: i64 =
        connection.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
    Ok(FileMarks {
        application_id,
        user_version,
        has_tables: table_count > 0,
    })
}

/// Refuses files that are not opx stores or come from a newer opx.
fn check_marks(path: &Path, marks: &FileMarks) -> Result<(), OpenError> {
    let is_foreign = (marks.application_id != 0 && marks.application_id != APPLICATION_ID)
        || (marks.application_id == 0 && marks.user_version == 0 && marks.has_tables);
    if is_foreign {
        return Err(OpenError::NotAnOpxStore {
            path: path.to_path_buf(),
            application_id: marks.application_id,
        });
    }
    if marks.user_version > i64::from(SCHEMA_VERSION) {
        return Err(OpenError::NewerSchema {
            path: path.to_path_buf(),
            found: marks.user_version,
            supported: SCHEMA_VERSION,
        });
    }
    if marks.user_version < 0 {
        return Err(OpenError::NotAnOpxStore {
            path: path.to_path_buf(),
            application_id: marks.application_id,
        });
    }
    Ok(())
}

/// Brings the file to [`SCHEMA_VERSION`], or refuses it. Idempotent and safe when several
/// processes open the same new file at once: the version is re-read under the write lock.
pub(crate) fn migrate(connection: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let sqlite = |source| OpenError::from_sqlite(path, source);
    // The common case (an up-to-date file) takes no write lock.
    let marks = read_marks(connection).map_err(sqlite)?;
    check_marks(path, &marks)?;
    if marks.user_version == i64::from(SCHEMA_VERSION) {
        return Ok(());
    }
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let marks = read_marks(&transaction).map_err(sqlite)?;
    check_marks(path, &marks)?;
    let from = usize::try_from(marks.user_version).unwrap_or(0);
    for migration in MIGRATIONS.iter().skip(from) {
        transaction.execute_batch(migration).map_err(sqlite)?;
    }
    transaction
        .pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(sqlite)?;
    transaction
        .pragma_update(None, "user_version", i64::from(SCHEMA_VERSION))
        .map_err(sqlite)?;
    transaction.commit().map_err(sqlite)
}
