//! Index -> translation -> snapshot cache. On a change every gateway's inputs are assembled, and
//! only gateways whose inputs (configuration and key material) differ from their last translation
//! are translated again; the cache compares contents, so only gateways whose resources changed get
//! a push.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;
use wayguard_core::GatewayId;
use wayguard_core::authn::{JwksConfig, JwksSource, JwtRule};
use wayguard_core::routing::GatewayConfig;
use wayguard_index::Index;
use wayguard_translate::AuthContext;
use wayguard_translate::gateway::{GatewayResources, gateway_resources};
use wayguard_xds::{Resource, SnapshotCache};

use crate::keys::KeyMaterial;

/// Pipeline metrics.
#[derive(Clone, Debug)]
pub struct PipelineMetrics {
    rebuilds: Counter,
    gateways: Gauge,
    translate_seconds: Histogram,
    changed_gateways: Counter,
    translated_gateways: Counter,
    convergence_seconds: Histogram,
}

impl PipelineMetrics {
    /// Registers the metrics (prefix them with the registry).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            rebuilds: Counter::default(),
            gateways: Gauge::default(),
            translate_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            changed_gateways: Counter::default(),
            translated_gateways: Counter::default(),
            convergence_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        registry.register(
            "rebuilds",
            "Rebuilds after a source or key change",
            m.rebuilds.clone(),
        );
        registry.register("gateways", "Gateways programmed", m.gateways.clone());
        registry.register(
            "translate_seconds",
            "Time of a rebuild: assemble every gateway's inputs, translate those that changed, set the snapshots",
            m.translate_seconds.clone(),
        );
        registry.register(
            "convergence_seconds",
            "From a source change to every connected Envoy of the changed gateway ACKing the new configuration",
            m.convergence_seconds.clone(),
        );
        registry.register(
            "changed_gateways",
            "Gateways whose resources changed (and were pushed) after a rebuild",
            m.changed_gateways.clone(),
        );
        registry.register(
            "translated_gateways",
            "Gateways translated by a rebuild (those whose configuration or key material changed)",
            m.translated_gateways.clone(),
        );
        m
    }
}

/// What happened to one gateway in the last build, for `/debug/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GatewayStatus {
    /// Snapshot version now in the cache.
    pub version: String,
    /// Listeners, routes, clusters programmed.
    pub listeners: usize,
    /// Route configurations.
    pub routes: usize,
    /// Clusters.
    pub clusters: usize,
    /// Problems (unsupported listeners, unresolved references).
    pub problems: Vec<String>,
    /// Policy translation problems.
    pub diagnostics: Vec<String>,
}

/// The pipeline's shared state.
pub struct Pipeline {
    /// The index.
    pub index: RwLock<Index>,
    /// Key material.
    pub keys: KeyMaterial,
    /// xDS snapshots.
    pub cache: SnapshotCache,
    /// Last build per gateway.
    pub status: RwLock<BTreeMap<String, GatewayStatus>>,
    /// Problems of the source's inputs (files that do not parse), for `/debug/status`.
    pub source_problems: Mutex<Vec<crate::source::FileProblem>>,
    /// The inputs each gateway was last translated from (and set into the cache without error).
    translated: Mutex<BTreeMap<String, Inputs>>,
    metrics: PipelineMetrics,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("gateways", &self.status.read().len())
            .finish_non_exhaustive()
    }
}

/// Everything a gateway's translation depends on: equal inputs give equal resources.
#[derive(PartialEq)]
struct Inputs {
    config: GatewayConfig,
    /// The key material of each JWT rule of the gateway, in rule order.
    jwks: Vec<JwksConfig>,
}

impl Inputs {
    /// The gateway's Envoy resources, with the key material already resolved (inline key sets
    /// are parsed once per rebuild, not again during translation).
    fn translate(&self) -> GatewayResources {
        let rules = &self.config.auth.jwt_rules;
        let jwks = |rule: &JwtRule| {
            rules
                .iter()
                .position(|r| r == rule)
                .and_then(|i| self.jwks.get(i).cloned())
                // Translation only asks for the gateway's own rules; anything else fails closed.
                .unwrap_or_else(|| {
                    JwksConfig::Inline(Arc::from(wayguard_jwks::never_matching_jwks()))
                })
        };
        let ctx = AuthContext {
            jwks: &jwks,
            providers: &self.config.providers,
            clear_route_cache: true,
        };
        gateway_resources(&self.config, &ctx)
    }
}

