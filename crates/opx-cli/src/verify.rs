//! `opx replay verify`: the replay engine of `opx_app::replay` over the configured store.

use crate::{store, GlobalArgs, EXIT_OK, EXIT_REFUSED};
use opx_app::ports::StoreRead;
use opx_app::replay::{verify, VerifyOptions, VerifyReport};

/// Runs the replay verification over `store`.
pub async fn run_verify<S: StoreRead>(store: &S) -> anyhow::Result<VerifyReport> {
    Ok(verify(store, &VerifyOptions::default()).await?)
}

/// One line for people about a report.
pub fn report_line(report: &VerifyReport) -> String {
    let pending = if report.pending.is_empty() {
        String::new()
    } else {
        format!(
            "; {} work item(s) pending (run `opx resume`)",
            report.pending.len()
        )
    };
    if report.ok() {
        format!(
            "replay verified: {} streams, {} events, {} decisions re-derived, {} projections and {} \
             idempotency records rebuilt and equal{pending}",
            report.streams,
            report.events,
            report.decisions_rederived,
            report.projections_checked,
            report.idempotency_checked
        )
    } else {
        let first = report
            .first_divergence()
            .map(ToString::to_string)
            .unwrap_or_else(|| "(not kept)".to_owned());
        format!(
            "replay FAILED: {} divergence(s); first divergent stream {} event {}: {first}{pending}",
            report.divergences_total,
            report.first_divergent_stream.as_deref().unwrap_or("-"),
            report
                .first_divergent_sequence
                .map(|sequence| sequence.to_string())
                .unwrap_or_else(|| "-".to_owned()),
        )
    }
}

/// `opx replay verify`: exit 0 only if the whole store verifies (pending work is reported,
/// not a failure), else exit 1 naming the first divergence.
pub async fn replay_verify(global: &GlobalArgs) -> anyhow::Result<u8> {
    let store = store::open(&global.store)?;
    let report = run_verify(&store).await?;
    store.close()?;
    if global.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "ok": report.ok(), "report": report }))?
        );
    } else {
        println!("{}", report_line(&report));
        for divergence in report.divergences.iter().skip(1).take(9) {
            println!("  also: {divergence}");
        }
    }
    Ok(if report.ok() { EXIT_OK } else { EXIT_REFUSED })
}
