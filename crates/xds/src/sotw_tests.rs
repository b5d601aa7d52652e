use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;

use super::*;
use crate::{Mode, SnapshotCache, test_util::*, type_url::*};

fn conn() -> SotwConnection {
    SotwConnection::new(mk_handle(Mode::Sotw), Metrics::default())
}

fn names_of(response: &DiscoveryResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .map(|any| {
            let decoded = |n: &str| n.to_owned();
            match any.type_url.as_str() {
                LISTENER => decoded(&<envoy_types::pb::envoy::config::listener::v3::Listener as prost::Message>::decode(any.value.as_slice()).expect("lds").name),
                CLUSTER => decoded(&<envoy_types::pb::envoy::config::cluster::v3::Cluster as prost::Message>::decode(any.value.as_slice()).expect("cds").name),
                ROUTE => decoded(&<envoy_types::pb::envoy::config::route::v3::RouteConfiguration as prost::Message>::decode(any.value.as_slice()).expect("rds").name),
                ENDPOINT => decoded(&<envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment as prost::Message>::decode(any.value.as_slice()).expect("eds").cluster_name),
                other => panic!("unexpected {other}"),
            }
        })
        .collect()
}

fn types_of(responses: &[DiscoveryResponse]) -> Vec<&str> {
    responses.iter().map(|r| short_name(&r.type_url)).collect()
}

/// A connection subscribed to wildcard LDS with the initial response ACKed.
fn acked_lds(cache: &SnapshotCache) -> (SotwConnection, DiscoveryResponse) {
    let mut c = conn();
    c.handle_snapshot(cache.get(GW).expect("snapshot"));
    let r = c
        .handle_request(sotw_req(LISTENER, &[], "", ""))
        .expect("ok")
        .remove(0);
    assert!(
        c.handle_request(sotw_req(LISTENER, &[], &r.version_info, &r.nonce))
            .expect("ok")
            .is_empty()
    );
    (c, r)
}

#[test]
fn initial_wildcard_request_gets_every_listener() {
    let cache = mk_cache();
    let snap = set(&cache, vec![mk_listener("a", "a"), mk_listener("b", "b")]);
    let mut c = conn();
    assert!(
        c.handle_snapshot(snap.clone()).is_empty(),
        "nothing subscribed yet"
    );
    let responses = c
        .handle_request(sotw_req(LISTENER, &[], "", ""))
        .expect("ok");
    assert_eq!(responses.len(), 1);
    assert_eq!(names_of(&responses[0]), ["a", "b"]);
    assert_eq!(
        responses[0].version_info,
        snap.type_version(LISTENER).to_string()
    );
    assert!(!responses[0].nonce.is_empty());
}

#[test]
fn requests_before_the_first_snapshot_are_answered_when_it_arrives() {
    let cache = mk_cache();
    let mut c = conn();
    assert!(
        c.handle_request(sotw_req(CLUSTER, &[], "", ""))
            .expect("ok")
            .is_empty()
    );
    assert!(
        c.handle_request(sotw_req(LISTENER, &[], "", ""))
            .expect("ok")
            .is_empty()
    );
    let responses = c.handle_snapshot(set(&cache, vec![]));
    assert_eq!(
        types_of(&responses),
        ["cds", "lds"],
        "empty but owed responses, in warming order"
    );
    assert!(responses.iter().all(|r| r.resources.is_empty()));
}

#[test]
fn ack_records_the_version_and_sends_nothing() {
    let cache = mk_cache();
    set(&cache, vec![mk_listener("a", "a")]);
    let (c, r) = acked_lds(&cache);
    let status = c.handle().status();
    let lds = &status.types[LISTENER];
    assert_eq!(
        lds.last_acked_version.as_deref(),
        Some(r.version_info.as_str())
    );
    assert_eq!(lds.last_sent_nonce.as_deref(), Some(r.nonce.as_str()));
    assert_eq!(status.sync.acked, Some(cache.get(GW).expect("s").version()));
}

