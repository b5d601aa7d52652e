//! Shared pieces of the tier-2 tests.

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, anyhow};
use wayguard_tests::yaml::{SeedIssuers, seed};
use wayguard_tests::{IssuerOptions, JwtIssuer, keys};

/// Upper bound for one test (startup, matrix, teardown).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(240);

/// Runs a test body with [`TEST_TIMEOUT`]. The wayguard binary is built (once per process)
/// and the RSA key pool started before the clock starts: a cold build is not the test's time.
pub async fn bounded(body: impl Future<Output = Result<()>>) -> Result<()> {
    // Fail fast, naming the install step, when Envoy is missing.
    wayguard_tests::tools::envoy()?;
    keys::prewarm();
    tokio::task::spawn_blocking(wayguard_tests::wayguard::binary)
        .await
        .map_err(|e| anyhow!("building wayguard: {e}"))??;
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

/// Seed 01 (single issuer: audiences `api://payments`, `forwardOriginalToken`,
/// `outputClaimToHeaders x-user-email <- email`) pointed at `okta`.
pub fn seed01(okta: &JwtIssuer) -> Result<String> {
    seed(
        "01-requestauthentication-single-issuer.yaml",
        SeedIssuers {
            okta: Some(okta),
            internal: None,
        },
    )
}

/// A RequestAuthentication for `issuer` with no `audiences` (so RBAC sees every audience,
/// SEMANTICS.md §2.5).
pub fn ra_without_audiences(issuer: &JwtIssuer) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: payments-jwt\n  \
         namespace: payments-prod\nspec:\n  targetRefs:\n  - kind: Gateway\n    group: gateway.networking.k8s.io\n    \
         name: waypoint\n  jwtRules:\n  - issuer: \"{}\"\n    jwksUri: \"{}\"\n",
        issuer.issuer(),
        issuer.jwks_uri()
    )
}

/// Claims of a valid token for seed 01's audience.
pub fn payments(extra: serde_json::Value) -> serde_json::Value {
    let mut claims = serde_json::json!({"aud": "api://payments"});
    if let (Some(base), serde_json::Value::Object(extra)) = (claims.as_object_mut(), extra) {
        base.extend(extra);
    }
    claims
}
