//! `fanout`: the events table's stream in, one EventBridge notification (a pointer) per
//! committed event out, with partial batch failures. Wiring only; the handler is
//! [`opx_lambda::fanout::handle_fanout`].

use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use opx_lambda::config::{connect_publisher, connect_store, ProcessEnvironment};
use opx_lambda::telemetry::{init_logging, StdoutMetrics};
use opx_lambda::{Invocation, SystemClock};

const FUNCTION: &str = "fanout";

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let store = connect_store(&ProcessEnvironment)
        .await
        .map_err(|error| error.logged(FUNCTION))?;
    let publisher = connect_publisher(&ProcessEnvironment)
        .await
        .map_err(|error| error.logged(FUNCTION))?;
    let (store, publisher, clock, metrics) = (&store, &publisher, &SystemClock, &StdoutMetrics);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StreamBatch>| async move {
            let invocation = Invocation::from_lambda(FUNCTION, &event.context, clock, metrics);
            opx_lambda::fanout::handle_fanout(store, publisher, &invocation, &event.payload)
                .await
                .map(|outcome| outcome.response)
        },
    ))
    .await
}
