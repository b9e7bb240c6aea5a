//! `opx serve`: the incident API on this machine, over the configured store.
//!
//! The same router as the `incident-api` Lambda function, with two differences: every
//! request is authenticated by verifying its SigV4 signature against the keys of a local
//! credentials file (format in `opx_api::sigv4`; default `~/.config/opx/credentials.json`),
//! and `POST /signals` carries the signals through every stage before answering, as `opx
//! ingest` does. It binds to loopback unless told otherwise. Without a credentials file it
//! still starts, says why in its log, and refuses every request with 401: nobody can act
//! until an operator creates the file, and nothing is ever served unauthenticated.

use crate::{config, store, GlobalArgs, UsageError, EXIT_OK};
use opx_api::auth::{Authenticator, RefuseAll};
use opx_api::signals::AfterIngest;
use opx_api::sigv4::{LocalCredentials, SigV4Authenticator, DEFAULT_CREDENTIALS_PATH};
use opx_api::{ApiState, SystemClock};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where `opx serve` listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Largest credentials file read, in bytes.
pub const CREDENTIALS_FILE_LEN_MAX: u64 = 1024 * 1024;

/// The credentials file to use: `--credentials`, else `~/.config/opx/credentials.json`.
// Reading $HOME for the default path is this command's job.
#[allow(clippy::disallowed_methods)]
pub fn credentials_path(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(|home| PathBuf::from(home).join(DEFAULT_CREDENTIALS_PATH))
    })
}

/// The authenticator for `path`: SigV4 over its keys; a missing file (or no path at all)
/// refuses everyone, saying why; an unreadable or invalid file is a usage error (exit 2),
/// since the operator named or wrote something wrong and should see it at once.
// Reading the credentials file is this command's job.
#[allow(clippy::disallowed_methods)]
pub fn authenticator(path: Option<&Path>) -> anyhow::Result<Arc<dyn Authenticator>> {
    let Some(path) = path else {
        let reason = "opx serve has no credentials file (no --credentials and no $HOME): every request is refused; \
                      restart it with --credentials FILE"
            .to_owned();
        tracing::error!("{reason}");
        return Ok(Arc::new(RefuseAll { reason }));
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let reason = format!(
                "opx serve has no credentials file at {}: every request is refused with 401; create it \
                 (format: {{\"opx_credentials_version\":1,\"keys\":[{{\"access_key_id\",\"secret_access_key\",\"principal\",\"roles\"}}]}}, \
                 see `opx serve --help`) and restart",
                path.display()
            );
            tracing::error!("{reason}");
            return Ok(Arc::new(RefuseAll {
                reason: "this server has no credentials file yet, so no request can be authenticated; ask its operator".to_owned(),
            }));
        }
        Err(error) => {
            return Err(UsageError(format!(
                "--credentials {}: cannot read it: {error}",
                path.display()
            ))
            .into())
        }
    };
    if metadata.len() > CREDENTIALS_FILE_LEN_MAX {
        return Err(UsageError(format!(
            "--credentials {}: {} bytes, more than {CREDENTIALS_FILE_LEN_MAX}",
            path.display(),
            metadata.len()
        ))
        .into());
    }
    warn_if_readable_by_others(path, &metadata);
    let bytes = std::fs::read(path).map_err(|error| {
        UsageError(format!(
            "--credentials {}: cannot read it: {error}",
            path.display()
        ))
    })?;
    let credentials = LocalCredentials::parse(&bytes)
        .map_err(|error| UsageError(format!("--credentials {}: {error}", path.display())))?;
    tracing::info!(keys = credentials.len(), path = %path.display(), "credentials loaded");
    Ok(Arc::new(SigV4Authenticator::new(
        credentials,
        Arc::new(SystemClock),
    )))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, metadata: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            "the credentials file is readable by other users; run `chmod 600` on it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path, _metadata: &std::fs::Metadata) {}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("stopping: finishing the requests in flight");
}

/// `opx serve`: serves until Ctrl-C or SIGTERM, then closes the store.
pub async fn run(
    global: &GlobalArgs,
    listen: SocketAddr,
    credentials: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let pipeline_config = config::pipeline_config(global.rules.as_deref())?;
    let authenticator = authenticator(credentials_path(credentials).as_deref())?;
    let store = Arc::new(store::open(&global.store)?);
    if !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "listening beyond loopback: anyone who can reach this address can try; every request still needs a valid signature"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| UsageError(format!("--listen {listen}: cannot listen: {error}")))?;
    let local = listener.local_addr()?;
    // The one line on stdout: scripts (and tests) read the address from it, e.g. after
    // `--listen 127.0.0.1:0`.
    println!(
        "opx serve: listening on http://{local} (store {})",
        global.store
    );
    std::io::stdout().flush()?;
    let state = ApiState::new(
        Arc::clone(&store),
        Arc::new(pipeline_config),
        Arc::new(SystemClock),
        authenticator,
        AfterIngest::Drain,
    );
    axum::serve(listener, opx_api::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    match Arc::try_unwrap(store) {
        Ok(store) => store.close()?,
        Err(_) => tracing::warn!("the store is still in use at shutdown; it was not checkpointed"),
    }
    Ok(EXIT_OK)
}
