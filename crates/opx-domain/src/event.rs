//! Hash-chained event envelopes and their verification.
//!
//! Every stream (one signal, one evidence group, one incident, ...) is an append-only
//! sequence of events numbered from 1. An event's hash covers its stream id, sequence, type,
//! schema version, the canonical payload bytes exactly as stored, and the previous event's
//! hash, so changing, removing, inserting or reordering anything breaks the chain at a
//! precise place. The payload bytes are stored and hashed as they are; nothing is
//! re-serialised to check a hash.

use crate::hash::{Digest, FieldHasher};
use serde::{Deserialize, Serialize};

/// Largest canonical payload accepted in one event, in bytes. DynamoDB items are capped at
/// 400 KB; this leaves room for the envelope and the attribute names.
pub const PAYLOAD_LEN_MAX: usize = 256 * 1024;
/// Longest stream id, in bytes.
pub const STREAM_ID_LEN_MAX: usize = 256;

/// One committed event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// The stream this event belongs to, e.g. `incident:<hex>`.
    pub stream_id: String,
    /// 1-based position in the stream.
    pub sequence: u64,
    /// Past-tense event type, e.g. `IncidentOpened`.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// Canonical JSON bytes of the payload, exactly as hashed.
    #[serde(with = "payload_as_text")]
    pub payload: Vec<u8>,
    /// The previous event's hash; [`Digest::ZERO`] for sequence 1.
    pub previous_hash: Digest,
    /// [`event_hash`] over all of the above.
    pub hash: Digest,
}

/// Where to find a committed event, and what it must hash to. Notifications between stages
/// carry this, never the data a stage decides on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventPointer {
    /// The stream.
    pub stream_id: String,
    /// The sequence within the stream.
    pub sequence: u64,
    /// The event's hash.
    pub hash: Digest,
}

impl EventEnvelope {
    /// Seals a new event onto a stream whose last event has `previous_hash` (or
    /// [`Digest::ZERO`] for the first event).
    pub fn seal(
        stream_id: impl Into<String>,
        sequence: u64,
        event_type: impl Into<String>,
        schema_version: u32,
        payload: Vec<u8>,
        previous_hash: Digest,
    ) -> EventEnvelope {
        let stream_id = stream_id.into();
        let event_type = event_type.into();
        let hash = event_hash(
            &stream_id,
            sequence,
            &event_type,
            schema_version,
            &payload,
            &previous_hash,
        );
        EventEnvelope {
            stream_id,
            sequence,
            event_type,
            schema_version,
            payload,
            previous_hash,
            hash,
        }
    }

    /// The pointer to this event.
    pub fn pointer(&self) -> EventPointer {
        EventPointer {
            stream_id: self.stream_id.clone(),
            sequence: self.sequence,
            hash: self.hash,
        }
    }

    /// Recomputes the hash from the stored fields.
    pub fn computed_hash(&self) -> Digest {
        event_hash(
            &self.stream_id,
            self.sequence,
            &self.event_type,
            self.schema_version,
            &self.payload,
            &self.previous_hash,
        )
    }
}

/// The hash of one event: length-prefixed fields under the tag `opx.event.v1`.
pub fn event_hash(
    stream_id: &str,
    sequence: u64,
    event_type: &str,
    schema_version: u32,
    payload: &[u8],
    previous_hash: &Digest,
) -> Digest {
    FieldHasher::new("opx.event.v1")
        .str(stream_id)
        .u64(sequence)
        .str(event_type)
        .u64(u64::from(schema_version))
        .bytes(payload)
        .digest(previous_hash)
        .finish()
}

/// What is wrong with a stream, at the first event where it goes wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// An event names another stream.
    #[error("{stream_id} event at position {position}: belongs to stream {found:?}")]
    WrongStream {
        /// The stream being verified.
        stream_id: String,
        /// 1-based position in the list given.
        position: u64,
        /// The stream the event names.
        found: String,
    },
    /// Sequence numbers are not 1, 2, 3, … (an event was removed, inserted or swapped).
    #[error("{stream_id}: expected sequence {expected}, found {found} (an event is missing, extra or out of order)")]
    SequenceGap {
        /// The stream.
        stream_id: String,
        /// The sequence that should be here.
        expected: u64,
        /// The sequence that is here.
        found: u64,
    },
    /// The event's stored previous hash is not the hash of the event before it.
    #[error("{stream_id}#{sequence}: previous hash {found} does not match the hash of #{prior} ({expected})")]
    BrokenLink {
        /// The stream.
        stream_id: String,
        /// The event whose link is broken.
        sequence: u64,
        /// The sequence before it.
        prior: u64,
        /// The hash of the event before.
        expected: Digest,
        /// What the event claims.
        found: Digest,
    },
    /// The event's bytes do not hash to its stored hash (it was altered).
    #[error("{stream_id}#{sequence}: stored hash {stored} but the content hashes to {computed} (the event was altered)")]
    HashMismatch {
        /// The stream.
        stream_id: String,
        /// The altered event.
        sequence: u64,
        /// The stored hash.
        stored: Digest,
        /// The hash of the stored content.
        computed: Digest,
    },
}

