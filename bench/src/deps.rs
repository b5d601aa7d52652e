//! What a simulated Envoy needs from the resources it receives: the names of the EDS, RDS,
//! ECDS and SDS resources to subscribe to. Only CDS and LDS payloads are decoded.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::transport_socket;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier, http_filter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, common_tls_context::ValidationContextType,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message as _;

/// LDS.
pub const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// RDS.
pub const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// CDS.
pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// EDS.
pub const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// SDS.
pub const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// ECDS.
pub const ECDS: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

/// The static type URL for a known type.
pub fn intern(type_url: &str) -> Option<&'static str> {
    [LDS, RDS, CDS, EDS, SDS, ECDS]
        .into_iter()
        .find(|t| *t == type_url)
}

/// A short label: `lds`, `rds`, `cds`, `eds`, `sds`, `ecds`, or `other`.
pub fn short(type_url: &str) -> &'static str {
    match type_url {
        LDS => "lds",
        RDS => "rds",
        CDS => "cds",
        EDS => "eds",
        SDS => "sds",
        ECDS => "ecds",
        _ => "other",
    }
}

/// Field 1 of a message, which is the resource name of every named xDS type here (Listener,
/// RouteConfiguration, Cluster, ClusterLoadAssignment, Secret, TypedExtensionConfig).
#[derive(Clone, PartialEq, prost::Message)]
struct NameOnly {
    #[prost(string, tag = "1")]
    name: String,
}

/// The resource name inside an `Any` (decodes field 1 only).
pub fn name(any: &Any) -> Option<String> {
    NameOnly::decode(any.value.as_slice()).ok().map(|n| n.name)
}

/// A cluster's name and, for an EDS cluster, the EDS resource it needs.
pub fn cluster(any: &Any) -> Option<(String, Option<String>)> {
    let c = Cluster::decode(any.value.as_slice()).ok()?;
    let eds = matches!(c.cluster_discovery_type, Some(ClusterDiscoveryType::Type(t)) if t == DiscoveryType::Eds as i32);
    let service = eds.then(|| {
        c.eds_cluster_config
            .as_ref()
            .map(|e| e.service_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| c.name.clone())
    });
    Some((c.name, service))
}

/// The names a listener needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerDeps {
    /// RDS route configurations.
    pub routes: Vec<String>,
    /// ECDS extension configs (HTTP filters with `config_discovery`).
    pub extensions: Vec<String>,
    /// SDS secrets of downstream TLS.
    pub secrets: Vec<String>,
}

/// A listener's name and the names it needs.
pub fn listener(any: &Any) -> Option<(String, ListenerDeps)> {
    let l = Listener::decode(any.value.as_slice()).ok()?;
    let mut deps = ListenerDeps::default();
    for chain in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        chain_deps(chain, &mut deps);
    }
    Some((l.name, deps))
}

fn chain_deps(chain: &FilterChain, deps: &mut ListenerDeps) {
    for f in &chain.filters {
        let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
            continue;
        };
        if any.type_url != HCM {
            continue;
        }
        let Ok(hcm) = HttpConnectionManager::decode(any.value.as_slice()) else {
            continue;
        };
        if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
            deps.routes.push(rds.route_config_name.clone());
        }
        for hf in &hcm.http_filters {
            if let Some(http_filter::ConfigType::ConfigDiscovery(_)) = &hf.config_type {
                deps.extensions.push(hf.name.clone());
            }
        }
    }
    let Some(socket) = &chain.transport_socket else {
        return;
    };
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
        return;
    };
    if any.type_url != TLS {
        return;
    }
    let Ok(tls) = DownstreamTlsContext::decode(any.value.as_slice()) else {
        return;
    };
    let Some(common) = tls.common_tls_context else {
        return;
    };
    deps.secrets.extend(
        common
            .tls_certificate_sds_secret_configs
            .iter()
            .map(|s| s.name.clone()),
    );
    match common.validation_context_type {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            deps.secrets.push(s.name);
        }
        Some(ValidationContextType::CombinedValidationContext(c)) => {
            deps.secrets
                .extend(c.validation_context_sds_secret_config.map(|s| s.name));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
    use prost::Name as _;

    use super::*;

    #[test]
    fn type_urls_match_envoy_types() {
        assert_eq!(Listener::type_url(), LDS);
        assert_eq!(Cluster::type_url(), CDS);
        assert_eq!(TypedExtensionConfig::type_url(), ECDS);
        assert_eq!(HttpConnectionManager::type_url(), HCM);
        assert_eq!(DownstreamTlsContext::type_url(), TLS);
    }

    #[test]
    fn name_is_field_one() {
        let ext = TypedExtensionConfig {
            name: "wayguard.rbac.deny".into(),
            typed_config: Some(Any {
                type_url: "x".into(),
                value: vec![1, 2, 3],
            }),
        };
        let any = Any {
            type_url: ECDS.into(),
            value: ext.encode_to_vec(),
        };
        assert_eq!(name(&any).as_deref(), Some("wayguard.rbac.deny"));
    }
}
