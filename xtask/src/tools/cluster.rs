//! A throwaway Kubernetes control plane for tests: etcd + kube-apiserver on 127.0.0.1, with its
//! own PKI, an admin kubeconfig (client certificate) and an admin bearer token.
//!
//! Self-contained on purpose (std + anyhow + the `openssl` CLI) so that the test harness crate can
//! copy or move it. No kube-controller-manager, scheduler or kubelet: Deployments never get Pods,
//! namespaces never finish deleting, ServiceAccounts get no token Secrets (use the TokenRequest
//! API: `kubectl create token SA`), so never `helm install --wait` against it.
//!
//! Flags (verified with kube-apiserver v1.36.3 and etcd v3.6.8; `$D` is the cluster directory,
//! ports are picked free per cluster):
//!
//! ```text
//! etcd --name wayguard-test --data-dir $D/etcd-data
//!      --listen-client-urls http://127.0.0.1:$ETCD --advertise-client-urls http://127.0.0.1:$ETCD
//!      --listen-peer-urls http://127.0.0.1:$PEER --initial-advertise-peer-urls http://127.0.0.1:$PEER
//!      --initial-cluster wayguard-test=http://127.0.0.1:$PEER
//!      --unsafe-no-fsync --log-level warn
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
//! `ok` and `kubectl get namespace default` succeeds.
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The binaries a cluster needs.
#[derive(Debug, Clone)]
pub struct ClusterBinaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    /// Used for the readiness checks and by [`KubeCluster::kubectl`].
    pub kubectl: PathBuf,
}

impl From<&super::Tools> for ClusterBinaries {
    fn from(tools: &super::Tools) -> Self {
        ClusterBinaries {
            etcd: tools.etcd.clone(),
            kube_apiserver: tools.kube_apiserver.clone(),
            kubectl: tools.kubectl.clone(),
        }
    }
}

/// A running etcd + kube-apiserver. Dropping it kills both (SIGKILL); [`KubeCluster::stop`]
/// stops them gracefully (SIGTERM, then SIGKILL after a grace period) and reports errors.
pub struct KubeCluster {
    /// Everything of this cluster lives here: `pki/`, `etcd-data/`, `logs/`, `admin.kubeconfig`.
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// `http://127.0.0.1:PORT` of etcd.
    pub etcd_url: String,
    /// Admin kubeconfig (client certificate with `O=system:masters`; certificates embedded).
    pub kubeconfig: PathBuf,
    /// A bearer token for user `admin` in group `system:masters` (`--token-auth-file`).
    pub admin_token: String,
    /// The CA that signed the serving and client certificates.
    pub ca_cert: PathBuf,
    /// The ServiceAccount token signing key (RSA, PEM) and its public key.
    #[allow(dead_code)] // for the test harness (verifying ServiceAccount tokens offline)
    pub sa_key: PathBuf,
    #[allow(dead_code)] // for the test harness
    pub sa_pub: PathBuf,
    pub etcd_log: PathBuf,
    pub apiserver_log: PathBuf,
    kubectl: PathBuf,
    apiserver: Option<ChildGuard>,
    etcd: Option<ChildGuard>,
}

/// Ports and paths of one cluster, from which the command lines are derived.
#[derive(Debug, Clone)]
pub struct ClusterLayout {
    pub dir: PathBuf,
    pub etcd_client_port: u16,
    pub etcd_peer_port: u16,
    pub apiserver_port: u16,
}

impl ClusterLayout {
    fn pki(&self, file: &str) -> PathBuf {
        self.dir.join("pki").join(file)
    }

    /// etcd's command line arguments.
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
            // A test cluster: durability does not matter, speed does.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ]
    }

    /// kube-apiserver's command line arguments.
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
            // Saves CPU on a 2-core machine; tests do not exercise API priority and fairness.
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            // The `kubernetes` Endpoints may not hold a loopback address ("may not be in the
            // loopback range", logged every 10 s); nothing in-cluster needs them here.
            "--endpoint-reconciler-type=none".into(),
        ]
    }
}

