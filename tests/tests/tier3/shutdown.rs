//! Shutdown on the runtime (crates/runtime): SIGTERM under load drains the leader's xDS streams,
//! finishes its status writes and releases the Lease, so the other replica leads within one
//! retry period (not after the lease duration) while Envoy keeps serving; and a leader-election
//! task that dies ends the process with an error instead of leaving a replica that can never lead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;
use wayguard::kubernetes::lease::LeaseConfig;
use wayguard::serve::{ServeConfig, SourceConfig};
use wayguard_tests::XdsMode;
use wayguard_tests::http::{HttpClient, Req};
use wayguard_tests::kube::helm::NAMESPACE;
use wayguard_tests::kube::{KubeScenario, report};
use wayguard_tests::poll::{Check, Deadline};
use wayguard_tests::ports::free_port;

use crate::common::{GATEWAY, NS, SEED03, okta, payments, run, seed_plain, seed01};

/// `--lease-duration` of both replicas; they renew and retry every third of it (4 s).
const LEASE_DURATION: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_hands_the_lease_over_within_one_retry_period() -> Result<()>
{
    run("sigterm-handover", async |s: &mut KubeScenario| {
        let okta = okta().await?;
        let stack = s.stack(NS, GATEWAY)?;
        s.apply(&stack.yaml()).await?;
        s.apply(&seed01(&okta)?).await?;
        let replica =
            |name: &str| KubeScenario::replica_options(name).lease_duration(LEASE_DURATION);
        let a = s.start_replica(replica("wayguard-a")).await?;
        s.wait_lease_holder("wayguard-a", Duration::from_secs(20))
            .await?;
        let b = s.start_replica(replica("wayguard-b")).await?;
        // Envoy talks to the leader, the replica that goes away.
        s.start_envoy(&stack, a, XdsMode::Sotw).await?;
        let valid = okta.token(payments(json!({})))?;
        // Passes before and after seed 03 (which admits only payments-admin).
        let admin = okta.token(payments(json!({"groups": ["payments-admin"]})))?;
        s.eventually(&Req::get("/pay").bearer(&valid), 200).await?;
        s.phase("a leads and serves Envoy, b follows");

        // Load: requests through Envoy, each expected to pass, for the whole shutdown.
        let client = HttpClient::plain(&format!("http://127.0.0.1:{}", stack.http_port))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let load = tokio::spawn({
            let (stop, sent, failed, token) =
                (stop.clone(), sent.clone(), failed.clone(), admin.clone());
            async move {
                let mut failures = Vec::new();
                // Bounded: at most 20 000 requests or until stopped.
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = client.send(&Req::get("/pay").bearer(&token)).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    match r {
                        Ok(resp) if resp.status == 200 => {}
                        other => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if failures.len() < 5 {
                                failures.push(format!("{other:?}"));
                            }
                        }
                    }
                }
                failures
            }
        });

        // A change right before SIGTERM: its status write is in flight, or about to be.
        s.apply(&seed_plain(SEED03)?).await?;
        let sigterm = Instant::now();
        let exit = tokio::task::block_in_place(|| s.replica_mut(a).map(|r| r.stop()))?;
        let stopped_in = sigterm.elapsed();
        let handover = s
            .wait_lease_holder("wayguard-b", LEASE_DURATION * 2)
            .await?
            + stopped_in;
        stop.store(true, Ordering::Relaxed);
        let failures = load.await.context("load task")?;
        let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));

        let log = s.replica(a)?.log_tail(400);
        ensure!(
            exit.is_some_and(|e| e.success()),
            "a did not exit cleanly after SIGTERM ({exit:?}):\n{log}"
        );
        ensure!(
            log.contains("ending ADS stream: draining") && log.contains("released the lease"),
            "a's log shows no drained ADS stream or no Lease release:\n{log}"
        );
        ensure!(
            !log.contains("drain deadline passed") && !log.contains("writing status failed"),
            "a's shutdown cut something short:\n{log}"
        );
        let retry = LEASE_DURATION / 3;
        ensure!(
            handover < retry + Duration::from_secs(2),
            "b led {handover:?} after SIGTERM: more than one retry period ({retry:?}) + 2s \
             (lease {LEASE_DURATION:?})"
        );
        ensure!(
            failed == 0 && sent > 0,
            "{failed} of {sent} requests through Envoy failed during the shutdown: {failures:?}"
        );
        // Envoy lost its control plane and keeps its last configuration.
        s.envoy()?
            .wait_connected_state(0, Duration::from_secs(10))
            .await?;
        s.expect(&Req::get("/pay").bearer(&admin), 200).await?;
        // The change applied just before SIGTERM has its status, by a or by the new leader.
        s.wait_status(
            "authorizationpolicy",
            NS,
            "payments-admin-only",
            &[("Accepted", "True")],
            |_| true,
        )
        .await?;
        report(&format!(
            "[tier3 sigterm-handover] a exited 0 after {:.2}s; b leads {:.2}s after SIGTERM \
             (retry {}s, lease {}s); {sent} requests through Envoy meanwhile, 0 failed",
            stopped_in.as_secs_f64(),
            handover.as_secs_f64(),
            retry.as_secs(),
            LEASE_DURATION.as_secs()
        ));
        s.phase("SIGTERM: drained, status written, Lease handed over");
        let _ = b;
        s.assert_no_forbidden().await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leader_election_task_ends_the_process_with_an_error() -> Result<()> {
    run("lease-task-dies", async |s: &mut KubeScenario| {
        let loopback = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let identity = "wayguard-in-process";
        let config = ServeConfig {
            source: SourceConfig::Kubernetes {
                kubeconfig: Some(s.sa_kubeconfig().to_path_buf()),
                lease: LeaseConfig {
                    namespace: NAMESPACE.into(),
                    name: wayguard_tests::kube::helm::LEASE.into(),
                    identity: identity.into(),
                    lease_duration: Duration::from_secs(6),
                    retry_period: Duration::from_secs(2),
                },
            },
            xds_address: loopback(free_port()?),
            admin_address: loopback(free_port()?),
            root_namespace: "istio-system".into(),
            gateway_classes: vec!["wayguard".into(), "istio-waypoint".into()],
            waypoint_classes: vec!["istio-waypoint".into()],
            debounce: Duration::from_millis(100),
            debounce_max: Duration::from_secs(1),
            jwks_refresh_interval: Duration::from_secs(1200),
            jwks_fetch_mode: wayguard_core::authn::JwksFetchMode::Istiod,
            drain_timeout: Duration::from_secs(10),
            extauth_address: loopback(0),
            extauth_upstream: None,
        };
        let running = wayguard::serve::start(config).await?;
        ensure!(
            running.task_names().contains(&"leader-election"),
            "tasks: {:?}",
            running.task_names()
        );
        let readiness = running.readiness.clone();
        let mut deadline = Deadline::new("in-process wayguard ready", Duration::from_secs(30));
        while deadline
            .next(if readiness.is_ready() {
                Check::Done(())
            } else {
                Check::Pending(readiness.state().to_string())
            })
            .await?
            .is_none()
        {}
        s.wait_lease_holder(identity, Duration::from_secs(20))
            .await?;
        ensure!(running.abort("leader-election"), "no leader-election task");
        let killed = Instant::now();
        let outcome =
            tokio::time::timeout(Duration::from_secs(30), running.run(std::future::pending()))
                .await
                .context("the process did not end after its leader-election task died")?;
        let err = match outcome {
            Ok(()) => anyhow::bail!("run returned Ok after the leader-election task died"),
            Err(e) => format!("{e:#}"),
        };
        ensure!(
            err.contains("leader-election") && err.contains("was aborted"),
            "the error does not name the dead task: {err}"
        );
        report(&format!(
            "[tier3 lease-task-dies] run ended {:.2}s after the lease task died: {err}",
            killed.elapsed().as_secs_f64()
        ));
        Ok(())
    })
    .await
}
