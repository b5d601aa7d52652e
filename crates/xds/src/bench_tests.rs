//! Rough figures, not assertions: `cargo test --release -p wayguard-xds -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use envoy_types::util::pack_any;

use crate::{
    Metrics, Mode, Resource, SotwConnection,
    canonical::tests::{mk_hcm_listener, mk_jwt, mk_rbac},
    test_util::*,
    type_url::*,
};

fn per_op(total: Duration, n: u32) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / f64::from(n))
}

#[test]
#[ignore = "benchmark: prints figures"]
fn bench_figures() {
    // Normalizing a listener with 50 JWT providers (nested Any with a map).
    let n = 200;
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        let r = Resource::from(mk_hcm_listener(mk_jwt(50), false));
        bytes = r.encoded_len();
    }
    println!(
        "Resource::new, listener + 50 JWT providers ({bytes} B): {}",
        per_op(start.elapsed(), n)
    );

    let n = 20;
    let (mut build, mut new) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        let any = pack_any(mk_rbac(1000, false));
        build += t.elapsed();
        let t = Instant::now();
        let r = Resource::new("rbac", any);
        new += t.elapsed();
        bytes = r.encoded_len();
    }
    println!(
        "Any(RBAC 1000 policies) ({bytes} B): build+encode {}, Resource::new {}",
        per_op(build, n),
        per_op(new, n)
    );

    // A no-op set of 1000 clusters + 1000 CLAs (typed diff).
    let cache = mk_cache();
    let build = || {
        (0..1000)
            .flat_map(|i| [mk_cluster(&format!("c{i}"), 0), mk_cla(&format!("c{i}"), 1)])
            .collect::<Vec<_>>()
    };
    cache.set(GW, build()).expect("set");
    let n = 20;
    let mut build_time = Duration::ZERO;
    let mut set_time = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        let resources = build();
        build_time += t.elapsed();
        let t = Instant::now();
        assert!(!cache.set(GW, resources).expect("set").changed);
        set_time += t.elapsed();
    }
    println!(
        "no-op set of 2000 resources: build {} + diff {}",
        per_op(build_time, n),
        per_op(set_time, n)
    );

    // State machine: one changed listener among 1000 clusters, per connection.
    let mut listeners: Vec<Resource> = build();
    listeners.push(mk_listener("l", "0"));
    cache.set(GW, listeners).expect("set");
    let mut c = SotwConnection::new(mk_handle(Mode::Sotw), Metrics::default());
    c.handle_snapshot(cache.get(GW).expect("s"));
    for t in [CLUSTER, LISTENER] {
        let r = c.handle_request(sotw_req(t, &[], "", "")).expect("ok");
        c.handle_request(sotw_req(t, &[], &r[0].version_info, &r[0].nonce))
            .expect("ok");
    }
    let n = 1000u32;
    let mut snapshots = Vec::new();
    for i in 0..n {
        let mut resources = build();
        resources.push(mk_listener("l", &format!("{}", i + 1)));
        cache.set(GW, resources).expect("set");
        snapshots.push(cache.get(GW).expect("s"));
    }
    let start = Instant::now();
    for snapshot in &snapshots {
        let r = c.handle_snapshot(snapshot.clone());
        assert_eq!(r.len(), 1);
    }
    println!(
        "SotwConnection::handle_snapshot, 1 changed listener of 1001 resources: {} per connection",
        per_op(start.elapsed(), n)
    );
}
