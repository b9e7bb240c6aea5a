//! The routes: one table ([`ROUTES`], which the OpenAPI document is checked against), one
//! router, one handler per route.
//!
//! Every handler checks the caller's permission first, then parses what it was given
//! (path, query, body), then acts: a caller who may not use a route learns nothing from
//! its validation. The handlers hold no logic of their own: reads are [`crate::views`],
//! human actions [`crate::human`], signals [`crate::signals`].

use crate::auth::{self, Caller, Permission};
use crate::human::{
    self, AssigneeRequest, HumanAction, NoteRequest, SeverityRequest, TransitionRequest,
    IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER,
};
use crate::problem::{ApiError, ErrorCode};
use crate::signals;
use crate::views::{
    self, IncidentDetail, IncidentFilter, IncidentSummary, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX,
};
use crate::ApiState;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use opx_app::pipeline::{HumanOutcome, Pipeline};
use opx_app::ports::{NoPublisher, Store};
use opx_domain::incident::IncidentState;
use serde::Deserialize;

/// One route: what the OpenAPI document must describe, and what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path template, as in the OpenAPI document (`{id}` is the incident id).
    pub path: &'static str,
    /// The OpenAPI `operationId`.
    pub operation_id: &'static str,
    /// What the caller needs (a transition to CLOSED needs [`Permission::Close`] on top).
    pub permission: Permission,
    /// Every status the route answers with, ascending.
    pub statuses: &'static [u16],
}

/// Every route, in the order the OpenAPI document lists them. A test checks the document
/// against this table and the router against both.
pub const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        method: "GET",
        path: "/incidents",
        operation_id: "listIncidents",
        permission: Permission::Read,
        statuses: &[200, 400, 401, 403, 413, 500, 503],
    },
    RouteSpec {
        method: "GET",
        path: "/incidents/{id}",
        operation_id: "getIncident",
        permission: Permission::Read,
        statuses: &[200, 401, 403, 404, 413, 500, 503],
    },
    RouteSpec {
        method: "GET",
        path: "/incidents/{id}/timeline",
        operation_id: "getTimeline",
        permission: Permission::Read,
        statuses: &[200, 400, 401, 403, 404, 413, 500, 503],
    },
    RouteSpec {
        method: "GET",
        path: "/incidents/{id}/evidence",
        operation_id: "getEvidence",
        permission: Permission::Read,
        statuses: &[200, 401, 403, 404, 413, 500, 503],
    },
    RouteSpec {
        method: "POST",
        path: "/incidents/{id}/transitions",
        operation_id: "transitionIncident",
        permission: Permission::Respond,
        statuses: &[200, 400, 401, 403, 404, 409, 413, 422, 500, 503],
    },
    RouteSpec {
        method: "POST",
        path: "/incidents/{id}/notes",
        operation_id: "addNote",
        permission: Permission::Respond,
        statuses: &[200, 400, 401, 403, 404, 409, 413, 500, 503],
    },
    RouteSpec {
        method: "POST",
        path: "/incidents/{id}/assignee",
        operation_id: "assignIncident",
        permission: Permission::Respond,
        statuses: &[200, 400, 401, 403, 404, 409, 413, 422, 500, 503],
    },
    RouteSpec {
        method: "POST",
        path: "/incidents/{id}/severity",
        operation_id: "setSeverity",
        permission: Permission::Respond,
        statuses: &[200, 400, 401, 403, 404, 409, 413, 422, 500, 503],
    },
    RouteSpec {
        method: "GET",
        path: "/incidents/{id}/replay",
        operation_id: "verifyIncident",
        permission: Permission::Read,
        statuses: &[200, 401, 403, 404, 413, 500, 503],
    },
    RouteSpec {
        method: "POST",
        path: "/signals",
        operation_id: "postSignals",
        permission: Permission::Ingest,
        statuses: &[200, 400, 401, 403, 413, 500, 503],
    },
];

/// The router over `state`'s store, authentication in front of everything (unknown routes
/// and wrong methods included).
pub fn router<S: Store + 'static>(state: ApiState<S>) -> Router {
    let authenticator = state.authenticator.clone();
    Router::new()
        .route("/incidents", get(list_incidents::<S>))
        .route("/incidents/{id}", get(get_incident::<S>))
        .route("/incidents/{id}/timeline", get(get_timeline::<S>))
        .route("/incidents/{id}/evidence", get(get_evidence::<S>))
        .route("/incidents/{id}/transitions", post(post_transition::<S>))
        .route("/incidents/{id}/notes", post(post_note::<S>))
        .route("/incidents/{id}/assignee", post(post_assignee::<S>))
        .route("/incidents/{id}/severity", post(post_severity::<S>))
        .route("/incidents/{id}/replay", get(get_replay::<S>))
        .route("/signals", post(post_signals::<S>))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Added last, so it wraps every route and both fallbacks.
        .layer(middleware::from_fn_with_state(
            authenticator,
            auth::authenticate,
        ))
        .with_state(state)
}

async fn route_not_found() -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        "no such route; the routes are listed in api/openapi.yaml",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take this method; see api/openapi.yaml",
    )
}

fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidQuery,
        format!(
            "{}; see api/openapi.yaml for this route's parameters",
            rejection.body_text()
        ),
    )
}

fn check_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(LIST_LIMIT_DEFAULT),
        Some(limit) if (1..=LIST_LIMIT_MAX).contains(&limit) => Ok(limit),
        Some(limit) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit {limit} is outside 1..={LIST_LIMIT_MAX}"),
        )
        .with_field("limit")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<IncidentState>,
    service: Option<String>,
    environment: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn list_incidents<S: Store + 'static>(
    State(state): State<ApiState<S>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Read)?;
    let Query(query) = query.map_err(query_error)?;
    let limit = check_limit(query.limit)?;
    let filter = IncidentFilter {
        state: query.state,
        service: query.service,
        environment: query.environment,
    };
    let page =
        views::list_incidents(&*state.store, &filter, query.cursor.as_deref(), limit).await?;
    Ok(Json(page).into_response())
}

async fn get_incident<S: Store + 'static>(
    State(state): State<ApiState<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Read)?;
    let incident_id = views::parse_incident_id(&id)?;
    let incident = views::incident(&*state.store, &incident_id).await?;
    Ok(Json(IncidentDetail::from(&incident)).into_response())
}

async fn get_timeline<S: Store + 'static>(
    State(state): State<ApiState<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Read)?;
    let incident_id = views::parse_incident_id(&id)?;
    let Query(query) = query.map_err(query_error)?;
    let limit = check_limit(query.limit)?;
    let page = views::timeline(&*state.store, &incident_id, query.cursor.as_deref(), limit).await?;
    Ok(Json(page).into_response())
}

async fn get_evidence<S: Store + 'static>(
    State(state): State<ApiState<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Read)?;
    let incident_id = views::parse_incident_id(&id)?;
    let incident = views::incident(&*state.store, &incident_id).await?;
    let view = views::evidence(&*state.store, &state.config, &incident).await?;
    Ok(Json(view).into_response())
}

async fn get_replay<S: Store + 'static>(
    State(state): State<ApiState<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Read)?;
    let incident_id = views::parse_incident_id(&id)?;
    let view = views::replay(&*state.store, &state.config, &incident_id).await?;
    Ok(Json(view).into_response())
}

/// What every human POST shares: the route permission, the id, the key, the body, then at
/// most one execution.
async fn human_action<S: Store + 'static, B: serde::de::DeserializeOwned>(
    state: ApiState<S>,
    caller: Caller,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    action: impl FnOnce(B) -> HumanAction,
) -> Result<Response, ApiError> {
    caller.require(Permission::Respond)?;
    let incident_id = views::parse_incident_id(id)?;
    let client_key = human::check_client_key(
        headers
            .get(IDEMPOTENCY_KEY_HEADER)
            .map(|value| value.to_str().unwrap_or("\u{0}")),
    )?;
    let request: B = serde_json::from_slice(body).map_err(ApiError::invalid_body)?;
    let action = action(request);
    let pipeline = Pipeline::new(&*state.store, &NoPublisher, &state.config);
    let at = state.clock.now();
    let outcome = human::execute(&pipeline, &incident_id, &action, &caller, at, client_key).await?;
    let (incident, repeated) = match outcome {
        HumanOutcome::Applied(incident) => (incident, false),
        HumanOutcome::Repeated { incident } => (incident, true),
    };
    let mut response = Json(IncidentSummary::from(&incident)).into_response();
    if repeated {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

async fn post_transition<S: Store + 'static>(
    State(state): State<ApiState<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    human_action(
        state,
        caller,
        &id,
        &headers,
        &body,
        |request: TransitionRequest| HumanAction::Transition(request),
    )
    .await
}

async fn post_note<S: Store + 'static>(
    State(state): State<ApiState<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    human_action(
        state,
        caller,
        &id,
        &headers,
        &body,
        |request: NoteRequest| HumanAction::Note(request),
    )
    .await
}

async fn post_assignee<S: Store + 'static>(
    State(state): State<ApiState<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    human_action(
        state,
        caller,
        &id,
        &headers,
        &body,
        |request: AssigneeRequest| HumanAction::Assign(request),
    )
    .await
}

async fn post_severity<S: Store + 'static>(
    State(state): State<ApiState<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    human_action(
        state,
        caller,
        &id,
        &headers,
        &body,
        |request: SeverityRequest| HumanAction::Severity(request),
    )
    .await
}

async fn post_signals<S: Store + 'static>(
    State(state): State<ApiState<S>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(Permission::Ingest)?;
    // One embedded drain at a time: concurrent drains are safe but only fight over the
    // same work items.
    let _serialised = match state.after_ingest {
        signals::AfterIngest::Drain => Some(state.drain_lock.lock().await),
        signals::AfterIngest::LeaveToFanOut => None,
    };
    let pipeline = Pipeline::new(&*state.store, &NoPublisher, &state.config);
    let response = signals::ingest(&pipeline, &caller.principal, &body, state.after_ingest).await?;
    Ok(Json(response).into_response())
}
