//! Locates the FileDescriptorSet that `envoy-types` ships (`src/generated/types.bin`) so the
//! translator can render Envoy messages in the proto3 JSON mapping; `envoy-types` does not export
//! it. The dependency is pinned (`=0.7.7`), so its sources sit in Cargo's registry cache; vendored
//! or otherwise relocated sources are found with `cargo metadata --offline`.

use std::path::{Path, PathBuf};
use std::process::Command;

const CRATE_DIR: &str = "envoy-types-0.7.7";
const DESCRIPTOR: &str = "src/generated/types.bin";

fn from_registry() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    let registries = std::fs::read_dir(cargo_home.join("registry/src")).ok()?;
    registries
        .filter_map(Result::ok)
        .map(|index| index.path().join(CRATE_DIR).join(DESCRIPTOR))
        .find(|p| p.exists())
}

fn from_metadata() -> Option<PathBuf> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(Path::new(&manifest_dir).join("Cargo.toml"))
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let manifest = metadata["packages"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "envoy-types")?["manifest_path"]
        .as_str()?
        .to_string();
    let path = Path::new(&manifest).parent()?.join(DESCRIPTOR);
    path.exists().then_some(path)
}

fn main() {
    let Some(descriptor) = from_registry().or_else(from_metadata) else {
        panic!(
            "cannot find {CRATE_DIR}/{DESCRIPTOR} in Cargo's registry cache or via `cargo metadata`; \
             run `cargo fetch` and build again"
        );
    };
    println!(
        "cargo:rustc-env=ENVOY_TYPES_DESCRIPTOR={}",
        descriptor.display()
    );
    println!("cargo:rerun-if-changed={}", descriptor.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");
}
