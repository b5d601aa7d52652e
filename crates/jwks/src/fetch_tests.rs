//! Real-socket tests of the HTTP fetcher against a loopback axum server (real clock; nothing
//! here sleeps to wait: the only waits are the fetcher's own timeouts).

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tokio::sync::oneshot;

use super::*;
use crate::KeySet;

pub(crate) const VALID: &str = r#"{"keys":[{"kty":"RSA","kid":"k1","n":"AQAB","e":"AQAB"}]}"#;

/// A loopback HTTP server, stopped when dropped.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and serves the router `app` builds for that address.
    pub(crate) async fn start(app: impl FnOnce(SocketAddr) -> Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = app(addr);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self { addr, _stop: stop }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn endless_body() -> Body {
    let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
    let stream = futures::stream::repeat_with(move || Ok::<_, Infallible>(chunk.clone()));
    Body::from_stream(stream)
}

fn app() -> Router {
    Router::new()
        .route("/jwks", get(|| async { VALID }))
        .route(
            "/html",
            get(|| async { "<!doctype html><html><body>Sign in</body></html>" }),
        )
        .route("/empty-object", get(|| async { "{}" }))
        .route("/keys-number", get(|| async { r#"{"keys": 5}"# }))
        .route("/keys-empty", get(|| async { r#"{"keys": []}"# }))
        .route(
            "/truncated",
            get(|| async { r#"{"keys":[{"kty":"RSA","kid":"k1","n":"AQ"# }),
        )
        .route(
            "/missing-n",
            get(|| async { r#"{"keys":[{"kty":"RSA","kid":"k1","e":"AQAB"}]}"# }),
        )
        .route("/big", get(|| async { " ".repeat(2 * 1024 * 1024) }))
        .route("/endless", get(|| async { endless_body() }))
        .route(
            "/error",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "é".repeat(300)) }),
        )
        .route(
            "/redirect-metadata",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
        )
        .route(
            "/redirect-metadata-v6",
            get(|| async { Redirect::to("http://[fd00:ec2::254]/latest/meta-data/") }),
        )
        .route(
            "/redirect-file",
            get(|| async { Redirect::to("file:///etc/passwd") }),
        )
        .route("/redirect-ok", get(|| async { Redirect::to("/jwks") }))
        .route("/loop", get(|| async { Redirect::to("/loop") }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                VALID
            }),
        )
}

fn discovery(jwks_uri: String) -> axum::routing::MethodRouter {
    get(move || async move {
        (
            [(header::CONTENT_TYPE, "application/json")],
            format!(r#"{{"issuer":"x","jwks_uri":"{jwks_uri}"}}"#),
        )
            .into_response()
    })
}

async fn server() -> TestServer {
    TestServer::start(|addr| {
        app()
            .route(
                "/good/.well-known/openid-configuration",
                discovery(format!("http://{addr}/jwks")),
            )
            .route(
                "/evil/.well-known/openid-configuration",
                discovery("http://169.254.169.254/keys".to_owned()),
            )
            .route(
                "/nojwks/.well-known/openid-configuration",
                get(|| async { Response::new(Body::from(r#"{"issuer":"x"}"#)) }),
            )
    })
    .await
}

fn fetcher() -> HttpFetcher {
    HttpFetcher::new(&HttpConfig {
        use_env_proxy: false,
        ..HttpConfig::default()
    })
    .unwrap()
}

fn req(uri: &str) -> FetchRequest {
    FetchRequest {
        issuer: "https://issuer.example".to_owned(),
        jwks_uri: Some(uri.to_owned()),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn fetches_a_valid_jwks() {
    let server = server().await;
    let fetched = fetcher().fetch(req(&server.url("/jwks"))).await.unwrap();
    assert_eq!(fetched.jwks_uri, server.url("/jwks"));
    assert_eq!(&fetched.body[..], VALID.as_bytes());
    // Through a host name too: localhost passes the resolver's SSRF filter.
    let by_name = format!("http://localhost:{}/jwks", server.addr.port());
    assert!(fetcher().fetch(req(&by_name)).await.is_ok());
}

#[tokio::test]
async fn bad_bodies_of_every_kind_are_rejected_by_validation() {
    let server = server().await;
    let cases = [
        ("/html", "not valid JSON"),
        ("/empty-object", "no \"keys\" member"),
        ("/keys-number", "must be an array"),
        ("/keys-empty", "no usable public key"),
        ("/truncated", "not valid JSON"),
        ("/missing-n", "missing \"n\""),
    ];
    for (path, expected) in cases {
        // The fetcher returns the body; validation (as the resolver runs it) rejects it.
        let fetched = fetcher().fetch(req(&server.url(path))).await.unwrap();
        let err = KeySet::parse(&fetched.body).unwrap_err();
        assert!(err.to_string().contains(expected), "{path}: {err}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_by_length_and_while_streaming() {
    let server = server().await;
    for path in ["/big", "/endless"] {
        let err = fetcher().fetch(req(&server.url(path))).await.unwrap_err();
        assert_eq!(
            err,
            FetchError::TooLarge {
                uri: server.url(path),
                limit: 1024 * 1024
            },
            "{path}"
        );
    }
}

#[tokio::test]
async fn non_2xx_quotes_at_most_100_chars_of_the_body() {
    let server = server().await;
    let err = fetcher()
        .fetch(req(&server.url("/error")))
        .await
        .unwrap_err();
    let FetchError::Status { status, body, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*status, 503);
    assert_eq!(body.chars().count(), 100);
    assert!(err.to_string().contains(&server.url("/error")), "{err}");
}

#[tokio::test]
async fn a_redirect_to_a_metadata_address_is_refused() {
    let server = server().await;
    for (path, target) in [
        ("/redirect-metadata", "169.254.169.254"),
        ("/redirect-metadata-v6", "fd00:ec2::254"),
    ] {
        let err = fetcher().fetch(req(&server.url(path))).await.unwrap_err();
        let FetchError::Blocked { blocked, uri } = &err else {
            panic!("{path}: {err}");
        };
        assert_eq!(uri, &server.url(path));
        assert_eq!(blocked.target, target, "{err}");
    }
    // reqwest does not even offer a non-http(s) redirect to the policy: the 3xx is the answer.
    let err = fetcher()
        .fetch(req(&server.url("/redirect-file")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 303, .. }),
        "{err}"
    );
    // A redirect to an allowed place is followed.
    let ok = fetcher()
        .fetch(req(&server.url("/redirect-ok")))
        .await
        .unwrap();
    assert_eq!(&ok.body[..], VALID.as_bytes());
    let err = fetcher()
        .fetch(req(&server.url("/loop")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("redirect"), "{err}");
}

#[tokio::test]
async fn literal_blocked_ips_are_refused_before_connecting() {
    for uri in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/jwks",
        "http://100.100.100.200/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ] {
        let err = fetcher().fetch(req(uri)).await.unwrap_err();
        assert!(matches!(err, FetchError::Blocked { .. }), "{uri}: {err}");
    }
    let err = fetcher()
        .fetch(req("ftp://idp.example/jwks"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Blocked { .. }), "{err}");
    let err = fetcher().fetch(req("not a url")).await.unwrap_err();
    assert!(matches!(err, FetchError::InvalidUrl { .. }), "{err}");
}

#[tokio::test]
async fn extra_blocked_cidrs_apply_to_literals_and_to_resolved_names() {
    let server = server().await;
    let fetcher = HttpFetcher::new(&HttpConfig {
        use_env_proxy: false,
        blocked_cidrs: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        ..HttpConfig::default()
    })
    .unwrap();
    let err = fetcher.fetch(req(&server.url("/jwks"))).await.unwrap_err();
    assert!(matches!(err, FetchError::Blocked { .. }), "{err}");
    let by_name = format!("http://localhost:{}/jwks", server.addr.port());
    let err = fetcher.fetch(req(&by_name)).await.unwrap_err();
    let FetchError::Blocked { blocked, .. } = &err else {
        panic!("{err}");
    };
    assert!(blocked.target.starts_with("localhost"), "{err}");
}

#[tokio::test]
async fn oidc_discovery_reads_jwks_uri() {
    let server = server().await;
    let fetched = fetcher()
        .fetch(FetchRequest {
            issuer: server.url("/good/"),
            jwks_uri: None,
            timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
    assert_eq!(fetched.jwks_uri, server.url("/jwks"));
    assert_eq!(&fetched.body[..], VALID.as_bytes());
}

#[tokio::test]
async fn oidc_discovery_failures() {
    let server = server().await;
    let discover = |issuer: String| {
        fetcher().fetch(FetchRequest {
            issuer,
            jwks_uri: None,
            timeout: Duration::from_secs(5),
        })
    };
    // The SSRF guard applies to the second hop.
    let err = discover(server.url("/evil")).await.unwrap_err();
    assert!(matches!(err, FetchError::Blocked { .. }), "{err}");
    let err = discover(server.url("/nojwks")).await.unwrap_err();
    assert!(matches!(err, FetchError::Discovery { .. }), "{err}");
    let err = discover(server.url("/missing")).await.unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 404, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn slow_servers_time_out() {
    let server = server().await;
    let err = fetcher()
        .fetch(FetchRequest {
            timeout: Duration::from_millis(200),
            ..req(&server.url("/slow"))
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        FetchError::Timeout {
            uri: server.url("/slow"),
            timeout: Duration::from_millis(200)
        }
    );
}

#[tokio::test]
async fn connection_errors_name_the_uri() {
    // Bind and drop to get a port nobody listens on.
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let uri = format!("http://127.0.0.1:{port}/jwks");
    let err = fetcher().fetch(req(&uri)).await.unwrap_err();
    let FetchError::Request { uri: got, detail } = &err else {
        panic!("{err}");
    };
    assert_eq!(got, &uri);
    assert!(!detail.is_empty());
}

#[test]
fn extra_ca_file_is_loaded_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = HttpFetcher::new(&HttpConfig {
        extra_ca_pem: Some(missing),
        ..HttpConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, BuildError::ReadCa { .. }), "{err}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").unwrap();
    let err = HttpFetcher::new(&HttpConfig {
        extra_ca_pem: Some(empty),
        ..HttpConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, BuildError::EmptyCa { .. }), "{err}");
}
