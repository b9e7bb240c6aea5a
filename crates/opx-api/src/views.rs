//! What the read routes return, built from the store: the incident list (from the
//! `incident` projections), one incident, its timeline (its event stream), its evidence with
//! the promotion decisions that brought it, and a verification of its stream.
//!
//! These are the API's wire shapes (each is a schema in `api/openapi.yaml`). The field names
//! of [`IncidentSummary`], [`TimelineEntry`] and [`DecisionView`] are those of `opx incidents
//! --json` and `opx show --json`, so a script reads the same document from the local command
//! and from the API.

use crate::cursor;
use crate::problem::{ApiError, ErrorCode};
use opx_app::pipeline::{read_all, PipelineConfig, INCIDENT_EVENTS_READ_MAX, PROJECTION_INCIDENT};
use opx_app::ports::{StoreRead, READ_PAGE_SIZE_MAX};
use opx_app::replay::DivergenceKind;
use opx_domain::correlation::{window_start, CorrelationKey, WindowMs};
use opx_domain::event::{verify_stream, EventEnvelope};
use opx_domain::hash::Digest;
use opx_domain::incident::{
    self, CloseAs, EvidenceItem, Incident, IncidentEvent, IncidentId, IncidentState,
    RecoveryRecorded, TRANSITIONS,
};
use opx_domain::promotion::PromotionDecision;
use opx_domain::record::{group_stream, ConfidenceAssessed, PipelineEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Incidents per page when the caller gives no `limit`.
pub const LIST_LIMIT_DEFAULT: usize = 100;
/// Most incidents (or timeline entries) per page.
pub const LIST_LIMIT_MAX: usize = 1000;
/// Most incident projections one listing request reads while filtering; past it the page is
/// returned short, with a cursor to continue.
pub const LIST_SCAN_MAX: usize = 10_000;
/// Most events read from one group stream when collecting an incident's decisions.
pub const DECISION_GROUP_EVENTS_MAX: usize = 20_000;

/// One incident in a list: the row of `opx incidents --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSummary {
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
    /// The lifecycle version (what a transition's `expected_version` takes).
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

impl From<&Incident> for IncidentSummary {
    fn from(incident: &Incident) -> IncidentSummary {
        IncidentSummary {
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

/// A page of incidents, in id order (stable under concurrent writes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentPage {
    /// The incidents.
    pub items: Vec<IncidentSummary>,
    /// Pass as `cursor` for the next page; `null` at the end. A page may be short (even
    /// empty) and still have a next one: follow the cursor until it is `null`.
    pub next_cursor: Option<String>,
}

/// Which incidents a listing returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    /// Only this state.
    pub state: Option<IncidentState>,
    /// Only this service.
    pub service: Option<String>,
    /// Only this environment.
    pub environment: Option<String>,
}

impl IncidentFilter {
    fn keeps(&self, incident: &Incident) -> bool {
        self.state.is_none_or(|state| incident.state == state)
            && self
                .service
                .as_deref()
                .is_none_or(|service| incident.service == service)
            && self
                .environment
                .as_deref()
                .is_none_or(|environment| incident.environment == environment)
    }

    fn cursor_scope(&self) -> Digest {
        cursor::scope(
            "/incidents",
            &[
                self.state.map(IncidentState::as_str),
                self.service.as_deref(),
                self.environment.as_deref(),
            ],
        )
    }
}

fn decode_incident(key: &str, document: &[u8]) -> Result<Incident, ApiError> {
    serde_json::from_slice(document).map_err(|error| {
        ApiError::new(
            ErrorCode::Internal,
            format!("incident projection {key} does not decode ({error}); an operator should run `opx replay verify`"),
        )
    })
}

/// One page of incidents matching `filter`, continuing after `cursor`.
pub async fn list_incidents<S: StoreRead>(
    store: &S,
    filter: &IncidentFilter,
    cursor: Option<&str>,
    limit: usize,
) -> Result<IncidentPage, ApiError> {
    let scope = filter.cursor_scope();
    let mut after = cursor.map(|text| cursor::decode(text, scope)).transpose()?;
    let limit = limit.clamp(1, LIST_LIMIT_MAX);
    let mut items = Vec::new();
    let mut scanned = 0;
    loop {
        // Never read past what the page can still take: the store's cursor then points
        // exactly after the last incident looked at, taken or filtered out.
        let want = (limit - items.len()).min(READ_PAGE_SIZE_MAX);
        let page = store
            .list_projections(PROJECTION_INCIDENT, after.as_deref(), want)
            .await?;
        scanned += page.items.len();
        for projection in &page.items {
            let incident = decode_incident(&projection.key, &projection.document)?;
            if filter.keeps(&incident) {
                items.push(IncidentSummary::from(&incident));
            }
        }
        after = page.next;
        if after.is_none() || items.len() >= limit || scanned >= LIST_SCAN_MAX {
            break;
        }
    }
    Ok(IncidentPage {
        items,
        next_cursor: after.map(|after| cursor::encode(scope, &after)),
    })
}

/// A transition the incident's state allows (a row of the lifecycle table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedTransition {
    /// The target state.
    pub to: IncidentState,
    /// The `close_as` this transition takes (only to CLOSED).
    pub close_as: Option<CloseAs>,
    /// What people call it.
    pub action: String,
}

/// One incident: `GET /incidents/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentDetail {
    /// The list row.
    pub summary: IncidentSummary,
    /// The folded incident, kept evidence included.
    pub incident: Incident,
    /// What the lifecycle allows from the current state.
    pub allowed_transitions: Vec<AllowedTransition>,
}

