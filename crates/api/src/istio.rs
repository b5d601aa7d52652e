//! `security.istio.io` `RequestAuthentication` and `AuthorizationPolicy`.
//!
//! Field names, shapes and CRD-level (CEL) rules follow istio/api
//! `security/v1beta1/{request_authentication,authorization_policy}.proto` and the generated
//! `kubernetes/customresourcedefinitions.gen.yaml` (istio/api b8f8791). `v1` is the storage
//! version; `v1beta1` is served with the same schema (see [`crate::crd`]).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::PolicyStatus;

/// Annotation that puts an ALLOW/DENY AuthorizationPolicy into dry-run (shadow) mode.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// Selects workloads by labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// One or more labels that indicate a specific set of pods/VMs on which a policy should be applied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 4096,
        "x-kubernetes-validations" = [
            {"rule": "self.all(key, !key.contains(\"*\"))", "message": "wildcard not allowed in label key match"},
            {"rule": "self.all(key, key.size() != 0)", "message": "key must not be empty"}
        ]
    ))]
    pub match_labels: BTreeMap<String, LabelValue>,
}

/// A label value in a [`WorkloadSelector`] (max 63 characters, no wildcard).
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(transparent)]
#[schemars(extend(
    "maxLength" = 63,
    "x-kubernetes-validations" = [{"rule": "!self.contains(\"*\")", "message": "wildcard not allowed in label value match"}]
))]
pub struct LabelValue(pub String);

/// A reference to the resource a policy attaches to (Gateway API `PolicyTargetReference`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    /// Group of the target resource (`gateway.networking.k8s.io`, or `""` for core `Service`).
    #[serde(default)]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub group: String,
    /// Kind of the target resource: `Gateway`, `GatewayClass`, `Service` or `ServiceEntry`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
    )]
    pub kind: String,
    /// Name of the target resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the referent. Must be empty: cross-namespace references are not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.size() == 0", "message": "cross namespace referencing is not currently supported"}]))]
    pub namespace: Option<String>,
}

const ONE_OF_SELECTOR: &str = "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1";

// === RequestAuthentication ===

/// Defines what request authentication methods are supported by a workload.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.istio.io",
    version = "v1",
    kind = "RequestAuthentication",
    plural = "requestauthentications",
    singular = "requestauthentication",
    shortname = "ra",
    category = "istio-io",
    category = "security-istio-io",
    namespaced,
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Issuers","type":"string","jsonPath":".status.issuers","description":"Trusted JWT issuers (written by wayguard)"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"JWKS","type":"string","jsonPath":".status.conditions[?(@.type==\"JwksResolved\")].status","description":"Whether every JWKS resolved"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": ONE_OF_SELECTOR, "message": "only one of targetRefs or selector can be set"}]))]
pub struct RequestAuthenticationSpec {
    /// Workload selector; mutually exclusive with `targetRef`/`targetRefs`. Never used by waypoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single target reference; use `targetRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// The resources this policy attaches to (a Gateway, a waypoint-bound Service, or the waypoint GatewayClass).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub target_refs: Vec<PolicyTargetReference>,
    /// The JWTs that can be validated at the selected proxies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4096))]
    pub jwt_rules: Vec<JwtRule>,
}

/// One trusted JWT issuer and how to validate and extract its tokens.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.jwksUri) ? 1 : 0) + (has(self.jwks_uri) ? 1 : 0) + (has(self.jwks) ? 1 : 0) <= 1",
    "message": "only one of jwks or jwksUri can be set"
}]))]
pub struct JwtRule {
    /// Identifies the issuer (`iss`). May be empty when `jwksUri` is set; Envoy then does not check `iss`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1))]
    pub issuer: String,
    /// Accepted `aud` values. Empty means the audience is not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<NonEmptyString>,
    /// URL of the issuer's JWKS. Empty means OIDC discovery through the issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), extend("x-kubernetes-validations" = [{"rule": "url(self).getScheme() in [\"http\", \"https\"]", "message": "url must have scheme http:// or https://"}]))]
    pub jwks_uri: Option<String>,
    /// Legacy snake_case spelling of `jwksUri`, accepted like istiod does.
    #[serde(default, rename = "jwks_uri", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), extend("x-kubernetes-validations" = [{"rule": "url(self).getScheme() in [\"http\", \"https\"]", "message": "url must have scheme http:// or https://"}]))]
    pub jwks_uri_legacy: Option<String>,
    /// Inline JWKS (JSON). Mutually exclusive with `jwksUri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Header locations to extract the token from. Setting any `from*` replaces the defaults
    /// (`Authorization: Bearer`, then the `access_token` query parameter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters to extract the token from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<NonEmptyString>,
    /// Cookies to extract the token from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<NonEmptyString>,
    /// Header to write the base64url payload of a verified token into.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_payload_to_header: String,
    /// Keep the token for the upstream request (default: the token header is removed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_original_token: bool,
    /// Copy claims of a verified token into request headers (overwriting client-supplied copies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// JWKS fetch timeout (Go duration, default 5s, at least 1ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "duration(self) >= duration('1ms')", "message": "must be a valid duration greater than 1ms"}]))]
    pub timeout: Option<String>,
    /// Claims to split on spaces in metadata (`scope` and `permission` always are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub space_delimited_claims: Vec<NonEmptyString>,
    /// Whether a token is required (`REQUIRED`: a request without one gets 401) or optional (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<JwtPresence>,
}

