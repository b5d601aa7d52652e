//! Listeners, routes, backends and certificates of one gateway, resolved and validated.

use std::sync::Arc;

use crate::gateway::{GatewayAuth, GatewayId};

/// Everything translation needs for one gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The gateway.
    pub id: GatewayId,
    /// Envoy listeners, one per port.
    pub listeners: Vec<Listener>,
    /// Route configurations (RDS), referenced by the listeners' filter chains.
    pub routes: Vec<RouteConfig>,
    /// Upstream clusters with their endpoints, sorted by name.
    pub clusters: Vec<Cluster>,
    /// Certificates and CA bundles served over SDS, sorted by name.
    pub secrets: Vec<TlsSecret>,
    /// Clusters to hosts outside the mesh (JWKS hosts in `envoy` fetch mode), sorted by name.
    pub external_clusters: Vec<ExternalCluster>,
    /// The cluster through which Envoy fetches each JWKS URI (hybrid and envoy fetch modes).
    pub jwks_clusters: std::collections::BTreeMap<String, String>,
    /// CUSTOM providers that resolved (mesh config `extensionProviders`), by name; a policy whose
    /// provider is missing here gets a DENY filter (fail closed).
    pub providers: std::collections::BTreeMap<String, crate::authz::ExtAuthzProvider>,
    /// HTTPRoutes attached to each Gateway listener, by listener name (Gateway status
    /// `listeners[].attachedRoutes`).
    pub attached_routes: std::collections::BTreeMap<String, u32>,
    /// Auth policies attached to the gateway.
    pub auth: GatewayAuth,
    /// Login (ext_authz) attachments.
    pub login: crate::login::GatewayLogin,
    /// What could not be programmed, for logs and status.
    pub problems: Vec<Problem>,
}

/// Something that could not be programmed as written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The object concerned, e.g. `HTTPRoute demo/orders` or `Gateway demo/waypoint listener tcp`.
    pub object: String,
    /// What and why.
    pub message: String,
}

/// Listener protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS terminated by Envoy.
    Https,
}

/// One Envoy listener (all Gateway listeners on one port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Envoy listener name, e.g. `http-8080`.
    pub name: String,
    /// Bind address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Filter chains: one for HTTP; one per certificate/hostname for HTTPS.
    pub chains: Vec<FilterChain>,
}

/// One filter chain of a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterChain {
    /// Chain name (the Gateway listener section name).
    pub name: String,
    /// SNI names this chain serves (HTTPS); empty means any.
    pub server_names: Vec<String>,
    /// TLS settings (HTTPS only).
    pub tls: Option<ListenerTls>,
    /// The route configuration this chain's HTTP connection manager uses.
    pub route_config: String,
}

/// Downstream TLS of an HTTPS filter chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerTls {
    /// SDS names of the server certificates.
    pub certificates: Vec<String>,
    /// SDS name of the CA bundle that validates client certificates.
    pub client_ca: Option<String>,
    /// Reject connections without a valid client certificate (`AllowValidOnly`).
    pub require_client_certificate: bool,
}

/// A certificate (with key) or a CA bundle, served over SDS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSecret {
    /// SDS name.
    pub name: String,
    /// Contents.
    pub material: SecretMaterial,
}

/// Secret contents.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretMaterial {
    /// A certificate chain and its private key (PEM).
    Certificate {
        /// PEM certificate chain.
        chain: Arc<str>,
        /// PEM private key.
        key: Arc<str>,
    },
    /// A CA bundle (PEM) for client validation.
    ValidationContext {
        /// PEM certificates.
        ca: Arc<str>,
    },
}

impl std::fmt::Debug for SecretMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretMaterial::Certificate { chain, .. } => f
                .debug_struct("Certificate")
                .field("chain_bytes", &chain.len())
                .field("key", &"[redacted]")
                .finish(),
            SecretMaterial::ValidationContext { ca } => f
                .debug_struct("ValidationContext")
                .field("ca_bytes", &ca.len())
                .finish(),
        }
    }
}

/// A route configuration (RDS resource).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// RDS name.
    pub name: String,
    /// Virtual hosts.
    pub virtual_hosts: Vec<VirtualHost>,
}

/// A set of domains and their routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualHost {
    /// Name.
    pub name: String,
    /// Domains (`*` for any; `*.example.com` wildcards).
    pub domains: Vec<String>,
    /// Routes, in match order.
    pub routes: Vec<Route>,
}

