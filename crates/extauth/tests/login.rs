//! The login engine end to end against a provider that really signs and really checks PKCE:
//! every item of AUTH-FLOWS.md 4.3 that the engine owns has a test here (the same corpus runs
//! through Envoy in tier 4).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use serde_json::json;
use wayguard_extauth::request::{Decision, HttpRequest};
use wayguard_extauth::store::MemoryStore;

/// A provider and an engine with one cookie-session AuthConfig `ns/login`.
fn cookie_engine() -> (Arc<FakeIdp>, Arc<wayguard_extauth::Engine>) {
    let idp = FakeIdp::new();
    let e = engine(
        idp.clone(),
        MemoryStore::default(),
        vec![config("ns/login", false)],
    );
    (idp, e)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn set_header<'a>(a: &'a wayguard_extauth::request::Allow, name: &str) -> Option<&'a str> {
    a.set_headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn callback_path(idp: &FakeIdp, to_idp: &str) -> String {
    let u = url::Url::parse(&idp.authorize(to_idp)).expect("callback url");
    format!("{}?{}", u.path(), u.query().unwrap_or_default())
}

fn claims_of(jwt: &str) -> serde_json::Value {
    let body = jwt.split('.').nth(1).expect("payload");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

async fn logged_in(
    redis: bool,
) -> (
    std::sync::Arc<FakeIdp>,
    MemoryStore,
    std::sync::Arc<wayguard_extauth::Engine>,
    Browser,
) {
    let idp = FakeIdp::new();
    let store = MemoryStore::default();
    let e = engine(idp.clone(), store.clone(), vec![config("ns/login", redis)]);
    let mut b = Browser::default();
    let done = b.login(&e, &idp, "ns/login", "/app").await;
    assert_eq!(done.status, 302, "{done:?}");
    (idp, store, e, b)
}

#[tokio::test]
async fn a_browser_logs_in_and_comes_back_where_it_started_cookie_sessions() {
    let (idp, e) = cookie_engine();
    let mut b = Browser::default();

    let start = b.get(&e, "ns/login", "/app/page?x=1").await;
    let Decision::Deny(start) = start else {
        panic!("not redirected")
    };
    assert_eq!(start.status, 302);
    let to_idp = location(&start).expect("location").to_string();
    let q: std::collections::BTreeMap<String, String> = url::Url::parse(&to_idp)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect();
    assert!(to_idp.starts_with(&format!("{ISSUER}/auth?")), "{to_idp}");
    assert_eq!(q["client_id"], "client-ns/login");
    assert_eq!(q["redirect_uri"], "https://app.example/callback");
    assert_eq!(q["scope"], "openid email");
    assert!(
        q["state"].len() >= 43 && q["nonce"].len() >= 43,
        "256-bit state and nonce"
    );
    let txn_cookie = header(&start.headers, "set-cookie");
    assert_eq!(txn_cookie.len(), 1, "{txn_cookie:?}");
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(
            txn_cookie[0].contains(attr),
            "{attr} missing: {}",
            txn_cookie[0]
        );
    }
    assert!(
        !txn_cookie[0].contains(&q["nonce"]),
        "the transaction is sealed"
    );

    let path = callback_path(&idp, &to_idp);
    let Decision::Deny(done) = b.get(&e, "ns/login", &path).await else {
        panic!("allowed")
    };
    assert_eq!(done.status, 302);
    assert_eq!(location(&done), Some("/app/page?x=1"));
    let cookies = header(&done.headers, "set-cookie");
    assert!(
        cookies.iter().any(|c| c.contains("Max-Age=0")),
        "the transaction cookie is cleared: {cookies:?}"
    );
    assert_eq!(
        idp.client_auth.lock().as_slice(),
        ["basic:client-ns/login:s3cret"]
    );

    let mut req = request("GET", "/app/page", b.cookie_header());
    req.headers.insert(
        "cookie".into(),
        format!("{}; theme=dark", b.cookie_header().expect("cookies")),
    );
    req.headers.insert("jwt".into(), "forged".into());
    let allow = expect_allow(e.check("ns/login", &req).await);
    let jwt = set_header(&allow, "jwt").expect("id_token forwarded");
    assert_ne!(jwt, "forged");
    assert_eq!(claims_of(jwt)["sub"], "alice");
    assert_eq!(
        set_header(&allow, "cookie"),
        Some("theme=dark"),
        "wayguard's cookies never reach the app"
    );
}

