//! Immutable per-gateway snapshots of versioned resources.

use std::{collections::BTreeMap, sync::Arc};

use tokio::time::Instant;

use crate::{Resource, Version};

/// A resource together with the version it got when its content last changed.
#[derive(Clone, Debug)]
pub struct VersionedResource {
    /// Version of this resource's content; unchanged content keeps its version across `set`s.
    pub version: Version,
    /// The resource (shared with earlier snapshots while unchanged).
    pub resource: Arc<Resource>,
}

/// All resources of one type in a snapshot.
#[derive(Clone, Debug)]
pub struct TypeResources {
    pub(crate) version: Version,
    pub(crate) resources: BTreeMap<String, VersionedResource>,
}

/// An immutable set of resources for one cache key (one gateway), grouped by type URL.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub(crate) key: String,
    pub(crate) version: Version,
    pub(crate) created_at: Instant,
    pub(crate) types: BTreeMap<String, TypeResources>,
}

// === impl TypeResources ===

impl TypeResources {
    /// Version of the last change to any resource of this type (added, changed or removed).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The resources, by name.
    pub fn resources(&self) -> &BTreeMap<String, VersionedResource> {
        &self.resources
    }

    /// Looks up one resource by name.
    pub fn get(&self, name: &str) -> Option<&VersionedResource> {
        self.resources.get(name)
    }

    /// Number of resources.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether there are no resources of this type.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// The cache key (gateway id, `"namespace/name"`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Version of this snapshot; bumps only when some resource actually changed.
    pub fn version(&self) -> Version {
        self.version
    }

    /// When this snapshot was published (start of the push-latency measurement).
    pub fn created_at(&self) -> Instant {
        self.created_at
    }

    /// The resources of one type, if the snapshot has (or had) any of that type.
    pub fn resources(&self, type_url: &str) -> Option<&TypeResources> {
        self.types.get(type_url)
    }

    /// The type URLs this snapshot knows about (types that became empty stay listed).
    pub fn type_urls(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// The version clients see for a type: the type's last change, or the snapshot version for a
    /// type the snapshot never had (its content is empty, which is unique enough).
    pub fn type_version(&self, type_url: &str) -> Version {
        self.types.get(type_url).map_or(self.version, |t| t.version)
    }

    /// One resource by type and name.
    pub fn get(&self, type_url: &str, name: &str) -> Option<&VersionedResource> {
        self.types.get(type_url)?.resources.get(name)
    }

    /// Total number of resources over all types.
    pub fn len(&self) -> usize {
        self.types.values().map(TypeResources::len).sum()
    }

    /// Whether the snapshot holds no resources at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
