//! Translation benchmark: time and heap allocations to translate 1, 100 and 10 000
//! AuthorizationPolicies (plus 4 JWT rules) attached to one gateway. Prints figures; never fails.
//! Run with `cargo xtask bench` (or `cargo bench -p wayguard-translate`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wayguard_core::authn::{DEFAULT_JWKS_TIMEOUT, JwksConfig, JwksSource, JwtRule};
use wayguard_core::authz::{Action, AuthzPolicy, Condition, Operation, Rule, Source};
use wayguard_core::gateway::GatewayAuth;
use wayguard_translate::{AuthContext, http_auth_filters};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn policy(i: usize) -> AuthzPolicy {
    AuthzPolicy {
        namespace: format!("ns{}", i % 50),
        name: format!("policy-{i}"),
        action: if i.is_multiple_of(10) {
            Action::Deny
        } else {
            Action::Allow
        },
        provider: None,
        dry_run: false,
        rules: vec![Rule {
            from: vec![Source {
                request_principals: vec![format!("https://issuer{}.example/*", i % 4)],
                principals: vec![format!("cluster.local/ns/ns{i}/sa/client")],
                ..Default::default()
            }],
            to: vec![Operation {
                methods: vec!["GET".into(), "POST".into()],
                paths: vec![format!("/api/v{i}/*"), "/static/{**}".into()],
                ..Default::default()
            }],
            when: vec![Condition {
                key: "request.auth.claims[groups]".into(),
                values: vec![format!("group-{i}"), "admins".into()],
                not_values: vec![],
            }],
        }],
    }
}

fn jwt_rule(i: usize) -> JwtRule {
    JwtRule {
        issuer: format!("https://issuer{i}.example"),
        audiences: vec!["api".into()],
        jwks: JwksSource::Uri(format!("https://issuer{i}.example/keys")),
        from_headers: vec![],
        from_params: vec![],
        from_cookies: vec![],
        forward_original_token: false,
        output_payload_to_header: None,
        output_claim_to_headers: vec![],
        timeout: DEFAULT_JWKS_TIMEOUT,
        space_delimited_claims: vec![],
        required: false,
    }
}

fn main() {
    let jwks: Arc<str> = Arc::from(r#"{"keys":[{"kty":"RSA","e":"AQAB","n":"x"}]}"#);
    let jwks_fn = move |_: &JwtRule| JwksConfig::Inline(jwks.clone());
    let providers = BTreeMap::new();
    let ctx = AuthContext {
        jwks: &jwks_fn,
        providers: &providers,
        clear_route_cache: true,
    };
    println!("translate: policies -> HTTP auth filters (4 JWT rules), release build");
    println!(
        "{:>8} {:>12} {:>14} {:>14} {:>10}",
        "policies", "time/iter", "allocs/iter", "bytes/iter", "iters"
    );
    for n in [1usize, 100, 10_000] {
        let auth = GatewayAuth {
            jwt_rules: (0..4).map(jwt_rule).collect(),
            policies: (0..n).map(policy).collect(),
            trust_domains: vec!["cluster.local".into()],
        };
        // Time without the allocation profiler (it slows allocation down): warm up, then run for
        // about a second (at least 3 iterations).
        black_box(http_auth_filters(&auth, &ctx));
        let mut iters = 0u64;
        let start = Instant::now();
        while iters < 3 || start.elapsed() < Duration::from_secs(1) {
            black_box(http_auth_filters(black_box(&auth), &ctx));
            iters += 1;
        }
        let elapsed = start.elapsed();
        // Count allocations of one more translation with the profiler on.
        let (allocs, bytes) = {
            let _profiler = dhat::Profiler::builder().testing().build();
            let before = dhat::HeapStats::get();
            black_box(http_auth_filters(black_box(&auth), &ctx));
            let after = dhat::HeapStats::get();
            (
                after.total_blocks - before.total_blocks,
                after.total_bytes - before.total_bytes,
            )
        };
        println!(
            "{n:>8} {:>12} {allocs:>14} {bytes:>14} {iters:>10}",
            format!("{:.3?}", elapsed / iters as u32)
        );
    }
}
