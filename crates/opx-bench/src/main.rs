//! `opx-bench`: end-to-end benchmarks of opx.
//!
//! - `e2e`: N generated signals (storms across M services, five source formats,
//!   redeliveries) through the whole pipeline over a SQLite file; reports signals/s,
//!   incidents, events, store size, peak memory, where the time went, and replay
//!   verification events/s.
//! - `scaling`: `e2e` at N = 10^3, 10^4, 10^5 (and 10^6 with `--with-million`), each in
//!   its own process so peak memory is per size; a table of per-signal cost as N grows.
//!
//! Human text on stdout by default, one JSON document with `--json`. Figures and how to
//! read them: docs/PERFORMANCE.md.

// A benchmark tool prints its results by design, and rates, shares and averages are
// floating point by nature; nothing here is hashed or decided on.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::float_arithmetic)]

mod clock;
#[cfg(feature = "dynamodb")]
mod dynamodb_cost;
mod e2e;
mod generate;
mod group_commit;
mod instrumented;
mod memory;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use e2e::{E2eOptions, E2eReport};
use generate::WorkloadConfig;
use opx_store_sqlite::Synchronous;
use std::path::PathBuf;
use std::process::ExitCode;

/// Signal counts of the `scaling` table.
pub const SCALING_SIZES: [u64; 3] = [1_000, 10_000, 100_000];
/// The on-demand size added by `scaling --with-million`.
pub const SCALING_SIZE_LARGE: u64 = 1_000_000;

/// End-to-end benchmarks of opx (see docs/PERFORMANCE.md).
#[derive(Debug, Parser)]
#[command(name = "opx-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generated storms through the whole pipeline over SQLite, then replay verification.
    E2e(E2eArgs),
    /// `e2e` at N = 10^3, 10^4, 10^5 (10^6 with --with-million): per-signal cost as N grows.
    Scaling(ScalingArgs),
    /// Requests, write and read units per signal, duplicate and human transition against a
    /// DynamoDB endpoint (run under scripts/with-moto), and the monthly cost they imply.
    /// Needs `--features dynamodb`.
    DynamodbCost(CostArgs),
}

#[derive(Debug, Args)]
struct CostArgs {
    /// Distinct signals to run (moto answers about 250 requests/s).
    #[arg(long, default_value_t = 300)]
    signals: u64,
    /// Services the storms spread over.
    #[arg(long, default_value_t = 10)]
    services: u32,
    /// Share of payloads delivered twice, per mille.
    #[arg(long, default_value_t = 20)]
    duplicate_permille: u64,
    /// Seed of the deterministic generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// One JSON document on stdout instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SynchronousArg {
    /// Survives the process being killed at any instant (the opx default).
    Normal,
    /// Also survives power loss: the log is synced at every commit.
    Full,
}

impl From<SynchronousArg> for Synchronous {
    fn from(value: SynchronousArg) -> Synchronous {
        match value {
            SynchronousArg::Normal => Synchronous::Normal,
            SynchronousArg::Full => Synchronous::Full,
        }
    }
}

/// The workload and pipeline settings shared by `e2e` and `scaling`.
#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// Services the storms spread over.
    #[arg(long, default_value_t = 20)]
    services: u32,
    /// Share of payloads delivered twice, per mille.
    #[arg(long, default_value_t = 20)]
    duplicate_permille: u64,
    /// Seed of the deterministic generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Payloads ingested between two drains (1 = drain after every payload, like `opx ingest`).
    #[arg(long, default_value_t = 1)]
    drain_every: u64,
    /// SQLite durability.
    #[arg(long, value_enum, default_value_t = SynchronousArg::Normal)]
    synchronous: SynchronousArg,
    /// Leave incidents open (no responders): one incident per service then grows for ever.
    #[arg(long)]
    no_close: bool,
    /// Skip replay verification.
    #[arg(long)]
    no_verify: bool,
    /// Group commit (prototype): write up to this many steps' commits in one SQLite
    /// transaction (ingests are held until the next drain). Use with --drain-every > 1.
    #[arg(long)]
    group_commit: Option<usize>,
    /// One JSON document on stdout instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct E2eArgs {
    /// Distinct signals to generate.
    #[arg(long, default_value_t = 10_000)]
    signals: u64,
    /// Keep the store file at this (new) path.
    #[arg(long)]
    keep: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct ScalingArgs {
    /// Also run N = 10^6 (minutes, and about a gigabyte of store file).
    #[arg(long)]
    with_million: bool,
    /// Run only sizes up to this N (for quick checks).
    #[arg(long)]
    signals_max: Option<u64>,
    #[command(flatten)]
    run: RunArgs,
}

fn e2e_options(signals: u64, run: &RunArgs, keep: Option<PathBuf>) -> E2eOptions {
    E2eOptions {
        workload: WorkloadConfig {
            signals,
            services: run.services,
            duplicate_permille: run.duplicate_permille,
            seed: run.seed,
        },
        drain_every: run.drain_every,
        synchronous: run.synchronous.into(),
        close_incidents: !run.no_close,
        verify: !run.no_verify,
        keep,
        group_commit: run.group_commit,
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_owned(),
        |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
    )
}

