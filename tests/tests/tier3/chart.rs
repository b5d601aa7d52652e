//! `helm install` of `charts/wayguard`: the release, its CRDs accepted by a real apiserver
//! (structural, CEL compiled and evaluated), the ServiceAccount's least-privilege RBAC, and a
//! missing permission caught by the harness.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use wayguard_tests::kube::helm::{CLUSTER_ROLE, NAMESPACE, RELEASE, SERVICE_ACCOUNT};
use wayguard_tests::kube::manifests::{
    ap_target_refs_and_selector, ra_jwks_and_jwks_uri, ra_target_refs_and_selector,
};
use wayguard_tests::kube::scenario::WAYGUARD_CRDS;
use wayguard_tests::kube::{KubeScenario, report};
use wayguard_tests::poll::{Check, until};
use wayguard_tests::yaml::{namespace, seed_path};

use crate::common::{NS, SEED01, SEED02, SEED03, SEED04, SEED05, okta, run, seed01};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_install_crds_cel_and_least_privilege_rbac() -> Result<()> {
    run("chart", async |s: &mut KubeScenario| {
        release_and_objects(s).await?;
        s.phase("helm status and the chart's objects");
        crds_carry_schemas_cel_and_printer_columns(s).await?;
        cel_rules_reject_with_their_messages(s).await?;
        s.phase("CEL rules: 3 rejections, seeds 01-05 accepted by a server dry run");
        service_account_rbac(s).await?;
        s.phase("ServiceAccount identity and RBAC (kubectl auth can-i)");
        Ok(())
    })
    .await
}

/// A permission removed from the chart's ClusterRole is caught by the harness's checks (the
/// wayguard log shows `forbidden`, the status is not written), and wayguard writes the status
/// once the permission is back and the object changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_rbac_permission_is_detected() -> Result<()> {
    run("rbac-gap", async |s: &mut KubeScenario| {
        let okta = okta().await?;
        let role = s.kubectl().get_json(&["clusterrole", CLUSTER_ROLE]).await?;
        let rules = role["rules"].as_array().context("ClusterRole rules")?;
        let index = rules
            .iter()
            .position(|r| {
                r["resources"]
                    .as_array()
                    .is_some_and(|res| res.iter().any(|x| x == "requestauthentications/status"))
            })
            .context("the chart's ClusterRole has no requestauthentications/status rule")?;
        let removed = rules[index].clone();
        let patch = json!([{"op": "remove", "path": format!("/rules/{index}")}]).to_string();
        s.kubectl()
            .ok(&[
                "patch",
                "clusterrole",
                CLUSTER_ROLE,
                "--type=json",
                "-p",
                &patch,
            ])
            .await?;
        s.apply(&namespace(NS)).await?;
        s.apply(&seed01(&okta)?).await?;
        s.phase("ClusterRole without the Istio status rule; seed 01 applied");

        let wg = s
            .start_replica(KubeScenario::replica_options("wayguard-0"))
            .await?;
        // The harness check must fail: wayguard logs the refused status write.
        let replica = s.replica(wg)?;
        let lines = until(
            "wayguard logs a forbidden status write",
            Duration::from_secs(30),
            || async {
                let lines = replica.forbidden_lines();
                if lines.is_empty() {
                    Check::Pending(replica.log_tail(5))
                } else {
                    Check::Done(lines)
                }
            },
        )
        .await?;
        ensure!(
            lines.iter().any(|l| l.contains("requestauthentications")),
            "forbidden lines do not name requestauthentications: {lines:?}"
        );
        // What `assert_no_forbidden` (run at the end of every other tier-3 test) reports.
        ensure!(
            !s.forbidden_lines().is_empty(),
            "the harness's forbidden check missed: {lines:?}"
        );
        let ra = s
            .object("requestauthentication", NS, "payments-jwt")
            .await?;
        ensure!(
            ra["status"]["conditions"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "status written without the permission: {}",
            ra["status"]
        );
        report(&format!(
            "[tier3 rbac-gap] detected: {}",
            lines.first().map(String::as_str).unwrap_or_default()
        ));
        s.phase("forbidden status write detected, no status");

        // Put the rule back (as the chart has it); the next change gets its status written.
        let patch =
            json!([{"op": "add", "path": format!("/rules/{index}"), "value": removed}]).to_string();
        s.kubectl()
            .ok(&[
                "patch",
                "clusterrole",
                CLUSTER_ROLE,
                "--type=json",
                "-p",
                &patch,
            ])
            .await?;
        let edit = json!([{"op": "replace", "path": "/spec/jwtRules/0/audiences",
                           "value": ["api://payments", "api://refunds"]}])
        .to_string();
        s.kubectl()
            .ok(&[
                "patch",
                "requestauthentication",
                "payments-jwt",
                "-n",
                NS,
                "--type=json",
                "-p",
                &edit,
            ])
            .await?;
        s.wait_status(
            "requestauthentication",
            NS,
            "payments-jwt",
            &[("Accepted", "True")],
            |o| o["metadata"]["generation"] == 2,
        )
        .await?;
        s.phase("rule restored; status written for generation 2");
        Ok(())
    })
    .await
}

