//! `opx replay what-if`: what would a proposed rule set or confidence model have done to the
//! recorded signals' incidents? Runs `opx_app::whatif` with two temporary SQLite scratch
//! stores; the store named by `--store` is only read.
//!
//! Exit 0: no incident changes; 1: some do (so it can gate a rule change in a pull
//! request); 2: the comparison could not be made (bad flags, unreadable rules or model, no
//! baseline in the store, a store error).

use crate::{config, store, GlobalArgs, EXIT_OK, EXIT_REFUSED, EXIT_USAGE};
use clap::Args;
use opx_app::whatif::{
    decision_phrase, what_if, ChangeKind, ConfigurationSummary, IncidentChange, WhatIfReport,
    WhatIfRequest,
};
use opx_domain::confidence::ConfidenceModel;
use opx_domain::promotion::ReasonCode;
use opx_domain::rules::RuleFile;
use opx_domain::time::EpochMs;
use opx_store_sqlite::{SqliteOptions, SqliteStore};
use std::path::{Path, PathBuf};

/// Largest confidence model file read, in bytes.
pub const MODEL_FILE_LEN_MAX: u64 = 64 * 1024;
/// Hex characters of a hash shown in human output.
pub const HASH_SHOWN_LEN: usize = 12;

/// The flags of `opx replay what-if` (the proposed rules come from the global `--rules DIR`).
#[derive(Debug, Clone, Args)]
pub struct WhatIfArgs {
    /// A confidence model file (JSON: `version`, `weights_bps` of the five factors summing
    /// to 10000, `promote_threshold_bps`, `bands`) to propose instead of the recorded one.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Replay signals with event time at or after this (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Replay signals with event time before this (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// `opx replay what-if`: prints the difference (human text, or one JSON document with
/// `--json`) and returns the exit code. Every error is printed here and is exit 2, so a
/// pipeline gating on exit 1 never mistakes a failed comparison for a difference.
pub async fn run(global: &GlobalArgs, args: &WhatIfArgs) -> anyhow::Result<u8> {
    match compare(global, args).await {
        Ok(report) => {
            if global.json {
                println!(
                    "{}",
                    serde_json::to_string(&serde_json::json!({
                        "difference": report.has_difference(),
                        "report": report,
                    }))?
                );
            } else {
                print!("{}", render(&report));
            }
            Ok(if report.has_difference() {
                EXIT_REFUSED
            } else {
                EXIT_OK
            })
        }
        Err(error) => {
            if global.json {
                println!("{}", serde_json::json!({ "error": format!("{error:#}") }));
            }
            eprintln!("error: {error:#}");
            Ok(EXIT_USAGE)
        }
    }
}

async fn compare(global: &GlobalArgs, args: &WhatIfArgs) -> anyhow::Result<WhatIfReport> {
    let request = WhatIfRequest {
        rule_files: global.rules.as_deref().map(proposed_rules).transpose()?,
        model: args.model.as_deref().map(read_model).transpose()?,
        since: args
            .since
            .as_deref()
            .map(|text| parse_time("--since", text))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|text| parse_time("--until", text))
            .transpose()?,
    };
    if let (Some(since), Some(until)) = (request.since, request.until) {
        anyhow::ensure!(
            since < until,
            "--since {} is not before --until {}; give a non-empty range",
            since.to_rfc3339(),
            until.to_rfc3339()
        );
    }
    // Each run gets its own empty store in a directory deleted afterwards.
    let scratch = tempfile::tempdir()
        .map_err(|error| anyhow::anyhow!("cannot create a temporary directory: {error}"))?;
    let baseline = SqliteStore::open(scratch.path().join("baseline.db"), SqliteOptions::default())?;
    let proposed = SqliteStore::open(scratch.path().join("proposed.db"), SqliteOptions::default())?;
    let recorded = store::open(&global.store)?;
    let report = what_if(&recorded, &request, &baseline, &proposed).await;
    recorded.close()?;
    Ok(report?)
}

/// The rule files of `--rules DIR`, read and validated as `opx ingest --rules` reads them.
fn proposed_rules(dir: &Path) -> anyhow::Result<Vec<RuleFile>> {
    let config = config::pipeline_config(Some(dir))?;
    Ok(config
        .rule_files
        .into_iter()
        .map(|file| RuleFile {
            path: file.path,
            text: file.text,
        })
        .collect())
}

