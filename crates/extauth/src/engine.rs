//! The login engine: the policies in force, and the I/O around the pure decisions of
//! [`crate::flow`] (sessions, the provider, refreshes). [`Engine::check`] answers one Check.
//!
//! - Sessions: Redis (the cookie holds a random 256-bit id) or the cookie itself (sealed with the
//!   AuthConfig's 32-byte key). A session store error answers 503 when `failOnFetchFailure` is
//!   set, else starts a fresh login; it never lets a request through anonymously.
//! - Refresh: one refresh per session at a time in this replica; requests that arrive meanwhile
//!   wait for it and use its result, so concurrent requests never log the user out. A refresh
//!   that fails while the tokens are still valid keeps the session until they expire.
//! - Login transactions are sealed into a cookie named after their `state`, so several tabs can
//!   log in at once; the key is the session key when there is one (cookie mode,
//!   `session.cipherConfig`), else one derived from the client secret or signing key (the same on
//!   every replica), else a per-replica random key (a callback landing on another replica then
//!   fails; the status says so).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use wayguard_core::login::{ClientAuth, LoginConfig, SessionStore as StoreConfig};

use crate::crypto::{Sealer, digest, random_token};
use crate::flow::{self, Freshness, Route, Session};
use crate::idp::{Grant, Idp, IdpError};
use crate::metrics::{Metrics, StoreLabels};
use crate::provider::Provider;
use crate::request::{Decision, Deny, HttpRequest};
use crate::store::{MemoryStore, Owner, RedisStore, SessionStore, StoreError};

/// Session lifetime in Redis when the session cookie has no `Max-Age` (a browser session).
pub const BROWSER_SESSION_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a refresh result is reused for requests that carried the pre-refresh session.
const REFRESH_REUSE: Duration = Duration::from_secs(30);

/// Opens a Redis session store for a policy (the seam tests replace).
pub type StoreFactory = Arc<
    dyn Fn(
            &wayguard_core::login::RedisConfig,
            String,
        )
            -> futures::future::BoxFuture<'static, Result<Arc<dyn SessionStore>, StoreError>>
        + Send
        + Sync,
>;

/// One login policy in force.
pub(crate) struct Policy {
    pub(crate) cfg: LoginConfig,
    pub(crate) provider: Provider,
    pub(crate) txn_sealer: Sealer,
    pub(crate) txn_key_per_replica: bool,
    /// Cookie mode: the session sealer.
    pub(crate) session_sealer: Option<Sealer>,
    /// Redis mode: the store, connected on first use (and again after a failed connect).
    store: tokio::sync::Mutex<Option<Arc<dyn SessionStore>>>,
    /// Cookie mode: used login states (single use within this replica).
    pub(crate) used_states: MemoryStore,
    /// Cookie mode: sessions ended by logout, back-channel logout or revocation, by subject or
    /// IdP session, with when (sessions created before are refused). Per replica.
    pub(crate) revoked: Mutex<BTreeMap<String, u64>>,
}

fn derive_key(secret: &[u8], id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"wayguard login transaction key\0");
    h.update(id.as_bytes());
    h.update([0]);
    h.update(secret);
    h.finalize().into()
}

impl Policy {
    fn new(cfg: LoginConfig, idp: Arc<dyn Idp>) -> Result<Self, String> {
        let session_sealer = match &cfg.session.store {
            StoreConfig::Cookie { key } => {
                Some(Sealer::new(key.expose()).map_err(|e| format!("session.cipherConfig: {e}"))?)
            }
            StoreConfig::Redis(_) => None,
        };
        let secret: Option<&[u8]> = match (&cfg.session.store, &cfg.client_auth) {
            (StoreConfig::Cookie { key }, _) => Some(key.expose()),
            (_, ClientAuth::SecretBasic(s) | ClientAuth::SecretPost(s)) => Some(s.expose()),
            (_, ClientAuth::PrivateKeyJwt { key_pem, .. }) => Some(key_pem.expose()),
            (_, ClientAuth::None) => None,
        };
        let (txn_sealer, txn_key_per_replica) = match secret {
            Some(s) => (
                Sealer::new(&derive_key(s, &cfg.id)).map_err(|e| e.to_string())?,
                false,
            ),
            None => (Sealer::random(), true),
        };
        Ok(Self {
            provider: Provider::new(cfg.provider.clone(), idp),
            cfg,
            txn_sealer,
            txn_key_per_replica,
            session_sealer,
            store: tokio::sync::Mutex::new(None),
            used_states: MemoryStore::default(),
            revoked: Mutex::new(BTreeMap::new()),
        })
    }