async fn release_and_objects(s: &mut KubeScenario) -> Result<()> {
    let status = s.helm().status().await?;
    ensure!(
        status["info"]["status"] == "deployed",
        "helm status of {RELEASE}: {}",
        status["info"]
    );
    for (kind, name) in [
        ("serviceaccount", RELEASE),
        ("deployment", RELEASE),
        ("service", RELEASE),
        ("role", RELEASE),
        ("rolebinding", RELEASE),
        ("clusterrole", CLUSTER_ROLE),
        ("clusterrolebinding", CLUSTER_ROLE),
    ] {
        let mut args = vec![kind, name];
        if !kind.starts_with("cluster") {
            args.extend_from_slice(&["-n", NAMESPACE]);
        }
        s.kubectl()
            .get_json(&args)
            .await
            .with_context(|| format!("the chart's {kind} {name}"))?;
    }
    // The Deployment runs `serve --kubernetes` as the chart's ServiceAccount (no Pods here:
    // there is no kubelet; the test runs wayguard out of cluster with the same identity).
    let deployment = s
        .kubectl()
        .get_json(&["deployment", RELEASE, "-n", NAMESPACE])
        .await?;
    let pod = &deployment["spec"]["template"]["spec"];
    ensure!(
        pod["serviceAccountName"] == SERVICE_ACCOUNT,
        "Deployment serviceAccountName: {}",
        pod["serviceAccountName"]
    );
    let args = &pod["containers"][0]["args"];
    ensure!(
        args.as_array()
            .is_some_and(|a| a.iter().any(|x| x == "--kubernetes")),
        "Deployment args: {args}"
    );
    Ok(())
}

