//! AuthConfig resolution: the seed example as written, Gloo's defaults, the safer deviations,
//! and the errors that keep an AuthConfig from being served (each naming the field and the fix).

use std::time::Duration;

use wayguard_api::resource::{decode, parse_documents};
use wayguard_core::login::{ClientAuth, EndSessionMethod, LoginConfig, SameSite, SessionStore};

use crate::{Index, IndexConfig};

fn index(text: &str) -> Index {
    let mut index = Index::new(IndexConfig::default());
    for (i, doc) in parse_documents(text).expect("yaml").iter().enumerate() {
        index.apply(decode(doc, i).expect("decode"));
    }
    index
}

fn resolve(text: &str) -> Result<LoginConfig, String> {
    let (mut configs, problems) = index(text).login_configs();
    match (configs.pop(), problems.first()) {
        (Some(c), None) => Ok(c),
        (_, Some(p)) => Err(format!("{}: {}", p.object, p.message)),
        (None, None) => Err("no AuthConfig".into()),
    }
}

const SECRET: &str = "
apiVersion: v1
kind: Secret
metadata: {name: oauth-keycloak, namespace: agentgateway-system}
type: extauth.solo.io/oauth
stringData: {client-secret: \"s3cret\\n\"}
";

fn seed() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/examples/seed/06-authconfig-oidc-keycloak.yaml"
    ))
    .expect("seed example 06");
    text.replace("${INGRESS_GW_ADDRESS}", "127.0.0.1")
        .replace("${KEYCLOAK_CLIENT}", "portal")
        .replace("${KEYCLOAK_URL}", "http://127.0.0.1:8180")
}

#[test]
fn the_seed_example_resolves_with_gloo_defaults() {
    let c = resolve(&format!("{}---{SECRET}", seed())).expect("resolves");
    assert_eq!(c.id, "agentgateway-system/oauth-authorization-code");
    assert_eq!(
        c.provider.issuer_url,
        "http://127.0.0.1:8180/realms/master/"
    );
    assert_eq!(c.provider.poll_interval, Duration::from_secs(1800));
    assert_eq!(c.redirect_uri(), "http://127.0.0.1:80/openai");
    assert_eq!(c.scopes, ["openid", "email"]);
    assert_eq!(
        c.client_auth,
        ClientAuth::SecretBasic(wayguard_core::login::Secret::new("s3cret")),
        "the trailing newline of a file-made Secret is not part of the secret"
    );
    let SessionStore::Redis(redis) = &c.session.store else {
        panic!("redis session expected: {:?}", c.session.store);
    };
    assert_eq!(redis.address, ":6379");
    assert!(c.session.fail_on_fetch_failure);
    assert!(
        c.session.allow_refreshing,
        "redis sessions refresh by default"
    );
    assert_eq!(c.session.pre_expiry_buffer, Duration::from_secs(2));
    let cookie = &c.session.cookie;
    assert_eq!(cookie.name, "keycloak-session");
    assert!(
        !cookie.secure,
        "appUrl is http: a Secure cookie would never come back"
    );
    assert!(cookie.http_only);
    assert_eq!(cookie.same_site, SameSite::Lax);
    assert_eq!(cookie.max_age, Some(Duration::from_secs(30 * 24 * 3600)));
    assert_eq!(c.forward.id_token_header.as_deref(), Some("jwt"));
    assert_eq!(c.after_logout_url, "http://127.0.0.1:80");
    assert_eq!(c.end_session, EndSessionMethod::Post);
    assert_eq!(
        c.back_channel_logout_path.as_deref(),
        Some("/openai/backchannel-logout")
    );
}

const BASE: &str = "
apiVersion: extauth.solo.io/v1
kind: AuthConfig
metadata: {name: portal, namespace: demo}
spec:
  configs:
  - oauth2:
      oidcAuthorizationCode:
        appUrl: https://portal.example.com
        clientId: portal
        issuerUrl: https://idp.example/
