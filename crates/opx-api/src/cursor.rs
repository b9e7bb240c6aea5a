//! Opaque page cursors.
//!
//! A cursor carries the position to continue from and a fingerprint of what was asked
//! (route and filters), so a cursor replayed with other filters is refused instead of
//! silently returning a page of another listing. It is hex so it needs no escaping in a
//! query string. Clients must treat it as opaque: its content may change between versions.

use crate::problem::{ApiError, ErrorCode};
use opx_domain::hash::{Digest, FieldHasher};
use serde::{Deserialize, Serialize};

/// Longest cursor accepted, in characters.
pub const CURSOR_LEN_MAX: usize = 4096;
/// The cursor format version.
const CURSOR_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorV1 {
    v: u32,
    scope: Digest,
    after: String,
}

/// The fingerprint of a listing: its route and its filters, in order.
pub fn scope(route: &str, filters: &[Option<&str>]) -> Digest {
    let mut hasher = FieldHasher::new("opx.api-cursor-scope.v1").str(route);
    for filter in filters {
        hasher = match filter {
            Some(value) => hasher.u64(1).str(value),
            None => hasher.u64(0),
        };
    }
    hasher.finish()
}

/// Encodes "continue after `after`" for the listing `scope`.
pub fn encode(scope: Digest, after: &str) -> String {
    let cursor = CursorV1 {
        v: CURSOR_VERSION,
        scope,
        after: after.to_owned(),
    };
    let json = serde_json::to_vec(&cursor).unwrap_or_default();
    let mut out = String::with_capacity(json.len() * 2);
    for byte in json {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Decodes a cursor of the listing `scope`, or refuses it (400 `invalid_cursor`).
pub fn decode(text: &str, scope: Digest) -> Result<String, ApiError> {
    let refuse = |why: &str| {
        ApiError::new(
            ErrorCode::InvalidCursor,
            format!("the cursor {why}; pass back next_cursor exactly as received, with the same filters, or start again without a cursor"),
        )
        .with_field("cursor")
    };
    if text.len() > CURSOR_LEN_MAX || !text.len().is_multiple_of(2) {
        return Err(refuse("is not one this API issued"));
    }
    let mut json = Vec::with_capacity(text.len() / 2);
    for pair in text.as_bytes().chunks(2) {
        let high = (pair[0] as char).to_digit(16);
        let low = (pair[1] as char).to_digit(16);
        match (high, low) {
            (Some(high), Some(low)) => json.push(u8::try_from(high * 16 + low).unwrap_or(0)),
            _ => return Err(refuse("is not one this API issued")),
        }
    }
    let cursor: CursorV1 =
        serde_json::from_slice(&json).map_err(|_| refuse("is not one this API issued"))?;
    if cursor.v != CURSOR_VERSION {
        return Err(refuse("is from another version of this API"));
    }
    if cursor.scope != scope {
        return Err(refuse("was issued for another listing or other filters"));
    }
    Ok(cursor.after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_only_within_its_scope() {
        let open = scope("/incidents", &[Some("OPEN"), None]);
        let closed = scope("/incidents", &[Some("CLOSED"), None]);
        let cursor = encode(open, "store-cursor/1");
        assert_eq!(decode(&cursor, open).unwrap(), "store-cursor/1");
        assert_eq!(
            decode(&cursor, closed).unwrap_err().code,
            ErrorCode::InvalidCursor
        );
        for bad in ["", "zz", "abc", &"00".repeat(CURSOR_LEN_MAX)] {
            assert!(decode(bad, open).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_filter_that_is_absent_differs_from_an_empty_one() {
        assert_ne!(
            scope("/incidents", &[None]),
            scope("/incidents", &[Some("")])
        );
    }
}
