//! The router as the `incident-api` function serves it: recorded API Gateway REST proxy
//! events through `lambda_http`'s adapter (the code `lambda_http::run` runs), with and
//! without an IAM identity, answers read back as the proxy response API Gateway gets.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent};
use opx_api::auth::RoleMap;
use opx_api::lambda::ApiGatewayIamAuthenticator;
use opx_api::signals::AfterIngest;
use opx_api::ApiState;
use opx_app::pipeline::Pipeline;
use opx_app::ports::NoPublisher;
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::Value;
use std::sync::Arc;
use support::{config, openapi, Answer, FixedClock};
use tower::ServiceExt;

const GET_INCIDENTS: &str = include_str!("fixtures/apigw_rest_get_incidents.json");
const NO_IDENTITY: &str = include_str!("fixtures/apigw_rest_no_identity.json");
const POST_SIGNALS: &str = include_str!("fixtures/apigw_rest_post_signals.json");
const POST_TRANSITION: &str = include_str!("fixtures/apigw_rest_post_transition.json");

/// The role map as `OPX_ROLE_MAP` would hold it: IAM role ARNs, one with a path.
const ROLE_MAP: &str = r#"{
    "reader": ["arn:aws:iam::123456789012:role/ReadOnly"],
    "responder": ["arn:aws:iam::123456789012:role/oncall/Responder"],
    "approver": [],
    "ingester": ["arn:aws:iam::123456789012:role/integrations/AlertmanagerRelay"]
}"#;

struct Function {
    router: axum::Router,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

fn function() -> Function {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(dir.path().join("opx.db"), SqliteOptions::default()).unwrap());
    let state = ApiState::new(
        Arc::clone(&store),
        Arc::new(config()),
        Arc::new(FixedClock::default()),
        Arc::new(ApiGatewayIamAuthenticator::new(
            RoleMap::from_json(ROLE_MAP).unwrap(),
        )),
        AfterIngest::LeaveToFanOut,
    );
    Function {
        router: opx_api::router(state),
        store,
        _dir: dir,
    }
}

/// Invokes the function with a recorded event; returns the proxy response as JSON.
async fn invoke(function: &Function, event: &str) -> Value {
    let request: LambdaRequest = serde_json::from_str(event).unwrap();
    let adapter = Adapter::from(opx_api::lambda::service(function.router.clone()));
    let response = adapter
        .oneshot(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    serde_json::to_value(&response).unwrap()
}

/// The proxy response as an [`Answer`], checked against the OpenAPI document.
fn answer(response: &Value, method: &str, route: &str) -> Answer {
    let mut headers = axum::http::HeaderMap::new();
    // lambda_http answers REST APIs in `multiValueHeaders` only (API Gateway would merge
    // both fields and send a header twice).
    assert_eq!(response["headers"], serde_json::json!({}));
    for (name, values) in response["multiValueHeaders"].as_object().unwrap() {
        for value in values.as_array().unwrap() {
            headers.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.as_str().unwrap().parse().unwrap(),
            );
        }
    }
    assert_eq!(response["isBase64Encoded"], false, "JSON answers are text");
    let text = response["body"].as_str().unwrap_or("");
    let answer = Answer {
        status: u16::try_from(response["statusCode"].as_u64().unwrap()).unwrap(),
        headers,
        body: serde_json::from_str(text).unwrap_or(Value::Null),
        bytes: text.as_bytes().to_vec(),
    };
    openapi().check(method, route, &answer);
    answer
}

/// Runs the stages as the fan-out would have them run on AWS.
async fn run_stages(function: &Function) {
    let config = config();
    let pipeline = Pipeline::new(&*function.store, &NoPublisher, &config);
    let report = pipeline.drain(u64::MAX).await.unwrap();
    assert!(report.left_queued.is_empty());
}

