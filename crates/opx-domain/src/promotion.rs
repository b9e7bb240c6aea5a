//! The promotion gate, version 1: PROMOTE, ATTACH or REJECT one evidence bundle.
//!
//! [`decide`] is a pure function of a [`GateInput`]: the bundle, its confidence
//! assessment, the open incident the caller found for the bundle's key (or none), and how
//! many incidents of the bundle's group were closed before. The decision records the
//! gate version, the hashes of its inputs and what it saw, so replay can check it against
//! exactly those inputs even where the outcome depended on processing order (whether an
//! incident was already open).
//!
//! # Rules, first match wins, fail closed
//!
//! 1. **Inconsistent input → REJECT `INCONSISTENT_INPUT`**, with an [`Inconsistency`] code:
//!    the bundle fails [`EvidenceBundle::check`] (empty, a member of another key or
//!    window, no member in its own window, unsorted, altered...); the assessment is of
//!    another bundle or out of range; or the "open" incident is CLOSED (the caller's
//!    pointer must only name open incidents).
//! 2. **An open incident for the key → ATTACH `OPEN_INCIDENT_FOUND`** with its id: one open
//!    incident per (environment, service), so evidence that arrives while it is open —
//!    RESOLVED included, where the incident flags it "fired again" — attaches to it.
//! 3. **A member detection whose rule promotes alone → PROMOTE `RULE_PROMOTES_ALONE`** (a
//!    site-down canary). Detections are made only from ALARM/firing signals, so every
//!    member is a firing alarm.
//! 4. **Score at or above the threshold → PROMOTE `CONFIDENCE_AT_OR_ABOVE_THRESHOLD`**,
//!    else **REJECT `CONFIDENCE_BELOW_THRESHOLD`**.
//!
//! A PROMOTE names the incident `IncidentId::derive(environment, service, group id,
//! closed_generations)`: the same for every arrival order of a storm inside one window,
//! and new after each close.

use crate::confidence::{ConfidenceAssessment, BPS_MAX};
use crate::correlation::{BundleDefect, EvidenceBundle, GroupId};
use crate::hash::{Digest, FieldHasher};
use crate::incident::{IncidentId, IncidentState};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The version of the rules in this module; recorded in every decision.
pub const GATE_VERSION: &str = "1.0.0";

/// The incident the caller found open for the bundle's key, as the gate saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeenIncident {
    /// Its id.
    pub incident_id: IncidentId,
    /// Its lifecycle state when the caller read it.
    pub state: IncidentState,
}

/// Everything the gate decides on.
#[derive(Clone, Copy, Debug)]
pub struct GateInput<'a> {
    /// The bundle to decide on.
    pub bundle: &'a EvidenceBundle,
    /// Its assessment.
    pub assessment: &'a ConfidenceAssessment,
    /// The incident currently open for the bundle's key, if any (never a CLOSED one).
    pub open_incident: Option<SeenIncident>,
    /// How many incidents of the bundle's group were closed before: the generation a new
    /// incident gets.
    pub closed_generations: u32,
}

/// What the gate decided. Serialised as `PROMOTE`, `ATTACH`, `REJECT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Create a new incident.
    Promote,
    /// Attach the evidence to the open incident.
    Attach,
    /// Do nothing but record the decision.
    Reject,
}

