//! Correlation of detections into evidence groups, and the evidence bundle of a group.
//!
//! # Key and windows
//!
//! Detections are grouped by a [`CorrelationKey`] — (environment, service) — inside
//! epoch-aligned event-time windows of [`WindowMs`] milliseconds (default
//! [`WINDOW_MS_DEFAULT`], 5 minutes). The window of an event time `t` starts at
//! `floor(t / window_ms) * window_ms` ([`window_start`]); floor, not truncation, so an
//! instant before 1970 falls in the window that contains it too. Windows depend only on
//! event time (from the payload), never on arrival time, so replay groups the same way.
//!
//! A group is (key, window start) and its id is [`GroupId::derive`] over exactly that.
//!
//! # The window rule: a storm that straddles a boundary is one storm
//!
//! The evidence bundle *evaluated for window W* holds the key's detections whose window is
//! **W or W-1** (the current and the previous window). So alarm A at 03:04:59 and alarm B
//! at 03:05:01 (windows W-1 and W) meet in the bundle for W, whatever their arrival order.
//!
//! A new detection in window W is evaluated for W and for W+1 ([`windows_to_evaluate`]),
//! in that order. W+1 matters only if W+1 already holds detections of its own: a late
//! detection in W can complete a storm whose later part is in W+1. If W+1 holds none, the
//! caller skips it — a bundle with no member in its own window is never evaluated (the
//! promotion gate refuses it as inconsistent input).
//!
//! # Bundle
//!
//! [`EvidenceBundle::for_window`] is a pure function of the *set* of candidates: it keeps
//! the key's detections of the two windows, deduplicates them by id and sorts them by id,
//! so arrival order, redelivery and batching cannot change it. Its content hash covers the
//! group id, the window length, the truncation flag and the sorted member ids.
//!
//! A bundle holds at most [`BUNDLE_MEMBERS_MAX`] members. Beyond that it keeps a
//! deterministic selection (see [`EvidenceBundle::for_window`]) that preserves every
//! alarm's worst detection, so truncation does not change what the confidence model sees
//! in any realistic storm, and records `truncated: true`.

use crate::detection::{Detection, DetectionId};
use crate::hash::{Digest, FieldHasher};
use crate::time::EpochMs;
use serde::{Deserialize, Serialize};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;

/// An evidence group id: H(environment, service, window start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(pub Digest);

impl GroupId {
    /// Derives the id of the group of `(environment, service)` for the window starting at
    /// `window_start`.
    pub fn derive(environment: &str, service: &str, window_start: EpochMs) -> GroupId {
        GroupId(
            FieldHasher::new("opx.group.v1")
                .str(environment)
                .str(service)
                .i64(window_start.0)
                .finish(),
        )
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The default correlation window: 5 minutes, in milliseconds.
pub const WINDOW_MS_DEFAULT: i64 = 300_000;
/// The longest correlation window accepted: one day. A longer window would merge
/// unrelated outages into one storm and make bundles needlessly large.
pub const WINDOW_MS_MAX: i64 = 86_400_000;
/// The most detections one evidence bundle holds (see [`EvidenceBundle::for_window`] for
/// which are kept beyond it).
pub const BUNDLE_MEMBERS_MAX: usize = 1000;

/// A correlation window length in milliseconds, validated to `1..=WINDOW_MS_MAX`.
///
/// A newtype so that a zero or negative window (a division by zero, or windows that run
/// backwards) cannot reach the window arithmetic. Serialised as a plain integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct WindowMs(i64);

/// Why a window length was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "window_ms must be between 1 and {WINDOW_MS_MAX} milliseconds, got {0}; \
     use {WINDOW_MS_DEFAULT} (5 minutes) unless you have a reason not to"
)]
pub struct WindowMsError(pub i64);

impl WindowMs {
    /// [`WINDOW_MS_DEFAULT`], 5 minutes.
    pub const DEFAULT: WindowMs = WindowMs(WINDOW_MS_DEFAULT);

    /// Validates a window length.
    pub fn new(window_ms: i64) -> Result<WindowMs, WindowMsError> {
        if (1..=WINDOW_MS_MAX).contains(&window_ms) {
            Ok(WindowMs(window_ms))
        } else {
            Err(WindowMsError(window_ms))
        }
    }

    /// The length in milliseconds (always in `1..=WINDOW_MS_MAX`).
    pub fn get(self) -> i64 {
        self.0
    }
}

