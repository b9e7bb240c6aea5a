//! Replay verification over a real SQLite store built by the real pipeline: a clean store
//! verifies, every tampering of the file is detected and named, and pending work is
//! reported as pending, never as divergence.

use opx_app::pipeline::{Pipeline, PipelineConfig, PROJECTION_INCIDENT};
use opx_app::ports::{NoPublisher, StoreRead};
use opx_app::replay::{
    verify, verify_slice, Divergence, DivergenceKind, VerifyCursor, VerifyOptions, VerifyReport,
};
use opx_domain::event::event_hash;
use opx_domain::hash::Digest;
use opx_domain::incident::{
    CloseAs, Incident, IncidentCommand, IncidentId, IncidentState, Principal,
};
use opx_domain::rules::RuleSet;
use opx_domain::signal::Signal;
use opx_domain::source::{parse_payload, SourceConfig};
use opx_domain::time::EpochMs;
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use rusqlite::{params, Connection};
use tempfile::TempDir;

/// A CloudWatch alarm state change as EventBridge delivers it.
fn eventbridge(alarm: &str, state: &str, previous: &str, at: &str) -> Signal {
    let payload = format!(
        r#"{{
  "version": "0",
  "id": "c4c1c1c9-6542-e61b-6ef0-{suffix}",
  "detail-type": "CloudWatch Alarm State Change",
  "source": "aws.cloudwatch",
  "account": "123456789012",
  "time": "{at}Z",
  "region": "us-east-1",
  "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm}"],
  "detail": {{
    "alarmName": "{alarm}",
    "state": {{
      "value": "{state}",
      "reason": "Threshold Crossed: 1 out of the last 1 datapoints was greater than the threshold (5.0).",
      "timestamp": "{at}.512+0000"
    }},
    "previousState": {{
      "value": "{previous}",
      "reason": "Threshold Crossed: 1 out of the last 1 datapoints was not greater than the threshold (5.0).",
      "timestamp": "2026-11-20T11:14:02.116+0000"
    }},
    "configuration": {{ "description": "{alarm} above threshold" }}
  }}
}}"#,
        suffix = &format!("{:012x}", alarm.len() * 1000 + at.len())[..12],
    );
    let parsed =
        parse_payload(payload.as_bytes(), &SourceConfig::default()).expect("the payload parses");
    let mut items = parsed.items;
    assert_eq!(items.len(), 1, "one signal per EventBridge event");
    items.remove(0).expect("the signal is valid")
}

fn firing(alarm: &str, at: &str) -> Signal {
    eventbridge(alarm, "ALARM", "OK", at)
}

fn recovered(alarm: &str, at: &str) -> Signal {
    eventbridge(alarm, "OK", "ALARM", at)
}

/// The scenario's signals: a storm of three orders alarms, a storm of two checkout alarms,
/// a lone payments alarm (must not promote), and the recovery of one orders alarm.
fn scenario() -> Vec<Signal> {
    vec![
        firing("orders-api-5xx", "2026-11-24T03:00:10"),
        firing("orders-api-latency", "2026-11-24T03:00:40"),
        firing("orders-db-connections", "2026-11-24T03:01:30"),
        firing("checkout-api-5xx", "2026-11-24T03:02:00"),
        firing("checkout-api-latency", "2026-11-24T03:02:20"),
        firing("checkout-queue-depth", "2026-11-24T03:02:50"),
        firing("payments-api-5xx", "2026-11-24T03:10:00"),
        recovered("orders-api-5xx", "2026-11-24T03:20:41"),
    ]
}

