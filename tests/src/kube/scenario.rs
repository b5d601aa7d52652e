//! A complete tier-3 setup: cluster, Gateway API CRDs, `helm install` of the chart (its CRDs
//! established), a kubeconfig with a token of the chart's ServiceAccount, wayguard replicas run
//! with it, an Envoy from `wayguard bootstrap`, and assertions whose failures report the request
//! or object, expected vs got, the replicas' and Envoy's logs and the policies' status.
//!
//! Layout of the temp dir (kept, and its path printed, when a check failed or
//! `WAYGUARD_TEST_KEEP` is set): `cluster/` (PKI, etcd data, `admin.kubeconfig`, `logs/` of
//! etcd and kube-apiserver), `logs/` (wayguard replicas, Envoy), `helm/`, `sa.kubeconfig`,
//! `envoy.yaml`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::echo::EchoBackend;
use crate::envoy::Envoy;
use crate::http::{HttpClient, Req, Resp};
use crate::kube::cluster::KubeCluster;
use crate::kube::controller::{ControllerOptions, KubeWayguard};
use crate::kube::helm::{self, Helm};
use crate::kube::kubectl::{Kubectl, Table};
use crate::kube::manifests::{self, GatewayStack};
use crate::kube::{KubeTools, PhaseClock, report, sockets};
use crate::poll::{Check, Deadline};
use crate::ports::free_port;
use crate::wayguard::{ServePorts, XdsMode, bootstrap};

/// Time allowed for a replica's `/ready` (initial sync of every kind).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for Envoy's listeners to go live.
pub const LISTENER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for a `kubectl` change to reach Envoy's behaviour or an object's status.
pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for CRDs to become Established.
pub const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// The wayguard CRDs the chart installs.
pub const WAYGUARD_CRDS: [&str; 5] = [
    "requestauthentications.security.istio.io",
    "authorizationpolicies.security.istio.io",
    "authconfigs.extauth.solo.io",
    "enterpriseagentgatewaypolicies.enterpriseagentgateway.solo.io",
    "agentgatewaybackends.agentgateway.dev",
];

/// A condition of `obj` (`status.conditions[type == kind]`).
pub fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// `kind=status(reason): message` for each condition, for messages.
pub fn describe_conditions(obj: &Value) -> String {
    let generation = &obj["metadata"]["generation"];
    let conds: Vec<String> = obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}={}({}, observedGeneration {}): {}",
                c["type"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?"),
                c["reason"].as_str().unwrap_or("?"),
                c["observedGeneration"],
                c["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!(
        "generation {generation}, status.observedGeneration {}, conditions [{}]",
        obj["status"]["observedGeneration"],
        conds.join("; ")
    )
}

/// A running tier-3 setup. Dropping it stops Envoy, the replicas, kube-apiserver and etcd by
/// PID (and reports how long that took).
#[derive(Debug)]
pub struct KubeScenario {
    clock: PhaseClock,
    // Field order is drop order (also stopped explicitly, in this order, in `Drop`).
    envoy: Option<Envoy>,
    replicas: Vec<KubeWayguard>,
    cluster: KubeCluster,
    tools: KubeTools,
    helm: Helm,
    sa_kubeconfig: PathBuf,
    log_dir: PathBuf,
    echo: EchoBackend,
    stack: Option<GatewayStack>,
    http: Option<HttpClient>,
    envoy_admin: Option<u16>,
    failed: AtomicBool,
    dir: Option<tempfile::TempDir>,
}

