//! Request authentication: JWT rules as attached to a gateway.

use std::sync::Arc;
use std::time::Duration;

/// Where a rule's keys come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JwksSource {
    /// An inline JWKS from the policy.
    Inline(String),
    /// A JWKS URL.
    Uri(String),
    /// No URL: resolve `jwks_uri` through the issuer's OIDC discovery document.
    Discovery,
}

/// A header to read the token from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHeader {
    /// Header name.
    pub name: String,
    /// Exact prefix before the token (e.g. `Bearer `), may be empty.
    pub prefix: String,
}

/// A claim copied into a header.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimToHeader {
    /// Header to write.
    pub header: String,
    /// Claim (nested claims use `.`).
    pub claim: String,
}

/// One validated `jwtRules` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JwtRule {
    /// `iss`; may be empty when the JWKS is given.
    pub issuer: String,
    /// Accepted audiences; empty means unchecked.
    pub audiences: Vec<String>,
    /// Key source.
    pub jwks: JwksSource,
    /// Header locations.
    pub from_headers: Vec<TokenHeader>,
    /// Query parameter locations.
    pub from_params: Vec<String>,
    /// Cookie locations.
    pub from_cookies: Vec<String>,
    /// Keep the token for the upstream.
    pub forward_original_token: bool,
    /// Header for the base64url payload.
    pub output_payload_to_header: Option<String>,
    /// Claims copied to headers.
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// JWKS fetch timeout.
    pub timeout: Duration,
    /// Extra space-delimited claims (besides `scope` and `permission`).
    pub space_delimited_claims: Vec<String>,
    /// A token is required (`presence: REQUIRED`): a request without one gets 401.
    pub required: bool,
}

/// The default JWKS fetch timeout (Istio: 5s).
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// What translation inlines or references for a rule's keys, decided outside translation
/// (by the JWKS resolver and the fetch mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksConfig {
    /// Inline this JWKS (`local_jwks`). A failed fetch inlines a JWKS that can never validate.
    Inline(Arc<str>),
    /// Let Envoy fetch (`remote_jwks`) through `cluster`.
    Remote {
        /// JWKS URL.
        uri: String,
        /// Envoy cluster that reaches the JWKS host.
        cluster: String,
        /// Fetch timeout.
        timeout: Duration,
        /// How long Envoy caches the keys.
        cache_duration: Duration,
    },
}

/// Who fetches JWKS URIs (`PILOT_JWT_ENABLE_REMOTE_JWKS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum JwksFetchMode {
    /// wayguard fetches and inlines (`false`, `istiod`, unset; istiod's default).
    #[default]
    Istiod,
    /// Envoy fetches when the JWKS host is a Service wayguard knows, else wayguard inlines
    /// (`true`, `hybrid`). The seed says `true` means envoy; istiod's `ConvertToJwksFetchMode`
    /// maps it to hybrid, and so do we.
    Hybrid,
    /// Envoy always fetches (`envoy`), through a Service cluster or a cluster wayguard defines
    /// for the JWKS host (istiod points at a cluster name that usually does not exist).
    Envoy,
}

impl JwksFetchMode {
    /// Parses `PILOT_JWT_ENABLE_REMOTE_JWKS` values the way istiod does: anything unknown is Istiod.
    pub fn parse(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "true" | "hybrid" => Self::Hybrid,
            "envoy" => Self::Envoy,
            _ => Self::Istiod,
        }
    }
}

/// How long Envoy caches a remote JWKS (istiod hard-codes 5 minutes).
pub const REMOTE_JWKS_CACHE_DURATION: Duration = Duration::from_secs(300);
