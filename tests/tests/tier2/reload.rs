//! Changes while running: policy edits on disk, broken files, wayguard stopped and restarted,
//! JWKS rotation, and an issuer that is down when wayguard starts.

use anyhow::{Result, anyhow, ensure};
use serde_json::{Value, json};
use wayguard_tests::issuer::JwtIssuer;
use wayguard_tests::{IssuerOptions, Req, Scenario, ScenarioBuilder, XdsMode, keys};

use crate::common::{SEED03, okta, payments, seed_plain, seed01};

matrix!(
    policy_edit_delete_and_broken_file,
    envoy_enforces_while_wayguard_is_down_and_converges_after_restart,
    wayguard_restart_drops_no_requests,
    policy_change_does_not_push_to_other_gateways,
    jwks_rotation_reaches_envoy,
    issuer_down_at_start_fails_closed_then_recovers,
);

fn seed03() -> Result<String> {
    seed_plain(SEED03)
}

fn envoy_pid(s: &mut Scenario) -> Result<u32> {
    let envoy = s.envoy()?;
    ensure!(envoy.process().is_running(), "envoy exited");
    Ok(envoy.pid())
}

/// Whether `/debug/status` mentions `needle` under `files` or `rejected`.
fn status_mentions(status: &Value, needle: &str) -> bool {
    status["files"].to_string().contains(needle) || status["rejected"].to_string().contains(needle)
}

async fn policy_edit_delete_and_broken_file(mode: XdsMode) -> Result<()> {
    let okta = okta().await?;
    let mut s = ScenarioBuilder::new(mode)
        .file("ra.yaml", seed01(&okta)?)
        .start()
        .await?;
    let pid = envoy_pid(&mut s)?;
    let admin = okta.token(payments(json!({"groups": ["payments-admin"]})))?;
    s.eventually(&Req::get("/a").bearer(&admin), 200).await?;
    s.expect(&Req::get("/a"), 200).await?;

    // Add a policy: anonymous is now denied.
    s.write_config("authz.yaml", &seed03()?)?;
    s.eventually(&Req::get("/a"), 403).await?;
    s.expect(&Req::get("/a").bearer(&admin), 200).await?;

    // Delete it: back to the previous behaviour.
    s.remove_config("authz.yaml")?;
    s.eventually(&Req::get("/a"), 200).await?;

    // Put it back, then break it with invalid YAML (saved in place): the last good
    // version stays in force.
    s.write_config("authz.yaml", &seed03()?)?;
    s.eventually(&Req::get("/a"), 403).await?;
    s.overwrite_config(
        "authz.yaml",
        "apiVersion: security.istio.io/v1\nkind: [unclosed\n",
    )?;
    s.eventually_status("authz.yaml reported as broken", |v| {
        status_mentions(v, "authz.yaml")
    })
    .await?;
    s.expect(&Req::get("/a"), 403).await?;
    s.expect(&Req::get("/a").bearer(&admin), 200).await?;

    // Valid YAML, invalid policy (unknown action): rejected, last valid version in force.
    let invalid = seed03()?.replace("action: ALLOW", "action: BOGUS");
    s.write_config("authz.yaml", &invalid)?;
    s.eventually_status("the BOGUS action reported", |v| {
        status_mentions(v, "BOGUS") || v["rejected"].to_string().contains("payments-admin-only")
    })
    .await?;
    s.expect(&Req::get("/a"), 403).await?;
    s.expect(&Req::get("/a").bearer(&admin), 200).await?;

    // A new broken file elsewhere does not disturb the rest.
    s.write_config("zz-broken.yaml", "{{{{ not yaml")?;
    s.eventually_status("zz-broken.yaml reported", |v| {
        status_mentions(v, "zz-broken.yaml")
    })
    .await?;
    s.expect(&Req::get("/a"), 403).await?;

    // A good edit is applied again: allow the dev group instead.
    let dev_only = seed03()?.replace("payments-admin\"]", "dev\"]");
    s.write_config("authz.yaml", &dev_only)?;
    let dev = okta.token(payments(json!({"groups": ["dev"]})))?;
    s.eventually(&Req::get("/a").bearer(&dev), 200).await?;
    s.expect(&Req::get("/a").bearer(&admin), 403).await?;

    ensure!(
        envoy_pid(&mut s)? == pid,
        "Envoy was restarted (pid {pid} -> {})",
        envoy_pid(&mut s)?
    );
    s.assert_no_nacks().await
}

