//! Correlation → confidence → promotion, end to end, as properties.
//!
//! A tiny in-test pipeline plays the part of the application layer: it stores detections
//! as they arrive (in batches), evaluates each new detection's windows in the documented
//! order, and keeps the one-open-incident-per-key pointer. The properties are the ones the
//! brief promises: redelivery, reordering and re-batching of a storm inside one window do
//! not change the incident or its id; one alarm alone never promotes; two distinct SEV2
//! alarms always do; a storm that straddles a window boundary is one storm.

use opx_domain::confidence::{assess, ConfidenceModel};
use opx_domain::correlation::{
    window_start, windows_to_evaluate, CorrelationKey, EvidenceBundle, GroupId, WindowMs,
    WINDOW_MS_DEFAULT,
};
use opx_domain::detection::{Detection, DetectionId};
use opx_domain::hash::Digest;
use opx_domain::incident::{IncidentId, IncidentState};
use opx_domain::promotion::{
    decide, GateInput, Outcome, PromotionDecision, ReasonCode, SeenIncident,
};
use opx_domain::signal::{Severity, SignalId, SignalState};
use opx_domain::time::EpochMs;
use proptest::prelude::*;
use std::collections::BTreeMap;

const ACCOUNT: &str = "123456789012";
/// 2026-11-24T03:00:00Z, the start of a 5-minute window.
const T0: i64 = 1_795_489_200_000;
const W: i64 = WINDOW_MS_DEFAULT;

/// A detection of the CloudWatch alarm `orders-<alarm>` as the default rules make it.
fn detection(
    alarm: &str,
    severity: Severity,
    event_time_ms: i64,
    rule_id: &str,
    promotes_alone: bool,
) -> Detection {
    let alarm_name = format!("orders-{alarm}");
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
        service: "orders".to_owned(),
        severity,
        event_time,
        rule_id: rule_id.to_owned(),
        rule_version: "1.0.0".to_owned(),
        ruleset_hash,
        promotes_alone,
    }
}

fn orders_key() -> CorrelationKey {
    CorrelationKey {
        environment: ACCOUNT.to_owned(),
        service: "orders".to_owned(),
    }
}

fn storm_incident(window_start_ms: i64, generation: u32) -> IncidentId {
    IncidentId::derive(
        ACCOUNT,
        "orders",
        &GroupId::derive(ACCOUNT, "orders", EpochMs(window_start_ms)),
        generation,
    )
}

/// Bundle, assessment and decision of `window_start_ms` over `candidates`, with no open
/// incident.
fn evaluate(
    window_start_ms: i64,
    candidates: &[Detection],
) -> (
    EvidenceBundle,
    opx_domain::confidence::ConfidenceAssessment,
    PromotionDecision,
) {
    let bundle = EvidenceBundle::for_window(
        orders_key(),
        EpochMs(window_start_ms),
        WindowMs::DEFAULT,
        candidates.iter().cloned(),
    );
    let assessment = assess(&ConfidenceModel::v1(), &bundle);
    let decision = decide(&GateInput {
        bundle: &bundle,
        assessment: &assessment,
        open_incident: None,
        closed_generations: 0,
    });
    (bundle, assessment, decision)
}

/// The application layer in miniature.
#[derive(Default)]
struct Pipeline {
    store: BTreeMap<DetectionId, Detection>,
    open: BTreeMap<CorrelationKey, SeenIncident>,
    created: Vec<IncidentId>,
    attached_to: Vec<IncidentId>,
}

impl Pipeline {
    fn deliver(&mut self, batch: &[Detection]) {
        for detection in batch {
            self.store.insert(detection.id, detection.clone());
        }
        let window_ms = WindowMs::DEFAULT;
        for detection in batch {
            let key = CorrelationKey::of(detection);
            for window in windows_to_evaluate(detection.event_time, window_ms) {
                let bundle = EvidenceBundle::for_window(
                    key.clone(),
                    window,
                    window_ms,
                    self.store.values().cloned(),
                );
                // W+1 is evaluated only if it holds detections of its own.
                if !bundle.has_member_in_own_window() {
                    continue;
                }
                let assessment = assess(&ConfidenceModel::v1(), &bundle);
                let open_incident = self.open.get(&key).copied();
                let decision = decide(&GateInput {
                    bundle: &bundle,
                    assessment: &assessment,
                    open_incident,
                    closed_generations: 0,
                });
                assert_ne!(
                    decision.reason,
                    ReasonCode::InconsistentInput,
                    "{decision:?}"
                );
                match (decision.outcome, decision.incident_id) {
                    (Outcome::Promote, Some(incident_id)) => {
                        self.open.insert(
                            key.clone(),
                            SeenIncident {
                                incident_id,
                                state: IncidentState::Open,
                            },
                        );
                        self.created.push(incident_id);
                    }
                    (Outcome::Attach, Some(incident_id)) => self.attached_to.push(incident_id),
                    (Outcome::Reject, None) => {}
                    other => panic!("decision without a consistent incident id: {other:?}"),
                }
            }
        }
    }

