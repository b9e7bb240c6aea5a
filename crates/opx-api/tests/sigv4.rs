//! The SigV4 verifier of `opx serve` against requests signed by `aws-sigv4`, the signer of
//! the AWS SDK for Rust (what `opx --endpoint` uses): what it signs verifies, and any change
//! after signing, another secret, another key or another time does not.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use axum::body::Body;
use axum::http::Request;
use opx_api::auth::{AuthError, Role};
use opx_api::signals::AfterIngest;
use opx_api::sigv4::{verify, LocalCredentials, SigV4Authenticator, CLOCK_SKEW_MAX_MS};
use opx_api::ApiState;
use opx_domain::time::EpochMs;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEY: &str = "AKOPXLOCALALICE0001";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn credentials() -> LocalCredentials {
    LocalCredentials::parse(
        format!(
            r#"{{"opx_credentials_version":1,"keys":[
                {{"access_key_id":"{KEY}","secret_access_key":"{SECRET}","principal":"local:alice","roles":["responder","approver"]}},
                {{"access_key_id":"AKOPXLOCALRITA00001","secret_access_key":"another-secret-of-enough-length","principal":"arn:aws:iam::123456789012:user/rita","roles":["reader"]}}
            ]}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

fn signing_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_492_800) // 2026-11-24T04:00:00Z
}

fn epoch_ms(time: SystemTime) -> EpochMs {
    EpochMs(time.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64)
}

struct Signing<'a> {
    key: &'a str,
    secret: &'a str,
    token: Option<&'a str>,
    time: SystemTime,
    checksum_header: bool,
}

impl Default for Signing<'_> {
    fn default() -> Self {
        Signing {
            key: KEY,
            secret: SECRET,
            token: None,
            time: signing_time(),
            checksum_header: false,
        }
    }
}

fn signed(mut request: Request<Vec<u8>>, signing: &Signing<'_>) -> Request<Vec<u8>> {
    let identity = Credentials::new(
        signing.key,
        signing.secret,
        signing.token.map(str::to_owned),
        None,
        "test",
    )
    .into();
    let mut settings = SigningSettings::default();
    if signing.checksum_header {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-west-1")
        .name("execute-api")
        .time(signing.time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap().to_owned()))
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.uri().to_string(),
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        SignableBody::Bytes(request.body()),
    )
    .unwrap();
    let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut request);
    request
}

fn check(request: Request<Vec<u8>>, now: SystemTime) -> Result<opx_api::auth::Caller, AuthError> {
    let (mut parts, body) = request.into_parts();
    // What a server sees: an origin-form URI (path and query), the host in its header.
    let path_and_query = parts.uri.path_and_query().unwrap().as_str().to_owned();
    parts.uri = path_and_query.parse().unwrap();
    verify(&parts, &body, epoch_ms(now), &credentials())
}

fn request(method: &str, uri: &str, body: &str) -> Request<Vec<u8>> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1:8080")
        .header("content-type", "application/json")
        .body(body.as_bytes().to_vec())
        .unwrap()
}