fn served_version(crd: &Value) -> Option<&Value> {
    crd["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["storage"] == true)
}

async fn crds_carry_schemas_cel_and_printer_columns(s: &KubeScenario) -> Result<()> {
    for name in WAYGUARD_CRDS {
        let crd = s.kubectl().get_json(&["crd", name]).await?;
        let version =
            served_version(&crd).with_context(|| format!("{name}: no storage version"))?;
        let schema = version["schema"]["openAPIV3Schema"].to_string();
        ensure!(
            schema.contains("\"properties\""),
            "{name}: no structural schema stored"
        );
        if name.ends_with("security.istio.io") {
            ensure!(
                schema.contains("x-kubernetes-validations"),
                "{name}: the stored schema has no CEL rules"
            );
        }
    }
    let ra = s
        .kubectl()
        .get_json(&["crd", "requestauthentications.security.istio.io"])
        .await?;
    let columns: Vec<String> = served_version(&ra)
        .and_then(|v| v["additionalPrinterColumns"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_ascii_uppercase))
        .collect();
    for want in ["ISSUERS", "ACCEPTED", "JWKS", "AGE"] {
        ensure!(
            columns.iter().any(|c| c == want),
            "RequestAuthentication printer columns {columns:?} lack {want}"
        );
    }
    Ok(())
}

async fn cel_rules_reject_with_their_messages(s: &KubeScenario) -> Result<()> {
    s.apply(&namespace(NS)).await?;
    for (what, manifest, message) in [
        (
            "RequestAuthentication with jwks and jwksUri",
            ra_jwks_and_jwks_uri(NS),
            "only one of jwks or jwksUri can be set",
        ),
        (
            "RequestAuthentication with targetRefs and selector",
            ra_target_refs_and_selector(NS),
            "only one of targetRefs or selector can be set",
        ),
        (
            "AuthorizationPolicy with targetRefs and selector",
            ap_target_refs_and_selector(NS),
            "only one of targetRefs or selector can be set",
        ),
    ] {
        let stderr = s.kubectl().apply_rejected(&manifest).await?;
        if !stderr.contains(message) || !stderr.contains("is invalid") {
            bail!(
                "{what}: kubectl apply was rejected, but not with the CEL rule's message \
                 {message:?}:\n{stderr}\nmanifest:\n{manifest}"
            );
        }
        report(&format!("[tier3 chart] {what}: {}", stderr.trim()));
    }
    // The seed examples as written pass every rule.
    for file in [SEED01, SEED02, SEED03, SEED04, SEED05] {
        let text = std::fs::read_to_string(seed_path(file))?;
        s.kubectl()
            .run_with_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(&text))
            .await?
            .ok()
            .with_context(|| format!("seed {file} as written"))?;
    }
    Ok(())
}

async fn service_account_rbac(s: &KubeScenario) -> Result<()> {
    let sa = s.sa_kubectl();
    let whoami = sa.ok(&["auth", "whoami", "-o", "json"]).await?;
    let user = format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}");
    ensure!(
        whoami.contains(&user),
        "the token kubeconfig is not the chart's ServiceAccount: {whoami}"
    );
    let can = async |args: &[&str]| -> Result<bool> {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let out = sa.run(&all).await?;
        Ok(out.stdout.trim() == "yes")
    };
    for (args, want) in [
        (
            &["list", "requestauthentications.security.istio.io", "-A"][..],
            true,
        ),
        (
            &["watch", "authorizationpolicies.security.istio.io", "-A"],
            true,
        ),
        (
            &[
                "patch",
                "requestauthentications.security.istio.io",
                "--subresource=status",
                "-A",
            ],
            true,
        ),
        (&["list", "endpointslices.discovery.k8s.io", "-A"], true),
        (&["get", "secrets", "-A"], true),
        (
            &[
                "update",
                "leases.coordination.k8s.io/wayguard-leader",
                "-n",
                NAMESPACE,
            ],
            true,
        ),
        // Least privilege: never write specs, never touch Secrets, no Leases elsewhere.
        (
            &["update", "requestauthentications.security.istio.io", "-A"],
            false,
        ),
        (
            &["delete", "authorizationpolicies.security.istio.io", "-A"],
            false,
        ),
        (&["create", "secrets", "-A"], false),
        (
            &[
                "update",
                "leases.coordination.k8s.io/other",
                "-n",
                NAMESPACE,
            ],
            false,
        ),
        (
            &["create", "leases.coordination.k8s.io", "-n", "default"],
            false,
        ),
        (&["create", "pods", "-A"], false),
    ] {
        let got = can(args).await?;
        ensure!(
            got == want,
            "kubectl auth can-i {} as {user}: expected {}, got {}",
            args.join(" "),
            if want { "yes" } else { "no" },
            if got { "yes" } else { "no" }
        );
    }
    Ok(())
}
