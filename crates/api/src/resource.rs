//! Every kind wayguard reads, decoded from Kubernetes-style documents (YAML or JSON).
//!
//! The same decoding serves `wayguard validate`, the file source and tests; the Kubernetes
//! source receives typed objects from kube-rs and wraps them in [`Resource`] directly.

use std::fmt;

use gateway_api::apis::standard::{
    gatewayclasses::GatewayClass, gateways::Gateway, httproutes::HttpRoute as HttpRouteObj,
    referencegrants::ReferenceGrant,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Resource as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::istio::{AuthorizationPolicy, RequestAuthentication};
use crate::solo::{AgentgatewayBackend, AuthConfig, EnterpriseAgentgatewayPolicy};

/// The kinds wayguard reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `security.istio.io` RequestAuthentication.
    RequestAuthentication,
    /// `security.istio.io` AuthorizationPolicy.
    AuthorizationPolicy,
    /// `extauth.solo.io` AuthConfig.
    AuthConfig,
    /// `enterpriseagentgateway.solo.io` EnterpriseAgentgatewayPolicy.
    EnterpriseAgentgatewayPolicy,
    /// `agentgateway.dev` AgentgatewayBackend.
    AgentgatewayBackend,
    /// Gateway API GatewayClass.
    GatewayClass,
    /// Gateway API Gateway.
    Gateway,
    /// Gateway API HTTPRoute.
    HttpRoute,
    /// Gateway API ReferenceGrant.
    ReferenceGrant,
    /// Core Service.
    Service,
    /// `discovery.k8s.io` EndpointSlice.
    EndpointSlice,
    /// Core Secret.
    Secret,
    /// Core ConfigMap (CA bundles for client certificate validation).
    ConfigMap,
    /// Core Namespace.
    Namespace,
}

impl Kind {
    /// Every kind, in dependency-friendly order (namespaces and classes first, policies last).
    pub const ALL: [Kind; 14] = [
        Kind::Namespace,
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::HttpRoute,
        Kind::ReferenceGrant,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::AgentgatewayBackend,
        Kind::AuthConfig,
        Kind::EnterpriseAgentgatewayPolicy,
        Kind::RequestAuthentication,
        Kind::AuthorizationPolicy,
    ];

