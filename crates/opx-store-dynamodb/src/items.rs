//! The stored item formats: explicit, versioned DTOs (de)serialised with `serde_dynamo`.
//!
//! Byte fields (event payloads, projection documents, idempotency responses) are stored as
//! DynamoDB binary (`B`), so they come back exactly as written, whatever they contain, and
//! every event hash re-verifies byte for byte. Digests are 64 lowercase hex characters
//! (`S`), as everywhere else in opx. Every item carries `format` ([`ITEM_FORMAT`]); an item
//! of another format is refused as corrupt rather than misread.

use aws_sdk_dynamodb::types::AttributeValue;
use opx_app::ports::{IdempotencyRecord, Projection, RejectRecord, Stage, StoreError, WorkItem};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::hash::Digest;
use serde::{Deserialize, Serialize};

/// The format version every item is written with.
pub const ITEM_FORMAT: u32 = 1;

/// An item as the SDK takes and returns it. The SDK's type is a `HashMap`; nothing here
/// iterates it in a way that can reach output or hashes (it is only converted with
/// `serde_dynamo` or measured).
#[allow(clippy::disallowed_types)]
pub(crate) type Item = std::collections::HashMap<String, AttributeValue>;

/// Attribute names, spelled once.
pub(crate) mod attribute {
    /// Events: partition key.
    pub const STREAM_ID: &str = "stream_id";
    /// Events: sort key.
    pub const SEQUENCE: &str = "sequence";
    /// Events: the event's hash.
    pub const HASH: &str = "hash";
    /// Idempotency: partition key. Projections: sort key.
    pub const KEY: &str = "key";
    /// Projections: partition key.
    pub const KIND: &str = "kind";
    /// Projections: the guard.
    pub const VERSION: &str = "version";
    /// Work items: the stage.
    pub const STAGE: &str = "stage";
    /// Work items: the event pointer.
    pub const INPUT: &str = "input";
    /// Work items: when the item was first added (milliseconds since the epoch).
    pub const ADDED_AT_MS: &str = "added_at_ms";
    /// Every item: its format version.
    pub const FORMAT: &str = "format";
}

/// Store-internal kinds in the projections table. Caller kinds may not start with
/// [`INTERNAL_KIND_PREFIX`], so they can never collide with these.
pub(crate) mod kind {
    /// One item per stream, written with its first event: `list_streams` is a Query.
    pub const STREAM: &str = "~stream";
    /// One item per pending work item, key [`opx_app::ports::WorkItem::key`].
    pub const WORK: &str = "~work";
    /// One item per recorded reject, key = the reject id in hex.
    pub const REJECT: &str = "~reject";
}

/// The first character of every store-internal kind.
pub const INTERNAL_KIND_PREFIX: char = '~';

/// An event in the events table (and in the table's stream, as `NewImage`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EventItem {
    pub stream_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub schema_version: u32,
    #[serde(with = "binary")]
    pub payload: Vec<u8>,
    pub previous_hash: Digest,
    pub hash: Digest,
    pub format: u32,
}

impl EventItem {
    pub fn from_envelope(event: &EventEnvelope) -> EventItem {
        EventItem {
            stream_id: event.stream_id.clone(),
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
            previous_hash: event.previous_hash,
            hash: event.hash,
            format: ITEM_FORMAT,
        }
    }

    /// The envelope, checked: the format is known and the hash covers the content.
    /// The envelope as stored, not re-hashed: what `read_stream` returns, as every store
    /// does, so `opx replay verify` sees an altered item and names it in its report (the
    /// pipeline re-hashes the one event it consumes; see `Pipeline::read_pointer`).
    pub fn into_stored_envelope(self) -> Result<EventEnvelope, StoreError> {
        check_format("event", &self.stream_id, self.format)?;
        Ok(EventEnvelope {
            stream_id: self.stream_id,
            sequence: self.sequence,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload: self.payload,
            previous_hash: self.previous_hash,
            hash: self.hash,
        })
    }

    /// The envelope, refused when its content does not hash to its stored hash.
    pub fn into_envelope(self) -> Result<EventEnvelope, StoreError> {
        let envelope = self.into_stored_envelope()?;
        let computed = envelope.computed_hash();
        if computed != envelope.hash {
            return Err(StoreError::Corrupt(format!(
                "event {}#{}: stored hash {} but its content hashes to {computed}; the item was \
                 altered after it was written: stop and investigate (opx replay verify)",
                envelope.stream_id, envelope.sequence, envelope.hash
            )));
        }
        Ok(envelope)
    }
}

/// The key of an event item.
#[derive(Serialize)]
pub(crate) struct EventKey<'a> {
    pub stream_id: &'a str,
    pub sequence: u64,
}

/// An idempotency record.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IdempotencyItem {
    pub key: String,
    pub request_hash: Digest,
    #[serde(with = "binary")]
    pub response: Vec<u8>,
    pub format: u32,
}

