//! The Kubernetes source: one watcher per kind (kube-rs, with backoff), decoded through the same
//! path as files (`wayguard_api::resource::decode`, validation included) into the index.
//!
//! - Every kind is watched as a `DynamicObject` at the first version the cluster serves, so
//!   clusters with older Gateway API or Istio CRD versions work, and a kind whose CRD is not
//!   installed is reported and treated as empty (re-checked periodically) instead of blocking.
//! - Relists are applied as one batch (`Index::reset`).
//! - Secrets and ConfigMaps are not watched cluster-wide: only the objects gateways and
//!   AuthConfigs reference, each with a `metadata.name` field selector.
//! - Every watcher is a task of the source's own `JoinSet`: none outlives the source, and one that
//!   ends (watch streams retry forever, so only a bug ends one) ends the source with an error.

pub mod lease;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::task::JoinSet;
use wayguard_api::resource::{Kind, ObjectRef, Resource, decode};

use crate::pipeline::Pipeline;
use crate::sources::{Changes, Source, SourceContext};

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
pub struct SyncProgress {
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
    changes: Changes,
    synced: Arc<SyncProgress>,
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
                    changes.notify();
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
    changes: Changes,
    synced: Arc<SyncProgress>,
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
                    changes.notify();
                }
                synced.objects.send_if_modified(|s| s.insert(key.clone()));
            }
            Ok(event) => {
                if let (true, _) = apply_event(&pipeline, key.kind, &ar, event, &mut relist) {
                    changes.notify();
                }
            }
            Err(e) => tracing::warn!(object = %key, error = %e, "watch error; backing off"),
        }
    }
}

/// The Kubernetes source: every cluster-wide watcher and the referenced-object reconciler.
#[derive(Clone)]
pub struct KubernetesSource {
    client: Client,
}

impl std::fmt::Debug for KubernetesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesSource").finish_non_exhaustive()
    }
}

impl KubernetesSource {
    /// A source reading through `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Source for KubernetesSource {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn run(self, mut ctx: SourceContext) -> Result<()> {
        let client = self.client;
        let progress = Arc::new(SyncProgress {
            kinds: watch::Sender::new(BTreeSet::new()),
            objects: watch::Sender::new(BTreeSet::new()),
        });
        let mut tasks = JoinSet::new();
        for kind in WATCHED {
            tasks.spawn(watch_kind(
                client.clone(),
                kind,
                ctx.pipeline.clone(),
                ctx.changes.clone(),
                progress.clone(),
            ));
        }
        tasks.spawn(referenced_objects(
            client,
            ctx.pipeline.clone(),
            ctx.changes.clone(),
            ctx.rebuilt.clone(),
            progress.clone(),
        ));
        tokio::select! {
            biased;
            () = ctx.drain.signaled() => return Ok(()),
            () = wait_synced(&progress, &ctx) => {}
            Some(_) = tasks.join_next() => anyhow::bail!("a Kubernetes watcher ended before the first sync"),
        }
        ctx.synced.done();
        tokio::select! {
            biased;
            () = ctx.drain.signaled() => Ok(()),
            Some(_) = tasks.join_next() => anyhow::bail!("a Kubernetes watcher ended"),
        }
    }
}

/// Waits until every watched kind listed once, then (bounded) until every Secret/ConfigMap the
/// listed objects reference was read or found absent, so HTTPS listeners are not programmed a
/// beat late and the first snapshot already has the mesh config. Progress goes to `/ready`.
async fn wait_synced(progress: &SyncProgress, ctx: &SourceContext) {
    let mut rx = progress.kinds.subscribe();
    let all: BTreeSet<_> = WATCHED.into_iter().collect();
    let mut last_log = tokio::time::Instant::now();
    loop {
        let missing: Vec<String> = all
            .difference(&rx.borrow_and_update())
            .map(ToString::to_string)
            .collect();
        if missing.is_empty() {
            break;
        }
        ctx.synced.progress(format!(
            "waiting for the first list of {}",
            missing.join(", ")
        ));
        if last_log.elapsed() >= Duration::from_secs(5) {
            tracing::info!(waiting_for = ?missing, "waiting for the initial list of these kinds");
            last_log = tokio::time::Instant::now();
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    let mut objects = progress.objects.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        // A referenced object can reference more (none do today), so `wanted` is re-read.
        let wanted = ctx.pipeline.index.read().referenced_objects();
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
        ctx.synced
            .progress(format!("reading referenced {}", missing.join(", ")));
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

/// Keeps one watcher per referenced Secret/ConfigMap; unreferenced ones are dropped from the index.
///
/// Reconciles after every rebuild and whenever a kind completes its first list, so the objects
/// the initial Gateways reference are watched before the first build (which waits for them).
async fn referenced_objects(
    client: Client,
    pipeline: Arc<Pipeline>,
    changes: Changes,
    mut rebuilt: watch::Receiver<u64>,
    synced: Arc<SyncProgress>,
) {
    let mut kinds = synced.kinds.subscribe();
    let mut watchers: BTreeMap<ObjectRef, tokio::task::AbortHandle> = BTreeMap::new();
    let mut tasks = JoinSet::new();
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
                changes.notify();
            }
        }
        for key in wanted {
            watchers.entry(key.clone()).or_insert_with(|| {
                tracing::info!(object = %key, "watching referenced object");
                tasks.spawn(watch_object(
                    client.clone(),
                    key,
                    pipeline.clone(),
                    changes.clone(),
                    synced.clone(),
                ))
            });
        }
        tokio::select! {
            r = rebuilt.changed() => if r.is_err() { return },
            r = kinds.changed() => if r.is_err() { return },
            // Finished (aborted) watchers are reaped here.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}