    /// The `kind` field value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::AuthConfig => "AuthConfig",
            Kind::EnterpriseAgentgatewayPolicy => "EnterpriseAgentgatewayPolicy",
            Kind::AgentgatewayBackend => "AgentgatewayBackend",
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::HttpRoute => "HTTPRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::Namespace => "Namespace",
        }
    }

    /// The API group (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            Kind::RequestAuthentication | Kind::AuthorizationPolicy => "security.istio.io",
            Kind::AuthConfig => "extauth.solo.io",
            Kind::EnterpriseAgentgatewayPolicy => "enterpriseagentgateway.solo.io",
            Kind::AgentgatewayBackend => "agentgateway.dev",
            Kind::GatewayClass | Kind::Gateway | Kind::HttpRoute | Kind::ReferenceGrant => {
                "gateway.networking.k8s.io"
            }
            Kind::Service | Kind::Secret | Kind::ConfigMap | Kind::Namespace => "",
            Kind::EndpointSlice => "discovery.k8s.io",
        }
    }

    /// The versions accepted in `apiVersion`.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            Kind::RequestAuthentication | Kind::AuthorizationPolicy => &["v1", "v1beta1"],
            Kind::AuthConfig => &["v1"],
            Kind::EnterpriseAgentgatewayPolicy | Kind::AgentgatewayBackend => &["v1alpha1"],
            Kind::GatewayClass | Kind::Gateway | Kind::HttpRoute => &["v1", "v1beta1"],
            Kind::ReferenceGrant => &["v1beta1", "v1"],
            Kind::Service
            | Kind::Secret
            | Kind::ConfigMap
            | Kind::Namespace
            | Kind::EndpointSlice => &["v1"],
        }
    }

    /// The resource name in API paths (`requestauthentications`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::RequestAuthentication => "requestauthentications",
            Kind::AuthorizationPolicy => "authorizationpolicies",
            Kind::AuthConfig => "authconfigs",
            Kind::EnterpriseAgentgatewayPolicy => "enterpriseagentgatewaypolicies",
            Kind::AgentgatewayBackend => "agentgatewaybackends",
            Kind::GatewayClass => "gatewayclasses",
            Kind::Gateway => "gateways",
            Kind::HttpRoute => "httproutes",
            Kind::ReferenceGrant => "referencegrants",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
            Kind::Namespace => "namespaces",
        }
    }

    /// Whether wayguard writes this kind's status (the kinds it serves).
    pub fn has_wayguard_status(self) -> bool {
        matches!(
            self,
            Kind::RequestAuthentication
                | Kind::AuthorizationPolicy
                | Kind::AuthConfig
                | Kind::EnterpriseAgentgatewayPolicy
                | Kind::AgentgatewayBackend
        )
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::GatewayClass)
    }

    /// Looks a kind up by `apiVersion` and `kind`.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == kind && k.group() == group && k.versions().contains(&version))
    }

    /// Whether a kind name (any version) is one wayguard knows, to tell "wrong version" from "unknown kind".
    fn known_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Identity of an object: kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// Kind.
    pub kind: Kind,
    /// Namespace; empty for cluster-scoped kinds.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A decoded object of a kind wayguard reads.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Resource {
    /// RequestAuthentication.
    RequestAuthentication(RequestAuthentication),
    /// AuthorizationPolicy.
    AuthorizationPolicy(AuthorizationPolicy),
    /// AuthConfig.
    AuthConfig(AuthConfig),
    /// EnterpriseAgentgatewayPolicy.
    EnterpriseAgentgatewayPolicy(EnterpriseAgentgatewayPolicy),
    /// AgentgatewayBackend.
    AgentgatewayBackend(AgentgatewayBackend),
    /// GatewayClass.
    GatewayClass(GatewayClass),
    /// Gateway.
    Gateway(Gateway),
    /// HTTPRoute.
    HttpRoute(HttpRouteObj),
    /// ReferenceGrant.
    ReferenceGrant(ReferenceGrant),
    /// Service.
    Service(Service),
    /// EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// Secret.
    Secret(Secret),
    /// ConfigMap.
    ConfigMap(ConfigMap),
    /// Namespace.
    Namespace(Namespace),
}

macro_rules! each_resource {
    ($value:expr, $r:ident => $body:expr) => {
        match $value {
            Resource::RequestAuthentication($r) => $body,
            Resource::AuthorizationPolicy($r) => $body,
            Resource::AuthConfig($r) => $body,
            Resource::EnterpriseAgentgatewayPolicy($r) => $body,
            Resource::AgentgatewayBackend($r) => $body,
            Resource::GatewayClass($r) => $body,
            Resource::Gateway($r) => $body,
            Resource::HttpRoute($r) => $body,
            Resource::ReferenceGrant($r) => $body,
            Resource::Service($r) => $body,
            Resource::EndpointSlice($r) => $body,
            Resource::Secret($r) => $body,
            Resource::ConfigMap($r) => $body,
            Resource::Namespace($r) => $body,
        }
    };
}