struct Fixture {
    store: SqliteStore,
    config: PipelineConfig,
    _dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(dir.path().join("opx.db"), SqliteOptions::default())
            .expect("the store opens");
        let config = PipelineConfig::with_rule_files(RuleSet::default_rule_files())
            .expect("the default rules load");
        Fixture {
            store,
            config,
            _dir: dir,
        }
    }

    fn pipeline(&self) -> Pipeline<'_, SqliteStore, NoPublisher> {
        Pipeline::new(&self.store, &NoPublisher, &self.config)
    }

    async fn ingest(&self, signals: &[Signal]) {
        for signal in signals {
            self.pipeline().ingest(signal).await.expect("ingest");
        }
    }

    async fn drain(&self) {
        let report = self.pipeline().drain(u64::MAX).await.expect("drain");
        assert!(report.left_queued.is_empty(), "nothing left queued");
    }

    async fn incidents(&self) -> Vec<Incident> {
        let page = self
            .store
            .list_projections(PROJECTION_INCIDENT, None, 100)
            .await
            .expect("list incidents");
        let mut incidents = Vec::new();
        for projection in &page.items {
            let id =
                IncidentId(Digest::from_hex(&projection.key).expect("an incident key is a digest"));
            let incident = self
                .pipeline()
                .load_incident(&id)
                .await
                .expect("load")
                .expect("the incident has events");
            incidents.push(incident);
        }
        incidents
    }

    async fn incident_of(&self, service: &str) -> Incident {
        self.incidents()
            .await
            .into_iter()
            .find(|incident| incident.service == service)
            .unwrap_or_else(|| panic!("an incident for {service}"))
    }

    async fn transition(&self, id: &IncidentId, to: IncidentState, close_as: Option<CloseAs>) {
        let before = self
            .pipeline()
            .load_incident(id)
            .await
            .expect("load")
            .expect("the incident exists");
        let command = IncidentCommand::Transition {
            principal: Principal::local("alice").expect("a local principal"),
            at: EpochMs(1_795_500_000_000),
            to,
            reason: "verified by the on-call engineer".to_owned(),
            expected_lifecycle_version: before.lifecycle_version,
            close_as,
            resolution_summary: None,
        };
        self.pipeline()
            .execute_human(id, &command)
            .await
            .expect("the transition is allowed");
    }

    /// The whole scenario, drained, with the orders incident acknowledged and the checkout
    /// incident closed as a false positive.
    async fn full() -> Fixture {
        let fixture = Fixture::new();
        let mut signals = scenario();
        let recovery = signals.pop().expect("the recovery comes last");
        fixture.ingest(&signals).await;
        fixture.drain().await;
        // The recovery arrives once the incident is open (one ingest run per delivery).
        fixture.ingest(&[recovery]).await;
        fixture.drain().await;
        let orders = fixture.incident_of("orders").await;
        fixture
            .transition(&orders.id, IncidentState::Acknowledged, None)
            .await;
        let checkout = fixture.incident_of("checkout").await;
        fixture
            .transition(
                &checkout.id,
                IncidentState::Closed,
                Some(CloseAs::FalsePositive),
            )
            .await;
        fixture
    }

    async fn verify(&self) -> VerifyReport {
        verify(&self.store, &VerifyOptions::default())
            .await
            .expect("the store is readable")
    }

    /// A second connection to the same file, as an attacker (or a bad disk) would have.
    fn raw(&self) -> Connection {
        Connection::open(self.store.path()).expect("the file opens")
    }
}