impl Default for WindowMs {
    fn default() -> WindowMs {
        WindowMs::DEFAULT
    }
}

impl TryFrom<i64> for WindowMs {
    type Error = WindowMsError;
    fn try_from(window_ms: i64) -> Result<WindowMs, WindowMsError> {
        WindowMs::new(window_ms)
    }
}

impl From<WindowMs> for i64 {
    fn from(window_ms: WindowMs) -> i64 {
        window_ms.0
    }
}

/// The start of the window that contains `event_time`: `floor(t / window_ms) * window_ms`.
///
/// Floor (Euclidean), so `-1` lies in the window starting at `-window_ms`, not at `0`.
/// Total: within one window of `i64::MIN` the start saturates at `i64::MIN` instead of
/// overflowing (no real event time comes near; ingest bounds event times to
/// [`crate::time::EVENT_TIME_MIN`]..=[`crate::time::EVENT_TIME_MAX`]).
pub fn window_start(event_time: EpochMs, window_ms: WindowMs) -> EpochMs {
    let offset = event_time.0.rem_euclid(window_ms.get());
    EpochMs(event_time.0.saturating_sub(offset))
}

/// The start of the window before the one starting at `window_start` (saturating).
pub fn previous_window_start(window_start: EpochMs, window_ms: WindowMs) -> EpochMs {
    EpochMs(window_start.0.saturating_sub(window_ms.get()))
}

/// The windows a new detection at `event_time` must be evaluated for, in this order: its
/// own window W, then W+1.
///
/// W+1 matters only if W+1 already holds detections of its own: the bundle for W+1 spans
/// W and W+1, so a late detection in W can complete a storm whose later part is in W+1.
/// If W+1 holds none, skip it (its bundle would have no member in its own window, and the
/// promotion gate refuses such a bundle). The end saturates at `i64::MAX`.
pub fn windows_to_evaluate(event_time: EpochMs, window_ms: WindowMs) -> [EpochMs; 2] {
    let own = window_start(event_time, window_ms);
    [own, EpochMs(own.0.saturating_add(window_ms.get()))]
}

/// What detections are grouped by: the environment (AWS account, or an Alertmanager label)
/// and the service. Prod and staging never merge because the environment is part of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CorrelationKey {
    /// The detection's environment.
    pub environment: String,
    /// The detection's service.
    pub service: String,
}

impl CorrelationKey {
    /// The key a detection belongs to.
    pub fn of(detection: &Detection) -> CorrelationKey {
        CorrelationKey {
            environment: detection.environment.clone(),
            service: detection.service.clone(),
        }
    }

    /// Whether `detection` belongs to this key.
    pub fn contains(&self, detection: &Detection) -> bool {
        detection.environment == self.environment && detection.service == self.service
    }

    /// The group id of this key's window starting at `window_start`.
    pub fn group_id(&self, window_start: EpochMs) -> GroupId {
        GroupId::derive(&self.environment, &self.service, window_start)
    }
}

/// The evidence of one group: the key's detections of the group's window and the window
/// before it (see the module documentation for why two windows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceBundle {
    /// The correlation key.
    pub key: CorrelationKey,
    /// The start of the window the bundle is evaluated for (aligned to `window_ms`).
    pub window_start: EpochMs,
    /// The window length the bundle was built with.
    pub window_ms: WindowMs,
    /// `GroupId::derive(environment, service, window_start)`.
    pub group_id: GroupId,
    /// The member detections, sorted by id, without duplicate ids.
    pub members: Vec<Detection>,
    /// [`EvidenceBundle::compute_content_hash`] of the fields above.
    pub content_hash: Digest,
    /// More than [`BUNDLE_MEMBERS_MAX`] detections qualified and some were left out.
    pub truncated: bool,
}

