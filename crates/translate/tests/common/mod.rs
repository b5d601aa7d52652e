//! Shared harness of the translation tests: fixtures are loaded into an index with a Gateway
//! `foo/waypoint` (class `wayguard`) and translated for that gateway.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use wayguard_api::resource::{decode, parse_documents};
use wayguard_core::GatewayId;
use wayguard_core::authn::{JwksConfig, JwksSource, JwtRule};
use wayguard_core::authz::ExtAuthzProvider;
use wayguard_index::{Index, IndexConfig};
use wayguard_translate::{AuthContext, filters_to_json, http_auth_filters};

const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: foo, labels: {app: httpbin, version: v1}}
spec:
  gatewayClassName: wayguard
  listeners: [{name: http, protocol: HTTP, port: 8080}]
";

pub fn providers() -> BTreeMap<String, ExtAuthzProvider> {
    let grpc = ExtAuthzProvider {
        name: "ext-authz-grpc".into(),
        cluster: "outbound|9000||my-custom-ext-authz.foo.svc.cluster.local".into(),
        authority: "my-custom-ext-authz.foo.svc.cluster.local".into(),
        grpc: true,
        timeout_ms: 300,
        fail_open: true,
        status_on_error: Some(403),
        path_prefix: String::new(),
        include_request_headers_in_check: vec![],
        headers_to_upstream_on_allow: vec![],
        headers_to_downstream_on_deny: vec![],
    };
    let http = ExtAuthzProvider {
        name: "ext-authz-http".into(),
        cluster: "outbound|9000||my-custom-ext-authz.foo.svc.cluster.local".into(),
        authority: "my-custom-ext-authz.foo.svc.cluster.local".into(),
        grpc: false,
        timeout_ms: 10_000,
        fail_open: false,
        status_on_error: None,
        path_prefix: "/check".into(),
        include_request_headers_in_check: vec!["x-custom-id".into(), "x-prefix-*".into()],
        headers_to_upstream_on_allow: vec!["x-user-id".into()],
        headers_to_downstream_on_deny: vec!["x-reason".into()],
    };
    [grpc, http]
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect()
}

/// Inline JWKS pass through; URIs and discovery become a recognisable placeholder (the resolver
/// is not part of translation).
pub fn jwks(rule: &JwtRule) -> JwksConfig {
    JwksConfig::Inline(Arc::from(match &rule.jwks {
        JwksSource::Inline(s) => s.clone(),
        JwksSource::Uri(uri) => format!("{{\"keys\":[],\"fetched_from\":\"{uri}\"}}"),
        JwksSource::Discovery => format!("{{\"keys\":[],\"discovered_for\":\"{}\"}}", rule.issuer),
    }))
}

pub fn load(text: &str) -> Index {
    let mut index = Index::new(IndexConfig::default());
    for (i, doc) in parse_documents(&format!("{GATEWAY}---\n{text}"))
        .expect("fixture is YAML")
        .iter()
        .enumerate()
    {
        let resource = decode(doc, i).unwrap_or_else(|e| panic!("{e}"));
        index.apply(resource);
    }
    for (key, entry) in index.entries() {
        if let Some((_, report)) = &entry.rejected {
            panic!("fixture object {key} is invalid: {:?}", report.errors);
        }
    }
    index
}

pub fn translate(index: &Index) -> serde_json::Value {
    let providers = providers();
    let ctx = AuthContext {
        jwks: &jwks,
        providers: &providers,
        clear_route_cache: true,
    };
    let auth = index.gateway_auth(&GatewayId::new("foo", "waypoint"));
    let out = http_auth_filters(&auth, &ctx);
    serde_json::json!({
        "httpFilters": filters_to_json(&out.filters()).expect("renders"),
        "diagnostics": out.diagnostics.iter().map(|d| format!("{}/{}: {}", d.namespace, d.name, d.message)).collect::<Vec<_>>(),
    })
}

/// The fixtures of a test directory, `(file stem, contents)`, sorted by name.
pub fn fixtures(dir: &str) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_stem().expect("name").to_string_lossy().to_string();
            (name, std::fs::read_to_string(&p).expect("read"))
        })
        .collect()
}
