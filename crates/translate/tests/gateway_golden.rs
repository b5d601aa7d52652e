//! Golden of a gateway's complete Envoy resources (LDS, RDS, CDS, EDS, SDS, ECDS) for the
//! gateway `foo/waypoint` of the common harness plus the objects in tests/gateway/*.yaml.

mod common;

use wayguard_core::GatewayId;
use wayguard_translate::AuthContext;
use wayguard_translate::gateway::gateway_resources;
use wayguard_translate::json::to_json;

fn render(text: &str) -> serde_json::Value {
    let index = common::load(text);
    let config = index
        .gateway_config(&GatewayId::new("foo", "waypoint"))
        .expect("gateway");
    let ctx = AuthContext {
        jwks: &common::jwks,
        providers: &config.providers,
        clear_route_cache: true,
    };
    let r = gateway_resources(&config, &ctx);
    let all = |v: Vec<serde_json::Value>| serde_json::Value::Array(v);
    serde_json::json!({
        "listeners": all(r.listeners.iter().map(|x| to_json(x).expect("json")).collect()),
        "routes": all(r.routes.iter().map(|x| to_json(x).expect("json")).collect()),
        "clusters": all(r.clusters.iter().map(|x| to_json(x).expect("json")).collect()),
        "endpoints": all(r.endpoints.iter().map(|x| to_json(x).expect("json")).collect()),
        "extensionConfigs": all(r.extension_configs.iter().map(|x| to_json(x).expect("json")).collect()),
        "problems": config.problems.iter().map(|p| format!("{}: {}", p.object, p.message)).collect::<Vec<_>>(),
    })
}

#[test]
fn gateway_resources_golden() {
    let fixtures = common::fixtures("tests/gateway");
    assert!(!fixtures.is_empty());
    for (name, text) in fixtures {
        insta::with_settings!({ sort_maps => true, description => text.lines().next().unwrap_or_default() }, {
            insta::assert_json_snapshot!(name, render(&text));
        });
    }
}
