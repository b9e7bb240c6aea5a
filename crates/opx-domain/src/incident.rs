//! The incident aggregate: one outage of one service, from promotion to close.
//!
//! All decisions live in [`decide`]: it takes the current state (or `None`) and a command
//! and returns the events to append, or a typed [`IncidentError`] that says what to do.
//! [`apply`] only folds an event into the state; an event that does not fit the state is an
//! [`ApplyError`], never silently skipped. [`fold`] and [`fold_envelopes`] rebuild the state
//! from a stream. Nothing here reads a clock: a human act carries its time (`at`), which is
//! recorded in the event so replay reuses it.
//!
//! # Who does what
//!
//! The system only opens incidents ([`IncidentCommand::Open`]), attaches evidence
//! ([`IncidentCommand::AttachEvidence`]) and records recoveries
//! ([`IncidentCommand::RecordRecovery`]). Every lifecycle transition is a human act by an
//! authenticated [`Principal`], with a reason, against the expected *lifecycle* version.
//! Humans can also add notes, assign someone and set the severity.
//!
//! # Lifecycle
//!
//! The allowed transitions are exactly the rows of [`TRANSITIONS`] (this table is
//! [`transition_table_markdown`]'s output, and a test keeps the two equal):
//!
//! | from | to | close_as | action |
//! |---|---|---|---|
//! | OPEN | ACKNOWLEDGED | - | acknowledge |
//! | OPEN | CLOSED | false_positive | close as false positive |
//! | ACKNOWLEDGED | MITIGATING | - | start mitigating |
//! | ACKNOWLEDGED | RESOLVED | - | resolve without a mitigation phase |
//! | ACKNOWLEDGED | CLOSED | false_positive | close as false positive |
//! | MITIGATING | RESOLVED | - | resolve |
//! | MITIGATING | CLOSED | false_positive | close as false positive |
//! | RESOLVED | CLOSED | resolved | close |
//! | RESOLVED | CLOSED | false_positive | close as false positive |
//! | RESOLVED | MITIGATING | - | reopen |
//!
//! - **CLOSED is final.** Nothing leaves it. System commands on a CLOSED incident are
//!   refused with [`IncidentError::Closed`]: new evidence for the service opens a *new*
//!   incident (the next generation), which the caller does. Notes are still accepted so a
//!   post-incident review can be written down.
//! - **A normal close** (`close_as: resolved`) is only possible from RESOLVED.
//! - **A false-positive close** (`close_as: false_positive`) ends an incident that was never
//!   a real outage, from any state but CLOSED. From RESOLVED it lets a review reclassify an
//!   incident that was resolved before anyone saw it was noise, so false-positive counts
//!   per rule stay honest.
//! - **A human reopen** takes a RESOLVED incident back to MITIGATING, not to OPEN: OPEN
//!   means "created by promotion, nobody owns it yet, page someone", and a reopen is by
//!   definition a human who is already working it again. Going back to OPEN would discard
//!   the acknowledgment and re-page for an incident that has an owner.
//! - Transitioning to RESOLVED a SEV1 incident needs a non-empty `resolution_summary`.
//!
//! # Versions and concurrency
//!
//! `lifecycle_version` starts at 1 and ONLY transitions bump it. Evidence, recoveries,
//! notes, assignment and severity changes do not, so a responder's expected version does
//! not go stale while an alarm storm keeps attaching evidence. A stale version is
//! [`IncidentError::VersionConflict`]: re-read the incident and retry.
//!
//! # Derived fields and arrival order
//!
//! - `severity` is the worst severity of all evidence ever attached, until a human sets
//!   it; a human-set severity is never changed by later evidence.
//! - `opened_at` is the earliest event time over ALL attached evidence (not the first
//!   evidence to arrive), so the final state does not depend on arrival order.
//! - Evidence is keyed by detection id: attaching a detection that is already stored is a
//!   no-op ([`decide`] returns no events).
//! - Storage is bounded. At most [`EVIDENCE_PER_INCIDENT_MAX`] evidence items are kept:
//!   the *earliest* by `(event_time, detection_id)`, so the kept set is the same whatever
//!   the arrival order. Beyond the limit attachments are still counted
//!   (`evidence_count`), still move `opened_at` and `severity`, and still set
//!   `fired_again`; only the items are not stored. A detection that was not stored cannot
//!   be recognised if it is attached again, so past the limit `evidence_count` is an upper
//!   bound (the store's permanent idempotency keeps redeliveries from reaching here). The
//!   same rule bounds recoveries ([`RECOVERIES_PER_INCIDENT_MAX`]) and distinct alarms
//!   ([`ALARMS_PER_INCIDENT_MAX`], keeping the lexicographically smallest).
//! - `fired_again` is set when evidence attaches while the incident is RESOLVED, and
//!   cleared by the next transition.
//!
//! # Wire format
//!
//! Each event is a struct with an `EVENT_TYPE` and a `SCHEMA_VERSION`. Its payload bytes
//! are `serde_json::to_vec` of that struct (field order is declaration order; only
//! structs, sequences and `BTreeMap`s, so the bytes are canonical).
//! [`IncidentEvent::from_payload`] refuses unknown types, unknown schema versions, unknown
//! fields and bytes that are not exactly what [`IncidentEvent::to_payload`] would write.

use crate::correlation::GroupId;
use crate::detection::{Detection, DetectionId};
use crate::event::{EventEnvelope, PAYLOAD_LEN_MAX};
use crate::hash::{Digest, FieldHasher};
use crate::signal::{truncate_utf8, Severity, SignalId, IDENTIFIER_LEN_MAX};
use crate::time::EpochMs;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// An incident id: SHA-256 over environment, service, the evidence group that promoted it
/// and the generation (how many incidents of that group were closed before), so a storm
/// inside one window gets the same id whatever its arrival order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentId(pub Digest);

impl IncidentId {
    /// Derives the id; see the type documentation.
    pub fn derive(
        environment: &str,
        service: &str,
        group: &GroupId,
        generation: u32,
    ) -> IncidentId {
        IncidentId(
            FieldHasher::new("opx.incident.v1")
                .str(environment)
                .str(service)
                .digest(&group.0)
                .u64(u64::from(generation))
                .finish(),
        )
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The lifecycle state of an incident.
///
/// `OPEN → ACKNOWLEDGED → MITIGATING → RESOLVED → CLOSED`, plus a false-positive close and
/// a human reopen of a RESOLVED incident (see the transition table in this module).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IncidentState {
    /// Created by promotion; nobody has acknowledged it yet.
    Open,
    /// A responder owns it.
    Acknowledged,
    /// Mitigation is under way.
    Mitigating,
    /// Impact has ended; new evidence attaches and flags it "fired again".
    Resolved,
    /// Final. New evidence for the service opens a new incident.
    Closed,
}

impl IncidentState {
    /// The canonical text: `OPEN`, `ACKNOWLEDGED`, `MITIGATING`, `RESOLVED`, `CLOSED`.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "OPEN",
            IncidentState::Acknowledged => "ACKNOWLEDGED",
            IncidentState::Mitigating => "MITIGATING",
            IncidentState::Resolved => "RESOLVED",
            IncidentState::Closed => "CLOSED",
        }
    }

    /// Whether the incident still holds its service's "one open incident" slot (every state
    /// but CLOSED).
    pub fn is_open(self) -> bool {
        self != IncidentState::Closed
    }
}

impl fmt::Display for IncidentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

/// Longest transition or severity-change reason, in bytes.
pub const REASON_LEN_MAX: usize = 1024;
/// Longest note, in bytes.
pub const NOTE_LEN_MAX: usize = 4096;
/// Longest resolution summary, in bytes.
pub const RESOLUTION_SUMMARY_LEN_MAX: usize = 4096;
/// Longest assignee, in bytes.
pub const ASSIGNEE_LEN_MAX: usize = 256;
/// Longest environment, service, alarm, alarm name, rule id or rule version carried by a
/// system command, in bytes (the same limit signals are parsed with).
pub const IDENTIFIER_IN_INCIDENT_LEN_MAX: usize = IDENTIFIER_LEN_MAX;
/// Most evidence items one command may carry. A larger bundle is a caller bug or must be
/// split into several `AttachEvidence` commands.
pub const EVIDENCE_PER_COMMAND_MAX: usize = 1000;
/// Most evidence items one event carries; [`decide`] splits a larger batch into several
/// events so every payload stays well under [`PAYLOAD_LEN_MAX`].
pub const EVIDENCE_PER_EVENT_MAX: usize = 50;
/// Most evidence items kept on an incident (the earliest by event time, then detection id);
/// see the module documentation for what happens beyond it.
pub const EVIDENCE_PER_INCIDENT_MAX: usize = 200;
/// Most recoveries kept on an incident (the earliest by event time, then signal id).
pub const RECOVERIES_PER_INCIDENT_MAX: usize = 100;
/// Most distinct alarms kept on an incident (the lexicographically smallest).
pub const ALARMS_PER_INCIDENT_MAX: usize = 200;
/// Longest principal text (IAM ARNs of assumed-role sessions can be long), in bytes.
pub const PRINCIPAL_LEN_MAX: usize = 2048;
/// Longest local principal name, in bytes.
pub const LOCAL_NAME_LEN_MAX: usize = 64;
/// The prefix of every incident's event stream id: `incident:<64 hex>`.
pub const STREAM_ID_PREFIX: &str = "incident:";

