//! Opaque page cursors.
//!
//! The format is the one every backend shares (`opx_app::store_cursor`); here the tag of
//! a projections cursor also names the kind, and the key is the sort key (or, for
//! idempotency records, the partition key) of the page's last item. The next page
//! is a Query or Scan with that key as `ExclusiveStartKey`, so a cursor stays valid when
//! the item it names is deleted meanwhile (DynamoDB starts after the key, not at an item).

use opx_app::ports::StoreError;
use opx_app::store_cursor;

/// Which list a cursor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum List<'a> {
    Streams,
    Idempotency,
    Projections { kind: &'a str },
    Work,
    Rejects,
}

impl List<'_> {
    fn tag(self) -> String {
        match self {
            List::Streams => "st".to_string(),
            List::Idempotency => "id".to_string(),
            // The kind is part of the tag, so a cursor of one kind is refused by another.
            List::Projections { kind } => format!("pr{}-", store_cursor::hex(kind.as_bytes())),
            List::Work => "wk".to_string(),
            List::Rejects => "rj".to_string(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            List::Streams => "list_streams",
            List::Idempotency => "list_idempotency",
            List::Projections { .. } => "list_projections",
            List::Work => "pending_work",
            List::Rejects => "list_rejects",
        }
    }
}

/// The cursor after a page whose last key is `key`.
pub(crate) fn encode(list: List<'_>, key: &str) -> String {
    store_cursor::encode(&list.tag(), key)
}

/// The key a cursor from [`encode`] carries.
pub(crate) fn decode(list: List<'_>, cursor: &str) -> Result<String, StoreError> {
    store_cursor::decode(&list.tag(), list.name(), cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_is_bound_to_its_list() {
        let cursor = encode(List::Streams, "signal:caf\u{e9}");
        assert_eq!(decode(List::Streams, &cursor).unwrap(), "signal:caf\u{e9}");
        assert!(decode(List::Work, &cursor).is_err());
        let incidents = encode(List::Projections { kind: "incident" }, "i-1");
        assert_eq!(
            decode(List::Projections { kind: "incident" }, &incidents).unwrap(),
            "i-1"
        );
        assert!(decode(List::Projections { kind: "evidence" }, &incidents).is_err());
    }

    #[test]
    fn forged_cursors_are_invalid() {
        for forged in [
            "", "st", "st1.", "st1.0", "st1.zz", "st1.ff", "st2.61", "%%%%",
        ] {
            assert!(
                matches!(decode(List::Streams, forged), Err(StoreError::Invalid(_))),
                "{forged:?}"
            );
        }
    }
}
