//! The incident aggregate: given/when/then tables over `decide` and `apply`, and property
//! tests for replay, arrival order, duplicates and the payload encoding.

use opx_domain::correlation::GroupId;
use opx_domain::detection::{Detection, DetectionId};
use opx_domain::event::verify_stream;
use opx_domain::hash::Digest;
use opx_domain::incident::*;
use opx_domain::signal::{Severity, SignalId, SignalState};
use opx_domain::time::EpochMs;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Fixtures: a CloudWatch storm on the `orders` service of account 123456789012.
// ---------------------------------------------------------------------------------------

const ENVIRONMENT: &str = "123456789012";
const SERVICE: &str = "orders";
/// 2026-11-24T03:00:00Z, the start of the storm's 5-minute window.
const WINDOW_START_MS: i64 = 1_795_489_200_000;
/// 2026-11-24T03:00:09.512Z, the first alarm.
const T0: i64 = 1_795_489_209_512;
const ALARMS: [&str; 4] = [
    "orders-api-5xx",
    "orders-api-latency-p99",
    "orders-db-cpu",
    "orders-queue-depth",
];
const STATES: [IncidentState; 5] = [
    IncidentState::Open,
    IncidentState::Acknowledged,
    IncidentState::Mitigating,
    IncidentState::Resolved,
    IncidentState::Closed,
];

fn group() -> GroupId {
    GroupId::derive(ENVIRONMENT, SERVICE, EpochMs(WINDOW_START_MS))
}

fn incident_id() -> IncidentId {
    IncidentId::derive(ENVIRONMENT, SERVICE, &group(), 0)
}

fn ruleset_hash() -> Digest {
    Digest::of_bytes(b"rules/default.yaml@1")
}

fn decision_hash(n: u8) -> Digest {
    Digest::of_bytes(&[b'd', n])
}

fn alarm_arn(name: &str) -> String {
    format!("arn:aws:cloudwatch:us-east-1:{ENVIRONMENT}:alarm:{name}")
}

/// A detection of a CloudWatch ALARM state change, as the detection stage builds it.
fn detection(alarm_name: &str, severity: Severity, event_time_ms: i64) -> Detection {
    let alarm = alarm_arn(alarm_name);
    let signal_id = SignalId::derive(&alarm, SignalState::Alarm, EpochMs(event_time_ms));
    Detection {
        id: DetectionId::derive(
            &signal_id,
            "cloudwatch-alarm-firing",
            "1.2.0",
            &ruleset_hash(),
        ),
        signal_id,
        alarm,
        alarm_name: alarm_name.to_owned(),
        environment: ENVIRONMENT.to_owned(),
        service: SERVICE.to_owned(),
        severity,
        event_time: EpochMs(event_time_ms),
        rule_id: "cloudwatch-alarm-firing".to_owned(),
        rule_version: "1.2.0".to_owned(),
        ruleset_hash: ruleset_hash(),
        promotes_alone: false,
    }
}

fn evidence(alarm_name: &str, severity: Severity, event_time_ms: i64) -> EvidenceItem {
    EvidenceItem::from(&detection(alarm_name, severity, event_time_ms))
}

/// The n-th evidence item of a long storm: four alarms firing in turn, one a second.
fn storm_item(n: usize) -> EvidenceItem {
    let severity = Severity::ALL[n % 3 + 1];
    evidence(ALARMS[n % ALARMS.len()], severity, T0 + n as i64 * 1000)
}

fn alice() -> Principal {
    Principal::iam("arn:aws:sts::123456789012:assumed-role/Responder/alice").expect("valid ARN")
}

fn bob() -> Principal {
    Principal::local("bob").expect("valid local name")
}

fn at(offset_ms: i64) -> EpochMs {
    EpochMs(T0 + 60_000 + offset_ms)
}

// Events, as `decide` writes them.

fn opened_with(evidence: Vec<EvidenceItem>) -> IncidentEvent {
    IncidentEvent::IncidentOpened(IncidentOpened {
        incident_id: incident_id(),
        environment: ENVIRONMENT.to_owned(),
        service: SERVICE.to_owned(),
        group_id: group(),
        generation: 0,
        evidence,
        decision_hash: decision_hash(1),
    })
}

fn opened() -> IncidentEvent {
    opened_with(vec![
        evidence("orders-api-5xx", Severity::Sev2, T0),
        evidence("orders-api-latency-p99", Severity::Sev2, T0 + 4_000),
    ])
}

fn attached(evidence: Vec<EvidenceItem>, fired_again: bool) -> IncidentEvent {
    IncidentEvent::EvidenceAttached(EvidenceAttached {
        evidence,
        decision_hash: decision_hash(2),
        fired_again,
    })
}

fn transitioned(
    from: IncidentState,
    to: IncidentState,
    lifecycle_version: u64,
    close_as: Option<CloseAs>,
    resolution_summary: Option<&str>,
) -> IncidentEvent {
    IncidentEvent::IncidentTransitioned(IncidentTransitioned {
        from,
        to,
        principal: alice(),
        reason: format!("moving to {to}"),
        at: at(lifecycle_version as i64),
        lifecycle_version,
        close_as,
        resolution_summary: resolution_summary.map(str::to_owned),
    })
}

/// The events of an incident (SEV2 evidence) walked along the main path into `state`.
fn given_in(state: IncidentState) -> Vec<IncidentEvent> {
    use IncidentState::*;
    let path: &[(IncidentState, IncidentState, Option<CloseAs>)] = match state {
        Open => &[],
        Acknowledged => &[(Open, Acknowledged, None)],
        Mitigating => &[(Open, Acknowledged, None), (Acknowledged, Mitigating, None)],
        Resolved => &[
            (Open, Acknowledged, None),
            (Acknowledged, Mitigating, None),
            (Mitigating, Resolved, None),
        ],
        Closed => &[
            (Open, Acknowledged, None),
            (Acknowledged, Mitigating, None),
            (Mitigating, Resolved, None),
            (Resolved, Closed, Some(CloseAs::Resolved)),
        ],
    };
    let mut events = vec![opened()];
    for (i, (from, to, close_as)) in path.iter().enumerate() {
        events.push(transitioned(*from, *to, i as u64 + 2, *close_as, None));
    }
    events
}

// Commands.

fn transition(
    to: IncidentState,
    expected_lifecycle_version: u64,
    close_as: Option<CloseAs>,
    resolution_summary: Option<&str>,
) -> IncidentCommand {
    IncidentCommand::Transition {
        principal: alice(),
        at: at(expected_lifecycle_version as i64 + 1),
        to,
        reason: format!("moving to {to}"),
        expected_lifecycle_version,
        close_as,
        resolution_summary: resolution_summary.map(str::to_owned),
    }
}

fn attach(evidence: Vec<EvidenceItem>) -> IncidentCommand {
    IncidentCommand::AttachEvidence {
        evidence,
        decision_hash: decision_hash(2),
    }
}

fn open_command(evidence: Vec<EvidenceItem>) -> IncidentCommand {
    IncidentCommand::Open {
        incident_id: incident_id(),
        environment: ENVIRONMENT.to_owned(),
        service: SERVICE.to_owned(),
        group_id: group(),
        generation: 0,
        evidence,
        decision_hash: decision_hash(1),
    }
}

// ---------------------------------------------------------------------------------------
// The given/when/then helper
// ---------------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    given: Vec<IncidentEvent>,
    when: IncidentCommand,
    then: Result<Vec<IncidentEvent>, IncidentError>,
}

/// Folds `given`, decides `when`, compares with `then`, and checks that every event
/// `decide` returned fits the state. Returns the state after the new events.
fn run(case: &Case) -> Option<Incident> {
    let state = fold(&case.given)
        .unwrap_or_else(|error| panic!("{}: given does not fold: {error}", case.name));
    let result = decide(state.as_ref(), &case.when);
    assert_eq!(result, case.then, "{}", case.name);
    let mut state = state;
    for event in result.unwrap_or_default() {
        state = Some(
            apply(state, &event)
                .unwrap_or_else(|error| panic!("{}: decided event refused: {error}", case.name)),
        );
    }
    state
}

fn check(cases: &[Case]) {
    for case in cases {
        run(case);
    }
}

// ---------------------------------------------------------------------------------------
// The lifecycle table
// ---------------------------------------------------------------------------------------