impl From<&Incident> for IncidentDetail {
    fn from(incident: &Incident) -> IncidentDetail {
        IncidentDetail {
            summary: IncidentSummary::from(incident),
            incident: incident.clone(),
            allowed_transitions: TRANSITIONS
                .iter()
                .filter(|row| row.from == incident.state)
                .map(|row| AllowedTransition {
                    to: row.to,
                    close_as: row.close_as,
                    action: row.action.to_owned(),
                })
                .collect(),
        }
    }
}

/// The incident as its projection holds it, or 404.
pub async fn incident<S: StoreRead>(
    store: &S,
    incident_id: &IncidentId,
) -> Result<Incident, ApiError> {
    let key = incident_id.to_string();
    match store.projection(PROJECTION_INCIDENT, &key).await? {
        Some(projection) => decode_incident(&key, &projection.document),
        None => Err(not_found(incident_id)),
    }
}

/// The 404 of an unknown incident.
pub fn not_found(incident_id: &IncidentId) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no incident {incident_id}; list incidents with GET /incidents"),
    )
}

/// Parses an incident id from a path (64 hex characters); anything else cannot name an
/// incident, so it is a 404 like an unknown id.
pub fn parse_incident_id(text: &str) -> Result<IncidentId, ApiError> {
    Digest::from_hex(text).map(IncidentId).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "no such incident: an incident id is 64 hexadecimal characters (see GET /incidents)",
        )
    })
}

/// One entry of an incident's timeline: the shape of `opx show --json`'s `timeline`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// A page of an incident's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelinePage {
    /// The incident.
    pub incident_id: String,
    /// The entries, in stream order.
    pub entries: Vec<TimelineEntry>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// The timeline entry of one incident event.
pub fn timeline_entry(event: &EventEnvelope) -> Result<TimelineEntry, ApiError> {
    let corrupt = |error: String| {
        ApiError::new(
            ErrorCode::Internal,
            format!(
                "{}#{}: {error}; an operator should run `opx replay verify`",
                event.stream_id, event.sequence
            ),
        )
    };
    let decoded =
        IncidentEvent::from_payload(&event.event_type, event.schema_version, &event.payload)
            .map_err(|error| corrupt(error.to_string()))?;
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
        IncidentEvent::RecoveryRecorded(recovery) => format!(
            "{} recovered (OK) at {}",
            recovery.alarm_name, recovery.event_time
        ),
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
        event: serde_json::from_slice(&event.payload)
            .map_err(|error| corrupt(error.to_string()))?,
        summary,
    })
}

