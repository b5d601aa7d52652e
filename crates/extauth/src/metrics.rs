//! Login metrics (registered under the caller's prefix, e.g. `wayguard_extauth_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A login policy and an outcome or reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Labels {
    /// `namespace/name` of the AuthConfig.
    pub authconfig: String,
    /// What happened.
    pub outcome: &'static str,
}

/// A store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `load`, `save`, `delete`, `use_state`.
    pub operation: &'static str,
}

/// The metrics of the ext_authz service.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Logins started (redirects to the IdP).
    pub logins_started: Family<Labels, Counter>,
    /// Logins completed (session created).
    pub logins_completed: Family<Labels, Counter>,
    /// Logins that failed, by reason.
    pub logins_failed: Family<Labels, Counter>,
    /// Check decisions (`allow`, `redirect`, `unauthenticated`, `unavailable`, ...).
    pub decisions: Family<Labels, Counter>,
    /// Token refreshes by outcome.
    pub refreshes: Family<Labels, Counter>,
    /// Sessions ended (logout, back-channel logout, revocation).
    pub logouts: Family<Labels, Counter>,
    /// Check latency, seconds.
    pub check_seconds: Histogram,
    /// Session store latency, seconds.
    pub store_seconds: Family<StoreLabels, Histogram, fn() -> Histogram>,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Default for Metrics {
    /// Metrics that are not registered anywhere (tests, one-shot tools).
    fn default() -> Self {
        Self {
            logins_started: Family::default(),
            logins_completed: Family::default(),
            logins_failed: Family::default(),
            decisions: Family::default(),
            refreshes: Family::default(),
            logouts: Family::default(),
            check_seconds: latency(),
            store_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
        }
    }
}

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "logins_started",
            "Logins started (redirects to the identity provider)",
            m.logins_started.clone(),
        );
        registry.register(
            "logins_completed",
            "Logins completed (sessions created)",
            m.logins_completed.clone(),
        );
        registry.register(
            "logins_failed",
            "Logins that failed, by reason",
            m.logins_failed.clone(),
        );
        registry.register(
            "decisions",
            "ext_authz Check decisions by outcome",
            m.decisions.clone(),
        );
        registry.register(
            "refreshes",
            "Token refreshes by outcome",
            m.refreshes.clone(),
        );
        registry.register("logouts", "Sessions ended, by how", m.logouts.clone());
        registry.register(
            "check_seconds",
            "Time to answer one Check",
            m.check_seconds.clone(),
        );
        registry.register(
            "store_seconds",
            "Session store latency by operation",
            m.store_seconds.clone(),
        );
        m
    }

    /// Counts `outcome` for `authconfig` in `family`.
    pub fn count(family: &Family<Labels, Counter>, authconfig: &str, outcome: &'static str) {
        family
            .get_or_create(&Labels {
                authconfig: authconfig.to_string(),
                outcome,
            })
            .inc();
    }
}
