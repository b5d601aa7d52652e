//! A throwaway Kubernetes control plane: etcd + kube-apiserver on 127.0.0.1, with its own PKI,
//! an admin kubeconfig (client certificate in `system:masters`) and an admin bearer token.
//!
//! The one implementation behind `cargo xtask cluster`, the `cargo xtask tools --kube` smoke test
//! and tier 3 (`wayguard_tests::kube::KubeCluster` runs [`KubeCluster::start`] off the async
//! runtime). It blocks while it waits; it needs the `openssl` CLI (Debian `openssl`) for the PKI.
//!
//! No kube-controller-manager, scheduler or kubelet: Deployments never get Pods, namespaces never
//! finish deleting, ServiceAccounts get no token Secrets (use the TokenRequest API:
//! `kubectl create token SA`), so never `helm install --wait` against it.
//!
//! Command lines (verified with kube-apiserver v1.36.3 and etcd v3.6.8; `$D` is the cluster
//! directory; ports are free loopback ports below the ephemeral range, see [`crate::ports`]):
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

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::ports::free_port;
use crate::process::ChildGuard;

/// How often [`KubeCluster::start`] re-checks readiness.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The binaries a cluster needs.
#[derive(Debug, Clone)]
pub struct ClusterBinaries {
    /// etcd.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kubectl: the readiness checks and [`KubeCluster::kubectl_output`].
    pub kubectl: PathBuf,
}

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
            // No kube-controller-manager, so no default ServiceAccount in new namespaces: without
            // this, Pod creation would wait for one forever.
            "--disable-admission-plugins=ServiceAccount".into(),
            // Saves CPU on a 2-core machine; nothing here exercises priority and fairness.
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            // The `kubernetes` Endpoints may not hold a loopback address ("may not be in the
            // loopback range", logged every 10 s); nothing in-cluster needs them here.
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
    kubectl: PathBuf,
    // Field order is drop order: the apiserver before etcd.
    apiserver: Option<ChildGuard>,
    etcd: Option<ChildGuard>,
}

impl KubeCluster {
    /// Creates the PKI in `dir` (a fresh directory), starts etcd and kube-apiserver on free
    /// loopback ports and waits (up to `timeout`, blocking) until the apiserver is ready. On
    /// error, whatever was started is stopped again.
    pub fn start(bins: &ClusterBinaries, dir: &Path, timeout: Duration) -> Result<Self> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        for bin in [&bins.etcd, &bins.kube_apiserver, &bins.kubectl] {
            if !bin.is_file() {
                bail!(
                    "{} is missing: run `cargo xtask tools --kube`",
                    bin.display()
                );
            }
        }
        if dir.join("etcd-data").exists() {
            bail!(
                "{} already holds a cluster (etcd-data); use a fresh directory",
                dir.display()
            );
        }
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let layout = ClusterLayout::free(&dir)?;
        let admin_token = random_hex(16)?;
        write_pki(&layout, &admin_token)?;
        let server = format!("https://127.0.0.1:{}", layout.apiserver_port);
        let kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(&kubeconfig, admin_kubeconfig(&layout, &server)?)
            .with_context(|| format!("writing {}", kubeconfig.display()))?;

        let mut cluster = Self {
            server,
            kubeconfig,
            admin_token,
            log_dir,
            kubectl: bins.kubectl.clone(),
            apiserver: None,
            etcd: None,
            layout,
        };
        let mut deadline = Deadline::new("etcd + kube-apiserver ready", timeout);

        let mut etcd = Command::new(&bins.etcd);
        etcd.args(cluster.layout.etcd_args());
        cluster.etcd = Some(ChildGuard::spawn("etcd", etcd, &cluster.log_dir)?);
        let etcd_port = cluster.layout.etcd_client_port;
        cluster.wait(&mut deadline, |_| match http_get(etcd_port, "/health") {
            Ok(body) if body.contains(r#""health":"true""#) => Ok(()),
            Ok(body) => Err(format!("etcd /health: {}", body.trim())),
            Err(e) => Err(format!("etcd /health: {e:#}")),
        })?;

        let mut apiserver = Command::new(&bins.kube_apiserver);
        apiserver.args(cluster.layout.apiserver_args());
        cluster.apiserver = Some(
            ChildGuard::spawn("kube-apiserver", apiserver, &cluster.log_dir)?
                .with_stop_timeout(Duration::from_secs(10)),
        );
        cluster.wait(&mut deadline, |c| {
            match c.kubectl_output(&["get", "--raw", "/readyz"]) {
                Ok(out) if out.trim() == "ok" => {}
                Ok(out) => return Err(format!("/readyz: {}", out.trim())),
                Err(e) => return Err(format!("{e:#}")),
            }
            c.kubectl_output(&["get", "namespace", "default", "-o", "name"])
                .map(drop)
                .map_err(|e| format!("namespace default: {e:#}"))
        })?;
        Ok(cluster)
    }