/// Why a bundle is not fit to be decided on. The promotion gate turns each into a
/// fail-closed REJECT; every one of them is a bug or corruption upstream, never a storm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum BundleDefect {
    /// No members: there is nothing to decide on.
    #[error("the bundle has no members; evaluate a window only after a detection lands in it")]
    Empty,
    /// More than [`BUNDLE_MEMBERS_MAX`] members.
    #[error("the bundle has more than {BUNDLE_MEMBERS_MAX} members; build it with EvidenceBundle::for_window")]
    TooManyMembers,
    /// `truncated` is set but the bundle is not full.
    #[error("the bundle says it was truncated but holds fewer than {BUNDLE_MEMBERS_MAX} members; build it with EvidenceBundle::for_window")]
    TruncationFlagInconsistent,
    /// `window_start` is not a multiple of `window_ms`.
    #[error("window_start is not aligned to window_ms; use correlation::window_start")]
    WindowNotAligned,
    /// Members are not strictly ascending by id (unsorted or duplicated).
    #[error("members are not sorted by id without duplicates; build the bundle with EvidenceBundle::for_window")]
    MembersNotSortedUnique,
    /// A member's environment or service differs from the bundle's key.
    #[error("a member belongs to another environment or service than the bundle's key")]
    MemberOutsideKey,
    /// A member's window is neither the bundle's window nor the one before it.
    #[error("a member's event time lies outside the bundle's window and the window before it")]
    MemberOutsideWindows,
    /// Every member lies in the previous window: this window was evaluated without any
    /// detection of its own (see [`windows_to_evaluate`]).
    #[error("no member lies in the bundle's own window; skip windows that hold no detection of their own")]
    NoMemberInOwnWindow,
    /// `group_id` is not derived from the key and the window start.
    #[error("group_id does not match the key and window_start")]
    GroupIdMismatch,
    /// `content_hash` does not match the bundle's fields.
    #[error(
        "content_hash does not match the bundle's members; the bundle was altered or corrupted"
    )]
    ContentHashMismatch,
}

impl EvidenceBundle {
    /// Builds the bundle of `key` evaluated for the window containing `window_start`.
    ///
    /// `candidates` may be any superset (any order, with duplicates): only the key's
    /// detections whose window is this window or the one before it are kept, deduplicated
    /// by id and sorted by id. `window_start` is aligned down to its window, so passing an
    /// event time names the window containing it.
    ///
    /// If two candidates share an id but differ (an upstream bug: a detection id is
    /// derived from its content), the one whose canonical JSON is smaller is kept, so the
    /// result still does not depend on order.
    ///
    /// If more than [`BUNDLE_MEMBERS_MAX`] detections qualify, the bundle keeps, in this
    /// priority, each ordered by (event time, id): (1) every alarm's worst detection
    /// (worst severity, then earliest); (2) the earliest detection of its own window and
    /// each rule's earliest detection; (3) the rest, earliest first. So the factors the
    /// confidence model reads (distinct alarms, worst severities, rules) survive
    /// truncation unless there are more distinct alarms and rules than the limit — and a
    /// bundle that full always promotes anyway. `truncated` is then `true`.
    pub fn for_window(
        key: CorrelationKey,
        window_start: EpochMs,
        window_ms: WindowMs,
        candidates: impl IntoIterator<Item = Detection>,
    ) -> EvidenceBundle {
        let own = crate::correlation::window_start(window_start, window_ms);
        let previous = previous_window_start(own, window_ms);
        let mut by_id: BTreeMap<DetectionId, Detection> = BTreeMap::new();
        for candidate in candidates {
            if !key.contains(&candidate) {
                continue;
            }
            let candidate_window =
                crate::correlation::window_start(candidate.event_time, window_ms);
            if candidate_window != own && candidate_window != previous {
                continue;
            }
            match by_id.entry(candidate.id) {
                Entry::Vacant(slot) => {
                    slot.insert(candidate);
                }
                Entry::Occupied(mut slot) => {
                    if canonical_bytes(&candidate) < canonical_bytes(slot.get()) {
                        slot.insert(candidate);
                    }
                }
            }
        }
        let mut members: Vec<Detection> = by_id.into_values().collect();
        let truncated = members.len() > BUNDLE_MEMBERS_MAX;
        if truncated {
            members = keep_most_telling(members, own, window_ms);
        }
        let group_id = key.group_id(own);
        let content_hash =
            EvidenceBundle::compute_content_hash(&group_id, window_ms, truncated, &members);
        EvidenceBundle {
            key,
            window_start: own,
            window_ms,
            group_id,
            members,
            content_hash,
            truncated,
        }
    }

    /// The content hash: `FieldHasher("opx.evidence.v1")` over the group id, the window
    /// length, the truncation flag, the member count and each member id in the given order
    /// (callers pass members sorted by id).
    ///
    /// Members enter by id only: a detection id is derived from the signal identity, the
    /// rule and the rule-set hash, so it already pins the detection's content.
    pub fn compute_content_hash(
        group_id: &GroupId,
        window_ms: WindowMs,
        truncated: bool,
        members: &[Detection],
    ) -> Digest {
        let mut hasher = FieldHasher::new("opx.evidence.v1")
            .digest(&group_id.0)
            .i64(window_ms.get())
            .u64(u64::from(truncated))
            .u64(members.len() as u64);
        for member in members {
            hasher = hasher.digest(&member.id.0);
        }
        hasher.finish()
    }

