//! What-if backtesting over a real SQLite store built by the real pipeline: a rule change
//! that adds an incident, one that removes one, one that changes nothing, one that changes
//! a severity, and a model change; each difference names its reason; the recorded store is
//! byte for byte what it was.

use opx_app::pipeline::{Pipeline, PipelineConfig, PROJECTION_INCIDENT};
use opx_app::ports::{NoPublisher, StoreRead};
use opx_app::whatif::{what_if, ChangeKind, WhatIfError, WhatIfReport, WhatIfRequest};
use opx_domain::confidence::{BandThresholds, ConfidenceModel, Factor, FactorWeights};
use opx_domain::hash::Digest;
use opx_domain::incident::{
    CloseAs, Incident, IncidentCommand, IncidentId, IncidentState, Principal,
};
use opx_domain::promotion::{Outcome, ReasonCode};
use opx_domain::rules::{RuleFile, RuleSet};
use opx_domain::signal::{Severity, Signal};
use opx_domain::source::{parse_payload, SourceConfig};
use opx_domain::time::EpochMs;
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use tempfile::TempDir;

/// A CloudWatch alarm state change as EventBridge delivers it.
fn eventbridge(alarm: &str, state: &str, previous: &str, at: &str) -> Signal {
    let payload = format!(
        r#"{{
  "version": "0",
  "id": "7b0c3e52-1d2f-4c1e-9a51-{suffix}",
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

/// When the on-call engineer closes the first checkout incident: after the first storms,
/// before the second checkout storm.
const CLOSE_AT: EpochMs = EpochMs(1_795_500_000_000); // 2026-11-24T06:00:00Z

/// The recorded history: an orders storm (three alarms, one recovers), a checkout storm
/// (three alarms), a lone payments alarm (does not promote); the checkout incident is
/// closed; then a second checkout storm (a new incident: without the close it would
/// attach to the first).
fn first_signals() -> Vec<Signal> {
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

fn second_signals() -> Vec<Signal> {
    vec![
        firing("checkout-api-5xx", "2026-11-24T07:30:00"),
        firing("checkout-api-latency", "2026-11-24T07:30:30"),
    ]
}

struct Fixture {
    store: SqliteStore,
    config: PipelineConfig,
    dir: TempDir,
}

impl Fixture {
    async fn recorded() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(dir.path().join("opx.db"), SqliteOptions::default())
            .expect("the store opens");
        let config = PipelineConfig::with_rule_files(RuleSet::default_rule_files())
            .expect("the default rules load");
        let fixture = Fixture { store, config, dir };
        fixture.ingest(&first_signals()).await;
        let checkout = fixture.incident_of("checkout", 0).await;
        fixture.close(&checkout).await;
        fixture.ingest(&second_signals()).await;
        let incidents = fixture.incidents().await;
        assert_eq!(
            incidents.len(),
            3,
            "orders, checkout, and checkout again after its first incident was closed"
        );
        fixture
    }

    fn pipeline(&self) -> Pipeline<'_, SqliteStore, NoPublisher> {
        Pipeline::new(&self.store, &NoPublisher, &self.config)
    }

    async fn ingest(&self, signals: &[Signal]) {
        for signal in signals {
            self.pipeline().ingest(signal).await.expect("ingest");
            let report = self.pipeline().drain(u64::MAX).await.expect("drain");
            assert!(report.left_queued.is_empty(), "nothing left queued");
        }
    }

    async fn incidents(&self) -> Vec<Incident> {
        let page = self
            .store
            .list_projections(PROJECTION_INCIDENT, None, 100)
            .await
            .expect("list incidents");
        let mut incidents = Vec::new();
        for projection in &page.items {
            let id = IncidentId(Digest::from_hex(&projection.key).expect("a digest key"));
            incidents.push(
                self.pipeline()
                    .load_incident(&id)
                    .await
                    .expect("load")
                    .expect("the incident has events"),
            );
        }
        incidents
    }

    async fn incident_of(&self, service: &str, generation: u32) -> Incident {
        self.incidents()
            .await
            .into_iter()
            .find(|incident| incident.service == service && incident.generation == generation)
            .unwrap_or_else(|| panic!("an incident of {service}, generation {generation}"))
    }

    async fn close(&self, incident: &Incident) {
        let command = IncidentCommand::Transition {
            principal: Principal::local("alice").expect("a local principal"),
            at: CLOSE_AT,
            to: IncidentState::Closed,
            reason: "a load test, not an outage".to_owned(),
            expected_lifecycle_version: incident.lifecycle_version,
            close_as: Some(CloseAs::FalsePositive),
            resolution_summary: None,
        };
        self.pipeline()
            .execute_human(&incident.id, &command)
            .await
            .expect("the close is allowed");
    }

    fn scratch(&self, name: &str) -> SqliteStore {
        SqliteStore::open(self.dir.path().join(name), SqliteOptions::default())
            .expect("a scratch store opens")
    }

    /// Runs what-if with fresh scratch stores.
    async fn what_if(&self, request: &WhatIfRequest) -> WhatIfReport {
        let baseline = tempfile::tempdir().expect("a temporary directory");
        let proposed = tempfile::tempdir().expect("a temporary directory");
        let baseline = SqliteStore::open(baseline.path().join("b.db"), SqliteOptions::default())
            .expect("opens");
        let proposed = SqliteStore::open(proposed.path().join("p.db"), SqliteOptions::default())
            .expect("opens");
        what_if(&self.store, request, &baseline, &proposed)
            .await
            .expect("what-if runs")
    }

    /// Everything the store holds, read through the port: every stream's events, every
    /// projection, idempotency record, pending work item and reject.
    async fn snapshot(&self) -> String {
        let mut lines = Vec::new();
        let streams = self.store.list_streams(None, 1000).await.expect("streams");
        assert!(streams.next.is_none(), "one page holds them all");
        for stream_id in &streams.items {
            for event in self
                .store
                .read_stream(stream_id, 1, 1000)
                .await
                .expect("read")
            {
                lines.push(format!("{stream_id}#{} {}", event.sequence, event.hash));
            }
        }
        for kind in [
            "incident",
            "open_incident",
            "group_generation",
            "service_recoveries",
        ] {
            let page = self
                .store
                .list_projections(kind, None, 1000)
                .await
                .expect("projections");
            for projection in page.items {
                lines.push(format!(
                    "{kind}/{} v{} {}",
                    projection.key,
                    projection.version,
                    Digest::of_bytes(&projection.document)
                ));
            }
        }
        let records = self
            .store
            .list_idempotency(None, 1000)
            .await
            .expect("idempotency");
        for record in records.items {
            lines.push(format!(
                "{} {} {}",
                record.key,
                record.request_hash,
                Digest::of_bytes(&record.response)
            ));
        }
        let work = self.store.pending_work(None, 1000).await.expect("work");
        lines.push(format!("pending {}", work.items.len()));
        let rejects = self.store.list_rejects(None, 1000).await.expect("rejects");
        lines.push(format!("rejects {}", rejects.items.len()));
        lines.join("\n")
    }

    /// The bytes of the store's files (the database and its write-ahead log).
    // Reading the file is the point of this check; the lint guards the domain crate.
    #[allow(clippy::disallowed_methods)]
    fn file_bytes(&self) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        for suffix in ["", "-wal"] {
            let path = format!("{}{suffix}", self.store.path().display());
            if let Ok(bytes) = std::fs::read(&path) {
                files.push((suffix.to_owned(), bytes));
            }
        }
        files
    }
}

