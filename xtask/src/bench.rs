//! `cargo xtask bench`: benchmarks. They print figures and ratios; they never fail on timing.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Packages with benchmarks.
const PACKAGES: &[&str] = &["wayguard-translate"];

/// Runs every benchmark in release mode.
pub fn run() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for package in PACKAGES {
        println!("==> bench {package}");
        let status = Command::new(&cargo)
            .args(["bench", "--locked", "-p", package])
            .current_dir(crate::crds::repo_root())
            .status()
            .with_context(|| format!("running cargo bench -p {package}"))?;
        if !status.success() {
            bail!("`cargo bench -p {package}` failed ({status})");
        }
    }
    Ok(())
}
