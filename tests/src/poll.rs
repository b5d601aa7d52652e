//! Waiting with a deadline: poll a condition, never sleep blindly.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// How often [`until`] re-checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What one check of a polled condition found.
#[derive(Debug)]
pub enum Check<T> {
    /// The condition holds; polling stops with this value.
    Done(T),
    /// Not yet; the description of the current state is kept for the timeout message.
    Pending(String),
    /// The condition can no longer become true (e.g. the process died); stop now.
    Fatal(String),
}

/// A deadline for a hand-written polling loop (when the check needs `&mut` state):
///
/// ```text
/// let mut deadline = Deadline::new("listener live", Duration::from_secs(30));
/// loop {
///     let check = probe(&mut state).await;
///     if let Some(value) = deadline.next(check).await? {
///         return Ok(value);
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Deadline {
    what: String,
    start: Instant,
    timeout: Duration,
    last: String,
    checks: u32,
}

impl Deadline {
    /// Starts the clock for `what`.
    pub fn new(what: impl Into<String>, timeout: Duration) -> Self {
        Self {
            what: what.into(),
            start: Instant::now(),
            timeout,
            last: String::from("(never checked)"),
            checks: 0,
        }
    }

    /// Feeds one check: `Ok(Some(value))` when done; `Ok(None)` after waiting
    /// [`POLL_INTERVAL`] when pending and time is left; an error on `Fatal` or timeout.
    pub async fn next<T>(&mut self, check: Check<T>) -> Result<Option<T>> {
        self.checks += 1;
        match check {
            Check::Done(value) => return Ok(Some(value)),
            Check::Fatal(reason) => bail!(
                "{}: gave up after {:?}: {reason}",
                self.what,
                self.start.elapsed()
            ),
            Check::Pending(state) => self.last = state,
        }
        if self.start.elapsed() >= self.timeout {
            bail!(
                "{}: timed out after {:?} ({} checks); last state: {}",
                self.what,
                self.timeout,
                self.checks,
                self.last
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        Ok(None)
    }

    /// Time since the deadline was created.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Polls `check` every [`POLL_INTERVAL`] until it is `Done`, fails with `Fatal`, or `timeout`
/// passes. The error names `what` and the last pending state.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check<T>>,
{
    let mut deadline = Deadline::new(what, timeout);
    loop {
        if let Some(value) = deadline.next(check().await).await? {
            return Ok(value);
        }
    }
}

/// Blocking polling for synchronous code (process teardown): `check` every `interval` until it
/// returns `Some` or `timeout` passes.
pub use wayguard_testkit::process::until_blocking;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn until_returns_value_times_out_and_stops_on_fatal() {
        let mut n = 0;
        let v = until("count", Duration::from_secs(5), || {
            n += 1;
            let n = n;
            async move {
                if n >= 3 {
                    Check::Done(n)
                } else {
                    Check::Pending(format!("n={n}"))
                }
            }
        })
        .await
        .expect("done");
        assert_eq!(v, 3);

        let err = until::<(), _, _>("never", Duration::from_millis(120), || async {
            Check::Pending("still no".into())
        })
        .await
        .expect_err("timeout");
        assert!(err.to_string().contains("last state: still no"), "{err}");

        let err = until::<(), _, _>("fatal", Duration::from_secs(5), || async {
            Check::Fatal("process exited".into())
        })
        .await
        .expect_err("fatal");
        assert!(err.to_string().contains("process exited"), "{err}");
    }
}
