//! Well-known Envoy filter names.

/// HTTP RBAC filter.
pub const RBAC: &str = "envoy.filters.http.rbac";
/// HTTP ext_authz filter.
pub const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
/// HTTP jwt_authn filter.
pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// HTTP router filter.
pub const ROUTER: &str = "envoy.filters.http.router";
/// The bootstrap cluster that reaches wayguard (xDS, and the JWKS rotation access log).
pub const XDS_CLUSTER: &str = "wayguard-xds";
/// The access log name of the JWKS rotation signal.
pub const ROTATION_LOG: &str = "wayguard.jwks-rotation";
/// The jwt_authn metadata key of a failed verification (`failed_status_in_metadata`).
pub const JWT_FAILURE_KEY: &str = "failure";
/// The jwt_authn failure message of a token whose `kid`/`alg` is not in the JWKS
/// (google/jwt_verify_lib `JwksKidAlgMismatch`).
pub const KID_NOT_IN_JWKS: &str = "Jwks doesn't have key to match kid or alg from Jwt";
/// The jwt_authn failure message of a bad signature (google/jwt_verify_lib
/// `JwtVerificationFail`); with the fail-closed key set it means "keys not fetched yet".
pub const VERIFICATION_FAILS: &str = "Jwt verification fails";
