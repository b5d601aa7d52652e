//! `wayguard config-dump --config-dir DIR --gateway NS/NAME`: the same resources (and JSON) a
//! running `wayguard serve` would push and show at `/debug/config_dump`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use prometheus_client::registry::Registry;
use serde_json::json;
use wayguard_core::GatewayId;
use wayguard_index::{Index, IndexConfig};
use wayguard_jwks::{JwksResolver, Metrics, ResolverConfig};
use wayguard_xds::SnapshotCache;

use crate::keys::KeyMaterial;
use crate::pipeline::{Pipeline, PipelineMetrics};

/// Builds the configuration of `gateway` from `config_dir` and renders it.
pub fn run(config_dir: PathBuf, gateway: &str) -> Result<serde_json::Value> {
    let id = GatewayId::parse(gateway)
        .with_context(|| format!("--gateway {gateway:?}: expected NAMESPACE/NAME"))?;
    let mut index = Index::new(IndexConfig::default());
    let problems = crate::files::load_into(&mut index, std::slice::from_ref(&config_dir))
        .with_context(|| format!("reading {}", config_dir.display()))?;
    for p in &problems {
        eprintln!("warning: {p}");
    }
    if index.gateway_config(&id).is_none() {
        let known: Vec<String> = index.gateways().iter().map(ToString::to_string).collect();
        bail!(
            "no Gateway {id} with a wayguard class in {} (gateways: {})",
            config_dir.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let resolver = JwksResolver::new(ResolverConfig::default(), Metrics::default())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = resolver.spawn(async move {
            let _ = stopped.await;
        });
        let cache = SnapshotCache::new();
        let metrics = PipelineMetrics::register(&mut Registry::default());
        let pipeline = Pipeline::new(index, KeyMaterial::new(resolver), cache.clone(), metrics);
        pipeline.settle_keys(Duration::from_secs(10)).await;
        pipeline.rebuild();
        let _ = stop.send(());
        let _ = task.await;
        let snapshot = cache.get(&id.to_string()).context("no snapshot built")?;
        let mut out = crate::render::snapshot_json(&id.to_string(), &snapshot);
        out["status"] = json!(pipeline.status.read().get(&id.to_string()));
        anyhow::Ok(out)
    })
}
