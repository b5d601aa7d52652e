//! Browser login (AuthConfig `oauth2.oidcAuthorizationCode`), validated and resolved: what the
//! ext_authz service needs to run one login policy. The index builds it from an AuthConfig and the
//! Secrets it references; secrets are held here with a redacting `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The `context_extensions` key naming the AuthConfig (`namespace/name`) a route's ext_authz
/// call is for.
pub const AUTH_CONFIG_KEY: &str = "wayguard.io/authconfig";
/// The `context_extensions` key carrying a digest of the login configuration the route was
/// translated with, so a Check that reaches a replica with another version is noticed.
pub const AUTH_CONFIG_VERSION_KEY: &str = "wayguard.io/authconfig-version";
/// Dynamic metadata namespace of the login's claims (ext_authz's own, as Solo does).
pub const METADATA_NAMESPACE: &str = "envoy.filters.http.ext_authz";

/// A secret value (client secret, encryption key, private key PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Arc<[u8]>);

impl Secret {
    /// From bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Arc::from(bytes.into()))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as text (secrets read from Secrets are UTF-8 where text is expected).
    pub fn expose_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([redacted; {} bytes])", self.0.len())
    }
}

/// One login policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginConfig {
    /// `namespace/name` of the AuthConfig.
    pub id: String,
    /// The OpenID provider.
    pub provider: ProviderConfig,
    /// OAuth client id.
    pub client_id: String,
    /// How wayguard authenticates at the token endpoint.
    pub client_auth: ClientAuth,
    /// The application's public origin and optional path prefix, e.g. `https://app.example`.
    pub app_url: String,
    /// Path of the redirect URI (`app_url` + this), default `/callback`.
    pub callback_path: String,
    /// Path that ends the session (none: logout disabled).
    pub logout_path: Option<String>,
    /// Where the browser goes after logout (default `app_url`).
    pub after_logout_url: String,
    /// How the IdP's end-session endpoint is called.
    pub end_session: EndSessionMethod,
    /// Path where the IdP posts OIDC Back-Channel Logout tokens (none: disabled).
    pub back_channel_logout_path: Option<String>,
    /// Scopes requested, `openid` first, without duplicates.
    pub scopes: Vec<String>,
    /// Extra authorization request parameters (reserved OAuth parameters cannot be overridden).
    pub auth_query_params: BTreeMap<String, String>,
    /// Extra token request parameters (likewise).
    pub token_query_params: BTreeMap<String, String>,
    /// Sessions.
    pub session: SessionConfig,
    /// What is forwarded upstream after login.
    pub forward: ForwardConfig,
    /// Answer 401 instead of redirecting to the IdP (API clients); XHR/fetch requests get 401
    /// whatever this says.
    pub fail_on_redirect: bool,
}

/// Where the provider's endpoints and keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Issuer URL as configured (discovery at `<issuer>/.well-known/openid-configuration`).
    pub issuer_url: String,
    /// Endpoints that replace discovered ones.
    pub overrides: DiscoveryOverride,
    /// How often discovery is refetched (the last good document stays in use meanwhile).
    pub poll_interval: Duration,
}

/// Discovery fields set by configuration instead of the provider.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoveryOverride {
    /// `authorization_endpoint`.
    pub authorization_endpoint: Option<String>,
    /// `token_endpoint`.
    pub token_endpoint: Option<String>,
    /// `jwks_uri`.
    pub jwks_uri: Option<String>,
    /// `end_session_endpoint`.
    pub end_session_endpoint: Option<String>,
    /// `revocation_endpoint`.
    pub revocation_endpoint: Option<String>,
    /// `id_token_signing_alg_values_supported`.
    pub id_token_algs: Vec<String>,
}

/// Client authentication at the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// A public client (PKCE only).
    None,
    /// `client_secret_basic` (the default with a secret).
    SecretBasic(Secret),
    /// `client_secret_post`.
    SecretPost(Secret),
    /// RFC 7523 `private_key_jwt`.
    PrivateKeyJwt {
        /// PEM private key (PKCS#8 RSA or EC).
        key_pem: Secret,
        /// `kid` to put in the assertion header, if any.
        kid: Option<String>,
        /// Lifetime of each assertion.
        valid_for: Duration,
    },
}

/// RP-initiated logout call style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndSessionMethod {
    /// A redirect with the parameters in the query.
    Get,
    /// An auto-submitted form POST (the id_token hint never appears in a URL or a log).
    Post,
}

/// `SameSite` of wayguard's cookies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// `Lax` (default).
    Lax,
    /// `Strict`.
    Strict,
    /// `None` (requires Secure).
    None,
}

/// Cookie attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieOptions {
    /// Session cookie name.
    pub name: String,
    /// Transaction (login in progress) cookie name.
    pub transaction_name: String,
    /// `Max-Age` of the session cookie (`None`: a browser-session cookie).
    pub max_age: Option<Duration>,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `Path` (`None`: omitted).
    pub path: Option<String>,
    /// `SameSite`.
    pub same_site: SameSite,
    /// `Domain` (`None`: host-only).
    pub domain: Option<String>,
}

/// Where sessions live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionStore {
    /// Tokens in Redis; the cookie holds a random session id.
    Redis(RedisConfig),
    /// Tokens in the cookie itself, AES-256-GCM encrypted with this 32-byte key.
    Cookie {
        /// The key (exactly 32 bytes).
        key: Secret,
    },
}

/// A Redis server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `host:port` (`:6379` means localhost:6379) or `unix:///path`.
    pub address: String,
    /// Database number.
    pub db: i64,
    /// Key prefix of session entries.
    pub key_prefix: String,
    /// TLS to Redis.
    pub tls: bool,
}

