//! The router in process (`tower::ServiceExt::oneshot`) over a real SQLite store: every
//! route, every error status, idempotent retries, and concurrent transitions. Every answer
//! is checked against `api/openapi.yaml` by the helper that sends it.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use opx_api::signals::AfterIngest;
use opx_app::pipeline::PROJECTION_INCIDENT;
use opx_app::ports::{Commit, Projection, ProjectionChange, Store, StoreRead};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use support::*;

const ID_ROUTE: &str = "/incidents/{id}";
const TRANSITIONS: &str = "/incidents/{id}/transitions";

fn native(alarm: &str, service: &str, time: &str) -> String {
    json!({
        "opx_signal_version": 1,
        "alarm": alarm,
        "state": "ALARM",
        "time": time,
        "environment": "prod",
        "service": service,
        "severity": "SEV2",
    })
    .to_string()
}

async fn seed_checkout(api: &TestApi) -> String {
    let mut opened = Vec::new();
    for (alarm, time) in [
        ("synthetic:checkout-canary", "2026-11-24T03:00:05Z"),
        ("synthetic:checkout-latency", "2026-11-24T03:00:40Z"),
        ("synthetic:checkout-errors", "2026-11-24T03:01:10Z"),
    ] {
        let answer = api
            .send(
                "POST",
                "/signals",
                Some("/signals"),
                Some(INGESTER),
                &[],
                &native(alarm, "checkout", time),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        for id in answer.body["processed"]["incidents_opened"]
            .as_array()
            .unwrap()
        {
            opened.push(id.as_str().unwrap().to_owned());
        }
    }
    assert_eq!(opened.len(), 1, "one checkout incident: {opened:?}");
    opened.remove(0)
}

fn transition(to: &str, version: u64) -> String {
    json!({ "to": to, "reason": "on it", "expected_version": version }).to_string()
}

#[tokio::test]
async fn signals_are_ingested_item_by_item_and_carried_through_when_embedded() {
    let api = TestApi::new();
    let id = api.seed_incident().await;
    // A redelivery is two duplicates and opens nothing.
    let again = api
        .send(
            "POST",
            "/signals",
            Some("/signals"),
            Some(INGESTER),
            &[],
            ALERTMANAGER_STORM,
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["duplicates"], 2);
    assert_eq!(again.body["accepted"], 0);
    assert_eq!(again.body["processed"]["incidents_opened"], json!([]));
    // One bad alert among good ones: the bad one is rejected and recorded, the good one in.
    let mut webhook: Value = serde_json::from_str(ALERTMANAGER_STORM).unwrap();
    webhook["alerts"][0]["startsAt"] = json!("2026-11-24T03:07:00Z");
    webhook["alerts"][0]["fingerprint"] = json!("0000000000000001");
    webhook["alerts"][1]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("alertname");
    let mixed = api
        .send(
            "POST",
            "/signals",
            Some("/signals"),
            Some(INGESTER),
            &[],
            &webhook.to_string(),
        )
        .await;
    assert_eq!(mixed.status, 200, "{}", mixed.body);
    assert_eq!(mixed.body["accepted"], 1);
    assert_eq!(mixed.body["rejected"], 1);
    assert_eq!(mixed.body["items"][1]["outcome"], "rejected");
    assert!(mixed.body["items"][1]["field"]
        .as_str()
        .unwrap()
        .contains("alerts[1]"));
    let rejects = api.store.list_rejects(None, 10).await.unwrap();
    assert_eq!(rejects.items.len(), 1);
    assert!(rejects.items[0]
        .origin
        .contains("assumed-role/Relay/alertmanager"));
    // The attached evidence is visible on the incident.
    let detail = api.get(&format!("/incidents/{id}"), ID_ROUTE, READER).await;
    assert_eq!(detail.body["summary"]["evidence_count"], 3);
}

#[tokio::test]
async fn payloads_refused_as_a_whole_are_recorded_and_answered_400() {
    let api = TestApi::new();
    let not_json = api
        .send(
            "POST",
            "/signals",
            Some("/signals"),
            Some(INGESTER),
            &[],
            "{\"version\":",
        )
        .await;
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.code(), "invalid_payload");
    assert_eq!(not_json.body["field"], "$");
    let cloudwatch = include_str!("fixtures/cloudwatch_eventbridge.json");
    let elsewhere = api
        .send(
            "POST",
            "/signals",
            Some("/signals"),
            Some(INGESTER),
            &[],
            cloudwatch,
        )
        .await;
    assert_eq!(elsewhere.status, 400);
    assert_eq!(elsewhere.code(), "unsupported_source");
    assert_eq!(
        api.store.list_rejects(None, 10).await.unwrap().items.len(),
        2
    );
    // Nothing was ingested from either.
    assert!(api
        .store
        .list_streams(None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn the_first_bad_alert_is_item_one_and_its_reject_is_not_the_whole_payloads() {
    let api = TestApi::with(AfterIngest::LeaveToFanOut);
    let mut webhook: Value = serde_json::from_str(ALERTMANAGER_STORM).unwrap();
    webhook["alerts"][0]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("alertname");
    let body = webhook.to_string();
    let answer = api
        .send(
            "POST",
            "/signals",
            Some("/signals"),
            Some(INGESTER),
            &[],
            &body,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        (
            answer.body["accepted"].as_u64(),
            answer.body["rejected"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(answer.body["items"][0]["index"], 1);
    assert_eq!(answer.body["items"][0]["outcome"], "rejected");
    assert_eq!(answer.body["items"][1]["index"], 2);
    assert_eq!(answer.body["items"][1]["outcome"], "accepted");
    let rejects = api.store.list_rejects(None, 10).await.unwrap().items;
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0].id, opx_app::ports::reject_id(body.as_bytes(), 1));
    assert_ne!(rejects[0].id, opx_app::ports::reject_id(body.as_bytes(), 0));
    assert_eq!(
        Some(rejects[0].field.as_str()),
        answer.body["items"][0]["field"].as_str()
    );
}

#[tokio::test]
async fn a_store_outage_during_post_signals_is_503_and_the_retry_records_every_signal() {
    let api = TestApi::with(AfterIngest::LeaveToFanOut);
    api.store.down.store(true, Ordering::SeqCst);
    let down = api
        .send(
            "POST",
            "/signals",
            Some("/signals"),
            Some(INGESTER),
            &[],
            ALERTMANAGER_STORM,
        )
        .await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.code(), "unavailable");
    api.store.down.store(false, Ordering::SeqCst);
    let retried = api
        .send(
            "POST",
            "/signals",
            Some("/signals"),
            Some(INGESTER),
            &[],
            ALERTMANAGER_STORM,
        )
        .await;
    assert_eq!(retried.status, 200);
    assert_eq!(retried.body["accepted"], 2);
    assert!(api
        .store
        .list_rejects(None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn on_aws_the_router_records_signals_and_leaves_the_rest_to_the_fan_out() {
    let api = TestApi::with(AfterIngest::LeaveToFanOut);
    let answer = api
        .send(
            "POST",
            "/signals",
            Some("/signals"),
            Some(INGESTER),
            &[],
            ALERTMANAGER_STORM,
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["accepted"], 2);
    assert!(answer.body.get("processed").is_none());
    // The detect work is queued, not done.
    let pending = api.store.pending_work(None, 10).await.unwrap();
    assert_eq!(pending.items.len(), 2);
    let page = api.get("/incidents", "/incidents", READER).await;
    assert_eq!(page.body["items"], json!([]));
}

#[tokio::test]
async fn incidents_are_listed_filtered_and_paged() {
    let api = TestApi::new();
    let payments = api.seed_incident().await;
    let checkout = seed_checkout(&api).await;
    let all = api.get("/incidents", "/incidents", READER).await;
    assert_eq!(all.status, 200);
    let ids: Vec<&str> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_str().unwrap())
        .collect();
    let mut expected = vec![payments.as_str(), checkout.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "id order");
    assert_eq!(all.body["next_cursor"], Value::Null);

    for (query, count) in [
        ("?service=payments", 1),
        ("?service=checkout&state=OPEN", 1),
        ("?state=CLOSED", 0),
        ("?environment=prod", 2),
        ("?environment=staging", 0),
    ] {
        let page = api
            .get(&format!("/incidents{query}"), "/incidents", READER)
            .await;
        assert_eq!(page.status, 200);
        assert_eq!(
            page.body["items"].as_array().unwrap().len(),
            count,
            "{query}"
        );
    }

    // Page by one: two pages and an end, the union is the whole list.
    let first = api.get("/incidents?limit=1", "/incidents", READER).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 1);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = api
        .get(
            &format!("/incidents?limit=1&cursor={cursor}"),
            "/incidents",
            READER,
        )
        .await;
    assert_eq!(second.status, 200);
    let mut seen = vec![
        first.body["items"][0]["id"].as_str().unwrap().to_owned(),
        second.body["items"][0]["id"].as_str().unwrap().to_owned(),
    ];
    seen.sort();
    assert_eq!(seen, expected);

    // A cursor is only good for the filters it was issued with.
    let other = api
        .get(
            &format!("/incidents?limit=1&state=OPEN&cursor={cursor}"),
            "/incidents",
            READER,
        )
        .await;
    assert_eq!(other.status, 400);
    assert_eq!(other.code(), "invalid_cursor");
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?limit=x",
        "?status=OPEN",
        "?state=open",
        "?cursor=zz",
    ] {
        let answer = api
            .get(&format!("/incidents{bad}"), "/incidents", READER)
            .await;
        assert_eq!(answer.status, 400, "{bad}");
        assert!(
            ["invalid_query", "invalid_cursor"].contains(&answer.code()),
            "{bad}: {}",
            answer.body
        );
    }
}

#[tokio::test]
async fn one_incident_its_timeline_evidence_and_replay() {
    let api = TestApi::new();
    let id = api.seed_incident().await;
    let detail = api.get(&format!("/incidents/{id}"), ID_ROUTE, READER).await;
    assert_eq!(detail.status, 200);
    assert_eq!(detail.body["summary"]["state"], "OPEN");
    assert_eq!(detail.body["summary"]["version"], 1);
    let targets: Vec<&str> = detail.body["allowed_transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["to"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["ACKNOWLEDGED", "CLOSED"]);

    let timeline_route = "/incidents/{id}/timeline";
    let timeline = api
        .get(&format!("/incidents/{id}/timeline"), timeline_route, READER)
        .await;
    assert_eq!(timeline.status, 200);
    assert_eq!(timeline.body["entries"][0]["type"], "IncidentOpened");
    // Add two notes, then page the three entries one by one.
    for (key, text) in [("n1", "first"), ("n2", "second")] {
        let note = api
            .post(
                &format!("/incidents/{id}/notes"),
                "/incidents/{id}/notes",
                RESPONDER,
                key,
                &json!({ "text": text }).to_string(),
            )
            .await;
        assert_eq!(note.status, 200, "{}", note.body);
    }
    let mut sequences = Vec::new();
    let mut uri = format!("/incidents/{id}/timeline?limit=1");
    loop {
        let page = api.get(&uri, timeline_route, READER).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for entry in page.body["entries"].as_array().unwrap() {
            sequences.push(entry["sequence"].as_u64().unwrap());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/incidents/{id}/timeline?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(sequences, [1, 2, 3]);
    let foreign_cursor = api.get("/incidents?limit=1", "/incidents", READER).await;
    assert_eq!(foreign_cursor.body["next_cursor"], Value::Null);
    let bad = api
        .get(
            &format!("/incidents/{id}/timeline?cursor=00"),
            timeline_route,
            READER,
        )
        .await;
    assert_eq!(bad.status, 400);

    let evidence = api
        .get(
            &format!("/incidents/{id}/evidence"),
            "/incidents/{id}/evidence",
            READER,
        )
        .await;
    assert_eq!(evidence.status, 200);
    assert_eq!(evidence.body["items"].as_array().unwrap().len(), 2);
    let decisions = evidence.body["decisions"].as_array().unwrap();
    assert!(!decisions.is_empty());
    assert_eq!(decisions[0]["decision"]["outcome"], "PROMOTE");
    assert!(decisions[0]["assessment"]["assessment"]["score_bps"].is_u64());

    let replay = api
        .get(
            &format!("/incidents/{id}/replay"),
            "/incidents/{id}/replay",
            READER,
        )
        .await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body["ok"], true, "{}", replay.body);
    assert_eq!(replay.body["events"], 3);
    assert_eq!(
        replay.body["checks"],
        json!(["chain", "fold", "projection", "decisions"])
    );
}

#[tokio::test]
async fn unknown_and_malformed_incidents_are_404_on_every_incident_route() {
    let api = TestApi::new();
    let unknown = "ab".repeat(32);
    for id in [unknown.as_str(), "nope", "ABCD"] {
        for (suffix, route) in [
            ("", ID_ROUTE),
            ("/timeline", "/incidents/{id}/timeline"),
            ("/evidence", "/incidents/{id}/evidence"),
            ("/replay", "/incidents/{id}/replay"),
        ] {
            let answer = api
                .get(&format!("/incidents/{id}{suffix}"), route, READER)
                .await;
            assert_eq!(answer.status, 404, "{id}{suffix}");
            assert_eq!(answer.code(), "not_found");
        }
        for (suffix, body) in [
            ("/transitions", transition("ACKNOWLEDGED", 1)),
            ("/notes", json!({"text": "x"}).to_string()),
            ("/assignee", json!({"assignee": "x"}).to_string()),
            (
                "/severity",
                json!({"severity": "SEV1", "reason": "x"}).to_string(),
            ),
        ] {
            let answer = api
                .post(
                    &format!("/incidents/{id}{suffix}"),
                    &format!("/incidents/{{id}}{suffix}"),
                    APPROVER,
                    "k1",
                    &body,
                )
                .await;
            assert_eq!(answer.status, 404, "{id}{suffix}: {}", answer.body);
        }
    }
}

#[tokio::test]
async fn a_retried_transition_gets_the_same_answer_and_a_reused_key_is_409() {
    let api = TestApi::new();
    let id = api.seed_incident().await;
    let uri = format!("/incidents/{id}/transitions");
    let first = api
        .post(
            &uri,
            TRANSITIONS,
            RESPONDER,
            "key-1",
            &transition("ACKNOWLEDGED", 1),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["state"], "ACKNOWLEDGED");
    assert_eq!(first.body["version"], 2);
    assert!(first.headers.get("idempotent-replayed").is_none());

    // Same key, same meaning (other layout): the recorded answer, nothing applied again.
    let retry = api
        .post(
            &uri,
            TRANSITIONS,
            RESPONDER,
            "key-1",
            r#"{ "expected_version": 1, "reason": "on it", "to": "ACKNOWLEDGED" }"#,
        )
        .await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.bytes, first.bytes);
    assert_eq!(retry.headers["idempotent-replayed"], "true");

    // Same key, another body: refused.
    let reused = api
        .post(
            &uri,
            TRANSITIONS,
            RESPONDER,
            "key-1",
            &transition("MITIGATING", 2),
        )
        .await;
    assert_eq!(reused.status, 409);
    assert_eq!(reused.code(), "idempotency_key_reused");
    // The same key on another route is another request too.
    let other_route = api
        .post(
            &format!("/incidents/{id}/notes"),
            "/incidents/{id}/notes",
            RESPONDER,
            "key-1",
            r#"{"text":"x"}"#,
        )
        .await;
    assert_eq!(other_route.code(), "idempotency_key_reused");
    // Keys are per principal: another responder's key-1 is theirs.
    let stale = api
        .post(
            &uri,
            TRANSITIONS,
            RESPONDER_2,
            "key-1",
            &transition("MITIGATING", 1),
        )
        .await;
    assert_eq!(stale.status, 409);
    assert_eq!(stale.code(), "version_conflict");
    assert_eq!(stale.body["current_version"], 2);

    // Exactly one transition event was written.
    let timeline = api
        .get(
            &format!("/incidents/{id}/timeline"),
            "/incidents/{id}/timeline",
            READER,
        )
        .await;
    let transitions = timeline.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["type"] == "IncidentTransitioned")
        .count();
    assert_eq!(transitions, 1);
}

#[tokio::test]
async fn the_lifecycle_and_the_role_matrix_are_enforced() {
    let api = TestApi::new();
    let id = api.seed_incident().await;
    let uri = format!("/incidents/{id}/transitions");
    let post = |caller: &'static str, key: &'static str, body: String| {
        let api = &api;
        let uri = uri.clone();
        async move { api.post(&uri, TRANSITIONS, caller, key, &body).await }
    };
    // A reader and an ingester may not act; nobody may without a role.
    for caller in [READER, INGESTER, NOBODY] {
        let answer = post(caller, "k", transition("ACKNOWLEDGED", 1)).await;
        assert_eq!(answer.status, 403, "{caller}");
        assert_eq!(answer.code(), "forbidden");
    }
    // A role check comes before body validation.
    let invalid_by_reader = post(READER, "k", "{".to_owned()).await;
    assert_eq!(invalid_by_reader.status, 403);
    // OPEN → MITIGATING is not in the lifecycle.
    let skip = post(RESPONDER, "k1", transition("MITIGATING", 1)).await;
    assert_eq!(skip.status, 422);
    assert_eq!(skip.code(), "transition_not_allowed");
    assert_eq!(skip.body["allowed"], json!(["ACKNOWLEDGED", "CLOSED"]));
    assert_eq!(
        post(RESPONDER, "k2", transition("ACKNOWLEDGED", 1))
            .await
            .status,
        200
    );
    // A responder may not close, even as a false positive.
    let close =
        json!({"to":"CLOSED","reason":"noise","expected_version":2,"close_as":"false_positive"})
            .to_string();
    let refused = post(RESPONDER, "k3", close.clone()).await;
    assert_eq!(refused.status, 403);
    // An approver must say how, and a normal close needs RESOLVED first.
    let no_close_as = post(APPROVER, "k4", transition("CLOSED", 2)).await;
    assert_eq!(no_close_as.status, 422);
    assert_eq!(no_close_as.code(), "close_as_required");
    let early = json!({"to":"CLOSED","reason":"done","expected_version":2,"close_as":"resolved"})
        .to_string();
    let early = post(APPROVER, "k5", early).await;
    assert_eq!(early.status, 422);
    assert_eq!(early.code(), "close_as_not_allowed");
    // Resolving a SEV1 needs a resolution summary.
    let severity = api
        .post(
            &format!("/incidents/{id}/severity"),
            "/incidents/{id}/severity",
            RESPONDER,
            "s1",
            &json!({"severity":"SEV1","reason":"checkout down"}).to_string(),
        )
        .await;
    assert_eq!(severity.status, 200, "{}", severity.body);
    assert_eq!(severity.body["severity"], "SEV1");
    let bare = post(RESPONDER, "k6", transition("RESOLVED", 2)).await;
    assert_eq!(bare.status, 422);
    assert_eq!(bare.code(), "resolution_summary_required");
    let misplaced =
        json!({"to":"MITIGATING","reason":"x","expected_version":2,"resolution_summary":"y"})
            .to_string();
    let misplaced = post(RESPONDER, "k7", misplaced).await;
    assert_eq!(misplaced.status, 400);
    assert_eq!(misplaced.body["field"], "resolution_summary");
    let resolve = json!({"to":"RESOLVED","reason":"recovered","expected_version":2,"resolution_summary":"rolled back"}).to_string();
    let resolved = post(RESPONDER, "k8", resolve).await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    assert_eq!(resolved.body["version"], 3);
    // Only an approver closes.
    let close = json!({"to":"CLOSED","reason":"done","expected_version":3,"close_as":"resolved"})
        .to_string();
    assert_eq!(post(RESPONDER, "k9", close.clone()).await.status, 403);
    let closed = post(APPROVER, "k9", close).await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    assert_eq!(closed.body["state"], "CLOSED");
    // CLOSED is final: no assignment, no transition; a note is still welcome.
    let assign = api
        .post(
            &format!("/incidents/{id}/assignee"),
            "/incidents/{id}/assignee",
            RESPONDER,
            "a1",
            r#"{"assignee":"bob"}"#,
        )
        .await;
    assert_eq!(assign.status, 422);
    assert_eq!(assign.code(), "incident_closed");
    let reopen = post(APPROVER, "k10", transition("MITIGATING", 4)).await;
    assert_eq!(reopen.status, 422);
    assert_eq!(reopen.body["allowed"], json!([]));
    let note = api
        .post(
            &format!("/incidents/{id}/notes"),
            "/incidents/{id}/notes",
            APPROVER,
            "n1",
            r#"{"text":"postmortem: PM-12"}"#,
        )
        .await;
    assert_eq!(note.status, 200);
}

#[tokio::test]
async fn notes_assignee_and_severity_validate_their_bodies_and_keys() {
    let api = TestApi::new();
    let id = api.seed_incident().await;
    let assign = api
        .post(
            &format!("/incidents/{id}/assignee"),
            "/incidents/{id}/assignee",
            RESPONDER,
            "a1",
            r#"{"assignee":"bob"}"#,
        )
        .await;
    assert_eq!(assign.status, 200);
    assert_eq!(assign.body["assignee"], "bob");
    for (suffix, body, field) in [
        ("/notes", r#"{"text":"   "}"#, Some("text")),
        ("/notes", r#"{"note":"x"}"#, None),
        ("/assignee", r#"{"assignee":""}"#, Some("assignee")),
        ("/severity", r#"{"severity":"SEV0","reason":"x"}"#, None),
        (
            "/severity",
            r#"{"severity":"SEV1","reason":""}"#,
            Some("reason"),
        ),
        (
            "/transitions",
            r#"{"to":"ACKNOWLEDGED","reason":"x"}"#,
            None,
        ),
        ("/transitions", "not json", None),
    ] {
        let answer = api
            .post(
                &format!("/incidents/{id}{suffix}"),
                &format!("/incidents/{{id}}{suffix}"),
                RESPONDER,
                "v1",
                body,
            )
            .await;
        assert_eq!(answer.status, 400, "{suffix} {body}: {}", answer.body);
        assert_eq!(answer.code(), "invalid_body");
        if let Some(field) = field {
            assert_eq!(answer.body["field"], field, "{suffix} {body}");
        }
    }
    let route = "/incidents/{id}/notes";
    let uri = format!("/incidents/{id}/notes");
    let missing = api
        .send(
            "POST",
            &uri,
            Some(route),
            Some(RESPONDER),
            &[],
            r#"{"text":"x"}"#,
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.code(), "missing_idempotency_key");
    for key in ["has space", "slash/key", &"k".repeat(129)] {
        let bad = api
            .send(
                "POST",
                &uri,
                Some(route),
                Some(RESPONDER),
                &[("idempotency-key", key)],
                r#"{"text":"x"}"#,
            )
            .await;
        assert_eq!(bad.status, 400);
        assert_eq!(bad.code(), "invalid_idempotency_key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transitions_with_the_same_expected_version_exactly_one_wins() {
    let api = std::sync::Arc::new(TestApi::new());
    let id = api.seed_incident().await;
    let mut tasks = Vec::new();
    for index in 0..8 {
        let api = std::sync::Arc::clone(&api);
        let uri = format!("/incidents/{id}/transitions");
        tasks.push(tokio::spawn(async move {
            let key = format!("racer-{index}");
            api.post(
                &uri,
                TRANSITIONS,
                RESPONDER,
                &key,
                &transition("ACKNOWLEDGED", 1),
            )
            .await
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        if answer.status == 409 {
            assert_eq!(answer.code(), "version_conflict");
        }
        statuses.push(answer.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
    let detail = api.get(&format!("/incidents/{id}"), ID_ROUTE, READER).await;
    assert_eq!(detail.body["summary"]["version"], 2);
}

#[tokio::test]
async fn an_unauthenticated_caller_learns_nothing() {
    let api = TestApi::new();
    let id = api.seed_incident().await;
    let unknown = "cd".repeat(32);
    for (method, uri, route) in [
        ("GET", "/incidents".to_owned(), Some("/incidents")),
        ("GET", format!("/incidents/{id}"), Some(ID_ROUTE)),
        ("GET", format!("/incidents/{unknown}"), Some(ID_ROUTE)),
        (
            "GET",
            format!("/incidents/{id}/timeline"),
            Some("/incidents/{id}/timeline"),
        ),
        (
            "GET",
            format!("/incidents/{id}/evidence"),
            Some("/incidents/{id}/evidence"),
        ),
        (
            "GET",
            format!("/incidents/{id}/replay"),
            Some("/incidents/{id}/replay"),
        ),
        (
            "POST",
            format!("/incidents/{id}/transitions"),
            Some(TRANSITIONS),
        ),
        (
            "POST",
            format!("/incidents/{id}/notes"),
            Some("/incidents/{id}/notes"),
        ),
        (
            "POST",
            format!("/incidents/{id}/assignee"),
            Some("/incidents/{id}/assignee"),
        ),
        (
            "POST",
            format!("/incidents/{id}/severity"),
            Some("/incidents/{id}/severity"),
        ),
        ("POST", "/signals".to_owned(), Some("/signals")),
        ("GET", "/no/such/route".to_owned(), None),
        ("DELETE", format!("/incidents/{id}"), None),
    ] {
        let answer = api.send(method, &uri, route, None, &[], "{not json").await;
        assert_eq!(answer.status, 401, "{method} {uri}");
        assert_eq!(answer.code(), "unauthenticated");
        assert_eq!(answer.headers["www-authenticate"], "AWS4-HMAC-SHA256");
        assert_eq!(answer.content_type(), "application/problem+json");
    }
    // Authenticated: an unknown route and a wrong method say so.
    let route = api
        .send("GET", "/no/such/route", None, Some(READER), &[], "")
        .await;
    assert_eq!((route.status, route.code()), (404, "route_not_found"));
    let method = api
        .send(
            "DELETE",
            &format!("/incidents/{id}"),
            None,
            Some(READER),
            &[],
            "",
        )
        .await;
    assert_eq!((method.status, method.code()), (405, "method_not_allowed"));
    // Without the right role, reads and ingest are refused too.
    let read = api.get("/incidents", "/incidents", INGESTER).await;
    assert_eq!((read.status, read.code()), (403, "forbidden"));
    let ingest = api
        .send(
            "POST",
            "/signals",
            Some("/signals"),
            Some(APPROVER),
            &[],
            ALERTMANAGER_STORM,
        )
        .await;
    assert_eq!(ingest.status, 403);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_before_anything_else() {
    let api = TestApi::new();
    let big = "x".repeat(opx_api::REQUEST_BODY_LEN_MAX + 1);
    let declared_len = big.len().to_string();
    for headers in [vec![], vec![("content-length", declared_len.as_str())]] {
        for caller in [Some(INGESTER), None] {
            let answer = api
                .send("POST", "/signals", Some("/signals"), caller, &headers, &big)
                .await;
            assert_eq!(answer.status, 413, "{headers:?} {caller:?}");
            assert_eq!(answer.code(), "body_too_large");
        }
    }
    let at_limit = "x".repeat(opx_api::REQUEST_BODY_LEN_MAX);
    let answer = api
        .send(
            "POST",
            "/signals",
            Some("/signals"),
            Some(INGESTER),
            &[],
            &at_limit,
        )
        .await;
    assert_eq!(
        answer.status, 400,
        "the limit itself is allowed; the payload is then refused"
    );
}

#[tokio::test]
async fn a_store_outage_is_503_and_a_corrupt_projection_500() {
    let api = TestApi::new();
    let id = api.seed_incident().await;
    api.store.down.store(true, Ordering::SeqCst);
    for (uri, route) in [
        ("/incidents".to_owned(), "/incidents"),
        (format!("/incidents/{id}"), ID_ROUTE),
    ] {
        let answer = api.get(&uri, route, READER).await;
        assert_eq!(answer.status, 503, "{uri}");
        assert_eq!(answer.code(), "unavailable");
        assert_eq!(answer.headers["retry-after"], "1");
    }
    let transition_answer = api
        .post(
            &format!("/incidents/{id}/transitions"),
            TRANSITIONS,
            RESPONDER,
            "k",
            &transition("ACKNOWLEDGED", 1),
        )
        .await;
    assert_eq!(transition_answer.status, 503);
    api.store.down.store(false, Ordering::SeqCst);
    // After the outage, the retried request with the same key is applied once.
    let retried = api
        .post(
            &format!("/incidents/{id}/transitions"),
            TRANSITIONS,
            RESPONDER,
            "k",
            &transition("ACKNOWLEDGED", 1),
        )
        .await;
    assert_eq!(retried.status, 200);

    let broken = "ef".repeat(32);
    api.store
        .commit(Commit {
            projections: vec![ProjectionChange::Put {
                projection: Projection {
                    kind: PROJECTION_INCIDENT.to_owned(),
                    key: broken.clone(),
                    version: 1,
                    document: b"{\"not\":\"an incident\"}".to_vec(),
                },
                expected_version: None,
            }],
            ..Commit::default()
        })
        .await
        .unwrap();
    let answer = api
        .get(&format!("/incidents/{broken}"), ID_ROUTE, READER)
        .await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.code(), "internal");
    let list = api.get("/incidents", "/incidents", READER).await;
    assert_eq!(list.status, 500);
    // The per-incident replay says the projection has no events behind it: 404, as the
    // stream does not exist.
    let replay = api
        .get(
            &format!("/incidents/{broken}/replay"),
            "/incidents/{id}/replay",
            READER,
        )
        .await;
    assert_eq!(replay.status, 404);
}

#[tokio::test]
async fn replay_reports_a_projection_that_differs_from_its_events() {
    let api = TestApi::new();
    let id = api.seed_incident().await;
    let stored = api
        .store
        .projection(PROJECTION_INCIDENT, &id)
        .await
        .unwrap()
        .unwrap();
    let mut document: Value = serde_json::from_slice(&stored.document).unwrap();
    document["assignee"] = json!("mallory");
    api.store
        .commit(Commit {
            projections: vec![ProjectionChange::Put {
                projection: Projection {
                    version: stored.version + 1,
                    document: serde_json::to_vec(&document).unwrap(),
                    ..stored.clone()
                },
                expected_version: Some(stored.version),
            }],
            ..Commit::default()
        })
        .await
        .unwrap();
    let replay = api
        .get(
            &format!("/incidents/{id}/replay"),
            "/incidents/{id}/replay",
            READER,
        )
        .await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body["ok"], false);
    assert_eq!(replay.body["divergences"][0]["kind"], "projection_mismatch");
}
