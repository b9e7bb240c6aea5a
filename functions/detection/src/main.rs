//! `detection`: the detection stage. An opx bus event whose detail points at a committed
//! `SignalAccepted` in, one idempotent pipeline step out. Wiring only; the handler is
//! [`opx_lambda::stage::handle_stage`].

use lambda_runtime::{service_fn, Error, LambdaEvent};
use opx_app::pipeline::Pipeline;
use opx_app::ports::{NoPublisher, Stage};
use opx_lambda::config::{connect_store, pipeline_config, ProcessEnvironment};
use opx_lambda::telemetry::{init_logging, StdoutMetrics};
use opx_lambda::{Invocation, SystemClock};
use serde_json::Value;

const FUNCTION: &str = "detection";
const STAGE: Stage = Stage::Detect;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let store = connect_store(&ProcessEnvironment)
        .await
        .map_err(|error| error.logged(FUNCTION))?;
    let config = pipeline_config().map_err(|error| error.logged(FUNCTION))?;
    // The fan-out publishes every commit from the table's stream; the stage publishes
    // nothing itself.
    let pipeline = Pipeline::new(&store, &NoPublisher, &config);
    let (store, pipeline, clock, metrics) = (&store, &pipeline, &SystemClock, &StdoutMetrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let invocation = Invocation::from_lambda(FUNCTION, &event.context, clock, metrics);
        opx_lambda::stage::handle_stage(store, pipeline, STAGE, &invocation, &event.payload).await
    }))
    .await
}
