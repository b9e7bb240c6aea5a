//! Reading incidents: `opx incidents` and `opx show`.

use crate::UsageError;
use opx_app::pipeline::{read_all, Pipeline, PipelineConfig, PROJECTION_INCIDENT};
use opx_app::ports::{NoPublisher, Store, StoreRead, READ_PAGE_SIZE_MAX};
use opx_domain::correlation::WindowMs;
use opx_domain::hash::Digest;
use opx_domain::incident::{self, Incident, IncidentId, IncidentState};
use serde::Serialize;

/// Shortest incident-id prefix accepted, in hex characters.
pub const ID_PREFIX_LEN_MIN: usize = 8;

/// One incident in a list: the row of `opx incidents --json` (the API's list shape).
pub use opx_api::views::IncidentSummary as IncidentRow;

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

/// The views `opx show` shares with the incident API (one shape, one builder).
pub use opx_api::views::{decisions_in, timeline_entry, DecisionView, TimelineEntry};

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
        .collect::<Result<Vec<_>, _>>()?;
    let decisions = decisions_for(store, &incident, config.window_ms).await?;
    Ok(ShowView {
        summary: IncidentRow::from(&incident),
        incident,
        decisions,
        timeline,
    })
}

/// The promotion decisions naming the incident (the API's builder).
pub async fn decisions_for<S: StoreRead>(
    store: &S,
    incident: &Incident,
    window_ms: WindowMs,
) -> anyhow::Result<Vec<DecisionView>> {
    Ok(opx_api::views::decisions_for(store, incident, window_ms).await?)
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
