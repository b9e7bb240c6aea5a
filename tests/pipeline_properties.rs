//! The pipeline's central promises, checked over a real SQLite store: duplicates,
//! reordering inside a window and re-batching do not change the incidents or their ids;
//! one alarm alone never opens an incident; a 20-minute outage is one incident.

use opx_domain::incident::IncidentState;
use opx_domain::signal::Signal;
use opx_tests::{default_config, fresh_store, incidents, native_payload, run, signal, storm};
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

#[test]
fn a_storm_is_one_incident_and_a_flapping_alarm_is_none() {
    runtime().block_on(async {
        let temp = fresh_store();
        run(&temp.store, &default_config(), &storm(), &[]).await;
        let found = incidents(&temp.store).await;
        assert_eq!(found.len(), 1, "{found:#?}");
        let incident = found.values().next().expect("one incident");
        assert_eq!(incident.service, "orders");
        assert_eq!(incident.state, IncidentState::Open);
        assert_eq!(incident.evidence.len(), 4);
        assert_eq!(incident.severity.as_str(), "SEV1");
        assert_eq!(incident.opened_at.to_rfc3339(), "2026-11-24T03:00:09.512Z");
        let recovered: Vec<&str> = incident
            .recoveries
            .values()
            .map(|recovery| recovery.alarm.as_str())
            .collect();
        assert_eq!(recovered, ["orders-api-5xx"]);
    });
}

#[test]
fn a_twenty_minute_outage_is_one_incident() {
    runtime().block_on(async {
        let temp = fresh_store();
        let signals: Vec<Signal> = (0..8)
            .map(|i| {
                let minute = i * 3;
                signal(&native_payload(
                    &format!("orders-alarm-{i}"),
                    "ALARM",
                    &format!("2026-11-24T03:{minute:02}:00.000Z"),
                    "orders",
                    "SEV2",
                ))
            })
            .collect();
        run(
            &temp.store,
            &default_config(),
            &signals,
            &[0, 1, 2, 3, 4, 5, 6, 7],
        )
        .await;
        let found = incidents(&temp.store).await;
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found.values().next().map(|i| i.evidence.len()), Some(8));
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn duplicates_order_and_batching_do_not_change_incidents(
        order in Just((0..9usize).collect::<Vec<_>>()).prop_shuffle(),
        duplicates in proptest::collection::vec(0..9usize, 0..6),
        drain_after in proptest::collection::vec(0..15usize, 0..6),
    ) {
        let storm = storm();
        let reference = runtime().block_on(async {
            let temp = fresh_store();
            run(&temp.store, &default_config(), &storm, &[]).await;
            incidents(&temp.store).await
        });
        let mut delivered: Vec<Signal> = order.iter().map(|&i| storm[i].clone()).collect();
        for (slot, &i) in duplicates.iter().enumerate() {
            let at = (slot * 3) % (delivered.len() + 1);
            delivered.insert(at, storm[i].clone());
        }
        let shuffled = runtime().block_on(async {
            let temp = fresh_store();
            run(&temp.store, &default_config(), &delivered, &drain_after).await;
            incidents(&temp.store).await
        });
        prop_assert_eq!(reference, shuffled);
    }
}
