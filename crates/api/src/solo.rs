//! Solo-style `AuthConfig` (`extauth.solo.io/v1`), `EnterpriseAgentgatewayPolicy`
//! (`enterpriseagentgateway.solo.io/v1alpha1`) and agentgateway's `AgentgatewayBackend`
//! (`agentgateway.dev/v1alpha1`, the static-host subset).
//!
//! Field names follow solo-io/gloo `projects/gloo/api/v1/enterprise/options/extauth/v1/extauth.proto`
//! (see shared/reference/AUTH-FLOWS.md §1.1). Config types wayguard does not implement are
//! accepted by the schema (so the apiserver does not prune them) and rejected by validation
//! with a message that names them.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::PolicyStatus;

/// A reference to a namespaced object by name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRef {
    /// Name of the object.
    pub name: String,
    /// Namespace of the object (defaults to the referring resource's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A free-form object the schema preserves as-is (used for Solo config types wayguard does not implement).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct Unsupported(pub serde_json::Value);

impl JsonSchema for Unsupported {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Unsupported".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

// === AuthConfig ===

/// External authentication configuration served by wayguard's ext_authz service.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "extauth.solo.io",
    version = "v1",
    kind = "AuthConfig",
    plural = "authconfigs",
    singular = "authconfig",
    shortname = "ac",
    namespaced,
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfigSpec {
    /// Auth steps; by default every one must pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<AuthConfigStep>,
    /// Boolean expression over the config names, e.g. `(jwt || oidc) && opa`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boolean_expr: Option<String>,
    /// Return 401 instead of redirecting to the IdP (for API/XHR clients).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_on_redirect: bool,
}

/// One auth step of an [`AuthConfigSpec`]. Exactly one config type must be set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfigStep {
    /// Optional name, referenced by `booleanExpr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// OAuth2 / OIDC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<Unsupported>,
    /// Deprecated Gloo OAuth; not supported by wayguard (use `oauth2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_auth: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_auth: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opa_auth: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<Unsupported>,
    /// Not supported by wayguard (use a RequestAuthentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_through_auth: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_auth: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opa_server_auth: Option<Unsupported>,
}

impl AuthConfigStep {
    /// The names of the unsupported config types set on this step.
    pub fn unsupported_types(&self) -> Vec<&'static str> {
        [
            ("basicAuth", self.basic_auth.is_some()),
            ("oauth", self.oauth.is_some()),
            ("apiKeyAuth", self.api_key_auth.is_some()),
            ("pluginAuth", self.plugin_auth.is_some()),
            ("opaAuth", self.opa_auth.is_some()),
            ("ldap", self.ldap.is_some()),
            ("jwt", self.jwt.is_some()),
            ("passThroughAuth", self.pass_through_auth.is_some()),
            ("hmacAuth", self.hmac_auth.is_some()),
            ("opaServerAuth", self.opa_server_auth.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// The `oauth2` config type. Exactly one variant must be set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2 {
    /// OIDC authorization-code login (with PKCE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_authorization_code: Option<Box<OidcAuthorizationCode>>,
    /// Not supported by wayguard (use a RequestAuthentication to validate access tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_validation: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<Unsupported>,
}

/// OIDC authorization-code flow settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcAuthorizationCode {
    /// The OAuth client id.
    #[serde(default)]
    pub client_id: String,
    /// Secret (type `extauth.solo.io/oauth`, key `client-secret`) with the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<ResourceRef>,
    /// Issuer URL; discovery is at `<issuerUrl>/.well-known/openid-configuration` (a trailing `/` is added).
    #[serde(default)]
    pub issuer_url: String,
    /// Extra authorization-request query parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub auth_endpoint_query_params: BTreeMap<String, String>,
    /// Extra token-request parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub token_endpoint_query_params: BTreeMap<String, String>,
    /// Public URL of the application; `redirect_uri = appUrl + callbackPath`.
    #[serde(default)]
    pub app_url: String,
    /// Callback path (default `/callback`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub callback_path: String,
    /// Logout path; empty disables logout.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub logout_path: String,
    /// Where to go after logout (default `appUrl`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub after_logout_url: String,
    /// Scopes requested in addition to `openid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Session storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<UserSession>,
    /// Headers forwarded upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderConfiguration>,
    /// Overrides for discovered provider metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_override: Option<DiscoveryOverride>,
    /// How often discovery is re-read (Go duration, default 30m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_poll_interval: Option<String>,
    /// JWKS refresh policy on an unknown `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_cache_refresh_policy: Option<JwksOnDemandCacheRefreshPolicy>,
    /// Deprecated: use `session.redis.headerName`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_id_header_name: String,
    /// Treat `callbackPath` as a regular expression.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parse_callback_path_as_regex: bool,
    /// Fill query parameters from dynamic metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_map_from_metadata: Option<AutoMapFromMetadata>,
    /// How the RP-initiated logout call is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_properties: Option<EndSessionProperties>,
    /// Dynamic metadata keys filled from ID token claims.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dynamic_metadata_from_claims: BTreeMap<String, String>,
    /// Deprecated: use `clientAuthentication.clientSecret.disableClientSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_client_secret: Option<bool>,
    /// Claims of the access token copied into headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<ClaimsToHeaders>,
    /// Claims of the ID token copied into headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_token: Option<ClaimsToHeaders>,
    /// Client authentication at the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_authentication: Option<ClientAuthentication>,
}

/// Session settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSession {
    /// Fail the request when the session store is unreachable (otherwise start a new login).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_on_fetch_failure: bool,
    /// Session cookie attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_options: Option<CookieOptions>,
    /// Tokens stored in an encrypted cookie (no server state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<CookieSession>,
    /// Tokens stored in Redis; the cookie carries a random session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSession>,
    /// Encryption key for cookie values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_config: Option<CipherConfig>,
}

