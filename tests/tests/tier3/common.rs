//! Shared pieces of the tier-3 tests.

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, anyhow};
use wayguard_tests::kube::{KubeScenario, KubeTools};
use wayguard_tests::yaml::{SeedIssuers, seed};
use wayguard_tests::{IssuerOptions, JwtIssuer, keys};

/// Upper bound for one test once it runs (cluster start, phases, teardown).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The seeds' namespace and gateway.
pub const NS: &str = "payments-prod";
/// The seeds' gateway.
pub const GATEWAY: &str = "waypoint";

/// One cluster at a time in this process: each test holds this while it runs.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a test body on a fresh [`KubeScenario`] named `name`: waits for the other tier-3 tests,
/// fails fast when a tool is missing, builds wayguard and starts the RSA key pool outside the
/// time bound, then runs `body` within [`TEST_TIMEOUT`]. A body error keeps the scenario dir.
pub async fn run<F>(name: &str, body: F) -> Result<()>
where
    F: AsyncFnOnce(&mut KubeScenario) -> Result<()>,
{
    let _serial = SERIAL.lock().await;
    KubeTools::resolve()?;
    keys::prewarm();
    tokio::task::spawn_blocking(wayguard_tests::wayguard::binary)
        .await
        .map_err(|e| anyhow!("building wayguard: {e}"))??;
    bounded(async {
        let mut s = KubeScenario::start(name).await?;
        let result = body(&mut s).await;
        if result.is_err() {
            s.mark_failed();
        }
        result
    })
    .await
}

async fn bounded(body: impl Future<Output = Result<()>>) -> Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .map_err(|_| anyhow!("test exceeded {TEST_TIMEOUT:?}"))?
}

/// The stand-in for the seed's Okta issuer (`<loopback>/oauth2/default`).
pub async fn okta() -> Result<JwtIssuer> {
    JwtIssuer::start(IssuerOptions {
        path: "/oauth2/default".into(),
        key_slot: keys::ISSUER_SLOT,
        kid_prefix: "okta".into(),
    })
    .await
}

/// The stand-in for the seed's internal IdP (`<loopback>/realms/services`).
pub async fn internal() -> Result<JwtIssuer> {
    JwtIssuer::start(IssuerOptions {
        path: "/realms/services".into(),
        key_slot: keys::SECOND_ISSUER_SLOT,
        kid_prefix: "internal".into(),
    })
    .await
}

/// A seed example with its issuers rewritten to the loopback ones given.
pub fn seed_with(
    file: &str,
    okta: Option<&JwtIssuer>,
    internal: Option<&JwtIssuer>,
) -> Result<String> {
    seed(file, SeedIssuers { okta, internal })
}

/// Seed 01 (audience `api://payments`, `forwardOriginalToken`, `x-user-email <- email`)
/// pointed at `okta`.
pub fn seed01(okta: &JwtIssuer) -> Result<String> {
    seed_with(SEED01, Some(okta), None)
}

/// A seed example without issuers (the AuthorizationPolicies 03-05).
pub fn seed_plain(file: &str) -> Result<String> {
    seed_with(file, None, None)
}

/// Seed 01: one issuer, audience `api://payments`.
pub const SEED01: &str = "01-requestauthentication-single-issuer.yaml";
/// Seed 03: ALLOW `requestPrincipals ["*"]` and `groups` contains `payments-admin`.
pub const SEED03: &str = "03-authorizationpolicy-groups-claim.yaml";
/// Seed 04: DENY when `request.auth.audiences` is not `api://payments`.
pub const SEED04: &str = "04-authorizationpolicy-deny-audience.yaml";
/// Seed 05: ALLOW a SPIFFE principal, POST /charge and scope `payments:write`.
pub const SEED05: &str = "05-authorizationpolicy-principal-and-claim.yaml";
/// Seed 02: Okta in `Authorization`, the internal IdP in `x-service-jwt`.
pub const SEED02: &str = "02-requestauthentication-multi-issuer.yaml";

/// Claims of a valid token for seed 01's audience, plus `extra`.
pub fn payments(extra: serde_json::Value) -> serde_json::Value {
    let mut claims = serde_json::json!({"aud": "api://payments"});
    if let (Some(base), serde_json::Value::Object(extra)) = (claims.as_object_mut(), extra) {
        base.extend(extra);
    }
    claims
}

/// Seed 04 with its documented fix (the rule scoped to authenticated requests), same name: a
/// `kubectl apply` of it is an edit of the seed's policy.
pub const FIXED_DENY: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: payments-aud-guard
  namespace: payments-prod
spec:
  targetRefs:
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: waypoint
  action: DENY
  rules:
  - from:
    - source:
        requestPrincipals: ["*"]
    when:
    - key: request.auth.audiences
      notValues: ["api://payments"]
"#;
