//! Translation of a gateway's attached model into Envoy resources: a pure function, where Istio
//! parity lives (shared/reference/SEMANTICS.md).

mod any;
pub mod json;
mod jwt;
pub mod matcher;
pub mod names;
mod rbac;
mod rbac_model;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use wayguard_core::authn::{JwksConfig, JwtRule};
use wayguard_core::authz::ExtAuthzProvider;
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

/// The auth HTTP filters of a gateway, in chain order: CUSTOM (rbac shadow + ext_authz per
/// provider), jwt_authn, rbac AUDIT, rbac DENY, rbac ALLOW.
#[derive(Clone, Debug, Default)]
pub struct AuthFilters {
    /// The filters.
    pub filters: Vec<HttpFilter>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
}

/// Translates the auth policies of one gateway into HTTP filters.
pub fn http_auth_filters(auth: &GatewayAuth, ctx: &AuthContext<'_>) -> AuthFilters {
    let mut diagnostics = Vec::new();
    let mut filters = rbac::custom_filters(&auth.policies, ctx.providers, &mut diagnostics);
    if let Some(jwt) = jwt::jwt_authn(&auth.jwt_rules, ctx.jwks, ctx.clear_route_cache) {
        filters.push(HttpFilter {
            name: names::JWT_AUTHN.to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&jwt))),
            ..Default::default()
        });
    }
    filters.extend(rbac::local_filters(&auth.policies, false, &mut diagnostics));
    diagnostics.sort();
    AuthFilters {
        filters,
        diagnostics,
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
