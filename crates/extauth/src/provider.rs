//! One OpenID provider as a login policy sees it: discovery (cached for the poll interval, the
//! last good document kept when a refetch fails, overrides applied) and the verifying keys
//! (refetched at most every [`KEY_REFETCH_MIN`] when a token names an unknown `kid`: a client
//! spraying unknown kids cannot make wayguard hammer the provider).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::time::Instant;
use wayguard_core::login::ProviderConfig;
use wayguard_jwks::jwt::VerifyingKeys;

use crate::idp::{Discovery, Idp, IdpError};

/// Least time between two JWKS fetches of one provider.
pub const KEY_REFETCH_MIN: Duration = Duration::from_secs(10);
/// Least time between two discovery attempts after a failure.
pub const DISCOVERY_RETRY: Duration = Duration::from_secs(5);

/// Discovery and keys of one provider.
pub struct Provider {
    config: ProviderConfig,
    idp: Arc<dyn Idp>,
    discovery: RwLock<Option<(Arc<Discovery>, Instant)>>,
    last_discovery_attempt: RwLock<Option<Instant>>,
    last_error: RwLock<Option<String>>,
    keys: RwLock<Option<(Arc<VerifyingKeys>, Instant)>>,
    /// One discovery or key fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.config.issuer_url)
            .finish_non_exhaustive()
    }
}

fn apply_overrides(mut d: Discovery, c: &ProviderConfig) -> Discovery {
    let o = &c.overrides;
    if let Some(v) = &o.authorization_endpoint {
        d.authorization_endpoint = v.clone();
    }
    if let Some(v) = &o.token_endpoint {
        d.token_endpoint = v.clone();
    }
    if let Some(v) = &o.jwks_uri {
        d.jwks_uri = v.clone();
    }
    if let Some(v) = &o.end_session_endpoint {
        d.end_session_endpoint = Some(v.clone());
    }
    if !o.id_token_algs.is_empty() {
        d.id_token_signing_alg_values_supported = o.id_token_algs.clone();
    }
    d
}

impl Provider {
    /// A provider; nothing is fetched until first use.
    pub fn new(config: ProviderConfig, idp: Arc<dyn Idp>) -> Self {
        Self {
            config,
            idp,
            discovery: RwLock::new(None),
            last_discovery_attempt: RwLock::new(None),
            last_error: RwLock::new(None),
            keys: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The last discovery or key fetch error, while no good document is known or after one.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.read().clone()
    }

    /// Whether every endpoint is overridden, so discovery is not needed.
    fn fully_overridden(&self) -> Option<Discovery> {
        let o = &self.config.overrides;
        Some(Discovery {
            issuer: self.config.issuer_url.clone(),
            authorization_endpoint: o.authorization_endpoint.clone()?,
            token_endpoint: o.token_endpoint.clone()?,
            jwks_uri: o.jwks_uri.clone()?,
            end_session_endpoint: o.end_session_endpoint.clone(),
            id_token_signing_alg_values_supported: o.id_token_algs.clone(),
        })
    }

    /// The discovery document (overrides applied), fetched when missing or older than the poll
    /// interval; a failed refetch keeps the last good one.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, IdpError> {
        if let Some(d) = self.fully_overridden() {
            return Ok(Arc::new(d));
        }
        let fresh = |cached: &Option<(Arc<Discovery>, Instant)>| {
            cached
                .as_ref()
                .filter(|(_, at)| at.elapsed() < self.config.poll_interval)
                .map(|(d, _)| d.clone())
        };
        if let Some(d) = fresh(&self.discovery.read()) {
            return Ok(d);
        }
        let _one = self.fetching.lock().await;
        if let Some(d) = fresh(&self.discovery.read()) {
            return Ok(d);
        }
        let stale = self.discovery.read().as_ref().map(|(d, _)| d.clone());
        let recently_failed = self
            .last_discovery_attempt
            .read()
            .is_some_and(|at| at.elapsed() < DISCOVERY_RETRY);
        if recently_failed {
            return stale.ok_or_else(|| {
                IdpError::Unavailable(
                    self.last_error()
                        .unwrap_or_else(|| "discovery failed".into()),
                )
            });
        }
        *self.last_discovery_attempt.write() = Some(Instant::now());
        match self.idp.discover(&self.config.issuer_url).await {
            Ok(d) => {
                let d = Arc::new(apply_overrides(d, &self.config));
                *self.discovery.write() = Some((d.clone(), Instant::now()));
                *self.last_error.write() = None;
                Ok(d)
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer_url, error = %e, stale = stale.is_some(), "OIDC discovery failed");
                *self.last_error.write() = Some(e.to_string());
                stale.ok_or(e)
            }
        }
    }

    /// Keys that know `kid` (refetching, rate-limited, when the cached set does not), or the
    /// cached keys when a refetch is not allowed yet.
    pub async fn keys(&self, kid: Option<&str>) -> Result<Arc<VerifyingKeys>, IdpError> {
        let knows = |keys: &Option<(Arc<VerifyingKeys>, Instant)>| {
            keys.as_ref()
                .filter(|(k, _)| kid.is_none_or(|kid| k.has_kid(kid)))
                .map(|(k, _)| k.clone())
        };
        if let Some(k) = knows(&self.keys.read()) {
            return Ok(k);
        }
        let _one = self.fetching.lock().await;
        if let Some(k) = knows(&self.keys.read()) {
            return Ok(k);
        }
        let cached = self.keys.read().clone();
        if let Some((keys, at)) = &cached
            && at.elapsed() < KEY_REFETCH_MIN
        {
            return Ok(keys.clone());
        }
        drop(_one);
        let jwks_uri = self.discovery().await?.jwks_uri.clone();
        let _one = self.fetching.lock().await;
        match self.idp.jwks(&jwks_uri).await {
            Ok(set) => {
                let keys = Arc::new(VerifyingKeys::new(&set));
                *self.keys.write() = Some((keys.clone(), Instant::now()));
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(jwks_uri, error = %e, "fetching the provider's keys failed");
                *self.last_error.write() = Some(e.to_string());
                match cached {
                    Some((keys, _)) => {
                        // Count the failure against the rate limit too.
                        *self.keys.write() = Some((keys.clone(), Instant::now()));
                        Ok(keys)
                    }
                    None => Err(e),
                }
            }
        }
    }
}