impl JwtRule {
    /// The JWKS URI from either spelling (`jwksUri` wins when both are set).
    pub fn jwks_uri(&self) -> Option<&str> {
        self.jwks_uri.as_deref().or(self.jwks_uri_legacy.as_deref())
    }
}

/// Whether a JWT must be present.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JwtPresence {
    /// A request without a token passes authentication (Istio's behaviour).
    Optional,
    /// A request without a token is rejected with 401.
    Required,
}

/// A non-empty string (CRD `minLength: 1`).
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(transparent)]
#[schemars(extend("minLength" = 1))]
pub struct NonEmptyString(pub String);

impl NonEmptyString {
    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NonEmptyString {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// A header to extract a JWT from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeader {
    /// The HTTP header name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The prefix to strip before the token (must match exactly, e.g. `"Bearer "`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// Copies one claim into one header.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    /// The name of the header to be created.
    #[schemars(length(min = 1), regex(pattern = r"^[-_A-Za-z0-9]+$"))]
    pub header: String,
    /// The claim to copy (nested claims use `.`).
    #[schemars(length(min = 1))]
    pub claim: String,
}

// === AuthorizationPolicy ===

/// Enables access control on workloads and gateways.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.istio.io",
    version = "v1",
    kind = "AuthorizationPolicy",
    plural = "authorizationpolicies",
    singular = "authorizationpolicy",
    shortname = "ap",
    category = "istio-io",
    category = "security-istio-io",
    namespaced,
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action","description":"The operation to take"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": ONE_OF_SELECTOR, "message": "only one of targetRefs or selector can be set"}]))]
pub struct AuthorizationPolicySpec {
    /// Workload selector; mutually exclusive with `targetRef`/`targetRefs`. Never used by waypoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single target reference; use `targetRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// The resources this policy attaches to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Rules to match the request. No rules: ALLOW matches nothing (deny all); `[{}]` matches everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub rules: Option<Vec<Rule>>,
    /// The action to take when a rule matches (default ALLOW).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The extension provider for the CUSTOM action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

impl AuthorizationPolicySpec {
    /// The effective action (ALLOW when unset).
    pub fn action(&self) -> Action {
        self.action.unwrap_or(Action::Allow)
    }
}

/// AuthorizationPolicy action.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Allow a request only if it matches the rules.
    Allow,
    /// Deny a request if it matches any of the rules.
    Deny,
    /// Audit a request if it matches any of the rules; never changes the decision.
    Audit,
    /// Delegate the decision to an extension provider (ext_authz).
    Custom,
}

impl Action {
    /// The upper-case name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
            Action::Custom => "CUSTOM",
        }
    }
}

/// The extension provider of a CUSTOM policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// The name of the extension provider.
    #[serde(default)]
    pub name: String,
}

/// Matches requests from a list of sources that perform a list of operations subject to a list of conditions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Sources; a request matches when it matches any source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub from: Option<Vec<RuleFrom>>,
    /// Operations; a request matches when it matches any operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<RuleTo>>,
    /// Conditions; all must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Vec<Condition>>,
}

/// A `from` entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleFrom {
    /// The source of a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// A `to` entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleTo {
    /// The operation of a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// The source identities of a request. Fields are ANDed; values within a field are ORed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) && !has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true",
    "message": "Cannot set serviceAccounts with namespaces or principals"
}]))]
pub struct Source {
    /// Peer identities (mTLS), written without `spiffe://`, e.g. `cluster.local/ns/default/sa/productpage`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Negative match of `principals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// JWT principals `<iss>/<sub>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    /// Negative match of `requestPrincipals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    /// Peer namespaces (from the mTLS identity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Negative match of `namespaces`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// Peer service accounts, `sa` or `ns/sa`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub service_accounts: Vec<ServiceAccountName>,
    /// Negative match of `serviceAccounts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub not_service_accounts: Vec<ServiceAccountName>,
    /// Peer trust domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    /// Negative match of `trustDomains`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<String>,
    /// Direct peer IPs or CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    /// Negative match of `ipBlocks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    /// Original client IPs or CIDRs (X-Forwarded-For / proxy protocol).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    /// Negative match of `remoteIpBlocks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
}

/// A service account name in a [`Source`] (max 320 characters).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
#[schemars(extend("maxLength" = 320))]
pub struct ServiceAccountName(pub String);

/// The operation of a request. Fields are ANDed; values within a field are ORed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// Hosts (`:authority`), case-insensitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Negative match of `hosts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// Destination ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Negative match of `ports`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    /// HTTP methods (case-sensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Negative match of `methods`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// Paths (without query), with `*` prefix/suffix and `{*}`/`{**}` templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Negative match of `paths`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// An additional condition on a request attribute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// The attribute, e.g. `request.auth.claims[groups]`.
    pub key: String,
    /// Values; the condition matches when any value matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Negative values; the condition matches when no value matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}
