//! Readiness as a set of named blockers (ztunnel's `readiness.rs`, kubert's `initialized.rs`):
//! a component that must finish something before the process may take traffic holds a
//! [`BlockReady`] and drops it when done. `/ready` answers 200 once none is held and the process is
//! not draining, and otherwise names what it still waits for.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

/// The process's readiness.
#[derive(Clone, Debug)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Bumped on every change, for [`Readiness::wait_ready`].
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    blockers: BTreeMap<u64, Pending>,
    draining: bool,
}

/// One blocker still held.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// What is awaited, e.g. `sources synced`.
    pub name: String,
    /// Progress, e.g. `waiting for the first list of Gateway, HTTPRoute`; empty when none.
    pub detail: String,
}

/// What `/ready` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadyState {
    /// No blocker held, not draining.
    Ready,
    /// These blockers are held, in the order they were taken.
    NotReady(Vec<Pending>),
    /// The process is shutting down.
    Draining,
}

/// Holds readiness back until dropped.
#[must_use = "readiness is released as soon as the blocker is dropped"]
pub struct BlockReady {
    readiness: Readiness,
    id: u64,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// Readiness with no blocker (ready until one is taken).
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                changed: watch::Sender::new(0),
            }),
        }
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Takes a blocker named `name` (names need not be unique; each blocker counts).
    pub fn block(&self, name: impl Into<String>) -> BlockReady {
        let id = {
            let mut state = self.inner.state.lock();
            let id = state.next;
            state.next += 1;
            state.blockers.insert(
                id,
                Pending {
                    name: name.into(),
                    detail: String::new(),
                },
            );
            id
        };
        self.notify();
        BlockReady {
            readiness: self.clone(),
            id,
        }
    }

    /// Marks the process as draining: not ready from now on.
    pub fn set_draining(&self) {
        self.inner.state.lock().draining = true;
        self.notify();
    }

    /// The current state.
    pub fn state(&self) -> ReadyState {
        let state = self.inner.state.lock();
        if state.draining {
            ReadyState::Draining
        } else if state.blockers.is_empty() {
            ReadyState::Ready
        } else {
            ReadyState::NotReady(state.blockers.values().cloned().collect())
        }
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.state() == ReadyState::Ready
    }

    /// Waits until no blocker is held (returns at once if none is).
    pub async fn wait_ready(&self) {
        let mut rx = self.inner.changed.subscribe();
        loop {
            if self.inner.state.lock().blockers.is_empty() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

impl BlockReady {
    /// Sets the progress text `/ready` shows for this blocker.
    pub fn set_detail(&self, detail: impl Into<String>) {
        let detail = detail.into();
        let changed = {
            let mut state = self.readiness.inner.state.lock();
            match state.blockers.get_mut(&self.id) {
                Some(p) if p.detail != detail => {
                    p.detail = detail;
                    true
                }
                _ => false,
            }
        };
        if changed {
            self.readiness.notify();
        }
    }

    /// Releases the blocker (same as dropping it; reads better at call sites).
    pub fn release(self) {}
}

impl Drop for BlockReady {
    fn drop(&mut self) {
        self.readiness.inner.state.lock().blockers.remove(&self.id);
        self.readiness.notify();
    }
}

impl fmt::Debug for BlockReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockReady").field("id", &self.id).finish()
    }
}

impl fmt::Display for ReadyState {
    /// The body of `/ready`: `ready`, `draining`, or `not ready: waiting for A (detail); B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyState::Ready => f.write_str("ready"),
            ReadyState::Draining => f.write_str("not ready: draining (shutting down)"),
            ReadyState::NotReady(pending) => {
                f.write_str("not ready: waiting for ")?;
                for (i, p) in pending.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    f.write_str(&p.name)?;
                    if !p.detail.is_empty() {
                        write!(f, " ({})", p.detail)?;
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_blocker_is_released_and_names_what_is_pending() {
        let r = Readiness::new();
        assert!(r.is_ready());
        let sources = r.block("sources synced");
        let snapshot = r.block("first snapshot built");
        sources.set_detail("waiting for the first list of Gateway");
        assert_eq!(
            r.state().to_string(),
            "not ready: waiting for sources synced (waiting for the first list of Gateway); first snapshot built"
        );
        sources.release();
        assert_eq!(
            r.state(),
            ReadyState::NotReady(vec![Pending {
                name: "first snapshot built".into(),
                detail: String::new()
            }])
        );
        drop(snapshot);
        assert_eq!(r.state(), ReadyState::Ready);
        r.set_draining();
        assert_eq!(r.state(), ReadyState::Draining);
        assert!(!r.is_ready());
    }

    #[tokio::test]
    async fn wait_ready_returns_when_the_last_blocker_goes() {
        let r = Readiness::new();
        let a = r.block("a");
        let b = r.block("a");
        let waiter = tokio::spawn({
            let r = r.clone();
            async move { r.wait_ready().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "a second blocker of the same name still holds"
        );
        drop(b);
        waiter.await.expect("waiter");
    }
}
