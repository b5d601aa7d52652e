//! Kubernetes-style YAML for the config dir: Gateway, backend Service + EndpointSlice,
//! HTTPRoute, and the seed examples rewritten to point at loopback issuers.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::issuer::JwtIssuer;
use crate::wayguard::workspace_root;

/// Where a listener's client-CA bundle lives (Gateway API frontend TLS validation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaRef {
    /// A ConfigMap with `ca.crt`.
    ConfigMap(String),
    /// A Secret with `ca.crt`.
    Secret(String),
}

/// Where the client-certificate validation is written in the Gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationPlacement {
    /// Gateway API v1.4 (standard): `spec.tls.frontend.default.validation`.
    GatewayDefault,
    /// Gateway API v1.4: `spec.tls.frontend.perPort[{port}].tls.validation`.
    PerPort,
    /// The pre-v1.4 experimental form: `listeners[].tls.frontendValidation`.
    LegacyListener,
}

/// Client-certificate validation for the HTTPS listener (Gateway API frontend TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientValidation {
    /// The CA bundle.
    pub ca: CaRef,
    /// Where it is written.
    pub placement: ValidationPlacement,
    /// `mode: AllowInsecureFallback` (clients without a valid certificate still connect)
    /// instead of the default `AllowValidOnly`.
    pub insecure_fallback: bool,
}

impl ClientValidation {
    /// The standard form (`spec.tls.frontend.default`), `AllowValidOnly`, CA from a ConfigMap.
    pub fn configmap(name: &str) -> Self {
        Self {
            ca: CaRef::ConfigMap(name.into()),
            placement: ValidationPlacement::GatewayDefault,
            insecure_fallback: false,
        }
    }
}

/// An HTTPS listener that terminates TLS with a `kubernetes.io/tls` Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsListener {
    /// Listener port.
    pub port: u16,
    /// Name of the `kubernetes.io/tls` Secret (same namespace).
    pub cert_secret: String,
    /// Client certificate validation, if any.
    pub client_validation: Option<ClientValidation>,
}

fn ca_ref_yaml(ca: &CaRef, indent: &str) -> String {
    let (kind, name) = match ca {
        CaRef::ConfigMap(n) => ("ConfigMap", n),
        CaRef::Secret(n) => ("Secret", n),
    };
    format!(
        "{indent}caCertificateRefs:\n{indent}- kind: {kind}\n{indent}  group: \"\"\n{indent}  name: {name}\n"
    )
}

fn mode_yaml(v: &ClientValidation, indent: &str) -> String {
    let mode = if v.insecure_fallback {
        "AllowInsecureFallback"
    } else {
        "AllowValidOnly"
    };
    format!("{indent}mode: {mode}\n")
}

/// A Gateway of class `wayguard` bound to 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayYaml {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `gatewayClassName`.
    pub class: String,
    /// Port of the HTTP listener.
    pub http_port: u16,
    /// Optional HTTPS listener.
    pub https: Option<HttpsListener>,
}

/// A Namespace.
pub fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

/// The Gateway (listeners `http`, and `https` when configured; `spec.addresses` 127.0.0.1).
pub fn gateway(g: &GatewayYaml) -> String {
    let mut y = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {}\n  \
         namespace: {}\nspec:\n  gatewayClassName: {}\n  addresses:\n  - type: IPAddress\n    \
         value: 127.0.0.1\n",
        g.name, g.namespace, g.class
    );
    let validation = g
        .https
        .as_ref()
        .and_then(|h| Some((h.port, h.client_validation.as_ref()?)));
    match validation {
        Some((_, v)) if v.placement == ValidationPlacement::GatewayDefault => {
            y.push_str("  tls:\n    frontend:\n      default:\n        validation:\n");
            y.push_str(&mode_yaml(v, "          "));
            y.push_str(&ca_ref_yaml(&v.ca, "          "));
        }
        Some((port, v)) if v.placement == ValidationPlacement::PerPort => {
            let _ = write!(
                y,
                "  tls:\n    frontend:\n      default: {{}}\n      perPort:\n      - port: {port}\n        \
                 tls:\n          validation:\n"
            );
            y.push_str(&mode_yaml(v, "            "));
            y.push_str(&ca_ref_yaml(&v.ca, "            "));
        }
        _ => {}
    }
    let _ = write!(
        y,
        "  listeners:\n  - name: http\n    protocol: HTTP\n    port: {}\n",
        g.http_port
    );
    if let Some(https) = &g.https {
        let _ = write!(
            y,
            "  - name: https\n    protocol: HTTPS\n    port: {}\n    tls:\n      mode: Terminate\n      \
             certificateRefs:\n      - kind: Secret\n        group: \"\"\n        name: {}\n",
            https.port, https.cert_secret
        );
        if let Some(v) = &https.client_validation
            && v.placement == ValidationPlacement::LegacyListener
        {
            y.push_str("      frontendValidation:\n");
            y.push_str(&ca_ref_yaml(&v.ca, "        "));
        }
    }
    y
}