// Reading the model file is this command's job; the lint guards the domain crate.
#[allow(clippy::disallowed_methods)]
fn read_model(path: &Path) -> anyhow::Result<ConfidenceModel> {
    let length = std::fs::metadata(path)
        .map_err(|error| anyhow::anyhow!("--model {}: cannot read: {error}", path.display()))?
        .len();
    anyhow::ensure!(
        length <= MODEL_FILE_LEN_MAX,
        "--model {}: {length} bytes, at most {MODEL_FILE_LEN_MAX} are read; is this a model file?",
        path.display()
    );
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("--model {}: cannot read: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| {
        anyhow::anyhow!(
            "--model {}: not a valid confidence model: {error} (a model is JSON with version, \
             weights_bps, promote_threshold_bps and bands; see ConfidenceModel)",
            path.display()
        )
    })
}

fn parse_time(flag: &str, text: &str) -> anyhow::Result<EpochMs> {
    EpochMs::parse(text).map_err(|error| {
        anyhow::anyhow!("{flag} {text:?}: {error}; write RFC 3339, e.g. 2026-11-01T00:00:00Z")
    })
}

fn short(hex: &str) -> &str {
    hex.get(..HASH_SHOWN_LEN).unwrap_or(hex)
}

fn configuration_line(name: &str, summary: &ConfigurationSummary) -> String {
    format!(
        "{name}: rule set {} ({} files), model {} {} (promote at {} bps), window {} ms",
        short(&summary.ruleset_hash.to_hex()),
        summary.rule_files.len(),
        summary.model_version,
        short(&summary.model_hash.to_hex()),
        summary.promote_threshold_bps,
        summary.window_ms
    )
}

/// The report for people.
pub fn render(report: &WhatIfReport) -> String {
    let range = match (report.since, report.until) {
        (None, None) => "all recorded time".to_owned(),
        (Some(since), None) => format!("from {since}"),
        (None, Some(until)) => format!("until {until}"),
        (Some(since), Some(until)) => format!("from {since} until {until}"),
    };
    let mut out = String::new();
    out.push_str(&format!(
        "what-if over {} signal(s) and {} recorded close(s), {range}\n",
        report.signals, report.closes
    ));
    out.push_str(&configuration_line("baseline", &report.baseline));
    out.push_str(&format!("\n  ({})\n", report.baseline_choice));
    out.push_str(&configuration_line("proposed", &report.proposed));
    out.push('\n');
    out.push_str(&format!(
        "incidents: {} in the baseline run, {} in the proposed run; {}\n",
        report.baseline_incidents,
        report.proposed_incidents,
        if report.has_difference() {
            format!("{} difference(s)", report.changes.len())
        } else {
            "no difference".to_owned()
        }
    ));
    for change in &report.changes {
        out.push('\n');
        out.push_str(&render_change(change));
    }
    out
}

