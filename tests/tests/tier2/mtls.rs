//! Seed 05 over mTLS: principal (client certificate URI SAN) AND method + path AND a scope
//! claim. The HTTPS listener validates client certificates against the test CA with Gateway API
//! frontend TLS validation (`caCertificateRefs`).

use anyhow::{Result, bail, ensure};
use serde_json::json;
use wayguard_tests::pki::{CHECKOUT_SPIFFE, OTHER_SPIFFE};
use wayguard_tests::scenario::PROPAGATION_TIMEOUT;
use wayguard_tests::yaml::{CaRef, ClientValidation, ValidationPlacement};
use wayguard_tests::{JwtIssuer, Pki, Req, Scenario, ScenarioBuilder, XdsMode};

use crate::common::{SEED05, okta, payments, seed_plain, seed01};

matrix!(
    seed05_principal_and_scope_over_mtls,
    mtls_client_ca_from_secret,
    mtls_per_port_insecure_fallback,
    tls_secret_rotation_without_envoy_restart,
    mtls_legacy_listener_frontend_validation_enforced_or_reported,
    trust_domain_alias_over_mtls,
);

async fn start(mode: XdsMode, pki: &Pki, v: ClientValidation) -> Result<(Scenario, JwtIssuer)> {
    let okta = okta().await?;
    let s = ScenarioBuilder::new(mode)
        .https(pki, Some(v))?
        .file("ra.yaml", seed01(&okta)?)
        .file("authz.yaml", seed_plain(SEED05)?)
        .start()
        .await?;
    Ok((s, okta))
}

fn charge(okta: &JwtIssuer) -> Result<Req> {
    let write = okta.token(payments(json!({"scope": "payments:write"})))?;
    Ok(Req::post("/charge").bearer(&write))
}

async fn seed05_principal_and_scope_over_mtls(mode: XdsMode) -> Result<()> {
    let pki = Pki::new("wayguard test CA")?;
    let (s, okta) = start(mode, &pki, ClientValidation::configmap("client-ca")).await?;
    let checkout = s.tls_client(&pki, Some(&pki.client_cert(CHECKOUT_SPIFFE)?))?;
    let other = s.tls_client(&pki, Some(&pki.client_cert(OTHER_SPIFFE)?))?;
    let anonymous = s.tls_client(&pki, None)?;

    let write = okta.token(payments(json!({"scope": "payments:write"})))?;
    let read = okta.token(payments(json!({"scope": "payments:read"})))?;
    let charge = Req::post("/charge").bearer(&write);

    // Everything right: 200.
    s.eventually_with(&checkout, &charge, 200, PROPAGATION_TIMEOUT)
        .await?;
    // One condition wrong at a time: 403.
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
    // Another workload identity: 403.
    s.expect_with(&other, &charge, 403).await?;
    // No client certificate (AllowValidOnly): the handshake is refused.
    if let Ok(resp) = anonymous.send(&charge).await {
        bail!(
            "[{mode:?}] {} over TLS without a client certificate (AllowValidOnly): expected a \
             refused handshake, got {}\n{}",
            charge.describe(),
            resp.summary(),
            s.diagnostics()
        );
    }
    // A certificate from another CA with the right SAN: refused as well.
    let forged = Pki::new("another CA")?.client_cert(CHECKOUT_SPIFFE)?;
    if let Ok(resp) = s.tls_client(&pki, Some(&forged))?.send(&charge).await {
        bail!(
            "[{mode:?}] client certificate from an unknown CA: expected a refused handshake, \
             got {}\n{}",
            resp.summary(),
            s.diagnostics()
        );
    }
    // The plain HTTP listener has no peer principal: 403 whatever the token.
    s.expect(&charge, 403).await?;
    s.assert_no_nacks().await
}

async fn mtls_client_ca_from_secret(mode: XdsMode) -> Result<()> {
    let pki = Pki::new("wayguard test CA")?;
    let v = ClientValidation {
        ca: CaRef::Secret("client-ca".into()),
        ..ClientValidation::configmap("unused")
    };
    let (s, okta) = start(mode, &pki, v).await?;
    let checkout = s.tls_client(&pki, Some(&pki.client_cert(CHECKOUT_SPIFFE)?))?;
    s.eventually_with(&checkout, &charge(&okta)?, 200, PROPAGATION_TIMEOUT)
        .await?;
    let other = s.tls_client(&pki, Some(&pki.client_cert(OTHER_SPIFFE)?))?;
    s.expect_with(&other, &charge(&okta)?, 403).await?;
    s.assert_no_nacks().await
}