impl Resource {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::RequestAuthentication(_) => Kind::RequestAuthentication,
            Resource::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Resource::AuthConfig(_) => Kind::AuthConfig,
            Resource::EnterpriseAgentgatewayPolicy(_) => Kind::EnterpriseAgentgatewayPolicy,
            Resource::AgentgatewayBackend(_) => Kind::AgentgatewayBackend,
            Resource::GatewayClass(_) => Kind::GatewayClass,
            Resource::Gateway(_) => Kind::Gateway,
            Resource::HttpRoute(_) => Kind::HttpRoute,
            Resource::ReferenceGrant(_) => Kind::ReferenceGrant,
            Resource::Service(_) => Kind::Service,
            Resource::EndpointSlice(_) => Kind::EndpointSlice,
            Resource::Secret(_) => Kind::Secret,
            Resource::ConfigMap(_) => Kind::ConfigMap,
            Resource::Namespace(_) => Kind::Namespace,
        }
    }

    /// The object's metadata.
    pub fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        each_resource!(self, r => r.meta())
    }

    /// The object's identity.
    pub fn object_ref(&self) -> ObjectRef {
        let kind = self.kind();
        ObjectRef {
            kind,
            namespace: if kind.namespaced() {
                self.meta().namespace.clone().unwrap_or_default()
            } else {
                String::new()
            },
            name: self.meta().name.clone().unwrap_or_default(),
        }
    }

    /// Serializes back to a JSON object (with `apiVersion` and `kind`).
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        let mut value = each_resource!(self, r => serde_json::to_value(r))?;
        // k8s-openapi types carry apiVersion/kind implicitly; make them explicit for every kind.
        if let Value::Object(map) = &mut value {
            let kind = self.kind();
            let api_version = match kind.group() {
                "" => kind.versions()[0].to_string(),
                group => format!("{group}/{}", kind.versions()[0]),
            };
            map.insert("apiVersion".into(), Value::String(api_version));
            map.insert("kind".into(), Value::String(kind.name().into()));
        }
        Ok(value)
    }
}

/// Why a document could not be decoded into a [`Resource`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct DecodeError {
    /// What the document claims to be, e.g. `RequestAuthentication payments/jwt`, or `document 2`.
    pub object: String,
    /// The field path, e.g. `spec.jwtRules[0].jwksUri`; empty for whole-document errors.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Malformed YAML: the file could not be parsed at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// The parser's message, including line and column.
    pub message: String,
}

