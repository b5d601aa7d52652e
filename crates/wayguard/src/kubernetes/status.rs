//! Status conditions of the kinds wayguard serves, written by the leader with server-side apply,
//! only when they changed: `Accepted` (validation), `ResolvedRefs` (targets, secrets, backends)
//! and, for RequestAuthentications, `JwksResolved`; `observedGeneration` on each. Gateways whose
//! GatewayClass has wayguard's `controllerName` ([`CONTROLLER_NAME`]) get Gateway API status:
//! `Accepted` and `Programmed`, and per listener `attachedRoutes`, `supportedKinds`, `Accepted`,
//! `Programmed` and `ResolvedRefs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;
use wayguard_api::gateway_api::apis::standard::gateways::Gateway;
use wayguard_api::resource::{Kind, ObjectRef, Resource};
use wayguard_api::status::PolicyStatus;
use wayguard_api::status::conditions as c;
use wayguard_core::GatewayId;
use wayguard_core::authn::JwksSource;
use wayguard_core::routing::GatewayConfig;
use wayguard_index::Index;
use wayguard_jwks::JwksStatus;

use crate::keys::KeyMaterial;
use crate::pipeline::Pipeline;

/// The field manager of wayguard's status writes.
pub const FIELD_MANAGER: &str = "wayguard";

/// A condition without its transition time.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Want {
    kind: &'static str,
    status: &'static str,
    reason: &'static str,
    message: String,
}

fn want(
    kind: &'static str,
    ok: Option<bool>,
    reason: &'static str,
    message: impl Into<String>,
) -> Want {
    Want {
        kind,
        status: match ok {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        },
        reason,
        message: message.into(),
    }
}

