//! Tool discovery: where `cargo xtask tools` put Envoy and friends.
//!
//! Lookup order for a tool key such as `WAYGUARD_ENVOY`:
//! 1. the environment variable of that name (an absolute path);
//! 2. the line `WAYGUARD_ENVOY=/abs/path` in `$WAYGUARD_TOOLS/tools.env`
//!    (`WAYGUARD_TOOLS` defaults to `$HOME/.cache/wayguard-tools`; [`tools_dir`] and
//!    [`parse_env_file`] are xtask's own, from `wayguard_testkit::tools`).
//!
//! A tool that is not found, or whose path does not exist, is an error naming the install
//! step. Tests propagate it and fail: a missing tool never skips a test.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
pub use wayguard_testkit::tools::{parse_env_file, tools_dir};

/// The tools.env key of the Envoy binary.
pub const ENVOY: &str = "WAYGUARD_ENVOY";

/// The install step that provides a tools.env key.
pub fn install_step(key: &str) -> &'static str {
    match key {
        ENVOY => "cargo xtask tools --envoy",
        _ => "cargo xtask tools",
    }
}

/// Resolves a tool by key from the environment or from `tools.env` in `dir`.
///
/// `env` is the environment lookup (injected so the resolution is unit-testable).
pub fn resolve_in(key: &str, dir: &Path, env: impl Fn(&str) -> Option<String>) -> Result<PathBuf> {
    let step = install_step(key);
    if let Some(value) = env(key).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        if path.exists() {
            return Ok(path);
        }
        bail!(
            "{key}={} (from the environment) does not exist; run `{step}` or fix the variable",
            path.display()
        );
    }
    let file = dir.join("tools.env");
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) => bail!(
            "tool {key} not found: cannot read {} ({e}); run `{step}` (or set {key}=/abs/path)",
            file.display()
        ),
    };
    match parse_env_file(&text).remove(key) {
        Some(path) if path.exists() => Ok(path),
        Some(path) => bail!(
            "tool {key}={} (from {}) does not exist; run `{step}`",
            path.display(),
            file.display()
        ),
        None => bail!(
            "tool {key} is not installed ({} has no {key} line); run `{step}`",
            file.display()
        ),
    }
}

/// Resolves a tool by key from the process environment and the default tools directory.
pub fn resolve(key: &str) -> Result<PathBuf> {
    resolve_in(key, &tools_dir(), |k| std::env::var(k).ok())
}

/// The Envoy binary (`WAYGUARD_ENVOY`).
pub fn envoy() -> Result<PathBuf> {
    resolve(ENVOY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_parsing_and_errors_name_the_install_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let no_env = |_: &str| None;
        let err = resolve_in(ENVOY, dir.path(), no_env).expect_err("no file");
        assert!(
            err.to_string().contains("cargo xtask tools --envoy"),
            "{err}"
        );

        let real = dir.path().join("envoy");
        std::fs::write(&real, "").expect("write");
        std::fs::write(
            dir.path().join("tools.env"),
            format!(
                "# c\nWAYGUARD_TOOLS=/x\n\n{ENVOY} = {}\nbogus\n",
                real.display()
            ),
        )
        .expect("write");
        assert_eq!(resolve_in(ENVOY, dir.path(), no_env).expect("found"), real);

        let err = resolve_in("WAYGUARD_HELM", dir.path(), no_env).expect_err("missing key");
        assert!(err.to_string().contains("run `cargo xtask tools`"), "{err}");

        let err = resolve_in(ENVOY, dir.path(), |_| Some("/nonexistent/envoy".into()))
            .expect_err("env override that does not exist");
        assert!(err.to_string().contains("from the environment"), "{err}");
    }
}
