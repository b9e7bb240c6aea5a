//! `opx serve` as a running process on loopback, and `opx --endpoint` against it: requests
//! signed with `aws-sigv4` (the AWS SDK's signer) over plain TCP, a forged signature, an
//! unknown key, a stale timestamp, unsigned requests, retried and conflicting transitions,
//! the client's output equal to the local commands', and a server without credentials.

// Test helpers outside `#[test]` functions: panicking is how they fail; they read the
// clock to sign, and write the files the server reads.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

const ALICE_KEY: &str = "AKOPXLOCALALICE0001";
const ALICE_SECRET: &str = "alice-secret-0123456789-abcdefghij";
const RELAY_KEY: &str = "AKOPXLOCALRELAY0001";
const RELAY_SECRET: &str = "relay-secret-0123456789-abcdefghij";
const RITA_KEY: &str = "AKOPXLOCALRITA00001";
const RITA_SECRET: &str = "rita-secret-0123456789-abcdefghijk";

const STORM: &str = include_str!("../../opx-api/tests/fixtures/alertmanager_storm.json");

fn credentials_file(dir: &Path) -> PathBuf {
    let path = dir.join("credentials.json");
    let document = json!({
        "opx_credentials_version": 1,
        "keys": [
            {"access_key_id": ALICE_KEY, "secret_access_key": ALICE_SECRET, "principal": "local:alice", "roles": ["responder", "approver"]},
            {"access_key_id": RELAY_KEY, "secret_access_key": RELAY_SECRET, "principal": "local:alertmanager-relay", "roles": ["ingester"]},
            {"access_key_id": RITA_KEY, "secret_access_key": RITA_SECRET, "principal": "local:rita", "roles": ["reader"]},
        ]
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// A running `opx serve`, stopped when dropped.
struct Server {
    child: Child,
    address: String,
    store: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(credentials: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("opx.db");
        let log = dir.path().join("serve.log");
        let credentials = match credentials {
            Some(name) => dir.path().join(name),
            None => credentials_file(dir.path()),
        };
        let (child, address) = spawn_serve(&store, &credentials, &log);
        Server {
            child,
            address,
            store,
            log,
            _dir: dir,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> http::Request<Vec<u8>> {
        request_to(&self.address, method, path, headers, body)
    }
}

/// Starts `opx serve` on `store` (port 0) and reads the address it prints.
fn spawn_serve(store: &Path, credentials: &Path, log: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_opx"))
        .env_remove("OPX_STORE")
        .env_remove("OPX_ENDPOINT")
        .env_remove("OPX_CREDENTIALS")
        .env("OPX_LOG", "info")
        .arg("--store")
        .arg(format!("sqlite:{}", store.display()))
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--credentials")
        .arg(credentials)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    (child, address)
}

fn request_to(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Request<Vec<u8>> {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"))
        .header("host", address);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body.as_bytes().to_vec()).unwrap()
}

fn signed(
    mut request: http::Request<Vec<u8>>,
    key: &str,
    secret: &str,
    at: SystemTime,
) -> http::Request<Vec<u8>> {
    let identity = Credentials::new(key, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("execute-api")
        .time(at)
        .settings(SigningSettings::default())
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
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut request);
    request
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    bytes: Vec<u8>,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends one request over a fresh TCP connection (HTTP/1.1, `Connection: close`).
fn exchange(address: &str, request: &http::Request<Vec<u8>>) -> Reply {
    try_exchange(address, request).unwrap()
}

/// [`exchange`], or the I/O error of a server that went away.
fn try_exchange(address: &str, request: &http::Request<Vec<u8>>) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\n",
        request.method(),
        request.uri().path_and_query().unwrap()
    );
    for (name, value) in request.headers() {
        head.push_str(&format!("{}: {}\r\n", name, value.to_str().unwrap()));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        request.body().len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(request.body())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("the answer was cut short"))?;
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    if chunked {
        let mut decoded = Vec::new();
        let mut rest = body.as_slice();
        loop {
            let line_end = rest
                .windows(2)
                .position(|window| window == b"\r\n")
                .unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        body = decoded;
    }
    Ok(Reply {
        status,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        bytes: body,
    })
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn ingest_storm(server: &Server) -> String {
    let request = server.request(
        "POST",
        "/signals",
        &[("content-type", "application/json")],
        STORM,
    );
    let reply = exchange(
        &server.address,
        &signed(request, RELAY_KEY, RELAY_SECRET, now()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let opened = reply.body["processed"]["incidents_opened"]
        .as_array()
        .unwrap();
    assert_eq!(opened.len(), 1);
    opened[0].as_str().unwrap().to_owned()
}

#[test]
fn every_request_is_authenticated_by_its_signature() {
    let server = Server::start(None);
    let unsigned = exchange(
        &server.address,
        &server.request("GET", "/incidents", &[], ""),
    );
    assert_eq!(unsigned.status, 401);
    assert_eq!(unsigned.code(), "unauthenticated");
    assert_eq!(
        unsigned.header("content-type"),
        Some("application/problem+json")
    );

    let id = ingest_storm(&server);
    let read = signed(
        server.request("GET", "/incidents?state=OPEN", &[], ""),
        RITA_KEY,
        RITA_SECRET,
        now(),
    );
    let listed = exchange(&server.address, &read);
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["items"][0]["id"], id.as_str());

    // The right key with the wrong secret: a forged signature.
    let forged = signed(
        server.request("GET", "/incidents", &[], ""),
        RITA_KEY,
        "not-ritas-secret-but-long-enough",
        now(),
    );
    let reply = exchange(&server.address, &forged);
    assert_eq!((reply.status, reply.code()), (403, "signature_mismatch"));
    // A key the server does not know.
    let stranger = signed(
        server.request("GET", "/incidents", &[], ""),
        "AKOPXLOCALMALLORY01",
        RITA_SECRET,
        now(),
    );
    let reply = exchange(&server.address, &stranger);
    assert_eq!((reply.status, reply.code()), (403, "unknown_access_key"));
    // A signature from ten minutes ago (a captured request replayed later).
    let stale = signed(
        server.request("GET", "/incidents", &[], ""),
        RITA_KEY,
        RITA_SECRET,
        now() - Duration::from_secs(600),
    );
    let reply = exchange(&server.address, &stale);
    assert_eq!((reply.status, reply.code()), (401, "signature_expired"));
    // A signed request whose body is swapped in transit.
    let mut swapped = signed(
        server.request(
            "POST",
            "/signals",
            &[("content-type", "application/json")],
            STORM,
        ),
        RELAY_KEY,
        RELAY_SECRET,
        now(),
    );
    *swapped.body_mut() = b"{\"opx_signal_version\":1}".to_vec();
    let reply = exchange(&server.address, &swapped);
    assert_eq!((reply.status, reply.code()), (403, "signature_mismatch"));
    // A reader is authenticated but may not act.
    let path = format!("/incidents/{id}/transitions");
    let body = r#"{"to":"ACKNOWLEDGED","reason":"on it","expected_version":1}"#;
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "ack-1"),
    ];
    let reply = exchange(
        &server.address,
        &signed(
            server.request("POST", &path, &headers, body),
            RITA_KEY,
            RITA_SECRET,
            now(),
        ),
    );
    assert_eq!((reply.status, reply.code()), (403, "forbidden"));
}

#[test]
fn a_retried_transition_gets_the_same_answer_and_another_body_with_its_key_is_409() {
    let server = Server::start(None);
    let id = ingest_storm(&server);
    let path = format!("/incidents/{id}/transitions");
    let body = r#"{"to":"ACKNOWLEDGED","reason":"on it","expected_version":1}"#;
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "ack-1"),
    ];
    let first = exchange(
        &server.address,
        &signed(
            server.request("POST", &path, &headers, body),
            ALICE_KEY,
            ALICE_SECRET,
            now(),
        ),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["version"], 2);
    // The client did not see the answer and sends the same request again (newly signed).
    let retry = exchange(
        &server.address,
        &signed(
            server.request("POST", &path, &headers, body),
            ALICE_KEY,
            ALICE_SECRET,
            now(),
        ),
    );
    assert_eq!(retry.status, 200);
    assert_eq!(retry.bytes, first.bytes);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let other = r#"{"to":"MITIGATING","reason":"rolling back","expected_version":2}"#;
    let reused = exchange(
        &server.address,
        &signed(
            server.request("POST", &path, &headers, other),
            ALICE_KEY,
            ALICE_SECRET,
            now(),
        ),
    );
    assert_eq!(
        (reused.status, reused.code()),
        (409, "idempotency_key_reused")
    );
    // One transition happened.
    let incident = exchange(
        &server.address,
        &signed(
            server.request("GET", &format!("/incidents/{id}"), &[], ""),
            RITA_KEY,
            RITA_SECRET,
            now(),
        ),
    );
    assert_eq!(incident.body["summary"]["version"], 2);
    assert_eq!(
        incident.body["incident"]["last_transition"]["principal"],
        "local:alice"
    );
    // SIGTERM stops the server cleanly (exit 0, the store closed), and the store verifies.
    let mut server = server;
    let terminated = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = server.child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&server.log).unwrap()
    );
    let verified = opx(
        &[
            "--store",
            &format!("sqlite:{}", server.store.display()),
            "replay",
            "verify",
        ],
        "unused",
        "unused",
    );
    assert_eq!(verified.status.code(), Some(0), "{}", stdout(&verified));
}

fn opx(args: &[&str], key: &str, secret: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opx"))
        .env_remove("OPX_STORE")
        .env_remove("OPX_ENDPOINT")
        .env_remove("OPX_LOG")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/opx-test-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/opx-test-credentials",
        )
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_client_signs_from_the_aws_chain_and_prints_what_the_local_command_prints() {
    let server = Server::start(None);
    let id = ingest_storm(&server);
    let endpoint = server.endpoint();
    let store = format!("sqlite:{}", server.store.display());
    let remote = |args: &[&str]| {
        let mut full = vec!["--endpoint", endpoint.as_str()];
        full.extend_from_slice(args);
        opx(&full, ALICE_KEY, ALICE_SECRET)
    };
    let local = |args: &[&str]| {
        let mut full = vec!["--store", store.as_str()];
        full.extend_from_slice(args);
        opx(&full, "unused", "unused")
    };
    for args in [
        vec!["incidents", "--json"],
        vec!["incidents"],
        vec![
            "incidents",
            "--state",
            "open",
            "--service",
            "payments",
            "--json",
        ],
        vec!["show", &id[..12], "--json"],
        vec!["show", &id],
    ] {
        let over_api = remote(&args);
        assert_eq!(
            over_api.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&over_api)
        );
        let here = local(&args);
        assert_eq!(here.status.code(), Some(0), "{args:?}: {}", stderr(&here));
        assert_eq!(stdout(&over_api), stdout(&here), "{args:?}");
    }

    let acknowledged = remote(&[
        "transition",
        &id[..12],
        "--to",
        "acknowledged",
        "--reason",
        "on it",
        "--expected-version",
        "1",
        "--json",
    ]);
    assert_eq!(
        acknowledged.status.code(),
        Some(0),
        "{}",
        stderr(&acknowledged)
    );
    let row: Value = serde_json::from_str(&stdout(&acknowledged)).unwrap();
    assert_eq!(row["state"], "ACKNOWLEDGED");
    assert_eq!(row["version"], 2);
    // The same explicit key again is a retry of that action: the recorded answer.
    let keyed = [
        "note",
        &id,
        "looking at the payments dashboards",
        "--idempotency-key",
        "note-1",
        "--json",
    ];
    let first = remote(&keyed);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let again = remote(&keyed);
    assert_eq!(stdout(&again), stdout(&first));
    let show = local(&["show", &id, "--json"]);
    let view: Value = serde_json::from_str(&stdout(&show)).unwrap();
    let notes = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["type"] == "NoteAdded")
        .count();
    assert_eq!(notes, 1);
    assert_eq!(
        view["incident"]["last_transition"]["principal"],
        "local:alice"
    );

    // A stale version is refused (exit 1) and says so.
    let stale = remote(&[
        "transition",
        &id,
        "--to",
        "mitigating",
        "--reason",
        "x",
        "--expected-version",
        "1",
    ]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(stderr(&stale).contains("conflict"), "{}", stderr(&stale));
    // Usage errors (exit 2): a local principal over the API, a local-only command.
    let as_other = remote(&["note", &id, "x", "--as", "bob"]);
    assert_eq!(as_other.status.code(), Some(2), "{}", stderr(&as_other));
    let ingest = remote(&["ingest", "-"]);
    assert_eq!(ingest.status.code(), Some(2));
    // The wrong secret: refused by the server (exit 1), the code in the message.
    let forged = opx(
        &["--endpoint", &endpoint, "incidents"],
        ALICE_KEY,
        "wrong-secret-but-long-enough-1234",
    );
    assert_eq!(forged.status.code(), Some(1));
    assert!(
        stderr(&forged).contains("signature_mismatch"),
        "{}",
        stderr(&forged)
    );
}

