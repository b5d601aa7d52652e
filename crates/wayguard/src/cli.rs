//! The command line (ARCHITECTURE.md "Command line").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// wayguard: Istio and Solo auth policies for stock Envoy.
#[derive(Parser, Debug)]
#[command(name = "wayguard", version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

fn duration(s: &str) -> Result<Duration, String> {
    wayguard_api::duration::parse_go_duration(s).map_err(|e| e.to_string())
}

/// Log output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Run on a directory of Kubernetes-style YAML (recursive .yaml/.yml, multi-document), watched for changes.
    #[arg(long, env = "WAYGUARD_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    /// Run against the cluster from in-cluster config or KUBECONFIG.
    #[arg(long, env = "WAYGUARD_KUBERNETES", default_value_t = false)]
    kubernetes: bool,
    /// xDS (ADS gRPC) listen address.
    #[arg(long, env = "WAYGUARD_XDS_ADDRESS", default_value = "0.0.0.0:15010")]
    xds_address: SocketAddr,
    /// Admin listen address (/ready, /metrics, /debug/...).
    #[arg(long, env = "WAYGUARD_ADMIN_ADDRESS", default_value = "0.0.0.0:15014")]
    admin_address: SocketAddr,
    /// ext_authz gRPC listen address (AuthConfig OIDC login).
    #[arg(long, env = "WAYGUARD_EXTAUTH_ADDRESS", default_value = "0.0.0.0:8083")]
    extauth_address: SocketAddr,
    /// Where Envoy reaches this ext_authz (HOST:PORT) when a login policy's backendRef names no
    /// Service wayguard knows; default: this host's loopback and the --extauth-address port.
    #[arg(long, env = "WAYGUARD_EXTAUTH_UPSTREAM", value_parser = parse_host_port)]
    extauth_upstream: Option<(String, u16)>,
    /// STS listen address (RFC 8693 token exchange; not served yet).
    #[arg(long, env = "WAYGUARD_STS_ADDRESS", default_value = "0.0.0.0:7777")]
    sts_address: SocketAddr,
    /// Root namespace (Istio meshConfig rootNamespace).
    #[arg(long, env = "WAYGUARD_ROOT_NAMESPACE", default_value = "istio-system")]
    root_namespace: String,
    /// Gateway classes wayguard programs.
    #[arg(
        long = "gateway-class",
        env = "WAYGUARD_GATEWAY_CLASSES",
        value_delimiter = ',',
        default_value = "wayguard,istio-waypoint"
    )]
    gateway_classes: Vec<String>,
    /// Gateway classes whose gateways are waypoints (no selector-based policies).
    #[arg(
        long = "waypoint-class",
        env = "WAYGUARD_WAYPOINT_CLASSES",
        value_delimiter = ',',
        default_value = "istio-waypoint"
    )]
    waypoint_classes: Vec<String>,
    /// Quiet period that batches source changes before translation (an isolated change is applied at once).
    #[arg(long, env = "WAYGUARD_DEBOUNCE", default_value = "100ms", value_parser = duration)]
    debounce: Duration,
    /// Longest a change waits while changes keep arriving.
    #[arg(long, env = "WAYGUARD_DEBOUNCE_MAX", default_value = "1s", value_parser = duration)]
    debounce_max: Duration,
    /// JWKS refresh interval (istiod: PILOT_JWT_PUB_KEY_REFRESH_INTERVAL).
    #[arg(long, env = "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL", default_value = "20m", value_parser = duration)]
    jwks_refresh_interval: Duration,
    /// Who fetches JWKS URIs: `istiod`/`false` (wayguard fetches and inlines), `hybrid`/`true`
    /// (Envoy fetches from in-mesh Services, wayguard inlines the rest), `envoy` (Envoy always fetches).
    #[arg(long, env = "PILOT_JWT_ENABLE_REMOTE_JWKS", default_value = "istiod")]
    jwks_fetch_mode: String,
    /// With --kubernetes: a kubeconfig file instead of in-cluster config or $KUBECONFIG.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the leader election Lease (Kubernetes mode; the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "istio-system")]
    leader_election_namespace: String,
    /// This replica's identity in leader election (the pod name; default: the host name).
    #[arg(long, env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// How long a leader's lease lasts without renewal; a new leader takes over within it.
    #[arg(long, env = "WAYGUARD_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    lease_duration: Duration,
    /// How long shutdown (SIGTERM) may take in total: xDS streams drained, the status write in
    /// flight finished, the Lease released. Keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "WAYGUARD_DRAIN_TIMEOUT", default_value = "10s", value_parser = duration)]
    drain_timeout: Duration,
    /// Log format.
    #[arg(long, env = "WAYGUARD_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. `info,wayguard_xds=debug`).
    #[arg(long, env = "WAYGUARD_LOG", default_value = "info")]
    log: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate resources: exit 0 when all are valid, else 1 with `FILE: Kind ns/name: field: message` lines.
    Validate {
        /// Files or directories (every .yaml/.yml below a directory).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the Envoy configuration generated for a gateway as JSON (proto3 JSON mapping).
    ConfigDump {
        /// Directory of Kubernetes-style YAML.
        #[arg(long)]
        config_dir: PathBuf,
        /// The gateway, NAMESPACE/NAME.
        #[arg(long)]
        gateway: String,
    },
    /// Print an Envoy bootstrap (YAML) that connects a stock Envoy to wayguard.
    Bootstrap {
        /// The gateway this Envoy serves, NAMESPACE/NAME.
        #[arg(long)]
        gateway: String,
        /// wayguard's xDS address, HOST:PORT.
        #[arg(long, default_value = "wayguard.istio-system.svc:15010")]
        xds_address: String,
        /// Envoy admin port (on 127.0.0.1).
        #[arg(long, default_value_t = 15000)]
        admin_port: u16,
        /// Use Delta ADS (DELTA_GRPC).
        #[arg(long)]
        delta: bool,
        /// Node id (default NAME.NAMESPACE).
        #[arg(long)]
        node_id: Option<String>,
        /// Node label for selector-based policies, key=value (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Run the control plane.
    Serve(Box<ServeArgs>),
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn serve(args: ServeArgs) -> ExitCode {
    let ServeArgs {
        config_dir,
        kubernetes,
        kubeconfig,
        xds_address,
        admin_address,
        extauth_address,
        extauth_upstream,
        sts_address,
        root_namespace,
        gateway_classes,
        waypoint_classes,
        debounce,
        debounce_max,
        jwks_refresh_interval,
        jwks_fetch_mode,
        leader_election_namespace,
        leader_election_identity,
        lease_duration,
        drain_timeout,
        log_format,
        log,
    } = args;
    init_logging(log_format, &log);
    let source = match (kubernetes, config_dir) {
        (true, Some(_)) => {
            eprintln!("error: use either --kubernetes or --config-dir, not both");
            return ExitCode::from(2);
        }
        (true, None) => {
            let identity = leader_election_identity.unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| format!("wayguard-{}", std::process::id()))
            });
            crate::serve::SourceConfig::Kubernetes {
                kubeconfig,
                lease: crate::kubernetes::lease::LeaseConfig {
                    namespace: leader_election_namespace,
                    name: "wayguard-leader".into(),
                    identity,
                    lease_duration,
                    retry_period: lease_duration / 3,
                },
            }
        }
        (false, Some(_)) if kubeconfig.is_some() => {
            eprintln!("error: --kubeconfig goes with --kubernetes");
            return ExitCode::from(2);
        }
        (false, Some(dir)) => crate::serve::SourceConfig::Files(dir),
        (false, None) => {
            eprintln!("error: serve needs --config-dir DIR or --kubernetes");
            return ExitCode::from(2);
        }
    };
    tracing::info!(%sts_address, "STS is not served yet");
    let config = crate::serve::ServeConfig {
        source,
        xds_address,
        admin_address,
        root_namespace,
        gateway_classes,
        waypoint_classes,
        debounce,
        debounce_max,
        jwks_refresh_interval,
        jwks_fetch_mode: wayguard_core::authn::JwksFetchMode::parse(&jwks_fetch_mode),
        drain_timeout,
        extauth_address,
        extauth_upstream,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(crate::serve::run(
        config,
        wayguard_runtime::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn print_result(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Validate { paths } => {
            let mut stdout = std::io::stdout().lock();
            match crate::validate::run(&paths, &mut stdout) {
                Ok(summary) if summary.errors == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::ConfigDump {
            config_dir,
            gateway,
        } => print_result(
            crate::dump::run(config_dir, &gateway)
                .and_then(|v| serde_json::to_string_pretty(&v).map_err(Into::into)),
        ),
        Command::Bootstrap {
            gateway,
            xds_address,
            admin_port,
            delta,
            node_id,
            labels,
        } => print_result(crate::bootstrap::render(
            &crate::bootstrap::BootstrapOptions {
                gateway,
                xds_address,
                admin_port,
                delta,
                node_id,
                labels,
            },
        )),
        Command::Serve(args) => serve(*args),
    }
}

/// `HOST:PORT` (`[v6]:PORT` for IPv6 literals).
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?}: the port must be a number from 1 to 65535"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("{s:?}: expected HOST:PORT"));
    }
    Ok((host.to_string(), port))
}
