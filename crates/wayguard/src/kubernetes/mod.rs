//! The Kubernetes source: one watcher per kind (kube-rs, with backoff), decoded through the same
//! path as files (`wayguard_api::resource::decode`, validation included) into the index.
//!
//! - Every kind is watched as a `DynamicObject` at the first version the cluster serves, so
//!   clusters with older Gateway API or Istio CRD versions work, and a kind whose CRD is not
//!   installed is reported and treated as empty (re-checked periodically) instead of blocking.
//! - Relists are applied as one batch (`Index::reset`).
//! - Secrets and ConfigMaps are not watched cluster-wide: only the objects gateways and
//!   AuthConfigs reference, each with a `metadata.name` field selector.

pub mod lease;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{mpsc, watch};
use wayguard_api::resource::{Kind, ObjectRef, Resource, decode};

use crate::pipeline::Pipeline;

/// Kinds watched cluster-wide (Secrets and ConfigMaps are watched per referenced object).
pub const WATCHED: [Kind; 12] = [
    Kind::Namespace,
    Kind::GatewayClass,
    Kind::Gateway,
    Kind::HttpRoute,
    Kind::ReferenceGrant,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::AgentgatewayBackend,
    Kind::AuthConfig,
    Kind::EnterpriseAgentgatewayPolicy,
    Kind::RequestAuthentication,
    Kind::AuthorizationPolicy,
];

/// Sync progress of the watchers.
#[derive(Debug)]
pub struct Synced {
    /// Kinds that completed their first list (or are not installed).
    pub kinds: watch::Sender<BTreeSet<Kind>>,
    /// Referenced Secrets/ConfigMaps whose watcher completed its first list, whether the object
    /// exists or not (an absent object is settled too: it is known to be absent).
    pub objects: watch::Sender<BTreeSet<ObjectRef>>,
}

/// The API resource of `kind` at the first version the cluster serves.
///
/// Asks for the served versions first and reads the resource list of those only: probing a
/// version the cluster does not serve answers 404 with a text body, which kube-client logs as a
/// warning on every start.
async fn served(client: &Client, kind: Kind) -> Result<Option<ApiResource>, kube::Error> {
    let group = kind.group();
    let served: Vec<String> = if group.is_empty() {
        client.list_core_api_versions().await?.versions
    } else {
        client
            .list_api_groups()
            .await?
            .groups
            .into_iter()
            .find(|g| g.name == group)
            .map(|g| g.versions.into_iter().map(|v| v.version).collect())
            .unwrap_or_default()
    };
    for version in kind.versions() {
        if !served.iter().any(|v| v == version) {
            continue;
        }
        let resources = if group.is_empty() {
            client.list_core_api_resources(version).await?
        } else {
            client
                .list_api_group_resources(&format!("{group}/{version}"))
                .await?
        };
        // Subresources (`gateways/status`) share the kind; the plural has no slash.
        if let Some(r) = resources
            .resources
            .iter()
            .find(|r| r.kind == kind.name() && !r.name.contains('/'))
        {
            let gvk = GroupVersionKind::gvk(group, version, kind.name());
            return Ok(Some(ApiResource::from_gvk_with_plural(&gvk, &r.name)));
        }
    }
    Ok(None)
}

fn to_resource(kind: Kind, ar: &ApiResource, obj: &DynamicObject) -> Result<Resource, String> {
    let mut value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("apiVersion".into(), ar.api_version.clone().into());
        map.insert("kind".into(), kind.name().into());
    }
    decode(&value, 0).map_err(|e| e.to_string())
}

fn object_ref(kind: Kind, obj: &DynamicObject) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: if kind.namespaced() {
            obj.metadata.namespace.clone().unwrap_or_default()
        } else {
            String::new()
        },
        name: obj.metadata.name.clone().unwrap_or_default(),
    }
}

/// Applies one watcher event to the index; returns whether the index changed.
fn apply_event(
    pipeline: &Pipeline,
    kind: Kind,
    ar: &ApiResource,
    event: Event<DynamicObject>,
    relist: &mut Vec<Resource>,
) -> (bool, bool) {
    let mut index = pipeline.index.write();
    match event {
        Event::Init => {
            relist.clear();
            (false, false)
        }
        Event::InitApply(obj) => {
            match to_resource(kind, ar, &obj) {
                Ok(r) => relist.push(r),
                Err(e) => {
                    tracing::warn!(kind = %kind, object = %object_ref(kind, &obj), error = %e, "not decodable; ignored")
                }
            }
            (false, false)
        }
        Event::InitDone => (index.reset(kind, std::mem::take(relist)), true),
        Event::Apply(obj) => match to_resource(kind, ar, &obj) {
            Ok(r) => (index.apply(r), false),
            Err(e) => {
                tracing::warn!(kind = %kind, object = %object_ref(kind, &obj), error = %e, "not decodable; the last valid version stays in effect");
                (false, false)
            }
        },
        Event::Delete(obj) => (index.delete(&object_ref(kind, &obj)), false),
    }
}

