//! The index: every object wayguard reads, validated, with cross-references resolved and the
//! policies attached to each gateway computed. Synchronous and I/O-free; tested by calling
//! [`Index::apply`] and [`Index::delete`] directly.
//!
//! An object that fails validation never replaces the last valid version of itself: a broken
//! edit leaves the previous behaviour in place (and is reported), it never fails open.

mod attach;
mod auth_config;
pub mod convert;
mod filters;
mod routing;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wayguard_api::gateway_api::apis::standard::gateways::Gateway;
use wayguard_api::mesh;
use wayguard_api::resource::{Kind, ObjectRef, Resource};
use wayguard_api::validation::{Report, validate};
use wayguard_core::GatewayId;
use wayguard_core::gateway::GatewayAuth;

pub use attach::GatewayInfo;
pub use routing::cluster_name;

/// How wayguard reads the world.
#[derive(Clone, Debug)]
pub struct IndexConfig {
    /// The root namespace: its policies may target GatewayClasses and, without targetRefs, apply
    /// to every non-waypoint gateway (Istio meshConfig `rootNamespace`).
    pub root_namespace: String,
    /// Gateway classes wayguard programs.
    pub gateway_classes: Vec<String>,
    /// Classes whose gateways are waypoints (no selector-based attachment).
    pub waypoint_classes: Vec<String>,
    /// Who fetches JWKS URIs.
    pub jwks_fetch_mode: wayguard_core::authn::JwksFetchMode,
    /// Where Envoy reaches wayguard's own ext_authz (`--extauth-upstream`), for login policies
    /// whose `backendRef` does not name a Service the index knows.
    pub extauth_upstream: Option<(String, u16)>,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            root_namespace: "istio-system".into(),
            gateway_classes: vec!["wayguard".into(), "istio-waypoint".into()],
            waypoint_classes: vec!["istio-waypoint".into()],
            jwks_fetch_mode: wayguard_core::authn::JwksFetchMode::Istiod,
            extauth_upstream: None,
        }
    }
}

/// One object as the index keeps it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The last version that passed validation, in effect.
    pub valid: Option<Resource>,
    /// The newest version, when it failed validation, with its report.
    pub rejected: Option<(Resource, Report)>,
    /// Warnings of the version in effect.
    pub warnings: Report,
}

/// The index.
#[derive(Clone, Debug, Default)]
pub struct Index {
    config: IndexConfig,
    objects: BTreeMap<ObjectRef, Entry>,
}

fn same_content(a: &Resource, b: &Resource) -> bool {
    match (a.to_value(), b.to_value()) {
        (Ok(mut x), Ok(mut y)) => {
            // resourceVersion/managedFields churn on every status write; they do not change meaning.
            for v in [&mut x, &mut y] {
                if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                    meta.remove("resourceVersion");
                    meta.remove("managedFields");
                }
                if let Some(obj) = v.as_object_mut() {
                    obj.remove("status");
                }
            }
            x == y
        }
        _ => false,
    }
}

