//! One drain signal for every server, stream and background task.
//!
//! A [`DrainTrigger`] starts the drain; every [`Drain`] handle (cheap to clone) sees it. A task
//! takes a `Drain`, selects on [`Drain::signaled`] between units of work, finishes the unit it is
//! in (an ADS response, a status write, a Lease release) and returns. How long the process waits
//! for that is the [`crate::Supervisor`]'s deadline, not the task's.
//!
//! Modelled on ztunnel's `drain.rs` and linkerd's `drain` crate, over tokio-util's
//! `CancellationToken`: the token is the signal, the supervisor's `JoinSet` is what is waited for.

use tokio_util::sync::CancellationToken;

/// Starts a drain. Dropping it does not drain (the supervisor starts drains explicitly).
#[derive(Debug, Default)]
pub struct DrainTrigger {
    token: CancellationToken,
}

/// A handle on the drain signal; clone it into every task and stream.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    token: CancellationToken,
}

impl DrainTrigger {
    /// A trigger that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle on this trigger's signal.
    pub fn watcher(&self) -> Drain {
        Drain {
            token: self.token.clone(),
        }
    }

    /// Starts the drain: every handle's [`Drain::signaled`] completes. Idempotent.
    pub fn start(&self) {
        self.token.cancel();
    }

    /// Whether [`Self::start`] was called.
    pub fn started(&self) -> bool {
        self.token.is_cancelled()
    }
}

impl Drain {
    /// A handle whose drain never starts (tests, one-shot commands).
    pub fn never() -> Self {
        Self::default()
    }

    /// Completes once the drain has started (at once if it already has).
    pub async fn signaled(&self) {
        self.token.cancelled().await;
    }

    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        self.token.is_cancelled()
    }

    /// An owned future that completes when the drain starts, for APIs that take a `'static`
    /// shutdown future (tonic's and axum's graceful shutdown).
    pub fn signaled_owned(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_handle_sees_the_signal_including_those_cloned_after_it() {
        let trigger = DrainTrigger::new();
        let early = trigger.watcher();
        assert!(!early.is_draining());
        trigger.start();
        early.signaled().await;
        let late = trigger.watcher().clone();
        assert!(late.is_draining());
        late.signaled_owned().await;
        assert!(trigger.started());
    }

    #[tokio::test(start_paused = true)]
    async fn never_is_never_signaled() {
        let never = Drain::never();
        let outcome =
            tokio::time::timeout(std::time::Duration::from_secs(3600), never.signaled()).await;
        assert!(outcome.is_err());
        assert!(!never.is_draining());
    }
}
