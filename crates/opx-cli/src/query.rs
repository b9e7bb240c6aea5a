//! Reading incidents: `opx incidents` and `opx show`.

use crate::UsageError;
use opx_app::pipeline::{read_all, Pipeline, PipelineConfig, PROJECTION_INCIDENT};
use opx_app::ports::{NoPublisher, Store, StoreRead, READ_PAGE_SIZE_MAX};
use opx_domain::correlation::{window_start, CorrelationKey, WindowMs};
use opx_domain::event::EventEnvelope;
use opx_domain::hash::Digest;
use opx_domain::incident::{self, Incident, IncidentEvent, IncidentId, IncidentState};
use opx_domain::promotion::PromotionDecision;
use opx_domain::record::{group_stream, ConfidenceAssessed, PipelineEvent};
use serde::Serialize;
use std::collections::BTreeSet;

/// Shortest incident-id prefix accepted, in hex characters.
pub const ID_PREFIX_LEN_MIN: usize = 8;
/// Most events read from one group stream for `opx show`.
pub const SHOW_GROUP_EVENTS_MAX: usize = 20_000;

/// One line of `opx incidents`.
#[derive(Clone, Debug, Serialize)]
pub struct IncidentRow {
    /// The incident id (64 hex characters).
    pub id: String,
    /// Correlation key part 1.
    pub environment: String,
    /// Correlation key part 2.
    pub service: String,
    /// `SEV1` … `SEV4`.
    pub severity: String,
    /// `OPEN`, `ACKNOWLEDGED`, `MITIGATING`, `RESOLVED` or `CLOSED`.
    pub state: String,
    /// The lifecycle version (what `transition --expected-version` takes).
    pub version: u64,
    /// The earliest event time of its evidence, RFC 3339.
    pub opened_at: String,
    /// Evidence items attached.
    pub evidence_count: u64,
    /// Distinct alarms attached (up to the kept limit).
    pub alarm_count: u64,
    /// Recoveries recorded.
    pub recovery_count: u64,
    /// Who is assigned.
    pub assignee: Option<String>,
    /// Evidence arrived while RESOLVED.
    pub fired_again: bool,
}

impl From<&Incident> for IncidentRow {
    fn from(incident: &Incident) -> IncidentRow {
        IncidentRow {
            id: incident.id.to_string(),
            environment: incident.environment.clone(),
            service: incident.service.clone(),
            severity: incident.severity.as_str().to_owned(),
            state: incident.state.as_str().to_owned(),
            version: incident.lifecycle_version,
            opened_at: incident.opened_at.to_rfc3339(),
            evidence_count: incident.evidence_count,
            alarm_count: incident.alarms.len() as u64,
            recovery_count: incident.recovery_count,
            assignee: incident.assignee.clone(),
            fired_again: incident.fired_again,
        }
    }
}

/// Every incident projection, page by page, filtered.
pub async fn list_incidents<S: StoreRead>(
    store: &S,
    state: Option<IncidentState>,
    service: Option<&str>,
) -> anyhow::Result<Vec<IncidentRow>> {
    let mut rows = Vec::new();
    for incident in all_incidents(store).await? {
        if state.is_some_and(|state| incident.state != state) {
            continue;
        }
        if service.is_some_and(|service| incident.service != service) {
            continue;
        }
        rows.push(IncidentRow::from(&incident));
    }
    // Oldest first; the id breaks ties so the order never depends on the store.
    rows.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
    Ok(rows)
}

/// Every incident, from the incident projections.
pub async fn all_incidents<S: StoreRead>(store: &S) -> anyhow::Result<Vec<Incident>> {
    let mut incidents = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_projections(PROJECTION_INCIDENT, cursor.as_deref(), READ_PAGE_SIZE_MAX)
            .await?;
        for projection in &page.items {
            let incident: Incident =
                serde_json::from_slice(&projection.document).map_err(|error| {
                    anyhow::anyhow!(
                        "incident projection {} does not decode ({error}); run `opx replay verify`",
                        projection.key
                    )
                })?;
            incidents.push(incident);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(incidents),
        }
    }
}

