//! `cargo xtask ci`: everything CI runs, in order, failing on the first broken step.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Flags for `cargo xtask ci`.
#[derive(clap::Args)]
pub struct CiArgs {
    /// Skip installing tools (the tiers that need them still fail loudly if they are missing).
    #[arg(long)]
    pub no_tools: bool,
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("==> {name}");
    let start = Instant::now();
    let result = f();
    let secs = start.elapsed().as_secs_f64();
    match &result {
        Ok(()) => println!("==> {name}: ok ({secs:.1}s)"),
        Err(e) => println!("==> {name}: FAILED after {secs:.1}s: {e:#}"),
    }
    result
}

fn cargo(args: &[&str], envs: &[(String, String)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(crate::crds::repo_root())
        .status()
        .with_context(|| format!("running {cargo} {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs the pipeline.
pub fn run(args: CiArgs) -> Result<()> {
    let start = Instant::now();
    step("fmt", || cargo(&["fmt", "--all", "--", "--check"], &[]))?;
    step("clippy", || {
        cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        )
    })?;
    step("crds --check", || crate::crds::run(true))?;
    let mut envs = Vec::new();
    if !args.no_tools {
        step("tools", || {
            let tools = crate::tools::ensure(crate::tools::ToolsArgs::default())?;
            envs = tools
                .env_pairs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.display().to_string()))
                .chain([(
                    "WAYGUARD_TOOLS".to_string(),
                    tools.dir.display().to_string(),
                )])
                .collect();
            Ok(())
        })?;
    }
    step(
        "helm chart (lint, template, RBAC and hardening checks)",
        crate::chart::run,
    )?;
    step("tests (all tiers)", || {
        cargo(
            &["test", "--workspace", "--locked", "--no-fail-fast"],
            &envs,
        )
    })?;
    println!(
        "ci: all steps passed in {:.0}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
