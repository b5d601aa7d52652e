//! `wayguard serve`: sources -> index -> translation -> xDS, plus the admin server, every part a
//! task of one [`Supervisor`] (crates/runtime):
//!
//! | task | stage | ends |
//! |---|---|---|
//! | `files` or `kubernetes` (the [`Source`]) | serve | at the drain |
//! | `pipeline` ([`Driver`]: first build, then debounced rebuilds) | serve | at the drain |
//! | `jwks` (the resolver's fetch loop) | serve | at the drain |
//! | `xds` (ADS + the JWKS rotation signal on one port) | serve | streams end with OK, then the port closes |
//! | `extauth` (ext_authz login; its policies follow every rebuild) | serve | in-flight Checks finish, then the port closes |
//! | `status` (Kubernetes, leader only) | serve | after the write in flight |
//! | `leader-election` (Kubernetes) | last | after releasing the Lease |
//! | `admin` | last | `/ready` says "draining" until then |
//!
//! Readiness blockers: `sources synced`, `JWKS first pass`, `first snapshot built`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use wayguard_index::{Index, IndexConfig};
use wayguard_jwks::{JwksResolver, ResolverConfig, ScheduleConfig};
use wayguard_runtime::{Limits, Readiness, ServerConfig, Stage, Supervisor};
use wayguard_xds::{SnapshotCache, XdsServer};

use crate::admin::{self, AdminState};
use crate::driver::Driver;
use crate::keys::KeyMaterial;
use crate::kubernetes::KubernetesSource;
use crate::pipeline::{Pipeline, PipelineMetrics};
use crate::sources::{Changes, FilesSource, Source, SourceContext, Synced};

/// Where configuration comes from.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// A directory of YAML, watched.
    Files(PathBuf),
    /// The cluster from in-cluster config or KUBECONFIG.
    Kubernetes {
        /// A kubeconfig file to use instead of in-cluster config or `$KUBECONFIG`.
        kubeconfig: Option<PathBuf>,
        /// The leader election lease (status is written by the leader only).
        lease: crate::kubernetes::lease::LeaseConfig,
    },
}

/// Settings of `wayguard serve` (see [`crate::cli`] for flags).
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Configuration source.
    pub source: SourceConfig,
    /// xDS listen address.
    pub xds_address: SocketAddr,
    /// Admin listen address.
    pub admin_address: SocketAddr,
    /// Root namespace.
    pub root_namespace: String,
    /// Gateway classes to program.
    pub gateway_classes: Vec<String>,
    /// Classes of waypoints.
    pub waypoint_classes: Vec<String>,
    /// Quiet period that batches source changes.
    pub debounce: Duration,
    /// Longest a change waits while changes keep coming.
    pub debounce_max: Duration,
    /// JWKS refresh interval.
    pub jwks_refresh_interval: Duration,
    /// Who fetches JWKS URIs.
    pub jwks_fetch_mode: wayguard_core::authn::JwksFetchMode,
    /// How long shutdown may take in total (streams drained, status written, Lease released).
    pub drain_timeout: Duration,
    /// ext_authz listen address.
    pub extauth_address: SocketAddr,
    /// Where Envoy reaches this ext_authz when a login policy's backendRef names no Service
    /// wayguard knows (`--extauth-upstream`); by default the loopback address of
    /// `extauth_address`'s port (Envoy on the same host).
    pub extauth_upstream: Option<(String, u16)>,
}

/// A started `serve`: addresses bound, every task running under the supervisor.
#[derive(Debug)]
pub struct Running {
    supervisor: Supervisor,
    tasks: BTreeMap<&'static str, AbortHandle>,
    /// The bound xDS address (useful when the configured port is 0).
    pub xds_address: SocketAddr,
    /// The bound admin address.
    pub admin_address: SocketAddr,
    /// The bound ext_authz address.
    pub extauth_address: SocketAddr,
    /// The readiness shared by every part.
    pub readiness: Readiness,
}

impl Running {
    /// Aborts the task named `task` (as a crash would end it); tests use this to check that the
    /// process then exits with an error. Returns whether such a task exists.
    pub fn abort(&self, task: &str) -> bool {
        self.tasks.get(task).map(AbortHandle::abort).is_some()
    }

    /// Names of the supervised tasks.
    pub fn task_names(&self) -> Vec<&'static str> {
        self.tasks.keys().copied().collect()
    }

    /// Runs until `shutdown` completes (then drains within the deadline) or a task ends
    /// unexpectedly (an error: the process must exit non-zero).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        self.supervisor.run(shutdown).await?;
        Ok(())
    }
}

/// Runs until `shutdown` completes.
pub async fn run(config: ServeConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    start(config).await?.run(shutdown).await
}