/// Converts translated resources into cache resources.
pub fn to_xds(r: GatewayResources) -> Vec<Resource> {
    let mut out: Vec<Resource> = Vec::new();
    out.extend(r.listeners.into_iter().map(Resource::from_named));
    out.extend(r.routes.into_iter().map(Resource::from_named));
    out.extend(r.clusters.into_iter().map(Resource::from_named));
    out.extend(r.endpoints.into_iter().map(Resource::from_named));
    out.extend(r.secrets.into_iter().map(Resource::from_named));
    out.extend(r.extension_configs.into_iter().map(Resource::from_named));
    out
}

impl Pipeline {
    /// A pipeline over an index.
    pub fn new(
        index: Index,
        keys: KeyMaterial,
        cache: SnapshotCache,
        metrics: PipelineMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            index: RwLock::new(index),
            keys,
            cache,
            status: RwLock::new(BTreeMap::new()),
            source_problems: Mutex::new(Vec::new()),
            translated: Mutex::new(BTreeMap::new()),
            metrics,
        })
    }

    /// Every JWT rule whose keys wayguard fetches (not those Envoy fetches itself).
    fn fetched_rules(&self, gateway: Option<&str>) -> Vec<JwtRule> {
        let index = self.index.read();
        index
            .gateways()
            .iter()
            .filter(|g| gateway.is_none_or(|k| g.to_string() == k))
            .filter_map(|g| index.gateway_config(g))
            .flat_map(|c| {
                let remote = c.jwks_clusters;
                c.auth.jwt_rules.into_iter().filter(move |r| match &r.jwks {
                    JwksSource::Inline(_) => false,
                    JwksSource::Uri(uri) => !remote.contains_key(uri),
                    JwksSource::Discovery => true,
                })
            })
            .collect()
    }

    /// Refetches the keys of every rule of `gateway` at once (the fast key rotation signal);
    /// with `only_failed`, only rules with no good key set yet.
    pub fn rotate(&self, gateway: &str, only_failed: bool) {
        for rule in self.fetched_rules(Some(gateway)) {
            if !only_failed || self.keys.failed(&rule) {
                self.keys.refresh(&rule);
            }
        }
    }

    /// Starts the JWKS fetches of every rule and waits (bounded) for first fetches to finish, so a
    /// new issuer is not served fail-closed while its keys are on the way.
    pub async fn settle_keys(&self, limit: Duration) {
        let rules = self.fetched_rules(None);
        if rules.is_empty() {
            return;
        }
        for rule in &rules {
            self.keys.config(rule);
        }
        if !self.keys.settled(&rules) {
            let deadline = rules
                .iter()
                .map(|r| r.timeout)
                .max()
                .unwrap_or_default()
                .min(limit);
            self.keys.wait_settled(&rules, deadline).await;
        }
    }

    /// Issuers and JWKS URIs whose first fetch has not finished, for `/ready`.
    pub fn pending_keys(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .fetched_rules(None)
            .iter()
            .filter(|r| !self.keys.settled(std::slice::from_ref(r)))
            .map(|r| match &r.jwks {
                JwksSource::Uri(uri) => uri.clone(),
                _ => format!("discovery of {}", r.issuer),
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Futures that record how long until every Envoy connected to each changed gateway ACKed its
    /// new snapshot, counted from `since` (the source change); each gives up after 60 s. The
    /// caller runs them (the pipeline task keeps them in its own `JoinSet`).
    pub fn convergence(
        &self,
        changed: &[String],
        connections: &wayguard_xds::ConnectionRegistry,
        since: Instant,
    ) -> Vec<impl Future<Output = ()> + Send + 'static> {
        let mut out = Vec::new();
        for key in changed {
            let Some(snapshot) = self.cache.get(key) else {
                continue;
            };
            let clients = connections.count_for(key);
            if clients == 0 {
                continue;
            }
            let (registry, histogram, key) = (
                connections.clone(),
                self.metrics.convergence_seconds.clone(),
                key.clone(),
            );
            out.push(async move {
                let wait = registry.wait_acked(&key, snapshot.version(), clients);
                if let Ok(Ok(_)) =
                    tokio::time::timeout(std::time::Duration::from_secs(60), wait).await
                {
                    histogram.observe(since.elapsed().as_secs_f64());
                }
            });
        }
        out
    }

    /// The translated resources of one gateway (for config-dump).
    pub fn translate(&self, id: &GatewayId) -> Option<GatewayResources> {
        let config = self.index.read().gateway_config(id)?;
        Some(self.inputs(config).translate())
    }

    /// Calls `f` with the configuration gateway `key` was last translated from, if it was.
    pub fn with_translated_config<R>(
        &self,
        key: &str,
        f: impl FnOnce(&GatewayConfig) -> R,
    ) -> Option<R> {
        self.translated.lock().get(key).map(|i| f(&i.config))
    }

    /// A gateway's translation inputs: its configuration and the key material of each JWT rule.
    fn inputs(&self, config: GatewayConfig) -> Inputs {
        Inputs {
            jwks: config
                .auth
                .jwt_rules
                .iter()
                .map(|rule| self.keys.config_for(rule, &config.jwks_clusters))
                .collect(),
            config,
        }
    }

    /// Translates every gateway whose inputs changed and updates the cache. Returns the gateways
    /// whose resources changed.
    pub fn rebuild(&self) -> Vec<String> {
        let start = Instant::now();
        let gateways = self.index.read().gateways();
        let mut changed = Vec::new();
        let mut statuses = BTreeMap::new();
        let mut translated = self.translated.lock();
        let mut live_translated = BTreeMap::new();
        for id in &gateways {
            let key = id.to_string();
            let Some(config) = self.index.read().gateway_config(id) else {
                continue;
            };
            let inputs = self.inputs(config);
            if let Some(last) = translated.remove(&key)
                && last == inputs
                && let Some(status) = self.status.read().get(&key).cloned()
            {
                // Same inputs, same resources: the snapshot in the cache is already right.
                statuses.insert(key.clone(), status);
                live_translated.insert(key, last);
                continue;
            }
            self.metrics.translated_gateways.inc();
            let config = &inputs.config;
            let resources = inputs.translate();
            let mut status = GatewayStatus {
                listeners: resources.listeners.len(),
                routes: resources.routes.len(),
                clusters: resources.clusters.len(),
                problems: config
                    .problems
                    .iter()
                    .map(|p| format!("{}: {}", p.object, p.message))
                    .collect(),
                diagnostics: resources
                    .diagnostics
                    .iter()
                    .map(|d| {
                        format!(
                            "AuthorizationPolicy {}/{}: {}",
                            d.namespace, d.name, d.message
                        )
                    })
                    .collect(),
                ..Default::default()
            };
            match self.cache.set(&key, to_xds(resources)) {
                Ok(outcome) => {
                    status.version = outcome.version.to_string();
                    if outcome.changed {
                        tracing::info!(gateway = %key, version = %outcome.version, types = ?outcome.changed_types, "configuration changed");
                        changed.push(key.clone());
                    }
                    live_translated.insert(key.clone(), inputs);
                }
                Err(e) => {
                    tracing::error!(gateway = %key, error = %e, "snapshot rejected; the previous one stays in effect");
                    status.problems.push(format!("snapshot rejected: {e}"));
                }
            }
            for p in &status.problems {
                tracing::debug!(gateway = %key, problem = %p);
            }
            statuses.insert(key, status);
        }
        // Gateways that went away: their Envoys get an empty configuration.
        let live: BTreeSet<String> = gateways.iter().map(ToString::to_string).collect();
        for key in self.cache.keys() {
            if !live.contains(&key) {
                match self.cache.set(&key, Vec::new()) {
                    Ok(o) if o.changed => {
                        tracing::info!(gateway = %key, "gateway removed; its configuration was emptied");
                        changed.push(key.clone());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(gateway = %key, error = %e, "emptying snapshot failed")
                    }
                }
            }
        }
        *translated = live_translated;
        drop(translated);
        *self.status.write() = statuses;
        self.metrics.rebuilds.inc();
        self.metrics.gateways.set(gateways.len() as i64);
        self.metrics.changed_gateways.inc_by(changed.len() as u64);
        self.metrics
            .translate_seconds
            .observe(start.elapsed().as_secs_f64());
        changed
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
