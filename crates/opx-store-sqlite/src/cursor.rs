//! Opaque page cursors.
//!
//! The format is the one every backend shares (`opx_app::store_cursor`): a list tag, the
//! version and the hex of the page's last key (or position).

use opx_app::ports::{StoreError, READ_PAGE_SIZE_MAX};
use opx_app::store_cursor;

/// Which list a cursor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum List {
    Streams,
    Idempotency,
    Projections,
    Work,
    Rejects,
}

impl List {
    fn tag(self) -> &'static str {
        match self {
            List::Streams => "st",
            List::Idempotency => "id",
            List::Projections => "pr",
            List::Work => "wk",
            List::Rejects => "rj",
        }
    }

    fn name(self) -> &'static str {
        match self {
            List::Streams => "list_streams",
            List::Idempotency => "list_idempotency",
            List::Projections => "list_projections",
            List::Work => "pending_work",
            List::Rejects => "list_rejects",
        }
    }
}

/// The cursor after a page whose last key is `key`.
pub(crate) fn encode_key(list: List, key: &str) -> String {
    store_cursor::encode(list.tag(), key)
}

/// The cursor after a page whose last row is at `position`.
pub(crate) fn encode_position(list: List, position: i64) -> String {
    encode_key(list, &position.to_string())
}

/// The key a cursor from [`encode_key`] carries.
pub(crate) fn decode_key(list: List, cursor: &str) -> Result<String, StoreError> {
    store_cursor::decode(list.tag(), list.name(), cursor)
}

/// The position a cursor from [`encode_position`] carries.
pub(crate) fn decode_position(list: List, cursor: &str) -> Result<i64, StoreError> {
    decode_key(list, cursor)?.parse::<i64>().map_err(|_| {
        StoreError::Invalid(format!(
            "cursor {:?} was not issued by {}; pass back the `next` of the previous page \
             unchanged",
            truncated(cursor),
            list.name()
        ))
    })
}

/// Checks a caller's page size: zero is a bug (a page loop would never advance), more than
/// [`READ_PAGE_SIZE_MAX`] is capped.
pub(crate) fn page_size(limit: usize, operation: &str) -> Result<usize, StoreError> {
    if limit == 0 {
        return Err(StoreError::Invalid(format!(
            "{operation}: limit 0 asks for nothing; pass a limit from 1 to {READ_PAGE_SIZE_MAX}"
        )));
    }
    Ok(limit.min(READ_PAGE_SIZE_MAX))
}

/// Hostile cursors can be long; error messages quote only their start.
fn truncated(cursor: &str) -> &str {
    let mut end = cursor.len().min(64);
    while !cursor.is_char_boundary(end) {
        end -= 1;
    }
    &cursor[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_cursors_are_bound_to_their_list() {
        for key in [
            "a",
            "incident/prod/orders",
            "ünïcødé/🔥",
            "with.dots.and-dashes",
        ] {
            let cursor = encode_key(List::Projections, key);
            assert_eq!(decode_key(List::Projections, &cursor).unwrap(), key);
            assert!(decode_key(List::Streams, &cursor).is_err());
        }
        let cursor = encode_position(List::Work, 42);
        assert_eq!(decode_position(List::Work, &cursor).unwrap(), 42);
        assert!(decode_position(List::Rejects, &cursor).is_err());
    }

    #[test]
    fn page_sizes_are_checked_and_capped() {
        assert!(page_size(0, "read").is_err());
        assert_eq!(page_size(1, "read").unwrap(), 1);
        assert_eq!(page_size(usize::MAX, "read").unwrap(), READ_PAGE_SIZE_MAX);
    }
}
