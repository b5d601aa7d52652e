//! Login tier: Debian `redis-server` and `chromium` (apt), npm `oidc-provider` and
//! `playwright-core` (never `npx playwright install`: the browser is Debian's).
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wayguard_testkit::ports::free_port;
use wayguard_testkit::process::ChildGuard;

use super::exec::{run_logged, write_if_changed};
use super::{
    APT_PACKAGES, CHROMIUM_HEADLESS_ARGS, Ctx, OIDC_PROVIDER_VERSION, Outcome,
    PLAYWRIGHT_CORE_VERSION,
};

/// `npm install --prefix` directory; `node_modules` is inside.
pub(super) fn node_prefix(tools: &Path) -> PathBuf {
    tools.join("node")
}

/// Debian's installed version of each package, `None` when not installed.
fn dpkg_versions(log: &Path) -> Result<Vec<(&'static str, Option<String>)>> {
    let mut out = Vec::new();
    for pkg in APT_PACKAGES {
        let result = Command::new("dpkg-query")
            .args(["-W", "-f=${db:Status-Status} ${Version}", pkg])
            .output()
            .with_context(|| format!("running dpkg-query for {pkg} (log {})", log.display()))?;
        let text = String::from_utf8_lossy(&result.stdout).into_owned();
        let version = match text.split_once(' ') {
            Some(("installed", v)) if result.status.success() => Some(v.trim().to_string()),
            _ => None,
        };
        out.push((pkg, version));
    }
    Ok(out)
}

