//! The login flow's decisions, as pure functions of the configuration, the request, the stored
//! state and an explicit `now` (the I/O around them is in [`crate::engine`]).
//!
//! One login: a protected request without a session gets a [`Transaction`] (fresh `state`,
//! `nonce` and PKCE verifier, the original path) sealed into a short-lived cookie, and a 302 to
//! the authorization endpoint with the S256 challenge. The callback must carry exactly one `state`
//! equal (constant-time) to the transaction's, within [`TRANSACTION_TTL`], and one `code`; the
//! id_token it redeems must verify (see `wayguard_jwks::jwt`) with `aud` = client id, `azp`
//! (when present, or when there are several audiences) = client id, and the transaction's nonce.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wayguard_core::login::LoginConfig;
use wayguard_jwks::jwt::{Expectations, Verified, audiences};

use crate::crypto::{pkce_challenge, random_token, secure_eq};
use crate::idp::TokenResponse;
use crate::redirect::safe_target;
use crate::request::{Allow, HttpRequest};

/// How long a login may take between the redirect to the IdP and the callback.
pub const TRANSACTION_TTL: Duration = Duration::from_secs(600);
/// Clock skew allowed on id_token times.
pub const ID_TOKEN_LEEWAY: Duration = Duration::from_secs(30);
/// Lifetime assumed for a session whose provider gave no `expires_in` and no id_token `exp`.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// Authorization request parameters an AuthConfig's `authEndpointQueryParams` may not set.
pub const RESERVED_AUTH_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// Seconds since the epoch.
pub fn unix(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A login in progress, sealed into the transaction cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// `state` sent to the IdP.
    pub state: String,
    /// `nonce` sent to the IdP.
    pub nonce: String,
    /// PKCE verifier (the challenge is its S256 digest).
    pub verifier: String,
    /// Same-origin path to return to.
    pub target: String,
    /// When it started (seconds since the epoch).
    pub created: u64,
}

impl Transaction {
    /// A fresh transaction returning to `target` (made safe).
    pub fn new(target: &str, now: SystemTime) -> Self {
        Self {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            target: safe_target(target),
            created: unix(now),
        }
    }
}

/// What a request is, for the login flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The redirect URI.
    Callback,
    /// The logout path.
    Logout,
    /// The back-channel logout path.
    BackChannelLogout,
    /// Anything else: needs a session.
    Protected,
}

/// Which flow step `req` is.
pub fn route(cfg: &LoginConfig, req: &HttpRequest) -> Route {
    let path = req.path_only();
    // The same paths translate routes to ext_authz (`LoginConfig::paths`).
    if path == wayguard_core::login::url_path(&cfg.redirect_uri()) {
        Route::Callback
    } else if cfg.logout_path.as_deref() == Some(path) {
        Route::Logout
    } else if cfg.back_channel_logout_path.as_deref() == Some(path) {
        Route::BackChannelLogout
    } else {
        Route::Protected
    }
}

/// The authorization request URL for `txn`.
pub fn authorization_url(cfg: &LoginConfig, endpoint: &str, txn: &Transaction) -> String {
    let mut url = match url::Url::parse(endpoint) {
        Ok(u) => u,
        Err(_) => return endpoint.to_string(),
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &cfg.client_id)
            .append_pair("redirect_uri", &cfg.redirect_uri())
            .append_pair("scope", &cfg.scopes.join(" "))
            .append_pair("state", &txn.state)
            .append_pair("nonce", &txn.nonce)
            .append_pair("code_challenge", &pkce_challenge(&txn.verifier))
            .append_pair("code_challenge_method", "S256");
        for (k, v) in &cfg.auth_query_params {
            if !RESERVED_AUTH_PARAMS.contains(&k.as_str()) {
                q.append_pair(k, v);
            }
        }
    }
    url.into()
}

/// Why a callback does not complete a login.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// No (openable) transaction cookie: not started here, cookies cleared, or another AuthConfig's.
    #[error("no login in progress for this browser")]
    NoTransaction,
    /// The transaction is older than [`TRANSACTION_TTL`].
    #[error("the login took too long")]
    Expired,
    /// `state` missing, repeated, or not the transaction's.
    #[error("state does not match the login in progress")]
    StateMismatch,
    /// `code` missing or repeated.
    #[error("the callback has no single code")]
    MissingCode,
    /// The IdP answered with an error.
    #[error("the identity provider returned {0}")]
    Provider(String),
}

impl CallbackError {
    /// Metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            CallbackError::NoTransaction => "no_transaction",
            CallbackError::Expired => "transaction_expired",
            CallbackError::StateMismatch => "state_mismatch",
            CallbackError::MissingCode => "missing_code",
            CallbackError::Provider(_) => "provider_error",
        }
    }
}

