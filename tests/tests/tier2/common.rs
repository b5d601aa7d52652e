//! Shared pieces of the tier-2 tests (the seed helpers shared with tier 3 come from
//! `wayguard_tests::seeds`).

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, anyhow};
pub use wayguard_tests::seeds::{
    FIXED_DENY, SEED02, SEED03, SEED04, SEED05, internal, okta, payments, seed_plain, seed_with,
    seed01,
};
use wayguard_tests::{JwtIssuer, keys};

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
