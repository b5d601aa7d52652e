//! The [`Source`] seam: what turns the outside world into index changes. Two sources implement
//! it, a directory of YAML ([`FilesSource`]) and a Kubernetes cluster
//! ([`crate::kubernetes::KubernetesSource`]); the rest of `serve` does not know which one runs.
//!
//! A source runs as one supervised task. It applies objects to the index itself, calls
//! [`Changes::notify`] after it changed the index (the pipeline debounces those into rebuilds),
//! calls [`Synced::done`] once the index holds the initial state (the first build waits for
//! that, and readiness names it until then), and returns when the drain is signaled.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot, watch};
use wayguard_runtime::{BlockReady, Drain};

use crate::pipeline::Pipeline;
use crate::source::FileSource;

/// Wakes the pipeline after a source changed the index.
#[derive(Clone, Debug)]
pub struct Changes(Arc<watch::Sender<u64>>);

impl Default for Changes {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl Changes {
    /// Tells the pipeline the index changed.
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every notification after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// The one-shot "initial state is in the index" signal of a source, with its readiness blocker.
#[derive(Debug)]
pub struct Synced {
    blocker: Option<BlockReady>,
    tx: Option<oneshot::Sender<()>>,
}

impl Synced {
    /// A signal whose receiver the pipeline waits on, holding `blocker` until done.
    pub fn new(blocker: BlockReady) -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                blocker: Some(blocker),
                tx: Some(tx),
            },
            rx,
        )
    }

    /// Shows `detail` on `/ready` while not synced.
    pub fn progress(&self, detail: impl Into<String>) {
        if let Some(b) = &self.blocker {
            b.set_detail(detail);
        }
    }

    /// The initial state is in the index. Later calls do nothing.
    pub fn done(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(());
        }
        self.blocker.take();
    }
}

/// What a running source gets.
#[derive(Debug)]
pub struct SourceContext {
    /// The pipeline whose index the source writes.
    pub pipeline: Arc<Pipeline>,
    /// Notified after every index change.
    pub changes: Changes,
    /// Signaled once the initial state is in the index.
    pub synced: Synced,
    /// Bumped after every rebuild (the Kubernetes source re-reads the watch set then).
    pub rebuilt: watch::Receiver<u64>,
    /// The source returns when this is signaled.
    pub drain: Drain,
}

/// A source of configuration.
pub trait Source: Send + 'static {
    /// The supervised task's name (`files`, `kubernetes`).
    fn name(&self) -> &'static str;
    /// Feeds the index until the drain is signaled; an error ends the process.
    fn run(self, ctx: SourceContext) -> impl Future<Output = Result<()>> + Send + 'static;
}

/// A directory of Kubernetes-style YAML, rescanned when a manifest in it settles.
#[derive(Debug)]
pub struct FilesSource {
    dir: PathBuf,
}

impl FilesSource {
    /// A source for `dir` (checked to be a directory when it runs).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

/// Whether a file event means "content is final": written and closed, created (including
/// renamed into place), removed or renamed. Plain data modifications are skipped so a file is
/// not read half-written; its close-write follows.
fn is_settled(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Modify(ModifyKind::Any)
            | EventKind::Any
    )
}

impl FilesSource {
    /// Rescans and publishes what changed; `Err` only from the first scan.
    fn scan(source: &mut FileSource, ctx: &SourceContext) -> std::io::Result<bool> {
        let outcome = {
            let mut index = ctx.pipeline.index.write();
            source.scan(&mut index)
        }?;
        tracing::debug!(
            files = outcome.files_read,
            changed = outcome.changed,
            "rescanned"
        );
        *ctx.pipeline.source_problems.lock() = source.problems();
        if outcome.changed {
            ctx.changes.notify();
        }
        Ok(outcome.changed)
    }
}

impl Source for FilesSource {
    fn name(&self) -> &'static str {
        "files"
    }

    async fn run(self, mut ctx: SourceContext) -> Result<()> {
        let dir = self.dir;
        // Settled events on manifests wake the rescan. Only manifests (or directories, whose
        // removal takes manifests along) matter: an editor's temporary files must not cause
        // rescans.
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(e)
                    if is_settled(&e.kind)
                        && e.paths
                            .iter()
                            .any(|p| crate::files::is_manifest(p) || p.extension().is_none()) =>
                {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "file watch error"),
            })
            .context("starting the file watcher")?;
        watcher
            .watch(&dir, RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", dir.display()))?;

        let mut source = FileSource::new(dir.clone());
        ctx.synced.progress(format!("reading {}", dir.display()));
        Self::scan(&mut source, &ctx).with_context(|| format!("reading {}", dir.display()))?;
        for p in source.problems() {
            tracing::warn!(file = %p.file, problem = %p.message, "skipped");
        }
        ctx.synced.done();

        loop {
            tokio::select! {
                biased;
                () = ctx.drain.signaled() => return Ok(()),
                event = rx.recv() => {
                    if event.is_none() {
                        anyhow::bail!("the file watcher of {} stopped", dir.display());
                    }
                    // One rescan for every event queued meanwhile (an editor's save sends several).
                    while rx.try_recv().is_ok() {}
                    if let Err(e) = Self::scan(&mut source, &ctx) {
                        tracing::warn!(error = %e, "rescan failed; keeping the current state");
                    }
                }
            }
        }
    }
}