fn single<'a>(query: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ()> {
    let mut found = query
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(());
    }
    Ok(first)
}

/// The authorization code of a callback for `txn`.
pub fn check_callback(
    query: &[(String, String)],
    txn: Option<&Transaction>,
    now: SystemTime,
) -> Result<String, CallbackError> {
    let txn = txn.ok_or(CallbackError::NoTransaction)?;
    if unix(now) > txn.created.saturating_add(TRANSACTION_TTL.as_secs()) {
        return Err(CallbackError::Expired);
    }
    let state = single(query, "state").map_err(|()| CallbackError::StateMismatch)?;
    if !state.is_some_and(|s| secure_eq(s, &txn.state)) {
        return Err(CallbackError::StateMismatch);
    }
    if let Ok(Some(error)) = single(query, "error") {
        return Err(CallbackError::Provider(error.chars().take(64).collect()));
    }
    match single(query, "code") {
        Ok(Some(code)) if !code.is_empty() => Ok(code.to_string()),
        _ => Err(CallbackError::MissingCode),
    }
}

/// What an id_token must satisfy for `cfg` with the provider's `issuer`.
pub fn id_token_expectations(cfg: &LoginConfig, issuer: &str, algs: &[String]) -> Expectations {
    let mut e = Expectations::new(issuer, vec![cfg.client_id.clone()]);
    e.leeway = ID_TOKEN_LEEWAY;
    if !algs.is_empty() {
        e.algorithms
            .retain(|a| algs.iter().any(|s| *s == format!("{a:?}")));
    }
    e
}

/// Why an id_token's claims do not fit the login.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// `nonce` missing or not the transaction's (a replayed or injected token).
    #[error("nonce does not match the login in progress")]
    Nonce,
    /// `azp` is not the client (or missing with several audiences).
    #[error("authorized party is not this client")]
    AuthorizedParty,
    /// No `sub`.
    #[error("no subject")]
    Subject,
    /// A refreshed id_token names another subject.
    #[error("refreshed id_token is for another subject")]
    SubjectChanged,
}

/// Checks the claims OIDC Core 3.1.3.7 asks for beyond signature, `iss`, `aud` and times.
/// `nonce`: the transaction's (a login), or `None` (a refresh, where a nonce, if present, is
/// not compared: OIDC Core 12.2 says it should be absent or the original one).
pub fn check_id_claims(
    v: &Verified,
    client_id: &str,
    nonce: Option<&str>,
) -> Result<(), ClaimsError> {
    if let Some(nonce) = nonce
        && !v.str_claim("nonce").is_some_and(|n| secure_eq(n, nonce))
    {
        return Err(ClaimsError::Nonce);
    }
    let auds = audiences(&v.claims);
    match v.str_claim("azp") {
        Some(azp) if azp != client_id => return Err(ClaimsError::AuthorizedParty),
        None if auds.len() > 1 => return Err(ClaimsError::AuthorizedParty),
        _ => {}
    }
    if v.str_claim("sub").is_none_or(str::is_empty) {
        return Err(ClaimsError::Subject);
    }
    Ok(())
}

/// A logged-in session: the tokens and what was verified about them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The id_token's `sub`.
    pub sub: String,
    /// The id_token's `sid` (back-channel logout by session).
    #[serde(default)]
    pub sid: Option<String>,
    /// The id_token.
    pub id_token: String,
    /// The access token.
    #[serde(default)]
    pub access_token: Option<String>,
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// When the tokens expire (seconds since the epoch).
    pub expires_at: u64,
    /// When the login happened.
    pub created_at: u64,
    /// When the current tokens were issued (the login or the last refresh).
    #[serde(default)]
    pub issued_at: u64,
    /// The verified id_token claims.
    pub claims: Map<String, Value>,
}

impl Session {
    /// A session from a token response whose id_token verified as `id`.
    pub fn from_tokens(tokens: TokenResponse, id: &Verified, now: SystemTime) -> Self {
        let now = unix(now);
        Self {
            sub: id.str_claim("sub").unwrap_or_default().to_string(),
            sid: id.str_claim("sid").map(str::to_string),
            expires_at: expiry(&tokens, id, now),
            id_token: tokens.id_token.unwrap_or_default(),
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            created_at: now,
            issued_at: now,
            claims: id.claims.clone(),
        }
    }

    /// This session after a refresh: new tokens where the provider sent them, the old ones
    /// where it did not (refresh tokens are not always rotated; id_tokens not always reissued).
    pub fn refreshed(&self, tokens: TokenResponse, id: Option<&Verified>, now: SystemTime) -> Self {
        let now = unix(now);
        let mut next = self.clone();
        next.issued_at = now;
        next.expires_at = match id {
            Some(id) => expiry(&tokens, id, now),
            None => tokens
                .expires_in
                .map_or(now + DEFAULT_TOKEN_LIFETIME.as_secs(), |s| now + s),
        };
        if let Some(id) = id {
            next.claims = id.claims.clone();
            next.sid = id.str_claim("sid").map(str::to_string).or(next.sid);
        }
        if let Some(t) = tokens.id_token {
            next.id_token = t;
        }
        if tokens.access_token.is_some() {
            next.access_token = tokens.access_token;
        }
        if tokens.refresh_token.is_some() {
            next.refresh_token = tokens.refresh_token;
        }
        next
    }
}

