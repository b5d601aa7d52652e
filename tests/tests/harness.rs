//! Unit tests of the harness pieces (no wayguard needed, except the build check).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::TlsAcceptor;
use wayguard_tests::http::{HttpClient, Req};
use wayguard_tests::issuer::{GARBAGE_JWT, MALFORMED_TOKEN};
use wayguard_tests::pki::{self, CHECKOUT_SPIFFE, OTHER_SPIFFE, Pki};
use wayguard_tests::poll::{Check, until};
use wayguard_tests::process::ChildGuard;
use wayguard_tests::{EchoBackend, IssuerOptions, JwtIssuer, keys, ports};

async fn fetch_jwks(client: &HttpClient) -> Result<JwkSet> {
    let resp = client.send(&Req::get("/jwks")).await?;
    anyhow::ensure!(resp.status == 200, "jwks: {}", resp.summary());
    serde_json::from_str(&resp.body).context("jwks body")
}

fn verify(token: &str, jwks: &JwkSet, issuer: &str) -> Result<Map<String, Value>> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.ok_or_else(|| anyhow!("no kid"))?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| anyhow!("kid {kid} not in JWKS"))?;
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    Ok(jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)?.claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_serves_discovery_and_jwks_and_mints_verifiable_tokens() -> Result<()> {
    let mut issuer = JwtIssuer::start(IssuerOptions {
        path: "/oauth2/default".into(),
        ..IssuerOptions::default()
    })
    .await?;
    let base = format!("http://127.0.0.1:{}", ports_of(&issuer)?);
    let client = HttpClient::plain(&base)?;

    let disco = client
        .send(&Req::get(
            "/oauth2/default/.well-known/openid-configuration",
        ))
        .await?;
    assert_eq!(disco.status, 200, "{}", disco.summary());
    let disco: Value = serde_json::from_str(&disco.body)?;
    assert_eq!(disco["issuer"], json!(issuer.issuer()));
    assert_eq!(disco["jwks_uri"], json!(issuer.jwks_uri()));
    assert_eq!(issuer.discovery_fetches(), 1);

    let jwks = fetch_jwks(&client).await?;
    assert_eq!(issuer.jwks_fetches(), 1);
    assert_eq!(jwks.keys.len(), 1);

    let token =
        issuer.token(json!({"aud": "api://payments", "groups": ["a", "b"], "sub": null}))?;
    let claims = verify(&token, &jwks, issuer.issuer())?;
    assert_eq!(claims["iss"], json!(issuer.issuer()));
    assert_eq!(claims["aud"], json!("api://payments"));
    assert_eq!(claims["groups"], json!(["a", "b"]));
    assert!(!claims.contains_key("sub"), "null removes a default claim");

    let expired = issuer.expired_token(json!({}))?;
    let err = verify(&expired, &jwks, issuer.issuer()).expect_err("expired");
    assert!(err.to_string().contains("ExpiredSignature"), "{err}");

    let nbf = issuer.not_yet_valid_token(json!({}))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_nbf = true;
    validation.validate_aud = false;
    let key = DecodingKey::from_jwk(&jwks.keys[0])?;
    assert!(jsonwebtoken::decode::<Value>(&nbf, &key, &validation).is_err());

    let unknown = issuer.token_signed_by_unknown_key(json!({}))?;
    let err = verify(&unknown, &jwks, issuer.issuer()).expect_err("unknown kid");
    assert!(err.to_string().contains("not in JWKS"), "{err}");

    let forged = issuer.token_with_bad_signature(json!({}))?;
    let err = verify(&forged, &jwks, issuer.issuer()).expect_err("bad signature");
    assert!(err.to_string().contains("InvalidSignature"), "{err}");

    for bad in [MALFORMED_TOKEN, GARBAGE_JWT] {
        assert!(verify(bad, &jwks, issuer.issuer()).is_err());
    }

    // Rotation keeping the old key: both verify. Dropping it: only the new one.
    let old_kid = issuer.current_kid();
    let new_kid = issuer.rotate(true).await?;
    assert_ne!(old_kid, new_kid);
    let jwks = fetch_jwks(&client).await?;
    assert_eq!(jwks.keys.len(), 2);
    verify(&token, &jwks, issuer.issuer())?;
    let rotated = issuer.token(json!({}))?;
    verify(&rotated, &jwks, issuer.issuer())?;
    let newest = issuer.rotate(false).await?;
    assert_eq!(issuer.served_kids(), vec![newest]);
    let jwks = fetch_jwks(&client).await?;
    assert!(verify(&token, &jwks, issuer.issuer()).is_err());
    verify(&issuer.token(json!({}))?, &jwks, issuer.issuer())?;

    // Stop: refused. Resume on the same port: serving again.
    issuer.stop().await;
    assert!(!issuer.is_running());
    let err = client.send(&Req::get("/jwks")).await.expect_err("stopped");
    assert!(!err.to_string().is_empty());
    issuer.resume().await?;
    fetch_jwks(&client).await?;
    Ok(())
}

