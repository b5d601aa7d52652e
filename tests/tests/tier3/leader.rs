//! Two wayguard replicas with distinct identities on one Lease: only the leader writes status,
//! the follower serves xDS, and killing the leader (SIGKILL: no release) hands leadership over
//! within the lease time; the new leader writes status for a change made after the kill.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::json;
use wayguard_tests::XdsMode;
use wayguard_tests::http::Req;
use wayguard_tests::kube::helm::{LEASE, NAMESPACE};
use wayguard_tests::kube::{KubeScenario, report};

use crate::common::{GATEWAY, NS, SEED03, SEED04, okta, payments, run, seed_plain, seed01};

/// `--lease-duration` of both replicas (wayguard renews and retries every third of it).
const LEASE_DURATION: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_status_writer_and_leader_handover() -> Result<()> {
    run("leader", async |s: &mut KubeScenario| {
        let okta = okta().await?;
        let stack = s.stack(NS, GATEWAY)?;
        s.apply(&stack.yaml()).await?;
        s.apply(&seed01(&okta)?).await?;
        s.phase("kubectl apply: gateway stack and seed 01");

        let replica =
            |name: &str| KubeScenario::replica_options(name).lease_duration(LEASE_DURATION);
        let a = s.start_replica(replica("wayguard-a")).await?;
        let took = s
            .wait_lease_holder("wayguard-a", Duration::from_secs(20))
            .await?;
        s.wait_status(
            "requestauthentication",
            NS,
            "payments-jwt",
            &[("Accepted", "True"), ("JwksResolved", "True")],
            |_| true,
        )
        .await?;
        s.phase(&format!(
            "replica a ready, Lease acquired ({:.2}s), seed 01 status written",
            took.as_secs_f64()
        ));

        let b = s.start_replica(replica("wayguard-b")).await?;
        // Envoy talks to the follower: every replica serves xDS.
        s.start_envoy(&stack, b, XdsMode::Delta).await?;
        let valid = okta.token(payments(json!({})))?;
        let other_audience = okta.token(json!({"aud": "api://other"}))?;
        s.eventually(&Req::get("/pay").bearer(&other_audience), 403)
            .await?;
        s.expect(&Req::get("/pay").bearer(&valid), 200).await?;
        s.phase("replica b (follower) ready; Envoy on b enforces seed 01");

        // A change while both run: only the leader writes its status.
        s.apply(&seed_plain(SEED03)?).await?;
        s.wait_status(
            "authorizationpolicy",
            NS,
            "payments-admin-only",
            &[("Accepted", "True")],
            |_| true,
        )
        .await?;
        s.eventually(&Req::get("/pay").bearer(&valid), 403).await?;
        ensure!(
            s.lease_holder().await?.as_deref() == Some("wayguard-a"),
            "Lease holder changed while both replicas ran"
        );
        let by_a = s
            .replica(a)?
            .status_writes(Some("payments-prod/payments-admin-only"));
        let by_b = s.replica(b)?.status_writes(None);
        ensure!(
            !by_a.is_empty() && by_b.is_empty(),
            "only the leader (a) may write status: a wrote {by_a:?}, b wrote {by_b:?}\n{}",
            s.diagnostics().await
        );
        ensure!(
            s.replica(b)?.leadership_changes().is_empty(),
            "the follower logged leadership changes: {:?}",
            s.replica(b)?.leadership_changes()
        );
        let ap = s
            .object("authorizationpolicy", NS, "payments-admin-only")
            .await?;
        let status_managers: Vec<&serde_json::Value> = ap["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["subresource"] == "status")
            .collect();
        ensure!(
            status_managers.len() == 1
                && status_managers[0]["manager"] == "wayguard"
                && status_managers[0]["operation"] == "Apply",
            "status managedFields: {status_managers:?}"
        );
        s.phase("only the leader wrote status (logs, Lease holder, managedFields)");

        // Kill the leader (no release), then change something at once.
        let killed_at = Instant::now();
        s.replica_mut(a)?.kill();
        s.delete(&seed_plain(SEED03)?).await?;
        s.apply(&seed_plain(SEED04)?).await?;
        // Envoy is on b: the changes are served while there is no leader.
        // seed 03 gone: a token without the group passes; seed 04 in: anonymous is denied.
        s.eventually(&Req::get("/pay").bearer(&valid), 200).await?;
        s.eventually(&Req::get("/pay"), 403).await?;
        s.expect_body(&Req::get("/pay"), 403, "RBAC: access denied")
            .await?;
        let retry = LEASE_DURATION / 3;
        let bound = LEASE_DURATION + retry * 2 + Duration::from_secs(1);
        s.wait_lease_holder("wayguard-b", bound + Duration::from_secs(10))
            .await?;
        let handover = killed_at.elapsed();
        report(&format!(
            "[tier3 leader] handover after SIGKILL of the leader: {:.2}s (lease {}s, retry {}s, \
             bound {:.1}s)",
            handover.as_secs_f64(),
            LEASE_DURATION.as_secs(),
            retry.as_secs(),
            bound.as_secs_f64()
        ));
        ensure!(
            handover <= bound,
            "handover took {handover:?}, more than lease {LEASE_DURATION:?} + 2 x retry \
             {retry:?} + 1s"
        );
        s.wait_status(
            "authorizationpolicy",
            NS,
            "payments-aud-guard",
            &[("Accepted", "True"), ("ResolvedRefs", "True")],
            |_| true,
        )
        .await?;
        let status_after = killed_at.elapsed();
        let by_b = s
            .replica(b)?
            .status_writes(Some("payments-prod/payments-aud-guard"));
        ensure!(
            !by_b.is_empty(),
            "the new leader (b) did not log the status write of payments-aud-guard\n{}",
            s.diagnostics().await
        );
        ensure!(
            s.replica(b)?
                .leadership_changes()
                .iter()
                .any(|l| l.contains("leading=true")),
            "b never logged leading=true: {:?}",
            s.replica(b)?.leadership_changes()
        );
        let lease = s
            .kubectl()
            .get_json(&["lease", LEASE, "-n", NAMESPACE])
            .await?;
        ensure!(
            lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0) >= 1
                && lease["spec"]["leaseDurationSeconds"] == 6,
            "Lease after handover: {}",
            lease["spec"]
        );
        s.phase(&format!(
            "leader killed: b leads after {:.2}s, status of the post-kill change after {:.2}s",
            handover.as_secs_f64(),
            status_after.as_secs_f64()
        ));

        s.assert_no_forbidden().await?;
        Ok(())
    })
    .await
}