impl Outcome {
    /// The canonical text, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Promote => "PROMOTE",
            Outcome::Attach => "ATTACH",
            Outcome::Reject => "REJECT",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rule decided. Serialised in SCREAMING_SNAKE_CASE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReasonCode {
    /// Rule 1: the input does not hold together; see the decision's `inconsistency`.
    InconsistentInput,
    /// Rule 2: an incident is open for the key.
    OpenIncidentFound,
    /// Rule 3: a member's rule promotes alone.
    RulePromotesAlone,
    /// Rule 4: the score reached the threshold.
    ConfidenceAtOrAboveThreshold,
    /// Rule 4: the score stayed below the threshold.
    ConfidenceBelowThreshold,
}

impl ReasonCode {
    /// The canonical text, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::InconsistentInput => "INCONSISTENT_INPUT",
            ReasonCode::OpenIncidentFound => "OPEN_INCIDENT_FOUND",
            ReasonCode::RulePromotesAlone => "RULE_PROMOTES_ALONE",
            ReasonCode::ConfidenceAtOrAboveThreshold => "CONFIDENCE_AT_OR_ABOVE_THRESHOLD",
            ReasonCode::ConfidenceBelowThreshold => "CONFIDENCE_BELOW_THRESHOLD",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What exactly was inconsistent in an `INCONSISTENT_INPUT` rejection, so the record says
/// which input to fix. Serialised in SCREAMING_SNAKE_CASE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Inconsistency {
    /// [`BundleDefect::Empty`].
    EmptyBundle,
    /// [`BundleDefect::TooManyMembers`].
    TooManyMembers,
    /// [`BundleDefect::TruncationFlagInconsistent`].
    TruncationFlagInconsistent,
    /// [`BundleDefect::WindowNotAligned`].
    WindowNotAligned,
    /// [`BundleDefect::MembersNotSortedUnique`].
    MembersNotSortedUnique,
    /// [`BundleDefect::MemberOutsideKey`].
    MemberOutsideKey,
    /// [`BundleDefect::MemberOutsideWindows`].
    MemberOutsideWindows,
    /// [`BundleDefect::NoMemberInOwnWindow`].
    NoMemberInOwnWindow,
    /// [`BundleDefect::GroupIdMismatch`].
    GroupIdMismatch,
    /// [`BundleDefect::ContentHashMismatch`].
    BundleHashMismatch,
    /// The assessment's `bundle_hash` is not the bundle's content hash.
    AssessmentOfOtherBundle,
    /// The assessment's score or threshold lies outside `0..=10000` (threshold `1..=10000`).
    AssessmentOutOfRange,
    /// The open-incident pointer names a CLOSED incident.
    OpenIncidentClosed,
}

impl Inconsistency {
    /// The canonical text, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Inconsistency::EmptyBundle => "EMPTY_BUNDLE",
            Inconsistency::TooManyMembers => "TOO_MANY_MEMBERS",
            Inconsistency::TruncationFlagInconsistent => "TRUNCATION_FLAG_INCONSISTENT",
            Inconsistency::WindowNotAligned => "WINDOW_NOT_ALIGNED",
            Inconsistency::MembersNotSortedUnique => "MEMBERS_NOT_SORTED_UNIQUE",
            Inconsistency::MemberOutsideKey => "MEMBER_OUTSIDE_KEY",
            Inconsistency::MemberOutsideWindows => "MEMBER_OUTSIDE_WINDOWS",
            Inconsistency::NoMemberInOwnWindow => "NO_MEMBER_IN_OWN_WINDOW",
            Inconsistency::GroupIdMismatch => "GROUP_ID_MISMATCH",
            Inconsistency::BundleHashMismatch => "BUNDLE_HASH_MISMATCH",
            Inconsistency::AssessmentOfOtherBundle => "ASSESSMENT_OF_OTHER_BUNDLE",
            Inconsistency::AssessmentOutOfRange => "ASSESSMENT_OUT_OF_RANGE",
            Inconsistency::OpenIncidentClosed => "OPEN_INCIDENT_CLOSED",
        }
    }
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<BundleDefect> for Inconsistency {
    fn from(defect: BundleDefect) -> Inconsistency {
        match defect {
            BundleDefect::Empty => Inconsistency::EmptyBundle,
            BundleDefect::TooManyMembers => Inconsistency::TooManyMembers,
            BundleDefect::TruncationFlagInconsistent => Inconsistency::TruncationFlagInconsistent,
            BundleDefect::WindowNotAligned => Inconsistency::WindowNotAligned,
            BundleDefect::MembersNotSortedUnique => Inconsistency::MembersNotSortedUnique,
            BundleDefect::MemberOutsideKey => Inconsistency::MemberOutsideKey,
            BundleDefect::MemberOutsideWindows => Inconsistency::MemberOutsideWindows,
            BundleDefect::NoMemberInOwnWindow => Inconsistency::NoMemberInOwnWindow,
            BundleDefect::GroupIdMismatch => Inconsistency::GroupIdMismatch,
            BundleDefect::ContentHashMismatch => Inconsistency::BundleHashMismatch,
        }
    }
}