/// `/jwks` answers whatever the Host header says (a Service host name in hybrid mode), records
/// who fetched, and can serve the same keys in another order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_records_jwks_fetches_and_reorders_keys() -> Result<()> {
    let issuer = JwtIssuer::start(IssuerOptions::default()).await?;
    assert_eq!(issuer.port(), ports_of(&issuer)?);
    let client = HttpClient::plain(&format!("http://127.0.0.1:{}", issuer.port()))?;
    let host = "issuer.payments-prod.svc.cluster.local:8081";
    let resp = client
        .send(
            &Req::get("/jwks")
                .header("host", host)
                .header("user-agent", "test-agent"),
        )
        .await?;
    assert_eq!(resp.status, 200, "{}", resp.summary());
    let log = issuer.jwks_fetch_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].host, host);
    assert_eq!(log[0].user_agent, "test-agent");
    assert!(!log[0].by_wayguard());

    issuer.rotate(true).await?;
    let kids = |text: &str| -> Result<Vec<String>> {
        let v: Value = serde_json::from_str(text)?;
        Ok(v["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["kid"].as_str().map(str::to_string))
            .collect())
    };
    let in_order = kids(&issuer.jwks_json())?;
    issuer.set_reverse_key_order(true);
    let reversed = kids(&fetch_jwks_text(&client).await?)?;
    assert_eq!(in_order.len(), 2);
    assert_eq!(reversed, in_order.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(issuer.jwks_fetch_log().len(), 2);
    Ok(())
}

async fn fetch_jwks_text(client: &HttpClient) -> Result<String> {
    let resp = client.send(&Req::get("/jwks")).await?;
    anyhow::ensure!(resp.status == 200, "jwks: {}", resp.summary());
    Ok(resp.body)
}

fn ports_of(issuer: &JwtIssuer) -> Result<u16> {
    let url = issuer.jwks_uri();
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .ok_or_else(|| anyhow!("unexpected {url}"))?;
    let port = rest.split('/').next().unwrap_or_default();
    Ok(port.parse()?)
}

#[test]
fn key_pool_slots_are_distinct_keys() -> Result<()> {
    keys::prewarm();
    let a = keys::rsa_key(keys::ISSUER_SLOT)?;
    let b = keys::rsa_key(keys::FOREIGN_SLOT)?;
    assert_ne!(a.public_jwk("k")["n"], b.public_jwk("k")["n"]);
    assert!(Arc::ptr_eq(&a, &keys::rsa_key(keys::ISSUER_SLOT)?));
    assert!(keys::rsa_key(keys::SLOTS).is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_backend_returns_method_path_and_headers() -> Result<()> {
    let echo = EchoBackend::start().await?;
    let client = HttpClient::plain(&format!("http://{}", echo.addr()))?;
    let resp = client
        .send(
            &Req::post("/charge?x=1")
                .header("x-user-email", "a@example.com")
                .header("x-multi", "1")
                .header("x-multi", "2")
                .bearer("tok"),
        )
        .await?;
    assert_eq!(resp.status, 200);
    let seen = resp.echo()?;
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/charge");
    assert_eq!(seen.query.as_deref(), Some("x=1"));
    assert_eq!(seen.header("X-User-Email"), Some("a@example.com"));
    assert_eq!(seen.header("x-multi"), Some("1, 2"));
    assert_eq!(seen.header("authorization"), Some("Bearer tok"));
    assert_eq!(echo.requests(), 1);
    Ok(())
}

/// A one-shot TLS server requiring a client certificate from `ca`; answers one HTTP request
/// with the number of peer certificates it saw.
async fn mtls_server(
    pki: &Pki,
    server: &pki::CertKey,
) -> Result<(u16, tokio::task::JoinHandle<Result<usize>>)> {
    wayguard_tests::http::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.cert_der()], server.key_der())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let peers = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
        let mut buf = vec![0u8; 4096];
        let _ = tls.read(&mut buf).await?;
        let body = peers.to_string();
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(reply.as_bytes()).await?;
        tls.shutdown().await?;
        Ok(peers)
    });
    Ok((port, task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_verify_with_rustls_and_client_certs_are_required() -> Result<()> {
    let pki = Pki::new("wayguard test CA")?;
    let server = pki.server_cert(&["gateway.wayguard.test"])?;
    let checkout = pki.client_cert(CHECKOUT_SPIFFE)?;
    let other = pki.client_cert(OTHER_SPIFFE)?;
    assert_ne!(checkout.cert_pem, other.cert_pem);

    // Good client cert: handshake and request succeed; the server saw one peer certificate.
    let (port, task) = mtls_server(&pki, &server).await?;
    let client = HttpClient::tls(&format!("https://127.0.0.1:{port}"), &pki, Some(&checkout))?;
    let resp = client.send(&Req::get("/")).await?;
    assert_eq!((resp.status, resp.body.as_str()), (200, "1"));
    assert_eq!(task.await??, 1);

    // No client cert: refused.
    let (port, task) = mtls_server(&pki, &server).await?;
    let client = HttpClient::tls(&format!("https://127.0.0.1:{port}"), &pki, None)?;
    assert!(client.send(&Req::get("/")).await.is_err());
    assert!(task.await?.is_err());

    // A client cert from another CA: refused.
    let stranger = Pki::new("another CA")?.client_cert(CHECKOUT_SPIFFE)?;
    let (port, task) = mtls_server(&pki, &server).await?;
    let client = HttpClient::tls(&format!("https://127.0.0.1:{port}"), &pki, Some(&stranger))?;
    assert!(client.send(&Req::get("/")).await.is_err());
    assert!(task.await?.is_err());

    // YAML renderings carry the PEM (base64 in Secrets, literal in the ConfigMap).
    let secret = pki::tls_secret_yaml("ns", "cert", &server);
    assert!(secret.contains("type: kubernetes.io/tls") && secret.contains("tls.key: "));
    let cm = pki::ca_configmap_yaml("ns", "ca", pki.ca_pem());
    assert!(cm.contains("    -----BEGIN CERTIFICATE-----"));
    let dir = tempfile::tempdir()?;
    let (crt, key) = checkout.write(dir.path(), "checkout")?;
    assert!(crt.exists() && key.exists());
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn process_guard_captures_output_and_kills_by_pid() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "echo hello; echo oops >&2; exec sleep 1000"]);
    let guard = ChildGuard::spawn("sleeper", cmd, dir.path())?;
    let pid = guard.pid();
    assert!(pid_alive(pid));
    let seen = wayguard_tests::poll::until_blocking(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || {
            let lines = guard.output();
            (lines.lines().any(|l| l == "oops") && lines.lines().any(|l| l == "hello"))
                .then_some(())
        },
    );
    assert!(seen.is_some(), "{}", guard.log_tail(10));
    assert!(
        guard
            .log_lines_containing("hello")
            .iter()
            .any(|l| l == "hello")
    );
    drop(guard);
    assert!(!pid_alive(pid), "SIGTERM stopped and reaped the child");

    // A child that ignores SIGTERM gets SIGKILL after the stop timeout.
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "trap '' TERM; echo trapped; exec sleep 1000"]);
    let mut guard = ChildGuard::spawn("stubborn", cmd, dir.path())?
        .with_stop_timeout(Duration::from_millis(300));
    let pid = guard.pid();
    let trapped = wayguard_tests::poll::until_blocking(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || guard.output().lines().any(|l| l == "trapped").then_some(()),
    );
    assert!(trapped.is_some(), "{}", guard.log_tail(10));
    let start = std::time::Instant::now();
    let status = guard.stop().ok_or_else(|| anyhow!("not stopped"))?;
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(!status.success());
    assert!(!pid_alive(pid));
    Ok(())
}