/// Cookie attributes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CookieOptions {
    /// Max-Age in seconds (default 30 days; 0 = session cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub max_age: Option<u32>,
    /// Omit the `Secure` attribute (default false: cookies are Secure).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_secure: bool,
    /// `HttpOnly` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    /// Cookie path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// SameSite mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
    /// Cookie domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// SameSite cookie attribute.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SameSite {
    /// Browser default (Lax); the attribute is not emitted.
    DefaultMode,
    /// `SameSite=Lax`.
    LaxMode,
    /// `SameSite=Strict`.
    StrictMode,
    /// `SameSite=None` (requires Secure).
    NoneMode,
}

/// Tokens kept in an encrypted cookie.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CookieSession {
    /// Refresh expired tokens with the refresh token (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_refreshing: Option<bool>,
    /// Prefix of the cookie names.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_prefix: String,
    /// Only set cookies when the request host domain-matches this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_domain: String,
}

/// Tokens kept in Redis.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisSession {
    /// Connection settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<RedisOptions>,
    /// Prefix of the Redis keys.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_prefix: String,
    /// Session cookie name (default `__session`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cookie_name: String,
    /// Refresh expired tokens with the refresh token (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_refreshing: Option<bool>,
    /// Refresh this long before expiry (Go duration, default 2s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_expiry_buffer: Option<String>,
    /// Only set cookies when the request host domain-matches this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_domain: String,
    /// Header that carries the session id to the token endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub header_name: String,
}

/// Redis connection settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisOptions {
    /// `host:port` (an empty host means localhost) or `unix://path`.
    #[serde(default)]
    pub host: String,
    /// Database number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<i32>,
    /// Connection pool size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<i32>,
    /// Directory with `ca.crt`/`tls.crt`/`tls.key` for TLS.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tls_cert_mount_path: String,
    /// `TCP` (default) or `TLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_type: Option<RedisSocketType>,
}

/// Redis socket type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RedisSocketType {
    /// Plain TCP.
    Tcp,
    /// TLS.
    Tls,
}

/// Encryption key reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CipherConfig {
    /// Secret with a 32-byte key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<ResourceRef>,
}

/// Headers forwarded upstream after login.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderConfiguration {
    /// Header that carries the ID token (e.g. `jwt`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id_token_header: String,
    /// Header that carries the access token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access_token_header: String,
    /// Prefix the access token header value with `Bearer `.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_bearer_schema_for_authorization: Option<bool>,
}

/// Overrides for discovered OIDC provider metadata.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoveryOverride {
    /// Authorization endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_endpoint: String,
    /// Token endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_endpoint: String,
    /// JWKS URI.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jwks_uri: String,
    /// Supported scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Supported response types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_types: Vec<String>,
    /// Supported subject types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// Supported ID token signing algorithms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token_algs: Vec<String>,
    /// Supported token endpoint auth methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_methods: Vec<String>,
    /// Supported claims.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<String>,
    /// Revocation endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revocation_endpoint: String,
    /// End-session endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub end_session_endpoint: String,
}

/// JWKS refresh policy when a token carries an unknown `kid`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwksOnDemandCacheRefreshPolicy {
    /// Never refresh on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub never: Option<EmptyObject>,
    /// Always refresh on an unknown `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always: Option<EmptyObject>,
    /// Refresh at most this many times per discovery poll interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub max_idp_req_per_polling_interval: Option<u32>,
}

/// An empty object (`{}`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyObject {}

/// Query parameters from dynamic metadata.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoMapFromMetadata {
    /// Metadata namespace (default `solo_authconfig_oidc`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// RP-initiated logout call style.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndSessionProperties {
    /// `GetMethod` (default) or `PostMethod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method_type: Option<EndSessionMethod>,
}

/// HTTP method of the end-session call.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EndSessionMethod {
    /// GET with query parameters.
    GetMethod,
    /// POST with a form body.
    PostMethod,
}