/// Prints `opx incidents`.
pub fn print_incidents(rows: &[IncidentRow], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no incidents");
        return Ok(());
    }
    println!(
        "{:<16}  {:<14}  {:<12}  {:<4}  {:<12}  {:>3}  {:<24}  {:>8}",
        "ID", "ENVIRONMENT", "SERVICE", "SEV", "STATE", "VER", "OPENED AT", "EVIDENCE"
    );
    for row in rows {
        println!(
            "{:<16}  {:<14}  {:<12}  {:<4}  {:<12}  {:>3}  {:<24}  {:>8}",
            &row.id[..row.id.len().min(16)],
            row.environment,
            row.service,
            row.severity,
            row.state,
            row.version,
            row.opened_at,
            row.evidence_count
        );
    }
    Ok(())
}

/// Resolves a full incident id or a unique prefix of at least [`ID_PREFIX_LEN_MIN`] hex
/// characters.
pub async fn resolve_incident_id<S: StoreRead>(
    store: &S,
    text: &str,
) -> anyhow::Result<IncidentId> {
    let text = text.trim().to_ascii_lowercase();
    if let Some(digest) = Digest::from_hex(&text) {
        return Ok(IncidentId(digest));
    }
    if text.len() < ID_PREFIX_LEN_MIN || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(UsageError(format!(
            "{text:?} is not an incident id: give the 64 hex characters or a unique prefix of at \
             least {ID_PREFIX_LEN_MIN} (see `opx incidents`)"
        ))
        .into());
    }
    let mut matches = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_projections(PROJECTION_INCIDENT, cursor.as_deref(), READ_PAGE_SIZE_MAX)
            .await?;
        matches.extend(
            page.items
                .iter()
                .filter(|p| p.key.starts_with(&text))
                .map(|p| p.key.clone()),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    match matches.as_slice() {
        [] => Err(anyhow::anyhow!(
            "no incident id starts with {text}; see `opx incidents`"
        )),
        [one] => Digest::from_hex(one).map(IncidentId).ok_or_else(|| {
            anyhow::anyhow!("stored incident key {one} is not an id; run `opx replay verify`")
        }),
        many => Err(anyhow::anyhow!(
            "{} incidents start with {text}; give more characters",
            many.len()
        )),
    }
}

/// A promotion decision about the incident, with the assessment it decided on.
#[derive(Clone, Debug, Serialize)]
pub struct DecisionView {
    /// The decision's hash (what the incident's events name).
    pub decision_hash: String,
    /// Where the decision is recorded.
    pub stream_id: String,
    /// Its sequence in that stream.
    pub sequence: u64,
    /// The decision.
    pub decision: PromotionDecision,
    /// The assessment it decided on, with the per-factor breakdown.
    pub assessment: Option<ConfidenceAssessed>,
}

/// One entry of the incident's timeline.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineEntry {
    /// Position in the incident stream.
    pub sequence: u64,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's hash.
    pub hash: String,
    /// The event payload.
    pub event: serde_json::Value,
    /// One line for people.
    pub summary: String,
}

/// Everything `opx show` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ShowView {
    /// The list row (id, state, version, ...).
    pub summary: IncidentRow,
    /// The folded incident, evidence included.
    pub incident: Incident,
    /// The promotion decisions that opened it or attached evidence to it.
    pub decisions: Vec<DecisionView>,
    /// The timeline, in order.
    pub timeline: Vec<TimelineEntry>,
}

