//! `signal-ingest`: CloudWatch alarm payloads (the EventBridge state-change event, an
//! alarm action's direct invoke, an SNS notification) in, `SignalAccepted` committed.
//! Wiring only; the handler is [`opx_lambda::ingest::handle_signal_ingest`].

use lambda_runtime::{service_fn, Error, LambdaEvent};
use opx_app::pipeline::Pipeline;
use opx_app::ports::NoPublisher;
use opx_lambda::config::{connect_store, pipeline_config, ProcessEnvironment};
use opx_lambda::telemetry::{init_logging, StdoutMetrics};
use opx_lambda::{Invocation, SystemClock};
use serde_json::Value;

const FUNCTION: &str = "signal-ingest";

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let store = connect_store(&ProcessEnvironment)
        .await
        .map_err(|error| error.logged(FUNCTION))?;
    let config = pipeline_config().map_err(|error| error.logged(FUNCTION))?;
    // Ingest only commits; the events table's stream and the fan-out drive detection.
    let pipeline = Pipeline::new(&store, &NoPublisher, &config);
    let (pipeline, clock, metrics) = (&pipeline, &SystemClock, &StdoutMetrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let invocation = Invocation::from_lambda(FUNCTION, &event.context, clock, metrics);
        opx_lambda::ingest::handle_signal_ingest(pipeline, &invocation, &event.payload).await
    }))
    .await
}
