//! A deterministic generator of alarm storms as real-shaped source payloads.
//!
//! The workload a platform team sees: outages hit one service at a time; each outage trips
//! several of that service's alarms within two minutes, some flap (OK, then ALARM again),
//! all recover ten to twenty minutes later, and a responder closes the incident after
//! that. A share of storms is one lone alarm that fires and recovers (never an incident).
//! Every payload is a recorded fixture from `crates/opx-domain/tests/fixtures/sources` with
//! its alarm, state and times replaced, so the parsers see the shapes they see in
//! production: CloudWatch via EventBridge, alarm actions and SNS, Alertmanager webhooks and
//! native opx signals. Transport redeliveries (the same bytes again) are added at a
//! configurable rate.
//!
//! The generator streams in event-time order and keeps only the storms in flight, so a run
//! of a million signals does not hold a million payloads. The same [`WorkloadConfig`]
//! always yields the same bytes (a SplitMix64 sequence from the seed).

use serde_json::Value;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The recorded payloads the generator fills in.
const EVENTBRIDGE_TEMPLATE: &str =
    include_str!("../../opx-domain/tests/fixtures/sources/eventbridge_alarm.json");
const ALARM_ACTION_TEMPLATE: &str =
    include_str!("../../opx-domain/tests/fixtures/sources/alarm_action_alarm.json");
const SNS_TEMPLATE: &str =
    include_str!("../../opx-domain/tests/fixtures/sources/sns_lambda_records.json");
const ALERTMANAGER_TEMPLATE: &str =
    include_str!("../../opx-domain/tests/fixtures/sources/alertmanager_three_alerts.json");

/// Most services a workload may spread over (service names are `svcNNNN`).
pub const SERVICES_MAX: u32 = 10_000;
/// The account every CloudWatch alarm belongs to (its environment).
pub const ACCOUNT_ID: &str = "123456789012";
/// The region of every CloudWatch alarm.
pub const REGION: &str = "us-east-1";
/// The environment label of Alertmanager and native signals.
pub const ENVIRONMENT: &str = "prod";
/// 2026-11-24T00:00:00Z: when the first storm starts.
pub const START_MS: i64 = 1_795_478_400_000;
/// Time between two storm starts across the whole fleet.
pub const STORM_GAP_MS: i64 = 60_000;
/// All alarms of a storm fire within this span of its start.
pub const STORM_SPREAD_MS: i64 = 120_000;
/// A storm's alarms recover between this long after its start ...
pub const RECOVERY_AFTER_MS_MIN: i64 = 600_000;
/// ... and this much later again.
pub const RECOVERY_SPREAD_MS: i64 = 600_000;
/// The responder closes the incident this long after the storm's last recovery.
pub const CLOSE_AFTER_MS: i64 = 60_000;
/// Share of storms that are one lone alarm, in per mille.
pub const LONE_ALARM_PERMILLE: u64 = 150;
/// Share of a storm's alarms that flap (OK, then ALARM again) before recovering, per mille.
pub const FLAP_PERMILLE: u64 = 200;
/// Fewest alarms in a storm that is not a lone alarm.
pub const STORM_ALARMS_MIN: u64 = 2;
/// Most alarms in a storm.
pub const STORM_ALARMS_MAX: u64 = 10;

/// Each service's alarms: `<service>-<suffix>`. The canary carries a SEV1 token in its
/// description, the rest are SEV2 unless the source says otherwise.
const ALARM_SUFFIXES: [&str; 12] = [
    "api-5xx",
    "api-p99-latency",
    "db-cpu-high",
    "queue-depth",
    "lb-unhealthy-hosts",
    "cache-evictions",
    "disk-usage",
    "canary-failed",
    "error-logs",
    "throttles",
    "conn-pool-saturated",
    "memory-high",
];

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Distinct signals (alarm state changes) to generate.
    pub signals: u64,
    /// Services the storms spread over.
    pub services: u32,
    /// Share of payloads delivered twice (a transport redelivery), per mille.
    pub duplicate_permille: u64,
    /// The seed of the sequence.
    pub seed: u64,
}

