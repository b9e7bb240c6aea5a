//! `api/openapi.yaml` against the code: the routes, methods, operation ids and statuses
//! against `opx_api::ROUTES` (and the router against both), the error codes against
//! `ErrorCode::ALL`, the request bodies against the types that parse them (and each human
//! action's route against the `opx_app::human` model), and the signal
//! examples against the domain's parser. The answers of the router tests are validated
//! against the document's schemas by `support::OpenApi::check`.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use opx_api::human::{
    ActionKind, AssigneeRequest, HumanAction, NoteRequest, SeverityRequest, TransitionRequest,
};
use opx_api::problem::ErrorCode;
use opx_api::views::IncidentSummary;
use opx_api::ROUTES;
use opx_domain::signal::SourceKind;
use opx_domain::source::{parse_payload, SourceConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use support::*;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[test]
fn every_route_method_and_status_is_documented_and_nothing_else() {
    let document = &openapi().document;
    assert_eq!(document["openapi"].as_str().unwrap(), "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            let statuses: Vec<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|status| status.parse().unwrap())
                .collect();
            documented.insert((
                method.to_ascii_uppercase(),
                path.clone(),
                operation["operationId"].as_str().unwrap().to_owned(),
                statuses,
            ));
        }
    }
    let routed: BTreeSet<_> = ROUTES
        .iter()
        .map(|route| {
            let mut statuses = route.statuses.to_vec();
            statuses.sort();
            assert_eq!(
                statuses, route.statuses,
                "{} statuses ascending",
                route.path
            );
            (
                route.method.to_owned(),
                route.path.to_owned(),
                route.operation_id.to_owned(),
                statuses,
            )
        })
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "api/openapi.yaml drifted from ROUTES:\n  in the code, not the document: {missing:?}\n  in the document, not the code: {extra:?}"
    );
}

#[test]
fn every_path_parameter_is_declared() {
    let openapi = openapi();
    for route in ROUTES {
        let operation = &openapi.document["paths"][route.path][route.method.to_ascii_lowercase()];
        let declared: BTreeSet<String> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|parameter| openapi.resolve(parameter))
            .filter(|parameter| parameter["in"] == "path")
            .map(|parameter| parameter["name"].as_str().unwrap().to_owned())
            .collect();
        let in_template: BTreeSet<String> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, in_template, "{} {}", route.method, route.path);
        let human_post = route.method == "POST" && route.path.starts_with("/incidents/");
        let has_key = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|parameter| openapi.resolve(parameter))
            .any(|parameter| {
                parameter["name"] == "Idempotency-Key" && parameter["required"] == true
            });
        assert_eq!(
            has_key, human_post,
            "{} {}: Idempotency-Key",
            route.method, route.path
        );
    }
}

