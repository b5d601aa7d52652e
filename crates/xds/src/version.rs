//! Snapshot and resource versions.
//!
//! A version is an `(epoch, counter)` pair. The epoch is fixed when a [`VersionClock`] is created
//! (wall-clock milliseconds in the high bits, random bits in the low bits), the counter is a
//! process-wide atomic. A restarted control plane therefore never reuses a version string that an
//! Envoy may already have ACKed with different content, and versions sort by time of creation.

use std::{
    collections::hash_map::RandomState,
    fmt,
    hash::BuildHasher,
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// A unique, monotonic version of a snapshot, a resource type or a single resource.
///
/// Rendered as `"<epoch hex>.<counter>"`, e.g. `"18f3a2b1c4d5e6f7.42"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    epoch: u64,
    counter: u64,
}

/// Source of fresh [`Version`]s: one epoch, one atomic counter.
#[derive(Debug)]
pub struct VersionClock {
    epoch: u64,
    counter: AtomicU64,
}

// === impl Version ===

impl Version {
    /// Builds a version from its parts (mostly useful in tests).
    pub const fn new(epoch: u64, counter: u64) -> Self {
        Self { epoch, counter }
    }

    /// The boot epoch of the clock that minted this version.
    pub const fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The counter value within the epoch.
    pub const fn counter(&self) -> u64 {
        self.counter
    }

    /// Parses the `Display` form back; `None` for strings this crate did not produce.
    pub fn parse(s: &str) -> Option<Self> {
        let (epoch, counter) = s.split_once('.')?;
        Some(Self {
            epoch: u64::from_str_radix(epoch, 16).ok()?,
            counter: counter.parse().ok()?,
        })
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}.{}", self.epoch, self.counter)
    }
}

// === impl VersionClock ===

impl VersionClock {
    /// A clock with a fresh boot epoch: milliseconds since the Unix epoch in the high 44 bits and
    /// 20 random bits below, so two replicas booted in the same millisecond still differ.
    pub fn new() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        // `RandomState` is seeded from the OS; hashing the pid through it gives cheap random bits
        // without a `rand` dependency.
        let random = RandomState::new().hash_one(std::process::id()) & 0xF_FFFF;
        Self::with_epoch((millis << 20) | random)
    }

    /// A clock with a chosen epoch (tests, or a caller that persists its own boot id).
    pub fn with_epoch(epoch: u64) -> Self {
        Self {
            epoch,
            counter: AtomicU64::new(0),
        }
    }

    /// The boot epoch of this clock.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Mints the next version; never returns the same value twice.
    pub fn next(&self) -> Version {
        Version {
            epoch: self.epoch,
            counter: self.counter.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }
}

impl Default for VersionClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_monotonic_and_round_trip() {
        let clock = VersionClock::with_epoch(0xabc);
        let a = clock.next();
        let b = clock.next();
        assert!(a < b);
        assert_eq!(a.to_string(), "0000000000000abc.1");
        assert_eq!(Version::parse(&b.to_string()), Some(b));
        assert_eq!(Version::parse("nope"), None);
    }

    #[test]
    fn a_later_boot_sorts_after_an_earlier_one() {
        let first = VersionClock::new();
        let v1 = first.next();
        let later = VersionClock::with_epoch(first.epoch() + (1 << 20));
        assert!(later.next() > v1);
        // Fixed-width epoch: the string order matches the version order across boots.
        assert!(later.next().to_string() > v1.to_string());
    }
}
