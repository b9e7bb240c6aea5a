//! Recoveries seen per (environment, service), so a recovery is recorded on its incident
//! whatever the order in which the recovery and the incident's evidence are processed.
//!
//! A recovery belongs on an incident when the incident's evidence holds the recovered
//! alarm with an event time no later than the recovery ([`Incident::is_recovered_by`]).
//! The correlate step of a recovery adds it here and records it on the open incident if it
//! belongs there; the promote step that opens an incident or attaches evidence records
//! every recovery kept here that now belongs. Both steps write this projection with a
//! version guard, so one of two concurrent steps re-reads and sees the other's work.
//!
//! The document is a function of the *set* of recoveries seen, never of their order: per
//! alarm the latest [`RECOVERIES_PER_ALARM_MAX`] by `(event_time, signal_id)`, and of those
//! the latest [`RECOVERIES_PER_SERVICE_MAX`].

use opx_domain::hash::FieldHasher;
use opx_domain::incident::Incident;
use opx_domain::signal::{Signal, SignalId};
use opx_domain::time::EpochMs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Projection kind: the recoveries seen per (environment, service); see the module docs.
pub const PROJECTION_SERVICE_RECOVERIES: &str = "service_recoveries";
/// Recoveries kept per alarm: the latest ones. A flapping alarm cannot grow the document.
pub const RECOVERIES_PER_ALARM_MAX: usize = 8;
/// Recoveries kept per service: the latest ones.
pub const RECOVERIES_PER_SERVICE_MAX: usize = 256;

/// The projection key of an (environment, service).
pub fn service_recoveries_key(environment: &str, service: &str) -> String {
    FieldHasher::new("opx.service-recoveries-key.v1")
        .str(environment)
        .str(service)
        .finish()
        .to_hex()
}

/// One recovery, as kept.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecoverySeen {
    /// When the alarm recovered (first: the keep order).
    pub event_time: EpochMs,
    /// The recovery signal.
    pub signal_id: SignalId,
    /// The alarm identity.
    pub alarm: String,
    /// The alarm name, for people.
    pub alarm_name: String,
}

impl RecoverySeen {
    /// The recovery carried by an OK signal.
    pub fn of(signal: &Signal) -> RecoverySeen {
        RecoverySeen {
            event_time: signal.event_time,
            signal_id: signal.id,
            alarm: signal.alarm.clone(),
            alarm_name: signal.alarm_name.clone(),
        }
    }
}

/// The projection document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecoveries {
    /// Per alarm, its kept recoveries in keep order (earliest first).
    pub alarms: BTreeMap<String, Vec<RecoverySeen>>,
}

impl ServiceRecoveries {
    /// Adds `recovery`, keeping the bounds. Adding the same recovery twice changes nothing.
    pub fn insert(&mut self, recovery: RecoverySeen) {
        let kept = self.alarms.entry(recovery.alarm.clone()).or_default();
        if let Err(position) = kept.binary_search(&recovery) {
            kept.insert(position, recovery);
        }
        if kept.len() > RECOVERIES_PER_ALARM_MAX {
            let excess = kept.len() - RECOVERIES_PER_ALARM_MAX;
            kept.drain(..excess);
        }
        // Drop the earliest recoveries of the whole service beyond the bound. Both bounds
        // drop by the same order, so an item once dropped could never come back: the kept
        // document depends on the set seen alone.
        let mut kept_total: usize = self.alarms.values().map(Vec::len).sum();
        while kept_total > RECOVERIES_PER_SERVICE_MAX {
            let earliest = self
                .alarms
                .iter()
                .filter_map(|(alarm, kept)| kept.first().map(|first| (first, alarm)))
                .min()
                .map(|(_, alarm)| alarm.clone());
            let Some(alarm) = earliest else { break };
            if let Some(kept) = self.alarms.get_mut(&alarm) {
                kept.remove(0);
                if kept.is_empty() {
                    self.alarms.remove(&alarm);
                }
            }
            kept_total -= 1;
        }
    }

    /// The kept recoveries that belong on `incident`, in keep order.
    pub fn belonging_to<'a>(
        &'a self,
        incident: &'a Incident,
    ) -> impl Iterator<Item = &'a RecoverySeen> + 'a {
        incident
            .alarms
            .iter()
            .filter_map(|alarm| self.alarms.get(alarm))
            .flatten()
            .filter(|recovery| incident.is_recovered_by(&recovery.alarm, recovery.event_time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seen(alarm: u8, time: i64, id: u8) -> RecoverySeen {
        RecoverySeen {
            event_time: EpochMs(time),
            signal_id: SignalId(opx_domain::hash::Digest([id; 32])),
            alarm: format!("alarm-{alarm}"),
            alarm_name: format!("Alarm {alarm}"),
        }
    }

    proptest! {
        /// The kept document depends on the set of recoveries, never on their order or
        /// on duplicates.
        #[test]
        fn document_is_order_independent(
            items in proptest::collection::vec((0u8..160, 0i64..1000, any::<u8>()), 0..700),
            seed in any::<u64>(),
        ) {
            let recoveries: Vec<RecoverySeen> =
                items.iter().map(|(alarm, time, id)| seen(*alarm, *time, *id)).collect();
            let mut forward = ServiceRecoveries::default();
            for recovery in &recoveries {
                forward.insert(recovery.clone());
            }
            let mut shuffled = recoveries.clone();
            // A deterministic shuffle from the seed, plus every item again (redelivery).
            let len = shuffled.len().max(1) as u64;
            for index in 0..shuffled.len() {
                let other = ((seed.wrapping_mul(index as u64 + 7)) % len) as usize;
                shuffled.swap(index, other);
            }
            shuffled.extend(recoveries.iter().cloned());
            let mut backward = ServiceRecoveries::default();
            for recovery in shuffled.iter().rev() {
                backward.insert(recovery.clone());
            }
            prop_assert_eq!(&forward, &backward);
            prop_assert!(forward.alarms.values().map(Vec::len).sum::<usize>() <= RECOVERIES_PER_SERVICE_MAX);
            prop_assert!(forward.alarms.values().all(|kept| kept.len() <= RECOVERIES_PER_ALARM_MAX));
        }
    }
}
