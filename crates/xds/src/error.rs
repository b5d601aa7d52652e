//! Error types of this crate.

use tonic::Status;

/// Errors from [`SnapshotCache::set`](crate::SnapshotCache::set).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Two resources of the same type share a name; the translator must produce unique names.
    #[error("gateway {key}: duplicate {type_url} resource named {name:?}")]
    DuplicateResource {
        /// The cache key.
        key: String,
        /// The type URL of both resources.
        type_url: String,
        /// The shared name.
        name: String,
    },
}

/// Protocol errors that end an ADS stream.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// A request without a `type_url` (required on aggregated streams).
    #[error("request has no type_url (required on an aggregated ADS stream)")]
    MissingTypeUrl,
}

impl From<ConnectionError> for Status {
    fn from(error: ConnectionError) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

/// Errors of the gRPC server itself.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the listen address failed.
    #[error("binding the xDS address {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The tonic transport failed.
    #[error("xDS gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Why [`ConnectionRegistry::wait_acked`](crate::ConnectionRegistry::wait_acked) gave up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AckWaitError {
    /// A client rejected a response for the awaited (or a later) snapshot.
    #[error("node {node_id:?} NACKed {type_url} version {version}: {message}")]
    Nacked {
        /// The rejecting node's id.
        node_id: String,
        /// The rejected type.
        type_url: String,
        /// The rejected version.
        version: String,
        /// Envoy's error message.
        message: String,
    },
}
