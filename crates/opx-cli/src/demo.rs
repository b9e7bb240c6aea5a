//! `opx demo`: a narrated alarm storm through a fresh temporary store, checking itself.
//!
//! The sample (compiled in, so the demo runs from any directory) is what one bad night
//! looks like: the `orders` service in AWS account 111122223333 raises three CloudWatch
//! alarms through EventBridge, one of them also arrives through SNS (a duplicate, not a
//! conflict); `payments` in `prod` fires two alerts in one Alertmanager webhook; one
//! EventBridge event carries a timestamp no parser should accept; `orders-api-5xx`
//! recovers; and `search-indexer-lag` flaps ALARM/OK/ALARM alone for ten minutes. The
//! expected outcome — two incidents, the flapping alarm not promoted, one reject, a
//! replay that verifies — is checked, and the exit code says whether it happened.

use crate::ingest::{Ingestor, PayloadReport};
use crate::query::{self, DecisionView, IncidentRow};
use crate::reader::PayloadReader;
use crate::{config, human, store, verify, GlobalArgs, UsageError, EXIT_OK, EXIT_REFUSED};
use opx_app::ingest::ItemOutcome;
use opx_app::pipeline::{read_all, GROUP_EVENTS_READ_MAX};
use opx_app::ports::{Clock, Store, READ_PAGE_SIZE_MAX};
use opx_domain::incident::{IncidentCommand, IncidentState, Principal};
use opx_domain::promotion::Outcome;
use serde::Serialize;
use std::path::PathBuf;

/// The demo's input, one payload per line.
pub const SAMPLE: &str = include_str!("../demo/sample.ndjson");
/// How the sample is named in origins (`FILE:INDEX`).
pub const SAMPLE_NAME: &str = "demo/sample.ndjson";
/// The service whose lone alarm flaps and must not promote.
pub const FLAPPING_SERVICE: &str = "search";
/// Incidents the sample must produce: (environment, service).
pub const EXPECTED_INCIDENTS: [(&str, &str); 2] =
    [("111122223333", "orders"), ("prod", "payments")];
/// The local principal that acknowledges an incident in the demo.
pub const DEMO_OPERATOR: &str = "demo-operator";

/// What `opx demo --json` prints.
#[derive(Debug, Default, Serialize)]
struct DemoSummary {
    /// Whether every expected outcome happened.
    ok: bool,
    /// The expected outcomes that did not happen.
    failed_checks: Vec<String>,
    /// Where the store was kept, if `--keep` was given.
    kept_store: Option<String>,
    /// The ingest totals.
    ingest: crate::ingest::IngestSummary,
    /// `incidents.len()`.
    incident_count: usize,
    /// The incidents, as `opx incidents --json` lists them (after the acknowledgement).
    incidents: Vec<IncidentRow>,
    /// The promotion decisions about the flapping alarm.
    flapping_decisions: Vec<FlapDecision>,
    /// Whether the flapping alarm opened an incident (it must not).
    flapping_promoted: bool,
    /// The incident a human acknowledged.
    acknowledged: Option<String>,
    /// Whether the replay verified.
    replay_ok: bool,
    /// The replay's one-line report.
    replay: String,
}

#[derive(Debug, Serialize)]
struct FlapDecision {
    outcome: String,
    reason: String,
    score_bps: Option<u32>,
    band: Option<String>,
    window_start: Option<String>,
}

/// Prints narration unless `--json`.
struct Narrator {
    quiet: bool,
}

impl Narrator {
    fn say(&self, text: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", text.as_ref());
        }
    }
}

