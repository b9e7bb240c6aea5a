//! The page cursor every store backend issues: `<list tag>1.<hex of the last key>`.
//!
//! The tag ties a cursor to the list (and, where a backend needs it, the projection kind)
//! that issued it, so a cursor handed to another list is refused, not misread; `1` is the
//! format version; the hex survives URLs and shells untouched. The key is never empty (no
//! backend stores an empty key, and DynamoDB cannot start after one), so an empty hex is
//! refused like any other cursor no store issued. Callers treat cursors as opaque.

use crate::ports::StoreError;

/// The format version in every cursor.
const CURSOR_VERSION: &str = "1.";
/// How much of a refused cursor an error message quotes (hostile cursors can be long).
const QUOTED_LEN_MAX: usize = 64;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

/// The cursor after a page whose last key is `key`, for the list tagged `tag`.
pub fn encode(tag: &str, key: &str) -> String {
    format!("{tag}{CURSOR_VERSION}{}", hex(key.as_bytes()))
}

/// The key a cursor from [`encode`] with the same `tag` carries; anything else is
/// [`StoreError::Invalid`] naming `list` (the operation that was called).
pub fn decode(tag: &str, list: &str, cursor: &str) -> Result<String, StoreError> {
    let invalid = || {
        StoreError::Invalid(format!(
            "cursor {:?} was not issued by {list} of this store; pass back the `next` of the \
             previous page unchanged, or start again without a cursor",
            quoted(cursor),
        ))
    };
    let hex = cursor
        .strip_prefix(tag)
        .and_then(|rest| rest.strip_prefix(CURSOR_VERSION))
        .ok_or_else(invalid)?;
    if hex.is_empty() || hex.len() % 2 != 0 {
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

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn quoted(cursor: &str) -> &str {
    let mut end = cursor.len().min(QUOTED_LEN_MAX);
    while !cursor.is_char_boundary(end) {
        end -= 1;
    }
    &cursor[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_cursors_are_bound_to_their_tag() {
        for key in ["a", "incident/prod/orders", "ünïcødé/🔥", "signal:café"] {
            let cursor = encode("pr", key);
            assert_eq!(decode("pr", "list_projections", &cursor).unwrap(), key);
            assert!(decode("st", "list_streams", &cursor).is_err());
        }
    }

    #[test]
    fn cursors_no_store_issued_are_invalid() {
        for cursor in [
            "", "st", "st1.", "st1.0", "st1.zz", "st1.ff", "st2.61", "%%%%", "é",
        ] {
            assert!(
                matches!(
                    decode("st", "list_streams", cursor),
                    Err(StoreError::Invalid(_))
                ),
                "{cursor:?} must be refused"
            );
        }
        let long = format!("st1.{}", "z".repeat(10_000));
        let Err(StoreError::Invalid(message)) = decode("st", "list_streams", &long) else {
            panic!("a long forged cursor must be refused");
        };
        assert!(message.len() < 400, "the message quotes only the start");
    }
}
