//! `wayguard bootstrap`: an Envoy bootstrap that connects a stock Envoy to wayguard over ADS.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use wayguard_core::GatewayId;
use wayguard_xds::GATEWAY_METADATA_KEY;

/// Bootstrap options.
#[derive(Clone, Debug)]
pub struct BootstrapOptions {
    /// The gateway this Envoy serves.
    pub gateway: String,
    /// wayguard's xDS address, `HOST:PORT`.
    pub xds_address: String,
    /// Envoy admin port (bound on 127.0.0.1).
    pub admin_port: u16,
    /// Use Delta ADS (`DELTA_GRPC`) instead of state-of-the-world.
    pub delta: bool,
    /// Node id (default: `<gateway name>.<namespace>`).
    pub node_id: Option<String>,
    /// Extra node labels for selector-based attachment, `key=value`.
    pub labels: Vec<String>,
}

/// Renders the bootstrap as YAML.
pub fn render(opts: &BootstrapOptions) -> Result<String> {
    let value = bootstrap(opts)?;
    serde_saphyr::to_string(&value).context("rendering YAML")
}

/// The bootstrap as a JSON value (Envoy's proto JSON field names).
pub fn bootstrap(opts: &BootstrapOptions) -> Result<Value> {
    let gateway = GatewayId::parse(&opts.gateway)
        .with_context(|| format!("--gateway {:?}: expected NAMESPACE/NAME", opts.gateway))?;
    let (host, port) = opts
        .xds_address
        .rsplit_once(':')
        .with_context(|| format!("--xds-address {:?}: expected HOST:PORT", opts.xds_address))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .with_context(|| format!("--xds-address {:?}: bad port", opts.xds_address))?;
    if host.is_empty() {
        bail!("--xds-address {:?}: empty host", opts.xds_address);
    }
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let mut labels = serde_json::Map::new();
    for l in &opts.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l:?}: expected key=value"))?;
        labels.insert(k.to_string(), Value::String(v.to_string()));
    }
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        GATEWAY_METADATA_KEY.into(),
        Value::String(gateway.to_string()),
    );
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    Ok(json!({
        "node": {
            "id": opts.node_id.clone().unwrap_or_else(|| format!("{}.{}", gateway.name, gateway.namespace)),
            "cluster": gateway.to_string(),
            "metadata": metadata,
        },
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": opts.admin_port}},
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": if opts.delta { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{
                    "envoy_grpc": {
                        "cluster_name": "wayguard-xds",
                        "retry_policy": {"retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"}},
                    },
                }],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [{
                "name": "wayguard-xds",
                "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {
                            "connection_keepalive": {"interval": "30s", "timeout": "5s"},
                        }},
                    },
                },
                "load_assignment": {
                    "cluster_name": "wayguard-xds",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                        "socket_address": {"address": host, "port_value": port},
                    }}}]}],
                },
            }],
        },
        // Without a downstream connection limit Envoy 1.40 warns at startup; set a generous one.
        "overload_manager": {
            "resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": 50000,
                },
            }],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> BootstrapOptions {
        BootstrapOptions {
            gateway: "demo/waypoint".into(),
            xds_address: "127.0.0.1:15010".into(),
            admin_port: 15000,
            delta: false,
            node_id: None,
            labels: vec!["app=payments".into()],
        }
    }

    #[test]
    fn carries_the_gateway_and_the_xds_cluster() {
        let b = bootstrap(&opts()).expect("bootstrap");
        assert_eq!(
            b["node"]["metadata"]["wayguard.io/gateway"],
            "demo/waypoint"
        );
        assert_eq!(b["node"]["metadata"]["labels"]["app"], "payments");
        assert_eq!(b["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
        assert_eq!(b["static_resources"]["clusters"][0]["type"], "STATIC");
        let delta = bootstrap(&BootstrapOptions {
            delta: true,
            xds_address: "wayguard.istio-system:15010".into(),
            ..opts()
        })
        .expect("bootstrap");
        assert_eq!(
            delta["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        assert_eq!(
            delta["static_resources"]["clusters"][0]["type"],
            "STRICT_DNS"
        );
    }

    #[test]
    fn rejects_bad_input_with_the_flag_name() {
        let e = bootstrap(&BootstrapOptions {
            gateway: "nope".into(),
            ..opts()
        })
        .expect_err("gateway");
        assert!(e.to_string().contains("--gateway \"nope\""), "{e}");
        let e = bootstrap(&BootstrapOptions {
            xds_address: "host".into(),
            ..opts()
        })
        .expect_err("addr");
        assert!(e.to_string().contains("--xds-address"), "{e}");
    }
}