/// Binds every address and starts every task; fails before serving anything when an address is
/// taken, the config dir is missing, or the cluster cannot be reached.
pub async fn start(config: ServeConfig) -> Result<Running> {
    if let SourceConfig::Files(dir) = &config.source
        && !dir.is_dir()
    {
        bail!("--config-dir {}: not a directory", dir.display());
    }
    let readiness = Readiness::new();
    let synced_blocker = readiness.block("sources synced");
    let keys_blocker = readiness.block("JWKS first pass");
    let snapshot_blocker = readiness.block("first snapshot built");
    let mut supervisor = Supervisor::new(config.drain_timeout, readiness.clone());
    let mut tasks = BTreeMap::new();

    let mut registry = Registry::with_prefix("wayguard");
    let xds_metrics = wayguard_xds::Metrics::register(registry.sub_registry_with_prefix("xds"));
    let jwks_metrics = wayguard_jwks::Metrics::register(registry.sub_registry_with_prefix("jwks"));
    let pipeline_metrics = PipelineMetrics::register(registry.sub_registry_with_prefix("config"));

    let resolver = JwksResolver::new(
        ResolverConfig {
            schedule: ScheduleConfig {
                refresh_interval: config.jwks_refresh_interval,
                ..ScheduleConfig::default()
            },
            ..ResolverConfig::default()
        },
        jwks_metrics,
    )
    .context("building the JWKS resolver")?;
    let keys = KeyMaterial::new(resolver.clone());
    let extauth_server = ServerConfig::new(
        "extauth",
        "--extauth-address",
        config.extauth_address,
        Limits::rpc(),
    )
    .bind()
    .await?;
    let extauth_address = extauth_server.local_addr();
    let extauth_upstream = config.extauth_upstream.clone().or_else(|| {
        let ip = extauth_address.ip();
        let host = match ip {
            std::net::IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(v6) if v6.is_unspecified() => "::1".to_string(),
            other => other.to_string(),
        };
        Some((host, extauth_address.port()))
    });
    let index = Index::new(IndexConfig {
        root_namespace: config.root_namespace.clone(),
        gateway_classes: config.gateway_classes.clone(),
        waypoint_classes: config.waypoint_classes.clone(),
        jwks_fetch_mode: config.jwks_fetch_mode,
        extauth_upstream,
    });
    let login_metrics =
        wayguard_extauth::Metrics::register(registry.sub_registry_with_prefix("login"));
    let idp = wayguard_extauth::HttpIdp::new(&wayguard_jwks::HttpConfig::default())
        .map_err(|e| anyhow::anyhow!("building the login HTTP client: {e}"))?;
    let engine = Arc::new(wayguard_extauth::Engine::new(
        Arc::new(idp),
        login_metrics,
        wayguard_extauth::redis_factory(),
    ));
    let cache = SnapshotCache::new();
    let pipeline = Pipeline::new(index, keys, cache.clone(), pipeline_metrics);

    // Kubernetes: connect before serving anything, so a missing KUBECONFIG fails at once.
    let client = match &config.source {
        SourceConfig::Kubernetes { kubeconfig, .. } => {
            Some(kube_client(kubeconfig.as_deref()).await?)
        }
        SourceConfig::Files(_) => None,
    };
    let status_metrics = client.as_ref().map(|_| {
        crate::kubernetes::status::StatusMetrics::register(
            registry.sub_registry_with_prefix("status"),
        )
    });

    // Serve admin and xDS before the first snapshot: Envoy connects and waits for it.
    let admin_server = ServerConfig::new(
        "admin",
        "--admin-address",
        config.admin_address,
        Limits::http(),
    )
    .bind()
    .await?;
    let xds_server = ServerConfig::new("xds", "--xds-address", config.xds_address, Limits::xds())
        .bind()
        .await?;
    let (admin_address, xds_address) = (admin_server.local_addr(), xds_server.local_addr());
    tracing::info!(xds = %xds_address, admin = %admin_address, source = ?config.source, "serving");

    let xds = XdsServer::new(cache.clone(), xds_metrics);
    let connections = xds.registry().clone();
    let admin_state = Arc::new(AdminState {
        pipeline: pipeline.clone(),
        connections: connections.clone(),
        registry: Mutex::new(registry),
        readiness: readiness.clone(),
        login: Some(engine.clone()),
    });
    let router = admin::router(admin_state);
    tasks.insert(
        "admin",
        supervisor.spawn("admin", Stage::Last, |drain| {
            admin_server.serve_http(router, drain)
        }),
    );
    // xDS and the JWKS rotation signal (access log service) share the xDS port.
    let routes = tonic::service::Routes::new(xds.service())
        .add_service(crate::rotation::RotationSignal::service(pipeline.clone()));
    tasks.insert(
        "xds",
        supervisor.spawn("xds", Stage::Serve, |drain| async move {
            let streams = async {
                drain.signaled().await;
                xds.drain();
            };
            let (served, ()) = tokio::join!(xds_server.serve_grpc(routes, drain.clone()), streams);
            served
        }),
    );
    tasks.insert(
        "jwks",
        supervisor.spawn("jwks", Stage::Serve, |drain| async move {
            resolver.run(drain.signaled_owned()).await;
            Ok(())
        }),
    );

    let changes = Changes::default();
    let (rebuilt_tx, rebuilt_rx) = watch::channel(0u64);
    let login = (pipeline.clone(), engine.clone(), rebuilt_rx.clone());
    tasks.insert(
        "extauth",
        supervisor.spawn("extauth", Stage::Serve, |drain| async move {
            let (pipeline, engine, rebuilt) = login;
            let routes = tonic::service::Routes::new(
                wayguard_extauth::ExtAuthService::new(engine.clone()).into_server(),
            );
            let policies = follow_login_policies(pipeline, engine, rebuilt, drain.clone());
            let (served, ()) =
                tokio::join!(extauth_server.serve_grpc(routes, drain.clone()), policies);
            served
        }),
    );
    let (synced, synced_rx) = Synced::new(synced_blocker);
    let context = |drain| SourceContext {
        pipeline: pipeline.clone(),
        changes: changes.clone(),
        synced,
        rebuilt: rebuilt_rx.clone(),
        drain,
    };
    match (&config.source, client) {
        (SourceConfig::Files(dir), _) => spawn_source(
            &mut supervisor,
            &mut tasks,
            FilesSource::new(dir.clone()),
            context,
        ),
        (SourceConfig::Kubernetes { lease, .. }, Some(client)) => {
            spawn_source(
                &mut supervisor,
                &mut tasks,
                KubernetesSource::new(client.clone()),
                context,
            );
            let (leading_tx, leading_rx) = watch::channel(false);
            let lease = lease.clone();
            let election_client = client.clone();
            tasks.insert(
                "leader-election",
                supervisor.spawn("leader-election", Stage::Last, |drain| {
                    crate::kubernetes::lease::run(election_client, lease, leading_tx, drain)
                }),
            );
            let status = (pipeline.clone(), rebuilt_rx.clone(), status_metrics);
            tasks.insert(
                "status",
                supervisor.spawn("status", Stage::Serve, |drain| async move {
                    let (pipeline, rebuilt, metrics) = status;
                    let metrics = metrics.context("status metrics")?;
                    crate::kubernetes::status::run(
                        client, pipeline, leading_rx, rebuilt, drain, metrics,
                    )
                    .await
                }),
            );
        }
        (SourceConfig::Kubernetes { .. }, None) => bail!("no Kubernetes client"),
    }
    let driver = Driver {
        pipeline,
        connections,
        changes: changes.subscribe(),
        synced: synced_rx,
        keys_blocker,
        snapshot_blocker,
        rebuilt: rebuilt_tx,
        debounce: (config.debounce, config.debounce_max),
    };
    tasks.insert(
        "pipeline",
        supervisor.spawn("pipeline", Stage::Serve, |drain| driver.run(drain)),
    );
    Ok(Running {
        supervisor,
        tasks,
        xds_address,
        admin_address,
        extauth_address,
        readiness,
    })
}