/// Watches one kind cluster-wide until the process ends.
async fn watch_kind(
    client: Client,
    kind: Kind,
    pipeline: Arc<Pipeline>,
    trigger: mpsc::UnboundedSender<()>,
    synced: Arc<Synced>,
) {
    let synced = &synced.kinds;
    let ar = loop {
        match served(&client, kind).await {
            Ok(Some(ar)) => break ar,
            Ok(None) => {
                if !synced.borrow().contains(&kind) {
                    tracing::warn!(kind = %kind, group = kind.group(), "not served by this cluster (CRD not installed?); treated as empty, checking again every 30s");
                    synced.send_modify(|s| {
                        s.insert(kind);
                    });
                }
            }
            Err(e) => tracing::warn!(kind = %kind, error = %e, "API discovery failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    };
    tracing::info!(kind = %kind, api_version = %ar.api_version, "watching");
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relist = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                let (changed, init_done) = apply_event(&pipeline, kind, &ar, event, &mut relist);
                if init_done {
                    synced.send_modify(|s| {
                        s.insert(kind);
                    });
                }
                if changed {
                    let _ = trigger.send(());
                }
            }
            Err(e) => tracing::warn!(kind = %kind, error = %e, "watch error; backing off"),
        }
    }
}

/// Watches one referenced Secret or ConfigMap by name.
async fn watch_object(
    client: Client,
    key: ObjectRef,
    pipeline: Arc<Pipeline>,
    trigger: mpsc::UnboundedSender<()>,
    synced: Arc<Synced>,
) {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", key.kind.name()),
        key.kind.plural(),
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, &key.namespace, &ar);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut relist = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::InitDone) => {
                // A reset for this one object: present -> applied, absent -> deleted.
                let found = std::mem::take(&mut relist);
                let changed = {
                    let mut index = pipeline.index.write();
                    match found.into_iter().next() {
                        Some(r) => index.apply(r),
                        None => index.delete(&key),
                    }
                };
                if changed {
                    let _ = trigger.send(());
                }
                synced.objects.send_if_modified(|s| s.insert(key.clone()));
            }
            Ok(event) => {
                if let (true, _) = apply_event(&pipeline, key.kind, &ar, event, &mut relist) {
                    let _ = trigger.send(());
                }
            }
            Err(e) => tracing::warn!(object = %key, error = %e, "watch error; backing off"),
        }
    }
}

/// Starts every cluster-wide watcher and the referenced-object reconciler.
pub fn start(
    client: Client,
    pipeline: Arc<Pipeline>,
    trigger: mpsc::UnboundedSender<()>,
    rebuilt: watch::Receiver<u64>,
) -> Arc<Synced> {
    let synced = Arc::new(Synced {
        kinds: watch::Sender::new(BTreeSet::new()),
        objects: watch::Sender::new(BTreeSet::new()),
    });
    for kind in WATCHED {
        tokio::spawn(watch_kind(
            client.clone(),
            kind,
            pipeline.clone(),
            trigger.clone(),
            synced.clone(),
        ));
    }
    tokio::spawn(referenced_objects(
        client,
        pipeline,
        trigger,
        rebuilt,
        synced.clone(),
    ));
    synced
}

/// Keeps one watcher per referenced Secret/ConfigMap; unreferenced ones are dropped from the index.
///
/// Reconciles after every rebuild and whenever a kind completes its first list, so the objects
/// the initial Gateways reference are watched before the first build (which waits for them).
async fn referenced_objects(
    client: Client,
    pipeline: Arc<Pipeline>,
    trigger: mpsc::UnboundedSender<()>,
    mut rebuilt: watch::Receiver<u64>,
    synced: Arc<Synced>,
) {
    let mut kinds = synced.kinds.subscribe();
    let mut watchers: BTreeMap<ObjectRef, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        let wanted = pipeline.index.read().referenced_objects();
        let stale: Vec<ObjectRef> = watchers
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            if let Some(task) = watchers.remove(&key) {
                task.abort();
            }
            synced.objects.send_if_modified(|s| s.remove(&key));
            if pipeline.index.write().delete(&key) {
                let _ = trigger.send(());
            }
        }
        for key in wanted {
            watchers.entry(key.clone()).or_insert_with(|| {
                tracing::info!(object = %key, "watching referenced object");
                tokio::spawn(watch_object(
                    client.clone(),
                    key,
                    pipeline.clone(),
                    trigger.clone(),
                    synced.clone(),
                ))
            });
        }
        tokio::select! {
            r = rebuilt.changed() => if r.is_err() { return },
            r = kinds.changed() => if r.is_err() { return },
        }
    }
}