impl IdempotencyItem {
    pub fn from_record(record: &IdempotencyRecord) -> IdempotencyItem {
        IdempotencyItem {
            key: record.key.clone(),
            request_hash: record.request_hash,
            response: record.response.clone(),
            format: ITEM_FORMAT,
        }
    }

    pub fn into_record(self) -> Result<IdempotencyRecord, StoreError> {
        check_format("idempotency record", &self.key, self.format)?;
        Ok(IdempotencyRecord {
            key: self.key,
            request_hash: self.request_hash,
            response: self.response,
        })
    }
}

/// The key of an idempotency record.
#[derive(Serialize)]
pub(crate) struct IdempotencyKey<'a> {
    pub key: &'a str,
}

/// A caller's projection.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProjectionItem {
    pub kind: String,
    pub key: String,
    pub version: u64,
    #[serde(with = "binary")]
    pub document: Vec<u8>,
    pub format: u32,
}

impl ProjectionItem {
    pub fn from_projection(projection: &Projection) -> ProjectionItem {
        ProjectionItem {
            kind: projection.kind.clone(),
            key: projection.key.clone(),
            version: projection.version,
            document: projection.document.clone(),
            format: ITEM_FORMAT,
        }
    }

    pub fn into_projection(self) -> Result<Projection, StoreError> {
        check_format(
            "projection",
            &format!("{}/{}", self.kind, self.key),
            self.format,
        )?;
        Ok(Projection {
            kind: self.kind,
            key: self.key,
            version: self.version,
            document: self.document,
        })
    }
}

/// Only the version of a projection, read from a refused write's old item.
#[derive(Deserialize)]
pub(crate) struct VersionOnly {
    pub version: u64,
}

/// The key of any item in the projections table.
#[derive(Serialize)]
pub(crate) struct ProjectionKey<'a> {
    pub kind: &'a str,
    pub key: &'a str,
}

/// The `~stream` registry item.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StreamItem {
    pub kind: String,
    /// The stream id.
    pub key: String,
    pub format: u32,
}

impl StreamItem {
    pub fn new(stream_id: &str) -> StreamItem {
        StreamItem {
            kind: kind::STREAM.to_string(),
            key: stream_id.to_string(),
            format: ITEM_FORMAT,
        }
    }
}

/// A `~work` item. Written with an update (so that adding it again keeps `added_at_ms`),
/// read with this type.
#[derive(Debug, Deserialize)]
pub(crate) struct WorkRow {
    pub key: String,
    pub stage: Stage,
    pub input: EventPointer,
    #[serde(default)]
    pub added_at_ms: u64,
    pub format: u32,
}

impl WorkRow {
    pub fn into_parts(self) -> Result<(WorkItem, u64), StoreError> {
        check_format("work item", &self.key, self.format)?;
        let item = WorkItem {
            stage: self.stage,
            input: self.input,
        };
        if item.key() != self.key {
            return Err(StoreError::Corrupt(format!(
                "work item {:?} holds the work of {:?}; the item was altered: stop and investigate",
                self.key,
                item.key()
            )));
        }
        Ok((item, self.added_at_ms))
    }
}

/// A `~reject` item.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RejectItem {
    pub kind: String,
    /// The reject id, hex.
    pub key: Digest,
    pub origin: String,
    pub field: String,
    pub reason: String,
    pub excerpt: String,
    pub format: u32,
}

impl RejectItem {
    pub fn from_record(reject: &RejectRecord) -> RejectItem {
        RejectItem {
            kind: kind::REJECT.to_string(),
            key: reject.id,
            origin: reject.origin.clone(),
            field: reject.field.clone(),
            reason: reject.reason.clone(),
            excerpt: reject.excerpt.clone(),
            format: ITEM_FORMAT,
        }
    }

    pub fn into_record(self) -> Result<RejectRecord, StoreError> {
        check_format("reject", &self.key.to_hex(), self.format)?;
        Ok(RejectRecord {
            id: self.key,
            origin: self.origin,
            field: self.field,
            reason: self.reason,
            excerpt: self.excerpt,
        })
    }
}

fn check_format(what: &str, name: &str, format: u32) -> Result<(), StoreError> {
    if format == ITEM_FORMAT {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "{what} {name:?} has item format {format}, this opx reads format {ITEM_FORMAT}; \
             it was written by another opx version: upgrade opx, or investigate"
        )))
    }
}

/// Serialises a value into an item.
pub(crate) fn to_item<T: Serialize>(what: &str, value: &T) -> Result<Item, StoreError> {
    serde_dynamo::aws_sdk_dynamodb_1::to_item(value).map_err(|error| {
        StoreError::Invalid(format!(
            "{what} cannot be written as a DynamoDB item: {error}"
        ))
    })
}

/// Serialises a value into one attribute value (for expression values).
pub(crate) fn to_value<T: Serialize>(what: &str, value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(value).map_err(|error| {
        StoreError::Invalid(format!(
            "{what} cannot be written as a DynamoDB value: {error}"
        ))
    })
}