/// `perPort` validation with `AllowInsecureFallback`: a client without a certificate connects
/// and is refused by RBAC (403), not by the handshake.
async fn mtls_per_port_insecure_fallback(mode: XdsMode) -> Result<()> {
    let pki = Pki::new("wayguard test CA")?;
    let v = ClientValidation {
        placement: ValidationPlacement::PerPort,
        insecure_fallback: true,
        ..ClientValidation::configmap("client-ca")
    };
    let (s, okta) = start(mode, &pki, v).await?;
    let checkout = s.tls_client(&pki, Some(&pki.client_cert(CHECKOUT_SPIFFE)?))?;
    s.eventually_with(&checkout, &charge(&okta)?, 200, PROPAGATION_TIMEOUT)
        .await?;
    let anonymous = s.tls_client(&pki, None)?;
    s.expect_with(&anonymous, &charge(&okta)?, 403).await?;
    s.assert_no_nacks().await
}

/// The pre-v1.4 listener-level `tls.frontendValidation` (the form the tier-2 brief named):
/// either enforced like the standard form, or reported in `/debug/status`; never silently
/// ignored (a listener that silently skips client validation fails open for DENY policies on
/// principals).
async fn mtls_legacy_listener_frontend_validation_enforced_or_reported(
    mode: XdsMode,
) -> Result<()> {
    let pki = Pki::new("wayguard test CA")?;
    let v = ClientValidation {
        placement: ValidationPlacement::LegacyListener,
        ..ClientValidation::configmap("client-ca")
    };
    let (s, okta) = start(mode, &pki, v).await?;
    let status = s.wayguard_status().await?;
    let reported = status.to_string().contains("frontendValidation");
    let checkout = s.tls_client(&pki, Some(&pki.client_cert(CHECKOUT_SPIFFE)?))?;
    let enforced = s
        .eventually_with(&checkout, &charge(&okta)?, 200, PROPAGATION_TIMEOUT)
        .await
        .is_ok();
    ensure!(
        reported || enforced,
        "[{mode:?}] listeners[].tls.frontendValidation was neither enforced (client cert \
         {CHECKOUT_SPIFFE} + valid token -> expected 200) nor reported in /debug/status \
         (warnings: {})",
        status["warnings"]
    );
    s.assert_no_nacks().await
}

/// A new server certificate and client CA (Secret and ConfigMap edited on disk) reach Envoy
/// over SDS without restarting it.
async fn tls_secret_rotation_without_envoy_restart(mode: XdsMode) -> Result<()> {
    let old = Pki::new("old CA")?;
    let (mut s, okta) = start(mode, &old, ClientValidation::configmap("client-ca")).await?;
    let pid = s.envoy()?.pid();
    let old_client = s.tls_client(&old, Some(&old.client_cert(CHECKOUT_SPIFFE)?))?;
    s.eventually_with(&old_client, &charge(&okta)?, 200, PROPAGATION_TIMEOUT)
        .await?;

    let new = Pki::new("new CA")?;
    let new_client = s.tls_client(&new, Some(&new.client_cert(CHECKOUT_SPIFFE)?))?;
    ensure!(
        new_client.send(&charge(&okta)?).await.is_err(),
        "a client of the new CA got through before the rotation"
    );
    s.rotate_https(&new)?;
    s.eventually_with(&new_client, &charge(&okta)?, 200, PROPAGATION_TIMEOUT)
        .await?;
    ensure!(
        old_client.send(&charge(&okta)?).await.is_err(),
        "a client of the old CA still got through after the rotation"
    );
    ensure!(s.envoy()?.pid() == pid, "Envoy was restarted");
    s.assert_no_nacks().await
}

/// Mesh config `trustDomain: new-td` with alias `cluster.local`: a policy written for
/// `new-td/ns/checkout/sa/checkout` admits the client certificate `spiffe://cluster.local/ns/
/// checkout/sa/checkout` (the same workload under an alias), and not another workload.
async fn trust_domain_alias_over_mtls(mode: XdsMode) -> Result<()> {
    // The mesh config istiod reads: ConfigMap `istio` in the root namespace, key `mesh`.
    const MESH: &str = r#"kind: ConfigMap
apiVersion: v1
metadata:
  namespace: istio-system
  name: istio
data:
  mesh: "trustDomain: new-td\ntrustDomainAliases: [cluster.local]\n"
"#;
    const POLICY: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: checkout-only, namespace: payments-prod}
spec:
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["new-td/ns/checkout/sa/checkout"]
"#;
    let pki = Pki::new("wayguard test CA")?;
    let s = ScenarioBuilder::new(mode)
        .https(&pki, Some(ClientValidation::configmap("client-ca")))?
        .file("mesh.yaml", MESH)
        .file("authz.yaml", POLICY)
        .start()
        .await?;
    ensure!(
        CHECKOUT_SPIFFE == "spiffe://cluster.local/ns/checkout/sa/checkout",
        "the checkout test identity changed: {CHECKOUT_SPIFFE}"
    );
    let checkout = s.tls_client(&pki, Some(&pki.client_cert(CHECKOUT_SPIFFE)?))?;
    let other = s.tls_client(&pki, Some(&pki.client_cert(OTHER_SPIFFE)?))?;
    s.eventually_with(&checkout, &Req::get("/"), 200, PROPAGATION_TIMEOUT)
        .await?;
    s.expect_with(&other, &Req::get("/"), 403).await?;
    s.assert_no_nacks().await
}
