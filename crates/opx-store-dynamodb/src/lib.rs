//! The AWS store of opx: the application's storage ports
//! ([`opx_app::ports::StoreRead`] and [`opx_app::ports::Store`]) over three DynamoDB tables.
//!
//! # Tables (prefix `P`, see [`TableNames`])
//! | table | key | attributes | notes |
//! | --- | --- | --- | --- |
//! | `P-events` | `stream_id` S, `sequence` N | `event_type`, `schema_version`, `payload` B, `previous_hash`, `hash` (hex S), `format` | the hash-chained log; stream of new images (fan-out) |
//! | `P-idempotency` | `key` S | `request_hash`, `response` B, `format` | permanent: no TTL, ever |
//! | `P-projections` | `kind` S, `key` S | `version` N, `document` B, `format` | caller projections, plus the store's own kinds below |
//!
//! Store-internal kinds in the projections table start with `~` (callers may not use it):
//! `~stream` (one item per stream, written in the transaction of its first event, so
//! `list_streams` is a Query in key order), `~work` (pending work, key
//! [`WorkItem::key`], with the time it was first added), `~reject` (rejects, key = id).
//! All tables bill on demand. [`DynamoStore::create_tables`] creates them idempotently.
//!
//! # Commits
//! A [`Commit`] is validated (the same rules as every backend: sizes, limits, sealed
//! events, no item twice) and becomes exactly one `TransactWriteItems`:
//!
//! | write | action | condition |
//! | --- | --- | --- |
//! | event | Put `P-events` | `attribute_not_exists(stream_id)` |
//! | first event of a stream in the commit, sequence 1 | + Put `~stream` | `attribute_not_exists(kind)` |
//! | first event of a stream in the commit, sequence n > 1 | + ConditionCheck on event n − 1 | `hash = previous_hash` |
//! | later events of that stream in the commit | (the Put only) | continuity checked in memory |
//! | idempotency record | Put | `attribute_not_exists(key)`, old item returned on failure |
//! | projection create / replace / delete | Put / Put / Delete | `attribute_not_exists(kind)` / `version = expected` / `version = expected`, old item returned |
//! | work added | Update `~work` | none (`added_at_ms` kept with `if_not_exists`) |
//! | work added for an event not in the commit | + ConditionCheck on the event | `hash = pointer hash` (else `Invalid`) |
//! | work done | Delete `~work` | none |
//!
//! DynamoDB refuses two actions on one item in a transaction, which is why only the first
//! event of each stream carries the condition against the store. A cancelled transaction is
//! mapped by the position and `Code` of its cancellation reasons (never by message text):
//! `ConditionalCheckFailed` on an event action is [`Conflict::StreamMoved`], on an
//! idempotency put [`Conflict::IdempotencyKeyUsed`] with the stored record (from the old
//! item DynamoDB returns), on a projection [`Conflict::ProjectionVersion`] with the stored
//! version; contention and throttling are retried ([`COMMIT_ATTEMPTS_MAX`]) and then
//! [`StoreError::Unavailable`]. Item size (400 KB), transaction size (4 MB) and action count
//! (100) are checked before sending.
//!
//! # Reads
//! Every read of an event, idempotency record or projection is strongly consistent, and
//! every Query or Scan is followed across DynamoDB's 1 MB pages until the requested page is
//! full. Cursors are opaque, bound to their list, and carry the page's last key.

mod cursor;
mod error;
mod items;
mod plan;
mod read;
mod tables;

pub use items::{event_from_item, INTERNAL_KIND_PREFIX, ITEM_FORMAT};

