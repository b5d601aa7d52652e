//! The `wayguard` binary: locating (and building) it, `wayguard serve` as a guarded child
//! process, and `wayguard bootstrap`.
//!
//! Binary location (decided here, documented in the crate docs):
//! 1. `$WAYGUARD_BIN` if set (must exist; nothing is built);
//! 2. otherwise the `wayguard` next to this test executable's profile directory
//!    (`<target>/<profile>/wayguard`, found from `current_exe()`, so `CARGO_TARGET_DIR` and
//!    `--release` are followed), after running `cargo build -p wayguard` for that target dir
//!    and profile **once per test process** (a no-op when up to date, so the binary is never
//!    stale).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::http::{HttpClient, Req, Resp};
use crate::poll::{Check, Deadline};
use crate::ports::free_port;
use crate::process::ChildGuard;

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn build_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("WAYGUARD_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.exists() {
            bail!("WAYGUARD_BIN={} does not exist", bin.display());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe().context("current_exe")?;
    // <target>/<profile>/deps/<test-binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("cannot find the profile dir from {}", exe.display()))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| anyhow!("cannot find the target dir from {}", exe.display()))?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "-p", "wayguard", "--bin", "wayguard"])
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir);
    // Cargo gives the test process the variables of *its* package; build
    // scripts that read them (ring's does) would see a change against the
    // outer build and rebuild ring, rustls, reqwest and wayguard (60-80 s) in
    // every test process, and again in the next outer build.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
            )
        {
            cmd.env_remove(key);
        }
    }
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "`cargo build -p wayguard` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let bin = profile_dir.join("wayguard");
    if !bin.exists() {
        bail!("{} missing after `cargo build -p wayguard`", bin.display());
    }
    Ok(bin)
}

/// The wayguard binary (see the module docs); built at most once per process.
pub fn binary() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build_binary().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// The four listen ports of `wayguard serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServePorts {
    /// ADS gRPC.
    pub xds: u16,
    /// Admin HTTP (`/ready`, `/debug/...`, `/metrics`).
    pub admin: u16,
    /// ext_authz gRPC.
    pub extauth: u16,
    /// STS HTTP.
    pub sts: u16,
}

impl ServePorts {
    /// Four free loopback ports.
    pub fn free() -> Result<Self> {
        Ok(Self {
            xds: free_port()?,
            admin: free_port()?,
            extauth: free_port()?,
            sts: free_port()?,
        })
    }
}

/// A running `wayguard serve`, stopped by PID when dropped.
#[derive(Debug)]
pub struct Wayguard {
    guard: ChildGuard,
    ports: ServePorts,
    admin: HttpClient,
}

impl Wayguard {
    /// Starts `wayguard serve --config-dir <dir>` on `ports` (all on 127.0.0.1), plus
    /// `extra_args`. Output goes to `<log_dir>/wayguard.{stdout,stderr}` (appended across
    /// restarts). The log filter is `$WAYGUARD_TEST_LOG` (default `info`), passed as
    /// `WAYGUARD_LOG`.
    pub fn start(
        config_dir: &Path,
        ports: ServePorts,
        log_dir: &Path,
        extra_args: &[String],
    ) -> Result<Self> {
        let mut cmd = Command::new(binary()?);
        cmd.arg("serve")
            .arg("--config-dir")
            .arg(config_dir)
            .args(["--xds-address", &format!("127.0.0.1:{}", ports.xds)])
            .args(["--admin-address", &format!("127.0.0.1:{}", ports.admin)])
            .args(["--extauth-address", &format!("127.0.0.1:{}", ports.extauth)])
            .args(["--sts-address", &format!("127.0.0.1:{}", ports.sts)])
            .args(extra_args)
            .env("NO_COLOR", "1")
            .env(
                "WAYGUARD_LOG",
                std::env::var("WAYGUARD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let guard = ChildGuard::spawn("wayguard", cmd, log_dir)?;
        let admin = HttpClient::plain(&format!("http://127.0.0.1:{}", ports.admin))?;
        Ok(Self {
            guard,
            ports,
            admin,
        })
    }

    /// The ports it listens on.
    pub fn ports(&self) -> ServePorts {
        self.ports
    }

    /// The process.
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }

    /// GET an admin path.
    pub async fn admin_get(&self, path: &str) -> Result<Resp> {
        self.admin.send(&Req::get(path)).await
    }

    /// `GET /debug/status` as JSON (file problems, rejected objects, NACKs).
    pub async fn status(&self) -> Result<serde_json::Value> {
        let resp = self.admin_get("/debug/status").await?;
        if resp.status != 200 {
            bail!("/debug/status: {}", resp.summary());
        }
        serde_json::from_str(&resp.body).context("/debug/status is not JSON")
    }

    async fn probe_ready(&mut self) -> Check<()> {
        if let Some(status) = self.guard.try_exit() {
            return Check::Fatal(format!("wayguard serve exited ({status}) before /ready"));
        }
        match self.admin_get("/ready").await {
            Ok(resp) if resp.status == 200 => Check::Done(()),
            Ok(resp) => Check::Pending(format!("/ready: {}", resp.summary())),
            Err(e) => Check::Pending(format!("/ready: {e}")),
        }
    }

    /// Polls `GET /ready` until 200; fails early (with its log) if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let mut deadline = Deadline::new(
            format!("wayguard /ready on 127.0.0.1:{}", self.ports.admin),
            timeout,
        );
        loop {
            let check = self.probe_ready().await;
            match deadline.next(check).await {
                Ok(Some(())) => return Ok(()),
                Ok(None) => {}
                Err(e) => return Err(anyhow!("{e:#}\n{}", self.guard.log_tail(40))),
            }
        }
    }

    /// Stops the process (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        self.guard.stop();
    }
}

/// ADS flavour for `wayguard bootstrap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdsMode {
    /// State of the World (`GRPC`).
    Sotw,
    /// Incremental (`DELTA_GRPC`, `--delta`).
    Delta,
}

/// Runs `wayguard bootstrap --gateway <ns/name> --xds-address 127.0.0.1:<xds_port>
/// --admin-port <admin_port> [--delta]` and returns the printed YAML.
pub fn bootstrap(gateway: &str, xds_port: u16, admin_port: u16, mode: XdsMode) -> Result<String> {
    let mut cmd = Command::new(binary()?);
    cmd.arg("bootstrap")
        .args(["--gateway", gateway])
        .args(["--xds-address", &format!("127.0.0.1:{xds_port}")])
        .args(["--admin-port", &admin_port.to_string()]);
    if mode == XdsMode::Delta {
        cmd.arg("--delta");
    }
    let output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() || stdout.trim().is_empty() {
        bail!(
            "`wayguard bootstrap` failed ({}): {cmd:?}\nstdout: {stdout}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}
