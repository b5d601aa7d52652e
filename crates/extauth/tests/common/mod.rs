//! A fake provider that really signs (ES256, generated key) and really checks PKCE and client
//! authentication, and a "browser" that follows the engine's redirects and keeps cookies.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{Value, json};
use wayguard_core::login::*;
use wayguard_extauth::idp::{Discovery, Grant, IdpError, TokenResponse};
use wayguard_extauth::request::{Allow, Decision, Deny, HttpRequest};
use wayguard_extauth::store::{MemoryStore, SessionStore};
use wayguard_extauth::{Engine, Idp, Metrics};
use wayguard_jwks::KeySet;

pub const ISSUER: &str = "https://idp.example";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A signing key with its public JWK.
pub struct Key {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

pub fn key(kid: &str) -> Key {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let raw = pair.public_key_raw().to_vec();
    Key {
        kid: kid.into(),
        encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}),
    }
}

/// What the provider puts in the next id_token (to make it bad on purpose).
#[derive(Clone, Debug, Default)]
pub struct Tamper {
    pub nonce: Option<String>,
    pub aud: Option<Value>,
    pub exp_offset: Option<i64>,
    pub iss: Option<String>,
    pub alg_none: bool,
    pub foreign_key: bool,
    pub unknown_kid: bool,
}

/// An authorization request the browser made.
#[derive(Clone, Debug)]
struct Pending {
    nonce: String,
    challenge: String,
    client: String,
    redirect_uri: String,
}

pub struct FakeIdp {
    pub key: Key,
    pub rotated: Mutex<Option<Key>>,
    codes: Mutex<BTreeMap<String, Pending>>,
    used_refresh: Mutex<Vec<String>>,
    pub tamper: Mutex<Tamper>,
    pub down: AtomicBool,
    pub token_calls: AtomicUsize,
    pub refresh_calls: AtomicUsize,
    pub jwks_calls: AtomicUsize,
    pub access_ttl: Mutex<u64>,
    /// Client auth seen at the token endpoint: "basic:<id>:<secret>", "post:...", "jwt:...".
    pub client_auth: Mutex<Vec<String>>,
    pub rotate_refresh_tokens: AtomicBool,
}

impl FakeIdp {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            key: key("k1"),
            rotated: Mutex::new(None),
            codes: Mutex::new(BTreeMap::new()),
            used_refresh: Mutex::new(Vec::new()),
            tamper: Mutex::new(Tamper::default()),
            down: AtomicBool::new(false),
            token_calls: AtomicUsize::new(0),
            refresh_calls: AtomicUsize::new(0),
            jwks_calls: AtomicUsize::new(0),
            access_ttl: Mutex::new(300),
            client_auth: Mutex::new(Vec::new()),
            rotate_refresh_tokens: AtomicBool::new(true),
        })
    }

    /// The IdP's side of the authorization request: remembers it and returns the callback URL
    /// the browser is sent to (`code`, `state`).
    pub fn authorize(&self, url: &str) -> String {
        let u = url::Url::parse(url).expect("authorization url");
        let q: BTreeMap<String, String> = u.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        let code = format!("code-{}", self.codes.lock().len() + 1);
        self.codes.lock().insert(
            code.clone(),
            Pending {
                nonce: q["nonce"].clone(),
                challenge: q["code_challenge"].clone(),
                client: q["client_id"].clone(),
                redirect_uri: q["redirect_uri"].clone(),
            },
        );
        let mut cb = url::Url::parse(&q["redirect_uri"]).expect("redirect uri");
        cb.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &q["state"]);
        cb.to_string()
    }

    pub fn sign(&self, claims: &Value) -> String {
        let t = self.tamper.lock().clone();
        if t.alg_none {
            let head = b64(br#"{"alg":"none","kid":"k1"}"#);
            return format!("{head}.{}.", b64(claims.to_string().as_bytes()));
        }
        let rotated = self.rotated.lock();
        let (enc, kid) = if t.foreign_key {
            (key("k1").encoding, "k1".to_string())
        } else if let Some(k) = rotated.as_ref() {
            (k.encoding.clone(), k.kid.clone())
        } else if t.unknown_kid {
            (self.key.encoding.clone(), "k9".into())
        } else {
            (self.key.encoding.clone(), self.key.kid.clone())
        };
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid);
        jsonwebtoken::encode(&h, claims, &enc).expect("sign")
    }

    fn id_token(&self, client: &str, nonce: Option<&str>, sub: &str) -> String {
        let t = self.tamper.lock().clone();
        let n = now() as i64;
        let mut claims = json!({
            "iss": t.iss.clone().unwrap_or_else(|| ISSUER.into()),
            "aud": t.aud.clone().unwrap_or_else(|| json!(client)),
            "sub": sub, "sid": format!("sid-{sub}"), "email": format!("{sub}@example.com"),
            "iat": n, "exp": n + t.exp_offset.unwrap_or(300),
        });
        if let Some(nonce) = t.nonce.clone().or(nonce.map(str::to_string)) {
            claims["nonce"] = json!(nonce);
        }
        self.sign(&claims)
    }

    fn tokens(&self, client: &str, nonce: Option<&str>, sub: &str) -> TokenResponse {
        TokenResponse {
            access_token: Some(format!("at-{}", self.token_calls.load(Ordering::SeqCst))),
            token_type: Some("Bearer".into()),
            expires_in: Some(*self.access_ttl.lock()),
            refresh_token: Some(format!(
                "rt-{}-{}",
                sub,
                self.token_calls.load(Ordering::SeqCst)
            )),
            id_token: Some(self.id_token(client, nonce, sub)),
            scope: None,
        }
    }
}