pub(super) fn install_apt(ctx: &mut Ctx) -> Result<(Outcome, String, String)> {
    let log = ctx.log_path("apt");
    let redis = ctx.tools.redis_server.clone();
    let chromium = ctx.tools.chromium.clone();
    let mut versions = dpkg_versions(&log)?;
    let present = versions.iter().all(|(_, v)| v.is_some()) && redis.exists() && chromium.exists();
    let outcome = if present && !ctx.force {
        Outcome::Cached
    } else {
        ctx.remove_stamp("apt")?;
        let _ = fs::remove_file(&log);
        let uid = run_logged(
            Command::new("id").arg("-u"),
            &log,
            Some(Duration::from_secs(10)),
        )?;
        if uid.trim() != "0" {
            bail!(
                "installing {} needs root; run as root: apt-get install -y --no-install-recommends {}",
                APT_PACKAGES.join(" "),
                APT_PACKAGES.join(" ")
            );
        }
        let install = |log: &Path| {
            let mut cmd = Command::new("apt-get");
            cmd.args(["install", "-y", "--no-install-recommends"])
                .args(APT_PACKAGES)
                .env("DEBIAN_FRONTEND", "noninteractive");
            run_logged(&mut cmd, log, Some(Duration::from_secs(1800)))
        };
        if let Err(first) = install(&log) {
            // Most often: package lists missing or stale on a fresh machine.
            println!("    apt-get install failed ({first:#}); running apt-get update and retrying");
            run_logged(
                Command::new("apt-get")
                    .args(["update"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
                &log,
                Some(Duration::from_secs(900)),
            )?;
            install(&log)?;
        }
        versions = dpkg_versions(&log)?;
        Outcome::Installed
    };
    let mut stamp = Vec::new();
    for (pkg, version) in &versions {
        match version {
            Some(v) => stamp.push(format!("{pkg}={v}")),
            None => bail!(
                "{pkg} is still not installed after apt-get install (log {})",
                log.display()
            ),
        }
    }
    let out = run_logged(
        Command::new(&redis).arg("--version"),
        &log,
        Some(Duration::from_secs(30)),
    )?;
    if !out.contains("Redis server v=") {
        bail!("unexpected `{} --version`: {}", redis.display(), out.trim());
    }
    let out = run_logged(
        Command::new(&chromium)
            .args(CHROMIUM_HEADLESS_ARGS)
            .arg("--version"),
        &log,
        Some(Duration::from_secs(60)),
    )?;
    let chromium_version = out
        .lines()
        .find(|l| l.starts_with("Chromium "))
        .map(str::trim)
        .map(str::to_string);
    let Some(chromium_version) = chromium_version else {
        bail!(
            "unexpected `{} --version`: {}",
            chromium.display(),
            out.trim()
        );
    };
    let stamp = stamp.join(" ");
    ctx.write_stamp("apt", &stamp)?;
    Ok((outcome, stamp, chromium_version))
}

pub(super) fn install_npm(ctx: &mut Ctx) -> Result<(Outcome, String, String)> {
    let want =
        format!("oidc-provider@{OIDC_PROVIDER_VERSION} playwright-core@{PLAYWRIGHT_CORE_VERSION}");
    let log = ctx.log_path("node-modules");
    let modules = ctx.tools.node_modules.clone();
    let pkg_json = |name: &str| modules.join(name).join("package.json");
    let current = ctx.is_current(
        "node-modules",
        &want,
        &[&pkg_json("oidc-provider"), &pkg_json("playwright-core")],
    ) && package_version(&pkg_json("oidc-provider")).as_deref()
        == Some(OIDC_PROVIDER_VERSION)
        && package_version(&pkg_json("playwright-core")).as_deref()
            == Some(PLAYWRIGHT_CORE_VERSION);
    let outcome = if current {
        Outcome::Cached
    } else {
        ctx.remove_stamp("node-modules")?;
        let _ = fs::remove_file(&log);
        let prefix = node_prefix(&ctx.dir);
        fs::create_dir_all(&prefix).with_context(|| format!("creating {}", prefix.display()))?;
        run_logged(
            Command::new("npm")
                .arg("install")
                .arg("--prefix")
                .arg(&prefix)
                .args(["--no-audit", "--no-fund", "--save-exact"])
                .arg(format!("oidc-provider@{OIDC_PROVIDER_VERSION}"))
                .arg(format!("playwright-core@{PLAYWRIGHT_CORE_VERSION}"))
                .env("npm_config_cache", ctx.dir.join("npm-cache"))
                .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"),
            &log,
            Some(Duration::from_secs(900)),
        )?;
        for (name, version) in [
            ("oidc-provider", OIDC_PROVIDER_VERSION),
            ("playwright-core", PLAYWRIGHT_CORE_VERSION),
        ] {
            let got = package_version(&pkg_json(name));
            if got.as_deref() != Some(version) {
                bail!(
                    "npm installed {name} {got:?}, expected {version} ({})",
                    modules.display()
                );
            }
        }
        Outcome::Installed
    };
    // oidc-provider 9 is ESM only: `require()` fails, a dynamic import is the real check.
    let script = "const o = await import('oidc-provider'); const p = await import('playwright-core'); \
                  if (typeof o.default !== 'function') throw new Error('oidc-provider has no default export'); \
                  if (typeof p.chromium?.launch !== 'function') throw new Error('playwright-core has no chromium'); \
                  console.log('imports ok');";
    let out = run_logged(
        Command::new(&ctx.tools.node)
            .args(["--input-type=module", "-e", script])
            .current_dir(node_prefix(&ctx.dir)),
        &log,
        Some(Duration::from_secs(60)),
    )?;
    if !out.contains("imports ok") {
        bail!(
            "node could not import oidc-provider/playwright-core: {}",
            out.trim()
        );
    }
    ctx.write_stamp("node-modules", &want)?;
    Ok((
        outcome,
        format!("oidc-provider {OIDC_PROVIDER_VERSION}, playwright-core {PLAYWRIGHT_CORE_VERSION}"),
        format!("{}", modules.display()),
    ))
}

fn package_version(package_json: &Path) -> Option<String> {
    let text = fs::read_to_string(package_json).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("version")?.as_str().map(str::to_string)
}

/// The node script of the login smoke test: an oidc-provider on a loopback port, and headless
/// Chromium driven by playwright-core loading its discovery document.
const SMOKE_SCRIPT: &str = r#"
import http from 'node:http';
import Provider from 'oidc-provider';
import { chromium } from 'playwright-core';

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
const provider = new Provider(issuer, {
  clients: [{ client_id: 'web', client_secret: 'secret', redirect_uris: ['http://127.0.0.1/cb'] }],
});
server.on('request', provider.callback());

const args = JSON.parse(process.env.WAYGUARD_CHROMIUM_ARGS).filter((a) => a !== '--headless');
const browser = await chromium.launch({ executablePath: process.env.WAYGUARD_CHROMIUM, headless: true, args });
try {
  const page = await browser.newPage();
  await page.goto(`${issuer}/.well-known/openid-configuration`);
  const discovery = JSON.parse(await page.textContent('body'));
  if (discovery.issuer !== issuer) throw new Error(`unexpected issuer ${discovery.issuer}`);
  console.log(`login smoke ok: chromium ${browser.version()} loaded ${issuer}/.well-known/openid-configuration`);
} finally {
  await browser.close();
  server.close();
}
"#;

/// oidc-provider serving discovery to headless Chromium through playwright-core, and a
/// redis-server answering PING; every process started here is stopped by its PID.
pub(super) fn smoke_test(ctx: &mut Ctx) -> Result<(Outcome, String, String)> {
    let log = ctx.log_path("login-smoke");
    let _ = fs::remove_file(&log);
    let prefix = node_prefix(&ctx.dir);
    let script = prefix.join("wayguard-smoke.mjs");
    write_if_changed(&script, SMOKE_SCRIPT)?;
    let args = serde_json::to_string(&CHROMIUM_HEADLESS_ARGS).context("encoding chromium args")?;
    let user_data = ctx
        .dir
        .join("run")
        .join(format!("chromium-{}", std::process::id()));
    fs::create_dir_all(&user_data).with_context(|| format!("creating {}", user_data.display()))?;
    let start = Instant::now();
    let out = run_logged(
        Command::new(&ctx.tools.node)
            .arg(&script)
            .current_dir(&prefix)
            .env("WAYGUARD_CHROMIUM", &ctx.tools.chromium)
            .env("WAYGUARD_CHROMIUM_ARGS", args)
            .env("HOME", &user_data)
            .env("XDG_CONFIG_HOME", &user_data)
            .env("XDG_CACHE_HOME", &user_data),
        &log,
        Some(Duration::from_secs(120)),
    );
    let _ = fs::remove_dir_all(&user_data);
    let out = out?;
    let browser_time = start.elapsed();
    if !out.contains("login smoke ok") {
        bail!("login smoke script did not report success: {}", out.trim());
    }
    let redis_time = redis_ping(&ctx.tools.redis_server, &log)?;
    Ok((
        Outcome::Checked,
        "-".to_string(),
        format!(
            "oidc-provider + playwright-core + chromium {:.1}s, redis-server PING {:.1}s",
            browser_time.as_secs_f64(),
            redis_time.as_secs_f64()
        ),
    ))
}

/// Start redis-server on a free loopback port, PING it, stop it by PID. Its output goes to
/// `redis-server.{stdout,stderr}` next to `log`.
fn redis_ping(redis_server: &Path, log: &Path) -> Result<Duration> {
    let start = Instant::now();
    let port = free_port()?;
    let mut cmd = Command::new(redis_server);
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    let shown = super::exec::display(&cmd);
    let log_dir = log.parent().unwrap_or(Path::new("."));
    let mut child =
        ChildGuard::spawn("redis-server", cmd, log_dir)?.with_stop_timeout(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        match ping(port) {
            Ok(reply) => break reply,
            Err(e) if Instant::now() > deadline => {
                bail!(
                    "redis-server (`{shown}`) did not answer PING within 20s: {e:#}\n{}",
                    child.log_tail(20)
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    if child.stop().is_none() {
        bail!(
            "redis-server (pid {}) still running after SIGKILL",
            child.pid()
        );
    }
    if !reply.starts_with("+PONG") {
        bail!("redis-server answered PING with {reply:?}");
    }
    Ok(start.elapsed())
}

fn ping(port: u16) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .context("setting a read timeout")?;
    stream.write_all(b"PING\r\n").context("sending PING")?;
    let mut buf = [0_u8; 64];
    let n = stream.read(&mut buf).context("reading the reply")?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}