/// The lifecycle written out independently of the code, as the issue states it.
const EXPECTED_TABLE: &[(IncidentState, IncidentState, Option<CloseAs>)] = {
    use IncidentState::*;
    &[
        (Open, Acknowledged, None),
        (Open, Closed, Some(CloseAs::FalsePositive)),
        (Acknowledged, Mitigating, None),
        (Acknowledged, Resolved, None),
        (Acknowledged, Closed, Some(CloseAs::FalsePositive)),
        (Mitigating, Resolved, None),
        (Mitigating, Closed, Some(CloseAs::FalsePositive)),
        (Resolved, Closed, Some(CloseAs::Resolved)),
        (Resolved, Closed, Some(CloseAs::FalsePositive)),
        (Resolved, Mitigating, None),
    ]
};

#[test]
fn the_table_is_the_documented_lifecycle() {
    let table: Vec<_> = TRANSITIONS
        .iter()
        .map(|row| (row.from, row.to, row.close_as))
        .collect();
    assert_eq!(table, EXPECTED_TABLE);
    assert!(
        allowed_targets(IncidentState::Closed).is_empty(),
        "CLOSED is final"
    );
    assert_eq!(
        allowed_close_as(IncidentState::Resolved),
        vec![CloseAs::Resolved, CloseAs::FalsePositive]
    );
    assert_eq!(
        allowed_close_as(IncidentState::Open),
        vec![CloseAs::FalsePositive]
    );

    // The module documentation prints the same table, line for line.
    let source = include_str!("../src/incident.rs");
    for line in transition_table_markdown().lines() {
        assert!(
            source.contains(&format!("//! {line}\n")),
            "module docs lack the table line {line:?}"
        );
    }
}

/// What `decide` must answer for `from → to` with `close_as`, from the independent table.
fn expected_outcome(
    from: IncidentState,
    to: IncidentState,
    close_as: Option<CloseAs>,
) -> Result<(), IncidentError> {
    let allowed: Vec<IncidentState> = {
        let mut targets = Vec::new();
        for (row_from, row_to, _) in EXPECTED_TABLE {
            if *row_from == from && !targets.contains(row_to) {
                targets.push(*row_to);
            }
        }
        targets
    };
    let close_options: Vec<CloseAs> = EXPECTED_TABLE
        .iter()
        .filter(|(row_from, row_to, _)| *row_from == from && *row_to == IncidentState::Closed)
        .filter_map(|(_, _, close_as)| *close_as)
        .collect();
    if !allowed.contains(&to) {
        return Err(IncidentError::TransitionNotAllowed { from, to, allowed });
    }
    match (to, close_as) {
        (IncidentState::Closed, None) => Err(IncidentError::CloseAsRequired {
            from,
            allowed: close_options,
        }),
        (IncidentState::Closed, Some(close_as)) if !close_options.contains(&close_as) => {
            Err(IncidentError::CloseAsNotAllowed {
                from,
                close_as,
                allowed: close_options,
            })
        }
        (IncidentState::Closed, Some(_)) => Ok(()),
        (_, Some(close_as)) => Err(IncidentError::CloseAsNotApplicable { to, close_as }),
        (_, None) => Ok(()),
    }
}

#[test]
fn every_transition_is_allowed_or_refused_exactly_as_the_table_says() {
    let mut allowed_count = 0;
    for from in STATES {
        for to in STATES {
            for close_as in [None, Some(CloseAs::Resolved), Some(CloseAs::FalsePositive)] {
                let given = given_in(from);
                let version = given.len() as u64;
                let when = transition(to, version, close_as, None);
                let then = expected_outcome(from, to, close_as)
                    .map(|()| vec![transitioned(from, to, version + 1, close_as, None)]);
                let allowed = then.is_ok();
                allowed_count += usize::from(allowed);
                let state = run(&Case {
                    name: "table",
                    given,
                    when,
                    then,
                })
                .expect("exists");
                assert_eq!(state.lifecycle_version, version + u64::from(allowed));
                assert_eq!(state.state, if allowed { to } else { from });
            }
        }
    }
    assert_eq!(allowed_count, EXPECTED_TABLE.len());
}

#[test]
fn walking_every_path_through_the_table_folds() {
    // Reopen and resolve again, then close as a false positive after review.
    use IncidentState::*;
    let mut events = given_in(Resolved);
    let steps = [
        (Mitigating, None, None),
        (Resolved, None, Some("rolled back deploy 2026-11-24.3")),
        (Closed, Some(CloseAs::FalsePositive), None),
    ];
    for (to, close_as, summary) in steps {
        let state = fold(&events).expect("folds").expect("exists");
        let decided = decide(
            Some(&state),
            &transition(to, state.lifecycle_version, close_as, summary),
        )
        .expect("allowed");
        events.extend(decided);
    }
    let state = fold(&events).expect("folds").expect("exists");
    assert_eq!(state.state, Closed);
    assert_eq!(state.lifecycle_version, 7);
    let last = state.last_transition.expect("transitioned");
    assert_eq!(
        (last.from, last.to, last.close_as),
        (Resolved, Closed, Some(CloseAs::FalsePositive))
    );
}

// ---------------------------------------------------------------------------------------
// Given/when/then tables
// ---------------------------------------------------------------------------------------

#[test]
fn opening() {
    let first = evidence("orders-api-5xx", Severity::Sev2, T0);
    let second = evidence("orders-api-latency-p99", Severity::Sev2, T0 + 4_000);
    check(&[
        Case {
            name: "promotion opens the incident, evidence earliest first",
            given: vec![],
            when: open_command(vec![second.clone(), first.clone(), second.clone()]),
            then: Ok(vec![opened()]),
        },
        Case {
            name: "opening twice is refused",
            given: vec![opened()],
            when: open_command(vec![first.clone()]),
            then: Err(IncidentError::AlreadyExists {
                incident_id: incident_id(),
            }),
        },
        Case {
            name: "an incident id not derived from its fields is refused",
            given: vec![],
            when: IncidentCommand::Open {
                incident_id: IncidentId::derive(ENVIRONMENT, SERVICE, &group(), 1),
                environment: ENVIRONMENT.to_owned(),
                service: SERVICE.to_owned(),
                group_id: group(),
                generation: 0,
                evidence: vec![first.clone()],
                decision_hash: decision_hash(1),
            },
            then: Err(IncidentError::IncidentIdMismatch {
                given: IncidentId::derive(ENVIRONMENT, SERVICE, &group(), 1),
                derived: incident_id(),
            }),
        },
        Case {
            name: "an incident needs evidence",
            given: vec![],
            when: open_command(vec![]),
            then: Err(IncidentError::NoEvidence),
        },
        Case {
            name: "the same detection id with other content is a bug upstream",
            given: vec![],
            when: open_command(vec![
                first.clone(),
                EvidenceItem {
                    severity: Severity::Sev1,
                    ..first.clone()
                },
            ]),
            then: Err(IncidentError::EvidenceConflict {
                detection_id: first.detection_id,
            }),
        },
        Case {
            name: "an event time in seconds is refused",
            given: vec![],
            when: open_command(vec![EvidenceItem {
                event_time: EpochMs(1_795_489_209),
                ..first.clone()
            }]),
            then: Err(IncidentError::ImplausibleTime {
                field: "evidence.event_time",
                at: EpochMs(1_795_489_209),
            }),
        },
        Case {
            name: "system commands need an incident",
            given: vec![],
            when: attach(vec![first.clone()]),
            then: Err(IncidentError::NotFound),
        },
        Case {
            name: "human commands need an incident",
            given: vec![],
            when: transition(IncidentState::Acknowledged, 1, None, None),
            then: Err(IncidentError::NotFound),
        },
    ]);
    let state = fold(&[opened()]).expect("folds").expect("exists");
    assert_eq!(
        (
            state.state,
            state.lifecycle_version,
            state.severity,
            state.opened_at
        ),
        (IncidentState::Open, 1, Severity::Sev2, EpochMs(T0))
    );
    assert_eq!(state.alarms.len(), 2);
    assert_eq!(state.stream_id(), format!("incident:{}", incident_id()));
}

