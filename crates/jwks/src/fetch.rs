//! The HTTP side: OIDC discovery and JWKS download with TLS, limits and the SSRF guard.
//!
//! The resolver talks to the network only through the [`Fetch`] trait, so its scheduling is
//! tested with an in-memory fetcher on a paused clock, and [`HttpFetcher`] is tested against a
//! real loopback server.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipnet::IpNet;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use url::Url;

use crate::error::{BuildError, FetchError};
use crate::ssrf::{Blocked, SsrfGuard, SsrfResolver};

/// At most this many characters of a non-2xx body are quoted in the error.
const ERROR_BODY_CHARS: usize = 100;

/// What to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The issuer (used for OIDC discovery when `jwks_uri` is `None`).
    pub issuer: String,
    /// The configured JWKS URL; `None` means OIDC discovery.
    pub jwks_uri: Option<String>,
    /// Timeout for each HTTP request (discovery and JWKS each get the full timeout).
    pub timeout: Duration,
}

/// A fetched, not yet validated, JWKS body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The URL the body came from (after discovery, before redirects).
    pub jwks_uri: String,
    /// The raw body; the resolver validates it with [`crate::KeySet::parse`].
    pub body: Bytes,
}

/// A boxed, sendable future, as returned by [`Fetch::fetch`].
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Fetched, FetchError>> + Send + 'static>>;

/// The network side of the resolver. [`HttpFetcher`] is the real one; tests (here and in other
/// crates) can plug in an in-memory implementation.
pub trait Fetch: Send + Sync + 'static {
    /// Fetches the JWKS body for `req`: discovery first if `req.jwks_uri` is `None`.
    fn fetch(&self, req: FetchRequest) -> FetchFuture;
}

/// Configuration of [`HttpFetcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest accepted body, checked while streaming. Default 1 MiB.
    pub max_body_bytes: usize,
    /// PEM file with extra CA certificates, added to the platform roots (istiod:
    /// `/cacerts/extra.pem`). Default none.
    pub extra_ca_pem: Option<PathBuf>,
    /// Extra blocked ranges for the SSRF guard (istiod: `BLOCKED_CIDRS_IN_JWKS_URIS`).
    pub blocked_cidrs: Vec<IpNet>,
    /// Use `HTTP_PROXY` / `HTTPS_PROXY` / `ALL_PROXY` / `NO_PROXY` from the environment, as
    /// reqwest does by default and istiod does (`http.ProxyFromEnvironment`). Default true.
    /// Through a proxy, the proxy resolves host names, so the post-resolution SSRF check only
    /// covers literal IPs and blocked host names; block the metadata ranges at the proxy too.
    pub use_env_proxy: bool,
    /// Maximum redirects followed (each hop is checked by the SSRF guard). Default 10.
    pub max_redirects: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            extra_ca_pem: None,
            blocked_cidrs: Vec::new(),
            use_env_proxy: true,
            max_redirects: 10,
        }
    }
}

/// Fetches JWKS over HTTP(S) with reqwest and rustls (ring provider).
///
/// TLS: TLS 1.2 and 1.3, the platform roots (`rustls-platform-verifier`; on Linux the system
/// CA bundle) plus `extra_ca_pem`; if the platform has no roots at all and no extra CA is given,
/// the Mozilla roots of `webpki-root-certs` are used instead. HTTP/1.1 only, no keep-alive
/// (like istiod: a fetch every 20 minutes gains nothing from pooled connections).
#[derive(Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
    guard: Arc<SsrfGuard>,
    max_body_bytes: usize,
}

impl std::fmt::Debug for HttpFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFetcher")
            .field("guard", &self.guard)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

// === impl HttpFetcher ===

impl HttpFetcher {
    /// Builds the client.
    pub fn new(config: &HttpConfig) -> Result<Self, BuildError> {
        let (builder, guard) = guarded_client(config)?;
        let client = builder
            .pool_max_idle_per_host(0)
            .http1_only()
            .user_agent(concat!("wayguard-jwks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError::Client)?;
        Ok(Self {
            client,
            guard,
            max_body_bytes: config.max_body_bytes,
        })
    }

    async fn fetch_inner(self, req: FetchRequest) -> Result<Fetched, FetchError> {
        let jwks_uri = match req.jwks_uri {
            Some(uri) => uri,
            None => self.discover(&req.issuer, req.timeout).await?,
        };
        let body = self.get(&jwks_uri, req.timeout).await?;
        Ok(Fetched { jwks_uri, body })
    }

    /// OIDC discovery: `GET <issuer without trailing '/'>/.well-known/openid-configuration`
    /// and read `jwks_uri`.
    async fn discover(&self, issuer: &str, timeout: Duration) -> Result<String, FetchError> {
        let uri = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let body = self.get(&uri, timeout).await?;
        let discovery_err = |reason: String| FetchError::Discovery {
            uri: uri.clone(),
            reason,
        };
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| discovery_err(format!("not valid JSON: {e}")))?;
        match doc.get("jwks_uri").and_then(serde_json::Value::as_str) {
            Some(jwks_uri) if !jwks_uri.is_empty() => Ok(jwks_uri.to_owned()),
            _ => Err(discovery_err(
                "no \"jwks_uri\" string in the document".to_owned(),
            )),
        }
    }

    /// One guarded GET with a timeout, a status check and a streaming size limit.
    async fn get(&self, uri: &str, timeout: Duration) -> Result<Bytes, FetchError> {
        let url = Url::parse(uri).map_err(|e| FetchError::InvalidUrl {
            uri: uri.to_owned(),
            reason: e.to_string(),
        })?;
        self.guard
            .check_url(&url)
            .map_err(|blocked| FetchError::Blocked {
                uri: uri.to_owned(),
                blocked,
            })?;
        let request = async {
            let resp = self
                .client
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| request_error(uri, &e))?;
            let status = resp.status();
            if !status.is_success() {
                let body = read_body(uri, resp, 4 * ERROR_BODY_CHARS, false).await?;
                let body: String = String::from_utf8_lossy(&body)
                    .chars()
                    .take(ERROR_BODY_CHARS)
                    .collect();
                return Err(FetchError::Status {
                    uri: uri.to_owned(),
                    status: status.as_u16(),
                    body,
                });
            }
            read_body(uri, resp, self.max_body_bytes, true).await
        };
        tokio::time::timeout(timeout, request)
            .await
            .unwrap_or_else(|_| {
                Err(FetchError::Timeout {
                    uri: uri.to_owned(),
                    timeout,
                })
            })
    }
}

