//! A real Envoy process (from `cargo xtask tools --envoy`) and its admin API.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use crate::http::{HttpClient, Req};
use crate::poll::{Check, Deadline};
use crate::process::ChildGuard;

/// A running Envoy, stopped (SIGTERM, then SIGKILL) by PID when dropped.
#[derive(Debug)]
pub struct Envoy {
    guard: ChildGuard,
    admin_port: u16,
    admin: HttpClient,
}

impl Envoy {
    /// Starts `envoy -c <bootstrap>` with `--concurrency 1`, `--base-id <admin_port>` (distinct
    /// per instance) and hot restart disabled; output goes to `<log_dir>/envoy.{stdout,stderr}`.
    /// The bootstrap must put the admin listener on `127.0.0.1:<admin_port>`.
    pub fn start(bootstrap: &Path, admin_port: u16, log_dir: &Path) -> Result<Self> {
        Self::start_named("envoy", bootstrap, admin_port, log_dir)
    }

    /// [`Envoy::start`] with logs in `<log_dir>/<name>.{stdout,stderr}` (several Envoys).
    pub fn start_named(
        name: &str,
        bootstrap: &Path,
        admin_port: u16,
        log_dir: &Path,
    ) -> Result<Self> {
        let binary = crate::tools::envoy()?;
        let mut cmd = Command::new(&binary);
        cmd.arg("-c")
            .arg(bootstrap)
            .args(["--concurrency", "1"])
            .args(["--base-id", &admin_port.to_string()])
            .arg("--disable-hot-restart")
            .args(["--log-level", "info"])
            .args(["--component-log-level", "config:debug,jwt:debug,rbac:debug"])
            .args(["--drain-time-s", "1"]);
        let guard = ChildGuard::spawn(name, cmd, log_dir)?;
        let admin = HttpClient::plain(&format!("http://127.0.0.1:{admin_port}"))?;
        Ok(Self {
            guard,
            admin_port,
            admin,
        })
    }

    /// The Envoy process.
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }

    /// The PID (tests use it to prove Envoy was not restarted).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The admin port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The last `lines` lines of Envoy's output.
    pub fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }

    /// GET an admin path (e.g. `/ready`, `/stats`), failing if Envoy exited.
    pub async fn admin_get(&mut self, path: &str) -> Result<crate::http::Resp> {
        if let Some(status) = self.guard.try_exit() {
            return Err(anyhow!(
                "envoy exited ({status}):\n{}",
                self.guard.log_tail(40)
            ));
        }
        self.admin.send(&Req::get(path)).await
    }

    /// Counters and gauges from `/stats` (histograms skipped).
    pub async fn stats(&mut self) -> Result<BTreeMap<String, u64>> {
        let resp = self.admin_get("/stats").await?;
        Ok(resp
            .body
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse::<u64>().ok()?)))
            .collect())
    }

    /// One stat by exact name.
    pub async fn stat(&mut self, name: &str) -> Result<Option<u64>> {
        Ok(self.stats().await?.get(name).copied())
    }

    /// `/config_dump` (optionally `?resource=...`) as JSON.
    pub async fn config_dump(&mut self, query: &str) -> Result<Value> {
        let resp = self.admin_get(&format!("/config_dump{query}")).await?;
        serde_json::from_str(&resp.body).context("config_dump is not JSON")
    }

    /// Dynamic listeners: `(name, port, state)` with state `active`, `warming` or
    /// `error: <details>`.
    pub async fn listeners(&mut self) -> Result<Vec<(String, u16, String)>> {
        let dump = self.config_dump("?resource=dynamic_listeners").await?;
        let mut out = Vec::new();
        for entry in dump["configs"].as_array().into_iter().flatten() {
            let name = entry["name"].as_str().unwrap_or_default().to_string();
            let state = if let Some(err) = entry.get("error_state") {
                format!("error: {err}")
            } else if entry.get("active_state").is_some() {
                "active".to_string()
            } else {
                "warming".to_string()
            };
            let listener = entry
                .get("active_state")
                .or_else(|| entry.get("warming_state"))
                .map(|s| &s["listener"]);
            let port = listener
                .and_then(|l| l["address"]["socket_address"]["port_value"].as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0);
            out.push((name, port, state));
        }
        Ok(out)
    }

    /// Addresses (`ip:port`) of the active dynamic listeners that do not bind 127.0.0.1.
    pub async fn non_loopback_listeners(&mut self) -> Result<Vec<String>> {
        let dump = self.config_dump("?resource=dynamic_listeners").await?;
        Ok(dump["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let sa = &entry["active_state"]["listener"]["address"]["socket_address"];
                let ip = sa["address"].as_str()?;
                (ip != "127.0.0.1").then(|| format!("{ip}:{}", sa["port_value"]))
            })
            .collect())
    }

    async fn probe_listener(&mut self, port: u16) -> Check<()> {
        let listeners = match self.listeners().await {
            Ok(l) => l,
            Err(e) if !self.guard.is_running() => return Check::Fatal(e.to_string()),
            Err(e) => return Check::Pending(format!("admin not answering: {e}")),
        };
        match listeners.iter().find(|(_, p, _)| *p == port) {
            Some((name, _, s)) if s.starts_with("error") => {
                Check::Fatal(format!("listener {name} failed: {s}"))
            }
            Some((_, _, s)) if s == "active" => {
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(_) => Check::Done(()),
                    Err(e) => Check::Pending(format!("active but connect: {e}")),
                }
            }
            _ => Check::Pending(format!(
                "dynamic listeners (name, port, state): {listeners:?}"
            )),
        }
    }

    /// Waits until a dynamic listener on `port` is active and accepts TCP connections.
    pub async fn wait_listener_live(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let mut deadline =
            Deadline::new(format!("envoy listener on 127.0.0.1:{port} live"), timeout);
        loop {
            let check = self.probe_listener(port).await;
            match deadline.next(check).await {
                Ok(Some(())) => return Ok(()),
                Ok(None) => {}
                Err(e) => return Err(anyhow!("{e:#}\n{}", self.guard.log_tail(40))),
            }
        }
    }

    async fn probe_connected(&mut self, want: u64) -> Check<()> {
        match self.stat("control_plane.connected_state").await {
            Ok(Some(v)) if v == want => Check::Done(()),
            Ok(v) => Check::Pending(format!("connected_state {v:?}")),
            Err(e) if !self.guard.is_running() => Check::Fatal(e.to_string()),
            Err(e) => Check::Pending(e.to_string()),
        }
    }

    /// Waits until `control_plane.connected_state` is `want` (1 connected, 0 not).
    pub async fn wait_connected_state(&mut self, want: u64, timeout: Duration) -> Result<()> {
        let mut deadline = Deadline::new(
            format!("envoy control_plane.connected_state == {want}"),
            timeout,
        );
        loop {
            let check = self.probe_connected(want).await;
            if deadline.next(check).await?.is_some() {
                return Ok(());
            }
        }
    }
}
