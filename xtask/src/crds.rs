//! `cargo xtask crds`: writes `crds/*.yaml` and the Helm chart's copy from the Rust types.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The directories that receive the generated CRDs.
const TARGETS: &[&str] = &["crds", "charts/wayguard/crds"];

/// Every generated file: path relative to the repository root, and contents.
pub fn generated() -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for (name, crd) in wayguard_api::crd::all() {
        let yaml = wayguard_api::crd::to_yaml(&crd).with_context(|| format!("rendering {name}"))?;
        for dir in TARGETS {
            out.push((Path::new(dir).join(name), yaml.clone()));
        }
    }
    Ok(out)
}

/// The repository root (the parent of xtask/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Writes the Gateway API CRDs (generated from the `gateway-api` crate) for a test cluster.
pub fn write_gateway_api(path: &Path) -> Result<()> {
    let docs: Vec<String> = wayguard_api::crd::gateway_api()
        .iter()
        .map(|c| serde_saphyr::to_string(c).map_err(|e| anyhow::anyhow!("rendering: {e}")))
        .collect::<Result<_>>()?;
    std::fs::write(path, docs.join("---\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Writes the CRDs, or with `check` fails when a committed file is missing, stale or extra.
pub fn run(check: bool) -> Result<()> {
    let root = repo_root();
    let files = generated()?;
    let mut stale = Vec::new();
    for (path, contents) in &files {
        let full = root.join(path);
        let current = std::fs::read_to_string(&full).ok();
        if current.as_deref() == Some(contents.as_str()) {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else {
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&full, contents)
                .with_context(|| format!("writing {}", full.display()))?;
            println!("wrote {}", path.display());
        }
    }
    for dir in TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = Path::new(dir).join(entry?.file_name());
            if !files.iter().any(|(p, _)| p == &path) {
                if check {
                    stale.push(format!("{} (not generated any more)", path.display()));
                } else {
                    std::fs::remove_file(root.join(&path))?;
                    println!("removed {}", path.display());
                }
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "generated CRDs are stale: {}\nrun `cargo xtask crds` and commit the result",
            stale.join(", ")
        );
    }
    if check {
        println!("crds: {} files up to date", files.len());
    }
    Ok(())
}
