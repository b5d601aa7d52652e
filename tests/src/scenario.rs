//! A complete tier-2 setup: config dir, echo backend, `wayguard serve`, Envoy from
//! `wayguard bootstrap`, and request helpers that explain failures.
//!
//! Layout of the scenario's temp dir: `config/` (what wayguard watches), `logs/`
//! (`wayguard.*`, `envoy.*`), `envoy.yaml` (the bootstrap), `certs/`. The dir is kept (and its
//! path printed) when the test panics.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::echo::EchoBackend;
use crate::envoy::Envoy;
use crate::http::HttpClient;
use crate::pki::{CertKey, Pki, ca_configmap_yaml, ca_secret_yaml, tls_secret_yaml};
use crate::ports::free_port;
use crate::wayguard::{ServePorts, Wayguard, XdsMode, bootstrap};
use crate::yaml::{self, CaRef, ClientValidation, GatewayYaml, HttpsListener};

/// Time allowed for wayguard to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for Envoy's listeners to go live (covers Envoy's xDS reconnect backoff).
pub const LISTENER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for a config change to reach Envoy's behaviour.
pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(20);

/// The namespace of the seed examples.
pub const SEED_NAMESPACE: &str = "payments-prod";
/// The gateway name of the seed examples.
pub const SEED_GATEWAY: &str = "waypoint";

#[derive(Debug, Clone)]
struct HttpsSetup {
    server: CertKey,
    ca_pem: String,
    client_validation: Option<ClientValidation>,
}

/// Builds a [`Scenario`].
#[derive(Debug)]
pub struct ScenarioBuilder {
    mode: XdsMode,
    namespace: String,
    gateway: String,
    https: Option<HttpsSetup>,
    files: Vec<(String, String)>,
    wayguard_args: Vec<String>,
    echo: Option<EchoBackend>,
    http_port: Option<u16>,
    generate_gateway: bool,
    peer: Option<String>,
}

impl ScenarioBuilder {
    /// A scenario for `payments-prod/waypoint` (the seeds' gateway) in `mode`.
    pub fn new(mode: XdsMode) -> Self {
        Self {
            mode,
            namespace: SEED_NAMESPACE.into(),
            gateway: SEED_GATEWAY.into(),
            https: None,
            files: Vec::new(),
            wayguard_args: Vec::new(),
            echo: None,
            http_port: None,
            generate_gateway: true,
            peer: None,
        }
    }

    /// Adds a second Gateway `name` (HTTP only, same namespace, its own HTTPRoute to the same
    /// backend) served by a second Envoy: policies that target the first must not touch it.
    pub fn peer_gateway(mut self, name: &str) -> Self {
        self.peer = Some(name.into());
        self
    }

    /// Uses this echo backend instead of starting one (when a test needs its port first).
    pub fn with_echo(mut self, echo: EchoBackend) -> Self {
        self.echo = Some(echo);
        self
    }