#[test]
fn evidence_and_the_lifecycle_version() {
    let third = evidence("orders-db-cpu", Severity::Sev1, T0 + 30_000);
    let acknowledged = given_in(IncidentState::Acknowledged);
    let mut acknowledged_then_attached = acknowledged.clone();
    acknowledged_then_attached.push(attached(vec![third.clone()], false));
    let resolved = given_in(IncidentState::Resolved);
    let mut resolved_then_fired = resolved.clone();
    resolved_then_fired.push(attached(vec![third.clone()], true));
    check(&[
        Case {
            name: "evidence attaches while a responder works",
            given: acknowledged.clone(),
            when: attach(vec![third.clone()]),
            then: Ok(vec![attached(vec![third.clone()], false)]),
        },
        Case {
            name: "the responder's version did not go stale during the storm",
            given: acknowledged_then_attached.clone(),
            when: transition(IncidentState::Mitigating, 2, None, None),
            then: Ok(vec![transitioned(
                IncidentState::Acknowledged,
                IncidentState::Mitigating,
                3,
                None,
                None,
            )]),
        },
        Case {
            name: "a stale lifecycle version is a conflict",
            given: acknowledged.clone(),
            when: transition(IncidentState::Mitigating, 1, None, None),
            then: Err(IncidentError::VersionConflict {
                expected: 1,
                actual: 2,
            }),
        },
        Case {
            name: "a version from the future is a conflict too",
            given: acknowledged.clone(),
            when: transition(IncidentState::Mitigating, 3, None, None),
            then: Err(IncidentError::VersionConflict {
                expected: 3,
                actual: 2,
            }),
        },
        Case {
            name: "attaching a detection again changes nothing",
            given: acknowledged_then_attached.clone(),
            when: attach(vec![
                third.clone(),
                evidence("orders-api-5xx", Severity::Sev2, T0),
            ]),
            then: Ok(vec![]),
        },
        Case {
            name: "evidence on a RESOLVED incident attaches and fires again",
            given: resolved.clone(),
            when: attach(vec![third.clone()]),
            then: Ok(vec![attached(vec![third.clone()], true)]),
        },
        Case {
            name: "a human reopens a RESOLVED incident that fired again",
            given: resolved_then_fired.clone(),
            when: transition(IncidentState::Mitigating, 4, None, None),
            then: Ok(vec![transitioned(
                IncidentState::Resolved,
                IncidentState::Mitigating,
                5,
                None,
                None,
            )]),
        },
        Case {
            name: "evidence on a CLOSED incident is refused: open a new one",
            given: given_in(IncidentState::Closed),
            when: attach(vec![third.clone()]),
            then: Err(IncidentError::Closed {
                incident_id: incident_id(),
            }),
        },
        Case {
            name: "even evidence it already has",
            given: given_in(IncidentState::Closed),
            when: attach(vec![evidence("orders-api-5xx", Severity::Sev2, T0)]),
            then: Err(IncidentError::Closed {
                incident_id: incident_id(),
            }),
        },
        Case {
            name: "an empty attachment is a caller bug",
            given: acknowledged.clone(),
            when: attach(vec![]),
            then: Err(IncidentError::NoEvidence),
        },
        Case {
            name: "too many items in one command",
            given: acknowledged.clone(),
            when: attach((0..=EVIDENCE_PER_COMMAND_MAX).map(storm_item).collect()),
            then: Err(IncidentError::TooManyEvidenceItems {
                count: EVIDENCE_PER_COMMAND_MAX + 1,
                count_max: EVIDENCE_PER_COMMAND_MAX,
            }),
        },
    ]);

    let state = fold(&acknowledged_then_attached)
        .expect("folds")
        .expect("exists");
    assert_eq!(
        state.lifecycle_version, 2,
        "evidence does not bump the lifecycle version"
    );
    assert_eq!(
        state.severity,
        Severity::Sev1,
        "severity follows the worst evidence"
    );
    assert_eq!(state.evidence_count, 3);

    let fired = fold(&resolved_then_fired).expect("folds").expect("exists");
    assert!(fired.fired_again);
    assert_eq!(
        fired.state,
        IncidentState::Resolved,
        "firing again does not reopen: a human does"
    );
    let mut reopened_events = resolved_then_fired.clone();
    reopened_events.push(transitioned(
        IncidentState::Resolved,
        IncidentState::Mitigating,
        5,
        None,
        None,
    ));
    let reopened = fold(&reopened_events).expect("folds").expect("exists");
    assert!(
        !reopened.fired_again,
        "the next transition clears fired_again"
    );
}

#[test]
fn evidence_earlier_than_the_first_moves_opened_at() {
    let late = evidence("orders-queue-depth", Severity::Sev3, T0 - 120_000);
    let state = fold(&[opened(), attached(vec![late], false)])
        .expect("folds")
        .expect("exists");
    assert_eq!(state.opened_at, EpochMs(T0 - 120_000));
    assert_eq!(
        state.severity,
        Severity::Sev2,
        "a milder item does not soften the severity"
    );
}

#[test]
fn severity() {
    let sev1 = evidence("orders-db-cpu", Severity::Sev1, T0 + 30_000);
    let mut human_set = vec![opened()];
    human_set.push(IncidentEvent::SeverityChanged(SeverityChanged {
        from: Severity::Sev2,
        to: Severity::Sev4,
        principal: alice(),
        reason: "synthetic canary only".to_owned(),
        at: at(0),
    }));
    check(&[
        Case {
            name: "a human sets the severity",
            given: vec![opened()],
            when: IncidentCommand::SetSeverity {
                principal: alice(),
                at: at(0),
                severity: Severity::Sev4,
                reason: "synthetic canary only".to_owned(),
            },
            then: Ok(human_set[1..].to_vec()),
        },
        Case {
            name: "pinning the current severity is recorded",
            given: vec![opened()],
            when: IncidentCommand::SetSeverity {
                principal: bob(),
                at: at(0),
                severity: Severity::Sev2,
                reason: "confirmed".to_owned(),
            },
            then: Ok(vec![IncidentEvent::SeverityChanged(SeverityChanged {
                from: Severity::Sev2,
                to: Severity::Sev2,
                principal: bob(),
                reason: "confirmed".to_owned(),
                at: at(0),
            })]),
        },
        Case {
            name: "setting the same human severity again changes nothing",
            given: human_set.clone(),
            when: IncidentCommand::SetSeverity {
                principal: bob(),
                at: at(5),
                severity: Severity::Sev4,
                reason: "still a canary".to_owned(),
            },
            then: Ok(vec![]),
        },
        Case {
            name: "a severity change needs a reason",
            given: vec![opened()],
            when: IncidentCommand::SetSeverity {
                principal: alice(),
                at: at(0),
                severity: Severity::Sev1,
                reason: " ".to_owned(),
            },
            then: Err(IncidentError::MissingReason),
        },
        Case {
            name: "SEV1 evidence after a human set the severity still attaches",
            given: human_set.clone(),
            when: attach(vec![sev1.clone()]),
            then: Ok(vec![attached(vec![sev1.clone()], false)]),
        },
    ]);
    let mut events = human_set;
    events.push(attached(vec![sev1], false));
    let state = fold(&events).expect("folds").expect("exists");
    assert_eq!(
        state.severity,
        Severity::Sev4,
        "a human-set severity is not overridden by evidence"
    );
    assert!(state.severity_set_by_human);
}

