//! [`KubeCluster`]: the throwaway etcd + kube-apiserver of `wayguard_testkit::cluster` (the same
//! one `cargo xtask cluster` runs: PKI with openssl, free loopback ports, readiness checks, logs
//! in `$D/logs/{etcd,kube-apiserver}.{stdout,stderr}`), started on a blocking thread so that the
//! async runtime keeps serving while it comes up, with an async [`Kubectl`] as the admin.
//!
//! No kube-controller-manager, scheduler or kubelet: Deployments never get Pods, namespaces never
//! finish deleting, ServiceAccounts get no token Secrets (use the TokenRequest API:
//! [`Kubectl::create_token`]), so never `helm install --wait` against it.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, anyhow};
use wayguard_testkit::cluster::{self as shared, ClusterBinaries};

use crate::kube::KubeTools;
use crate::kube::kubectl::Kubectl;

/// Time allowed for etcd + kube-apiserver to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A running etcd + kube-apiserver; everything of [`shared::KubeCluster`] (server, kubeconfig,
/// admin token, CA, PIDs, log tails, `stop`) through `Deref`. Dropping it stops kube-apiserver,
/// then etcd, by PID (SIGTERM, SIGKILL after the stop timeout).
#[derive(Debug)]
pub struct KubeCluster {
    cluster: shared::KubeCluster,
    kubectl: Kubectl,
}

impl KubeCluster {
    /// Creates the PKI in `dir` (a fresh directory), starts etcd and kube-apiserver on free
    /// loopback ports and waits (up to [`START_TIMEOUT`]) until the apiserver is ready.
    pub async fn start(tools: &KubeTools, dir: &Path) -> Result<Self> {
        let bins = ClusterBinaries {
            etcd: tools.etcd.clone(),
            kube_apiserver: tools.kube_apiserver.clone(),
            kubectl: tools.kubectl.clone(),
        };
        let dir = dir.to_path_buf();
        let cluster = tokio::task::spawn_blocking(move || {
            shared::KubeCluster::start(&bins, &dir, START_TIMEOUT)
        })
        .await
        .map_err(|e| anyhow!("cluster start task: {e}"))??;
        let kubectl = Kubectl::new(&tools.kubectl, cluster.kubeconfig());
        Ok(Self { cluster, kubectl })
    }

    /// kubectl as the admin.
    pub fn kubectl(&self) -> &Kubectl {
        &self.kubectl
    }
}

impl Deref for KubeCluster {
    type Target = shared::KubeCluster;

    fn deref(&self) -> &Self::Target {
        &self.cluster
    }
}

impl DerefMut for KubeCluster {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.cluster
    }
}
