//! Mapping SQLite failures onto what the caller should do.
//!
//! Classification uses SQLite's result codes, never message text.

use opx_app::ports::StoreError;
use rusqlite::ErrorCode;
use std::path::{Path, PathBuf};

/// Why a store file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file was written by a newer opx, with a schema this build does not know.
    #[error(
        "store file {} has schema version {found}, newer than version {supported} that this \
         opx understands; upgrade opx to open it",
        path.display()
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its `PRAGMA user_version`.
        found: i64,
        /// [`crate::SCHEMA_VERSION`].
        supported: u32,
    },
    /// The file is a SQLite database of some other application.
    #[error(
        "{} is a SQLite database but not an opx store (application_id {application_id:#x}); \
         point the store at an opx store file or at a path that does not exist yet",
        path.display()
    )]
    NotAnOpxStore {
        /// The file.
        path: PathBuf,
        /// Its `PRAGMA application_id`.
        application_id: i64,
    },
    /// The file system refused write-ahead logging (e.g. a network file system).
    #[error(
        "store file {} cannot use write-ahead logging (journal mode stayed {mode:?}); put the \
         store on a local file system",
        path.display()
    )]
    WalRefused {
        /// The file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// SQLite failed; see the source.
    #[error(
        "cannot open store file {} (does its directory exist, and is it writable?): {source}",
        path.display()
    )]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
}

impl OpenError {
    pub(crate) fn from_sqlite(path: &Path, source: rusqlite::Error) -> OpenError {
        OpenError::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether opening again later can succeed (another process held the file too long).
    pub fn is_transient(&self) -> bool {
        match self {
            OpenError::Sqlite { source, .. } => is_transient_code(source.sqlite_error_code()),
            _ => false,
        }
    }
}

impl From<OpenError> for StoreError {
    fn from(error: OpenError) -> StoreError {
        match &error {
            // The port's documentation puts "unknown schema" under Corrupt: stop and look.
            OpenError::NewerSchema { .. } | OpenError::NotAnOpxStore { .. } => {
                StoreError::Corrupt(error.to_string())
            }
            OpenError::WalRefused { .. } => StoreError::Invalid(error.to_string()),
            OpenError::Sqlite { source, .. }
                if matches!(
                    source.sqlite_error_code(),
                    Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
                ) =>
            {
                StoreError::Corrupt(error.to_string())
            }
            // Busy, permissions, a missing directory: an operator or a retry can fix it.
            OpenError::Sqlite { .. } => StoreError::Unavailable {
                message: error.to_string(),
                source: Some(Box::new(error)),
            },
        }
    }
}

/// Busy, locked, out of space, I/O: the backend may recover, so retrying can help.
fn is_transient_code(code: Option<ErrorCode>) -> bool {
    matches!(
        code,
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::OperationInterrupted
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

/// Maps a SQLite failure during `doing` (a phrase such as "reading stream x") to a
/// [`StoreError`], keeping the source where the port allows it.
pub(crate) fn store_error(doing: &str, error: rusqlite::Error) -> StoreError {
    let code = error.sqlite_error_code();
    if matches!(
        code,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    ) {
        return StoreError::Unavailable {
            message: format!(
                "{doing}: the store file stayed locked by another writer beyond the busy \
                 timeout; retry"
            ),
            source: Some(Box::new(error)),
        };
    }
    if is_transient_code(code) {
        return StoreError::Unavailable {
            message: format!("{doing}: {error}"),
            source: Some(Box::new(error)),
        };
    }
    // Corruption, a schema that does not match, or a bug: nothing a retry fixes.
    // `StoreError::Corrupt` carries text only, so the source is rendered into it.
    StoreError::Corrupt(format!("{doing}: {error}"))
}

/// A stored value that does not decode.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!(
        "{what}; run `opx replay verify` and restore the store from a backup if it fails"
    ))
}