#[test]
fn what_aws_sigv4_signs_verifies() {
    let cases = [
        request("GET", "http://127.0.0.1:8080/incidents", ""),
        request(
            "GET",
            "http://127.0.0.1:8080/incidents?state=OPEN&service=pay%20ments&limit=5",
            "",
        ),
        request(
            "GET",
            "http://127.0.0.1:8080/incidents?b=2&a=1&a=0&empty=&plus=a+b&tilde=~x&slash=%2F",
            "",
        ),
        request(
            "GET",
            "http://127.0.0.1:8080/incidents/abc%20def/timeline",
            "",
        ),
        request("GET", "http://127.0.0.1:8080/incidents/./x/../timeline", ""),
        request(
            "POST",
            "http://127.0.0.1:8080/incidents/0011/transitions",
            r#"{"to":"ACKNOWLEDGED","reason":"on  it","expected_version":1}"#,
        ),
    ];
    for case in cases {
        let mut case = case;
        case.headers_mut()
            .insert("x-custom", "  spaced    value  ".parse().unwrap());
        let uri = case.uri().to_string();
        let caller = check(signed(case, &Signing::default()), signing_time())
            .unwrap_or_else(|error| panic!("{uri}: {error}"));
        assert_eq!(caller.principal.as_str(), "local:alice");
        assert!(caller.roles.contains(&Role::Approver));
    }
    // A session token and an explicit payload hash header are signed headers like others.
    let with_token = Signing {
        token: Some("FwoGZXIvYXdzEXAMPLETOKEN"),
        checksum_header: true,
        ..Signing::default()
    };
    let request = signed(
        request("POST", "http://127.0.0.1:8080/signals", "{}"),
        &with_token,
    );
    assert!(request.headers().contains_key("x-amz-security-token"));
    assert!(request.headers().contains_key("x-amz-content-sha256"));
    assert!(check(request, signing_time()).is_ok());
}

type Tamper = dyn Fn(&mut Request<Vec<u8>>);