    /// Rebuilds the bundle an assessment saw from its recorded member ids and truncation
    /// flag: `candidates` may be a superset (the detections of both windows); only the
    /// recorded members are kept. Used by the promote stage and by replay, so both decide
    /// on exactly the bundle that was assessed.
    pub fn as_recorded(
        key: CorrelationKey,
        window_start: EpochMs,
        window_ms: WindowMs,
        candidates: impl IntoIterator<Item = Detection>,
        member_ids: &[DetectionId],
        truncated: bool,
    ) -> EvidenceBundle {
        let wanted: std::collections::BTreeSet<&DetectionId> = member_ids.iter().collect();
        let members = candidates
            .into_iter()
            .filter(|detection| wanted.contains(&detection.id));
        let mut bundle = EvidenceBundle::for_window(key, window_start, window_ms, members);
        if truncated && !bundle.truncated {
            bundle.truncated = true;
            bundle.content_hash = EvidenceBundle::compute_content_hash(
                &bundle.group_id,
                window_ms,
                true,
                &bundle.members,
            );
        }
        bundle
    }

    /// The start of the window before this bundle's own.
    pub fn previous_window_start(&self) -> EpochMs {
        previous_window_start(self.window_start, self.window_ms)
    }

    /// Whether at least one member lies in the bundle's own window.
    pub fn has_member_in_own_window(&self) -> bool {
        self.members
            .iter()
            .any(|member| window_start(member.event_time, self.window_ms) == self.window_start)
    }

    /// Checks that the bundle is what [`EvidenceBundle::for_window`] would have built and
    /// is worth deciding on; returns the first defect found, in the order of
    /// [`BundleDefect`]'s variants. A bundle read back from storage is checked again
    /// because the gate must not trust what it cannot recompute.
    pub fn check(&self) -> Result<(), BundleDefect> {
        if self.members.is_empty() {
            return Err(BundleDefect::Empty);
        }
        if self.members.len() > BUNDLE_MEMBERS_MAX {
            return Err(BundleDefect::TooManyMembers);
        }
        if self.truncated && self.members.len() != BUNDLE_MEMBERS_MAX {
            return Err(BundleDefect::TruncationFlagInconsistent);
        }
        if window_start(self.window_start, self.window_ms) != self.window_start {
            return Err(BundleDefect::WindowNotAligned);
        }
        if self.members.windows(2).any(|pair| pair[0].id >= pair[1].id) {
            return Err(BundleDefect::MembersNotSortedUnique);
        }
        if self.members.iter().any(|member| !self.key.contains(member)) {
            return Err(BundleDefect::MemberOutsideKey);
        }
        let previous = self.previous_window_start();
        if self.members.iter().any(|member| {
            let member_window = window_start(member.event_time, self.window_ms);
            member_window != self.window_start && member_window != previous
        }) {
            return Err(BundleDefect::MemberOutsideWindows);
        }
        if !self.has_member_in_own_window() {
            return Err(BundleDefect::NoMemberInOwnWindow);
        }
        if self.group_id != self.key.group_id(self.window_start) {
            return Err(BundleDefect::GroupIdMismatch);
        }
        let recomputed = EvidenceBundle::compute_content_hash(
            &self.group_id,
            self.window_ms,
            self.truncated,
            &self.members,
        );
        if recomputed != self.content_hash {
            return Err(BundleDefect::ContentHashMismatch);
        }
        Ok(())
    }
}

/// Canonical bytes of a detection, used only to pick deterministically between two
/// different detections that claim the same id. Serialising a plain struct cannot fail;
/// if it ever did, both sides compare equal and the first one stays.
fn canonical_bytes(detection: &Detection) -> Vec<u8> {
    serde_json::to_vec(detection).unwrap_or_default()
}

