//! `wayguard serve`: sources -> index -> translation -> xDS, plus the admin server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use notify::{EventKind, RecursiveMode, Watcher};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use wayguard_index::{Index, IndexConfig};
use wayguard_jwks::{JwksResolver, ResolverConfig, ScheduleConfig};
use wayguard_xds::{SnapshotCache, XdsServer};

use crate::admin::{self, AdminState};
use crate::keys::KeyMaterial;
use crate::pipeline::{Pipeline, PipelineMetrics};
use crate::source::FileSource;

/// Where configuration comes from.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// A directory of YAML, watched.
    Files(PathBuf),
    /// The cluster from in-cluster config or KUBECONFIG.
    Kubernetes {
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
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Whether a file event means "content is final": written and closed, created (including
/// renamed into place), removed or renamed. Plain data modifications are skipped so a file is
/// not read half-written; its close-write follows.
fn is_settled(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Modify(ModifyKind::Any)
            | EventKind::Any
    )
}

/// Runs until `shutdown` completes.
pub async fn run(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if let SourceConfig::Files(dir) = &config.source
        && !dir.is_dir()
    {
        bail!("--config-dir {}: not a directory", dir.display());
    }
    let mut registry = Registry::with_prefix("wayguard");
    let xds_metrics = wayguard_xds::Metrics::register(registry.sub_registry_with_prefix("xds"));
    let jwks_metrics = wayguard_jwks::Metrics::register(registry.sub_registry_with_prefix("jwks"));
    let pipeline_metrics = PipelineMetrics::register(registry.sub_registry_with_prefix("config"));

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

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
    let jwks_task = resolver.spawn(stopped());
    let keys = KeyMaterial::new(resolver.clone());

    let index = Index::new(IndexConfig {
        root_namespace: config.root_namespace.clone(),
        gateway_classes: config.gateway_classes.clone(),
        waypoint_classes: config.waypoint_classes.clone(),
        jwks_fetch_mode: config.jwks_fetch_mode,
    });
    let cache = SnapshotCache::new();
    let pipeline = Pipeline::new(index, keys, cache.clone(), pipeline_metrics);

    // Sources wake the pipeline through one channel; rebuilds are published for the
    // referenced-object watchers and the status writer.
    let (trigger_tx, mut trigger_rx) = mpsc::unbounded_channel::<()>();
    let (rebuilt_tx, rebuilt_rx) = watch::channel(0u64);
    let mut source = match &config.source {
        SourceConfig::Files(dir) => {
            let mut source = FileSource::new(dir.clone());
            {
                let mut index = pipeline.index.write();
                source
                    .scan(&mut index)
                    .with_context(|| format!("reading {}", dir.display()))?;
            }
            for p in source.problems() {
                tracing::warn!(file = %p.file, problem = %p.message, "skipped");
            }
            Some(source)
        }
        SourceConfig::Kubernetes { .. } => None,
    };

    let xds = XdsServer::new(cache.clone(), xds_metrics);
    let connections = xds.registry().clone();
    let admin_state = Arc::new(AdminState {
        pipeline: pipeline.clone(),
        connections,
        registry: Mutex::new(registry),
        ready: Default::default(),
        file_problems: Mutex::new(
            source
                .as_ref()
                .map(FileSource::problems)
                .unwrap_or_default(),
        ),
    });

    // Serve admin and xDS before the first snapshot: Envoy connects and waits for it.
    let admin_listener = admin::bind(config.admin_address)
        .await
        .with_context(|| format!("binding --admin-address {}", config.admin_address))?;
    let xds_listener = tokio::net::TcpListener::bind(config.xds_address)
        .await
        .with_context(|| format!("binding --xds-address {}", config.xds_address))?;
    tracing::info!(xds = %config.xds_address, admin = %config.admin_address, source = ?config.source, "serving");
    let admin_task = tokio::spawn(admin::serve(admin_listener, admin_state.clone(), stopped()));
    // xDS and the JWKS rotation signal (access log service) share the xDS port.
    let xds_task = tokio::spawn({
        let shutdown = stopped();
        let ads = xds.service();
        let als = crate::rotation::RotationSignal::service(pipeline.clone());
        async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(xds_listener);
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .add_service(ads)
                .add_service(als)
                .serve_with_incoming_shutdown(incoming, async move {
                    shutdown.await;
                    xds.drain();
                })
                .await
        }
    });

    let mut watcher = None;
    match &config.source {
        SourceConfig::Kubernetes { lease } => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
            let synced = crate::kubernetes::start(
                client.clone(),
                pipeline.clone(),
                trigger_tx.clone(),
                rebuilt_rx.clone(),
            );
            wait_synced(&synced, &pipeline).await;
            let leading = crate::kubernetes::lease::spawn(client.clone(), lease.clone(), stopped());
            crate::kubernetes::status::spawn(client, pipeline.clone(), leading, rebuilt_rx.clone());
        }
        SourceConfig::Files(dir) => {
            // Settled events on manifests wake the pipeline. Only manifests (or directories, whose
            // removal takes manifests along) matter: an editor's temporary files must not use up
            // the leading edge of the debounce.
            let tx = trigger_tx.clone();
            let mut w =
                notify::recommended_watcher(
                    move |event: notify::Result<notify::Event>| match event {
                        Ok(e)
                            if is_settled(&e.kind)
                                && e.paths.iter().any(|p| {
                                    crate::files::is_manifest(p) || p.extension().is_none()
                                }) =>
                        {
                            let _ = tx.send(());
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "file watch error"),
                    },
                )
                .context("starting the file watcher")?;
            w.watch(dir, RecursiveMode::Recursive)
                .with_context(|| format!("watching {}", dir.display()))?;
            watcher = Some(w);
        }
    }
    drop(trigger_tx);

    pipeline.settle_keys(Duration::from_secs(10)).await;
    let changed = pipeline.rebuild();
    rebuilt_tx.send_modify(|n| *n += 1);
    tracing::info!(gateways = changed.len(), "initial configuration built");
    admin_state.ready.store(true, Ordering::Release);

    let mut jwks_changes = resolver.changes();
    let loop_pipeline = pipeline.clone();
    let loop_state = admin_state.clone();
    let loop_connections = admin_state.connections.clone();
    let debounce = config.debounce;
    let debounce_max = config.debounce_max;
    let mut loop_stop = Box::pin(stopped());
    let pipeline_task = tokio::spawn(async move {
        let mut last_run = Instant::now() - debounce;
        loop {
            // Wait for the first change.
            let (mut sources_changed, mut keys_changed) = tokio::select! {
                _ = &mut loop_stop => return,
                e = trigger_rx.recv() => { if e.is_none() { return; } (true, false) }
                r = jwks_changes.changed() => { if r.is_err() { return; } (false, true) }
            };
            // Leading edge after a quiet period; otherwise coalesce until quiet or the cap.
            let first = Instant::now();
            if first.duration_since(last_run) < debounce {
                let cap = tokio::time::Instant::from_std(first + debounce_max);
                loop {
                    let quiet = tokio::time::Instant::now() + debounce;
                    tokio::select! {
                        _ = tokio::time::sleep_until(quiet.min(cap)) => break,
                        e = trigger_rx.recv() => { if e.is_none() { return; } sources_changed = true; }
                        r = jwks_changes.changed() => { if r.is_err() { return; } keys_changed = true; }
                    }
                }
            }
            while trigger_rx.try_recv().is_ok() {
                sources_changed = true;
            }
            // Kubernetes watchers only trigger after changing the index; a file trigger may find
            // nothing new (an editor's rename sends several events).
            let mut index_changed = sources_changed && source.is_none();
            if sources_changed {
                if let Some(source) = source.as_mut() {
                    let outcome = {
                        let mut index = loop_pipeline.index.write();
                        source.scan(&mut index)
                    };
                    match outcome {
                        Ok(o) => {
                            tracing::debug!(files = o.files_read, changed = o.changed, "rescanned");
                            index_changed |= o.changed;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "rescan failed; keeping the current state")
                        }
                    }
                    *loop_state.file_problems.lock() = source.problems();
                }
                if index_changed {
                    loop_pipeline.settle_keys(Duration::from_secs(2)).await;
                }
            }
            if !index_changed && !keys_changed {
                continue;
            }
            let changed = loop_pipeline.rebuild();
            loop_pipeline.observe_convergence(&changed, &loop_connections, first);
            rebuilt_tx.send_modify(|n| *n += 1);
            last_run = Instant::now();
        }
    });

    shutdown.await;
    tracing::info!("shutting down: draining xDS streams");
    let _ = stop_tx.send(true);
    drop(watcher);
    drop(rebuilt_rx);
    let deadline = Duration::from_secs(10);
    let _ = tokio::time::timeout(deadline, async {
        let _ = pipeline_task.await;
        let _ = xds_task.await;
        let _ = admin_task.await;
        let _ = jwks_task.await;
    })
    .await;
    Ok(())
}

