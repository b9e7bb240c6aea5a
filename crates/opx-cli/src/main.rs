//! `opx`: the embedded control plane of opx on one machine.
//!
//! The command runs the same stage handlers as the Lambda functions, in process, over a
//! SQLite store. Its flags, exit codes and `--json` shapes are a contract scripts rely on:
//! - exit 0: done, nothing rejected;
//! - exit 1: done, but something was refused (a rejected payload, a stale version, a
//!   transition the lifecycle does not allow, an unknown incident, a failed check);
//! - exit 2: usage error (bad flags, an unsupported store, an unreadable rules directory).
//!
//! Results go to stdout (human text, or one JSON document with `--json`); logs, progress
//! and `rejected FILE:INDEX: field: reason` lines go to stderr.
//!
//! `opx serve` exposes the incident API over the configured store on loopback; with
//! `--endpoint URL`, `incidents`, `show`, `transition`, `note`, `assign` and `severity` talk
//! to that API (or a deployed API Gateway stage) instead of a local store, signing every
//! request with SigV4 from the standard AWS credential chain, with the same output.

// A command-line tool prints by design; the workspace lints exist for library code.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backend;
mod client;
mod config;
mod demo;
mod human;
mod ingest;
mod publish;
mod query;
mod reader;
mod serve;
mod store;
mod verify;
mod whatif;

use clap::{Args, Parser, Subcommand, ValueEnum};
use opx_app::human::{
    AssigneeRequest, HumanAction, NoteRequest, SeverityRequest, TransitionRequest,
};
use opx_domain::incident::{CloseAs, IncidentState};
use opx_domain::signal::Severity;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code when the command did its work and nothing was refused.
pub const EXIT_OK: u8 = 0;
/// Exit code when something was refused or a check failed.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code for usage errors.
pub const EXIT_USAGE: u8 = 2;

