//! Request and status assertions on a [`Scenario`] whose failures say which request, what was
//! expected and what came back, with wayguard's `/debug/status` and both processes' logs.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

use crate::http::{HttpClient, Req, Resp};
use crate::poll::{Check, Deadline};
use crate::scenario::{PROPAGATION_TIMEOUT, Scenario};

impl Scenario {
    /// wayguard's `/debug/status` (file problems, rejected objects, NACKs).
    pub async fn wayguard_status(&self) -> Result<serde_json::Value> {
        match &self.wayguard {
            Some(wg) => wg.status().await,
            None => bail!("wayguard is not running"),
        }
    }

    /// The parts of `/debug/status` that explain a failure (files, rejected, nacks).
    pub async fn status_summary(&self) -> String {
        match self.wayguard_status().await {
            Ok(v) => format!(
                "wayguard /debug/status: files={} rejected={} nacks={}\n",
                v["files"], v["rejected"], v["nacks"]
            ),
            Err(e) => format!("wayguard /debug/status unavailable: {e:#}\n"),
        }
    }

    /// Polls `/debug/status` until `pred` holds (e.g. a broken file is reported).
    pub async fn eventually_status(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let mut deadline = Deadline::new(
            format!("wayguard /debug/status: {what}"),
            PROPAGATION_TIMEOUT,
        );
        loop {
            let check = match self.wayguard_status().await {
                Ok(v) if pred(&v) => Check::Done(v),
                Ok(v) => Check::Pending(v.to_string()),
                Err(e) => Check::Pending(format!("{e:#}")),
            };
            match deadline.next(check).await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => return Err(anyhow!("{e:#}\n{}", self.diagnostics())),
            }
        }
    }

    /// Sends `req` to the HTTP listener.
    pub async fn send(&self, req: &Req) -> Result<Resp> {
        self.http.send(req).await
    }

    /// Sends `req` once through `client` and checks the status; the error says which request,
    /// expected vs got (with body), and shows the logs.
    pub async fn expect_with(&self, client: &HttpClient, req: &Req, status: u16) -> Result<Resp> {
        match client.send(req).await {
            Ok(resp) if resp.status == status => Ok(resp),
            Ok(resp) => Err(anyhow!(
                "[{:?}] {} via {}: expected {status}, got {}\n{}{}",
                self.mode,
                req.describe(),
                client.base(),
                resp.summary(),
                self.status_summary().await,
                self.diagnostics()
            )),
            Err(e) => Err(anyhow!(
                "[{:?}] {} via {}: expected {status}, got transport error: {e:#}\n{}{}",
                self.mode,
                req.describe(),
                client.base(),
                self.status_summary().await,
                self.diagnostics()
            )),
        }
    }

    /// [`Scenario::expect_with`] on the HTTP listener.
    pub async fn expect(&self, req: &Req, status: u16) -> Result<Resp> {
        self.expect_with(&self.http, req, status).await
    }

    /// Like [`Scenario::expect`], and also checks the body (Envoy's local replies, e.g.
    /// `"Jwt is expired"`).
    pub async fn expect_body(&self, req: &Req, status: u16, body: &str) -> Result<Resp> {
        let resp = self.expect(req, status).await?;
        if resp.body != body {
            bail!(
                "[{:?}] {}: status {status} as expected but body {:?}, expected {body:?}\n{}",
                self.mode,
                req.describe(),
                resp.body,
                self.diagnostics()
            );
        }
        Ok(resp)
    }

    /// Polls until `req` (through `client`) returns `status` (config propagation).
    pub async fn eventually_with(
        &self,
        client: &HttpClient,
        req: &Req,
        status: u16,
        timeout: Duration,
    ) -> Result<Resp> {
        let mut deadline = Deadline::new(
            format!("[{:?}] {} to return {status}", self.mode, req.describe()),
            timeout,
        );
        loop {
            let check = match client.send(req).await {
                Ok(resp) if resp.status == status => Check::Done(resp),
                Ok(resp) => Check::Pending(format!("got {}", resp.summary())),
                Err(e) => Check::Pending(format!("transport error: {e:#}")),
            };
            match deadline.next(check).await {
                Ok(Some(resp)) => return Ok(resp),
                Ok(None) => {}
                Err(e) => {
                    return Err(anyhow!(
                        "{e:#}\n{}{}",
                        self.status_summary().await,
                        self.diagnostics()
                    ));
                }
            }
        }
    }

    /// [`Scenario::eventually_with`] on the HTTP listener with [`PROPAGATION_TIMEOUT`].
    pub async fn eventually(&self, req: &Req, status: u16) -> Result<Resp> {
        self.eventually_with(&self.http, req, status, PROPAGATION_TIMEOUT)
            .await
    }

    /// wayguard's `/debug/connections`.
    pub async fn connections(&self) -> Result<Value> {
        let Some(wg) = &self.wayguard else {
            bail!("wayguard is not running");
        };
        let resp = wg.admin_get("/debug/connections").await?;
        if resp.status != 200 {
            bail!("/debug/connections: {}", resp.summary());
        }
        Ok(serde_json::from_str(&resp.body)?)
    }

    /// Waits until wayguard lists an ADS connection for this gateway in this scenario's mode
    /// (`sotw` or `delta`), so a Delta run can never silently be a SotW run. Returns it.
    pub async fn wait_connection(&self) -> Result<Value> {
        let want = format!("{:?}", self.mode).to_ascii_lowercase();
        let mut deadline = Deadline::new(
            format!(
                "a {want} ADS connection for {} in /debug/connections",
                self.gateway()
            ),
            PROPAGATION_TIMEOUT,
        );
        loop {
            let check = match self.connections().await {
                Ok(all) => {
                    let found = all.as_array().into_iter().flatten().find(|c| {
                        c["gateway"] == self.gateway()
                            && c["mode"].as_str().map(str::to_ascii_lowercase) == Some(want.clone())
                    });
                    match found {
                        Some(c) => Check::Done(c.clone()),
                        None => Check::Pending(all.to_string()),
                    }
                }
                Err(e) => Check::Pending(format!("{e:#}")),
            };
            match deadline.next(check).await {
                Ok(Some(c)) => return Ok(c),
                Ok(None) => {}
                Err(e) => return Err(anyhow!("{e:#}\n{}", self.diagnostics())),
            }
        }
    }

    /// Fails if wayguard's `/debug/status` reports a NACK from any Envoy, or if Envoy logged a
    /// deprecation warning about the configuration it was given.
    pub async fn assert_no_nacks(&self) -> Result<()> {
        // The generated config must load with zero deprecation warnings (Envoy logs "Using
        // deprecated option ..." for deprecated fields it still accepts).
        let log = self.envoy_log(usize::MAX);
        let deprecated: Vec<&str> = log
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("deprecated"))
            .collect();
        if !deprecated.is_empty() {
            bail!(
                "[{:?}] Envoy logged deprecation warnings:\n{}\n{}",
                self.mode,
                deprecated.join("\n"),
                self.diagnostics()
            );
        }
        let status = self.wayguard_status().await?;
        let nacks = &status["nacks"];
        if nacks.as_array().is_some_and(|a| !a.is_empty()) {
            bail!(
                "[{:?}] Envoy NACKed: {nacks}\n{}",
                self.mode,
                self.diagnostics()
            );
        }
        Ok(())
    }
}
