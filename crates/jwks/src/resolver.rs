//! The resolver: a shared handle around the [`Scheduler`], plus the refresher task that runs
//! the fetches.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{BuildError, FetchError};
use crate::fetch::{Fetch, Fetched, HttpConfig, HttpFetcher};
use crate::metrics::Metrics;
use crate::schedule::{Key, ScheduleConfig, Scheduler};
use crate::state::{EntryInfo, JwksStatus, KeySetState, RefreshRequest};

/// Full configuration of a [`JwksResolver`] with the HTTP fetcher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Timing: refresh interval, backoff, eviction, rate limit, default timeout.
    pub schedule: ScheduleConfig,
    /// HTTP: body limit, extra CA, blocked CIDRs, proxy, redirects.
    pub http: HttpConfig,
}

/// The JWKS resolver, keyed by `(issuer, jwks_uri)`. Cheap to clone (a shared handle).
///
/// [`JwksResolver::lookup`] never blocks and never does I/O: a miss creates the entry and
/// wakes the refresher, which must be running ([`JwksResolver::run`] or
/// [`JwksResolver::spawn`]); without it entries stay [`KeySetState::Pending`].
#[derive(Clone)]
pub struct JwksResolver {
    inner: Arc<Inner>,
}

struct Inner {
    scheduler: Mutex<Scheduler>,
    fetcher: Arc<dyn Fetch>,
    wake: Notify,
    changes: watch::Sender<u64>,
    status_changes: watch::Sender<u64>,
    metrics: Metrics,
}

impl std::fmt::Debug for JwksResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksResolver")
            .field("scheduler", &*self.inner.scheduler.lock())
            .finish_non_exhaustive()
    }
}

// === impl JwksResolver ===

impl JwksResolver {
    /// A resolver fetching over HTTP(S) with [`HttpFetcher`].
    pub fn new(config: ResolverConfig, metrics: Metrics) -> Result<Self, BuildError> {
        let fetcher = HttpFetcher::new(&config.http)?;
        Ok(Self::with_fetcher(
            config.schedule,
            Arc::new(fetcher),
            metrics,
        ))
    }