/// One route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Name (`<ns>/<route>/rule/<i>/match/<j>`).
    pub name: String,
    /// What the request must match.
    pub matcher: RouteMatch,
    /// What to do with it.
    pub action: RouteAction,
    /// Header changes on the way in and out (HTTPRoute `RequestHeaderModifier` and
    /// `ResponseHeaderModifier`).
    pub headers: HeaderChanges,
    /// Host and path rewrite while forwarding (HTTPRoute `URLRewrite`).
    pub rewrite: Option<Rewrite>,
}

/// Request and response header changes of a route.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HeaderChanges {
    /// On the request, before it is forwarded.
    pub request: HeaderModifier,
    /// On the response, before it is returned.
    pub response: HeaderModifier,
}

/// Gateway API header modifier: `set` overwrites, `add` appends, `remove` deletes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HeaderModifier {
    /// Headers set to a value, replacing any present.
    pub set: Vec<(String, String)>,
    /// Headers added, keeping any present.
    pub add: Vec<(String, String)>,
    /// Headers removed.
    pub remove: Vec<String>,
}

impl HeaderModifier {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Host and path rewrite of a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// New Host header.
    pub hostname: Option<String>,
    /// New path.
    pub path: Option<PathRewrite>,
}

/// How a path is rewritten (forwarding) or replaced (redirect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    /// The whole path becomes this (the query string is kept).
    Full(String),
    /// The matched path prefix (`matched`, from the route's `PathPrefix` match) becomes
    /// `replacement`, respecting segment boundaries: `/foo` -> `/bar` turns `/foo/x` into `/bar/x`,
    /// and `/foo` -> `/` turns `/foo/x` into `/x`.
    Prefix {
        /// The route's path prefix.
        matched: String,
        /// What replaces it.
        replacement: String,
    },
}

/// An HTTP redirect (HTTPRoute `RequestRedirect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `http` or `https`; the request's when absent.
    pub scheme: Option<String>,
    /// The request's host when absent.
    pub hostname: Option<String>,
    /// The port to put in `Location`, resolved per Gateway API (the filter's port, else the
    /// well-known port of its scheme, else the listener's port); `None` when it is the
    /// well-known port of the redirect's scheme, which `Location` leaves out.
    pub port: Option<u16>,
    /// The request's path when absent.
    pub path: Option<PathRewrite>,
    /// 301, 302 (default), 303, 307 or 308.
    pub status: u16,
}

/// Request matching of one route.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RouteMatch {
    /// Path condition.
    pub path: PathMatch,
    /// Header conditions (ANDed).
    pub headers: Vec<HeaderMatch>,
    /// Query parameter conditions (ANDed).
    pub query: Vec<HeaderMatch>,
    /// HTTP method.
    pub method: Option<String>,
}

/// Path condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// Exact path.
    Exact(String),
    /// Path prefix by segment (Gateway API `PathPrefix`).
    Prefix(String),
    /// RE2 regex.
    Regex(String),
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch::Prefix("/".into())
    }
}

/// A header or query parameter condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// The value is an RE2 regex.
    pub regex: bool,
}

/// Where a matched request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteAction {
    /// Forward to weighted clusters.
    Forward(Vec<WeightedCluster>),
    /// Redirect the client.
    Redirect(Redirect),
    /// Answer directly (e.g. 500 for a route whose backends do not resolve, per Gateway API).
    Direct {
        /// Status code.
        status: u32,
        /// Body.
        body: String,
    },
}

/// A cluster with a weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedCluster {
    /// Cluster name.
    pub cluster: String,
    /// Weight.
    pub weight: u32,
}

/// An upstream cluster and its endpoints (EDS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Name, `outbound|<port>||<host>` like istiod.
    pub name: String,
    /// Endpoints `(ip, port)`, sorted.
    pub endpoints: Vec<(String, u16)>,
    /// Speak HTTP/2 to the upstream (`appProtocol` h2c / grpc).
    pub http2: bool,
    /// The endpoints are DNS names (EndpointSlices with `addressType: FQDN`): Envoy resolves
    /// them itself (STRICT_DNS) instead of receiving IPs over EDS.
    pub dns: bool,
}

/// A cluster to a DNS name or IP outside the mesh.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExternalCluster {
    /// Name.
    pub name: String,
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS with SNI = host, verified against the system trust store.
    pub tls: bool,
}