fn print_e2e(report: &E2eReport) {
    println!(
        "opx-bench e2e: {} signals across {} services ({} deliveries, {} redeliveries), SQLite synchronous={}, drain every {} payload(s)",
        report.signals,
        report.services,
        report.deliveries,
        report.duplicates,
        report.synchronous,
        report.drain_every
    );
    if let (Some(width), Some(flushes), Some(commits)) = (
        report.group_commit,
        report.group_flushes,
        report.group_commits,
    ) {
        println!(
            "  group commit: up to {width} steps per transaction; {commits} commits in {flushes} SQLite transactions ({:.1} each)",
            commits as f64 / flushes.max(1) as f64
        );
    }
    println!(
        "  ingest + drain: {:.3} s = {:.0} signals/s ({:.1} µs/signal); {} steps, {} detections",
        report.ingest_drain_seconds,
        report.signals_per_second,
        report.microseconds_per_signal,
        report.steps,
        report.detections
    );
    println!(
        "  incidents: {} opened, {} closed by {} human transitions ({:.1} µs each)",
        report.incidents_opened,
        report.incidents_closed,
        report.human_transitions,
        report.microseconds_per_human_transition
    );
    println!(
        "  events written: {} ({:.1} per signal); store file {:.1} MiB ({:.0} bytes/signal)",
        report.events_written,
        report.events_written as f64 / report.signals.max(1) as f64,
        report.store_bytes as f64 / 1_048_576.0,
        report.store_bytes_per_signal
    );
    println!(
        "  memory: peak resident {} (before the run {})",
        mib(report.peak_rss_kib),
        mib(report.rss_before_kib)
    );
    println!(
        "  time in store commits {:.0}%, in store reads {:.0}%, the rest is the pipeline itself",
        report.commit_share_percent, report.read_share_percent
    );
    for (method, stats) in &report.store_calls {
        println!(
            "    {method:<16} {:>10} calls {:>9.1} µs/call {:>7.2} per signal",
            stats.calls,
            stats.total_ns as f64 / 1000.0 / stats.calls.max(1) as f64,
            stats.calls as f64 / report.signals.max(1) as f64
        );
    }
    if report.left_queued > 0 || report.refused > 0 {
        println!(
            "  WARNING: {} work items left queued, {} items refused",
            report.left_queued, report.refused
        );
    }
    match &report.verify {
        Some(verified) => println!(
            "  replay verify: {} events in {} streams, {} decisions re-derived, {} divergences: {:.3} s = {:.0} events/s",
            verified.events,
            verified.streams,
            verified.decisions_rederived,
            verified.divergences_total,
            verified.seconds,
            verified.events_per_second
        ),
        None => println!("  replay verify: skipped"),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the async runtime")
}

fn e2e(args: E2eArgs) -> anyhow::Result<ExitCode> {
    let options = e2e_options(args.signals, &args.run, args.keep);
    let report = runtime()?.block_on(e2e::run(&options))?;
    if args.run.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_e2e(&report);
    }
    let diverged = report
        .verify
        .as_ref()
        .is_some_and(|verified| verified.divergences_total > 0);
    Ok(if diverged || report.left_queued > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs one size in a child process, so each size's peak memory is its own.
fn scaling_child(signals: u64, run: &RunArgs) -> anyhow::Result<E2eReport> {
    let exe = std::env::current_exe().context("finding the opx-bench executable")?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("e2e")
        .arg("--json")
        .args(["--signals", &signals.to_string()])
        .args(["--services", &run.services.to_string()])
        .args(["--duplicate-permille", &run.duplicate_permille.to_string()])
        .args(["--seed", &run.seed.to_string()])
        .args(["--drain-every", &run.drain_every.to_string()])
        .args([
            "--synchronous",
            match run.synchronous {
                SynchronousArg::Normal => "normal",
                SynchronousArg::Full => "full",
            },
        ]);
    if run.no_close {
        command.arg("--no-close");
    }
    if let Some(width) = run.group_commit {
        command.args(["--group-commit", &width.to_string()]);
    }
    if run.no_verify {
        command.arg("--no-verify");
    }
    let output = command
        .output()
        .with_context(|| format!("running e2e --signals {signals}"))?;
    anyhow::ensure!(
        output.status.success(),
        "e2e --signals {signals} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("reading the JSON report of e2e --signals {signals}"))
}

fn scaling(args: ScalingArgs) -> anyhow::Result<ExitCode> {
    let mut sizes: Vec<u64> = SCALING_SIZES.to_vec();
    if args.with_million {
        sizes.push(SCALING_SIZE_LARGE);
    }
    if let Some(max) = args.signals_max {
        sizes.retain(|size| *size <= max);
    }
    let mut reports = Vec::new();
    if !args.run.json {
        println!(
            "{:>9} {:>11} {:>9} {:>9} {:>10} {:>8} {:>9} {:>11} {:>9} {:>14}",
            "signals",
            "signals/s",
            "µs/signal",
            "incidents",
            "events",
            "store",
            "bytes/sig",
            "peak RSS",
            "commit %",
            "verify ev/s"
        );
    }
    for size in sizes {
        let report = scaling_child(size, &args.run)?;
        if !args.run.json {
            println!(
                "{:>9} {:>11.0} {:>9.1} {:>9} {:>10} {:>6.1}MB {:>9.0} {:>11} {:>9.0} {:>14}",
                report.signals,
                report.signals_per_second,
                report.microseconds_per_signal,
                report.incidents_opened,
                report.events_written,
                report.store_bytes as f64 / 1e6,
                report.store_bytes_per_signal,
                mib(report.peak_rss_kib),
                report.commit_share_percent,
                report.verify.as_ref().map_or_else(
                    || "skipped".to_owned(),
                    |v| format!("{:.0}", v.events_per_second)
                )
            );
        }
        reports.push(report);
    }
    if args.run.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "dynamodb"))]
fn dynamodb_cost(_args: CostArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "this opx-bench was built without the DynamoDB store; run: scripts/with-moto cargo run -p opx-bench --features dynamodb -- dynamodb-cost"
    )
}

