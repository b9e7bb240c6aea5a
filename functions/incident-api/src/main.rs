//! `incident-api`: the incident API behind API Gateway REST (`AWS_IAM` authorization).
//!
//! Wiring only: logs, configuration (`OPX_TABLE_PREFIX`, `OPX_ROLE_MAP`), the DynamoDB
//! store and the router, built once per cold start, then `lambda_http::run`. Every request
//! is handled by `opx_api::router`; see `crates/opx-api`. A missing or invalid
//! configuration fails the init, naming the variable.

use opx_api::auth::RoleMap;
use opx_api::lambda::{ApiGatewayIamAuthenticator, ENV_ROLE_MAP};
use opx_api::signals::AfterIngest;
use opx_api::{ApiState, SystemClock};
use opx_lambda::config::{self, ConfigError, Environment, ProcessEnvironment};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    opx_lambda::telemetry::init_logging();
    let environment = ProcessEnvironment;
    let roles = role_map(&environment).inspect_err(|error| tracing::error!(%error))?;
    let store = config::connect_store(&environment)
        .await
        .inspect_err(|error| tracing::error!(%error))?;
    let pipeline_config = config::pipeline_config().inspect_err(|error| tracing::error!(%error))?;
    let clock = Arc::new(SystemClock);
    let state = ApiState::new(
        Arc::new(store),
        Arc::new(pipeline_config),
        clock,
        Arc::new(ApiGatewayIamAuthenticator::new(roles)),
        // The events table's stream drives the next stages; the API only records.
        AfterIngest::LeaveToFanOut,
    );
    lambda_http::run(opx_api::lambda::service(opx_api::router(state))).await
}

/// The role map of `OPX_ROLE_MAP`: required, so a forgotten variable cannot silently
/// deny (or allow) everyone.
fn role_map(environment: &impl Environment) -> Result<RoleMap, ConfigError> {
    let text = environment.get(ENV_ROLE_MAP).ok_or(ConfigError::Missing {
        variable: ENV_ROLE_MAP,
        what: "the JSON map of role to IAM ARNs, e.g. {\"responder\":[\"arn:aws:iam::123456789012:role/Responder\"]}",
    })?;
    RoleMap::from_json(&text).map_err(|error| ConfigError::Invalid {
        variable: ENV_ROLE_MAP,
        reason: error.to_string(),
    })
}
