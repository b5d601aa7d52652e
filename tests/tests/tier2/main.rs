//! Tier 2: the wayguard binary serving a real Envoy over ADS, asserted through Envoy with the
//! exact status codes of SEMANTICS.md §1.4. Every test runs once with SotW and once with Delta
//! ADS (`sotw::name` and `delta::name`).
//!
//! Needs Envoy (`cargo xtask tools --envoy`); a missing tool fails the test.

/// Generates `sotw::$name` and `delta::$name` tests calling `$name(XdsMode)`, each bounded by
/// [`common::TEST_TIMEOUT`]. Attributes before a name (e.g. `#[ignore = "..."]` for a known
/// wayguard bug, with the reason) apply to both.
macro_rules! matrix {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod sotw {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    $crate::common::bounded(super::$name(wayguard_tests::XdsMode::Sotw)).await
                }
            )*
        }
        mod delta {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    $crate::common::bounded(super::$name(wayguard_tests::XdsMode::Delta)).await
                }
            )*
        }
    };
}

mod common;
mod jwks;
mod jwt;
mod mtls;
mod quickstart;
mod readiness;
mod reload;
mod routing;
mod seeds;
