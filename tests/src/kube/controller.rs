//! One `wayguard serve --kubernetes` replica, run out of cluster with a given kubeconfig (the
//! chart's ServiceAccount token), on loopback ports, with log checks.
//!
//! The log filter is `$WAYGUARD_TEST_LOG` (default `info`) plus
//! `wayguard::kubernetes::status=debug`, so every status write is logged (`status written
//! object=<Kind> <ns>/<name>`) and tests can tell which replica wrote.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, anyhow};

use crate::http::{HttpClient, Req, Resp};
use crate::poll::{Check, Deadline};
use crate::process::ChildGuard;
use crate::wayguard::{ServePorts, binary};

/// How one replica runs.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Process name (log files `<name>.{stdout,stderr}`), also the default identity.
    pub name: String,
    /// `--leader-election-identity` (the pod name in a cluster).
    pub identity: String,
    /// `--leader-election-namespace` (the release namespace).
    pub lease_namespace: String,
    /// `--lease-duration` (wayguard's default 15s when `None`).
    pub lease_duration: Option<Duration>,
    /// Extra `serve` arguments.
    pub extra_args: Vec<String>,
}

impl ControllerOptions {
    /// A replica called `name` (identity `name`) electing in `lease_namespace`.
    pub fn new(name: &str, lease_namespace: &str) -> Self {
        Self {
            name: name.into(),
            identity: name.into(),
            lease_namespace: lease_namespace.into(),
            lease_duration: None,
            extra_args: Vec::new(),
        }
    }

    /// Sets `--lease-duration`.
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = Some(duration);
        self
    }
}

/// Go-style duration text for whole seconds or milliseconds (`6s`, `1500ms`).
pub fn duration_arg(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A running replica, stopped by PID when dropped.
#[derive(Debug)]
pub struct KubeWayguard {
    guard: ChildGuard,
    ports: ServePorts,
    admin: HttpClient,
    options: ControllerOptions,
    kubeconfig: PathBuf,
}

impl KubeWayguard {
    /// Starts `wayguard serve --kubernetes` with `KUBECONFIG=<kubeconfig>` (and no in-cluster
    /// environment), listening on `ports` (127.0.0.1).
    pub fn start(
        kubeconfig: &Path,
        ports: ServePorts,
        options: ControllerOptions,
        log_dir: &Path,
    ) -> Result<Self> {
        let mut cmd = Command::new(binary()?);
        cmd.args(["serve", "--kubernetes"])
            .args(["--xds-address", &format!("127.0.0.1:{}", ports.xds)])
            .args(["--admin-address", &format!("127.0.0.1:{}", ports.admin)])
            .args(["--extauth-address", &format!("127.0.0.1:{}", ports.extauth)])
            .args(["--sts-address", &format!("127.0.0.1:{}", ports.sts)])
            .args(["--leader-election-namespace", &options.lease_namespace])
            .args(["--leader-election-identity", &options.identity]);
        if let Some(d) = options.lease_duration {
            cmd.args(["--lease-duration", &duration_arg(d)]);
        }
        let filter = format!(
            "{},wayguard::kubernetes::status=debug",
            std::env::var("WAYGUARD_TEST_LOG").unwrap_or_else(|_| "info".into())
        );
        cmd.args(&options.extra_args)
            .env("KUBECONFIG", kubeconfig)
            .env("NO_COLOR", "1")
            .env("WAYGUARD_LOG", filter)
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT");
        let guard = ChildGuard::spawn(&options.name, cmd, log_dir)?;
        let admin = HttpClient::plain(&format!("http://127.0.0.1:{}", ports.admin))?;
        Ok(Self {
            guard,
            ports,
            admin,
            options,
            kubeconfig: kubeconfig.to_path_buf(),
        })
    }

    /// Its options (name, identity, lease).
    pub fn options(&self) -> &ControllerOptions {
        &self.options
    }

    /// Its leader-election identity.
    pub fn identity(&self) -> &str {
        &self.options.identity
    }

    /// The kubeconfig it runs with.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Its listen ports.
    pub fn ports(&self) -> ServePorts {
        self.ports
    }

    /// The process.
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }

    /// GET an admin path.
    pub async fn admin_get(&self, path: &str) -> Result<Resp> {
        self.admin.send(&Req::get(path)).await
    }

    /// Polls `/ready` (initial sync of every watched kind done) until 200; fails early with
    /// the log if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let mut deadline = Deadline::new(
            format!(
                "{} /ready on 127.0.0.1:{}",
                self.options.name, self.ports.admin
            ),
            timeout,
        );
        loop {
            let check = if let Some(status) = self.guard.try_exit() {
                Check::Fatal(format!("exited ({status}) before /ready"))
            } else {
                match self.admin_get("/ready").await {
                    Ok(resp) if resp.status == 200 => Check::Done(()),
                    Ok(resp) => Check::Pending(format!("/ready: {}", resp.summary())),
                    Err(e) => Check::Pending(format!("/ready: {e:#}")),
                }
            };
            match deadline.next(check).await {
                Ok(Some(())) => return Ok(()),
                Ok(None) => {}
                Err(e) => return Err(anyhow!("{e:#}\n{}", self.guard.log_tail(40))),
            }
        }
    }

    /// Log lines mentioning a refused request (`forbidden`, any case): a permission the
    /// chart's RBAC does not grant.
    pub fn forbidden_lines(&self) -> Vec<String> {
        self.guard
            .output()
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("forbidden"))
            .map(str::to_string)
            .collect()
    }

    /// `status written` lines (all, or for objects whose log key contains `object`, e.g.
    /// `payments-prod/payments-jwt`).
    pub fn status_writes(&self, object: Option<&str>) -> Vec<String> {
        self.guard
            .log_lines_containing("status written")
            .into_iter()
            .filter(|l| object.is_none_or(|o| l.contains(o)))
            .collect()
    }

    /// `leadership changed` lines.
    pub fn leadership_changes(&self) -> Vec<String> {
        self.guard.log_lines_containing("leadership changed")
    }

    /// Warnings and errors (`WARN`/`ERROR` lines).
    pub fn warnings(&self) -> Vec<String> {
        self.guard
            .output()
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .map(str::to_string)
            .collect()
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }

    /// SIGKILL now (a crash: the Lease is not released).
    pub fn kill(&mut self) {
        self.guard.kill();
    }

    /// SIGTERM, then SIGKILL after the stop timeout (a leader releases its Lease); the exit
    /// status, `None` if it had to be killed.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.guard.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_go_style() {
        assert_eq!(duration_arg(Duration::from_secs(6)), "6s");
        assert_eq!(duration_arg(Duration::from_millis(1500)), "1500ms");
    }
}
