//! Reads. Every read is bounded by a page size capped at
//! [`opx_app::ports::READ_PAGE_SIZE_MAX`]; each is one `SELECT`, so it sees one consistent
//! snapshot (WAL readers never block the writer nor see half a commit).

use crate::cursor::{self, List};
use crate::error::{corrupt, store_error};
use opx_app::ports::{
    IdempotencyRecord, Page, Projection, RejectRecord, Stage, StoreError, WorkItem,
};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::hash::Digest;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// Decodes a stored 32-byte hash.
pub(crate) fn digest(bytes: &[u8], what: &str) -> Result<Digest, StoreError> {
    <[u8; 32]>::try_from(bytes).map(Digest).map_err(|_| {
        corrupt(format!(
            "a stored {what} is {} bytes instead of 32",
            bytes.len()
        ))
    })
}

fn unsigned(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("a stored {what} is negative ({value})")))
}

/// Turns the rows of a page query (which asked for one row more than `limit`) into a page.
fn page<T>(mut items: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(&cursor_of);
        return Page { items, next };
    }
    Page { items, next: None }
}

/// `limit + 1` as an SQL parameter: the extra row tells whether another page exists.
fn probe_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1)
}

const EVENT_COLUMNS: &str =
    "stream_id, sequence, event_type, schema_version, payload, previous_hash, hash";

type EventRow = (String, i64, String, i64, Vec<u8>, Vec<u8>, Vec<u8>);

fn event_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn event_from_row(row: EventRow) -> Result<EventEnvelope, StoreError> {
    let (stream_id, sequence, event_type, schema_version, payload, previous_hash, hash) = row;
    let schema_version = u32::try_from(schema_version).map_err(|_| {
        corrupt(format!(
            "event {stream_id}#{sequence} has schema version {schema_version}"
        ))
    })?;
    Ok(EventEnvelope {
        sequence: unsigned(sequence, "event sequence")?,
        event_type,
        schema_version,
        payload,
        previous_hash: digest(&previous_hash, "previous hash")?,
        hash: digest(&hash, "event hash")?,
        stream_id,
    })
}

pub(crate) fn read_stream(
    connection: &Connection,
    stream_id: &str,
    from_sequence: u64,
    limit: usize,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let limit = cursor::page_size(limit, "read_stream")?;
    // Sequences are stored as i64; nothing can be stored beyond that.
    let Ok(from_sequence) = i64::try_from(from_sequence) else {
        return Ok(Vec::new());
    };
    let rows = connection
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ?1 AND sequence >= ?2 \
             ORDER BY sequence LIMIT ?3"
        ))
        .and_then(|mut statement| {
            statement
                .query_map(
                    params![
                        stream_id,
                        from_sequence,
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    event_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|error| store_error(&format!("reading stream {stream_id}"), error))?;
    rows.into_iter().map(event_from_row).collect()
}

pub(crate) fn stream_head(
    connection: &Connection,
    stream_id: &str,
) -> Result<Option<EventEnvelope>, StoreError> {
    let row = connection
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ?1 \
             ORDER BY sequence DESC LIMIT 1"
        ))
        .and_then(|mut statement| {
            statement
                .query_row(params![stream_id], event_row)
                .optional()
        })
        .map_err(|error| store_error(&format!("reading the head of stream {stream_id}"), error))?;
    row.map(event_from_row).transpose()
}

