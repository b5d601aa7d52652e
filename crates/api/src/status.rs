//! Status and condition types shared by every wayguard-served kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status of a policy resource: standard Kubernetes conditions.
///
/// Compatible with Istio's own CRD status schema (which preserves unknown fields), so the same
/// status can be written when the upstream Istio CRDs are installed instead of ours.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// Current conditions: `Accepted`, `ResolvedRefs` and, for RequestAuthentication, `JwksResolved`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RequestAuthentication only: the distinct `jwtRules[].issuer` values, comma-separated, for
    /// the ISSUERS column of `kubectl get` (a printer column shows only the first match of a
    /// JSONPath, so `.spec.jwtRules[*].issuer` cannot list them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuers: Option<String>,
}

/// Condition types and reasons.
pub mod conditions {
    /// The resource is valid and programmed (`True`), or rejected (`False`, with the validation message).
    pub const ACCEPTED: &str = "Accepted";
    /// Every reference (targets, secrets, backends) resolved.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// Every JWKS of a RequestAuthentication was fetched and is valid.
    pub const JWKS_RESOLVED: &str = "JwksResolved";

    /// Reason: accepted.
    pub const REASON_ACCEPTED: &str = "Accepted";
    /// Reason: the spec failed validation.
    pub const REASON_INVALID: &str = "Invalid";
    /// Reason: all references resolved.
    pub const REASON_RESOLVED: &str = "ResolvedRefs";
    /// Reason: a target reference does not exist or is not served by wayguard.
    pub const REASON_TARGET_NOT_FOUND: &str = "TargetNotFound";
    /// Reason: a referenced object (Secret, backend, AuthConfig) does not exist.
    pub const REASON_REF_NOT_FOUND: &str = "RefNotFound";
    /// Reason: a JWKS fetch failed.
    pub const REASON_JWKS_FETCH_FAILED: &str = "FetchFailed";
    /// Reason: every JWKS is resolved.
    pub const REASON_JWKS_RESOLVED: &str = "Resolved";
    /// Reason: JWKS fetch in progress.
    pub const REASON_PENDING: &str = "Pending";
}