/// Hands the login policies of every rebuild to the ext_authz engine, until the drain.
async fn follow_login_policies(
    pipeline: Arc<Pipeline>,
    engine: Arc<wayguard_extauth::Engine>,
    mut rebuilt: watch::Receiver<u64>,
    drain: wayguard_runtime::Drain,
) {
    loop {
        let (configs, problems) = pipeline.index.read().login_configs();
        for p in &problems {
            tracing::warn!(object = %p.object, problem = %p.message, "login policy not served");
        }
        engine.set_policies(configs);
        tokio::select! {
            changed = rebuilt.changed() => if changed.is_err() { return },
            () = drain.signaled() => return,
        }
    }
}

/// A client from `kubeconfig`, else in-cluster config or `$KUBECONFIG`.
async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client> {
    let Some(path) = kubeconfig else {
        return kube::Client::try_default()
            .await
            .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)");
    };
    let file = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("--kubeconfig {}", path.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("--kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).with_context(|| {
        format!(
            "connecting to Kubernetes with --kubeconfig {}",
            path.display()
        )
    })
}

fn spawn_source<S: Source>(
    supervisor: &mut Supervisor,
    tasks: &mut BTreeMap<&'static str, AbortHandle>,
    source: S,
    context: impl FnOnce(wayguard_runtime::Drain) -> SourceContext,
) {
    let name = source.name();
    let handle = supervisor.spawn(name, Stage::Serve, |drain| source.run(context(drain)));
    tasks.insert(name, handle);
}
