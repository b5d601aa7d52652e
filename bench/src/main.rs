//! `wayguard-bench`: the xDS scale scenario of `cargo xtask bench`.
//!
//! N simulated ADS clients (one process, ACKing like Envoy) across G gateways plus one real
//! Envoy with a prober, against a `wayguard serve` on a generated directory; one
//! AuthorizationPolicy of gateway 0 is rewritten K times. Prints figures and the goals side by
//! side. It never fails on timing: the exit code is non-zero only when something is broken
//! (clients never synced, Envoy never enforced, wayguard died).

mod ads;
mod deps;
mod http;
mod observe;
mod probe;
mod procs;
mod report;
mod scenario;
mod setup;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

/// xDS scale benchmark against `wayguard serve` (figures, never pass/fail on timing).
#[derive(Parser, Debug)]
#[command(name = "wayguard-bench")]
struct Args {
    /// Simulated ADS clients, spread round-robin over the gateways.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Gateways in the generated configuration.
    #[arg(long, default_value_t = 10)]
    gateways: usize,
    /// Policy changes (rewrites of gateway 0's AuthorizationPolicy).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Use Delta ADS (simulated clients and the real Envoy) instead of state-of-the-world.
    #[arg(long)]
    delta: bool,
    /// How the policy file is rewritten.
    #[arg(long, value_enum, default_value = "atomic")]
    write_mode: setup::WriteMode,
    /// Envoy binary (default: $WAYGUARD_ENVOY, else tools.env from `cargo xtask tools --envoy`).
    #[arg(long)]
    envoy: Option<PathBuf>,
    /// Run without the real Envoy and prober.
    #[arg(long)]
    no_envoy: bool,
    /// wayguard binary (default: `wayguard` next to this executable).
    #[arg(long)]
    wayguard: Option<PathBuf>,
    /// Keep the generated config, logs and bench.json here (default: a temporary directory,
    /// removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Prober request interval, milliseconds.
    #[arg(long, default_value_t = 5)]
    probe_interval_ms: u64,
    /// Pause after each round before the next change, milliseconds (longer than wayguard's
    /// debounce, so every change is an isolated one).
    #[arg(long, default_value_t = 300)]
    pause_ms: u64,
    /// wayguard's log filter (`--log`); `debug` logs every push.
    #[arg(long, default_value = "info")]
    wayguard_log: String,
    /// Extra environment for wayguard, KEY=VALUE (repeatable; e.g. MALLOC_ARENA_MAX=2 to see
    /// how much of the memory per client is allocator arenas).
    #[arg(long = "wayguard-env", value_parser = key_value)]
    wayguard_env: Vec<(String, String)>,
    /// Clients connecting (and doing their initial sync) at the same time.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Deadline for all clients to sync, seconds.
    #[arg(long, default_value_t = 180)]
    sync_timeout_s: u64,
    /// Deadline per round (all affected clients ACKed and Envoy enforcing), seconds.
    #[arg(long, default_value_t = 10)]
    round_timeout_s: u64,
    /// Extensions listed in each simulated client's node. Envoy 1.40.0 lists 516 (about 60 KB
    /// of its first request); 0 sends a minimal node.
    #[arg(long, default_value_t = 516)]
    node_extensions: usize,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(args));
    // Client tasks are still attached to closed streams: do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs the scenario and prints the report; `Ok(false)` when the run was broken.
async fn run(args: Args) -> Result<bool> {
    if args.gateways == 0 || args.clients == 0 {
        anyhow::bail!("--gateways and --clients must be at least 1");
    }
    let temp;
    let work_dir = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::path::absolute(dir)?
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("wayguard-bench-")
                .tempdir()
                .context("creating a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let options = scenario::Options {
        clients: args.clients,
        gateways: args.gateways,
        rounds: args.rounds,
        delta: args.delta,
        write_mode: args.write_mode,
        envoy: args.envoy,
        no_envoy: args.no_envoy,
        wayguard: args.wayguard,
        work_dir: work_dir.clone(),
        probe_interval: Duration::from_millis(args.probe_interval_ms.max(1)),
        pause: Duration::from_millis(args.pause_ms),
        log_level: args.wayguard_log,
        wayguard_env: args.wayguard_env,
        connect_concurrency: args.connect_concurrency,
        sync_timeout: Duration::from_secs(args.sync_timeout_s),
        round_timeout: Duration::from_secs(args.round_timeout_s),
        node_extensions: args.node_extensions,
    };
    let measurements = scenario::run(options).await?;
    let (text, json) = summary::summarize(&measurements);
    println!("{text}");
    if args.work_dir.is_some() {
        let path = work_dir.join("bench.json");
        let pretty = serde_json::to_string_pretty(&json)?;
        std::fs::write(&path, pretty + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "figures: {}; logs in {}",
            path.display(),
            work_dir.display()
        );
    }
    Ok(measurements.broken.is_none())
}