/// The default rule files with `path` replaced (or added) by `text`.
fn rules_with(path: &str, text: &str) -> Vec<RuleFile> {
    let mut files: Vec<RuleFile> = RuleSet::default_rule_files()
        .into_iter()
        .filter(|file| file.path != path)
        .collect();
    files.push(RuleFile {
        path: path.to_owned(),
        text: text.to_owned(),
    });
    files
}

/// A site-down canary: any payments alarm pages alone. `canary.yaml` sorts before
/// `cloudwatch.yaml`, so it is evaluated first.
const PAYMENTS_CANARY: &str = "rules:
  - id: payments-canary
    version: 1.0.0
    description: Any payments alarm is a site-down page.
    match:
      source: cloudwatch_eventbridge
      service: payments
    promotes_alone: true
";

/// The shipped CloudWatch rule, leaving the checkout alarms alone.
const CLOUDWATCH_WITHOUT_CHECKOUT: &str = "rules:
  - id: cloudwatch-alarm
    version: 1.1.0
    description: A CloudWatch alarm entered ALARM, except checkout's (a noisy load test).
    match:
      source: [cloudwatch_eventbridge, cloudwatch_alarm_action, cloudwatch_sns]
    exclude:
      service: checkout
";

/// Orders alarms are SEV1.
const ORDERS_SEV1: &str = "rules:
  - id: orders-critical
    version: 1.0.0
    description: Orders alarms page as SEV1.
    match:
      source: cloudwatch_eventbridge
      service: orders
    severity: SEV1
