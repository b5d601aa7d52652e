use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;

use super::*;
use crate::{Mode, test_util::*, type_url::*};

fn conn() -> DeltaConnection {
    DeltaConnection::new(mk_handle(Mode::Delta), Metrics::default())
}

fn upserted(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

fn types_of(responses: &[DeltaDiscoveryResponse]) -> Vec<&str> {
    responses.iter().map(|r| short_name(&r.type_url)).collect()
}

fn ack(c: &mut DeltaConnection, r: &DeltaDiscoveryResponse) {
    assert!(
        c.handle_request(delta_req(&r.type_url, &[], &[], &r.nonce))
            .expect("ok")
            .is_empty()
    );
}

#[test]
fn initial_wildcard_request_gets_everything_with_versions() {
    let cache = mk_cache();
    let snap = set(&cache, vec![mk_cluster("a", 0), mk_cluster("b", 0)]);
    let mut c = conn();
    c.handle_snapshot(snap.clone());
    let r = c
        .handle_request(delta_req(CLUSTER, &[], &[], ""))
        .expect("ok")
        .remove(0);
    assert_eq!(upserted(&r), ["a", "b"]);
    assert_eq!(
        r.system_version_info,
        snap.type_version(CLUSTER).to_string()
    );
    assert_eq!(
        r.resources[0].version,
        snap.get(CLUSTER, "a").expect("a").version.to_string()
    );
    assert!(r.removed_resources.is_empty());
    ack(&mut c, &r);
    assert_eq!(c.handle().status().sync.acked, Some(snap.version()));
}

#[test]
fn an_empty_wildcard_type_still_gets_an_initial_response() {
    let cache = mk_cache();
    let mut c = conn();
    c.handle_snapshot(set(&cache, vec![mk_cluster("a", 0)]));
    let r = c
        .handle_request(delta_req(LISTENER, &["*"], &[], ""))
        .expect("ok");
    assert_eq!(r.len(), 1);
    assert!(r[0].resources.is_empty());
}

#[test]
fn only_changes_and_removals_are_sent() {
    let cache = mk_cache();
    let mut c = conn();
    c.handle_snapshot(set(&cache, vec![mk_cluster("a", 0), mk_cluster("b", 0)]));
    let r = c
        .handle_request(delta_req(CLUSTER, &[], &[], ""))
        .expect("ok")
        .remove(0);
    ack(&mut c, &r);
    let r = c.handle_snapshot(set(&cache, vec![mk_cluster("a", 1), mk_cluster("c", 0)]));
    assert_eq!(upserted(&r[0]), ["a", "c"]);
    assert_eq!(r[0].removed_resources, ["b"]);
    ack(&mut c, &r[0]);
    assert!(
        c.handle_snapshot(set(
            &cache,
            vec![mk_cluster("a", 1), mk_cluster("c", 0), mk_cla("x", 1)]
        ))
        .is_empty()
    );
}

#[test]
fn nack_keeps_the_error_and_a_later_good_snapshot_still_goes_out() {
    let cache = mk_cache();
    let mut c = conn();
    c.handle_snapshot(set(&cache, vec![mk_cluster("a", 0)]));
    let r = c
        .handle_request(delta_req(CLUSTER, &[], &[], ""))
        .expect("ok")
        .remove(0);
    ack(&mut c, &r);
    let bad = c
        .handle_snapshot(set(&cache, vec![mk_cluster("a", 9)]))
        .remove(0);
    assert!(
        c.handle_request(delta_nack(CLUSTER, &bad.nonce, "bad lb policy"))
            .expect("ok")
            .is_empty()
    );
    let status = c.handle().status();
    let nack = status.types[CLUSTER].last_nack.as_ref().expect("nack");
    assert_eq!(nack.message, "bad lb policy");
    assert_eq!(nack.version, bad.system_version_info);
    assert_eq!(
        status.types[CLUSTER].last_acked_version.as_deref(),
        Some(r.system_version_info.as_str())
    );
    let good = c.handle_snapshot(set(&cache, vec![mk_cluster("a", 1)]));
    assert_eq!(upserted(&good[0]), ["a"]);
}

#[test]
fn stale_nonces_do_not_ack_but_subscriptions_still_apply() {
    let cache = mk_cache();
    let mut c = conn();
    c.handle_snapshot(set(&cache, vec![mk_cla("a", 1), mk_cla("b", 1)]));
    let first = c
        .handle_request(delta_req(ENDPOINT, &["a"], &[], ""))
        .expect("ok")
        .remove(0);
    let second = c
        .handle_snapshot(set(&cache, vec![mk_cla("a", 2), mk_cla("b", 1)]))
        .remove(0);
    let r = c
        .handle_request(delta_req(ENDPOINT, &["b"], &[], &first.nonce))
        .expect("ok");
    assert_eq!(upserted(&r[0]), ["b"], "subscription change applied");
    let status = c.handle().status();
    assert_eq!(
        status.types[ENDPOINT].last_acked_version, None,
        "stale ACK ignored"
    );
    assert_ne!(second.nonce, r[0].nonce);
}

#[test]
fn named_subscribe_and_unsubscribe() {
    let cache = mk_cache();
    let mut c = conn();
    c.handle_snapshot(set(&cache, vec![mk_route("a", "a"), mk_route("b", "b")]));
    let r = c
        .handle_request(delta_req(ROUTE, &["a"], &[], ""))
        .expect("ok")
        .remove(0);
    assert_eq!(upserted(&r), ["a"]);
    let r = c
        .handle_request(delta_req(ROUTE, &["b"], &[], &r.nonce))
        .expect("ok")
        .remove(0);
    assert_eq!(upserted(&r), ["b"], "only the new name");
    assert!(
        c.handle_request(delta_req(ROUTE, &[], &["a"], &r.nonce))
            .expect("ok")
            .is_empty()
    );
    assert!(
        c.handle_snapshot(set(&cache, vec![mk_route("a", "x"), mk_route("b", "b")]))
            .is_empty(),
        "a is unsubscribed"
    );
    let r = c.handle_snapshot(set(&cache, vec![mk_route("a", "x")]));
    assert_eq!(r[0].removed_resources, ["b"]);
    assert!(r[0].resources.is_empty());
    // Re-subscribing to a resource sends it again.
    let r = c
        .handle_request(delta_req(ROUTE, &["a"], &[], &r[0].nonce))
        .expect("ok");
    assert_eq!(upserted(&r[0]), ["a"]);
}

#[test]
fn initial_resource_versions_avoid_resending_what_envoy_has() {
    let cache = mk_cache();
    let snap = set(
        &cache,
        vec![mk_cluster("same", 0), mk_cluster("changed", 0)],
    );
    let snap2 = set(
        &cache,
        vec![mk_cluster("same", 0), mk_cluster("changed", 1)],
    );
    let mut c = conn();
    c.handle_snapshot(snap2.clone());
    let mut request = delta_req(CLUSTER, &[], &[], "");
    request.initial_resource_versions = [
        (
            "same",
            snap.get(CLUSTER, "same").expect("same").version.to_string(),
        ),
        (
            "changed",
            snap.get(CLUSTER, "changed")
                .expect("changed")
                .version
                .to_string(),
        ),
        ("gone", snap.version().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let r = c.handle_request(request).expect("ok").remove(0);
    assert_eq!(upserted(&r), ["changed"]);
    assert_eq!(r.removed_resources, ["gone"]);

    // A client that has everything gets nothing.
    let mut c = conn();
    c.handle_snapshot(snap2.clone());
    let mut request = delta_req(CLUSTER, &[], &[], "");
    request.initial_resource_versions = snap2
        .resources(CLUSTER)
        .expect("cds")
        .resources()
        .iter()
        .map(|(k, v)| (k.clone(), v.version.to_string()))
        .collect();
    assert!(c.handle_request(request).expect("ok").is_empty());
}

#[test]
fn warming_order_and_make_before_break() {
    let cache = mk_cache();
    let mut c = conn();
    c.handle_snapshot(set(
        &cache,
        vec![
            mk_cluster("old", 0),
            mk_cla("old", 1),
            mk_listener("l", "old"),
            mk_route("r", "old"),
        ],
    ));
    for (t, names) in [
        (ROUTE, &["r"][..]),
        (LISTENER, &[]),
        (ENDPOINT, &["old", "new"]),
        (CLUSTER, &[]),
    ] {
        let r = c.handle_request(delta_req(t, names, &[], "")).expect("ok");
        ack(&mut c, &r[0]);
    }
    let r = c.handle_snapshot(set(
        &cache,
        vec![
            mk_cluster("new", 0),
            mk_cla("new", 1),
            mk_listener("l", "new"),
            mk_route("r", "new"),
        ],
    ));
    assert_eq!(types_of(&r), ["cds", "eds", "lds", "rds", "eds", "cds"]);
    assert_eq!(upserted(&r[0]), ["new"]);
    assert!(r[0].removed_resources.is_empty(), "removal deferred");
    assert_eq!(r[4].removed_resources, ["old"]);
    assert_eq!(r[5].removed_resources, ["old"]);
    for response in &r {
        c.handle_request(delta_req(&response.type_url, &[], &[], &response.nonce))
            .expect("ok");
    }
    assert_eq!(
        c.handle().status().sync.acked,
        Some(cache.get(GW).expect("s").version())
    );
}

#[test]
fn legacy_wildcard_types_only() {
    let cache = mk_cache();
    let mut c = conn();
    c.handle_snapshot(set(&cache, vec![mk_cla("a", 1)]));
    assert!(
        c.handle_request(delta_req(ENDPOINT, &[], &[], ""))
            .expect("ok")
            .is_empty(),
        "empty EDS subscribes nothing"
    );
    let r = c
        .handle_request(delta_req(ENDPOINT, &["*"], &[], ""))
        .expect("ok");
    assert_eq!(upserted(&r[0]), ["a"], "explicit * works for any type");
}
