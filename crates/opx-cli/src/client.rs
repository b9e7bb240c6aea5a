//! `opx --endpoint URL incidents|show|transition|note|assign|severity`: the same commands
//! against the incident API — `opx serve` on loopback or a deployed API Gateway stage —
//! with requests signed by SigV4 (service `execute-api`) from the standard AWS credential
//! chain (environment, profile, SSO cache, container or instance role). The output is the
//! local commands' output, byte for byte in `--json`.
//!
//! The HTTP client is hyper-util's with rustls (hyper-rustls), the stack the AWS SDK in
//! this binary already links, so the client adds no second HTTP or TLS implementation.
//! Every request has a timeout; a transport failure or a 503 is retried a few times, a
//! human action with the same `Idempotency-Key`, so a retry can never act twice.

use crate::backend::IncidentBackend;
use crate::query::{self, DecisionView, IncidentRow, ShowView, TimelineEntry};
use crate::{Refused, UsageError};
use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use axum::body::Body;
use http::{HeaderValue, Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opx_api::human::{HumanAction, IDEMPOTENCY_KEY_HEADER};
use opx_api::problem::Problem;
use opx_api::sigv4::SIGNING_SERVICE;
use opx_api::views::{self, IncidentDetail, IncidentPage, IncidentSummary, TimelinePage};
use opx_domain::hash::FieldHasher;
use opx_domain::incident::IncidentState;
use serde::de::DeserializeOwned;
use std::time::{Duration, SystemTime};

/// How long one request may take, in milliseconds.
pub const CLIENT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// How many times a request is sent when the transport fails or the server answers 503.
pub const CLIENT_ATTEMPTS_MAX: u32 = 3;
/// Back-off before retry `n` is `n` times this, in milliseconds.
pub const CLIENT_RETRY_BACKOFF_MS: u64 = 300;
/// Largest response body read, in bytes.
pub const CLIENT_RESPONSE_LEN_MAX: usize = 32 * 1024 * 1024;
/// Most pages followed when listing everything.
pub const CLIENT_PAGES_MAX: usize = 1000;
/// The page size asked for when listing everything.
pub const CLIENT_PAGE_SIZE: usize = 1000;

/// The two transports: plain HTTP (loopback `opx serve`) and HTTPS (API Gateway). Plain
/// HTTP needs no trusted roots, so it works on a machine without a CA bundle.
enum Transport {
    Plain(Client<HttpConnector, Body>),
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>),
}

/// A signing client of one endpoint.
pub struct ApiClient {
    scheme: String,
    authority: String,
    /// The endpoint's path (an API Gateway stage, e.g. `/prod`), without a trailing slash.
    base_path: String,
    /// The `Host` header to send and sign: the authority without a default port.
    host: String,
    region: String,
    credentials: aws_credential_types::provider::SharedCredentialsProvider,
    transport: Transport,
}

/// A failed request.
#[derive(Debug)]
enum CallError {
    /// The server refused, with a problem document.
    Problem(StatusCode, Problem),
    /// Anything else: transport, timeout, an answer that is not what the API sends.
    Other(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Problem(status, problem) => write!(
                f,
                "refused ({} {}): {}",
                status.as_u16(),
                problem.code,
                problem.detail
            ),
            CallError::Other(message) => f.write_str(message),
        }
    }
}