impl Index {
    /// An empty index.
    pub fn new(config: IndexConfig) -> Self {
        Self {
            config,
            objects: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// Adds or replaces an object. Returns whether anything that matters changed.
    pub fn apply(&mut self, resource: Resource) -> bool {
        let key = resource.object_ref();
        let report = validate(&resource);
        let entry = self.objects.entry(key).or_insert_with(|| Entry {
            valid: None,
            rejected: None,
            warnings: Report::default(),
        });
        if report.is_valid() {
            let unchanged = entry.rejected.is_none()
                && entry
                    .valid
                    .as_ref()
                    .is_some_and(|v| same_content(v, &resource));
            entry.valid = Some(resource);
            entry.rejected = None;
            entry.warnings = report;
            !unchanged
        } else {
            let unchanged = entry
                .rejected
                .as_ref()
                .is_some_and(|(r, rep)| rep == &report && same_content(r, &resource));
            entry.rejected = Some((resource, report));
            !unchanged
        }
    }

    /// Removes an object. Returns whether it existed.
    pub fn delete(&mut self, key: &ObjectRef) -> bool {
        self.objects.remove(key).is_some()
    }

    /// Replaces every object of `kind` (a relist): objects not in `all` are removed.
    /// Returns whether anything changed.
    pub fn reset(&mut self, kind: Kind, all: Vec<Resource>) -> bool {
        let keep: std::collections::BTreeSet<ObjectRef> =
            all.iter().map(Resource::object_ref).collect();
        let stale: Vec<ObjectRef> = self
            .objects
            .keys()
            .filter(|k| k.kind == kind && !keep.contains(k))
            .cloned()
            .collect();
        let mut changed = false;
        for key in stale {
            changed |= self.delete(&key);
        }
        for resource in all {
            changed |= self.apply(resource);
        }
        changed
    }

    /// Every object with its state.
    pub fn entries(&self) -> impl Iterator<Item = (&ObjectRef, &Entry)> {
        self.objects.iter()
    }

    /// One object's state.
    pub fn entry(&self, key: &ObjectRef) -> Option<&Entry> {
        self.objects.get(key)
    }

    /// The valid objects of one kind, in key order.
    pub(crate) fn valid(&self, kind: Kind) -> impl Iterator<Item = &Resource> {
        self.objects
            .iter()
            .filter(move |(k, _)| k.kind == kind)
            .filter_map(|(_, e)| e.valid.as_ref())
    }

    /// The gateways wayguard programs (their class is one of ours), sorted.
    pub fn gateways(&self) -> Vec<GatewayId> {
        self.valid(Kind::Gateway)
            .filter_map(|r| match r {
                Resource::Gateway(g)
                    if self
                        .config
                        .gateway_classes
                        .contains(&g.spec.gateway_class_name) =>
                {
                    Some(gateway_id(&g.metadata))
                }
                _ => None,
            })
            .collect()
    }

    /// A gateway object by id.
    pub fn gateway(&self, id: &GatewayId) -> Option<&Gateway> {
        let key = ObjectRef {
            kind: Kind::Gateway,
            namespace: id.namespace.clone(),
            name: id.name.clone(),
        };
        match self.objects.get(&key)?.valid.as_ref()? {
            Resource::Gateway(g) => Some(g),
            _ => None,
        }
    }

    /// The auth policies attached to a gateway, in translation order.
    pub fn gateway_auth(&self, id: &GatewayId) -> GatewayAuth {
        self.gateway_auth_in(id, self.trust_domains().unwrap_or_default())
    }

    /// [`Self::gateway_auth`] with the mesh's trust domains already read.
    pub(crate) fn gateway_auth_in(
        &self,
        id: &GatewayId,
        trust_domains: Vec<String>,
    ) -> GatewayAuth {
        let Some(info) = self.gateway_info(id) else {
            return GatewayAuth::default();
        };
        let mut ras: Vec<_> = self
            .valid(Kind::RequestAuthentication)
            .filter_map(|r| match r {
                Resource::RequestAuthentication(ra) => Some(ra),
                _ => None,
            })
            .filter(|ra| {
                attach::attaches(
                    &self.config,
                    &info,
                    ra.metadata.namespace.as_deref().unwrap_or_default(),
                    ra.spec.selector.as_ref(),
                    ra.spec.target_ref.as_ref(),
                    &ra.spec.target_refs,
                )
            })
            .collect();
        ras.sort_by(|a, b| policy_order(&a.metadata, &b.metadata));
        let mut aps: Vec<_> = self
            .valid(Kind::AuthorizationPolicy)
            .filter_map(|r| match r {
                Resource::AuthorizationPolicy(ap) => Some(ap),
                _ => None,
            })
            .filter(|ap| {
                attach::attaches(
                    &self.config,
                    &info,
                    ap.metadata.namespace.as_deref().unwrap_or_default(),
                    ap.spec.selector.as_ref(),
                    ap.spec.target_ref.as_ref(),
                    &ap.spec.target_refs,
                )
            })
            .collect();
        aps.sort_by(|a, b| policy_order(&a.metadata, &b.metadata));
        GatewayAuth {
            jwt_rules: ras.into_iter().flat_map(convert::jwt_rules).collect(),
            policies: aps.into_iter().map(convert::authz_policy).collect(),
            trust_domains,
        }
    }

    /// The mesh's trust domain and its aliases from mesh config (the ConfigMap `istio` in the
    /// root namespace, as istiod reads it): `trustDomain` (default `cluster.local`) first. `Err`
    /// when the mesh config does not parse (then only `cluster.local` is used).
    pub fn trust_domains(&self) -> Result<Vec<String>, String> {
        let root = &self.config.root_namespace;
        let text = match self.find(Kind::ConfigMap, root, mesh::MESH_CONFIGMAP) {
            Some(Resource::ConfigMap(cm)) => cm
                .data
                .as_ref()
                .and_then(|d| d.get(mesh::MESH_KEY))
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        };
        let mesh = mesh::parse(&text)?;
        let local = mesh
            .trust_domain
            .filter(|td| !td.is_empty())
            .unwrap_or_else(|| "cluster.local".to_string());
        let mut out = vec![local];
        for alias in mesh.trust_domain_aliases {
            if !out.contains(&alias) {
                out.push(alias);
            }
        }
        Ok(out)
    }

    /// What attachment needs to know about a gateway.
    pub fn gateway_info(&self, id: &GatewayId) -> Option<GatewayInfo> {
        let gw = self.gateway(id)?;
        Some(attach::gateway_info(self, gw))
    }
}

fn gateway_id(meta: &ObjectMeta) -> GatewayId {
    GatewayId::new(
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Istio orders policies by creation time; ties (and files without timestamps) by namespace/name,
/// so the result never depends on the order objects arrived in.
fn policy_order(a: &ObjectMeta, b: &ObjectMeta) -> std::cmp::Ordering {
    let ts = |m: &ObjectMeta| m.creation_timestamp.as_ref().map(|t| t.0);
    ts(a)
        .cmp(&ts(b))
        .then_with(|| a.namespace.cmp(&b.namespace))
        .then_with(|| a.name.cmp(&b.name))
}

#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod tests;

impl Index {
    /// The gateways an AuthorizationPolicy or RequestAuthentication attaches to (for status).
    pub fn policy_gateways(&self, key: &ObjectRef) -> Vec<GatewayId> {
        let Some(resource) = self.entry(key).and_then(|e| e.valid.as_ref()) else {
            return Vec::new();
        };
        let (ns, selector, target_ref, target_refs) = match resource {
            Resource::RequestAuthentication(ra) => (
                ra.metadata.namespace.as_deref().unwrap_or_default(),
                ra.spec.selector.as_ref(),
                ra.spec.target_ref.as_ref(),
                ra.spec.target_refs.as_slice(),
            ),
            Resource::AuthorizationPolicy(ap) => (
                ap.metadata.namespace.as_deref().unwrap_or_default(),
                ap.spec.selector.as_ref(),
                ap.spec.target_ref.as_ref(),
                ap.spec.target_refs.as_slice(),
            ),
            _ => return Vec::new(),
        };
        self.gateways()
            .into_iter()
            .filter(|id| {
                self.gateway_info(id).is_some_and(|info| {
                    attach::attaches(&self.config, &info, ns, selector, target_ref, target_refs)
                })
            })
            .collect()
    }

    /// Whether a valid object exists.
    pub fn exists(&self, key: &ObjectRef) -> bool {
        self.entry(key).is_some_and(|e| e.valid.is_some())
    }
}