#[test]
fn without_a_credentials_file_it_starts_and_refuses_everything_saying_why() {
    let server = Server::start(Some("missing-credentials.json"));
    for (key, secret) in [(ALICE_KEY, ALICE_SECRET), (RITA_KEY, RITA_SECRET)] {
        let request = signed(
            server.request("GET", "/incidents", &[], ""),
            key,
            secret,
            now(),
        );
        let reply = exchange(&server.address, &request);
        assert_eq!((reply.status, reply.code()), (401, "unauthenticated"));
        assert!(reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("no credentials file"));
    }
    let unsigned = exchange(
        &server.address,
        &server.request("POST", "/signals", &[], STORM),
    );
    assert_eq!(unsigned.status, 401);
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains("no credentials file at") && log.contains("missing-credentials.json"),
        "{log}"
    );
}

#[test]
fn an_invalid_credentials_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.json");
    std::fs::write(
        &path,
        r#"{"opx_credentials_version":1,"keys":[{"access_key_id":"short"}]}"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_opx"))
        .env_remove("OPX_STORE")
        .arg("--store")
        .arg(format!("sqlite:{}", dir.path().join("opx.db").display()))
        .args(["serve", "--listen", "127.0.0.1:0", "--credentials"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("credentials"),
        "{}",
        stderr(&output)
    );
}

/// Kills, as the reliability issue asks for at least fifty.
const SERVE_KILLS: u32 = 50;

#[test]
fn fifty_kills_of_serve_lose_no_acknowledged_signal() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials_file(dir.path());
    let store = dir.path().join("opx.db");
    let log = dir.path().join("serve.log");
    let mut acknowledged: Vec<String> = Vec::new();
    // A fixed linear congruential sequence: the instants vary, the test repeats.
    let mut state: u64 = 0x0b5e_55ed;
    for kill in 0..SERVE_KILLS {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay = Duration::from_millis(20 + (state >> 33) % 150);
        let (mut child, address) = spawn_serve(&store, &credentials, &log);
        let started = std::time::Instant::now();
        let mut sent = 0;
        while started.elapsed() < delay {
            // Two alarms per service and window: some storms promote, some do not.
            let body = json!({
                "opx_signal_version": 1,
                "alarm": format!("kill:svc{}-a{}", kill % 7, sent % 3),
                "state": "ALARM",
                "time": format!("2026-11-24T06:{:02}:{:02}.000Z", kill % 60, sent % 60),
                "environment": "prod",
                "service": format!("svc{}", kill % 7),
                "severity": "SEV2",
            })
            .to_string();
            let request = request_to(
                &address,
                "POST",
                "/signals",
                &[("content-type", "application/json")],
                &body,
            );
            match try_exchange(&address, &signed(request, RELAY_KEY, RELAY_SECRET, now())) {
                Ok(reply) if reply.status == 200 => {
                    for item in reply.body["items"].as_array().unwrap() {
                        acknowledged.push(item["signal_id"].as_str().unwrap().to_owned());
                    }
                }
                Ok(reply) => panic!("kill {kill}: {} {}", reply.status, reply.body),
                Err(_) => break,
            }
            sent += 1;
        }
        // SIGKILL on Unix, possibly in the middle of a request: no destructor, no checkpoint.
        let _ = child.kill();
        let _ = child.wait();
        let check = Command::new(env!("CARGO_BIN_EXE_opx"))
            .env_remove("OPX_STORE")
            .arg("--store")
            .arg(format!("sqlite:{}", store.display()))
            .args(["--json", "replay", "verify"])
            .output()
            .unwrap();
        assert_eq!(
            check.status.code(),
            Some(0),
            "kill {kill} after {delay:?}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
    assert!(
        acknowledged.len() > usize::try_from(SERVE_KILLS).unwrap(),
        "requests were answered between kills ({})",
        acknowledged.len()
    );
    eprintln!("figure: serve_kills = {SERVE_KILLS}");
    eprintln!(
        "figure: signals_acknowledged_across_serve_kills = {}",
        acknowledged.len()
    );
    // Every acknowledged signal is stored: its stream exists after all the kills.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        use opx_app::ports::StoreRead;
        let opened =
            opx_store_sqlite::SqliteStore::open(&store, opx_store_sqlite::SqliteOptions::default())
                .unwrap();
        for signal_id in &acknowledged {
            let head = opened
                .stream_head(&format!("signal:{signal_id}"))
                .await
                .unwrap();
            assert!(head.is_some(), "acknowledged signal {signal_id} was lost");
        }
        opened.close().unwrap();
    });
    // `opx resume` carries the work cut short through; nothing is left pending.
    let resume = Command::new(env!("CARGO_BIN_EXE_opx"))
        .env_remove("OPX_STORE")
        .arg("--store")
        .arg(format!("sqlite:{}", store.display()))
        .arg("resume")
        .output()
        .unwrap();
    assert_eq!(resume.status.code(), Some(0));
    let check = Command::new(env!("CARGO_BIN_EXE_opx"))
        .env_remove("OPX_STORE")
        .arg("--store")
        .arg(format!("sqlite:{}", store.display()))
        .args(["--json", "replay", "verify"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(check.status.code(), Some(0), "{report}");
    assert_eq!(report["report"]["pending"], json!([]), "{report}");
}
