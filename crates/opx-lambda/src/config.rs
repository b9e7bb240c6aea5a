//! Cold-start configuration: environment variables read once, checked, and turned into
//! the clients every invocation shares.
//!
//! Every function needs [`ENV_TABLE_PREFIX`]; the fan-out and the sweeper (which re-sends
//! pages) also need [`ENV_BUS_NAME`]; the sweeper may set [`ENV_SWEEP_AGE_MS`]. A missing or unusable variable is a
//! [`ConfigError`] naming the variable, and the function fails its init (Lambda reports it
//! on the first invocation) instead of running half-configured.

use opx_app::pipeline::PipelineConfig;
use opx_domain::rules::RuleSet;
use opx_publisher_eventbridge::EventBridgePublisher;
use opx_store_dynamodb::{DynamoStore, TableNames};
use std::collections::BTreeMap;

/// The table prefix: tables `P-events`, `P-idempotency`, `P-projections`.
pub const ENV_TABLE_PREFIX: &str = "OPX_TABLE_PREFIX";
/// The EventBridge bus the fan-out publishes to and the sweeper re-sends pages to.
pub const ENV_BUS_NAME: &str = "OPX_BUS_NAME";
/// How long work must have been pending before the sweeper re-drives it, in milliseconds.
pub const ENV_SWEEP_AGE_MS: &str = "OPX_SWEEP_AGE_MS";
/// [`ENV_SWEEP_AGE_MS`] when unset: five minutes, longer than EventBridge's own retries of
/// a delivery usually take.
pub const SWEEP_AGE_MS_DEFAULT: u64 = 300_000;
/// Longest accepted bus name (an EventBridge limit).
pub const BUS_NAME_LEN_MAX: usize = 256;

/// A function configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set (or is empty).
    #[error("environment variable {variable} is not set ({what}); set it in the function's configuration and redeploy")]
    Missing {
        /// The variable.
        variable: &'static str,
        /// What it is for.
        what: &'static str,
    },
    /// A variable is set to something unusable.
    #[error("environment variable {variable} is invalid: {reason}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A client could not be built from an otherwise valid configuration.
    #[error("{resource}: {reason}")]
    Client {
        /// The client (e.g. `DynamoDB store opx`).
        resource: String,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// Logs the error once (a function's init failure shows in its logs, not only in
    /// Lambda's init error) and returns it.
    pub fn logged(self, function: &str) -> ConfigError {
        tracing::error!(function, retryable = false, error = %self, "function configuration is unusable; fix it and redeploy");
        self
    }
}

/// Where configuration values come from: the process environment in a function, a map
/// in tests.
pub trait Environment {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    // Reading the environment is this adapter's job; the workspace lint against it exists
    // for the pure domain crate.
    #[allow(clippy::disallowed_methods)]
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

fn required(
    environment: &impl Environment,
    variable: &'static str,
    what: &'static str,
) -> Result<String, ConfigError> {
    match environment.get(variable) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(ConfigError::Missing { variable, what }),
    }
}

/// The table prefix, checked the way the store checks it.
pub fn table_prefix(environment: &impl Environment) -> Result<String, ConfigError> {
    let prefix = required(
        environment,
        ENV_TABLE_PREFIX,
        "the DynamoDB table prefix, e.g. opx for opx-events, opx-idempotency, opx-projections",
    )?;
    TableNames::for_prefix(&prefix).map_err(|error| ConfigError::Invalid {
        variable: ENV_TABLE_PREFIX,
        reason: error.to_string(),
    })?;
    Ok(prefix)
}

/// The bus name.
pub fn bus_name(environment: &impl Environment) -> Result<String, ConfigError> {
    let name = required(
        environment,
        ENV_BUS_NAME,
        "the EventBridge bus the fan-out publishes committed events and the sweeper pages to",
    )?;
    let valid = name.len() <= BUS_NAME_LEN_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':'));
    if !valid {
        return Err(ConfigError::Invalid {
            variable: ENV_BUS_NAME,
            reason: format!(
                "expected a bus name or ARN of at most {BUS_NAME_LEN_MAX} characters from [A-Za-z0-9._-/:], got {name:?}"
            ),
        });
    }
    Ok(name)
}

/// The sweeper's minimum work age, [`SWEEP_AGE_MS_DEFAULT`] when unset.
pub fn sweep_age_ms(environment: &impl Environment) -> Result<u64, ConfigError> {
    match environment.get(ENV_SWEEP_AGE_MS) {
        None => Ok(SWEEP_AGE_MS_DEFAULT),
        Some(text) => text.trim().parse().map_err(|_| ConfigError::Invalid {
            variable: ENV_SWEEP_AGE_MS,
            reason: format!("expected a whole number of milliseconds, got {text:?}"),
        }),
    }
}

/// The pipeline configuration every stage decides with: the rule files and model built
/// into this binary (the same defaults as `opx`), so every function of one deployment
/// decides alike and the rule set is recorded content-addressed on first use.
pub fn pipeline_config() -> Result<PipelineConfig, ConfigError> {
    PipelineConfig::with_rule_files(RuleSet::default_rule_files()).map_err(|error| {
        ConfigError::Client {
            resource: "the built-in rule set".to_owned(),
            reason: error.to_string(),
        }
    })
}

/// The DynamoDB store named by [`ENV_TABLE_PREFIX`], through the standard AWS
/// configuration chain. Build it once per cold start.
pub async fn connect_store(environment: &impl Environment) -> Result<DynamoStore, ConfigError> {
    let prefix = table_prefix(environment)?;
    DynamoStore::connect(&prefix)
        .await
        .map_err(|error| ConfigError::Client {
            resource: format!("DynamoDB store {prefix}"),
            reason: error.to_string(),
        })
}

/// The EventBridge publisher to [`ENV_BUS_NAME`]. Build it once per cold start.
pub async fn connect_publisher(
    environment: &impl Environment,
) -> Result<EventBridgePublisher, ConfigError> {
    Ok(EventBridgePublisher::connect(bus_name(environment)?).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn a_missing_variable_is_named() {
        let error = table_prefix(&environment(&[])).unwrap_err();
        assert!(error.to_string().contains("OPX_TABLE_PREFIX"), "{error}");
        let error = bus_name(&environment(&[("OPX_BUS_NAME", " ")])).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Missing {
                variable: "OPX_BUS_NAME",
                ..
            }
        ));
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(
            table_prefix(&environment(&[("OPX_TABLE_PREFIX", "opx")])).unwrap(),
            "opx"
        );
        assert!(matches!(
            table_prefix(&environment(&[("OPX_TABLE_PREFIX", "no spaces")])),
            Err(ConfigError::Invalid { .. })
        ));
        assert_eq!(
            bus_name(&environment(&[("OPX_BUS_NAME", "opx-bus")])).unwrap(),
            "opx-bus"
        );
        assert!(bus_name(&environment(&[("OPX_BUS_NAME", "bus name")])).is_err());
        assert_eq!(
            sweep_age_ms(&environment(&[])).unwrap(),
            SWEEP_AGE_MS_DEFAULT
        );
        assert_eq!(
            sweep_age_ms(&environment(&[("OPX_SWEEP_AGE_MS", "60000")])).unwrap(),
            60_000
        );
        let error = sweep_age_ms(&environment(&[("OPX_SWEEP_AGE_MS", "5m")])).unwrap_err();
        assert!(error.to_string().contains("OPX_SWEEP_AGE_MS"), "{error}");
    }

    #[test]
    fn the_built_in_rules_load() {
        pipeline_config().unwrap();
    }
}