    /// Polls `check` until it is `Ok`, a cluster process exits, or `deadline` passes; the error
    /// carries the last state and the tails of both logs.
    fn wait(
        &mut self,
        deadline: &mut Deadline,
        mut check: impl FnMut(&Self) -> std::result::Result<(), String>,
    ) -> Result<()> {
        loop {
            let check = match self.exited() {
                Some(fatal) => Check::Fatal(fatal),
                None => match check(self) {
                    Ok(()) => Check::Done,
                    Err(state) => Check::Pending(state),
                },
            };
            match deadline.next(check) {
                Ok(true) => return Ok(()),
                Ok(false) => std::thread::sleep(POLL_INTERVAL),
                Err(e) => bail!("{e}\n{}", self.log_tails(30)),
            }
        }
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

    /// `http://127.0.0.1:PORT` of etcd.
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.layout.etcd_client_port)
    }

    /// Ports and paths of this cluster.
    pub fn layout(&self) -> &ClusterLayout {
        &self.layout
    }

    /// The cluster directory (`pki/`, `etcd-data/`, `logs/`, `admin.kubeconfig`).
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// Where etcd and kube-apiserver write `NAME.stdout` and `NAME.stderr`.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The admin kubeconfig (client certificate, `system:masters`; certificates embedded).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A bearer token for user `admin` in group `system:masters` (`--token-auth-file`).
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

    /// PIDs of (etcd, kube-apiserver) while they run.
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.etcd.as_ref().map(ChildGuard::pid),
            self.apiserver.as_ref().map(ChildGuard::pid),
        )
    }

    /// `kubectl --kubeconfig <admin.kubeconfig>`; add arguments and run it.
    pub fn kubectl_command(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Runs kubectl as the admin with `args` (blocking): its stdout, or an error with its stderr.
    pub fn kubectl_output(&self, args: &[&str]) -> Result<String> {
        let out = self
            .kubectl_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.kubectl.display()))?;
        if !out.status.success() {
            bail!(
                "`kubectl --kubeconfig {} {}` failed ({}): {}",
                self.kubeconfig.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

    /// Stops kube-apiserver, then etcd (SIGTERM by PID, SIGKILL after the stop timeout). An
    /// error names a process that even SIGKILL did not end.
    pub fn stop(&mut self) -> Result<()> {
        let mut alive = Vec::new();
        for mut guard in [self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            if guard.stop().is_none() {
                alive.push(format!("{} (pid {})", guard.name(), guard.pid()));
            }
        }
        if !alive.is_empty() {
            bail!("still running after SIGKILL: {}", alive.join(", "));
        }
        Ok(())
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// What one readiness check found.
enum Check {
    Done,
    /// Not yet: the current state, kept for the timeout message.
    Pending(String),
    /// Never: a cluster process exited.
    Fatal(String),
}

/// One deadline across the readiness phases, counting checks and keeping the last state.
struct Deadline {
    what: &'static str,
    start: Instant,
    timeout: Duration,
    last: String,
    checks: u32,
}

impl Deadline {
    fn new(what: &'static str, timeout: Duration) -> Self {
        Self {
            what,
            start: Instant::now(),
            timeout,
            last: String::from("(never checked)"),
            checks: 0,
        }
    }

    /// `Ok(true)` when done, `Ok(false)` to check again, the message on `Fatal` or timeout.
    fn next(&mut self, check: Check) -> std::result::Result<bool, String> {
        self.checks += 1;
        match check {
            Check::Done => return Ok(true),
            Check::Fatal(reason) => {
                return Err(format!(
                    "{}: gave up after {:?}: {reason}",
                    self.what,
                    self.start.elapsed()
                ));
            }
            Check::Pending(state) => self.last = state,
        }
        if self.start.elapsed() >= self.timeout {
            return Err(format!(
                "{}: timed out after {:?} ({} checks); last state: {}",
                self.what, self.timeout, self.checks, self.last
            ));
        }
        Ok(false)
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1 returning the body (for etcd's `/health`).
fn http_get(port: u16, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .context("setting a read timeout")?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").context("sending")?;
    let mut response = String::new();
    stream.read_to_string(&mut response).context("reading")?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.as_str(), |(_, body)| body)
        .to_string())
}

fn random_hex(bytes: usize) -> Result<String> {
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
    openssl(
        &pki,
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
    )?;
    // A key and CSR, then the certificate signed by the CA with the extensions of `<name>.ext`.
    for (name, subject) in [
        ("apiserver", "/CN=kube-apiserver"),
        ("admin", "/O=system:masters/CN=admin"),
    ] {
        let (key, csr, ext, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
            format!("{name}.crt"),
        );
        openssl(
            &pki,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                subject,
            ],
        )?;
        openssl(
            &pki,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "3650",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ],
        )?;
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
