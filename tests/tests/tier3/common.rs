//! Shared pieces of the tier-3 tests (the seed helpers shared with tier 2 come from
//! `wayguard_tests::seeds`).

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, anyhow};
use wayguard_tests::keys;
use wayguard_tests::kube::{KubeScenario, KubeTools};
pub use wayguard_tests::seeds::{
    FIXED_DENY, SEED01, SEED02, SEED03, SEED04, SEED05, internal, okta, payments, seed_plain,
    seed_with, seed01,
};

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
