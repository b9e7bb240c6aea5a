//! SigV4 verification for `opx serve`: the same signatures API Gateway checks on AWS, checked
//! here against the access keys of a local credentials file.
//!
//! # The credentials file
//!
//! JSON, by default at `~/.config/opx/credentials.json` (`opx serve --credentials FILE`);
//! keep it readable by its owner only. Each key maps to one principal and its roles:
//!
//! ```json
//! {
//!   "opx_credentials_version": 1,
//!   "keys": [
//!     {
//!       "access_key_id": "AKOPXLOCALALICE0001",
//!       "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
//!       "principal": "local:alice",
//!       "roles": ["responder", "approver"]
//!     }
//!   ]
//! }
//! ```
//!
//! `principal` is `local:NAME` (or an IAM ARN, to act as that ARN in the timeline); roles are
//! `reader`, `responder`, `approver`, `ingester`. A client signs with the same key pair from
//! the standard AWS credential chain (e.g. `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or a
//! profile), any region, service `execute-api`.
//!
//! # What is checked, in order
//!
//! 1. An `Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/execute-api/aws4_request,
//!    SignedHeaders=…, Signature=…` header and an `X-Amz-Date` header (else 401
//!    `unauthenticated`); `host` and `x-amz-date` must be signed; no presigned URLs.
//! 2. The access key is in the credentials file (else 403 `unknown_access_key`).
//! 3. `X-Amz-Date` is within [`CLOCK_SKEW_MAX_MS`] of the server's clock (else 401
//!    `signature_expired`), and its date is the credential scope's date.
//! 4. The body: its SHA-256 is the payload hash; an `x-amz-content-sha256` header must equal
//!    it (`UNSIGNED-PAYLOAD` is refused).
//! 5. The canonical request (method, the path normalised and URI-encoded again as for every
//!    service but S3, the query sorted and re-encoded, the signed headers with trimmed
//!    values, the payload hash) and the string to sign are rebuilt, and the HMAC-SHA256
//!    signature is compared in constant time (else 403 `signature_mismatch`). A query not
//!    in canonical form (`?service=a+b`) is also checked as written, pairs sorted, which is
//!    what botocore signs for it.

use crate::auth::{AuthError, Authenticator, Caller, Role};
use axum::http::request::Parts;
use hmac::{Hmac, Mac};
use opx_app::ports::Clock;
use opx_domain::incident::Principal;
use opx_domain::time::EpochMs;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// The only signing algorithm accepted.
pub const SIGV4_ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service name in the credential scope (API Gateway's).
pub const SIGNING_SERVICE: &str = "execute-api";
/// The credential scope terminator.
pub const SCOPE_TERMINATOR: &str = "aws4_request";
/// How far the signature's time may be from the server's clock, either way (AWS allows 5
/// minutes too).
pub const CLOCK_SKEW_MAX_MS: i64 = 5 * 60 * 1000;
/// Most headers a request may sign.
pub const SIGNED_HEADERS_MAX: usize = 64;
/// The credentials file format version this build reads.
pub const CREDENTIALS_FILE_VERSION: u64 = 1;
/// Most keys in one credentials file.
pub const CREDENTIAL_KEYS_MAX: usize = 1000;
/// Shortest access key id accepted.
pub const ACCESS_KEY_ID_LEN_MIN: usize = 16;
/// Longest access key id accepted.
pub const ACCESS_KEY_ID_LEN_MAX: usize = 128;
/// Shortest secret accepted: a guessable secret is no authentication.
pub const SECRET_ACCESS_KEY_LEN_MIN: usize = 20;
/// Longest secret accepted.
pub const SECRET_ACCESS_KEY_LEN_MAX: usize = 256;
/// The default location of the credentials file, under the home directory.
pub const DEFAULT_CREDENTIALS_PATH: &str = ".config/opx/credentials.json";

type HmacSha256 = Hmac<Sha256>;

/// Why a credentials file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Not JSON of the documented shape.
    #[error("the credentials file is not valid: {0}; see the format in `opx serve --help`")]
    Malformed(String),
    /// Another version.
    #[error("the credentials file has opx_credentials_version {0}; this build reads version {CREDENTIALS_FILE_VERSION}")]
    UnsupportedVersion(u64),
    /// A key entry is refused.
    #[error("credentials key #{index}: {reason}")]
    InvalidKey {
        /// 1-based position in `keys`.
        index: usize,
        /// Why.
        reason: String,
    },
    /// Too many keys.
    #[error("the credentials file has {0} keys, more than {CREDENTIAL_KEYS_MAX}")]
    TooManyKeys(usize),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFileV1 {
    opx_credentials_version: u64,
    keys: Vec<KeyEntryV1>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntryV1 {
    access_key_id: String,
    secret_access_key: String,
    principal: String,
    roles: Vec<String>,
}

/// One access key's secret and whom it authenticates.
#[derive(Clone, PartialEq, Eq)]
struct LocalKey {
    secret: String,
    principal: Principal,
    roles: BTreeSet<Role>,
}

impl fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("LocalKey")
            .field("secret", &"<redacted>")
            .field("principal", &self.principal)
            .field("roles", &self.roles)
            .finish()
    }
}

