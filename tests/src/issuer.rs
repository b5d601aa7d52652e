//! A loopback OIDC/JWT issuer: discovery document, JWKS, token minting, key rotation, and
//! stop/start on the same port.
//!
//! The issuer URL is `http://127.0.0.1:PORT<path>`; discovery is served at
//! `<issuer>/.well-known/openid-configuration` and the key set at `http://127.0.0.1:PORT/jwks`
//! (the `jwks_uri` of discovery). Keys come from the process-wide pool in [`crate::keys`].
//!
//! Routes match on the path only, whatever the `Host` header says, so the same issuer also
//! serves a JWKS URI that names a Service (`http://issuer.<ns>.svc.cluster.local:<port>/jwks`)
//! when Envoy fetches it through that Service's cluster. Every `/jwks` request is recorded
//! ([`JwtIssuer::jwks_fetch_log`]) with its `Host` and `User-Agent`, so a test can tell who
//! fetched (wayguard sends `User-Agent: wayguard-jwks/...`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use jsonwebtoken::{Algorithm, Header};
use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value, json};

use crate::keys::{self, RsaKey};
use crate::ports::free_port;
use crate::server::LoopbackServer;

/// How to set up a [`JwtIssuer`].
#[derive(Debug, Clone)]
pub struct IssuerOptions {
    /// Path part of the issuer URL, e.g. `/oauth2/default` (empty for none).
    pub path: String,
    /// Which pooled key signs at first (see [`crate::keys`]).
    pub key_slot: usize,
    /// A prefix for key ids.
    pub kid_prefix: String,
}

impl Default for IssuerOptions {
    fn default() -> Self {
        Self {
            path: String::new(),
            key_slot: keys::ISSUER_SLOT,
            kid_prefix: "key".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct ServedKey {
    kid: String,
    slot: usize,
    key: Arc<RsaKey>,
}

#[derive(Debug)]
struct KeyState {
    current: ServedKey,
    served: Vec<ServedKey>,
    rotations: u32,
}

#[derive(Debug)]
struct IssuerState {
    issuer: String,
    jwks_uri: String,
    kid_prefix: String,
    keys: RwLock<KeyState>,
    jwks_fetches: AtomicU64,
    discovery_fetches: AtomicU64,
    fetch_log: Mutex<Vec<JwksFetch>>,
    reversed: AtomicBool,
}

/// One request to `/jwks`, as the issuer saw it.
#[derive(Debug, Clone)]
pub struct JwksFetch {
    /// The `Host` header (empty when absent).
    pub host: String,
    /// The `User-Agent` header (empty when absent).
    pub user_agent: String,
    /// When the request arrived.
    pub at: Instant,
}

impl JwksFetch {
    /// Whether wayguard's resolver sent it (`User-Agent: wayguard-jwks/...`), as opposed to
    /// Envoy's `remote_jwks` fetcher.
    pub fn by_wayguard(&self) -> bool {
        self.user_agent.starts_with("wayguard-jwks/")
    }
}

impl IssuerState {
    fn jwks(&self) -> Value {
        let keys = self.keys.read();
        let mut list: Vec<Value> = keys
            .served
            .iter()
            .map(|k| k.key.public_jwk(&k.kid))
            .collect();
        if self.reversed.load(Ordering::SeqCst) {
            list.reverse();
        }
        json!({ "keys": list })
    }
}

async fn jwks(State(state): State<Arc<IssuerState>>, headers: HeaderMap) -> impl IntoResponse {
    let header = |name: axum::http::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    state.fetch_log.lock().push(JwksFetch {
        host: header(axum::http::header::HOST),
        user_agent: header(axum::http::header::USER_AGENT),
        at: Instant::now(),
    });
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(state.jwks())
}

async fn discovery(State(state): State<Arc<IssuerState>>) -> impl IntoResponse {
    state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "issuer": state.issuer,
        "jwks_uri": state.jwks_uri,
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
    }))
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A string that is not a JWT at all.
pub const MALFORMED_TOKEN: &str = "not-a-jwt";

/// Three base64url segments that do not decode to a JWT header.
pub const GARBAGE_JWT: &str = "eyJub3QiOiJhIGhlYWRlciJ9.Zm9v.YmFy";

/// A loopback JWT issuer.
#[derive(Debug)]
pub struct JwtIssuer {
    state: Arc<IssuerState>,
    port: u16,
    path: String,
    server: Option<LoopbackServer>,
}

impl JwtIssuer {
    /// Creates and starts an issuer.
    pub async fn start(options: IssuerOptions) -> Result<Self> {
        let mut issuer = Self::new_stopped(options).await?;
        issuer.resume().await?;
        Ok(issuer)
    }