/// Runs the demo; see the module documentation.
pub async fn run(global: &GlobalArgs, keep: Option<PathBuf>) -> anyhow::Result<u8> {
    let temp = tempfile::Builder::new().prefix("opx-demo-").tempdir()?;
    let path = match &keep {
        Some(path) if path.exists() => {
            return Err(UsageError(format!(
                "--keep {}: the file exists; the demo needs a fresh store, name a new file",
                path.display()
            ))
            .into())
        }
        Some(path) => path.clone(),
        None => temp.path().join("opx-demo.db"),
    };
    let config = config::pipeline_config(global.rules.as_deref())?;
    let store = store::open_path(&path)?;
    let narrator = Narrator { quiet: global.json };
    let mut summary = DemoSummary {
        kept_store: keep.as_ref().map(|p| p.display().to_string()),
        ..DemoSummary::default()
    };

    narrator.say(format!("opx demo — a fresh store at {}", path.display()));
    narrator.say("");
    narrator.say("1. Ingesting an alarm storm, one payload at a time (as it would arrive):");
    // The demo announces nothing: it is a fresh local store.
    let publisher = crate::publish::CliPublisher::Nothing;
    let mut ingestor = Ingestor::new(&store, &publisher, &config);
    ingestor.print_rejects = false;
    let mut reader = PayloadReader::new(SAMPLE.as_bytes());
    while let Some(raw) = reader.next_payload()? {
        let report = ingestor.payload(SAMPLE_NAME, &raw).await?;
        narrate_payload(&narrator, &report);
    }
    summary.ingest = ingestor.summary();
    let totals = &summary.ingest;
    narrator.say(format!(
        "   → {} payloads: {} signals accepted, {} duplicate, {} rejected; {} detections; {} incidents opened",
        totals.payloads, totals.accepted, totals.duplicates, totals.rejected, totals.detections, totals.incidents_created
    ));

    narrator.say("");
    narrator.say("2. The incidents, with the decision that opened each one:");
    let incidents = query::all_incidents(&store).await?;
    let mut ordered = incidents.clone();
    ordered.sort_by_key(|incident| (incident.opened_at, incident.id));
    for incident in &ordered {
        let row = IncidentRow::from(incident);
        narrator.say(format!(
            "   incident {} — {} / {}, {}, {}, {} evidence item(s), opened at {}",
            query::short(&row.id),
            row.environment,
            row.service,
            row.severity,
            row.state,
            row.evidence_count,
            row.opened_at
        ));
        for view in query::decisions_for(&store, incident, config.window_ms).await? {
            narrator.say(query::decision_text(&view, "     ").trim_end());
        }
        if incident.recovery_count > 0 {
            let names: Vec<&str> = incident
                .recoveries
                .values()
                .map(|r| r.alarm_name.as_str())
                .collect();
            narrator.say(format!(
                "     recoveries on the timeline: {}",
                names.join(", ")
            ));
        }
    }

    narrator.say("");
    narrator.say(format!(
        "3. The lone flapping alarm ({FLAPPING_SERVICE}-indexer-lag ALARM → OK → ALARM):"
    ));
    let flaps = decisions_of_service(&store, FLAPPING_SERVICE).await?;
    for view in &flaps {
        narrator.say(query::decision_text(view, "   ").trim_end());
        summary.flapping_decisions.push(FlapDecision {
            outcome: view.decision.outcome.as_str().to_owned(),
            reason: view.decision.reason.as_str().to_owned(),
            score_bps: view.assessment.as_ref().map(|a| a.assessment.score_bps),
            band: view
                .assessment
                .as_ref()
                .map(|a| a.assessment.band.as_str().to_owned()),
            window_start: view
                .assessment
                .as_ref()
                .map(|a| a.window_start.to_rfc3339()),
        });
    }
    summary.flapping_promoted = flaps
        .iter()
        .any(|view| view.decision.outcome == Outcome::Promote)
        || incidents
            .iter()
            .any(|incident| incident.service == FLAPPING_SERVICE);
    narrator.say(if summary.flapping_promoted {
        "   → it opened an incident: that is wrong".to_owned()
    } else {
        format!("   → one alarm alone, however often it flaps, is not an incident: {} REJECT decision(s)", flaps.len())
    });

    narrator.say("");
    narrator.say("4. A human acknowledges the orders incident:");
    if let Some(orders) = ordered.iter().find(|incident| incident.service == "orders") {
        let principal = Principal::local(DEMO_OPERATOR)?;
        let command = IncidentCommand::Transition {
            principal: principal.clone(),
            at: human::SystemClock.now(),
            to: IncidentState::Acknowledged,
            reason: "paged; looking at the orders API 5xx and latency".to_owned(),
            expected_lifecycle_version: orders.lifecycle_version,
            close_as: None,
            resolution_summary: None,
        };
        let pipeline = ingestor.pipeline();
        let after = pipeline.execute_human(&orders.id, &command).await?;
        narrator.say(format!(
            "   {principal}: {} → {} (expected lifecycle version {}, now {})",
            orders.state, after.state, orders.lifecycle_version, after.lifecycle_version
        ));
        summary.acknowledged = Some(after.id.to_string());
    }

    narrator.say("");
    narrator.say(
        "5. Replay: verify every hash chain, re-derive every decision, rebuild every projection:",
    );
    let report = verify::run_verify(&store).await?;
    summary.replay_ok = report.ok();
    summary.replay = verify::report_line(&report);
    narrator.say(format!("   {}", summary.replay));

    summary.incidents = query::list_incidents(&store, None, None).await?;
    summary.incident_count = summary.incidents.len();
    summary.failed_checks = failed_checks(&summary);
    summary.ok = summary.failed_checks.is_empty();
    store.close()?;

    narrator.say("");
    if summary.ok {
        narrator.say(format!(
            "demo OK: {} incidents from {} payloads, the flapping alarm was not promoted, the replay verified.",
            summary.incident_count, summary.ingest.payloads
        ));
    } else {
        narrator.say(format!("demo FAILED: {}", summary.failed_checks.join("; ")));
    }
    match &keep {
        Some(path) => narrator.say(format!(
            "The store is kept at {0}; try `opx --store sqlite:{0} incidents`.",
            path.display()
        )),
        None => narrator.say("The temporary store is removed; pass --keep PATH to explore it with `opx incidents` and `opx show`."),
    }
    if global.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    drop(temp);
    Ok(if summary.ok { EXIT_OK } else { EXIT_REFUSED })
}

