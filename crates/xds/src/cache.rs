//! The snapshot cache: one versioned [`Snapshot`] per gateway, change notification per key.

use std::{
    collections::{BTreeMap, HashMap, btree_map::Entry},
    sync::Arc,
};

use parking_lot::Mutex;
use tokio::{sync::watch, time::Instant};

use crate::{
    Resource, Version, VersionClock,
    error::CacheError,
    snapshot::{Snapshot, TypeResources, VersionedResource},
};

/// Holds the current snapshot of every gateway and notifies the connections serving it.
///
/// Cheap to clone (all clones share state). `set` diffs by typed equality: unchanged resources
/// keep their `Arc`, version and encoded bytes; a `set` that changes nothing notifies nobody.
#[derive(Clone, Debug)]
pub struct SnapshotCache {
    inner: Arc<Inner>,
}

/// What a [`SnapshotCache::set`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetOutcome {
    /// The snapshot version now current for the key (the previous one if nothing changed).
    pub version: Version,
    /// Whether anything changed (and so whether the key's clients were notified).
    pub changed: bool,
    /// Type URLs whose resources changed, in URL order.
    pub changed_types: Vec<String>,
}

/// A subscription to one key's snapshots, used by a connection.
///
/// The value is `None` until the first `set` for the key (and after `remove`); a connection then
/// sends nothing, so a reconnecting Envoy keeps its last config while the control plane warms up.
#[derive(Debug)]
pub struct SnapshotWatch {
    rx: watch::Receiver<Option<Arc<Snapshot>>>,
    key: String,
    cache: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    clock: VersionClock,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

#[derive(Debug)]
struct Slot {
    /// Serializes writers of this key so each `set` diffs against the one before it.
    write: Mutex<()>,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
}

// === impl SnapshotCache ===

impl SnapshotCache {
    /// A cache with a fresh boot epoch (see [`VersionClock::new`]).
    pub fn new() -> Self {
        Self::with_clock(VersionClock::new())
    }

    /// A cache minting versions from `clock`.
    pub fn with_clock(clock: VersionClock) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Replaces the resources of `key` with `resources` (all types at once).
    ///
    /// Resources equal (`PartialEq` on the typed message) to the previous snapshot's keep their
    /// version; new and changed ones, and every type that gained, changed or lost a resource, get
    /// a fresh version. If nothing changed, the
    /// previous snapshot stays and no client is notified.
    ///
    /// A type present before and absent now is kept as an empty type, so wildcard clients are
    /// told its resources are gone. To make a gateway's Envoys drop everything, `set` it empty.
    pub fn set(
        &self,
        key: &str,
        resources: impl IntoIterator<Item = Resource>,
    ) -> Result<SetOutcome, CacheError> {
        let mut grouped: BTreeMap<String, BTreeMap<String, Resource>> = BTreeMap::new();
        for resource in resources {
            let names = grouped.entry(resource.type_url().to_owned()).or_default();
            match names.entry(resource.name().to_owned()) {
                Entry::Vacant(v) => {
                    v.insert(resource);
                }
                Entry::Occupied(o) => {
                    return Err(CacheError::DuplicateResource {
                        key: key.to_owned(),
                        type_url: resource.type_url().to_owned(),
                        name: o.key().clone(),
                    });
                }
            }
        }

        let slot = self.inner.slot(key);
        let _write = slot.write.lock();
        let previous = slot.tx.borrow().clone();
        let version = self.inner.clock.next();
        let (types, changed_types) = diff(previous.as_deref(), grouped, version);

        if changed_types.is_empty()
            && let Some(previous) = previous
        {
            return Ok(SetOutcome {
                version: previous.version,
                changed: false,
                changed_types,
            });
        }

        let snapshot = Arc::new(Snapshot {
            key: key.to_owned(),
            version,
            created_at: Instant::now(),
            types,
        });
        slot.tx.send_replace(Some(snapshot));
        Ok(SetOutcome {
            version,
            changed: true,
            changed_types,
        })
    }

    /// The current snapshot of `key`, if any.
    pub fn get(&self, key: &str) -> Option<Arc<Snapshot>> {
        let slots = self.inner.slots.lock();
        slots.get(key).and_then(|slot| slot.tx.borrow().clone())
    }