#[test]
fn nack_keeps_the_error_and_a_later_good_snapshot_still_goes_out() {
    let cache = mk_cache();
    set(&cache, vec![mk_listener("a", "a")]);
    let (mut c, good) = acked_lds(&cache);
    let bad = c
        .handle_snapshot(set(&cache, vec![mk_listener("a", "bad")]))
        .remove(0);
    let nack = sotw_nack(
        LISTENER,
        &[],
        &good.version_info,
        &bad.nonce,
        "invalid stat prefix",
    );
    assert!(
        c.handle_request(nack).expect("ok").is_empty(),
        "a NACK is not answered with a resend"
    );
    let status = c.handle().status();
    let lds = &status.types[LISTENER];
    let recorded = lds.last_nack.as_ref().expect("nack recorded");
    assert_eq!(recorded.message, "invalid stat prefix");
    assert_eq!(recorded.version, bad.version_info);
    assert_eq!(
        lds.last_acked_version.as_deref(),
        Some(good.version_info.as_str())
    );
    assert_eq!(
        status.sync.nacked,
        Some(cache.get(GW).expect("s").version())
    );

    let fixed = c.handle_snapshot(set(&cache, vec![mk_listener("a", "fixed")]));
    assert_eq!(
        fixed.len(),
        1,
        "the NACKed version does not block the next one"
    );
    assert_ne!(fixed[0].version_info, bad.version_info);
    c.handle_request(sotw_req(
        LISTENER,
        &[],
        &fixed[0].version_info,
        &fixed[0].nonce,
    ))
    .expect("ok");
    let status = c.handle().status();
    assert_eq!(
        status.types[LISTENER]
            .last_nack
            .as_ref()
            .map(|n| n.message.as_str()),
        Some("invalid stat prefix")
    );
    assert_eq!(status.sync.acked, Some(cache.get(GW).expect("s").version()));
}

#[test]
fn stale_nonces_are_ignored() {
    let cache = mk_cache();
    set(&cache, vec![mk_route("r1", "one"), mk_route("r2", "two")]);
    let mut c = conn();
    c.handle_snapshot(cache.get(GW).expect("s"));
    let first = c
        .handle_request(sotw_req(ROUTE, &["r1"], "", ""))
        .expect("ok")
        .remove(0);
    let second = c
        .handle_snapshot(set(
            &cache,
            vec![mk_route("r1", "uno"), mk_route("r2", "two")],
        ))
        .remove(0);
    // An answer to the first response, adding r2: stale, so neither the ACK nor the names count.
    let stale = sotw_req(ROUTE, &["r1", "r2"], &first.version_info, &first.nonce);
    assert!(c.handle_request(stale).expect("ok").is_empty());
    let status = c.handle().status();
    assert_eq!(status.types[ROUTE].names, ["r1"]);
    assert_eq!(status.types[ROUTE].last_acked_version, None);
    // The current one counts.
    let current = c
        .handle_request(sotw_req(
            ROUTE,
            &["r1", "r2"],
            &second.version_info,
            &second.nonce,
        ))
        .expect("ok");
    assert_eq!(names_of(&current[0]), ["r1", "r2"]);
}

#[test]
fn named_subscriptions_follow_the_requested_names() {
    let cache = mk_cache();
    set(&cache, vec![mk_cla("a", 1), mk_cla("b", 1)]);
    let mut c = conn();
    c.handle_snapshot(cache.get(GW).expect("s"));
    struct Step {
        what: &'static str,
        names: &'static [&'static str],
        expect: Option<&'static [&'static str]>,
    }
    let steps = [
        Step {
            what: "subscribe a",
            names: &["a"],
            expect: Some(&["a"]),
        },
        Step {
            what: "add b: full set",
            names: &["a", "b"],
            expect: Some(&["a", "b"]),
        },
        Step {
            what: "drop a: nothing to send",
            names: &["b"],
            expect: None,
        },
        Step {
            what: "same names: ACK only",
            names: &["b"],
            expect: None,
        },
        Step {
            what: "missing name: answered, without it",
            names: &["b", "zz"],
            expect: Some(&["b"]),
        },
    ];
    let (mut version, mut nonce) = (String::new(), String::new());
    for step in steps {
        let responses = c
            .handle_request(sotw_req(ENDPOINT, step.names, &version, &nonce))
            .expect("ok");
        match step.expect {
            Some(expected) => {
                assert_eq!(responses.len(), 1, "{}", step.what);
                assert_eq!(names_of(&responses[0]), expected, "{}", step.what);
                version = responses[0].version_info.clone();
                nonce = responses[0].nonce.clone();
            }
            None => assert!(responses.is_empty(), "{}", step.what),
        }
    }
    // Only the changed, subscribed resource goes out; a change to unsubscribed `a` sends nothing.
    let r = c.handle_snapshot(set(&cache, vec![mk_cla("a", 1), mk_cla("b", 2)]));
    assert_eq!(names_of(&r[0]), ["b"]);
    assert!(
        c.handle_snapshot(set(&cache, vec![mk_cla("a", 5), mk_cla("b", 2)]))
            .is_empty()
    );
    // `zz` appearing is a change as seen by this client.
    let r = c.handle_snapshot(set(
        &cache,
        vec![mk_cla("a", 5), mk_cla("b", 2), mk_cla("zz", 1)],
    ));
    assert_eq!(names_of(&r[0]), ["zz"]);
}

