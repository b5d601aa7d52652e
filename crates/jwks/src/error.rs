//! Error types.

use std::time::Duration;

use crate::InvalidJwks;
use crate::ssrf::Blocked;

/// Why one fetch (discovery and/or JWKS) failed. Every variant names the URL involved, so the
/// message can go as-is into a `JwksResolved` condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL does not parse.
    #[error("invalid URL {uri:?}: {reason}")]
    InvalidUrl {
        /// The offending URL.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The SSRF guard refused the URL, a redirect target or every resolved address.
    #[error("fetching {uri}: {blocked}")]
    Blocked {
        /// The URL that was requested (the first hop).
        uri: String,
        /// What was refused.
        blocked: Blocked,
    },
    /// The request did not complete within the timeout.
    #[error("fetching {uri}: timed out after {timeout:?}")]
    Timeout {
        /// The URL requested.
        uri: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// Connection, TLS, protocol or redirect failure.
    #[error("fetching {uri}: {detail}")]
    Request {
        /// The URL requested.
        uri: String,
        /// The error and its causes.
        detail: String,
    },
    /// The server answered with a non-2xx status.
    #[error("fetching {uri}: HTTP {status}: {body:?}")]
    Status {
        /// The URL requested.
        uri: String,
        /// The HTTP status code.
        status: u16,
        /// At most the first 100 characters of the response body.
        body: String,
    },
    /// The body exceeded the size limit (checked while streaming).
    #[error("fetching {uri}: response body exceeds {limit} bytes")]
    TooLarge {
        /// The URL requested.
        uri: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The OIDC discovery document is unusable.
    #[error("OIDC discovery at {uri}: {reason}")]
    Discovery {
        /// The discovery URL.
        uri: String,
        /// What is wrong with the document.
        reason: String,
    },
    /// The body is not an acceptable JWKS.
    #[error("invalid JWKS from {uri}: {source}")]
    InvalidJwks {
        /// The JWKS URL.
        uri: String,
        /// What is wrong with the body.
        #[source]
        source: InvalidJwks,
    },
}

/// Why a resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The extra CA file could not be read.
    #[error("reading extra CA file {path}: {source}")]
    ReadCa {
        /// The file.
        path: String,
        /// The I/O or PEM error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The extra CA file holds no certificate.
    #[error("extra CA file {path} holds no PEM certificate")]
    EmptyCa {
        /// The file.
        path: String,
    },
    /// rustls refused the configuration or a certificate.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// reqwest could not build the client.
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}