impl ChainError {
    /// The sequence number where the stream first goes wrong.
    pub fn sequence(&self) -> u64 {
        match self {
            ChainError::WrongStream { position, .. } => *position,
            ChainError::SequenceGap { expected, .. } => *expected,
            ChainError::BrokenLink { sequence, .. } | ChainError::HashMismatch { sequence, .. } => {
                *sequence
            }
        }
    }
}

/// Incremental verification, so a stream can be checked page by page without holding it
/// all in memory.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    stream_id: String,
    next_sequence: u64,
    previous_hash: Digest,
}

impl ChainVerifier {
    /// Starts verifying `stream_id` from its first event.
    pub fn new(stream_id: impl Into<String>) -> ChainVerifier {
        ChainVerifier {
            stream_id: stream_id.into(),
            next_sequence: 1,
            previous_hash: Digest::ZERO,
        }
    }

    /// Checks the next event in order.
    pub fn push(&mut self, event: &EventEnvelope) -> Result<(), ChainError> {
        if event.stream_id != self.stream_id {
            return Err(ChainError::WrongStream {
                stream_id: self.stream_id.clone(),
                position: self.next_sequence,
                found: event.stream_id.clone(),
            });
        }
        if event.sequence != self.next_sequence {
            return Err(ChainError::SequenceGap {
                stream_id: self.stream_id.clone(),
                expected: self.next_sequence,
                found: event.sequence,
            });
        }
        let computed = event.computed_hash();
        if computed != event.hash {
            return Err(ChainError::HashMismatch {
                stream_id: self.stream_id.clone(),
                sequence: event.sequence,
                stored: event.hash,
                computed,
            });
        }
        if event.previous_hash != self.previous_hash {
            return Err(ChainError::BrokenLink {
                stream_id: self.stream_id.clone(),
                sequence: event.sequence,
                prior: event.sequence - 1,
                expected: self.previous_hash,
                found: event.previous_hash,
            });
        }
        self.next_sequence += 1;
        self.previous_hash = event.hash;
        Ok(())
    }

    /// The number of events verified so far.
    pub fn verified_count(&self) -> u64 {
        self.next_sequence - 1
    }

    /// The hash of the last verified event ([`Digest::ZERO`] if none): the stream's head.
    pub fn head(&self) -> Digest {
        self.previous_hash
    }
}

/// Verifies a whole stream in order and names the first bad event.
pub fn verify_stream(stream_id: &str, events: &[EventEnvelope]) -> Result<Digest, ChainError> {
    let mut verifier = ChainVerifier::new(stream_id);
    for event in events {
        verifier.push(event)?;
    }
    Ok(verifier.head())
}

/// Payload bytes are canonical JSON (UTF-8), so they are stored as text in JSON exports
/// rather than as a byte array, which keeps exports readable and the same size.
mod payload_as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => Err(serde::ser::Error::custom("event payload is not UTF-8")),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(deserializer)?.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chain(stream: &str, payloads: &[&str]) -> Vec<EventEnvelope> {
        let mut previous = Digest::ZERO;
        let mut out = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            let event = EventEnvelope::seal(
                stream,
                i as u64 + 1,
                "Tested",
                1,
                payload.as_bytes().to_vec(),
                previous,
            );
            previous = event.hash;
            out.push(event);
        }
        out
    }

    #[test]
    fn a_sealed_chain_verifies() {
        let events = chain("s", &["{\"a\":1}", "{\"b\":2}", "{}"]);
        assert_eq!(verify_stream("s", &events), Ok(events[2].hash));
        assert_eq!(verify_stream("s", &[]), Ok(Digest::ZERO));
    }

    #[test]
    fn removal_swap_and_foreign_events_are_named() {
        let events = chain("s", &["1", "2", "3"]);
        let removed = vec![events[0].clone(), events[2].clone()];
        assert_eq!(
            verify_stream("s", &removed).map_err(|e| e.sequence()),
            Err(2)
        );
        let swapped = vec![events[1].clone(), events[0].clone(), events[2].clone()];
        assert_eq!(
            verify_stream("s", &swapped).map_err(|e| e.sequence()),
            Err(1)
        );
        assert!(matches!(
            verify_stream("t", &events),
            Err(ChainError::WrongStream { .. })
        ));
    }

    #[test]
    fn a_resealed_event_breaks_the_link_after_it() {
        let mut events = chain("s", &["1", "2", "3"]);
        // An attacker who rewrites event 2 and recomputes its hash still breaks event 3.
        events[1] = EventEnvelope::seal("s", 2, "Tested", 1, b"evil".to_vec(), events[0].hash);
        assert!(matches!(
            verify_stream("s", &events),
            Err(ChainError::BrokenLink { sequence: 3, .. })
        ));
    }

    proptest! {
        #[test]
        fn any_changed_byte_fails_at_that_event(
            payloads in proptest::collection::vec("[ -~]{1,40}", 1..8),
            pick in any::<proptest::sample::Index>(),
            byte_pick in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
            let mut events = chain("stream", &refs);
            let target = pick.index(events.len());
            let payload = &mut events[target].payload;
            let at = byte_pick.index(payload.len());
            payload[at] ^= flip;
            let error = verify_stream("stream", &events).expect_err("tampering must be detected");
            prop_assert_eq!(error.sequence(), target as u64 + 1);
        }
    }
}