/// Claims copied to headers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimsToHeaders {
    /// Claim-to-header mappings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims_to_headers: Vec<ClaimToHeaderMapping>,
}

/// One claim copied to one header.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeaderMapping {
    /// Claim name.
    pub claim: String,
    /// Header name.
    pub header: String,
    /// Append to an existing header instead of replacing it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append: bool,
}

/// Client authentication at the token endpoint. Exactly one variant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAuthentication {
    /// `client_secret_basic`/`client_secret_post`, or a public client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<ClientSecretAuth>,
    /// RFC 7523 `private_key_jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_jwt: Option<PrivateKeyJwt>,
}

/// Client secret settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientSecretAuth {
    /// Secret with key `client-secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<ResourceRef>,
    /// Public client (PKCE only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_client_secret: Option<bool>,
}

/// `private_key_jwt` settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivateKeyJwt {
    /// Secret with the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_ref: Option<ResourceRef>,
    /// Lifetime of the client assertion (Go duration, default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for: Option<String>,
}

// === EnterpriseAgentgatewayPolicy ===

/// Traffic and backend policy for gateways, routes and backends: ext auth (AuthConfig) and token exchange.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "enterpriseagentgateway.solo.io",
    version = "v1alpha1",
    kind = "EnterpriseAgentgatewayPolicy",
    plural = "enterpriseagentgatewaypolicies",
    singular = "enterpriseagentgatewaypolicy",
    shortname = "eagp",
    namespaced,
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnterpriseAgentgatewayPolicySpec {
    /// What this policy attaches to (Gateway, HTTPRoute, AgentgatewayBackend or Service).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 16))]
    pub target_refs: Vec<LocalPolicyTargetReference>,
    /// Request-path policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficPolicy>,
    /// Backend-path policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendPolicy>,
}

/// A same-namespace target reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalPolicyTargetReference {
    /// API group (`gateway.networking.k8s.io`, `agentgateway.dev`, or `""`).
    #[serde(default)]
    pub group: String,
    /// Kind.
    #[schemars(length(min = 1))]
    pub kind: String,
    /// Name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Section (listener) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// Request-path policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Attach an AuthConfig, evaluated by an ext_authz service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ent_ext_auth: Option<EntExtAuth>,
}

/// AuthConfig attachment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntExtAuth {
    /// The AuthConfig.
    pub auth_config_ref: ResourceRef,
    /// The ext_authz service (default: wayguard's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<BackendObjectReference>,
}

/// A reference to a Service port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendObjectReference {
    /// Service name.
    pub name: String,
    /// Service namespace (default: the policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Group (default core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind (default Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Backend-path policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendPolicy {
    /// RFC 8693 token exchange before the request reaches the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_exchange: Option<TokenExchange>,
}

/// Token exchange settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenExchange {
    /// Exchange mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TokenExchangeMode>,
    /// Delegate the exchange to Microsoft Entra (on-behalf-of).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra: Option<EntraExchange>,
}

/// Token exchange mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TokenExchangeMode {
    /// Exchange the caller's token at the STS and replace `Authorization`; never forward the original.
    ExchangeOnly,
    /// Upstream OAuth consent ("elicitation") only.
    ElicitationOnly,
}

/// Entra on-behalf-of settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntraExchange {
    /// Tenant id.
    pub tenant_id: String,
    /// Client id of the middle-tier app.
    pub client_id: String,
    /// Scope to request, e.g. `api://<app>/.default`.
    pub scope: String,
    /// Secret holding the client secret.
    pub client_secret_ref: SecretKeyRef,
}

/// A key in a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key in the Secret.
    pub key: String,
}

// === AgentgatewayBackend ===

/// A backend (static host) that policies can target.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "agentgateway.dev",
    version = "v1alpha1",
    kind = "AgentgatewayBackend",
    plural = "agentgatewaybackends",
    singular = "agentgatewaybackend",
    namespaced,
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentgatewayBackendSpec {
    /// A static host and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#static: Option<StaticBackend>,
    /// An MCP backend with static targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpBackend>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_forward_proxy: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a2a: Option<Unsupported>,
    /// Not supported by wayguard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Unsupported>,
}

/// A static host and port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticBackend {
    /// Hostname or IP.
    #[schemars(length(min = 1))]
    pub host: String,
    /// Port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// MCP backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpBackend {
    /// MCP targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<McpTarget>,
}

/// One MCP target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpTarget {
    /// Target name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Static address of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#static: Option<McpStaticTarget>,
}

/// Static address of an MCP target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpStaticTarget {
    /// Hostname or IP.
    #[schemars(length(min = 1))]
    pub host: String,
    /// Port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Path (MCP endpoint).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Protocol (`SSE`, `StreamableHTTP`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
}
