//! Well-known Envoy filter names.

/// HTTP RBAC filter.
pub const RBAC: &str = "envoy.filters.http.rbac";
/// HTTP ext_authz filter.
pub const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
/// HTTP jwt_authn filter.
pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// HTTP router filter.
pub const ROUTER: &str = "envoy.filters.http.router";
