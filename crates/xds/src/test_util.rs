//! Builders shared by the unit tests.

use std::sync::Arc;

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::Cluster, core::v3::Node, endpoint::v3::ClusterLoadAssignment,
            listener::v3::Listener, route::v3::RouteConfiguration,
        },
        service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest},
    },
    google::{
        protobuf::{Struct, Value, value::Kind},
        rpc::Status as RpcStatus,
    },
};

use crate::{
    ConnectionHandle, ConnectionStatus, Mode, Resource, Snapshot, SnapshotCache, VersionClock,
};

pub(crate) const GW: &str = "ns/gw";

pub(crate) fn mk_listener(name: &str, stat_prefix: &str) -> Resource {
    Resource::from(Listener {
        name: name.into(),
        stat_prefix: stat_prefix.into(),
        ..Default::default()
    })
}

pub(crate) fn mk_cluster(name: &str, lb_policy: i32) -> Resource {
    Resource::from(Cluster {
        name: name.into(),
        lb_policy,
        ..Default::default()
    })
}

pub(crate) fn mk_cla(name: &str, weight: u32) -> Resource {
    Resource::from(ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![
            envoy_types::pb::envoy::config::endpoint::v3::LocalityLbEndpoints {
                load_balancing_weight: Some(envoy_types::pb::google::protobuf::UInt32Value {
                    value: weight,
                }),
                ..Default::default()
            },
        ],
        ..Default::default()
    })
}

pub(crate) fn mk_route(name: &str, host: &str) -> Resource {
    Resource::from(RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![envoy_types::pb::envoy::config::route::v3::VirtualHost {
            name: host.into(),
            domains: vec![host.into()],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// A cache with a fixed epoch, so versions are predictable.
pub(crate) fn mk_cache() -> SnapshotCache {
    SnapshotCache::with_clock(VersionClock::with_epoch(1))
}

pub(crate) fn set(cache: &SnapshotCache, resources: Vec<Resource>) -> Arc<Snapshot> {
    cache.set(GW, resources).expect("set");
    cache.get(GW).expect("snapshot")
}

pub(crate) fn mk_handle(mode: Mode) -> ConnectionHandle {
    ConnectionHandle::detached(ConnectionStatus::new("envoy-1", "gw", GW, mode))
}

pub(crate) fn mk_node(gateway: Option<&str>) -> Node {
    let mut fields = std::collections::HashMap::new();
    if let Some(gateway) = gateway {
        fields.insert(
            crate::GATEWAY_METADATA_KEY.to_owned(),
            Value {
                kind: Some(Kind::StringValue(gateway.into())),
            },
        );
    }
    Node {
        id: "envoy-1".into(),
        cluster: "gw".into(),
        metadata: Some(Struct { fields }),
        ..Default::default()
    }
}

pub(crate) fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

pub(crate) fn sotw_req(
    type_url: &str,
    resource_names: &[&str],
    version: &str,
    nonce: &str,
) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.into(),
        resource_names: names(resource_names),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

pub(crate) fn sotw_nack(
    type_url: &str,
    resource_names: &[&str],
    version: &str,
    nonce: &str,
    msg: &str,
) -> DiscoveryRequest {
    DiscoveryRequest {
        error_detail: Some(RpcStatus {
            code: 3,
            message: msg.into(),
            details: vec![],
        }),
        ..sotw_req(type_url, resource_names, version, nonce)
    }
}

pub(crate) fn delta_req(
    type_url: &str,
    subscribe: &[&str],
    unsubscribe: &[&str],
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.into(),
        resource_names_subscribe: names(subscribe),
        resource_names_unsubscribe: names(unsubscribe),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

pub(crate) fn delta_nack(type_url: &str, nonce: &str, msg: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        error_detail: Some(RpcStatus {
            code: 3,
            message: msg.into(),
            details: vec![],
        }),
        ..delta_req(type_url, &[], &[], nonce)
    }
}