/// The event stream id of an incident: `incident:<64 hex>`.
pub fn stream_id(incident_id: &IncidentId) -> String {
    format!("{STREAM_ID_PREFIX}{incident_id}")
}

// ---------------------------------------------------------------------------------------
// Lifecycle table
// ---------------------------------------------------------------------------------------

/// How a CLOSED incident ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseAs {
    /// It was a real outage and it is over: the normal close, only from RESOLVED.
    Resolved,
    /// It was never a real outage (noise, a misconfigured alarm, a test).
    FalsePositive,
}

impl CloseAs {
    /// The canonical text: `resolved`, `false_positive`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseAs::Resolved => "resolved",
            CloseAs::FalsePositive => "false_positive",
        }
    }
}

impl fmt::Display for CloseAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One allowed lifecycle transition: a row of [`TRANSITIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransitionRule {
    /// The state the incident is in.
    pub from: IncidentState,
    /// The state it moves to.
    pub to: IncidentState,
    /// The `close_as` the transition must carry: `Some` exactly when `to` is CLOSED.
    pub close_as: Option<CloseAs>,
    /// What a person calls this act, for the API and the docs.
    pub action: &'static str,
}

/// Every allowed transition; anything else is refused. The module documentation prints the
/// same table.
pub const TRANSITIONS: &[TransitionRule] = &[
    rule(
        IncidentState::Open,
        IncidentState::Acknowledged,
        None,
        "acknowledge",
    ),
    rule(
        IncidentState::Open,
        IncidentState::Closed,
        Some(CloseAs::FalsePositive),
        "close as false positive",
    ),
    rule(
        IncidentState::Acknowledged,
        IncidentState::Mitigating,
        None,
        "start mitigating",
    ),
    rule(
        IncidentState::Acknowledged,
        IncidentState::Resolved,
        None,
        "resolve without a mitigation phase",
    ),
    rule(
        IncidentState::Acknowledged,
        IncidentState::Closed,
        Some(CloseAs::FalsePositive),
        "close as false positive",
    ),
    rule(
        IncidentState::Mitigating,
        IncidentState::Resolved,
        None,
        "resolve",
    ),
    rule(
        IncidentState::Mitigating,
        IncidentState::Closed,
        Some(CloseAs::FalsePositive),
        "close as false positive",
    ),
    rule(
        IncidentState::Resolved,
        IncidentState::Closed,
        Some(CloseAs::Resolved),
        "close",
    ),
    rule(
        IncidentState::Resolved,
        IncidentState::Closed,
        Some(CloseAs::FalsePositive),
        "close as false positive",
    ),
    rule(
        IncidentState::Resolved,
        IncidentState::Mitigating,
        None,
        "reopen",
    ),
];

const fn rule(
    from: IncidentState,
    to: IncidentState,
    close_as: Option<CloseAs>,
    action: &'static str,
) -> TransitionRule {
    TransitionRule {
        from,
        to,
        close_as,
        action,
    }
}

/// The row of [`TRANSITIONS`] for `from → to` with `close_as`, if that transition is allowed.
pub fn transition_rule(
    from: IncidentState,
    to: IncidentState,
    close_as: Option<CloseAs>,
) -> Option<&'static TransitionRule> {
    TRANSITIONS
        .iter()
        .find(|row| row.from == from && row.to == to && row.close_as == close_as)
}

/// The states an incident in `from` may move to, in table order, without repeats. Empty for
/// CLOSED.
pub fn allowed_targets(from: IncidentState) -> Vec<IncidentState> {
    let mut targets = Vec::new();
    for row in TRANSITIONS.iter().filter(|row| row.from == from) {
        if !targets.contains(&row.to) {
            targets.push(row.to);
        }
    }
    targets
}

/// The `close_as` values allowed when closing from `from`. Empty if `from` cannot close.
pub fn allowed_close_as(from: IncidentState) -> Vec<CloseAs> {
    TRANSITIONS
        .iter()
        .filter(|row| row.from == from && row.to == IncidentState::Closed)
        .filter_map(|row| row.close_as)
        .collect()
}

/// [`TRANSITIONS`] as a Markdown table, exactly as the module documentation shows it.
pub fn transition_table_markdown() -> String {
    let mut out = String::from("| from | to | close_as | action |\n|---|---|---|---|\n");
    for row in TRANSITIONS {
        let close_as = row.close_as.map_or("-", CloseAs::as_str);
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            row.from, row.to, close_as, row.action
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Principals
// ---------------------------------------------------------------------------------------

/// An authenticated actor: an IAM (or STS) ARN as the API authorizer reported it, or a
/// local principal `local:NAME` for the embedded, single-machine mode.
///
/// The two forms cannot be confused: an IAM principal starts with `arn:aws`, a local one
/// with `local:`, and a local name cannot contain `:`. The only ways to build one are
/// [`Principal::iam`], [`Principal::local`] and [`Principal::parse`] (which deserialising
/// uses), so every `Principal` in a command or an event has been checked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Principal(String);

/// Why a principal was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    /// Not an IAM user or STS session ARN.
    #[error("IAM principal {arn:?} is refused: {reason}; pass the caller ARN exactly as the authorizer reported it, e.g. arn:aws:sts::123456789012:assumed-role/Responder/alice")]
    InvalidIamArn {
        /// The text (cut to 128 bytes).
        arn: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not a valid local principal name.
    #[error("local principal name {name:?} is refused: {reason}; use 1 to 64 characters from A-Z a-z 0-9 . _ @ -")]
    InvalidLocalName {
        /// The name (cut to 128 bytes).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Neither form.
    #[error(
        "principal {text:?} is neither an IAM ARN (arn:aws...) nor a local principal (local:NAME)"
    )]
    Unrecognized {
        /// The text (cut to 128 bytes).
        text: String,
    },
}

const ECHO_LEN_MAX: usize = 128;

impl Principal {
    /// The prefix of every local principal.
    pub const LOCAL_PREFIX: &'static str = "local:";

    /// An IAM principal: `arn:PARTITION:SERVICE::ACCOUNT:RESOURCE` where the partition is
    /// `aws` or `aws-*`, the service is `iam` or `sts` (a user, a role or an assumed-role
    /// session: who API Gateway's IAM authorization says called), the account is 12
    /// digits, and everything is printable ASCII without spaces.
    pub fn iam(arn: &str) -> Result<Principal, PrincipalError> {
        match check_iam_arn(arn) {
            Ok(()) => Ok(Principal(arn.to_owned())),
            Err(reason) => Err(PrincipalError::InvalidIamArn {
                arn: truncate_utf8(arn, ECHO_LEN_MAX).to_owned(),
                reason,
            }),
        }
    }

    /// A local principal, stored as `local:NAME`; `NAME` is 1 to [`LOCAL_NAME_LEN_MAX`]
    /// characters of `A-Z a-z 0-9 . _ @ -`.
    pub fn local(name: &str) -> Result<Principal, PrincipalError> {
        let refuse = |reason| PrincipalError::InvalidLocalName {
            name: truncate_utf8(name, ECHO_LEN_MAX).to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(refuse("it is empty"));
        }
        if name.len() > LOCAL_NAME_LEN_MAX {
            return Err(refuse("it is longer than 64 bytes"));
        }
        let allowed = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'@' | b'-');
        if !name.bytes().all(allowed) {
            return Err(refuse(
                "it contains a character outside A-Z a-z 0-9 . _ @ -",
            ));
        }
        Ok(Principal(format!("{}{name}", Principal::LOCAL_PREFIX)))
    }

    /// Parses the stored text form: `local:NAME` or an IAM ARN.
    pub fn parse(text: &str) -> Result<Principal, PrincipalError> {
        if let Some(name) = text.strip_prefix(Principal::LOCAL_PREFIX) {
            Principal::local(name)
        } else if text.starts_with("arn:") {
            Principal::iam(text)
        } else {
            Err(PrincipalError::Unrecognized {
                text: truncate_utf8(text, ECHO_LEN_MAX).to_owned(),
            })
        }
    }

    /// The stored text: the ARN, or `local:NAME`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a local principal (embedded mode) rather than an IAM one.
    pub fn is_local(&self) -> bool {
        self.0.starts_with(Principal::LOCAL_PREFIX)
    }
}

fn check_iam_arn(arn: &str) -> Result<(), &'static str> {
    if arn.len() > PRINCIPAL_LEN_MAX {
        return Err("it is longer than 2048 bytes");
    }
    if !arn.starts_with("arn:aws") {
        return Err("it does not start with arn:aws");
    }
    if !arn.bytes().all(|c| c.is_ascii_graphic()) {
        return Err("it contains spaces, control or non-ASCII characters");
    }
    let mut parts = arn.splitn(6, ':');
    let (Some(_arn), Some(partition), Some(service), Some(_region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err("it does not have the form arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE");
    };
    if partition != "aws" && !partition.starts_with("aws-") {
        return Err("the partition is not aws or aws-*");
    }
    if service != "iam" && service != "sts" {
        return Err("the service is not iam or sts (only users, roles and role sessions act)");
    }
    if account.len() != 12 || !account.bytes().all(|c| c.is_ascii_digit()) {
        return Err("the account is not 12 digits");
    }
    if resource.is_empty() {
        return Err("the resource (user/..., role/..., assumed-role/...) is empty");
    }
    Ok(())
}

impl TryFrom<String> for Principal {
    type Error = PrincipalError;
    fn try_from(text: String) -> Result<Principal, PrincipalError> {
        Principal::parse(&text)
    }
}

impl From<Principal> for String {
    fn from(principal: Principal) -> String {
        principal.0
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// One detection as the incident keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceItem {
    /// The detection; evidence is deduplicated by it.
    pub detection_id: DetectionId,
    /// The detected signal.
    pub signal_id: SignalId,
    /// The alarm identity (distinct alarms are counted by it).
    pub alarm: String,
    /// The alarm name, for people.
    pub alarm_name: String,
    /// The detection's severity.
    pub severity: Severity,
    /// The signal's event time.
    pub event_time: EpochMs,
    /// The matching rule.
    pub rule_id: String,
    /// The matching rule's version, as written.
    pub rule_version: String,
}

impl EvidenceItem {
    /// The order in which evidence is kept when there is more than
    /// [`EVIDENCE_PER_INCIDENT_MAX`]: earliest first, ties broken by detection id.
    pub fn keep_order(&self) -> (EpochMs, DetectionId) {
        (self.event_time, self.detection_id)
    }
}

impl From<&Detection> for EvidenceItem {
    fn from(detection: &Detection) -> EvidenceItem {
        EvidenceItem {
            detection_id: detection.id,
            signal_id: detection.signal_id,
            alarm: detection.alarm.clone(),
            alarm_name: detection.alarm_name.clone(),
            severity: detection.severity,
            event_time: detection.event_time,
            rule_id: detection.rule_id.clone(),
            rule_version: detection.rule_version.clone(),
        }
    }
}

/// What someone asks the incident to do. System commands: `Open`, `AttachEvidence`,
/// `RecordRecovery`. Human commands carry the authenticated `principal` and `at`, the time
/// of the human act as the caller's clock read it (recorded in the event so replay reuses
/// it; the domain never reads a clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncidentCommand {
    /// Promotion creates the incident.
    Open {
        /// Must equal [`IncidentId::derive`] of the next four fields.
        incident_id: IncidentId,
        /// Correlation key part 1.
        environment: String,
        /// Correlation key part 2.
        service: String,
        /// The evidence group whose promotion opened it.
        group_id: GroupId,
        /// How many incidents of that group were closed before.
        generation: u32,
        /// The promoted evidence; at least one item.
        evidence: Vec<EvidenceItem>,
        /// The hash of the promotion decision.
        decision_hash: Digest,
    },
    /// Promotion attaches new evidence to the open incident.
    AttachEvidence {
        /// At least one item; items already on the incident are ignored.
        evidence: Vec<EvidenceItem>,
        /// The hash of the decision that attached it.
        decision_hash: Digest,
    },
    /// An alarm of the incident went back to OK. Recorded on the timeline; it never changes
    /// the lifecycle state (only a human resolves).
    RecordRecovery {
        /// The OK signal.
        signal_id: SignalId,
        /// The alarm identity.
        alarm: String,
        /// The alarm name.
        alarm_name: String,
        /// When the alarm recovered.
        event_time: EpochMs,
    },
    /// A human moves the incident along the lifecycle.
    Transition {
        /// Who.
        principal: Principal,
        /// When.
        at: EpochMs,
        /// The target state.
        to: IncidentState,
        /// Why; non-empty after trimming, at most [`REASON_LEN_MAX`] bytes.
        reason: String,
        /// The lifecycle version the human saw; a different current version is a conflict.
        expected_lifecycle_version: u64,
        /// Required exactly when `to` is CLOSED.
        close_as: Option<CloseAs>,
        /// Only when `to` is RESOLVED; required for a SEV1 incident.
        resolution_summary: Option<String>,
    },
    /// A human adds a note to the timeline (also allowed on a CLOSED incident).
    AddNote {
        /// Who.
        principal: Principal,
        /// When.
        at: EpochMs,
        /// Non-empty after trimming, at most [`NOTE_LEN_MAX`] bytes.
        text: String,
    },
    /// A human assigns the incident.
    Assign {
        /// Who.
        principal: Principal,
        /// When.
        at: EpochMs,
        /// Non-empty after trimming, at most [`ASSIGNEE_LEN_MAX`] bytes.
        assignee: String,
    },
    /// A human sets the severity; later evidence no longer changes it.
    SetSeverity {
        /// Who.
        principal: Principal,
        /// When.
        at: EpochMs,
        /// The new severity.
        severity: Severity,
        /// Why; non-empty after trimming, at most [`REASON_LEN_MAX`] bytes.
        reason: String,
    },
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// The incident was created by promotion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentOpened {
    /// [`IncidentId::derive`] of the next four fields.
    pub incident_id: IncidentId,
    /// Correlation key part 1.
    pub environment: String,
    /// Correlation key part 2.
    pub service: String,
    /// The evidence group whose promotion opened it.
    pub group_id: GroupId,
    /// How many incidents of that group were closed before.
    pub generation: u32,
    /// The first evidence (at most [`EVIDENCE_PER_EVENT_MAX`] items; the rest of a larger
    /// bundle follows in `EvidenceAttached` events).
    pub evidence: Vec<EvidenceItem>,
    /// The hash of the promotion decision.
    pub decision_hash: Digest,
}

impl IncidentOpened {
    /// The event type.
    pub const EVENT_TYPE: &'static str = "IncidentOpened";
    /// The payload schema version.
    pub const SCHEMA_VERSION: u32 = 1;
}

/// New evidence was attached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceAttached {
    /// The new items (none already on the incident), at most [`EVIDENCE_PER_EVENT_MAX`].
    pub evidence: Vec<EvidenceItem>,
    /// The hash of the decision that attached it.
    pub decision_hash: Digest,
    /// Attached while RESOLVED: the incident fired again.
    pub fired_again: bool,
}

impl EvidenceAttached {
    /// The event type.
    pub const EVENT_TYPE: &'static str = "EvidenceAttached";
    /// The payload schema version.
    pub const SCHEMA_VERSION: u32 = 1;
}

/// An alarm of the incident recovered (went back to OK).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryRecorded {
    /// The OK signal.
    pub signal_id: SignalId,
    /// The alarm identity.
    pub alarm: String,
    /// The alarm name.
    pub alarm_name: String,
    /// When the alarm recovered.
    pub event_time: EpochMs,
}

impl RecoveryRecorded {
    /// The event type.
    pub const EVENT_TYPE: &'static str = "RecoveryRecorded";
    /// The payload schema version.
    pub const SCHEMA_VERSION: u32 = 1;
}

/// A human moved the incident along the lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentTransitioned {
    /// The state before.
    pub from: IncidentState,
    /// The state after.
    pub to: IncidentState,
    /// Who.
    pub principal: Principal,
    /// Why.
    pub reason: String,
    /// When (the human act's time, as recorded).
    pub at: EpochMs,
    /// The new lifecycle version (the previous one plus one).
    pub lifecycle_version: u64,
    /// How it was closed, when `to` is CLOSED.
    pub close_as: Option<CloseAs>,
    /// What fixed it, when `to` is RESOLVED.
    pub resolution_summary: Option<String>,
}

impl IncidentTransitioned {
    /// The event type.
    pub const EVENT_TYPE: &'static str = "IncidentTransitioned";
    /// The payload schema version.
    pub const SCHEMA_VERSION: u32 = 1;
}

/// A human added a note.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteAdded {
    /// The note.
    pub text: String,
    /// Who.
    pub principal: Principal,
    /// When.
    pub at: EpochMs,
}

impl NoteAdded {
    /// The event type.
    pub const EVENT_TYPE: &'static str = "NoteAdded";
    /// The payload schema version.
    pub const SCHEMA_VERSION: u32 = 1;
}

/// A human assigned the incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssigneeChanged {
    /// The assignee before, if any.
    pub from: Option<String>,
    /// The new assignee.
    pub to: String,
    /// Who.
    pub principal: Principal,
    /// When.
    pub at: EpochMs,
}

impl AssigneeChanged {
    /// The event type.
    pub const EVENT_TYPE: &'static str = "AssigneeChanged";
    /// The payload schema version.
    pub const SCHEMA_VERSION: u32 = 1;
}

/// A human set the severity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityChanged {
    /// The severity before.
    pub from: Severity,
    /// The new severity.
    pub to: Severity,
    /// Who.
    pub principal: Principal,
    /// Why.
    pub reason: String,
    /// When.
    pub at: EpochMs,
}

impl SeverityChanged {
    /// The event type.
    pub const EVENT_TYPE: &'static str = "SeverityChanged";
    /// The payload schema version.
    pub const SCHEMA_VERSION: u32 = 1;
}

/// Every event of an incident stream. As JSON (API bodies, exports) it carries a `type`
/// tag; as a stored payload it is the bare struct (the envelope holds the type).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum IncidentEvent {
    /// See [`IncidentOpened`].
    IncidentOpened(IncidentOpened),
    /// See [`EvidenceAttached`].
    EvidenceAttached(EvidenceAttached),
    /// See [`RecoveryRecorded`].
    RecoveryRecorded(RecoveryRecorded),
    /// See [`IncidentTransitioned`].
    IncidentTransitioned(IncidentTransitioned),
    /// See [`NoteAdded`].
    NoteAdded(NoteAdded),
    /// See [`AssigneeChanged`].
    AssigneeChanged(AssigneeChanged),
    /// See [`SeverityChanged`].
    SeverityChanged(SeverityChanged),
}

/// Every incident event type with its current schema version.
pub const EVENT_TYPES: [(&str, u32); 7] = [
    (IncidentOpened::EVENT_TYPE, IncidentOpened::SCHEMA_VERSION),
    (
        EvidenceAttached::EVENT_TYPE,
        EvidenceAttached::SCHEMA_VERSION,
    ),
    (
        RecoveryRecorded::EVENT_TYPE,
        RecoveryRecorded::SCHEMA_VERSION,
    ),
    (
        IncidentTransitioned::EVENT_TYPE,
        IncidentTransitioned::SCHEMA_VERSION,
    ),
    (NoteAdded::EVENT_TYPE, NoteAdded::SCHEMA_VERSION),
    (AssigneeChanged::EVENT_TYPE, AssigneeChanged::SCHEMA_VERSION),
    (SeverityChanged::EVENT_TYPE, SeverityChanged::SCHEMA_VERSION),
];

/// Why an event could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// serde_json refused to encode (cannot happen for these plain structs; kept typed so
    /// no code path panics).
    #[error("{event_type}: cannot encode the payload: {detail}")]
    Encode {
        /// The event type.
        event_type: &'static str,
        /// serde_json's message.
        detail: String,
    },
    /// Not an incident event type.
    #[error("{event_type:?} is not an incident event type (expected one of IncidentOpened, EvidenceAttached, RecoveryRecorded, IncidentTransitioned, NoteAdded, AssigneeChanged, SeverityChanged)")]
    UnknownEventType {
        /// The type found (cut to 128 bytes).
        event_type: String,
    },
    /// A schema version this code does not read.
    #[error("{event_type} schema version {found} is not supported (this build reads version {supported}); upgrade opx before replaying this stream")]
    UnsupportedSchemaVersion {
        /// The event type.
        event_type: &'static str,
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The bytes are not a valid payload of that type.
    #[error("{event_type} payload is malformed: {detail}")]
    Malformed {
        /// The event type.
        event_type: &'static str,
        /// serde_json's message (names the field and position).
        detail: String,
    },
    /// The bytes decode but are not the canonical encoding of what they decode to, so the
    /// hashed bytes and the decoded event could disagree.
    #[error("{event_type} payload is not canonical (not exactly what serde_json::to_vec writes for it): it was not written by opx")]
    NotCanonical {
        /// The event type.
        event_type: &'static str,
    },
}

impl IncidentEvent {
    /// The past-tense event type, e.g. `IncidentOpened`.
    pub fn event_type(&self) -> &'static str {
        match self {
            IncidentEvent::IncidentOpened(_) => IncidentOpened::EVENT_TYPE,
            IncidentEvent::EvidenceAttached(_) => EvidenceAttached::EVENT_TYPE,
            IncidentEvent::RecoveryRecorded(_) => RecoveryRecorded::EVENT_TYPE,
            IncidentEvent::IncidentTransitioned(_) => IncidentTransitioned::EVENT_TYPE,
            IncidentEvent::NoteAdded(_) => NoteAdded::EVENT_TYPE,
            IncidentEvent::AssigneeChanged(_) => AssigneeChanged::EVENT_TYPE,
            IncidentEvent::SeverityChanged(_) => SeverityChanged::EVENT_TYPE,
        }
    }

    /// The schema version of this event's payload.
    pub fn schema_version(&self) -> u32 {
        match self {
            IncidentEvent::IncidentOpened(_) => IncidentOpened::SCHEMA_VERSION,
            IncidentEvent::EvidenceAttached(_) => EvidenceAttached::SCHEMA_VERSION,
            IncidentEvent::RecoveryRecorded(_) => RecoveryRecorded::SCHEMA_VERSION,
            IncidentEvent::IncidentTransitioned(_) => IncidentTransitioned::SCHEMA_VERSION,
            IncidentEvent::NoteAdded(_) => NoteAdded::SCHEMA_VERSION,
            IncidentEvent::AssigneeChanged(_) => AssigneeChanged::SCHEMA_VERSION,
            IncidentEvent::SeverityChanged(_) => SeverityChanged::SCHEMA_VERSION,
        }
    }

    /// The canonical payload bytes: `serde_json::to_vec` of the event's struct (no `type`
    /// tag; the envelope carries the type).
    pub fn to_payload(&self) -> Result<Vec<u8>, PayloadError> {
        let encoded = match self {
            IncidentEvent::IncidentOpened(event) => serde_json::to_vec(event),
            IncidentEvent::EvidenceAttached(event) => serde_json::to_vec(event),
            IncidentEvent::RecoveryRecorded(event) => serde_json::to_vec(event),
            IncidentEvent::IncidentTransitioned(event) => serde_json::to_vec(event),
            IncidentEvent::NoteAdded(event) => serde_json::to_vec(event),
            IncidentEvent::AssigneeChanged(event) => serde_json::to_vec(event),
            IncidentEvent::SeverityChanged(event) => serde_json::to_vec(event),
        };
        encoded.map_err(|error| PayloadError::Encode {
            event_type: self.event_type(),
            detail: error.to_string(),
        })
    }

    /// Decodes stored payload bytes by event type and schema version. Refuses unknown
    /// types and versions, unknown fields, and bytes that are not canonical.
    pub fn from_payload(
        event_type: &str,
        schema_version: u32,
        payload: &[u8],
    ) -> Result<IncidentEvent, PayloadError> {
        let decoded = match event_type {
            IncidentOpened::EVENT_TYPE => {
                IncidentEvent::IncidentOpened(decode(schema_version, payload)?)
            }
            EvidenceAttached::EVENT_TYPE => {
                IncidentEvent::EvidenceAttached(decode(schema_version, payload)?)
            }
            RecoveryRecorded::EVENT_TYPE => {
                IncidentEvent::RecoveryRecorded(decode(schema_version, payload)?)
            }
            IncidentTransitioned::EVENT_TYPE => {
                IncidentEvent::IncidentTransitioned(decode(schema_version, payload)?)
            }
            NoteAdded::EVENT_TYPE => IncidentEvent::NoteAdded(decode(schema_version, payload)?),
            AssigneeChanged::EVENT_TYPE => {
                IncidentEvent::AssigneeChanged(decode(schema_version, payload)?)
            }
            SeverityChanged::EVENT_TYPE => {
                IncidentEvent::SeverityChanged(decode(schema_version, payload)?)
            }
            _ => {
                return Err(PayloadError::UnknownEventType {
                    event_type: truncate_utf8(event_type, ECHO_LEN_MAX).to_owned(),
                })
            }
        };
        // Re-encoding must give back the stored bytes exactly: the bytes are what the chain
        // hashes, so the decoded event must not differ from them in any way.
        if decoded.to_payload()? != payload {
            return Err(PayloadError::NotCanonical {
                event_type: decoded.event_type(),
            });
        }
        Ok(decoded)
    }

    /// Seals this event as event `sequence` of the incident's stream.
    pub fn seal(
        &self,
        incident_id: &IncidentId,
        sequence: u64,
        previous_hash: Digest,
    ) -> Result<EventEnvelope, PayloadError> {
        Ok(EventEnvelope::seal(
            stream_id(incident_id),
            sequence,
            self.event_type(),
            self.schema_version(),
            self.to_payload()?,
            previous_hash,
        ))
    }
}

/// The payload structs, so decoding can be written once.
trait EventPayload: for<'de> Deserialize<'de> {
    const EVENT_TYPE: &'static str;
    const SCHEMA_VERSION: u32;
}

macro_rules! event_payload {
    ($($name:ident),*) => {$(
        impl EventPayload for $name {
            const EVENT_TYPE: &'static str = $name::EVENT_TYPE;
            const SCHEMA_VERSION: u32 = $name::SCHEMA_VERSION;
        }
    )*};
}

event_payload!(
    IncidentOpened,
    EvidenceAttached,
    RecoveryRecorded,
    IncidentTransitioned,
    NoteAdded,
    AssigneeChanged,
    SeverityChanged
);

fn decode<T: EventPayload>(schema_version: u32, payload: &[u8]) -> Result<T, PayloadError> {
    if schema_version != T::SCHEMA_VERSION {
        return Err(PayloadError::UnsupportedSchemaVersion {
            event_type: T::EVENT_TYPE,
            found: schema_version,
            supported: T::SCHEMA_VERSION,
        });
    }
    serde_json::from_slice(payload).map_err(|error| PayloadError::Malformed {
        event_type: T::EVENT_TYPE,
        detail: error.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/// The state of one incident, as [`apply`] folds it from its events. Build it only with
/// [`apply`] or [`fold`]; the fields are public for reading (projections, the API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// The incident id.
    pub id: IncidentId,
    /// Correlation key part 1.
    pub environment: String,
    /// Correlation key part 2.
    pub service: String,
    /// The evidence group whose promotion opened it.
    pub group_id: GroupId,
    /// How many incidents of that group were closed before.
    pub generation: u32,
    /// The lifecycle state.
    pub state: IncidentState,
    /// Starts at 1; only transitions bump it.
    pub lifecycle_version: u64,
    /// The worst severity of all attached evidence, unless a human set it.
    pub severity: Severity,
    /// A human set `severity`; evidence no longer changes it.
    pub severity_set_by_human: bool,
    /// The earliest event time over all attached evidence (whatever the arrival order).
    pub opened_at: EpochMs,
    /// The kept evidence: at most [`EVIDENCE_PER_INCIDENT_MAX`], the earliest.
    pub evidence: BTreeMap<DetectionId, EvidenceItem>,
    /// How many evidence items were attached, kept or not (exact up to the limit; an upper
    /// bound beyond it, see the module documentation).
    pub evidence_count: u64,
    /// The distinct alarms of the attached evidence: at most [`ALARMS_PER_INCIDENT_MAX`],
    /// the lexicographically smallest.
    pub alarms: BTreeSet<String>,
    /// More distinct alarms were attached than `alarms` keeps.
    pub alarms_truncated: bool,
    /// Evidence attached while RESOLVED; cleared by the next transition.
    pub fired_again: bool,
    /// The kept recoveries: at most [`RECOVERIES_PER_INCIDENT_MAX`], the earliest.
    pub recoveries: BTreeMap<SignalId, RecoveryRecorded>,
    /// How many recoveries were recorded, kept or not.
    pub recovery_count: u64,
    /// Who is assigned, if anyone.
    pub assignee: Option<String>,
    /// How many notes were added.
    pub note_count: u64,
    /// The last lifecycle transition, if any.
    pub last_transition: Option<IncidentTransitioned>,
}

impl Incident {
    /// The states this incident may move to now.
    pub fn allowed_targets(&self) -> Vec<IncidentState> {
        allowed_targets(self.state)
    }

    /// Whether some attached evidence was counted but not kept.
    pub fn evidence_truncated(&self) -> bool {
        self.evidence_count > self.evidence.len() as u64
    }

    /// The incident's event stream id.
    pub fn stream_id(&self) -> String {
        stream_id(&self.id)
    }

    /// Whether a recovery of `alarm` at `event_time` belongs on this incident: its kept
    /// evidence holds that alarm going bad no later than it recovered. A recovery from an
    /// earlier episode of the alarm, or of an alarm that is not evidence, does not.
    pub fn is_recovered_by(&self, alarm: &str, event_time: EpochMs) -> bool {
        self.evidence
            .values()
            .any(|item| item.alarm == alarm && item.event_time <= event_time)
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why [`decide`] refused a command, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IncidentError {
    /// There is no incident; only `Open` creates one.
    #[error("no such incident: only promotion opens an incident; check the incident id")]
    NotFound,
    /// `Open` for an incident that already exists.
    #[error("incident {incident_id} already exists: attach the evidence to it instead of opening it again")]
    AlreadyExists {
        /// The existing incident.
        incident_id: IncidentId,
    },
    /// A system command, assignment or severity change on a CLOSED incident.
    #[error("incident {incident_id} is CLOSED, which is final: new evidence must open a new incident (the next generation); a closed incident only takes notes")]
    Closed {
        /// The closed incident.
        incident_id: IncidentId,
    },
    /// `Open` named an id that is not derived from its own fields.
    #[error("incident id {given} does not match the id derived from environment, service, group and generation ({derived}): derive it with IncidentId::derive")]
    IncidentIdMismatch {
        /// The id in the command.
        given: IncidentId,
        /// The id derived from the command's fields.
        derived: IncidentId,
    },
    /// The human saw another lifecycle version than the current one.
    #[error("stale lifecycle version: expected {expected} but the incident is at {actual}; re-read the incident and retry if the transition still makes sense")]
    VersionConflict {
        /// The version the command expected.
        expected: u64,
        /// The current version.
        actual: u64,
    },
    /// The lifecycle table has no such transition.
    #[error("transition {from} → {to} is not allowed; from {from} the allowed targets are {}", states_text(.allowed))]
    TransitionNotAllowed {
        /// The current state.
        from: IncidentState,
        /// The requested state.
        to: IncidentState,
        /// The states that are allowed from `from` (empty from CLOSED).
        allowed: Vec<IncidentState>,
    },
    /// A transition to CLOSED must say how it ends.
    #[error("closing from {from} needs close_as; allowed here: {}", close_as_text(.allowed))]
    CloseAsRequired {
        /// The current state.
        from: IncidentState,
        /// The values allowed from `from`.
        allowed: Vec<CloseAs>,
    },
    /// This `close_as` is not allowed from this state.
    #[error("closing from {from} as {close_as} is not allowed (a normal close needs RESOLVED first); allowed here: {}", close_as_text(.allowed))]
    CloseAsNotAllowed {
        /// The current state.
        from: IncidentState,
        /// The value given.
        close_as: CloseAs,
        /// The values allowed from `from`.
        allowed: Vec<CloseAs>,
    },
    /// `close_as` on a transition that does not close.
    #[error(
        "close_as {close_as} only goes with a transition to CLOSED, not to {to}; leave it out"
    )]
    CloseAsNotApplicable {
        /// The requested state.
        to: IncidentState,
        /// The value given.
        close_as: CloseAs,
    },
    /// The reason is empty or only whitespace.
    #[error("a reason is required: say why, in a few words")]
    MissingReason,
    /// Resolving a SEV1 needs a resolution summary.
    #[error(
        "resolving a {severity} incident needs a non-empty resolution_summary: say what fixed it"
    )]
    ResolutionSummaryRequired {
        /// The incident's severity.
        severity: Severity,
    },
    /// A resolution summary on a transition that does not resolve.
    #[error("resolution_summary only goes with a transition to RESOLVED, not to {to}; put it in the reason or a note")]
    ResolutionSummaryNotApplicable {
        /// The requested state.
        to: IncidentState,
    },
    /// A text field is empty or only whitespace.
    #[error("{field} is empty: give a value")]
    EmptyText {
        /// The field.
        field: &'static str,
    },
    /// A text field is too long.
    #[error("{field} is {len} bytes, more than the {len_max} allowed: shorten it")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        len_max: usize,
    },
    /// A time outside the range opx accepts (before 2000 or after 2199): usually seconds
    /// passed as milliseconds, or an unset clock.
    #[error("{field} = {} ({}) is outside 2000..2199: pass milliseconds since the epoch", .at.0, .at)]
    ImplausibleTime {
        /// The field.
        field: &'static str,
        /// The value.
        at: EpochMs,
    },
    /// `Open` or `AttachEvidence` without evidence.
    #[error("no evidence given: an incident is opened or extended by at least one detection")]
    NoEvidence,
    /// More evidence items in one command than [`EVIDENCE_PER_COMMAND_MAX`].
    #[error("{count} evidence items in one command, more than {count_max}: split them over several AttachEvidence commands")]
    TooManyEvidenceItems {
        /// The items given.
        count: usize,
        /// The limit.
        count_max: usize,
    },
    /// The same detection id with different content (within the command or against the
    /// incident): an upstream bug, since the id is derived from that content.
    #[error("detection {detection_id} is given with content that differs from its other copy: the same detection id must carry the same evidence; this is a bug upstream")]
    EvidenceConflict {
        /// The detection.
        detection_id: DetectionId,
    },
    /// The same recovery signal with different content.
    #[error("recovery signal {signal_id} is already recorded with different content: the same signal id must carry the same recovery; this is a bug upstream")]
    RecoveryConflict {
        /// The signal.
        signal_id: SignalId,
    },
    /// An event's payload would exceed [`PAYLOAD_LEN_MAX`].
    #[error(
        "{event_type} payload would be {len} bytes, more than {len_max}: shorten the text fields"
    )]
    PayloadTooLarge {
        /// The event type.
        event_type: &'static str,
        /// The payload length.
        len: usize,
        /// The limit.
        len_max: usize,
    },
    /// An event could not be encoded.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

fn states_text(states: &[IncidentState]) -> String {
    if states.is_empty() {
        return "none (CLOSED is final)".to_owned();
    }
    states
        .iter()
        .map(|state| state.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn close_as_text(values: &[CloseAs]) -> String {
    if values.is_empty() {
        return "none".to_owned();
    }
    values
        .iter()
        .map(|value| value.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is wrong with an event that does not fit the incident's state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Misfit {
    /// `IncidentOpened` names an id not derived from its fields.
    #[error("its incident id is not derived from its environment, service, group and generation")]
    IncidentIdMismatch,
    /// Evidence event without evidence.
    #[error("it carries no evidence")]
    NoEvidence,
    /// The evidence is already on the incident, or twice in the event.
    #[error("detection {0} is already attached")]
    DuplicateEvidence(DetectionId),
    /// The recovery is already recorded.
    #[error("recovery {0} is already recorded")]
    DuplicateRecovery(SignalId),
    /// `fired_again` disagrees with the state.
    #[error("fired_again is {found} but the incident is {state}")]
    FiredAgainMismatch {
        /// The flag in the event.
        found: bool,
        /// The incident's state.
        state: IncidentState,
    },
    /// The incident is CLOSED and the event is not a note.
    #[error("the incident is CLOSED")]
    Closed,
    /// The transition's `from` is not the current state.
    #[error("it transitions from {found} but the incident is {state}")]
    WrongFromState {
        /// The `from` in the event.
        found: IncidentState,
        /// The incident's state.
        state: IncidentState,
    },
    /// The transition is not in [`TRANSITIONS`].
    #[error("{from} → {to} with close_as {close_as:?} is not in the lifecycle table")]
    NotInTable {
        /// From.
        from: IncidentState,
        /// To.
        to: IncidentState,
        /// The close_as.
        close_as: Option<CloseAs>,
    },
    /// The transition's lifecycle version is not the current one plus one.
    #[error("its lifecycle version is {found}, expected {expected}")]
    WrongLifecycleVersion {
        /// The version in the event.
        found: u64,
        /// The current version plus one.
        expected: u64,
    },
    /// `AssigneeChanged.from` is not the current assignee.
    #[error("it changes the assignee from {found:?} but the current assignee is {current:?}")]
    WrongAssignee {
        /// The `from` in the event.
        found: Option<String>,
        /// The current assignee.
        current: Option<String>,
    },
    /// `SeverityChanged.from` is not the current severity.
    #[error("it changes the severity from {found} but the current severity is {current}")]
    WrongSeverity {
        /// The `from` in the event.
        found: Severity,
        /// The current severity.
        current: Severity,
    },
}

/// Why [`apply`] refused an event: the stream is corrupt or was written by other code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// An event before `IncidentOpened`.
    #[error(
        "{event_type} before IncidentOpened: an incident stream must start with IncidentOpened"
    )]
    NotOpened {
        /// The event type.
        event_type: &'static str,
    },
    /// A second `IncidentOpened`.
    #[error("IncidentOpened for incident {incident_id}, which is already open: it must be the first event and appear once")]
    AlreadyOpened {
        /// The incident.
        incident_id: IncidentId,
    },
    /// The event does not fit the state.
    #[error("{event_type} does not fit incident {incident_id}: {misfit}")]
    DoesNotFit {
        /// The event type.
        event_type: &'static str,
        /// The incident.
        incident_id: IncidentId,
        /// What is wrong.
        misfit: Misfit,
    },
}

/// Why a stream could not be folded, at the first event that fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    /// The payload could not be decoded.
    #[error("event #{sequence}: {source}")]
    Decode {
        /// The envelope's sequence (for [`fold`], the 1-based position).
        sequence: u64,
        /// Why.
        source: PayloadError,
    },
    /// The event does not fit.
    #[error("event #{sequence}: {source}")]
    Apply {
        /// The envelope's sequence (for [`fold`], the 1-based position).
        sequence: u64,
        /// Why.
        source: ApplyError,
    },
    /// An envelope belongs to another stream than the incident's.
    #[error("event #{sequence} is in stream {found:?}, expected {expected:?}")]
    WrongStream {
        /// The envelope's sequence.
        sequence: u64,
        /// The incident's stream id.
        expected: String,
        /// The envelope's stream id.
        found: String,
    },
}

// ---------------------------------------------------------------------------------------
// decide
// ---------------------------------------------------------------------------------------

/// Decides what a command does to the incident: the events to append (none when the
/// command changes nothing, e.g. evidence that is already attached), or why not.
///
/// `state` is the incident as folded from its stream, `None` if the stream is empty. All
/// decisions live here; [`apply`] only folds what this returns.
pub fn decide(
    state: Option<&Incident>,
    command: &IncidentCommand,
) -> Result<Vec<IncidentEvent>, IncidentError> {
    let events = match command {
        IncidentCommand::Open {
            incident_id,
            environment,
            service,
            group_id,
            generation,
            evidence,
            decision_hash,
        } => decide_open(
            state,
            *incident_id,
            environment,
            service,
            *group_id,
            *generation,
            evidence,
            *decision_hash,
        )?,
        IncidentCommand::AttachEvidence {
            evidence,
            decision_hash,
        } => decide_attach(existing(state)?, evidence, *decision_hash)?,
        IncidentCommand::RecordRecovery {
            signal_id,
            alarm,
            alarm_name,
            event_time,
        } => decide_recovery(existing(state)?, *signal_id, alarm, alarm_name, *event_time)?,
        IncidentCommand::Transition {
            principal,
            at,
            to,
            reason,
            expected_lifecycle_version,
            close_as,
            resolution_summary,
        } => decide_transition(
            existing(state)?,
            principal,
            *at,
            *to,
            reason,
            *expected_lifecycle_version,
            *close_as,
            resolution_summary.as_deref(),
        )?,
        IncidentCommand::AddNote {
            principal,
            at,
            text,
        } => {
            existing(state)?;
            check_time("at", *at)?;
            check_text("text", text, NOTE_LEN_MAX)?;
            vec![IncidentEvent::NoteAdded(NoteAdded {
                text: text.clone(),
                principal: principal.clone(),
                at: *at,
            })]
        }
        IncidentCommand::Assign {
            principal,
            at,
            assignee,
        } => {
            let incident = not_closed(existing(state)?)?;
            check_time("at", *at)?;
            check_text("assignee", assignee, ASSIGNEE_LEN_MAX)?;
            if incident.assignee.as_deref() == Some(assignee.as_str()) {
                return Ok(Vec::new());
            }
            vec![IncidentEvent::AssigneeChanged(AssigneeChanged {
                from: incident.assignee.clone(),
                to: assignee.clone(),
                principal: principal.clone(),
                at: *at,
            })]
        }
        IncidentCommand::SetSeverity {
            principal,
            at,
            severity,
            reason,
        } => {
            let incident = not_closed(existing(state)?)?;
            check_time("at", *at)?;
            check_reason(reason)?;
            // Re-setting the severity a human already chose changes nothing. Setting the
            // current evidence-derived severity is not a no-op: it pins it.
            if incident.severity_set_by_human && incident.severity == *severity {
                return Ok(Vec::new());
            }
            vec![IncidentEvent::SeverityChanged(SeverityChanged {
                from: incident.severity,
                to: *severity,
                principal: principal.clone(),
                reason: reason.clone(),
                at: *at,
            })]
        }
    };
    for event in &events {
        let len = event.to_payload()?.len();
        if len > PAYLOAD_LEN_MAX {
            return Err(IncidentError::PayloadTooLarge {
                event_type: event.event_type(),
                len,
                len_max: PAYLOAD_LEN_MAX,
            });
        }
    }
    Ok(events)
}

fn existing(state: Option<&Incident>) -> Result<&Incident, IncidentError> {
    state.ok_or(IncidentError::NotFound)
}

fn not_closed(incident: &Incident) -> Result<&Incident, IncidentError> {
    if incident.state == IncidentState::Closed {
        return Err(IncidentError::Closed {
            incident_id: incident.id,
        });
    }
    Ok(incident)
}

fn check_time(field: &'static str, at: EpochMs) -> Result<(), IncidentError> {
    if !at.is_plausible_event_time() {
        return Err(IncidentError::ImplausibleTime { field, at });
    }
    Ok(())
}

fn check_len(field: &'static str, text: &str, len_max: usize) -> Result<(), IncidentError> {
    if text.len() > len_max {
        return Err(IncidentError::FieldTooLong {
            field,
            len: text.len(),
            len_max,
        });
    }
    Ok(())
}

/// Non-empty after trimming and at most `len_max` bytes. The text is stored as given.
fn check_text(field: &'static str, text: &str, len_max: usize) -> Result<(), IncidentError> {
    if text.trim().is_empty() {
        return Err(IncidentError::EmptyText { field });
    }
    check_len(field, text, len_max)
}

fn check_reason(reason: &str) -> Result<(), IncidentError> {
    if reason.trim().is_empty() {
        return Err(IncidentError::MissingReason);
    }
    check_len("reason", reason, REASON_LEN_MAX)
}

fn check_identifier(field: &'static str, text: &str) -> Result<(), IncidentError> {
    if text.is_empty() {
        return Err(IncidentError::EmptyText { field });
    }
    check_len(field, text, IDENTIFIER_IN_INCIDENT_LEN_MAX)
}

/// Validates a batch of evidence and returns its distinct items, earliest first, with the
/// items already kept on `incident` left out.
fn new_evidence(
    incident: Option<&Incident>,
    evidence: &[EvidenceItem],
) -> Result<Vec<EvidenceItem>, IncidentError> {
    if evidence.is_empty() {
        return Err(IncidentError::NoEvidence);
    }
    if evidence.len() > EVIDENCE_PER_COMMAND_MAX {
        return Err(IncidentError::TooManyEvidenceItems {
            count: evidence.len(),
            count_max: EVIDENCE_PER_COMMAND_MAX,
        });
    }
    let mut distinct: BTreeMap<DetectionId, &EvidenceItem> = BTreeMap::new();
    for item in evidence {
        check_identifier("evidence.alarm", &item.alarm)?;
        check_len(
            "evidence.alarm_name",
            &item.alarm_name,
            IDENTIFIER_IN_INCIDENT_LEN_MAX,
        )?;
        check_len(
            "evidence.rule_id",
            &item.rule_id,
            IDENTIFIER_IN_INCIDENT_LEN_MAX,
        )?;
        check_len(
            "evidence.rule_version",
            &item.rule_version,
            IDENTIFIER_IN_INCIDENT_LEN_MAX,
        )?;
        check_time("evidence.event_time", item.event_time)?;
        if let Some(kept) = incident.and_then(|incident| incident.evidence.get(&item.detection_id))
        {
            if kept != item {
                return Err(IncidentError::EvidenceConflict {
                    detection_id: item.detection_id,
                });
            }
            continue;
        }
        if let Some(previous) = distinct.insert(item.detection_id, item) {
            if previous != item {
                return Err(IncidentError::EvidenceConflict {
                    detection_id: item.detection_id,
                });
            }
        }
    }
    let mut items: Vec<EvidenceItem> = distinct.into_values().cloned().collect();
    items.sort_by_key(EvidenceItem::keep_order);
    Ok(items)
}

#[allow(clippy::too_many_arguments)]
fn decide_open(
    state: Option<&Incident>,
    incident_id: IncidentId,
    environment: &str,
    service: &str,
    group_id: GroupId,
    generation: u32,
    evidence: &[EvidenceItem],
    decision_hash: Digest,
) -> Result<Vec<IncidentEvent>, IncidentError> {
    if let Some(incident) = state {
        return Err(IncidentError::AlreadyExists {
            incident_id: incident.id,
        });
    }
    check_identifier("environment", environment)?;
    check_identifier("service", service)?;
    let derived = IncidentId::derive(environment, service, &group_id, generation);
    if derived != incident_id {
        return Err(IncidentError::IncidentIdMismatch {
            given: incident_id,
            derived,
        });
    }
    let items = new_evidence(None, evidence)?;
    let mut chunks = items.chunks(EVIDENCE_PER_EVENT_MAX);
    let first = chunks
        .next()
        .map(<[EvidenceItem]>::to_vec)
        .unwrap_or_default();
    let mut events = vec![IncidentEvent::IncidentOpened(IncidentOpened {
        incident_id,
        environment: environment.to_owned(),
        service: service.to_owned(),
        group_id,
        generation,
        evidence: first,
        decision_hash,
    })];
    events.extend(chunks.map(|chunk| {
        IncidentEvent::EvidenceAttached(EvidenceAttached {
            evidence: chunk.to_vec(),
            decision_hash,
            fired_again: false,
        })
    }));
    Ok(events)
}

fn decide_attach(
    incident: &Incident,
    evidence: &[EvidenceItem],
    decision_hash: Digest,
) -> Result<Vec<IncidentEvent>, IncidentError> {
    let incident = not_closed(incident)?;
    let items = new_evidence(Some(incident), evidence)?;
    let fired_again = incident.state == IncidentState::Resolved;
    Ok(items
        .chunks(EVIDENCE_PER_EVENT_MAX)
        .map(|chunk| {
            IncidentEvent::EvidenceAttached(EvidenceAttached {
                evidence: chunk.to_vec(),
                decision_hash,
                fired_again,
            })
        })
        .collect())
}

fn decide_recovery(
    incident: &Incident,
    signal_id: SignalId,
    alarm: &str,
    alarm_name: &str,
    event_time: EpochMs,
) -> Result<Vec<IncidentEvent>, IncidentError> {
    let incident = not_closed(incident)?;
    check_identifier("alarm", alarm)?;
    check_len("alarm_name", alarm_name, IDENTIFIER_IN_INCIDENT_LEN_MAX)?;
    check_time("event_time", event_time)?;
    let recovery = RecoveryRecorded {
        signal_id,
        alarm: alarm.to_owned(),
        alarm_name: alarm_name.to_owned(),
        event_time,
    };
    if let Some(kept) = incident.recoveries.get(&signal_id) {
        if *kept != recovery {
            return Err(IncidentError::RecoveryConflict { signal_id });
        }
        return Ok(Vec::new());
    }
    Ok(vec![IncidentEvent::RecoveryRecorded(recovery)])
}

#[allow(clippy::too_many_arguments)]
fn decide_transition(
    incident: &Incident,
    principal: &Principal,
    at: EpochMs,
    to: IncidentState,
    reason: &str,
    expected_lifecycle_version: u64,
    close_as: Option<CloseAs>,
    resolution_summary: Option<&str>,
) -> Result<Vec<IncidentEvent>, IncidentError> {
    // A stale version comes first: the human decided on a state that is no longer there,
    // so every other answer could be about the wrong state.
    if expected_lifecycle_version != incident.lifecycle_version {
        return Err(IncidentError::VersionConflict {
            expected: expected_lifecycle_version,
            actual: incident.lifecycle_version,
        });
    }
    let from = incident.state;
    let allowed = allowed_targets(from);
    if !allowed.contains(&to) {
        return Err(IncidentError::TransitionNotAllowed { from, to, allowed });
    }
    match (to, close_as) {
        (IncidentState::Closed, None) => {
            return Err(IncidentError::CloseAsRequired {
                from,
                allowed: allowed_close_as(from),
            });
        }
        (IncidentState::Closed, Some(close_as)) => {
            if transition_rule(from, to, Some(close_as)).is_none() {
                return Err(IncidentError::CloseAsNotAllowed {
                    from,
                    close_as,
                    allowed: allowed_close_as(from),
                });
            }
        }
        (_, Some(close_as)) => return Err(IncidentError::CloseAsNotApplicable { to, close_as }),
        (_, None) => {}
    }
    check_reason(reason)?;
    check_time("at", at)?;
    match resolution_summary {
        Some(_) if to != IncidentState::Resolved => {
            return Err(IncidentError::ResolutionSummaryNotApplicable { to });
        }
        Some(summary) => check_text("resolution_summary", summary, RESOLUTION_SUMMARY_LEN_MAX)?,
        None if to == IncidentState::Resolved && incident.severity == Severity::Sev1 => {
            return Err(IncidentError::ResolutionSummaryRequired {
                severity: incident.severity,
            });
        }
        None => {}
    }
    Ok(vec![IncidentEvent::IncidentTransitioned(
        IncidentTransitioned {
            from,
            to,
            principal: principal.clone(),
            reason: reason.to_owned(),
            at,
            lifecycle_version: incident.lifecycle_version + 1,
            close_as,
            resolution_summary: resolution_summary.map(str::to_owned),
        },
    )])
}

// ---------------------------------------------------------------------------------------
// apply and fold
// ---------------------------------------------------------------------------------------

/// Folds one event into the state. Decides nothing: an event that does not fit the state
/// (out of order, a duplicate, a transition outside the table) is an [`ApplyError`].
pub fn apply(state: Option<Incident>, event: &IncidentEvent) -> Result<Incident, ApplyError> {
    let event_type = event.event_type();
    let mut incident = match (state, event) {
        (None, IncidentEvent::IncidentOpened(opened)) => return open(opened),
        (None, _) => return Err(ApplyError::NotOpened { event_type }),
        (Some(incident), IncidentEvent::IncidentOpened(_)) => {
            return Err(ApplyError::AlreadyOpened {
                incident_id: incident.id,
            });
        }
        (Some(incident), _) => incident,
    };
    let incident_id = incident.id;
    let misfit = move |misfit| ApplyError::DoesNotFit {
        event_type,
        incident_id,
        misfit,
    };
    if incident.state == IncidentState::Closed && !matches!(event, IncidentEvent::NoteAdded(_)) {
        return Err(misfit(Misfit::Closed));
    }
    match event {
        IncidentEvent::IncidentOpened(_) => {}
        IncidentEvent::EvidenceAttached(attached) => {
            let expected = incident.state == IncidentState::Resolved;
            if attached.fired_again != expected {
                return Err(misfit(Misfit::FiredAgainMismatch {
                    found: attached.fired_again,
                    state: incident.state,
                }));
            }
            if attached.evidence.is_empty() {
                return Err(misfit(Misfit::NoEvidence));
            }
            attach(&mut incident, &attached.evidence).map_err(misfit)?;
            incident.fired_again |= attached.fired_again;
        }
        IncidentEvent::RecoveryRecorded(recovery) => {
            if incident.recoveries.contains_key(&recovery.signal_id) {
                return Err(misfit(Misfit::DuplicateRecovery(recovery.signal_id)));
            }
            incident.recovery_count += 1;
            insert_earliest(
                &mut incident.recoveries,
                recovery.signal_id,
                recovery.clone(),
                RECOVERIES_PER_INCIDENT_MAX,
                |kept| kept.event_time,
            );
        }
        IncidentEvent::IncidentTransitioned(transitioned) => {
            if transitioned.from != incident.state {
                return Err(misfit(Misfit::WrongFromState {
                    found: transitioned.from,
                    state: incident.state,
                }));
            }
            if transition_rule(transitioned.from, transitioned.to, transitioned.close_as).is_none()
            {
                return Err(misfit(Misfit::NotInTable {
                    from: transitioned.from,
                    to: transitioned.to,
                    close_as: transitioned.close_as,
                }));
            }
            let expected = incident.lifecycle_version + 1;
            if transitioned.lifecycle_version != expected {
                return Err(misfit(Misfit::WrongLifecycleVersion {
                    found: transitioned.lifecycle_version,
                    expected,
                }));
            }
            incident.state = transitioned.to;
            incident.lifecycle_version = expected;
            incident.fired_again = false;
            incident.last_transition = Some(transitioned.clone());
        }
        IncidentEvent::NoteAdded(_) => incident.note_count += 1,
        IncidentEvent::AssigneeChanged(changed) => {
            if changed.from != incident.assignee {
                return Err(misfit(Misfit::WrongAssignee {
                    found: changed.from.clone(),
                    current: incident.assignee.clone(),
                }));
            }
            incident.assignee = Some(changed.to.clone());
        }
        IncidentEvent::SeverityChanged(changed) => {
            if changed.from != incident.severity {
                return Err(misfit(Misfit::WrongSeverity {
                    found: changed.from,
                    current: incident.severity,
                }));
            }
            incident.severity = changed.to;
            incident.severity_set_by_human = true;
        }
    }
    Ok(incident)
}

fn open(opened: &IncidentOpened) -> Result<Incident, ApplyError> {
    let misfit = |misfit| ApplyError::DoesNotFit {
        event_type: IncidentOpened::EVENT_TYPE,
        incident_id: opened.incident_id,
        misfit,
    };
    let derived = IncidentId::derive(
        &opened.environment,
        &opened.service,
        &opened.group_id,
        opened.generation,
    );
    if derived != opened.incident_id {
        return Err(misfit(Misfit::IncidentIdMismatch));
    }
    let Some(first) = opened.evidence.first() else {
        return Err(misfit(Misfit::NoEvidence));
    };
    let mut incident = Incident {
        id: opened.incident_id,
        environment: opened.environment.clone(),
        service: opened.service.clone(),
        group_id: opened.group_id,
        generation: opened.generation,
        state: IncidentState::Open,
        lifecycle_version: 1,
        severity: first.severity,
        severity_set_by_human: false,
        opened_at: first.event_time,
        evidence: BTreeMap::new(),
        evidence_count: 0,
        alarms: BTreeSet::new(),
        alarms_truncated: false,
        fired_again: false,
        recoveries: BTreeMap::new(),
        recovery_count: 0,
        assignee: None,
        note_count: 0,
        last_transition: None,
    };
    attach(&mut incident, &opened.evidence).map_err(misfit)?;
    Ok(incident)
}

/// Adds evidence items none of which may be kept already. Every item counts towards
/// `evidence_count`, `opened_at`, `severity` (unless set by a human) and `alarms`, kept or
/// not, so these do not depend on which items the limit let in.
fn attach(incident: &mut Incident, evidence: &[EvidenceItem]) -> Result<(), Misfit> {
    for item in evidence {
        if incident.evidence.contains_key(&item.detection_id) {
            return Err(Misfit::DuplicateEvidence(item.detection_id));
        }
        incident.evidence_count += 1;
        incident.opened_at = incident.opened_at.min(item.event_time);
        if !incident.severity_set_by_human {
            // Severity orders worst first, so the minimum is the worst.
            incident.severity = incident.severity.min(item.severity);
        }
        if incident.alarms.insert(item.alarm.clone())
            && incident.alarms.len() > ALARMS_PER_INCIDENT_MAX
        {
            incident.alarms.pop_last();
            incident.alarms_truncated = true;
        }
        insert_earliest(
            &mut incident.evidence,
            item.detection_id,
            item.clone(),
            EVIDENCE_PER_INCIDENT_MAX,
            |kept| kept.event_time,
        );
    }
    Ok(())
}

/// Inserts and, past `len_max`, drops the latest entry by `(time, key)`. The kept set is
/// then the `len_max` earliest of everything ever inserted, whatever the insertion order.
fn insert_earliest<K: Ord + Copy, V>(
    map: &mut BTreeMap<K, V>,
    key: K,
    value: V,
    len_max: usize,
    time: impl Fn(&V) -> EpochMs,
) {
    map.insert(key, value);
    if map.len() > len_max {
        let latest = map
            .iter()
            .max_by_key(|(key, value)| (time(value), **key))
            .map(|(key, _)| *key);
        if let Some(latest) = latest {
            map.remove(&latest);
        }
    }
}

/// Rebuilds the state from events in stream order; `None` for an empty stream.
pub fn fold<'a>(
    events: impl IntoIterator<Item = &'a IncidentEvent>,
) -> Result<Option<Incident>, FoldError> {
    let mut state = None;
    for (index, event) in events.into_iter().enumerate() {
        let sequence = index as u64 + 1;
        state = Some(apply(state, event).map_err(|source| FoldError::Apply { sequence, source })?);
    }
    Ok(state)
}

/// Rebuilds the state from stored envelopes in stream order, decoding each payload by its
/// type and schema version. Every envelope must be in the incident's stream
/// ([`stream_id`]). This does not verify the hash chain: do that first with
/// [`crate::event::verify_stream`].
pub fn fold_envelopes(envelopes: &[EventEnvelope]) -> Result<Option<Incident>, FoldError> {
    let mut state: Option<Incident> = None;
    for envelope in envelopes {
        let sequence = envelope.sequence;
        let event = IncidentEvent::from_payload(
            &envelope.event_type,
            envelope.schema_version,
            &envelope.payload,
        )
        .map_err(|source| FoldError::Decode { sequence, source })?;
        let incident =
            apply(state, &event).map_err(|source| FoldError::Apply { sequence, source })?;
        let expected = incident.stream_id();
        if envelope.stream_id != expected {
            return Err(FoldError::WrongStream {
                sequence,
                expected,
                found: envelope.stream_id.clone(),
            });
        }
        state = Some(incident);
    }
    Ok(state)
}
