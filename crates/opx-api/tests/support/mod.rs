//! Shared helpers of the API tests: a router over a fresh SQLite store, a test
//! authenticator, a store that can be made to fail, recorded payloads, and a validator that
//! checks every answer against `api/openapi.yaml`.

// Helpers shared by several test files: each uses a part, and a failing helper panics.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_methods)]

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Request};
use axum::Router;
use opx_api::auth::{AuthError, Authenticator, Caller, Role};
use opx_api::signals::AfterIngest;
use opx_api::ApiState;
use opx_app::pipeline::PipelineConfig;
use opx_app::ports::{
    Clock, Commit, IdempotencyRecord, Page, Projection, RejectRecord, Store, StoreError, StoreRead,
    WorkItem,
};
use opx_domain::event::{EventEnvelope, EventPointer};
use opx_domain::incident::Principal;
use opx_domain::rules::RuleSet;
use opx_domain::time::EpochMs;
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

/// The header the test authenticator reads: `PRINCIPAL=ROLE,ROLE`.
pub const CALLER_HEADER: &str = "x-test-caller";
/// A reader.
pub const READER: &str = "local:rita=reader";
/// A responder.
pub const RESPONDER: &str = "local:rob=responder";
/// Another responder.
pub const RESPONDER_2: &str = "local:ruth=responder";
/// An approver.
pub const APPROVER: &str = "local:alice=approver";
/// An ingester.
pub const INGESTER: &str = "arn:aws:sts::123456789012:assumed-role/Relay/alertmanager=ingester";
/// Authenticated, with no role.
pub const NOBODY: &str = "local:nina=";

/// The Alertmanager storm of the demo sample: two alerts on `payments` in one window.
pub const ALERTMANAGER_STORM: &str = include_str!("../fixtures/alertmanager_storm.json");

/// Authenticates by [`CALLER_HEADER`]; no header is a 401, as for an unsigned request.
pub struct HeaderAuthenticator;

impl Authenticator for HeaderAuthenticator {
    fn authenticate(&self, head: &Parts, _body: &[u8]) -> Result<Caller, AuthError> {
        let text = head
            .headers
            .get(CALLER_HEADER)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| AuthError::Unauthenticated("not signed".to_owned()))?;
        let (principal, roles) = text.split_once('=').unwrap();
        Ok(Caller {
            principal: Principal::parse(principal).unwrap(),
            roles: roles
                .split(',')
                .filter(|role| !role.is_empty())
                .map(|role| Role::parse(role).unwrap())
                .collect::<BTreeSet<_>>(),
        })
    }
}

/// A clock stuck at 2026-11-24T04:00:00Z.
pub struct FixedClock(pub EpochMs);

impl Default for FixedClock {
    fn default() -> Self {
        FixedClock(EpochMs::parse("2026-11-24T04:00:00Z").unwrap())
    }
}

impl Clock for FixedClock {
    fn now(&self) -> EpochMs {
        self.0
    }
}

/// A store whose every call fails as "unavailable" while `down` is set.
pub struct FlakyStore {
    pub inner: SqliteStore,
    pub down: AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable {
                message: "the test store is down".to_owned(),
                source: None,
            })
        } else {
            Ok(())
        }
    }
}

impl StoreRead for FlakyStore {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.check()?;
        self.inner
            .read_stream(stream_id, from_sequence, limit)
            .await
    }
    async fn stream_head(&self, stream_id: &str) -> Result<Option<EventEnvelope>, StoreError> {
        self.check()?;
        self.inner.stream_head(stream_id).await
    }
    async fn list_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        self.check()?;
        self.inner.list_streams(cursor, limit).await
    }
    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.check()?;
        self.inner.idempotency(key).await
    }
    async fn list_idempotency(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<IdempotencyRecord>, StoreError> {
        self.check()?;
        self.inner.list_idempotency(cursor, limit).await
    }
    async fn projection(&self, kind: &str, key: &str) -> Result<Option<Projection>, StoreError> {
        self.check()?;
        self.inner.projection(kind, key).await
    }
    async fn list_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Projection>, StoreError> {
        self.check()?;
        self.inner.list_projections(kind, cursor, limit).await
    }
    async fn pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<WorkItem>, StoreError> {
        self.check()?;
        self.inner.pending_work(cursor, limit).await
    }
    async fn list_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RejectRecord>, StoreError> {
        self.check()?;
        self.inner.list_rejects(cursor, limit).await
    }
}

impl Store for FlakyStore {
    async fn commit(&self, commit: Commit) -> Result<Vec<EventPointer>, StoreError> {
        self.check()?;
        self.inner.commit(commit).await
    }
    async fn record_reject(&self, reject: RejectRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.record_reject(reject).await
    }
}

/// A router over a fresh store (in a temporary directory kept alive with it).
pub struct TestApi {
    pub router: Router,
    pub store: Arc<FlakyStore>,
    _dir: tempfile::TempDir,
}

pub fn config() -> PipelineConfig {
    PipelineConfig::with_rule_files(RuleSet::default_rule_files()).unwrap()
}

impl TestApi {
    /// The embedded setup: `POST /signals` drains, like `opx serve`.
    pub fn new() -> TestApi {
        TestApi::with(AfterIngest::Drain)
    }

    pub fn with(after: AfterIngest) -> TestApi {
        let dir = tempfile::tempdir().unwrap();
        let inner = SqliteStore::open(dir.path().join("opx.db"), SqliteOptions::default()).unwrap();
        let store = Arc::new(FlakyStore {
            inner,
            down: AtomicBool::new(false),
        });
        let state = ApiState::new(
            Arc::clone(&store),
            Arc::new(config()),
            Arc::new(FixedClock::default()),
            Arc::new(HeaderAuthenticator),
            after,
        );
        TestApi {
            router: opx_api::router(state),
            store,
            _dir: dir,
        }
    }