/// How a service's alarms reach opx.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    /// CloudWatch "Alarm State Change" via EventBridge.
    EventBridge,
    /// A CloudWatch alarm action invoking the function directly.
    AlarmAction,
    /// A CloudWatch alarm notifying an SNS topic the function subscribes to.
    Sns,
    /// A Prometheus Alertmanager webhook (version 4), one alert per payload.
    Alertmanager,
    /// A native opx signal.
    Native,
}

impl Transport {
    /// The transport of service number `index`: half the fleet on EventBridge, the rest
    /// spread over the other four, so every parser is exercised.
    pub fn of_service(index: u32) -> Transport {
        match index % 10 {
            0..=4 => Transport::EventBridge,
            5 => Transport::AlarmAction,
            6 => Transport::Sns,
            7 | 8 => Transport::Alertmanager,
            _ => Transport::Native,
        }
    }

    /// The environment its signals carry.
    pub fn environment(self) -> &'static str {
        match self {
            Transport::EventBridge | Transport::AlarmAction | Transport::Sns => ACCOUNT_ID,
            Transport::Alertmanager | Transport::Native => ENVIRONMENT,
        }
    }
}

/// One thing that happens, in event-time order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A payload arrives. `redelivery` is true for the second copy of a duplicated one.
    Payload {
        /// The payload bytes.
        bytes: Vec<u8>,
        /// How it was sent.
        transport: Transport,
        /// A transport redelivery of the payload before it.
        redelivery: bool,
    },
    /// A responder closes the open incident of this service, if there is one.
    CloseIncident {
        /// The correlation key's environment.
        environment: String,
        /// The correlation key's service.
        service: String,
        /// When (the human action's time).
        at_ms: i64,
    },
}

/// SplitMix64: tiny, deterministic, and good enough to shape a workload.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound` > 0); the modulo bias is irrelevant here.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn chance(&mut self, permille: u64) -> bool {
        self.below(1000) < permille
    }
}

/// An alarm state change, before it is rendered as a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    service_index: u32,
    alarm_index: usize,
    firing: bool,
    at_ms: i64,
    /// For an Alertmanager alert: when the current firing started (its `startsAt`).
    firing_since_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    Change(Change),
    Close { service_index: u32, at_ms: i64 },
}

impl Pending {
    fn at_ms(&self) -> i64 {
        match self {
            Pending::Change(change) => change.at_ms,
            Pending::Close { at_ms, .. } => *at_ms,
        }
    }
}

/// The workload as an iterator of deliveries in event-time order.
pub struct Workload {
    config: WorkloadConfig,
    rng: SplitMix64,
    /// Pending changes keyed by (time, insertion number) so ties keep insertion order.
    pending: BinaryHeap<Reverse<(i64, u64, PendingSlot)>>,
    inserted: u64,
    next_storm: u64,
    signals_emitted: u64,
    /// A redelivery waiting to follow the payload just returned.
    redelivery: Option<Delivery>,
    templates: Templates,
}

/// Wrapper so the heap orders by (time, insertion) only.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingSlot(Pending);