#[test]
fn anything_changed_after_signing_is_a_mismatch() {
    let base = || {
        signed(
            request(
                "POST",
                "http://127.0.0.1:8080/incidents/0011/transitions?x=1",
                r#"{"to":"ACKNOWLEDGED"}"#,
            ),
            &Signing::default(),
        )
    };
    let tamper: Vec<(&str, Box<Tamper>)> = vec![
        (
            "body",
            Box::new(|r| *r.body_mut() = br#"{"to":"CLOSED"}"#.to_vec()),
        ),
        (
            "method",
            Box::new(|r| *r.method_mut() = "PUT".parse().unwrap()),
        ),
        (
            "path",
            Box::new(|r| {
                *r.uri_mut() = "http://127.0.0.1:8080/incidents/0012/transitions?x=1"
                    .parse()
                    .unwrap()
            }),
        ),
        (
            "query",
            Box::new(|r| {
                *r.uri_mut() = "http://127.0.0.1:8080/incidents/0011/transitions?x=2"
                    .parse()
                    .unwrap()
            }),
        ),
        (
            "host",
            Box::new(|r| {
                r.headers_mut()
                    .insert("host", "evil.example:8080".parse().unwrap());
            }),
        ),
        (
            "signed header",
            Box::new(|r| {
                r.headers_mut()
                    .insert("content-type", "text/plain".parse().unwrap());
            }),
        ),
        (
            "signature",
            Box::new(|r| {
                let text = r.headers()["authorization"].to_str().unwrap().to_owned();
                let (head, signature) = text.split_at(text.len() - 64);
                let flipped: String = signature
                    .chars()
                    .enumerate()
                    .map(|(index, c)| {
                        if index == 0 {
                            if c == '0' {
                                '1'
                            } else {
                                '0'
                            }
                        } else {
                            c
                        }
                    })
                    .collect();
                r.headers_mut()
                    .insert("authorization", format!("{head}{flipped}").parse().unwrap());
            }),
        ),
    ];
    for (what, change) in tamper {
        let mut request = base();
        change(&mut request);
        match check(request, signing_time()) {
            Err(AuthError::SignatureMismatch(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    // An unsigned header added later is fine: only what was signed counts.
    let mut request = base();
    request
        .headers_mut()
        .insert("user-agent", "curl/8".parse().unwrap());
    assert!(check(request, signing_time()).is_ok());
}

#[test]
fn a_declared_payload_hash_must_be_the_bodys() {
    let signing = Signing {
        checksum_header: true,
        ..Signing::default()
    };
    let mut request = signed(
        request("POST", "http://127.0.0.1:8080/signals", r#"{"a":1}"#),
        &signing,
    );
    *request.body_mut() = br#"{"a":2}"#.to_vec();
    assert!(matches!(
        check(request, signing_time()),
        Err(AuthError::SignatureMismatch(reason)) if reason.contains("x-amz-content-sha256")
    ));
}

#[test]
fn a_forged_secret_an_unknown_key_and_a_stale_time_are_refused() {
    let forged = Signing {
        secret: "not-the-secret-at-all-but-long",
        ..Signing::default()
    };
    let request_of = |signing: &Signing<'_>| {
        signed(
            request("GET", "http://127.0.0.1:8080/incidents", ""),
            signing,
        )
    };
    assert!(matches!(
        check(request_of(&forged), signing_time()),
        Err(AuthError::SignatureMismatch(_))
    ));
    let unknown = Signing {
        key: "AKOPXLOCALMALLORY01",
        ..Signing::default()
    };
    assert!(matches!(
        check(request_of(&unknown), signing_time()),
        Err(AuthError::UnknownAccessKey(_))
    ));
    let skew = Duration::from_millis(CLOCK_SKEW_MAX_MS as u64);
    for (signed_at, now) in [
        (
            signing_time(),
            signing_time() + skew + Duration::from_secs(1),
        ),
        (
            signing_time() + skew + Duration::from_secs(1),
            signing_time(),
        ),
    ] {
        let at = Signing {
            time: signed_at,
            ..Signing::default()
        };
        assert!(matches!(
            check(request_of(&at), now),
            Err(AuthError::SignatureExpired(_))
        ));
    }
    // Exactly at the limit is still fine.
    assert!(check(request_of(&Signing::default()), signing_time() + skew).is_ok());
}

#[test]
fn unsigned_and_malformed_requests_are_unauthenticated() {
    let unsigned = request("GET", "http://127.0.0.1:8080/incidents", "");
    assert!(matches!(
        check(unsigned, signing_time()),
        Err(AuthError::Unauthenticated(_))
    ));
    let presigned = request(
        "GET",
        "http://127.0.0.1:8080/incidents?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc",
        "",
    );
    assert!(matches!(
        check(presigned, signing_time()),
        Err(AuthError::Unauthenticated(reason)) if reason.contains("presigned")
    ));
    let mut no_date = signed(
        request("GET", "http://127.0.0.1:8080/incidents", ""),
        &Signing::default(),
    );
    no_date.headers_mut().remove("x-amz-date");
    assert!(matches!(
        check(no_date, signing_time()),
        Err(AuthError::Unauthenticated(_))
    ));
    let mut basic = request("GET", "http://127.0.0.1:8080/incidents", "");
    basic
        .headers_mut()
        .insert("authorization", "Basic YWxpY2U6c2VjcmV0".parse().unwrap());
    assert!(matches!(
        check(basic, signing_time()),
        Err(AuthError::Unauthenticated(_))
    ));
}

#[tokio::test]
async fn the_router_behind_sigv4_knows_the_signer_and_its_roles() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        opx_store_sqlite::SqliteStore::open(dir.path().join("opx.db"), Default::default()).unwrap();
    let clock = Arc::new(support::FixedClock(epoch_ms(signing_time())));
    let state = ApiState::new(
        Arc::new(store),
        Arc::new(support::config()),
        clock.clone(),
        Arc::new(SigV4Authenticator::new(credentials(), clock)),
        AfterIngest::Drain,
    );
    let router = opx_api::router(state);
    let to_axum = |request: Request<Vec<u8>>| request.map(Body::from);
    let read = to_axum(signed(
        request("GET", "http://127.0.0.1:8080/incidents", ""),
        &Signing::default(),
    ));
    let answer = support::send(&router, read).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    support::openapi().check("GET", "/incidents", &answer);
    // alice is no ingester.
    let ingest = to_axum(signed(
        request(
            "POST",
            "http://127.0.0.1:8080/signals",
            support::ALERTMANAGER_STORM,
        ),
        &Signing::default(),
    ));
    let answer = support::send(&router, ingest).await;
    assert_eq!((answer.status, answer.code()), (403, "forbidden"));
    let unsigned = to_axum(request("GET", "http://127.0.0.1:8080/incidents", ""));
    let answer = support::send(&router, unsigned).await;
    assert_eq!((answer.status, answer.code()), (401, "unauthenticated"));
}

/// Requests signed by botocore (the signer of the AWS CLI and boto3) through
/// scripts/botocore-sign.py, with the venv's Python that `scripts/with-moto` names.
fn botocore_signed(requests: &[Request<Vec<u8>>]) -> Vec<Request<Vec<u8>>> {
    let python = match std::env::var("OPX_BOTOCORE_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => panic!(
            "OPX_BOTOCORE_PYTHON is not set: run this test through scripts/with-moto, which \
             installs botocore with moto: `scripts/with-moto cargo test -p opx-api --test sigv4`"
        ),
    };
    let specs: Vec<serde_json::Value> = requests
        .iter()
        .map(|request| {
            let headers: serde_json::Map<String, serde_json::Value> = request
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap().into()))
                .collect();
            serde_json::json!({
                "method": request.method().as_str(),
                "url": request.uri().to_string(),
                "body": String::from_utf8(request.body().clone()).unwrap(),
                "headers": headers,
            })
        })
        .collect();
    let job = serde_json::json!({
        "access_key_id": KEY,
        "secret_access_key": SECRET,
        "region": "eu-west-1",
        "requests": specs,
    });
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/botocore-sign.py");
    let mut child = std::process::Command::new(&python)
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{python} {}: {error}", script.display()));
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), job.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "botocore-sign.py failed");
    let signed: Vec<BTreeMap<String, String>> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(signed.len(), requests.len());
    requests
        .iter()
        .zip(signed)
        .map(|(original, headers)| {
            let mut request = Request::builder()
                .method(original.method())
                .uri(original.uri())
                .body(original.body().clone())
                .unwrap();
            for (name, value) in headers {
                request.headers_mut().append(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            request
        })
        .collect()
}

#[test]
fn what_botocore_signs_verifies_and_a_change_after_signing_does_not() {
    let urls = [
        "http://127.0.0.1:8080/incidents",
        "http://127.0.0.1:8080/incidents?service=a+b",
        "http://127.0.0.1:8080/incidents?state=OPEN&service=pay%20ments&limit=5",
        "http://127.0.0.1:8080/incidents?service=pay%2Bments&b=2&a=1&a=0&empty=",
        "http://127.0.0.1:8080/incidents?service=a+b+c&state=OPEN",
    ];
    let mut requests: Vec<Request<Vec<u8>>> =
        urls.iter().map(|url| request("GET", url, "")).collect();
    requests.push(request(
        "POST",
        "http://127.0.0.1:8080/incidents/incident:ab12/transition",
        r#"{"to":"ACKNOWLEDGED","expected_version":2725.0,"reason":"on it"}"#,
    ));
    for signed in botocore_signed(&requests) {
        let uri = signed.uri().to_string();
        let caller = check(signed, SystemTime::now())
            .unwrap_or_else(|error| panic!("botocore-signed {uri} was refused: {error:?}"));
        assert_eq!(caller.principal.as_str(), "local:alice");
    }
    // The query as written is signed byte for byte: another value, a `+` read as `%2B`, or
    // a pair added after signing is a mismatch, as it is for the standard form.
    let signed = botocore_signed(&[request(
        "GET",
        "http://127.0.0.1:8080/incidents?service=a+b",
        "",
    )])
    .remove(0);
    for tampered in [
        "/incidents?service=a+c",
        "/incidents?service=a%2Bb",
        "/incidents?service=a+b&state=OPEN",
        "/incidents?service=ab",
    ] {
        let mut changed = Request::builder()
            .method("GET")
            .uri(tampered)
            .body(Vec::new())
            .unwrap();
        *changed.headers_mut() = signed.headers().clone();
        assert!(
            matches!(
                check(changed, SystemTime::now()),
                Err(AuthError::SignatureMismatch(_))
            ),
            "{tampered} verified under a signature made for ?service=a+b"
        );
    }
}