impl KubeCluster {
    /// Create the PKI in `dir` (which must be empty or absent), start etcd and kube-apiserver on
    /// free loopback ports, and wait (up to `timeout`) until the apiserver is ready.
    pub fn start(bins: &ClusterBinaries, dir: &Path, timeout: Duration) -> Result<KubeCluster> {
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
                "{} already holds a cluster (etcd-data); use a fresh directory per cluster",
                dir.display()
            );
        }
        fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let layout = ClusterLayout {
            dir: dir.clone(),
            etcd_client_port: free_port()?,
            etcd_peer_port: free_port()?,
            apiserver_port: free_port()?,
        };
        let admin_token = random_hex(16)?;
        write_pki(&layout, &admin_token)?;
        let server = format!("https://127.0.0.1:{}", layout.apiserver_port);
        let kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(&layout, &server, &kubeconfig)?;

        let mut cluster = KubeCluster {
            server,
            etcd_url: format!("http://127.0.0.1:{}", layout.etcd_client_port),
            kubeconfig,
            admin_token,
            ca_cert: layout.pki("ca.crt"),
            sa_key: layout.pki("sa.key"),
            sa_pub: layout.pki("sa.pub"),
            etcd_log: dir.join("logs/etcd.log"),
            apiserver_log: dir.join("logs/kube-apiserver.log"),
            kubectl: bins.kubectl.clone(),
            apiserver: None,
            etcd: None,
            dir,
        };
        let deadline = Instant::now() + timeout;

        let etcd = spawn_logged("etcd", &bins.etcd, &layout.etcd_args(), &cluster.etcd_log)?;
        cluster.etcd = Some(etcd);
        cluster.wait_until(deadline, "etcd /health", |_| {
            let body = http_get(layout.etcd_client_port, "/health")?;
            if body.contains(r#""health":"true""#) {
                Ok(())
            } else {
                bail!("etcd /health: {body}")
            }
        })?;

        let apiserver = spawn_logged(
            "kube-apiserver",
            &bins.kube_apiserver,
            &layout.apiserver_args(),
            &cluster.apiserver_log,
        )?;
        cluster.apiserver = Some(apiserver);
        cluster.wait_until(deadline, "kube-apiserver /readyz", |c| {
            let out = c.kubectl_output(&["get", "--raw", "/readyz"])?;
            if out.trim() == "ok" {
                Ok(())
            } else {
                bail!("/readyz: {out}")
            }
        })?;
        cluster.wait_until(deadline, "namespace default", |c| {
            c.kubectl_output(&["get", "namespace", "default", "-o", "name"])
                .map(|_| ())
        })?;
        Ok(cluster)
    }

    /// `kubectl --kubeconfig <admin.kubeconfig>`; add arguments and run it.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Run kubectl with `args`; its stdout, or an error with its stderr.
    pub fn kubectl_output(&self, args: &[&str]) -> Result<String> {
        let out = self
            .kubectl()
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

    /// PIDs of (etcd, kube-apiserver) while running.
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.etcd.as_ref().map(ChildGuard::pid),
            self.apiserver.as_ref().map(ChildGuard::pid),
        )
    }

    /// Stop kube-apiserver, then etcd: SIGTERM to each PID, SIGKILL after 15 s.
    pub fn stop(mut self) -> Result<()> {
        let mut result = Ok(());
        if let Some(mut apiserver) = self.apiserver.take() {
            result = apiserver.stop(Duration::from_secs(15));
        }
        if let Some(mut etcd) = self.etcd.take() {
            let stopped = etcd.stop(Duration::from_secs(15));
            result = result.and(stopped);
        }
        result
    }

    fn wait_until(
        &mut self,
        deadline: Instant,
        what: &str,
        mut check: impl FnMut(&KubeCluster) -> Result<()>,
    ) -> Result<()> {
        loop {
            for (guard, log) in [
                (&mut self.etcd, &self.etcd_log),
                (&mut self.apiserver, &self.apiserver_log),
            ] {
                if let Some(g) = guard.as_mut()
                    && let Some(status) = g.exited()?
                {
                    bail!(
                        "{} exited ({status}) while waiting for {what}; last lines of {}:\n{}",
                        g.name,
                        log.display(),
                        log_tail(log, 30)
                    );
                }
            }
            let err = match check(self) {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {what}: {err:#}\nlast lines of {}:\n{}",
                    self.apiserver_log.display(),
                    log_tail(&self.apiserver_log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A child process that is killed when dropped, and can be stopped gracefully by PID.
pub struct ChildGuard {
    pub name: &'static str,
    child: Option<Child>,
}

impl ChildGuard {
    pub fn new(name: &'static str, child: Child) -> ChildGuard {
        ChildGuard {
            name,
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child
                .try_wait()
                .with_context(|| format!("checking on {}", self.name)),
            None => Ok(None),
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; reaps the process.
    pub fn stop(&mut self, grace: Duration) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child
            .try_wait()
            .with_context(|| format!("checking on {}", self.name))?
            .is_some()
        {
            return Ok(());
        }
        let pid = child.id().to_string();
        let term = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .with_context(|| format!("running `kill -TERM {pid}` ({})", self.name))?;
        if term.success() {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if child
                    .try_wait()
                    .with_context(|| format!("waiting for {}", self.name))?
                    .is_some()
                {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        child
            .kill()
            .with_context(|| format!("killing {} (pid {pid})", self.name))?;
        child
            .wait()
            .with_context(|| format!("reaping {} (pid {pid})", self.name))?;
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_logged(
    name: &'static str,
    program: &Path,
    args: &[String],
    log: &Path,
) -> Result<ChildGuard> {
    let mut file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let _ = writeln!(file, "$ {} {}", program.display(), args.join(" "));
    let stderr = file.try_clone().context("duplicating a log handle")?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {} {}", program.display(), args.join(" ")))?;
    Ok(ChildGuard::new(name, child))
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("reading a local address")?
        .port())
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

fn log_tail(log: &Path, n: usize) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0_u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    let mut out = String::with_capacity(bytes * 2);
    for b in buf {
        let _ = write!(out, "{b:02x}");
    }
    Ok(out)
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
    fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
    let w = |name: &str, text: &str| -> Result<()> {
        fs::write(pki.join(name), text).with_context(|| format!("writing {name}"))
    };
    w(
        "apiserver.ext",
        "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )?;
    w(
        "admin.ext",
        "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )?;
    w(
        "tokens.csv",
        &format!("{admin_token},admin,admin,system:masters\n"),
    )?;
    let steps: [&[&str]; 9] = [
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
        &["genrsa", "-out", "sa.key", "2048"],
        &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
        &["verify", "-CAfile", "ca.crt", "apiserver.crt"],
        &["verify", "-CAfile", "ca.crt", "admin.crt"],
    ];
    for args in steps {
        openssl(&pki, args)?;
    }
    Ok(())
}

/// The admin kubeconfig, certificates embedded (it stays valid when copied elsewhere).
fn write_kubeconfig(layout: &ClusterLayout, server: &str, path: &Path) -> Result<()> {
    let b64 = |file: &str| -> Result<String> {
        let path = layout.pki(file);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(base64(&bytes))
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: wayguard-test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: wayguard-test\n  context:\n    cluster: wayguard-test\n    user: admin\ncurrent-context: wayguard-test\n",
        ca = b64("ca.crt")?,
        cert = b64("admin.crt")?,
        key = b64("admin.key")?,
    );
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn apiserver_args_point_at_the_layout() {
        let layout = ClusterLayout {
            dir: PathBuf::from("/c"),
            etcd_client_port: 1,
            etcd_peer_port: 2,
            apiserver_port: 3,
        };
        let args = layout.apiserver_args();
        assert!(args.contains(&"--etcd-servers=http://127.0.0.1:1".to_string()));
        assert!(args.contains(&"--secure-port=3".to_string()));
        assert!(args.contains(&"--client-ca-file=/c/pki/ca.crt".to_string()));
        assert!(
            layout
                .etcd_args()
                .contains(&"--initial-cluster=wayguard-test=http://127.0.0.1:2".to_string())
        );
    }
}
