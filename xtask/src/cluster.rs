//! `cargo xtask cluster --dir DIR`: a local etcd + kube-apiserver (from `cargo xtask tools
//! --kube`) for development; runs until `DIR/stop` exists, then stops both processes.
//!
//! The cluster is `wayguard_testkit::cluster::KubeCluster`, the same one tier 3 runs on.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use wayguard_testkit::cluster::KubeCluster;

use crate::tools::Tools;

/// Flags.
#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Directory for the PKI, etcd data, logs and kubeconfig (must be empty or absent).
    #[arg(long)]
    pub dir: PathBuf,
}

/// Starts the cluster and waits for `DIR/stop`.
pub fn run(args: ClusterArgs) -> Result<()> {
    let tools = Tools::from_env();
    let mut cluster = KubeCluster::start(
        &tools.cluster_binaries(),
        &args.dir,
        Duration::from_secs(60),
    )
    .context("starting etcd and kube-apiserver (run `cargo xtask tools --kube` first)")?;
    println!("kubeconfig: {}", cluster.kubeconfig().display());
    println!("server: {}", cluster.server());
    println!("stop with: touch {}", args.dir.join("stop").display());
    let stop = args.dir.join("stop");
    while !stop.exists() {
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.stop()
}