impl Idp for FakeIdp {
    fn discover(&self, issuer_url: &str) -> BoxFuture<'static, Result<Discovery, IdpError>> {
        let down = self.down.load(Ordering::SeqCst);
        let issuer = issuer_url.trim_end_matches('/').to_string();
        Box::pin(async move {
            if down {
                return Err(IdpError::Unavailable("connection refused".into()));
            }
            Ok(Discovery {
                issuer: issuer.clone(),
                authorization_endpoint: format!("{issuer}/auth"),
                token_endpoint: format!("{issuer}/token"),
                jwks_uri: format!("{issuer}/jwks"),
                end_session_endpoint: Some(format!("{issuer}/session/end")),
                id_token_signing_alg_values_supported: vec!["ES256".into()],
            })
        })
    }

    fn token(
        &self,
        cfg: &LoginConfig,
        _endpoint: &str,
        grant: Grant,
    ) -> BoxFuture<'static, Result<TokenResponse, IdpError>> {
        let down = self.down.load(Ordering::SeqCst);
        self.token_calls.fetch_add(1, Ordering::SeqCst);
        self.client_auth.lock().push(match &cfg.client_auth {
            ClientAuth::SecretBasic(s) => format!("basic:{}:{}", cfg.client_id, s.expose_str()),
            ClientAuth::SecretPost(s) => format!("post:{}:{}", cfg.client_id, s.expose_str()),
            ClientAuth::PrivateKeyJwt { .. } => format!("jwt:{}", cfg.client_id),
            ClientAuth::None => format!("none:{}", cfg.client_id),
        });
        let result = if down {
            Err(IdpError::Unavailable("connection refused".into()))
        } else {
            match grant {
                Grant::Code {
                    code,
                    verifier,
                    redirect_uri,
                } => match self.codes.lock().remove(&code) {
                    // A code is redeemed once, with its verifier, by its client, for its URI.
                    Some(p)
                        if p.challenge == wayguard_extauth::crypto::pkce_challenge(&verifier)
                            && p.client == cfg.client_id
                            && p.redirect_uri == redirect_uri =>
                    {
                        Ok(self.tokens(&cfg.client_id, Some(&p.nonce), "alice"))
                    }
                    _ => Err(IdpError::Refused {
                        error: "invalid_grant".into(),
                    }),
                },
                Grant::Refresh(rt) => {
                    self.refresh_calls.fetch_add(1, Ordering::SeqCst);
                    let mut used = self.used_refresh.lock();
                    if used.contains(&rt) {
                        Err(IdpError::Refused {
                            error: "invalid_grant".into(),
                        })
                    } else {
                        if self.rotate_refresh_tokens.load(Ordering::SeqCst) {
                            used.push(rt.clone());
                        }
                        let sub = rt.split('-').nth(1).unwrap_or("alice").to_string();
                        let mut t = self.tokens(&cfg.client_id, None, &sub);
                        if !self.rotate_refresh_tokens.load(Ordering::SeqCst) {
                            t.refresh_token = None;
                        }
                        Ok(t)
                    }
                }
            }
        };
        // Yield once, as a network call would, so concurrent checks really interleave.
        Box::pin(async move {
            tokio::task::yield_now().await;
            result
        })
    }

    fn jwks(&self, _uri: &str) -> BoxFuture<'static, Result<KeySet, IdpError>> {
        self.jwks_calls.fetch_add(1, Ordering::SeqCst);
        let mut keys = vec![self.key.jwk.clone()];
        if let Some(k) = self.rotated.lock().as_ref() {
            keys.push(k.jwk.clone());
        }
        let down = self.down.load(Ordering::SeqCst);
        let body = json!({"keys": keys}).to_string();
        Box::pin(async move {
            if down {
                return Err(IdpError::Unavailable("connection refused".into()));
            }
            KeySet::parse(body.as_bytes()).map_err(|e| IdpError::Invalid(e.to_string()))
        })
    }
}

