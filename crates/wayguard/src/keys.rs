//! Key material for JWT rules: inline JWKS are normalised (private members dropped), remote ones
//! come from the JWKS resolver, and anything not (yet) resolved fails closed with a JWKS that can
//! never validate a token.

use std::sync::Arc;
use std::time::Duration;

use wayguard_core::authn::{JwksConfig, JwksSource, JwtRule};
use wayguard_jwks::{JwksResolver, KeySet, KeySetState, never_matching_jwks};

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
