//! `detection`: the detection stage. An opx bus event whose detail points at a committed
//! `SignalAccepted` in, one idempotent pipeline step out. Wiring only; the handler is
//! [`opx_lambda::stage::handle_stage`], run by [`opx_lambda::stage::run_stage_function`].

use opx_app::ports::Stage;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    opx_lambda::stage::run_stage_function(Stage::Detect).await
}
