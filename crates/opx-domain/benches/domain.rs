//! Criterion benchmarks of the pure domain: what one signal costs before any storage.
//!
//! Run: `cargo bench -p opx-domain --bench domain` (add `-- --quick` for a short run).
//! Every input is a recorded fixture from `tests/fixtures/sources` or is built from the
//! same shapes, compiled in with `include_str!` so the bench does no I/O.
//!
//! Groups, each reporting time per operation and (with `Throughput::Elements`) operations
//! per second on one core:
//! - `parse`: bytes → validated `Signal`s, per source (one payload per iteration; the
//!   Alertmanager payload holds three alerts, two valid and one refused, so its throughput
//!   counts alerts).
//! - `detect`: the default rule set (`RuleSet::default_rule_files()`) on a firing
//!   CloudWatch signal, a native signal and a recovery.
//! - `correlate_assess_gate`: what the correlate, assess and promote stages compute for
//!   one arriving detection in a storm of N members: the bundle (`for_window`), the score
//!   (`assess`), the rebuild the promote stage does (`as_recorded`) and the gate
//!   (`promotion::decide`).
//! - `event`: `EventEnvelope::seal` of a real `SignalAccepted` payload, and chain
//!   verification per event over a 100-event stream.
//! - `signal_pure`: everything the domain computes for one signal end to end (parse,
//!   detect, the four pipeline events encoded and sealed, bundle, score, gate): the
//!   "pure domain signals/s per core" figure in docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use opx_domain::confidence::{assess, ConfidenceModel};
use opx_domain::correlation::{window_start, CorrelationKey, EvidenceBundle, WindowMs};
use opx_domain::detection::{detect, Detection, DetectionOutcome};
use opx_domain::event::{verify_stream, ChainVerifier, EventEnvelope};
use opx_domain::hash::Digest;
use opx_domain::promotion::{self, GateInput};
use opx_domain::record::{
    group_stream, signal_stream, ConfidenceAssessed, DetectionCorrelated, PipelineEvent,
    PromotionDecided, SignalAccepted, SignalEvaluated, PIPELINE_SCHEMA_VERSION,
};
use opx_domain::rules::RuleSet;
use opx_domain::signal::Signal;
use opx_domain::source::{parse_payload, SourceConfig};
use std::hint::black_box;

const EVENTBRIDGE: &str = include_str!("../tests/fixtures/sources/eventbridge_alarm.json");
const ALARM_ACTION: &str = include_str!("../tests/fixtures/sources/alarm_action_alarm.json");
const SNS_LAMBDA: &str = include_str!("../tests/fixtures/sources/sns_lambda_records.json");
const SNS_HTTP: &str = include_str!("../tests/fixtures/sources/sns_notification.json");
const ALERTMANAGER: &str = include_str!("../tests/fixtures/sources/alertmanager_three_alerts.json");
const NATIVE: &str = include_str!("../tests/fixtures/sources/native_valid.json");
const RECOVERY: &str = include_str!("../tests/fixtures/sources/eventbridge_ok.json");

/// Storm sizes for the per-signal correlation bench: a lone alarm, a typical storm, a
/// large one. Members per bundle are capped at `BUNDLE_MEMBERS_MAX` (1000).
const STORM_SIZES: [usize; 3] = [1, 10, 100];
/// Events in the stream whose verification is measured per event.
const CHAIN_LEN: usize = 100;
/// Milliseconds between two alarms of a generated storm: a storm of 100 spans 100 s,
/// inside one 5-minute window.
const STORM_SPACING_MS: i64 = 1_000;
/// 2026-11-24T03:00:00Z, aligned to the default 5-minute window.
const STORM_START_MS: i64 = 1_795_489_200_000;

fn signals_of(payload: &str) -> Vec<Signal> {
    let parsed = parse_payload(payload.as_bytes(), &SourceConfig::default())
        .expect("the fixture is a payload of a known kind");
    parsed
        .items
        .into_iter()
        .map(|item| item.expect("the fixture's items are valid"))
        .collect()
}

fn one_signal(payload: &str) -> Signal {
    signals_of(payload)
        .into_iter()
        .next()
        .expect("the fixture holds a signal")
}

/// A native payload of alarm `index` of a storm on `service`, firing `index` seconds in.
fn storm_payload(service: &str, index: usize, time_ms: i64) -> String {
    let time = opx_domain::time::EpochMs(time_ms).to_rfc3339();
    format!(
        r#"{{"opx_signal_version":1,"alarm":"synthetic:{service}-alarm-{index}","alarm_name":"{service} alarm {index}","state":"ALARM","time":"{time}","environment":"prod","service":"{service}","severity":"SEV2","summary":"threshold crossed","labels":{{"probe":"eu-west-1"}}}}"#
    )
}

