//! Server-side session storage (the I/O seam [`SessionStore`]): Redis in production, memory in
//! unit tests. Cookie-mode sessions need no store (they are sealed into the cookie).
//!
//! Redis layout under the AuthConfig's key prefix (default `wayguard:<ns>/<name>:`); no key holds
//! a session id in clear (ids are SHA-256 digests), every key has a TTL:
//! - `s:<digest(session id)>`: the session (JSON), TTL = the session cookie's lifetime;
//! - `u:<sub>` and `i:<sid>`: sets of session digests, for logout by subject or IdP session;
//! - `n:<digest(state)>`: a used login `state` (single use), TTL = the transaction lifetime.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::crypto::digest;
use crate::flow::Session;

/// A session store failure (the store is unreachable or answered garbage).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("session store: {0}")]
pub struct StoreError(pub String);

/// Server-side session storage.
pub trait SessionStore: Send + Sync + 'static {
    /// The session with id `id`.
    fn load(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>>;
    /// Stores `session` under `id` for `ttl`.
    fn save(
        &self,
        id: &str,
        session: &Session,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Deletes one session.
    fn delete(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Deletes every session of `sub` (or of IdP session `sid`); returns how many.
    fn delete_by(&self, by: Owner) -> BoxFuture<'_, Result<usize, StoreError>>;
    /// Marks a login `state` used; false if it already was (a replayed callback).
    fn use_state(&self, state: &str, ttl: Duration) -> BoxFuture<'_, Result<bool, StoreError>>;
}

/// Whose sessions to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Every session of this subject.
    Subject(String),
    /// Every session of this IdP session (`sid`).
    IdpSession(String),
}

/// Sessions in memory (tests, and the used-state set of cookie mode).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Debug, Default)]
struct Memory {
    sessions: BTreeMap<String, Session>,
    used: BTreeSet<String>,
    /// Simulates an outage.
    down: bool,
}

impl MemoryStore {
    /// Makes every call fail (or succeed again).
    pub fn set_down(&self, down: bool) {
        self.inner.lock().down = down;
    }

    /// How many sessions are stored.
    pub fn len(&self) -> usize {
        self.inner.lock().sessions.len()
    }

    /// Whether no session is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut m = inner.lock();
            if m.down {
                return Err(StoreError("memory store is down".into()));
            }
            Ok(f(&mut m))
        })
    }
}

impl SessionStore for MemoryStore {
    fn load(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        let key = digest(id);
        self.with(move |m| m.sessions.get(&key).cloned())
    }
    fn save(
        &self,
        id: &str,
        session: &Session,
        _ttl: Duration,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let (key, session) = (digest(id), session.clone());
        self.with(move |m| {
            m.sessions.insert(key, session);
        })
    }
    fn delete(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        let key = digest(id);
        self.with(move |m| {
            m.sessions.remove(&key);
        })
    }
    fn delete_by(&self, by: Owner) -> BoxFuture<'_, Result<usize, StoreError>> {
        self.with(move |m| {
            let before = m.sessions.len();
            m.sessions.retain(|_, s| match &by {
                Owner::Subject(sub) => &s.sub != sub,
                Owner::IdpSession(sid) => s.sid.as_ref() != Some(sid),
            });
            before - m.sessions.len()
        })
    }
    fn use_state(&self, state: &str, _ttl: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        let key = digest(state);
        self.with(move |m| m.used.insert(key))
    }
}

