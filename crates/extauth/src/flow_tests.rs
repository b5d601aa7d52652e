//! The pure login decisions on a synthetic clock.

use std::collections::BTreeMap;

use serde_json::json;
use wayguard_core::login::*;

use super::*;
use crate::request::HttpRequest;

pub(crate) fn config() -> LoginConfig {
    let (name, txn) = default_cookie_names("apps/portal");
    LoginConfig {
        id: "apps/portal".into(),
        provider: ProviderConfig {
            issuer_url: "https://idp.example".into(),
            overrides: DiscoveryOverride::default(),
            poll_interval: Duration::from_secs(1800),
        },
        client_id: "portal".into(),
        client_auth: ClientAuth::SecretBasic(Secret::new("s3cret")),
        app_url: "https://app.example".into(),
        callback_path: "/callback".into(),
        logout_path: Some("/logout".into()),
        after_logout_url: "https://app.example/".into(),
        end_session: EndSessionMethod::Post,
        back_channel_logout_path: Some("/callback/backchannel-logout".into()),
        scopes: vec!["openid".into(), "email".into()],
        auth_query_params: BTreeMap::from([
            ("prompt".into(), "login".into()),
            ("state".into(), "attacker-chosen".into()),
        ]),
        token_query_params: BTreeMap::new(),
        session: SessionConfig {
            store: SessionStore::Cookie {
                key: Secret::new(vec![9u8; 32]),
            },
            cookie: CookieOptions {
                name,
                transaction_name: txn,
                max_age: Some(Duration::from_secs(3600)),
                secure: true,
                http_only: true,
                path: Some("/".into()),
                same_site: SameSite::Lax,
                domain: None,
            },
            allow_refreshing: true,
            pre_expiry_buffer: Duration::from_secs(10),
            fail_on_fetch_failure: true,
            session_id_header: None,
        },
        forward: ForwardConfig {
            id_token_header: Some("jwt".into()),
            access_token_header: Some("authorization".into()),
            bearer: true,
            id_token_claims: vec![
                ClaimHeader {
                    claim: "email".into(),
                    header: "x-user-email".into(),
                    append: false,
                },
                ClaimHeader {
                    claim: "address.country".into(),
                    header: "x-country".into(),
                    append: false,
                },
            ],
            access_token_claims: vec![],
            metadata_from_claims: BTreeMap::from([("user".into(), "sub".into())]),
        },
        fail_on_redirect: false,
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn get(path: &str, cookie: Option<&str>) -> HttpRequest {
    let mut headers = BTreeMap::new();
    if let Some(c) = cookie {
        headers.insert("cookie".into(), c.into());
    }
    HttpRequest {
        method: "GET".into(),
        scheme: "https".into(),
        host: "app.example".into(),
        path: path.into(),
        headers,
        body: String::new(),
    }
}

#[test]
fn routes_are_the_callback_logout_and_backchannel_paths() {
    let cfg = config();
    assert_eq!(
        route(&cfg, &get("/callback?code=1&state=2", None)),
        Route::Callback
    );
    assert_eq!(route(&cfg, &get("/logout", None)), Route::Logout);
    assert_eq!(
        route(&cfg, &get("/callback/backchannel-logout", None)),
        Route::BackChannelLogout
    );
    assert_eq!(route(&cfg, &get("/callbackx", None)), Route::Protected);
    assert_eq!(route(&cfg, &get("/", None)), Route::Protected);
}

#[test]
fn the_authorization_request_has_pkce_state_nonce_and_no_overridden_reserved_param() {
    let cfg = config();
    let txn = Transaction::new("/orders?id=1", at(1000));
    let url = authorization_url(&cfg, "https://idp.example/auth?tenant=x", &txn);
    let parsed = url::Url::parse(&url).expect("url");
    let q: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    let get = |k: &str| {
        q.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("tenant"), vec!["x"]);
    assert_eq!(get("response_type"), vec!["code"]);
    assert_eq!(get("client_id"), vec!["portal"]);
    assert_eq!(get("redirect_uri"), vec!["https://app.example/callback"]);
    assert_eq!(get("scope"), vec!["openid email"]);
    assert_eq!(
        get("state"),
        vec![txn.state.as_str()],
        "the configured state is ignored"
    );
    assert_eq!(get("nonce"), vec![txn.nonce.as_str()]);
    assert_eq!(
        get("code_challenge"),
        vec![crate::crypto::pkce_challenge(&txn.verifier)]
    );
    assert_eq!(get("code_challenge_method"), vec!["S256"]);
    assert_eq!(get("prompt"), vec!["login"]);
    assert_eq!(txn.target, "/orders?id=1");
    assert_eq!(Transaction::new("//evil.example", at(0)).target, "/");
}

#[test]
fn callbacks_need_the_transactions_single_state_in_time_and_one_code() {
    let txn = Transaction::new("/", at(1000));
    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let good = q(&[("code", "c1"), ("state", &txn.state)]);
    assert_eq!(check_callback(&good, Some(&txn), at(1100)), Ok("c1".into()));
    assert_eq!(
        check_callback(&good, None, at(1100)),
        Err(CallbackError::NoTransaction)
    );
    assert_eq!(
        check_callback(&good, Some(&txn), at(1000 + TRANSACTION_TTL.as_secs() + 1)),
        Err(CallbackError::Expired)
    );
    let tampered = format!("{}x", txn.state);
    assert_eq!(
        check_callback(
            &q(&[("code", "c1"), ("state", &tampered)]),
            Some(&txn),
            at(1100)
        ),
        Err(CallbackError::StateMismatch)
    );
    assert_eq!(
        check_callback(&q(&[("code", "c1")]), Some(&txn), at(1100)),
        Err(CallbackError::StateMismatch)
    );
    assert_eq!(
        check_callback(
            &q(&[("code", "c1"), ("state", &txn.state), ("state", &txn.state)]),
            Some(&txn),
            at(1100)
        ),
        Err(CallbackError::StateMismatch)
    );
    assert_eq!(
        check_callback(
            &q(&[("code", "a"), ("code", "b"), ("state", &txn.state)]),
            Some(&txn),
            at(1100)
        ),
        Err(CallbackError::MissingCode)
    );
    assert_eq!(
        check_callback(
            &q(&[("error", "access_denied"), ("state", &txn.state)]),
            Some(&txn),
            at(1100)
        ),
        Err(CallbackError::Provider("access_denied".into()))
    );
}

fn verified(claims: Value) -> Verified {
    Verified {
        kid: Some("k".into()),
        alg: jsonwebtoken::Algorithm::ES256,
        claims: claims.as_object().cloned().unwrap_or_default(),
    }
}

#[test]
fn id_token_claims_bind_the_nonce_azp_and_subject() {
    let ok = verified(json!({"sub": "alice", "aud": "portal", "nonce": "n1"}));
    assert_eq!(check_id_claims(&ok, "portal", Some("n1")), Ok(()));
    assert_eq!(
        check_id_claims(&ok, "portal", Some("n2")),
        Err(ClaimsError::Nonce)
    );
    assert_eq!(
        check_id_claims(&ok, "portal", None),
        Ok(()),
        "refresh: nonce not compared"
    );
    let no_nonce = verified(json!({"sub": "alice", "aud": "portal"}));
    assert_eq!(
        check_id_claims(&no_nonce, "portal", Some("n1")),
        Err(ClaimsError::Nonce)
    );
    let multi = verified(json!({"sub": "a", "aud": ["portal", "other"], "nonce": "n"}));
    assert_eq!(
        check_id_claims(&multi, "portal", Some("n")),
        Err(ClaimsError::AuthorizedParty)
    );
    let multi_azp =
        verified(json!({"sub": "a", "aud": ["portal", "other"], "azp": "portal", "nonce": "n"}));
    assert_eq!(check_id_claims(&multi_azp, "portal", Some("n")), Ok(()));
    let other_azp = verified(json!({"sub": "a", "aud": "portal", "azp": "other", "nonce": "n"}));
    assert_eq!(
        check_id_claims(&other_azp, "portal", Some("n")),
        Err(ClaimsError::AuthorizedParty)
    );
    let no_sub = verified(json!({"aud": "portal", "nonce": "n"}));
    assert_eq!(
        check_id_claims(&no_sub, "portal", Some("n")),
        Err(ClaimsError::Subject)
    );
}

fn session(expires_at: u64, refresh: bool) -> Session {
    Session {
        sub: "alice".into(),
        sid: Some("sid-1".into()),
        id_token: "id.token.sig".into(),
        access_token: Some("access".into()),
        refresh_token: refresh.then(|| "rt".into()),
        expires_at,
        created_at: 900,
        issued_at: 900,
        claims: json!({"sub": "alice", "email": "alice@example.com", "address": {"country": "NL"}})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

#[test]
fn freshness_follows_expiry_the_buffer_and_refreshability() {
    let cfg = config();
    assert_eq!(
        freshness(&cfg, &session(2000, true), at(1000)),
        Freshness::Fresh
    );
    assert_eq!(
        freshness(&cfg, &session(2000, true), at(1995)),
        Freshness::Refresh
    );
    assert_eq!(
        freshness(&cfg, &session(2000, true), at(2000)),
        Freshness::RefreshOrLogin
    );
    assert_eq!(
        freshness(&cfg, &session(2000, false), at(1995)),
        Freshness::Fresh
    );
    assert_eq!(
        freshness(&cfg, &session(2000, false), at(2000)),
        Freshness::Expired
    );
    // Tokens living 20 s: the buffer shrinks to half of that, not every request refreshes.
    let mut short = session(2000, true);
    short.issued_at = 1980;
    assert_eq!(freshness(&cfg, &short, at(1985)), Freshness::Fresh);
    assert_eq!(freshness(&cfg, &short, at(1991)), Freshness::Refresh);
    let mut no_refresh = config();
    no_refresh.session.allow_refreshing = false;
    assert_eq!(
        freshness(&no_refresh, &session(2000, true), at(2001)),
        Freshness::Expired
    );
}

#[test]
fn a_refresh_keeps_what_the_provider_did_not_reissue() {
    let old = session(2000, true);
    let tokens = TokenResponse {
        access_token: Some("access2".into()),
        expires_in: Some(300),
        ..Default::default()
    };
    let next = old.refreshed(tokens, None, at(1990));
    assert_eq!(next.access_token.as_deref(), Some("access2"));
    assert_eq!(
        next.refresh_token.as_deref(),
        Some("rt"),
        "not rotated: kept"
    );
    assert_eq!(next.id_token, old.id_token, "no new id_token: kept");
    assert_eq!(next.expires_at, 2290);
}

#[test]
fn allowed_requests_get_the_tokens_and_claims_and_lose_wayguards_cookies_and_spoofed_headers() {
    let cfg = config();
    let name = cfg.session.cookie.name.clone();
    let req = get("/x", Some(&format!("app=1; {name}=sealed; {name}.0=chunk")));
    let s = session(2000, true);
    let a = allow(&cfg, &s, &req, &[name.as_str()], None);
    assert!(
        a.set_headers
            .contains(&("jwt".into(), "id.token.sig".into()))
    );
    assert!(
        a.set_headers
            .contains(&("authorization".into(), "Bearer access".into()))
    );
    assert!(
        a.set_headers
            .contains(&("x-user-email".into(), "alice@example.com".into()))
    );
    assert!(a.set_headers.contains(&("x-country".into(), "NL".into())));
    assert!(a.set_headers.contains(&("cookie".into(), "app=1".into())));
    assert_eq!(a.metadata.get("user"), Some(&json!("alice")));
    // A claim the session lacks removes the header instead of passing the client's value on.
    let mut no_email = s.clone();
    no_email.claims.remove("email");
    no_email.access_token = None;
    let a = allow(&cfg, &no_email, &req, &[name.as_str()], None);
    assert!(a.remove_headers.contains(&"x-user-email".to_string()));
    assert!(a.remove_headers.contains(&"authorization".to_string()));
    let only_ours = get("/x", Some(&format!("{name}=sealed")));
    let a = allow(&cfg, &s, &only_ours, &[name.as_str()], None);
    assert!(a.remove_headers.contains(&"cookie".to_string()));
}
