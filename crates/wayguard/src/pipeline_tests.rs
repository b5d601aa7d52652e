//! Incremental rebuilds: only gateways whose inputs changed are translated again, and what is
//! skipped keeps its snapshot and status.

use wayguard_api::resource::{decode, parse_documents};
use wayguard_index::IndexConfig;
use wayguard_jwks::{JwksResolver, Metrics, ResolverConfig};

use super::*;

const QUICKSTART: [&str; 2] = [
    include_str!("../../../examples/quickstart/gateway.yaml"),
    include_str!("../../../examples/quickstart/policies.yaml"),
];

/// The quickstart's objects, moved to namespace `ns`.
fn quickstart(ns: &str) -> Vec<wayguard_api::Resource> {
    QUICKSTART
        .iter()
        .flat_map(|text| {
            let text = text.replace("namespace: demo", &format!("namespace: {ns}"));
            let text = text.replace("name: demo\n", &format!("name: {ns}\n"));
            let docs = parse_documents(&text).expect("quickstart parses");
            docs.iter()
                .enumerate()
                .map(|(i, doc)| decode(doc, i).expect("quickstart decodes"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn pipeline(namespaces: &[&str]) -> Arc<Pipeline> {
    let mut index = Index::new(IndexConfig::default());
    for ns in namespaces {
        for resource in quickstart(ns) {
            index.apply(resource);
        }
    }
    let resolver =
        JwksResolver::new(ResolverConfig::default(), Metrics::default()).expect("resolver");
    let metrics = PipelineMetrics::register(&mut Registry::default());
    Pipeline::new(
        index,
        KeyMaterial::new(resolver),
        SnapshotCache::new(),
        metrics,
    )
}

fn translated(p: &Pipeline) -> u64 {
    p.metrics.translated_gateways.get()
}

#[tokio::test]
async fn only_gateways_whose_inputs_changed_are_translated() {
    let p = pipeline(&["a", "b"]);
    assert_eq!(p.rebuild(), vec!["a/waypoint", "b/waypoint"]);
    assert_eq!(translated(&p), 2);
    let b_version = p.cache.get("b/waypoint").expect("snapshot").version();

    // Nothing changed: nothing is translated, statuses and snapshots stay.
    assert!(p.rebuild().is_empty());
    assert_eq!(translated(&p), 2);
    assert_eq!(p.status.read().len(), 2);
    assert_eq!(p.status.read()["a/waypoint"].listeners, 1);

    // A policy of gateway `a` changes: only `a` is translated, and only `a` is pushed.
    let mut policy = quickstart("a")
        .into_iter()
        .find(|r| r.meta().name.as_deref() == Some("admins-write"))
        .expect("admins-write");
    let wayguard_api::Resource::AuthorizationPolicy(ap) = &mut policy else {
        panic!("admins-write is an AuthorizationPolicy");
    };
    ap.spec.action = Some(wayguard_api::istio::Action::Audit);
    assert!(p.index.write().apply(policy));
    assert_eq!(p.rebuild(), vec!["a/waypoint"]);
    assert_eq!(translated(&p), 3);
    assert_eq!(
        p.cache.get("b/waypoint").expect("snapshot").version(),
        b_version
    );

    // Gateway `b` goes away: its Envoys get an empty configuration, `a` is not translated.
    let gateway = quickstart("b")
        .into_iter()
        .find(|r| matches!(r, wayguard_api::Resource::Gateway(_)))
        .expect("gateway");
    assert!(p.index.write().delete(&gateway.object_ref()));
    assert_eq!(p.rebuild(), vec!["b/waypoint"]);
    assert_eq!(translated(&p), 3);
    assert!(p.cache.get("b/waypoint").expect("snapshot").is_empty());
    assert!(!p.status.read().contains_key("b/waypoint"));
}