    /// Forgets `key`. Connected clients are told nothing: they keep their last config, and live
    /// connections keep answering from the last snapshot they saw. New connections for the key
    /// get no responses until it is `set` again (with all-new versions).
    pub fn remove(&self, key: &str) -> Option<Arc<Snapshot>> {
        let mut slots = self.inner.slots.lock();
        let slot = slots.get(key)?.clone();
        let _write = slot.write.lock();
        let previous = slot.tx.send_replace(None);
        if slot.tx.receiver_count() == 0 {
            slots.remove(key);
        }
        previous
    }

    /// Keys that currently have a snapshot, sorted.
    pub fn keys(&self) -> Vec<String> {
        let slots = self.inner.slots.lock();
        let mut keys: Vec<String> = slots
            .iter()
            .filter(|(_, slot)| slot.tx.borrow().is_some())
            .map(|(key, _)| key.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Subscribes to `key` (which need not exist yet).
    pub fn watch(&self, key: &str) -> SnapshotWatch {
        let rx = self.inner.slot(key).tx.subscribe();
        SnapshotWatch {
            rx,
            key: key.to_owned(),
            cache: self.inner.clone(),
        }
    }
}

impl Default for SnapshotCache {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Inner ===

impl Inner {
    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock();
        slots
            .entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Slot {
                    write: Mutex::new(()),
                    tx: watch::Sender::new(None),
                })
            })
            .clone()
    }
}

/// Builds the next snapshot's types from `previous` and the new resources; returns them and the
/// list of changed type URLs.
fn diff(
    previous: Option<&Snapshot>,
    mut grouped: BTreeMap<String, BTreeMap<String, Resource>>,
    version: Version,
) -> (BTreeMap<String, TypeResources>, Vec<String>) {
    let mut types = BTreeMap::new();
    let mut changed_types = Vec::new();

    // Types the previous snapshot had but the new one lacks become empty types.
    if let Some(previous) = previous {
        for type_url in previous.types.keys() {
            grouped.entry(type_url.clone()).or_default();
        }
    }

    for (type_url, new) in grouped {
        let old = previous.and_then(|p| p.types.get(&type_url));
        let mut changed = old.is_none_or(|old| old.resources.len() != new.len());
        let mut resources = BTreeMap::new();
        for (name, resource) in new {
            let kept = old
                .and_then(|old| old.resources.get(&name))
                .filter(|prev| prev.resource.same_content(&resource));
            let entry = match kept {
                Some(prev) => prev.clone(),
                None => {
                    changed = true;
                    VersionedResource {
                        version,
                        resource: Arc::new(resource),
                    }
                }
            };
            resources.insert(name, entry);
        }
        let type_version = match old {
            Some(old) if !changed => old.version,
            _ => version,
        };
        if changed {
            changed_types.push(type_url.clone());
        }
        types.insert(
            type_url,
            TypeResources {
                version: type_version,
                resources,
            },
        );
    }
    (types, changed_types)
}

// === impl SnapshotWatch ===

impl SnapshotWatch {
    /// The key this watch follows.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The current snapshot, marking it seen.
    pub fn current(&mut self) -> Option<Arc<Snapshot>> {
        self.rx.borrow_and_update().clone()
    }

    /// Whether a change arrived since the last [`Self::current`] or [`Self::changed`].
    pub fn has_changed(&self) -> bool {
        self.rx.has_changed().unwrap_or(false)
    }

    /// Waits until the key's snapshot changes (or is removed), then returns the new value.
    /// Intermediate values may be skipped: connections diff against what they sent, so only the
    /// latest matters. Never resolves once the cache is gone.
    pub async fn changed(&mut self) -> Option<Arc<Snapshot>> {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.rx.borrow_and_update().clone()
    }
}

impl Drop for SnapshotWatch {
    fn drop(&mut self) {
        // Drop an empty slot nobody else watches, so keys of departed Envoys do not accumulate.
        let mut slots = self.cache.slots.lock();
        if let Some(slot) = slots.get(&self.key)
            && slot.tx.borrow().is_none()
            && slot.tx.receiver_count() <= 1
        {
            slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