/// The control plane for operational incidents: signals in, one incident per outage,
/// every decision recorded and replayable.
#[derive(Debug, Parser)]
#[command(name = "opx", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Where the store lives: `sqlite:PATH` (`dynamodb:PREFIX` comes with the AWS adapters).
    #[arg(
        long,
        global = true,
        env = "OPX_STORE",
        default_value = "sqlite:./opx.db"
    )]
    pub store: String,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Also announce every commit on this EventBridge bus (as the `fanout` function does on
    /// AWS). Without it the command runs every stage in process and publishes nothing.
    #[arg(long, global = true, env = "OPX_BUS", value_name = "NAME")]
    pub bus: Option<String>,
    /// A directory of rule files (`*.yaml`) to use instead of the built-in default rules
    /// (for `replay what-if`: the proposed rules).
    #[arg(long, global = true, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Work through the incident API at this URL instead of a local store (`incidents`,
    /// `show`, `transition`, `note`, `assign`, `severity`), e.g. http://127.0.0.1:8080 (`opx
    /// serve`) or https://ID.execute-api.REGION.amazonaws.com/prod. Requests are signed with
    /// SigV4 from the standard AWS credential chain; you act as that principal.
    #[arg(long, global = true, env = "OPX_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the store's schema if it is missing (idempotent).
    Init,
    /// Run a narrated alarm storm through a fresh temporary store and check the outcome.
    Demo {
        /// Keep the demo store at this path (must not exist yet) instead of deleting it.
        #[arg(long, value_name = "PATH")]
        keep: Option<PathBuf>,
    },
    /// Ingest payloads (one payload, a JSON array, or NDJSON per file; `-` is stdin) and
    /// carry them through every stage.
    Ingest {
        /// Input files; none or `-` reads stdin.
        #[arg(value_name = "FILE|-")]
        files: Vec<String>,
    },
    /// Carry pending work (e.g. after a crash) through every stage.
    Resume,
    /// List incidents.
    Incidents {
        /// Only incidents in this state.
        #[arg(long, value_enum, ignore_case = true)]
        state: Option<StateArg>,
        /// Only incidents of this service.
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
    },
    /// Show one incident: evidence, promotion decisions with confidence, and timeline.
    Show {
        /// Incident id, or a unique prefix of at least 8 hex characters.
        id: String,
    },
    /// Move an incident along its lifecycle.
    Transition {
        /// Incident id, or a unique prefix of at least 8 hex characters.
        id: String,
        /// Target state.
        #[arg(long, value_enum, ignore_case = true)]
        to: StateArg,
        /// Why.
        #[arg(long)]
        reason: String,
        /// The lifecycle version you saw; the transition is refused if it moved since.
        /// Without it the current version is used (and said so on stderr).
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
        /// Your name (principal `local:NAME`); default `$USER`, else `operator`.
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        /// How a transition to CLOSED ends the incident.
        #[arg(long, value_enum)]
        close_as: Option<CloseAsArg>,
        /// What fixed it (when resolving; required for SEV1).
        #[arg(long, value_name = "TEXT")]
        resolution_summary: Option<String>,
        /// With --endpoint: the Idempotency-Key to send (default: a fresh one). Send the
        /// same key again to retry this very action safely.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Add a note to an incident's timeline.
    Note {
        /// Incident id or unique prefix.
        id: String,
        /// The note.
        text: String,
        /// Your name (principal `local:NAME`).
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        /// With --endpoint: the Idempotency-Key to send (default: a fresh one).
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Assign an incident to someone.
    Assign {
        /// Incident id or unique prefix.
        id: String,
        /// Who takes it.
        name: String,
        /// Your name (principal `local:NAME`).
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        /// With --endpoint: the Idempotency-Key to send (default: a fresh one).
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Set an incident's severity (later evidence no longer changes it).
    Severity {
        /// Incident id or unique prefix.
        id: String,
        /// SEV1 (worst) to SEV4.
        #[arg(value_enum, ignore_case = true)]
        severity: SeverityArg,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Your name (principal `local:NAME`).
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        /// With --endpoint: the Idempotency-Key to send (default: a fresh one).
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Replay: verify the store against its own events.
    Replay {
        #[command(subcommand)]
        command: ReplayCommand,
    },
    /// Serve the incident API over the store (loopback by default), every request
    /// authenticated by its SigV4 signature.
    #[command(long_about = SERVE_LONG_ABOUT)]
    Serve {
        /// Where to listen. Loopback unless you say otherwise.
        #[arg(long, value_name = "ADDRESS:PORT", default_value = serve::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// The credentials file (access keys → principal and roles); default
        /// ~/.config/opx/credentials.json.
        #[arg(long, env = "OPX_CREDENTIALS", value_name = "FILE")]
        credentials: Option<PathBuf>,
    },
}

const SERVE_LONG_ABOUT: &str = "\
Serve the incident API (the same router as the incident-api Lambda function, api/openapi.yaml) \
over the store, listening on loopback unless --listen says otherwise. Every request must be \
signed with SigV4 (service execute-api, any region) by a key of the credentials file: unsigned, \
stale (more than 5 minutes of clock skew) or badly signed requests get 401/403. Without a \
credentials file the server starts, says why in its log, and refuses every request.

The credentials file (JSON, keep it chmod 600):

  {\"opx_credentials_version\": 1,
   \"keys\": [{\"access_key_id\": \"AKOPXLOCALALICE0001\",
             \"secret_access_key\": \"(20 to 256 printable characters)\",
             \"principal\": \"local:alice\",
             \"roles\": [\"responder\", \"approver\"]}]}

Roles: reader (GETs), responder (transitions except to CLOSED, notes, assignee, severity), \
approver (responder + close), ingester (POST /signals). A client uses the same key pair, e.g. \
AWS_ACCESS_KEY_ID=AKOPXLOCALALICE0001 AWS_SECRET_ACCESS_KEY=... opx --endpoint http://127.0.0.1:8080 incidents";

#[derive(Debug, Subcommand)]
enum ReplayCommand {
    /// Verify every chain, projection and decision.
    Verify,
    /// Run the recorded signals through the proposed rules (`--rules DIR`) and/or model
    /// (`--model FILE`) in scratch stores and print how the incidents would differ.
    /// Exit 0: no difference; 1: a difference; 2: error.
    WhatIf(whatif::WhatIfArgs),
}

/// An incident state on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StateArg {
    /// OPEN
    Open,
    /// ACKNOWLEDGED
    Acknowledged,
    /// MITIGATING
    Mitigating,
    /// RESOLVED
    Resolved,
    /// CLOSED
    Closed,
}

impl From<StateArg> for IncidentState {
    fn from(state: StateArg) -> IncidentState {
        match state {
            StateArg::Open => IncidentState::Open,
            StateArg::Acknowledged => IncidentState::Acknowledged,
            StateArg::Mitigating => IncidentState::Mitigating,
            StateArg::Resolved => IncidentState::Resolved,
            StateArg::Closed => IncidentState::Closed,
        }
    }
}

/// How a close ends an incident, on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CloseAsArg {
    /// A real incident, resolved.
    Resolved,
    /// Not a real incident.
    FalsePositive,
}

impl From<CloseAsArg> for CloseAs {
    fn from(close_as: CloseAsArg) -> CloseAs {
        match close_as {
            CloseAsArg::Resolved => CloseAs::Resolved,
            CloseAsArg::FalsePositive => CloseAs::FalsePositive,
        }
    }
}

/// A severity on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SeverityArg {
    /// Worst.
    Sev1,
    /// Major.
    Sev2,
    /// Minor.
    Sev3,
    /// Informational.
    Sev4,
}

impl From<SeverityArg> for Severity {
    fn from(severity: SeverityArg) -> Severity {
        match severity {
            SeverityArg::Sev1 => Severity::Sev1,
            SeverityArg::Sev2 => Severity::Sev2,
            SeverityArg::Sev3 => Severity::Sev3,
            SeverityArg::Sev4 => Severity::Sev4,
        }
    }
}

/// An error that is the caller's fault (exit 2), as opposed to a refusal (exit 1).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A refusal whose message is already printed or is the whole story (exit 1).
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let usage = error.chain().any(|cause| cause.is::<UsageError>());
            let code = if usage { EXIT_USAGE } else { EXIT_REFUSED };
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let global = cli.global;
    let command = match incident_work(cli.command) {
        Ok(work) => {
            return match global.endpoint.as_deref() {
                Some(endpoint) => {
                    backend::run(client::ApiClient::connect(endpoint), work, global.json).await
                }
                None => {
                    let opening = async { human::LocalBackend::open(&global) };
                    backend::run(opening, work, global.json).await
                }
            };
        }
        Err(command) => *command,
    };
    if global.endpoint.is_some() {
        return Err(UsageError(
            "this command works on a local store (--store); with --endpoint only incidents, show, \
             transition, note, assign and severity are available"
                .to_owned(),
        )
        .into());
    }
    match command {
        Command::Demo { keep } => demo::run(&global, keep).await,
        Command::Init => {
            let store = store::open(&global.store)?;
            store.init().await?;
            if global.json {
                println!(
                    "{}",
                    serde_json::json!({ "store": global.store, "initialized": true })
                );
            } else {
                println!("store {} is ready", global.store);
            }
            store.close()?;
            Ok(EXIT_OK)
        }
        Command::Ingest { files } => {
            let config = config::pipeline_config(global.rules.as_deref())?;
            let store = store::open(&global.store)?;
            let publisher = publish::CliPublisher::open(global.bus.as_deref()).await;
            let code = ingest::run(&store, &publisher, &config, &files, global.json).await;
            store.close()?;
            code
        }
        Command::Resume => {
            let config = config::pipeline_config(global.rules.as_deref())?;
            let store = store::open(&global.store)?;
            let publisher = publish::CliPublisher::open(global.bus.as_deref()).await;
            let code = ingest::resume(&store, &publisher, &config, global.json).await;
            store.close()?;
            code
        }
        Command::Replay {
            command: ReplayCommand::Verify,
        } => verify::replay_verify(&global).await,
        Command::Replay {
            command: ReplayCommand::WhatIf(args),
        } => whatif::run(&global, &args).await,
        Command::Serve {
            listen,
            credentials,
        } => serve::run(&global, listen, credentials).await,
        Command::Incidents { .. }
        | Command::Show { .. }
        | Command::Transition { .. }
        | Command::Note { .. }
        | Command::Assign { .. }
        | Command::Severity { .. } => Err(anyhow::anyhow!(
            "an incident command reached the local-only commands"
        )),
    }
}

/// The commands that work on a local store and through `--endpoint` alike, as the work
/// they ask for; any other command back as it is.
fn incident_work(command: Command) -> Result<backend::Work, Box<Command>> {
    let act = |id: String,
               action: HumanAction,
               expected_version_given: bool,
               as_name: Option<String>,
               idempotency_key: Option<String>| {
        backend::Work::Act(backend::Requested {
            id,
            action,
            expected_version_given,
            as_name,
            idempotency_key,
        })
    };
    Ok(match command {
        Command::Incidents { state, service } => backend::Work::List {
            state: state.map(Into::into),
            service,
        },
        Command::Show { id } => backend::Work::Show { id },
        Command::Transition {
            id,
            to,
            reason,
            expected_version,
            as_name,
            close_as,
            resolution_summary,
            idempotency_key,
        } => {
            let request = TransitionRequest {
                to: to.into(),
                reason,
                // Replaced by the current version when not given.
                expected_version: expected_version.unwrap_or_default(),
                close_as: close_as.map(Into::into),
                resolution_summary,
            };
            let given = expected_version.is_some();
            let action = HumanAction::Transition(request);
            act(id, action, given, as_name, idempotency_key)
        }
        Command::Note {
            id,
            text,
            as_name,
            idempotency_key,
        } => act(
            id,
            HumanAction::Note(NoteRequest { text }),
            true,
            as_name,
            idempotency_key,
        ),
        Command::Assign {
            id,
            name,
            as_name,
            idempotency_key,
        } => act(
            id,
            HumanAction::Assign(AssigneeRequest { assignee: name }),
            true,
            as_name,
            idempotency_key,
        ),
        Command::Severity {
            id,
            severity,
            reason,
            as_name,
            idempotency_key,
        } => {
            let request = SeverityRequest {
                severity: severity.into(),
                reason,
            };
            let action = HumanAction::Severity(request);
            act(id, action, true, as_name, idempotency_key)
        }
        other => return Err(Box::new(other)),
    })
}
