//! The seed examples 01-05 applied with kubectl (adapted to loopback), enforced by a real Envoy
//! that wayguard (running with the chart's ServiceAccount token) programs; `kubectl delete` and
//! edits take effect; the status conditions and printer columns read back with kubectl,
//! including a policy only wayguard rejects.

use anyhow::{Result, ensure};
use serde_json::json;
use wayguard_tests::http::Req;
use wayguard_tests::kube::manifests::{HttpsStack, ap_deny_without_rules};
use wayguard_tests::kube::scenario::{condition, describe_conditions};
use wayguard_tests::kube::{KubeScenario, report};
use wayguard_tests::pki::{CHECKOUT_SPIFFE, OTHER_SPIFFE, Pki};
use wayguard_tests::poll::{Check, Deadline};
use wayguard_tests::ports::free_port;
use wayguard_tests::scenario::PROPAGATION_TIMEOUT;
use wayguard_tests::{JwtIssuer, XdsMode};

use crate::common::{
    FIXED_DENY, GATEWAY, NS, SEED02, SEED03, SEED04, SEED05, internal, okta, payments, run,
    seed_plain, seed_with, seed01,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_applied_with_kubectl_are_enforced_by_envoy() -> Result<()> {
    run("seeds", async |s: &mut KubeScenario| {
        let okta = okta().await?;
        let internal = internal().await?;
        let pki = Pki::new("wayguard tier3 CA")?;
        let mut stack = s.stack(NS, GATEWAY)?;
        stack.https = Some(HttpsStack {
            port: free_port()?,
            server: pki.server_cert(&["gateway.wayguard.test"])?,
            client_ca_pem: Some(pki.ca_pem().to_string()),
        });
        s.apply(&stack.yaml()).await?;
        s.phase(
            "kubectl apply: Namespace, GatewayClass, Gateway, Service + FQDN EndpointSlice, \
             HTTPRoute, TLS Secret, CA ConfigMap",
        );
        let wg = s
            .start_replica(KubeScenario::replica_options("wayguard-0"))
            .await?;
        s.phase("wayguard serve --kubernetes (ServiceAccount token) ready");
        s.start_envoy(&stack, wg, XdsMode::Sotw).await?;
        s.phase("Envoy from wayguard bootstrap: HTTP and HTTPS listeners live");
        backend_through_fqdn_cluster(s).await?;
        s.phase("no policy: backend reached through the FQDN (STRICT_DNS) cluster");
        gateway_api_status(s).await?;
        s.phase("Gateway status: Accepted, Programmed, listeners with attached routes");

        seed01_jwt_matrix(s, &okta).await?;
        s.phase("seed 01 applied: jwt_authn matrix");
        status_and_printer_columns(s, &okta).await?;
        s.phase("seed 01 status conditions and printer columns");
        seed03_groups_then_delete(s, &okta).await?;
        s.phase("seed 03 applied (groups claim), then kubectl delete");
        seed04_deny_audience_with_edits(s, &okta).await?;
        s.phase("kubectl patch of seed 01 (audiences removed), seed 04 DENY, apply of its fix");
        seed02_multi_issuer(s, &okta, &internal).await?;
        s.phase("seed 02 (two issuers, fromHeaders)");
        seed05_over_mtls(s, &okta, &pki).await?;
        s.phase("seed 05 over mTLS (Secret + ConfigMap read with the ServiceAccount)");
        rejected_policy(s, &okta, &pki).await?;
        s.phase("AuthorizationPolicy only wayguard rejects: Accepted=False with its message");

        s.assert_no_forbidden().await?;
        let writes = s.replica(wg)?.status_writes(None);
        ensure!(
            writes.len() >= 6,
            "expected status writes for every policy, got {writes:?}"
        );
        s.assert_no_warnings(&[]).await?;
        Ok(())
    })
    .await
}

/// `kubectl get gateway` shows the Gateway programmed, with the HTTPRoute attached to its
/// listeners, written by wayguard with server-side apply.
async fn gateway_api_status(s: &mut KubeScenario) -> Result<()> {
    let mut deadline = Deadline::new(
        format!("Gateway {NS}/{GATEWAY}: Accepted and Programmed, routes attached"),
        PROPAGATION_TIMEOUT,
    );
    let gw = loop {
        let check = match s.object("gateway", NS, GATEWAY).await {
            Ok(gw) => {
                let generation = &gw["metadata"]["generation"];
                let current = |c: Option<&serde_json::Value>| {
                    c.is_some_and(|c| {
                        c["status"] == "True" && &c["observedGeneration"] == generation
                    })
                };
                let listeners = gw["status"]["listeners"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let ok = current(condition(&gw, "Accepted"))
                    && current(condition(&gw, "Programmed"))
                    && listeners.len() == 2
                    && listeners.iter().all(|l| {
                        l["attachedRoutes"] == 1
                            && l["conditions"].as_array().is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c["type"] == "Programmed" && c["status"] == "True")
                            })
                    });
                if ok {
                    Check::Done(gw)
                } else {
                    Check::Pending(gw["status"].to_string())
                }
            }
            Err(e) => Check::Pending(format!("{e:#}")),
        };
        if let Some(gw) = deadline.next(check).await? {
            break gw;
        }
    };
    let managed = gw["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        managed
            .iter()
            .any(|m| m["manager"] == "wayguard" && m["subresource"] == "status"),
        "Gateway status not written by wayguard: {}",
        json!(managed)
    );
    let (table, text) = s.table("gateway").await?;
    report(&format!("[tier3 seeds] kubectl get gateway -A:\n{text}"));
    ensure!(
        table.header == ["NAMESPACE", "NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"]
            && table.cell("NAME", GATEWAY, "PROGRAMMED") == Some("True"),
        "kubectl get gateway -A:\n{text}"
    );
    Ok(())
}

