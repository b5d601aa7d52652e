//! A throwaway Kubernetes control plane: etcd + kube-apiserver on 127.0.0.1, with its own PKI,
//! an admin kubeconfig (client certificate in `system:masters`) and an admin bearer token.
//!
//! No kube-controller-manager, scheduler or kubelet: Deployments never get Pods, namespaces never
//! finish deleting, ServiceAccounts get no token Secrets (use the TokenRequest API:
//! [`crate::kube::Kubectl::create_token`]), so never `helm install --wait` against it.
//!
//! Command lines (`$D` is the cluster directory; ports are free loopback ports below the
//! ephemeral range, see [`crate::ports`]):
//!
//! ```text
//! etcd --name wayguard-test --data-dir $D/etcd-data
//!      --listen-client-urls http://127.0.0.1:$ETCD --advertise-client-urls http://127.0.0.1:$ETCD
//!      --listen-peer-urls http://127.0.0.1:$PEER
//!      --initial-advertise-peer-urls http://127.0.0.1:$PEER
//!      --initial-cluster wayguard-test=http://127.0.0.1:$PEER
//!      --listen-metrics-urls http://127.0.0.1:$METRICS --unsafe-no-fsync --log-level warn
//! kube-apiserver --etcd-servers=http://127.0.0.1:$ETCD
//!      --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=$PORT
//!      --cert-dir=$D/apiserver-certs
//!      --tls-cert-file=$D/pki/apiserver.crt --tls-private-key-file=$D/pki/apiserver.key
//!      --client-ca-file=$D/pki/ca.crt --token-auth-file=$D/pki/tokens.csv
//!      --service-account-issuer=https://127.0.0.1:$PORT
//!      --service-account-key-file=$D/pki/sa.pub --service-account-signing-key-file=$D/pki/sa.key
//!      --service-cluster-ip-range=10.0.0.0/24 --authorization-mode=RBAC --allow-privileged=true
//!      --disable-admission-plugins=ServiceAccount --enable-priority-and-fairness=false
//!      --profiling=false --endpoint-reconciler-type=none
//! ```
//! Ready when etcd's `/health` says `"health":"true"`, then `kubectl get --raw /readyz` answers
//! `ok` (which includes the RBAC bootstrap roles) and `kubectl get namespace default` succeeds.
//! Logs: `$D/logs/{etcd,kube-apiserver}.{stdout,stderr}`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::http::{HttpClient, Req};
use crate::kube::KubeTools;
use crate::kube::kubectl::Kubectl;
use crate::poll::{Check, Deadline};
use crate::ports::free_port;
use crate::process::ChildGuard;

/// Time allowed for etcd + kube-apiserver to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Ports and paths of one cluster, from which the command lines are derived.
#[derive(Debug, Clone)]
pub struct ClusterLayout {
    /// The cluster directory.
    pub dir: PathBuf,
    /// etcd client port.
    pub etcd_client_port: u16,
    /// etcd peer port.
    pub etcd_peer_port: u16,
    /// etcd metrics port (by default etcd would bind 2381 and collide with other clusters).
    pub etcd_metrics_port: u16,
    /// kube-apiserver secure port.
    pub apiserver_port: u16,
}

impl ClusterLayout {
    fn free(dir: &Path) -> Result<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            etcd_client_port: free_port()?,
            etcd_peer_port: free_port()?,
            etcd_metrics_port: free_port()?,
            apiserver_port: free_port()?,
        })
    }

    /// A file of the PKI directory.
    pub fn pki(&self, file: &str) -> PathBuf {
        self.dir.join("pki").join(file)
    }

    /// etcd's arguments.
    pub fn etcd_args(&self) -> Vec<String> {
        let client = format!("http://127.0.0.1:{}", self.etcd_client_port);
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer_port);
        vec![
            "--name=wayguard-test".into(),
            format!("--data-dir={}", self.dir.join("etcd-data").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=wayguard-test={peer}"),
            format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                self.etcd_metrics_port
            ),
            // A test cluster: durability does not matter, speed does.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ]
    }

    /// kube-apiserver's arguments.
    pub fn apiserver_args(&self) -> Vec<String> {
        let p = |f: &str| self.pki(f).display().to_string();
        vec![
            format!("--etcd-servers=http://127.0.0.1:{}", self.etcd_client_port),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", self.apiserver_port),
            format!("--cert-dir={}", self.dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", p("tokens.csv")),
            format!(
                "--service-account-issuer=https://127.0.0.1:{}",
                self.apiserver_port
            ),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=RBAC".into(),
            "--allow-privileged=true".into(),
            // No kube-controller-manager, so no default ServiceAccount in new namespaces.
            "--disable-admission-plugins=ServiceAccount".into(),
            // Saves CPU on a 2-core machine; nothing here exercises priority and fairness.
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            // The `kubernetes` Endpoints may not hold a loopback address; nothing needs them.
            "--endpoint-reconciler-type=none".into(),
        ]
    }
}