fn failed_checks(summary: &DemoSummary) -> Vec<String> {
    let mut failed = Vec::new();
    let mut keys: Vec<(&str, &str)> = summary
        .incidents
        .iter()
        .map(|row| (row.environment.as_str(), row.service.as_str()))
        .collect();
    keys.sort();
    if keys != EXPECTED_INCIDENTS {
        failed.push(format!(
            "expected incidents for {EXPECTED_INCIDENTS:?}, got {keys:?}"
        ));
    }
    if summary.flapping_promoted {
        failed.push("the flapping alarm was promoted".to_owned());
    }
    if summary.flapping_decisions.is_empty() {
        failed.push("no decision about the flapping alarm was recorded".to_owned());
    }
    if summary.ingest.rejected != 1 {
        failed.push(format!(
            "expected 1 rejected payload, got {}",
            summary.ingest.rejected
        ));
    }
    if summary.ingest.duplicates != 1 {
        failed.push(format!(
            "expected 1 duplicate (the SNS copy), got {}",
            summary.ingest.duplicates
        ));
    }
    if summary.acknowledged.is_none() {
        failed.push("no incident was acknowledged".to_owned());
    }
    if !summary.replay_ok {
        failed.push(format!("replay did not verify: {}", summary.replay));
    }
    failed
}

fn narrate_payload(narrator: &Narrator, report: &PayloadReport) {
    let kind = report
        .source
        .map(|source| source.to_string())
        .unwrap_or_else(|| "unrecognised".to_owned());
    narrator.say(format!("   [{}] {kind}", report.origin));
    for item in &report.items {
        let line = match &item.outcome {
            ItemOutcome::Accepted(signal) => format!(
                "accepted   {} {} at {} ({} / {}, {})",
                signal.alarm_name, signal.state, signal.event_time, signal.environment, signal.service, signal.severity
            ),
            ItemOutcome::Duplicate(signal) => format!(
                "duplicate  {} {} at {} — the same state change already arrived another way; recorded once",
                signal.alarm_name, signal.state, signal.event_time
            ),
            ItemOutcome::Conflict { signal, .. } => format!(
                "conflict   {} {} — already recorded with other content; the first record stands",
                signal.alarm_name, signal.state
            ),
            ItemOutcome::Refused(rejection) => format!(
                "rejected   {}: {} (kept in the rejects table)",
                rejection.field, rejection.reason
            ),
            // `Ingestor::payload` fails instead of reporting a signal it could not record.
            ItemOutcome::Failed { signal, error } => format!(
                "failed     {} {}: {error}",
                signal.alarm_name, signal.state
            ),
        };
        narrator.say(format!("       {line}"));
    }
    for id in &report.drain.incidents_opened {
        narrator.say(format!(
            "       → incident {} opened",
            query::short(&id.to_string())
        ));
    }
    for id in &report.drain.incidents_updated {
        narrator.say(format!(
            "       → incident {} updated (evidence or recovery attached)",
            query::short(&id.to_string())
        ));
    }
}

/// Every promotion decision recorded for `service`, from all group streams.
async fn decisions_of_service<S: Store>(
    store: &S,
    service: &str,
) -> anyhow::Result<Vec<DecisionView>> {
    let mut views = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_streams(cursor.as_deref(), READ_PAGE_SIZE_MAX)
            .await?;
        for stream_id in page.items.iter().filter(|id| id.starts_with("group:")) {
            let events = read_all(store, stream_id, GROUP_EVENTS_READ_MAX).await?;
            views.extend(
                query::decisions_in(&events, |_| true)
                    .into_iter()
                    .filter(|view| {
                        view.assessment
                            .as_ref()
                            .is_some_and(|a| a.key.service == service)
                    }),
            );
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    views.sort_by_key(|view| view.assessment.as_ref().map(|a| a.window_start));
    Ok(views)
}
