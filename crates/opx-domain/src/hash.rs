//! SHA-256 identities over canonical fields.
//!
//! Every derived id in opx is `SHA-256(domain tag, field, field, ...)` where each field is
//! written as its byte length (u64, big-endian) followed by its bytes. Length prefixes make
//! the encoding injective: `("ab", "c")` and `("a", "bc")` never collide, which plain
//! concatenation or a JSON serialiser with a key filter cannot promise.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A SHA-256 digest, shown and serialised as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The all-zero digest: the "previous hash" of the first event of every stream.
    pub const ZERO: Digest = Digest([0u8; 32]);

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(HEX[(byte >> 4) as usize] as char);
            out.push(HEX[(byte & 0x0f) as usize] as char);
        }
        out
    }

    /// Parses exactly 64 hex characters (either case).
    pub fn from_hex(text: &str) -> Option<Digest> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let high = hex_value(pair[0])?;
            let low = hex_value(pair[1])?;
            out[i] = (high << 4) | low;
        }
        Some(Digest(out))
    }

    /// SHA-256 of raw bytes, with no domain tag (used for payload bytes).
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::from_hex(&text).ok_or_else(|| {
            serde::de::Error::custom("expected 64 hex characters (a SHA-256 digest)")
        })
    }
}

/// Builds a digest over a domain tag and length-prefixed fields.
///
/// ```
/// use opx_domain::hash::FieldHasher;
/// let a = FieldHasher::new("opx.example.v1").str("ab").str("c").finish();
/// let b = FieldHasher::new("opx.example.v1").str("a").str("bc").finish();
/// assert_ne!(a, b);
/// ```
pub struct FieldHasher(Sha256);

impl FieldHasher {
    /// Starts a digest; `tag` names what is being identified and its version, so two kinds
    /// of id can never collide even over equal fields.
    pub fn new(tag: &str) -> FieldHasher {
        let mut hasher = FieldHasher(Sha256::new());
        hasher.write(tag.as_bytes());
        hasher
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    /// Adds a byte field.
    pub fn bytes(mut self, bytes: &[u8]) -> FieldHasher {
        self.write(bytes);
        self
    }

    /// Adds a text field.
    pub fn str(self, text: &str) -> FieldHasher {
        self.bytes(text.as_bytes())
    }

    /// Adds a signed integer field (big-endian, fixed width).
    pub fn i64(self, value: i64) -> FieldHasher {
        self.bytes(&value.to_be_bytes())
    }

    /// Adds an unsigned integer field (big-endian, fixed width).
    pub fn u64(self, value: u64) -> FieldHasher {
        self.bytes(&value.to_be_bytes())
    }

    /// Adds a digest field.
    pub fn digest(self, digest: &Digest) -> FieldHasher {
        self.bytes(&digest.0)
    }

    /// Finishes the digest.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let digest = Digest::of_bytes(b"opx");
        assert_eq!(Digest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(
            Digest::from_hex(&digest.to_hex().to_uppercase()),
            Some(digest)
        );
        assert_eq!(Digest::from_hex("abc"), None);
        assert_eq!(Digest::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn known_sha256_vector() {
        assert_eq!(
            Digest::of_bytes(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn length_prefixing_separates_fields() {
        let a = FieldHasher::new("t").str("ab").str("c").finish();
        let b = FieldHasher::new("t").str("a").str("bc").finish();
        let c = FieldHasher::new("u").str("ab").str("c").finish();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