/// The gate's decision, with everything needed to check it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionDecision {
    /// [`GATE_VERSION`].
    pub gate_version: String,
    /// PROMOTE, ATTACH or REJECT.
    pub outcome: Outcome,
    /// The rule that decided.
    pub reason: ReasonCode,
    /// For `INCONSISTENT_INPUT` only: which input was inconsistent.
    pub inconsistency: Option<Inconsistency>,
    /// PROMOTE: the new incident's id; ATTACH: the open incident's id; REJECT: none.
    pub incident_id: Option<IncidentId>,
    /// The bundle's group.
    pub group_id: GroupId,
    /// The bundle's content hash.
    pub bundle_hash: Digest,
    /// [`ConfidenceAssessment::hash`] of the assessment decided on.
    pub assessment_hash: Digest,
    /// The confidence model's version.
    pub model_version: String,
    /// The open incident the gate was told about, or none.
    pub saw_open_incident: Option<SeenIncident>,
    /// The generation the gate was given (`closed_generations`); a PROMOTE's incident id
    /// is derived with it.
    pub generation: u32,
}

impl PromotionDecision {
    /// `FieldHasher("opx.promotion-decision.v1")` over every field in declaration order;
    /// an optional field is written as a presence flag (0 or 1) followed by its value.
    pub fn hash(&self) -> Digest {
        let mut hasher = FieldHasher::new("opx.promotion-decision.v1")
            .str(&self.gate_version)
            .str(self.outcome.as_str())
            .str(self.reason.as_str());
        hasher = match self.inconsistency {
            Some(inconsistency) => hasher.u64(1).str(inconsistency.as_str()),
            None => hasher.u64(0),
        };
        hasher = match &self.incident_id {
            Some(incident_id) => hasher.u64(1).digest(&incident_id.0),
            None => hasher.u64(0),
        };
        hasher = hasher
            .digest(&self.group_id.0)
            .digest(&self.bundle_hash)
            .digest(&self.assessment_hash)
            .str(&self.model_version);
        hasher = match &self.saw_open_incident {
            Some(seen) => hasher
                .u64(1)
                .digest(&seen.incident_id.0)
                .str(seen.state.as_str()),
            None => hasher.u64(0),
        };
        hasher.u64(u64::from(self.generation)).finish()
    }
}

/// Applies the gate's rules; see the module documentation.
pub fn decide(input: &GateInput<'_>) -> PromotionDecision {
    let bundle = input.bundle;
    let decision = |outcome: Outcome,
                    reason: ReasonCode,
                    inconsistency: Option<Inconsistency>,
                    incident_id: Option<IncidentId>| PromotionDecision {
        gate_version: GATE_VERSION.to_owned(),
        outcome,
        reason,
        inconsistency,
        incident_id,
        group_id: bundle.group_id,
        bundle_hash: bundle.content_hash,
        assessment_hash: input.assessment.hash(),
        model_version: input.assessment.model_version.clone(),
        saw_open_incident: input.open_incident,
        generation: input.closed_generations,
    };

    if let Some(inconsistency) = find_inconsistency(input) {
        return decision(
            Outcome::Reject,
            ReasonCode::InconsistentInput,
            Some(inconsistency),
            None,
        );
    }
    if let Some(open) = input.open_incident {
        return decision(
            Outcome::Attach,
            ReasonCode::OpenIncidentFound,
            None,
            Some(open.incident_id),
        );
    }
    let new_incident = IncidentId::derive(
        &bundle.key.environment,
        &bundle.key.service,
        &bundle.group_id,
        input.closed_generations,
    );
    if bundle.members.iter().any(|member| member.promotes_alone) {
        return decision(
            Outcome::Promote,
            ReasonCode::RulePromotesAlone,
            None,
            Some(new_incident),
        );
    }
    if input.assessment.reaches_threshold() {
        return decision(
            Outcome::Promote,
            ReasonCode::ConfidenceAtOrAboveThreshold,
            None,
            Some(new_incident),
        );
    }
    decision(
        Outcome::Reject,
        ReasonCode::ConfidenceBelowThreshold,
        None,
        None,
    )
}

