//! Index tests: apply/delete/reset, last-good semantics, gateway selection and Service binding.

use wayguard_api::resource::{Kind, ObjectRef, Resource, decode, parse_documents};
use wayguard_core::GatewayId;

use super::*;

fn resources(text: &str) -> Vec<Resource> {
    parse_documents(text)
        .expect("yaml")
        .iter()
        .enumerate()
        .map(|(i, d)| decode(d, i).expect("decode"))
        .collect()
}

fn index(text: &str) -> Index {
    let mut index = Index::new(IndexConfig::default());
    for r in resources(text) {
        index.apply(r);
    }
    index
}

const GATEWAYS: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: foo}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: http, protocol: HTTP, port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: foo}
spec: {gatewayClassName: wayguard, listeners: [{name: http, protocol: HTTP, port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: someone-else, namespace: foo}
spec: {gatewayClassName: eg, listeners: [{name: http, protocol: HTTP, port: 8080}]}
";

fn policy(name: &str, path: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: foo}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: edge}}]
  rules: [{{to: [{{operation: {{paths: [\"{path}\"]}}}}]}}]
"
    )
}

fn paths(index: &Index) -> Vec<String> {
    index
        .gateway_auth(&GatewayId::new("foo", "edge"))
        .policies
        .iter()
        .flat_map(|p| {
            p.rules
                .iter()
                .flat_map(|r| r.to.iter().flat_map(|o| o.paths.clone()))
        })
        .collect()
}

fn ap_ref(name: &str) -> ObjectRef {
    ObjectRef {
        kind: Kind::AuthorizationPolicy,
        namespace: "foo".into(),
        name: name.into(),
    }
}

#[test]
fn only_gateways_of_our_classes_are_programmed() {
    let index = index(GATEWAYS);
    assert_eq!(
        index.gateways(),
        vec![
            GatewayId::new("foo", "edge"),
            GatewayId::new("foo", "waypoint")
        ]
    );
}

#[test]
fn apply_reports_change_only_when_content_changes() {
    let mut index = index(GATEWAYS);
    let p = resources(&policy("a", "/one")).remove(0);
    assert!(index.apply(p.clone()), "new object");
    assert!(!index.apply(p), "same content again");
    assert!(
        index.apply(resources(&policy("a", "/two")).remove(0)),
        "edited"
    );
    assert_eq!(paths(&index), vec!["/two"]);
    assert!(index.delete(&ap_ref("a")));
    assert!(!index.delete(&ap_ref("a")));
    assert!(paths(&index).is_empty());
}

#[test]
fn a_broken_edit_keeps_the_last_good_version() {
    let mut index = index(GATEWAYS);
    index.apply(resources(&policy("a", "/good")).remove(0));
    // An invalid edit (a DENY without rules) is recorded but does not replace the valid one.
    let broken = resources(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: foo}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]
  action: DENY
",
    )
    .remove(0);
    assert!(index.apply(broken));
    assert_eq!(
        paths(&index),
        vec!["/good"],
        "last good version still in effect"
    );
    let entry = index.entry(&ap_ref("a")).expect("entry");
    let (_, report) = entry.rejected.as_ref().expect("rejection recorded");
    assert!(
        report
            .error_message()
            .contains("DENY action without `rules`")
    );
    // Fixing it clears the rejection.
    index.apply(resources(&policy("a", "/fixed")).remove(0));
    assert!(index.entry(&ap_ref("a")).expect("entry").rejected.is_none());
    assert_eq!(paths(&index), vec!["/fixed"]);
    // A brand-new invalid object never takes effect.
    let mut fresh = super::Index::new(IndexConfig::default());
    let mut invalid = resources(&policy("b", "/x")).remove(0);
    if let Resource::AuthorizationPolicy(ap) = &mut invalid {
        ap.spec.action = Some(wayguard_api::istio::Action::Deny);
        ap.spec.rules = None;
    }
    fresh.apply(invalid);
    assert!(fresh.entry(&ap_ref("b")).expect("entry").valid.is_none());
}

#[test]
fn reset_replaces_a_kind() {
    let mut index = index(&format!(
        "{GATEWAYS}---\n{}---\n{}",
        policy("a", "/a"),
        policy("b", "/b")
    ));
    assert_eq!(paths(&index), vec!["/a", "/b"]);
    let changed = index.reset(Kind::AuthorizationPolicy, resources(&policy("c", "/c")));
    assert!(changed);
    assert_eq!(paths(&index), vec!["/c"]);
    assert!(
        !index.reset(Kind::AuthorizationPolicy, resources(&policy("c", "/c"))),
        "same set"
    );
}

#[test]
fn services_bind_to_waypoints_by_label_and_namespace_label() {
    let index = index(&format!(
        "{GATEWAYS}---
apiVersion: v1
kind: Service
metadata: {{name: direct, namespace: foo, labels: {{istio.io/use-waypoint: waypoint}}}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: bar, labels: {{istio.io/use-waypoint: waypoint, istio.io/use-waypoint-namespace: foo}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: inherited, namespace: bar}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: opted-out, namespace: bar, labels: {{istio.io/use-waypoint: none}}}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: elsewhere, namespace: foo, labels: {{istio.io/use-waypoint: edge}}}}
spec: {{ports: [{{port: 80}}]}}
"
    ));
    let info = index
        .gateway_info(&GatewayId::new("foo", "waypoint"))
        .expect("info");
    assert!(info.waypoint);
    assert_eq!(
        info.bound_services,
        vec![
            ("bar".to_string(), "inherited".to_string()),
            ("foo".to_string(), "direct".to_string())
        ]
    );
    let edge = index
        .gateway_info(&GatewayId::new("foo", "edge"))
        .expect("info");
    assert!(!edge.waypoint);
    assert_eq!(
        edge.bound_services,
        vec![("foo".to_string(), "elsewhere".to_string())]
    );
}

#[test]
fn waypoints_ignore_workload_scoped_policies() {
    let index = index(&format!(
        "{GATEWAYS}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ns-wide, namespace: foo}}
spec: {{rules: [{{to: [{{operation: {{paths: [\"/ns-wide\"]}}}}]}}]}}
"
    ));
    assert!(
        index
            .gateway_auth(&GatewayId::new("foo", "waypoint"))
            .policies
            .is_empty()
    );
    assert_eq!(
        index
            .gateway_auth(&GatewayId::new("foo", "edge"))
            .policies
            .len(),
        1
    );
}