#[test]
fn free_ports_do_not_repeat() -> Result<()> {
    let mut seen = HashSet::new();
    for _ in 0..50 {
        assert!(seen.insert(ports::free_port()?));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_runs_a_static_config_under_a_guard() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let admin = ports::free_port()?;
    let listen = ports::free_port()?;
    let bootstrap = format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: test
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: test
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: "hello from envoy"}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    );
    let path = dir.path().join("static.yaml");
    std::fs::write(&path, bootstrap)?;
    let mut envoy = wayguard_tests::Envoy::start(&path, admin, dir.path())?;
    let pid = envoy.pid();
    let client = HttpClient::plain(&format!("http://127.0.0.1:{listen}"))?;
    let body = until("static listener answers", Duration::from_secs(20), || {
        let client = client.clone();
        async move {
            match client.send(&Req::get("/x")).await {
                Ok(r) if r.status == 200 => Check::Done(r.body),
                Ok(r) => Check::Pending(r.summary()),
                Err(e) => Check::Pending(e.to_string()),
            }
        }
    })
    .await
    .map_err(|e| anyhow!("{e:#}\n{}", envoy.log_tail(30)))?;
    assert_eq!(body, "hello from envoy");
    let stats = envoy.stats().await?;
    assert_eq!(stats.get("server.concurrency"), Some(&1), "--concurrency 1");
    assert!(stats.contains_key("http.test.downstream_rq_total"));
    drop(envoy);
    assert!(!pid_alive(pid));
    Ok(())
}

#[test]
fn wayguard_binary_is_built_and_found() -> Result<()> {
    let bin = wayguard_tests::wayguard::binary()?;
    let out = std::process::Command::new(&bin).arg("--version").output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
