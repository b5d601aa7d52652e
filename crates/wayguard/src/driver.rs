//! The pipeline task: waits for the sources' initial state and the first JWKS fetches, builds the
//! first snapshots, then turns source and key changes, debounced, into rebuilds until the drain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use wayguard_runtime::{BlockReady, Debouncer, Drain};
use wayguard_xds::ConnectionRegistry;

use crate::pipeline::Pipeline;

/// How long the first build waits for first JWKS fetches.
const FIRST_KEYS_WAIT: Duration = Duration::from_secs(10);
/// How long a rebuild after a source change waits for the fetches of new issuers.
const NEW_KEYS_WAIT: Duration = Duration::from_secs(2);

/// What the pipeline task needs.
#[derive(Debug)]
pub struct Driver {
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// xDS connections (convergence metrics).
    pub connections: ConnectionRegistry,
    /// Source change notifications.
    pub changes: watch::Receiver<u64>,
    /// Completes when the sources hold their initial state.
    pub synced: oneshot::Receiver<()>,
    /// Held until the first JWKS fetches finished (or [`FIRST_KEYS_WAIT`] passed).
    pub keys_blocker: BlockReady,
    /// Held until the first snapshots are in the cache.
    pub snapshot_blocker: BlockReady,
    /// Bumped after every rebuild.
    pub rebuilt: watch::Sender<u64>,
    /// Quiet period and cap of the debounce.
    pub debounce: (Duration, Duration),
}

impl Driver {
    /// Runs until `drain` is signaled.
    pub async fn run(self, drain: Drain) -> Result<()> {
        let Driver {
            pipeline,
            connections,
            mut changes,
            synced,
            keys_blocker,
            snapshot_blocker,
            rebuilt,
            debounce,
        } = self;
        tokio::select! {
            biased;
            () = drain.signaled() => return Ok(()),
            r = synced => if r.is_err() {
                // The source ended before syncing; the supervisor reports why. Wait for the drain.
                drain.signaled().await;
                return Ok(());
            },
        }
        let mut jwks_changes = pipeline.keys.resolver().changes();
        let pending = pipeline.pending_keys();
        if !pending.is_empty() {
            keys_blocker.set_detail(format!("fetching {}", pending.join(", ")));
        }
        tokio::select! {
            biased;
            () = drain.signaled() => return Ok(()),
            () = pipeline.settle_keys(FIRST_KEYS_WAIT) => {}
        }
        keys_blocker.release();
        // Everything the sources did so far is in this build.
        changes.borrow_and_update();
        jwks_changes.borrow_and_update();
        let changed = pipeline.rebuild();
        rebuilt.send_modify(|n| *n += 1);
        tracing::info!(gateways = changed.len(), "initial configuration built");
        snapshot_blocker.release();

        let mut debouncer = Debouncer::new(debounce.0, debounce.1);
        let mut sources_changed = false;
        let mut observers = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                () = drain.signaled() => break,
                r = changes.changed() => {
                    if r.is_err() {
                        anyhow::bail!("every source is gone");
                    }
                    sources_changed = true;
                    debouncer.change();
                }
                r = jwks_changes.changed() => {
                    if r.is_err() {
                        anyhow::bail!("the JWKS resolver is gone");
                    }
                    debouncer.change();
                }
                () = debouncer.due() => {
                    let Some(first) = debouncer.take() else { continue };
                    if std::mem::take(&mut sources_changed) {
                        tokio::select! {
                            biased;
                            () = drain.signaled() => break,
                            () = pipeline.settle_keys(NEW_KEYS_WAIT) => {}
                        }
                    }
                    let changed = pipeline.rebuild();
                    for wait in pipeline.convergence(&changed, &connections, first.into_std()) {
                        observers.spawn(wait);
                    }
                    rebuilt.send_modify(|n| *n += 1);
                }
                Some(_) = observers.join_next(), if !observers.is_empty() => {}
            }
        }
        observers.shutdown().await;
        Ok(())
    }
}
