//! One server builder for every listener of the process (xDS + ALS, admin, ext_authz, STS):
//! listen address, optional TLS, HTTP/2 keepalive and limits, drain.
//!
//! - [`ServerConfig::bind`] binds at start-up, so a busy port fails the process with the flag
//!   that names it, before anything is served.
//! - Connections are accepted by one loop; TLS handshakes run concurrently with a timeout, so a
//!   client that connects and says nothing holds neither the accept loop nor memory for long.
//! - Every request carries a [`PeerInfo`] extension: the remote address and, on TLS, the client
//!   certificate chain (what proxy authentication reads).
//! - [`Server::serve_grpc`] serves tonic routes (any number of gRPC services on one port);
//!   [`Server::serve_http`] serves an axum router over HTTP/1.1 and HTTP/2. Both stop accepting
//!   when the drain starts and finish in-flight requests; long-lived streams end through the
//!   drain handle their service holds.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::drain::Drain;

/// HTTP/2 and connection limits of one server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Interval of HTTP/2 PINGs on idle connections (`None`: no keepalive pings).
    pub keepalive_interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Concurrent streams a client may open on one connection.
    pub max_concurrent_streams: Option<u32>,
    /// Largest header block accepted, in bytes.
    pub max_header_list_size: u32,
    /// How long a TLS handshake, or an HTTP/1 request head, may take.
    pub handshake_timeout: Duration,
    /// Pending connections (accepted, handshake not done) at once; more wait in the backlog.
    pub max_pending_handshakes: usize,
}

impl Limits {
    /// For long-lived ADS streams: a few streams per Envoy, keepalive to notice dead peers.
    pub fn xds() -> Self {
        Self {
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: Some(64),
            max_header_list_size: 16 * 1024,
            handshake_timeout: Duration::from_secs(10),
            max_pending_handshakes: 256,
        }
    }

    /// For unary RPCs multiplexed by Envoy on a few connections (ext_authz `Check`).
    pub fn rpc() -> Self {
        Self {
            max_concurrent_streams: Some(1024),
            ..Self::xds()
        }
    }

    /// For plain HTTP (admin, STS).
    pub fn http() -> Self {
        Self {
            keepalive_interval: None,
            max_concurrent_streams: Some(128),
            ..Self::xds()
        }
    }
}

/// What a server listens on and how.
#[derive(Clone)]
pub struct ServerConfig {
    /// Short name for logs (`xds`, `admin`, `extauth`, `sts`).
    pub name: &'static str,
    /// The flag that sets the address, for error messages (`--xds-address`).
    pub flag: &'static str,
    /// Listen address.
    pub address: SocketAddr,
    /// TLS (`None`: plaintext).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Limits.
    pub limits: Limits,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

impl ServerConfig {
    /// A plaintext server with `limits`.
    pub fn new(
        name: &'static str,
        flag: &'static str,
        address: SocketAddr,
        limits: Limits,
    ) -> Self {
        Self {
            name,
            flag,
            address,
            tls: None,
            limits,
        }
    }

    /// Serves TLS with `config` (ALPN `h2` and `http/1.1` are added when it has none).
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Binds the address.
    pub async fn bind(self) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(self.address)
            .await
            .with_context(|| format!("binding {} {}", self.flag, self.address))?;
        let local = listener
            .local_addr()
            .with_context(|| format!("{} {}: local address", self.flag, self.address))?;
        Ok(Server {
            config: self,
            listener,
            local,
        })
    }
}

/// A bound server, ready to serve.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    listener: TcpListener,
    local: SocketAddr,
}

/// Who is on the other end of a connection; an extension of every request.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The client's certificate chain (leaf first) when it presented one over TLS.
    pub certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// A plaintext or TLS connection.
pub enum Conn {
    /// Plaintext.
    Plain(TcpStream, SocketAddr),
    /// TLS.
    Tls(Box<TlsStream<TcpStream>>, SocketAddr),
}

impl Conn {
    /// The peer of this connection.
    pub fn peer(&self) -> PeerInfo {
        match self {
            Conn::Plain(_, remote) => PeerInfo {
                remote: *remote,
                certificates: None,
            },
            Conn::Tls(s, remote) => PeerInfo {
                remote: *remote,
                certificates: s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())),
            },
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s, _) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer()
    }
}