/// A login configuration for `id` in cookie or Redis (memory) mode.
pub fn config(id: &str, redis: bool) -> LoginConfig {
    let (name, txn) = default_cookie_names(id);
    LoginConfig {
        id: id.into(),
        provider: ProviderConfig {
            issuer_url: ISSUER.into(),
            overrides: DiscoveryOverride::default(),
            poll_interval: Duration::from_secs(1800),
        },
        client_id: format!("client-{id}"),
        client_auth: ClientAuth::SecretBasic(Secret::new("s3cret")),
        app_url: "https://app.example".into(),
        callback_path: "/callback".into(),
        logout_path: Some("/logout".into()),
        after_logout_url: "https://app.example/bye".into(),
        end_session: EndSessionMethod::Post,
        back_channel_logout_path: Some("/callback/backchannel-logout".into()),
        scopes: vec!["openid".into(), "email".into()],
        auth_query_params: BTreeMap::new(),
        token_query_params: BTreeMap::new(),
        session: SessionConfig {
            store: if redis {
                wayguard_core::login::SessionStore::Redis(RedisConfig {
                    address: ":6379".into(),
                    db: 0,
                    key_prefix: String::new(),
                    tls: false,
                })
            } else {
                wayguard_core::login::SessionStore::Cookie {
                    key: Secret::new(vec![3u8; 32]),
                }
            },
            cookie: CookieOptions {
                name,
                transaction_name: txn,
                max_age: Some(Duration::from_secs(3600)),
                secure: true,
                http_only: true,
                path: Some("/".into()),
                same_site: SameSite::Lax,
                domain: None,
            },
            allow_refreshing: true,
            pre_expiry_buffer: Duration::from_secs(10),
            fail_on_fetch_failure: true,
            session_id_header: None,
        },
        forward: ForwardConfig {
            id_token_header: Some("jwt".into()),
            ..Default::default()
        },
        fail_on_redirect: false,
    }
}

/// An engine over `idp` whose Redis sessions live in `store`.
pub fn engine(idp: Arc<FakeIdp>, store: MemoryStore, configs: Vec<LoginConfig>) -> Arc<Engine> {
    let factory: wayguard_extauth::StoreFactory = Arc::new(move |_cfg, _prefix| {
        let store = store.clone();
        Box::pin(async move { Ok(Arc::new(store) as Arc<dyn SessionStore>) })
    });
    let e = Arc::new(Engine::new(idp, Metrics::default(), factory));
    e.set_policies(configs);
    e
}