/// Chooses [`BUNDLE_MEMBERS_MAX`] of `members` (sorted by id, unique) by the priority
/// documented on [`EvidenceBundle::for_window`]; returns them sorted by id.
fn keep_most_telling(members: Vec<Detection>, own: EpochMs, window_ms: WindowMs) -> Vec<Detection> {
    let time_then_id = |detection: &Detection| (detection.event_time, detection.id);
    let mut worst_of_alarm: BTreeMap<&str, usize> = BTreeMap::new();
    let mut earliest_of_rule: BTreeMap<&str, usize> = BTreeMap::new();
    let mut earliest_of_own_window: Option<usize> = None;
    for (index, member) in members.iter().enumerate() {
        let worst_key = |d: &Detection| (d.severity, d.event_time, d.id);
        worst_of_alarm
            .entry(member.alarm.as_str())
            .and_modify(|kept| {
                if worst_key(member) < worst_key(&members[*kept]) {
                    *kept = index;
                }
            })
            .or_insert(index);
        earliest_of_rule
            .entry(member.rule_id.as_str())
            .and_modify(|kept| {
                if time_then_id(member) < time_then_id(&members[*kept]) {
                    *kept = index;
                }
            })
            .or_insert(index);
        if window_start(member.event_time, window_ms) == own
            && earliest_of_own_window
                .is_none_or(|kept| time_then_id(member) < time_then_id(&members[kept]))
        {
            earliest_of_own_window = Some(index);
        }
    }
    let mut tier = vec![2u8; members.len()];
    for &index in earliest_of_rule
        .values()
        .chain(earliest_of_own_window.iter())
    {
        tier[index] = 1;
    }
    for &index in worst_of_alarm.values() {
        tier[index] = 0;
    }
    let mut ranked: Vec<(u8, EpochMs, DetectionId, Detection)> = members
        .into_iter()
        .zip(tier)
        .map(|(member, tier)| (tier, member.event_time, member.id, member))
        .collect();
    ranked.sort_by_key(|(tier, event_time, id, _)| (*tier, *event_time, *id));
    ranked.truncate(BUNDLE_MEMBERS_MAX);
    let mut kept: Vec<Detection> = ranked.into_iter().map(|(_, _, _, member)| member).collect();
    kept.sort_by_key(|member| member.id);
    kept
}

