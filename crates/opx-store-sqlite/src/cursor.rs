//! Opaque page cursors.
//!
//! A cursor is `<list tag>1.<hex>`: the tag ties it to the list that issued it (a work
//! cursor handed to the rejects list is refused, not misread), the `1` is the format
//! version, and the hex is the last key (or position) of the page. Callers must treat it as
//! opaque; it is hex so it survives URLs and shells untouched.

use opx_app::ports::{StoreError, READ_PAGE_SIZE_MAX};

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
    let mut cursor = String::with_capacity(4 + key.len() * 2);
    cursor.push_str(list.tag());
    cursor.push_str("1.");
    for byte in key.as_bytes() {
        cursor.push(char::from(HEX[usize::from(byte >> 4)]));
        cursor.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    cursor
}

/// The cursor after a page whose last row is at `position`.
pub(crate) fn encode_position(list: List, position: i64) -> String {
    encode_key(list, &position.to_string())
}

/// The key a cursor from [`encode_key`] carries.
pub(crate) fn decode_key(list: List, cursor: &str) -> Result<String, StoreError> {
    let invalid = || {
        StoreError::Invalid(format!(
            "cursor {:?} was not issued by {} of this store; pass back the `next` of the \
             previous page unchanged, or start again without a cursor",
            truncated(cursor),
            list.name()
        ))
    };
    let hex = cursor
        .strip_prefix(list.tag())
        .and_then(|rest| rest.strip_prefix("1."))
        .ok_or_else(invalid)?;
    if hex.len() % 2 != 0 {
        return Err(invalid());
    }
    let mut bytes = Vec::with_capacity(hex.len() / 2);
    for pair in hex.as_bytes().chunks_exact(2) {
        let high = nibble(pair[0]).ok_or_else(invalid)?;
        let low = nibble(pair[1]).ok_or_else(invalid)?;
        bytes.push(high << 4 | low);
    }
    String::from_utf8(bytes).map_err(|_| invalid())
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

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
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
            "",
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
    fn malformed_cursors_are_invalid() {
        for cursor in ["", "st1.", "st1.0", "st1.zz", "st2.61", "x", "st1.ff", "é"] {
            let result = decode_key(List::Streams, cursor);
            if cursor == "st1." {
                // The empty key is well formed (it is the start of the key space).
                assert_eq!(result.unwrap(), "");
                continue;
            }
            assert!(
                matches!(result, Err(StoreError::Invalid(_))),
                "{cursor:?} must be refused"
            );
        }
    }

    #[test]
    fn page_sizes_are_checked_and_capped() {
        assert!(page_size(0, "read").is_err());
        assert_eq!(page_size(1, "read").unwrap(), 1);
        assert_eq!(page_size(usize::MAX, "read").unwrap(), READ_PAGE_SIZE_MAX);
    }
}
