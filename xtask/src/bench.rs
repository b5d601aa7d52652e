//! `cargo xtask bench`: benchmarks. They print figures and ratios; they never fail on timing.
//!
//! 1. `cargo bench -p wayguard-translate` (translation micro-benchmarks).
//! 2. The xDS scale scenario (`bench/`, package `wayguard-bench`): builds `wayguard` and
//!    `wayguard-bench` in release mode, installs Envoy if needed (`cargo xtask tools --envoy`),
//!    and runs N simulated ADS clients across G gateways plus one real Envoy against
//!    `wayguard serve`. Extra arguments for it come from `WAYGUARD_BENCH_ARGS` (whitespace
//!    separated, e.g. `--clients 200 --delta --work-dir /tmp/wb`); see `wayguard-bench --help`.
//!    It exits non-zero only when something is broken (e.g. Envoy never enforced).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Packages with `cargo bench` benchmarks.
const PACKAGES: &[&str] = &["wayguard-translate"];

/// Runs every benchmark in release mode.
pub fn run() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = crate::crds::repo_root();
    for package in PACKAGES {
        println!("==> bench {package}");
        let status = Command::new(&cargo)
            .args(["bench", "--locked", "-p", package])
            .current_dir(&root)
            .status()
            .with_context(|| format!("running cargo bench -p {package}"))?;
        if !status.success() {
            bail!("`cargo bench -p {package}` failed ({status})");
        }
    }
    xds_scale(&cargo, &root)
}

/// The xDS scale scenario: release builds of `wayguard` and `wayguard-bench`, then the run.
fn xds_scale(cargo: &str, root: &std::path::Path) -> Result<()> {
    println!("==> bench xds-scale: building wayguard and wayguard-bench (release)");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "wayguard",
            "-p",
            "wayguard-bench",
        ])
        .current_dir(root)
        .status()
        .context("running cargo build --release -p wayguard -p wayguard-bench")?;
    if !status.success() {
        bail!("building wayguard and wayguard-bench failed ({status})");
    }
    let tools = crate::tools::ensure(crate::tools::ToolsArgs {
        envoy: true,
        ..Default::default()
    })
    .context("installing Envoy for the xDS scale benchmark")?;
    let release = target_dir(root).join("release");
    let bench = release.join("wayguard-bench");
    let extra = std::env::var("WAYGUARD_BENCH_ARGS").unwrap_or_default();
    let mut cmd = Command::new(&bench);
    cmd.arg("--wayguard")
        .arg(release.join("wayguard"))
        .arg("--envoy")
        .arg(&tools.envoy)
        .args(extra.split_whitespace())
        .current_dir(root);
    println!("==> bench xds-scale: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("running {}", bench.display()))?;
    if !status.success() {
        bail!("the xDS scale benchmark reported a broken run ({status}); see its output above");
    }
    Ok(())
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the repository root), else
/// `<root>/target`.
fn target_dir(root: &std::path::Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}
