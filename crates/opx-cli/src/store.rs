//! Opening the store named by `--store`.

use crate::UsageError;
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use std::path::Path;

/// The scheme of the embedded store.
pub const SQLITE_SCHEME: &str = "sqlite:";
/// The scheme of the AWS store (not in this build yet).
pub const DYNAMODB_SCHEME: &str = "dynamodb:";

/// Opens (creating if missing) the store named by `spec`.
pub fn open(spec: &str) -> anyhow::Result<SqliteStore> {
    if let Some(path) = spec.strip_prefix(SQLITE_SCHEME) {
        if path.is_empty() {
            return Err(UsageError(format!(
                "--store {spec:?} names no file; write sqlite:PATH, e.g. sqlite:./opx.db"
            ))
            .into());
        }
        return open_path(Path::new(path));
    }
    if spec.starts_with(DYNAMODB_SCHEME) {
        return Err(UsageError(format!(
            "--store {spec:?}: the DynamoDB store is not available in this build yet; use sqlite:PATH"
        ))
        .into());
    }
    Err(UsageError(format!(
        "--store {spec:?} is not a store; write sqlite:PATH (e.g. sqlite:./opx.db) or set OPX_STORE"
    ))
    .into())
}

/// Opens the SQLite store file at `path`, with the default durability (survives SIGKILL).
pub fn open_path(path: &Path) -> anyhow::Result<SqliteStore> {
    Ok(SqliteStore::open(path, SqliteOptions::default())?)
}
