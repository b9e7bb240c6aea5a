//! `sweeper` (scheduled): re-drives work whose notification was lost, once it has been
//! pending for `OPX_SWEEP_AGE_MS`, and re-sends pages to the bus `OPX_BUS_NAME`. Wiring only; the handler is
//! [`opx_lambda::sweeper::handle_sweep`].

use lambda_runtime::{service_fn, Error, LambdaEvent};
use opx_app::pipeline::Pipeline;
use opx_app::ports::NoPublisher;
use opx_lambda::config::{
    connect_publisher, connect_store, pipeline_config, sweep_age_ms, ProcessEnvironment,
};
use opx_lambda::sweeper::SweepLimits;
use opx_lambda::telemetry::{init_logging, StdoutMetrics};
use opx_lambda::{Invocation, SystemClock};
use serde_json::Value;

const FUNCTION: &str = "sweeper";

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let store = connect_store(&ProcessEnvironment)
        .await
        .map_err(|error| error.logged(FUNCTION))?;
    let config = pipeline_config().map_err(|error| error.logged(FUNCTION))?;
    let limits = SweepLimits::with_min_age_ms(
        sweep_age_ms(&ProcessEnvironment).map_err(|error| error.logged(FUNCTION))?,
    );
    // Pages whose fan-out publish failed go to the bus from here; everything else the
    // sweeper commits, the fan-out publishes from the table's stream like any other commit.
    let pager = connect_publisher(&ProcessEnvironment)
        .await
        .map_err(|error| error.logged(FUNCTION))?;
    let pipeline = Pipeline::new(&store, &NoPublisher, &config);
    let (store, pager, pipeline, limits, clock, metrics) = (
        &store,
        &pager,
        &pipeline,
        &limits,
        &SystemClock,
        &StdoutMetrics,
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let invocation = Invocation::from_lambda(FUNCTION, &event.context, clock, metrics);
        opx_lambda::sweeper::handle_sweep(pipeline, pager, store, &invocation, limits).await
    }))
    .await
}