    /// Uses this port for the HTTP listener instead of a fresh one.
    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = Some(port);
        self
    }

    /// Does not write the generated `gateway.yaml` (Namespace, Gateway, Service,
    /// EndpointSlice, HTTPRoute): the test's files provide them, with the HTTP listener on
    /// [`ScenarioBuilder::http_port`].
    pub fn no_generated_gateway(mut self) -> Self {
        self.generate_gateway = false;
        self
    }

    /// Another namespace/gateway name.
    pub fn gateway(mut self, namespace: &str, name: &str) -> Self {
        self.namespace = namespace.into();
        self.gateway = name.into();
        self
    }

    /// Adds a file to the config dir before wayguard starts (`name` relative, e.g.
    /// `policies/ra.yaml`).
    pub fn file(mut self, name: &str, text: impl Into<String>) -> Self {
        self.files.push((name.into(), text.into()));
        self
    }

    /// Adds an HTTPS listener with a server certificate from `pki` (Secret `gateway-cert`)
    /// and, when given, client-certificate validation against `pki`'s CA (the ConfigMap or
    /// Secret named in `client_validation`, holding `ca.crt`).
    pub fn https(mut self, pki: &Pki, client_validation: Option<ClientValidation>) -> Result<Self> {
        self.https = Some(HttpsSetup {
            server: pki.server_cert(&["gateway.wayguard.test"])?,
            ca_pem: pki.ca_pem().to_string(),
            client_validation,
        });
        Ok(self)
    }

    /// Extra arguments for `wayguard serve`.
    pub fn wayguard_arg(mut self, arg: &str) -> Self {
        self.wayguard_args.push(arg.into());
        self
    }

    /// Writes the config dir, starts the echo backend, wayguard (waits for `/ready`), and
    /// Envoy (waits until every gateway listener is live).
    pub async fn start(self) -> Result<Scenario> {
        crate::http::install_crypto_provider();
        let dir = tempfile::Builder::new()
            .prefix("wayguard-e2e-")
            .tempdir()
            .context("tempdir")?;
        let config_dir = dir.path().join("config");
        let log_dir = dir.path().join("logs");
        let cert_dir = dir.path().join("certs");
        for d in [&config_dir, &log_dir, &cert_dir] {
            std::fs::create_dir_all(d).with_context(|| format!("{}", d.display()))?;
        }
        let echo = match self.echo {
            Some(echo) => echo,
            None => EchoBackend::start().await?,
        };
        let http_port = match self.http_port {
            Some(port) => port,
            None => free_port()?,
        };
        let https_port = match self.https {
            Some(_) => Some(free_port()?),
            None => None,
        };
        let ns = self.namespace.clone();
        let spec = GatewayYaml {
            namespace: ns.clone(),
            name: self.gateway.clone(),
            class: "wayguard".into(),
            http_port,
            https: https_port.map(|port| HttpsListener {
                port,
                cert_secret: "gateway-cert".into(),
                client_validation: self
                    .https
                    .as_ref()
                    .and_then(|h| h.client_validation.clone()),
            }),
        };
        if let Some(https) = &self.https {
            https.server.write(&cert_dir, "gateway")?;
        }
        let peer = match &self.peer {
            Some(name) => Some((name.clone(), free_port()?, free_port()?)),
            None => None,
        };
        let peer_spec = peer.as_ref().map(|(name, port, _)| (name.as_str(), *port));
        let gateway_file = render_gateway(&spec, echo.port(), self.https.as_ref(), peer_spec);
        if self.generate_gateway {
            write_atomic(&config_dir.join(GATEWAY_FILE), &gateway_file)?;
        }
        for (name, text) in &self.files {
            write_atomic(&config_dir.join(name), text)?;
        }

        let ports = ServePorts::free()?;
        let envoy_admin = free_port()?;
        let mut scenario = Scenario {
            mode: self.mode,
            gateway: format!("{ns}/{}", self.gateway),
            config_dir,
            log_dir,
            bootstrap_path: dir.path().join("envoy.yaml"),
            ports,
            wayguard_args: self.wayguard_args,
            wayguard: None,
            envoy: None,
            http_port,
            https_port,
            http: HttpClient::plain(&format!("http://127.0.0.1:{http_port}"))?,
            echo,
            dir: Some(dir),
            failed: AtomicBool::new(false),
            envoy_admin,
            spec,
            https: self.https,
            peer: None,
            peer_spec: peer.as_ref().map(|(name, port, _)| (name.clone(), *port)),
        };
        if let Err(e) = scenario.start_wayguard().await {
            scenario.failed.store(true, Ordering::SeqCst);
            return Err(e);
        }
        let yaml = bootstrap(&scenario.gateway, ports.xds, envoy_admin, self.mode)?;
        std::fs::write(&scenario.bootstrap_path, &yaml).context("writing envoy.yaml")?;
        let mut envoy = Envoy::start(&scenario.bootstrap_path, envoy_admin, &scenario.log_dir)?;
        let live = async {
            envoy
                .wait_listener_live(http_port, LISTENER_TIMEOUT)
                .await?;
            if let Some(port) = https_port {
                envoy.wait_listener_live(port, LISTENER_TIMEOUT).await?;
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        scenario.envoy = Some(envoy);
        live.map_err(|e| anyhow!("{e:#}\n{}", scenario.diagnostics()))?;
        // Gateways carry spec.addresses 127.0.0.1: nothing may listen beyond loopback.
        let wide = scenario.envoy()?.non_loopback_listeners().await?;
        if !wide.is_empty() {
            bail!(
                "Envoy listeners not bound to 127.0.0.1 despite spec.addresses: {wide:?}\n{}",
                scenario.diagnostics()
            );
        }
        scenario.wait_connection().await?;
        if let Some((name, port, admin)) = peer {
            let gateway = format!("{ns}/{name}");
            let path = scenario.dir().join(format!("envoy-{name}.yaml"));
            std::fs::write(&path, bootstrap(&gateway, ports.xds, admin, self.mode)?)
                .context("writing the peer bootstrap")?;
            let mut envoy =
                Envoy::start_named(&format!("envoy-{name}"), &path, admin, &scenario.log_dir)?;
            let live = envoy.wait_listener_live(port, LISTENER_TIMEOUT).await;
            scenario.peer = Some(Peer {
                gateway,
                client: HttpClient::plain(&format!("http://127.0.0.1:{port}"))?,
                envoy,
            });
            live.map_err(|e| anyhow!("peer {e:#}\n{}", scenario.diagnostics()))?;
        }
        Ok(scenario)
    }
}

/// The generated config file (Namespace, Gateway, backend, HTTPRoute, TLS material).
pub const GATEWAY_FILE: &str = "gateway.yaml";

/// The generated `gateway.yaml`: Namespace, Gateway, Service + EndpointSlice of the echo
/// backend, HTTPRoute, and the HTTPS Secret and CA bundle when configured.
fn render_gateway(
    spec: &GatewayYaml,
    echo_port: u16,
    https: Option<&HttpsSetup>,
    peer: Option<(&str, u16)>,
) -> String {
    let ns = &spec.namespace;
    let mut docs = vec![
        yaml::namespace(ns),
        yaml::gateway(spec),
        yaml::backend(ns, "payments", 8080, echo_port),
        yaml::http_route(ns, "payments", &spec.name, "payments", 8080),
    ];
    if let Some((name, port)) = peer {
        docs.push(yaml::gateway(&GatewayYaml {
            name: name.to_string(),
            http_port: port,
            https: None,
            ..spec.clone()
        }));
        docs.push(yaml::http_route(
            ns,
            &format!("payments-{name}"),
            name,
            "payments",
            8080,
        ));
    }
    if let Some(https) = https {
        docs.push(tls_secret_yaml(ns, "gateway-cert", &https.server));
        match https.client_validation.as_ref().map(|v| &v.ca) {
            Some(CaRef::ConfigMap(name)) => docs.push(ca_configmap_yaml(ns, name, &https.ca_pem)),
            Some(CaRef::Secret(name)) => docs.push(ca_secret_yaml(ns, name, &https.ca_pem)),
            None => {}
        }
    }
    yaml::documents(&docs)
}

/// Writes `text` to `path` atomically (temp file in the same dir, then rename), creating
/// parent directories.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let parent = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", path.display()))?;
    std::fs::create_dir_all(parent).with_context(|| format!("{}", parent.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("bad file name {}", path.display()))?;
    let tmp = parent.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// A running tier-2 setup. Dropping it stops Envoy and wayguard by PID.
#[derive(Debug)]
pub struct Scenario {
    pub(crate) mode: XdsMode,
    gateway: String,
    config_dir: PathBuf,
    log_dir: PathBuf,
    bootstrap_path: PathBuf,
    ports: ServePorts,
    wayguard_args: Vec<String>,
    // Field order is drop order: Envoy before wayguard, the temp dir last.
    envoy: Option<Envoy>,
    peer: Option<Peer>,
    pub(crate) wayguard: Option<Wayguard>,
    http_port: u16,
    https_port: Option<u16>,
    pub(crate) http: HttpClient,
    echo: EchoBackend,
    dir: Option<tempfile::TempDir>,
    pub(crate) failed: AtomicBool,
    envoy_admin: u16,
    spec: GatewayYaml,
    https: Option<HttpsSetup>,
    peer_spec: Option<(String, u16)>,
}

/// The second gateway of [`ScenarioBuilder::peer_gateway`] and its Envoy.
#[derive(Debug)]
pub struct Peer {
    /// `namespace/name`.
    pub gateway: String,
    /// A client for its HTTP listener.
    pub client: HttpClient,
    /// Its Envoy.
    pub envoy: Envoy,
}

impl Scenario {
    /// The xDS mode Envoy uses.
    pub fn mode(&self) -> XdsMode {
        self.mode
    }

    /// `namespace/name` of the gateway.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// The directory wayguard watches.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The scenario's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or_else(|| Path::new("/"), |d| d.path())
    }

    /// The echo backend.
    pub fn echo(&self) -> &EchoBackend {
        &self.echo
    }

    /// wayguard's ports.
    pub fn serve_ports(&self) -> ServePorts {
        self.ports
    }

    /// The HTTP listener's port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The HTTPS listener's port, if configured.
    pub fn https_port(&self) -> Option<u16> {
        self.https_port
    }

    /// The Envoy.
    pub fn envoy(&mut self) -> Result<&mut Envoy> {
        self.envoy
            .as_mut()
            .ok_or_else(|| anyhow!("envoy not started"))
    }

    /// The peer gateway, if the builder asked for one.
    pub fn peer(&mut self) -> Option<&mut Peer> {
        self.peer.as_mut()
    }

    /// The running wayguard, if any.
    pub fn wayguard(&mut self) -> Option<&mut Wayguard> {
        self.wayguard.as_mut()
    }

    /// A client for `https://127.0.0.1:<https port>` trusting `pki`, presenting `identity`.
    pub fn tls_client(&self, pki: &Pki, identity: Option<&CertKey>) -> Result<HttpClient> {
        let port = self
            .https_port
            .ok_or_else(|| anyhow!("scenario has no HTTPS listener"))?;
        HttpClient::tls(&format!("https://127.0.0.1:{port}"), pki, identity)
    }

    /// Starts (or restarts) `wayguard serve` on the same ports and waits for `/ready`.
    pub async fn start_wayguard(&mut self) -> Result<()> {
        if self.wayguard.is_some() {
            bail!("wayguard already running");
        }
        let mut wg = Wayguard::start(
            &self.config_dir,
            self.ports,
            &self.log_dir,
            &self.wayguard_args,
        )?;
        let ready = wg.wait_ready(READY_TIMEOUT).await;
        self.wayguard = Some(wg);
        ready
    }

    /// Stops wayguard (SIGTERM by PID, SIGKILL after the deadline); Envoy keeps running.
    pub fn stop_wayguard(&mut self) {
        if let Some(mut wg) = self.wayguard.take() {
            wg.stop();
        }
    }

    /// Writes (atomically) a file in the config dir.
    pub fn write_config(&self, name: &str, text: &str) -> Result<()> {
        write_atomic(&self.config_dir.join(name), text)
    }

    /// Overwrites a file in place (truncate + write, not atomic), like a plain editor save.
    pub fn overwrite_config(&self, name: &str, text: &str) -> Result<()> {
        let path = self.config_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("{}", path.display()))
    }

    /// Deletes a file from the config dir.
    pub fn remove_config(&self, name: &str) -> Result<()> {
        let path = self.config_dir.join(name);
        std::fs::remove_file(&path).with_context(|| format!("{}", path.display()))
    }

    /// Replaces the HTTPS server certificate (Secret `gateway-cert`) with one from `pki` and
    /// the client CA bundle with `pki`'s CA, rewriting the generated `gateway.yaml` in place
    /// (same ports, same everything else).
    pub fn rotate_https(&mut self, pki: &Pki) -> Result<()> {
        let Some(https) = self.https.as_mut() else {
            bail!("scenario has no HTTPS listener");
        };
        https.server = pki.server_cert(&["gateway.wayguard.test"])?;
        https.ca_pem = pki.ca_pem().to_string();
        let peer = self.peer_spec.as_ref().map(|(n, p)| (n.as_str(), *p));
        let text = render_gateway(&self.spec, self.echo.port(), self.https.as_ref(), peer);
        write_atomic(&self.config_dir.join(GATEWAY_FILE), &text)
    }

    /// The last `lines` lines of wayguard's output (also after it stopped).
    pub fn wayguard_log(&self, lines: usize) -> String {
        tail_file(&self.log_dir, "wayguard", lines)
    }

    /// The last `lines` lines of Envoy's output.
    pub fn envoy_log(&self, lines: usize) -> String {
        tail_file(&self.log_dir, "envoy", lines)
    }

    /// Both logs, for failure messages. Calling it marks the scenario failed: its temp dir is
    /// kept (with Envoy's and wayguard's config dumps) when it drops.
    pub fn diagnostics(&self) -> String {
        self.failed.store(true, Ordering::SeqCst);
        format!(
            "scenario dir: {}\n{}{}",
            self.dir().display(),
            self.wayguard_log(30),
            self.envoy_log(30)
        )
    }
}