";

fn change_of<'r>(
    report: &'r WhatIfReport,
    kind: ChangeKind,
    service: &str,
) -> &'r opx_app::whatif::IncidentChange {
    report
        .changes
        .iter()
        .find(|change| change.kind == kind && change.service == service)
        .unwrap_or_else(|| panic!("a {kind:?} change of {service}; all: {:#?}", report.changes))
}

#[tokio::test]
async fn a_rule_that_pages_alone_adds_an_incident() {
    let fixture = Fixture::recorded().await;
    let report = fixture
        .what_if(&WhatIfRequest {
            rule_files: Some(rules_with("rules/canary.yaml", PAYMENTS_CANARY)),
            ..WhatIfRequest::default()
        })
        .await;
    assert_eq!(report.changes.len(), 1, "{:#?}", report.changes);
    let change = change_of(&report, ChangeKind::WouldBeCreated, "payments");
    let proposed = change
        .proposed_decision
        .as_ref()
        .expect("a proposed decision");
    assert_eq!(
        (proposed.outcome, proposed.reason),
        (Outcome::Promote, ReasonCode::RulePromotesAlone)
    );
    assert_eq!(
        proposed.rules_promoting_alone,
        vec!["payments-canary@1.0.0"]
    );
    let baseline = change
        .baseline_decision
        .as_ref()
        .expect("a baseline decision");
    assert_eq!(
        (baseline.outcome, baseline.reason),
        (Outcome::Reject, ReasonCode::ConfidenceBelowThreshold)
    );
    assert!(baseline.score_bps < baseline.promote_threshold_bps);
    assert_eq!(change.signal_changes_total, 1);
    let signal = &change.signal_changes[0];
    assert_eq!(signal.alarm_name, "payments-api-5xx");
    assert_eq!(
        signal.baseline.rule.as_deref(),
        Some("cloudwatch-alarm@1.0.0")
    );
    assert_eq!(
        signal.proposed.rule.as_deref(),
        Some("payments-canary@1.0.0")
    );
    assert!(
        change
            .reason
            .contains("payments-canary@1.0.0 promotes alone"),
        "{}",
        change.reason
    );
    assert_eq!(report.baseline_incidents, 3);
    assert_eq!(report.proposed_incidents, 4);
}