fn describe(report: &VerifyReport) -> String {
    report
        .divergences
        .iter()
        .map(Divergence::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first divergence, which must name `stream_id`, `sequence` and `kind`.
fn assert_first(
    report: &VerifyReport,
    stream_id: &str,
    sequence: u64,
    kind: DivergenceKind,
) -> Divergence {
    assert!(!report.ok(), "tampering must be detected");
    let first = report.first_divergence().expect("a divergence").clone();
    assert_eq!(
        (first.stream_id.as_deref(), first.sequence, first.kind),
        (Some(stream_id), Some(sequence), kind),
        "first divergence; all:\n{}",
        describe(report)
    );
    assert_eq!(report.first_divergent_stream.as_deref(), Some(stream_id));
    assert_eq!(report.first_divergent_sequence, Some(sequence));
    first
}

/// One event of a given type, by SQL.
fn event_of_type(connection: &Connection, event_type: &str, nth: u32) -> (String, u64) {
    connection
        .query_row(
            "SELECT stream_id, sequence FROM events WHERE event_type = ?1 ORDER BY stream_id, sequence LIMIT 1 OFFSET ?2",
            params![event_type, nth],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
        )
        .map(|(stream_id, sequence)| (stream_id, u64::try_from(sequence).expect("positive")))
        .expect("such an event is stored")
}

#[tokio::test]
async fn a_clean_store_verifies_with_the_expected_counts() {
    let fixture = Fixture::full().await;
    let report = fixture.verify().await;
    assert!(report.ok(), "divergences:\n{}", describe(&report));
    assert!(report.pending.is_empty());

    let incidents = fixture.incidents().await;
    let mut states: Vec<(String, IncidentState)> = incidents
        .iter()
        .map(|incident| (incident.service.clone(), incident.state))
        .collect();
    states.sort();
    assert_eq!(
        states,
        vec![
            ("checkout".to_owned(), IncidentState::Closed),
            ("orders".to_owned(), IncidentState::Acknowledged)
        ],
        "the lone payments alarm does not promote"
    );
    let orders = fixture.incident_of("orders").await;
    assert_eq!(
        orders.recovery_count, 1,
        "the recovery is on the orders incident"
    );

    let connection = fixture.raw();
    let count = |sql: &str| -> u64 {
        let count: i64 = connection
            .query_row(sql, [], |row| row.get(0))
            .expect("count");
        u64::try_from(count).expect("a count")
    };
    assert_eq!(
        report.streams,
        count("SELECT count(DISTINCT stream_id) FROM events")
    );
    assert_eq!(report.events, count("SELECT count(*) FROM events"));
    assert_eq!(
        report.idempotency_checked,
        count("SELECT count(*) FROM idempotency")
    );
    // Every SignalEvaluated, DetectionCorrelated, ConfidenceAssessed, PromotionDecided and
    // RecoveryRecorded.
    assert_eq!(
        report.decisions_rederived,
        count(
            "SELECT count(*) FROM events WHERE event_type IN \
             ('SignalEvaluated', 'DetectionCorrelated', 'ConfidenceAssessed', 'PromotionDecided', \
             'RecoveryRecorded')"
        )
    );
    assert!(
        report.decisions_rederived > 8,
        "eight signals were evaluated, and more was decided"
    );
    // Two incident projections, the orders open pointer, the checkout group generation,
    // and the recoveries seen of the two services (promotions guard on them too).
    assert_eq!(report.projections_checked, 6);
    assert_eq!(count("SELECT count(*) FROM projections"), 6);
}

#[tokio::test]
async fn pending_work_is_reported_as_pending_not_as_divergence() {
    let fixture = Fixture::new();
    let signals = scenario();
    fixture.ingest(&signals).await;
    let report = fixture.verify().await;
    assert!(report.ok(), "divergences:\n{}", describe(&report));
    assert_eq!(
        report.pending.len(),
        signals.len(),
        "one detect item per accepted signal"
    );

    // Stopping after any number of steps (a crash between commits) leaves a store that
    // verifies, with the rest pending.
    for step in 1..=200 {
        fixture.pipeline().drain(1).await.expect("one step");
        let report = fixture.verify().await;
        assert!(report.ok(), "after {step} steps:\n{}", describe(&report));
        if report.pending.is_empty() {
            return;
        }
    }
    panic!("the pipeline did not converge in 200 steps");
}

#[tokio::test]
async fn one_changed_payload_byte_is_named() {
    let fixture = Fixture::full().await;
    let connection = fixture.raw();
    let (stream_id, sequence) = event_of_type(&connection, "ConfidenceAssessed", 0);
    let mut payload: Vec<u8> = connection
        .query_row(
            "SELECT payload FROM events WHERE stream_id = ?1 AND sequence = ?2",
            params![stream_id, sequence as i64],
            |row| row.get(0),
        )
        .expect("the payload");
    let at = payload
        .iter()
        .position(|byte| byte.is_ascii_digit())
        .expect("a digit");
    payload[at] = if payload[at] == b'9' {
        b'8'
    } else {
        payload[at] + 1
    };
    connection
        .execute(
            "UPDATE events SET payload = ?3 WHERE stream_id = ?1 AND sequence = ?2",
            params![stream_id, sequence as i64, payload],
        )
        .expect("tamper");
    let report = fixture.verify().await;
    let first = assert_first(&report, &stream_id, sequence, DivergenceKind::ChainBroken);
    assert_eq!(first.field.as_deref(), Some("hash"));
}

#[tokio::test]
async fn a_deleted_event_is_named() {
    let fixture = Fixture::full().await;
    let connection = fixture.raw();
    // The orders group: its first detection, then more; delete the second event.
    let (stream_id, _) = event_of_type(&connection, "PromotionDecided", 0);
    connection
        .execute(
            "DELETE FROM events WHERE stream_id = ?1 AND sequence = 2",
            params![stream_id],
        )
        .expect("tamper");
    let report = fixture.verify().await;
    let first = assert_first(&report, &stream_id, 2, DivergenceKind::ChainBroken);
    assert_eq!(first.field.as_deref(), Some("sequence"));
    assert_eq!((first.expected.as_str(), first.actual.as_str()), ("2", "3"));
}

#[tokio::test]
async fn a_deleted_last_event_is_named_by_the_record_of_the_step_that_wrote_it() {
    let fixture = Fixture::full().await;
    let connection = fixture.raw();
    // The lone payments alarm's evaluation: the last event of its signal stream, so the
    // chain alone cannot see it is gone.
    let stream_id: String = connection
        .query_row(
            "SELECT stream_id FROM events WHERE event_type = 'SignalAccepted' AND CAST(payload AS TEXT) LIKE '%payments-api-5xx%'",
            [],
            |row| row.get(0),
        )
        .expect("the payments signal");
    connection
        .execute(
            "DELETE FROM events WHERE stream_id = ?1 AND sequence = 2",
            params![stream_id],
        )
        .expect("tamper");
    let report = fixture.verify().await;
    assert!(!report.ok());
    // Both the detect step that wrote it and the correlate step that consumed it name it.
    let detect_key = format!("stage/detect/{stream_id}/1");
    let correlate_key = format!("stage/correlate/{stream_id}/2");
    for key in [detect_key, correlate_key] {
        let named = report.divergences.iter().any(|divergence| {
            divergence.stream_id.as_deref() == Some(&stream_id)
                && divergence.sequence == Some(2)
                && divergence.kind == DivergenceKind::IdempotencyMismatch
                && divergence.record.as_deref() == Some(key.as_str())
        });
        assert!(
            named,
            "{key} names the deleted event; all:\n{}",
            describe(&report)
        );
    }
}

#[tokio::test]
async fn two_swapped_events_are_named() {
    let fixture = Fixture::full().await;
    let connection = fixture.raw();
    let (stream_id, _) = event_of_type(&connection, "SignalEvaluated", 0);
    for (from, to) in [(1, 1_000_000), (2, 1), (1_000_000, 2)] {
        connection
            .execute(
                "UPDATE events SET sequence = ?3 WHERE stream_id = ?1 AND sequence = ?2",
                params![stream_id, from, to],
            )
            .expect("tamper");
    }
    let report = fixture.verify().await;
    let first = assert_first(&report, &stream_id, 1, DivergenceKind::ChainBroken);
    assert_eq!(first.field.as_deref(), Some("hash"));
}

#[tokio::test]
async fn an_edited_projection_is_named_with_its_field() {
    let fixture = Fixture::full().await;
    let orders = fixture.incident_of("orders").await;
    let connection = fixture.raw();
    let document: Vec<u8> = connection
        .query_row(
            "SELECT document FROM projections WHERE kind = 'incident' AND key = ?1",
            params![orders.id.to_string()],
            |row| row.get(0),
        )
        .expect("the orders incident projection");
    let edited = String::from_utf8(document)
        .expect("utf-8")
        .replace("\"ACKNOWLEDGED\"", "\"MITIGATING\"");
    connection
        .execute(
            "UPDATE projections SET document = ?2 WHERE kind = 'incident' AND key = ?1",
            params![orders.id.to_string(), edited.into_bytes()],
        )
        .expect("tamper");
    let head: i64 = connection
        .query_row(
            "SELECT max(sequence) FROM events WHERE stream_id = ?1",
            params![orders.stream_id()],
            |row| row.get(0),
        )
        .expect("the head");
    let report = fixture.verify().await;
    let head = u64::try_from(head).expect("positive");
    let first = assert_first(
        &report,
        &orders.stream_id(),
        head,
        DivergenceKind::ProjectionMismatch,
    );
    // Fields are compared in key order: the last transition's target comes first.
    assert_eq!(first.field.as_deref(), Some("last_transition.to"));
    assert_eq!(
        (first.expected.as_str(), first.actual.as_str()),
        ("\"ACKNOWLEDGED\"", "\"MITIGATING\"")
    );
    assert_eq!(first.record, Some(format!("incident/{}", orders.id)));
}

#[tokio::test]
async fn a_stored_projection_without_a_rebuild_is_named() {
    let fixture = Fixture::full().await;
    let checkout = fixture.incident_of("checkout").await;
    let connection = fixture.raw();
    // A closed incident's open pointer reappears.
    let pointer = format!(
        r#"{{"incident_id":"{}","environment":"{}","service":"checkout"}}"#,
        checkout.id, checkout.environment
    );
    let key = opx_app::pipeline::open_incident_key(&checkout.environment, "checkout");
    connection
        .execute(
            "INSERT INTO projections (kind, key, version, document) VALUES ('open_incident', ?1, 1, ?2)",
            params![key, pointer.into_bytes()],
        )
        .expect("tamper");
    let report = fixture.verify().await;
    assert!(!report.ok());
    let first = report.first_divergence().expect("a divergence");
    assert_eq!(
        first.kind,
        DivergenceKind::ProjectionMismatch,
        "{}",
        describe(&report)
    );
    assert_eq!(first.stream_id, Some(checkout.stream_id()));
    assert_eq!(first.record, Some(format!("open_incident/{key}")));
}

#[tokio::test]
async fn an_altered_idempotency_record_is_named() {
    let fixture = Fixture::full().await;
    let connection = fixture.raw();
    let (stream_id, sequence) = event_of_type(&connection, "SignalAccepted", 2);
    let key = format!("stage/detect/{stream_id}/{sequence}");
    let changed = connection
        .execute(
            "UPDATE idempotency SET request_hash = zeroblob(32) WHERE key = ?1",
            params![key],
        )
        .expect("tamper");
    assert_eq!(changed, 1);
    let report = fixture.verify().await;
    let first = assert_first(
        &report,
        &stream_id,
        sequence,
        DivergenceKind::IdempotencyMismatch,
    );
    assert_eq!(first.field.as_deref(), Some("request_hash"));
    assert_eq!(first.record.as_deref(), Some(key.as_str()));
    assert_eq!(first.actual, "0".repeat(64));
}

#[tokio::test]
async fn an_altered_signal_record_is_named() {
    let fixture = Fixture::full().await;
    let connection = fixture.raw();
    let (stream_id, _) = event_of_type(&connection, "SignalAccepted", 4);
    let key = format!("signal/{}", stream_id.trim_start_matches("signal:"));
    let changed = connection
        .execute(
            "UPDATE idempotency SET request_hash = zeroblob(32) WHERE key = ?1",
            params![key],
        )
        .expect("tamper");
    assert_eq!(changed, 1);
    let report = fixture.verify().await;
    let first = assert_first(&report, &stream_id, 1, DivergenceKind::IdempotencyMismatch);
    assert_eq!(first.field.as_deref(), Some("request_hash"));
}

#[tokio::test]
async fn a_foreign_stream_is_named_and_the_report_keeps_at_most_the_limit() {
    let fixture = Fixture::full().await;
    let connection = fixture.raw();
    // Re-home one whole signal stream under an id opx never writes, and break another
    // chain, so there are several divergences.
    let (stream_id, _) = event_of_type(&connection, "SignalAccepted", 1);
    connection
        .execute(
            "UPDATE events SET stream_id = 'scratch:notes' WHERE stream_id = ?1",
            params![stream_id],
        )
        .expect("tamper");
    let report = verify(&fixture.store, &VerifyOptions { divergences_max: 1 })
        .await
        .expect("readable");
    assert!(!report.ok());
    assert_eq!(report.divergences.len(), 1);
    assert!(report.divergences_total > 1, "{}", describe(&report));
    let full = fixture.verify().await;
    assert!(
        full.divergences.iter().any(
            |divergence| divergence.kind == DivergenceKind::UnknownStream
                && divergence.stream_id.as_deref() == Some("scratch:notes")
        ),
        "{}",
        describe(&full)
    );
}

#[tokio::test]
async fn a_rewritten_and_resealed_decision_is_caught_by_re_deriving_it() {
    let fixture = Fixture::full().await;
    let connection = fixture.raw();
    // An attacker who rewrites the lone payments alarm's evaluation (the last event of its
    // stream) and recomputes its hash keeps the chain intact; re-running detection does not.
    let stream_id: String = connection
        .query_row(
            "SELECT stream_id FROM events WHERE event_type = 'SignalAccepted' AND CAST(payload AS TEXT) LIKE '%payments-api-5xx%'",
            [],
            |row| row.get(0),
        )
        .expect("the payments signal");
    let (payload, previous): (Vec<u8>, Vec<u8>) = connection
        .query_row(
            "SELECT payload, previous_hash FROM events WHERE stream_id = ?1 AND sequence = 2",
            params![stream_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the evaluation");
    let text = String::from_utf8(payload).expect("utf-8");
    let rewritten = text.replace("\"severity\":\"SEV2\"", "\"severity\":\"SEV1\"");
    assert_ne!(rewritten, text, "the evaluation carries a SEV2 detection");
    let previous = Digest(previous.try_into().expect("32 bytes"));
    let hash = event_hash(
        &stream_id,
        2,
        "SignalEvaluated",
        1,
        rewritten.as_bytes(),
        &previous,
    );
    connection
        .execute(
            "UPDATE events SET payload = ?2, hash = ?3 WHERE stream_id = ?1 AND sequence = 2",
            params![stream_id, rewritten.into_bytes(), hash.0.to_vec()],
        )
        .expect("tamper");
    let report = fixture.verify().await;
    assert!(!report.ok());
    assert!(
        !report
            .divergences
            .iter()
            .any(|divergence| divergence.kind == DivergenceKind::ChainBroken),
        "the chain still holds: {}",
        describe(&report)
    );
    let named = report.divergences.iter().find(|divergence| {
        divergence.stream_id.as_deref() == Some(&stream_id)
            && divergence.sequence == Some(2)
            && divergence.kind == DivergenceKind::DecisionMismatch
    });
    let named =
        named.unwrap_or_else(|| panic!("the evaluation is named; all:\n{}", describe(&report)));
    assert_eq!(named.field.as_deref(), Some("outcome.severity"));
    assert_eq!(
        (named.expected.as_str(), named.actual.as_str()),
        ("\"SEV2\"", "\"SEV1\"")
    );
}

/// Verifies in slices of `items_max`, handing the cursor on as text as a Lambda function
/// would; returns the final report and how many slices it took.
async fn verify_in_slices(
    fixture: &Fixture,
    options: &VerifyOptions,
    items_max: usize,
) -> (VerifyReport, usize) {
    let mut cursor: Option<String> = None;
    let mut slices = 0;
    loop {
        slices += 1;
        assert!(slices < 10_000, "slices of {items_max} never end");
        let decoded = cursor
            .as_deref()
            .map(|text| VerifyCursor::decode(text).expect("our own cursor decodes"));
        let (report, next) = verify_slice(&fixture.store, options, decoded, items_max)
            .await
            .expect("the store is readable");
        match next {
            Some(next) => cursor = Some(next.encode()),
            None => return (report, slices),
        }
    }
}

/// Slices of 1, 2 and 7 items give exactly the one-pass report.
async fn assert_slices_agree(fixture: &Fixture, options: &VerifyOptions) -> VerifyReport {
    let whole = verify(&fixture.store, options)
        .await
        .expect("the store is readable");
    for items_max in [1, 2, 7] {
        let (sliced, slices) = verify_in_slices(fixture, options, items_max).await;
        assert_eq!(
            sliced,
            whole,
            "slices of {items_max}: {}\nvs one pass: {}",
            describe(&sliced),
            describe(&whole)
        );
        if items_max == 1 {
            assert!(
                slices as u64 > whole.streams,
                "one item per slice takes more slices ({slices}) than there are streams"
            );
        }
    }
    whole
}

#[tokio::test]
async fn slices_of_a_clean_store_give_the_one_pass_report() {
    let fixture = Fixture::full().await;
    let report = assert_slices_agree(&fixture, &VerifyOptions::default()).await;
    assert!(report.ok(), "{}", describe(&report));
}

#[tokio::test]
async fn slices_of_a_store_with_pending_work_give_the_one_pass_report() {
    let fixture = Fixture::new();
    fixture.ingest(&scenario()).await;
    fixture.pipeline().drain(9).await.expect("nine steps");
    let report = assert_slices_agree(&fixture, &VerifyOptions::default()).await;
    assert!(report.ok(), "{}", describe(&report));
    assert!(!report.pending.is_empty(), "work is still pending");
}

#[tokio::test]
async fn slices_of_a_tampered_store_give_the_one_pass_report() {
    let fixture = Fixture::full().await;
    let connection = fixture.raw();
    // Several kinds of damage at once: a changed payload, an edited projection, an altered
    // idempotency record, a deleted group generation.
    let (stream_id, sequence) = event_of_type(&connection, "DetectionCorrelated", 1);
    connection
        .execute(
            "UPDATE events SET payload = CAST(replace(CAST(payload AS TEXT), 'SEV', 'SEW') AS BLOB) WHERE stream_id = ?1 AND sequence = ?2",
            params![stream_id, sequence as i64],
        )
        .expect("tamper");
    connection
        .execute(
            "UPDATE projections SET document = CAST(replace(CAST(document AS TEXT), 'ACKNOWLEDGED', 'MITIGATING') AS BLOB) WHERE kind = 'incident'",
            [],
        )
        .expect("tamper");
    connection
        .execute(
            "UPDATE idempotency SET request_hash = zeroblob(32) WHERE key LIKE 'stage/assess/%'",
            [],
        )
        .expect("tamper");
    connection
        .execute(
            "DELETE FROM projections WHERE kind = 'group_generation'",
            [],
        )
        .expect("tamper");
    let whole = assert_slices_agree(&fixture, &VerifyOptions::default()).await;
    assert!(whole.divergences_total > 4, "{}", describe(&whole));
    // And with a report that keeps fewer divergences than there are.
    let few = assert_slices_agree(&fixture, &VerifyOptions { divergences_max: 3 }).await;
    assert_eq!(few.divergences.len(), 3);
    assert_eq!(few.divergences_total, whole.divergences_total);
}

#[tokio::test]
async fn a_cursor_of_another_format_is_refused() {
    let fixture = Fixture::full().await;
    let (_, next) = verify_slice(&fixture.store, &VerifyOptions::default(), None, 1)
        .await
        .expect("readable");
    let text = next.expect("more to do").encode();
    let other = text.replacen("\"format\":1", "\"format\":999", 1);
    assert_ne!(other, text, "the cursor names its format");
    assert!(VerifyCursor::decode(&other).is_err());
    assert!(VerifyCursor::decode("not a cursor").is_err());
}

#[tokio::test]
async fn an_edited_group_generation_is_named() {
    let fixture = Fixture::full().await;
    let checkout = fixture.incident_of("checkout").await;
    let connection = fixture.raw();
    let changed = connection
        .execute(
            "UPDATE projections SET document = CAST('{\"closed\":2}' AS BLOB), version = 2 WHERE kind = 'group_generation' AND key = ?1",
            params![checkout.group_id.to_string()],
        )
        .expect("tamper");
    assert_eq!(changed, 1);
    let report = fixture.verify().await;
    assert!(!report.ok());
    let first = report.first_divergence().expect("a divergence");
    assert_eq!(
        (first.kind, first.record.clone(), first.field.as_deref()),
        (
            DivergenceKind::ProjectionMismatch,
            Some(format!("group_generation/{}", checkout.group_id)),
            Some("closed")
        ),
        "{}",
        describe(&report)
    );
    assert_eq!((first.expected.as_str(), first.actual.as_str()), ("1", "2"));
}

#[tokio::test]
async fn a_deleted_group_generation_is_named_once() {
    let fixture = Fixture::full().await;
    let checkout = fixture.incident_of("checkout").await;
    let connection = fixture.raw();
    connection
        .execute(
            "DELETE FROM projections WHERE kind = 'group_generation'",
            [],
        )
        .expect("tamper");
    let report = fixture.verify().await;
    assert_eq!(report.divergences_total, 1, "{}", describe(&report));
    let first = &report.divergences[0];
    assert_eq!(first.kind, DivergenceKind::ProjectionMismatch);
    assert_eq!(
        first.record,
        Some(format!("group_generation/{}", checkout.group_id))
    );
    assert_eq!(first.actual, "(absent)");
}

#[tokio::test]
async fn a_lost_recovery_in_the_service_recoveries_is_named() {
    let fixture = Fixture::full().await;
    let orders = fixture.incident_of("orders").await;
    let key = opx_app::recovery::service_recoveries_key(&orders.environment, "orders");
    let connection = fixture.raw();
    let changed = connection
        .execute(
            "UPDATE projections SET document = CAST('{\"alarms\":{}}' AS BLOB) WHERE kind = 'service_recoveries' AND key = ?1",
            params![key],
        )
        .expect("tamper");
    assert_eq!(changed, 1);
    let report = fixture.verify().await;
    assert!(!report.ok());
    let recovery_stream: String = connection
        .query_row(
            "SELECT stream_id FROM events WHERE event_type = 'SignalAccepted' AND CAST(payload AS TEXT) LIKE '%\"state\":\"OK\"%'",
            [],
            |row| row.get(0),
        )
        .expect("the recovery signal");
    let first = assert_first(
        &report,
        &recovery_stream,
        2,
        DivergenceKind::ProjectionMismatch,
    );
    assert_eq!(first.record, Some(format!("service_recoveries/{key}")));
}

#[tokio::test]
async fn an_invented_recovery_in_the_service_recoveries_is_named() {
    let fixture = Fixture::full().await;
    let checkout = fixture.incident_of("checkout").await;
    let key = opx_app::recovery::service_recoveries_key(&checkout.environment, "checkout");
    let connection = fixture.raw();
    let invented = Digest::of_bytes(b"no such signal");
    let document = format!(
        r#"{{"alarms":{{"arm":[{{"event_time":1,"signal_id":"{invented}","alarm":"arm","alarm_name":"A"}}]}}}}"#
    );
    let changed = connection
        .execute(
            "UPDATE projections SET document = ?2 WHERE kind = 'service_recoveries' AND key = ?1",
            params![key, document.into_bytes()],
        )
        .expect("tamper");
    assert_eq!(changed, 1);
    let report = fixture.verify().await;
    assert_eq!(report.divergences_total, 1, "{}", describe(&report));
    let first = assert_first(
        &report,
        &format!("signal:{invented}"),
        2,
        DivergenceKind::ProjectionMismatch,
    );
    assert_eq!(first.record, Some(format!("service_recoveries/{key}")));
}
