//! The prober: one GET every few milliseconds through the real Envoy on a keep-alive connection
//! (reconnecting when Envoy closes it), recording every status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::http::Conn;

/// Cap on recorded samples (a run is bounded; this bounds memory if it is not).
const MAX_SAMPLES: usize = 2_000_000;

/// One request.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// When it was sent.
    pub sent: Instant,
    /// When its answer (or error) arrived.
    pub done: Instant,
    /// HTTP status; 0 for a connection error.
    pub status: u16,
}

/// What the bench waits for: the first answer with `status` to a request sent at or after `since`.
#[derive(Clone, Copy, Debug)]
struct Target {
    since: Instant,
    status: u16,
    hit: Option<Sample>,
}

/// State shared between the prober task and the bench.
#[derive(Default)]
pub struct Probe {
    samples: Mutex<Vec<Sample>>,
    target: Mutex<Option<Target>>,
    progress: watch::Sender<u64>,
}

impl Probe {
    /// Starts probing `GET path` on `addr` every `interval` with `headers`.
    pub fn spawn(
        addr: SocketAddr,
        path: String,
        headers: Vec<(String, String)>,
        interval: Duration,
    ) -> Arc<Self> {
        let probe = Arc::new(Self::default());
        let state = probe.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut conn: Option<Conn> = None;
            loop {
                ticker.tick().await;
                let sent = Instant::now();
                let status = match send(&mut conn, addr, &path, &headers).await {
                    Ok(status) => status,
                    Err(_) => {
                        conn = None;
                        0
                    }
                };
                state.record(Sample {
                    sent,
                    done: Instant::now(),
                    status,
                });
                // Stop when nobody holds the state any more.
                if Arc::strong_count(&state) == 1 {
                    return;
                }
            }
        });
        probe
    }

    fn record(&self, sample: Sample) {
        {
            let mut samples = self.samples.lock();
            if samples.len() < MAX_SAMPLES {
                samples.push(sample);
            }
        }
        let mut target = self.target.lock();
        if let Some(t) = target.as_mut()
            && t.hit.is_none()
            && sample.sent >= t.since
            && sample.status == t.status
        {
            t.hit = Some(sample);
            drop(target);
            self.progress.send_modify(|n| *n += 1);
        }
    }

    /// Waits (until `deadline`) for the first answer `status` to a request sent at or after
    /// `since`; returns that sample.
    pub async fn wait_for(&self, since: Instant, status: u16, deadline: Instant) -> Option<Sample> {
        let mut rx = self.progress.subscribe();
        *self.target.lock() = Some(Target {
            since,
            status,
            hit: None,
        });
        // Samples recorded between `since` and now: check them too.
        let earlier = self
            .samples
            .lock()
            .iter()
            .rev()
            .take_while(|s| s.sent >= since)
            .filter(|s| s.status == status)
            .last()
            .copied();
        if earlier.is_some() {
            *self.target.lock() = None;
            return earlier;
        }
        let hit = || self.target.lock().and_then(|t| t.hit);
        let waited = tokio::time::timeout_at(
            tokio::time::Instant::from_std(deadline),
            rx.wait_for(|_| hit().is_some()),
        )
        .await;
        let result = hit();
        *self.target.lock() = None;
        drop(waited);
        result
    }

    /// A copy of every sample so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().clone()
    }
}

async fn send(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<u16> {
    if conn.as_ref().is_none_or(|c| !c.is_open()) {
        *conn = Some(Conn::connect(addr).await?);
    }
    let Some(c) = conn.as_mut() else {
        anyhow::bail!("no connection");
    };
    let (status, _) = tokio::time::timeout(Duration::from_secs(2), c.get(path, headers)).await??;
    Ok(status)
}

/// Statuses in `samples` from requests sent in `[from, to)` that are neither `old` nor `new`
/// (errors, 5xx), and answers `old` after a `new` one (flapping).
pub fn anomalies(
    samples: &[Sample],
    from: Instant,
    to: Instant,
    old: u16,
    new: u16,
) -> (usize, usize) {
    let mut other = 0;
    let mut flaps = 0;
    let mut seen_new = false;
    for s in samples.iter().filter(|s| s.sent >= from && s.sent < to) {
        if s.status == new {
            seen_new = true;
        } else if s.status == old {
            if seen_new {
                flaps += 1;
            }
        } else {
            other += 1;
        }
    }
    (other, flaps)
}
