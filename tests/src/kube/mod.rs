//! Tier 3 harness: a real Kubernetes control plane (etcd + kube-apiserver on loopback), the
//! wayguard Helm chart installed into it, `wayguard serve --kubernetes` running out of cluster
//! with a token of the chart's ServiceAccount, and a real Envoy in front of the echo backend.
//!
//! - [`cluster`]: [`KubeCluster`]: PKI (openssl), etcd, kube-apiserver, admin kubeconfig and
//!   token; both processes are [`crate::process::ChildGuard`]s (stopped by PID). The cluster
//!   itself is `wayguard_testkit::cluster`, shared with `cargo xtask cluster`.
//! - [`kubectl`]: [`Kubectl`], kubectl with one kubeconfig (apply from a string, get as JSON,
//!   create token, the printer-column table), run off the async runtime.
//! - [`helm`]: `helm install` of `charts/wayguard` with private `HELM_*` directories.
//! - [`manifests`]: loopback manifests: Gateway (class `wayguard`, `spec.addresses` 127.0.0.1),
//!   Service + FQDN EndpointSlice (`<name>.localhost`), HTTPRoute, the Gateway API CRDs.
//! - [`controller`]: [`KubeWayguard`], one `wayguard serve --kubernetes` replica (identity,
//!   Lease namespace, lease duration) with log checks (`forbidden`, status writes, leadership).
//! - [`sockets`]: the TCP addresses a process listens on (`/proc`): etcd, kube-apiserver and
//!   every wayguard replica are checked to listen on loopback only.
//! - [`scenario`]: [`KubeScenario`], all of the above wired together: cluster + CRDs + chart +
//!   ServiceAccount kubeconfig, replicas, Envoy, request and status assertions that report the
//!   request, expected vs got, wayguard's and Envoy's logs and the policies' status.
//!
//! Tools come from `$WAYGUARD_TOOLS/tools.env` (or the environment): `WAYGUARD_ETCD`,
//! `WAYGUARD_KUBE_APISERVER`, `WAYGUARD_KUBECTL`, `WAYGUARD_HELM` (`cargo xtask tools --kube`),
//! `WAYGUARD_ENVOY` (`cargo xtask tools --envoy`), and `openssl` on `PATH`. A missing tool fails
//! the test with the install step.
//!
//! Phase timings (cluster start, CRDs, chart, each test phase, teardown) are written straight to
//! the process's stderr, so they show even when the test harness captures output.

pub mod cluster;
pub mod controller;
pub mod helm;
pub mod kubectl;
pub mod manifests;
pub mod scenario;
pub mod sockets;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

pub use self::cluster::KubeCluster;
pub use self::controller::{ControllerOptions, KubeWayguard};
pub use self::kubectl::Kubectl;
pub use self::scenario::KubeScenario;

/// tools.env key of etcd.
pub const ETCD: &str = "WAYGUARD_ETCD";
/// tools.env key of kube-apiserver.
pub const KUBE_APISERVER: &str = "WAYGUARD_KUBE_APISERVER";
/// tools.env key of kubectl.
pub const KUBECTL: &str = "WAYGUARD_KUBECTL";
/// tools.env key of helm.
pub const HELM: &str = "WAYGUARD_HELM";

/// A Kubernetes tool by tools.env key; the error names `cargo xtask tools --kube`.
pub fn tool(key: &str) -> Result<PathBuf> {
    crate::tools::resolve(key).map_err(|e| {
        anyhow!("{e:#} (the Kubernetes tools are installed by `cargo xtask tools --kube`)")
    })
}

/// The binaries of one tier-3 run, resolved up front so a missing one fails before any work.
#[derive(Debug, Clone)]
pub struct KubeTools {
    /// etcd.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kubectl.
    pub kubectl: PathBuf,
    /// helm.
    pub helm: PathBuf,
}

impl KubeTools {
    /// Resolves every tool (and checks Envoy and `openssl` too).
    pub fn resolve() -> Result<Self> {
        crate::tools::envoy()?;
        let openssl = std::process::Command::new("openssl")
            .arg("version")
            .output()
            .map_err(|e| anyhow!("`openssl version` failed ({e}): install Debian `openssl`"))?;
        if !openssl.status.success() {
            return Err(anyhow!(
                "`openssl version` failed: install Debian `openssl`"
            ));
        }
        Ok(Self {
            etcd: tool(ETCD)?,
            kube_apiserver: tool(KUBE_APISERVER)?,
            kubectl: tool(KUBECTL)?,
            helm: tool(HELM)?,
        })
    }
}

/// Writes a line to the process's stderr, bypassing the test harness's output capture.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Times the phases of one test and reports each as `[tier3 <test>] <phase>: 1.23s`.
#[derive(Debug)]
pub struct PhaseClock {
    test: String,
    start: Instant,
    last: Instant,
    phases: Vec<(String, Duration)>,
}

impl PhaseClock {
    /// Starts the clock for `test`.
    pub fn new(test: &str) -> Self {
        let now = Instant::now();
        Self {
            test: test.to_string(),
            start: now,
            last: now,
            phases: Vec::new(),
        }
    }

    /// Ends the current phase (started by the previous call, or at creation), reports its
    /// duration and returns it.
    pub fn phase(&mut self, what: &str) -> Duration {
        let now = Instant::now();
        let took = now - self.last;
        self.last = now;
        self.phases.push((what.to_string(), took));
        report(&format!(
            "[tier3 {}] {what}: {:.2}s",
            self.test,
            took.as_secs_f64()
        ));
        took
    }

    /// Restarts the current phase now (time spent since the last phase is not attributed).
    pub fn restart(&mut self) {
        self.last = Instant::now();
    }

    /// Every phase so far.
    pub fn phases(&self) -> &[(String, Duration)] {
        &self.phases
    }

    /// Time since the clock started.
    pub fn total(&self) -> Duration {
        self.start.elapsed()
    }

    /// Reports the total.
    pub fn report_total(&self) {
        report(&format!(
            "[tier3 {}] total: {:.2}s",
            self.test,
            self.total().as_secs_f64()
        ));
    }
}
