//! Opaque page cursors.
//!
//! A cursor is `<list tag>1.<hex>`: the tag ties it to the list that issued it (and, for
//! projections, to the kind), the `1` is the format version, and the hex is the sort key
//! (or, for idempotency records, the partition key) of the page's last item. The next page
//! is a Query or Scan with that key as `ExclusiveStartKey`, so a cursor stays valid when
//! the item it names is deleted meanwhile (DynamoDB starts after the key, not at an item).

use opx_app::ports::StoreError;

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
            List::Projections { kind } => format!("pr{}-", hex(kind.as_bytes())),
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

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

/// The cursor after a page whose last key is `key`.
pub(crate) fn encode(list: List<'_>, key: &str) -> String {
    format!("{}1.{}", list.tag(), hex(key.as_bytes()))
}

/// The key a cursor from [`encode`] carries.
pub(crate) fn decode(list: List<'_>, cursor: &str) -> Result<String, StoreError> {
    let invalid = || {
        StoreError::Invalid(format!(
            "cursor {:?} was not issued by {} of this store; pass back the `next` of the \
             previous page unchanged, or start again without a cursor",
            truncated(cursor),
            list.name()
        ))
    };
    let hex = cursor
        .strip_prefix(list.tag().as_str())
        .and_then(|rest| rest.strip_prefix("1."))
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

/// Hostile cursors can be long; error messages quote only their start.
fn truncated(text: &str) -> &str {
    let mut end = text.len().min(80);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
