//! The sans-I/O core of the resolver: entries, refresh timing, per-URI backoff, eviction,
//! forced-refresh rate limiting and change detection. Every method takes `now` explicitly, so
//! tests drive it with synthetic instants; [`crate::JwksResolver`] wraps it with a clock, a lock
//! and the fetch tasks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::FetchError;
use crate::fetch::{FetchRequest, Fetched};
use crate::keyset::KeySet;
use crate::state::{EntryInfo, JwksStatus, KeySetState, RefreshRequest};

/// Timing configuration of the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Refresh period after a success (istiod `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`). Default 20m.
    pub refresh_interval: Duration,
    /// Delay after the first consecutive failure of one URI; doubles on each further failure.
    /// Default 1m.
    pub backoff_initial: Duration,
    /// Cap of the failure backoff. Default 60m.
    pub backoff_max: Duration,
    /// Evict entries not looked up, or not successfully fetched, for this long. Default 7 days.
    pub eviction_after: Duration,
    /// Minimum time between the start of the latest fetch of an entry and a forced refresh
    /// (`request_refresh`). Default 30s.
    pub forced_refresh_min_interval: Duration,
    /// Per-request timeout when `lookup` passes none. Default 5s.
    pub default_timeout: Duration,
    /// Fetches in flight at once, over all entries. Default 16.
    pub max_concurrent_fetches: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(20 * 60),
            backoff_initial: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60 * 60),
            eviction_after: Duration::from_secs(7 * 24 * 60 * 60),
            forced_refresh_min_interval: Duration::from_secs(30),
            default_timeout: Duration::from_secs(5),
            max_concurrent_fetches: 16,
        }
    }
}

/// The cache key: `(issuer, jwks_uri)`; `None` means OIDC discovery.
pub(crate) type Key = (String, Option<String>);

/// Normalizes a caller's key: an empty URI means discovery, like an absent one.
pub(crate) fn key(issuer: &str, uri: Option<&str>) -> Key {
    (
        issuer.to_owned(),
        uri.filter(|u| !u.is_empty()).map(str::to_owned),
    )
}

#[derive(Debug)]
struct Entry {
    timeout: Duration,
    keys: Option<KeySet>,
    fetched_uri: Option<String>,
    last_success: Option<Instant>,
    last_error: Option<Arc<str>>,
    consecutive_failures: u32,
    created: Instant,
    last_used: Instant,
    last_attempt: Option<Instant>,
    next_fetch: Instant,
    in_flight: bool,
}

// === impl Entry ===

impl Entry {
    fn state(&self) -> KeySetState {
        match (&self.keys, &self.last_error) {
            (Some(keys), error) => KeySetState::Ready {
                jwks: keys.json().clone(),
                fetched_at: self.last_success.unwrap_or(self.created),
                stale: error.is_some(),
            },
            (None, Some(error)) => KeySetState::Failed {
                error: error.clone(),
            },
            (None, None) => KeySetState::Pending,
        }
    }

    fn status(&self) -> JwksStatus {
        match (&self.keys, &self.last_error) {
            (Some(_), None) => JwksStatus::Ok,
            (Some(_), Some(e)) => JwksStatus::Stale {
                message: e.to_string(),
            },
            (None, Some(e)) => JwksStatus::Failed {
                message: e.to_string(),
            },
            (None, None) => JwksStatus::Pending,
        }
    }

    /// When this entry must be evicted.
    fn evict_at(&self, after: Duration) -> Instant {
        let unused = self.last_used + after;
        let unrefreshed = self.last_success.unwrap_or(self.created) + after;
        unused.min(unrefreshed)
    }
}

/// A fetch the driver must start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    pub(crate) key: Key,
    pub(crate) request: FetchRequest,
}

/// What a poll produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Poll {
    /// Fetches to start now (already marked in flight).
    pub(crate) jobs: Vec<Job>,
    /// Evicted entries that had keys (their usable key set disappeared).
    pub(crate) evicted_with_keys: usize,
    /// All evicted entries.
    pub(crate) evicted: usize,
}

/// What a completed fetch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Completion {
    /// The served key set changed, or a first fetch completed or failed: re-translate.
    pub(crate) keys_changed: bool,
    /// The status kind (ok, stale, failed, pending) changed.
    pub(crate) status_changed: bool,
    /// The fetch produced a valid key set.
    pub(crate) success: bool,
}

