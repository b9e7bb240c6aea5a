//! Commits: validation, the conditional writes, and group commit.
//!
//! Every condition is checked with a `SELECT` inside the write transaction (which holds
//! SQLite's write lock from `BEGIN IMMEDIATE`, so nothing can change between the check and
//! the write), and a primary-key violation on an event insert is mapped by its extended
//! result code as a second line of defence. No error message text is ever inspected.

use crate::error::store_error;
use opx_app::ports::{
    Commit, Conflict, IdempotencyRecord, ProjectionChange, RejectRecord, StoreError, WorkItem,
    REJECT_EXCERPT_LEN_MAX,
};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::hash::Digest;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::BTreeMap;

/// Checks everything about a commit that does not depend on stored data (the ports'
/// [`Commit::validate`]). Runs before any transaction starts, so a malformed request never
/// takes the write lock.
pub(crate) fn validate(commit: &Commit) -> Result<(), StoreError> {
    commit.validate()
}

/// Applies one validated commit on `connection`, which must already be inside a write
/// transaction (or a savepoint of one). On error the caller rolls back.
pub(crate) fn apply(
    connection: &Connection,
    commit: &Commit,
) -> Result<Vec<EventPointer>, StoreError> {
    let mut heads: BTreeMap<&str, (u64, Digest)> = BTreeMap::new();
    let mut pointers = Vec::with_capacity(commit.events.len());
    for event in &commit.events {
        let head = match heads.get(event.stream_id.as_str()) {
            Some(head) => *head,
            None => stored_head(connection, &event.stream_id)?,
        };
        // A gap (sequence beyond head + 1) is refused the same way as a taken sequence: the
        // writer's idea of the head is wrong either way, and re-reading fixes it.
        if event.sequence != head.0 + 1 || event.previous_hash != head.1 {
            return Err(stream_moved(event));
        }
        insert_event(connection, event)?;
        heads.insert(&event.stream_id, (event.sequence, event.hash));
        pointers.push(event.pointer());
    }
    for record in &commit.idempotency {
        insert_idempotency(connection, record)?;
    }
    for change in &commit.projections {
        apply_projection_change(connection, change)?;
    }
    for item in &commit.work_added {
        add_work(connection, item)?;
    }
    for item in &commit.work_done {
        connection
            .prepare_cached("DELETE FROM work WHERE key = ?1")
            .and_then(|mut statement| statement.execute(params![item.key()]))
            .map_err(|error| store_error("completing work", error))?;
    }
    Ok(pointers)
}

fn stored_head(connection: &Connection, stream_id: &str) -> Result<(u64, Digest), StoreError> {
    let row: Option<(i64, Vec<u8>)> = connection
        .prepare_cached(
            "SELECT sequence, hash FROM events WHERE stream_id = ?1 ORDER BY sequence DESC LIMIT 1",
        )
        .and_then(|mut statement| {
            statement
                .query_row(params![stream_id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(|error| store_error("reading a stream head", error))?;
    match row {
        None => Ok((0, Digest::ZERO)),
        Some((sequence, hash)) => {
            let sequence = u64::try_from(sequence).map_err(|_| {
                crate::error::corrupt(format!("stream {stream_id} has a negative sequence"))
            })?;
            Ok((sequence, crate::read::digest(&hash, "event hash")?))
        }
    }
}

fn insert_event(connection: &Connection, event: &EventEnvelope) -> Result<(), StoreError> {
    let result = connection
        .prepare_cached(
            "INSERT INTO events \
             (stream_id, sequence, event_type, schema_version, payload, previous_hash, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                event.stream_id,
                sequence_param(event.sequence),
                event.event_type,
                i64::from(event.schema_version),
                event.payload,
                event.previous_hash.0,
                event.hash.0,
            ])
        });
    match result {
        Ok(_) => Ok(()),
        // Unreachable while the head check above holds the write lock; kept so that a
        // taken sequence can never surface as anything but a conflict.
        Err(error) if is_primary_key_violation(&error) => Err(stream_moved(event)),
        Err(error) => Err(store_error("appending an event", error)),
    }
}

fn insert_idempotency(
    connection: &Connection,
    record: &IdempotencyRecord,
) -> Result<(), StoreError> {
    if let Some(existing) = crate::read::idempotency(connection, &record.key)? {
        return Err(StoreError::Conflict(Conflict::IdempotencyKeyUsed {
            existing,
        }));
    }
    connection
        .prepare_cached("INSERT INTO idempotency (key, request_hash, response) VALUES (?1, ?2, ?3)")
        .and_then(|mut statement| {
            statement.execute(params![record.key, record.request_hash.0, record.response])
        })
        .map_err(|error| store_error("recording an idempotency key", error))?;
    Ok(())
}

fn apply_projection_change(
    connection: &Connection,
    change: &ProjectionChange,
) -> Result<(), StoreError> {
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
    let actual = projection_version(connection, kind, key)?;
    if actual != expected {
        return Err(StoreError::Conflict(Conflict::ProjectionVersion {
            kind: kind.clone(),
            key: key.clone(),
            expected,
            actual,
        }));
    }
    let doing = "changing a projection";
    let result = match change {
        ProjectionChange::Put {
            projection,
            expected_version: None,
        } => connection
            .prepare_cached(
                "INSERT INTO projections (kind, key, version, document) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    projection.kind,
                    projection.key,
                    sequence_param(projection.version),
                    projection.document
                ])
            }),
        ProjectionChange::Put {
            projection,
            expected_version: Some(_),
        } => connection
            .prepare_cached(
                "UPDATE projections SET version = ?3, document = ?4 WHERE kind = ?1 AND key = ?2",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    projection.kind,
                    projection.key,
                    sequence_param(projection.version),
                    projection.document
                ])
            }),
        ProjectionChange::Delete { kind, key, .. } => connection
            .prepare_cached("DELETE FROM projections WHERE kind = ?1 AND key = ?2")
            .and_then(|mut statement| statement.execute(params![kind, key])),
    };
    result.map_err(|error| store_error(doing, error))?;
    Ok(())
}

