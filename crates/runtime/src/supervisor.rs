//! The supervisor owns every long-lived task of the process (servers, sources, the pipeline, the
//! status writer, the Lease), so none is detached and none can end unnoticed.
//!
//! - Every task is critical: a task that ends before shutdown was asked for (returns, fails or
//!   panics) is logged with its name and ends the process with an error, so Kubernetes restarts it
//!   deterministically (linkerd's policy controller does the same with its lease task). Short-lived
//!   work belongs to the task that starts it (its own `JoinSet`), not here.
//! - Shutdown drains in [`Stage`] order under one deadline: first what serves and writes (xDS and
//!   ext_authz streams end, the status writer finishes the write it is in), then what must outlive
//!   them (the Lease is released after the last status write; the admin server answers `/ready`
//!   with "draining" until the end). Tasks still running at the deadline are aborted and named.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio::time::Instant;

use crate::drain::{Drain, DrainTrigger};
use crate::readiness::Readiness;

/// When a task is drained relative to the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Servers, sources, the pipeline, status writers: drained first.
    Serve,
    /// What must outlive them: the Lease (released after the last status write) and the admin
    /// server (it reports "draining" until the process exits).
    Last,
}

/// Why [`Supervisor::run`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// A task ended before shutdown was requested.
    #[error("task `{task}` {how}; shutting down")]
    Unexpected {
        /// The task's name.
        task: String,
        /// `ended without an error`, `failed: ...`, `panicked: ...`.
        how: String,
    },
    /// Tasks were still running at the drain deadline and were aborted.
    #[error("drain deadline of {deadline:?} passed; aborted {}", tasks.join(", "))]
    DrainTimeout {
        /// The deadline.
        deadline: Duration,
        /// Tasks aborted.
        tasks: Vec<String>,
    },
}

/// Owns the tasks, the drain triggers and the readiness of a process.
#[derive(Debug)]
pub struct Supervisor {
    serve: DrainTrigger,
    last: DrainTrigger,
    tasks: JoinSet<anyhow::Result<()>>,
    info: HashMap<Id, (String, Stage)>,
    deadline: Duration,
    readiness: Readiness,
}

impl Supervisor {
    /// A supervisor that gives shutdown `deadline` in total.
    pub fn new(deadline: Duration, readiness: Readiness) -> Self {
        Self {
            serve: DrainTrigger::new(),
            last: DrainTrigger::new(),
            tasks: JoinSet::new(),
            info: HashMap::new(),
            deadline,
            readiness,
        }
    }

    /// The drain handle of `stage`.
    pub fn drain(&self, stage: Stage) -> Drain {
        match stage {
            Stage::Serve => self.serve.watcher(),
            Stage::Last => self.last.watcher(),
        }
    }