use crate::error::{read_cancellation, sdk_error, Refusal};
use crate::plan::{Built, Plan};
use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::Client;
use opx_app::ports::{
    Commit, Conflict, IdempotencyRecord, Page, Projection, RejectRecord, Store, StoreError,
    StoreRead, WorkItem, REJECT_EXCERPT_LEN_MAX,
};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::hash::Digest;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Longest DynamoDB table name.
pub const TABLE_NAME_LEN_MAX: usize = 255;
/// Longest table prefix: the longest table name suffix (`-idempotency`, `-projections`)
/// must still fit in [`TABLE_NAME_LEN_MAX`].
pub const TABLE_PREFIX_LEN_MAX: usize = TABLE_NAME_LEN_MAX - "-projections".len();
/// Largest item DynamoDB stores (400 KB), names and values counted.
pub const ITEM_LEN_MAX: usize = 400 * 1024;
/// Most actions in one `TransactWriteItems`.
pub const TRANSACTION_ACTIONS_MAX: usize = 100;
/// Largest aggregate item size of one `TransactWriteItems` (4 MB).
pub const TRANSACTION_LEN_MAX: usize = 4 * 1024 * 1024;
/// Longest key (idempotency key, projection kind and key, stream id as a sort key): the
/// ports' limit, DynamoDB's limit for a sort key value.
pub use opx_app::ports::KEY_LEN_MAX;
/// How often a commit cancelled by contention or throttling is sent (the first attempt
/// included) before it fails as [`StoreError::Unavailable`].
pub const COMMIT_ATTEMPTS_MAX: u32 = 5;
/// First wait before resending a cancelled commit; doubled on each attempt.
pub const COMMIT_BACKOFF_MS_INITIAL: u64 = 25;
/// Longest wait between two attempts of a commit.
pub const COMMIT_BACKOFF_MS_MAX: u64 = 1_000;
/// How often the SDK sends one request (the first attempt included) when DynamoDB throttles
/// it or the network fails, as configured by [`DynamoStore::connect`] and
/// [`retry_config`].
pub const SDK_ATTEMPTS_MAX: u32 = 5;
/// The SDK's first wait before retrying a request.
pub const SDK_BACKOFF_MS_INITIAL: u64 = 50;
/// The SDK's longest wait between two attempts of a request.
pub const SDK_BACKOFF_MS_MAX: u64 = 5_000;
/// Most Query or Scan calls that one page of a read may take (each returns at least one
/// item unless the read is over, so this only stops a misbehaving server).
pub const QUERY_CALLS_MAX: usize = opx_app::ports::READ_PAGE_SIZE_MAX + 2;
/// How long [`DynamoStore::create_tables`] waits for a new table to become `ACTIVE`.
pub const TABLE_ACTIVE_WAIT_MS_MAX: u64 = 120_000;
/// How often [`DynamoStore::create_tables`] looks at a table that is being created.
pub const TABLE_POLL_INTERVAL_MS: u64 = 500;

/// The names of a store's three tables, derived from one validated prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableNames {
    prefix: String,
    events: String,
    idempotency: String,
    projections: String,
}

impl TableNames {
    /// `P-events`, `P-idempotency`, `P-projections` for the prefix `P`, which must be 1 to
    /// [`TABLE_PREFIX_LEN_MAX`] characters of `a-z A-Z 0-9 _ - .` (DynamoDB's table-name
    /// alphabet).
    pub fn for_prefix(prefix: &str) -> Result<TableNames, StoreError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
        if prefix.is_empty() || prefix.len() > TABLE_PREFIX_LEN_MAX || !prefix.chars().all(allowed)
        {
            return Err(StoreError::Invalid(format!(
                "table prefix {:?} is not usable: DynamoDB table names allow only a-z, A-Z, 0-9, \
                 '_', '-' and '.', and the prefix must be 1 to TABLE_PREFIX_LEN_MAX \
                 ({TABLE_PREFIX_LEN_MAX}) characters; e.g. dynamodb:opx or dynamodb:opx-staging",
                plan::shorten(prefix)
            )));
        }
        Ok(TableNames {
            prefix: prefix.to_string(),
            events: format!("{prefix}-events"),
            idempotency: format!("{prefix}-idempotency"),
            projections: format!("{prefix}-projections"),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The events table: `P-events`.
    pub fn events(&self) -> &str {
        &self.events
    }

    /// The idempotency table: `P-idempotency`.
    pub fn idempotency(&self) -> &str {
        &self.idempotency
    }

    /// The projections table: `P-projections`.
    pub fn projections(&self) -> &str {
        &self.projections
    }
}

/// A pending work item with the time it was first added (milliseconds since the epoch, by
/// the clock of the process that added it), for a sweeper that re-drives old work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingWork {
    /// The work.
    pub item: WorkItem,
    /// When it was first added.
    pub added_at_ms: u64,
}

/// The retry policy [`DynamoStore::connect`] gives the SDK: standard mode,
/// [`SDK_ATTEMPTS_MAX`] attempts, exponential backoff from [`SDK_BACKOFF_MS_INITIAL`] to
/// [`SDK_BACKOFF_MS_MAX`]. Callers that build their own client should use it too.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(SDK_ATTEMPTS_MAX)
        .with_initial_backoff(Duration::from_millis(SDK_BACKOFF_MS_INITIAL))
        .with_max_backoff(Duration::from_millis(SDK_BACKOFF_MS_MAX))
}

/// The store over DynamoDB. Cheap to clone (clones share the SDK client and its
/// connection pool).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
}

impl DynamoStore {
    /// A store over the tables named by `tables`, through `client` (whose retry policy
    /// applies to single requests; see [`retry_config`]).
    pub fn new(client: Client, tables: TableNames) -> DynamoStore {
        DynamoStore { client, tables }
    }

