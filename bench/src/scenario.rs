//! The scenario: wayguard on a generated directory, N simulated clients, one real Envoy with a
//! prober, then K rewrites of one AuthorizationPolicy of gateway 0.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};

use crate::ads::{self, Fleet};
use crate::observe::{self, MetricSamples};
use crate::probe::{Probe, Sample};
use crate::procs::{self, Proc};
use crate::setup::{self, Layout, SigningKey, WriteMode, WriteTime};

/// Scenario settings (see `main.rs` for the flags).
#[derive(Clone, Debug)]
pub struct Options {
    pub clients: usize,
    pub gateways: usize,
    pub rounds: usize,
    pub delta: bool,
    pub write_mode: WriteMode,
    pub envoy: Option<PathBuf>,
    pub no_envoy: bool,
    pub wayguard: Option<PathBuf>,
    pub work_dir: PathBuf,
    pub probe_interval: Duration,
    pub pause: Duration,
    pub log_level: String,
    pub wayguard_env: Vec<(String, String)>,
    pub connect_concurrency: usize,
    pub sync_timeout: Duration,
    pub round_timeout: Duration,
    pub node_extensions: usize,
}

/// One policy change.
#[derive(Debug)]
pub struct Round {
    /// When the file was written.
    pub write: WriteTime,
    /// The status the prober should see afterwards.
    pub expected: u16,
    /// The status before.
    pub previous: u16,
    /// The first prober answer with `expected` to a request sent after the write.
    pub enforced: Option<Sample>,
    /// Whether every affected client ACKed the change before the deadline.
    pub converged: bool,
    /// When the bench stopped waiting for this round.
    pub finished: Instant,
}

/// Everything measured in one run; [`crate::summary`] turns it into figures.
pub struct Measurements {
    pub options: Options,
    pub fleet: Arc<Fleet>,
    pub rounds: Vec<Round>,
    pub probe: Option<Arc<Probe>>,
    pub wayguard_log: PathBuf,
    /// Log size before the first change (change events are read from there on).
    pub log_offset: u64,
    pub rss_idle: u64,
    /// With every client's HTTP/2 connection open, before any ADS stream.
    pub rss_connected: u64,
    pub rss_synced: u64,
    pub rss_end: u64,
    pub sync_time: Duration,
    pub cpu_sync: Duration,
    pub cpu_changes: Duration,
    /// CPU of this process (simulated clients, prober) during the changes.
    pub cpu_bench_changes: Duration,
    /// CPU of the real Envoy during the changes.
    pub cpu_envoy_changes: Option<Duration>,
    /// Busy CPU of the whole machine during the changes.
    pub machine_busy_changes: Duration,
    /// Wall time of the change phase.
    pub wall_changes: Duration,
    /// Load averages before and after the change phase.
    pub loadavg: (String, String),
    /// Per client: (responses, bytes) by type received before the first change.
    pub types_before: Vec<BTreeMap<&'static str, (u64, u64)>>,
    pub metrics_before: MetricSamples,
    pub metrics_after: MetricSamples,
    /// Whether a real Envoy (and the prober) took part.
    pub envoy_present: bool,
    /// Why the run is broken, if it is (the figures so far are still reported).
    pub broken: Option<String>,
}

async fn wait_ready(admin: SocketAddr, wayguard: &mut Proc, deadline: Instant) -> Result<()> {
    loop {
        wayguard.check_alive()?;
        if let Ok((200, _)) = crate::http::get(admin, "/ready", Duration::from_secs(2)).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "wayguard not ready after the deadline; log tail:\n{}",
                procs::tail(wayguard.log(), 30)
            );
        }
        // Poll interval of a deadline-bounded readiness poll.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics(admin: SocketAddr) -> MetricSamples {
    match crate::http::get(admin, "/metrics", Duration::from_secs(5)).await {
        Ok((200, body)) => observe::parse_metrics(&String::from_utf8_lossy(&body)),
        _ => MetricSamples::new(),
    }
}

