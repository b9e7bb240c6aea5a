//! The hostile-input corpus (tests/corpus/bad) through the `signal-ingest` handler. A
//! Lambda event is JSON the runtime already decoded, so the payloads that are not JSON
//! cannot reach a handler (nor can duplicate keys, which decoding resolves); each of the
//! others is refused item by item with a field and a
//! reason and recorded as a reject, nothing else is written, and the handler keeps
//! answering: a valid alarm event sent afterwards is accepted.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod support;

use opx_app::pipeline::Pipeline;
use opx_app::ports::{NoPublisher, StoreRead};
use opx_lambda::ingest::handle_signal_ingest;
use serde_json::Value;
use std::path::Path;
use support::*;

#[tokio::test]
async fn every_hostile_json_payload_is_refused_and_the_handler_keeps_answering() {
    let temp = fresh_store();
    let config = config();
    let pipeline = Pipeline::new(&temp.store, &NoPublisher, &config);
    let harness = Harness::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/bad");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let mut handled = 0;
    for (index, file) in files.iter().enumerate() {
        let Ok(event) = serde_json::from_slice::<Value>(&std::fs::read(file).unwrap()) else {
            continue;
        };
        // The runtime's decoding keeps the last of duplicate keys before the handler runs,
        // so that refusal (made on the raw bytes by `opx ingest` and the API) cannot
        // happen here.
        if file.ends_with("duplicate-keys.json") {
            continue;
        }
        handled += 1;
        let request_id = format!("req-bad-{index}");
        let invocation = harness.invocation("signal-ingest", &request_id);
        match handle_signal_ingest(&pipeline, &invocation, &event).await {
            Ok(summary) => {
                assert_eq!(summary.accepted, 0, "{file:?}: {summary:?}");
                assert!(summary.rejected >= 1, "{file:?}: {summary:?}");
                for rejection in &summary.rejections {
                    let (field, reason) = rejection.split_once(": ").unwrap();
                    assert!(!field.is_empty() && reason.len() > 10, "{rejection}");
                }
            }
            Err(error) => {
                assert!(!error.is_retryable(), "{file:?}: {error}");
                assert!(error.to_string().len() > 20, "{file:?}: {error}");
            }
        }
    }
    assert!(handled >= 80, "{handled} JSON payloads reached the handler");
    assert!(temp
        .store
        .list_streams(None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(!rejects(&temp.store).await.is_empty());
    // Still answering.
    let valid: Value = serde_json::from_str(include_str!(
        "../../opx-domain/tests/fixtures/sources/eventbridge_alarm.json"
    ))
    .unwrap();
    let invocation = harness.invocation("signal-ingest", "req-valid");
    let summary = handle_signal_ingest(&pipeline, &invocation, &valid)
        .await
        .unwrap();
    assert_eq!(summary.accepted, 1);
}