#[tokio::test]
async fn signals_then_reads_then_a_transition_through_api_gateway_events() {
    let function = function();
    // An Alertmanager relay's assumed role (the role has a path; the session ARN does not).
    let posted = answer(&invoke(&function, POST_SIGNALS).await, "POST", "/signals");
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(posted.body["accepted"], 2);
    assert!(
        posted.body.get("processed").is_none(),
        "the function never drains"
    );
    run_stages(&function).await;

    // The stage name is not part of the route: /incidents, not /prod/incidents.
    let listed = answer(&invoke(&function, GET_INCIDENTS).await, "GET", "/incidents");
    assert_eq!(listed.status, 200, "{}", listed.body);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let id = items[0]["id"].as_str().unwrap().to_owned();

    let event = POST_TRANSITION.replace("INCIDENT_ID", &id);
    let acknowledged = answer(
        &invoke(&function, &event).await,
        "POST",
        "/incidents/{id}/transitions",
    );
    assert_eq!(acknowledged.status, 200, "{}", acknowledged.body);
    assert_eq!(acknowledged.body["state"], "ACKNOWLEDGED");
    // API Gateway retries are safe: the same event gets the same answer.
    let retried = answer(
        &invoke(&function, &event).await,
        "POST",
        "/incidents/{id}/transitions",
    );
    assert_eq!(retried.bytes, acknowledged.bytes);
    assert_eq!(retried.headers["idempotent-replayed"], "true");

    // The timeline names the caller exactly as API Gateway reported it.
    let mut timeline_event: Value = serde_json::from_str(GET_INCIDENTS).unwrap();
    timeline_event["path"] = Value::String(format!("/incidents/{id}/timeline"));
    timeline_event["queryStringParameters"] = Value::Null;
    timeline_event["multiValueQueryStringParameters"] = Value::Null;
    let timeline = answer(
        &invoke(&function, &timeline_event.to_string()).await,
        "GET",
        "/incidents/{id}/timeline",
    );
    assert_eq!(timeline.status, 200);
    let transition = timeline.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["type"] == "IncidentTransitioned")
        .unwrap();
    assert_eq!(
        transition["event"]["principal"],
        "arn:aws:sts::123456789012:assumed-role/Responder/bob"
    );
}

#[tokio::test]
async fn no_identity_in_the_request_context_is_403_before_routing() {
    let function = function();
    let refused = answer(&invoke(&function, NO_IDENTITY).await, "GET", "/incidents");
    assert_eq!(refused.status, 403);
    assert_eq!(refused.code(), "no_principal");
    // Even for a route that does not exist.
    let mut nowhere: Value = serde_json::from_str(NO_IDENTITY).unwrap();
    nowhere["path"] = Value::String("/admin".to_owned());
    let response = invoke(&function, &nowhere.to_string()).await;
    assert_eq!(response["statusCode"], 403);
}

#[tokio::test]
async fn an_identity_the_role_map_does_not_know_is_allowed_nothing() {
    let function = function();
    let mut stranger: Value = serde_json::from_str(GET_INCIDENTS).unwrap();
    stranger["requestContext"]["identity"]["userArn"] =
        Value::String("arn:aws:sts::210987654321:assumed-role/ReadOnly/eve".to_owned());
    let refused = answer(
        &invoke(&function, &stranger.to_string()).await,
        "GET",
        "/incidents",
    );
    assert_eq!(refused.status, 403);
    assert_eq!(refused.code(), "forbidden");
    // A reader may not act, whatever the body.
    let mut reader_acts: Value = serde_json::from_str(POST_TRANSITION).unwrap();
    reader_acts["requestContext"]["identity"]["userArn"] = Value::String(
        "arn:aws:sts::123456789012:assumed-role/ReadOnly/rita@example.com".to_owned(),
    );
    let refused = answer(
        &invoke(&function, &reader_acts.to_string()).await,
        "POST",
        "/incidents/{id}/transitions",
    );
    assert_eq!(refused.status, 403);
}