/// Sessions in Redis (see the module docs for the layout).
#[derive(Clone)]
pub struct RedisStore {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Timeout of one Redis command.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

fn redis_url(address: &str, db: i64, tls: bool) -> String {
    if let Some(path) = address.strip_prefix("unix://") {
        return format!("redis+unix://{path}?db={db}");
    }
    // Gloo's `:6379` form means the local host.
    let address = if address.starts_with(':') {
        format!("127.0.0.1{address}")
    } else {
        address.to_string()
    };
    let scheme = if tls { "rediss" } else { "redis" };
    format!("{scheme}://{address}/{db}")
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl RedisStore {
    /// Connects lazily: the connection manager reconnects on its own after an outage, so a
    /// Redis restart needs no restart of wayguard.
    pub async fn connect(
        address: &str,
        db: i64,
        tls: bool,
        prefix: String,
    ) -> Result<Self, StoreError> {
        let url = redis_url(address, db, tls);
        let client =
            redis::Client::open(url.as_str()).map_err(|e| err(format!("{address}: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            redis::aio::ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| err(format!("{address}: connect timed out")))?
        .map_err(|e| err(format!("{address}: {e}")))?;
        Ok(Self { conn, prefix })
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async(&mut conn)).await {
            Ok(r) => r.map_err(err),
            Err(_) => Err(err("command timed out")),
        }
    }

    async fn run_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async(&mut conn)).await {
            Ok(r) => r.map_err(err),
            Err(_) => Err(err("command timed out")),
        }
    }
}

impl SessionStore for RedisStore {
    fn load(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        let key = self.key("s", &digest(id));
        Box::pin(async move {
            let value: Option<String> = self.run(redis::cmd("GET").arg(&key)).await?;
            match value {
                None => Ok(None),
                // An entry that does not parse (another version's format) is no session.
                Some(v) => Ok(serde_json::from_str(&v).ok()),
            }
        })
    }

    fn save(
        &self,
        id: &str,
        session: &Session,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let d = digest(id);
        let key = self.key("s", &d);
        let ttl = ttl.as_secs().max(1);
        let value = serde_json::to_string(session).unwrap_or_default();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("EX")
            .arg(ttl)
            .ignore();
        let mut sets = vec![self.key("u", &session.sub)];
        if let Some(sid) = &session.sid {
            sets.push(self.key("i", sid));
        }
        for set in sets {
            pipe.cmd("SADD").arg(&set).arg(&d).ignore();
            // The index lives as long as its longest session.
            pipe.cmd("EXPIRE").arg(&set).arg(ttl).arg("GT").ignore();
            pipe.cmd("EXPIRE").arg(&set).arg(ttl).arg("NX").ignore();
        }
        Box::pin(async move { self.run_pipe::<()>(&pipe).await })
    }

    fn delete(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        let key = self.key("s", &digest(id));
        Box::pin(async move { self.run::<()>(redis::cmd("DEL").arg(&key)).await })
    }

    fn delete_by(&self, by: Owner) -> BoxFuture<'_, Result<usize, StoreError>> {
        let set = match &by {
            Owner::Subject(sub) => self.key("u", sub),
            Owner::IdpSession(sid) => self.key("i", sid),
        };
        Box::pin(async move {
            let members: Vec<String> = self.run(redis::cmd("SMEMBERS").arg(&set)).await?;
            if members.is_empty() {
                return Ok(0);
            }
            let keys: Vec<String> = members.iter().map(|d| self.key("s", d)).collect();
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("DEL").arg(&keys);
            pipe.cmd("DEL").arg(&set).ignore();
            let (deleted,): (usize,) = self.run_pipe(&pipe).await?;
            Ok(deleted)
        })
    }

    fn use_state(&self, state: &str, ttl: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        let key = self.key("n", &digest(state));
        Box::pin(async move {
            let set: Option<String> = self
                .run(
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(1)
                        .arg("NX")
                        .arg("EX")
                        .arg(ttl.as_secs().max(1)),
                )
                .await?;
            Ok(set.is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_addresses_follow_gloo() {
        assert_eq!(redis_url(":6379", 0, false), "redis://127.0.0.1:6379/0");
        assert_eq!(
            redis_url("redis.ns:6380", 2, true),
            "rediss://redis.ns:6380/2"
        );
        assert_eq!(
            redis_url("unix:///run/redis.sock", 1, false),
            "redis+unix:///run/redis.sock?db=1"
        );
    }
}