impl PartialOrd for PendingSlot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PendingSlot {
    fn cmp(&self, _other: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

struct Templates {
    eventbridge: Value,
    alarm_action: Value,
    sns: Value,
    sns_message: Value,
    alertmanager: Value,
    alert: Value,
}

impl Templates {
    fn load() -> Result<Templates, serde_json::Error> {
        let sns: Value = serde_json::from_str(SNS_TEMPLATE)?;
        let sns_message: Value = serde_json::from_str(
            sns["Records"][0]["Sns"]["Message"]
                .as_str()
                .unwrap_or_default(),
        )?;
        let mut alertmanager: Value = serde_json::from_str(ALERTMANAGER_TEMPLATE)?;
        let alert = alertmanager["alerts"][0].clone();
        alertmanager["alerts"] = Value::Array(Vec::new());
        Ok(Templates {
            eventbridge: serde_json::from_str(EVENTBRIDGE_TEMPLATE)?,
            alarm_action: serde_json::from_str(ALARM_ACTION_TEMPLATE)?,
            sns,
            sns_message,
            alertmanager,
            alert,
        })
    }
}

/// `svc0042`: no `-`, so a CloudWatch alarm `svc0042-api-5xx` maps to service `svc0042`.
pub fn service_name(index: u32) -> String {
    format!("svc{index:04}")
}

fn alarm_name(service_index: u32, alarm_index: usize) -> String {
    format!(
        "{}-{}",
        service_name(service_index),
        ALARM_SUFFIXES[alarm_index % ALARM_SUFFIXES.len()]
    )
}

fn description(alarm_index: usize) -> &'static str {
    if ALARM_SUFFIXES[alarm_index % ALARM_SUFFIXES.len()] == "canary-failed" {
        "Pager: SEV1. The synthetic checkout canary failed"
    } else {
        "Threshold alarm owned by the service team"
    }
}

/// CloudWatch writes `2026-11-24T03:00:09.512+0000`.
fn cloudwatch_time(at_ms: i64) -> String {
    let text = opx_domain::time::EpochMs(at_ms).to_rfc3339();
    match text.strip_suffix('Z') {
        Some(head) => format!("{head}+0000"),
        None => text,
    }
}

fn iso_time(at_ms: i64) -> String {
    opx_domain::time::EpochMs(at_ms).to_rfc3339()
}

fn state(firing: bool) -> &'static str {
    if firing {
        "ALARM"
    } else {
        "OK"
    }
}

/// A deterministic 16-hex-digit id (Alertmanager fingerprints, message ids).
fn hex_id(parts: &[&str]) -> String {
    let mut hasher = opx_domain::hash::FieldHasher::new("opx-bench.id.v1");
    for part in parts {
        hasher = hasher.str(part);
    }
    hasher.finish().to_hex()[..16].to_owned()
}

impl Workload {
    /// The workload of `config`.
    pub fn new(config: WorkloadConfig) -> anyhow::Result<Workload> {
        anyhow::ensure!(
            (1..=SERVICES_MAX).contains(&config.services),
            "--services must be 1 to {SERVICES_MAX}, got {}",
            config.services
        );
        anyhow::ensure!(
            config.duplicate_permille <= 1000,
            "--duplicate-permille must be 0 to 1000, got {}",
            config.duplicate_permille
        );
        Ok(Workload {
            config,
            rng: SplitMix64(config.seed),
            pending: BinaryHeap::new(),
            inserted: 0,
            next_storm: 0,
            signals_emitted: 0,
            redelivery: None,
            templates: Templates::load()?,
        })
    }

    fn push(&mut self, pending: Pending) {
        self.inserted += 1;
        self.pending.push(Reverse((
            pending.at_ms(),
            self.inserted,
            PendingSlot(pending),
        )));
    }