#[tokio::test]
async fn redis_sessions_keep_only_an_opaque_id_in_the_cookie() {
    let (_idp, store, e, b) = logged_in(true).await;
    assert_eq!(store.len(), 1);
    let value = b.cookies.values().next().expect("session cookie");
    assert!(
        value.len() >= 43 && !value.contains('.'),
        "opaque id, not a token: {value}"
    );
    let allow = expect_allow(b.clone().get(&e, "ns/login", "/app").await);
    assert!(set_header(&allow, "jwt").is_some());
}

#[tokio::test]
async fn a_replayed_callback_redeems_nothing() {
    let (idp, e) = cookie_engine();
    let mut b = Browser::default();
    let to_idp = expect_redirect(b.get(&e, "ns/login", "/app").await);
    let txn = b.cookies.clone();
    let path = callback_path(&idp, &to_idp);
    assert_eq!(
        expect_deny(b.get(&e, "ns/login", &path).await, 302).status,
        302
    );
    let calls = idp.token_calls.load(Ordering::SeqCst);

    // An attacker who captured the callback URL and the transaction cookie replays both.
    let mut attacker = Browser { cookies: txn };
    let d = expect_deny(attacker.get(&e, "ns/login", &path).await, 400);
    assert!(d.body.contains("already completed"), "{}", d.body);
    assert_eq!(
        idp.token_calls.load(Ordering::SeqCst),
        calls,
        "no second redemption"
    );
}

#[tokio::test]
async fn a_callback_without_its_own_transaction_is_refused_login_csrf() {
    let (idp, e) = cookie_engine();
    // The attacker starts a login and sends the victim the callback URL.
    let mut attacker = Browser::default();
    let to_idp = expect_redirect(attacker.get(&e, "ns/login", "/app").await);
    let path = callback_path(&idp, &to_idp);
    let mut victim = Browser::default();
    expect_deny(victim.get(&e, "ns/login", &path).await, 400);
    assert!(victim.cookies.is_empty(), "no session for the victim");

    // A state that was tampered with picks no transaction either.
    let tampered = path.replacen("state=", "state=x", 1);
    expect_deny(attacker.get(&e, "ns/login", &tampered).await, 400);
    assert_eq!(
        idp.token_calls.load(Ordering::SeqCst),
        0,
        "nothing was redeemed"
    );
}

#[tokio::test]
async fn a_provider_error_at_the_callback_is_a_401_and_no_session() {
    let (_idp, e) = cookie_engine();
    let mut b = Browser::default();
    let to_idp = expect_redirect(b.get(&e, "ns/login", "/app").await);
    let state = url::Url::parse(&to_idp)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let path = format!("/callback?error=access_denied&state={state}");
    expect_deny(b.get(&e, "ns/login", &path).await, 401);
    expect_redirect(b.get(&e, "ns/login", "/app").await);
}

async fn login_with(tamper: Tamper) -> (Decision, usize) {
    let (idp, e) = cookie_engine();
    let mut b = Browser::default();
    let to_idp = expect_redirect(b.get(&e, "ns/login", "/app").await);
    *idp.tamper.lock() = tamper;
    let path = callback_path(&idp, &to_idp);
    let d = b.get(&e, "ns/login", &path).await;
    let after = b.get(&e, "ns/login", "/app").await;
    assert!(
        matches!(&after, Decision::Deny(d) if d.status == 302),
        "no session after a refused id_token: {after:?}"
    );
    (d, idp.jwks_calls.load(Ordering::SeqCst))
}

