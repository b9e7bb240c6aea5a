//! The hostile-input corpus (tests/corpus, see tests/corpus/generate.py) through
//! `POST /signals`: every payload is refused with a problem naming the field and the reason
//! (or, for a webhook, every item is), only rejects records are written, and the router
//! keeps serving: a valid storm sent afterwards is accepted.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use axum::body::Body;
use http::Request;
use opx_app::ports::StoreRead;
use std::path::{Path, PathBuf};
use support::*;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn every_hostile_payload_is_refused_by_name_and_the_api_keeps_serving() {
    let api = TestApi::new();
    let files = corpus();
    assert!(files.len() >= 100, "{} payloads", files.len());
    let mut refused_whole = 0;
    let mut too_large = 0;
    let mut refused_by_item = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let request = Request::builder()
            .method("POST")
            .uri("/signals")
            .header(CALLER_HEADER, INGESTER)
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .unwrap();
        let answer = send(&api.router, request).await;
        openapi().check("POST", "/signals", &answer);
        match answer.status {
            400 => {
                refused_whole += 1;
                assert_eq!(
                    answer.content_type(),
                    "application/problem+json",
                    "{file:?}"
                );
                assert!(!answer.code().is_empty(), "{file:?}: {}", answer.body);
                assert!(
                    answer.body["detail"]
                        .as_str()
                        .is_some_and(|detail| detail.len() > 10),
                    "{file:?}: {}",
                    answer.body
                );
            }
            413 => {
                too_large += 1;
                assert_eq!(answer.code(), "body_too_large", "{file:?}");
            }
            200 => {
                refused_by_item += 1;
                assert_eq!(answer.body["accepted"], 0, "{file:?}: {}", answer.body);
                let items = answer.body["items"].as_array().unwrap();
                assert!(!items.is_empty(), "{file:?}");
                for item in items {
                    assert_eq!(item["outcome"], "rejected", "{file:?}: {item}");
                    assert!(item["field"].as_str().is_some_and(|f| !f.is_empty()));
                    assert!(item["reason"].as_str().is_some_and(|r| r.len() > 10));
                }
            }
            status => panic!("{file:?}: {status} {}", answer.body),
        }
    }
    // Both ways of refusing were exercised: whole payloads, and every item of a payload.
    assert!(refused_whole > 0 && refused_by_item > 0);
    assert_eq!(too_large, 1, "only the payload over the limit is 413");
    // Nothing but rejects records was written.
    assert!(api
        .store
        .list_streams(None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(api
        .store
        .pending_work(None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    let mut rejects = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = api
            .store
            .list_rejects(cursor.as_deref(), 500)
            .await
            .unwrap();
        rejects += page.items.len();
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert!(
        rejects >= files.len() - too_large,
        "{rejects} rejects recorded"
    );
    // Still serving.
    let storm = api
        .send(
            "POST",
            "/signals",
            Some("/signals"),
            Some(INGESTER),
            &[],
            ALERTMANAGER_STORM,
        )
        .await;
    assert_eq!(storm.status, 200, "{}", storm.body);
    assert_eq!(storm.body["accepted"], 2);
}