impl KubeScenario {
    /// Starts the cluster, applies the Gateway API CRDs, `helm install`s the chart, checks that
    /// every CRD is Established (structural, CEL compiled), and writes `sa.kubeconfig` with a
    /// token of the chart's ServiceAccount. Reports the time of each step under `test`.
    pub async fn start(test: &str) -> Result<Self> {
        crate::http::install_crypto_provider();
        let mut clock = PhaseClock::new(test);
        let tools = KubeTools::resolve()?;
        let dir = tempfile::Builder::new()
            .prefix("wayguard-tier3-")
            .tempdir()
            .context("tempdir")?;
        let log_dir = dir.path().join("logs");
        std::fs::create_dir_all(&log_dir).context("creating logs/")?;
        let echo = EchoBackend::start().await?;
        clock.restart();
        let cluster = match KubeCluster::start(&tools, &dir.path().join("cluster")).await {
            Ok(c) => c,
            Err(e) => {
                let path = dir.keep();
                return Err(e.context(format!("cluster dir kept: {}", path.display())));
            }
        };
        clock.phase("cluster start (PKI, etcd, kube-apiserver ready)");
        let helm = Helm::new(&tools.helm, cluster.kubeconfig(), &dir.path().join("helm"))?;
        let mut s = Self {
            clock,
            envoy: None,
            replicas: Vec::new(),
            sa_kubeconfig: dir.path().join("sa.kubeconfig"),
            cluster,
            tools,
            helm,
            log_dir,
            echo,
            stack: None,
            http: None,
            envoy_admin: None,
            failed: AtomicBool::new(false),
            dir: Some(dir),
        };
        let setup = async {
            let (etcd, apiserver) = s.cluster.pids();
            for (name, pid) in [("etcd", etcd), ("kube-apiserver", apiserver)] {
                if let Some(pid) = pid {
                    sockets::assert_loopback_only(name, pid)?;
                }
            }
            s.kubectl()
                .apply_server_side(&manifests::gateway_api_crds()?)
                .await?;
            s.wait_crds_established(&manifests::gateway_api_crd_names())
                .await?;
            s.clock.phase("Gateway API CRDs applied and Established");
            s.helm.install_chart(&[]).await?;
            let names: Vec<String> = WAYGUARD_CRDS.iter().map(|n| (*n).to_string()).collect();
            s.wait_crds_established(&names).await?;
            s.clock
                .phase("helm install charts/wayguard (its CRDs Established)");
            s.write_sa_kubeconfig().await?;
            s.clock
                .phase("ServiceAccount token (kubectl create token) and kubeconfig");
            Ok::<(), anyhow::Error>(())
        }
        .await;
        if let Err(e) = setup {
            s.failed.store(true, Ordering::SeqCst);
            return Err(anyhow!("{e:#}\n{}", s.cluster.log_tails(20)));
        }
        Ok(s)
    }

    async fn write_sa_kubeconfig(&self) -> Result<()> {
        let token = self
            .kubectl()
            .create_token(helm::NAMESPACE, helm::SERVICE_ACCOUNT, "2h")
            .await?;
        let text = self.cluster.token_kubeconfig(
            &format!(
                "system:serviceaccount:{}:{}",
                helm::NAMESPACE,
                helm::SERVICE_ACCOUNT
            ),
            &token,
            helm::NAMESPACE,
        )?;
        std::fs::write(&self.sa_kubeconfig, text).context("writing sa.kubeconfig")
    }

    /// Reports the end of a test phase (`[tier3 <test>] <what>: 1.23s`).
    pub fn phase(&mut self, what: &str) -> Duration {
        self.clock.phase(what)
    }

    /// The phase clock.
    pub fn clock(&mut self) -> &mut PhaseClock {
        &mut self.clock
    }

    /// The cluster.
    pub fn cluster(&self) -> &KubeCluster {
        &self.cluster
    }

    /// kubectl as the cluster admin.
    pub fn kubectl(&self) -> &Kubectl {
        self.cluster.kubectl()
    }

    /// kubectl as the chart's ServiceAccount (what wayguard runs with).
    pub fn sa_kubectl(&self) -> Kubectl {
        self.cluster.kubectl().with_kubeconfig(&self.sa_kubeconfig)
    }

    /// helm for this cluster.
    pub fn helm(&self) -> &Helm {
        &self.helm
    }

    /// The resolved tools.
    pub fn tools(&self) -> &KubeTools {
        &self.tools
    }

    /// The kubeconfig with the chart's ServiceAccount token.
    pub fn sa_kubeconfig(&self) -> &Path {
        &self.sa_kubeconfig
    }

    /// The echo backend.
    pub fn echo(&self) -> &EchoBackend {
        &self.echo
    }