    /// A store over the tables of `prefix`, with the standard AWS configuration chain
    /// (region, credentials, `AWS_ENDPOINT_URL`) and [`retry_config`].
    pub async fn connect(prefix: &str) -> Result<DynamoStore, StoreError> {
        let tables = TableNames::for_prefix(prefix)?;
        let config = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(retry_config())
            .load()
            .await;
        if config.region().is_none() {
            return Err(StoreError::Invalid(
                "no AWS region is configured: set AWS_REGION (or a profile's region) before \
                 using the DynamoDB store"
                    .to_string(),
            ));
        }
        Ok(DynamoStore::new(Client::new(&config), tables))
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table names.
    pub fn tables(&self) -> &TableNames {
        &self.tables
    }

    /// Sends a transaction, resending it (with a new request token, after a backoff) while
    /// DynamoDB cancels it for contention or throttling only.
    async fn send(&self, plan: &Plan) -> Result<(), StoreError> {
        let mut token = RequestToken::new();
        let mut last_cause = String::new();
        for attempt in 0..COMMIT_ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(token.backoff(attempt)).await;
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(plan.items.clone()))
                .client_request_token(token.text())
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            let refusal = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    read_cancellation(&plan.actions, cancelled.cancellation_reasons())
                }
                // The same request is still running: ask again with the same token, so that
                // DynamoDB answers with its outcome instead of running it twice.
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                    last_cause = "the same transaction was still in progress".to_string();
                    continue;
                }
                _ => return Err(sdk_error("committing", error)),
            };
            match refusal {
                Refusal::Transient(cause) => {
                    last_cause = cause;
                    token = RequestToken::new();
                }
                Refusal::Conflict(conflict) => return Err(conflict.into()),
                Refusal::IdempotencyKeyUsed { key, old } => {
                    let existing = match old {
                        Some(item) => error::idempotency_record(item)?,
                        None => self.idempotency(&key).await?.ok_or_else(|| {
                            StoreError::Unavailable {
                                message: format!(
                                    "idempotency key {key:?} refused the commit but cannot be \
                                     read back; retry"
                                ),
                                source: None,
                            }
                        })?,
                    };
                    return Err(Conflict::IdempotencyKeyUsed { existing }.into());
                }
                Refusal::ProjectionVersion {
                    kind,
                    key,
                    expected,
                    old,
                } => {
                    let actual = match old {
                        Some(item) => Some(error::projection_version(item)?),
                        // DynamoDB returns the old item whenever one exists, so none means
                        // absent; read it anyway in case a server left it out.
                        None => self.projection(&kind, &key).await?.map(|p| p.version),
                    };
                    return Err(Conflict::ProjectionVersion {
                        kind,
                        key,
                        expected,
                        actual,
                    }
                    .into());
                }
                Refusal::Invalid(message) => return Err(StoreError::Invalid(message)),
                Refusal::Unknown(message) => {
                    return Err(StoreError::Unavailable {
                        message: format!("{message}; nothing was written, retry later"),
                        source: Some(Box::new(error)),
                    })
                }
            }
        }
        Err(StoreError::Unavailable {
            message: format!(
                "the commit was cancelled {COMMIT_ATTEMPTS_MAX} times (COMMIT_ATTEMPTS_MAX), \
                 last because {last_cause}; nothing was written, retry later"
            ),
            source: None,
        })
    }

    /// Pending work with the time each item was first added, a page at a time (in key
    /// order, like [`StoreRead::pending_work`]).
    pub async fn pending_work_added(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<PendingWork>, StoreError> {
        self.read_pending_work(cursor, limit).await
    }
}

/// A `ClientRequestToken`: the SDK resends a request with the same token when it retries
/// (a timeout, a lost response), and DynamoDB then answers with the first outcome instead
/// of applying the transaction twice. Unique per attempt of a commit.
struct RequestToken {
    digest: Digest,
}

impl RequestToken {
    fn new() -> RequestToken {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let seed = format!("{}/{}/{sequence}", std::process::id(), now_ms());
        RequestToken {
            digest: Digest::of_bytes(seed.as_bytes()),
        }
    }

    /// 36 characters, DynamoDB's longest token.
    fn text(&self) -> String {
        self.digest.to_hex()[..36].to_string()
    }

    /// The wait before `attempt` (1-based among resends): exponential, capped, with a
    /// jitter taken from the token so racing writers do not retry in lockstep.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = COMMIT_BACKOFF_MS_INITIAL
            .saturating_mul(1_u64 << attempt.min(16))
            .min(COMMIT_BACKOFF_MS_MAX);
        let jitter = u64::from(self.digest.0[0]) % (exponential / 2 + 1);
        Duration::from_millis(exponential / 2 + jitter)
    }
}

