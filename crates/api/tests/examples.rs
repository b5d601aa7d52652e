//! The canonical examples (examples/seed, copied from shared/examples/seed) must work as written.

use std::path::{Path, PathBuf};

use wayguard_api::resource::{decode, parse_documents};
use wayguard_api::validation::validate;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every seed file that holds Kubernetes resources (08 is a Helm values file).
fn seed_resource_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples/seed"))
        .expect("examples/seed")
        .map(|e| e.expect("entry").path())
        .filter(|p| !p.to_string_lossy().contains("helm-values"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 7, "{files:?}");
    files
}

#[test]
fn seed_examples_validate_cleanly() {
    for file in seed_resource_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        let docs = parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!docs.is_empty());
        for (i, doc) in docs.iter().enumerate() {
            let resource = decode(doc, i).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let report = validate(&resource);
            assert!(report.is_valid(), "{}: {:?}", file.display(), report.errors);
        }
    }
}

#[test]
fn seed_examples_round_trip_losslessly() {
    for file in seed_resource_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        for (i, doc) in parse_documents(&text).expect("yaml").iter().enumerate() {
            let first = decode(doc, i).expect("decode");
            let value = first.to_value().expect("serialize");
            // Serialize to YAML text and parse again, as `kubectl get -o yaml | kubectl apply -f -` would.
            let yaml = serde_saphyr::to_string(&value).expect("yaml");
            let reparsed = parse_documents(&yaml).expect("reparse");
            let second = decode(&reparsed[0], 0).expect("decode again");
            assert_eq!(
                first.to_value().expect("v1"),
                second.to_value().expect("v2"),
                "{}",
                file.display()
            );
            // Nothing the user wrote was dropped (namespace is defaulted, apiVersion normalised).
            let mut original = doc.clone();
            original["metadata"]["namespace"] = value["metadata"]["namespace"].clone();
            original["apiVersion"] = value["apiVersion"].clone();
            assert_eq!(original, value, "{}", file.display());
        }
    }
}

#[test]
fn repo_copy_matches_shared_seed() {
    let shared = repo_root().join("../shared/examples/seed");
    if !shared.exists() {
        // Outside the development tree (a packaged crate) there is nothing to compare with.
        return;
    }
    for entry in std::fs::read_dir(&shared).expect("shared") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name");
        let ours = std::fs::read(repo_root().join("examples/seed").join(name))
            .unwrap_or_else(|e| panic!("examples/seed/{}: {e}", name.to_string_lossy()));
        assert_eq!(
            ours,
            std::fs::read(&path).expect("read"),
            "examples/seed/{} differs from shared/examples/seed",
            name.to_string_lossy()
        );
    }
}