    /// Schedules the next storm: its alarms, flaps, recoveries and the responder's close.
    fn schedule_storm(&mut self) {
        let start_ms = START_MS + STORM_GAP_MS * self.next_storm as i64;
        self.next_storm += 1;
        let service_index = self.rng.below(u64::from(self.config.services)) as u32;
        let alarms = if self.rng.chance(LONE_ALARM_PERMILLE) {
            1
        } else {
            STORM_ALARMS_MIN + self.rng.below(STORM_ALARMS_MAX - STORM_ALARMS_MIN + 1)
        };
        let first_alarm = self.rng.below(ALARM_SUFFIXES.len() as u64) as usize;
        let mut last_recovery_ms = start_ms;
        for offset in 0..alarms as usize {
            let alarm_index = (first_alarm + offset) % ALARM_SUFFIXES.len();
            let fired_ms = start_ms + self.rng.below(STORM_SPREAD_MS as u64) as i64;
            let mut firing_since_ms = fired_ms;
            self.push(Pending::Change(Change {
                service_index,
                alarm_index,
                firing: true,
                at_ms: fired_ms,
                firing_since_ms,
            }));
            if self.rng.chance(FLAP_PERMILLE) {
                let ok_ms = fired_ms + 30_000 + self.rng.below(30_000) as i64;
                let again_ms = ok_ms + 30_000 + self.rng.below(30_000) as i64;
                self.push(Pending::Change(Change {
                    service_index,
                    alarm_index,
                    firing: false,
                    at_ms: ok_ms,
                    firing_since_ms,
                }));
                firing_since_ms = again_ms;
                self.push(Pending::Change(Change {
                    service_index,
                    alarm_index,
                    firing: true,
                    at_ms: again_ms,
                    firing_since_ms,
                }));
            }
            let recovered_ms =
                start_ms + RECOVERY_AFTER_MS_MIN + self.rng.below(RECOVERY_SPREAD_MS as u64) as i64;
            last_recovery_ms = last_recovery_ms.max(recovered_ms);
            self.push(Pending::Change(Change {
                service_index,
                alarm_index,
                firing: false,
                at_ms: recovered_ms,
                firing_since_ms,
            }));
        }
        self.push(Pending::Close {
            service_index,
            at_ms: last_recovery_ms + CLOSE_AFTER_MS,
        });
    }

    fn render(&mut self, change: &Change) -> Delivery {
        let transport = Transport::of_service(change.service_index);
        let bytes = match transport {
            Transport::EventBridge => self.eventbridge(change),
            Transport::AlarmAction => self.alarm_action(change),
            Transport::Sns => self.sns(change),
            Transport::Alertmanager => self.alertmanager(change),
            Transport::Native => self.native(change),
        };
        Delivery::Payload {
            bytes,
            transport,
            redelivery: false,
        }
    }

    fn eventbridge(&self, change: &Change) -> Vec<u8> {
        let name = alarm_name(change.service_index, change.alarm_index);
        let time = cloudwatch_time(change.at_ms);
        let mut payload = self.templates.eventbridge.clone();
        payload["id"] = Value::from(hex_id(&[&name, &time]));
        payload["account"] = Value::from(ACCOUNT_ID);
        payload["region"] = Value::from(REGION);
        payload["time"] = Value::from(iso_time(change.at_ms - change.at_ms % 1000));
        payload["resources"] = Value::from(vec![format!(
            "arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}"
        )]);
        let detail = &mut payload["detail"];
        detail["alarmName"] = Value::from(name);
        detail["state"]["value"] = Value::from(state(change.firing));
        detail["state"]["timestamp"] = Value::from(time);
        detail["previousState"]["value"] = Value::from(state(!change.firing));
        detail["configuration"]["description"] = Value::from(description(change.alarm_index));
        payload.to_string().into_bytes()
    }

    fn alarm_action(&self, change: &Change) -> Vec<u8> {
        let name = alarm_name(change.service_index, change.alarm_index);
        let time = cloudwatch_time(change.at_ms);
        let mut payload = self.templates.alarm_action.clone();
        payload["alarmArn"] = Value::from(format!(
            "arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}"
        ));
        payload["accountId"] = Value::from(ACCOUNT_ID);
        payload["region"] = Value::from(REGION);
        payload["time"] = Value::from(time.clone());
        let data = &mut payload["alarmData"];
        data["alarmName"] = Value::from(name);
        data["state"]["value"] = Value::from(state(change.firing));
        data["state"]["timestamp"] = Value::from(time);
        data["previousState"]["value"] = Value::from(state(!change.firing));
        data["configuration"]["description"] = Value::from(description(change.alarm_index));
        payload.to_string().into_bytes()
    }