/// Reads an item back.
pub(crate) fn from_item<T: for<'de> Deserialize<'de>>(
    what: &str,
    item: Item,
) -> Result<T, StoreError> {
    serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|error| {
        StoreError::Corrupt(format!(
            "a stored {what} cannot be read: {error}; it was not written by this opx version, \
             or was altered: stop and investigate"
        ))
    })
}

/// Reads an event from an events-table item in any representation `serde_dynamo` knows,
/// e.g. the `NewImage` of a DynamoDB stream record as `aws_lambda_events` delivers it, and
/// checks it: a known format, and a hash that covers its content.
pub fn event_from_item(item: impl Into<serde_dynamo::Item>) -> Result<EventEnvelope, StoreError> {
    let event: EventItem = serde_dynamo::from_item(item).map_err(|error| {
        StoreError::Corrupt(format!(
            "an events-table item cannot be read as an event: {error}; it was not written by \
             this opx version, or was altered: stop and investigate"
        ))
    })?;
    event.into_envelope()
}

/// The size DynamoDB charges an item against its 400 KB limit: attribute name bytes plus
/// value bytes. Numbers are counted by their text length, which is at least their stored
/// size, so the estimate never undercounts.
pub(crate) fn item_len(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_len(value))
        .sum()
}

fn value_len(value: &AttributeValue) -> usize {
    // Documented overhead: 3 bytes per map or list, 1 byte per element.
    const CONTAINER_OVERHEAD: usize = 3;
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number.len(),
        AttributeValue::B(bytes) => bytes.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::M(map) => {
            CONTAINER_OVERHEAD
                + map
                    .iter()
                    .map(|(name, value)| name.len() + value_len(value) + 1)
                    .sum::<usize>()
        }
        AttributeValue::L(list) => {
            CONTAINER_OVERHEAD + list.iter().map(|value| value_len(value) + 1).sum::<usize>()
        }
        AttributeValue::Ss(texts) => texts.iter().map(String::len).sum(),
        AttributeValue::Ns(numbers) => numbers.iter().map(String::len).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(|blob| blob.as_ref().len()).sum(),
        // A variant a newer SDK added: count it as large as an item may be, so that it is
        // refused before sending rather than guessed.
        _ => crate::ITEM_LEN_MAX + 1,
    }
}

/// `Vec<u8>` as DynamoDB binary (`B`) rather than serde's default list of numbers.
mod binary {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("binary data")
        }

        fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        // Some representations (e.g. JSON test fixtures) spell binary as a list of numbers.
        fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::with_capacity(sequence.size_hint().unwrap_or(0));
            while let Some(byte) = sequence.next_element::<u8>()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_through_an_item_byte_for_byte() {
        let payload = "{\"note\":\"caf\u{e9} \u{1f525}\",\"bytes\":\"\\u0000\"}"
            .as_bytes()
            .to_vec();
        let event = EventEnvelope::seal("incident:a", 1, "NoteAdded", 2, payload, Digest::ZERO);
        let item = to_item("event", &EventItem::from_envelope(&event)).unwrap();
        assert!(
            matches!(item.get("payload"), Some(AttributeValue::B(_))),
            "payload is binary"
        );
        assert!(matches!(item.get("hash"), Some(AttributeValue::S(_))));
        assert!(matches!(item.get("sequence"), Some(AttributeValue::N(_))));
        let back = from_item::<EventItem>("event", item.clone())
            .unwrap()
            .into_envelope()
            .unwrap();
        assert_eq!(back, event);
        assert_eq!(event_from_item(item).unwrap(), event);
    }

    #[test]
    fn an_altered_event_item_is_corrupt() {
        let event = EventEnvelope::seal("s", 1, "T", 1, b"{}".to_vec(), Digest::ZERO);
        let mut item = to_item("event", &EventItem::from_envelope(&event)).unwrap();
        item.insert(
            "payload".to_string(),
            AttributeValue::B(b"{\"x\":1}".to_vec().into()),
        );
        assert!(matches!(
            event_from_item(item),
            Err(StoreError::Corrupt(message)) if message.contains("altered")
        ));
    }

    #[test]
    fn an_item_of_another_format_is_corrupt() {
        let event = EventEnvelope::seal("s", 1, "T", 1, b"{}".to_vec(), Digest::ZERO);
        let mut item = to_item("event", &EventItem::from_envelope(&event)).unwrap();
        item.insert("format".to_string(), AttributeValue::N("2".to_string()));
        assert!(matches!(
            event_from_item(item),
            Err(StoreError::Corrupt(message)) if message.contains("format 2")
        ));
    }

    #[test]
    fn item_len_counts_names_and_values() {
        let record = IdempotencyRecord {
            key: "k".to_string(),
            request_hash: Digest::ZERO,
            response: vec![0; 10],
        };
        let item = to_item("record", &IdempotencyItem::from_record(&record)).unwrap();
        // key: 3 + 1, request_hash: 12 + 64, response: 8 + 10, format: 6 + 1.
        assert_eq!(item_len(&item), 4 + 76 + 18 + 7);
    }
}