async fn backend_through_fqdn_cluster(s: &mut KubeScenario) -> Result<()> {
    let seen = s.eventually(&Req::get("/healthz"), 200).await?.echo()?;
    ensure!(seen.path == "/healthz", "echo saw {seen:?}");
    let clusters = s
        .envoy()?
        .config_dump("?resource=dynamic_active_clusters")
        .await?
        .to_string();
    ensure!(
        clusters.contains("payments.localhost") && clusters.contains("STRICT_DNS"),
        "Envoy has no STRICT_DNS cluster for payments.localhost: {clusters}"
    );
    Ok(())
}

async fn seed01_jwt_matrix(s: &mut KubeScenario, okta: &JwtIssuer) -> Result<()> {
    s.apply(&seed01(okta)?).await?;
    // In effect once another audience is refused (without a policy every token passes).
    let other_audience = okta.token(json!({"aud": "api://other"}))?;
    s.eventually(&Req::get("/pay").bearer(&other_audience), 403)
        .await?;
    let valid = okta.token(payments(json!({"email": "alice@example.com"})))?;
    let seen = s
        .expect(&Req::get("/pay").bearer(&valid), 200)
        .await?
        .echo()?;
    ensure!(
        seen.header("x-user-email") == Some("alice@example.com"),
        "outputClaimToHeaders: x-user-email not set from the email claim: {:?}",
        seen.headers
    );
    ensure!(
        seen.header("authorization") == Some(format!("Bearer {valid}").as_str()),
        "forwardOriginalToken: Authorization not forwarded: {:?}",
        seen.headers
    );
    // No AuthorizationPolicy: a request without a token passes.
    s.expect(&Req::get("/pay"), 200).await?;
    s.expect_body(
        &Req::get("/pay").bearer(&other_audience),
        403,
        "Audiences in Jwt are not allowed",
    )
    .await?;
    s.expect_body(
        &Req::get("/pay").bearer(&okta.expired_token(payments(json!({})))?),
        401,
        "Jwt is expired",
    )
    .await?;
    s.expect_body(
        &Req::get("/pay").bearer(&okta.token_signed_by_unknown_key(payments(json!({})))?),
        401,
        "Jwks doesn't have key to match kid or alg from Jwt",
    )
    .await?;
    Ok(())
}