impl Fetch for HttpFetcher {
    fn fetch(&self, req: FetchRequest) -> FetchFuture {
        Box::pin(self.clone().fetch_inner(req))
    }
}

/// Reads at most `limit` bytes. With `strict`, more is an error; otherwise the rest is ignored
/// (used to quote the start of an error body).
async fn read_body(
    uri: &str,
    mut resp: reqwest::Response,
    limit: usize,
    strict: bool,
) -> Result<Bytes, FetchError> {
    let too_large = || FetchError::TooLarge {
        uri: uri.to_owned(),
        limit,
    };
    if strict && resp.content_length().is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| request_error(uri, &e))? {
        if body.len() + chunk.len() > limit {
            if strict {
                return Err(too_large());
            }
            let room = limit - body.len();
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// The error a redirect hop to a refused destination produces (found again in the source chain).
#[derive(Debug, thiserror::Error)]
#[error("redirect refused: {0}")]
struct RedirectBlocked(Blocked);

/// Turns a reqwest error into a [`FetchError`], recognizing SSRF refusals anywhere in the
/// source chain (from the redirect policy or the resolver).
fn request_error(uri: &str, err: &reqwest::Error) -> FetchError {
    let mut detail = err.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(RedirectBlocked(blocked)) = cause.downcast_ref::<RedirectBlocked>() {
            return FetchError::Blocked {
                uri: uri.to_owned(),
                blocked: blocked.clone(),
            };
        }
        if let Some(blocked) = cause.downcast_ref::<Blocked>() {
            return FetchError::Blocked {
                uri: uri.to_owned(),
                blocked: blocked.clone(),
            };
        }
        let text = cause.to_string();
        if !detail.contains(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = cause.source();
    }
    FetchError::Request {
        uri: uri.to_owned(),
        detail,
    }
}

/// A reqwest client builder for fetches from identity providers, shared by every wayguard part
/// that calls one (JWKS, the login's discovery and token endpoint): TLS with the ring provider,
/// the platform roots plus `extra_ca_pem`, the SSRF guard on DNS answers and on every redirect
/// hop, at most `max_redirects` redirects, the environment's proxies unless disabled. Callers add
/// timeouts, pooling and their user agent.
pub fn guarded_client(
    config: &HttpConfig,
) -> Result<(reqwest::ClientBuilder, Arc<SsrfGuard>), BuildError> {
    let guard = Arc::new(SsrfGuard::new(config.blocked_cidrs.clone()));
    let tls = tls_config(config.extra_ca_pem.as_ref())?;
    let redirect_guard = guard.clone();
    let max_redirects = config.max_redirects;
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= max_redirects {
            return attempt.error(format!("more than {max_redirects} redirects"));
        }
        match redirect_guard.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(blocked) => attempt.error(RedirectBlocked(blocked)),
        }
    });
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .dns_resolver(SsrfResolver::new(guard.clone()))
        .redirect(redirects);
    if !config.use_env_proxy {
        builder = builder.no_proxy();
    }
    Ok((builder, guard))
}

/// rustls client configuration with the ring provider, platform roots and the extra CA file.
fn tls_config(extra_ca_pem: Option<&PathBuf>) -> Result<rustls::ClientConfig, BuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extra: Vec<CertificateDer<'static>> = Vec::new();
    if let Some(path) = extra_ca_pem {
        let display = path.display().to_string();
        for cert in CertificateDer::pem_file_iter(path).map_err(|source| BuildError::ReadCa {
            path: display.clone(),
            source,
        })? {
            extra.push(cert.map_err(|source| BuildError::ReadCa {
                path: display.clone(),
                source,
            })?);
        }
        if extra.is_empty() {
            return Err(BuildError::EmptyCa { path: display });
        }
    }

    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)?;
    let mut config = match rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra.iter().cloned(),
        provider.clone(),
    ) {
        Ok(verifier) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth(),
        Err(err) => {
            // Only reachable with no system roots and no extra CA: fall back to Mozilla's roots.
            tracing::warn!(%err, "no platform CA roots; using the built-in Mozilla roots");
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned(),
            );
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
pub(crate) mod tests;