#[tokio::test]
async fn id_tokens_that_must_not_verify_are_refused() {
    let cases = [
        (
            "another nonce",
            Tamper {
                nonce: Some("n".repeat(43)),
                ..Default::default()
            },
        ),
        (
            "another audience",
            Tamper {
                aud: Some(json!("someone-else")),
                ..Default::default()
            },
        ),
        (
            "expired",
            Tamper {
                exp_offset: Some(-3600),
                ..Default::default()
            },
        ),
        (
            "another issuer",
            Tamper {
                iss: Some("https://evil.example".into()),
                ..Default::default()
            },
        ),
        (
            "alg none",
            Tamper {
                alg_none: true,
                ..Default::default()
            },
        ),
        (
            "signed by a foreign key with the right kid",
            Tamper {
                foreign_key: true,
                ..Default::default()
            },
        ),
    ];
    for (what, tamper) in cases {
        let (d, _) = login_with(tamper).await;
        let d = match d {
            Decision::Deny(d) => d,
            other => panic!("{what}: let through: {other:?}"),
        };
        assert_eq!(d.status, 401, "{what}: {d:?}");
        assert!(
            header(&d.headers, "set-cookie")
                .iter()
                .all(|c| c.contains("Max-Age=0")),
            "{what}: no session cookie: {d:?}"
        );
    }
}

