//! Opening the store named by `--store`: `sqlite:PATH` (one file) or `dynamodb:PREFIX`
//! (the tables `PREFIX-events`, `PREFIX-idempotency`, `PREFIX-projections`, reached with
//! the standard AWS configuration: region, credentials, `AWS_ENDPOINT_URL`).

use crate::UsageError;
use opx_app::ports::{
    Commit, IdempotencyRecord, Page, Projection, RejectRecord, Store, StoreError, StoreRead,
    WorkItem,
};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_store_dynamodb::{DynamoStore, TableNames};
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use std::path::Path;

/// The scheme of the embedded store.
pub const SQLITE_SCHEME: &str = "sqlite:";
/// The scheme of the AWS store.
pub const DYNAMODB_SCHEME: &str = "dynamodb:";

/// The store a command works on. Every command takes it through the store ports, so it
/// behaves the same on both.
pub enum AnyStore {
    /// One SQLite file.
    Sqlite(SqliteStore),
    /// Three DynamoDB tables.
    Dynamo(DynamoStore),
}

impl AnyStore {
    /// Makes the store ready: the SQLite schema (migrations), or the DynamoDB tables
    /// (created if missing, checked if present). Idempotent.
    pub async fn init(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.init().await,
            AnyStore::Dynamo(store) => store.create_tables().await,
        }
    }

    /// Closes the store: SQLite checkpoints its log into the file; DynamoDB has nothing
    /// to flush.
    pub fn close(self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.close(),
            AnyStore::Dynamo(_) => Ok(()),
        }
    }
}

/// Opens (creating if missing, for SQLite) the store named by `spec`.
pub fn open(spec: &str) -> anyhow::Result<AnyStore> {
    if let Some(path) = spec.strip_prefix(SQLITE_SCHEME) {
        if path.is_empty() {
            return Err(UsageError(format!(
                "--store {spec:?} names no file; write sqlite:PATH, e.g. sqlite:./opx.db"
            ))
            .into());
        }
        return Ok(AnyStore::Sqlite(open_path(Path::new(path))?));
    }
    if let Some(prefix) = spec.strip_prefix(DYNAMODB_SCHEME) {
        // A bad prefix or a missing region is a usage error: nothing was tried yet.
        TableNames::for_prefix(prefix)
            .map_err(|error| UsageError(format!("--store {spec:?}: {error}")))?;
        let store = connect_blocking(prefix).map_err(|error| match error {
            StoreError::Invalid(message) => {
                anyhow::Error::from(UsageError(format!("--store {spec:?}: {message}")))
            }
            other => anyhow::Error::from(other),
        })?;
        return Ok(AnyStore::Dynamo(store));
    }
    Err(UsageError(format!(
        "--store {spec:?} is not a store; write sqlite:PATH (e.g. sqlite:./opx.db), \
         dynamodb:PREFIX (e.g. dynamodb:opx), or set OPX_STORE"
    ))
    .into())
}

/// Opens the SQLite store file at `path`, with the default durability (survives SIGKILL).
pub fn open_path(path: &Path) -> anyhow::Result<SqliteStore> {
    Ok(SqliteStore::open(path, SqliteOptions::default())?)
}

/// Loads the AWS configuration chain and connects. `open` is synchronous and is called
/// from inside the command's single-threaded runtime, which cannot block on a future, so
/// the chain (which is async: profile files, IMDS) is loaded on a short-lived thread with
/// a runtime of its own. The client it returns does all its requests later, on the
/// caller's runtime.
fn connect_blocking(prefix: &str) -> Result<DynamoStore, StoreError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| StoreError::Unavailable {
                        message: format!(
                            "cannot start a runtime to load the AWS configuration: {error}"
                        ),
                        source: Some(Box::new(error)),
                    })?;
                runtime.block_on(DynamoStore::connect(prefix))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable {
                    message: "loading the AWS configuration failed unexpectedly (the loader \
                              panicked); retry, or check the AWS environment variables"
                        .to_string(),
                    source: None,
                })
            })
    })
}

/// Calls the same method on whichever store this is.
macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => $call.await,
            AnyStore::Dynamo($store) => $call.await,
        }
    };
}

impl StoreRead for AnyStore {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        delegate!(self, store => store.read_stream(stream_id, from_sequence, limit))
    }

    async fn stream_head(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        delegate!(self, store => store.stream_head(stream_id))
    }

    async fn list_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        delegate!(self, store => store.list_streams(cursor, limit))
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        delegate!(self, store => store.idempotency(key))
    }

    async fn list_idempotency(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<IdempotencyRecord>, StoreError> {
        delegate!(self, store => store.list_idempotency(cursor, limit))
    }

    async fn projection(&self, kind: &str, key: &str) -> Result<Option<Projection>, StoreError> {
        delegate!(self, store => store.projection(kind, key))
    }

    async fn list_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Projection>, StoreError> {
        delegate!(self, store => store.list_projections(kind, cursor, limit))
    }

    async fn pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<WorkItem>, StoreError> {
        delegate!(self, store => store.pending_work(cursor, limit))
    }

    async fn list_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RejectRecord>, StoreError> {
        delegate!(self, store => store.list_rejects(cursor, limit))
    }
}

impl Store for AnyStore {
    async fn commit(&self, commit: Commit) -> Result<Vec<EventPointer>, StoreError> {
        delegate!(self, store => store.commit(commit))
    }

    async fn record_reject(&self, reject: RejectRecord) -> Result<(), StoreError> {
        delegate!(self, store => store.record_reject(reject))
    }
}
