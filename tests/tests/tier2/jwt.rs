//! The jwt_authn status matrix (SEMANTICS.md §1.4) with seed 01 as the only policy.

use anyhow::{Result, ensure};
use serde_json::json;
use wayguard_tests::issuer::{GARBAGE_JWT, MALFORMED_TOKEN};
use wayguard_tests::{IssuerOptions, JwtIssuer, Req, ScenarioBuilder, XdsMode, keys};

use crate::common::{okta, payments, seed01};

matrix!(
    jwt_status_matrix,
    jwt_claims_reach_the_backend,
    jwt_keys_from_oidc_discovery,
);

/// SEMANTICS.md §1.4, one request per row, exact status and body.
async fn jwt_status_matrix(mode: XdsMode) -> Result<()> {
    let okta = okta().await?;
    let stranger = JwtIssuer::start(IssuerOptions {
        path: "/unknown".into(),
        key_slot: keys::SECOND_ISSUER_SLOT,
        kid_prefix: "stranger".into(),
    })
    .await?;
    let s = ScenarioBuilder::new(mode)
        .file("policies/ra.yaml", seed01(&okta)?)
        .start()
        .await?;

    // Valid token: 200 (first wait for the JWKS to reach Envoy).
    let valid = okta.token(payments(json!({})))?;
    s.eventually(&Req::get("/pay").bearer(&valid), 200).await?;

    // No token: allow_missing passes (no AuthorizationPolicy here).
    s.expect(&Req::get("/pay"), 200).await?;

    let before = s.echo().requests();
    // Malformed tokens: 401 from jwt_authn itself.
    let resp = s
        .expect_body(
            &Req::get("/pay").bearer(MALFORMED_TOKEN),
            401,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        )
        .await?;
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    ensure!(
        challenge.starts_with("Bearer realm=") && challenge.contains("error=\"invalid_token\""),
        "www-authenticate on 401: {challenge:?}"
    );
    s.expect(&Req::get("/pay").bearer(GARBAGE_JWT), 401).await?;

    // Bad signature: kid unknown, or the right kid with a foreign signature.
    s.expect_body(
        &Req::get("/pay").bearer(&okta.token_signed_by_unknown_key(payments(json!({})))?),
        401,
        "Jwks doesn't have key to match kid or alg from Jwt",
    )
    .await?;
    s.expect_body(
        &Req::get("/pay").bearer(&okta.token_with_bad_signature(payments(json!({})))?),
        401,
        "Jwt verification fails",
    )
    .await?;

    // Expired / not yet valid (beyond the 60 s skew).
    s.expect_body(
        &Req::get("/pay").bearer(&okta.expired_token(payments(json!({})))?),
        401,
        "Jwt is expired",
    )
    .await?;
    s.expect_body(
        &Req::get("/pay").bearer(&okta.not_yet_valid_token(payments(json!({})))?),
        401,
        "Jwt not yet valid",
    )
    .await?;

    // A token from an issuer no provider has: 401, not treated as missing.
    s.expect_body(
        &Req::get("/pay").bearer(&stranger.token(payments(json!({})))?),
        401,
        "Jwt issuer is not configured",
    )
    .await?;

    // Wrong audience: 403 from jwt_authn.
    s.expect_body(
        &Req::get("/pay").bearer(&okta.token(json!({"aud": "api://other"}))?),
        403,
        "Audiences in Jwt are not allowed",
    )
    .await?;
    ensure!(
        s.echo().requests() == before,
        "rejected requests reached the backend ({} -> {})",
        before,
        s.echo().requests()
    );

    // The default locations also include the access_token query parameter.
    s.expect(&Req::get(&format!("/pay?access_token={valid}")), 200)
        .await?;
    let expired = okta.expired_token(payments(json!({})))?;
    s.expect(&Req::get(&format!("/pay?access_token={expired}")), 401)
        .await?;

    // A token in a header no provider reads is not extracted: treated as missing.
    s.expect(&Req::get("/pay").header("x-service-jwt", &expired), 200)
        .await?;

    // CORS preflight bypasses jwt_authn even with an expired token.
    let resp = s
        .expect(
            &Req::cors_preflight("/pay", "https://app.example").bearer(&expired),
            200,
        )
        .await?;
    ensure!(
        resp.echo()?.method == "OPTIONS",
        "preflight reached the backend"
    );
    s.assert_no_nacks().await
}

/// `forwardOriginalToken: true` and `outputClaimToHeaders` (seed 01) at the backend.
async fn jwt_claims_reach_the_backend(mode: XdsMode) -> Result<()> {
    let okta = okta().await?;
    let s = ScenarioBuilder::new(mode)
        .file("policies/ra.yaml", seed01(&okta)?)
        .start()
        .await?;
    let token = okta.token(payments(json!({"email": "alice@example.com"})))?;
    let resp = s.eventually(&Req::get("/pay").bearer(&token), 200).await?;
    let seen = resp.echo()?;
    ensure!(
        seen.header("authorization") == Some(format!("Bearer {token}").as_str()),
        "forwardOriginalToken: backend saw authorization={:?}",
        seen.header("authorization")
    );
    ensure!(
        seen.header("x-user-email") == Some("alice@example.com"),
        "outputClaimToHeaders: backend saw x-user-email={:?} (headers {:?})",
        seen.header("x-user-email"),
        seen.headers
    );

    // No email claim: no x-user-email header.
    let token = okta.token(payments(json!({})))?;
    let seen = s
        .expect(&Req::get("/pay").bearer(&token), 200)
        .await?
        .echo()?;
    ensure!(
        seen.header("x-user-email").is_none(),
        "x-user-email without an email claim: {:?}",
        seen.header("x-user-email")
    );
    s.assert_no_nacks().await
}

/// A rule without `jwksUri` or `jwks`: wayguard finds the key set through
/// `<issuer>/.well-known/openid-configuration`, like istiod.
async fn jwt_keys_from_oidc_discovery(mode: XdsMode) -> Result<()> {
    let okta = okta().await?;
    let ra = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: by-discovery\n  \
         namespace: payments-prod\nspec:\n  targetRefs:\n  - kind: Gateway\n    group: gateway.networking.k8s.io\n    \
         name: waypoint\n  jwtRules:\n  - issuer: \"{}\"\n    audiences: [\"api://payments\"]\n",
        okta.issuer()
    );
    let s = ScenarioBuilder::new(mode)
        .file("ra.yaml", ra)
        .start()
        .await?;
    let token = okta.token(payments(json!({})))?;
    s.eventually(&Req::get("/d").bearer(&token), 200).await?;
    s.expect(
        &Req::get("/d").bearer(&okta.expired_token(payments(json!({})))?),
        401,
    )
    .await?;
    ensure!(
        okta.discovery_fetches() >= 1 && okta.jwks_fetches() >= 1,
        "discovery fetched {} times, JWKS {} times",
        okta.discovery_fetches(),
        okta.jwks_fetches()
    );
    s.assert_no_nacks().await
}