#[tokio::test]
async fn an_audience_list_with_us_and_no_azp_is_refused() {
    let (d, _) = login_with(Tamper {
        aud: Some(json!(["client-ns/login", "other"])),
        ..Default::default()
    })
    .await;
    assert!(
        matches!(d, Decision::Deny(ref d) if d.status == 401),
        "{d:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rotated_signing_key_is_fetched_once_and_unknown_kids_are_rate_limited() {
    let (idp, e) = cookie_engine();
    let mut first = Browser::default();
    first.login(&e, &idp, "ns/login", "/app").await;
    expect_allow(first.get(&e, "ns/login", "/app").await);
    let before = idp.jwks_calls.load(Ordering::SeqCst);

    // A kid unknown right after a fetch waits for the refetch window (10 s).
    *idp.rotated.lock() = Some(key("k2"));
    assert_eq!(
        Browser::default()
            .login(&e, &idp, "ns/login", "/app")
            .await
            .status,
        401
    );
    assert_eq!(
        idp.jwks_calls.load(Ordering::SeqCst),
        before,
        "no refetch inside the window"
    );
    tokio::time::advance(std::time::Duration::from_secs(11)).await;
    let mut second = Browser::default();
    let done = second.login(&e, &idp, "ns/login", "/app").await;
    assert_eq!(done.status, 302);
    expect_allow(second.get(&e, "ns/login", "/app").await);
    assert_eq!(
        idp.jwks_calls.load(Ordering::SeqCst),
        before + 1,
        "one refetch for the new kid"
    );

    // A kid nobody publishes: refused, and a second one right after does not refetch again.
    *idp.rotated.lock() = None;
    idp.tamper.lock().unknown_kid = true;
    tokio::time::advance(std::time::Duration::from_secs(11)).await;
    let calls = idp.jwks_calls.load(Ordering::SeqCst);
    for _ in 0..2 {
        let mut b = Browser::default();
        assert_eq!(b.login(&e, &idp, "ns/login", "/app").await.status, 401);
    }
    assert!(
        idp.jwks_calls.load(Ordering::SeqCst) <= calls + 1,
        "unknown kids must not make the engine hammer the JWKS endpoint"
    );
}

#[tokio::test]
async fn a_session_of_one_authconfig_is_worthless_at_another() {
    let idp = FakeIdp::new();
    // Same cookie key on purpose: the seal is bound to the AuthConfig, not only to the key.
    let e = engine(
        idp.clone(),
        MemoryStore::default(),
        vec![config("ns/a", false), config("ns/b", false)],
    );
    let mut b = Browser::default();
    b.login(&e, &idp, "ns/a", "/app").await;
    expect_allow(b.get(&e, "ns/a", "/app").await);
    expect_redirect(b.clone().get(&e, "ns/b", "/app").await);

    let (a_name, _) = wayguard_core::login::default_cookie_names("ns/a");
    let (b_name, _) = wayguard_core::login::default_cookie_names("ns/b");
    let value = b.cookies[&a_name].clone();
    let mut forged = Browser::default();
    forged.cookies.insert(b_name, value);
    expect_redirect(forged.get(&e, "ns/b", "/app").await);
}

#[tokio::test]
async fn a_session_store_outage_fails_closed_or_asks_for_a_new_login_as_configured() {
    let (_idp, store, e, b) = logged_in(true).await;
    store.set_down(true);
    let d = expect_deny(b.clone().get(&e, "ns/login", "/app").await, 503);
    assert_eq!(header(&d.headers, "retry-after"), ["5"]);

    let idp = FakeIdp::new();
    let store = MemoryStore::default();
    let mut cfg = config("ns/login", true);
    cfg.session.fail_on_fetch_failure = false;
    let e = engine(idp.clone(), store.clone(), vec![cfg]);
    let mut b = Browser::default();
    b.login(&e, &idp, "ns/login", "/app").await;
    store.set_down(true);
    // Never let through without a session: a new login instead.
    expect_redirect(b.get(&e, "ns/login", "/app").await);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_503_not_a_redirect_loop() {
    let idp = FakeIdp::new();
    idp.down.store(true, Ordering::SeqCst);
    let e = engine(
        idp.clone(),
        MemoryStore::default(),
        vec![config("ns/login", false)],
    );
    let d = expect_deny(Browser::default().get(&e, "ns/login", "/app").await, 503);
    assert_eq!(header(&d.headers, "retry-after"), ["5"]);

    let d = expect_deny(Browser::default().get(&e, "ns/unknown", "/app").await, 503);
    assert!(d.body.contains("not loaded"), "{}", d.body);
}

#[tokio::test]
async fn api_clients_get_a_401_not_a_login_page() {
    let (_idp, e) = cookie_engine();
    let req = HttpRequest {
        headers: [("accept".to_string(), "application/json".to_string())].into(),
        ..request("GET", "/api/items", None)
    };
    let d = expect_deny(e.check("ns/login", &req).await, 401);
    assert!(
        header(&d.headers, "www-authenticate")[0].contains("login_required"),
        "{d:?}"
    );
    assert!(
        header(&d.headers, "set-cookie").is_empty(),
        "no transaction for an API call"
    );
}

#[tokio::test]
async fn the_return_target_never_leaves_the_app() {
    let (idp, e) = cookie_engine();
    for start in ["//evil.example/x", "/\\evil.example", "/%2F%2Fevil.example"] {
        let mut b = Browser::default();
        let done = b.login(&e, &idp, "ns/login", start).await;
        let to = location(&done).expect("location");
        assert!(
            to.starts_with('/') && !to.starts_with("//") && !to.starts_with("/\\"),
            "{start} -> {to}"
        );
        assert!(
            !to.contains("evil.example") || to.starts_with("/%2F"),
            "{start} -> {to}"
        );
    }
}

#[tokio::test]
async fn tokens_that_live_shorter_than_the_buffer_are_not_refreshed_on_every_request() {
    let idp = FakeIdp::new();
    *idp.access_ttl.lock() = 5; // shorter than the 10 s buffer
    let store = MemoryStore::default();
    let e = engine(idp.clone(), store.clone(), vec![config("ns/login", true)]);
    let mut b = Browser::default();
    b.login(&e, &idp, "ns/login", "/app").await;
    for _ in 0..3 {
        expect_allow(b.get(&e, "ns/login", "/app").await);
    }
    assert_eq!(idp.refresh_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn concurrent_requests_share_one_refresh() {
    let (idp, store, e, b) = logged_in(true).await;
    age_session(&store, &b, 295, 5).await; // inside the 10 s pre-expiry buffer
    let cookie = b.cookie_header();

    let checks = (0..8).map(|_| {
        let e = e.clone();
        let req = request("GET", "/app", cookie.clone());
        tokio::spawn(async move { e.check("ns/login", &req).await })
    });
    for d in futures::future::join_all(checks).await {
        let allow = expect_allow(d.expect("task"));
        assert!(set_header(&allow, "jwt").is_some());
    }
    assert_eq!(
        idp.refresh_calls.load(Ordering::SeqCst),
        1,
        "one refresh: the provider rotates refresh tokens, a second use would be refused"
    );
    assert_eq!(store.len(), 1, "the refreshed session replaced the old one");
}

#[tokio::test]
async fn a_failed_refresh_keeps_a_live_session_and_ends_an_expired_one() {
    // Inside the buffer but not expired: the provider is down, the session still serves.
    let (idp, store, e, mut b) = logged_in(true).await;
    age_session(&store, &b, 295, 5).await;
    idp.down.store(true, Ordering::SeqCst);
    let calls = idp.token_calls.load(Ordering::SeqCst);
    expect_allow(b.get(&e, "ns/login", "/app").await);
    assert_eq!(
        idp.token_calls.load(Ordering::SeqCst),
        calls + 1,
        "a refresh was tried"
    );

    // Expired: refresh impossible, the session ends and the browser logs in again.
    age_session(&store, &b, 400, -1).await;
    let d = b.get(&e, "ns/login", "/app").await;
    assert!(
        !matches!(d, Decision::Allow(_)),
        "an expired session is never let through: {d:?}"
    );
    assert_eq!(store.len(), 0, "the dead session was deleted");
}

fn logout_request(b: &Browser, site: &str) -> HttpRequest {
    let mut req = request("POST", "/logout", b.cookie_header());
    req.headers.insert("sec-fetch-site".into(), site.into());
    req
}

#[tokio::test]
async fn logout_ends_the_session_and_posts_to_the_provider() {
    let (_idp, store, e, mut b) = logged_in(true).await;
    let d = expect_deny(
        e.check("ns/login", &logout_request(&b, "same-origin"))
            .await,
        200,
    );
    assert!(
        d.body.contains(&format!("action=\"{ISSUER}/session/end\"")),
        "{}",
        d.body
    );
    assert!(d.body.contains("name=\"id_token_hint\""), "{}", d.body);
    assert!(
        d.body.contains("value=\"https://app.example/bye\""),
        "{}",
        d.body
    );
    assert!(
        header(&d.headers, "set-cookie")
            .iter()
            .all(|c| c.contains("Max-Age=0")),
        "{d:?}"
    );
    assert_eq!(store.len(), 0);
    b.absorb_deny(&d);
    expect_redirect(b.get(&e, "ns/login", "/app").await);
}

#[tokio::test]
async fn a_cross_site_logout_is_refused() {
    let (_idp, store, e, b) = logged_in(true).await;
    expect_deny(
        e.check("ns/login", &logout_request(&b, "cross-site")).await,
        403,
    );
    assert_eq!(store.len(), 1);
    expect_allow(b.clone().get(&e, "ns/login", "/app").await);
}

fn logout_token(idp: &FakeIdp, extra: serde_json::Value) -> String {
    let mut claims = json!({
        "iss": ISSUER, "aud": "client-ns/login", "iat": now(), "jti": "j1",
        "sid": "sid-alice",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    if let (Some(c), Some(x)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    idp.sign(&claims)
}

fn back_channel(token: &str) -> HttpRequest {
    let mut req = request("POST", "/callback/backchannel-logout", None);
    req.headers = [(
        "content-type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )]
    .into();
    req.body = format!("logout_token={token}");
    req
}

#[tokio::test]
async fn back_channel_logout_ends_the_sessions_of_that_idp_session() {
    for redis in [true, false] {
        let (idp, store, e, b) = logged_in(redis).await;
        for (what, extra) in [
            ("a nonce", json!({"nonce": "n"})),
            ("no event", json!({"events": null})),
            ("another audience", json!({"aud": "other"})),
            ("no jti", json!({"jti": null})),
        ] {
            let d = expect_deny(
                e.check("ns/login", &back_channel(&logout_token(&idp, extra)))
                    .await,
                400,
            );
            assert!(d.body.contains("invalid_request"), "{what}: {}", d.body);
        }
        expect_allow(b.clone().get(&e, "ns/login", "/app").await);

        let d = expect_deny(
            e.check("ns/login", &back_channel(&logout_token(&idp, json!({}))))
                .await,
            200,
        );
        assert!(d.body.is_empty());
        if redis {
            assert_eq!(store.len(), 0);
        }
        expect_redirect(b.clone().get(&e, "ns/login", "/app").await);
    }
}
