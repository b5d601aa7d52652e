//! Registry of live ADS connections: what `/debug/connections` shows, and the "all clients of a
//! gateway ACKed version V" wait used by tests and benchmarks.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use crate::{Version, error::AckWaitError};

/// Identifier of one ADS stream, unique within a registry.
pub type ConnectionId = u64;

/// Which ADS variant a stream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// State of the world (`StreamAggregatedResources`).
    Sotw,
    /// Incremental (`DeltaAggregatedResources`).
    Delta,
}

/// The last NACK a connection sent for one type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NackStatus {
    /// The version the client rejected.
    pub version: String,
    /// The nonce of the rejected response.
    pub nonce: String,
    /// Envoy's error message.
    pub message: String,
    /// When the NACK arrived, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// Per-type state of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TypeStatus {
    /// Whether the client subscribes to every resource of the type.
    pub wildcard: bool,
    /// Explicitly subscribed names.
    pub names: Vec<String>,
    /// Version of the last response sent.
    pub last_sent_version: Option<String>,
    /// Nonce of the last response sent.
    pub last_sent_nonce: Option<String>,
    /// Version the client last ACKed.
    pub last_acked_version: Option<String>,
    /// The last NACK, kept after later ACKs for debugging.
    pub last_nack: Option<NackStatus>,
    /// Number of resources the client should have now.
    pub resources: usize,
}

/// Where a connection stands relative to its gateway's snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncState {
    /// Latest snapshot version the connection has processed.
    pub seen: Option<Version>,
    /// Latest snapshot version whose responses were all ACKed (or that needed no response).
    pub acked: Option<Version>,
    /// Latest snapshot version for which a response was NACKed.
    pub nacked: Option<Version>,
}

/// Serializable state of one live connection (one entry of `/debug/connections`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionStatus {
    /// Registry id of the stream.
    pub id: ConnectionId,
    /// Envoy's `node.id`.
    pub node_id: String,
    /// Envoy's `node.cluster`.
    pub node_cluster: String,
    /// The cache key the node maps to (`"namespace/name"`).
    pub gateway: String,
    /// SotW or Delta.
    pub mode: Mode,
    /// Connection time, milliseconds since the Unix epoch.
    pub connected_at_unix_ms: u64,
    /// Snapshot progress.
    pub sync: SyncState,
    /// Per type URL.
    pub types: BTreeMap<String, TypeStatus>,
}

/// Registry of live connections. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ConnectionRegistry {
    inner: Arc<RegistryInner>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    next_id: AtomicU64,
    connections: Mutex<BTreeMap<ConnectionId, Arc<Mutex<ConnectionStatus>>>>,
    /// Sync progress per gateway, kept up to date by [`ConnectionHandle::update`], so that "have
    /// all clients of G ACKed V" costs O(versions), not O(connections). Lock order: a
    /// connection's status, then this.
    gateways: Mutex<BTreeMap<String, GatewaySync>>,
    /// Bumped on every status change so waiters re-check without polling.
    changed: watch::Sender<u64>,
}

/// The connections of one gateway, counted by sync progress.
#[derive(Debug, Default)]
struct GatewaySync {
    connections: usize,
    /// Connections by the latest snapshot version they fully ACKed (`None`: none yet).
    acked: BTreeMap<Option<Version>, usize>,
    /// Connections that NACKed some version, with their progress.
    nacked: BTreeMap<ConnectionId, SyncState>,
}

impl GatewaySync {
    fn add(&mut self, id: ConnectionId, sync: &SyncState) {
        self.connections += 1;
        *self.acked.entry(sync.acked).or_default() += 1;
        if sync.nacked.is_some() {
            self.nacked.insert(id, sync.clone());
        }
    }

    fn remove(&mut self, id: ConnectionId, sync: &SyncState) {
        self.connections = self.connections.saturating_sub(1);
        if let Some(n) = self.acked.get_mut(&sync.acked) {
            *n -= 1;
            if *n == 0 {
                self.acked.remove(&sync.acked);
            }
        }
        self.nacked.remove(&id);
    }
}