#[cfg(feature = "dynamodb")]
fn dynamodb_cost(args: CostArgs) -> anyhow::Result<ExitCode> {
    let options = dynamodb_cost::CostOptions {
        workload: WorkloadConfig {
            signals: args.signals,
            services: args.services,
            duplicate_permille: args.duplicate_permille,
            seed: args.seed,
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(dynamodb_cost::run(&options))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "opx-bench dynamodb-cost: {} signals across {} services, {} duplicate deliveries, {} human transitions, {} incidents ({:.0} s against the endpoint)",
        report.signals,
        report.services,
        report.duplicates,
        report.human_transitions,
        report.incidents_opened,
        report.seconds
    );
    println!(
        "{:<26} {:>9} {:>13} {:>10} {:>10} {:>11}",
        "per", "requests", "transactions", "WRU", "RRU", "bytes put"
    );
    for (name, per) in [
        ("accepted signal (e2e)", &report.per_signal),
        ("duplicate delivery", &report.per_duplicate),
        ("human transition", &report.per_human_transition),
    ] {
        println!(
            "{name:<26} {:>9.2} {:>13.2} {:>10.2} {:>10.2} {:>11.0}",
            per.requests, per.transactions, per.write_units, per.read_units, per.bytes_put
        );
    }
    println!(
        "stored: {:.0} bytes per signal (its share of incidents included); {:.1} events per signal (EventBridge entries)",
        report.stored_bytes_per_signal, report.events_per_signal
    );
    println!(
        "requests by operation (signals): {:?}",
        report.signals_tally.requests
    );
    println!(
        "write actions (signals): {:?}",
        report.signals_tally.write_actions
    );
    let per_item = |tally: &dynamodb_cost::Tally, count: u64| {
        tally
            .write_units_by_item
            .iter()
            .map(|(item, units)| format!("{item} {:.1}", *units as f64 / count.max(1) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "write units per signal by item: {}",
        per_item(&report.signals_tally, report.signals)
    );
    println!(
        "write units per human transition by item: {}",
        per_item(&report.humans_tally, report.human_transitions)
    );
    println!(
        "requests by operation (duplicates): {:?}",
        report.duplicates_tally.requests
    );
    println!(
        "requests by operation (humans): {:?}",
        report.humans_tally.requests
    );
    println!(
        "monthly, on demand at ${}/M WRU and ${}/M RRU (us-east-1, since 2024-11-01), {} days:",
        dynamodb_cost::WRITE_REQUEST_UNITS_PRICE_PER_MILLION_USD,
        dynamodb_cost::READ_REQUEST_UNITS_PRICE_PER_MILLION_USD,
        dynamodb_cost::DAYS_PER_MONTH
    );
    println!(
        "{:>14} {:>14} {:>14} {:>12} {:>14} {:>20} {:>16}",
        "alarms/day",
        "WRU/month",
        "RRU/month",
        "requests $",
        "GB added",
        "storage+PITR $/mo",
        "EventBridge ev"
    );
    for month in &report.monthly {
        println!(
            "{:>14} {:>14.0} {:>14.0} {:>12.2} {:>14.3} {:>20.3} {:>16.0}",
            month.alarms_per_day,
            month.write_units,
            month.read_units,
            month.requests_usd,
            month.storage_added_gb,
            month.storage_usd_per_month_of_data,
            month.eventbridge_events
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::E2e(args) => e2e(args),
        Command::Scaling(args) => scaling(args),
        Command::DynamodbCost(args) => dynamodb_cost(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("opx-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}
