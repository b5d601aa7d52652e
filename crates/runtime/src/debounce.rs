//! The debounce between sources and translation, as a sans-I/O struct (every method takes `now`),
//! and [`Debouncer`], the async driver the pipeline loop uses.
//!
//! Semantics: a change after a quiet period (no run for `quiet`) is due at once (leading edge), so
//! an isolated edit is applied without delay. A change that follows a run closely starts a batch:
//! it is due once no further change arrived for `quiet`, and never later than `max` after the
//! batch's first change, so a source that never stops changing cannot starve translation.

use std::time::Duration;

use tokio::time::Instant;

/// The debounce state.
#[derive(Clone, Debug)]
pub struct Debounce {
    quiet: Duration,
    max: Duration,
    last_run: Option<Instant>,
    batch: Option<Batch>,
}

#[derive(Clone, Copy, Debug)]
struct Batch {
    first: Instant,
    last: Instant,
    leading: bool,
}

impl Debounce {
    /// A debounce with quiet period `quiet` and cap `max` (`max >= quiet` is expected; a smaller
    /// cap wins).
    pub fn new(quiet: Duration, max: Duration) -> Self {
        Self {
            quiet,
            max,
            last_run: None,
            batch: None,
        }
    }

    /// A change arrived at `now`.
    pub fn change(&mut self, now: Instant) {
        match &mut self.batch {
            Some(batch) => batch.last = now,
            None => {
                let leading = self
                    .last_run
                    .is_none_or(|last| now.saturating_duration_since(last) >= self.quiet);
                self.batch = Some(Batch {
                    first: now,
                    last: now,
                    leading,
                });
            }
        }
    }

    /// When the pending batch is due (`None`: nothing pending). A due time at or before `now`
    /// means "run now".
    pub fn due(&self) -> Option<Instant> {
        let b = self.batch?;
        if b.leading {
            return Some(b.first);
        }
        Some((b.last + self.quiet).min(b.first + self.max))
    }

    /// Whether a batch is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.due().is_some_and(|d| d <= now)
    }

    /// Takes the pending batch for a run starting at `now`; returns when its first change
    /// arrived (for convergence metrics), `None` if nothing was pending.
    pub fn take(&mut self, now: Instant) -> Option<Instant> {
        let batch = self.batch.take()?;
        self.last_run = Some(now);
        Some(batch.first)
    }
}

/// Drives a [`Debounce`] from change notifications.
#[derive(Debug)]
pub struct Debouncer {
    state: Debounce,
}

impl Debouncer {
    /// A driver over a fresh [`Debounce`].
    pub fn new(quiet: Duration, max: Duration) -> Self {
        Self {
            state: Debounce::new(quiet, max),
        }
    }

    /// Records a change now.
    pub fn change(&mut self) {
        self.state.change(Instant::now());
    }

    /// Completes when the pending batch is due, never when nothing is pending; use it as one
    /// branch of a `select!` whose other branches call [`Self::change`].
    pub async fn due(&self) {
        match self.state.due() {
            Some(due) => tokio::time::sleep_until(due).await,
            None => std::future::pending().await,
        }
    }

    /// Takes the due batch (see [`Debounce::take`]).
    pub fn take(&mut self) -> Option<Instant> {
        self.state.take(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_isolated_change_is_due_at_once() {
        let t0 = Instant::now();
        let mut d = Debounce::new(QUIET, MAX);
        assert_eq!(d.due(), None);
        d.change(t0);
        assert!(d.is_due(t0));
        assert_eq!(d.take(t0), Some(t0));
        assert_eq!(d.due(), None);
        // After a quiet period the next one is a leading edge again.
        d.change(t0 + QUIET);
        assert!(d.is_due(t0 + QUIET));
    }

    #[test]
    fn changes_right_after_a_run_wait_for_quiet_and_count_from_the_last_change() {
        let t0 = Instant::now();
        let mut d = Debounce::new(QUIET, MAX);
        d.change(t0);
        d.take(t0);
        d.change(t0 + ms(10));
        assert_eq!(d.due(), Some(t0 + ms(110)));
        d.change(t0 + ms(60));
        assert_eq!(d.due(), Some(t0 + ms(160)));
        assert!(!d.is_due(t0 + ms(159)));
        assert_eq!(
            d.take(t0 + ms(160)),
            Some(t0 + ms(10)),
            "first change of the batch"
        );
    }

    #[test]
    fn a_stream_of_changes_is_capped_at_max_after_its_first() {
        let t0 = Instant::now();
        let mut d = Debounce::new(QUIET, MAX);
        d.change(t0);
        d.take(t0);
        let first = t0 + ms(5);
        let mut now = first;
        while now < t0 + ms(3000) {
            d.change(now);
            now += ms(50);
        }
        assert_eq!(d.due(), Some(first + MAX));
    }

    #[test]
    fn changes_during_a_leading_edge_run_are_the_next_batch() {
        let t0 = Instant::now();
        let mut d = Debounce::new(QUIET, MAX);
        d.change(t0);
        d.change(t0 + ms(1)); // arrived before the run started: same batch
        assert_eq!(d.take(t0 + ms(2)), Some(t0));
        d.change(t0 + ms(3));
        assert_eq!(d.due(), Some(t0 + ms(103)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_driver_sleeps_until_the_batch_is_due() {
        let mut d = Debouncer::new(QUIET, MAX);
        let start = Instant::now();
        d.change();
        d.due().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        d.take();
        tokio::time::advance(ms(20)).await;
        d.change();
        d.due().await;
        assert_eq!(start.elapsed(), ms(120));
        assert!(d.take().is_some());
        // Nothing pending: `due` never completes.
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), d.due())
                .await
                .is_err()
        );
    }
}