/// One page of an incident's timeline, from its event stream.
pub async fn timeline<S: StoreRead>(
    store: &S,
    incident_id: &IncidentId,
    cursor: Option<&str>,
    limit: usize,
) -> Result<TimelinePage, ApiError> {
    let stream_id = incident::stream_id(incident_id);
    let scope = cursor::scope("/incidents/{id}/timeline", &[Some(&stream_id)]);
    let from_sequence = match cursor {
        Some(text) => cursor::decode(text, scope)?.parse::<u64>().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidCursor,
                "the cursor is not one this API issued",
            )
            .with_field("cursor")
        })?,
        None => 1,
    };
    if store.read_stream(&stream_id, 1, 1).await?.is_empty() {
        return Err(not_found(incident_id));
    }
    let limit = limit.clamp(1, LIST_LIMIT_MAX.min(READ_PAGE_SIZE_MAX));
    let events = store.read_stream(&stream_id, from_sequence, limit).await?;
    let entries = events
        .iter()
        .map(timeline_entry)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = match events.last() {
        Some(last) if events.len() == limit => {
            Some(cursor::encode(scope, &(last.sequence + 1).to_string()))
        }
        _ => None,
    };
    Ok(TimelinePage {
        incident_id: incident_id.to_string(),
        entries,
        next_cursor,
    })
}

/// A promotion decision about the incident, with the assessment it decided on: the shape
/// of `opx show --json`'s `decisions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// `GET /incidents/{id}/evidence`: what the incident is made of and why it exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceView {
    /// The incident.
    pub incident_id: String,
    /// Evidence items attached, kept or not.
    pub evidence_count: u64,
    /// Whether some attached evidence was counted but not kept.
    pub evidence_truncated: bool,
    /// The kept evidence, earliest first.
    pub items: Vec<EvidenceItem>,
    /// The kept recoveries, earliest first.
    pub recoveries: Vec<RecoveryRecorded>,
    /// The promotion decisions that opened the incident or attached evidence to it.
    pub decisions: Vec<DecisionView>,
}

/// The evidence view of an incident.
pub async fn evidence<S: StoreRead>(
    store: &S,
    config: &PipelineConfig,
    incident: &Incident,
) -> Result<EvidenceView, ApiError> {
    let mut items: Vec<EvidenceItem> = incident.evidence.values().cloned().collect();
    items.sort_by_key(EvidenceItem::keep_order);
    let mut recoveries: Vec<RecoveryRecorded> = incident.recoveries.values().cloned().collect();
    recoveries.sort_by_key(|recovery| (recovery.event_time, recovery.signal_id));
    Ok(EvidenceView {
        incident_id: incident.id.to_string(),
        evidence_count: incident.evidence_count,
        evidence_truncated: incident.evidence_truncated(),
        items,
        recoveries,
        decisions: decisions_for(store, incident, config.window_ms).await?,
    })
}

/// The promotion decisions naming the incident, from the group streams of its evidence's
/// windows (every deciding window holds at least one of its members).
pub async fn decisions_for<S: StoreRead>(
    store: &S,
    incident: &Incident,
    window_ms: WindowMs,
) -> Result<Vec<DecisionView>, ApiError> {
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
        let events = read_all(store, &stream_id, DECISION_GROUP_EVENTS_MAX).await?;
        decisions.extend(decisions_in(&events, |decision| {
            decision.incident_id == Some(incident.id)
        }));
    }
    decisions.sort_by_key(|view| (view.stream_id.clone(), view.sequence));
    Ok(decisions)
}

/// The `PromotionDecided` events of one group stream that `keep` selects, each with the
/// assessment it decided on.
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

/// One thing wrong with an incident's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDivergence {
    /// What kind of difference (the replay engine's kinds).
    pub kind: DivergenceKind,
    /// The first event concerned, if one is.
    pub sequence: Option<u64>,
    /// What differs.
    pub detail: String,
}

/// `GET /incidents/{id}/replay`: the incident stream verified on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayView {
    /// The incident.
    pub incident_id: String,
    /// Its event stream.
    pub stream_id: String,
    /// Nothing diverged.
    pub ok: bool,
    /// Events read.
    pub events: u64,
    /// The stream head's hash (when the chain verified).
    pub head_hash: Option<String>,
    /// What was checked: `chain` (every hash and link), `fold` (every event decodes and
    /// applies), `projection` (the stored incident equals its rebuild), `decisions` (every
    /// promotion decision the incident names is recorded in its group streams).
    pub checks: Vec<String>,
    /// What diverged, first problem first; empty when `ok`.
    pub divergences: Vec<StreamDivergence>,
}