/// Builds the `opx show` view from the incident stream and its evidence groups.
pub async fn show<S: Store>(
    store: &S,
    config: &PipelineConfig,
    incident_id: &IncidentId,
) -> anyhow::Result<ShowView> {
    let pipeline = Pipeline::new(store, &NoPublisher, config);
    let incident = pipeline
        .load_incident(incident_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no incident {incident_id}; see `opx incidents`"))?;
    let events = read_all(
        store,
        &incident::stream_id(incident_id),
        opx_app::pipeline::INCIDENT_EVENTS_READ_MAX,
    )
    .await?;
    let timeline = events
        .iter()
        .map(timeline_entry)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let decisions = decisions_for(store, &incident, config.window_ms).await?;
    Ok(ShowView {
        summary: IncidentRow::from(&incident),
        incident,
        decisions,
        timeline,
    })
}

/// The promotion decisions naming the incident, from the group streams of its evidence's
/// windows (every deciding window holds at least one of its members).
pub async fn decisions_for<S: StoreRead>(
    store: &S,
    incident: &Incident,
    window_ms: WindowMs,
) -> anyhow::Result<Vec<DecisionView>> {
    let key = CorrelationKey {
        environment: incident.environment.clone(),
        service: incident.service.clone(),
    };
    let mut streams = BTreeSet::new();
    streams.insert(group_stream(&incident.group_id));
    for item in incident.evidence.values() {
        streams.insert(group_stream(
            &key.group_id(window_start(item.event_time, window_ms)),
        ));
    }
    let mut decisions = Vec::new();
    for stream_id in streams {
        let events = read_all(store, &stream_id, SHOW_GROUP_EVENTS_MAX).await?;
        decisions.extend(decisions_in(&events, |decision| {
            decision.incident_id == Some(incident.id)
        }));
    }
    decisions.sort_by_key(|view| (view.stream_id.clone(), view.sequence));
    Ok(decisions)
}

/// The `PromotionDecided` events of one group stream that `keep` selects.
pub fn decisions_in(
    events: &[EventEnvelope],
    keep: impl Fn(&PromotionDecision) -> bool,
) -> Vec<DecisionView> {
    let mut views = Vec::new();
    for event in events
        .iter()
        .filter(|event| event.event_type == "PromotionDecided")
    {
        let Ok(PipelineEvent::PromotionDecided(decided)) =
            PipelineEvent::from_payload(&event.event_type, event.schema_version, &event.payload)
        else {
            continue;
        };
        if !keep(&decided.decision) {
            continue;
        }
        let assessment = events
            .iter()
            .find(|candidate| candidate.sequence == decided.assessment_event.sequence)
            .and_then(|candidate| {
                match PipelineEvent::from_payload(
                    &candidate.event_type,
                    candidate.schema_version,
                    &candidate.payload,
                ) {
                    Ok(PipelineEvent::ConfidenceAssessed(assessed)) => Some(assessed),
                    _ => None,
                }
            });
        views.push(DecisionView {
            decision_hash: decided.decision.hash().to_string(),
            stream_id: event.stream_id.clone(),
            sequence: event.sequence,
            decision: decided.decision.clone(),
            assessment,
        });
    }
    views
}

fn timeline_entry(event: &EventEnvelope) -> anyhow::Result<TimelineEntry> {
    let decoded =
        IncidentEvent::from_payload(&event.event_type, event.schema_version, &event.payload)
            .map_err(|error| anyhow::anyhow!("{}#{}: {error}", event.stream_id, event.sequence))?;
    let summary = match &decoded {
        IncidentEvent::IncidentOpened(opened) => format!(
            "opened by promotion with {} evidence item(s) (decision {})",
            opened.evidence.len(),
            short(&opened.decision_hash.to_string())
        ),
        IncidentEvent::EvidenceAttached(attached) => format!(
            "{} evidence item(s) attached{} (decision {})",
            attached.evidence.len(),
            if attached.fired_again {
                ", fired again while RESOLVED"
            } else {
                ""
            },
            short(&attached.decision_hash.to_string())
        ),
        IncidentEvent::RecoveryRecorded(recovery) => {
            format!(
                "{} recovered (OK) at {}",
                recovery.alarm_name, recovery.event_time
            )
        }
        IncidentEvent::IncidentTransitioned(transition) => format!(
            "{} → {} by {} at {}: {} (lifecycle version {}){}{}",
            transition.from,
            transition.to,
            transition.principal,
            transition.at,
            transition.reason,
            transition.lifecycle_version,
            transition
                .close_as
                .map(|close_as| format!(", closed as {close_as}"))
                .unwrap_or_default(),
            transition
                .resolution_summary
                .as_ref()
                .map(|text| format!(", resolution: {text}"))
                .unwrap_or_default()
        ),
        IncidentEvent::NoteAdded(note) => {
            format!("note by {} at {}: {}", note.principal, note.at, note.text)
        }
        IncidentEvent::AssigneeChanged(change) => format!(
            "assigned to {} by {} at {}{}",
            change.to,
            change.principal,
            change.at,
            change
                .from
                .as_ref()
                .map(|from| format!(" (was {from})"))
                .unwrap_or_default()
        ),
        IncidentEvent::SeverityChanged(change) => format!(
            "severity {} → {} by {} at {}: {}",
            change.from, change.to, change.principal, change.at, change.reason
        ),
    };
    Ok(TimelineEntry {
        sequence: event.sequence,
        event_type: event.event_type.clone(),
        hash: event.hash.to_string(),
        event: serde_json::from_slice(&event.payload)?,
        summary,
    })
}

/// The first 12 characters of a hash, for people.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// One decision in human text (several lines, indented by `indent`).
pub fn decision_text(view: &DecisionView, indent: &str) -> String {
    let decision = &view.decision;
    let mut out = format!(
        "{indent}{} ({}) by gate {} — decision {}\n",
        decision.outcome,
        decision.reason,
        decision.gate_version,
        short(&view.decision_hash)
    );
    if let Some(assessed) = &view.assessment {
        let assessment = &assessed.assessment;
        out.push_str(&format!(
            "{indent}confidence {} / 10000 bps, band {}, threshold {} (model {}), {} member(s) in window {}\n",
            assessment.score_bps,
            assessment.band,
            assessment.promote_threshold_bps,
            assessment.model_version,
            assessed.member_ids.len(),
            assessed.window_start
        ));
        for factor in &assessment.factors {
            out.push_str(&format!(
                "{indent}  {:<20} value {:>5}  × weight {:>5}  = {:>5}  {}\n",
                factor.factor.as_str(),
                factor.value_bps,
                factor.weight_bps,
                factor.contribution_bps,
                factor.explanation
            ));
        }
    }
    out
}

/// Prints `opx show`.
pub fn print_show(view: &ShowView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(view)?);
        return Ok(());
    }
    let row = &view.summary;
    println!("incident {}", row.id);
    println!(
        "  {} / {}  {}  {}  lifecycle version {}",
        row.environment, row.service, row.severity, row.state, row.version
    );
    println!("  opened at {} (earliest evidence)", row.opened_at);
    if let Some(assignee) = &row.assignee {
        println!("  assigned to {assignee}");
    }
    if row.fired_again {
        println!("  fired again while RESOLVED");
    }
    println!("evidence ({} item(s)):", view.incident.evidence_count);
    let mut evidence: Vec<_> = view.incident.evidence.values().collect();
    evidence.sort_by_key(|item| item.keep_order());
    for item in evidence {
        println!(
            "  {}  {:<28}  {}  rule {}@{}  signal {}",
            item.event_time,
            item.alarm_name,
            item.severity,
            item.rule_id,
            item.rule_version,
            short(&item.signal_id.to_string())
        );
    }
    println!("promotion decisions:");
    for decision in &view.decisions {
        print!("{}", decision_text(decision, "  "));
    }
    println!("timeline:");
    for entry in &view.timeline {
        println!(
            "  #{:<3} {:<20} {}",
            entry.sequence, entry.event_type, entry.summary
        );
    }
    Ok(())
}
