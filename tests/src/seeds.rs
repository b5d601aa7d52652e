//! The seed examples (`examples/seed`) as tier 2 (config files) and tier 3 (`kubectl apply`)
//! use them: their file names, the loopback issuers standing in for their Okta and internal IdP,
//! the claims of a token for seed 01's audience, and seed 04 with its documented fix.

use anyhow::Result;
use serde_json::Value;

use crate::issuer::{IssuerOptions, JwtIssuer};
use crate::keys;
use crate::yaml::{SeedIssuers, seed};

/// Seed 01: one issuer, audience `api://payments`.
pub const SEED01: &str = "01-requestauthentication-single-issuer.yaml";
/// Seed 02: Okta in `Authorization`, the internal IdP in `x-service-jwt`.
pub const SEED02: &str = "02-requestauthentication-multi-issuer.yaml";
/// Seed 03: ALLOW `requestPrincipals ["*"]` and `groups` contains `payments-admin`.
pub const SEED03: &str = "03-authorizationpolicy-groups-claim.yaml";
/// Seed 04: DENY when `request.auth.audiences` is not `api://payments`.
pub const SEED04: &str = "04-authorizationpolicy-deny-audience.yaml";
/// Seed 05: ALLOW a SPIFFE principal, POST /charge and scope `payments:write`.
pub const SEED05: &str = "05-authorizationpolicy-principal-and-claim.yaml";

/// The stand-in for the seed's Okta issuer (`<loopback>/oauth2/default`).
pub async fn okta() -> Result<JwtIssuer> {
    JwtIssuer::start(IssuerOptions {
        path: "/oauth2/default".into(),
        key_slot: keys::ISSUER_SLOT,
        kid_prefix: "okta".into(),
    })
    .await
}

/// The stand-in for the seed's internal IdP (`<loopback>/realms/services`).
pub async fn internal() -> Result<JwtIssuer> {
    JwtIssuer::start(IssuerOptions {
        path: "/realms/services".into(),
        key_slot: keys::SECOND_ISSUER_SLOT,
        kid_prefix: "internal".into(),
    })
    .await
}

/// A seed example with its issuers rewritten to the loopback ones given.
pub fn seed_with(
    file: &str,
    okta: Option<&JwtIssuer>,
    internal: Option<&JwtIssuer>,
) -> Result<String> {
    seed(file, SeedIssuers { okta, internal })
}

/// Seed 01 (audience `api://payments`, `forwardOriginalToken`, `x-user-email <- email`)
/// pointed at `okta`.
pub fn seed01(okta: &JwtIssuer) -> Result<String> {
    seed_with(SEED01, Some(okta), None)
}

/// A seed example without issuers (the AuthorizationPolicies 03-05).
pub fn seed_plain(file: &str) -> Result<String> {
    seed_with(file, None, None)
}

/// Claims of a valid token for seed 01's audience, plus `extra`.
pub fn payments(extra: Value) -> Value {
    let mut claims = serde_json::json!({"aud": "api://payments"});
    if let (Some(base), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        base.extend(extra);
    }
    claims
}

/// Seed 04 with its documented fix (the rule scoped to authenticated requests), same name: it
/// replaces the seed's policy (a file rewrite in tier 2, a `kubectl apply` edit in tier 3).
pub const FIXED_DENY: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: payments-aud-guard
  namespace: payments-prod
spec:
  targetRefs:
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: waypoint
  action: DENY
  rules:
  - from:
    - source:
        requestPrincipals: ["*"]
    when:
    - key: request.auth.audiences
      notValues: ["api://payments"]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payments_claims_keep_the_audience_and_add_extra() {
        let claims = payments(serde_json::json!({"scope": "payments:write"}));
        assert_eq!(claims["aud"], "api://payments");
        assert_eq!(claims["scope"], "payments:write");
    }

    #[test]
    fn fixed_deny_keeps_the_seed_policy_name() -> Result<()> {
        let seed = seed_plain(SEED04)?;
        assert!(seed.contains("name: payments-aud-guard") && seed.contains("action: DENY"));
        assert!(FIXED_DENY.contains("name: payments-aud-guard"));
        Ok(())
    }
}