    pub(crate) fn session_purpose(&self) -> String {
        format!("session:{}", self.cfg.id)
    }

    pub(crate) fn txn_purpose(&self) -> String {
        format!("login:{}", self.cfg.id)
    }

    /// The transaction cookie of `state`.
    pub(crate) fn txn_cookie(&self, state: &str) -> String {
        let short: String = state.chars().take(8).collect();
        format!("{}-{short}", self.cfg.session.cookie.transaction_name)
    }

    pub(crate) fn session_ttl(&self) -> Duration {
        self.cfg
            .session
            .cookie
            .max_age
            .unwrap_or(BROWSER_SESSION_TTL)
    }
}

/// Answers Checks for every login policy in force.
pub struct Engine {
    policies: RwLock<BTreeMap<String, Arc<Policy>>>,
    problems: RwLock<BTreeMap<String, String>>,
    pub(crate) idp: Arc<dyn Idp>,
    pub(crate) metrics: Metrics,
    store_factory: StoreFactory,
    /// In-flight and recent refreshes, by digest of the refresh token they use.
    refreshes: Mutex<HashMap<String, RefreshSlot>>,
}

/// One refresh token's single-flight slot: the session it produced and when.
type RefreshSlot = Arc<tokio::sync::Mutex<Option<(Session, Instant)>>>;

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("policies", &self.policies.read().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The store factory for real Redis servers.
pub fn redis_factory() -> StoreFactory {
    Arc::new(|cfg, prefix| {
        let cfg = cfg.clone();
        Box::pin(async move {
            let store = RedisStore::connect(&cfg.address, cfg.db, cfg.tls, prefix).await?;
            Ok(Arc::new(store) as Arc<dyn SessionStore>)
        })
    })
}

/// Where a session was found.
pub(crate) enum Found {
    /// No session cookie (or one that does not open).
    None,
    /// A session, with its id (Redis) or sealed value (cookie).
    Session { id: String, session: Session },
    /// The store failed.
    StoreDown(StoreError),
}

impl Engine {
    /// An engine with no policy.
    pub fn new(idp: Arc<dyn Idp>, metrics: Metrics, store_factory: StoreFactory) -> Self {
        Self {
            policies: RwLock::new(BTreeMap::new()),
            problems: RwLock::new(BTreeMap::new()),
            idp,
            metrics,
            store_factory,
            refreshes: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the policies in force; unchanged ones keep their state (discovery, keys, the
    /// store connection, used states).
    pub fn set_policies(&self, configs: Vec<LoginConfig>) {
        let old = self.policies.read().clone();
        let mut next = BTreeMap::new();
        let mut problems = BTreeMap::new();
        for cfg in configs {
            let id = cfg.id.clone();
            if let Some(p) = old.get(&id).filter(|p| p.cfg == cfg) {
                next.insert(id, p.clone());
                continue;
            }
            match Policy::new(cfg, self.idp.clone()) {
                Ok(p) => {
                    if p.txn_key_per_replica {
                        problems.insert(id.clone(), "a public client without session.cipherConfig: login transactions are sealed with a per-replica key, so with several replicas a callback reaching another replica fails; set session.cipherConfig.keyRef".to_string());
                    }
                    next.insert(id, Arc::new(p));
                }
                Err(e) => {
                    tracing::warn!(authconfig = %id, error = %e, "login policy not loaded");
                    problems.insert(id, e);
                }
            }
        }
        *self.policies.write() = next;
        *self.problems.write() = problems;
    }

    /// Ids of the policies in force.
    pub fn policy_ids(&self) -> Vec<String> {
        self.policies.read().keys().cloned().collect()
    }

    /// Problems of policies (not loaded, or loaded with a caveat), and the last provider error.
    pub fn problems(&self) -> BTreeMap<String, String> {
        let mut out = self.problems.read().clone();
        for (id, p) in self.policies.read().iter() {
            if let Some(e) = p.provider.last_error() {
                out.entry(id.clone()).or_insert(e);
            }
        }
        out
    }

    pub(crate) fn policy(&self, id: &str) -> Option<Arc<Policy>> {
        self.policies.read().get(id).cloned()
    }

    /// Answers one Check for the AuthConfig `id` (the route's context extension).
    pub async fn check(&self, id: &str, req: &HttpRequest) -> Decision {
        let start = Instant::now();
        let Some(policy) = self.policy(id) else {
            tracing::warn!(
                authconfig = id,
                "Check for a login policy that is not loaded; denying"
            );
            Metrics::count(&self.metrics.decisions, id, "unknown_policy");
            return Decision::Deny(
                Deny::text(
                    503,
                    "login is not available right now (its configuration is not loaded)\n",
                )
                .with("retry-after", "5"),
            );
        };
        let now = SystemTime::now();
        let decision = match flow::route(&policy.cfg, req) {
            Route::Callback => self.callback(&policy, req, now).await,
            Route::Logout => self.logout(&policy, req, now).await,
            Route::BackChannelLogout => self.back_channel_logout(&policy, req, now).await,
            Route::Protected => self.protected(&policy, req, now).await,
        };
        let outcome = match &decision {
            Decision::Allow(_) => "allow",
            Decision::Deny(d) if d.status == 302 => "redirect",
            Decision::Deny(d) if d.status == 401 => "unauthenticated",
            Decision::Deny(d) if d.status >= 500 => "unavailable",
            Decision::Deny(_) => "denied",
        };
        Metrics::count(&self.metrics.decisions, id, outcome);
        self.metrics
            .check_seconds
            .observe(start.elapsed().as_secs_f64());
        decision
    }

    pub(crate) async fn store(
        &self,
        policy: &Policy,
    ) -> Result<Option<Arc<dyn SessionStore>>, StoreError> {
        let StoreConfig::Redis(cfg) = &policy.cfg.session.store else {
            return Ok(None);
        };
        let mut slot = policy.store.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(Some(s.clone()));
        }
        let prefix = if cfg.key_prefix.is_empty() {
            format!("wayguard:{}:", policy.cfg.id)
        } else {
            cfg.key_prefix.clone()
        };
        let store = (self.store_factory)(cfg, prefix).await?;
        *slot = Some(store.clone());
        Ok(Some(store))
    }

    /// Runs a store operation with its latency recorded.
    pub(crate) async fn timed<T>(
        &self,
        operation: &'static str,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let r = f.await;
        self.metrics
            .store_seconds
            .get_or_create(&StoreLabels { operation })
            .observe(start.elapsed().as_secs_f64());
        r
    }

    /// The session the request's cookie names.
    pub(crate) async fn find_session(&self, policy: &Policy, req: &HttpRequest) -> Found {
        let header = req.header("cookie").unwrap_or_default();
        let cookies = crate::cookies::parse(header);
        let name = &policy.cfg.session.cookie.name;
        let Some(value) = crate::cookies::get_chunked(&cookies, name) else {
            return Found::None;
        };
        if let Some(sealer) = &policy.session_sealer {
            let session = sealer
                .open(&policy.session_purpose(), &value)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Session>(&bytes).ok());
            return match session {
                Some(s) if !self.is_revoked(policy, &s) => Found::Session {
                    id: value,
                    session: s,
                },
                _ => Found::None,
            };
        }
        let store = match self.store(policy).await {
            Ok(Some(s)) => s,
            Ok(None) => return Found::None,
            Err(e) => return Found::StoreDown(e),
        };
        match self.timed("load", store.load(&value)).await {
            Ok(Some(session)) => Found::Session { id: value, session },
            Ok(None) => Found::None,
            Err(e) => Found::StoreDown(e),
        }
    }

    fn is_revoked(&self, policy: &Policy, s: &Session) -> bool {
        let revoked = policy.revoked.lock();
        let before = |key: &str| revoked.get(key).is_some_and(|t| s.created_at <= *t);
        before(&format!("sub:{}", s.sub))
            || s.sid
                .as_ref()
                .is_some_and(|sid| before(&format!("sid:{sid}")))
    }

    /// Stores `session` and returns the `Set-Cookie` values that name it. `previous` is the
    /// session id (Redis) to keep, or `None` for a new session.
    pub(crate) async fn save_session(
        &self,
        policy: &Policy,
        session: &Session,
        previous: Option<&str>,
    ) -> Result<Vec<String>, SaveError> {
        let cookie = &policy.cfg.session.cookie;
        if let Some(sealer) = &policy.session_sealer {
            let sealed = sealer.seal(
                &policy.session_purpose(),
                &serde_json::to_vec(session).unwrap_or_default(),
            );
            if !crate::cookies::fits(&sealed) {
                return Err(SaveError::TooLarge(sealed.len()));
            }
            return Ok(crate::cookies::set(
                cookie,
                &cookie.name,
                &sealed,
                cookie.max_age,
            ));
        }
        let store = self.store(policy).await.map_err(SaveError::Store)?;
        let Some(store) = store else {
            return Err(SaveError::Store(StoreError("no session store".into())));
        };
        let id = previous.map_or_else(random_token, str::to_string);
        self.timed("save", store.save(&id, session, policy.session_ttl()))
            .await
            .map_err(SaveError::Store)?;
        Ok(if previous.is_some() {
            Vec::new()
        } else {
            crate::cookies::set(cookie, &cookie.name, &id, cookie.max_age)
        })
    }

    /// Refreshes `session` (single-flight per refresh token); `None` when the provider refused
    /// or is unavailable.
    pub(crate) async fn refresh(&self, policy: &Policy, session: &Session) -> Option<Session> {
        let rt = session.refresh_token.as_deref()?;
        let key = digest(rt);
        let slot = self
            .refreshes
            .lock()
            .entry(key.clone())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some((done, at)) = guard.as_ref()
            && at.elapsed() < REFRESH_REUSE
        {
            return Some(done.clone());
        }
        let id = &policy.cfg.id;
        let result = self.refresh_now(policy, session, rt).await;
        match &result {
            Ok(_) => Metrics::count(&self.metrics.refreshes, id, "ok"),
            Err(e) => {
                tracing::info!(authconfig = %id, error = %e, "refresh failed");
                Metrics::count(&self.metrics.refreshes, id, e.reason());
            }
        }
        let refreshed = result.ok();
        *guard = refreshed.clone().map(|s| (s, Instant::now()));
        drop(guard);
        // Forget finished refreshes after the reuse window.
        self.refreshes.lock().retain(|_, slot| {
            slot.try_lock().map_or(true, |g| {
                g.as_ref()
                    .is_some_and(|(_, at)| at.elapsed() < REFRESH_REUSE)
            })
        });
        refreshed
    }

    async fn refresh_now(
        &self,
        policy: &Policy,
        session: &Session,
        rt: &str,
    ) -> Result<Session, IdpError> {
        let discovery = policy.provider.discovery().await?;
        let tokens = self
            .idp
            .token(
                &policy.cfg,
                &discovery.token_endpoint,
                Grant::Refresh(rt.to_string()),
            )
            .await?;
        let verified = match tokens.id_token.as_deref() {
            Some(t) => {
                let v = self
                    .verify_id_token(policy, &discovery, t, None)
                    .await
                    .map_err(|e| IdpError::Invalid(format!("refreshed id_token: {e}")))?;
                if v.str_claim("sub") != Some(session.sub.as_str()) {
                    return Err(IdpError::Invalid(
                        "refreshed id_token is for another subject".into(),
                    ));
                }
                Some(v)
            }
            None => None,
        };
        Ok(session.refreshed(tokens, verified.as_ref(), SystemTime::now()))
    }

    async fn protected(
        &self,
        policy: &Arc<Policy>,
        req: &HttpRequest,
        now: SystemTime,
    ) -> Decision {
        let cfg = &policy.cfg;
        let (id, session) = match self.find_session(policy, req).await {
            Found::Session { id, session } => (id, session),
            Found::None => return self.login_required(policy, req, now).await,
            Found::StoreDown(e) => {
                tracing::warn!(authconfig = %cfg.id, error = %e, "session store unavailable");
                if cfg.session.fail_on_fetch_failure {
                    return Decision::Deny(unavailable("the session store is unavailable"));
                }
                return self.login_required(policy, req, now).await;
            }
        };
        let mut set_cookies = Vec::new();
        let session = match flow::freshness(cfg, &session, now) {
            Freshness::Fresh => session,
            f @ (Freshness::Refresh | Freshness::RefreshOrLogin) => {
                match self.refresh(policy, &session).await {
                    Some(next) => {
                        let previous = policy.session_sealer.is_none().then_some(id.as_str());
                        match self.save_session(policy, &next, previous).await {
                            Ok(cookies) => set_cookies = cookies,
                            Err(e) => {
                                tracing::warn!(authconfig = %cfg.id, error = %e, "saving the refreshed session failed")
                            }
                        }
                        next
                    }
                    None if f == Freshness::Refresh => session,
                    None => {
                        self.end_session(policy, &id).await;
                        return self.login_required(policy, req, now).await;
                    }
                }
            }
            Freshness::Expired => {
                self.end_session(policy, &id).await;
                return self.login_required(policy, req, now).await;
            }
        };
        let own = own_cookie_names(policy, req);
        let own: Vec<&str> = own.iter().map(String::as_str).collect();
        let session_id = policy.session_sealer.is_none().then_some(id.as_str());
        let mut allow = flow::allow(cfg, &session, req, &own, session_id);
        allow.response_headers.extend(
            set_cookies
                .into_iter()
                .map(|c| ("set-cookie".to_string(), c)),
        );
        Decision::Allow(allow)
    }

    /// Deletes a Redis session (cookie sessions end with their cookie).
    pub(crate) async fn end_session(&self, policy: &Policy, id: &str) {
        if policy.session_sealer.is_some() {
            return;
        }
        if let Ok(Some(store)) = self.store(policy).await
            && let Err(e) = self.timed("delete", store.delete(id)).await
        {
            tracing::warn!(authconfig = %policy.cfg.id, error = %e, "deleting a session failed");
        }
    }

    /// Ends every session of `owner` under the AuthConfig `id` (admin revocation, back-channel
    /// logout); returns how many Redis sessions were deleted (cookie sessions: 0, they are
    /// refused from now on in this replica).
    pub async fn revoke(&self, id: &str, owner: Owner) -> Result<usize, String> {
        let policy = self
            .policy(id)
            .ok_or_else(|| format!("no login policy {id}"))?;
        Metrics::count(&self.metrics.logouts, id, "revoked");
        self.revoke_in(&policy, owner)
            .await
            .map_err(|e| e.to_string())
    }

    pub(crate) async fn revoke_in(
        &self,
        policy: &Policy,
        owner: Owner,
    ) -> Result<usize, StoreError> {
        if policy.session_sealer.is_some() {
            let key = match &owner {
                Owner::Subject(s) => format!("sub:{s}"),
                Owner::IdpSession(s) => format!("sid:{s}"),
            };
            policy
                .revoked
                .lock()
                .insert(key, flow::unix(SystemTime::now()));
            return Ok(0);
        }
        match self.store(policy).await? {
            Some(store) => self.timed("delete", store.delete_by(owner)).await,
            None => Ok(0),
        }
    }

    /// Ends one session by its id (admin revocation of a Redis session).
    pub async fn revoke_session(&self, id: &str, session_id: &str) -> Result<(), String> {
        let policy = self
            .policy(id)
            .ok_or_else(|| format!("no login policy {id}"))?;
        let store = self.store(&policy).await.map_err(|e| e.to_string())?;
        let store = store.ok_or("cookie sessions have no server-side id; revoke by subject")?;
        Metrics::count(&self.metrics.logouts, id, "revoked");
        store.delete(session_id).await.map_err(|e| e.to_string())
    }
}

/// Why a session could not be stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SaveError {
    #[error("{0}")]
    Store(StoreError),
    #[error("the sealed session is {0} bytes, more than cookies can carry; use Redis sessions")]
    TooLarge(usize),
}

/// The names of wayguard's cookies in this request (session, its chunks, transactions).
pub(crate) fn own_cookie_names(policy: &Policy, req: &HttpRequest) -> Vec<String> {
    let cookie = &policy.cfg.session.cookie;
    let mut out = vec![cookie.name.clone()];
    let prefix = format!("{}-", cookie.transaction_name);
    for (name, _) in crate::cookies::parse(req.header("cookie").unwrap_or_default()) {
        if name.starts_with(&prefix) {
            out.push(name.to_string());
        }
    }
    out
}

/// 503 with a short page and `Retry-After`.
pub(crate) fn unavailable(what: &str) -> Deny {
    Deny::text(
        503,
        format!("Sign-in is temporarily unavailable: {what}. Try again in a moment.\n"),
    )
    .with("retry-after", "5")
}
