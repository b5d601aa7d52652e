//! Policy attachment (istio/istio `pilot/pkg/model/policyattachment.go` `ShouldAttachPolicy`,
//! SEMANTICS.md §1.1), for Gateway API gateways.

use std::collections::BTreeMap;

use wayguard_api::gateway_api::apis::standard::gateways::Gateway;
use wayguard_api::istio::{PolicyTargetReference, WorkloadSelector};
use wayguard_api::resource::{Kind, Resource};
use wayguard_core::GatewayId;

use crate::{Index, IndexConfig, gateway_id};

/// Label binding a Service (or every Service of a Namespace) to a waypoint.
pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
/// Label naming the waypoint's namespace when it differs from the Service's.
pub const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
/// Label every Gateway API gateway's workload carries.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// What attachment needs to know about one gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayInfo {
    /// The gateway.
    pub id: GatewayId,
    /// Its class.
    pub class: String,
    /// Whether it is a waypoint (selector-based policies never apply).
    pub waypoint: bool,
    /// The labels a workload selector is matched against: the Gateway's labels, its
    /// `spec.infrastructure.labels`, and `gateway.networking.k8s.io/gateway-name`.
    pub labels: BTreeMap<String, String>,
    /// Services bound to this gateway with `istio.io/use-waypoint`, as `(namespace, name)`.
    pub bound_services: Vec<(String, String)>,
}

pub(crate) fn gateway_info(index: &Index, gw: &Gateway) -> GatewayInfo {
    let id = gateway_id(&gw.metadata);
    let mut labels: BTreeMap<String, String> = gw.metadata.labels.clone().unwrap_or_default();
    if let Some(infra) = gw
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.labels.as_ref())
    {
        labels.extend(infra.clone());
    }
    labels.insert(GATEWAY_NAME_LABEL.into(), id.name.clone());
    let class = gw.spec.gateway_class_name.clone();
    GatewayInfo {
        waypoint: index.config.waypoint_classes.contains(&class),
        bound_services: bound_services(index, &id),
        id,
        class,
        labels,
    }
}

/// Services bound to `gw`: a Service's own `istio.io/use-waypoint` label wins over its
/// Namespace's; the value `none` opts out; the waypoint lives in the Service's namespace unless
/// `istio.io/use-waypoint-namespace` says otherwise.
pub fn bound_services(index: &Index, gw: &GatewayId) -> Vec<(String, String)> {
    let namespace_labels: BTreeMap<&str, &BTreeMap<String, String>> = index
        .valid(Kind::Namespace)
        .filter_map(|r| match r {
            Resource::Namespace(n) => {
                Some((n.metadata.name.as_deref()?, n.metadata.labels.as_ref()?))
            }
            _ => None,
        })
        .collect();
    index
        .valid(Kind::Service)
        .filter_map(|r| match r {
            Resource::Service(s) => Some(s),
            _ => None,
        })
        .filter_map(|svc| {
            let ns = svc.metadata.namespace.as_deref()?;
            let name = svc.metadata.name.as_deref()?;
            let own = svc.metadata.labels.as_ref();
            let from = own
                .filter(|l| l.contains_key(USE_WAYPOINT))
                .or_else(|| namespace_labels.get(ns).copied())?;
            let waypoint = from.get(USE_WAYPOINT)?;
            let waypoint_ns = from.get(USE_WAYPOINT_NAMESPACE).map_or(ns, String::as_str);
            (waypoint != "none" && waypoint == &gw.name && waypoint_ns == gw.namespace)
                .then(|| (ns.to_string(), name.to_string()))
        })
        .collect()
}

fn group_is(group: &str, want: &str) -> bool {
    // Istio's CanonicalGroup: "" and "core" are the same group.
    let canonical = |g: &str| {
        if g.is_empty() {
            "core".to_string()
        } else {
            g.to_string()
        }
    };
    canonical(group) == canonical(want)
}

/// Whether a policy in `policy_ns` with this selector/targets applies to the gateway.
pub(crate) fn attaches(
    config: &IndexConfig,
    gw: &GatewayInfo,
    policy_ns: &str,
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) -> bool {
    let refs: Vec<&PolicyTargetReference> = if target_refs.is_empty() {
        target_ref.into_iter().collect()
    } else {
        target_refs.iter().collect()
    };
    if refs.is_empty() {
        // Workload-scoped policy: the gateway's namespace or the root namespace, selector subset.
        if gw.waypoint || (policy_ns != gw.id.namespace && policy_ns != config.root_namespace) {
            return false;
        }
        return selector.is_none_or(|s| {
            s.match_labels
                .iter()
                .all(|(k, v)| gw.labels.get(k) == Some(&v.0))
        });
    }
    refs.iter().any(|t| {
        if group_is(&t.group, "") && t.kind == "Service" {
            return gw
                .bound_services
                .iter()
                .any(|(ns, name)| ns == policy_ns && name == &t.name);
        }
        if policy_ns == config.root_namespace
            && group_is(&t.group, "gateway.networking.k8s.io")
            && t.kind == "GatewayClass"
        {
            return t.name == gw.class;
        }
        policy_ns == gw.id.namespace
            && t.namespace
                .as_deref()
                .is_none_or(|ns| ns.is_empty() || ns == gw.id.namespace)
            && group_is(&t.group, "gateway.networking.k8s.io")
            && t.kind == "Gateway"
            && t.name == gw.id.name
    })
}
