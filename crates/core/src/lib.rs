//! wayguard's validated domain model: plain Rust types with no kube, tonic, envoy-types or
//! reqwest. The index builds it from API objects; translate turns it into Envoy config.

pub mod attr;
pub mod authn;
pub mod authz;
pub mod gateway;
pub mod login;
pub mod routing;

pub use gateway::GatewayId;
