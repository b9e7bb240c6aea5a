//! The routes: one table ([`ROUTES`], which the OpenAPI document is checked against and
//! `infra/lib/generated/routes.json` is generated from), one router, one handler per read
//! route and one for every human action ([`ActionKind`]).
//!
//! Every handler checks the caller's permission first, then parses what it was given
//! (path, query, body), then acts: a caller who may not use a route learns nothing from
//! its validation. The handlers hold no logic of their own: reads are [`crate::views`],
//! human actions [`crate::human`], signals [`crate::signals`].

use crate::auth::{self, Caller, Permission};
use crate::human::{
    self, ActionKind, HumanAction, IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER,
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
use serde::{Deserialize, Serialize};

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

impl RouteSpec {
    /// The route of a human action: its path, operation and permission are the model's.
    pub const fn human(kind: ActionKind) -> RouteSpec {
        RouteSpec {
            method: "POST",
            path: kind.path(),
            operation_id: kind.operation_id(),
            permission: kind.permission(),
            statuses: human_statuses(kind),
        }
    }

    /// The human action this route executes, if it is one.
    pub fn action(&self) -> Option<ActionKind> {
        ActionKind::ALL
            .into_iter()
            .find(|kind| self.method == "POST" && self.path == kind.path())
    }
}

/// The statuses of a human action's route: a note has no body the domain can find
/// unprocessable (only a bad text, a 400), every other action can be refused by the
/// lifecycle (422).
const fn human_statuses(kind: ActionKind) -> &'static [u16] {
    match kind {
        ActionKind::Note => &[200, 400, 401, 403, 404, 409, 413, 500, 503],
        ActionKind::Transition | ActionKind::Assign | ActionKind::Severity => {
            &[200, 400, 401, 403, 404, 409, 413, 422, 500, 503]
        }
    }
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
    RouteSpec::human(ActionKind::Transition),
    RouteSpec::human(ActionKind::Note),
    RouteSpec::human(ActionKind::Assign),
    RouteSpec::human(ActionKind::Severity),
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
    let mut router = Router::new()
        .route("/incidents", get(list_incidents::<S>))
        .route("/incidents/{id}", get(get_incident::<S>))
        .route("/incidents/{id}/timeline", get(get_timeline::<S>))
        .route("/incidents/{id}/evidence", get(get_evidence::<S>))
        .route("/incidents/{id}/replay", get(get_replay::<S>))
        .route("/signals", post(post_signals::<S>));
    for kind in ActionKind::ALL {
        router = router.route(
            kind.path(),
            post(
                move |State(state): State<ApiState<S>>,
                      Extension(caller): Extension<Caller>,
                      Path(id): Path<String>,
                      headers: HeaderMap,
                      body: Bytes| async move {
                    post_human_action(kind, state, caller, &id, &headers, &body).await
                },
            ),
        );
    }
    router
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

/// Every human action's POST: the route permission, the id, the key, the body of `kind`,
/// then at most one execution.
async fn post_human_action<S: Store + 'static>(
    kind: ActionKind,
    state: ApiState<S>,
    caller: Caller,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    caller.require(kind.permission())?;
    let incident_id = views::parse_incident_id(id)?;
    let client_key = human::check_client_key(
        headers
            .get(IDEMPOTENCY_KEY_HEADER)
            .map(|value| value.to_str().unwrap_or("\u{0}")),
    )?;
    let action = HumanAction::parse(kind, body).map_err(ApiError::invalid_body)?;
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

/// One row of the exported route table: what the CDK app declares per route.
#[derive(Debug, Serialize)]
struct ExportedRoute {
    method: &'static str,
    path: &'static str,
    operation_id: &'static str,
    permission: &'static str,
    /// The roles granting `permission`, which the CDK app turns into access levels.
    levels: Vec<&'static str>,
    /// The `opx` subcommand of a human action.
    command: Option<&'static str>,
    /// A human action's body is a JSON object, which API Gateway can check before the
    /// function runs; a signal payload may be an array, so it is left to the function.
    json_object_body: bool,
}

/// The route table for the CDK app (`infra/lib/generated/routes.json`), as written there:
/// every route of [`ROUTES`] with the roles that may call it.
pub fn route_table_json() -> String {
    let routes: Vec<ExportedRoute> = ROUTES
        .iter()
        .map(|route| ExportedRoute {
            method: route.method,
            path: route.path,
            operation_id: route.operation_id,
            permission: route.permission.as_str(),
            levels: auth::Role::ALL
                .into_iter()
                .filter(|role| role.grants(route.permission))
                .map(auth::Role::as_str)
                .collect(),
            command: route.action().map(ActionKind::command_name),
            json_object_body: route.action().is_some(),
        })
        .collect();
    opx_app::generated::document(
        "crates/opx-api (opx_api::routes::route_table_json); regenerate with \
         OPX_WRITE_ROUTES=1 cargo test -p opx-api --test route_table",
        "routes",
        &routes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_human_action_has_exactly_one_route_and_only_they_take_a_key() {
        for kind in ActionKind::ALL {
            let routes: Vec<_> = ROUTES
                .iter()
                .filter(|route| route.action() == Some(kind))
                .collect();
            assert_eq!(routes.len(), 1, "{kind:?}");
            assert_eq!(routes[0].path, kind.path());
        }
        let actions = ROUTES.iter().filter(|r| r.action().is_some()).count();
        assert_eq!(actions, ActionKind::ALL.len());
    }

    #[test]
    fn the_exported_table_lists_every_route_with_who_may_call_it() {
        let document: serde_json::Value = serde_json::from_str(&route_table_json()).unwrap();
        let routes = document["routes"].as_array().unwrap();
        assert_eq!(routes.len(), ROUTES.len());
        for (row, route) in routes.iter().zip(ROUTES) {
            assert_eq!(row["path"], route.path);
            let levels: Vec<&str> = row["levels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|level| level.as_str().unwrap())
                .collect();
            for role in auth::Role::ALL {
                assert_eq!(
                    levels.contains(&role.as_str()),
                    role.grants(route.permission),
                    "{} {}: {}",
                    route.method,
                    route.path,
                    role.as_str()
                );
            }
        }
    }
}
