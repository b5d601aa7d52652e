//! Login (AuthConfig over ext_authz): the ext_authz filter first in the chain, the per-route
//! settings that name the AuthConfig (or skip the call), the routes that make the callback,
//! logout and back-channel logout paths exist, and the cluster to wayguard's ext_authz
//! (ARCHITECTURE.md "Envoy-facing contract", AUTH-FLOWS.md 4.4).
//!
//! - One filter for every AuthConfig of the gateway; per route, `check_settings.context_extensions`
//!   carries `wayguard.io/authconfig: <ns>/<name>`; routes without a login policy disable it.
//! - `failure_mode_allow: false` and `status_on_error: 503`: an unreachable ext_authz never lets
//!   a request through, and says so with a retryable status.
//! - Timeout 15 s: one Check may redeem a code or refresh tokens at the IdP (the engine bounds
//!   those calls at 10 s and answers 503 itself first). Products that default to 200 ms fail
//!   logins whenever the IdP is a little slow.
//! - The login paths are exact-match routes placed before the application's routes in every
//!   virtual host where the AuthConfig applies; ext_authz always answers them, so their action (a
//!   404) is never reached. Only the back-channel route sends the request body (the logout token).

use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::envoy::config::core::v3::{ApiVersion, GrpcService, grpc_service};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route as EnvoyRoute, RouteMatch as EnvoyRouteMatch, route, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    BufferSettings, CheckSettings, ExtAuthz, ExtAuthzPerRoute, ext_authz, ext_authz_per_route,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use wayguard_core::login::{AUTH_CONFIG_KEY, ExtAuthTarget, GatewayLogin};
use wayguard_core::routing::{Cluster, RouteConfig};

use crate::any::to_any;

/// The login ext_authz filter's name (per-route settings are keyed by it).
pub const FILTER: &str = "wayguard.login";
/// The cluster of wayguard's own ext_authz (`--extauth-upstream`, or none).
pub const CLUSTER: &str = "wayguard-extauth";
/// Per-Check timeout.
const TIMEOUT_SECONDS: i64 = 15;
/// Largest back-channel logout body sent to ext_authz (a logout token is a few KiB).
const BACK_CHANNEL_BODY_BYTES: u32 = 64 * 1024;

/// The name of the ext_authz cluster.
pub fn cluster_name(login: &GatewayLogin) -> String {
    match &login.target {
        ExtAuthTarget::Service(c) => c.clone(),
        ExtAuthTarget::Address(..) | ExtAuthTarget::Unresolved => CLUSTER.to_string(),
    }
}

/// The ext_authz filter, when any route of the gateway logs in.
pub fn filter(login: &GatewayLogin) -> Option<HttpFilter> {
    if login.is_empty() {
        return None;
    }
    let config = ExtAuthz {
        services: Some(ext_authz::Services::GrpcService(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: cluster_name(login),
                    ..Default::default()
                },
            )),
            timeout: Some(PbDuration {
                seconds: TIMEOUT_SECONDS,
                nanos: 0,
            }),
            ..Default::default()
        })),
        transport_api_version: ApiVersion::V3 as i32,
        failure_mode_allow: false,
        status_on_error: Some(HttpStatus {
            code: StatusCode::ServiceUnavailable as i32,
        }),
        ..Default::default()
    };
    Some(HttpFilter {
        name: FILTER.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&config))),
        ..Default::default()
    })
}

/// The cluster wayguard defines for its own ext_authz (none for a Service backendRef, whose
/// cluster the gateway already has). Unresolved: a cluster without endpoints, so the filter
/// loads and every Check fails closed with 503.
pub fn cluster(login: &GatewayLogin) -> Option<Cluster> {
    if login.is_empty() {
        return None;
    }
    match &login.target {
        ExtAuthTarget::Service(_) => None,
        ExtAuthTarget::Address(host, port) => Some(Cluster {
            name: CLUSTER.to_string(),
            endpoints: vec![(host.clone(), *port)],
            http2: true,
            dns: host.parse::<std::net::IpAddr>().is_err(),
        }),
        ExtAuthTarget::Unresolved => Some(Cluster {
            name: CLUSTER.to_string(),
            endpoints: Vec::new(),
            http2: true,
            dns: false,
        }),
    }
}

fn per_route(settings: ext_authz_per_route::Override) -> HashMap<String, Any> {
    HashMap::from([(
        FILTER.to_string(),
        to_any(&ExtAuthzPerRoute {
            r#override: Some(settings),
        }),
    )])
}

fn check(id: &str, body: bool) -> HashMap<String, Any> {
    per_route(ext_authz_per_route::Override::CheckSettings(
        CheckSettings {
            context_extensions: HashMap::from([(AUTH_CONFIG_KEY.to_string(), id.to_string())]),
            with_request_body: body.then_some(BufferSettings {
                max_request_bytes: BACK_CHANNEL_BODY_BYTES,
                allow_partial_message: false,
                pack_as_bytes: false,
            }),
            ..Default::default()
        },
    ))
}

/// The HTTPRoute (`ns/name`) a route was made from (`<ns>/<route>/rule/<i>/match/<j>`).
fn http_route_of(route_name: &str) -> Option<&str> {
    route_name.split_once("/rule/").map(|(r, _)| r)
}

/// Adds the login settings to the Envoy routes of `rc` (translated one to one from
/// `rc`'s routes, in order) and prepends the login paths of each AuthConfig that applies.
pub fn apply(login: &GatewayLogin, rc: &RouteConfig, hosts: &mut [Vec<EnvoyRoute>]) {
    if login.is_empty() {
        return;
    }
    for (vh, routes) in rc.virtual_hosts.iter().zip(hosts.iter_mut()) {
        let mut used: BTreeMap<&str, ()> = BTreeMap::new();
        for (r, envoy) in vh.routes.iter().zip(routes.iter_mut()) {
            match login.for_route(&rc.name, http_route_of(&r.name)) {
                Some(id) => {
                    used.insert(id, ());
                    envoy.typed_per_filter_config = check(id, false);
                }
                None => {
                    envoy.typed_per_filter_config =
                        per_route(ext_authz_per_route::Override::Disabled(true));
                }
            }
        }
        if vh.routes.is_empty()
            && let Some(id) = login.for_route(&rc.name, None)
        {
            used.insert(id, ());
        }
        let mut taken: Vec<String> = Vec::new();
        let mut synthesized = Vec::new();
        for id in used.keys() {
            let Some(paths) = login.paths.get(*id) else {
                continue;
            };
            let mut add = |path: &str, body: bool, what: &str| {
                if taken.iter().any(|p| p == path) {
                    return;
                }
                taken.push(path.to_string());
                synthesized.push(EnvoyRoute {
                    name: format!("{id}/login/{what}"),
                    r#match: Some(EnvoyRouteMatch {
                        path_specifier: Some(route_match::PathSpecifier::Path(path.to_string())),
                        ..Default::default()
                    }),
                    action: Some(route::Action::DirectResponse(DirectResponseAction {
                        status: 404,
                        ..Default::default()
                    })),
                    typed_per_filter_config: check(id, body),
                    ..Default::default()
                });
            };
            add(&paths.callback, false, "callback");
            if let Some(p) = &paths.logout {
                add(p, false, "logout");
            }
            if let Some(p) = &paths.back_channel_logout {
                add(p, true, "backchannel-logout");
            }
        }
        if !synthesized.is_empty() {
            synthesized.append(routes);
            *routes = synthesized;
        }
    }
}
