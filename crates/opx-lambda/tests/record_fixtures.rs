//! Re-records the fixtures that hold real event hashes (`bus_event_*.json`,
//! `dynamodb_stream_batch.json`) from the recorded alarm payloads, when
//! `OPX_WRITE_FIXTURES=1`. Otherwise it checks that the fixtures on disk are exactly what
//! recording them again would write, so they can never drift from the code.

// Test code: helpers outside #[test] functions unwrap too; a failed step is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use opx_app::pipeline::Pipeline;
use opx_app::ports::{Stage, WorkItem};
use serde_json::{json, Value};
use support::*;

async fn recorded() -> Vec<(&'static str, Value)> {
    let temp = fresh_store();
    let config = config();
    let bus = CapturePublisher::default();
    let pipeline = Pipeline::new(&temp.store, &bus, &config);
    let harness = Harness::new();
    let events = fixture!("eventbridge_alarm_events.json");
    let mut accepted = Vec::new();
    for index in 0..3 {
        let invocation = harness.invocation("signal-ingest", "record");
        opx_lambda::ingest::handle_signal_ingest(&pipeline, &invocation, &events[index])
            .await
            .unwrap();
        accepted.extend(bus.take());
    }
    pipeline
        .run(&WorkItem {
            stage: Stage::Detect,
            input: accepted[0].pointer(),
        })
        .await
        .unwrap();
    let evaluated: Vec<_> = bus
        .take()
        .into_iter()
        .filter(|event| event.event_type == "SignalEvaluated")
        .collect();
    assert_eq!(evaluated.len(), 1);

    let mut tampered = event_image(&accepted[2]);
    let mut payload = accepted[2].payload.clone();
    let at = payload.len() - 3;
    payload[at] ^= 1;
    tampered["payload"] = json!({"B": base64(&payload)});
    let stream = json!({
        "Records": [
            stream_record("INSERT", event_image(&accepted[0]), "4600000000000000000100"),
            stream_record("MODIFY", event_image(&accepted[0]), "4600000000000000000101"),
            stream_record("INSERT", event_image(&accepted[1]), "4600000000000000000102"),
            stream_record("REMOVE", event_image(&accepted[1]), "4600000000000000000103"),
            stream_record("INSERT", tampered, "4600000000000000000104"),
            stream_record("INSERT", event_image(&accepted[0]), "4600000000000000000105"),
        ]
    });

    let mut malformed = bus_event(&accepted[0]);
    malformed["detail"] = json!({
        "stream_id": accepted[0].stream_id,
        "sequence": "one",
        "hash": accepted[0].hash.to_hex(),
        "event_type": "SignalAccepted"
    });
    vec![
        (
            "bus_event_signal_accepted_orders_5xx.json",
            bus_event(&accepted[0]),
        ),
        ("bus_event_misrouted.json", bus_event(&evaluated[0])),
        ("bus_event_malformed_detail.json", malformed),
        ("dynamodb_stream_batch.json", stream),
    ]
}

#[tokio::test]
async fn fixtures_match_a_fresh_recording() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    for (name, value) in recorded().await {
        let text = serde_json::to_string_pretty(&value).unwrap() + "\n";
        let path = format!("{dir}/{name}");
        #[allow(clippy::disallowed_methods)]
        let rewrite = std::env::var_os("OPX_WRITE_FIXTURES").is_some();
        if rewrite {
            #[allow(clippy::disallowed_methods)]
            std::fs::write(&path, &text).unwrap();
        }
        #[allow(clippy::disallowed_methods)]
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            on_disk, text,
            "{name} drifted; re-record with OPX_WRITE_FIXTURES=1"
        );
    }
}