async fn status_and_printer_columns(s: &mut KubeScenario, okta: &JwtIssuer) -> Result<()> {
    let ra = s
        .wait_status(
            "requestauthentication",
            NS,
            "payments-jwt",
            &[
                ("Accepted", "True"),
                ("ResolvedRefs", "True"),
                ("JwksResolved", "True"),
            ],
            |_| true,
        )
        .await?;
    let resolved = condition(&ra, "ResolvedRefs").map(|c| c["message"].to_string());
    ensure!(
        resolved
            .as_deref()
            .is_some_and(|m| m.contains("payments-prod/waypoint")),
        "ResolvedRefs does not name the gateway: {}",
        describe_conditions(&ra)
    );
    // Server-side apply by field manager `wayguard` on the status subresource.
    let managed = ra["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        managed.iter().any(|m| m["manager"] == "wayguard"
            && m["operation"] == "Apply"
            && m["subresource"] == "status"),
        "no server-side apply of status by manager wayguard in managedFields: {}",
        json!(managed)
    );

    let (table, text) = s.table("requestauthentication").await?;
    report(&format!(
        "[tier3 seeds] kubectl get requestauthentication -A:\n{text}"
    ));
    ensure!(
        table.header == ["NAMESPACE", "NAME", "ISSUERS", "ACCEPTED", "JWKS", "AGE"],
        "printer columns: {:?}\n{text}",
        table.header
    );
    for (column, want) in [
        ("NAMESPACE", NS),
        ("ISSUERS", okta.issuer()),
        ("ACCEPTED", "True"),
        ("JWKS", "True"),
    ] {
        let got = table.cell("NAME", "payments-jwt", column);
        ensure!(
            got == Some(want),
            "{column}: expected {want:?}, got {got:?}\n{text}"
        );
    }
    ensure!(
        table
            .cell("NAME", "payments-jwt", "AGE")
            .is_some_and(|a| !a.is_empty() && a != "<none>"),
        "AGE empty\n{text}"
    );

    let yaml = s
        .kubectl()
        .ok(&[
            "get",
            "requestauthentication",
            "payments-jwt",
            "-n",
            NS,
            "-o",
            "yaml",
        ])
        .await?;
    for want in [
        "type: Accepted",
        "type: ResolvedRefs",
        "type: JwksResolved",
        "observedGeneration: 1",
        "reason: ",
        "lastTransitionTime: ",
    ] {
        ensure!(yaml.contains(want), "-o yaml lacks {want:?}:\n{yaml}");
    }
    Ok(())
}

async fn seed03_groups_then_delete(s: &mut KubeScenario, okta: &JwtIssuer) -> Result<()> {
    let policy = seed_plain(SEED03)?;
    s.apply(&policy).await?;
    let admin = okta.token(payments(json!({"groups": ["dev", "payments-admin"]})))?;
    let dev = okta.token(payments(json!({"groups": ["dev"]})))?;
    // In effect once a token without the group is refused.
    s.eventually(&Req::get("/refund").bearer(&dev), 403).await?;
    s.expect(&Req::get("/refund").bearer(&admin), 200).await?;
    s.expect_body(&Req::get("/refund"), 403, "RBAC: access denied")
        .await?;
    s.expect_body(
        &Req::get("/refund").bearer(&dev),
        403,
        "RBAC: access denied",
    )
    .await?;
    s.expect(
        &Req::get("/refund").bearer(&okta.token(payments(json!({"groups": "payments-admin"})))?),
        200,
    )
    .await?;
    s.wait_status(
        "authorizationpolicy",
        NS,
        "payments-admin-only",
        &[("Accepted", "True"), ("ResolvedRefs", "True")],
        |_| true,
    )
    .await?;

    s.delete(&policy).await?;
    s.eventually(&Req::get("/refund").bearer(&dev), 200).await?;
    s.expect(&Req::get("/refund"), 200).await?;
    Ok(())
}