/// Verifies one incident's stream: its chain, its fold, its projection, and that the
/// decisions it names are recorded. `opx replay verify` checks the whole store, and
/// re-derives every decision; this is the per-incident view of the same facts.
pub async fn replay<S: StoreRead>(
    store: &S,
    config: &PipelineConfig,
    incident_id: &IncidentId,
) -> Result<ReplayView, ApiError> {
    let stream_id = incident::stream_id(incident_id);
    let events = read_all(store, &stream_id, INCIDENT_EVENTS_READ_MAX).await?;
    if events.is_empty() {
        return Err(not_found(incident_id));
    }
    let mut view = ReplayView {
        incident_id: incident_id.to_string(),
        stream_id: stream_id.clone(),
        ok: false,
        events: events.len() as u64,
        head_hash: None,
        checks: vec!["chain".to_owned()],
        divergences: Vec::new(),
    };
    match verify_stream(&stream_id, &events) {
        Ok(head) => view.head_hash = Some(head.to_string()),
        Err(error) => {
            // Nothing past a broken chain can be trusted.
            view.divergences.push(StreamDivergence {
                kind: DivergenceKind::ChainBroken,
                sequence: Some(error.sequence()),
                detail: error.to_string(),
            });
            return Ok(view);
        }
    }
    view.checks.push("fold".to_owned());
    let folded = match incident::fold_envelopes(&events) {
        Ok(Some(folded)) => folded,
        Ok(None) => return Err(not_found(incident_id)),
        Err(error) => {
            view.divergences.push(StreamDivergence {
                kind: DivergenceKind::UndecodableEvent,
                sequence: None,
                detail: error.to_string(),
            });
            return Ok(view);
        }
    };
    view.checks.push("projection".to_owned());
    let head_sequence = events.last().map_or(0, |event| event.sequence);
    let rebuilt = serde_json::to_vec(&folded).map_err(|error| {
        ApiError::new(
            ErrorCode::Internal,
            format!("cannot encode the rebuilt incident: {error}"),
        )
    })?;
    match store
        .projection(PROJECTION_INCIDENT, &incident_id.to_string())
        .await?
    {
        Some(stored) if stored.document == rebuilt && stored.version == head_sequence => {}
        Some(stored) => view.divergences.push(StreamDivergence {
            kind: DivergenceKind::ProjectionMismatch,
            sequence: Some(head_sequence),
            detail: format!(
                "the stored incident projection (version {}) differs from its rebuild from the {} events (version {head_sequence})",
                stored.version,
                events.len()
            ),
        }),
        None => view.divergences.push(StreamDivergence {
            kind: DivergenceKind::ProjectionMismatch,
            sequence: Some(head_sequence),
            detail: "the incident has events but no stored projection".to_owned(),
        }),
    }
    view.checks.push("decisions".to_owned());
    let recorded: BTreeSet<String> = decisions_for(store, &folded, config.window_ms)
        .await?
        .into_iter()
        .map(|decision| decision.decision_hash)
        .collect();
    for event in &events {
        let named = match IncidentEvent::from_payload(
            &event.event_type,
            event.schema_version,
            &event.payload,
        ) {
            Ok(IncidentEvent::IncidentOpened(opened)) => Some(opened.decision_hash),
            Ok(IncidentEvent::EvidenceAttached(attached)) => Some(attached.decision_hash),
            _ => None,
        };
        if let Some(hash) = named {
            if !recorded.contains(&hash.to_string()) {
                view.divergences.push(StreamDivergence {
                    kind: DivergenceKind::InputUnavailable,
                    sequence: Some(event.sequence),
                    detail: format!(
                        "{} names promotion decision {hash}, which no group stream of the incident records",
                        event.event_type
                    ),
                });
            }
        }
    }
    view.ok = view.divergences.is_empty();
    Ok(view)
}
