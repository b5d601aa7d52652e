//! Routing model tests: Gateway listeners, HTTPRoute attachment, hostnames, precedence, backends,
//! waypoint-bound Services, TLS certificates and client validation, unsupported listeners.

use wayguard_api::resource::{decode, parse_documents};
use wayguard_core::GatewayId;
use wayguard_core::routing::{GatewayConfig, PathMatch, Protocol, RouteAction, SecretMaterial};

use crate::{Index, IndexConfig};

fn config(text: &str) -> GatewayConfig {
    let mut index = Index::new(IndexConfig::default());
    for (i, doc) in parse_documents(text).expect("yaml").iter().enumerate() {
        index.apply(decode(doc, i).expect("decode"));
    }
    index
        .gateway_config(&GatewayId::new("demo", "gw"))
        .expect("our gateway")
}

const CERT: &str = "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n";

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.replace("\\n", "\n"))
}

const BACKEND: &str = "
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: demo}
spec: {ports: [{name: http, port: 8080, targetPort: 9090}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: orders-1, namespace: demo, labels: {kubernetes.io/service-name: orders}}
addressType: IPv4
ports: [{name: http, port: 9090}]
endpoints:
- addresses: [10.0.0.1]
- addresses: [10.0.0.2]
  conditions: {ready: false}
- addresses: [10.0.0.3]
";

#[test]
fn listeners_routes_and_endpoints() {
    let c = config(&format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  gatewayClassName: wayguard
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - {{name: http, protocol: HTTP, port: 8080}}
  - {{name: tcp, protocol: TCP, port: 9000}}
  - {{name: hbone, protocol: HBONE, port: 15008}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: orders, namespace: demo}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [orders.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
    backendRefs: [{{name: orders, port: 8080}}]
  - matches: [{{path: {{type: Exact, value: /api/health}}, method: GET}}]
    backendRefs: [{{name: orders, port: 8080, weight: 3}}, {{name: missing, port: 80, weight: 1}}]
  - matches: [{{path: {{type: PathPrefix, value: /gone}}}}]
    backendRefs: [{{name: missing, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: other-gateway, namespace: demo}}
spec:
  parentRefs: [{{name: someone-else}}]
  rules: [{{backendRefs: [{{name: orders, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: other-namespace, namespace: elsewhere}}
spec:
  parentRefs: [{{name: gw, namespace: demo}}]
  rules: [{{backendRefs: [{{name: orders, port: 8080}}]}}]
---
{BACKEND}"
    ));
    // TCP and HBONE are reported, not silently dropped.
    assert_eq!(c.listeners.len(), 1);
    let l = &c.listeners[0];
    assert_eq!(
        (l.name.as_str(), l.address.as_str(), l.port, l.protocol),
        ("http-8080", "127.0.0.1", 8080, Protocol::Http)
    );
    let problems: Vec<String> = c
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.object, p.message))
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("listener tcp: protocol TCP is not supported")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("listener hbone: protocol HBONE is not supported")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("backendRef Service demo/missing not found")),
        "{problems:?}"
    );

    // Only the route of this gateway and namespace (allowedRoutes defaults to Same).
    assert_eq!(c.routes.len(), 1);
    let vhosts = &c.routes[0].virtual_hosts;
    assert_eq!(vhosts.len(), 1);
    assert_eq!(vhosts[0].domains, vec!["orders.example.com"]);
    let names: Vec<&str> = vhosts[0].routes.iter().map(|r| r.name.as_str()).collect();
    // Exact before prefixes; the longest prefix first ("/gone" is longer than "/api").
    assert_eq!(
        names,
        vec![
            "demo/orders/rule/1/match/0",
            "demo/orders/rule/2/match/0",
            "demo/orders/rule/0/match/0"
        ]
    );
    let exact = &vhosts[0].routes[0];
    assert_eq!(exact.matcher.path, PathMatch::Exact("/api/health".into()));
    assert_eq!(exact.matcher.method.as_deref(), Some("GET"));
    let RouteAction::Forward(weighted) = &exact.action else {
        panic!("forward")
    };
    assert_eq!(
        weighted
            .iter()
            .map(|w| (w.cluster.as_str(), w.weight))
            .collect::<Vec<_>>(),
        vec![("outbound|8080||orders.demo.svc.cluster.local", 3), ("", 1)]
    );
    assert!(
        matches!(
            vhosts[0].routes[1].action,
            RouteAction::Direct { status: 500, .. }
        ),
        "all backends invalid"
    );

    // Ready endpoints only, at the EndpointSlice port of the Service port's name.
    assert_eq!(c.clusters.len(), 1);
    assert_eq!(
        c.clusters[0].endpoints,
        vec![
            ("10.0.0.1".to_string(), 9090),
            ("10.0.0.3".to_string(), 9090)
        ]
    );
}

#[test]
fn waypoint_bound_services_get_routes() {
    let c = config(&format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec: {{gatewayClassName: istio-waypoint, listeners: [{{name: mesh, protocol: HTTP, port: 15080}}]}}
---
{}",
        BACKEND.replace(
            "metadata: {name: orders, namespace: demo}\nspec",
            "metadata: {name: orders, namespace: demo, labels: {istio.io/use-waypoint: gw}}\nspec"
        )
    ));
    let vhosts = &c.routes[0].virtual_hosts;
    assert_eq!(vhosts.len(), 1);
    assert_eq!(
        vhosts[0].domains,
        vec![
            "orders.demo.svc.cluster.local",
            "orders.demo.svc",
            "orders.demo",
            "orders"
        ]
    );
    assert_eq!(
        c.clusters[0].name,
        "outbound|8080||orders.demo.svc.cluster.local"
    );
}

fn https_gateway(validation: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  gatewayClassName: wayguard
  listeners:
  - name: https
    protocol: HTTPS
    port: 8443
    hostname: api.example.com
    tls: {{certificateRefs: [{{name: server-cert}}]}}
{validation}
---
apiVersion: v1
kind: Secret
metadata: {{name: server-cert, namespace: demo}}
type: kubernetes.io/tls
data: {{tls.crt: {}, tls.key: {}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: client-ca, namespace: demo}}
data: {{ca.crt: \"{CERT}\"}}
",
        b64(CERT),
        b64(KEY)
    )
}

#[test]
fn https_with_client_validation() {
    let c = config(&https_gateway(
        "  tls:\n    frontend:\n      default:\n        validation:\n          caCertificateRefs: [{group: \"\", kind: ConfigMap, name: client-ca}]",
    ));
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let l = &c.listeners[0];
    assert_eq!(
        (l.name.as_str(), l.protocol),
        ("https-8443", Protocol::Https)
    );
    let chain = &l.chains[0];
    assert_eq!(chain.server_names, vec!["api.example.com"]);
    let tls = chain.tls.as_ref().expect("tls");
    assert_eq!(tls.certificates, vec!["demo/server-cert"]);
    assert_eq!(tls.client_ca.as_deref(), Some("demo/client-ca/ca.crt"));
    assert!(tls.require_client_certificate);
    assert_eq!(c.secrets.len(), 2);
    assert!(
        matches!(
            &c.secrets[0].material,
            SecretMaterial::ValidationContext { .. }
        ) || matches!(
            &c.secrets[1].material,
            SecretMaterial::ValidationContext { .. }
        )
    );
    // The private key is never printed.
    assert!(!format!("{:?}", c.secrets).contains("MIIE"));

    let insecure = config(&https_gateway(
        "  tls:\n    frontend:\n      default:\n        validation:\n          mode: AllowInsecureFallback\n          caCertificateRefs: [{group: \"\", kind: ConfigMap, name: client-ca}]",
    ));
    assert!(
        !insecure.listeners[0].chains[0]
            .tls
            .as_ref()
            .expect("tls")
            .require_client_certificate
    );

    let plain = config(&https_gateway(""));
    assert_eq!(
        plain.listeners[0].chains[0]
            .tls
            .as_ref()
            .expect("tls")
            .client_ca,
        None
    );
}

#[test]
fn missing_ca_fails_closed_and_missing_certificate_is_reported() {
    let c = config(&https_gateway(
        "  tls:\n    frontend:\n      default:\n        validation:\n          caCertificateRefs: [{group: \"\", kind: ConfigMap, name: nope}]",
    ));
    assert!(
        c.listeners.is_empty(),
        "a listener that asked for mTLS is not served without it"
    );
    assert!(
        c.problems
            .iter()
            .any(|p| p.message.contains("failing closed")),
        "{:?}",
        c.problems
    );

    let c = config(&https_gateway("").replace("name: server-cert}", "name: other-cert}"));
    assert!(c.listeners.is_empty());
    assert!(
        c.problems
            .iter()
            .any(|p| p.message.contains("Secret demo/other-cert not found")),
        "{:?}",
        c.problems
    );
}

#[test]
fn custom_providers_come_from_mesh_config() {
    let c = config(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: demo}
spec: {gatewayClassName: wayguard, listeners: [{name: http, protocol: HTTP, port: 8080}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig: {discoveryAddress: istiod:15012}
    extensionProviders:
    - name: authz-grpc
      envoyExtAuthzGrpc: {service: ext-authz.demo.svc.cluster.local, port: \"9000\", timeout: 250ms, failOpen: true}
    - name: authz-missing
      envoyExtAuthzHttp: {service: nowhere.demo.svc.cluster.local, port: 80}
    - name: unused
      envoyExtAuthzGrpc: {service: other.demo.svc.cluster.local, port: 1}
---
apiVersion: v1
kind: Service
metadata: {name: ext-authz, namespace: demo}
spec: {ports: [{name: grpc, port: 9000}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: demo}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  action: CUSTOM
  provider: {name: authz-grpc}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: b, namespace: demo}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  action: CUSTOM
  provider: {name: authz-missing}
  rules: [{}]
",
    );
    let p = c.providers.get("authz-grpc").expect("resolved provider");
    assert_eq!(p.cluster, "outbound|9000||ext-authz.demo.svc.cluster.local");
    assert!(p.grpc && p.fail_open);
    assert_eq!(p.timeout_ms, 250);
    assert!(
        !c.providers.contains_key("authz-missing"),
        "unresolvable providers are left out (their policies deny)"
    );
    assert!(!c.providers.contains_key("unused"));
    assert!(
        c.clusters.iter().any(|cl| cl.name == p.cluster),
        "the provider's cluster is programmed"
    );
    assert!(
        c.problems
            .iter()
            .any(|pr| pr.message.contains("authz-missing")
                && pr.message.contains("Service demo/nowhere not found")),
        "{:?}",
        c.problems
    );
}