fn projection_version(
    connection: &Connection,
    kind: &str,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    let version: Option<i64> = connection
        .prepare_cached("SELECT version FROM projections WHERE kind = ?1 AND key = ?2")
        .and_then(|mut statement| {
            statement
                .query_row(params![kind, key], |row| row.get(0))
                .optional()
        })
        .map_err(|error| store_error("reading a projection version", error))?;
    version
        .map(|version| {
            u64::try_from(version).map_err(|_| {
                crate::error::corrupt(format!("projection {kind}/{key} has a negative version"))
            })
        })
        .transpose()
}

fn add_work(connection: &Connection, item: &WorkItem) -> Result<(), StoreError> {
    let input = &item.input;
    let stored: Option<Vec<u8>> = connection
        .prepare_cached("SELECT hash FROM events WHERE stream_id = ?1 AND sequence = ?2")
        .and_then(|mut statement| {
            statement
                .query_row(
                    params![input.stream_id, sequence_param(input.sequence)],
                    |row| row.get(0),
                )
                .optional()
        })
        .map_err(|error| store_error("checking a work item's event", error))?;
    // Work for an event that is not stored could never be carried out; refusing it here
    // keeps the queue equal to "committed events whose next stage has not run".
    match stored {
        None => {
            return Err(invalid(format!(
                "work item {} points at {}#{}, which is not stored; enqueue work in the \
                 commit that writes the event, or later",
                item.key(),
                input.stream_id,
                input.sequence
            )))
        }
        Some(hash) if hash.as_slice() != input.hash.0.as_slice() => {
            return Err(invalid(format!(
                "work item {} points at {}#{} with hash {}, but the stored event has another \
                 hash; take the pointer from the committed event",
                item.key(),
                input.stream_id,
                input.sequence,
                input.hash
            )))
        }
        Some(_) => {}
    }
    connection
        .prepare_cached(
            "INSERT INTO work (key, stage, stream_id, sequence, hash) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (key) DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                item.key(),
                item.stage.as_str(),
                input.stream_id,
                sequence_param(input.sequence),
                input.hash.0
            ])
        })
        .map_err(|error| store_error("enqueueing work", error))?;
    Ok(())
}

/// Validates and applies one commit in its own `BEGIN IMMEDIATE` transaction.
pub(crate) fn commit_one(
    connection: &mut Connection,
    commit: &Commit,
) -> Result<Vec<EventPointer>, StoreError> {
    validate(commit)?;
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|error| store_error("starting a commit", error))?;
    // On an error the transaction is dropped, which rolls everything back.
    let pointers = apply(&transaction, commit)?;
    transaction
        .commit()
        .map_err(|error| store_error("committing", error))?;
    Ok(pointers)
}