/// Rule 1: the first inconsistency, bundle first, then assessment, then the incident
/// pointer.
fn find_inconsistency(input: &GateInput<'_>) -> Option<Inconsistency> {
    if let Err(defect) = input.bundle.check() {
        return Some(defect.into());
    }
    let assessment = input.assessment;
    if assessment.bundle_hash != input.bundle.content_hash {
        return Some(Inconsistency::AssessmentOfOtherBundle);
    }
    if assessment.score_bps > BPS_MAX || !(1..=BPS_MAX).contains(&assessment.promote_threshold_bps)
    {
        return Some(Inconsistency::AssessmentOutOfRange);
    }
    if input
        .open_incident
        .is_some_and(|open| !open.state.is_open())
    {
        return Some(Inconsistency::OpenIncidentClosed);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confidence::{assess, ConfidenceModel};
    use crate::correlation::fixtures::{detection, detection_full, orders_key, ACCOUNT, T0};
    use crate::correlation::{WindowMs, WINDOW_MS_DEFAULT};
    use crate::detection::Detection;
    use crate::signal::Severity::{Sev1, Sev2, Sev3};
    use crate::time::EpochMs;

    fn bundle_of(members: Vec<Detection>) -> EvidenceBundle {
        EvidenceBundle::for_window(orders_key(), EpochMs(T0), WindowMs::DEFAULT, members)
    }

    fn storm() -> EvidenceBundle {
        bundle_of(vec![
            detection("api-5xx", Sev2, T0 + 1000),
            detection("api-latency", Sev1, T0 + 2000),
        ])
    }

    fn lone_alarm() -> EvidenceBundle {
        bundle_of(vec![
            detection("api-5xx", Sev1, T0 + 1000),
            detection("api-5xx", Sev1, T0 + 61_000),
        ])
    }

    fn canary() -> EvidenceBundle {
        bundle_of(vec![detection_full(
            "orders",
            "site-down",
            Sev3,
            T0 + 5,
            "canary",
            true,
        )])
    }

    fn open(state: IncidentState) -> SeenIncident {
        SeenIncident {
            incident_id: IncidentId(Digest::of_bytes(b"open incident")),
            state,
        }
    }

    /// Given a bundle, an open incident and a generation, when the gate decides (with the
    /// bundle's own v1 assessment unless `alter` changes it), then this outcome.
    fn given(
        bundle: &EvidenceBundle,
        open_incident: Option<SeenIncident>,
        closed_generations: u32,
        alter: impl FnOnce(&mut ConfidenceAssessment),
    ) -> PromotionDecision {
        let mut assessment = assess(&ConfidenceModel::v1(), bundle);
        alter(&mut assessment);
        decide(&GateInput {
            bundle,
            assessment: &assessment,
            open_incident,
            closed_generations,
        })
    }

    fn new_incident(generation: u32) -> IncidentId {
        IncidentId::derive(ACCOUNT, "orders", &storm().group_id, generation)
    }

    #[test]
    fn rules_in_order() {
        let keep = |_: &mut ConfidenceAssessment| {};
        let cases: Vec<(
            &str,
            PromotionDecision,
            Outcome,
            ReasonCode,
            Option<IncidentId>,
        )> = vec![
            (
                "two SEV2-or-worse alarms promote",
                given(&storm(), None, 0, keep),
                Outcome::Promote,
                ReasonCode::ConfidenceAtOrAboveThreshold,
                Some(new_incident(0)),
            ),
            (
                "after two closes the new incident is generation 2",
                given(&storm(), None, 2, keep),
                Outcome::Promote,
                ReasonCode::ConfidenceAtOrAboveThreshold,
                Some(new_incident(2)),
            ),
            (
                "one alarm alone is rejected",
                given(&lone_alarm(), None, 0, keep),
                Outcome::Reject,
                ReasonCode::ConfidenceBelowThreshold,
                None,
            ),
            (
                "a canary rule promotes alone",
                given(&canary(), None, 0, keep),
                Outcome::Promote,
                ReasonCode::RulePromotesAlone,
                Some(new_incident(0)),
            ),
            (
                "an open incident takes the evidence",
                given(&storm(), Some(open(IncidentState::Acknowledged)), 0, keep),
                Outcome::Attach,
                ReasonCode::OpenIncidentFound,
                Some(open(IncidentState::Open).incident_id),
            ),
            (
                "a resolved incident takes the evidence too",
                given(&lone_alarm(), Some(open(IncidentState::Resolved)), 0, keep),
                Outcome::Attach,
                ReasonCode::OpenIncidentFound,
                Some(open(IncidentState::Open).incident_id),
            ),
            (
                "an open incident wins over a canary",
                given(&canary(), Some(open(IncidentState::Mitigating)), 0, keep),
                Outcome::Attach,
                ReasonCode::OpenIncidentFound,
                Some(open(IncidentState::Open).incident_id),
            ),
            (
                "exactly at the threshold promotes",
                given(&lone_alarm(), None, 0, |a| {
                    a.score_bps = a.promote_threshold_bps
                }),
                Outcome::Promote,
                ReasonCode::ConfidenceAtOrAboveThreshold,
                Some(new_incident(0)),
            ),
            (
                "one below the threshold rejects",
                given(&storm(), None, 0, |a| {
                    a.score_bps = a.promote_threshold_bps - 1
                }),
                Outcome::Reject,
                ReasonCode::ConfidenceBelowThreshold,
                None,
            ),
        ];
        for (name, decision, outcome, reason, incident_id) in cases {
            assert_eq!(
                (
                    decision.outcome,
                    decision.reason,
                    decision.incident_id,
                    decision.inconsistency
                ),
                (outcome, reason, incident_id, None),
                "{name}"
            );
        }
    }

    #[test]
    fn inconsistent_input_rejects_and_says_which() {
        type BundleMutation = fn(&mut EvidenceBundle);
        let bundle_cases: [(&str, BundleMutation, Inconsistency); 4] = [
            (
                "empty bundle",
                |b| b.members.clear(),
                Inconsistency::EmptyBundle,
            ),
            (
                "member of another service",
                |b| b.members[0].service = "payments".to_owned(),
                Inconsistency::MemberOutsideKey,
            ),
            (
                "member of another window",
                |b| b.members[0].event_time = EpochMs(T0 + WINDOW_MS_DEFAULT),
                Inconsistency::MemberOutsideWindows,
            ),
            (
                "bundle altered after hashing",
                |b| b.members.truncate(1),
                Inconsistency::BundleHashMismatch,
            ),
        ];
        for (name, mutate, expected) in bundle_cases {
            let good = storm();
            let assessment = assess(&ConfidenceModel::v1(), &good);
            let mut bundle = good;
            mutate(&mut bundle);
            let decision = decide(&GateInput {
                bundle: &bundle,
                assessment: &assessment,
                open_incident: None,
                closed_generations: 0,
            });
            assert_eq!(
                (
                    decision.outcome,
                    decision.reason,
                    decision.inconsistency,
                    decision.incident_id
                ),
                (
                    Outcome::Reject,
                    ReasonCode::InconsistentInput,
                    Some(expected),
                    None
                ),
                "{name}"
            );
        }

        let bundle = storm();
        let other = lone_alarm();
        let cases: Vec<(&str, PromotionDecision, Inconsistency)> = vec![
            (
                "assessment of another bundle",
                given(&bundle, None, 0, |a| {
                    a.bundle_hash = lone_alarm().content_hash
                }),
                Inconsistency::AssessmentOfOtherBundle,
            ),
            (
                "score above the scale",
                given(&bundle, None, 0, |a| a.score_bps = 10_001),
                Inconsistency::AssessmentOutOfRange,
            ),
            (
                "zero threshold",
                given(&bundle, None, 0, |a| a.promote_threshold_bps = 0),
                Inconsistency::AssessmentOutOfRange,
            ),
            (
                "open-incident pointer names a closed incident",
                given(&bundle, Some(open(IncidentState::Closed)), 0, |_| {}),
                Inconsistency::OpenIncidentClosed,
            ),
            (
                "a canary cannot bypass a closed pointer",
                given(&canary(), Some(open(IncidentState::Closed)), 0, |_| {}),
                Inconsistency::OpenIncidentClosed,
            ),
            (
                "a window evaluated without a detection of its own",
                given(
                    &EvidenceBundle::for_window(
                        orders_key(),
                        EpochMs(T0 + WINDOW_MS_DEFAULT),
                        WindowMs::DEFAULT,
                        other.members.clone(),
                    ),
                    None,
                    0,
                    |_| {},
                ),
                Inconsistency::NoMemberInOwnWindow,
            ),
        ];
        for (name, decision, expected) in cases {
            assert_eq!(
                (
                    decision.outcome,
                    decision.reason,
                    decision.inconsistency,
                    decision.incident_id
                ),
                (
                    Outcome::Reject,
                    ReasonCode::InconsistentInput,
                    Some(expected),
                    None
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn decision_records_its_inputs() {
        let bundle = storm();
        let assessment = assess(&ConfidenceModel::v1(), &bundle);
        let seen = open(IncidentState::Resolved);
        let decision = decide(&GateInput {
            bundle: &bundle,
            assessment: &assessment,
            open_incident: Some(seen),
            closed_generations: 3,
        });
        assert_eq!(decision.gate_version, GATE_VERSION);
        assert_eq!(decision.group_id, bundle.group_id);
        assert_eq!(decision.bundle_hash, bundle.content_hash);
        assert_eq!(decision.assessment_hash, assessment.hash());
        assert_eq!(decision.model_version, "1.0.0");
        assert_eq!(decision.saw_open_incident, Some(seen));
        assert_eq!(decision.generation, 3);
    }

    #[test]
    fn decision_serialises_codes_in_screaming_snake_case_and_hashes_every_field() {
        let decision = given(&storm(), Some(open(IncidentState::Closed)), 1, |_| {});
        let text = serde_json::to_string(&decision).expect("serialises");
        for code in [
            "\"REJECT\"",
            "\"INCONSISTENT_INPUT\"",
            "\"OPEN_INCIDENT_CLOSED\"",
            "\"CLOSED\"",
        ] {
            assert!(text.contains(code), "{code} in {text}");
        }
        let back: PromotionDecision = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, decision);
        assert_eq!(back.hash(), decision.hash());

        let promoted = given(&storm(), None, 0, |_| {});
        type Mutation = fn(&mut PromotionDecision);
        let mutations: [Mutation; 12] = [
            |d| d.gate_version.push('x'),
            |d| d.outcome = Outcome::Attach,
            |d| d.reason = ReasonCode::RulePromotesAlone,
            |d| d.inconsistency = Some(Inconsistency::EmptyBundle),
            |d| d.incident_id = None,
            |d| d.group_id = GroupId(Digest::ZERO),
            |d| d.bundle_hash = Digest::ZERO,
            |d| d.assessment_hash = Digest::ZERO,
            |d| d.model_version.push('x'),
            |d| {
                d.saw_open_incident = Some(SeenIncident {
                    incident_id: IncidentId(Digest::ZERO),
                    state: IncidentState::Open,
                })
            },
            |d| d.generation += 1,
            |d| d.incident_id = Some(IncidentId(Digest::ZERO)),
        ];
        for (i, mutate) in mutations.into_iter().enumerate() {
            let mut altered = promoted.clone();
            mutate(&mut altered);
            assert_ne!(altered.hash(), promoted.hash(), "mutation {i}");
        }
        let seen_open = given(&storm(), Some(open(IncidentState::Open)), 0, |_| {});
        let mut seen_acknowledged = seen_open.clone();
        seen_acknowledged.saw_open_incident = Some(open(IncidentState::Acknowledged));
        assert_ne!(
            seen_open.hash(),
            seen_acknowledged.hash(),
            "the seen state is hashed"
        );
    }

    #[test]
    fn code_texts_match_serde() {
        for outcome in [Outcome::Promote, Outcome::Attach, Outcome::Reject] {
            assert_eq!(
                serde_json::to_string(&outcome).expect("ok"),
                format!("\"{outcome}\"")
            );
        }
        for reason in [
            ReasonCode::InconsistentInput,
            ReasonCode::OpenIncidentFound,
            ReasonCode::RulePromotesAlone,
            ReasonCode::ConfidenceAtOrAboveThreshold,
            ReasonCode::ConfidenceBelowThreshold,
        ] {
            assert_eq!(
                serde_json::to_string(&reason).expect("ok"),
                format!("\"{reason}\"")
            );
        }
        for defect in [
            BundleDefect::Empty,
            BundleDefect::TooManyMembers,
            BundleDefect::TruncationFlagInconsistent,
            BundleDefect::WindowNotAligned,
            BundleDefect::MembersNotSortedUnique,
            BundleDefect::MemberOutsideKey,
            BundleDefect::MemberOutsideWindows,
            BundleDefect::NoMemberInOwnWindow,
            BundleDefect::GroupIdMismatch,
            BundleDefect::ContentHashMismatch,
        ] {
            let code = Inconsistency::from(defect);
            assert_eq!(
                serde_json::to_string(&code).expect("ok"),
                format!("\"{code}\"")
            );
        }
        for code in [
            Inconsistency::AssessmentOfOtherBundle,
            Inconsistency::AssessmentOutOfRange,
            Inconsistency::OpenIncidentClosed,
        ] {
            assert_eq!(
                serde_json::to_string(&code).expect("ok"),
                format!("\"{code}\"")
            );
        }
    }
}