#[test]
fn wildcard_removal_is_by_omission() {
    let cache = mk_cache();
    let mut c = conn();
    c.handle_snapshot(set(&cache, vec![mk_cluster("a", 0), mk_cluster("b", 0)]));
    let r = c
        .handle_request(sotw_req(CLUSTER, &[], "", ""))
        .expect("ok");
    assert_eq!(names_of(&r[0]), ["a", "b"]);
    let r = c.handle_snapshot(set(&cache, vec![mk_cluster("a", 0)]));
    assert_eq!(names_of(&r[0]), ["a"]);
    assert_eq!(c.handle().status().types[CLUSTER].resources, 1);
}

#[test]
fn no_response_when_nothing_the_client_sees_changed() {
    let cache = mk_cache();
    set(&cache, vec![mk_listener("l", "l"), mk_cla("a", 1)]);
    let (mut c, _) = acked_lds(&cache);
    // EDS and a brand new type change; the client subscribes to neither.
    assert!(
        c.handle_snapshot(set(
            &cache,
            vec![mk_listener("l", "l"), mk_cla("a", 2), mk_cluster("c", 0)]
        ))
        .is_empty()
    );
    // The same snapshot twice.
    assert!(c.handle_snapshot(cache.get(GW).expect("s")).is_empty());
    assert_eq!(
        c.handle().status().sync.acked,
        Some(cache.get(GW).expect("s").version())
    );
}

#[test]
fn several_types_go_out_in_warming_order() {
    let cache = mk_cache();
    let mut c = conn();
    c.handle_snapshot(set(
        &cache,
        vec![
            mk_cluster("c", 0),
            mk_cla("c", 1),
            mk_listener("l", "l"),
            mk_route("r", "h"),
        ],
    ));
    for (t, names) in [
        (ROUTE, &["r"][..]),
        (LISTENER, &[]),
        (ENDPOINT, &["c"]),
        (CLUSTER, &[]),
    ] {
        let r = c.handle_request(sotw_req(t, names, "", "")).expect("ok");
        c.handle_request(sotw_req(t, names, &r[0].version_info, &r[0].nonce))
            .expect("ok");
    }
    let r = c.handle_snapshot(set(
        &cache,
        vec![
            mk_cluster("c", 1),
            mk_cla("c", 2),
            mk_listener("l", "m"),
            mk_route("r", "i"),
        ],
    ));
    assert_eq!(types_of(&r), ["cds", "eds", "lds", "rds"]);
}

#[test]
fn removed_clusters_stay_until_listeners_moved_off_them() {
    let cache = mk_cache();
    let mut c = conn();
    c.handle_snapshot(set(
        &cache,
        vec![mk_cluster("old", 0), mk_listener("l", "old")],
    ));
    for t in [LISTENER, CLUSTER] {
        let r = c.handle_request(sotw_req(t, &[], "", "")).expect("ok");
        c.handle_request(sotw_req(t, &[], &r[0].version_info, &r[0].nonce))
            .expect("ok");
    }
    let r = c.handle_snapshot(set(
        &cache,
        vec![mk_cluster("new", 0), mk_listener("l", "new")],
    ));
    assert_eq!(types_of(&r), ["cds", "lds", "cds"]);
    assert_eq!(names_of(&r[0]), ["new", "old"], "make before break");
    assert!(r[0].version_info.ends_with(WARMING_SUFFIX));
    assert_eq!(names_of(&r[2]), ["new"]);
    // The ACK of the superseded warming response is stale; the final one completes the sync.
    c.handle_request(sotw_req(CLUSTER, &[], &r[0].version_info, &r[0].nonce))
        .expect("ok");
    c.handle_request(sotw_req(LISTENER, &[], &r[1].version_info, &r[1].nonce))
        .expect("ok");
    assert_ne!(
        c.handle().status().sync.acked,
        Some(cache.get(GW).expect("s").version())
    );
    c.handle_request(sotw_req(CLUSTER, &[], &r[2].version_info, &r[2].nonce))
        .expect("ok");
    assert_eq!(
        c.handle().status().sync.acked,
        Some(cache.get(GW).expect("s").version())
    );
}

#[test]
fn a_reconnecting_wildcard_client_that_is_up_to_date_gets_nothing() {
    let cache = mk_cache();
    let snap = set(&cache, vec![mk_cluster("a", 0)]);
    let mut c = conn();
    c.handle_snapshot(snap.clone());
    let version = snap.type_version(CLUSTER).to_string();
    assert!(
        c.handle_request(sotw_req(CLUSTER, &[], &version, ""))
            .expect("ok")
            .is_empty()
    );
    // ...but an outdated one gets the current state.
    let mut c = conn();
    c.handle_snapshot(snap);
    assert_eq!(
        c.handle_request(sotw_req(CLUSTER, &[], "0000000000000001.0", ""))
            .expect("ok")
            .len(),
        1
    );
}

#[test]
fn requests_without_a_type_are_errors() {
    let mut c = conn();
    assert!(matches!(
        c.handle_request(sotw_req("", &[], "", "")),
        Err(ConnectionError::MissingTypeUrl)
    ));
}