    /// Creates an issuer with its port and keys chosen but not serving yet ("issuer down at
    /// start"); [`JwtIssuer::resume`] starts it.
    pub async fn new_stopped(options: IssuerOptions) -> Result<Self> {
        keys::prewarm();
        let key = keys::rsa_key_async(options.key_slot).await?;
        let port = free_port()?;
        let path = options.path.trim_end_matches('/').to_string();
        let current = ServedKey {
            kid: format!("{}-{}", options.kid_prefix, options.key_slot),
            slot: options.key_slot,
            key,
        };
        let state = Arc::new(IssuerState {
            issuer: format!("http://127.0.0.1:{port}{path}"),
            jwks_uri: format!("http://127.0.0.1:{port}/jwks"),
            kid_prefix: options.kid_prefix,
            keys: RwLock::new(KeyState {
                served: vec![current.clone()],
                current,
                rotations: 0,
            }),
            jwks_fetches: AtomicU64::new(0),
            discovery_fetches: AtomicU64::new(0),
            fetch_log: Mutex::new(Vec::new()),
            reversed: AtomicBool::new(false),
        });
        Ok(Self {
            state,
            port,
            path,
            server: None,
        })
    }

    /// Starts serving (again) on the same port.
    pub async fn resume(&mut self) -> Result<()> {
        if self.server.is_some() {
            return Ok(());
        }
        let mut router = Router::new()
            .route("/jwks", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery));
        if !self.path.is_empty() {
            router = router.route(
                &format!("{}/.well-known/openid-configuration", self.path),
                get(discovery),
            );
        }
        let server = LoopbackServer::start(router.with_state(self.state.clone()), self.port)
            .await
            .context("starting the issuer")?;
        self.server = Some(server);
        Ok(())
    }