fn accepted(index: &Index, key: &ObjectRef) -> Want {
    let Some(entry) = index.entry(key) else {
        return want(c::ACCEPTED, Some(false), c::REASON_INVALID, "not known");
    };
    match &entry.rejected {
        Some((_, report)) => {
            let kept = if entry.valid.is_some() {
                " (the last valid version stays in effect)"
            } else {
                " (not in effect)"
            };
            want(
                c::ACCEPTED,
                Some(false),
                c::REASON_INVALID,
                format!("{}{kept}", report.error_message()),
            )
        }
        None if entry.warnings.warnings.is_empty() => {
            want(c::ACCEPTED, Some(true), c::REASON_ACCEPTED, "accepted")
        }
        None => want(
            c::ACCEPTED,
            Some(true),
            c::REASON_ACCEPTED,
            format!(
                "accepted with warnings: {}",
                entry
                    .warnings
                    .warnings
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
    }
}

fn secret_ref(ns: &str, r: &wayguard_api::solo::ResourceRef) -> ObjectRef {
    ObjectRef {
        kind: Kind::Secret,
        namespace: r.namespace.clone().unwrap_or_else(|| ns.to_string()),
        name: r.name.clone(),
    }
}

fn resolved_refs(index: &Index, key: &ObjectRef, resource: &Resource) -> Want {
    let missing: Vec<String> = match resource {
        Resource::RequestAuthentication(_) | Resource::AuthorizationPolicy(_) => {
            let gateways = index.policy_gateways(key);
            if gateways.is_empty() {
                return want(
                    c::RESOLVED_REFS,
                    Some(false),
                    c::REASON_TARGET_NOT_FOUND,
                    "no Gateway with a wayguard class matches targetRefs (or the selector); the policy has no effect",
                );
            }
            let names: Vec<String> = gateways.iter().map(ToString::to_string).collect();
            return want(
                c::RESOLVED_REFS,
                Some(true),
                c::REASON_RESOLVED,
                format!("attached to {}", names.join(", ")),
            );
        }
        Resource::AuthConfig(ac) => {
            let ns = key.namespace.as_str();
            ac.spec
                .configs
                .iter()
                .filter_map(|s| s.oauth2.as_ref()?.oidc_authorization_code.as_ref())
                .filter_map(|o| o.client_secret_ref.as_ref())
                .map(|r| secret_ref(ns, r))
                .filter(|r| !index.exists(r))
                .map(|r| format!("Secret {}/{}", r.namespace, r.name))
                .collect()
        }
        Resource::EnterpriseAgentgatewayPolicy(p) => {
            let ns = key.namespace.as_str();
            let mut missing = Vec::new();
            if let Some(ea) = p
                .spec
                .traffic
                .as_ref()
                .and_then(|t| t.ent_ext_auth.as_ref())
            {
                let r = ObjectRef {
                    kind: Kind::AuthConfig,
                    namespace: ea
                        .auth_config_ref
                        .namespace
                        .clone()
                        .unwrap_or_else(|| ns.to_string()),
                    name: ea.auth_config_ref.name.clone(),
                };
                if !index.exists(&r) {
                    missing.push(format!("AuthConfig {}/{}", r.namespace, r.name));
                }
            }
            for t in &p.spec.target_refs {
                let kind = match t.kind.as_str() {
                    "Gateway" => Kind::Gateway,
                    "HTTPRoute" => Kind::HttpRoute,
                    "AgentgatewayBackend" => Kind::AgentgatewayBackend,
                    "Service" => Kind::Service,
                    _ => continue,
                };
                let r = ObjectRef {
                    kind,
                    namespace: ns.to_string(),
                    name: t.name.clone(),
                };
                if !index.exists(&r) {
                    missing.push(format!("{} {ns}/{}", t.kind, t.name));
                }
            }
            missing
        }
        _ => Vec::new(),
    };
    if missing.is_empty() {
        want(
            c::RESOLVED_REFS,
            Some(true),
            c::REASON_RESOLVED,
            "all references resolved",
        )
    } else {
        want(
            c::RESOLVED_REFS,
            Some(false),
            c::REASON_REF_NOT_FOUND,
            format!("not found: {}", missing.join(", ")),
        )
    }
}

fn jwks_resolved(keys: &KeyMaterial, resource: &Resource) -> Option<Want> {
    let Resource::RequestAuthentication(ra) = resource else {
        return None;
    };
    let rules = wayguard_index::convert::jwt_rules(ra);
    let mut pending = Vec::new();
    let mut failed = Vec::new();
    for rule in &rules {
        let uri = match &rule.jwks {
            JwksSource::Inline(_) => continue,
            JwksSource::Uri(u) => Some(u.as_str()),
            JwksSource::Discovery => None,
        };
        let label = uri.map_or_else(
            || format!("discovery for {}", rule.issuer),
            |u| format!("jwksUri {u}"),
        );
        match keys.resolver().status(&rule.issuer, uri) {
            Some(JwksStatus::Ok) => {}
            None | Some(JwksStatus::Pending) => pending.push(label),
            Some(s) => failed.push(format!("{label}: {}", s.message().unwrap_or_default())),
        }
    }
    Some(if !failed.is_empty() {
        want(
            c::JWKS_RESOLVED,
            Some(false),
            c::REASON_JWKS_FETCH_FAILED,
            failed.join("; "),
        )
    } else if !pending.is_empty() {
        want(
            c::JWKS_RESOLVED,
            None,
            c::REASON_PENDING,
            format!("fetching {}", pending.join(", ")),
        )
    } else {
        want(
            c::JWKS_RESOLVED,
            Some(true),
            c::REASON_JWKS_RESOLVED,
            "every JWKS resolved (or inline, or fetched by Envoy)",
        )
    })
}

fn current_status(resource: &Resource) -> Option<&PolicyStatus> {
    match resource {
        Resource::RequestAuthentication(r) => r.status.as_ref(),
        Resource::AuthorizationPolicy(r) => r.status.as_ref(),
        Resource::AuthConfig(r) => r.status.as_ref(),
        Resource::EnterpriseAgentgatewayPolicy(r) => r.status.as_ref(),
        Resource::AgentgatewayBackend(r) => r.status.as_ref(),
        _ => None,
    }
}

/// The distinct issuers of a RequestAuthentication, in rule order, for the ISSUERS column.
fn issuers(resource: &Resource) -> Option<String> {
    let Resource::RequestAuthentication(ra) = resource else {
        return None;
    };
    let mut seen = Vec::new();
    for rule in &ra.spec.jwt_rules {
        if !rule.issuer.is_empty() && !seen.contains(&rule.issuer.as_str()) {
            seen.push(rule.issuer.as_str());
        }
    }
    Some(seen.join(", "))
}

/// The desired status of one object, keeping transition times of unchanged conditions.
fn desired(
    index: &Index,
    keys: &KeyMaterial,
    key: &ObjectRef,
    resource: &Resource,
) -> serde_json::Value {
    let generation = resource.meta().generation;
    let mut wants = vec![accepted(index, key), resolved_refs(index, key, resource)];
    wants.extend(jwks_resolved(keys, resource));
    let current = current_status(resource)
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let conditions = to_conditions(wants, current, generation);
    let status = PolicyStatus {
        conditions,
        observed_generation: generation,
        issuers: issuers(resource),
    };
    serde_json::to_value(status).unwrap_or_else(|_| json!({}))
}

/// Conditions for `wants`, keeping the transition time of those whose status and reason did not
/// change.
fn to_conditions(
    wants: Vec<Want>,
    current: &[Condition],
    generation: Option<i64>,
) -> Vec<Condition> {
    let now = Time(Timestamp::now());
    wants
        .into_iter()
        .map(|w| {
            let previous = current.iter().find(|c| c.type_ == w.kind);
            let same = previous.is_some_and(|p| p.status == w.status && p.reason == w.reason);
            Condition {
                type_: w.kind.to_string(),
                status: w.status.to_string(),
                reason: w.reason.to_string(),
                message: w.message,
                observed_generation: generation,
                last_transition_time: previous
                    .filter(|_| same)
                    .map_or_else(|| now.clone(), |p| p.last_transition_time.clone()),
            }
        })
        .collect()
}

/// The `controllerName` of GatewayClasses whose Gateways' status wayguard writes.
pub const CONTROLLER_NAME: &str = "wayguard.io/gateway-controller";

/// Whether the GatewayClass `class` is wayguard's (its `controllerName`). Gateway status belongs to
/// the class's controller only: wayguard also programs `istio-waypoint` Gateways, whose status
/// istiod writes when it runs, and two writers would fight over it.
fn controls_class(index: &Index, class: &str) -> bool {
    let key = ObjectRef {
        kind: Kind::GatewayClass,
        namespace: String::new(),
        name: class.to_string(),
    };
    matches!(
        index.entry(&key).and_then(|e| e.valid.as_ref()),
        Some(Resource::GatewayClass(gc)) if gc.spec.controller_name == CONTROLLER_NAME
    )
}

/// A Gateway API condition: `ok` with `reason_ok` and no message, else `reason_bad` with `message`.
fn check(
    kind: &'static str,
    ok: bool,
    reason_ok: &'static str,
    reason_bad: &'static str,
    message: &str,
) -> Want {
    if ok {
        want(kind, Some(true), reason_ok, "")
    } else {
        want(kind, Some(false), reason_bad, message)
    }
}

/// Gateway API status of a Gateway wayguard programs. Problems are matched to the Gateway and its
/// listeners by the object they name (`Gateway ns/name` and `Gateway ns/name listener l`).
fn gateway_status(gw: &Gateway, config: &GatewayConfig) -> serde_json::Value {
    let generation = gw.metadata.generation;
    let object = format!("Gateway {}", config.id);
    let problems_of = |target: &str| -> Vec<String> {
        config
            .problems
            .iter()
            .filter(|p| p.object == target)
            .map(|p| p.message.clone())
            .collect()
    };
    let current = gw.status.as_ref();
    let mut all_listener_problems = Vec::new();
    let listeners: Vec<serde_json::Value> = gw
        .spec
        .listeners
        .iter()
        .map(|l| {
            let problems = problems_of(&format!("{object} listener {}", l.name));
            let supported = matches!(l.protocol.as_str(), "HTTP" | "HTTPS");
            let refs_ok = !problems.iter().any(|m| m.contains("ertificateRef"));
            let message = problems.join("; ");
            let wants = vec![
                check(
                    c::ACCEPTED,
                    supported,
                    "Accepted",
                    "UnsupportedProtocol",
                    &message,
                ),
                check(
                    "Programmed",
                    problems.is_empty(),
                    "Programmed",
                    "Invalid",
                    &message,
                ),
                check(
                    c::RESOLVED_REFS,
                    refs_ok,
                    "ResolvedRefs",
                    "InvalidCertificateRef",
                    &message,
                ),
            ];
            all_listener_problems
                .extend(problems.iter().map(|m| format!("listener {}: {m}", l.name)));
            let previous = current
                .and_then(|s| s.listeners.as_ref())
                .and_then(|ls| ls.iter().find(|x| x.name == l.name))
                .map(|x| x.conditions.as_slice())
                .unwrap_or_default();
            json!({
                "name": l.name,
                "attachedRoutes": config.attached_routes.get(&l.name).copied().unwrap_or(0),
                "supportedKinds": if supported {
                    json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}])
                } else {
                    json!([])
                },
                "conditions": to_conditions(wants, previous, generation),
            })
        })
        .collect();
    let mut problems = problems_of(&object);
    problems.extend(all_listener_problems);
    let wants = vec![
        want(
            c::ACCEPTED,
            Some(true),
            "Accepted",
            "programmed by wayguard",
        ),
        check(
            "Programmed",
            problems.is_empty(),
            "Programmed",
            "Invalid",
            &problems.join("; "),
        ),
    ];
    let previous = current
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    json!({
        "conditions": to_conditions(wants, previous, generation),
        "listeners": listeners,
    })
}