    /// A resolver with a custom fetcher (tests, or another transport).
    pub fn with_fetcher(
        schedule: ScheduleConfig,
        fetcher: Arc<dyn Fetch>,
        metrics: Metrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                scheduler: Mutex::new(Scheduler::new(schedule)),
                fetcher,
                wake: Notify::new(),
                changes: watch::Sender::new(0),
                status_changes: watch::Sender::new(0),
                metrics,
            }),
        }
    }

    /// The key set state for `(issuer, uri)`; `uri` `None` or empty means OIDC discovery from
    /// the issuer. Non-blocking: on a miss the entry is created, a fetch starts in the
    /// background and [`KeySetState::Pending`] is returned; [`JwksResolver::changes`] bumps
    /// when it completes. Records the use (eviction) and the timeout for later fetches
    /// (`None`: the configured default, 5s).
    pub fn lookup(
        &self,
        issuer: &str,
        uri: Option<&str>,
        timeout: Option<Duration>,
    ) -> KeySetState {
        let (state, created) =
            self.inner
                .scheduler
                .lock()
                .lookup(issuer, uri, timeout, Instant::now());
        if created {
            self.inner.wake.notify_one();
        }
        state
    }

    /// A receiver whose value bumps whenever an entry's usable key set changes (new keys, a
    /// first fetch completed or failed, an entry with keys evicted). Equal key sets in another
    /// order do not bump. Re-translate on change (debounced by the caller).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// A receiver whose value bumps whenever an entry's [`JwksStatus`] kind changes (for
    /// example stale -> ok after the IdP recovers with the same keys), for status conditions.
    pub fn status_changes(&self) -> watch::Receiver<u64> {
        self.inner.status_changes.subscribe()
    }

    /// Asks for an immediate refetch of a known entry, for example when a token with an
    /// unknown `kid` was seen for its issuer. Rate-limited per entry: refused while a fetch
    /// is in flight or if the latest fetch started less than `forced_refresh_min_interval`
    /// (30s) ago. Does not count as a use.
    pub fn request_refresh(&self, issuer: &str, uri: Option<&str>) -> RefreshRequest {
        let answer = self
            .inner
            .scheduler
            .lock()
            .request_refresh(issuer, uri, Instant::now());
        if matches!(
            answer,
            RefreshRequest::Scheduled | RefreshRequest::RateLimited { .. }
        ) {
            self.inner.wake.notify_one();
        }
        answer
    }

    /// Whether the served key set of `(issuer, uri)` has a key with this `kid`; `None` when no
    /// key set is known. Cheap (a binary search under a short lock).
    pub fn has_kid(&self, issuer: &str, uri: Option<&str>, kid: &str) -> Option<bool> {
        self.inner.scheduler.lock().has_kid(issuer, uri, kid)
    }

    /// The status of one entry (`None` if nothing looked it up), for a `JwksResolved` condition.
    pub fn status(&self, issuer: &str, uri: Option<&str>) -> Option<JwksStatus> {
        self.inner.scheduler.lock().status(issuer, uri)
    }

    /// Diagnostics for every entry, ordered by issuer then URI (`/debug/jwks`).
    pub fn entries(&self) -> Vec<EntryInfo> {
        self.inner.scheduler.lock().entries(Instant::now())
    }

    /// The fetch counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Runs the refresher until `shutdown` completes, then aborts fetches in flight and
    /// returns. Fetches run concurrently (up to `max_concurrent_fetches`); each entry has its
    /// own schedule, so a failing URI never delays another.
    pub async fn run<F: Future<Output = ()>>(&self, shutdown: F) {
        let mut tasks: JoinSet<Result<Fetched, FetchError>> = JoinSet::new();
        let mut task_keys: HashMap<tokio::task::Id, Key> = HashMap::new();
        tokio::pin!(shutdown);
        loop {
            let next_wake = self.start_due(&mut tasks, &mut task_keys);
            let sleep = async move {
                match next_wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(joined) = tasks.join_next_with_id() => {
                    let (id, result) = match joined {
                        Ok((id, result)) => (id, Some(result)),
                        Err(err) => (err.id(), None),
                    };
                    if let Some(key) = task_keys.remove(&id) {
                        let result = result.unwrap_or_else(|| Err(FetchError::Request {
                            uri: key.1.clone().unwrap_or_else(|| key.0.clone()),
                            detail: "fetch task panicked".to_owned(),
                        }));
                        self.apply(&key, result);
                    }
                }
                () = self.inner.wake.notified() => {}
                () = sleep => {}
            }
        }
        tasks.shutdown().await;
        tracing::debug!("JWKS refresher stopped");
    }

    /// Spawns [`JwksResolver::run`] on the current runtime.
    pub fn spawn<F>(&self, shutdown: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        tokio::spawn(async move { this.run(shutdown).await })
    }

    /// Evicts, starts the due fetches and returns when to wake next.
    fn start_due(
        &self,
        tasks: &mut JoinSet<Result<Fetched, FetchError>>,
        task_keys: &mut HashMap<tokio::task::Id, Key>,
    ) -> Option<Instant> {
        let mut scheduler = self.inner.scheduler.lock();
        let poll = scheduler.poll(Instant::now());
        if poll.evicted_with_keys > 0 {
            self.inner.changes.send_modify(|v| *v += 1);
        }
        if poll.evicted > 0 {
            self.inner.status_changes.send_modify(|v| *v += 1);
        }
        for job in poll.jobs {
            // A safety net for fetchers that ignore their timeout (discovery + JWKS = 2 hops).
            let deadline = job.request.timeout.saturating_mul(2) + Duration::from_secs(5);
            let uri = job.key.1.clone().unwrap_or_else(|| job.key.0.clone());
            let fetch = self.inner.fetcher.fetch(job.request);
            let handle = tasks.spawn(async move {
                tokio::time::timeout(deadline, fetch)
                    .await
                    .unwrap_or(Err(FetchError::Timeout {
                        uri,
                        timeout: deadline,
                    }))
            });
            task_keys.insert(handle.id(), job.key);
        }
        scheduler.next_wake()
    }

    fn apply(&self, key: &Key, result: Result<Fetched, FetchError>) {
        let completion = self
            .inner
            .scheduler
            .lock()
            .complete(key, result, Instant::now());
        self.inner.metrics.record(&key.0, completion.success);
        if completion.keys_changed {
            self.inner.changes.send_modify(|v| *v += 1);
        }
        if completion.status_changed {
            self.inner.status_changes.send_modify(|v| *v += 1);
        }
    }
}

#[cfg(test)]
#[path = "resolver_tests.rs"]
mod tests;
