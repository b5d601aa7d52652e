use std::sync::Arc;

use crate::{
    CacheError, Resource, SnapshotCache, VersionClock,
    canonical::tests::{mk_hcm_listener, mk_jwt},
    test_util::*,
    type_url,
};

#[test]
fn equal_content_set_does_not_notify() {
    let cache = mk_cache();
    let mut watch = cache.watch(GW);
    let build = || {
        vec![
            Resource::from(mk_hcm_listener(mk_jwt(8), false)),
            mk_cluster("c1", 0),
            mk_cla("c1", 1),
            mk_route("r1", "example.com"),
        ]
    };
    let first = cache.set(GW, build()).expect("set");
    assert!(first.changed);
    assert!(watch.has_changed());
    let snapshot = watch.current().expect("snapshot");
    for _ in 0..10 {
        let again = cache.set(GW, build()).expect("set");
        assert!(!again.changed, "equal content must not notify");
        assert_eq!(again.version, first.version);
        assert!(!watch.has_changed());
    }
    assert!(Arc::ptr_eq(&snapshot, &cache.get(GW).expect("current")));
}

#[test]
fn changed_resources_get_new_versions_and_unchanged_keep_theirs() {
    let cache = mk_cache();
    let one = set(
        &cache,
        vec![
            mk_cluster("a", 0),
            mk_cluster("b", 0),
            mk_listener("l", "x"),
        ],
    );
    let two = set(
        &cache,
        vec![
            mk_cluster("a", 0),
            mk_cluster("b", 1),
            mk_listener("l", "x"),
        ],
    );
    assert!(two.version() > one.version());

    let a1 = one.get(type_url::CLUSTER, "a").expect("a");
    let a2 = two.get(type_url::CLUSTER, "a").expect("a");
    assert!(
        Arc::ptr_eq(&a1.resource, &a2.resource),
        "unchanged resource keeps its Arc"
    );
    assert_eq!(a1.version, a2.version);
    let b2 = two.get(type_url::CLUSTER, "b").expect("b");
    assert_eq!(b2.version, two.version());
    assert_eq!(two.type_version(type_url::CLUSTER), two.version());
    assert_eq!(
        two.type_version(type_url::LISTENER),
        one.type_version(type_url::LISTENER),
        "an untouched type keeps its version"
    );
}

#[test]
fn a_vanished_type_becomes_empty_with_a_new_version() {
    let cache = mk_cache();
    let one = set(&cache, vec![mk_cluster("a", 0), mk_listener("l", "x")]);
    let outcome = cache.set(GW, vec![mk_cluster("a", 0)]).expect("set");
    assert_eq!(outcome.changed_types, vec![type_url::LISTENER.to_owned()]);
    let two = cache.get(GW).expect("snapshot");
    let listeners = two.resources(type_url::LISTENER).expect("type kept");
    assert!(listeners.is_empty());
    assert!(listeners.version() > one.type_version(type_url::LISTENER));
    // Setting the same (empty) content again is a no-op.
    assert!(
        !cache
            .set(GW, vec![mk_cluster("a", 0)])
            .expect("set")
            .changed
    );
}

#[test]
fn duplicate_names_are_rejected() {
    let cache = mk_cache();
    let err = cache
        .set(GW, vec![mk_cluster("a", 0), mk_cluster("a", 1)])
        .expect_err("duplicate");
    assert!(matches!(err, CacheError::DuplicateResource { ref name, .. } if name == "a"));
    assert!(err.to_string().contains("duplicate"));
}

#[test]
fn a_restarted_cache_never_reuses_versions() {
    let before = SnapshotCache::with_clock(VersionClock::with_epoch(10));
    let after = SnapshotCache::with_clock(VersionClock::with_epoch(11));
    let v1 = before
        .set(GW, vec![mk_cluster("a", 0)])
        .expect("set")
        .version;
    let v2 = after
        .set(GW, vec![mk_cluster("a", 1)])
        .expect("set")
        .version;
    assert_ne!(v1.to_string(), v2.to_string());
    assert!(v2 > v1);
}

#[tokio::test]
async fn watchers_follow_a_key_before_it_exists_and_through_removal() {
    let cache = mk_cache();
    let mut watch = cache.watch(GW);
    assert!(watch.current().is_none());
    let set_outcome = cache.set(GW, vec![mk_cluster("a", 0)]).expect("set");
    let snapshot = watch.changed().await.expect("snapshot");
    assert_eq!(snapshot.version(), set_outcome.version);
    assert_eq!(cache.keys(), vec![GW.to_owned()]);

    assert!(cache.remove(GW).is_some());
    assert!(watch.changed().await.is_none());
    assert!(cache.keys().is_empty());

    let again = cache.set(GW, vec![mk_cluster("a", 0)]).expect("set");
    assert!(again.changed, "content after removal is new");
    let snapshot = watch.changed().await.expect("snapshot");
    assert!(snapshot.get(type_url::CLUSTER, "a").expect("a").version > set_outcome.version);
}

#[test]
fn empty_unwatched_slots_are_dropped() {
    let cache = mk_cache();
    drop(cache.watch("ns/other"));
    assert!(cache.get("ns/other").is_none());
    cache.set(GW, vec![]).expect("set");
    assert!(cache.remove(GW).is_some());
    assert!(cache.remove(GW).is_none());
}