/// A connection's entry in a registry; removes itself when dropped.
#[derive(Debug)]
pub struct ConnectionHandle {
    id: ConnectionId,
    status: Arc<Mutex<ConnectionStatus>>,
    registry: Option<Arc<RegistryInner>>,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

// === impl ConnectionStatus ===

impl ConnectionStatus {
    /// A fresh status for a connection that just identified itself.
    pub fn new(
        node_id: impl Into<String>,
        node_cluster: impl Into<String>,
        gateway: impl Into<String>,
        mode: Mode,
    ) -> Self {
        Self {
            id: 0,
            node_id: node_id.into(),
            node_cluster: node_cluster.into(),
            gateway: gateway.into(),
            mode,
            connected_at_unix_ms: unix_ms_now(),
            sync: SyncState::default(),
            types: BTreeMap::new(),
        }
    }
}

// === impl ConnectionRegistry ===

impl ConnectionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a connection; it stays listed until the returned handle is dropped.
    pub fn register(&self, mut status: ConnectionStatus) -> ConnectionHandle {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        status.id = id;
        self.inner
            .gateways
            .lock()
            .entry(status.gateway.clone())
            .or_default()
            .add(id, &status.sync);
        let status = Arc::new(Mutex::new(status));
        self.inner.connections.lock().insert(id, status.clone());
        self.inner.notify();
        ConnectionHandle {
            id,
            status,
            registry: Some(self.inner.clone()),
        }
    }

    /// Every live connection, by id (the `/debug/connections` payload).
    pub fn snapshot(&self) -> Vec<ConnectionStatus> {
        let connections = self.inner.connections.lock();
        connections.values().map(|s| s.lock().clone()).collect()
    }

    /// The live connections of one gateway.
    pub fn connections_for(&self, gateway: &str) -> Vec<ConnectionStatus> {
        let connections = self.inner.connections.lock();
        connections
            .values()
            .filter_map(|s| {
                let s = s.lock();
                (s.gateway == gateway).then(|| s.clone())
            })
            .collect()
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.inner.connections.lock().len()
    }