/// Session behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Where sessions live.
    pub store: SessionStore,
    /// Cookie attributes.
    pub cookie: CookieOptions,
    /// Refresh tokens before they expire (refresh_token grant).
    pub allow_refreshing: bool,
    /// How long before expiry a refresh happens.
    pub pre_expiry_buffer: Duration,
    /// A session store error answers 503 (never anonymous); false: a fresh login.
    pub fail_on_fetch_failure: bool,
    /// Also send the session id upstream in this header (Redis sessions).
    pub session_id_header: Option<String>,
}

/// What reaches the upstream after a login.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Header carrying the id_token.
    pub id_token_header: Option<String>,
    /// Header carrying the access token.
    pub access_token_header: Option<String>,
    /// Prefix the access token with `Bearer `.
    pub bearer: bool,
    /// id_token claims copied into headers.
    pub id_token_claims: Vec<ClaimHeader>,
    /// Access token claims copied into headers (JWT access tokens only).
    pub access_token_claims: Vec<ClaimHeader>,
    /// Dynamic metadata key -> id_token claim, for AuthorizationPolicy rules.
    pub metadata_from_claims: BTreeMap<String, String>,
}

/// A claim copied into a request header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimHeader {
    /// Claim name (a dotted path into nested objects).
    pub claim: String,
    /// Header name.
    pub header: String,
    /// Append to an existing header instead of replacing it.
    pub append: bool,
}

impl LoginConfig {
    /// The redirect URI registered at the IdP: `app_url` + `callback_path`.
    pub fn redirect_uri(&self) -> String {
        join_url(&self.app_url, &self.callback_path)
    }
}

/// `base` + `path` with exactly one slash between them.
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Default cookie names for an AuthConfig: derived from its `namespace/name`, so two AuthConfigs
/// on one host never share a cookie (a 32-bit FNV-1a digest keeps names short; collisions only
/// matter between AuthConfigs on the same domain, and `wayguard validate` reports those).
pub fn default_cookie_names(id: &str) -> (String, String) {
    let mut hash: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (
        format!("wg-session-{hash:08x}"),
        format!("wg-login-{hash:08x}"),
    )
}

/// Where one gateway calls wayguard's ext_authz for login (EnterpriseAgentgatewayPolicy
/// `traffic.entExtAuth` attachments), resolved by the index; translate turns it into the ext_authz
/// filter, per-route settings and the synthesized login routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayLogin {
    /// The AuthConfig (`ns/name`) of every route of the gateway (a policy targeting the Gateway).
    pub gateway: Option<String>,
    /// By route configuration (RDS) name: policies targeting a listener (`sectionName`).
    pub route_configs: BTreeMap<String, String>,
    /// By HTTPRoute (`ns/name`): policies targeting an HTTPRoute (the most specific wins).
    pub http_routes: BTreeMap<String, String>,
    /// The paths each attached AuthConfig answers itself, by AuthConfig id.
    pub paths: BTreeMap<String, LoginPaths>,
    /// How Envoy reaches the ext_authz service.
    pub target: ExtAuthTarget,
}

/// How Envoy reaches wayguard's ext_authz.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ExtAuthTarget {
    /// The `backendRef` Service: this cluster of the gateway (HTTP/2).
    Service(String),
    /// wayguard's own ext_authz at this host and port (`--extauth-upstream`).
    Address(String, u16),
    /// Nowhere: every login route answers 503 (fail closed) until the backendRef resolves.
    #[default]
    Unresolved,
}

impl GatewayLogin {
    /// Whether any route of the gateway logs in.
    pub fn is_empty(&self) -> bool {
        self.gateway.is_none() && self.route_configs.is_empty() && self.http_routes.is_empty()
    }

    /// The AuthConfig of a route: its HTTPRoute's, else its listener's, else the gateway's.
    /// `http_route` is the route's HTTPRoute (`ns/name`), if it has one.
    pub fn for_route(&self, route_config: &str, http_route: Option<&str>) -> Option<&str> {
        http_route
            .and_then(|r| self.http_routes.get(r))
            .or_else(|| self.route_configs.get(route_config))
            .or(self.gateway.as_ref())
            .map(String::as_str)
    }
}

/// The request paths an AuthConfig answers without an upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginPaths {
    /// The redirect URI's path.
    pub callback: String,
    /// RP-initiated logout.
    pub logout: Option<String>,
    /// OIDC Back-Channel Logout (the provider POSTs a logout token; the body goes to ext_authz).
    pub back_channel_logout: Option<String>,
}

impl LoginConfig {
    /// The paths this login answers itself.
    pub fn paths(&self) -> LoginPaths {
        LoginPaths {
            callback: url_path(&self.redirect_uri()),
            logout: self.logout_path.clone(),
            back_channel_logout: self.back_channel_logout_path.clone(),
        }
    }
}

/// The path of an absolute URL (`/` when it has none).
pub fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("/").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_with_one_slash_and_cookie_names_differ_per_authconfig() {
        assert_eq!(
            join_url("https://a.example/", "/callback"),
            "https://a.example/callback"
        );
        assert_eq!(join_url("https://a.example", "cb"), "https://a.example/cb");
        let (s1, t1) = default_cookie_names("ns/one");
        let (s2, _) = default_cookie_names("ns/two");
        assert_ne!(s1, s2);
        assert!(s1.starts_with("wg-session-") && t1.starts_with("wg-login-"));
        assert_eq!(default_cookie_names("ns/one").0, s1, "stable");
        assert!(!format!("{:?}", Secret::new("hunter2")).contains("hunter2"));
    }
}
