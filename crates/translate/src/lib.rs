//! Translation of a gateway's attached model into Envoy resources: a pure function, where Istio
//! parity lives (shared/reference/SEMANTICS.md).

mod any;
pub mod gateway;
pub mod json;
mod jwt;
pub mod login;
pub mod matcher;
pub mod names;
mod rbac;
mod rbac_model;
mod trust_domain;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use wayguard_core::authn::{JwksConfig, JwksSource, JwtRule};
use wayguard_core::authz::{Action, ExtAuthzProvider};
use wayguard_core::gateway::GatewayAuth;

pub use any::to_any;

/// A problem found while translating (a skipped rule, an unknown provider), reported on the
/// policy's status; translation itself never fails open.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// Policy namespace.
    pub namespace: String,
    /// Policy name.
    pub name: String,
    /// What happened.
    pub message: String,
}

/// What translation needs besides the model.
pub struct AuthContext<'a> {
    /// Key material for each JWT rule.
    pub jwks: &'a dyn Fn(&JwtRule) -> JwksConfig,
    /// CUSTOM providers by name.
    pub providers: &'a BTreeMap<String, ExtAuthzProvider>,
    /// Set `clear_route_cache` on JWT providers (gateways route on claims; istiod: not on sidecars).
    pub clear_route_cache: bool,
}

/// The auth filters of a gateway: CUSTOM filters (rbac shadow + ext_authz per provider), then
/// jwt_authn, rbac AUDIT, rbac DENY and rbac ALLOW, each only when policies need it.
#[derive(Clone, Debug, Default)]
pub struct AuthFilters {
    /// CUSTOM filters, in chain order.
    pub custom: Vec<HttpFilter>,
    /// jwt_authn.
    pub jwt: Option<JwtAuthentication>,
    /// RBAC with action LOG.
    pub audit: Option<RbacFilter>,
    /// RBAC with action DENY.
    pub deny: Option<RbacFilter>,
    /// RBAC with action ALLOW.
    pub allow: Option<RbacFilter>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
    /// Some keys are fetched by wayguard and inlined: Envoy should report tokens whose key is
    /// not in them (the fast key rotation signal).
    pub inlines_fetched_keys: bool,
}

impl AuthFilters {
    /// The filters in chain order, as istiod would put them inline in the HTTP connection manager.
    pub fn filters(&self) -> Vec<HttpFilter> {
        let mut out = self.custom.clone();
        if let Some(jwt) = &self.jwt {
            out.push(rbac::http_filter_of(names::JWT_AUTHN, to_any(jwt)));
        }
        for rbac in [&self.audit, &self.deny, &self.allow].into_iter().flatten() {
            out.push(rbac::http_filter_of(names::RBAC, to_any(rbac)));
        }
        out
    }
}

/// Translates the auth policies of one gateway.
pub fn http_auth_filters(auth: &GatewayAuth, ctx: &AuthContext<'_>) -> AuthFilters {
    let mut diagnostics = Vec::new();
    let policies = trust_domain::migrate(&auth.policies, &auth.trust_domains);
    let custom = rbac::custom_filters(&policies, ctx.providers, &mut diagnostics);
    let keys: Vec<JwksConfig> = auth.jwt_rules.iter().map(|r| (ctx.jwks)(r)).collect();
    let inlines_fetched_keys = auth.jwt_rules.iter().zip(&keys).any(|(r, k)| {
        !matches!(r.jwks, JwksSource::Inline(_)) && matches!(k, JwksConfig::Inline(_))
    });
    let jwt = jwt::jwt_authn(&auth.jwt_rules, &keys, ctx.clear_route_cache);
    let audit = rbac::local_filter(&policies, Action::Audit, false, &mut diagnostics);
    let deny = rbac::local_filter(&policies, Action::Deny, false, &mut diagnostics);
    let allow = rbac::local_filter(&policies, Action::Allow, false, &mut diagnostics);
    diagnostics.sort();
    AuthFilters {
        custom,
        jwt,
        audit,
        deny,
        allow,
        diagnostics,
        inlines_fetched_keys,
    }
}

/// Renders HTTP filters as JSON (for goldens and `config-dump`).
pub fn filters_to_json(filters: &[HttpFilter]) -> Result<serde_json::Value, json::JsonError> {
    filters
        .iter()
        .map(json::to_json)
        .collect::<Result<Vec<_>, _>>()
        .map(serde_json::Value::Array)
}
