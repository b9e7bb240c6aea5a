//! `replay`: verifies the whole store (chains, projections, decisions re-derived,
//! idempotency records) and answers `{report, next_cursor}`. Wiring only; the handler is
//! [`opx_lambda::replay::handle_replay`].

use lambda_runtime::{service_fn, Error, LambdaEvent};
use opx_lambda::config::{connect_store, ProcessEnvironment};
use opx_lambda::replay::ReplayRequest;
use opx_lambda::telemetry::{init_logging, StdoutMetrics};
use opx_lambda::{Invocation, SystemClock};

const FUNCTION: &str = "replay";

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let store = connect_store(&ProcessEnvironment)
        .await
        .map_err(|error| error.logged(FUNCTION))?;
    let (store, clock, metrics) = (&store, &SystemClock, &StdoutMetrics);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ReplayRequest>| async move {
            let invocation = Invocation::from_lambda(FUNCTION, &event.context, clock, metrics);
            opx_lambda::replay::handle_replay(store, &invocation, &event.payload).await
        },
    ))
    .await
}