async fn envoy_enforces_while_wayguard_is_down_and_converges_after_restart(
    mode: XdsMode,
) -> Result<()> {
    let okta = okta().await?;
    let mut s = ScenarioBuilder::new(mode)
        .file("ra.yaml", seed01(&okta)?)
        .file("authz.yaml", seed03()?)
        .start()
        .await?;
    let pid = envoy_pid(&mut s)?;
    let admin = okta.token(payments(json!({"groups": ["payments-admin"]})))?;
    let dev = okta.token(payments(json!({"groups": ["dev"]})))?;
    s.eventually(&Req::get("/a").bearer(&admin), 200).await?;
    s.envoy()?
        .wait_connected_state(1, wayguard_tests::scenario::LISTENER_TIMEOUT)
        .await?;

    s.stop_wayguard();
    s.envoy()?
        .wait_connected_state(0, wayguard_tests::scenario::LISTENER_TIMEOUT)
        .await?;
    for _ in 0..3 {
        s.expect(&Req::get("/a"), 403).await?;
        s.expect(&Req::get("/a").bearer(&dev), 403).await?;
        s.expect(&Req::get("/a").bearer(&admin), 200).await?;
        s.expect(
            &Req::get("/a").bearer(&okta.expired_token(payments(json!({})))?),
            401,
        )
        .await?;
    }

    // Change the config while wayguard is down, then restart it on the same ports.
    s.remove_config("authz.yaml")?;
    s.start_wayguard().await?;
    s.envoy()?
        .wait_connected_state(1, wayguard_tests::scenario::LISTENER_TIMEOUT)
        .await?;
    s.eventually_with(
        &wayguard_tests::HttpClient::plain(&format!("http://127.0.0.1:{}", s.http_port()))?,
        &Req::get("/a"),
        200,
        wayguard_tests::scenario::LISTENER_TIMEOUT,
    )
    .await?;
    s.expect(&Req::get("/a").bearer(&dev), 200).await?;

    // And it keeps applying edits.
    s.write_config("authz.yaml", &seed03()?)?;
    s.eventually(&Req::get("/a"), 403).await?;
    ensure!(envoy_pid(&mut s)? == pid, "Envoy was restarted");
    s.assert_no_nacks().await
}

/// Requests through Envoy in a loop (bounded: at most 5000, until `stop`), returning every
/// answer that was not the expected one.
fn request_loop(
    client: wayguard_tests::HttpClient,
    checks: Vec<(Req, u16)>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u32, Vec<String>)> {
    tokio::spawn(async move {
        let mut sent = 0u32;
        let mut bad = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) && sent < 5000 {
            for (req, want) in &checks {
                sent += 1;
                match client.send(req).await {
                    Ok(r) if r.status == *want => {}
                    Ok(r) => bad.push(format!(
                        "{}: want {want}, got {}",
                        req.describe(),
                        r.summary()
                    )),
                    Err(e) => bad.push(format!("{}: want {want}, got {e:#}", req.describe())),
                }
            }
        }
        (sent, bad)
    })
}