    /// Stops serving: the port refuses connections until [`JwtIssuer::resume`].
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Whether the issuer is serving.
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// The issuer (`iss`) URL.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> &str {
        &self.state.jwks_uri
    }

    /// The discovery document URL.
    pub fn discovery_uri(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.state.issuer)
    }

    /// The JWKS currently served, as JSON text (for inline `jwks:` in policies).
    pub fn jwks_json(&self) -> String {
        self.state.jwks().to_string()
    }

    /// How many times `/jwks` was fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Every `/jwks` request so far, oldest first.
    pub fn jwks_fetch_log(&self) -> Vec<JwksFetch> {
        self.state.fetch_log.lock().clone()
    }

    /// The port the issuer listens on (also while stopped).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves the JWKS `keys` array in reverse order (`true`) or in rotation order (`false`):
    /// the same key set in a different document.
    pub fn set_reverse_key_order(&self, reversed: bool) {
        self.state.reversed.store(reversed, Ordering::SeqCst);
    }

    /// How many times the discovery document was fetched.
    pub fn discovery_fetches(&self) -> u64 {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// The key id tokens are signed with now.
    pub fn current_kid(&self) -> String {
        self.state.keys.read().current.kid.clone()
    }

    /// Every key id in the served JWKS.
    pub fn served_kids(&self) -> Vec<String> {
        let keys = self.state.keys.read();
        keys.served.iter().map(|k| k.kid.clone()).collect()
    }

    /// Rotates to a new signing key with a new kid (from [`keys::ROTATION_SLOT`], or back to
    /// [`keys::ISSUER_SLOT`] when already on it). `keep_old` keeps the previous keys in the
    /// JWKS; otherwise only the new key is served. Returns the new kid.
    pub async fn rotate(&self, keep_old: bool) -> Result<String> {
        let current_slot = self.state.keys.read().current.slot;
        let slot = if current_slot == keys::ROTATION_SLOT {
            keys::ISSUER_SLOT
        } else {
            keys::ROTATION_SLOT
        };
        let key = keys::rsa_key_async(slot).await?;
        let mut keys = self.state.keys.write();
        keys.rotations += 1;
        let next = ServedKey {
            kid: format!("{}-{slot}-r{}", self.state.kid_prefix, keys.rotations),
            slot,
            key,
        };
        if !keep_old {
            keys.served.clear();
        }
        keys.served.push(next.clone());
        keys.current = next.clone();
        Ok(next.kid)
    }

    /// The default claims: `iss` (this issuer), `sub: user-1`, `iat: now`, `exp: now + 1h`.
    pub fn default_claims(&self) -> Map<String, Value> {
        let now = now();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.state.issuer));
        claims.insert("sub".into(), json!("user-1"));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + 3600));
        claims
    }

    /// The default claims with `overrides` (a JSON object) merged in; a `null` removes a claim.
    pub fn claims(&self, overrides: Value) -> Result<Map<String, Value>> {
        let mut claims = self.default_claims();
        let Value::Object(overrides) = overrides else {
            return Err(anyhow!(
                "claim overrides must be a JSON object, got {overrides}"
            ));
        };
        for (name, value) in overrides {
            if value.is_null() {
                claims.remove(&name);
            } else {
                claims.insert(name, value);
            }
        }
        Ok(claims)
    }

    /// Signs exactly `claims` with `key` and `kid` (RS256).
    pub fn sign_with(claims: &Map<String, Value>, key: &RsaKey, kid: &str) -> Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &key.encoding_key()).context("signing a JWT")
    }

    /// Signs exactly `claims` with the current key.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String> {
        let current = self.state.keys.read().current.clone();
        Self::sign_with(claims, &current.key, &current.kid)
    }

    /// A valid token: default claims plus `overrides`.
    pub fn token(&self, overrides: Value) -> Result<String> {
        self.sign(&self.claims(overrides)?)
    }

    /// A token that expired an hour ago (well past Envoy's 60 s clock skew).
    pub fn expired_token(&self, overrides: Value) -> Result<String> {
        let mut claims = self.claims(overrides)?;
        claims.insert("iat".into(), json!(now() - 7200));
        claims.insert("exp".into(), json!(now() - 3600));
        self.sign(&claims)
    }

    /// A token whose `nbf` is an hour from now.
    pub fn not_yet_valid_token(&self, overrides: Value) -> Result<String> {
        let mut claims = self.claims(overrides)?;
        claims.insert("nbf".into(), json!(now() + 3600));
        self.sign(&claims)
    }

    /// A token signed by a key this issuer never served, with a kid it does not serve
    /// (Envoy: "Jwks doesn't have key to match kid or alg from Jwt").
    pub fn token_signed_by_unknown_key(&self, overrides: Value) -> Result<String> {
        let foreign = keys::rsa_key(keys::FOREIGN_SLOT)?;
        Self::sign_with(&self.claims(overrides)?, &foreign, "unknown-kid")
    }

    /// A token signed by a foreign key but carrying the current kid: the signature does not
    /// verify (Envoy: "Jwt verification fails").
    pub fn token_with_bad_signature(&self, overrides: Value) -> Result<String> {
        let foreign = keys::rsa_key(keys::FOREIGN_SLOT)?;
        Self::sign_with(&self.claims(overrides)?, &foreign, &self.current_kid())
    }
}