#[tokio::test]
async fn a_rule_that_stops_matching_removes_incidents() {
    let fixture = Fixture::recorded().await;
    let report = fixture
        .what_if(&WhatIfRequest {
            rule_files: Some(rules_with(
                "rules/cloudwatch.yaml",
                CLOUDWATCH_WITHOUT_CHECKOUT,
            )),
            ..WhatIfRequest::default()
        })
        .await;
    // Both checkout incidents go (the storm at 03:02 and the one at 07:30, after the
    // first was closed); orders stays.
    let kinds: Vec<(ChangeKind, &str, String)> = report
        .changes
        .iter()
        .map(|change| {
            (
                change.kind,
                change.service.as_str(),
                change.opened_at.to_rfc3339(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                ChangeKind::NoLongerCreated,
                "checkout",
                "2026-11-24T03:02:00.512Z".to_owned()
            ),
            (
                ChangeKind::NoLongerCreated,
                "checkout",
                "2026-11-24T07:30:00.512Z".to_owned()
            ),
        ]
    );
    let change = &report.changes[0];
    assert!(
        change.proposed_decision.is_none(),
        "nothing of checkout is detected"
    );
    let baseline = change
        .baseline_decision
        .as_ref()
        .expect("the baseline promoted");
    assert_eq!(baseline.outcome, Outcome::Promote);
    assert_eq!(baseline.rules, vec!["cloudwatch-alarm@1.0.0"]);
    assert_eq!(change.signal_changes_total, 3, "three checkout alarms");
    assert!(change
        .signal_changes
        .iter()
        .all(|signal| signal.proposed.outcome == "no_rule_matched"
            && signal.baseline.rule.as_deref() == Some("cloudwatch-alarm@1.0.0")));
    assert!(
        change
            .reason
            .contains("nothing of this window was detected"),
        "{}",
        change.reason
    );
}

#[tokio::test]
async fn a_comment_changes_the_rule_set_hash_but_no_incident() {
    let fixture = Fixture::recorded().await;
    let text = RuleSet::default_rule_files()
        .into_iter()
        .find(|file| file.path == "rules/cloudwatch.yaml")
        .expect("the shipped CloudWatch rules")
        .text;
    let report = fixture
        .what_if(&WhatIfRequest {
            rule_files: Some(rules_with(
                "rules/cloudwatch.yaml",
                &format!("{text}# reviewed in the November incident review\n"),
            )),
            ..WhatIfRequest::default()
        })
        .await;
    assert_ne!(report.baseline.ruleset_hash, report.proposed.ruleset_hash);
    assert!(!report.has_difference(), "{:#?}", report.changes);
    assert_eq!(report.baseline_incidents, 3);
    assert_eq!(report.proposed_incidents, 3);
    assert_eq!(report.signals, 10);
    assert_eq!(report.closes, 1);
}

#[tokio::test]
async fn the_baseline_run_reproduces_the_recorded_incidents() {
    let fixture = Fixture::recorded().await;
    let report = fixture.what_if(&WhatIfRequest::default()).await;
    assert!(!report.has_difference());
    // The baseline is what the store recorded.
    let recorded = &fixture.config;
    assert_eq!(report.baseline.ruleset_hash, recorded.rules.hash());
    assert_eq!(report.baseline.model_hash, recorded.model.hash());
    assert!(
        report.baseline_choice.contains("the only one recorded"),
        "{}",
        report.baseline_choice
    );
    assert_eq!(
        report.baseline_incidents,
        fixture.incidents().await.len() as u64,
        "the replayed close lets the second checkout storm open its own incident, as it did"
    );
}

#[tokio::test]
async fn a_rule_that_raises_a_severity_changes_it() {
    let fixture = Fixture::recorded().await;
    let report = fixture
        .what_if(&WhatIfRequest {
            rule_files: Some(rules_with("rules/canary.yaml", ORDERS_SEV1)),
            ..WhatIfRequest::default()
        })
        .await;
    assert_eq!(report.changes.len(), 1, "{:#?}", report.changes);
    let change = change_of(&report, ChangeKind::SeverityChanged, "orders");
    assert_eq!(
        (change.baseline_severity, change.proposed_severity),
        (Some(Severity::Sev2), Some(Severity::Sev1))
    );
    assert_eq!(change.signal_changes_total, 3);
    assert!(change
        .signal_changes
        .iter()
        .all(|signal| signal.proposed.severity == Some(Severity::Sev1)
            && signal.proposed.rule.as_deref() == Some("orders-critical@1.0.0")));
    assert!(change
        .reason
        .starts_with("severity SEV2 in the baseline, SEV1 proposed"));
}

#[tokio::test]
async fn a_stricter_model_names_the_score_and_the_threshold() {
    let fixture = Fixture::recorded().await;
    // The same weights, a promote threshold no two-alarm storm reaches.
    let v1 = ConfidenceModel::v1();
    let strict = ConfidenceModel::new(
        "2.0.0",
        FactorWeights {
            distinct_alarms: 6000,
            max_severity: 1000,
            severity_agreement: 1000,
            rule_diversity: 1000,
            burst_volume: 1000,
        },
        9000,
        BandThresholds {
            medium_from_bps: 3000,
            high_from_bps: 6000,
            critical_from_bps: 8500,
        },
    )
    .expect("a valid model");
    assert_ne!(strict.hash(), v1.hash());
    let report = fixture
        .what_if(&WhatIfRequest {
            model: Some(strict),
            ..WhatIfRequest::default()
        })
        .await;
    assert!(report.has_difference());
    let second = report
        .changes
        .iter()
        .find(|change| change.service == "checkout" && change.opened_at > CLOSE_AT)
        .expect("the two-alarm checkout storm no longer promotes");
    assert_eq!(second.kind, ChangeKind::NoLongerCreated);
    let proposed = second.proposed_decision.as_ref().expect("assessed");
    assert_eq!(
        (
            proposed.outcome,
            proposed.reason,
            proposed.promote_threshold_bps
        ),
        (Outcome::Reject, ReasonCode::ConfidenceBelowThreshold, 9000)
    );
    assert!(
        second
            .factor_changes
            .iter()
            .any(|factor| factor.factor == Factor::DistinctAlarms
                && (factor.baseline_weight_bps, factor.proposed_weight_bps) == (4500, 6000)),
        "{:#?}",
        second.factor_changes
    );
    assert_eq!(second.signal_changes_total, 0, "the rules did not change");
    assert!(
        second.reason.contains("below the threshold 9000 bps"),
        "{}",
        second.reason
    );
}

#[tokio::test]
async fn since_and_until_bound_the_replayed_signals() {
    let fixture = Fixture::recorded().await;
    let until = EpochMs::parse("2026-11-24T03:05:00Z").expect("a timestamp");
    let report = fixture
        .what_if(&WhatIfRequest {
            rule_files: Some(rules_with("rules/canary.yaml", PAYMENTS_CANARY)),
            until: Some(until),
            ..WhatIfRequest::default()
        })
        .await;
    assert_eq!(report.signals, 6, "the payments alarm fired after 03:05");
    assert!(!report.has_difference(), "{:#?}", report.changes);
    let since = EpochMs::parse("2026-11-24T03:05:00Z").expect("a timestamp");
    let report = fixture
        .what_if(&WhatIfRequest {
            rule_files: Some(rules_with("rules/canary.yaml", PAYMENTS_CANARY)),
            since: Some(since),
            ..WhatIfRequest::default()
        })
        .await;
    assert_eq!(report.signals, 4);
    assert_eq!(report.changes.len(), 1);
}

#[tokio::test]
async fn the_recorded_store_is_unchanged() {
    let fixture = Fixture::recorded().await;
    let before = fixture.snapshot().await;
    let files_before = fixture.file_bytes();
    for request in [
        WhatIfRequest {
            rule_files: Some(rules_with("rules/canary.yaml", PAYMENTS_CANARY)),
            ..WhatIfRequest::default()
        },
        WhatIfRequest {
            rule_files: Some(rules_with(
                "rules/cloudwatch.yaml",
                CLOUDWATCH_WITHOUT_CHECKOUT,
            )),
            ..WhatIfRequest::default()
        },
    ] {
        let report = fixture.what_if(&request).await;
        assert!(report.has_difference());
    }
    assert_eq!(fixture.snapshot().await, before);
    assert!(
        fixture.file_bytes() == files_before,
        "the store's files are byte for byte unchanged"
    );
}

#[tokio::test]
async fn a_scratch_store_that_is_not_empty_is_refused() {
    let fixture = Fixture::recorded().await;
    let empty = fixture.scratch("empty.db");
    let before = fixture.snapshot().await;
    // The recorded store passed as a scratch store by mistake.
    let result = what_if(
        &fixture.store,
        &WhatIfRequest::default(),
        &empty,
        &fixture.store,
    )
    .await;
    assert!(
        matches!(result, Err(WhatIfError::ScratchNotEmpty("proposed"))),
        "{result:?}"
    );
    assert_eq!(fixture.snapshot().await, before);
}

#[tokio::test]
async fn a_store_without_an_evaluation_has_no_baseline() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store =
        SqliteStore::open(dir.path().join("opx.db"), SqliteOptions::default()).expect("opens");
    let config = PipelineConfig::with_rule_files(RuleSet::default_rule_files()).expect("rules");
    // Accepted, never evaluated (the process stopped before detection).
    Pipeline::new(&store, &NoPublisher, &config)
        .ingest(&first_signals()[0])
        .await
        .expect("ingest");
    let baseline =
        SqliteStore::open(dir.path().join("b.db"), SqliteOptions::default()).expect("opens");
    let proposed =
        SqliteStore::open(dir.path().join("p.db"), SqliteOptions::default()).expect("opens");
    let result = what_if(&store, &WhatIfRequest::default(), &baseline, &proposed).await;
    assert!(
        matches!(result, Err(WhatIfError::NoBaseline(_))),
        "{result:?}"
    );
}