    /// Sends a request; `caller` is a [`CALLER_HEADER`] value or `None` (unsigned). Every
    /// answer is checked against the OpenAPI document for `route` (a path template).
    pub async fn send(
        &self,
        method: &str,
        uri: &str,
        route: Option<&str>,
        caller: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(caller) = caller {
            request = request.header(CALLER_HEADER, caller);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from(body.to_owned())).unwrap();
        let answer = send(&self.router, request).await;
        if let Some(route) = route {
            openapi().check(method, route, &answer);
        }
        answer
    }

    pub async fn get(&self, uri: &str, route: &str, caller: &str) -> Answer {
        self.send("GET", uri, Some(route), Some(caller), &[], "")
            .await
    }

    pub async fn post(
        &self,
        uri: &str,
        route: &str,
        caller: &str,
        key: &str,
        body: &str,
    ) -> Answer {
        self.send(
            "POST",
            uri,
            Some(route),
            Some(caller),
            &[
                ("idempotency-key", key),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    /// Ingests the Alertmanager storm and returns the incident it opened.
    pub async fn seed_incident(&self) -> String {
        let answer = self
            .send(
                "POST",
                "/signals",
                Some("/signals"),
                Some(INGESTER),
                &[],
                ALERTMANAGER_STORM,
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let opened = answer.body["processed"]["incidents_opened"]
            .as_array()
            .unwrap();
        assert_eq!(opened.len(), 1, "{}", answer.body);
        opened[0].as_str().unwrap().to_owned()
    }
}

/// A response, read.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }
}

pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Answer {
        status: status.as_u16(),
        headers,
        body,
        bytes,
    }
}

// ---------------------------------------------------------------------------------------
// The OpenAPI document, as a checker of answers.
// ---------------------------------------------------------------------------------------

pub const OPENAPI_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../api/openapi.yaml");

/// The parsed document.
pub struct OpenApi {
    pub document: Value,
}

pub fn openapi() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let text = std::fs::read_to_string(OPENAPI_PATH).unwrap();
        OpenApi {
            document: serde_saphyr::from_str(&text).unwrap(),
        }
    })
}

impl OpenApi {
    /// Follows `$ref`s (local ones only).
    pub fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            let pointer = reference.strip_prefix('#').unwrap();
            value = self
                .document
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
        }
        value
    }

    pub fn schema(&self, name: &str) -> &Value {
        &self.document["components"]["schemas"][name]
    }

    /// Checks that the document lists `status` for the route and that the answer's content
    /// type and body match what it says.
    pub fn check(&self, method: &str, route: &str, answer: &Answer) {
        let operation = &self.document["paths"][route][method.to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {route} is not in api/openapi.yaml"
        );
        let status = answer.status.to_string();
        let response = operation["responses"].get(&status).unwrap_or_else(|| {
            panic!(
                "{method} {route} answered {status}, which api/openapi.yaml does not list: {}",
                answer.body
            )
        });
        let response = self.resolve(response);
        let content = response["content"].as_object().unwrap();
        let (media_type, media) = content.iter().next().unwrap();
        assert_eq!(
            answer.content_type(),
            media_type,
            "{method} {route} {status}: content type"
        );
        let mut errors = Vec::new();
        self.validate(&media["schema"], &answer.body, "$", &mut errors);
        assert!(
            errors.is_empty(),
            "{method} {route} {status}: the body does not match api/openapi.yaml: {errors:?}\n{}",
            answer.body
        );
    }

    /// A small JSON-schema check: `$ref`, `type` (one or a list), `enum`, `required`,
    /// `properties`, `additionalProperties` (a schema or a boolean), `items`, `oneOf`.
    /// Stricter than JSON Schema in one way: an object schema with `properties` and no
    /// `additionalProperties` is closed. Patterns and bounds are not checked.
    pub fn validate(&self, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
            let matching = options
                .iter()
                .filter(|option| {
                    let mut option_errors = Vec::new();
                    self.validate(option, value, path, &mut option_errors);
                    option_errors.is_empty()
                })
                .count();
            if matching != 1 {
                errors.push(format!("{path}: matches {matching} of the oneOf options"));
            }
            return;
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let actual = match value {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
            if !ok {
                errors.push(format!("{path}: is {actual}, expected {types:?}"));
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                errors.push(format!("{path}: {value} is not one of {allowed:?}"));
            }
        }
        if let Value::Object(object) = value {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(name) {
                    errors.push(format!("{path}: required field {name} is missing"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, field) in object {
                let field_path = format!("{path}.{name}");
                match properties.and_then(|properties| properties.get(name)) {
                    Some(field_schema) => self.validate(field_schema, field, &field_path, errors),
                    // An object schema that lists its properties is closed unless it says
                    // otherwise: a field the document does not describe is drift.
                    None => match schema.get("additionalProperties") {
                        Some(extra @ Value::Object(_)) => {
                            self.validate(extra, field, &field_path, errors)
                        }
                        Some(Value::Bool(true)) => {}
                        Some(_) => errors.push(format!("{field_path}: not in the schema")),
                        None if properties.is_some() => {
                            errors.push(format!("{field_path}: not in the schema"))
                        }
                        None => {}
                    },
                }
            }
        }
        if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
            for (index, item) in items.iter().enumerate() {
                self.validate(item_schema, item, &format!("{path}[{index}]"), errors);
            }
        }
    }
}
