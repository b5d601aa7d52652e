//! Minimal loopback HTTP/1.1: a keep-alive client connection, one-shot GETs (admin endpoints)
//! and the backend every generated route points to.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    authority: String,
}

impl Conn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {addr}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            authority: addr.to_string(),
        })
    }

    /// Whether the connection can take another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends a GET and returns the status and body.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<(u16, Bytes)> {
        self.sender.ready().await.context("connection not ready")?;
        let mut req = http::Request::get(path).header(http::header::HOST, &self.authority);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Empty::new()).context("building the request")?;
        let resp = self.sender.send_request(req).await.context("request")?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading the body")?;
        Ok((status, body.to_bytes()))
    }
}

/// One GET on a fresh connection, bounded by `timeout`.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, Bytes)> {
    let fut = async {
        let mut conn = Conn::connect(addr).await?;
        conn.get(path, &[]).await
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result,
        Err(_) => bail!("GET http://{addr}{path}: no answer within {timeout:?}"),
    }
}

/// The backend: answers every request with `200 ok`. Runs until the runtime stops.
pub async fn spawn_backend() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the backend")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        b"ok\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
