//! `helm install` of `charts/wayguard` into the test cluster (never `--wait`: there is no
//! kubelet, the Deployment never gets Pods).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};

use crate::wayguard::workspace_root;

/// The release name. It contains "wayguard", so the chart's full name (ServiceAccount,
/// ClusterRole, Deployment) is exactly `wayguard`.
pub const RELEASE: &str = "wayguard";
/// The release namespace (where the Lease lives).
pub const NAMESPACE: &str = "wayguard-system";
/// The chart's ServiceAccount for [`RELEASE`].
pub const SERVICE_ACCOUNT: &str = "wayguard";
/// The chart's ClusterRole and ClusterRoleBinding for [`RELEASE`] in [`NAMESPACE`]
/// (`<fullname>-<namespace>`, so two releases in two namespaces do not collide).
pub const CLUSTER_ROLE: &str = "wayguard-wayguard-system";
/// The leader-election Lease (chart helper `wayguard.leaseName`, wayguard's `wayguard-leader`).
pub const LEASE: &str = "wayguard-leader";

/// The chart directory.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/wayguard")
}

/// A helm with private cache/config/data directories under `home`, talking to the cluster of
/// `kubeconfig`.
#[derive(Debug, Clone)]
pub struct Helm {
    binary: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Helm {
    /// helm at `binary`, state in `home` (created).
    pub fn new(binary: &Path, kubeconfig: &Path, home: &Path) -> Result<Self> {
        std::fs::create_dir_all(home).with_context(|| format!("{}", home.display()))?;
        Ok(Self {
            binary: binary.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            home: home.to_path_buf(),
        })
    }

    /// Runs helm with `args`; stdout, or an error with the command and its output.
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        let command = format!("helm {}", args.join(" "));
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| anyhow!("helm task: {e}"))?
            .with_context(|| format!("running `{command}`"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "`{command}` failed ({}):\n{}\n{stdout}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(stdout)
    }

    /// `helm install wayguard charts/wayguard -n wayguard-system --create-namespace` plus
    /// `--set` values (no `--wait`). Returns helm's output.
    pub async fn install_chart(&self, set: &[&str]) -> Result<String> {
        let chart = chart_dir().display().to_string();
        let mut args = vec![
            "install",
            RELEASE,
            chart.as_str(),
            "--namespace",
            NAMESPACE,
            "--create-namespace",
        ];
        for value in set {
            args.extend_from_slice(&["--set", value]);
        }
        self.run(&args).await
    }

    /// `helm status wayguard -n wayguard-system -o json`, parsed.
    pub async fn status(&self) -> Result<serde_json::Value> {
        let text = self
            .run(&["status", RELEASE, "--namespace", NAMESPACE, "-o", "json"])
            .await?;
        serde_json::from_str(&text).with_context(|| format!("helm status: not JSON: {text}"))
    }
}