/// The detections of a storm of `size` distinct alarms on one service.
fn storm_detections(rules: &RuleSet, size: usize) -> Vec<Detection> {
    (0..size)
        .map(|index| {
            let time_ms = STORM_START_MS + STORM_SPACING_MS * index as i64;
            let signal = one_signal(&storm_payload("checkout", index, time_ms));
            match detect(rules, &signal) {
                DetectionOutcome::Detected(detection) => detection,
                DetectionOutcome::NotDetected(reason) => {
                    panic!("the default rules detect native ALARM signals, got {reason:?}")
                }
            }
        })
        .collect()
}

fn seal(stream_id: &str, sequence: u64, event: &PipelineEvent, previous: Digest) -> EventEnvelope {
    EventEnvelope::seal(
        stream_id,
        sequence,
        event.event_type(),
        PIPELINE_SCHEMA_VERSION,
        event.to_payload(),
        previous,
    )
}

fn parse(c: &mut Criterion) {
    let config = SourceConfig::default();
    let mut group = c.benchmark_group("parse");
    for (name, payload) in [
        ("cloudwatch_eventbridge", EVENTBRIDGE),
        ("cloudwatch_alarm_action", ALARM_ACTION),
        ("cloudwatch_sns_lambda", SNS_LAMBDA),
        ("cloudwatch_sns_http", SNS_HTTP),
        ("alertmanager_3_alerts", ALERTMANAGER),
        ("native", NATIVE),
    ] {
        // Every item counts, valid or refused: the parser does the work either way (the
        // Alertmanager fixture's third alert is refused for its timestamp).
        let items = parse_payload(payload.as_bytes(), &config)
            .expect("the fixture is a payload of a known kind")
            .items
            .len() as u64;
        group.throughput(Throughput::Elements(items));
        group.bench_function(name, |b| {
            b.iter(|| parse_payload(black_box(payload.as_bytes()), &config))
        });
    }
    group.finish();
}

fn detection(c: &mut Criterion) {
    let rules = RuleSet::default_rules().expect("the default rules load");
    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Elements(1));
    for (name, payload) in [
        ("cloudwatch_alarm", EVENTBRIDGE),
        ("native_alarm", NATIVE),
        ("recovery", RECOVERY),
    ] {
        let signal = one_signal(payload);
        group.bench_function(name, |b| b.iter(|| detect(&rules, black_box(&signal))));
    }
    group.finish();
}

fn correlate_assess_gate(c: &mut Criterion) {
    let rules = RuleSet::default_rules().expect("the default rules load");
    let model = ConfidenceModel::v1();
    let window_ms = WindowMs::DEFAULT;
    let mut group = c.benchmark_group("correlate_assess_gate");
    group.throughput(Throughput::Elements(1));
    for size in STORM_SIZES {
        let detections = storm_detections(&rules, size);
        let key = CorrelationKey::of(&detections[0]);
        let window = window_start(detections[0].event_time, window_ms);
        group.bench_with_input(
            BenchmarkId::new("storm", size),
            &detections,
            |b, members| {
                b.iter(|| {
                    let bundle =
                        EvidenceBundle::for_window(key.clone(), window, window_ms, members.clone());
                    let assessment = assess(&model, &bundle);
                    let member_ids: Vec<_> =
                        bundle.members.iter().map(|member| member.id).collect();
                    let recorded = EvidenceBundle::as_recorded(
                        key.clone(),
                        window,
                        window_ms,
                        members.clone(),
                        &member_ids,
                        bundle.truncated,
                    );
                    promotion::decide(&GateInput {
                        bundle: &recorded,
                        assessment: &assessment,
                        open_incident: None,
                        closed_generations: 0,
                    })
                })
            },
        );
    }
    group.finish();
}

fn events(c: &mut Criterion) {
    let signal = one_signal(EVENTBRIDGE);
    let event = PipelineEvent::SignalAccepted(SignalAccepted {
        signal: signal.clone(),
    });
    let payload = event.to_payload();
    let stream_id = signal_stream(&signal.id);
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("seal_{}_byte_payload", payload.len()), |b| {
        b.iter(|| {
            EventEnvelope::seal(
                stream_id.as_str(),
                1,
                "SignalAccepted",
                PIPELINE_SCHEMA_VERSION,
                black_box(payload.clone()),
                Digest::ZERO,
            )
        })
    });
    let mut chain: Vec<EventEnvelope> = Vec::with_capacity(CHAIN_LEN);
    let mut previous = Digest::ZERO;
    for sequence in 1..=CHAIN_LEN as u64 {
        let sealed = EventEnvelope::seal(
            stream_id.as_str(),
            sequence,
            "SignalAccepted",
            PIPELINE_SCHEMA_VERSION,
            payload.clone(),
            previous,
        );
        previous = sealed.hash;
        chain.push(sealed);
    }
    verify_stream(&stream_id, &chain).expect("the generated chain verifies");
    group.throughput(Throughput::Elements(CHAIN_LEN as u64));
    group.bench_function(format!("verify_chain_of_{CHAIN_LEN}"), |b| {
        b.iter(|| {
            let mut verifier = ChainVerifier::new(stream_id.as_str());
            for event in black_box(&chain) {
                verifier.push(event).expect("the chain verifies");
            }
            verifier.head()
        })
    });
    group.finish();
}

