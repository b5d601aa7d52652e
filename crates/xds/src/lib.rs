//! wayguard-xds: the snapshot cache, the sans-I/O ADS state machines (SotW and Delta) and the
//! tonic `AggregatedDiscoveryService` that pushes configuration to stock Envoy.
//!
//! Typical wiring in a binary:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use prometheus_client::registry::Registry;
//! use wayguard_xds::{Metrics, Resource, SnapshotCache, XdsServer};
//!
//! let mut registry = Registry::default();
//! let metrics = Metrics::register(registry.sub_registry_with_prefix("xds"));
//! let cache = SnapshotCache::new();
//! let server = XdsServer::new(cache.clone(), metrics);
//! let connections = server.registry().clone(); // for /debug/connections
//!
//! let resources: Vec<Resource> = Vec::new(); // from the translator
//! cache.set("default/gateway", resources)?;
//!
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! server.serve("0.0.0.0:15010".parse()?, shutdown).await?;
//! # let _ = connections.snapshot();
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod cache;
mod canonical;
mod common;
mod delta;
mod error;
mod grpc;
mod metrics;
mod names;
mod registry;
mod resource;
mod server;
mod snapshot;
mod sotw;
mod version;

#[cfg(test)]
mod test_util;

pub use cache::{SetOutcome, SnapshotCache, SnapshotWatch};
pub use canonical::register_any_type;
pub use delta::DeltaConnection;
pub use error::{AckWaitError, CacheError, ConnectionError, ServeError};
pub use grpc::{AdsServer, SERVICE_NAME};
pub use metrics::Metrics;
pub use registry::{
    ConnectionHandle, ConnectionId, ConnectionRegistry, ConnectionStatus, Mode, NackStatus,
    SyncState, TypeStatus,
};
pub use resource::{NamedResource, Resource, XdsMessage, type_url};
pub use server::{
    AdsService, DEFAULT_MAX_MESSAGE_SIZE, GATEWAY_METADATA_KEY, GatewayMetadataKey, NodeKey,
    XdsServer,
};
pub use snapshot::{Snapshot, TypeResources, VersionedResource};
pub use sotw::SotwConnection;
pub use version::{Version, VersionClock};

#[cfg(test)]
mod bench_tests;