/// Accepts connections until the receiver is dropped or the drain starts; TLS handshakes run
/// concurrently, at most `max_pending_handshakes` at once.
async fn accept_loop(
    listener: TcpListener,
    config: ServerConfig,
    drain: Drain,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    let tls = config.tls.map(|c| {
        let mut c = (*c).clone();
        if c.alpn_protocols.is_empty() {
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        TlsAcceptor::from(Arc::new(c))
    });
    let limits = config.limits;
    let name = config.name;
    let mut handshakes = JoinSet::new();
    loop {
        let at_capacity = handshakes.len() >= limits.max_pending_handshakes;
        tokio::select! {
            biased;
            () = drain.signaled() => return,
            () = tx.closed() => return,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            accepted = listener.accept(), if !at_capacity => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    match &tls {
                        None => {
                            if tx.send(Ok(Conn::Plain(stream, remote))).await.is_err() {
                                return;
                            }
                        }
                        Some(acceptor) => {
                            let (acceptor, tx) = (acceptor.clone(), tx.clone());
                            let timeout = limits.handshake_timeout;
                            handshakes.spawn(async move {
                                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(s)) => {
                                        let _ = tx.send(Ok(Conn::Tls(Box::new(s), remote))).await;
                                    }
                                    Ok(Err(e)) => tracing::debug!(server = name, %remote, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(server = name, %remote, "TLS handshake timed out"),
                                }
                            });
                        }
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(server = name, error = %e, "accept failed; retrying in 50ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

impl Server {
    /// The address actually bound (tests bind port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    fn incoming(
        self,
        drain: &Drain,
    ) -> (ReceiverStream<io::Result<Conn>>, impl Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(16);
        let acceptor = accept_loop(self.listener, self.config, drain.clone(), tx);
        (ReceiverStream::new(rx), acceptor)
    }

    /// Serves gRPC `routes` until the drain starts, then finishes in-flight calls.
    pub async fn serve_grpc(
        self,
        routes: tonic::service::Routes,
        drain: Drain,
    ) -> anyhow::Result<()> {
        let (name, local, limits) = (self.config.name, self.local, self.config.limits.clone());
        tracing::info!(server = name, address = %local, tls = self.config.tls.is_some(), "serving gRPC");
        let (incoming, acceptor) = self.incoming(&drain);
        let mut builder = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(limits.keepalive_interval)
            .http2_keepalive_timeout(Some(limits.keepalive_timeout))
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_max_header_list_size(Some(limits.max_header_list_size));
        let server = builder
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, drain.signaled_owned());
        let (served, ()) = tokio::join!(server, acceptor);
        served.with_context(|| format!("{name} gRPC server on {local}"))?;
        tracing::info!(server = name, "stopped");
        Ok(())
    }

    /// Serves `router` over HTTP/1.1 and HTTP/2 until the drain starts, then finishes in-flight
    /// requests (the supervisor's deadline bounds how long).
    pub async fn serve_http(self, router: axum::Router, drain: Drain) -> anyhow::Result<()> {
        use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
        use hyper_util::server::conn::auto;
        use tokio_stream::StreamExt;

        let (name, local, limits) = (self.config.name, self.local, self.config.limits.clone());
        tracing::info!(server = name, address = %local, tls = self.config.tls.is_some(), "serving HTTP");
        let (mut incoming, acceptor) = self.incoming(&drain);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.handshake_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(limits.max_header_list_size)
            .keep_alive_interval(limits.keepalive_interval)
            .keep_alive_timeout(limits.keepalive_timeout);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let serve = async {
            loop {
                let conn = tokio::select! {
                    () = drain.signaled() => break,
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                    conn = incoming.next() => match conn {
                        Some(Ok(conn)) => conn,
                        Some(Err(e)) => {
                            tracing::debug!(server = name, error = %e, "connection failed");
                            continue;
                        }
                        None => break,
                    },
                };
                let peer = conn.peer();
                let router = router.clone();
                let service = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(peer.clone());
                        let mut router = router.clone();
                        async move {
                            let response = tower::Service::call(&mut router, req).await;
                            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                        }
                    },
                );
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(conn), service);
                let watched = graceful.watch(connection.into_owned());
                connections.spawn(async move {
                    if let Err(e) = watched.await {
                        tracing::debug!(server = name, error = %e, "HTTP connection ended with an error");
                    }
                });
            }
            drop(incoming);
            graceful.shutdown().await;
            connections.shutdown().await;
        };
        tokio::join!(serve, acceptor);
        tracing::info!(server = name, "stopped");
        Ok(())
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