/// The resolver's state machine.
#[derive(Debug)]
pub(crate) struct Scheduler {
    config: ScheduleConfig,
    entries: BTreeMap<Key, Entry>,
    in_flight: usize,
}

// === impl Scheduler ===

impl Scheduler {
    pub(crate) fn new(mut config: ScheduleConfig) -> Self {
        config.max_concurrent_fetches = config.max_concurrent_fetches.max(1);
        Self {
            config,
            entries: BTreeMap::new(),
            in_flight: 0,
        }
    }

    /// Returns the entry's state and records the use; creates the entry (due now) on a miss, in
    /// which case the second value is `true` and the driver must be woken.
    pub(crate) fn lookup(
        &mut self,
        issuer: &str,
        uri: Option<&str>,
        timeout: Option<Duration>,
        now: Instant,
    ) -> (KeySetState, bool) {
        let timeout = timeout.unwrap_or(self.config.default_timeout);
        let key = key(issuer, uri);
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.last_used = now;
            entry.timeout = timeout;
            return (entry.state(), false);
        }
        self.entries.insert(
            key,
            Entry {
                timeout,
                keys: None,
                fetched_uri: None,
                last_success: None,
                last_error: None,
                consecutive_failures: 0,
                created: now,
                last_used: now,
                last_attempt: None,
                next_fetch: now,
                in_flight: false,
            },
        );
        (KeySetState::Pending, true)
    }

    /// Evicts expired entries and hands out the fetches that are due, earliest first, within
    /// the concurrency limit.
    pub(crate) fn poll(&mut self, now: Instant) -> Poll {
        let mut poll = Poll::default();
        let after = self.config.eviction_after;
        self.entries.retain(|(issuer, uri), entry| {
            if entry.in_flight || now < entry.evict_at(after) {
                return true;
            }
            tracing::info!(%issuer, ?uri, "evicting JWKS entry (unused or not refreshed)");
            poll.evicted += 1;
            if entry.keys.is_some() {
                poll.evicted_with_keys += 1;
            }
            false
        });

        let capacity = self
            .config
            .max_concurrent_fetches
            .saturating_sub(self.in_flight);
        let mut due: Vec<(Instant, &Key)> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.in_flight && e.next_fetch <= now)
            .map(|(k, e)| (e.next_fetch, k))
            .collect();
        due.sort();
        let keys: Vec<Key> = due
            .into_iter()
            .take(capacity)
            .map(|(_, k)| k.clone())
            .collect();
        for key in keys {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            entry.in_flight = true;
            entry.last_attempt = Some(now);
            self.in_flight += 1;
            poll.jobs.push(Job {
                request: FetchRequest {
                    issuer: key.0.clone(),
                    jwks_uri: key.1.clone(),
                    timeout: entry.timeout,
                },
                key,
            });
        }
        poll
    }

    /// The next instant at which [`Scheduler::poll`] has something to do (`None`: nothing until
    /// a lookup, a forced refresh or a completion).
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let has_capacity = self.in_flight < self.config.max_concurrent_fetches;
        self.entries
            .values()
            .filter(|e| !e.in_flight)
            .flat_map(|e| {
                let fetch = has_capacity.then_some(e.next_fetch);
                [fetch, Some(e.evict_at(self.config.eviction_after))]
            })
            .flatten()
            .min()
    }

    /// Applies the result of a job. The body is validated here, for the first fetch and every
    /// refresh alike; an invalid body is a failure and never replaces a good key set.
    pub(crate) fn complete(
        &mut self,
        key: &Key,
        result: Result<Fetched, FetchError>,
        now: Instant,
    ) -> Completion {
        let Some(entry) = self.entries.get_mut(key) else {
            return Completion::default();
        };
        if entry.in_flight {
            entry.in_flight = false;
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        let status_before = std::mem::discriminant(&entry.status());
        let result = result.and_then(|fetched| {
            let keys = KeySet::parse(&fetched.body).map_err(|source| FetchError::InvalidJwks {
                uri: fetched.jwks_uri.clone(),
                source,
            })?;
            Ok((fetched.jwks_uri, keys))
        });

        let mut completion = Completion::default();
        match result {
            Ok((uri, keys)) => {
                completion.success = true;
                let changed = entry
                    .keys
                    .as_ref()
                    .is_none_or(|old| old.json() != keys.json());
                // Replaced even when equal: the list of dropped keys may differ.
                entry.keys = Some(keys);
                completion.keys_changed = changed;
                entry.fetched_uri = Some(uri);
                entry.last_success = Some(now);
                entry.last_error = None;
                entry.consecutive_failures = 0;
                entry.next_fetch = now + self.config.refresh_interval;
            }
            Err(err) => {
                let first_failure = entry.keys.is_none() && entry.last_error.is_none();
                completion.keys_changed = first_failure;
                if let FetchError::InvalidJwks { uri, .. } = &err {
                    entry.fetched_uri = Some(uri.clone());
                }
                tracing::warn!(issuer = %key.0, error = %err, stale = entry.keys.is_some(), "JWKS fetch failed");
                entry.last_error = Some(err.to_string().into());
                entry.consecutive_failures = entry.consecutive_failures.saturating_add(1);
                entry.next_fetch = now + backoff(&self.config, entry.consecutive_failures);
            }
        }
        completion.status_changed = status_before != std::mem::discriminant(&entry.status());
        completion
    }

    /// Schedules an immediate fetch, or, when the entry was fetched less than
    /// `forced_refresh_min_interval` ago, a fetch as soon as that interval has passed (the rate
    /// limit defers, it never drops: a key rotated right after a fetch is still picked up within
    /// the interval). Nothing is scheduled while a fetch is in flight (it returns the newest keys).
    pub(crate) fn request_refresh(
        &mut self,
        issuer: &str,
        uri: Option<&str>,
        now: Instant,
    ) -> RefreshRequest {
        let min = self.config.forced_refresh_min_interval;
        let Some(entry) = self.entries.get_mut(&key(issuer, uri)) else {
            return RefreshRequest::UnknownEntry;
        };
        if entry.in_flight {
            return RefreshRequest::InFlight;
        }
        if let Some(last) = entry.last_attempt {
            let allowed_at = last + min;
            if now < allowed_at {
                entry.next_fetch = entry.next_fetch.min(allowed_at);
                return RefreshRequest::RateLimited {
                    retry_after: allowed_at - now,
                };
            }
        }
        entry.next_fetch = entry.next_fetch.min(now);
        RefreshRequest::Scheduled
    }

    /// `Some(true)` if the served key set has `kid`, `Some(false)` if not, `None` if no key set
    /// is known for the entry.
    pub(crate) fn has_kid(&self, issuer: &str, uri: Option<&str>, kid: &str) -> Option<bool> {
        let entry = self.entries.get(&key(issuer, uri))?;
        entry.keys.as_ref().map(|keys| keys.has_kid(kid))
    }

    /// The status of one entry.
    pub(crate) fn status(&self, issuer: &str, uri: Option<&str>) -> Option<JwksStatus> {
        self.entries.get(&key(issuer, uri)).map(Entry::status)
    }

    /// Diagnostics for every entry, ordered by issuer then URI.
    pub(crate) fn entries(&self, now: Instant) -> Vec<EntryInfo> {
        self.entries
            .iter()
            .map(|((issuer, uri), e)| EntryInfo {
                issuer: issuer.clone(),
                jwks_uri: uri.clone(),
                fetched_uri: e.fetched_uri.clone(),
                status: e.status(),
                key_count: e.keys.as_ref().map_or(0, KeySet::key_count),
                kids: e
                    .keys
                    .as_ref()
                    .map(|k| k.kids().to_vec())
                    .unwrap_or_default(),
                dropped_keys: e
                    .keys
                    .as_ref()
                    .map(|k| k.dropped().to_vec())
                    .unwrap_or_default(),
                last_success_age_secs: e
                    .last_success
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                last_error: e.last_error.as_deref().map(str::to_owned),
                next_refresh_in_secs: (!e.in_flight)
                    .then(|| e.next_fetch.saturating_duration_since(now).as_secs()),
                in_flight: e.in_flight,
                consecutive_failures: e.consecutive_failures,
                last_used_age_secs: now.saturating_duration_since(e.last_used).as_secs(),
                timeout: e.timeout,
            })
            .collect()
    }
}

/// The delay after `failures` consecutive failures: initial, doubled per failure, capped.
pub(crate) fn backoff(config: &ScheduleConfig, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    config
        .backoff_initial
        .saturating_mul(1u32 << doublings)
        .min(config.backoff_max)
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