/// Restarting wayguard with an unchanged config: Envoy reconnects and converges while every
/// request keeps getting the right answer (ARCHITECTURE.md: "a reconnect converges without
/// dropping requests").
async fn wayguard_restart_drops_no_requests(mode: XdsMode) -> Result<()> {
    let okta = okta().await?;
    let mut s = ScenarioBuilder::new(mode)
        .file("ra.yaml", seed01(&okta)?)
        .file("authz.yaml", seed03()?)
        .start()
        .await?;
    let admin = okta.token(payments(json!({"groups": ["payments-admin"]})))?;
    s.eventually(&Req::get("/a").bearer(&admin), 200).await?;
    let before = s.envoy()?.stats().await?;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = wayguard_tests::HttpClient::plain(&format!("http://127.0.0.1:{}", s.http_port()))?;
    let looping = request_loop(
        client,
        vec![(Req::get("/a").bearer(&admin), 200), (Req::get("/a"), 403)],
        stop.clone(),
    );
    s.stop_wayguard();
    s.envoy()?
        .wait_connected_state(0, wayguard_tests::scenario::LISTENER_TIMEOUT)
        .await?;
    s.start_wayguard().await?;
    s.envoy()?
        .wait_connected_state(1, wayguard_tests::scenario::LISTENER_TIMEOUT)
        .await?;
    let conn = s.wait_connection().await?;
    // Converged: Envoy ACKed what wayguard sent after the restart.
    let mut deadline = wayguard_tests::poll::Deadline::new(
        "Envoy ACKs the restarted wayguard's snapshot",
        wayguard_tests::scenario::PROPAGATION_TIMEOUT,
    );
    let mut sync = conn["sync"].clone();
    loop {
        let check = if sync["acked"] == sync["seen"] && !sync["acked"].is_null() {
            wayguard_tests::poll::Check::Done(())
        } else {
            wayguard_tests::poll::Check::Pending(sync.to_string())
        };
        if deadline.next(check).await?.is_some() {
            break;
        }
        sync = s.wait_connection().await?["sync"].clone();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, bad) = looping.await?;
    ensure!(
        bad.is_empty(),
        "[{mode:?}] {} of {sent} requests got a wrong answer across the restart: {:?}\n{}",
        bad.len(),
        bad.iter().take(5).collect::<Vec<_>>(),
        s.diagnostics()
    );
    ensure!(sent > 0, "no request was sent");
    let after = s.envoy()?.stats().await?;
    let stat =
        |m: &std::collections::BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    eprintln!(
        "[{mode:?}] {sent} requests across the restart; listener_manager.listener_modified {} -> {}",
        stat(&before, "listener_manager.listener_modified"),
        stat(&after, "listener_manager.listener_modified")
    );
    s.assert_no_nacks().await
}

/// The `sync` object of `gateway`'s ADS connection in `/debug/connections`.
async fn sync_of(s: &Scenario, gateway: &str) -> Result<Value> {
    let all = s.connections().await?;
    all.as_array()
        .into_iter()
        .flatten()
        .find(|c| c["gateway"] == gateway)
        .map(|c| c["sync"].clone())
        .ok_or_else(|| anyhow!("no connection for {gateway} in {all}"))
}

/// Sum of every `*.update_attempt` stat of an Envoy (xDS updates it received).
async fn update_attempts(envoy: &mut wayguard_tests::Envoy) -> Result<u64> {
    Ok(envoy
        .stats()
        .await?
        .iter()
        .filter(|(k, _)| k.ends_with(".update_attempt"))
        .map(|(_, v)| *v)
        .sum())
}

/// A policy for gateway `waypoint` changes nothing for gateway `other`: no push reaches the
/// other Envoy (issue 4: "no push to a gateway whose resources did not change").
async fn policy_change_does_not_push_to_other_gateways(mode: XdsMode) -> Result<()> {
    let okta = okta().await?;
    let mut s = ScenarioBuilder::new(mode)
        .file("ra.yaml", seed01(&okta)?)
        .peer_gateway("other")
        .start()
        .await?;
    let expired = okta.expired_token(payments(json!({})))?;
    s.eventually(&Req::get("/a").bearer(&expired), 401).await?;
    let peer_client = s.peer().ok_or_else(|| anyhow!("no peer"))?.client.clone();
    // The RequestAuthentication targets `waypoint` only.
    s.expect_with(&peer_client, &Req::get("/a").bearer(&expired), 200)
        .await?;
    let peer_gateway = "payments-prod/other";
    let peer_before = sync_of(&s, peer_gateway).await?;
    let peer_envoy = &mut s.peer().ok_or_else(|| anyhow!("no peer"))?.envoy;
    let attempts_before = update_attempts(peer_envoy).await?;
    ensure!(
        attempts_before > 0,
        "no *.update_attempt stats in the peer Envoy"
    );

    s.write_config("authz.yaml", &seed03()?)?;
    s.eventually(&Req::get("/a"), 403).await?;
    // Wait until the waypoint's Envoy ACKed the change: the pipeline has run for every gateway.
    let mut deadline = wayguard_tests::poll::Deadline::new(
        "waypoint's Envoy ACKs the new snapshot",
        wayguard_tests::scenario::PROPAGATION_TIMEOUT,
    );
    loop {
        let sync = sync_of(&s, s.gateway()).await?;
        let check = if sync["acked"] == sync["seen"] {
            wayguard_tests::poll::Check::Done(())
        } else {
            wayguard_tests::poll::Check::Pending(sync.to_string())
        };
        if deadline.next(check).await?.is_some() {
            break;
        }
    }
    let peer_after = sync_of(&s, peer_gateway).await?;
    let peer_envoy = &mut s.peer().ok_or_else(|| anyhow!("no peer"))?.envoy;
    let attempts_after = update_attempts(peer_envoy).await?;
    ensure!(
        peer_after == peer_before && attempts_after == attempts_before,
        "[{mode:?}] a policy for waypoint pushed to {peer_gateway}: sync {peer_before} -> \
         {peer_after}, Envoy update attempts {attempts_before} -> {attempts_after}"
    );
    s.expect_with(&peer_client, &Req::get("/a"), 200).await?;
    s.assert_no_nacks().await
}

