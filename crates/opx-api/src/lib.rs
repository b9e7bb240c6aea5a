//! The incident API of opx: one HTTP router, served by the `incident-api` Lambda function
//! behind API Gateway REST (`AWS_IAM` authorization) and by `opx serve` on loopback (SigV4
//! verified against a local credentials file). The same requests get the same answers on
//! both; only the [`auth::Authenticator`] and what follows `POST /signals`
//! ([`signals::AfterIngest`]) differ.
//!
//! # Routes
//!
//! | method | path | needs | does |
//! |---|---|---|---|
//! | GET | `/incidents` | read | list (filters `state`, `service`, `environment`; `limit`, opaque `cursor`) |
//! | GET | `/incidents/{id}` | read | one incident, with the transitions its state allows |
//! | GET | `/incidents/{id}/timeline` | read | its events, paged |
//! | GET | `/incidents/{id}/evidence` | read | its evidence, recoveries and promotion decisions |
//! | POST | `/incidents/{id}/transitions` | respond (close: approver) | `{to, reason, expected_version, close_as?, resolution_summary?}` + `Idempotency-Key` |
//! | POST | `/incidents/{id}/notes` | respond | `{text}` + `Idempotency-Key` |
//! | POST | `/incidents/{id}/assignee` | respond | `{assignee}` + `Idempotency-Key` |
//! | POST | `/incidents/{id}/severity` | respond | `{severity, reason}` + `Idempotency-Key` |
//! | GET | `/incidents/{id}/replay` | read | its stream verified (chain, fold, projection, decisions) |
//! | POST | `/signals` | ingest | native opx signals and Alertmanager webhooks |
//!
//! The document `api/openapi.yaml` describes every route, status and body; a test checks it
//! against [`routes::ROUTES`] and validates the router's answers against its schemas. The
//! human actions (their paths, bodies and permissions) are defined once in
//! [`opx_app::human`]; [`routes::route_table_json`] exports the table to the CDK app.
//!
//! # Invariants
//!
//! - Authentication runs before routing and before any body is parsed (one layer around
//!   everything, fallbacks included): an unauthenticated caller learns nothing.
//! - Authorization: the role matrix of [`auth`]; a route checks its permission before it
//!   validates its input.
//! - Every refusal is `application/problem+json` with a stable `code` ([`problem`]).
//! - A human action is at most once per (principal, `Idempotency-Key`): the key's record is
//!   written in the action's own commit; the same key and body get the recorded answer, the
//!   same key with another body a 409 ([`human`]).
//! - Every request body is at most [`REQUEST_BODY_LEN_MAX`] bytes (413 beyond).
//! - The router never publishes and, on AWS, never drains: the events table's stream is the
//!   outbox that drives the next stages.

pub mod auth;
pub mod cursor;
pub mod human;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod problem;
pub mod routes;
pub mod signals;
pub mod sigv4;
pub mod views;

pub use routes::{router, RouteSpec, ROUTES};

use opx_app::pipeline::PipelineConfig;
use opx_app::ports::Clock;

use std::sync::Arc;

/// Largest request body, in bytes: a signal payload's limit, which is far above any human
/// action's body.
pub const REQUEST_BODY_LEN_MAX: usize = opx_domain::source::PAYLOAD_LEN_MAX;

/// What the router serves: the store, the pipeline configuration, the clock for human
/// actions and signatures, who is calling, and what follows `POST /signals`.
pub struct ApiState<S> {
    /// The store.
    pub store: Arc<S>,
    /// The rules, model and windows every stage decides with.
    pub config: Arc<PipelineConfig>,
    /// The time of human actions.
    pub clock: Arc<dyn Clock>,
    /// Who is calling.
    pub authenticator: Arc<dyn auth::Authenticator>,
    /// What follows `POST /signals`.
    pub after_ingest: signals::AfterIngest,
    drain_lock: Arc<tokio::sync::Mutex<()>>,
}

impl<S> Clone for ApiState<S> {
    fn clone(&self) -> Self {
        ApiState {
            store: Arc::clone(&self.store),
            config: Arc::clone(&self.config),
            clock: Arc::clone(&self.clock),
            authenticator: Arc::clone(&self.authenticator),
            after_ingest: self.after_ingest,
            drain_lock: Arc::clone(&self.drain_lock),
        }
    }
}

impl<S> ApiState<S> {
    /// The state of a router over `store`.
    pub fn new(
        store: Arc<S>,
        config: Arc<PipelineConfig>,
        clock: Arc<dyn Clock>,
        authenticator: Arc<dyn auth::Authenticator>,
        after_ingest: signals::AfterIngest,
    ) -> ApiState<S> {
        ApiState {
            store,
            config,
            clock,
            authenticator,
            after_ingest,
            drain_lock: Arc::default(),
        }
    }
}

pub use opx_app::ports::SystemClock;