/// Splits a multi-document YAML (or JSON) text into documents. Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| YamlError {
        message: e.to_string(),
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Decodes one document. `index` (0-based) names the document in errors when it has no name.
/// A namespaced object without `metadata.namespace` gets `default`, as `kubectl apply` does.
pub fn decode(doc: &Value, index: usize) -> Result<Resource, DecodeError> {
    let str_field = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).map(str::to_string);
    let api_version = str_field(doc, "apiVersion").unwrap_or_default();
    let kind_name = str_field(doc, "kind").unwrap_or_default();
    let meta = doc.get("metadata");
    let name = meta.and_then(|m| str_field(m, "name")).unwrap_or_default();
    let namespace = meta.and_then(|m| str_field(m, "namespace"));
    let object = |kind: &str| {
        let namespaced = Kind::known_name(kind).is_none_or(Kind::namespaced);
        match (&namespace, name.is_empty()) {
            (_, true) => format!("{kind} (document {})", index + 1),
            (Some(ns), false) => format!("{kind} {ns}/{name}"),
            (None, false) if namespaced => format!("{kind} default/{name}"),
            (None, false) => format!("{kind} {name}"),
        }
    };
    let error = |object: String, path: &str, message: String| DecodeError {
        object,
        path: path.to_string(),
        message,
    };
    if !doc.is_object() {
        return Err(error(
            format!("document {}", index + 1),
            "",
            "a Kubernetes object must be a mapping with apiVersion, kind and metadata".into(),
        ));
    }
    if api_version.is_empty() || kind_name.is_empty() {
        return Err(error(
            object(if kind_name.is_empty() {
                "object"
            } else {
                &kind_name
            }),
            if api_version.is_empty() {
                "apiVersion"
            } else {
                "kind"
            },
            "required field is missing".into(),
        ));
    }
    let Some(kind) = Kind::from_type(&api_version, &kind_name) else {
        let message = match Kind::known_name(&kind_name) {
            Some(k) => format!(
                "apiVersion {api_version} is not served for {k}; use {}",
                k.versions()
                    .iter()
                    .map(|v| if k.group().is_empty() {
                        v.to_string()
                    } else {
                        format!("{}/{v}", k.group())
                    })
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            None => format!(
                "unknown kind {api_version}/{kind_name}; wayguard reads {}",
                Kind::ALL.map(Kind::name).join(", ")
            ),
        };
        return Err(error(object(&kind_name), "", message));
    };
    let ns_display = if kind.namespaced() {
        Some(namespace.clone().unwrap_or_else(|| "default".into()))
    } else {
        None
    };
    let object = match (&ns_display, name.is_empty()) {
        (_, true) => format!("{kind} (document {})", index + 1),
        (Some(ns), false) => format!("{kind} {ns}/{name}"),
        (None, false) => format!("{kind} {name}"),
    };
    if name.is_empty() {
        return Err(error(
            object,
            "metadata.name",
            "required field is missing".into(),
        ));
    }
    if !kind.namespaced() && namespace.is_some() {
        return Err(error(
            object,
            "metadata.namespace",
            format!("{kind} is cluster-scoped; remove metadata.namespace"),
        ));
    }
    let mut doc = doc.clone();
    if let (Some(ns), Some(Value::Object(meta))) = (&ns_display, doc.get_mut("metadata")) {
        meta.entry("namespace")
            .or_insert_with(|| Value::String(ns.clone()));
    }
    fn typed<T: DeserializeOwned>(doc: Value) -> Result<T, (String, String)> {
        serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            (path, e.into_inner().to_string())
        })
    }
    if kind == Kind::Gateway {
        normalize_legacy_frontend_validation(&mut doc);
    }
    let result = match kind {
        Kind::RequestAuthentication => typed(doc).map(Resource::RequestAuthentication),
        Kind::AuthorizationPolicy => typed(doc).map(Resource::AuthorizationPolicy),
        Kind::AuthConfig => typed(doc).map(Resource::AuthConfig),
        Kind::EnterpriseAgentgatewayPolicy => {
            typed(doc).map(Resource::EnterpriseAgentgatewayPolicy)
        }
        Kind::AgentgatewayBackend => typed(doc).map(Resource::AgentgatewayBackend),
        Kind::GatewayClass => typed(doc).map(Resource::GatewayClass),
        Kind::Gateway => typed(doc).map(Resource::Gateway),
        Kind::HttpRoute => typed(doc).map(Resource::HttpRoute),
        Kind::ReferenceGrant => typed(doc).map(Resource::ReferenceGrant),
        Kind::Service => typed(doc).map(Resource::Service),
        Kind::EndpointSlice => typed(doc).map(Resource::EndpointSlice),
        Kind::Secret => typed(doc).map(Resource::Secret),
        Kind::ConfigMap => typed(doc).map(Resource::ConfigMap),
        Kind::Namespace => typed(doc).map(Resource::Namespace),
    };
    result.map_err(|(path, message)| error(object, &path, message))
}

