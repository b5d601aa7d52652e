//! A loopback echo backend: answers every request with 200 and a JSON description of it.
//!
//! Body: `{"method": "GET", "path": "/x", "query": "a=1", "headers": {"name": "value", ...}}`
//! with lower-case header names (repeated headers joined with `", "`). Tests read it through
//! Envoy to see what reached the backend (forwarded tokens, claim headers, stripped headers).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Json};
use serde::{Deserialize, Serialize};

use crate::server::LoopbackServer;

/// What the echo backend saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Request headers, lower-case names; repeated headers joined with `", "`.
    pub headers: BTreeMap<String, String>,
}

impl EchoRequest {
    /// The value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// The running echo backend.
#[derive(Debug)]
pub struct EchoBackend {
    server: LoopbackServer,
    requests: Arc<AtomicU64>,
}

async fn echo(State(count): State<Arc<AtomicU64>>, request: Request) -> impl IntoResponse {
    count.fetch_add(1, Ordering::SeqCst);
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    Json(EchoRequest {
        method: request.method().as_str().to_string(),
        path: request.uri().path().to_string(),
        query: request.uri().query().map(str::to_string),
        headers,
    })
}

impl EchoBackend {
    /// Starts the backend on a free loopback port.
    pub async fn start() -> Result<Self> {
        let requests = Arc::new(AtomicU64::new(0));
        let router = Router::new().fallback(echo).with_state(requests.clone());
        let server = LoopbackServer::start(router, 0).await?;
        Ok(Self { server, requests })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// How many requests reached the backend.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}
