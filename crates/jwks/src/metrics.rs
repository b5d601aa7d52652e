//! Prometheus metrics of the resolver.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The label set of the fetch counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IssuerLabels {
    /// The issuer of the entry.
    pub issuer: String,
}

/// Fetch counters (`fetch_success_total`, `fetch_failure_total`, labelled by `issuer`). A
/// default value counts but is exported nowhere; use [`Metrics::register`] to export.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    success: Family<IssuerLabels, Counter>,
    failure: Family<IssuerLabels, Counter>,
}

// === impl Metrics ===

impl Metrics {
    /// Creates the counters and registers them in `registry` (give it a sub-registry with a
    /// prefix such as `jwks`, so they read `jwks_fetch_success_total`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "fetch_success",
            "JWKS fetches that produced a valid key set",
            metrics.success.clone(),
        );
        registry.register(
            "fetch_failure",
            "JWKS fetches that failed (network, status, size, SSRF guard or invalid body)",
            metrics.failure.clone(),
        );
        metrics
    }

    pub(crate) fn record(&self, issuer: &str, success: bool) {
        let family = if success {
            &self.success
        } else {
            &self.failure
        };
        family
            .get_or_create(&IssuerLabels {
                issuer: issuer.to_owned(),
            })
            .inc();
    }

    /// Successful fetches so far for `issuer` (for tests and diagnostics).
    pub fn successes(&self, issuer: &str) -> u64 {
        self.success
            .get_or_create(&IssuerLabels {
                issuer: issuer.to_owned(),
            })
            .get()
    }

    /// Failed fetches so far for `issuer` (for tests and diagnostics).
    pub fn failures(&self, issuer: &str) -> u64 {
        self.failure
            .get_or_create(&IssuerLabels {
                issuer: issuer.to_owned(),
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exported_with_total_suffix_and_issuer_label() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(registry.sub_registry_with_prefix("jwks"));
        metrics.record("https://idp.example", true);
        metrics.record("https://idp.example", false);
        metrics.record("https://idp.example", false);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains(r#"jwks_fetch_success_total{issuer="https://idp.example"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(r#"jwks_fetch_failure_total{issuer="https://idp.example"} 2"#),
            "{out}"
        );
        assert_eq!(metrics.failures("https://idp.example"), 2);
    }
}
