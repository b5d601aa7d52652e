//! Golden tests: every fixture in tests/fixtures is translated for the gateway `foo/waypoint`
//! and the HTTP auth filters, as proto3 JSON with sorted keys, are compared with the snapshot in
//! tests/snapshots.
//!
//! Each fixture names, on its first line, the upstream behaviour it was reviewed against
//! (istio/istio pilot/pkg/security/authz/builder/testdata, pilot/pkg/security/authn, SEMANTICS.md).
//! During development every istiod builder golden without trust-domain aliases was compared
//! with our output for the same input and matched.

mod common;

use std::path::Path;

use common::{load, translate};

#[test]
fn fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    assert!(names.len() >= 20, "fixtures went missing: {names:?}");
    for path in names {
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("read");
        let json = translate(&load(&text));
        insta::with_settings!({ sort_maps => true, description => text.lines().next().unwrap_or_default() }, {
            insta::assert_json_snapshot!(name, json);
        });
    }
}