/// A browser: a cookie jar and navigation.
#[derive(Default, Clone)]
pub struct Browser {
    pub cookies: BTreeMap<String, String>,
}

pub fn request(method: &str, path: &str, cookie: Option<String>) -> HttpRequest {
    let mut headers = BTreeMap::new();
    headers.insert("accept".into(), "text/html".into());
    headers.insert("sec-fetch-mode".into(), "navigate".into());
    if let Some(c) = cookie {
        headers.insert("cookie".into(), c);
    }
    HttpRequest {
        method: method.into(),
        scheme: "https".into(),
        host: "app.example".into(),
        path: path.into(),
        headers,
        body: String::new(),
    }
}

impl Browser {
    pub fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    pub fn absorb(&mut self, set_cookies: impl Iterator<Item = String>) {
        for c in set_cookies {
            let first = c.split(';').next().unwrap_or_default();
            let (name, value) = first.split_once('=').unwrap_or((first, ""));
            if c.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    pub fn absorb_deny(&mut self, d: &Deny) {
        self.absorb(
            d.headers
                .iter()
                .filter(|(k, _)| k == "set-cookie")
                .map(|(_, v)| v.clone()),
        );
    }

    pub fn absorb_allow(&mut self, a: &Allow) {
        self.absorb(
            a.response_headers
                .iter()
                .filter(|(k, _)| k == "set-cookie")
                .map(|(_, v)| v.clone()),
        );
    }

    pub async fn get(&mut self, e: &Engine, id: &str, path: &str) -> Decision {
        let d = e
            .check(id, &request("GET", path, self.cookie_header()))
            .await;
        match &d {
            Decision::Deny(deny) => self.absorb_deny(deny),
            Decision::Allow(a) => self.absorb_allow(a),
        }
        d
    }

    /// A whole login through `idp`, starting at `path`; returns the final callback decision.
    pub async fn login(&mut self, e: &Engine, idp: &FakeIdp, id: &str, path: &str) -> Deny {
        let to_idp = expect_redirect(self.get(e, id, path).await);
        let callback = idp.authorize(&to_idp);
        let u = url::Url::parse(&callback).expect("callback");
        let path = format!("{}?{}", u.path(), u.query().unwrap_or_default());
        match self.get(e, id, &path).await {
            Decision::Deny(d) => d,
            Decision::Allow(a) => panic!("the callback was let through: {a:?}"),
        }
    }
}

pub fn location(d: &Deny) -> Option<&str> {
    d.headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.as_str())
}

pub fn expect_redirect(d: Decision) -> String {
    match d {
        Decision::Deny(d) if d.status == 302 => location(&d).expect("location").to_string(),
        other => panic!("expected a 302: {other:?}"),
    }
}

pub fn expect_allow(d: Decision) -> Allow {
    match d {
        Decision::Allow(a) => a,
        other => panic!("expected the request to be let through: {other:?}"),
    }
}

pub fn expect_deny(d: Decision, status: u16) -> Deny {
    match d {
        Decision::Deny(d) if d.status == status => d,
        other => panic!("expected {status}: {other:?}"),
    }
}

/// Rewrites the stored session behind `b`'s cookie (Redis mode) as if its tokens were issued
/// `issued_ago` seconds ago and expire in `expires_in` seconds (negative: already expired).
pub async fn age_session(store: &MemoryStore, b: &Browser, issued_ago: u64, expires_in: i64) {
    let id = b.cookies.values().next().expect("session cookie").clone();
    let mut s = store
        .load(&id)
        .await
        .expect("store")
        .expect("stored session");
    s.issued_at = now() - issued_ago;
    s.expires_at = (now() as i64 + expires_in) as u64;
    store
        .save(&id, &s, Duration::from_secs(3600))
        .await
        .expect("store");
}