/// The keys of a credentials file (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalCredentials {
    keys: BTreeMap<String, LocalKey>,
}

impl LocalCredentials {
    /// Parses and checks the file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<LocalCredentials, CredentialsError> {
        let file: CredentialsFileV1 = serde_json::from_slice(bytes)
            .map_err(|error| CredentialsError::Malformed(error.to_string()))?;
        if file.opx_credentials_version != CREDENTIALS_FILE_VERSION {
            return Err(CredentialsError::UnsupportedVersion(
                file.opx_credentials_version,
            ));
        }
        if file.keys.len() > CREDENTIAL_KEYS_MAX {
            return Err(CredentialsError::TooManyKeys(file.keys.len()));
        }
        let mut keys = BTreeMap::new();
        for (position, entry) in file.keys.into_iter().enumerate() {
            let index = position + 1;
            let refuse = |reason: String| CredentialsError::InvalidKey { index, reason };
            let id = entry.access_key_id;
            if id.len() < ACCESS_KEY_ID_LEN_MIN
                || id.len() > ACCESS_KEY_ID_LEN_MAX
                || !id.bytes().all(|byte| byte.is_ascii_alphanumeric())
            {
                return Err(refuse(format!(
                    "access_key_id must be {ACCESS_KEY_ID_LEN_MIN} to {ACCESS_KEY_ID_LEN_MAX} letters and digits"
                )));
            }
            let secret = entry.secret_access_key;
            if secret.len() < SECRET_ACCESS_KEY_LEN_MIN
                || secret.len() > SECRET_ACCESS_KEY_LEN_MAX
                || !secret.bytes().all(|byte| byte.is_ascii_graphic())
            {
                return Err(refuse(format!(
                    "secret_access_key of {id} must be {SECRET_ACCESS_KEY_LEN_MIN} to {SECRET_ACCESS_KEY_LEN_MAX} printable characters without spaces (generate one, e.g. `openssl rand -base64 30`)"
                )));
            }
            let principal = Principal::parse(&entry.principal)
                .map_err(|error| refuse(format!("principal of {id}: {error}")))?;
            if entry.roles.is_empty() {
                return Err(refuse(format!(
                    "{id} has no roles; give at least one of reader, responder, approver, ingester"
                )));
            }
            let mut roles = BTreeSet::new();
            for name in &entry.roles {
                let role = Role::parse(name).ok_or_else(|| {
                    refuse(format!(
                        "{id} has role {name:?}; the roles are reader, responder, approver, ingester"
                    ))
                })?;
                roles.insert(role);
            }
            if keys.contains_key(&id) {
                return Err(refuse(format!("access_key_id {id} appears twice")));
            }
            keys.insert(
                id,
                LocalKey {
                    secret,
                    principal,
                    roles,
                },
            );
        }
        Ok(LocalCredentials { keys })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Authenticates `opx serve` requests by their SigV4 signature (see the module
/// documentation).
pub struct SigV4Authenticator {
    credentials: LocalCredentials,
    clock: Arc<dyn Clock>,
}

impl SigV4Authenticator {
    /// Verifies against `credentials`, with `clock` for the skew check.
    pub fn new(credentials: LocalCredentials, clock: Arc<dyn Clock>) -> SigV4Authenticator {
        SigV4Authenticator { credentials, clock }
    }
}

impl Authenticator for SigV4Authenticator {
    fn authenticate(&self, head: &Parts, body: &[u8]) -> Result<Caller, AuthError> {
        verify(head, body, self.clock.now(), &self.credentials)
    }
}

/// The parts of an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    signed_headers: Vec<&'a str>,
    signed_headers_text: &'a str,
    signature: [u8; 32],
}

fn unauthenticated(detail: impl Into<String>) -> AuthError {
    AuthError::Unauthenticated(detail.into())
}

const SIGN_HINT: &str = "sign requests with SigV4 for service execute-api (e.g. `opx --endpoint URL …` does, with the standard AWS credential chain)";

fn parse_authorization(text: &str) -> Result<Authorization<'_>, AuthError> {
    let Some(rest) = text.strip_prefix(SIGV4_ALGORITHM) else {
        return Err(unauthenticated(format!(
            "the Authorization header is not {SIGV4_ALGORITHM}; {SIGN_HINT}"
        )));
    };
    if !rest.starts_with(' ') {
        return Err(unauthenticated(format!(
            "the Authorization header is not {SIGV4_ALGORITHM}; {SIGN_HINT}"
        )));
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for component in rest.split(',') {
        let component = component.trim_matches(' ');
        let Some((name, value)) = component.split_once('=') else {
            return Err(unauthenticated(format!(
                "the Authorization header component {:?} is not NAME=VALUE; {SIGN_HINT}",
                opx_domain::signal::truncate_utf8(component, 64)
            )));
        };
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => {
                return Err(unauthenticated(format!(
                    "the Authorization header has an unknown component {:?}; {SIGN_HINT}",
                    opx_domain::signal::truncate_utf8(name, 64)
                )))
            }
        };
        if slot.replace(value).is_some() {
            return Err(unauthenticated(format!(
                "the Authorization header has {name} twice; {SIGN_HINT}"
            )));
        }
    }
    let (Some(credential), Some(signed_headers_text), Some(signature_hex)) =
        (credential, signed_headers, signature)
    else {
        return Err(unauthenticated(format!(
            "the Authorization header needs Credential, SignedHeaders and Signature; {SIGN_HINT}"
        )));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope.as_slice() else {
        return Err(unauthenticated(format!(
            "the credential is not KEY/DATE/REGION/SERVICE/{SCOPE_TERMINATOR}; {SIGN_HINT}"
        )));
    };
    if *service != SIGNING_SERVICE || *terminator != SCOPE_TERMINATOR {
        return Err(unauthenticated(format!(
            "the credential scope is for service {service:?}; this API is {SIGNING_SERVICE:?}"
        )));
    }
    if date.len() != 8 || !date.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(unauthenticated(
            "the credential scope date is not YYYYMMDD".to_owned(),
        ));
    }
    if region.is_empty() || access_key_id.is_empty() {
        return Err(unauthenticated(format!(
            "the credential names no key or no region; {SIGN_HINT}"
        )));
    }
    let signed_headers: Vec<&str> = signed_headers_text.split(';').collect();
    if signed_headers.len() > SIGNED_HEADERS_MAX {
        return Err(unauthenticated(format!(
            "more than {SIGNED_HEADERS_MAX} signed headers"
        )));
    }
    let well_formed = signed_headers.iter().all(|name| {
        !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
    });
    let sorted_unique = signed_headers.windows(2).all(|pair| pair[0] < pair[1]);
    if !well_formed || !sorted_unique {
        return Err(unauthenticated(
            "SignedHeaders must be lowercase header names, sorted, separated by ';'".to_owned(),
        ));
    }
    for required in ["host", "x-amz-date"] {
        if !signed_headers.contains(&required) {
            return Err(unauthenticated(format!(
                "the signature must cover the {required} header"
            )));
        }
    }
    let signature = decode_hex_32(signature_hex).ok_or_else(|| {
        unauthenticated("the Signature is not 64 hexadecimal characters".to_owned())
    })?;
    Ok(Authorization {
        access_key_id,
        date,
        region,
        signed_headers,
        signed_headers_text,
        signature,
    })
}

