//! The part of Istio's mesh config wayguard reads: `extensionProviders` for CUSTOM
//! AuthorizationPolicies and `trustDomain` / `trustDomainAliases` for principals, from the ConfigMap `istio` (key `mesh`) in the root namespace, exactly
//! where istiod reads it. Unknown mesh config fields are ignored (the rest belongs to istiod).

use serde::Deserialize;

/// The ConfigMap name istiod reads mesh config from.
pub const MESH_CONFIGMAP: &str = "istio";
/// The ConfigMap key holding mesh config YAML.
pub const MESH_KEY: &str = "mesh";

/// Mesh config, the parts wayguard reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    /// Extension providers.
    #[serde(default)]
    pub extension_providers: Vec<ExtensionProvider>,
    /// The mesh's trust domain (istiod's default: `cluster.local`).
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// Trust domains treated as the same as `trust_domain`.
    #[serde(default)]
    pub trust_domain_aliases: Vec<String>,
}

/// One extension provider.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProvider {
    /// Name referenced by `AuthorizationPolicy.spec.provider.name`.
    pub name: String,
    /// A gRPC ext_authz service.
    #[serde(default)]
    pub envoy_ext_authz_grpc: Option<ExtAuthzProvider>,
    /// An HTTP ext_authz service.
    #[serde(default)]
    pub envoy_ext_authz_http: Option<ExtAuthzProvider>,
}

/// A port written as a number or a string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Port {
    /// `9000`.
    Number(u32),
    /// `"9000"`.
    Text(String),
}

/// ext_authz provider settings (gRPC and HTTP share most fields).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthzProvider {
    /// `[<namespace>/]<hostname>` of the Service, e.g. `ext-authz.foo.svc.cluster.local`.
    pub service: String,
    /// Port.
    pub port: Option<Port>,
    /// Timeout (Go duration, default 600s as istiod).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Allow requests when the authorizer fails.
    #[serde(default)]
    pub fail_open: bool,
    /// Status code when the authorizer fails (default 403).
    #[serde(default)]
    pub status_on_error: Option<String>,
    /// HTTP: path prefix of the check request.
    #[serde(default)]
    pub path_prefix: String,
    /// HTTP: request headers sent to the authorizer.
    #[serde(default)]
    pub include_request_headers_in_check: Vec<String>,
    /// HTTP: authorizer headers forwarded upstream on allow.
    #[serde(default)]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// HTTP: authorizer headers returned downstream on deny.
    #[serde(default)]
    pub headers_to_downstream_on_deny: Vec<String>,
}

/// Parses the `mesh` key.
pub fn parse(yaml: &str) -> Result<MeshConfig, String> {
    if yaml.trim().is_empty() {
        return Ok(MeshConfig::default());
    }
    let value: serde_json::Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(value).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

impl Port {
    /// The port number.
    pub fn number(&self) -> Option<u16> {
        match self {
            Port::Number(n) => u16::try_from(*n).ok(),
            Port::Text(s) => s.parse().ok(),
        }
    }
}
