//! The server builder on loopback: plaintext and TLS HTTP, peer info, handshake timeout, drain.

use std::time::Duration;

use axum::Extension;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::drain::DrainTrigger;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn router() -> axum::Router {
    axum::Router::new().route(
        "/peer",
        get(|Extension(peer): Extension<PeerInfo>| async move {
            format!(
                "{} certs={}",
                peer.remote.ip(),
                peer.certificates.map_or(0, |c| c.len())
            )
        }),
    )
}

/// One HTTP/1.1 request over `io`; the whole response as text.
async fn get_over<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    io.write_all(request.as_bytes()).await.expect("write");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), io.read_to_string(&mut out))
        .await
        .expect("response within 10s")
        .expect("read");
    out
}

#[tokio::test]
async fn http_requests_carry_the_peer_and_drain_stops_the_server() {
    let server = ServerConfig::new("test", "--test-address", loopback(), Limits::http())
        .bind()
        .await
        .expect("bind");
    let addr = server.local_addr();
    let trigger = DrainTrigger::new();
    let task = tokio::spawn(server.serve_http(router(), trigger.watcher()));

    let response = get_over(TcpStream::connect(addr).await.expect("connect"), "/peer").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("127.0.0.1 certs=0"), "{response}");

    trigger.start();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops within 10s")
        .expect("join")
        .expect("serve");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed after the drain"
    );
}

#[tokio::test]
async fn a_busy_port_names_the_flag() {
    let first = ServerConfig::new("a", "--a-address", loopback(), Limits::http())
        .bind()
        .await
        .expect("bind");
    let err = ServerConfig::new("b", "--b-address", first.local_addr(), Limits::http())
        .bind()
        .await
        .expect_err("in use");
    let text = format!("{err:#}");
    assert!(
        text.starts_with(&format!("binding --b-address {}", first.local_addr())),
        "{text}"
    );
}

struct Pki {
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
}

/// A CA, a server certificate for `localhost` and a client certificate, all from the CA; the
/// server asks for (and does not require) a client certificate.
fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let issue = |names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("sign");
        (
            cert.der().clone(),
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    let roots = Arc::new(roots);
    let (server_cert, server_key) = issue(vec!["localhost".into()]);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .expect("verifier");
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server_cert], server_key)
        .expect("server config");
    let (client_cert, client_key) = issue(vec!["client.example".into()]);
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client_cert], client_key)
        .expect("client config");
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Pki { server, client }
}

#[tokio::test]
async fn tls_serves_and_exposes_the_client_certificate_and_a_silent_client_is_dropped() {
    let Pki { server, client } = pki();
    let mut limits = Limits::http();
    limits.handshake_timeout = Duration::from_millis(300);
    let server = ServerConfig::new("tls", "--tls-address", loopback(), limits)
        .with_tls(Arc::new(server))
        .bind()
        .await
        .expect("bind");
    let addr = server.local_addr();
    let trigger = DrainTrigger::new();
    let task = tokio::spawn(server.serve_http(router(), trigger.watcher()));

    // A client that connects and never starts the handshake holds nothing for long, and does
    // not stop others from being served meanwhile.
    let mut silent = TcpStream::connect(addr).await.expect("connect");

    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let response = get_over(tls, "/peer").await;
    assert!(response.ends_with("127.0.0.1 certs=1"), "{response}");

    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("the silent connection is closed within 10s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // Plaintext on the TLS port gets no HTTP answer.
    let plain = get_over(TcpStream::connect(addr).await.expect("connect"), "/peer").await;
    assert!(!plain.contains("200"), "{plain}");

    trigger.start();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("join")
        .expect("serve");
}