    /// The readiness shared by every component.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Spawns a long-lived task: `task` gets the drain handle of `stage` and must return once it
    /// is signaled. The handle returned aborts it (tests use that to kill a task).
    pub fn spawn<F, Fut>(&mut self, name: impl Into<String>, stage: Stage, task: F) -> AbortHandle
    where
        F: FnOnce(Drain) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.into();
        let future = task(self.drain(stage));
        let span = tracing::info_span!("task", name = %name);
        let handle = self
            .tasks
            .spawn(tracing::Instrument::instrument(future, span));
        self.info.insert(handle.id(), (name, stage));
        handle
    }

    /// Names of the tasks still running, sorted.
    pub fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self.info.values().map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    }

    fn how(result: Result<anyhow::Result<()>, JoinError>) -> String {
        match result {
            Ok(Ok(())) => "ended without an error".into(),
            Ok(Err(e)) => format!("failed: {e:#}"),
            Err(e) if e.is_panic() => {
                let panic = e.into_panic();
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string payload".into());
                format!("panicked: {message}")
            }
            Err(_) => "was aborted".into(),
        }
    }

    /// Runs until `shutdown` completes or a task ends, then drains stage by stage within the
    /// deadline. `Ok` only when shutdown was asked for and every task finished in time.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), SupervisorError> {
        tokio::pin!(shutdown);
        let failure = tokio::select! {
            () = &mut shutdown => {
                tracing::info!(deadline = ?self.deadline, "shutdown requested: draining");
                None
            }
            Some(joined) = self.tasks.join_next_with_id() => {
                let (id, result) = match joined {
                    Ok((id, r)) => (id, Ok(r)),
                    Err(e) => (e.id(), Err(e)),
                };
                let (task, _) = self.info.remove(&id).unwrap_or_else(|| ("?".into(), Stage::Serve));
                let how = Self::how(result);
                tracing::error!(task = %task, "a critical task {how}; shutting down");
                Some(SupervisorError::Unexpected { task, how })
            }
        };
        self.readiness.set_draining();
        let deadline = Instant::now() + self.deadline;
        for stage in [Stage::Serve, Stage::Last] {
            match stage {
                Stage::Serve => self.serve.start(),
                Stage::Last => self.last.start(),
            }
            while self.info.values().any(|(_, s)| *s == stage) {
                let joined =
                    match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                        Ok(Some(joined)) => joined,
                        Ok(None) | Err(_) => break,
                    };
                let (id, result) = match joined {
                    Ok((id, r)) => (id, Ok(r)),
                    Err(e) => (e.id(), Err(e)),
                };
                let Some((task, _)) = self.info.remove(&id) else {
                    continue;
                };
                match result {
                    Ok(Ok(())) => tracing::debug!(task = %task, "drained"),
                    other => tracing::warn!(task = %task, "while draining, {}", Self::how(other)),
                }
            }
        }
        if !self.info.is_empty() {
            let tasks = self.running();
            tracing::error!(tasks = ?tasks, deadline = ?self.deadline, "drain deadline passed; aborting");
            self.tasks.shutdown().await;
            if failure.is_none() {
                return Err(SupervisorError::DrainTimeout {
                    deadline: self.deadline,
                    tasks,
                });
            }
        }
        match failure {
            Some(f) => Err(f),
            None => {
                tracing::info!("drained");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    fn supervisor() -> Supervisor {
        Supervisor::new(DEADLINE, Readiness::new())
    }

    /// A task that records when it saw the drain and returns after `work`.
    fn recorder(
        log: &Arc<Mutex<Vec<String>>>,
        name: &'static str,
        work: Duration,
    ) -> impl FnOnce(Drain) -> futures::future::BoxFuture<'static, anyhow::Result<()>> {
        let log = log.clone();
        move |drain| {
            Box::pin(async move {
                drain.signaled().await;
                log.lock().push(format!("{name} signaled"));
                tokio::time::sleep(work).await;
                log.lock().push(format!("{name} done"));
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drains_the_serve_stage_before_the_last() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut s = supervisor();
        let readiness = s.readiness().clone();
        s.spawn(
            "lease",
            Stage::Last,
            recorder(&log, "lease", Duration::from_millis(10)),
        );
        s.spawn(
            "status",
            Stage::Serve,
            recorder(&log, "status", Duration::from_secs(1)),
        );
        s.spawn(
            "xds",
            Stage::Serve,
            recorder(&log, "xds", Duration::from_millis(1)),
        );
        let result = s.run(tokio::time::sleep(Duration::from_secs(5))).await;
        assert!(result.is_ok(), "{result:?}");
        let log = log.lock().clone();
        let pos = |e: &str| log.iter().position(|l| l == e).expect(e);
        // The lease hears of the drain only after the last status write finished.
        assert!(pos("status done") < pos("lease signaled"), "{log:?}");
        assert!(pos("xds done") < pos("lease signaled"), "{log:?}");
        assert_eq!(log.last().map(String::as_str), Some("lease done"));
        assert!(!readiness.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ends_early_fails_the_run_and_drains_the_rest() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut s = supervisor();
        s.spawn("xds", Stage::Serve, recorder(&log, "xds", Duration::ZERO));
        s.spawn("lease", Stage::Last, |_| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            anyhow::bail!("the apiserver said no")
        });
        let err = s
            .run(std::future::pending())
            .await
            .expect_err("a dead lease task must fail the process");
        assert_eq!(
            err.to_string(),
            "task `lease` failed: the apiserver said no; shutting down"
        );
        assert_eq!(*log.lock(), vec!["xds signaled", "xds done"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_aborted_or_panicking_task_is_named() {
        let mut s = supervisor();
        let lease = s.spawn("lease", Stage::Last, |d| async move {
            d.signaled().await;
            Ok(())
        });
        lease.abort();
        let err = s.run(std::future::pending()).await.expect_err("aborted");
        assert!(
            matches!(&err, SupervisorError::Unexpected { task, how } if task == "lease" && how == "was aborted"),
            "{err}"
        );

        let mut s = supervisor();
        s.spawn("pipeline", Stage::Serve, |_| async {
            panic!("index poisoned")
        });
        let err = s.run(std::future::pending()).await.expect_err("panic");
        assert_eq!(
            err.to_string(),
            "task `pipeline` panicked: index poisoned; shutting down"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_the_drain_is_aborted_at_the_deadline() {
        let mut s = supervisor();
        s.spawn("stuck", Stage::Serve, |_| std::future::pending());
        s.spawn("polite", Stage::Last, |d| async move {
            d.signaled().await;
            Ok(())
        });
        let started = Instant::now();
        let err = s.run(async {}).await.expect_err("deadline");
        assert_eq!(started.elapsed(), DEADLINE);
        match err {
            SupervisorError::DrainTimeout { tasks, .. } => {
                assert_eq!(tasks, vec!["polite".to_string(), "stuck".to_string()])
            }
            other => panic!("{other}"),
        }
    }
}