fn bootstrap(wayguard: &Path, xds: SocketAddr, admin_port: u16, delta: bool) -> Result<String> {
    let mut cmd = Command::new(wayguard);
    cmd.args(["bootstrap", "--gateway", &setup::gateway_id(0)])
        .args(["--xds-address", &xds.to_string()])
        .args(["--admin-port", &admin_port.to_string()]);
    if delta {
        cmd.arg("--delta");
    }
    let out = cmd.output().context("running wayguard bootstrap")?;
    if !out.status.success() {
        bail!(
            "wayguard bootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("bootstrap is not UTF-8")
}

/// Opens `n` HTTP/2 connections (no ADS stream yet), `concurrency` at a time.
async fn connect_channels(n: usize, xds: SocketAddr, concurrency: usize) -> Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{xds}"))
        .context("xDS endpoint")?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    let mut channels = Vec::with_capacity(n);
    let mut pending = tokio::task::JoinSet::new();
    for id in 0..n {
        if pending.len() >= concurrency.max(1)
            && let Some(done) = pending.join_next().await
        {
            channels.push(done.context("connect task")??);
        }
        let endpoint = endpoint.clone();
        pending.spawn(async move {
            endpoint
                .connect()
                .await
                .with_context(|| format!("client {id}: connecting to {xds}"))
        });
    }
    while let Some(done) = pending.join_next().await {
        channels.push(done.context("connect task")??);
    }
    Ok(channels)
}

/// Starts one ADS client per channel and waits until all are synced; returns the time it took.
async fn start_streams(
    fleet: &Arc<Fleet>,
    channels: Vec<Channel>,
    opts: &Options,
) -> Result<Duration> {
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    for (id, channel) in channels.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await.context("semaphore")?;
        let gateway = setup::gateway_id(id % opts.gateways.max(1));
        let fleet_ref = fleet.clone();
        let delta = opts.delta;
        tokio::spawn(async move {
            // The permit is held until the client synced, pacing the subscription storm.
            let fleet_in = fleet_ref.clone();
            let client = tokio::spawn(ads::run_client(fleet_in, id, gateway, channel, delta));
            let deadline = Instant::now() + Duration::from_secs(30);
            fleet_ref
                .wait_until(deadline, |f| {
                    f.with_record(id, |r| r.synced_at.is_some() || r.error.is_some())
                        .unwrap_or(true)
                })
                .await;
            drop(permit);
            let _ = client.await;
        });
    }
    let deadline = start + opts.sync_timeout;
    let n = fleet.len();
    if !fleet
        .wait_until(deadline, |f| f.synced() == n || f.ended() > 0)
        .await
        || fleet.ended() > 0
    {
        let errors = fleet.with_records(|_, r| r.error.clone());
        let first = errors.into_iter().flatten().next().unwrap_or_default();
        bail!(
            "{} of {n} clients synced within {:?}; {} streams ended (first: {first})",
            fleet.synced(),
            opts.sync_timeout,
            fleet.ended()
        );
    }
    Ok(start.elapsed())
}