/// Compares statuses ignoring transition times (which only move when a condition changes).
fn comparable(status: &serde_json::Value) -> serde_json::Value {
    fn strip(value: &mut serde_json::Value) {
        if let Some(conds) = value.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for c in conds {
                if let Some(o) = c.as_object_mut() {
                    o.remove("lastTransitionTime");
                }
            }
        }
    }
    let mut s = status.clone();
    strip(&mut s);
    if let Some(listeners) = s.get_mut("listeners").and_then(|l| l.as_array_mut()) {
        listeners.iter_mut().for_each(strip);
    }
    s
}

/// Status write metrics (placeholder until the status writer reports outcomes).
#[derive(Clone, Debug, Default)]
pub struct StatusMetrics {}

impl StatusMetrics {
    /// Registers the metrics.
    pub fn register(_registry: &mut prometheus_client::registry::Registry) -> Self {
        Self {}
    }
}

/// Writes status whenever this replica leads, after rebuilds and JWKS status changes, until
/// `drain` is signaled.
pub async fn run(
    client: Client,
    pipeline: Arc<Pipeline>,
    mut leading: watch::Receiver<bool>,
    mut rebuilt: watch::Receiver<u64>,
    drain: wayguard_runtime::Drain,
    _metrics: StatusMetrics,
) -> anyhow::Result<()> {
    let mut jwks = pipeline.keys.resolver().status_changes();
    let mut written: BTreeMap<ObjectRef, serde_json::Value> = BTreeMap::new();
    loop {
        if *leading.borrow() {
            write_all(&client, &pipeline, &mut written).await;
        } else {
            written.clear();
        }
        tokio::select! {
            biased;
            () = drain.signaled() => return Ok(()),
            r = leading.changed() => if r.is_err() { return Ok(()) },
            r = rebuilt.changed() => if r.is_err() { return Ok(()) },
            r = jwks.changed() => if r.is_err() { return Ok(()) },
        }
    }
}

