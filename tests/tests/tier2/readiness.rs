//! `/ready` names the blocker it waits for: with an issuer whose JWKS endpoint accepts the
//! connection and never answers, wayguard answers 503 naming "JWKS first pass" and the URI until
//! the fetch times out, then 200 (fail closed: the rule gets the never-matching key set).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use wayguard_tests::poll::{Check, Deadline};
use wayguard_tests::wayguard::{ServePorts, Wayguard};

use crate::common::bounded;

fn config(jwks_uri: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  namespace: demo
spec:
  gatewayClassName: wayguard
  listeners:
  - name: http
    protocol: HTTP
    port: 10080
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: slow-issuer
  namespace: demo
spec:
  targetRefs:
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: waypoint
  jwtRules:
  - issuer: https://slow.example
    jwksUri: {jwks_uri}
    timeout: 3s
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_names_the_pending_jwks_first_pass_then_turns_ready() -> Result<()> {
    bounded(async {
        // Accepts connections and never writes a byte: the fetch can only time out.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let uri = format!("http://{}/jwks", listener.local_addr()?);
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let dir = tempfile::tempdir().context("tempdir")?;
        std::fs::write(dir.path().join("config.yaml"), config(&uri))?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut wg = Wayguard::start(dir.path(), ServePorts::free()?, &logs, &[])?;

        let mut pending_body = None;
        let mut deadline =
            Deadline::new("/ready naming the JWKS first pass", Duration::from_secs(20));
        while pending_body.is_none() {
            let check = match wg.admin_get("/ready").await {
                // Earlier 503s name every blocker ("sources synced; JWKS first pass; ...").
                Ok(r) if r.status == 503 && r.body.contains("JWKS first pass (fetching") => {
                    Check::Done(r.body)
                }
                Ok(r) if r.status == 200 => {
                    Check::Fatal("ready before the JWKS fetch timed out".to_string())
                }
                Ok(r) => Check::Pending(r.summary()),
                Err(e) => Check::Pending(format!("{e:#}")),
            };
            pending_body = deadline.next(check).await?;
        }
        let body = pending_body.unwrap_or_default();
        ensure!(
            body.starts_with("not ready: waiting for JWKS first pass (fetching ")
                && body.contains(&uri),
            "the 503 body does not name the pending fetch: {body:?}"
        );
        let status = wg.status().await?;
        ensure!(
            status["ready"] == false
                && status["pending"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|b| b["name"] == "JWKS first pass")),
            "/debug/status while pending: {status}"
        );

        let mut deadline = Deadline::new(
            "/ready 200 after the fetch timed out",
            Duration::from_secs(20),
        );
        loop {
            let check = match wg.admin_get("/ready").await {
                Ok(r) if r.status == 200 => Check::Done(r.body),
                Ok(r) => Check::Pending(r.summary()),
                Err(e) => Check::Pending(format!("{e:#}")),
            };
            if let Some(body) = deadline.next(check).await? {
                ensure!(body == "ready\n", "{body:?}");
                break;
            }
        }
        let status = wg.status().await?;
        ensure!(
            status["ready"] == true && status["pending"] == serde_json::json!([]),
            "/debug/status when ready: {status}"
        );
        let log = wg.log_tail(100);
        ensure!(
            log.contains("initial configuration built"),
            "no first build logged:\n{log}"
        );
        wg.process().stop();
        hold.abort();
        Ok(())
    })
    .await
}