async fn seed04_deny_audience_with_edits(s: &mut KubeScenario, okta: &JwtIssuer) -> Result<()> {
    let ours = okta.token(payments(json!({})))?;
    let theirs = okta.token(json!({"aud": "api://other"}))?;
    let both = okta.token(json!({"aud": ["api://other", "api://payments"]}))?;

    // Edit 1: drop seed 01's audiences so RBAC sees every audience (SEMANTICS.md 2.5).
    s.kubectl()
        .ok(&[
            "patch",
            "requestauthentication",
            "payments-jwt",
            "-n",
            NS,
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/jwtRules/0/audiences"}]"#,
        ])
        .await?;
    s.eventually(&Req::get("/x").bearer(&theirs), 200).await?;
    s.wait_status(
        "requestauthentication",
        NS,
        "payments-jwt",
        &[("Accepted", "True")],
        |o| o["metadata"]["generation"] == 2,
    )
    .await?;

    s.apply(&seed_plain(SEED04)?).await?;
    s.eventually(&Req::get("/x").bearer(&theirs), 403).await?;
    s.expect_body(&Req::get("/x").bearer(&theirs), 403, "RBAC: access denied")
        .await?;
    s.expect(&Req::get("/x").bearer(&ours), 200).await?;
    s.expect(&Req::get("/x").bearer(&both), 200).await?;
    // The seed's gotcha: no token, no audiences, notValues matches: denied.
    s.expect_body(&Req::get("/x"), 403, "RBAC: access denied")
        .await?;

    // Edit 2: kubectl apply of the changed policy (same name) with the fix.
    s.apply(FIXED_DENY).await?;
    s.eventually(&Req::get("/x"), 200).await?;
    s.expect(&Req::get("/x").bearer(&ours), 200).await?;
    s.expect_body(&Req::get("/x").bearer(&theirs), 403, "RBAC: access denied")
        .await?;
    s.wait_status(
        "authorizationpolicy",
        NS,
        "payments-aud-guard",
        &[("Accepted", "True")],
        |o| o["metadata"]["generation"] == 2,
    )
    .await?;
    s.delete(FIXED_DENY).await?;
    Ok(())
}

async fn seed02_multi_issuer(
    s: &mut KubeScenario,
    okta: &JwtIssuer,
    internal: &JwtIssuer,
) -> Result<()> {
    s.kubectl()
        .ok(&["delete", "requestauthentication", "payments-jwt", "-n", NS])
        .await?;
    s.apply(&seed_with(SEED02, Some(okta), Some(internal))?)
        .await?;
    // In effect once the internal issuer's audience is checked in x-service-jwt (before, with
    // no RequestAuthentication or only seed 01, that header is not read at all).
    let wrong_aud = internal.token(json!({"aud": "api://payments"}))?;
    let in_header = |token: &str| Req::get("/internal").header("x-service-jwt", token);
    s.eventually(&in_header(&wrong_aud), 403).await?;
    s.expect_body(
        &in_header(&wrong_aud),
        403,
        "Audiences in Jwt are not allowed",
    )
    .await?;
    let svc = internal.token(json!({"aud": "svc://payments", "sub": "orders"}))?;
    // Eventually: the deletion of the previous phase's DENY may land after seed 02 (one watch
    // per kind, no order between them).
    let seen = s.eventually(&in_header(&svc), 200).await?.echo()?;
    ensure!(
        seen.header("x-service-jwt").is_none(),
        "x-service-jwt forwarded although forwardOriginalToken is false: {:?}",
        seen.headers
    );
    // Each issuer only at its own location.
    s.expect_body(
        &Req::get("/internal").bearer(&svc),
        401,
        "Jwt issuer is not configured",
    )
    .await?;
    s.expect_body(
        &in_header(&okta.token(payments(json!({})))?),
        401,
        "Jwt issuer is not configured",
    )
    .await?;
    s.expect(
        &Req::get("/internal").bearer(&okta.token(payments(json!({})))?),
        200,
    )
    .await?;
    let ra = s
        .wait_status(
            "requestauthentication",
            NS,
            "payments-jwt-multi",
            &[("Accepted", "True"), ("JwksResolved", "True")],
            |_| true,
        )
        .await?;
    let (table, text) = s.table("requestauthentication").await?;
    let issuers = table
        .cell("NAME", "payments-jwt-multi", "ISSUERS")
        .unwrap_or_default();
    // A printer column shows only the first JSONPath match, so ISSUERS reads the
    // `status.issuers` summary wayguard writes with the conditions: every issuer shows.
    let want = format!("{}, {}", okta.issuer(), internal.issuer());
    ensure!(
        issuers == want,
        "ISSUERS column of payments-jwt-multi: {issuers:?}, expected {want:?}\n{text}\n{}",
        describe_conditions(&ra)
    );
    s.kubectl()
        .ok(&[
            "delete",
            "requestauthentication",
            "payments-jwt-multi",
            "-n",
            NS,
        ])
        .await?;
    Ok(())
}