#[test]
fn resolution_and_reasons() {
    let sev1_open = vec![
        opened_with(vec![evidence("orders-api-5xx", Severity::Sev1, T0)]),
        transitioned(
            IncidentState::Open,
            IncidentState::Acknowledged,
            2,
            None,
            None,
        ),
    ];
    let with_reason = |reason: &str| IncidentCommand::Transition {
        principal: alice(),
        at: at(0),
        to: IncidentState::Acknowledged,
        reason: reason.to_owned(),
        expected_lifecycle_version: 1,
        close_as: None,
        resolution_summary: None,
    };
    check(&[
        Case {
            name: "resolving a SEV1 without a summary is refused",
            given: sev1_open.clone(),
            when: transition(IncidentState::Resolved, 2, None, None),
            then: Err(IncidentError::ResolutionSummaryRequired {
                severity: Severity::Sev1,
            }),
        },
        Case {
            name: "a blank summary is no summary",
            given: sev1_open.clone(),
            when: transition(IncidentState::Resolved, 2, None, Some(" \n\t")),
            then: Err(IncidentError::EmptyText {
                field: "resolution_summary",
            }),
        },
        Case {
            name: "resolving a SEV1 with a summary",
            given: sev1_open.clone(),
            when: transition(
                IncidentState::Resolved,
                2,
                None,
                Some("failed over to the replica"),
            ),
            then: Ok(vec![transitioned(
                IncidentState::Acknowledged,
                IncidentState::Resolved,
                3,
                None,
                Some("failed over to the replica"),
            )]),
        },
        Case {
            name: "a SEV2 resolves without a summary",
            given: given_in(IncidentState::Mitigating),
            when: transition(IncidentState::Resolved, 3, None, None),
            then: Ok(vec![transitioned(
                IncidentState::Mitigating,
                IncidentState::Resolved,
                4,
                None,
                None,
            )]),
        },
        Case {
            name: "a summary belongs to a resolve",
            given: given_in(IncidentState::Open),
            when: transition(IncidentState::Acknowledged, 1, None, Some("not yet")),
            then: Err(IncidentError::ResolutionSummaryNotApplicable {
                to: IncidentState::Acknowledged,
            }),
        },
        Case {
            name: "a too long summary",
            given: sev1_open.clone(),
            when: transition(
                IncidentState::Resolved,
                2,
                None,
                Some(&"x".repeat(RESOLUTION_SUMMARY_LEN_MAX + 1)),
            ),
            then: Err(IncidentError::FieldTooLong {
                field: "resolution_summary",
                len: RESOLUTION_SUMMARY_LEN_MAX + 1,
                len_max: RESOLUTION_SUMMARY_LEN_MAX,
            }),
        },
        Case {
            name: "a transition needs a reason",
            given: vec![opened()],
            when: with_reason(""),
            then: Err(IncidentError::MissingReason),
        },
        Case {
            name: "whitespace is no reason",
            given: vec![opened()],
            when: with_reason("  \n "),
            then: Err(IncidentError::MissingReason),
        },
        Case {
            name: "a reason at the limit is fine",
            given: vec![opened()],
            when: with_reason(&"r".repeat(REASON_LEN_MAX)),
            then: Ok(vec![IncidentEvent::IncidentTransitioned(
                IncidentTransitioned {
                    from: IncidentState::Open,
                    to: IncidentState::Acknowledged,
                    principal: alice(),
                    reason: "r".repeat(REASON_LEN_MAX),
                    at: at(0),
                    lifecycle_version: 2,
                    close_as: None,
                    resolution_summary: None,
                },
            )]),
        },
        Case {
            name: "a reason over the limit",
            given: vec![opened()],
            when: with_reason(&"r".repeat(REASON_LEN_MAX + 1)),
            then: Err(IncidentError::FieldTooLong {
                field: "reason",
                len: REASON_LEN_MAX + 1,
                len_max: REASON_LEN_MAX,
            }),
        },
        Case {
            name: "a human-action time in seconds is refused",
            given: vec![opened()],
            when: IncidentCommand::Transition {
                principal: alice(),
                at: EpochMs(1_795_489_269),
                to: IncidentState::Acknowledged,
                reason: "on it".to_owned(),
                expected_lifecycle_version: 1,
                close_as: None,
                resolution_summary: None,
            },
            then: Err(IncidentError::ImplausibleTime {
                field: "at",
                at: EpochMs(1_795_489_269),
            }),
        },
        Case {
            name: "a normal close needs RESOLVED first",
            given: given_in(IncidentState::Mitigating),
            when: transition(IncidentState::Closed, 3, Some(CloseAs::Resolved), None),
            then: Err(IncidentError::CloseAsNotAllowed {
                from: IncidentState::Mitigating,
                close_as: CloseAs::Resolved,
                allowed: vec![CloseAs::FalsePositive],
            }),
        },
        Case {
            name: "a false-positive close straight from OPEN",
            given: vec![opened()],
            when: transition(IncidentState::Closed, 1, Some(CloseAs::FalsePositive), None),
            then: Ok(vec![transitioned(
                IncidentState::Open,
                IncidentState::Closed,
                2,
                Some(CloseAs::FalsePositive),
                None,
            )]),
        },
        Case {
            name: "CLOSED is final",
            given: given_in(IncidentState::Closed),
            when: transition(IncidentState::Mitigating, 5, None, None),
            then: Err(IncidentError::TransitionNotAllowed {
                from: IncidentState::Closed,
                to: IncidentState::Mitigating,
                allowed: vec![],
            }),
        },
    ]);
}

#[test]
fn notes_assignment_and_recoveries() {
    let recovery = IncidentCommand::RecordRecovery {
        signal_id: SignalId::derive(
            &alarm_arn("orders-api-5xx"),
            SignalState::Ok,
            EpochMs(T0 + 300_000),
        ),
        alarm: alarm_arn("orders-api-5xx"),
        alarm_name: "orders-api-5xx".to_owned(),
        event_time: EpochMs(T0 + 300_000),
    };
    let recovered = IncidentEvent::RecoveryRecorded(RecoveryRecorded {
        signal_id: SignalId::derive(
            &alarm_arn("orders-api-5xx"),
            SignalState::Ok,
            EpochMs(T0 + 300_000),
        ),
        alarm: alarm_arn("orders-api-5xx"),
        alarm_name: "orders-api-5xx".to_owned(),
        event_time: EpochMs(T0 + 300_000),
    });
    let assigned = IncidentEvent::AssigneeChanged(AssigneeChanged {
        from: None,
        to: "alice@example.com".to_owned(),
        principal: bob(),
        at: at(0),
    });
    let assign = |assignee: &str| IncidentCommand::Assign {
        principal: bob(),
        at: at(0),
        assignee: assignee.to_owned(),
    };
    let note = |text: &str| IncidentCommand::AddNote {
        principal: alice(),
        at: at(9),
        text: text.to_owned(),
    };
    check(&[
        Case {
            name: "a recovery is recorded",
            given: vec![opened()],
            when: recovery.clone(),
            then: Ok(vec![recovered.clone()]),
        },
        Case {
            name: "a recovery on a RESOLVED incident is recorded",
            given: given_in(IncidentState::Resolved),
            when: recovery.clone(),
            then: Ok(vec![recovered.clone()]),
        },
        Case {
            name: "a redelivered recovery changes nothing",
            given: vec![opened(), recovered.clone()],
            when: recovery.clone(),
            then: Ok(vec![]),
        },
        Case {
            name: "a recovery with other content under the same signal id",
            given: vec![opened(), recovered.clone()],
            when: IncidentCommand::RecordRecovery {
                signal_id: SignalId::derive(
                    &alarm_arn("orders-api-5xx"),
                    SignalState::Ok,
                    EpochMs(T0 + 300_000),
                ),
                alarm: alarm_arn("orders-api-5xx"),
                alarm_name: "orders-api-5xx".to_owned(),
                event_time: EpochMs(T0 + 300_001),
            },
            then: Err(IncidentError::RecoveryConflict {
                signal_id: SignalId::derive(
                    &alarm_arn("orders-api-5xx"),
                    SignalState::Ok,
                    EpochMs(T0 + 300_000),
                ),
            }),
        },
        Case {
            name: "a recovery on a CLOSED incident is refused",
            given: given_in(IncidentState::Closed),
            when: recovery.clone(),
            then: Err(IncidentError::Closed {
                incident_id: incident_id(),
            }),
        },
        Case {
            name: "assign",
            given: vec![opened()],
            when: assign("alice@example.com"),
            then: Ok(vec![assigned.clone()]),
        },
        Case {
            name: "assigning the same person changes nothing",
            given: vec![opened(), assigned.clone()],
            when: assign("alice@example.com"),
            then: Ok(vec![]),
        },
        Case {
            name: "reassign",
            given: vec![opened(), assigned.clone()],
            when: assign("carol"),
            then: Ok(vec![IncidentEvent::AssigneeChanged(AssigneeChanged {
                from: Some("alice@example.com".to_owned()),
                to: "carol".to_owned(),
                principal: bob(),
                at: at(0),
            })]),
        },
        Case {
            name: "an empty assignee",
            given: vec![opened()],
            when: assign(" "),
            then: Err(IncidentError::EmptyText { field: "assignee" }),
        },
        Case {
            name: "no assignment on a CLOSED incident",
            given: given_in(IncidentState::Closed),
            when: assign("carol"),
            then: Err(IncidentError::Closed {
                incident_id: incident_id(),
            }),
        },
        Case {
            name: "a note, even on a CLOSED incident (post-incident review)",
            given: given_in(IncidentState::Closed),
            when: note("root cause: connection pool exhausted"),
            then: Ok(vec![IncidentEvent::NoteAdded(NoteAdded {
                text: "root cause: connection pool exhausted".to_owned(),
                principal: alice(),
                at: at(9),
            })]),
        },
        Case {
            name: "an empty note",
            given: vec![opened()],
            when: note("\n"),
            then: Err(IncidentError::EmptyText { field: "text" }),
        },
        Case {
            name: "a too long note",
            given: vec![opened()],
            when: note(&"n".repeat(NOTE_LEN_MAX + 1)),
            then: Err(IncidentError::FieldTooLong {
                field: "text",
                len: NOTE_LEN_MAX + 1,
                len_max: NOTE_LEN_MAX,
            }),
        },
    ]);
    let state = fold(&[opened(), recovered, assigned])
        .expect("folds")
        .expect("exists");
    assert_eq!(state.recovery_count, 1);
    assert_eq!(
        state.state,
        IncidentState::Open,
        "a recovery never changes the lifecycle"
    );
    assert_eq!(
        state.lifecycle_version, 1,
        "recoveries and assignment do not bump the lifecycle version"
    );
    assert_eq!(state.assignee.as_deref(), Some("alice@example.com"));
}