/// A running etcd + kube-apiserver. Dropping it stops kube-apiserver, then etcd, by PID
/// (SIGTERM, SIGKILL after the stop timeout).
#[derive(Debug)]
pub struct KubeCluster {
    layout: ClusterLayout,
    server: String,
    kubeconfig: PathBuf,
    admin_token: String,
    log_dir: PathBuf,
    kubectl: Kubectl,
    // Field order is drop order: the apiserver before etcd.
    apiserver: Option<ChildGuard>,
    etcd: Option<ChildGuard>,
}

impl KubeCluster {
    /// Creates the PKI in `dir` (a fresh directory), starts etcd and kube-apiserver on free
    /// loopback ports and waits (up to [`START_TIMEOUT`]) until the apiserver is ready.
    pub async fn start(tools: &KubeTools, dir: &Path) -> Result<Self> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if dir.join("etcd-data").exists() {
            bail!(
                "{} already holds a cluster (etcd-data); use a fresh directory",
                dir.display()
            );
        }
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir).with_context(|| format!("{}", log_dir.display()))?;
        let layout = ClusterLayout::free(&dir)?;
        let admin_token = random_hex(16)?;
        {
            let layout = layout.clone();
            let token = admin_token.clone();
            tokio::task::spawn_blocking(move || write_pki(&layout, &token))
                .await
                .map_err(|e| anyhow!("PKI task: {e}"))??;
        }
        let server = format!("https://127.0.0.1:{}", layout.apiserver_port);
        let kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(&kubeconfig, admin_kubeconfig(&layout, &server)?)
            .with_context(|| format!("writing {}", kubeconfig.display()))?;
        let kubectl = Kubectl::new(&tools.kubectl, &kubeconfig);

        let mut cluster = Self {
            server,
            kubeconfig,
            admin_token,
            log_dir: log_dir.clone(),
            kubectl,
            apiserver: None,
            etcd: None,
            layout,
        };
        let mut deadline = Deadline::new("etcd + kube-apiserver ready", START_TIMEOUT);

        let mut etcd = Command::new(&tools.etcd);
        etcd.args(cluster.layout.etcd_args());
        cluster.etcd = Some(ChildGuard::spawn("etcd", etcd, &log_dir)?);
        let etcd_health = HttpClient::plain(&format!(
            "http://127.0.0.1:{}",
            cluster.layout.etcd_client_port
        ))?;
        loop {
            let check = match cluster.exited() {
                Some(fatal) => Check::Fatal(fatal),
                None => match etcd_health.send(&Req::get("/health")).await {
                    Ok(resp) if resp.body.contains(r#""health":"true""#) => Check::Done(()),
                    Ok(resp) => Check::Pending(format!("etcd /health: {}", resp.summary())),
                    Err(e) => Check::Pending(format!("etcd /health: {e:#}")),
                },
            };
            match deadline.next(check).await {
                Ok(Some(())) => break,
                Ok(None) => {}
                Err(e) => return Err(anyhow!("{e:#}\n{}", cluster.log_tails(30))),
            }
        }

        let mut apiserver = Command::new(&tools.kube_apiserver);
        apiserver.args(cluster.layout.apiserver_args());
        cluster.apiserver = Some(
            ChildGuard::spawn("kube-apiserver", apiserver, &log_dir)?
                .with_stop_timeout(Duration::from_secs(10)),
        );
        loop {
            let check = match cluster.exited() {
                Some(fatal) => Check::Fatal(fatal),
                None => match cluster.kubectl.run(&["get", "--raw", "/readyz"]).await {
                    Ok(out) if out.success && out.stdout.trim() == "ok" => {
                        match cluster
                            .kubectl
                            .run(&["get", "namespace", "default", "-o", "name"])
                            .await
                        {
                            Ok(out) if out.success => Check::Done(()),
                            Ok(out) => Check::Pending(format!("namespace default: {}", out.stderr)),
                            Err(e) => Check::Pending(format!("{e:#}")),
                        }
                    }
                    Ok(out) => Check::Pending(format!(
                        "/readyz: {} {}",
                        out.stdout.trim(),
                        out.stderr.trim()
                    )),
                    Err(e) => Check::Pending(format!("{e:#}")),
                },
            };
            match deadline.next(check).await {
                Ok(Some(())) => break,
                Ok(None) => {}
                Err(e) => return Err(anyhow!("{e:#}\n{}", cluster.log_tails(30))),
            }
        }
        Ok(cluster)
    }

    fn exited(&mut self) -> Option<String> {
        for guard in [self.etcd.as_mut(), self.apiserver.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(status) = guard.try_exit() {
                return Some(format!("{} exited ({status})", guard.name()));
            }
        }
        None
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The cluster directory (`pki/`, `etcd-data/`, `logs/`, `admin.kubeconfig`).
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// The admin kubeconfig (client certificate, `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A bearer token for user `admin` in group `system:masters`.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The CA certificate (PEM file) that signed the serving and client certificates.
    pub fn ca_cert(&self) -> PathBuf {
        self.layout.pki("ca.crt")
    }

    /// The ServiceAccount token signing key (RSA, PEM) and its public key.
    pub fn sa_keys(&self) -> (PathBuf, PathBuf) {
        (self.layout.pki("sa.key"), self.layout.pki("sa.pub"))
    }

    /// kubectl as the admin.
    pub fn kubectl(&self) -> &Kubectl {
        &self.kubectl
    }

    /// PIDs of (etcd, kube-apiserver) while they run.
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.etcd.as_ref().map(ChildGuard::pid),
            self.apiserver.as_ref().map(ChildGuard::pid),
        )
    }

    /// A kubeconfig for the same cluster that authenticates with a bearer `token` (e.g. a
    /// ServiceAccount token), CA embedded, default namespace `namespace`.
    pub fn token_kubeconfig(&self, user: &str, token: &str, namespace: &str) -> Result<String> {
        let ca = std::fs::read(self.ca_cert()).context("reading the cluster CA")?;
        Ok(format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: wayguard-test
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: {user}
  context:
    cluster: wayguard-test
    user: {user}
    namespace: {namespace}
current-context: {user}
"#,
            server = self.server,
            ca = STANDARD.encode(ca)
        ))
    }

    /// The last `lines` lines of etcd's and kube-apiserver's logs.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut text = String::new();
        for guard in [self.etcd.as_ref(), self.apiserver.as_ref()]
            .into_iter()
            .flatten()
        {
            text.push_str(&guard.log_tail(lines));
        }
        if text.is_empty() {
            text = format!(
                "(no cluster processes; logs in {})\n",
                self.log_dir.display()
            );
        }
        text
    }

    /// Stops kube-apiserver, then etcd (SIGTERM by PID, SIGKILL after the stop timeout).
    pub fn stop(&mut self) {
        if let Some(mut apiserver) = self.apiserver.take() {
            apiserver.stop();
        }
        if let Some(mut etcd) = self.etcd.take() {
            etcd.stop();
        }
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read as _;
    let mut buf = vec![0_u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running openssl (Debian package `openssl`)")?;
    if !out.status.success() {
        bail!(
            "`cd {} && openssl {}` failed ({}): {}",
            dir.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// CA, serving certificate, admin client certificate, ServiceAccount key pair and token file.
fn write_pki(layout: &ClusterLayout, admin_token: &str) -> Result<()> {
    let pki = layout.dir.join("pki");
    std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
    let write = |name: &str, text: &str| -> Result<()> {
        std::fs::write(pki.join(name), text).with_context(|| format!("writing {name}"))
    };
    write(
        "apiserver.ext",
        "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,\
         DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n\
         keyUsage=digitalSignature,keyEncipherment\n",
    )?;
    write(
        "admin.ext",
        "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )?;
    write(
        "tokens.csv",
        &format!("{admin_token},admin,admin,system:masters\n"),
    )?;
    let steps: [&[&str]; 5] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=wayguard-test-ca",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "apiserver.key",
            "-out",
            "apiserver.csr",
            "-subj",
            "/CN=kube-apiserver",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "apiserver.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "apiserver.ext",
            "-out",
            "apiserver.crt",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "admin.key",
            "-out",
            "admin.csr",
            "-subj",
            "/O=system:masters/CN=admin",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "admin.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "admin.ext",
            "-out",
            "admin.crt",
        ],
    ];
    for args in steps {
        openssl(&pki, args)?;
    }
    openssl(&pki, &["genrsa", "-out", "sa.key", "2048"])?;
    openssl(&pki, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    openssl(
        &pki,
        &["verify", "-CAfile", "ca.crt", "apiserver.crt", "admin.crt"],
    )?;
    Ok(())
}

/// The admin kubeconfig, certificates embedded (valid when copied elsewhere).
fn admin_kubeconfig(layout: &ClusterLayout, server: &str) -> Result<String> {
    let b64 = |file: &str| -> Result<String> {
        let path = layout.pki(file);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(STANDARD.encode(bytes))
    };
    Ok(format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: wayguard-test\n  cluster:\n    server: \
         {server}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    \
         client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: \
         wayguard-test\n  context:\n    cluster: wayguard-test\n    user: admin\n\
         current-context: wayguard-test\n",
        ca = b64("ca.crt")?,
        cert = b64("admin.crt")?,
        key = b64("admin.key")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_point_at_the_layout() {
        let layout = ClusterLayout {
            dir: PathBuf::from("/c"),
            etcd_client_port: 1,
            etcd_peer_port: 2,
            etcd_metrics_port: 4,
            apiserver_port: 3,
        };
        let args = layout.apiserver_args();
        for want in [
            "--etcd-servers=http://127.0.0.1:1",
            "--secure-port=3",
            "--client-ca-file=/c/pki/ca.crt",
            "--service-account-issuer=https://127.0.0.1:3",
            "--authorization-mode=RBAC",
            "--bind-address=127.0.0.1",
        ] {
            assert!(args.contains(&want.to_string()), "{want} in {args:?}");
        }
        let etcd = layout.etcd_args();
        for want in [
            "--initial-cluster=wayguard-test=http://127.0.0.1:2",
            "--listen-metrics-urls=http://127.0.0.1:4",
            "--listen-client-urls=http://127.0.0.1:1",
        ] {
            assert!(etcd.contains(&want.to_string()), "{want} in {etcd:?}");
        }
    }
}