/// Real-shaped detections for the unit tests of this module, [`crate::confidence`] and
/// [`crate::promotion`].
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::detection::{Detection, DetectionId};
    use crate::hash::Digest;
    use crate::signal::{Severity, SignalId, SignalState};
    use crate::time::EpochMs;

    /// The AWS account the fixtures' alarms live in.
    pub(crate) const ACCOUNT: &str = "123456789012";
    /// 2026-11-24T03:00:00Z, the start of a 5-minute window.
    pub(crate) const T0: i64 = 1_795_489_200_000;

    /// A detection of the CloudWatch alarm `orders-<alarm>` by rule `cloudwatch-alarm`.
    pub(crate) fn detection(alarm: &str, severity: Severity, event_time_ms: i64) -> Detection {
        detection_full(
            "orders",
            alarm,
            severity,
            event_time_ms,
            "cloudwatch-alarm",
            false,
        )
    }

    /// A detection with every varying field chosen.
    pub(crate) fn detection_full(
        service: &str,
        alarm: &str,
        severity: Severity,
        event_time_ms: i64,
        rule_id: &str,
        promotes_alone: bool,
    ) -> Detection {
        let alarm_name = format!("{service}-{alarm}");
        let arn = format!("arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:{alarm_name}");
        let event_time = EpochMs(event_time_ms);
        let signal_id = SignalId::derive(&arn, SignalState::Alarm, event_time);
        let ruleset_hash = Digest::of_bytes(b"rules/default.yaml");
        Detection {
            id: DetectionId::derive(&signal_id, rule_id, "1.0.0", &ruleset_hash),
            signal_id,
            alarm: arn,
            alarm_name,
            environment: ACCOUNT.to_owned(),
            service: service.to_owned(),
            severity,
            event_time,
            rule_id: rule_id.to_owned(),
            rule_version: "1.0.0".to_owned(),
            ruleset_hash,
            promotes_alone,
        }
    }

    /// The key of the fixtures' `orders` service.
    pub(crate) fn orders_key() -> super::CorrelationKey {
        super::CorrelationKey {
            environment: ACCOUNT.to_owned(),
            service: "orders".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{detection, detection_full, orders_key, ACCOUNT, T0};
    use super::*;
    use crate::signal::Severity;
    use proptest::prelude::*;

    const W: i64 = WINDOW_MS_DEFAULT;

    fn bundle(window_start_ms: i64, candidates: Vec<Detection>) -> EvidenceBundle {
        EvidenceBundle::for_window(
            orders_key(),
            EpochMs(window_start_ms),
            WindowMs::DEFAULT,
            candidates,
        )
    }

    fn alarms_of(bundle: &EvidenceBundle) -> Vec<String> {
        bundle
            .members
            .iter()
            .map(|member| member.alarm_name.clone())
            .collect()
    }

    #[test]
    fn window_start_floors_to_the_epoch_aligned_window() {
        // (given event time, window length) -> then window start
        let cases: [(i64, i64, i64); 13] = [
            (0, W, 0),
            (1, W, 0),
            (W - 1, W, 0),
            (W, W, W),
            (T0, W, T0),
            (T0 + W - 1, W, T0),
            (T0 - 1, W, T0 - W),
            (-1, W, -W),
            (-W, W, -W),
            (-W - 1, W, -2 * W),
            (12_345, 1, 12_345),
            (-7, 1, -7),
            (T0 + 30 * 60_000 + 5, 3_600_000, T0),
        ];
        for (event_time, window_ms, expected) in cases {
            let window_ms = WindowMs::new(window_ms).expect("valid window");
            assert_eq!(
                window_start(EpochMs(event_time), window_ms),
                EpochMs(expected),
                "event time {event_time}, window {window_ms:?}"
            );
        }
    }

    #[test]
    fn window_arithmetic_is_total_at_the_extremes() {
        let at_min = window_start(EpochMs(i64::MIN), WindowMs::DEFAULT);
        assert_eq!(
            at_min,
            EpochMs(i64::MIN),
            "saturates instead of overflowing"
        );
        let at_max = window_start(EpochMs(i64::MAX), WindowMs::DEFAULT);
        assert!(i64::MAX - at_max.0 < W);
        assert_eq!(
            windows_to_evaluate(EpochMs(i64::MAX), WindowMs::DEFAULT)[1],
            EpochMs(i64::MAX)
        );
        assert_eq!(
            previous_window_start(EpochMs(i64::MIN), WindowMs::DEFAULT),
            EpochMs(i64::MIN)
        );
    }

    #[test]
    fn window_length_must_be_positive_and_bounded() {
        let cases: [(i64, bool); 7] = [
            (i64::MIN, false),
            (-1, false),
            (0, false),
            (1, true),
            (WINDOW_MS_DEFAULT, true),
            (WINDOW_MS_MAX, true),
            (WINDOW_MS_MAX + 1, false),
        ];
        for (window_ms, valid) in cases {
            assert_eq!(WindowMs::new(window_ms).is_ok(), valid, "{window_ms}");
            let parsed: Result<WindowMs, _> = serde_json::from_str(&window_ms.to_string());
            assert_eq!(parsed.is_ok(), valid, "serde {window_ms}");
        }
        let message = WindowMs::new(0).expect_err("zero").to_string();
        assert!(
            message.contains("window_ms") && message.contains("got 0"),
            "{message}"
        );
        assert_eq!(
            serde_json::to_string(&WindowMs::DEFAULT).expect("serialises"),
            "300000"
        );
    }

    #[test]
    fn a_detection_is_evaluated_for_its_window_and_the_next() {
        let cases: [(i64, [i64; 2]); 4] = [
            (T0, [T0, T0 + W]),
            (T0 + W - 1, [T0, T0 + W]),
            (T0 + W, [T0 + W, T0 + 2 * W]),
            (-1, [-W, 0]),
        ];
        for (event_time, expected) in cases {
            assert_eq!(
                windows_to_evaluate(EpochMs(event_time), WindowMs::DEFAULT),
                expected.map(EpochMs),
                "{event_time}"
            );
        }
    }

    #[test]
    fn bundle_keeps_the_keys_detections_of_its_window_and_the_previous_one() {
        // given candidates around window T0 (evaluated for T0)
        let kept_previous = detection("api-5xx", Severity::Sev2, T0 - 1);
        let kept_own_start = detection("api-latency", Severity::Sev2, T0);
        let kept_own_end = detection("db-cpu", Severity::Sev3, T0 + W - 1);
        let kept_previous_start = detection("queue-depth", Severity::Sev3, T0 - W);
        let too_early = detection("old", Severity::Sev1, T0 - W - 1);
        let too_late = detection("next", Severity::Sev1, T0 + W);
        let other_service = detection_full(
            "payments",
            "api-5xx",
            Severity::Sev1,
            T0,
            "cloudwatch-alarm",
            false,
        );
        let mut other_environment = detection("api-5xx", Severity::Sev1, T0 + 1);
        other_environment.environment = "210987654321".to_owned();
        let candidates = vec![
            too_late,
            kept_own_end.clone(),
            other_service,
            kept_previous.clone(),
            too_early,
            kept_own_start.clone(),
            other_environment,
            kept_previous_start.clone(),
            kept_own_start.clone(),
        ];

        // when
        let bundle = bundle(T0, candidates);

        // then
        let mut expected = vec![
            kept_previous,
            kept_own_start,
            kept_own_end,
            kept_previous_start,
        ];
        expected.sort_by_key(|member| member.id);
        assert_eq!(bundle.members, expected);
        assert_eq!(bundle.window_start, EpochMs(T0));
        assert_eq!(
            bundle.group_id,
            GroupId::derive(ACCOUNT, "orders", EpochMs(T0))
        );
        assert!(!bundle.truncated);
        assert_eq!(bundle.check(), Ok(()));
    }

    #[test]
    fn a_misaligned_window_start_names_the_window_containing_it() {
        let members = vec![detection("api-5xx", Severity::Sev2, T0 + 10)];
        let aligned = bundle(T0, members.clone());
        let misaligned = bundle(T0 + 123_456, members);
        assert_eq!(aligned, misaligned);
    }

    #[test]
    fn no_qualifying_candidate_gives_an_empty_bundle_that_is_not_evaluable() {
        let bundle = bundle(T0, vec![detection("next", Severity::Sev1, T0 + W)]);
        assert!(bundle.members.is_empty());
        assert_eq!(bundle.check(), Err(BundleDefect::Empty));
    }

    #[test]
    fn same_id_with_different_content_resolves_the_same_way_in_any_order() {
        let honest = detection("api-5xx", Severity::Sev2, T0 + 5);
        let mut forged = honest.clone();
        forged.alarm_name = "zzz".to_owned();
        let one = bundle(T0, vec![honest.clone(), forged.clone()]);
        let other = bundle(T0, vec![forged, honest.clone()]);
        assert_eq!(one, other);
        assert_eq!(one.members, vec![honest]);
    }

    #[test]
    fn content_hash_follows_the_member_set() {
        let a = detection("api-5xx", Severity::Sev2, T0 + 5);
        let b = detection("api-latency", Severity::Sev2, T0 + 6);
        let ab = bundle(T0, vec![a.clone(), b.clone()]);
        let ba = bundle(T0, vec![b, a.clone(), a.clone()]);
        let only_a = bundle(T0, vec![a.clone()]);
        let a_next_window = bundle(T0 + W, vec![a]);
        assert_eq!(ab.content_hash, ba.content_hash);
        assert_ne!(ab.content_hash, only_a.content_hash);
        assert_ne!(
            only_a.content_hash, a_next_window.content_hash,
            "the group id is hashed"
        );
    }

    #[test]
    fn a_bundle_without_a_member_of_its_own_window_is_flagged() {
        let bundle = bundle(T0 + W, vec![detection("api-5xx", Severity::Sev2, T0 + 5)]);
        assert_eq!(bundle.members.len(), 1);
        assert!(!bundle.has_member_in_own_window());
        assert_eq!(bundle.check(), Err(BundleDefect::NoMemberInOwnWindow));
    }

    #[test]
    fn check_names_each_defect() {
        let good = bundle(
            T0,
            vec![
                detection("api-5xx", Severity::Sev2, T0 - 10),
                detection("api-latency", Severity::Sev2, T0 + 10),
            ],
        );
        assert_eq!(good.check(), Ok(()));
        type Mutation = fn(&mut EvidenceBundle);
        let cases: [(&str, Mutation, BundleDefect); 10] = [
            ("no members", |b| b.members.clear(), BundleDefect::Empty),
            (
                "too many members",
                |b| {
                    let first = b.members[0].clone();
                    b.members.resize(BUNDLE_MEMBERS_MAX + 1, first);
                },
                BundleDefect::TooManyMembers,
            ),
            (
                "truncated flag on a small bundle",
                |b| b.truncated = true,
                BundleDefect::TruncationFlagInconsistent,
            ),
            (
                "window start off the grid",
                |b| b.window_start = EpochMs(T0 + 1),
                BundleDefect::WindowNotAligned,
            ),
            (
                "members out of order",
                |b| b.members.reverse(),
                BundleDefect::MembersNotSortedUnique,
            ),
            (
                "duplicate member",
                |b| {
                    let first = b.members[0].clone();
                    b.members.insert(0, first);
                },
                BundleDefect::MembersNotSortedUnique,
            ),
            (
                "member of another service",
                |b| b.members[0].service = "payments".to_owned(),
                BundleDefect::MemberOutsideKey,
            ),
            (
                "member far in the past",
                |b| b.members[0].event_time = EpochMs(T0 - 3 * W),
                BundleDefect::MemberOutsideWindows,
            ),
            (
                "group id of another window",
                |b| b.group_id = GroupId::derive(ACCOUNT, "orders", EpochMs(T0 - W)),
                BundleDefect::GroupIdMismatch,
            ),
            (
                "content hash altered",
                |b| b.content_hash = Digest::ZERO,
                BundleDefect::ContentHashMismatch,
            ),
        ];
        for (name, mutate, expected) in cases {
            let mut altered = good.clone();
            mutate(&mut altered);
            assert_eq!(altered.check(), Err(expected), "{name}");
        }
    }

    #[test]
    fn truncation_keeps_every_alarms_worst_detection_and_the_own_window() {
        // given a flapping alarm with far more detections than the limit, all early, and
        // a second alarm and a second rule that fire last
        let mut candidates: Vec<Detection> = (0..1200)
            .map(|i| detection("api-5xx", Severity::Sev3, T0 - W + i))
            .collect();
        candidates.push(detection("api-5xx", Severity::Sev1, T0 + W - 3));
        candidates.push(detection("api-latency", Severity::Sev2, T0 + W - 2));
        candidates.push(detection_full(
            "orders",
            "db-cpu",
            Severity::Sev4,
            T0 + W - 1,
            "canary",
            false,
        ));

        // when
        let bundle = bundle(T0, candidates.clone());

        // then
        assert!(bundle.truncated);
        assert_eq!(bundle.members.len(), BUNDLE_MEMBERS_MAX);
        assert_eq!(bundle.check(), Ok(()));
        for late in &candidates[1200..] {
            assert!(bundle.members.contains(late), "{}", late.alarm_name);
        }
        // the rest are the earliest of the flapping alarm
        assert!(bundle.members.contains(&candidates[0]));
        assert!(!bundle.members.contains(&candidates[1199]));
        let reversed: Vec<Detection> = candidates.into_iter().rev().collect();
        assert_eq!(bundle, self::bundle(T0, reversed));
    }

    #[test]
    fn bundle_serialises_and_reads_back() {
        let bundle = bundle(T0, vec![detection("api-5xx", Severity::Sev2, T0 + 5)]);
        let text = serde_json::to_string(&bundle).expect("serialises");
        let back: EvidenceBundle = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, bundle);
        assert_eq!(back.check(), Ok(()));
        assert!(alarms_of(&back).iter().all(|name| name == "orders-api-5xx"));
    }

    proptest! {
        #[test]
        fn window_start_is_the_floor(event_time in -10_000_000_000_000i64..10_000_000_000_000i64, window_ms in 1i64..=WINDOW_MS_MAX) {
            let window_ms = WindowMs::new(window_ms).expect("in range");
            let start = window_start(EpochMs(event_time), window_ms);
            prop_assert!(start.0 <= event_time);
            prop_assert!(event_time - start.0 < window_ms.get());
            prop_assert_eq!(start.0.rem_euclid(window_ms.get()), 0);
        }

        #[test]
        fn bundle_is_independent_of_order_and_duplicates(
            picks in proptest::collection::vec((0usize..6, 0usize..4, -W..W), 1..40),
            seed in any::<u64>(),
        ) {
            let candidates: Vec<Detection> = picks
                .iter()
                .map(|&(alarm, severity, offset)| {
                    detection(&format!("alarm-{alarm}"), Severity::ALL[severity], T0 + offset)
                })
                .collect();
            let mut shuffled = candidates.clone();
            shuffled.extend(candidates.iter().take((seed % 5) as usize).cloned());
            let rotate = (seed as usize) % shuffled.len();
            shuffled.rotate_left(rotate);
            shuffled.reverse();
            prop_assert_eq!(bundle(T0, candidates), bundle(T0, shuffled));
        }
    }
}
