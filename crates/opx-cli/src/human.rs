//! Human actions from the command line: transition, note, assign, severity.

use crate::publish::CliPublisher;
use crate::{config, query, store, GlobalArgs, UsageError, EXIT_OK};
use opx_app::pipeline::{Pipeline, PipelineError};
use opx_app::ports::Clock;
use opx_domain::incident::{CloseAs, IncidentCommand, IncidentError, IncidentState, Principal};
use opx_domain::signal::Severity;

/// The name a local principal gets when neither `--as` nor `$USER` gives one.
pub const DEFAULT_OPERATOR_NAME: &str = "operator";

pub use opx_app::ports::SystemClock;

/// A transition request from the command line.
#[derive(Clone, Debug)]
pub struct TransitionRequest {
    /// Target state.
    pub to: IncidentState,
    /// Why.
    pub reason: String,
    /// The lifecycle version the person saw, if given.
    pub expected_version: Option<u64>,
    /// How a close ends.
    pub close_as: Option<CloseAs>,
    /// What fixed it.
    pub resolution_summary: Option<String>,
}

/// One human action.
#[derive(Clone, Debug)]
pub enum Action {
    /// Move along the lifecycle.
    Transition(TransitionRequest),
    /// Add a note.
    Note(String),
    /// Assign someone.
    Assign(String),
    /// Set the severity, with a reason.
    Severity(Severity, String),
}

/// The local principal for `--as NAME`, else `$USER`, else [`DEFAULT_OPERATOR_NAME`].
// Reading `$USER` for the default name is this command's job; the workspace lint against
// the environment exists for the pure domain crate.
#[allow(clippy::disallowed_methods)]
pub fn local_principal(as_name: Option<String>) -> anyhow::Result<Principal> {
    let name = as_name
        .or_else(|| {
            std::env::var("USER")
                .ok()
                .filter(|user| !user.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_OPERATOR_NAME.to_owned());
    Principal::local(&name).map_err(|error| UsageError(format!("--as {name:?}: {error}")).into())
}

/// Runs one human action against the store named by the global flags.
pub async fn run(
    global: &GlobalArgs,
    id: &str,
    as_name: Option<String>,
    action: Action,
) -> anyhow::Result<u8> {
    let principal = local_principal(as_name)?;
    let config = config::pipeline_config(global.rules.as_deref())?;
    let store = store::open(&global.store)?;
    let incident_id = query::resolve_incident_id(&store, id).await?;
    let publisher = CliPublisher::open(global.bus.as_deref()).await;
    let pipeline = Pipeline::new(&store, &publisher, &config);
    let before = pipeline
        .load_incident(&incident_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no incident {incident_id}; see `opx incidents`"))?;
    let at = SystemClock.now();
    let command = match action {
        Action::Transition(request) => {
            let expected = match request.expected_version {
                Some(version) => version,
                None => {
                    eprintln!(
                        "note: no --expected-version given; using the current lifecycle version {} \
                         (pass --expected-version to refuse the change if someone else moved it first)",
                        before.lifecycle_version
                    );
                    before.lifecycle_version
                }
            };
            IncidentCommand::Transition {
                principal,
                at,
                to: request.to,
                reason: request.reason,
                expected_lifecycle_version: expected,
                close_as: request.close_as,
                resolution_summary: request.resolution_summary,
            }
        }
        Action::Note(text) => IncidentCommand::AddNote {
            principal,
            at,
            text,
        },
        Action::Assign(assignee) => IncidentCommand::Assign {
            principal,
            at,
            assignee,
        },
        Action::Severity(severity, reason) => IncidentCommand::SetSeverity {
            principal,
            at,
            severity,
            reason,
        },
    };
    let after = match pipeline.execute_human(&incident_id, &command).await {
        Ok(after) => after,
        Err(PipelineError::Incident(IncidentError::VersionConflict { expected, actual })) => {
            store.close()?;
            return Err(crate::Refused(format!(
                "conflict: incident {incident_id} is at lifecycle version {actual}, not {expected}: \
                 someone changed it since you looked; run `opx show {}` and retry if it still makes sense",
                query::short(&incident_id.to_string())
            ))
            .into());
        }
        Err(error) => {
            store.close()?;
            return Err(crate::Refused(format!("refused: {error}")).into());
        }
    };
    if global.json {
        println!(
            "{}",
            serde_json::to_string(&query::IncidentRow::from(&after))?
        );
    } else {
        println!(
            "incident {}: {} {} → {} {}, lifecycle version {}",
            after.id,
            before.state,
            before.severity,
            after.state,
            after.severity,
            after.lifecycle_version
        );
    }
    store.close()?;
    Ok(EXIT_OK)
}