    fn run(batches: &[Vec<Detection>]) -> Pipeline {
        let mut pipeline = Pipeline::default();
        for batch in batches {
            pipeline.deliver(batch);
        }
        pipeline
    }
}

/// Splits `detections` into consecutive batches of the given sizes (cycled).
fn batches(detections: &[Detection], sizes: &[usize]) -> Vec<Vec<Detection>> {
    let mut out = Vec::new();
    let mut rest = detections;
    let mut size = sizes.iter().cycle();
    while !rest.is_empty() {
        let take = size.next().copied().unwrap_or(1).clamp(1, rest.len());
        out.push(rest[..take].to_vec());
        rest = &rest[take..];
    }
    out
}

/// Detections of up to six alarms and three rules anywhere inside window T0; a canary
/// rule now and then.
fn storm_in_one_window() -> impl Strategy<Value = Vec<Detection>> {
    proptest::collection::vec(
        (
            0usize..6,
            0usize..4,
            0..W,
            0usize..3,
            proptest::bool::weighted(0.05),
        ),
        1..25,
    )
    .prop_map(|picks| {
        picks
            .into_iter()
            .map(|(alarm, severity, offset, rule, alone)| {
                detection(
                    &format!("alarm-{alarm}"),
                    Severity::ALL[severity],
                    T0 + offset,
                    &format!("rule-{rule}"),
                    alone,
                )
            })
            .collect()
    })
}

#[test]
fn a_twenty_minute_outage_with_new_alerts_every_few_minutes_is_one_incident() {
    // given alerts every 3 minutes for 20 minutes, each a different alarm at SEV2
    let alerts: Vec<Detection> = (0..7)
        .map(|i| {
            detection(
                &format!("alarm-{i}"),
                Severity::Sev2,
                T0 + i * 180_000,
                "cloudwatch-alarm",
                false,
            )
        })
        .collect();

    // when they arrive one by one
    let pipeline = Pipeline::run(&batches(&alerts, &[1]));

    // then one incident, and every later evaluation attached to it
    assert_eq!(pipeline.created.len(), 1, "{:?}", pipeline.created);
    assert!(pipeline
        .attached_to
        .iter()
        .all(|id| *id == pipeline.created[0]));
    assert!(!pipeline.attached_to.is_empty());
}

#[test]
fn a_lone_flapping_alarm_never_opens_an_incident() {
    // given one alarm going ALARM/OK/ALARM every minute for half an hour (OK is a
    // recovery, never a detection: only the re-fires arrive here)
    let flaps: Vec<Detection> = (0..30)
        .map(|i| {
            detection(
                "api-5xx",
                Severity::Sev1,
                T0 + i * 60_000,
                "cloudwatch-alarm",
                false,
            )
        })
        .collect();
    let pipeline = Pipeline::run(&batches(&flaps, &[1, 3]));
    assert!(pipeline.created.is_empty());
}