/// Group commit: one transaction, one savepoint per commit. A commit that conflicts or is
/// invalid rolls back only its own savepoint; a backend failure (I/O, busy) aborts the
/// whole batch, because SQLite may already have rolled the transaction back.
pub(crate) fn commit_many(
    connection: &mut Connection,
    commits: &[Commit],
) -> Vec<Result<Vec<EventPointer>, StoreError>> {
    let mut batch = Batch {
        outcomes: commits
            .iter()
            .map(|commit| validate(commit).err().map(Err))
            .collect(),
        refused_before_transaction: Vec::new(),
    };
    batch.refused_before_transaction = batch.outcomes.iter().map(Option::is_some).collect();
    if batch.outcomes.iter().all(Option::is_some) {
        return batch.finish();
    }
    let mut transaction = match connection.transaction_with_behavior(TransactionBehavior::Immediate)
    {
        Ok(transaction) => transaction,
        Err(error) => return batch.abort(None, store_error("starting a group commit", error)),
    };
    for (index, commit) in commits.iter().enumerate() {
        if batch.outcomes[index].is_some() {
            continue;
        }
        let savepoint = match transaction.savepoint() {
            Ok(savepoint) => savepoint,
            Err(error) => {
                return batch.abort(Some(index), store_error("opening a savepoint", error));
            }
        };
        match apply(&savepoint, commit) {
            Ok(pointers) => {
                if let Err(error) = savepoint.commit() {
                    return batch.abort(Some(index), store_error("releasing a savepoint", error));
                }
                batch.outcomes[index] = Some(Ok(pointers));
            }
            Err(error @ (StoreError::Conflict(_) | StoreError::Invalid(_))) => {
                // Finishing a savepoint with its default behaviour rolls back to it and
                // releases it; if that fails the batch cannot be trusted.
                if let Err(rollback) = savepoint.finish() {
                    let rollback = store_error("rolling back a savepoint", rollback);
                    return batch.abort(Some(index), rollback);
                }
                batch.outcomes[index] = Some(Err(error));
            }
            // Returning drops the transaction, which rolls the whole batch back.
            Err(error) => return batch.abort(Some(index), error),
        }
    }
    if let Err(error) = transaction.commit() {
        return batch.abort(None, store_error("committing a group commit", error));
    }
    batch.finish()
}

/// The outcomes of a group commit so far.
struct Batch {
    outcomes: Vec<Option<Result<Vec<EventPointer>, StoreError>>>,
    /// Refusals by [`validate`]: pure, so they stand whatever happens to the transaction.
    refused_before_transaction: Vec<bool>,
}

impl Batch {
    /// Every commit got an outcome.
    fn finish(self) -> Vec<Result<Vec<EventPointer>, StoreError>> {
        self.outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    Err(StoreError::Corrupt(
                        "group commit left a commit without an outcome".into(),
                    ))
                })
            })
            .collect()
    }

    /// The transaction was rolled back: nothing in it was written, and any conflict seen
    /// inside it may have come from a commit that is now undone. The commit at `failed`
    /// (else the first one not refused by validation) carries `error`; the others get a
    /// transient error, so the caller retries them.
    fn abort(
        self,
        failed: Option<usize>,
        error: StoreError,
    ) -> Vec<Result<Vec<EventPointer>, StoreError>> {
        let carrier = failed.or_else(|| self.refused_before_transaction.iter().position(|r| !r));
        let summary = error.to_string();
        let mut error = Some(error);
        self.outcomes
            .into_iter()
            .zip(self.refused_before_transaction)
            .enumerate()
            .map(
                |(index, (outcome, refused_before_transaction))| match outcome {
                    Some(Err(refused)) if refused_before_transaction => Err(refused),
                    _ if carrier == Some(index) => {
                        Err(error.take().unwrap_or_else(|| batch_aborted(&summary)))
                    }
                    _ => Err(batch_aborted(&summary)),
                },
            )
            .collect()
    }
}

fn batch_aborted(cause: &str) -> StoreError {
    StoreError::Unavailable {
        message: format!(
            "group commit rolled back, nothing in it was written ({cause}); retry this commit"
        ),
        source: None,
    }
}

/// Records a reject unless one with its id exists (the first record wins).
pub(crate) fn record_reject(
    connection: &Connection,
    reject: &RejectRecord,
) -> Result<(), StoreError> {
    if reject.excerpt.len() > REJECT_EXCERPT_LEN_MAX {
        return Err(invalid(format!(
            "reject {}: excerpt is {} bytes, more than REJECT_EXCERPT_LEN_MAX \
             ({REJECT_EXCERPT_LEN_MAX}); cut it before recording",
            reject.id,
            reject.excerpt.len()
        )));
    }
    connection
        .prepare_cached(
            "INSERT INTO rejects (id, origin, field, reason, excerpt) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                reject.id.0,
                reject.origin,
                reject.field,
                reject.reason,
                reject.excerpt
            ])
        })
        .map_err(|error| store_error("recording a reject", error))?;
    Ok(())
}

fn stream_moved(event: &EventEnvelope) -> StoreError {
    StoreError::Conflict(Conflict::StreamMoved {
        stream_id: event.stream_id.clone(),
        sequence: event.sequence,
    })
}

fn is_primary_key_violation(error: &rusqlite::Error) -> bool {
    error.sqlite_error().is_some_and(|error| {
        error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            || error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    })
}

/// Sequences and versions are validated to fit `i64` before any write.
fn sequence_param(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(message)
}