#[test]
fn the_error_codes_are_the_documented_ones() {
    let documented: BTreeSet<&str> = openapi().schema("Problem")["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    let coded: BTreeSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    assert_eq!(documented, coded);
    // Every status an error code is sent with is documented on some route (the two that
    // no route can name are the answers for unknown routes and methods).
    let statuses: BTreeSet<u16> = ROUTES
        .iter()
        .flat_map(|route| route.statuses.iter().copied())
        .collect();
    for code in ErrorCode::ALL {
        if matches!(code, ErrorCode::RouteNotFound | ErrorCode::MethodNotAllowed) {
            continue;
        }
        assert!(statuses.contains(&code.status()), "{}", code.as_str());
    }
}

/// The schema's example parses; without a required field it does not; without an optional
/// field it does; with an unknown field it does not; and the schema's properties are
/// exactly the fields the type writes.
fn check_request_body<T: DeserializeOwned + Serialize>(schema_name: &str, full: &T) {
    let openapi = openapi();
    let schema = openapi.schema(schema_name);
    assert_eq!(
        schema["additionalProperties"],
        Value::Bool(false),
        "{schema_name}: the parser refuses unknown fields, the document must say so"
    );
    let example = schema["example"].as_object().unwrap().clone();
    serde_json::from_value::<T>(Value::Object(example.clone()))
        .unwrap_or_else(|error| panic!("{schema_name} example: {error}"));
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    let properties: BTreeSet<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let written = serde_json::to_value(full).unwrap();
    let fields: BTreeSet<&str> = written
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(properties, fields, "{schema_name}: properties");
    for name in &properties {
        let mut body = written.as_object().unwrap().clone();
        body.remove(*name);
        let parsed = serde_json::from_value::<T>(Value::Object(body));
        assert_eq!(
            parsed.is_err(),
            required.contains(name),
            "{schema_name}.{name}: required in the document iff the parser requires it"
        );
    }
    let mut extra = written.as_object().unwrap().clone();
    extra.insert("unexpected".to_owned(), Value::Bool(true));
    assert!(serde_json::from_value::<T>(Value::Object(extra)).is_err());
}

#[test]
fn the_request_bodies_are_the_parsed_types() {
    check_request_body(
        "TransitionRequest",
        &TransitionRequest {
            to: opx_domain::incident::IncidentState::Closed,
            reason: "r".to_owned(),
            expected_version: 4,
            close_as: Some(opx_domain::incident::CloseAs::Resolved),
            resolution_summary: Some("s".to_owned()),
        },
    );
    check_request_body(
        "NoteRequest",
        &NoteRequest {
            text: "t".to_owned(),
        },
    );
    check_request_body(
        "AssigneeRequest",
        &AssigneeRequest {
            assignee: "a".to_owned(),
        },
    );
    check_request_body(
        "SeverityRequest",
        &SeverityRequest {
            severity: opx_domain::signal::Severity::Sev2,
            reason: "r".to_owned(),
        },
    );
}

#[test]
fn the_signal_examples_are_what_the_parser_accepts() {
    let openapi = openapi();
    for (schema, kind, items) in [
        ("NativeSignal", SourceKind::Native, 1),
        ("AlertmanagerWebhook", SourceKind::Alertmanager, 1),
    ] {
        let example = serde_json::to_vec(&openapi.schema(schema)["example"]).unwrap();
        let parsed = parse_payload(&example, &SourceConfig::default()).unwrap();
        assert_eq!(parsed.source, kind, "{schema}");
        assert_eq!(parsed.items.len(), items);
        assert!(
            parsed.items.iter().all(Result::is_ok),
            "{schema}: {parsed:?}"
        );
    }
    // The native schema lists exactly the fields of the native contract: one more is refused.
    let mut native = openapi.schema("NativeSignal")["example"].clone();
    native["unexpected"] = Value::Bool(true);
    let parsed = parse_payload(
        &serde_json::to_vec(&native).unwrap(),
        &SourceConfig::default(),
    );
    assert!(parsed
        .map(|parsed| parsed.items[0].is_err())
        .unwrap_or(true));
    let mut errors = Vec::new();
    openapi.validate(openapi.schema("NativeSignal"), &native, "$", &mut errors);
    assert!(!errors.is_empty());
}

#[test]
fn the_summary_schema_has_every_field_the_api_writes() {
    let openapi = openapi();
    let properties: BTreeSet<&str> = openapi.schema("IncidentSummary")["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let summary = IncidentSummary {
        id: "0".repeat(64),
        environment: "prod".to_owned(),
        service: "payments".to_owned(),
        severity: "SEV2".to_owned(),
        state: "OPEN".to_owned(),
        version: 1,
        opened_at: "2026-11-24T03:02:05.118Z".to_owned(),
        evidence_count: 2,
        alarm_count: 2,
        recovery_count: 0,
        assignee: None,
        fired_again: false,
    };
    let written = serde_json::to_value(&summary).unwrap();
    let fields: BTreeSet<&str> = written
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(properties, fields);
}

#[tokio::test]
async fn the_router_serves_every_documented_route() {
    let api = TestApi::new();
    let id = api.seed_incident().await;
    let everything = "local:root=reader,responder,approver,ingester";
    for route in ROUTES {
        let uri = route.path.replace("{id}", &id);
        let answer = api
            .send(
                route.method,
                &uri,
                Some(route.path),
                Some(everything),
                &[("idempotency-key", "served-1")],
                "{}",
            )
            .await;
        assert!(
            !["route_not_found", "method_not_allowed"].contains(&answer.code()),
            "{} {} is not routed: {}",
            route.method,
            route.path,
            answer.body
        );
    }
}

#[test]
fn every_human_action_is_documented_with_the_body_its_kind_parses() {
    let openapi = openapi();
    for kind in ActionKind::ALL {
        let operation = &openapi.document["paths"][kind.path()]["post"];
        assert_eq!(
            operation["operationId"].as_str(),
            Some(kind.operation_id()),
            "{kind:?}: POST {} in api/openapi.yaml",
            kind.path()
        );
        let schema =
            openapi.resolve(&operation["requestBody"]["content"]["application/json"]["schema"]);
        let example = serde_json::to_vec(&schema["example"]).unwrap();
        let parsed = HumanAction::parse(kind, &example)
            .unwrap_or_else(|error| panic!("{kind:?}: the documented example: {error}"));
        assert_eq!(parsed.kind(), kind);
        for other in ActionKind::ALL.into_iter().filter(|other| *other != kind) {
            assert!(
                HumanAction::parse(other, &example).is_err(),
                "{kind:?}'s documented body is also a {other:?} body"
            );
        }
    }
}
