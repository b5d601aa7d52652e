//! Seed examples 02, 03 and 04 (and the fixed variant of 04), through Envoy.

use anyhow::{Result, ensure};
use serde_json::json;
use wayguard_tests::{Req, ScenarioBuilder, XdsMode};

use crate::common::{
    FIXED_DENY, SEED02, SEED03, SEED04, internal, okta, payments, ra_without_audiences, seed_plain,
    seed_with, seed01,
};

matrix!(
    seed03_groups_claim,
    seed02_multi_issuer_from_headers,
    seed04_deny_audience_and_fix
);

/// Seed 01 + 03: ALLOW `requestPrincipals: ["*"]` and `groups` contains `payments-admin`.
async fn seed03_groups_claim(mode: XdsMode) -> Result<()> {
    let okta = okta().await?;
    let s = ScenarioBuilder::new(mode)
        .file("ra.yaml", seed01(&okta)?)
        .file("authz.yaml", seed_plain(SEED03)?)
        .start()
        .await?;
    let admin = okta.token(payments(json!({"groups": ["dev", "payments-admin"]})))?;
    s.eventually(&Req::get("/refund").bearer(&admin), 200)
        .await?;

    // Anonymous: the ALLOW needs a principal, so RBAC denies (403, not 401).
    s.expect_body(&Req::get("/refund"), 403, "RBAC: access denied")
        .await?;
    // Authenticated without the group.
    let dev = okta.token(payments(json!({"groups": ["dev"]})))?;
    s.expect_body(
        &Req::get("/refund").bearer(&dev),
        403,
        "RBAC: access denied",
    )
    .await?;
    // No groups claim at all.
    s.expect(
        &Req::get("/refund").bearer(&okta.token(payments(json!({})))?),
        403,
    )
    .await?;
    // groups as a plain string matches too (or_match with string_match).
    let single = okta.token(payments(json!({"groups": "payments-admin"})))?;
    s.expect(&Req::get("/refund").bearer(&single), 200).await?;
    // An invalid token never reaches RBAC: 401 from jwt_authn.
    let expired = okta.expired_token(payments(json!({"groups": ["payments-admin"]})))?;
    s.expect(&Req::get("/refund").bearer(&expired), 401).await?;
    // No `sub`: requestPrincipals ["*"] needs iss and sub.
    let no_sub = okta.token(payments(json!({"groups": ["payments-admin"], "sub": null})))?;
    s.expect(&Req::get("/refund").bearer(&no_sub), 403).await?;
    s.assert_no_nacks().await
}

/// Seed 02: Okta in `Authorization`, the internal IdP in `x-service-jwt` (`fromHeaders`).
async fn seed02_multi_issuer_from_headers(mode: XdsMode) -> Result<()> {
    let okta = okta().await?;
    let internal = internal().await?;
    let s = ScenarioBuilder::new(mode)
        .file("ra.yaml", seed_with(SEED02, Some(&okta), Some(&internal))?)
        .start()
        .await?;
    let svc = internal.token(json!({"aud": "svc://payments", "sub": "orders"}))?;
    let resp = s
        .eventually(&Req::get("/internal").header("x-service-jwt", &svc), 200)
        .await?;
    // forwardOriginalToken defaults to false: the token header is removed.
    let seen = resp.echo()?;
    ensure!(
        seen.header("x-service-jwt").is_none(),
        "x-service-jwt forwarded although forwardOriginalToken is false: {:?}",
        seen.headers
    );

    let human = okta.token(payments(json!({})))?;
    let seen = s
        .eventually(&Req::get("/internal").bearer(&human), 200)
        .await?
        .echo()?;
    ensure!(
        seen.header("authorization").is_none(),
        "Authorization forwarded although forwardOriginalToken is false: {:?}",
        seen.headers
    );

    // Each issuer only at its own location: elsewhere the issuer is "not configured".
    s.expect_body(
        &Req::get("/internal").bearer(&svc),
        401,
        "Jwt issuer is not configured",
    )
    .await?;
    s.expect_body(
        &Req::get("/internal").header("x-service-jwt", &human),
        401,
        "Jwt issuer is not configured",
    )
    .await?;
    // The second issuer's audience is checked too.
    let wrong_aud = internal.token(json!({"aud": "api://payments"}))?;
    s.expect_body(
        &Req::get("/internal").header("x-service-jwt", &wrong_aud),
        403,
        "Audiences in Jwt are not allowed",
    )
    .await?;
    let expired = internal.expired_token(json!({"aud": "svc://payments"}))?;
    s.expect_body(
        &Req::get("/internal").header("x-service-jwt", &expired),
        401,
        "Jwt is expired",
    )
    .await?;
    // Missing everywhere: still allowed (no AuthorizationPolicy).
    s.expect(&Req::get("/internal"), 200).await?;
    s.assert_no_nacks().await
}

/// Seed 04 over a RequestAuthentication without `audiences` (so RBAC sees them): the
/// anonymous request is denied (the seed's gotcha); the fix scopes the rule to authenticated
/// requests.
async fn seed04_deny_audience_and_fix(mode: XdsMode) -> Result<()> {
    let okta = okta().await?;
    let s = ScenarioBuilder::new(mode)
        .file("ra.yaml", ra_without_audiences(&okta))
        .file("authz.yaml", seed_plain(SEED04)?)
        .start()
        .await?;
    let ours = okta.token(payments(json!({})))?;
    let theirs = okta.token(json!({"aud": "api://other"}))?;
    let both = okta.token(json!({"aud": ["api://other", "api://payments"]}))?;
    s.eventually(&Req::get("/x").bearer(&ours), 200).await?;
    s.expect_body(&Req::get("/x").bearer(&theirs), 403, "RBAC: access denied")
        .await?;
    s.expect(&Req::get("/x").bearer(&both), 200).await?;
    // The gotcha: no token, no audiences, not_id is true: denied.
    s.expect_body(&Req::get("/x"), 403, "RBAC: access denied")
        .await?;

    // The fix: from requestPrincipals ["*"].
    s.write_config("authz.yaml", FIXED_DENY)?;
    s.eventually(&Req::get("/x"), 200).await?;
    s.expect(&Req::get("/x").bearer(&ours), 200).await?;
    s.expect_body(&Req::get("/x").bearer(&theirs), 403, "RBAC: access denied")
        .await?;
    s.assert_no_nacks().await
}
