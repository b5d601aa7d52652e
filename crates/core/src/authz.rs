//! Authorization policies as attached to a gateway.

/// Policy action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Allow when a rule matches.
    Allow,
    /// Deny when a rule matches.
    Deny,
    /// Log when a rule matches.
    Audit,
    /// Ask an external authorizer when a rule matches.
    Custom,
}

/// A validated AuthorizationPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuthzPolicy {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Action.
    pub action: Action,
    /// CUSTOM provider name.
    pub provider: Option<String>,
    /// `istio.io/dry-run: "true"`.
    pub dry_run: bool,
    /// Rules; empty means "no rules" (ALLOW: match nothing).
    pub rules: Vec<Rule>,
}

/// One rule: any source AND any operation AND every condition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Sources (ORed); empty means any.
    pub from: Vec<Source>,
    /// Operations (ORed); empty means any.
    pub to: Vec<Operation>,
    /// Conditions (ANDed).
    pub when: Vec<Condition>,
}

/// Source fields; each a list of values (ORed) and negated values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Source {
    /// Peer identities without `spiffe://`.
    pub principals: Vec<String>,
    /// Negated `principals`.
    pub not_principals: Vec<String>,
    /// JWT `<iss>/<sub>`.
    pub request_principals: Vec<String>,
    /// Negated `request_principals`.
    pub not_request_principals: Vec<String>,
    /// Peer namespaces.
    pub namespaces: Vec<String>,
    /// Negated `namespaces`.
    pub not_namespaces: Vec<String>,
    /// Peer service accounts.
    pub service_accounts: Vec<String>,
    /// Negated `service_accounts`.
    pub not_service_accounts: Vec<String>,
    /// Peer trust domains.
    pub trust_domains: Vec<String>,
    /// Negated `trust_domains`.
    pub not_trust_domains: Vec<String>,
    /// Direct peer IPs/CIDRs.
    pub ip_blocks: Vec<String>,
    /// Negated `ip_blocks`.
    pub not_ip_blocks: Vec<String>,
    /// Client IPs/CIDRs (XFF).
    pub remote_ip_blocks: Vec<String>,
    /// Negated `remote_ip_blocks`.
    pub not_remote_ip_blocks: Vec<String>,
}

/// Operation fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Operation {
    /// Hosts.
    pub hosts: Vec<String>,
    /// Negated hosts.
    pub not_hosts: Vec<String>,
    /// Ports.
    pub ports: Vec<String>,
    /// Negated ports.
    pub not_ports: Vec<String>,
    /// Methods.
    pub methods: Vec<String>,
    /// Negated methods.
    pub not_methods: Vec<String>,
    /// Paths.
    pub paths: Vec<String>,
    /// Negated paths.
    pub not_paths: Vec<String>,
}

/// A `when` condition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Condition {
    /// Attribute key.
    pub key: String,
    /// Values (ORed).
    pub values: Vec<String>,
    /// Negated values.
    pub not_values: Vec<String>,
}

/// An external authorization provider for CUSTOM policies (Istio meshConfig `extensionProviders`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtAuthzProvider {
    /// Provider name referenced by `provider.name`.
    pub name: String,
    /// Envoy cluster of the authorization service.
    pub cluster: String,
    /// `host:port` authority for the gRPC service / HTTP server.
    pub authority: String,
    /// gRPC (`envoy.service.auth.v3.Authorization`) or plain HTTP.
    pub grpc: bool,
    /// Per-check timeout in milliseconds.
    pub timeout_ms: u64,
    /// Allow the request when the authorizer is unreachable.
    pub fail_open: bool,
    /// Status returned when the authorizer errors (default 403).
    pub status_on_error: Option<u32>,
    /// Path prefix for HTTP providers.
    pub path_prefix: String,
    /// Request headers sent to an HTTP authorizer (besides the defaults).
    pub include_request_headers_in_check: Vec<String>,
    /// Authorizer response headers copied to the upstream request on allow.
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Authorizer response headers copied to the downstream response on deny.
    pub headers_to_downstream_on_deny: Vec<String>,
}