    fn sns(&self, change: &Change) -> Vec<u8> {
        let name = alarm_name(change.service_index, change.alarm_index);
        let time = cloudwatch_time(change.at_ms);
        let mut message = self.templates.sns_message.clone();
        message["AlarmName"] = Value::from(name.clone());
        message["AlarmDescription"] = Value::from(description(change.alarm_index));
        message["AWSAccountId"] = Value::from(ACCOUNT_ID);
        message["NewStateValue"] = Value::from(state(change.firing));
        message["OldStateValue"] = Value::from(state(!change.firing));
        message["StateChangeTime"] = Value::from(time.clone());
        message["AlarmArn"] = Value::from(format!(
            "arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}"
        ));
        let mut payload = self.templates.sns.clone();
        let sns = &mut payload["Records"][0]["Sns"];
        sns["MessageId"] = Value::from(hex_id(&["sns", &name, &time]));
        sns["Subject"] = Value::from(format!(
            "{}: \"{name}\" in US East (N. Virginia)",
            state(change.firing)
        ));
        sns["Timestamp"] = Value::from(iso_time(change.at_ms + 89));
        sns["Message"] = Value::from(message.to_string());
        payload.to_string().into_bytes()
    }

    fn alertmanager(&self, change: &Change) -> Vec<u8> {
        let name = alarm_name(change.service_index, change.alarm_index);
        let service = service_name(change.service_index);
        let mut alert = self.templates.alert.clone();
        alert["status"] = Value::from(if change.firing { "firing" } else { "resolved" });
        alert["labels"] = serde_json::json!({
            "alertname": name,
            "env": ENVIRONMENT,
            "service": service,
            "severity": if description(change.alarm_index).contains("SEV1") { "critical" } else { "error" },
            "job": format!("{service}-api"),
        });
        alert["startsAt"] = Value::from(iso_time(change.firing_since_ms));
        alert["endsAt"] = Value::from(if change.firing {
            "0001-01-01T00:00:00Z".to_owned()
        } else {
            iso_time(change.at_ms)
        });
        alert["fingerprint"] = Value::from(hex_id(&[&service, &name]));
        let mut payload = self.templates.alertmanager.clone();
        payload["status"] = alert["status"].clone();
        payload["groupLabels"] = serde_json::json!({ "alertname": name });
        payload["commonLabels"] = alert["labels"].clone();
        payload["alerts"] = Value::from(vec![alert]);
        payload.to_string().into_bytes()
    }

    fn native(&self, change: &Change) -> Vec<u8> {
        let name = alarm_name(change.service_index, change.alarm_index);
        serde_json::json!({
            "opx_signal_version": 1,
            "alarm": format!("synthetic:{name}"),
            "alarm_name": name,
            "state": state(change.firing),
            "time": iso_time(change.at_ms),
            "environment": ENVIRONMENT,
            "service": service_name(change.service_index),
            "severity": if description(change.alarm_index).contains("SEV1") { "SEV1" } else { "SEV2" },
            "summary": "probe failed",
            "labels": { "probe": "eu-west-1" },
        })
        .to_string()
        .into_bytes()
    }
}

impl Iterator for Workload {
    type Item = Delivery;

