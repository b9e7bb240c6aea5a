//! What each stage declares (`Stage::output_event_types`, exported to the CDK app's stage
//! table) is what its steps write: the bundled sample, run step by step over a real SQLite
//! store, opens incidents, records recoveries and pages, and every event a step wrote is
//! of a type its stage declares.

use opx_app::ingest::{ingest_payload, IngestPolicy, Payload};
use opx_app::pipeline::{Pipeline, PipelineConfig};
use opx_app::ports::{NoPublisher, Stage, StoreRead};
use opx_domain::rules::RuleSet;
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use std::collections::{BTreeMap, BTreeSet};

const SAMPLE: &str = include_str!("../../opx-cli/demo/sample.ndjson");

#[tokio::test]
async fn every_event_a_step_writes_is_an_output_its_stage_declares() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store =
        SqliteStore::open(dir.path().join("opx.db"), SqliteOptions::default()).expect("a store");
    let config =
        PipelineConfig::with_rule_files(RuleSet::default_rule_files()).expect("the default rules");
    let pipeline = Pipeline::new(&store, &NoPublisher, &config);
    for line in SAMPLE.lines().filter(|line| !line.trim().is_empty()) {
        let report = ingest_payload(
            &pipeline,
            &IngestPolicy::EVERY_KIND,
            Payload::new("test:sample", line.as_bytes()),
        )
        .await;
        assert!(!report.incomplete(), "{line}");
    }
    let mut written: BTreeMap<Stage, BTreeSet<String>> = BTreeMap::new();
    let mut steps = 0;
    loop {
        let pending = store.pending_work(None, 1000).await.expect("pending work");
        if pending.items.is_empty() {
            break;
        }
        for item in pending.items {
            steps += 1;
            assert!(steps < 10_000, "the sample does not drain");
            let report = pipeline.run(&item).await.expect("a step");
            for pointer in report.events {
                let events = store
                    .read_stream(&pointer.stream_id, pointer.sequence, 1)
                    .await
                    .expect("the written event");
                let event_type = events[0].event_type.clone();
                assert!(
                    item.stage
                        .output_event_types()
                        .contains(&event_type.as_str()),
                    "a {} step wrote {event_type}, which Stage::output_event_types does not list",
                    item.stage.as_str()
                );
                written.entry(item.stage).or_default().insert(event_type);
            }
        }
    }
    // The sample exercises every stage's main output, so the check above is not vacuous.
    for (stage, event_type) in [
        (Stage::Detect, "SignalEvaluated"),
        (Stage::Correlate, "DetectionCorrelated"),
        (Stage::Promote, "RecoveryRecorded"),
        (Stage::Assess, "ConfidenceAssessed"),
        (Stage::Promote, "PromotionDecided"),
        (Stage::Promote, "IncidentOpened"),
    ] {
        assert!(
            written
                .get(&stage)
                .is_some_and(|types| types.contains(event_type)),
            "the sample never had a {} step write {event_type}: {written:?}",
            stage.as_str()
        );
    }
}
