//! Golden tests: every fixture in tests/fixtures is translated for the gateway `foo/waypoint`
//! and the HTTP auth filters, as proto3 JSON with sorted keys, are compared with the snapshot in
//! tests/snapshots.
//!
//! Each fixture names, on its first line, the upstream behaviour it was reviewed against
//! (istio/istio pilot/pkg/security/authz/builder/testdata, pilot/pkg/security/authn, SEMANTICS.md).
//! During development every istiod builder golden without trust-domain aliases was compared
//! with our output for the same input and matched.

mod common;

use common::{load, translate};

#[test]
fn fixtures() {
    let fixtures = common::fixtures("tests/fixtures");
    assert!(fixtures.len() >= 20, "fixtures went missing");
    for (name, text) in fixtures {
        let json = translate(&load(&text));
        insta::with_settings!({ sort_maps => true, description => text.lines().next().unwrap_or_default() }, {
            insta::assert_json_snapshot!(name, json);
        });
    }
}