pub(crate) fn list_streams(
    connection: &Connection,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<String>, StoreError> {
    let limit = cursor::page_size(limit, "list_streams")?;
    // Stream ids are never empty, so "" sorts before every one of them.
    let after = cursor
        .map(|cursor| cursor::decode_key(List::Streams, cursor))
        .transpose()?;
    let after = after.unwrap_or_default();
    // A loose index scan: each step is one seek in the events primary key to the next
    // distinct stream id, so a page costs `limit` seeks however long the streams are, and
    // no second table has to be kept in step with the events.
    let ids = connection
        .prepare_cached(
            "WITH RECURSIVE next_stream(id) AS ( \
                 SELECT (SELECT min(stream_id) FROM events WHERE stream_id > ?1) \
                 UNION ALL \
                 SELECT (SELECT min(stream_id) FROM events WHERE stream_id > next_stream.id) \
                 FROM next_stream WHERE next_stream.id IS NOT NULL \
             ) \
             SELECT id FROM next_stream WHERE id IS NOT NULL LIMIT ?2",
        )
        .and_then(|mut statement| {
            statement
                .query_map(params![after, probe_limit(limit)], |row| {
                    row.get::<_, String>(0)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|error| store_error("listing streams", error))?;
    Ok(page(ids, limit, |id| cursor::encode_key(List::Streams, id)))
}

pub(crate) fn idempotency(
    connection: &Connection,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let row: Option<(String, Vec<u8>, Vec<u8>)> = connection
        .prepare_cached("SELECT key, request_hash, response FROM idempotency WHERE key = ?1")
        .and_then(|mut statement| {
            statement
                .query_row(params![key], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()
        })
        .map_err(|error| store_error("reading an idempotency record", error))?;
    row.map(idempotency_from_row).transpose()
}

fn idempotency_from_row(
    (key, request_hash, response): (String, Vec<u8>, Vec<u8>),
) -> Result<IdempotencyRecord, StoreError> {
    Ok(IdempotencyRecord {
        request_hash: digest(&request_hash, "request hash")?,
        key,
        response,
    })
}

pub(crate) fn list_idempotency(
    connection: &Connection,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<IdempotencyRecord>, StoreError> {
    let limit = cursor::page_size(limit, "list_idempotency")?;
    let after = cursor
        .map(|cursor| cursor::decode_key(List::Idempotency, cursor))
        .transpose()?;
    // Keys are never empty, so "" sorts before every one of them.
    let after = after.unwrap_or_default();
    let rows = connection
        .prepare_cached(
            "SELECT key, request_hash, response FROM idempotency WHERE key > ?1 \
             ORDER BY key LIMIT ?2",
        )
        .and_then(|mut statement| {
            statement
                .query_map(params![after, probe_limit(limit)], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|error| store_error("listing idempotency records", error))?;
    let records = rows
        .into_iter()
        .map(idempotency_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page(records, limit, |record| {
        cursor::encode_key(List::Idempotency, &record.key)
    }))
}

fn projection_from_row(
    (kind, key, version, document): (String, String, i64, Vec<u8>),
) -> Result<Projection, StoreError> {
    Ok(Projection {
        version: unsigned(version, "projection version")?,
        kind,
        key,
        document,
    })
}

pub(crate) fn projection(
    connection: &Connection,
    kind: &str,
    key: &str,
) -> Result<Option<Projection>, StoreError> {
    let row = connection
        .prepare_cached(
            "SELECT kind, key, version, document FROM projections WHERE kind = ?1 AND key = ?2",
        )
        .and_then(|mut statement| {
            statement
                .query_row(params![kind, key], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .optional()
        })
        .map_err(|error| store_error(&format!("reading projection {kind}/{key}"), error))?;
    row.map(projection_from_row).transpose()
}

pub(crate) fn list_projections(
    connection: &Connection,
    kind: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Projection>, StoreError> {
    let limit = cursor::page_size(limit, "list_projections")?;
    let after = cursor
        .map(|cursor| cursor::decode_key(List::Projections, cursor))
        .transpose()?;
    let after = after.unwrap_or_default();
    let rows = connection
        .prepare_cached(
            "SELECT kind, key, version, document FROM projections WHERE kind = ?1 AND key > ?2 \
             ORDER BY key LIMIT ?3",
        )
        .and_then(|mut statement| {
            statement
                .query_map(params![kind, after, probe_limit(limit)], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|error| store_error(&format!("listing projections of kind {kind}"), error))?;
    let projections = rows
        .into_iter()
        .map(projection_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page(projections, limit, |projection| {
        cursor::encode_key(List::Projections, &projection.key)
    }))
}

pub(crate) fn pending_work(
    connection: &Connection,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<WorkItem>, StoreError> {
    let limit = cursor::page_size(limit, "pending_work")?;
    let after = cursor
        .map(|cursor| cursor::decode_position(List::Work, cursor))
        .transpose()?;
    let rows: Vec<(i64, String, String, i64, Vec<u8>)> = connection
        .prepare_cached(
            "SELECT position, stage, stream_id, sequence, hash FROM work WHERE position > ?1 \
             ORDER BY position LIMIT ?2",
        )
        .and_then(|mut statement| {
            statement
                .query_map(params![after.unwrap_or(0), probe_limit(limit)], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|error| store_error("listing pending work", error))?;
    let items = rows
        .into_iter()
        .map(|(position, stage, stream_id, sequence, hash)| {
            let stage = Stage::parse(&stage)
                .ok_or_else(|| corrupt(format!("pending work names unknown stage {stage:?}")))?;
            let input = EventPointer {
                stream_id,
                sequence: unsigned(sequence, "work sequence")?,
                hash: digest(&hash, "work event hash")?,
            };
            Ok((position, WorkItem { stage, input }))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let page = page(items, limit, |(position, _)| {
        cursor::encode_position(List::Work, *position)
    });
    Ok(Page {
        items: page.items.into_iter().map(|(_, item)| item).collect(),
        next: page.next,
    })
}

pub(crate) fn list_rejects(
    connection: &Connection,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<RejectRecord>, StoreError> {
    let limit = cursor::page_size(limit, "list_rejects")?;
    let after = cursor
        .map(|cursor| cursor::decode_position(List::Rejects, cursor))
        .transpose()?;
    let rows: Vec<(i64, Vec<u8>, String, String, String, String)> = connection
        .prepare_cached(
            "SELECT position, id, origin, field, reason, excerpt FROM rejects \
             WHERE position > ?1 ORDER BY position LIMIT ?2",
        )
        .and_then(|mut statement| {
            statement
                .query_map(params![after.unwrap_or(0), probe_limit(limit)], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|error| store_error("listing rejects", error))?;
    let rejects = rows
        .into_iter()
        .map(|(position, id, origin, field, reason, excerpt)| {
            let id = digest(&id, "reject id")?;
            Ok((
                position,
                RejectRecord {
                    id,
                    origin,
                    field,
                    reason,
                    excerpt,
                },
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let page = page(rejects, limit, |(position, _)| {
        cursor::encode_position(List::Rejects, *position)
    });
    Ok(Page {
        items: page.items.into_iter().map(|(_, reject)| reject).collect(),
        next: page.next,
    })
}