fn tail_file(dir: &Path, stem: &str, lines: usize) -> String {
    let mut text = String::new();
    for ext in ["stdout", "stderr"] {
        let path = dir.join(format!("{stem}.{ext}"));
        let body = std::fs::read_to_string(&path).unwrap_or_default();
        let all: Vec<&str> = body.lines().collect();
        let skip = all.len().saturating_sub(lines);
        text.push_str(&format!(
            "----- {} (last {} lines) -----\n",
            path.display(),
            all.len() - skip
        ));
        for line in &all[skip..] {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let keep = std::thread::panicking()
            || self.failed.load(Ordering::SeqCst)
            || std::env::var_os("WAYGUARD_TEST_KEEP").is_some();
        if !keep {
            return;
        }
        let Some(dir) = self.dir.take() else { return };
        let path = dir.keep();
        let mut dumps = vec![
            (
                self.envoy_admin,
                "/config_dump".to_string(),
                "envoy-config_dump.json",
            ),
            (self.envoy_admin, "/stats".to_string(), "envoy-stats.txt"),
        ];
        if self.wayguard.is_some() {
            dumps.push((
                self.ports.admin,
                "/debug/status".into(),
                "wayguard-status.json",
            ));
            dumps.push((
                self.ports.admin,
                "/debug/connections".into(),
                "wayguard-connections.json",
            ));
            dumps.push((self.ports.admin, "/metrics".into(), "wayguard-metrics.txt"));
            dumps.push((
                self.ports.admin,
                format!("/debug/config_dump?gateway={}", self.gateway),
                "wayguard-config_dump.json",
            ));
        }
        for (port, url, file) in dumps {
            if let Some(body) = crate::http::blocking_get(port, &url) {
                let _ = std::fs::write(path.join(file), body);
            }
        }
        eprintln!("scenario dir kept for inspection: {}", path.display());
    }
}
