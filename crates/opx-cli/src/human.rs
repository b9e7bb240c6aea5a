//! The incident commands on a local store: `incidents`, `show` and the human actions
//! (transition, note, assign, severity), run in process by the same pipeline the API uses.

use crate::backend::IncidentBackend;
use crate::publish::CliPublisher;
use crate::query::{IncidentRow, ShowView};
use crate::store::AnyStore;
use crate::{config, query, store, GlobalArgs, UsageError};
use opx_app::human::HumanAction;
use opx_app::pipeline::{Pipeline, PipelineError};
use opx_app::ports::{Clock, NoPublisher};
use opx_domain::incident::{IncidentError, IncidentState, Principal};

/// The name a local principal gets when neither `--as` nor `$USER` gives one.
pub const DEFAULT_OPERATOR_NAME: &str = "operator";

pub use opx_app::ports::SystemClock;

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

/// The incident commands over the local store named by the global flags.
pub struct LocalBackend {
    global: GlobalArgs,
    store: AnyStore,
}

impl LocalBackend {
    /// Opens the store of `--store`.
    pub fn open(global: &GlobalArgs) -> anyhow::Result<LocalBackend> {
        Ok(LocalBackend {
            global: global.clone(),
            store: store::open(&global.store)?,
        })
    }
}

impl IncidentBackend for LocalBackend {
    type Actor = Principal;

    fn actor(
        as_name: Option<String>,
        idempotency_key: Option<String>,
    ) -> anyhow::Result<Principal> {
        if idempotency_key.is_some() {
            return Err(UsageError(
                "--idempotency-key goes with --endpoint; a local action runs once by itself"
                    .to_owned(),
            )
            .into());
        }
        local_principal(as_name)
    }

    async fn incidents(
        &self,
        state: Option<IncidentState>,
        service: Option<&str>,
    ) -> anyhow::Result<Vec<IncidentRow>> {
        query::list_incidents(&self.store, state, service).await
    }

    async fn show(&self, id: &str) -> anyhow::Result<ShowView> {
        let config = config::pipeline_config(self.global.rules.as_deref())?;
        let incident_id = query::resolve_incident_id(&self.store, id).await?;
        query::show(&self.store, &config, &incident_id).await
    }

    async fn current(&self, id: &str) -> anyhow::Result<IncidentRow> {
        let config = config::pipeline_config(self.global.rules.as_deref())?;
        let incident_id = query::resolve_incident_id(&self.store, id).await?;
        let incident = Pipeline::new(&self.store, &NoPublisher, &config)
            .load_incident(&incident_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no incident {incident_id}; see `opx incidents`"))?;
        Ok(IncidentRow::from(&incident))
    }

    async fn execute(
        &self,
        incident_id: &str,
        action: &HumanAction,
        principal: &Principal,
    ) -> anyhow::Result<IncidentRow> {
        let incident_id = query::resolve_incident_id(&self.store, incident_id).await?;
        let config = config::pipeline_config(self.global.rules.as_deref())?;
        let publisher = CliPublisher::open(self.global.bus.as_deref()).await;
        let pipeline = Pipeline::new(&self.store, &publisher, &config);
        let command = action.command(principal.clone(), SystemClock.now());
        match pipeline.execute_human(&incident_id, &command).await {
            Ok(after) => Ok(IncidentRow::from(&after)),
            Err(PipelineError::Incident(IncidentError::VersionConflict { expected, actual })) => {
                Err(crate::Refused(format!(
                    "conflict: incident {incident_id} is at lifecycle version {actual}, not {expected}: \
                     someone changed it since you looked; run `opx show {}` and retry if it still makes sense",
                    query::short(&incident_id.to_string())
                ))
                .into())
            }
            Err(error) => Err(crate::Refused(format!("refused: {error}")).into()),
        }
    }

    fn close(self) -> anyhow::Result<()> {
        Ok(self.store.close()?)
    }
}