impl From<CallError> for anyhow::Error {
    fn from(error: CallError) -> anyhow::Error {
        Refused(error.to_string()).into()
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The region for signing: the AWS configuration's, else the one in an API Gateway host
/// name (`ID.execute-api.REGION.amazonaws.com`), else `us-east-1` for an endpoint on this
/// machine (`opx serve` accepts any region).
fn signing_region(configured: Option<&str>, host: &str) -> Option<String> {
    if let Some(region) = configured {
        return Some(region.to_owned());
    }
    let mut labels = host.split('.');
    while let Some(label) = labels.next() {
        if label == "execute-api" {
            return labels.next().map(str::to_owned);
        }
    }
    let loopback = host == "localhost" || host.starts_with("127.") || host.starts_with("[::1]");
    loopback.then(|| "us-east-1".to_owned())
}

impl ApiClient {
    /// A client of `endpoint` (`http://127.0.0.1:8080`, `https://ID.execute-api.REGION.amazonaws.com/STAGE`),
    /// with credentials and region from the standard AWS configuration chain.
    pub async fn connect(endpoint: &str) -> anyhow::Result<ApiClient> {
        let uri: http::Uri = endpoint.parse().map_err(|error| {
            UsageError(format!(
                "--endpoint {endpoint:?} is not a URL ({error}); e.g. http://127.0.0.1:8080 or https://ID.execute-api.REGION.amazonaws.com/prod"
            ))
        })?;
        let scheme = uri.scheme_str().unwrap_or_default().to_owned();
        if scheme != "http" && scheme != "https" {
            return Err(UsageError(format!(
                "--endpoint {endpoint:?} must start with http:// or https://"
            ))
            .into());
        }
        if uri.query().is_some() {
            return Err(
                UsageError(format!("--endpoint {endpoint:?} must not have a query")).into(),
            );
        }
        let authority = uri
            .authority()
            .ok_or_else(|| UsageError(format!("--endpoint {endpoint:?} names no host")))?;
        let default_port = matches!(
            (scheme.as_str(), authority.port_u16()),
            ("http", Some(80)) | ("https", Some(443))
        );
        let host = if default_port {
            authority.host().to_owned()
        } else {
            authority.as_str().to_owned()
        };
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let credentials = config.credentials_provider().ok_or_else(|| {
            UsageError(
                "no AWS credentials are configured: set AWS_PROFILE or AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (for opx serve: a key of its credentials file)"
                    .to_owned(),
            )
        })?;
        let region = signing_region(config.region().map(|region| region.as_ref()), authority.host())
            .ok_or_else(|| {
                UsageError(format!(
                    "no AWS region is configured and {host} does not name one; set AWS_REGION to the API's region"
                ))
            })?;
        let transport = if scheme == "https" {
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .map_err(|error| {
                    anyhow::anyhow!("cannot load the system's trusted root certificates: {error}")
                })?
                .https_only()
                .enable_http1()
                .build();
            Transport::Tls(Client::builder(TokioExecutor::new()).build(connector))
        } else {
            Transport::Plain(Client::builder(TokioExecutor::new()).build_http())
        };
        Ok(ApiClient {
            base_path: uri.path().trim_end_matches('/').to_owned(),
            authority: authority.as_str().to_owned(),
            scheme,
            host,
            region,
            credentials,
            transport,
        })
    }

    /// Signs and sends one request; returns the status and body of a 2xx answer.
    async fn send_once(
        &self,
        method: &Method,
        path_and_query: &str,
        idempotency_key: Option<&str>,
        body: &[u8],
    ) -> Result<(StatusCode, Vec<u8>), (bool, CallError)> {
        let uri = format!(
            "{}://{}{}{path_and_query}",
            self.scheme, self.authority, self.base_path
        );
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|error| {
                (
                    false,
                    CallError::Other(format!("cannot load AWS credentials: {error}")),
                )
            })?;
        let mut request = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header(http::header::HOST, &self.host)
            .header(http::header::ACCEPT, "application/json");
        if !body.is_empty() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        let mut request = request.body(Body::empty()).map_err(|error| {
            (
                false,
                CallError::Other(format!("cannot build the request to {uri}: {error}")),
            )
        })?;
        // Sign exactly what is sent: method, URI, the headers set so far, the body.
        let identity = credentials.into();
        // The signing time is the wall clock by definition: the server checks it against its own.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SIGNING_SERVICE)
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .map_err(|error| (false, CallError::Other(format!("cannot sign: {error}"))))?
            .into();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let signable = SignableRequest::new(
            method.as_str(),
            uri.as_str(),
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|error| (false, CallError::Other(format!("cannot sign: {error}"))))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|error| (false, CallError::Other(format!("cannot sign: {error}"))))?
            .into_parts();
        instructions.apply_to_request_http1x(&mut request);
        request.headers_mut().insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("opx/", env!("CARGO_PKG_VERSION"))),
        );
        *request.body_mut() = Body::from(body.to_vec());
        let response = tokio::time::timeout(
            Duration::from_millis(CLIENT_REQUEST_TIMEOUT_MS),
            match &self.transport {
                Transport::Plain(client) => client.request(request),
                Transport::Tls(client) => client.request(request),
            },
        )
        .await
        .map_err(|_| {
            (
                true,
                CallError::Other(format!(
                    "{method} {uri}: no answer within {} s",
                    CLIENT_REQUEST_TIMEOUT_MS / 1000
                )),
            )
        })?
        .map_err(|error| (true, CallError::Other(format!("{method} {uri}: {error}"))))?;
        let status = response.status();
        let bytes = axum::body::to_bytes(Body::new(response.into_body()), CLIENT_RESPONSE_LEN_MAX)
            .await
            .map_err(|error| {
                (
                    true,
                    CallError::Other(format!("{method} {uri}: reading the answer: {error}")),
                )
            })?;
        if status.is_success() {
            return Ok((status, bytes.to_vec()));
        }
        let retryable = status == StatusCode::SERVICE_UNAVAILABLE;
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(problem) => Err((retryable, CallError::Problem(status, problem))),
            Err(_) => Err((
                retryable,
                CallError::Other(format!(
                    "{method} {uri}: {status} {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
                )),
            )),
        }
    }

    /// Sends with retries (transport failures and 503 only) and decodes a 2xx answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        idempotency_key: Option<&str>,
        body: &[u8],
    ) -> Result<T, CallError> {
        let mut attempt = 1;
        loop {
            match self
                .send_once(&method, path_and_query, idempotency_key, body)
                .await
            {
                Ok((_, bytes)) => {
                    return serde_json::from_slice(&bytes).map_err(|error| {
                        CallError::Other(format!(
                            "{method} {path_and_query}: the answer is not what this opx reads ({error}); \
                             is the endpoint an opx API of the same version?"
                        ))
                    })
                }
                Err((true, error)) if attempt < CLIENT_ATTEMPTS_MAX => {
                    tracing::warn!(%error, attempt, "request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(
                        CLIENT_RETRY_BACKOFF_MS * u64::from(attempt),
                    ))
                    .await;
                    attempt += 1;
                }
                Err((_, error)) => return Err(error),
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, CallError> {
        self.call(Method::GET, path_and_query, None, &[]).await
    }

    /// Every incident matching the filters, following the cursors.
    async fn all_incidents(
        &self,
        state: Option<IncidentState>,
        service: Option<&str>,
    ) -> Result<Vec<IncidentSummary>, CallError> {
        let mut filters = format!("limit={CLIENT_PAGE_SIZE}");
        if let Some(state) = state {
            filters.push_str(&format!("&state={}", state.as_str()));
        }
        if let Some(service) = service {
            filters.push_str(&format!("&service={}", encode_query_value(service)));
        }
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..CLIENT_PAGES_MAX {
            let query = match &cursor {
                Some(cursor) => format!("{filters}&cursor={}", encode_query_value(cursor)),
                None => filters.clone(),
            };
            let page: IncidentPage = self.get(&format!("/incidents?{query}")).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
        Err(CallError::Other(format!(
            "more than {CLIENT_PAGES_MAX} pages of incidents; narrow the listing with --state or --service"
        )))
    }

    /// A full id, or the one incident whose id starts with a prefix of at least
    /// [`query::ID_PREFIX_LEN_MIN`] hex characters (as the local commands resolve it).
    async fn resolve_id(&self, text: &str) -> anyhow::Result<String> {
        let text = text.trim().to_ascii_lowercase();
        if views::parse_incident_id(&text).is_ok() {
            return Ok(text);
        }
        if text.len() < query::ID_PREFIX_LEN_MIN
            || !text.bytes().all(|byte| byte.is_ascii_hexdigit())
        {
            return Err(UsageError(format!(
                "{text:?} is not an incident id: give the 64 hex characters or a unique prefix of at \
                 least {} (see `opx incidents`)",
                query::ID_PREFIX_LEN_MIN
            ))
            .into());
        }
        let matches: Vec<String> = self
            .all_incidents(None, None)
            .await?
            .into_iter()
            .map(|row| row.id)
            .filter(|id| id.starts_with(&text))
            .collect();
        match matches.as_slice() {
            [] => Err(Refused(format!(
                "no incident id starts with {text}; see `opx incidents`"
            ))
            .into()),
            [one] => Ok(one.clone()),
            many => Err(Refused(format!(
                "{} incidents start with {text}; give more characters",
                many.len()
            ))
            .into()),
        }
    }
}

impl IncidentBackend for ApiClient {
    type Actor = Option<String>;

    fn actor(
        as_name: Option<String>,
        idempotency_key: Option<String>,
    ) -> anyhow::Result<Option<String>> {
        match as_name {
            Some(name) => Err(UsageError(format!(
                "--as {name:?} goes with a local store; with --endpoint you act as the principal of your AWS credentials"
            ))
            .into()),
            None => Ok(idempotency_key),
        }
    }

    async fn incidents(
        &self,
        state: Option<IncidentState>,
        service: Option<&str>,
    ) -> anyhow::Result<Vec<IncidentRow>> {
        let mut rows = self.all_incidents(state, service).await?;
        // The local command's order: oldest first, the id breaking ties.
        rows.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
        Ok(rows)
    }

    async fn show(&self, id: &str) -> anyhow::Result<ShowView> {
        let id = self.resolve_id(id).await?;
        let detail: IncidentDetail = self.get(&format!("/incidents/{id}")).await?;
        let evidence: views::EvidenceView = self.get(&format!("/incidents/{id}/evidence")).await?;
        let mut timeline = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..CLIENT_PAGES_MAX {
            let query = match &cursor {
                Some(cursor) => format!(
                    "limit={CLIENT_PAGE_SIZE}&cursor={}",
                    encode_query_value(cursor)
                ),
                None => format!("limit={CLIENT_PAGE_SIZE}"),
            };
            let page: TimelinePage = self
                .get(&format!("/incidents/{id}/timeline?{query}"))
                .await?;
            timeline.extend(page.entries.into_iter().map(|entry| TimelineEntry {
                sequence: entry.sequence,
                event_type: entry.event_type,
                hash: entry.hash,
                event: entry.event,
                summary: entry.summary,
            }));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(ShowView {
            summary: detail.summary,
            incident: detail.incident,
            decisions: evidence
                .decisions
                .into_iter()
                .map(|decision| DecisionView {
                    decision_hash: decision.decision_hash,
                    stream_id: decision.stream_id,
                    sequence: decision.sequence,
                    decision: decision.decision,
                    assessment: decision.assessment,
                })
                .collect(),
            timeline,
        })
    }

    async fn current(&self, id: &str) -> anyhow::Result<IncidentRow> {
        let id = self.resolve_id(id).await?;
        let detail: IncidentDetail = self.get(&format!("/incidents/{id}")).await?;
        Ok(detail.summary)
    }

    async fn execute(
        &self,
        incident_id: &str,
        action: &HumanAction,
        idempotency_key: &Option<String>,
    ) -> anyhow::Result<IncidentRow> {
        let body = action.canonical_body();
        let key = idempotency_key
            .clone()
            .unwrap_or_else(|| fresh_key(action.route(), incident_id, &body));
        let path = action.route().replace("{id}", incident_id);
        match self.call(Method::POST, &path, Some(&key), &body).await {
            Ok(after) => Ok(after),
            Err(CallError::Problem(status, problem)) if problem.code == "version_conflict" => {
                Err(Refused(format!(
                    "conflict: incident {incident_id} is at lifecycle version {}, not the one given: someone changed it \
                     since you looked; run `opx show {}` and retry if it still makes sense ({} {})",
                    problem
                        .current_version
                        .map_or_else(|| "?".to_owned(), |version| version.to_string()),
                    query::short(incident_id),
                    status.as_u16(),
                    problem.code
                ))
                .into())
            }
            Err(error) => Err(error.into()),
        }
    }

    fn close(self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A fresh key for one invocation: the action and the moment it was asked for. The client
/// reuses it for its own retries; a new invocation is a new action.
fn fresh_key(route: &str, id: &str, body: &[u8]) -> String {
    // The key is unique per invocation by design: it is the one value here that may come
    // from the clock and the process id.
    #[allow(clippy::disallowed_methods)]
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or_default();
    let digest = FieldHasher::new("opx.cli-idempotency-key.v1")
        .str(route)
        .str(id)
        .bytes(body)
        .str(&nanos.to_string())
        .u64(u64::from(std::process::id()))
        .finish()
        .to_hex();
    format!("opx-cli-{}", &digest[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_region_comes_from_configuration_then_the_host() {
        assert_eq!(
            signing_region(Some("eu-west-1"), "127.0.0.1").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            signing_region(None, "abc123.execute-api.ap-southeast-2.amazonaws.com").as_deref(),
            Some("ap-southeast-2")
        );
        assert_eq!(
            signing_region(None, "127.0.0.1").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(signing_region(None, "api.example.com"), None);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query_value("pay ments/β"), "pay%20ments%2F%CE%B2");
        assert_eq!(encode_query_value("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn fresh_keys_are_valid_api_keys() {
        let key = fresh_key("transitions", "ab", b"{}");
        assert!(opx_api::human::check_client_key(Some(&key)).is_ok());
    }
}