    /// Whether no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least `min_clients` connections serve `gateway` and every one of them has
    /// ACKed snapshot `version` or later. Returns the number of such clients. Fails as soon as one
    /// of them NACKs `version` or a later one. Wrap it in `tokio::time::timeout`.
    pub async fn wait_acked(
        &self,
        gateway: &str,
        version: Version,
        min_clients: usize,
    ) -> Result<usize, AckWaitError> {
        let mut changed = self.inner.changed.subscribe();
        loop {
            changed.borrow_and_update();
            if let Some(n) = self.check_acked(gateway, version, min_clients)? {
                return Ok(n);
            }
            if changed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until `gateway` has at least `n` connections (e.g. before a test pushes an update).
    pub async fn wait_connected(&self, gateway: &str, n: usize) {
        let mut changed = self.inner.changed.subscribe();
        loop {
            changed.borrow_and_update();
            if self.count_for(gateway) >= n {
                return;
            }
            if changed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Number of live connections serving `gateway`.
    pub fn count_for(&self, gateway: &str) -> usize {
        self.inner
            .gateways
            .lock()
            .get(gateway)
            .map_or(0, |g| g.connections)
    }

    /// A waiter wakes on every status change of any connection (with 1 000 clients, thousands
    /// per policy change), so this reads the per-gateway counts instead of visiting connections
    /// (visiting them made convergence tracking quadratic). Only a NACK's details are read from
    /// the connection, for the error.
    fn check_acked(
        &self,
        gateway: &str,
        version: Version,
        min_clients: usize,
    ) -> Result<Option<usize>, AckWaitError> {
        let (total, done, nacking) = {
            let gateways = self.inner.gateways.lock();
            match gateways.get(gateway) {
                None => (0, 0, None),
                Some(g) => (
                    g.connections,
                    g.acked
                        .range(Some(version)..)
                        .map(|(_, n)| n)
                        .sum::<usize>(),
                    g.nacked
                        .iter()
                        .find(|(_, s)| {
                            s.acked.is_none_or(|acked| acked < version)
                                && s.nacked.is_some_and(|nacked| nacked >= version)
                        })
                        .map(|(id, _)| *id),
                ),
            }
        };
        if let Some(id) = nacking {
            let status = self.inner.connections.lock().get(&id).cloned();
            if let Some(status) = status {
                let client = status.lock();
                let (type_url, nack) = client
                    .types
                    .iter()
                    .filter_map(|(t, s)| s.last_nack.as_ref().map(|n| (t, n)))
                    .max_by_key(|(_, n)| n.at_unix_ms)
                    .map(|(t, n)| (t.clone(), n.clone()))
                    .unwrap_or_else(|| {
                        (
                            String::new(),
                            NackStatus {
                                version: String::new(),
                                nonce: String::new(),
                                message: String::new(),
                                at_unix_ms: 0,
                            },
                        )
                    });
                return Err(AckWaitError::Nacked {
                    node_id: client.node_id.clone(),
                    type_url,
                    version: nack.version,
                    message: nack.message,
                });
            }
        }
        Ok((total >= min_clients && done == total).then_some(done))
    }
}

impl RegistryInner {
    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

// === impl ConnectionHandle ===

impl ConnectionHandle {
    /// A handle that belongs to no registry (for driving a state machine directly in tests).
    pub fn detached(status: ConnectionStatus) -> Self {
        Self {
            id: 0,
            status: Arc::new(Mutex::new(status)),
            registry: None,
        }
    }

    /// The connection's registry id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// A copy of the current status.
    pub fn status(&self) -> ConnectionStatus {
        self.status.lock().clone()
    }

    /// Mutates the status (without waking waiters; call [`Self::notify`] after a batch).
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut ConnectionStatus) -> R) -> R {
        let mut status = self.status.lock();
        let before = status.sync.clone();
        let result = f(&mut status);
        if status.sync != before
            && let Some(registry) = &self.registry
            && let Some(gateway) = registry.gateways.lock().get_mut(&status.gateway)
        {
            gateway.remove(self.id, &before);
            gateway.add(self.id, &status.sync);
        }
        result
    }

    /// Wakes [`ConnectionRegistry::wait_acked`] waiters.
    pub(crate) fn notify(&self) {
        if let Some(registry) = &self.registry {
            registry.notify();
        }
    }
}

impl Drop for ConnectionHandle {
    fn drop(&mut self) {
        if let Some(registry) = &self.registry {
            registry.connections.lock().remove(&self.id);
            let status = self.status.lock();
            let mut gateways = registry.gateways.lock();
            if let Some(gateway) = gateways.get_mut(&status.gateway) {
                gateway.remove(self.id, &status.sync);
                if gateway.connections == 0 {
                    gateways.remove(&status.gateway);
                }
            }
            registry.notify();
        }
    }
}

/// Tracks which responses are unacknowledged, to derive [`SyncState`].
#[derive(Debug, Default)]
pub(crate) struct SyncTracker {
    /// Type URL -> nonce of the latest unacknowledged response.
    pending: BTreeMap<String, String>,
}

impl SyncTracker {
    /// A snapshot was processed; `responses` is what it produced (type URL, nonce).
    pub(crate) fn on_snapshot<'a>(
        &mut self,
        state: &mut SyncState,
        version: Version,
        responses: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        state.seen = Some(version);
        self.on_sent(responses);
        self.settle(state);
    }

    /// Responses went out for the current snapshot (e.g. after a subscription change).
    pub(crate) fn on_sent<'a>(&mut self, responses: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (type_url, nonce) in responses {
            self.pending.insert(type_url.to_owned(), nonce.to_owned());
        }
    }

    /// The client answered `nonce` for `type_url`.
    pub(crate) fn on_reply(
        &mut self,
        state: &mut SyncState,
        type_url: &str,
        nonce: &str,
        nack: bool,
    ) {
        if self.pending.get(type_url).is_some_and(|n| n == nonce) {
            self.pending.remove(type_url);
            if nack {
                state.nacked = state.seen;
            }
            self.settle(state);
        }
    }

    fn settle(&self, state: &mut SyncState) {
        if self.pending.is_empty() && state.nacked != state.seen {
            state.acked = state.seen;
        }
    }
}