fn decode_hex_32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, pair) in bytes.chunks(2).enumerate() {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        out[index] = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` as epoch milliseconds.
fn parse_amz_date(text: &str) -> Option<EpochMs> {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[9..15].iter().all(u8::is_ascii_digit);
    if !shape_ok {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13],
        &text[13..15]
    );
    EpochMs::parse(&rfc3339).ok()
}

/// Whether a byte stays as it is in SigV4 URI encoding (RFC 3986 unreserved).
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes every byte but the unreserved ones (and `/` when `keep_slash`).
fn uri_encode(text: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text {
        if is_unreserved(byte) || (keep_slash && byte == b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as a space, as form decoding does); a malformed escape is
/// kept literally, as `form_urlencoded` (which the signer uses) keeps it.
fn form_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            b'%' if index + 2 < bytes.len() => {
                let high = (bytes[index + 1] as char).to_digit(16);
                let low = (bytes[index + 2] as char).to_digit(16);
                match (high, low) {
                    (Some(high), Some(low)) => {
                        out.push(u8::try_from(high * 16 + low).unwrap_or(b'%'));
                        index += 3;
                    }
                    _ => {
                        out.push(b'%');
                        index += 1;
                    }
                }
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    out
}

/// The canonical URI: the path with dot segments and empty segments removed (as the SDKs
/// normalise it before signing), then URI-encoded once more (the wire path is already
/// encoded once: every service but S3 signs it double-encoded).
fn canonical_uri(path: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let normalized = if path.contains('.') || path.contains("//") {
        let mut segments: Vec<&str> = Vec::new();
        for segment in path.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                other => segments.push(other),
            }
        }
        let mut joined = format!("/{}", segments.join("/"));
        let ends_with_slash = ["/", "/.", "/./", "/..", "/../"]
            .iter()
            .any(|suffix| path.ends_with(suffix));
        if ends_with_slash && !joined.ends_with('/') {
            joined.push('/');
        }
        joined
    } else {
        path.to_owned()
    };
    uri_encode(normalized.as_bytes(), true)
}

/// The canonical queries a signature is checked against, the standard one first.
///
/// Signers disagree on a query that is not already in canonical form. The AWS SDKs for
/// Rust, Java and JavaScript (and API Gateway) decode every pair, reading `+` as a space,
/// and re-encode it ([`canonical_query`]); botocore, given a URL with its query, signs the
/// pairs sorted but byte for byte as written ([`query_as_written`]), so `?service=a+b` is
/// `service=a%20b` to the first and `service=a+b` to the second. Both forms cover every
/// byte of the query as sent, so accepting either authenticates the same request; the
/// handler reads the query one way whichever signer made it.
fn canonical_query_forms(query: Option<&str>) -> Vec<String> {
    let standard = canonical_query(query);
    let as_written = query_as_written(query);
    if as_written == standard {
        vec![standard]
    } else {
        vec![standard, as_written]
    }
}

/// The query's `name=value` pairs sorted, bytes as sent (botocore's canonical query for a
/// request whose URL carries it).
fn query_as_written(query: Option<&str>) -> String {
    let pairs: Vec<(&str, &str)> = query
        .unwrap_or_default()
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    if pairs == [("", "")] {
        return String::new();
    }
    sorted_query(pairs)
}

/// The canonical query: every `name=value` pair decoded, re-encoded, sorted.
fn canonical_query(query: Option<&str>) -> String {
    let pairs: Vec<(String, String)> = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&form_decode(name), false),
                uri_encode(&form_decode(value), false),
            )
        })
        .collect();
    sorted_query(pairs)
}

/// `name=value` pairs sorted (by name, then value) and joined with `&`.
fn sorted_query<T: AsRef<str> + Ord>(mut pairs: Vec<(T, T)>) -> String {
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", name.as_ref(), value.as_ref()))
        .collect::<Vec<_>>()
        .join("&")
}

/// Trims spaces at both ends and collapses runs of spaces (only spaces, as the signer does).
fn trim_all(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut previous_space = false;
    for character in value.trim_matches(' ').chars() {
        if character == ' ' {
            if !previous_space {
                out.push(' ');
            }
            previous_space = true;
        } else {
            out.push(character);
            previous_space = false;
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, AuthError> {
    let mut mac = HmacSha256::new_from_slice(key)
        .map_err(|_| AuthError::SignatureMismatch("the signing key is unusable".to_owned()))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// Verifies a request's SigV4 signature; see the module documentation for the order of
/// the checks and what each refusal is.
pub fn verify(
    head: &Parts,
    body: &[u8],
    now: EpochMs,
    credentials: &LocalCredentials,
) -> Result<Caller, AuthError> {
    let mut authorization_values = head.headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(authorization), None) = (authorization_values.next(), authorization_values.next())
    else {
        let presigned = head
            .uri
            .query()
            .is_some_and(|query| query.contains("X-Amz-Signature="));
        let detail = if presigned {
            format!("presigned URLs are not accepted: sign the Authorization header; {SIGN_HINT}")
        } else {
            format!("the request is not signed (one Authorization header is needed); {SIGN_HINT}")
        };
        return Err(unauthenticated(detail));
    };
    let authorization = authorization
        .to_str()
        .map_err(|_| unauthenticated("the Authorization header is not ASCII".to_owned()))?;
    let parsed = parse_authorization(authorization)?;
    let amz_date_text = head
        .headers
        .get("x-amz-date")
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| unauthenticated(format!("the X-Amz-Date header is missing; {SIGN_HINT}")))?;
    let signed_at = parse_amz_date(amz_date_text).ok_or_else(|| {
        unauthenticated("the X-Amz-Date header is not YYYYMMDDTHHMMSSZ".to_owned())
    })?;
    if !amz_date_text.starts_with(parsed.date) {
        return Err(unauthenticated(
            "the credential scope date is not the date of X-Amz-Date".to_owned(),
        ));
    }
    let Some(key) = credentials.keys.get(parsed.access_key_id) else {
        return Err(AuthError::UnknownAccessKey(format!(
            "access key {} is not in this server's credentials file; use a key it lists",
            opx_domain::signal::truncate_utf8(parsed.access_key_id, ACCESS_KEY_ID_LEN_MAX)
        )));
    };
    let skew_ms = now.0.saturating_sub(signed_at.0).saturating_abs();
    if skew_ms > CLOCK_SKEW_MAX_MS {
        return Err(AuthError::SignatureExpired(format!(
            "the request was signed at {amz_date_text}, {} s from this server's clock (at most {} s allowed); \
             sign it again now, and check the clock of the machine that signs",
            skew_ms / 1000,
            CLOCK_SKEW_MAX_MS / 1000
        )));
    }
    let payload_hash = hex(&Sha256::digest(body));
    if let Some(declared) = head.headers.get("x-amz-content-sha256") {
        if declared.as_bytes() != payload_hash.as_bytes() {
            return Err(AuthError::SignatureMismatch(
                "x-amz-content-sha256 is not the SHA-256 of the body (unsigned payloads are refused); \
                 sign the body"
                    .to_owned(),
            ));
        }
    }
    let mut canonical_headers = String::new();
    for name in &parsed.signed_headers {
        let mut values = Vec::new();
        for value in head.headers.get_all(*name) {
            let text = value.to_str().map_err(|_| {
                AuthError::SignatureMismatch(format!("signed header {name} is not ASCII"))
            })?;
            values.push(trim_all(text));
        }
        if values.is_empty() {
            return Err(AuthError::SignatureMismatch(format!(
                "signed header {name} is not in the request"
            )));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let scope = format!(
        "{}/{}/{SIGNING_SERVICE}/{SCOPE_TERMINATOR}",
        parsed.date, parsed.region
    );
    let date_key = hmac(
        format!("AWS4{}", key.secret).as_bytes(),
        parsed.date.as_bytes(),
    )?;
    let region_key = hmac(&date_key, parsed.region.as_bytes())?;
    let service_key = hmac(&region_key, SIGNING_SERVICE.as_bytes())?;
    let signing_key = hmac(&service_key, SCOPE_TERMINATOR.as_bytes())?;
    let canonical_uri = canonical_uri(head.uri.path());
    let queries = canonical_query_forms(head.uri.query());
    for query in &queries {
        let canonical_request = format!(
            "{}\n{canonical_uri}\n{query}\n{canonical_headers}\n{}\n{payload_hash}",
            head.method.as_str(),
            parsed.signed_headers_text,
        );
        let string_to_sign = format!(
            "{SIGV4_ALGORITHM}\n{amz_date_text}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let mut mac = HmacSha256::new_from_slice(&signing_key)
            .map_err(|_| AuthError::SignatureMismatch("the signing key is unusable".to_owned()))?;
        mac.update(string_to_sign.as_bytes());
        // `verify_slice` compares in constant time.
        if mac.verify_slice(&parsed.signature).is_ok() {
            return Ok(Caller {
                principal: key.principal.clone(),
                roles: key.roles.clone(),
            });
        }
        tracing::debug!(%canonical_request, "SigV4 signature mismatch");
    }
    Err(AuthError::SignatureMismatch(
        "the signature does not match the request; sign exactly what is sent, with this key's secret".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uri_double_encodes_and_normalises() {
        assert_eq!(canonical_uri("/incidents"), "/incidents");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/a%20b"), "/a%2520b");
        assert_eq!(canonical_uri("/a/./b//c/../d"), "/a/b/d");
        assert_eq!(canonical_uri("/a/b/"), "/a/b/");
    }

    #[test]
    fn canonical_query_sorts_and_re_encodes() {
        assert_eq!(canonical_query(None), "");
        assert_eq!(
            canonical_query(Some("state=OPEN&limit=5&a+b=c%2Fd&e")),
            "a%20b=c%2Fd&e=&limit=5&state=OPEN"
        );
    }

    #[test]
    fn a_query_as_written_is_a_second_form_only_when_it_differs() {
        assert_eq!(canonical_query_forms(None), vec![String::new()]);
        assert_eq!(
            canonical_query_forms(Some("state=OPEN&limit=5")),
            vec!["limit=5&state=OPEN".to_owned()]
        );
        assert_eq!(
            canonical_query_forms(Some("service=a+b&limit=5")),
            vec![
                "limit=5&service=a%20b".to_owned(),
                "limit=5&service=a+b".to_owned()
            ]
        );
        assert_eq!(
            canonical_query_forms(Some("e&d=%2f")),
            vec!["d=%2F&e=".to_owned(), "d=%2f&e=".to_owned()]
        );
    }

    #[test]
    fn authorization_parsing_refuses_what_it_cannot_trust() {
        let good = "AWS4-HMAC-SHA256 Credential=AKOPXLOCALTEST0001/20261124/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=".to_owned() + &"a".repeat(64);
        assert!(parse_authorization(&good).is_ok());
        for bad in [
            good.replace("execute-api", "s3"),
            good.replace("host;x-amz-date", "x-amz-date;host"),
            good.replace("host;x-amz-date", "host"),
            good.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
            good.replace(&"a".repeat(64), "abc"),
            good.replace("20261124", "2026112"),
            format!("{good}, Signature={}", "b".repeat(64)),
        ] {
            assert!(parse_authorization(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amz_dates_parse_strictly() {
        assert_eq!(
            parse_amz_date("20261124T030009Z"),
            EpochMs::parse("2026-11-24T03:00:09Z").ok()
        );
        assert_eq!(parse_amz_date("2026-11-24T03:00:09Z"), None);
        assert_eq!(parse_amz_date("20261124T030009"), None);
    }

    #[test]
    fn credentials_files_are_checked() {
        let good = br#"{"opx_credentials_version":1,"keys":[{"access_key_id":"AKOPXLOCALTEST0001","secret_access_key":"0123456789abcdefghijKLMNOP","principal":"local:alice","roles":["reader"]}]}"#;
        assert_eq!(LocalCredentials::parse(good).map(|c| c.len()), Ok(1));
        let text = std::str::from_utf8(good).unwrap();
        for bad in [
            text.replace(
                "\"opx_credentials_version\":1",
                "\"opx_credentials_version\":2",
            ),
            text.replace("[\"reader\"]", "[]"),
            text.replace("[\"reader\"]", "[\"admin\"]"),
            text.replace("local:alice", "alice"),
            text.replace("0123456789abcdefghijKLMNOP", "short"),
            text.replace("AKOPXLOCALTEST0001", "AK-1"),
            text.replace("\"roles\"", "\"role\""),
        ] {
            assert!(LocalCredentials::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let twice = text.replace(
            "]}",
            ",{\"access_key_id\":\"AKOPXLOCALTEST0001\",\"secret_access_key\":\"0123456789abcdefghijKLMNOP\",\"principal\":\"local:bob\",\"roles\":[\"reader\"]}]}",
        );
        assert!(LocalCredentials::parse(twice.as_bytes()).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let good = br#"{"opx_credentials_version":1,"keys":[{"access_key_id":"AKOPXLOCALTEST0001","secret_access_key":"0123456789abcdefghijKLMNOP","principal":"local:alice","roles":["reader"]}]}"#;
        let credentials = LocalCredentials::parse(good).unwrap();
        assert!(!format!("{credentials:?}").contains("0123456789abcdefghij"));
    }
}
