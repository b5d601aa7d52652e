//! Key material for JWT rules: inline JWKS are normalised (private members dropped), remote ones
//! come from the JWKS resolver, and anything not (yet) resolved fails closed with a JWKS that can
//! never validate a token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wayguard_core::authn::{JwksConfig, JwksSource, JwtRule, REMOTE_JWKS_CACHE_DURATION};
use wayguard_jwks::{JwksResolver, KeySet, KeySetState, RefreshRequest, never_matching_jwks};

/// Decides the `JwksConfig` of each rule.
#[derive(Clone)]
pub struct KeyMaterial {
    resolver: JwksResolver,
}

impl KeyMaterial {
    /// Wraps a resolver.
    pub fn new(resolver: JwksResolver) -> Self {
        Self { resolver }
    }

    /// The resolver.
    pub fn resolver(&self) -> &JwksResolver {
        &self.resolver
    }

    fn state(&self, rule: &JwtRule) -> Option<KeySetState> {
        let uri = match &rule.jwks {
            JwksSource::Inline(_) => return None,
            JwksSource::Uri(uri) => Some(uri.as_str()),
            JwksSource::Discovery => None,
        };
        Some(self.resolver.lookup(&rule.issuer, uri, Some(rule.timeout)))
    }

    /// What to configure for `rule` on a gateway whose JWKS URIs Envoy fetches through
    /// `remote` (URI -> cluster; empty in istiod fetch mode): `remote_jwks` for those, else the
    /// inlined key set (starting a fetch on first use).
    pub fn config_for(&self, rule: &JwtRule, remote: &BTreeMap<String, String>) -> JwksConfig {
        if let JwksSource::Uri(uri) = &rule.jwks
            && let Some(cluster) = remote.get(uri)
        {
            return JwksConfig::Remote {
                uri: uri.clone(),
                cluster: cluster.clone(),
                timeout: rule.timeout,
                cache_duration: REMOTE_JWKS_CACHE_DURATION,
            };
        }
        self.config(rule)
    }

    /// Whether `rule`'s first fetch failed and no key set is known (the fail-closed set is inlined).
    pub fn failed(&self, rule: &JwtRule) -> bool {
        matches!(self.state(rule), Some(KeySetState::Failed { .. }))
    }

    /// Asks for an immediate refetch of `rule`'s keys (rate-limited by the resolver).
    pub fn refresh(&self, rule: &JwtRule) {
        let uri = match &rule.jwks {
            JwksSource::Inline(_) => return,
            JwksSource::Uri(uri) => Some(uri.as_str()),
            JwksSource::Discovery => None,
        };
        match self.resolver.request_refresh(&rule.issuer, uri) {
            RefreshRequest::Scheduled => {
                tracing::info!(issuer = %rule.issuer, uri = ?uri, "JWKS refresh requested")
            }
            other => {
                tracing::debug!(issuer = %rule.issuer, uri = ?uri, outcome = ?other, "JWKS refresh already pending")
            }
        }
    }

    /// What to inline for `rule` now (starting a fetch on first use).
    pub fn config(&self, rule: &JwtRule) -> JwksConfig {
        let jwks: Arc<str> = match (&rule.jwks, self.state(rule)) {
            (JwksSource::Inline(inline), _) => KeySet::parse(inline.as_bytes())
                .map(|k| k.json().clone())
                .unwrap_or_else(|_| Arc::from(never_matching_jwks())),
            (_, Some(KeySetState::Ready { jwks, .. })) => jwks,
            _ => Arc::from(never_matching_jwks()),
        };
        JwksConfig::Inline(jwks)
    }

    /// Whether every remote rule has finished its first fetch (successfully or not).
    pub fn settled(&self, rules: &[JwtRule]) -> bool {
        rules
            .iter()
            .all(|r| !matches!(self.state(r), Some(KeySetState::Pending)))
    }

    /// Waits until `rules` are settled or `deadline` passes. Needs the resolver running.
    pub async fn wait_settled(&self, rules: &[JwtRule], deadline: Duration) {
        let mut changes = self.resolver.changes();
        let _ = tokio::time::timeout(deadline, async {
            while !self.settled(rules) {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}
