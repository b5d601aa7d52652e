//! Manifests for the test cluster, adapted to loopback.
//!
//! - The Gateway is the tier-2 one ([`crate::yaml::gateway`]): class `wayguard`,
//!   `spec.addresses: [{type: IPAddress, value: 127.0.0.1}]`, listeners on free ports.
//! - The backend is a Service plus an EndpointSlice with `addressType: FQDN` and the address
//!   `<name>.localhost`: the apiserver rejects loopback IPs in EndpointSlices, Envoy's c-ares
//!   resolves `*.localhost` to 127.0.0.1 (wayguard makes FQDN slices STRICT_DNS clusters).
//! - Seed examples come from [`crate::yaml::seed`] with their issuer URLs rewritten to the
//!   harness's loopback issuers.

use anyhow::{Context, Result};
use serde_json::json;

use crate::pki::{CertKey, ca_configmap_yaml, tls_secret_yaml};
use crate::yaml::{self, ClientValidation, GatewayYaml, HttpsListener};

/// The Gateway API CRDs (standard channel kinds wayguard reads) as one JSON `List`, for
/// `kubectl apply --server-side` (too large for client-side apply's annotation).
pub fn gateway_api_crds() -> Result<String> {
    let crds = wayguard_api::crd::gateway_api();
    let items: Vec<serde_json::Value> = crds
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .context("serializing the Gateway API CRDs")?;
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string())
}

/// Names of the Gateway API CRDs of [`gateway_api_crds`].
pub fn gateway_api_crd_names() -> Vec<String> {
    wayguard_api::crd::gateway_api()
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect()
}

/// A cluster-scoped GatewayClass `wayguard`.
pub fn gateway_class() -> String {
    "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: wayguard\n\
     spec:\n  controllerName: wayguard.io/gateway-controller\n"
        .to_string()
}

/// A Service `name` (port `port`, targetPort `backend_port`) and its EndpointSlice
/// `<name>-local` with `addressType: FQDN` and the address `<name>.localhost:<backend_port>`.
pub fn fqdn_backend(namespace: &str, name: &str, port: u16, backend_port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  ports:
  - name: http
    port: {port}
    targetPort: {backend_port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-local
  namespace: {namespace}
  labels:
    kubernetes.io/service-name: {name}
addressType: FQDN
ports:
- name: http
  port: {backend_port}
  protocol: TCP
endpoints:
- addresses: ["{name}.localhost"]
  conditions:
    ready: true
"#
    )
}

/// The HTTPS side of [`GatewayStack`]: the listener's server certificate and, optionally,
/// client-certificate validation against `ca_pem` (ConfigMap `client-ca`).
#[derive(Debug, Clone)]
pub struct HttpsStack {
    /// Listener port.
    pub port: u16,
    /// Server certificate (Secret `gateway-cert`).
    pub server: CertKey,
    /// CA bundle for client certificates (ConfigMap `client-ca`), when validating them.
    pub client_ca_pem: Option<String>,
}

/// Everything a gateway needs: Namespace, GatewayClass, Gateway, backend Service + FQDN
/// EndpointSlice, HTTPRoute, and the TLS Secret + CA ConfigMap when HTTPS is configured.
#[derive(Debug, Clone)]
pub struct GatewayStack {
    /// Namespace (the seeds use `payments-prod`).
    pub namespace: String,
    /// Gateway name (the seeds use `waypoint`).
    pub gateway: String,
    /// HTTP listener port.
    pub http_port: u16,
    /// The echo backend's port.
    pub backend_port: u16,
    /// Optional HTTPS listener.
    pub https: Option<HttpsStack>,
}

impl GatewayStack {
    /// `namespace/gateway`.
    pub fn gateway_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.gateway)
    }

    /// The Gateway alone.
    pub fn gateway_yaml(&self) -> String {
        yaml::gateway(&GatewayYaml {
            namespace: self.namespace.clone(),
            name: self.gateway.clone(),
            class: "wayguard".into(),
            http_port: self.http_port,
            https: self.https.as_ref().map(|h| HttpsListener {
                port: h.port,
                cert_secret: "gateway-cert".into(),
                client_validation: h
                    .client_ca_pem
                    .as_ref()
                    .map(|_| ClientValidation::configmap("client-ca")),
            }),
        })
    }

    /// All documents, joined with `---`.
    pub fn yaml(&self) -> String {
        let ns = &self.namespace;
        let mut docs = vec![
            yaml::namespace(ns),
            gateway_class(),
            self.gateway_yaml(),
            fqdn_backend(ns, "payments", 8080, self.backend_port),
            yaml::http_route(ns, "payments", &self.gateway, "payments", 8080),
        ];
        if let Some(https) = &self.https {
            docs.push(tls_secret_yaml(ns, "gateway-cert", &https.server));
            if let Some(ca) = &https.client_ca_pem {
                docs.push(ca_configmap_yaml(ns, "client-ca", ca));
            }
        }
        yaml::documents(&docs)
    }
}

/// A RequestAuthentication with both `jwks` and `jwksUri` in one rule: the CRD's CEL rule
/// "only one of jwks or jwksUri can be set" rejects it.
pub fn ra_jwks_and_jwks_uri(namespace: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: both-jwks
  namespace: {namespace}
spec:
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: https://issuer.example/keys
    jwks: '{{"keys": []}}'
"#
    )
}

const GATEWAY_TARGET: &str = "  targetRefs:
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: waypoint
";

/// A RequestAuthentication with `targetRefs` and `selector`: the CRD's CEL rule "only one of
/// targetRefs or selector can be set" rejects it.
pub fn ra_target_refs_and_selector(namespace: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: both-targets
  namespace: {namespace}
spec:
  selector:
    matchLabels:
      app: payments
{GATEWAY_TARGET}  jwtRules:
  - issuer: https://issuer.example
"#
    )
}

/// An AuthorizationPolicy with `targetRefs` and `selector` (CEL: "only one of targetRefs or
/// selector can be set").
pub fn ap_target_refs_and_selector(namespace: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: both-targets
  namespace: {namespace}
spec:
  selector:
    matchLabels:
      app: payments
{GATEWAY_TARGET}  action: ALLOW
  rules:
  - {{}}
"#
    )
}

/// An AuthorizationPolicy `action: DENY` without rules on `gateway`: no CEL rule catches it,
/// wayguard's validation rejects it (istiod's message).
pub fn ap_deny_without_rules(namespace: &str, gateway: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-nothing
  namespace: {namespace}
spec:
  targetRefs:
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: {gateway}
  action: DENY
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_fqdn_on_localhost() {
        let y = fqdn_backend("ns", "payments", 8080, 18080);
        assert!(y.contains("addressType: FQDN"), "{y}");
        assert!(y.contains("[\"payments.localhost\"]"), "{y}");
        assert!(y.contains("kubernetes.io/service-name: payments"), "{y}");
        assert!(!y.contains("127.0.0.1"), "{y}");
    }

    #[test]
    fn gateway_api_crds_are_a_list() {
        let list: serde_json::Value =
            serde_json::from_str(&gateway_api_crds().expect("crds")).expect("json");
        assert_eq!(list["kind"], "List");
        let names = gateway_api_crd_names();
        assert!(
            names.contains(&"gateways.gateway.networking.k8s.io".to_string()),
            "{names:?}"
        );
        assert_eq!(list["items"].as_array().map(Vec::len), Some(names.len()));
    }
}