/// Wall-clock milliseconds: the time a work item is first added, and a token seed. Never
/// part of an event or a decision.
#[allow(clippy::disallowed_methods)]
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

impl StoreRead for DynamoStore {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.read_events(stream_id, from_sequence, limit).await
    }

    async fn stream_head(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        self.read_head(stream_id).await
    }

    async fn list_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        self.read_streams(cursor, limit).await
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.read_idempotency(key).await
    }

    async fn list_idempotency(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<IdempotencyRecord>, StoreError> {
        self.read_idempotency_page(cursor, limit).await
    }

    async fn projection(&self, kind: &str, key: &str) -> Result<Option<Projection>, StoreError> {
        self.read_projection(kind, key).await
    }

    async fn list_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Projection>, StoreError> {
        self.read_projections(kind, cursor, limit).await
    }

    async fn pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<WorkItem>, StoreError> {
        let page = self.read_pending_work(cursor, limit).await?;
        Ok(Page {
            items: page.items.into_iter().map(|pending| pending.item).collect(),
            next: page.next,
        })
    }

    async fn list_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RejectRecord>, StoreError> {
        self.read_rejects(cursor, limit).await
    }
}

impl Store for DynamoStore {
    async fn commit(&self, commit: Commit) -> Result<Vec<EventPointer>, StoreError> {
        plan::validate(&commit)?;
        if commit.write_count() == 0 {
            return Ok(Vec::new());
        }
        match plan::build(&self.tables, &commit, now_ms())? {
            Built::Whole { plan, pointers } => {
                self.send(&plan).await?;
                Ok(pointers)
            }
            Built::Broken { checks, at } => {
                if !checks.items.is_empty() {
                    // Writes nothing: condition checks only. A refusal names the earlier
                    // event that conflicts with the store.
                    self.send(&checks).await?;
                }
                Err(Conflict::StreamMoved {
                    stream_id: at.stream_id,
                    sequence: at.sequence,
                }
                .into())
            }
        }
    }

    async fn record_reject(&self, reject: RejectRecord) -> Result<(), StoreError> {
        if reject.excerpt.len() > REJECT_EXCERPT_LEN_MAX {
            return Err(StoreError::Invalid(format!(
                "reject {}: excerpt is {} bytes, more than REJECT_EXCERPT_LEN_MAX \
                 ({REJECT_EXCERPT_LEN_MAX}); cut it before recording",
                reject.id,
                reject.excerpt.len()
            )));
        }
        let name = format!("reject {}", reject.id);
        let item = items::to_item(&name, &items::RejectItem::from_record(&reject))?;
        plan::checked_len(&name, &item)?;
        let result = self
            .client
            .put_item()
            .table_name(self.tables.projections())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#kind)")
            .expression_attribute_names("#kind", items::attribute::KIND)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Recorded before: the first record wins, recording again is a no-op.
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(sdk_error("recording a reject", error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_the_prefix() {
        let names = TableNames::for_prefix("opx-staging.1").unwrap();
        assert_eq!(names.events(), "opx-staging.1-events");
        assert_eq!(names.idempotency(), "opx-staging.1-idempotency");
        assert_eq!(names.projections(), "opx-staging.1-projections");
        assert_eq!(names.prefix(), "opx-staging.1");
    }

    #[test]
    fn unusable_prefixes_are_refused_with_the_rule() {
        let longest = "p".repeat(TABLE_PREFIX_LEN_MAX);
        assert!(TableNames::for_prefix(&longest).is_ok());
        assert_eq!(
            TableNames::for_prefix(&longest)
                .unwrap()
                .projections()
                .len(),
            TABLE_NAME_LEN_MAX
        );
        for bad in [
            "",
            "opx/prod",
            "opx prod",
            "caf\u{e9}",
            &"p".repeat(TABLE_PREFIX_LEN_MAX + 1),
        ] {
            match TableNames::for_prefix(bad) {
                Err(StoreError::Invalid(message)) => {
                    assert!(message.contains("a-z, A-Z, 0-9"), "{message}")
                }
                other => panic!("{bad:?}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let token = RequestToken::new();
        assert_eq!(token.text().len(), 36);
        let waits: Vec<Duration> = (1..=8).map(|attempt| token.backoff(attempt)).collect();
        for wait in &waits {
            assert!(*wait <= Duration::from_millis(COMMIT_BACKOFF_MS_MAX));
        }
        assert!(waits[0] >= Duration::from_millis(COMMIT_BACKOFF_MS_INITIAL));
        assert!(waits[7] >= Duration::from_millis(COMMIT_BACKOFF_MS_MAX / 2));
    }
}