/// Sum of `wayguard_jwks_fetch_*` counters named `metric` in wayguard's `/metrics`.
async fn jwks_metric(s: &mut Scenario, metric: &str) -> Result<f64> {
    let wg = s
        .wayguard()
        .ok_or_else(|| anyhow!("wayguard not running"))?;
    let body = wg.admin_get("/metrics").await?.body;
    Ok(body
        .lines()
        .filter(|l| l.starts_with(metric))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn jwks_rotation_reaches_envoy(mode: XdsMode) -> Result<()> {
    let mut okta = okta().await?;
    let mut s = ScenarioBuilder::new(mode)
        .file("ra.yaml", seed01(&okta)?)
        .wayguard_arg("--jwks-refresh-interval")
        .wayguard_arg("1s")
        .start()
        .await?;
    let first = okta.token(payments(json!({})))?;
    s.eventually(&Req::get("/r").bearer(&first), 200).await?;

    // New key served next to the old one: both verify.
    okta.rotate(true).await?;
    let second = okta.token(payments(json!({})))?;
    s.eventually(&Req::get("/r").bearer(&second), 200).await?;
    s.expect(&Req::get("/r").bearer(&first), 200).await?;

    // Old keys removed: the first token's kid is gone.
    okta.rotate(false).await?;
    let third = okta.token(payments(json!({})))?;
    s.eventually(&Req::get("/r").bearer(&third), 200).await?;
    s.eventually(&Req::get("/r").bearer(&second), 401).await?;

    // The issuer goes away: the last good keys stay in force (stale while failing).
    okta.stop().await;
    let failures = jwks_metric(&mut s, "wayguard_jwks_fetch_failure").await?;
    let mut deadline = wayguard_tests::poll::Deadline::new(
        "a JWKS fetch failure after the issuer stopped",
        wayguard_tests::scenario::PROPAGATION_TIMEOUT,
    );
    loop {
        let now = jwks_metric(&mut s, "wayguard_jwks_fetch_failure").await?;
        let check = if now > failures {
            wayguard_tests::poll::Check::Done(())
        } else {
            wayguard_tests::poll::Check::Pending(format!("failures {now}"))
        };
        if deadline.next(check).await?.is_some() {
            break;
        }
    }
    s.expect(&Req::get("/r").bearer(&third), 200).await?;
    s.assert_no_nacks().await
}

async fn issuer_down_at_start_fails_closed_then_recovers(mode: XdsMode) -> Result<()> {
    let mut okta = JwtIssuer::new_stopped(IssuerOptions {
        path: "/oauth2/default".into(),
        key_slot: keys::ISSUER_SLOT,
        kid_prefix: "okta".into(),
    })
    .await?;
    let mut s = ScenarioBuilder::new(mode)
        .file("ra.yaml", seed01(&okta)?)
        .start()
        .await?;
    let valid = okta.token(payments(json!({})))?;
    // No keys: every token fails (fail closed), a missing token is still allowed.
    s.eventually(&Req::get("/d").bearer(&valid), 401).await?;
    s.expect(&Req::get("/d"), 200).await?;

    // The issuer comes up; a restarted wayguard fetches at once.
    okta.resume().await?;
    s.stop_wayguard();
    s.start_wayguard().await?;
    s.eventually_with(
        &wayguard_tests::HttpClient::plain(&format!("http://127.0.0.1:{}", s.http_port()))?,
        &Req::get("/d").bearer(&valid),
        200,
        wayguard_tests::scenario::LISTENER_TIMEOUT,
    )
    .await?;
    ensure!(okta.jwks_fetches() >= 1, "JWKS never fetched");
    s.assert_no_nacks().await
}
