//! Where `incidents`, `show` and the human actions run: a local store
//! ([`crate::human::LocalBackend`]) or the incident API ([`crate::client::ApiClient`]).
//! Both answer with the same rows and views, so each command is written once over
//! [`IncidentBackend`] and prints the same output on both.

use crate::query::{self, IncidentRow, ShowView};
use crate::EXIT_OK;
use opx_app::human::HumanAction;
use opx_domain::incident::IncidentState;

/// What a backend of the incident commands provides.
// Used only with static dispatch inside this binary, so the futures' auto traits need no
// bound.
#[allow(async_fn_in_trait)]
pub trait IncidentBackend {
    /// Who acts, as this backend knows them: a local principal, or the `Idempotency-Key`
    /// of an API request (the principal is whoever signs it).
    type Actor;

    /// The actor of `--as` and `--idempotency-key`, refusing the flag this backend has no
    /// use for (a usage error, before anything is opened).
    fn actor(
        as_name: Option<String>,
        idempotency_key: Option<String>,
    ) -> anyhow::Result<Self::Actor>;

    /// Every incident matching the filters, oldest first (the id breaking ties).
    async fn incidents(
        &self,
        state: Option<IncidentState>,
        service: Option<&str>,
    ) -> anyhow::Result<Vec<IncidentRow>>;

    /// The `opx show` view of an incident given by id or unique prefix.
    async fn show(&self, id: &str) -> anyhow::Result<ShowView>;

    /// The row of an incident given by id or unique prefix (its `id` is the full one).
    async fn current(&self, id: &str) -> anyhow::Result<IncidentRow>;

    /// Runs `action` on the incident with the full id `incident_id`; the row after it.
    async fn execute(
        &self,
        incident_id: &str,
        action: &HumanAction,
        actor: &Self::Actor,
    ) -> anyhow::Result<IncidentRow>;

    /// Releases what the backend holds (SQLite checkpoints its log into the file).
    fn close(self) -> anyhow::Result<()>;
}

/// One human action as the command line asks for it.
#[derive(Clone, Debug)]
pub struct Requested {
    /// Incident id, or a unique prefix.
    pub id: String,
    /// The action; a transition's expected version is a placeholder when
    /// `expected_version_given` is false.
    pub action: HumanAction,
    /// `--expected-version` was given. Without it the incident's current lifecycle version
    /// is used, and said so on stderr.
    pub expected_version_given: bool,
    /// `--as NAME`.
    pub as_name: Option<String>,
    /// `--idempotency-key KEY`.
    pub idempotency_key: Option<String>,
}

/// What an incident command does, whichever backend runs it.
#[derive(Clone, Debug)]
pub enum Work {
    /// `opx incidents`.
    List {
        /// `--state`.
        state: Option<IncidentState>,
        /// `--service`.
        service: Option<String>,
    },
    /// `opx show ID`.
    Show {
        /// Incident id or unique prefix.
        id: String,
    },
    /// `opx transition|note|assign|severity ID …`.
    Act(Requested),
}

/// Runs `work` on the backend `opening` yields, after the flags are checked.
pub async fn run<B: IncidentBackend>(
    opening: impl std::future::Future<Output = anyhow::Result<B>>,
    work: Work,
    json: bool,
) -> anyhow::Result<u8> {
    let actor = match &work {
        Work::Act(requested) => Some(B::actor(
            requested.as_name.clone(),
            requested.idempotency_key.clone(),
        )?),
        Work::List { .. } | Work::Show { .. } => None,
    };
    let backend = opening.await?;
    let result = match (work, actor) {
        (Work::List { state, service }, _) => list(&backend, state, service.as_deref(), json).await,
        (Work::Show { id }, _) => show(&backend, &id, json).await,
        (Work::Act(requested), Some(actor)) => act(&backend, requested, &actor, json).await,
        (Work::Act(_), None) => Err(anyhow::anyhow!("a human action without an actor")),
    };
    backend.close()?;
    result
}

async fn list<B: IncidentBackend>(
    backend: &B,
    state: Option<IncidentState>,
    service: Option<&str>,
    json: bool,
) -> anyhow::Result<u8> {
    let rows = backend.incidents(state, service).await?;
    query::print_incidents(&rows, json)?;
    Ok(EXIT_OK)
}

async fn show<B: IncidentBackend>(backend: &B, id: &str, json: bool) -> anyhow::Result<u8> {
    let view = backend.show(id).await?;
    query::print_show(&view, json)?;
    Ok(EXIT_OK)
}

async fn act<B: IncidentBackend>(
    backend: &B,
    requested: Requested,
    actor: &B::Actor,
    json: bool,
) -> anyhow::Result<u8> {
    let before = backend.current(&requested.id).await?;
    let mut action = requested.action;
    if !requested.expected_version_given {
        if let Some(expected) = action.expected_version_mut() {
            eprintln!(
                "note: no --expected-version given; using the current lifecycle version {} \
                 (pass --expected-version to refuse the change if someone else moved it first)",
                before.version
            );
            *expected = before.version;
        }
    }
    let after = backend.execute(&before.id, &action, actor).await?;
    if json {
        println!("{}", serde_json::to_string(&after)?);
    } else {
        println!(
            "incident {}: {} {} → {} {}, lifecycle version {}",
            after.id, before.state, before.severity, after.state, after.severity, after.version
        );
    }
    Ok(EXIT_OK)
}
