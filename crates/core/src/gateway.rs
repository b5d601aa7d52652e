//! Gateways and what attaches to them.

use std::fmt;

use crate::authn::JwtRule;
use crate::authz::AuthzPolicy;

/// A gateway's identity, `namespace/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GatewayId {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl GatewayId {
    /// Builds an id.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses `namespace/name`.
    pub fn parse(s: &str) -> Option<Self> {
        let (ns, name) = s.split_once('/')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains('/')).then(|| Self::new(ns, name))
    }
}

impl fmt::Display for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The auth policies attached to one gateway, in policy order (creation time, then
/// namespace/name): JWT rules concatenated in that order (translation sorts them stably by
/// issuer), authorization policies in that order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayAuth {
    /// JWT rules of every attached RequestAuthentication.
    pub jwt_rules: Vec<JwtRule>,
    /// Attached AuthorizationPolicies.
    pub policies: Vec<AuthzPolicy>,
    /// The mesh's trust domain followed by its aliases (mesh config `trustDomain`, default
    /// `cluster.local`, and `trustDomainAliases`); principals are matched under all of them as
    /// istiod does. Empty means `cluster.local` alone.
    pub trust_domains: Vec<String>,
}