async fn seed05_over_mtls(s: &mut KubeScenario, okta: &JwtIssuer, pki: &Pki) -> Result<()> {
    s.apply(&seed01(okta)?).await?;
    s.apply(&seed_plain(SEED05)?).await?;
    let checkout = s.tls_client(pki, Some(&pki.client_cert(CHECKOUT_SPIFFE)?))?;
    let other = s.tls_client(pki, Some(&pki.client_cert(OTHER_SPIFFE)?))?;
    let write = okta.token(payments(json!({"scope": "payments:write"})))?;
    let read = okta.token(payments(json!({"scope": "payments:read"})))?;
    let charge = Req::post("/charge").bearer(&write);
    // In effect once another workload identity is refused (without the policy it passes).
    s.eventually_with(&other, &charge, 403).await?;
    s.eventually_with(&checkout, &charge, 200).await?;
    for (what, req) in [
        ("wrong method", Req::get("/charge").bearer(&write)),
        ("wrong path", Req::post("/refund").bearer(&write)),
        ("wrong scope", Req::post("/charge").bearer(&read)),
        ("no token", Req::post("/charge")),
    ] {
        s.expect_with(&checkout, &req, 403)
            .await
            .map_err(|e| e.context(what))?;
    }
    // The HTTP listener has no peer principal.
    s.expect(&charge, 403).await?;
    Ok(())
}

async fn rejected_policy(s: &mut KubeScenario, okta: &JwtIssuer, pki: &Pki) -> Result<()> {
    let manifest = ap_deny_without_rules(NS, GATEWAY);
    // No CEL rule catches it: the apiserver stores it.
    s.apply(&manifest).await?;
    let ap = s
        .wait_status(
            "authorizationpolicy",
            NS,
            "deny-nothing",
            &[("Accepted", "False")],
            |_| true,
        )
        .await?;
    let message = condition(&ap, "Accepted")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string();
    ensure!(
        message.contains("DENY action without `rules` is meaningless"),
        "Accepted=False without wayguard's message: {}",
        describe_conditions(&ap)
    );
    let yaml = s
        .kubectl()
        .ok(&[
            "get",
            "authorizationpolicy",
            "deny-nothing",
            "-n",
            NS,
            "-o",
            "yaml",
        ])
        .await?;
    ensure!(
        yaml.contains("DENY action without `rules` is meaningless")
            && yaml.contains("status: \"False\""),
        "-o yaml does not show the rejection:\n{yaml}"
    );
    let (table, text) = s.table("authorizationpolicy").await?;
    report(&format!(
        "[tier3 seeds] kubectl get authorizationpolicy -A:\n{text}"
    ));
    ensure!(
        table.cell("NAME", "deny-nothing", "ACCEPTED") == Some("False")
            && table.cell("NAME", "payments-write", "ACCEPTED") == Some("True"),
        "ACCEPTED column:\n{text}"
    );
    // Not in effect: the seed 05 request still passes.
    let checkout = s.tls_client(pki, Some(&pki.client_cert(CHECKOUT_SPIFFE)?))?;
    let write = okta.token(payments(json!({"scope": "payments:write"})))?;
    s.expect_with(&checkout, &Req::post("/charge").bearer(&write), 200)
        .await?;
    Ok(())
}
