//! `wayguard config-dump --config-dir DIR --gateway NS/NAME`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use wayguard_core::GatewayId;
use wayguard_index::{Index, IndexConfig};
use wayguard_jwks::{JwksResolver, Metrics, ResolverConfig};
use wayguard_translate::{AuthContext, filters_to_json, http_auth_filters};

use crate::keys::KeyMaterial;

/// Prints the Envoy configuration wayguard generates for `gateway` as JSON.
pub fn run(config_dir: PathBuf, gateway: &str) -> Result<serde_json::Value> {
    let id = GatewayId::parse(gateway)
        .with_context(|| format!("--gateway {gateway:?}: expected NAMESPACE/NAME"))?;
    let mut index = Index::new(IndexConfig::default());
    let problems = crate::files::load_into(&mut index, std::slice::from_ref(&config_dir))
        .with_context(|| format!("reading {}", config_dir.display()))?;
    for p in &problems {
        eprintln!("warning: {p}");
    }
    if index.gateway(&id).is_none() {
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
    let auth = index.gateway_auth(&id);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let filters = runtime.block_on(async {
        let resolver = JwksResolver::new(ResolverConfig::default(), Metrics::default())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = resolver.spawn(async move {
            let _ = stopped.await;
        });
        let keys = KeyMaterial::new(resolver);
        // Start every fetch, then wait (bounded) for them to finish.
        for rule in &auth.jwt_rules {
            keys.config(rule);
        }
        let deadline = auth
            .jwt_rules
            .iter()
            .map(|r| r.timeout)
            .max()
            .unwrap_or_default()
            + Duration::from_secs(1);
        keys.wait_settled(&auth.jwt_rules, deadline).await;
        let jwks = |rule: &wayguard_core::authn::JwtRule| keys.config(rule);
        let providers = BTreeMap::new();
        let ctx = AuthContext {
            jwks: &jwks,
            providers: &providers,
            clear_route_cache: true,
        };
        let out = http_auth_filters(&auth, &ctx);
        let _ = stop.send(());
        let _ = task.await;
        anyhow::Ok(out)
    })?;
    Ok(json!({
        "gateway": id.to_string(),
        "httpFilters": filters_to_json(&filters.filters())?,
        "diagnostics": filters.diagnostics.iter().map(|d| format!("{}/{}: {}", d.namespace, d.name, d.message)).collect::<Vec<_>>(),
    }))
}
