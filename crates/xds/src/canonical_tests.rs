use envoy_types::pb::envoy::{
    config::listener::v3::{Filter, FilterChain, Listener, filter::ConfigType as FilterConfig},
    config::rbac::v3::{Permission, Policy, Principal, Rbac as RbacRules, permission, principal},
    extensions::filters::{
        http::{
            jwt_authn::v3::{JwtAuthentication, JwtClaimToHeader, JwtProvider},
            rbac::v3::Rbac,
            router::v3::Router,
        },
        network::http_connection_manager::v3::{
            HttpConnectionManager, HttpFilter, http_filter::ConfigType,
        },
    },
};
use envoy_types::util::pack_any;

use super::*;
use crate::Resource;

/// A JwtAuthentication with `n` providers in a fresh HashMap (random iteration order).
pub(crate) fn mk_jwt(n: usize) -> JwtAuthentication {
    JwtAuthentication {
        providers: (0..n)
            .map(|i| {
                (
                    format!("provider-{i}"),
                    JwtProvider {
                        issuer: format!("https://issuer-{i}.example"),
                        audiences: vec!["a".into(), "b".into()],
                        claim_to_headers: vec![
                            JwtClaimToHeader {
                                header_name: "x-z".into(),
                                claim_name: "z".into(),
                                ..Default::default()
                            },
                            JwtClaimToHeader {
                                header_name: "x-a".into(),
                                claim_name: "a".into(),
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    },
                )
            })
            .collect(),
        ..Default::default()
    }
}

pub(crate) fn mk_hcm_listener(jwt: JwtAuthentication, filters_reversed: bool) -> Listener {
    let mut http_filters = vec![
        HttpFilter {
            name: "envoy.filters.http.jwt_authn".into(),
            config_type: Some(ConfigType::TypedConfig(pack_any(jwt))),
            ..Default::default()
        },
        HttpFilter {
            name: "envoy.filters.http.rbac".into(),
            config_type: Some(ConfigType::TypedConfig(pack_any(Rbac::default()))),
            ..Default::default()
        },
    ];
    if filters_reversed {
        http_filters.reverse();
    }
    http_filters.push(HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(ConfigType::TypedConfig(pack_any(Router::default()))),
        ..Default::default()
    });
    let hcm = HttpConnectionManager {
        stat_prefix: "http".into(),
        http_filters,
        ..Default::default()
    };
    Listener {
        name: "http".into(),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(FilterConfig::TypedConfig(pack_any(hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// An RBAC filter config: the `policies` map sits two levels deep in the Any payload.
pub(crate) fn mk_rbac(policies: usize, reversed_permissions: bool) -> Rbac {
    let mut permissions = vec![
        Permission {
            rule: Some(permission::Rule::DestinationPort(443)),
        },
        Permission {
            rule: Some(permission::Rule::Any(true)),
        },
    ];
    if reversed_permissions {
        permissions.reverse();
    }
    Rbac {
        rules: Some(RbacRules {
            policies: (0..policies)
                .map(|i| {
                    (
                        format!("ns-{i}.policy-{i}"),
                        Policy {
                            permissions: permissions.clone(),
                            principals: vec![Principal {
                                identifier: Some(principal::Identifier::Any(true)),
                            }],
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn nested_maps_deep_inside_any_payloads_are_canonical() {
    for _ in 0..10 {
        let a = Resource::new("rbac", pack_any(mk_rbac(20, false)));
        let b = Resource::new("rbac", pack_any(mk_rbac(20, false)));
        assert_eq!(a, b);
    }
    let a = Resource::new("rbac", pack_any(mk_rbac(20, false)));
    let b = Resource::new("rbac", pack_any(mk_rbac(20, true)));
    assert_ne!(a, b, "permission order is significant");
    let decoded = <Rbac as prost::Message>::decode(
        a.downcast_ref::<envoy_types::pb::google::protobuf::Any>()
            .expect("any")
            .value
            .as_slice(),
    )
    .expect("rbac");
    assert_eq!(decoded, mk_rbac(20, false));
}

#[test]
fn raw_listeners_with_equal_jwt_configs_usually_differ() {
    // The problem being solved: plain `==` on the Listener compares nested Any bytes.
    let differing = (0..20)
        .filter(|_| mk_hcm_listener(mk_jwt(8), false) != mk_hcm_listener(mk_jwt(8), false))
        .count();
    assert!(
        differing > 0,
        "expected prost to encode HashMaps in varying order"
    );
}

#[test]
fn equal_nested_configs_normalize_equal() {
    for _ in 0..20 {
        let a = Resource::from(mk_hcm_listener(mk_jwt(8), false));
        let b = Resource::from(mk_hcm_listener(mk_jwt(8), false));
        assert_eq!(a, b);
        assert_eq!(a.as_any(), b.as_any(), "canonical bytes are identical too");
    }
}

#[test]
fn order_significant_repeated_fields_are_kept() {
    let a = Resource::from(mk_hcm_listener(mk_jwt(3), false));
    let b = Resource::from(mk_hcm_listener(mk_jwt(3), true));
    assert_ne!(a, b, "http filter order matters");

    // claim_to_headers (map-entry shaped, but repeated) keeps its order inside the payload.
    let listener = a.downcast_ref::<Listener>().expect("listener");
    let Some(FilterConfig::TypedConfig(any)) = &listener.filter_chains[0].filters[0].config_type
    else {
        panic!("no hcm");
    };
    let hcm = <HttpConnectionManager as prost::Message>::decode(any.value.as_slice()).expect("hcm");
    let Some(ConfigType::TypedConfig(any)) = &hcm.http_filters[0].config_type else {
        panic!("no jwt");
    };
    let jwt = <JwtAuthentication as prost::Message>::decode(any.value.as_slice()).expect("jwt");
    assert_eq!(jwt, mk_jwt(3), "content survives normalization");
    assert_eq!(
        jwt.providers["provider-0"].claim_to_headers[0].claim_name,
        "z"
    );
}

#[test]
fn different_content_stays_different() {
    let mut changed = mk_jwt(4);
    if let Some(p) = changed.providers.get_mut("provider-2") {
        p.issuer = "https://other.example".into();
    }
    let a = Resource::from(mk_hcm_listener(mk_jwt(4), false));
    let b = Resource::from(mk_hcm_listener(changed, false));
    assert_ne!(a, b);
}

#[test]
fn malformed_and_plain_bytes_pass_through() {
    assert!(parse(&[0xff], 0).is_none());
    let fields = parse(b"\x08\x96\x01", 0).expect("varint field");
    assert_eq!(write(&fields), b"\x08\x96\x01");
}