async fn write_all(
    client: &Client,
    pipeline: &Pipeline,
    written: &mut BTreeMap<ObjectRef, serde_json::Value>,
) {
    // Gateways of our classes, read under the index lock and released before the pipeline's
    // translation state is locked (a rebuild takes them in the other order).
    let ours: Vec<(GatewayId, Gateway)> = {
        let index = pipeline.index.read();
        index
            .gateways()
            .into_iter()
            .filter_map(|id| {
                let gw = index.gateway(&id)?;
                controls_class(&index, &gw.spec.gateway_class_name).then(|| (id, gw.clone()))
            })
            .collect()
    };
    // Status from the configuration the gateway was last translated from (not computed again).
    let gateways: Vec<_> = ours
        .into_iter()
        .filter_map(|(id, gw)| {
            let status = pipeline
                .with_translated_config(&id.to_string(), |config| gateway_status(&gw, config))?;
            let key = ObjectRef {
                kind: Kind::Gateway,
                namespace: id.namespace,
                name: id.name,
            };
            let current = gw
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or_else(|| json!({}));
            let unchanged = comparable(&current) == comparable(&status)
                || written
                    .get(&key)
                    .is_some_and(|w| comparable(w) == comparable(&status));
            (!unchanged).then(|| (key, status, "gateway.networking.k8s.io/v1".to_string()))
        })
        .collect();
    let work: Vec<(ObjectRef, serde_json::Value, String)> = {
        let index = pipeline.index.read();
        index
            .entries()
            .filter(|(k, _)| k.kind.has_wayguard_status())
            .filter_map(|(k, e)| {
                let resource = e.rejected.as_ref().map(|(r, _)| r).or(e.valid.as_ref())?;
                let api_version = resource
                    .to_value()
                    .ok()?
                    .get("apiVersion")?
                    .as_str()?
                    .to_string();
                let status = desired(&index, &pipeline.keys, k, resource);
                let current = current_status(resource)
                    .and_then(|s| serde_json::to_value(s).ok())
                    .unwrap_or_else(|| json!({}));
                let unchanged = comparable(&current) == comparable(&status)
                    || written
                        .get(k)
                        .is_some_and(|w| comparable(w) == comparable(&status));
                (!unchanged).then(|| (k.clone(), status, api_version))
            })
            .chain(gateways)
            .collect()
    };
    for (key, status, api_version) in work {
        let (group, version) = api_version
            .rsplit_once('/')
            .unwrap_or(("", api_version.as_str()));
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, key.kind.name()),
            key.kind.plural(),
        );
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &key.namespace, &ar);
        let patch = json!({"apiVersion": api_version, "kind": key.kind.name(), "status": status});
        match api
            .patch_status(
                &key.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::debug!(object = %key, "status written");
                written.insert(key, status);
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(kube::Error::Api(e)) if e.code == 403 => {
                tracing::warn!(object = %key, error = %e, "writing status is forbidden: grant `patch` on {}/status in group {:?} to wayguard's ServiceAccount (the Helm chart's ClusterRole has it); retrying on the next change", key.kind.plural(), group)
            }
            Err(e) => {
                tracing::warn!(object = %key, error = %e, "writing status failed; retrying on the next change")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use wayguard_core::GatewayId;
    use wayguard_core::routing::Problem;

    use super::*;

    fn gateway() -> Gateway {
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": "demo", "generation": 3},
            "spec": {
                "gatewayClassName": "wayguard",
                "listeners": [
                    {"name": "http", "protocol": "HTTP", "port": 8080},
                    {"name": "tcp", "protocol": "TCP", "port": 9000}
                ]
            }
        }))
        .expect("gateway")
    }

    fn condition<'a>(conditions: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
        conditions
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .unwrap_or_else(|| panic!("no {kind} in {conditions}"))
    }

    #[test]
    fn only_classes_with_wayguards_controller_name_get_gateway_status() {
        let mut index = Index::new(wayguard_index::IndexConfig::default());
        for (name, controller) in [
            ("wayguard", CONTROLLER_NAME),
            ("istio-waypoint", "istio.io/mesh-controller"),
        ] {
            let class: wayguard_api::gateway_api::apis::standard::gatewayclasses::GatewayClass =
                serde_json::from_value(json!({
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "GatewayClass",
                    "metadata": {"name": name},
                    "spec": {"controllerName": controller}
                }))
                .expect("class");
            index.apply(Resource::GatewayClass(class));
        }
        assert!(controls_class(&index, "wayguard"));
        assert!(!controls_class(&index, "istio-waypoint"));
        assert!(!controls_class(&index, "absent"));
    }

    #[test]
    fn gateway_status_reports_listeners_routes_and_problems() {
        let mut config = GatewayConfig {
            id: GatewayId::new("demo", "waypoint"),
            ..Default::default()
        };
        config.attached_routes.insert("http".into(), 2);
        config.problems.push(Problem {
            object: "Gateway demo/waypoint listener tcp".into(),
            message: "protocol TCP is not supported".into(),
        });
        config.problems.push(Problem {
            object: "HTTPRoute demo/other".into(),
            message: "not about the gateway".into(),
        });
        let status = gateway_status(&gateway(), &config);

        assert_eq!(
            condition(&status["conditions"], "Accepted")["status"],
            "True"
        );
        let programmed = condition(&status["conditions"], "Programmed");
        assert_eq!(programmed["status"], "False");
        assert_eq!(programmed["observedGeneration"], 3);
        assert!(
            programmed["message"].as_str().is_some_and(|m| m
                .contains("listener tcp: protocol TCP is not supported")
                && !m.contains("not about the gateway")),
            "{programmed}"
        );

        let http = &status["listeners"][0];
        assert_eq!(http["name"], "http");
        assert_eq!(http["attachedRoutes"], 2);
        assert_eq!(http["supportedKinds"][0]["kind"], "HTTPRoute");
        assert_eq!(
            condition(&http["conditions"], "Programmed")["status"],
            "True"
        );

        let tcp = &status["listeners"][1];
        assert_eq!(tcp["attachedRoutes"], 0);
        assert_eq!(tcp["supportedKinds"], json!([]));
        let accepted = condition(&tcp["conditions"], "Accepted");
        assert_eq!(accepted["status"], "False");
        assert_eq!(accepted["reason"], "UnsupportedProtocol");
        assert_eq!(
            condition(&tcp["conditions"], "Programmed")["status"],
            "False"
        );

        // Unchanged inputs compare equal to what was written, transition times aside.
        assert_eq!(
            comparable(&status),
            comparable(&gateway_status(&gateway(), &config))
        );
    }
}