fn expiry(tokens: &TokenResponse, id: &Verified, now: u64) -> u64 {
    match (tokens.expires_in, id.time_claim("exp")) {
        (Some(secs), _) => now + secs,
        (None, Some(exp)) => exp,
        (None, None) => now + DEFAULT_TOKEN_LIFETIME.as_secs(),
    }
}

/// Whether a session can be used as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Valid beyond the pre-expiry buffer.
    Fresh,
    /// Inside the buffer (still valid) and refreshable: refresh now, keep it if that fails.
    Refresh,
    /// Expired and refreshable: refresh, else log in again.
    RefreshOrLogin,
    /// Unusable: log in again.
    Expired,
}

/// The state of `s` at `now`.
pub fn freshness(cfg: &LoginConfig, s: &Session, now: SystemTime) -> Freshness {
    let now = unix(now);
    let refreshable = cfg.session.allow_refreshing && s.refresh_token.is_some();
    // Never more than half the tokens' lifetime: tokens that live shorter than the buffer would
    // otherwise be refreshed on every request.
    let lifetime = s.expires_at.saturating_sub(s.issued_at);
    let buffer = cfg.session.pre_expiry_buffer.as_secs().min(lifetime / 2);
    if now >= s.expires_at {
        if refreshable {
            Freshness::RefreshOrLogin
        } else {
            Freshness::Expired
        }
    } else if refreshable && now + buffer >= s.expires_at {
        Freshness::Refresh
    } else {
        Freshness::Fresh
    }
}

/// A claim by dotted path (`address.country`), as header text: strings as they are, arrays
/// joined with `,`, other values as JSON.
pub fn claim_text(claims: &Map<String, Value>, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(match value {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => return None,
        other => other.to_string(),
    })
}

/// How the upstream request changes for a valid session. Every header the configuration
/// forwards is set from the session or removed, so a client can never smuggle its own value in.
/// `own_cookies` are stripped from the `Cookie` header; `session_id` goes in the configured
/// session id header (Redis sessions).
pub fn allow(
    cfg: &LoginConfig,
    s: &Session,
    req: &HttpRequest,
    own_cookies: &[&str],
    session_id: Option<&str>,
) -> Allow {
    let mut out = Allow::default();
    let fwd = &cfg.forward;
    let put = |out: &mut Allow, header: &str, value: Option<String>| match value {
        Some(v) => out.set_headers.push((header.to_string(), v)),
        None => out.remove_headers.push(header.to_string()),
    };
    if let Some(h) = &fwd.id_token_header {
        put(&mut out, h, Some(s.id_token.clone()));
    }
    if let Some(h) = &fwd.access_token_header {
        let value = s.access_token.as_ref().map(|t| {
            if fwd.bearer {
                format!("Bearer {t}")
            } else {
                t.clone()
            }
        });
        put(&mut out, h, value);
    }
    for m in &fwd.id_token_claims {
        let value = claim_text(&s.claims, &m.claim);
        match (m.append, value) {
            (true, Some(v)) => out.append_headers.push((m.header.clone(), v)),
            (true, None) => {}
            (false, v) => put(&mut out, &m.header, v),
        }
    }
    if !fwd.access_token_claims.is_empty() {
        let claims = s
            .access_token
            .as_deref()
            .and_then(wayguard_jwks::jwt::unverified_claims)
            .map(|c| c.into_iter().collect::<Map<_, _>>())
            .unwrap_or_default();
        for m in &fwd.access_token_claims {
            let value = claim_text(&claims, &m.claim);
            match (m.append, value) {
                (true, Some(v)) => out.append_headers.push((m.header.clone(), v)),
                (true, None) => {}
                (false, v) => put(&mut out, &m.header, v),
            }
        }
    }
    if let Some(h) = &cfg.session.session_id_header {
        put(&mut out, h, session_id.map(str::to_string));
    }
    if let Some(cookie) = req.header("cookie") {
        match crate::cookies::without(cookie, own_cookies) {
            Some(rest) if rest != cookie => out.set_headers.push(("cookie".into(), rest)),
            Some(_) => {}
            None => out.remove_headers.push("cookie".into()),
        }
    }
    for (key, claim) in &fwd.metadata_from_claims {
        if let Some(v) = s.claims.get(claim) {
            out.metadata.insert(key.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
