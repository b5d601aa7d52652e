//! wayguard's API layer: the CRD types it serves and reads, their status types, decoding of
//! Kubernetes-style documents, CRD generation and validation.
//!
//! Validation lives here, in one place, and is used by the Kubernetes controller, the file
//! source and `wayguard validate` alike.

pub mod crd;
pub mod duration;
pub mod istio;
pub mod mesh;
pub mod resource;
pub mod solo;
pub mod status;
pub mod validation;

pub use gateway_api;
pub use k8s_openapi;
pub use resource::{Kind, ObjectRef, Resource};