    /// The scenario's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or_else(|| Path::new("/"), |d| d.path())
    }

    /// Polls until every CRD in `names` is Established with accepted names and no
    /// `NonStructuralSchema` condition (a CEL rule that does not compile fails the create).
    pub async fn wait_crds_established(&self, names: &[String]) -> Result<()> {
        let mut deadline = Deadline::new(format!("CRDs Established: {names:?}"), CRD_TIMEOUT);
        loop {
            let mut pending = Vec::new();
            for name in names {
                let crd = match self.kubectl().get_json_opt(&["crd", name]).await {
                    Ok(Some(crd)) => crd,
                    Ok(None) => {
                        pending.push(format!("{name}: not found"));
                        continue;
                    }
                    Err(e) => {
                        pending.push(format!("{name}: {e:#}"));
                        continue;
                    }
                };
                let is = |kind: &str, status: &str| {
                    condition(&crd, kind).is_some_and(|c| c["status"] == status)
                };
                if is("NonStructuralSchema", "True") {
                    bail!(
                        "CRD {name} is not structural: {}",
                        describe_conditions(&crd)
                    );
                }
                if !(is("Established", "True") && is("NamesAccepted", "True")) {
                    pending.push(format!("{name}: {}", describe_conditions(&crd)));
                }
            }
            let check = if pending.is_empty() {
                Check::Done(())
            } else {
                Check::Pending(pending.join("; "))
            };
            if deadline.next(check).await?.is_some() {
                return Ok(());
            }
        }
    }

    /// `kubectl apply -f -` (as the admin).
    pub async fn apply(&self, yaml: &str) -> Result<String> {
        self.kubectl().apply(yaml).await
    }

    /// `kubectl delete -f -` (as the admin).
    pub async fn delete(&self, yaml: &str) -> Result<String> {
        self.kubectl().delete(yaml).await
    }

    /// Starts a replica with the ServiceAccount kubeconfig (electing in the release namespace)
    /// and waits for `/ready`. Returns its index.
    pub async fn start_replica(&mut self, options: ControllerOptions) -> Result<usize> {
        let ports = ServePorts::free()?;
        let mut wg = KubeWayguard::start(&self.sa_kubeconfig, ports, options, &self.log_dir)?;
        let ready = match wg.wait_ready(READY_TIMEOUT).await {
            Ok(()) => {
                let name = wg.options().name.clone();
                let pid = wg.process().pid();
                sockets::assert_loopback_only(&name, pid).map(drop)
            }
            Err(e) => Err(e),
        };
        self.replicas.push(wg);
        if let Err(e) = ready {
            self.failed.store(true, Ordering::SeqCst);
            return Err(e);
        }
        Ok(self.replicas.len() - 1)
    }

    /// [`ControllerOptions`] for a replica named `name` electing in the release namespace.
    pub fn replica_options(name: &str) -> ControllerOptions {
        ControllerOptions::new(name, helm::NAMESPACE)
    }

    /// A replica by index.
    pub fn replica(&self, index: usize) -> Result<&KubeWayguard> {
        self.replicas
            .get(index)
            .ok_or_else(|| anyhow!("no replica {index}"))
    }

    /// A replica by index, mutable (to kill it).
    pub fn replica_mut(&mut self, index: usize) -> Result<&mut KubeWayguard> {
        self.replicas
            .get_mut(index)
            .ok_or_else(|| anyhow!("no replica {index}"))
    }

    /// Every replica.
    pub fn replicas(&self) -> &[KubeWayguard] {
        &self.replicas
    }

    /// Free ports for a gateway stack on the echo backend (HTTP only).
    pub fn stack(&self, namespace: &str, gateway: &str) -> Result<GatewayStack> {
        Ok(GatewayStack {
            namespace: namespace.into(),
            gateway: gateway.into(),
            http_port: free_port()?,
            backend_port: self.echo.port(),
            https: None,
        })
    }

    /// Starts Envoy for `stack`'s gateway from `wayguard bootstrap` pointed at replica
    /// `replica`'s xDS port, waits until its listeners are live and bind 127.0.0.1 only.
    pub async fn start_envoy(
        &mut self,
        stack: &GatewayStack,
        replica: usize,
        mode: XdsMode,
    ) -> Result<()> {
        let xds = self.replica(replica)?.ports().xds;
        let admin = free_port()?;
        let yaml = bootstrap(&stack.gateway_ref(), xds, admin, mode)?;
        let path = self.dir().join("envoy.yaml");
        std::fs::write(&path, &yaml).context("writing envoy.yaml")?;
        self.envoy_admin = Some(admin);
        self.stack = Some(stack.clone());
        self.http = Some(HttpClient::plain(&format!(
            "http://127.0.0.1:{}",
            stack.http_port
        ))?);
        let mut envoy = Envoy::start(&path, admin, &self.log_dir)?;
        let live = async {
            envoy
                .wait_listener_live(stack.http_port, LISTENER_TIMEOUT)
                .await?;
            if let Some(https) = &stack.https {
                envoy
                    .wait_listener_live(https.port, LISTENER_TIMEOUT)
                    .await?;
            }
            let wide = envoy.non_loopback_listeners().await?;
            if !wide.is_empty() {
                bail!("Envoy listeners not bound to 127.0.0.1 despite spec.addresses: {wide:?}");
            }
            sockets::assert_loopback_only("envoy", envoy.pid())?;
            Ok(())
        }
        .await;
        self.envoy = Some(envoy);
        match live {
            Ok(()) => Ok(()),
            Err(e) => Err(anyhow!("{e:#}\n{}", self.diagnostics().await)),
        }
    }

    /// The Envoy.
    pub fn envoy(&mut self) -> Result<&mut Envoy> {
        self.envoy
            .as_mut()
            .ok_or_else(|| anyhow!("envoy not started"))
    }

    /// A client for the HTTP listener.
    pub fn http(&self) -> Result<&HttpClient> {
        self.http
            .as_ref()
            .ok_or_else(|| anyhow!("envoy not started"))
    }

    /// A client for `https://127.0.0.1:<https port>` trusting `pki`, presenting `identity`.
    pub fn tls_client(
        &self,
        pki: &crate::pki::Pki,
        identity: Option<&crate::pki::CertKey>,
    ) -> Result<HttpClient> {
        let port = self
            .stack
            .as_ref()
            .and_then(|s| s.https.as_ref())
            .map(|h| h.port)
            .ok_or_else(|| anyhow!("no HTTPS listener"))?;
        HttpClient::tls(&format!("https://127.0.0.1:{port}"), pki, identity)
    }

    /// Logs and state for failure messages. Calling it marks the scenario failed: its temp dir
    /// is kept.
    pub async fn diagnostics(&self) -> String {
        self.failed.store(true, Ordering::SeqCst);
        let mut text = format!("scenario dir: {}\n", self.dir().display());
        match self
            .kubectl()
            .run(&[
                "get",
                "requestauthentications,authorizationpolicies",
                "-A",
                "-o",
                "custom-columns=KIND:.kind,NS:.metadata.namespace,NAME:.metadata.name,\
                 GEN:.metadata.generation,CONDITIONS:.status.conditions[*].type,\
                 STATUS:.status.conditions[*].status,OBSERVED:.status.observedGeneration",
            ])
            .await
        {
            Ok(out) => {
                text.push_str("----- policies -----\n");
                text.push_str(&out.stdout);
                text.push_str(&out.stderr);
            }
            Err(e) => text.push_str(&format!("policies unavailable: {e:#}\n")),
        }
        for wg in &self.replicas {
            text.push_str(&wg.log_tail(30));
        }
        if let Some(envoy) = &self.envoy {
            text.push_str(&envoy.log_tail(30));
        }
        text
    }

    /// Marks the scenario failed (its temp dir is kept), e.g. when a test body returned an error
    /// that did not come from one of these assertions.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    async fn fail(&self, message: String) -> anyhow::Error {
        anyhow!("{message}\n{}", self.diagnostics().await)
    }

    /// Sends `req` once through `client`, checks the status; the error says which request,
    /// expected vs got (with body), and shows the logs.
    pub async fn expect_with(&self, client: &HttpClient, req: &Req, status: u16) -> Result<Resp> {
        match client.send(req).await {
            Ok(resp) if resp.status == status => Ok(resp),
            Ok(resp) => Err(self
                .fail(format!(
                    "{} via {}: expected {status}, got {}",
                    req.describe(),
                    client.base(),
                    resp.summary()
                ))
                .await),
            Err(e) => Err(self
                .fail(format!(
                    "{} via {}: expected {status}, got transport error: {e:#}",
                    req.describe(),
                    client.base()
                ))
                .await),
        }
    }

    /// [`KubeScenario::expect_with`] on the HTTP listener.
    pub async fn expect(&self, req: &Req, status: u16) -> Result<Resp> {
        self.expect_with(self.http()?, req, status).await
    }

    /// Like [`KubeScenario::expect`], and also checks the body (Envoy's local replies).
    pub async fn expect_body(&self, req: &Req, status: u16, body: &str) -> Result<Resp> {
        let resp = self.expect(req, status).await?;
        if resp.body != body {
            return Err(self
                .fail(format!(
                    "{}: status {status} as expected but body {:?}, expected {body:?}",
                    req.describe(),
                    resp.body
                ))
                .await);
        }
        Ok(resp)
    }

    /// Polls until `req` through `client` returns `status` (a kubectl change propagating).
    pub async fn eventually_with(
        &self,
        client: &HttpClient,
        req: &Req,
        status: u16,
    ) -> Result<Resp> {
        let mut deadline = Deadline::new(
            format!("{} to return {status}", req.describe()),
            PROPAGATION_TIMEOUT,
        );
        loop {
            let check = match client.send(req).await {
                Ok(resp) if resp.status == status => Check::Done(resp),
                Ok(resp) => Check::Pending(format!("got {}", resp.summary())),
                Err(e) => Check::Pending(format!("transport error: {e:#}")),
            };
            match deadline.next(check).await {
                Ok(Some(resp)) => return Ok(resp),
                Ok(None) => {}
                Err(e) => return Err(self.fail(format!("{e:#}")).await),
            }
        }
    }

    /// [`KubeScenario::eventually_with`] on the HTTP listener.
    pub async fn eventually(&self, req: &Req, status: u16) -> Result<Resp> {
        self.eventually_with(self.http()?, req, status).await
    }

    /// `kubectl get <resource> <name> -n <namespace> --show-managed-fields -o json`.
    pub async fn object(&self, resource: &str, namespace: &str, name: &str) -> Result<Value> {
        self.kubectl()
            .get_json(&[resource, name, "-n", namespace, "--show-managed-fields"])
            .await
    }

    /// Polls the object until each `(type, status)` in `want` is a condition, every condition
    /// and `status.observedGeneration` observe the current `metadata.generation`, and `pred`
    /// holds. Returns the object.
    pub async fn wait_status(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        want: &[(&str, &str)],
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let mut deadline = Deadline::new(
            format!("{resource} {namespace}/{name}: conditions {want:?} at the current generation"),
            PROPAGATION_TIMEOUT,
        );
        loop {
            let check = match self.object(resource, namespace, name).await {
                Ok(obj) => {
                    let generation = &obj["metadata"]["generation"];
                    let conds = obj["status"]["conditions"].as_array();
                    let all_current = conds.is_some_and(|cs| {
                        !cs.is_empty() && cs.iter().all(|c| &c["observedGeneration"] == generation)
                    }) && &obj["status"]["observedGeneration"] == generation;
                    let matches = want.iter().all(|(kind, status)| {
                        condition(&obj, kind).is_some_and(|c| c["status"] == *status)
                    });
                    if all_current && matches && pred(&obj) {
                        Check::Done(obj)
                    } else {
                        Check::Pending(describe_conditions(&obj))
                    }
                }
                Err(e) => Check::Pending(format!("{e:#}")),
            };
            match deadline.next(check).await {
                Ok(Some(obj)) => return Ok(obj),
                Ok(None) => {}
                Err(e) => return Err(self.fail(format!("{e:#}")).await),
            }
        }
    }

    /// `kubectl get <resource> -A` (the printer columns) as a [`Table`] and as text.
    pub async fn table(&self, resource: &str) -> Result<(Table, String)> {
        let text = self.kubectl().ok(&["get", resource, "-A"]).await?;
        Ok((Table::parse(&text)?, text))
    }

    /// The Lease holder (`spec.holderIdentity` of `wayguard-leader`), if the Lease exists.
    pub async fn lease_holder(&self) -> Result<Option<String>> {
        let lease = self
            .kubectl()
            .get_json_opt(&["lease", helm::LEASE, "-n", helm::NAMESPACE])
            .await?;
        Ok(lease.and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string)))
    }

    /// Polls until the Lease holder is `identity`; returns how long that took.
    pub async fn wait_lease_holder(&self, identity: &str, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let mut deadline = Deadline::new(
            format!(
                "Lease {}/{} held by {identity}",
                helm::NAMESPACE,
                helm::LEASE
            ),
            timeout,
        );
        loop {
            let check = match self.lease_holder().await {
                Ok(Some(h)) if h == identity => Check::Done(()),
                Ok(h) => Check::Pending(format!("holder {h:?}")),
                Err(e) => Check::Pending(format!("{e:#}")),
            };
            match deadline.next(check).await {
                Ok(Some(())) => return Ok(start.elapsed()),
                Ok(None) => {}
                Err(e) => return Err(self.fail(format!("{e:#}")).await),
            }
        }
    }

    /// Every replica's log lines mentioning a refused request (`forbidden`), prefixed with
    /// the replica's name.
    pub fn forbidden_lines(&self) -> Vec<String> {
        self.replicas
            .iter()
            .flat_map(|wg| {
                wg.forbidden_lines()
                    .into_iter()
                    .map(move |l| format!("{}: {l}", wg.options().name))
            })
            .collect()
    }

    /// Fails when any replica logged a refused request (`forbidden`): the chart's RBAC lacks a
    /// permission wayguard uses.
    pub async fn assert_no_forbidden(&self) -> Result<()> {
        let lines = self.forbidden_lines();
        if lines.is_empty() {
            return Ok(());
        }
        Err(self
            .fail(format!(
                "wayguard was refused by the apiserver with the chart's ServiceAccount (a \
                 permission missing from charts/wayguard's RBAC):\n{}",
                lines.join("\n")
            ))
            .await)
    }

    /// Fails when any replica logged a warning or error (other than `allowed`, substrings of
    /// expected warnings).
    pub async fn assert_no_warnings(&self, allowed: &[&str]) -> Result<()> {
        let lines: Vec<String> = self
            .replicas
            .iter()
            .flat_map(|wg| {
                wg.warnings()
                    .into_iter()
                    .filter(|l| !allowed.iter().any(|a| l.contains(a)))
                    .map(move |l| format!("{}: {l}", wg.options().name))
            })
            .collect();
        if lines.is_empty() {
            return Ok(());
        }
        Err(self
            .fail(format!(
                "unexpected wayguard warnings:\n{}",
                lines.join("\n")
            ))
            .await)
    }
}

impl Drop for KubeScenario {
    fn drop(&mut self) {
        let keep = std::thread::panicking()
            || self.failed.load(Ordering::SeqCst)
            || std::env::var_os("WAYGUARD_TEST_KEEP").is_some();
        if keep
            && let (Some(admin), Some(dir)) = (self.envoy_admin, self.dir.as_ref())
            && let Some(body) = crate::http::blocking_get(admin, "/config_dump")
        {
            let _ = std::fs::write(dir.path().join("envoy-config_dump.json"), body);
        }
        let start = Instant::now();
        if let Some(mut envoy) = self.envoy.take() {
            envoy.process().stop();
        }
        for wg in &mut self.replicas {
            wg.stop();
        }
        if let Err(e) = self.cluster.stop() {
            report(&format!("[tier3] teardown: {e:#}"));
        }
        report(&format!(
            "[tier3] teardown (Envoy, wayguard, kube-apiserver, etcd stopped by PID): {:.2}s",
            start.elapsed().as_secs_f64()
        ));
        self.clock.report_total();
        if keep && let Some(dir) = self.dir.take() {
            report(&format!(
                "tier3 scenario dir kept for inspection: {}",
                dir.keep().display()
            ));
        }
    }
}