#[test]
fn errors_say_what_to_do() {
    let messages = [
        (
            IncidentError::VersionConflict {
                expected: 1,
                actual: 2,
            }
            .to_string(),
            "re-read",
        ),
        (
            IncidentError::Closed {
                incident_id: incident_id(),
            }
            .to_string(),
            "new incident",
        ),
        (
            IncidentError::TransitionNotAllowed {
                from: IncidentState::Open,
                to: IncidentState::Resolved,
                allowed: allowed_targets(IncidentState::Open),
            }
            .to_string(),
            "ACKNOWLEDGED, CLOSED",
        ),
        (IncidentError::MissingReason.to_string(), "say why"),
        (
            IncidentError::ResolutionSummaryRequired {
                severity: Severity::Sev1,
            }
            .to_string(),
            "SEV1",
        ),
    ];
    for (message, needle) in messages {
        assert!(
            message.contains(needle),
            "{message:?} should contain {needle:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Storm size: splitting and the bounded evidence set
// ---------------------------------------------------------------------------------------

#[test]
fn a_large_bundle_is_split_into_bounded_events() {
    let bundle: Vec<EvidenceItem> = (0..120).rev().map(storm_item).collect();
    let events = decide(None, &open_command(bundle)).expect("opens");
    let sizes: Vec<usize> = events
        .iter()
        .map(|event| match event {
            IncidentEvent::IncidentOpened(opened) => opened.evidence.len(),
            IncidentEvent::EvidenceAttached(attached) => attached.evidence.len(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(sizes, vec![50, 50, 20]);
    let state = fold(&events).expect("folds").expect("exists");
    assert_eq!((state.evidence_count, state.evidence.len()), (120, 120));
    assert_eq!(state.opened_at, EpochMs(T0));
    assert_eq!(state.alarms.len(), ALARMS.len());
}

#[test]
fn past_the_limit_the_earliest_evidence_is_kept_and_everything_counts() {
    let total = EVIDENCE_PER_INCIDENT_MAX + 60;
    // Latest first, so every early item arrives after the incident is full.
    let mut events = decide(
        None,
        &open_command((0..50).map(|n| storm_item(total - 1 - n)).collect()),
    )
    .expect("opens");
    let mut state = fold(&events).expect("folds");
    for start in (50..total).step_by(40) {
        let batch: Vec<EvidenceItem> = (start..(start + 40).min(total))
            .map(|n| storm_item(total - 1 - n))
            .collect();
        let decided = decide(state.as_ref(), &attach(batch)).expect("attaches");
        for event in &decided {
            state = Some(apply(state, event).expect("fits"));
        }
        events.extend(decided);
    }
    let state = state.expect("exists");
    assert_eq!(state.evidence_count, total as u64);
    assert_eq!(state.evidence.len(), EVIDENCE_PER_INCIDENT_MAX);
    assert!(state.evidence_truncated());
    let kept_latest = state
        .evidence
        .values()
        .map(|item| item.event_time)
        .max()
        .expect("kept some");
    assert_eq!(
        kept_latest,
        storm_item(EVIDENCE_PER_INCIDENT_MAX - 1).event_time
    );
    assert_eq!(state.opened_at, EpochMs(T0));
    assert_eq!(fold(&events).expect("folds"), Some(state));
}

// ---------------------------------------------------------------------------------------
// Principals
// ---------------------------------------------------------------------------------------

#[test]
fn iam_principals() {
    for arn in [
        "arn:aws:sts::123456789012:assumed-role/Responder/alice",
        "arn:aws:iam::123456789012:user/ops/bob",
        "arn:aws:iam::123456789012:role/service-role/OpxOperator",
        "arn:aws:iam::123456789012:root",
        "arn:aws-cn:sts::123456789012:assumed-role/Responder/alice@example.com",
        "arn:aws-us-gov:sts::123456789012:assumed-role/Responder/i-0abc",
    ] {
        let principal = Principal::iam(arn).unwrap_or_else(|error| panic!("{arn}: {error}"));
        assert_eq!(principal.as_str(), arn);
        assert!(!principal.is_local());
        assert_eq!(Principal::parse(arn).as_ref(), Ok(&principal));
    }
    for arn in [
        "",
        "bob",
        "local:bob",
        "arn:awsx:iam::123456789012:user/bob",
        "arn:aws:s3:::my-bucket",
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-api-5xx",
        "arn:aws:iam::12345678901:user/bob",
        "arn:aws:iam::123456789012:",
        "arn:aws:iam::123456789012",
        "arn:aws:iam::123456789012:user/bob smith",
        "arn:aws:iam::123456789012:user/bøb",
        "ARN:AWS:iam::123456789012:user/bob",
    ] {
        assert!(
            matches!(
                Principal::iam(arn),
                Err(PrincipalError::InvalidIamArn { .. })
            ),
            "{arn:?} must not be an IAM principal"
        );
    }
    let long = format!(
        "arn:aws:sts::123456789012:assumed-role/R/{}",
        "s".repeat(PRINCIPAL_LEN_MAX)
    );
    assert!(Principal::iam(&long).is_err());
}

#[test]
fn local_principals_are_never_iam_arns() {
    for (name, stored) in [
        ("bob", "local:bob"),
        ("alice.smith@example.com", "local:alice.smith@example.com"),
        ("on-call_2", "local:on-call_2"),
    ] {
        let principal = Principal::local(name).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(principal.as_str(), stored);
        assert!(principal.is_local());
        assert!(!principal.as_str().starts_with("arn:"));
        assert_eq!(Principal::parse(stored).as_ref(), Ok(&principal));
    }
    for name in [
        "",
        "bob smith",
        "arn:aws:iam::123456789012:user/bob",
        "a/b",
        "bøb",
        "bob\n",
        &"b".repeat(LOCAL_NAME_LEN_MAX + 1),
    ] {
        assert!(
            matches!(
                Principal::local(name),
                Err(PrincipalError::InvalidLocalName { .. })
            ),
            "{name:?} must not be a local principal"
        );
    }
    assert!(Principal::local(&"b".repeat(LOCAL_NAME_LEN_MAX)).is_ok());
    // A local name that looks like an ARN cannot be smuggled in through the stored form.
    assert!(Principal::parse("local:arn:aws:iam::123456789012:user/bob").is_err());
    assert!(matches!(
        Principal::parse("bob"),
        Err(PrincipalError::Unrecognized { .. })
    ));
}

#[test]
fn principals_deserialize_only_when_valid() {
    let json = serde_json::to_string(&alice()).expect("encodes");
    assert_eq!(
        json,
        "\"arn:aws:sts::123456789012:assumed-role/Responder/alice\""
    );
    assert_eq!(
        serde_json::from_str::<Principal>(&json).expect("decodes"),
        alice()
    );
    assert_eq!(
        serde_json::from_str::<Principal>("\"local:bob\"").expect("decodes"),
        bob()
    );
    for bad in ["\"bob\"", "\"local:\"", "\"arn:aws:s3:::bucket\"", "42"] {
        assert!(serde_json::from_str::<Principal>(bad).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------
// Payloads, envelopes and apply's refusals
// ---------------------------------------------------------------------------------------

#[test]
fn payloads_are_bare_structs_and_decode_strictly() {
    let event = transitioned(
        IncidentState::Open,
        IncidentState::Acknowledged,
        2,
        None,
        None,
    );
    let payload = event.to_payload().expect("encodes");
    let text = String::from_utf8(payload.clone()).expect("UTF-8");
    assert!(
        text.starts_with(
            "{\"from\":\"OPEN\",\"to\":\"ACKNOWLEDGED\",\"principal\":\"arn:aws:sts::"
        ),
        "{text}"
    );
    assert!(!text.contains("\"type\""), "the envelope carries the type");
    assert_eq!(
        IncidentEvent::from_payload("IncidentTransitioned", 1, &payload),
        Ok(event.clone())
    );

    // The tagged form, for API bodies and exports.
    let tagged = serde_json::to_string(&event).expect("encodes");
    assert!(
        tagged.starts_with("{\"type\":\"IncidentTransitioned\","),
        "{tagged}"
    );
    assert_eq!(
        serde_json::from_str::<IncidentEvent>(&tagged).expect("decodes"),
        event
    );

    assert!(matches!(
        IncidentEvent::from_payload("IncidentAcknowledged", 1, &payload),
        Err(PayloadError::UnknownEventType { .. })
    ));
    assert_eq!(
        IncidentEvent::from_payload("IncidentTransitioned", 2, &payload),
        Err(PayloadError::UnsupportedSchemaVersion {
            event_type: "IncidentTransitioned",
            found: 2,
            supported: 1
        })
    );
    assert!(matches!(
        IncidentEvent::from_payload("NoteAdded", 1, &payload),
        Err(PayloadError::Malformed { .. })
    ));
    let extra_field = text.replacen('{', "{\"extra\":1,", 1);
    assert!(matches!(
        IncidentEvent::from_payload("IncidentTransitioned", 1, extra_field.as_bytes()),
        Err(PayloadError::Malformed { .. })
    ));
    let spaced = text.replacen(':', ": ", 1);
    assert_eq!(
        IncidentEvent::from_payload("IncidentTransitioned", 1, spaced.as_bytes()),
        Err(PayloadError::NotCanonical {
            event_type: "IncidentTransitioned"
        })
    );
    let forged_principal = text.replace(
        "arn:aws:sts::123456789012:assumed-role/Responder/alice",
        "root",
    );
    assert!(matches!(
        IncidentEvent::from_payload("IncidentTransitioned", 1, forged_principal.as_bytes()),
        Err(PayloadError::Malformed { .. })
    ));
    for (event_type, schema_version) in EVENT_TYPES {
        assert_eq!(schema_version, 1, "{event_type}");
    }
}

fn seal_all(events: &[IncidentEvent]) -> Vec<opx_domain::event::EventEnvelope> {
    let mut previous = Digest::ZERO;
    let mut envelopes = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let envelope = event
            .seal(&incident_id(), i as u64 + 1, previous)
            .expect("seals");
        previous = envelope.hash;
        envelopes.push(envelope);
    }
    envelopes
}

#[test]
fn envelopes_fold_to_the_same_state() {
    let mut events = given_in(IncidentState::Resolved);
    events.push(attached(vec![storm_item(7)], true));
    let envelopes = seal_all(&events);
    assert!(verify_stream(&stream_id(&incident_id()), &envelopes).is_ok());
    assert_eq!(fold_envelopes(&envelopes), fold(&events));
    assert_eq!(fold_envelopes(&[]), Ok(None));

    let mut foreign = envelopes.clone();
    foreign[2].stream_id = "incident:other".to_owned();
    assert!(matches!(
        fold_envelopes(&foreign),
        Err(FoldError::WrongStream { sequence: 3, .. })
    ));
    let mut unknown = envelopes;
    unknown[1].event_type = "IncidentExploded".to_owned();
    assert!(matches!(
        fold_envelopes(&unknown),
        Err(FoldError::Decode { sequence: 2, .. })
    ));
}

#[test]
fn apply_refuses_events_that_do_not_fit() {
    let misfit = |given: Vec<IncidentEvent>, event: IncidentEvent| {
        let state = fold(&given).expect("given folds");
        apply(state, &event).expect_err("must not fit")
    };
    assert_eq!(
        misfit(
            vec![],
            transitioned(
                IncidentState::Open,
                IncidentState::Acknowledged,
                2,
                None,
                None
            )
        ),
        ApplyError::NotOpened {
            event_type: "IncidentTransitioned"
        }
    );
    assert_eq!(
        misfit(vec![opened()], opened()),
        ApplyError::AlreadyOpened {
            incident_id: incident_id()
        }
    );
    let does_not_fit = |event_type, misfit| ApplyError::DoesNotFit {
        event_type,
        incident_id: incident_id(),
        misfit,
    };
    let cases = [
        (
            vec![opened()],
            transitioned(
                IncidentState::Open,
                IncidentState::Acknowledged,
                3,
                None,
                None,
            ),
            does_not_fit(
                "IncidentTransitioned",
                Misfit::WrongLifecycleVersion {
                    found: 3,
                    expected: 2,
                },
            ),
        ),
        (
            vec![opened()],
            transitioned(
                IncidentState::Acknowledged,
                IncidentState::Mitigating,
                2,
                None,
                None,
            ),
            does_not_fit(
                "IncidentTransitioned",
                Misfit::WrongFromState {
                    found: IncidentState::Acknowledged,
                    state: IncidentState::Open,
                },
            ),
        ),
        (
            vec![opened()],
            transitioned(IncidentState::Open, IncidentState::Resolved, 2, None, None),
            does_not_fit(
                "IncidentTransitioned",
                Misfit::NotInTable {
                    from: IncidentState::Open,
                    to: IncidentState::Resolved,
                    close_as: None,
                },
            ),
        ),
        (
            vec![opened()],
            attached(vec![storm_item(3)], true),
            does_not_fit(
                "EvidenceAttached",
                Misfit::FiredAgainMismatch {
                    found: true,
                    state: IncidentState::Open,
                },
            ),
        ),
        (
            vec![opened()],
            attached(vec![evidence("orders-api-5xx", Severity::Sev2, T0)], false),
            does_not_fit(
                "EvidenceAttached",
                Misfit::DuplicateEvidence(
                    evidence("orders-api-5xx", Severity::Sev2, T0).detection_id,
                ),
            ),
        ),
        (
            vec![opened()],
            attached(vec![], false),
            does_not_fit("EvidenceAttached", Misfit::NoEvidence),
        ),
        (
            given_in(IncidentState::Closed),
            attached(vec![storm_item(3)], false),
            does_not_fit("EvidenceAttached", Misfit::Closed),
        ),
    ];
    for (given, event, expected) in cases {
        assert_eq!(misfit(given, event), expected);
    }
    let forged = IncidentEvent::IncidentOpened(IncidentOpened {
        generation: 3,
        ..match opened() {
            IncidentEvent::IncidentOpened(opened) => opened,
            _ => unreachable!(),
        }
    });
    assert!(matches!(
        apply(None, &forged),
        Err(ApplyError::DoesNotFit {
            misfit: Misfit::IncidentIdMismatch,
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

/// A pool of storm evidence the random sequences draw from.
const POOL_LEN: usize = 24;

#[derive(Clone, Debug)]
enum Version {
    Current,
    Offset(i64),
}

/// Mostly a target the table allows from the current state, so sequences get deep.
#[derive(Clone, Debug)]
enum Target {
    /// An allowed target other than CLOSED (CLOSED would end most sequences early).
    Onward(proptest::sample::Index),
    Allowed(proptest::sample::Index),
    Any(IncidentState),
}

/// Mostly the `close_as` that fits the target, sometimes anything.
#[derive(Clone, Debug)]
enum CloseChoice {
    Fitting(proptest::sample::Index),
    Literal(Option<CloseAs>),
}

#[derive(Clone, Debug)]
enum Step {
    Open {
        picks: Vec<usize>,
        generation: u32,
    },
    Attach {
        picks: Vec<usize>,
        conflicting: bool,
    },
    Recover {
        pick: usize,
        shift_ms: i64,
    },
    Transition {
        to: Target,
        version: Version,
        close_as: CloseChoice,
        reason: String,
        summary: Option<String>,
        local: bool,
        at_ms: i64,
    },
    Note {
        text: String,
    },
    Assign {
        assignee: String,
    },
    Severity {
        severity: Severity,
        reason: String,
    },
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 .,:/-]{1,40}",
        1 => Just(String::new()),
        1 => Just("  \n ".to_owned()),
        1 => "\\PC{0,20}",
        1 => Just("x".repeat(NOTE_LEN_MAX + 1)),
    ]
}

fn state_strategy() -> impl Strategy<Value = IncidentState> {
    proptest::sample::select(STATES.to_vec())
}

fn severity_strategy() -> impl Strategy<Value = Severity> {
    proptest::sample::select(Severity::ALL.to_vec())
}

fn close_as_strategy() -> impl Strategy<Value = Option<CloseAs>> {
    proptest::option::of(prop_oneof![
        Just(CloseAs::Resolved),
        Just(CloseAs::FalsePositive)
    ])
}

fn step() -> impl Strategy<Value = Step> {
    let picks = proptest::collection::vec(0..POOL_LEN, 0..6);
    prop_oneof![
        1 => (picks.clone(), prop_oneof![4 => Just(0u32), 1 => Just(1u32)])
            .prop_map(|(picks, generation)| Step::Open { picks, generation }),
        4 => (picks, proptest::bool::weighted(0.05)).prop_map(|(picks, conflicting)| Step::Attach { picks, conflicting }),
        1 => (0..POOL_LEN, prop_oneof![4 => Just(0i64), 1 => Just(1i64)])
            .prop_map(|(pick, shift_ms)| Step::Recover { pick, shift_ms }),
        5 => (
            prop_oneof![
                6 => any::<proptest::sample::Index>().prop_map(Target::Onward),
                1 => any::<proptest::sample::Index>().prop_map(Target::Allowed),
                1 => state_strategy().prop_map(Target::Any),
            ],
            prop_oneof![6 => Just(Version::Current), 1 => (-2i64..3).prop_map(Version::Offset)],
            prop_oneof![
                4 => any::<proptest::sample::Index>().prop_map(CloseChoice::Fitting),
                1 => close_as_strategy().prop_map(CloseChoice::Literal),
            ],
            prop_oneof![4 => "[a-z][a-z ]{0,30}", 1 => text()],
            prop_oneof![
                2 => Just(None),
                2 => "[a-z][a-z ]{0,30}".prop_map(Some),
                1 => proptest::option::of(text()),
            ],
            any::<bool>(),
            prop_oneof![9 => (0i64..100_000).prop_map(|ms| T0 + ms), 1 => Just(1_795_489_269i64)],
        )
            .prop_map(|(to, version, close_as, reason, summary, local, at_ms)| Step::Transition {
                to,
                version,
                close_as,
                reason,
                summary,
                local,
                at_ms,
            }),
        1 => text().prop_map(|text| Step::Note { text }),
        1 => prop_oneof![Just("alice".to_owned()), Just("bob".to_owned()), Just(" ".to_owned())]
            .prop_map(|assignee| Step::Assign { assignee }),
        1 => (severity_strategy(), text()).prop_map(|(severity, reason)| Step::Severity { severity, reason }),
    ]
}

fn pool_item(pick: usize) -> EvidenceItem {
    let mut item = storm_item(pick);
    item.severity = Severity::ALL[(pick * 7) % 4];
    item
}

fn command_for(step: &Step, state: Option<&Incident>) -> IncidentCommand {
    match step {
        Step::Open { picks, generation } => IncidentCommand::Open {
            incident_id: IncidentId::derive(ENVIRONMENT, SERVICE, &group(), *generation),
            environment: ENVIRONMENT.to_owned(),
            service: SERVICE.to_owned(),
            group_id: group(),
            generation: 0,
            evidence: picks.iter().map(|pick| pool_item(*pick)).collect(),
            decision_hash: decision_hash(1),
        },
        Step::Attach { picks, conflicting } => {
            let mut evidence: Vec<EvidenceItem> =
                picks.iter().map(|pick| pool_item(*pick)).collect();
            if *conflicting {
                if let Some(first) = evidence.first_mut() {
                    first.alarm_name.push_str("-renamed");
                }
            }
            attach(evidence)
        }
        Step::Recover { pick, shift_ms } => {
            let item = pool_item(*pick);
            let recovered_at = EpochMs(item.event_time.0 + 600_000);
            IncidentCommand::RecordRecovery {
                signal_id: SignalId::derive(&item.alarm, SignalState::Ok, recovered_at),
                alarm: item.alarm,
                alarm_name: item.alarm_name,
                event_time: EpochMs(recovered_at.0 + shift_ms),
            }
        }
        Step::Transition {
            to,
            version,
            close_as,
            reason,
            summary,
            local,
            at_ms,
        } => {
            let current = state.map_or(1, |incident| incident.lifecycle_version);
            let from = state.map_or(IncidentState::Open, |incident| incident.state);
            let to = match to {
                Target::Onward(pick) => {
                    let onward: Vec<IncidentState> = allowed_targets(from)
                        .into_iter()
                        .filter(|to| *to != IncidentState::Closed)
                        .collect();
                    if onward.is_empty() {
                        IncidentState::Closed
                    } else {
                        *pick.get(&onward)
                    }
                }
                Target::Allowed(pick) => {
                    let allowed = allowed_targets(from);
                    if allowed.is_empty() {
                        IncidentState::Open
                    } else {
                        *pick.get(&allowed)
                    }
                }
                Target::Any(state) => *state,
            };
            let close_as = match close_as {
                CloseChoice::Fitting(pick) if to == IncidentState::Closed => {
                    let allowed = allowed_close_as(from);
                    (!allowed.is_empty()).then(|| *pick.get(&allowed))
                }
                CloseChoice::Fitting(_) => None,
                CloseChoice::Literal(close_as) => *close_as,
            };
            IncidentCommand::Transition {
                principal: if *local { bob() } else { alice() },
                at: EpochMs(*at_ms),
                to,
                reason: reason.clone(),
                expected_lifecycle_version: match version {
                    Version::Current => current,
                    Version::Offset(offset) => current.saturating_add_signed(*offset),
                },
                close_as,
                resolution_summary: summary.clone(),
            }
        }
        Step::Note { text } => IncidentCommand::AddNote {
            principal: bob(),
            at: at(0),
            text: text.clone(),
        },
        Step::Assign { assignee } => IncidentCommand::Assign {
            principal: alice(),
            at: at(0),
            assignee: assignee.clone(),
        },
        Step::Severity { severity, reason } => IncidentCommand::SetSeverity {
            principal: alice(),
            at: at(0),
            severity: *severity,
            reason: reason.clone(),
        },
    }
}

/// Builds the incident from one chunked, shuffled delivery of evidence: the first chunk
/// opens it, the rest attach.
fn deliver(chunks: &[Vec<EvidenceItem>]) -> Incident {
    let mut state: Option<Incident> = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let command = if i == 0 {
            open_command(chunk.clone())
        } else {
            attach(chunk.clone())
        };
        let decided = decide(state.as_ref(), &command).expect("evidence is accepted");
        for event in &decided {
            state = Some(apply(state, event).expect("fits"));
        }
    }
    state.expect("opened")
}

/// Splits `items` into non-empty chunks at the given cut points.
fn chunk(items: &[EvidenceItem], cuts: &[proptest::sample::Index]) -> Vec<Vec<EvidenceItem>> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|cut| cut.index(items.len()))
        .filter(|point| *point > 0)
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([items.len()]) {
        chunks.push(items[start..point].to_vec());
        start = point;
    }
    chunks
}

fn principal_strategy() -> impl Strategy<Value = Principal> {
    prop_oneof![
        "[A-Za-z0-9._@-]{1,64}"
            .prop_map(|name| Principal::local(&name).expect("valid by construction")),
        "[A-Za-z0-9+=,.@_-]{1,32}".prop_map(|session| {
            Principal::iam(&format!(
                "arn:aws:sts::123456789012:assumed-role/Responder/{session}"
            ))
            .expect("valid")
        }),
    ]
}

fn evidence_strategy() -> impl Strategy<Value = EvidenceItem> {
    (
        0usize..10_000,
        severity_strategy(),
        "\\PC{0,24}",
        "[0-9]\\.[0-9]{1,2}\\.[0-9]",
    )
        .prop_map(|(n, severity, alarm_name, rule_version)| EvidenceItem {
            severity,
            alarm_name,
            rule_version,
            ..storm_item(n)
        })
}

fn any_event() -> impl Strategy<Value = IncidentEvent> {
    let any_text = "\\PC{0,40}|[\\x00-\\x1f\"\\\\]{0,8}";
    let time = (0i64..10_000_000).prop_map(|ms| EpochMs(T0 + ms));
    prop_oneof![
        (
            proptest::collection::vec(evidence_strategy(), 1..4),
            0u32..5
        )
            .prop_map(|(evidence, generation)| {
                IncidentEvent::IncidentOpened(IncidentOpened {
                    incident_id: IncidentId::derive(ENVIRONMENT, SERVICE, &group(), generation),
                    environment: ENVIRONMENT.to_owned(),
                    service: SERVICE.to_owned(),
                    group_id: group(),
                    generation,
                    evidence,
                    decision_hash: decision_hash(9),
                })
            }),
        (
            proptest::collection::vec(evidence_strategy(), 1..4),
            any::<bool>()
        )
            .prop_map(|(evidence, fired_again)| attached(evidence, fired_again)),
        (any_text, time.clone()).prop_map(|(alarm_name, event_time)| {
            IncidentEvent::RecoveryRecorded(RecoveryRecorded {
                signal_id: SignalId::derive(&alarm_arn(&alarm_name), SignalState::Ok, event_time),
                alarm: alarm_arn(&alarm_name),
                alarm_name,
                event_time,
            })
        }),
        (
            state_strategy(),
            state_strategy(),
            principal_strategy(),
            any_text,
            time.clone(),
            any::<u64>(),
            close_as_strategy(),
            proptest::option::of(any_text),
        )
            .prop_map(
                |(
                    from,
                    to,
                    principal,
                    reason,
                    at,
                    lifecycle_version,
                    close_as,
                    resolution_summary,
                )| {
                    IncidentEvent::IncidentTransitioned(IncidentTransitioned {
                        from,
                        to,
                        principal,
                        reason,
                        at,
                        lifecycle_version,
                        close_as,
                        resolution_summary,
                    })
                }
            ),
        (any_text, principal_strategy(), time.clone()).prop_map(|(text, principal, at)| {
            IncidentEvent::NoteAdded(NoteAdded {
                text,
                principal,
                at,
            })
        }),
        (
            proptest::option::of(any_text),
            any_text,
            principal_strategy(),
            time.clone()
        )
            .prop_map(|(from, to, principal, at)| IncidentEvent::AssigneeChanged(
                AssigneeChanged {
                    from,
                    to,
                    principal,
                    at
                }
            )),
        (
            severity_strategy(),
            severity_strategy(),
            principal_strategy(),
            any_text,
            time
        )
            .prop_map(|(from, to, principal, reason, at)| {
                IncidentEvent::SeverityChanged(SeverityChanged {
                    from,
                    to,
                    principal,
                    reason,
                    at,
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random command sequences never panic, every event `decide` returns fits the state,
    /// folding all events equals the state built step by step, and the stored form
    /// (payload bytes in sealed envelopes) folds to the same state.
    #[test]
    fn decided_events_always_fold_to_the_stepwise_state(
        opened_first in proptest::bool::weighted(0.9),
        steps in proptest::collection::vec(step(), 0..40),
    ) {
        let mut events: Vec<IncidentEvent> = Vec::new();
        if opened_first {
            events.push(opened());
        }
        let mut state: Option<Incident> = fold(&events).expect("folds");
        for step in &steps {
            let command = command_for(step, state.as_ref());
            let before = state.clone();
            match decide(state.as_ref(), &command) {
                Ok(decided) => {
                    for event in &decided {
                        match apply(state.clone(), event) {
                            Ok(next) => state = Some(next),
                            Err(error) => return Err(TestCaseError::fail(format!("{command:?} gave {event:?}, which apply refuses: {error}"))),
                        }
                    }
                    if let (Some(before), Some(after)) = (&before, &state) {
                        let transitioned = decided.iter().any(|event| matches!(event, IncidentEvent::IncidentTransitioned(_)));
                        prop_assert_eq!(after.lifecycle_version, before.lifecycle_version + u64::from(transitioned));
                    }
                    events.extend(decided);
                }
                Err(_) => prop_assert_eq!(&state, &before),
            }
        }
        prop_assert_eq!(fold(&events).expect("decided events fold"), state.clone());
        let envelopes = seal_all(&events);
        prop_assert!(verify_stream(&stream_id(&incident_id()), &envelopes).is_ok());
        prop_assert_eq!(fold_envelopes(&envelopes).expect("stored events fold"), state);
    }

    /// The same evidence in any order, with duplicates, in any batching, gives the same
    /// incident (same opened_at, severity, evidence, alarms).
    #[test]
    fn evidence_order_duplicates_and_batching_do_not_matter(
        picks in proptest::collection::btree_set(0usize..64, 1..40),
        duplicates in proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
        seed_order in any::<u64>(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
    ) {
        let items: Vec<EvidenceItem> = picks.iter().map(|pick| pool_item(*pick)).collect();
        let reference = deliver(std::slice::from_ref(&items));

        let mut shuffled = items.clone();
        for duplicate in &duplicates {
            shuffled.push(duplicate.get(&items).clone());
        }
        // A deterministic shuffle from the generated seed (Fisher–Yates with an LCG).
        let mut state = seed_order;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        let delivered = deliver(&chunk(&shuffled, &cuts));
        prop_assert_eq!(delivered.opened_at, items.iter().map(|item| item.event_time).min().expect("non-empty"));
        prop_assert_eq!(delivered.severity, items.iter().map(|item| item.severity).min().expect("non-empty"));
        prop_assert_eq!(delivered, reference);
    }

    /// Past the evidence limit the kept set, opened_at, severity and alarms still do not
    /// depend on arrival order or batching.
    #[test]
    fn the_kept_evidence_does_not_depend_on_arrival_order(
        extra in 1usize..40,
        seed_order in any::<u64>(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 8..20),
    ) {
        let items: Vec<EvidenceItem> = (0..EVIDENCE_PER_INCIDENT_MAX + extra).map(pool_item).collect();
        let reference = deliver(&chunk(&items, &cuts));
        let mut shuffled = items.clone();
        let mut state = seed_order;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        let delivered = deliver(&chunk(&shuffled, &cuts));
        prop_assert_eq!(delivered.evidence.len(), EVIDENCE_PER_INCIDENT_MAX);
        prop_assert_eq!(delivered.evidence_count, items.len() as u64);
        prop_assert_eq!(delivered, reference);
    }

    /// to_payload → from_payload is the identity, and so is the tagged JSON form.
    #[test]
    fn payloads_round_trip(event in any_event()) {
        let payload = event.to_payload().expect("encodes");
        let decoded = IncidentEvent::from_payload(event.event_type(), event.schema_version(), &payload);
        prop_assert_eq!(decoded.as_ref(), Ok(&event));
        let tagged = serde_json::to_vec(&event).expect("encodes");
        prop_assert_eq!(serde_json::from_slice::<IncidentEvent>(&tagged).expect("decodes"), event);
    }

    /// Arbitrary text never panics the principal constructors, and what they accept parses
    /// back to itself and is exactly one of the two forms.
    #[test]
    fn principals_parse_totally(text in "\\PC{0,80}|arn:aws[a-z-]{0,8}:[a-z]{0,4}:[a-z0-9-]{0,10}:[0-9]{10,13}:[ -~]{0,30}") {
        for principal in [Principal::iam(&text), Principal::local(&text), Principal::parse(&text)].into_iter().flatten() {
            prop_assert_eq!(Principal::parse(principal.as_str()), Ok(principal.clone()));
            prop_assert!(principal.is_local() != principal.as_str().starts_with("arn:aws"));
        }
    }
}