/// Everything the domain computes for one signal of a storm, with the storm's other
/// members already correlated: the pure part of ingest, detect, correlate, assess and
/// promote, including encoding and sealing the events each stage writes.
fn signal_pure(c: &mut Criterion) {
    let rules = RuleSet::default_rules().expect("the default rules load");
    let model = ConfidenceModel::v1();
    let config = SourceConfig::default();
    let window_ms = WindowMs::DEFAULT;
    let mut group = c.benchmark_group("signal_pure");
    group.throughput(Throughput::Elements(1));
    for size in [1usize, 10] {
        let others = storm_detections(&rules, size.saturating_sub(1));
        let payload = storm_payload(
            "checkout",
            size,
            STORM_START_MS + STORM_SPACING_MS * size as i64,
        );
        group.bench_with_input(BenchmarkId::new("storm", size), &payload, |b, payload| {
            b.iter(|| {
                let parsed = parse_payload(black_box(payload.as_bytes()), &config)
                    .expect("the payload parses");
                let mut heads = Vec::new();
                for item in parsed.items {
                    let signal = item.expect("the item is valid");
                    let signal_stream_id = signal_stream(&signal.id);
                    let accepted = seal(
                        &signal_stream_id,
                        1,
                        &PipelineEvent::SignalAccepted(SignalAccepted {
                            signal: signal.clone(),
                        }),
                        Digest::ZERO,
                    );
                    let outcome = detect(&rules, &signal);
                    let evaluated = seal(
                        &signal_stream_id,
                        2,
                        &PipelineEvent::SignalEvaluated(SignalEvaluated {
                            signal_id: signal.id,
                            ruleset_hash: rules.hash(),
                            outcome: outcome.clone(),
                        }),
                        accepted.hash,
                    );
                    let DetectionOutcome::Detected(detection) = outcome else {
                        heads.push(evaluated.hash);
                        continue;
                    };
                    let key = CorrelationKey::of(&detection);
                    let window = window_start(detection.event_time, window_ms);
                    let group_stream_id = group_stream(&key.group_id(window));
                    let correlated = seal(
                        &group_stream_id,
                        1,
                        &PipelineEvent::DetectionCorrelated(DetectionCorrelated {
                            detection: detection.clone(),
                            window_start: window,
                            window_ms: window_ms.get(),
                        }),
                        Digest::ZERO,
                    );
                    let mut members = others.clone();
                    members.push(detection.clone());
                    let bundle =
                        EvidenceBundle::for_window(key.clone(), window, window_ms, members);
                    let assessment = assess(&model, &bundle);
                    let member_ids: Vec<_> =
                        bundle.members.iter().map(|member| member.id).collect();
                    let assessed = seal(
                        &group_stream_id,
                        2,
                        &PipelineEvent::ConfidenceAssessed(ConfidenceAssessed {
                            key: key.clone(),
                            window_start: window,
                            window_ms: window_ms.get(),
                            trigger: detection.id,
                            member_ids: member_ids.clone(),
                            truncated: bundle.truncated,
                            model_hash: model.hash(),
                            assessment: assessment.clone(),
                        }),
                        correlated.hash,
                    );
                    let mut members = others.clone();
                    members.push(detection);
                    let recorded = EvidenceBundle::as_recorded(
                        key,
                        window,
                        window_ms,
                        members,
                        &member_ids,
                        bundle.truncated,
                    );
                    let decision = promotion::decide(&GateInput {
                        bundle: &recorded,
                        assessment: &assessment,
                        open_incident: None,
                        closed_generations: 0,
                    });
                    let decided = seal(
                        &group_stream_id,
                        3,
                        &PipelineEvent::PromotionDecided(Box::new(PromotionDecided {
                            assessment_event: assessed.pointer(),
                            decision,
                        })),
                        assessed.hash,
                    );
                    heads.push(decided.hash);
                }
                heads
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    parse,
    detection,
    correlate_assess_gate,
    events,
    signal_pure
);
criterion_main!(benches);