/// Runs the scenario. Errors before the change phase are returned; failures during it are
/// recorded in [`Measurements::broken`].
pub async fn run(opts: Options) -> Result<Measurements> {
    let work = &opts.work_dir;
    let config_dir = work.join("config");
    std::fs::create_dir_all(&config_dir)
        .with_context(|| format!("creating {}", config_dir.display()))?;
    let wayguard_bin = procs::wayguard_binary(opts.wayguard.as_deref())?;
    let envoy_bin = if opts.no_envoy {
        None
    } else {
        Some(procs::envoy_binary(opts.envoy.as_deref())?)
    };

    eprintln!("generating an RSA key and {} gateways", opts.gateways);
    let key = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .context("key generation task")??;
    let backend = crate::http::spawn_backend().await?;
    let layout = Layout {
        gateways: opts.gateways,
        listener_port: procs::free_port()?,
        backend_port: backend.port(),
    };
    setup::write_config(&config_dir, &layout, &key.jwks())?;

    let xds: SocketAddr = format!("127.0.0.1:{}", procs::free_port()?).parse()?;
    let admin: SocketAddr = format!("127.0.0.1:{}", procs::free_port()?).parse()?;
    let mut cmd = Command::new(&wayguard_bin);
    cmd.arg("serve")
        .arg("--config-dir")
        .arg(&config_dir)
        .args(["--xds-address", &xds.to_string()])
        .args(["--admin-address", &admin.to_string()])
        .args([
            "--extauth-address",
            "127.0.0.1:0",
            "--sts-address",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json", "--log", &opts.log_level])
        .env("NO_COLOR", "1")
        .envs(opts.wayguard_env.iter().map(|(k, v)| (k, v)));
    let mut wayguard = Proc::spawn("wayguard", cmd, work)?;
    let pid = wayguard.pid();
    eprintln!("wayguard serve: pid {pid}, xDS {xds}, admin {admin}");
    wait_ready(
        admin,
        &mut wayguard,
        Instant::now() + Duration::from_secs(60),
    )
    .await?;
    let rss_idle = procs::rss_bytes(pid)?;
    let cpu_start = procs::cpu_time(pid)?;

    let fleet = Fleet::new(opts.clients, opts.gateways, opts.node_extensions);
    eprintln!(
        "connecting {} {} clients (node with {} extensions: {} B of protobuf)",
        opts.clients,
        if opts.delta { "Delta" } else { "SotW" },
        opts.node_extensions,
        ads::node_size(opts.node_extensions),
    );
    let channels = connect_channels(opts.clients, xds, opts.connect_concurrency).await?;
    let rss_connected = procs::rss_bytes(pid)?;
    let sync_time = start_streams(&fleet, channels, &opts).await?;
    let rss_synced = procs::rss_bytes(pid)?;
    let cpu_sync = procs::cpu_time(pid)?.saturating_sub(cpu_start);
    eprintln!(
        "{} clients synced in {:.2} s",
        fleet.synced(),
        sync_time.as_secs_f64()
    );

    let mut envoy_proc = None;
    let mut probe = None;
    if let Some(envoy_bin) = &envoy_bin {
        let envoy_admin = procs::free_port()?;
        let yaml = bootstrap(&wayguard_bin, xds, envoy_admin, opts.delta)?;
        let path = work.join("envoy.yaml");
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        let mut cmd = Command::new(envoy_bin);
        cmd.arg("-c")
            .arg(&path)
            .args(["--concurrency", "1", "--disable-hot-restart"])
            .args(["--base-id", &envoy_admin.to_string()])
            .args(["--log-level", "warning", "--drain-time-s", "1"]);
        let mut proc = Proc::spawn("envoy", cmd, work)?;
        let token = key.mint(&setup::issuer(0), Duration::from_secs(4 * 3600))?;
        let listener: SocketAddr = format!("127.0.0.1:{}", layout.listener_port).parse()?;
        let p = Probe::spawn(
            listener,
            setup::PROBE_PATH.into(),
            vec![("authorization".into(), format!("Bearer {token}"))],
            opts.probe_interval,
        );
        let since = Instant::now();
        if p.wait_for(since, 200, since + Duration::from_secs(60))
            .await
            .is_none()
        {
            proc.check_alive()?;
            let last = p.samples().last().map(|s| s.status);
            bail!(
                "the real Envoy never answered 200 on {listener}{} (last status {last:?}); envoy log tail:\n{}",
                setup::PROBE_PATH,
                procs::tail(proc.log(), 30)
            );
        }
        eprintln!("Envoy (pid {}) enforcing; prober running", proc.pid());
        envoy_proc = Some(proc);
        probe = Some(p);
    }

    // The change phase.
    let log_offset = std::fs::metadata(wayguard.log()).map_or(0, |m| m.len());
    let types_before = fleet.with_records(|_, r| r.by_type.clone());
    let metrics_before = metrics(admin).await;
    let cpu_before = procs::cpu_time(pid)?;
    let own_pid = std::process::id();
    let bench_before = procs::cpu_time(own_pid)?;
    let envoy_pid = envoy_proc.as_ref().map(Proc::pid);
    let envoy_before = envoy_pid.map(procs::cpu_time).transpose()?;
    let machine_before = procs::machine_busy()?;
    let load_before = procs::loadavg();
    let phase_start = Instant::now();
    let affected = fleet
        .with_records(|_, r| r.gateway == 0)
        .iter()
        .filter(|a| **a)
        .count();
    let mut rounds = Vec::new();
    let mut broken = None;
    let mut previous = 200;
    for r in 1..=opts.rounds {
        let deny = r % 2 == 1;
        let expected = if deny { 403 } else { 200 };
        fleet.start_round(r, 0, &setup::marker(r));
        let write = setup::write_flip(&config_dir, r, deny, opts.write_mode)?;
        let deadline = write.at + opts.round_timeout;
        let converged = fleet
            .wait_until(deadline, |f| f.acked() >= affected || f.ended() > 0)
            .await
            && fleet.ended() == 0;
        let enforced = match &probe {
            Some(p) => p.wait_for(write.at, expected, deadline).await,
            None => None,
        };
        let finished = Instant::now();
        if !converged {
            broken.get_or_insert(format!(
                "round {r}: {} of {affected} affected clients ACKed the change within {:?}",
                fleet.acked(),
                opts.round_timeout
            ));
        }
        if probe.is_some() && enforced.is_none() {
            broken.get_or_insert(format!(
                "round {r}: the real Envoy did not answer {expected} within {:?}",
                opts.round_timeout
            ));
        }
        rounds.push(Round {
            write,
            expected,
            previous,
            enforced,
            converged,
            finished,
        });
        previous = expected;
        if let Err(e) = wayguard.check_alive() {
            broken.get_or_insert(format!("{e:#}"));
            break;
        }
        // Pacing between isolated changes (so each one meets an idle debounce), not a wait
        // for a condition.
        tokio::time::sleep(opts.pause).await;
    }
    let cpu_changes = procs::cpu_time(pid)?.saturating_sub(cpu_before);
    let wall_changes = phase_start.elapsed();
    let cpu_bench_changes = procs::cpu_time(own_pid)?.saturating_sub(bench_before);
    let cpu_envoy_changes = match (envoy_pid, envoy_before) {
        (Some(p), Some(before)) => procs::cpu_time(p).ok().map(|t| t.saturating_sub(before)),
        _ => None,
    };
    let machine_busy_changes = procs::machine_busy()?.saturating_sub(machine_before);
    let loadavg = (load_before, procs::loadavg());
    let metrics_after = metrics(admin).await;
    let rss_end = procs::rss_bytes(pid)?;
    if let Some(mut proc) = envoy_proc.take() {
        if let Err(e) = proc.check_alive() {
            broken.get_or_insert(format!("{e:#}"));
        }
        proc.stop(Duration::from_secs(5));
    }
    wayguard.stop(Duration::from_secs(10));
    Ok(Measurements {
        envoy_present: probe.is_some(),
        options: opts.clone(),
        fleet,
        rounds,
        probe,
        wayguard_log: wayguard.log().to_path_buf(),
        log_offset,
        rss_idle,
        rss_connected,
        rss_synced,
        rss_end,
        sync_time,
        cpu_sync,
        cpu_changes,
        cpu_bench_changes,
        cpu_envoy_changes,
        machine_busy_changes,
        wall_changes,
        loadavg,
        types_before,
        metrics_before,
        metrics_after,
        broken,
    })
}
