//! HTTP(S) client for requests through Envoy (reqwest + rustls with the ring provider).
//!
//! The workspace builds reqwest with `rustls-no-provider`, so every client gets a rustls
//! `ClientConfig` built here; proxies from the environment are ignored (loopback only).

use std::collections::BTreeMap;
use std::sync::{Arc, Once};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::RootCertStore;

use crate::echo::EchoRequest;
use crate::pki::{CertKey, Pki};

/// Installs rustls' ring provider as the process default (idempotent).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn tls_config(roots: RootCertStore, identity: Option<&CertKey>) -> Result<rustls::ClientConfig> {
    install_crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("rustls protocol versions")?
    .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(vec![id.cert_der()], id.key_der())
            .context("client certificate")?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Req {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Path and query, appended to the client's base URL.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

impl Req {
    /// A request with `method` to `path`.
    pub fn new(method: reqwest::Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_string(),
            headers: Vec::new(),
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new(reqwest::Method::GET, path)
    }

    /// `POST path`.
    pub fn post(path: &str) -> Self {
        Self::new(reqwest::Method::POST, path)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    pub fn cors_preflight(path: &str, origin: &str) -> Self {
        Self::new(reqwest::Method::OPTIONS, path)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
    }

    /// A one-line description for failure messages; JWTs are summarized by their claims.
    pub fn describe(&self) -> String {
        let mut text = format!("{} {}", self.method, self.path);
        for (name, value) in &self.headers {
            let token = value.strip_prefix("Bearer ").unwrap_or(value);
            let shown = describe_jwt(token).unwrap_or_else(|| value.clone());
            text.push_str(&format!(" [{name}: {shown}]"));
        }
        text
    }
}

/// `jwt{kid=..., claims}` for a decodable JWT (signature not checked), else `None`.
pub fn describe_jwt(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (header, payload) = (parts.next()?, parts.next()?);
    let decode = |s: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
    };
    let header = decode(header)?;
    let payload = decode(payload)?;
    Some(format!(
        "jwt(kid={} claims={payload})",
        header
            .get("kid")
            .map(ToString::to_string)
            .unwrap_or_default()
    ))
}

/// A response (status, lower-case headers, body).
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers, lower-case names, repeated ones joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// Body as text.
    pub body: String,
}

impl Resp {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The echo backend's view of the request (fails if the body is not an echo).
    pub fn echo(&self) -> Result<EchoRequest> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("not an echo body (status {}): {}", self.status, self.body))
    }

    /// Status and a shortened body, for messages.
    pub fn summary(&self) -> String {
        let body: String = self.body.chars().take(300).collect();
        format!("{} {:?}", self.status, body)
    }
}

/// An HTTP client for one base URL.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    base: String,
}

impl HttpClient {
    fn build(base: String, config: rustls::ClientConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .use_preconfigured_tls(config)
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            // Tests look at redirects as Envoy sends them.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        Ok(Self { client, base })
    }

    /// Plain HTTP to `base` (e.g. `http://127.0.0.1:10080`).
    pub fn plain(base: &str) -> Result<Self> {
        Self::build(base.to_string(), tls_config(RootCertStore::empty(), None)?)
    }

    /// HTTPS to `base`, trusting `pki`'s CA, presenting `identity` when given.
    pub fn tls(base: &str, pki: &Pki, identity: Option<&CertKey>) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_der()).context("adding the test CA")?;
        Self::build(base.to_string(), tls_config(roots, identity)?)
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `req`. `Err` is a transport failure (refused, TLS handshake, timeout) with the
    /// whole error chain in its message.
    pub async fn send(&self, req: &Req) -> Result<Resp> {
        let url = format!("{}{}", self.base, req.path);
        let mut builder = self.client.request(req.method.clone(), &url);
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let response = builder.send().await.map_err(|e| anyhow!(chain(&e)))?;
        let status = response.status().as_u16();
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_string())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let body = response.text().await.map_err(|e| anyhow!(chain(&e)))?;
        Ok(Resp {
            status,
            headers,
            body,
        })
    }
}

/// An error and all its sources on one line.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A blocking `GET` on loopback (usable in `Drop`), body only.
pub fn blocking_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let addr = crate::ports::loopback(port);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return Some(String::from_utf8_lossy(body).into_owned());
    }
    // De-chunk: "<hex size>\r\n<data>\r\n" ... "0\r\n\r\n".
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).ok()?;
        let data = rest.get(eol + 2..eol + 2 + size)?;
        if size == 0 {
            break;
        }
        out.extend_from_slice(data);
        rest = rest.get(eol + 2 + size + 2..)?;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}