";

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn cookie_sessions_need_a_32_byte_key_and_default_names_differ_per_authconfig() {
    let err = resolve(&with(
        "        disableClientSecret: true\n        session: {cookie: {}}\n",
    ))
    .expect_err("no key");
    assert!(
        err.contains("cipherConfig.keyRef") && err.contains("unencrypted"),
        "{err}"
    );

    let short = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: k, namespace: demo}\nstringData: {key: short}\n";
    let err = resolve(&format!(
        "{}{short}",
        with("        disableClientSecret: true\n        session: {cookie: {}, cipherConfig: {keyRef: {name: k}}}\n")
    ))
    .expect_err("short key");
    assert!(err.contains("exactly 32 bytes, it is 5"), "{err}");

    let key = short.replace("short", "0123456789abcdef0123456789abcdef");
    let c = resolve(&format!(
        "{}{key}",
        with("        disableClientSecret: true\n        session: {cookie: {}, cipherConfig: {keyRef: {name: k}}}\n")
    ))
    .expect("resolves");
    assert!(matches!(c.session.store, SessionStore::Cookie { .. }));
    assert_eq!(c.client_auth, ClientAuth::None);
    assert!(c.session.cookie.secure);
    assert!(
        !c.session.allow_refreshing,
        "cookie sessions do not refresh unless asked"
    );
    assert!(c.session.cookie.name.starts_with("wg-session-"));
    let (other, _) = wayguard_core::login::default_cookie_names("demo/other");
    assert_ne!(c.session.cookie.name, other);
}

#[test]
fn a_missing_client_secret_names_the_field_and_the_secret() {
    let err = resolve(&with(
        "        clientSecretRef: {name: nope}\n        session: {redis: {options: {host: 'r:6379'}}}\n",
    ))
    .expect_err("missing secret");
    assert_eq!(
        err,
        "AuthConfig demo/portal: spec.configs[].oauth2.oidcAuthorizationCode.clientSecretRef: Secret demo/nope not found"
    );
}

#[test]
fn explicit_fields_override_the_defaults() {
    let c = resolve(&format!(
        "{}---\n{}",
        with(
            "        callbackPath: /auth/cb
        logoutPath: /bye
        afterLogoutUrl: https://portal.example.com/signed-out
        endSessionProperties: {methodType: GetMethod}
        discoveryPollInterval: 5m
        scopes: [openid, profile]
        clientAuthentication: {clientSecret: {clientSecretRef: {name: s}}}
        session:
          failOnFetchFailure: false
          cookieOptions: {maxAge: 0, sameSite: StrictMode, path: '', domain: example.com}
          redis: {options: {host: 'redis.demo:6380', db: 2, socketType: TLS}, keyPrefix: 'p:', preExpiryBuffer: 30s, headerName: x-session}
        headers: {accessTokenHeader: authorization, useBearerSchemaForAuthorization: true}
        identityToken: {claimsToHeaders: [{claim: email, header: x-email}]}
        dynamicMetadataFromClaims: {groups: groups}
"
        ),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: demo}\nstringData: {client-secret: x}\n"
    ))
    .expect("resolves");
    assert_eq!(c.redirect_uri(), "https://portal.example.com/auth/cb");
    assert_eq!(
        c.paths().back_channel_logout.as_deref(),
        Some("/auth/cb/backchannel-logout")
    );
    assert_eq!(c.logout_path.as_deref(), Some("/bye"));
    assert_eq!(c.after_logout_url, "https://portal.example.com/signed-out");
    assert_eq!(c.end_session, EndSessionMethod::Get);
    assert_eq!(c.provider.poll_interval, Duration::from_secs(300));
    assert_eq!(c.scopes, ["openid", "profile"]);
    let SessionStore::Redis(r) = &c.session.store else {
        panic!("redis")
    };
    assert_eq!(
        (r.address.as_str(), r.db, r.tls, r.key_prefix.as_str()),
        ("redis.demo:6380", 2, true, "p:")
    );
    assert!(!c.session.fail_on_fetch_failure);
    assert_eq!(c.session.pre_expiry_buffer, Duration::from_secs(30));
    assert_eq!(c.session.session_id_header.as_deref(), Some("x-session"));
    let cookie = &c.session.cookie;
    assert_eq!(
        (
            cookie.max_age,
            cookie.same_site,
            cookie.path.as_deref(),
            cookie.domain.as_deref()
        ),
        (None, SameSite::Strict, None, Some("example.com"))
    );
    assert!(c.forward.bearer);
    assert_eq!(
        c.forward.access_token_header.as_deref(),
        Some("authorization")
    );
    assert_eq!(c.forward.id_token_claims[0].header, "x-email");
    assert_eq!(c.forward.metadata_from_claims["groups"], "groups");
}

#[test]
fn a_regex_callback_is_refused() {
    let err = resolve(&with(
        "        disableClientSecret: true\n        parseCallbackPathAsRegex: true\n        session: {redis: {options: {host: ':6379'}}}\n",
    ))
    .expect_err("regex");
    assert!(err.contains("parseCallbackPathAsRegex"), "{err}");
}