/// Gateway API experimental releases up to v1.3 put client certificate validation on each
/// listener (`spec.listeners[].tls.frontendValidation.caCertificateRefs`); v1.4 moved it to
/// `spec.tls.frontend.{default,perPort}`. The typed v1.4 struct would silently drop the old
/// field, serving the listener without client validation (failing open for `principals`), so
/// it is rewritten here into the equivalent `perPort` entry (an explicit `perPort` entry for the
/// same port wins).
fn normalize_legacy_frontend_validation(doc: &mut Value) {
    let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let mut legacy: Vec<(Value, Value)> = Vec::new();
    for listener in spec
        .get_mut("listeners")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let port = listener.get("port").cloned();
        let Some(tls) = listener.get_mut("tls").and_then(Value::as_object_mut) else {
            continue;
        };
        let (Some(validation), Some(port)) = (tls.remove("frontendValidation"), port) else {
            continue;
        };
        legacy.push((port, validation));
    }
    if legacy.is_empty() {
        return;
    }
    let tls = spec
        .entry("tls")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(tls) = tls.as_object_mut() else {
        return;
    };
    let frontend = tls
        .entry("frontend")
        .or_insert_with(|| serde_json::json!({"default": {}}));
    let Some(frontend) = frontend.as_object_mut() else {
        return;
    };
    frontend
        .entry("default")
        .or_insert_with(|| serde_json::json!({}));
    let per_port = frontend
        .entry("perPort")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(per_port) = per_port.as_array_mut() else {
        return;
    };
    for (port, validation) in legacy {
        if per_port.iter().any(|p| p.get("port") == Some(&port)) {
            continue;
        }
        let mut validation = validation;
        if let Some(refs) = validation
            .get_mut("caCertificateRefs")
            .and_then(Value::as_array_mut)
        {
            for r in refs.iter_mut() {
                if let Some(r) = r.as_object_mut() {
                    r.entry("group")
                        .or_insert_with(|| Value::String(String::new()));
                }
            }
        }
        per_port.push(serde_json::json!({"port": port, "tls": {"validation": validation}}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_listener_frontend_validation_becomes_per_port() {
        let r = decode_str(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: demo}
spec:
  gatewayClassName: wayguard
  listeners:
  - name: https
    protocol: HTTPS
    port: 8443
    tls:
      certificateRefs: [{name: cert}]
      frontendValidation:
        caCertificateRefs: [{kind: ConfigMap, name: client-ca}]
",
        )
        .expect("decodes");
        let Resource::Gateway(gw) = r else {
            panic!("gateway")
        };
        let per_port = gw
            .spec
            .tls
            .and_then(|t| t.frontend)
            .and_then(|f| f.per_port)
            .expect("perPort");
        assert_eq!(per_port.len(), 1);
        assert_eq!(per_port[0].port, 8443);
        let refs = &per_port[0]
            .tls
            .validation
            .as_ref()
            .expect("validation")
            .ca_certificate_refs;
        assert_eq!(
            (
                refs[0].kind.as_str(),
                refs[0].name.as_str(),
                refs[0].group.as_str()
            ),
            ("ConfigMap", "client-ca", "")
        );
    }

    fn decode_str(text: &str) -> Result<Resource, DecodeError> {
        let docs = parse_documents(text).expect("yaml");
        decode(&docs[0], 0)
    }

    #[test]
    fn kinds_resolve_by_group_and_version() {
        assert_eq!(
            Kind::from_type("security.istio.io/v1beta1", "AuthorizationPolicy"),
            Some(Kind::AuthorizationPolicy)
        );
        assert_eq!(Kind::from_type("v1", "Service"), Some(Kind::Service));
        assert_eq!(
            Kind::from_type("security.istio.io/v2", "AuthorizationPolicy"),
            None
        );
        assert_eq!(Kind::from_type("v1", "Pod"), None);
        assert_eq!(Kind::from_type("v1", "ConfigMap"), Some(Kind::ConfigMap));
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let err = decode_str(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: a, namespace: payments}\nspec:\n  jwtRules:\n  - issuer: x\n    jwksUrl: https://x\n",
        )
        .expect_err("unknown field");
        assert_eq!(err.object, "RequestAuthentication payments/a");
        assert_eq!(err.path, "spec.jwtRules[0].jwksUrl");
        assert!(
            err.message.starts_with("unknown field `jwksUrl`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_kinds_and_versions_are_reported() {
        let err = decode_str("apiVersion: v1\nkind: Pod\nmetadata: {name: c}\n").expect_err("kind");
        assert!(
            err.message
                .starts_with("unknown kind v1/Pod; wayguard reads"),
            "{err}"
        );
        let err = decode_str("apiVersion: security.istio.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: c}\n")
            .expect_err("version");
        assert_eq!(
            err.to_string(),
            "AuthorizationPolicy default/c: apiVersion security.istio.io/v1alpha1 is not served for AuthorizationPolicy; use security.istio.io/v1 or security.istio.io/v1beta1"
        );
    }

    #[test]
    fn namespace_defaults_like_kubectl() {
        let r =
            decode_str("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n").expect("service");
        assert_eq!(r.object_ref().namespace, "default");
        let r = decode_str("apiVersion: v1\nkind: Namespace\nmetadata: {name: s}\n").expect("ns");
        assert_eq!(r.object_ref().namespace, "");
    }

    #[test]
    fn malformed_yaml_reports_the_line() {
        let err = parse_documents("a: b\nc: [d\n").expect_err("malformed");
        assert!(err.message.contains("line"), "{}", err.message);
    }
}