/// A Service `name` (port `port`, targetPort `backend_port`) and its EndpointSlice pointing at
/// `127.0.0.1:<backend_port>`.
pub fn backend(namespace: &str, name: &str, port: u16, backend_port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  \
         ports:\n  - name: http\n    port: {port}\n    targetPort: {backend_port}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-local\n  \
         namespace: {namespace}\n  labels:\n    kubernetes.io/service-name: {name}\n\
         addressType: IPv4\nports:\n- name: http\n  port: {backend_port}\n  protocol: TCP\n\
         endpoints:\n- addresses: [\"127.0.0.1\"]\n"
    )
}

/// An HTTPRoute attached to `gateway` sending everything to `service:port`.
pub fn http_route(namespace: &str, name: &str, gateway: &str, service: &str, port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  \
         namespace: {namespace}\nspec:\n  parentRefs:\n  - name: {gateway}\n  rules:\n  - \
         backendRefs:\n    - name: {service}\n      port: {port}\n"
    )
}

/// Joins YAML documents with `---`.
pub fn documents(docs: &[String]) -> String {
    docs.iter()
        .map(|d| d.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n---\n")
        + "\n"
}

/// Path of a seed example, e.g. `01-requestauthentication-single-issuer.yaml`.
pub fn seed_path(file: &str) -> PathBuf {
    workspace_root().join("examples/seed").join(file)
}

/// The seed issuer/JWKS URLs and what replaces them.
const OKTA_ISSUER: &str = "https://example.okta.com/oauth2/default";
const OKTA_JWKS: &str = "https://example.okta.com/oauth2/default/v1/keys";
const INTERNAL_ISSUER: &str = "https://idp.internal/realms/services";
const INTERNAL_JWKS: &str = "https://idp.internal/realms/services/protocol/openid-connect/certs";

/// Loopback issuers standing in for the seed's Okta and internal IdP.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedIssuers<'a> {
    /// Replaces `https://example.okta.com/oauth2/default` (and its JWKS URI).
    pub okta: Option<&'a JwtIssuer>,
    /// Replaces `https://idp.internal/realms/services` (and its JWKS URI).
    pub internal: Option<&'a JwtIssuer>,
}

/// Rewrites the seed's issuer and JWKS URLs to the loopback issuers given.
pub fn rewrite_seed(text: &str, issuers: SeedIssuers<'_>) -> String {
    let mut text = text.to_string();
    if let Some(okta) = issuers.okta {
        text = text
            .replace(OKTA_JWKS, okta.jwks_uri())
            .replace(OKTA_ISSUER, okta.issuer());
    }
    if let Some(internal) = issuers.internal {
        text = text
            .replace(INTERNAL_JWKS, internal.jwks_uri())
            .replace(INTERNAL_ISSUER, internal.issuer());
    }
    text
}

/// A seed example, verbatim except for the issuer rewrite. The seeds target
/// `payments-prod/waypoint`, so scenarios use that gateway and namespace.
pub fn seed(file: &str, issuers: SeedIssuers<'_>) -> Result<String> {
    let path = seed_path(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(rewrite_seed(&text, issuers))
}