/// Waits until every watched kind listed once, then (bounded) until every Secret/ConfigMap the
/// listed objects reference was read or found absent, so HTTPS listeners are not programmed a
/// beat late and the first snapshot already has the mesh config.
async fn wait_synced(synced: &crate::kubernetes::Synced, pipeline: &Pipeline) {
    let mut rx = synced.kinds.subscribe();
    let all: std::collections::BTreeSet<_> = crate::kubernetes::WATCHED.into_iter().collect();
    loop {
        let missing: Vec<String> = all
            .difference(&rx.borrow_and_update())
            .map(ToString::to_string)
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                tracing::info!(waiting_for = ?missing, "waiting for the initial list of these kinds");
            }
        }
    }
    let mut objects = synced.objects.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        // A referenced object can reference more (none do today), so `wanted` is re-read.
        let wanted = pipeline.index.read().referenced_objects();
        let missing: Vec<String> = {
            let settled = objects.borrow_and_update();
            wanted
                .iter()
                .filter(|k| !settled.contains(*k))
                .map(ToString::to_string)
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        match tokio::time::timeout_at(deadline, objects.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::warn!(
                    missing = ?missing,
                    "referenced Secrets/ConfigMaps not read within 5s; continuing, they apply when they arrive"
                );
                return;
            }
        }
    }
}