proptest! {
    /// (a) Any permutation, duplication and re-batching of a storm inside one window gives
    /// the same bundle hash, assessment and decision, and the pipeline the same incident.
    #[test]
    fn order_duplicates_and_batching_do_not_change_the_outcome(
        storm in storm_in_one_window(),
        permutation_seed in proptest::collection::vec(any::<proptest::sample::Index>(), 0..25),
        duplicates in proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
        batch_sizes in proptest::collection::vec(1usize..6, 1..4),
    ) {
        let mut arrival = storm.clone();
        for index in &duplicates {
            arrival.push(index.get(&storm).clone());
        }
        for (position, index) in permutation_seed.iter().enumerate() {
            let len = arrival.len();
            arrival.swap(position % len, index.index(len));
        }

        let (bundle, assessment, decision) = evaluate(T0, &storm);
        let (bundle_again, assessment_again, decision_again) = evaluate(T0, &arrival);
        prop_assert_eq!(bundle.content_hash, bundle_again.content_hash);
        prop_assert_eq!(&assessment, &assessment_again);
        prop_assert_eq!(&decision, &decision_again);
        prop_assert_eq!(decision.hash(), decision_again.hash());

        let in_order = Pipeline::run(&batches(&storm, &[1]));
        let rearranged = Pipeline::run(&batches(&arrival, &batch_sizes));
        prop_assert_eq!(&in_order.created, &rearranged.created);
        prop_assert!(in_order.created.len() <= 1);
        if decision.outcome == Outcome::Promote {
            prop_assert_eq!(&in_order.created, &vec![storm_incident(T0, 0)]);
        } else {
            prop_assert!(in_order.created.is_empty());
        }
    }

    /// (b1) One alarm alone — any number of detections, any severities, any rules, flapping
    /// across both windows of the bundle — never reaches the threshold.
    #[test]
    fn one_alarm_alone_never_promotes(
        picks in proptest::collection::vec((0usize..4, -W..W, 0usize..4), 1..60),
    ) {
        let flaps: Vec<Detection> = picks
            .into_iter()
            .map(|(severity, offset, rule)| detection("api-5xx", Severity::ALL[severity], T0 + offset, &format!("rule-{rule}"), false))
            .collect();
        let (bundle, assessment, decision) = evaluate(T0, &flaps);
        prop_assume!(bundle.has_member_in_own_window());
        prop_assert!(assessment.score_bps <= 5500, "{}", assessment.score_bps);
        prop_assert!(assessment.score_bps < assessment.promote_threshold_bps);
        prop_assert_eq!(decision.outcome, Outcome::Reject);
        prop_assert_eq!(decision.reason, ReasonCode::ConfidenceBelowThreshold);
    }

    /// (b2) Two or more distinct alarms, each with a detection at SEV2 or worse, always
    /// promote, whatever else is in the bundle.
    #[test]
    fn two_distinct_sev2_alarms_always_promote(
        firing in proptest::collection::btree_map(0usize..8, (0usize..2, -W..W), 2..6),
        noise in proptest::collection::vec((0usize..12, 0usize..4, -W..W, 0usize..3), 0..30),
        own_window_offset in 0..W,
    ) {
        let mut members: Vec<Detection> = firing
            .iter()
            .map(|(&alarm, &(severity, offset))| detection(&format!("alarm-{alarm}"), Severity::ALL[severity], T0 + offset, "cloudwatch-alarm", false))
            .collect();
        members.extend(noise.into_iter().map(|(alarm, severity, offset, rule)| {
            detection(&format!("alarm-{alarm}"), Severity::ALL[severity], T0 + offset, &format!("rule-{rule}"), false)
        }));
        // the window is being evaluated because a detection landed in it
        members.push(detection("alarm-0", Severity::Sev4, T0 + own_window_offset, "cloudwatch-alarm", false));
        let (_, assessment, decision) = evaluate(T0, &members);
        prop_assert!(assessment.score_bps >= assessment.promote_threshold_bps, "{:?}", assessment);
        prop_assert_eq!(decision.outcome, Outcome::Promote);
        prop_assert_eq!(decision.reason, ReasonCode::ConfidenceAtOrAboveThreshold);
        prop_assert_eq!(decision.incident_id, Some(storm_incident(T0, 0)));
    }

    /// (c) Alarm A late in W-1 and alarm B early in W are one storm: it promotes when
    /// evaluated for W, whichever arrives first, with W's incident id.
    #[test]
    fn a_storm_straddling_a_boundary_is_one_storm(
        a_before_boundary_ms in 1..W,
        b_after_boundary_ms in 0..W,
        a_severity in 0usize..2,
        b_severity in 0usize..2,
        a_first in any::<bool>(),
    ) {
        let a = detection("api-5xx", Severity::ALL[a_severity], T0 - a_before_boundary_ms, "cloudwatch-alarm", false);
        let b = detection("api-latency", Severity::ALL[b_severity], T0 + b_after_boundary_ms, "cloudwatch-alarm", false);
        prop_assert_eq!(window_start(a.event_time, WindowMs::DEFAULT), EpochMs(T0 - W));
        prop_assert_eq!(window_start(b.event_time, WindowMs::DEFAULT), EpochMs(T0));

        let (_, _, decision) = evaluate(T0, &[a.clone(), b.clone()]);
        prop_assert_eq!(decision.outcome, Outcome::Promote);

        let arrival = if a_first { vec![vec![a], vec![b]] } else { vec![vec![b], vec![a]] };
        let pipeline = Pipeline::run(&arrival);
        prop_assert_eq!(pipeline.created, vec![storm_incident(T0, 0)]);
    }

    /// (d) A different generation gives a different incident id.
    #[test]
    fn a_new_generation_is_a_new_incident(first in any::<u32>(), second in any::<u32>()) {
        prop_assume!(first != second);
        let storm = [
            detection("api-5xx", Severity::Sev1, T0 + 10, "cloudwatch-alarm", false),
            detection("api-latency", Severity::Sev2, T0 + 20, "cloudwatch-alarm", false),
        ];
        let bundle = EvidenceBundle::for_window(orders_key(), EpochMs(T0), WindowMs::DEFAULT, storm);
        let assessment = assess(&ConfidenceModel::v1(), &bundle);
        let decide_with = |closed_generations| decide(&GateInput { bundle: &bundle, assessment: &assessment, open_incident: None, closed_generations });
        let (one, other) = (decide_with(first), decide_with(second));
        prop_assert_eq!(one.outcome, Outcome::Promote);
        prop_assert_eq!(one.incident_id, Some(storm_incident(T0, first)));
        prop_assert_ne!(one.incident_id, other.incident_id);
        prop_assert_ne!(one.hash(), other.hash());
    }
}