    fn next(&mut self) -> Option<Delivery> {
        if let Some(redelivery) = self.redelivery.take() {
            return Some(redelivery);
        }
        loop {
            // Keep every storm that can still emit before the earliest pending item
            // scheduled, so the output stays in event-time order.
            let next_storm_start = START_MS + STORM_GAP_MS * self.next_storm as i64;
            let earliest = self.pending.peek().map(|Reverse((at, _, _))| *at);
            if self.signals_emitted < self.config.signals
                && earliest.is_none_or(|at| next_storm_start <= at)
            {
                self.schedule_storm();
                continue;
            }
            let Reverse((_, _, PendingSlot(pending))) = self.pending.pop()?;
            match pending {
                Pending::Close {
                    service_index,
                    at_ms,
                } => {
                    return Some(Delivery::CloseIncident {
                        environment: Transport::of_service(service_index)
                            .environment()
                            .to_owned(),
                        service: service_name(service_index),
                        at_ms,
                    })
                }
                Pending::Change(change) => {
                    if self.signals_emitted >= self.config.signals {
                        // Past the requested count: drop the rest of the storms in flight.
                        continue;
                    }
                    self.signals_emitted += 1;
                    let delivery = self.render(&change);
                    if self.rng.chance(self.config.duplicate_permille) {
                        if let Delivery::Payload {
                            bytes, transport, ..
                        } = &delivery
                        {
                            self.redelivery = Some(Delivery::Payload {
                                bytes: bytes.clone(),
                                transport: *transport,
                                redelivery: true,
                            });
                        }
                    }
                    return Some(delivery);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opx_domain::source::{parse_payload, SourceConfig};
    use std::collections::BTreeSet;

    fn config(signals: u64) -> WorkloadConfig {
        WorkloadConfig {
            signals,
            services: 20,
            duplicate_permille: 50,
            seed: 7,
        }
    }

    fn payloads(workload: Workload) -> Vec<(Vec<u8>, bool)> {
        workload
            .filter_map(|delivery| match delivery {
                Delivery::Payload {
                    bytes, redelivery, ..
                } => Some((bytes, redelivery)),
                Delivery::CloseIncident { .. } => None,
            })
            .collect()
    }

    #[test]
    fn the_same_config_yields_the_same_bytes() {
        let first = payloads(Workload::new(config(500)).expect("valid config"));
        let second = payloads(Workload::new(config(500)).expect("valid config"));
        assert_eq!(first, second);
        let other_seed = payloads(
            Workload::new(WorkloadConfig {
                seed: 8,
                ..config(500)
            })
            .expect("valid config"),
        );
        assert_ne!(first, other_seed);
    }

    #[test]
    fn every_payload_parses_into_one_signal_and_ids_are_distinct_but_for_redeliveries() {
        let source = SourceConfig::default();
        let mut ids = BTreeSet::new();
        let mut transports = BTreeSet::new();
        let mut firing = 0;
        let mut redeliveries = 0;
        for delivery in Workload::new(config(2_000)).expect("valid config") {
            let Delivery::Payload {
                bytes,
                transport,
                redelivery,
            } = delivery
            else {
                continue;
            };
            transports.insert(transport);
            let parsed = parse_payload(&bytes, &source).expect("a payload of a known kind");
            assert_eq!(parsed.items.len(), 1, "one signal per payload");
            let signal = parsed.items[0].clone().expect("a valid signal");
            if redelivery {
                redeliveries += 1;
                assert!(ids.contains(&signal.id), "a redelivery repeats a signal");
            } else {
                assert!(ids.insert(signal.id), "a fresh delivery is a new signal");
            }
            if signal.state == opx_domain::signal::SignalState::Alarm {
                firing += 1;
            }
        }
        assert_eq!(ids.len(), 2_000, "exactly the requested number of signals");
        assert!(redeliveries > 0, "redeliveries are generated");
        assert_eq!(transports.len(), 5, "every transport is used");
        assert!(
            firing > 800 && firing < 1_400,
            "about half the signals fire, got {firing}"
        );
    }

    #[test]
    fn deliveries_come_in_event_time_order() {
        let source = SourceConfig::default();
        let mut last = i64::MIN;
        for delivery in Workload::new(config(1_000)).expect("valid config") {
            let at = match delivery {
                Delivery::Payload { bytes, .. } => {
                    let parsed = parse_payload(&bytes, &source).expect("parses");
                    parsed.items[0].clone().expect("valid").event_time.0
                }
                Delivery::CloseIncident { at_ms, .. } => at_ms,
            };
            assert!(at >= last, "{at} comes after {last}");
            last = at;
        }
    }

    #[test]
    fn a_bad_config_is_refused_with_the_flag_to_fix() {
        let error = Workload::new(WorkloadConfig {
            services: 0,
            ..config(10)
        })
        .err()
        .expect("zero services is refused");
        assert!(error.to_string().contains("--services"));
    }
}