fn render_change(change: &IncidentChange) -> String {
    let (mark, what) = match change.kind {
        ChangeKind::WouldBeCreated => ('+', "would be created".to_owned()),
        ChangeKind::NoLongerCreated => ('-', "no longer created".to_owned()),
        ChangeKind::SeverityChanged => (
            '~',
            format!(
                "severity {} → {}",
                change
                    .baseline_severity
                    .map_or("-", |severity| severity.as_str()),
                change
                    .proposed_severity
                    .map_or("-", |severity| severity.as_str())
            ),
        ),
    };
    let severity = change
        .proposed_severity
        .or(change.baseline_severity)
        .map_or("-", |severity| severity.as_str());
    let evidence = change
        .proposed_evidence
        .or(change.baseline_evidence)
        .unwrap_or_default();
    let mut out = format!(
        "{mark} {what}: {}/{} incident {} (evidence from {}, {severity}, {evidence} item(s))\n",
        change.environment,
        change.service,
        short(&change.incident_id.to_string()),
        change.opened_at,
    );
    for (name, decision) in [
        ("proposed", &change.proposed_decision),
        ("baseline", &change.baseline_decision),
    ] {
        match decision {
            Some(decision) => {
                // The confidence reasons already name the score and the threshold.
                let score = match decision.reason {
                    ReasonCode::ConfidenceAtOrAboveThreshold
                    | ReasonCode::ConfidenceBelowThreshold => String::new(),
                    _ => format!(
                        "score {}/{} bps, ",
                        decision.score_bps, decision.promote_threshold_bps
                    ),
                };
                out.push_str(&format!(
                    "    {name}: {} ({score}{}, {} detection(s); rules {})\n",
                    decision_phrase(decision),
                    decision.band,
                    decision.members,
                    decision.rules.join(", ")
                ));
            }
            None => out.push_str(&format!(
                "    {name}: nothing of this window was detected\n"
            )),
        }
    }
    for factor in &change.factor_changes {
        out.push_str(&format!(
            "    factor {}: value {} → {} bps, weight {} → {} bps\n",
            factor.factor,
            factor.baseline_value_bps,
            factor.proposed_value_bps,
            factor.baseline_weight_bps,
            factor.proposed_weight_bps
        ));
    }
    for signal in &change.signal_changes {
        out.push_str(&format!(
            "    signal {} at {}: {} → {}\n",
            signal.alarm_name, signal.event_time, signal.baseline, signal.proposed
        ));
    }
    let unlisted = change.signal_changes_total - change.signal_changes.len() as u64;
    if unlisted > 0 {
        out.push_str(&format!(
            "    … and {unlisted} more signal(s) evaluated differently\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opx_app::whatif::{DecisionSummary, Evaluation, SignalChange};
    use opx_domain::confidence::Band;
    use opx_domain::correlation::GroupId;
    use opx_domain::hash::Digest;
    use opx_domain::incident::IncidentId;
    use opx_domain::promotion::Outcome;
    use opx_domain::signal::{Severity, SignalId};

    fn summary(threshold: u32) -> ConfigurationSummary {
        ConfigurationSummary {
            ruleset_hash: Digest::of_bytes(b"rules"),
            rule_files: vec!["rules/cloudwatch.yaml".to_owned()],
            model_hash: Digest::of_bytes(b"model"),
            model_version: "1.0.0".to_owned(),
            promote_threshold_bps: threshold,
            window_ms: 300_000,
        }
    }

    #[test]
    fn a_change_is_rendered_with_both_decisions_and_the_signals() {
        let evaluation = |rule: Option<&str>| Evaluation {
            outcome: if rule.is_some() {
                "detected"
            } else {
                "no_rule_matched"
            }
            .to_owned(),
            rule: rule.map(str::to_owned),
            severity: rule.map(|_| Severity::Sev2),
            silence_id: None,
        };
        let report = WhatIfReport {
            baseline: summary(6000),
            baseline_choice: "rule set r, the only one recorded".to_owned(),
            proposed: summary(6000),
            since: None,
            until: Some(EpochMs(1_795_500_000_000)),
            signals: 3,
            closes: 0,
            baseline_incidents: 0,
            proposed_incidents: 1,
            changes: vec![IncidentChange {
                kind: ChangeKind::WouldBeCreated,
                incident_id: IncidentId(Digest::of_bytes(b"incident")),
                environment: "123456789012".to_owned(),
                service: "payments".to_owned(),
                group_id: GroupId(Digest::of_bytes(b"group")),
                generation: 0,
                opened_at: EpochMs(1_795_489_800_000),
                baseline_severity: None,
                proposed_severity: Some(Severity::Sev2),
                baseline_evidence: None,
                proposed_evidence: Some(1),
                baseline_decision: None,
                proposed_decision: Some(DecisionSummary {
                    outcome: Outcome::Promote,
                    reason: ReasonCode::RulePromotesAlone,
                    incident_id: Some(IncidentId(Digest::of_bytes(b"incident"))),
                    score_bps: 3700,
                    promote_threshold_bps: 6000,
                    band: Band::Medium,
                    factors: Vec::new(),
                    rules: vec!["payments-canary@1.0.0".to_owned()],
                    rules_promoting_alone: vec!["payments-canary@1.0.0".to_owned()],
                    members: 1,
                }),
                factor_changes: Vec::new(),
                signal_changes: vec![SignalChange {
                    signal_id: SignalId(Digest::of_bytes(b"signal")),
                    alarm_name: "payments-api-5xx".to_owned(),
                    event_time: EpochMs(1_795_489_800_000),
                    baseline: evaluation(None),
                    proposed: evaluation(Some("payments-canary@1.0.0")),
                }],
                signal_changes_total: 2,
                reason: String::new(),
            }],
        };
        let text = render(&report);
        for expected in [
            "what-if over 3 signal(s) and 0 recorded close(s), until 2026-11-24T06:00:00.000Z",
            "incidents: 0 in the baseline run, 1 in the proposed run; 1 difference(s)",
            "+ would be created: 123456789012/payments incident",
            "proposed: PROMOTE: rule payments-canary@1.0.0 promotes alone (score 3700/6000 bps, MEDIUM, 1 detection(s); rules payments-canary@1.0.0)",
            "baseline: nothing of this window was detected",
            "signal payments-api-5xx at 2026-11-24T03:10:00.000Z: no rule matched → rule payments-canary@1.0.0 at SEV2",
            "… and 1 more signal(s) evaluated differently",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn times_must_be_rfc3339() {
        assert!(parse_time("--since", "2026-11-01T00:00:00Z").is_ok());
        let error = parse_time("--since", "last week").expect_err("refused");
        assert!(error.to_string().contains("--since"), "{error}");
    }
}
