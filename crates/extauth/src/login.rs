//! Starting a login and completing it at the callback (impl of [`Engine`]).

use std::time::SystemTime;

use wayguard_jwks::jwt::{JwtError, Verified};

use crate::engine::{Engine, Policy, SaveError, unavailable};
use crate::flow::{self, CallbackError, Session, TRANSACTION_TTL, Transaction};
use crate::idp::{Discovery, Grant, IdpError};
use crate::metrics::Metrics;
use crate::request::{Decision, Deny, HttpRequest};

/// Why an id_token was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdTokenError {
    #[error("{0}")]
    Jwt(#[from] JwtError),
    #[error("{0}")]
    Claims(#[from] flow::ClaimsError),
    #[error("{0}")]
    Keys(#[from] IdpError),
}

impl IdTokenError {
    fn reason(&self) -> &'static str {
        match self {
            IdTokenError::Jwt(e) => e.reason(),
            IdTokenError::Claims(flow::ClaimsError::Nonce) => "nonce",
            IdTokenError::Claims(_) => "claims",
            IdTokenError::Keys(e) => e.reason(),
        }
    }
}

fn login_failed(status: u16, what: &str, app_url: &str) -> Deny {
    Deny::text(
        status,
        format!("Sign-in could not be completed: {what}.\nStart again at {app_url}\n"),
    )
}

impl Engine {
    /// 401 for API clients, else a redirect to the provider with a fresh transaction.
    pub(crate) async fn login_required(
        &self,
        policy: &Policy,
        req: &HttpRequest,
        now: SystemTime,
    ) -> Decision {
        let cfg = &policy.cfg;
        if cfg.fail_on_redirect || !req.is_navigation() {
            return Decision::Deny(
                Deny::text(
                    401,
                    "authentication required: sign in through a browser first\n",
                )
                .with(
                    "www-authenticate",
                    format!("Bearer realm=\"{}\", error=\"login_required\"", cfg.app_url),
                ),
            );
        }
        let discovery = match policy.provider.discovery().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(authconfig = %cfg.id, error = %e, "cannot start a login");
                Metrics::count(&self.metrics.logins_failed, &cfg.id, e.reason());
                return Decision::Deny(unavailable("the identity provider cannot be reached"));
            }
        };
        let txn = Transaction::new(&req.path, now);
        let sealed = policy.txn_sealer.seal(
            &policy.txn_purpose(),
            &serde_json::to_vec(&txn).unwrap_or_default(),
        );
        let cookie = crate::cookies::set(
            &policy.cfg.session.cookie,
            &policy.txn_cookie(&txn.state),
            &sealed,
            Some(TRANSACTION_TTL),
        );
        Metrics::count(&self.metrics.logins_started, &cfg.id, "started");
        Decision::Deny(
            Deny::redirect(flow::authorization_url(
                cfg,
                &discovery.authorization_endpoint,
                &txn,
            ))
            .with_cookies(cookie),
        )
    }

    /// Verifies an id_token from the provider's token endpoint (refetching keys, rate-limited,
    /// for an unknown kid); `nonce` is the transaction's on a login, `None` on a refresh.
    pub(crate) async fn verify_id_token(
        &self,
        policy: &Policy,
        discovery: &Discovery,
        token: &str,
        nonce: Option<&str>,
    ) -> Result<Verified, IdTokenError> {
        let issuer = if discovery.issuer.is_empty() {
            policy.cfg.provider.issuer_url.clone()
        } else {
            discovery.issuer.clone()
        };
        let expect = flow::id_token_expectations(
            &policy.cfg,
            &issuer,
            &discovery.id_token_signing_alg_values_supported,
        );
        let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
        let keys = policy.provider.keys(kid.as_deref()).await?;
        let verified = keys.verify(token, &expect, SystemTime::now())?;
        flow::check_id_claims(&verified, &policy.cfg.client_id, nonce)?;
        Ok(verified)
    }

    /// The redirect URI: checks the transaction, redeems the code, verifies the id_token, stores
    /// the session and sends the browser back where it started.
    pub(crate) async fn callback(
        &self,
        policy: &Policy,
        req: &HttpRequest,
        now: SystemTime,
    ) -> Decision {
        let cfg = &policy.cfg;
        let fail =
            |reason: &'static str| Metrics::count(&self.metrics.logins_failed, &cfg.id, reason);
        let query = req.query();
        let cookies = crate::cookies::parse(req.header("cookie").unwrap_or_default());
        // The transaction cookie is chosen by the callback's state and must open; only then is
        // the state compared (constant-time) with the one sealed inside.
        let state = query
            .iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.as_str());
        let txn_cookie = state.map(|s| policy.txn_cookie(s));
        let txn: Option<Transaction> = txn_cookie
            .as_deref()
            .and_then(|name| crate::cookies::get(&cookies, name))
            .and_then(|v| policy.txn_sealer.open(&policy.txn_purpose(), v).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let clear_txn = txn_cookie
            .as_deref()
            .map(|name| crate::cookies::expire(&cfg.session.cookie, name, &[]))
            .unwrap_or_default();
        let code = match flow::check_callback(&query, txn.as_ref(), now) {
            Ok(code) => code,
            Err(e) => {
                tracing::info!(authconfig = %cfg.id, reason = e.reason(), "callback refused");
                fail(e.reason());
                let status = if matches!(e, CallbackError::Provider(_)) {
                    401
                } else {
                    400
                };
                return Decision::Deny(
                    login_failed(status, &e.to_string(), &cfg.app_url).with_cookies(clear_txn),
                );
            }
        };
        let Some(txn) = txn else {
            return Decision::Deny(login_failed(400, "no login in progress", &cfg.app_url));
        };
        // Single use: a replayed callback (same state) never redeems anything again.
        let first_use = match self.store(policy).await {
            Ok(Some(store)) => {
                self.timed("use_state", store.use_state(&txn.state, TRANSACTION_TTL))
                    .await
            }
            Ok(None) => {
                use crate::store::SessionStore as _;
                policy
                    .used_states
                    .use_state(&txn.state, TRANSACTION_TTL)
                    .await
            }
            Err(e) => Err(e),
        };
        match first_use {
            Ok(true) => {}
            Ok(false) => {
                fail("state_replayed");
                return Decision::Deny(login_failed(
                    400,
                    "this sign-in was already completed",
                    &cfg.app_url,
                ));
            }
            Err(e) => {
                tracing::warn!(authconfig = %cfg.id, error = %e, "session store unavailable at the callback");
                fail("store_unavailable");
                return Decision::Deny(unavailable("the session store is unavailable"));
            }
        }
        let discovery = match policy.provider.discovery().await {
            Ok(d) => d,
            Err(e) => {
                fail(e.reason());
                return Decision::Deny(unavailable("the identity provider cannot be reached"));
            }
        };
        let grant = Grant::Code {
            code,
            verifier: txn.verifier.clone(),
            redirect_uri: cfg.redirect_uri(),
        };
        let tokens = match self.idp.token(cfg, &discovery.token_endpoint, grant).await {
            Ok(t) => t,
            Err(e @ IdpError::Refused { .. }) => {
                tracing::info!(authconfig = %cfg.id, error = %e, "code redemption refused");
                fail(e.reason());
                return Decision::Deny(login_failed(
                    400,
                    "the identity provider refused the sign-in",
                    &cfg.app_url,
                ));
            }
            Err(e) => {
                tracing::warn!(authconfig = %cfg.id, error = %e, "code redemption failed");
                fail(e.reason());
                return Decision::Deny(unavailable("the identity provider cannot be reached"));
            }
        };
        let Some(id_token) = tokens.id_token.clone() else {
            fail("no_id_token");
            return Decision::Deny(login_failed(
                502,
                "the identity provider sent no id_token",
                &cfg.app_url,
            ));
        };
        let verified = match self
            .verify_id_token(policy, &discovery, &id_token, Some(&txn.nonce))
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(authconfig = %cfg.id, error = %e, "id_token refused");
                fail(e.reason());
                return Decision::Deny(login_failed(
                    401,
                    "the identity token is not valid",
                    &cfg.app_url,
                ));
            }
        };
        let session = Session::from_tokens(tokens, &verified, now);
        let mut cookies = match self.save_session(policy, &session, None).await {
            Ok(c) => c,
            Err(SaveError::Store(e)) => {
                tracing::warn!(authconfig = %cfg.id, error = %e, "storing the session failed");
                fail("store_unavailable");
                return Decision::Deny(unavailable("the session store is unavailable"));
            }
            Err(e @ SaveError::TooLarge(_)) => {
                tracing::error!(authconfig = %cfg.id, error = %e, "session does not fit in cookies");
                fail("session_too_large");
                return Decision::Deny(login_failed(
                    500,
                    "the session is too large for a cookie",
                    &cfg.app_url,
                ));
            }
        };
        cookies.extend(clear_txn);
        Metrics::count(&self.metrics.logins_completed, &cfg.id, "completed");
        tracing::info!(authconfig = %cfg.id, sub = %session.sub, "login completed");
        Decision::Deny(
            Deny::redirect(crate::redirect::safe_target(&txn.target)).with_cookies(cookies),
        )
    }
}
