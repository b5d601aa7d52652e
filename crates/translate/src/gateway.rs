//! A gateway's model -> Envoy LDS/RDS/CDS/EDS/SDS/ECDS resources.
//!
//! The jwt_authn and the three local RBAC filters are delivered over ECDS
//! (`TypedExtensionConfig`) in fixed slots: a policy change then updates one extension config,
//! which applies to the next request on existing connections, instead of replacing the listener
//! (whose old filter chains keep serving open keep-alive connections until they drain). A slot
//! with no policy carries a no-op config. CUSTOM filters (rare changes) stay inline.

use envoy_types::pb::envoy::config::accesslog::v3::{
    AccessLog, AccessLogFilter, MetadataFilter, OrFilter, access_log, access_log_filter,
};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster as EnvoyCluster, cluster};
use envoy_types::pb::envoy::config::core::v3::Address;
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, DataSource, ExtensionConfigSource,
    Http2ProtocolOptions, SocketAddress, TransportSocket, TypedExtensionConfig, address,
    config_source, data_source, socket_address, transport_socket,
};
use envoy_types::pb::envoy::config::core::v3::{GrpcService, grpc_service};
use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain as EnvoyFilterChain, FilterChainMatch, Listener as EnvoyListener,
    ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction,
    Route as EnvoyRoute, RouteAction, RouteConfiguration, RouteMatch as EnvoyRouteMatch,
    VirtualHost as EnvoyVirtualHost, WeightedCluster, header_matcher, query_parameter_matcher,
    redirect_action, route, route_action, route_match, weighted_cluster,
};
use envoy_types::pb::envoy::extensions::access_loggers::grpc::v3::{
    CommonGrpcAccessLogConfig, HttpGrpcAccessLogConfig,
};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    TlsCertificate, common_tls_context, secret,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    SubjectAltNameMatcher, UpstreamTlsContext, certificate_validation_context,
    subject_alt_name_matcher,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, RegexMatcher};
use envoy_types::pb::google::protobuf::{BoolValue, Duration as PbDuration, UInt32Value};
use prost::Name;
use wayguard_core::routing::{
    Cluster, ExternalCluster, GatewayConfig, HeaderMatch, HeaderModifier, Listener, PathMatch,
    PathRewrite, Protocol, Redirect, RouteAction as CoreAction, RouteConfig, SecretMaterial,
    TlsSecret,
};

use crate::any::to_any;
use crate::{AuthContext, Diagnostic, http_auth_filters, matcher as m, names};

/// ECDS resource names of the auth slots, in chain order.
pub mod slots {
    /// jwt_authn.
    pub const JWT: &str = "wayguard.jwt_authn";
    /// RBAC AUDIT (action LOG).
    pub const RBAC_AUDIT: &str = "wayguard.rbac.audit";
    /// RBAC DENY.
    pub const RBAC_DENY: &str = "wayguard.rbac.deny";
    /// RBAC ALLOW.
    pub const RBAC_ALLOW: &str = "wayguard.rbac.allow";
}

/// Every Envoy resource of one gateway.
#[derive(Clone, Debug, Default)]
pub struct GatewayResources {
    /// LDS.
    pub listeners: Vec<EnvoyListener>,
    /// RDS.
    pub routes: Vec<RouteConfiguration>,
    /// CDS.
    pub clusters: Vec<EnvoyCluster>,
    /// EDS.
    pub endpoints: Vec<ClusterLoadAssignment>,
    /// SDS.
    pub secrets: Vec<Secret>,
    /// ECDS (the auth filter slots).
    pub extension_configs: Vec<TypedExtensionConfig>,
    /// Problems found while translating policies.
    pub diagnostics: Vec<Diagnostic>,
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

fn seconds(s: i64) -> PbDuration {
    PbDuration {
        seconds: s,
        nanos: 0,
    }
}

fn inline(s: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineString(s.to_string())),
        ..Default::default()
    }
}

/// Translates a gateway.
pub fn gateway_resources(config: &GatewayConfig, ctx: &AuthContext<'_>) -> GatewayResources {
    let auth = http_auth_filters(&config.auth, ctx);
    let mut filters = chain(&auth.custom);
    if let Some(login) = crate::login::filter(&config.login) {
        filters.insert(0, login);
    }
    let login_cluster = crate::login::cluster(&config.login);
    let access_logs = if auth.inlines_fetched_keys {
        vec![rotation_log()]
    } else {
        vec![]
    };
    let slot = |name: &str, any: envoy_types::pb::google::protobuf::Any| TypedExtensionConfig {
        name: name.to_string(),
        typed_config: Some(any),
    };
    let rbac_slot = |name: &str, rbac: &Option<RbacFilter>| {
        slot(name, to_any(&rbac.clone().unwrap_or_default()))
    };
    let extension_configs = vec![
        slot(slots::JWT, to_any(&auth.jwt.clone().unwrap_or_default())),
        rbac_slot(slots::RBAC_AUDIT, &auth.audit),
        rbac_slot(slots::RBAC_DENY, &auth.deny),
        rbac_slot(slots::RBAC_ALLOW, &auth.allow),
    ];
    GatewayResources {
        listeners: config
            .listeners
            .iter()
            .map(|l| listener(l, &filters, &access_logs))
            .collect(),
        routes: config
            .routes
            .iter()
            .map(|rc| route_config(rc, &config.login))
            .collect(),
        clusters: config
            .clusters
            .iter()
            .chain(login_cluster.iter())
            .map(cluster)
            .chain(config.external_clusters.iter().map(external_cluster))
            .collect(),
        endpoints: config
            .clusters
            .iter()
            .chain(login_cluster.iter())
            .filter(|c| !c.dns)
            .map(load_assignment)
            .collect(),
        secrets: config.secrets.iter().map(secret).collect(),
        extension_configs,
        diagnostics: auth.diagnostics,
    }
}

/// The HTTP filter chain: CUSTOM filters, the four ECDS slots, router.
fn chain(custom: &[HttpFilter]) -> Vec<HttpFilter> {
    let discovered = |name: &str, type_url: String| HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::ConfigDiscovery(
            ExtensionConfigSource {
                config_source: Some(ads()),
                type_urls: vec![type_url],
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let mut filters = custom.to_vec();
    filters.push(discovered(slots::JWT, JwtAuthentication::type_url()));
    for slot in [slots::RBAC_AUDIT, slots::RBAC_DENY, slots::RBAC_ALLOW] {
        filters.push(discovered(slot, RbacFilter::type_url()));
    }
    filters.push(HttpFilter {
        name: names::ROUTER.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(
            &Router::default(),
        ))),
        ..Default::default()
    });
    filters
}

/// The fast key rotation signal: an access log that only fires for requests whose token's `kid`
/// is not in the inlined JWKS (or whose signature fails, which is what happens while the
/// fail-closed key set is inlined), sent over gRPC to wayguard, which then refetches this
/// gateway's key sets at once (rate-limited per URI). No token or header leaves Envoy; the filter is static,
/// so the listener does not change when issuers do.
fn rotation_log() -> AccessLog {
    let on_message = |message: &str| AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::MetadataFilter(
            MetadataFilter {
                matcher: Some(m::metadata(
                    names::JWT_AUTHN,
                    &[names::JWT_FAILURE_KEY, "message"],
                    m::value_string(m::exact(message, false)),
                )),
                match_if_key_not_found: Some(BoolValue { value: false }),
            },
        )),
    };
    let filter = AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::OrFilter(OrFilter {
            filters: vec![
                on_message(names::KID_NOT_IN_JWKS),
                on_message(names::VERIFICATION_FAILS),
            ],
        })),
    };
    let config = HttpGrpcAccessLogConfig {
        common_config: Some(CommonGrpcAccessLogConfig {
            log_name: names::ROTATION_LOG.to_string(),
            grpc_service: Some(GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: names::XDS_CLUSTER.to_string(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            transport_api_version: ApiVersion::V3 as i32,
            // Send each entry at once: the signal is rare and latency matters.
            buffer_size_bytes: Some(UInt32Value { value: 1 }),
            buffer_flush_interval: Some(PbDuration {
                seconds: 0,
                nanos: 10_000_000,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    AccessLog {
        name: "envoy.access_loggers.http_grpc".into(),
        filter: Some(filter),
        config_type: Some(access_log::ConfigType::TypedConfig(to_any(&config))),
    }
}

fn hcm(
    l: &Listener,
    route_config: &str,
    filters: &[HttpFilter],
    access_logs: &[AccessLog],
    tls: bool,
) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: l.name.clone(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_config.to_string(),
        })),
        http_filters: filters.to_vec(),
        access_log: access_logs.to_vec(),
        // The gateway is the edge: the peer is the client (remote.ip / ipBlocks semantics).
        use_remote_address: Some(BoolValue { value: true }),
        // Authorization on paths must see the path the backend sees: RFC 3986 normalisation,
        // merged slashes, and %2F/%5C decoded with a redirect (istio DECODE_AND_MERGE_SLASHES;
        // see CVE-2021-31920 for what goes wrong otherwise).
        normalize_path: Some(BoolValue { value: true }),
        merge_slashes: true,
        path_with_escaped_slashes_action:
            http_connection_manager::PathWithEscapedSlashesAction::UnescapeAndRedirect as i32,
        forward_client_cert_details: if tls {
            http_connection_manager::ForwardClientCertDetails::SanitizeSet as i32
        } else {
            http_connection_manager::ForwardClientCertDetails::Sanitize as i32
        },
        set_current_client_cert_details: tls.then(|| {
            http_connection_manager::SetCurrentClientCertDetails {
                uri: true,
                ..Default::default()
            }
        }),
        ..Default::default()
    }
}

fn listener(l: &Listener, filters: &[HttpFilter], access_log: &[AccessLog]) -> EnvoyListener {
    let https = l.protocol == Protocol::Https;
    let chains = l
        .chains
        .iter()
        .map(|c| {
            let manager = hcm(l, &c.route_config, filters, access_log, https);
            let transport_socket = c.tls.as_ref().map(|tls| {
                let sds = |name: &String| SdsSecretConfig { name: name.clone(), sds_config: Some(ads()) };
                let context = DownstreamTlsContext {
                    common_tls_context: Some(CommonTlsContext {
                        tls_certificate_sds_secret_configs: tls.certificates.iter().map(sds).collect(),
                        validation_context_type: tls.client_ca.as_ref().map(|ca| {
                            common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(sds(ca))
                        }),
                        alpn_protocols: vec!["h2".into(), "http/1.1".into()],
                        ..Default::default()
                    }),
                    require_client_certificate: Some(BoolValue { value: tls.require_client_certificate }),
                    ..Default::default()
                };
                TransportSocket {
                    name: "envoy.transport_sockets.tls".into(),
                    config_type: Some(transport_socket::ConfigType::TypedConfig(to_any(&context))),
                }
            });
            EnvoyFilterChain {
                name: c.name.clone(),
                filter_chain_match: (!c.server_names.is_empty()).then(|| FilterChainMatch {
                    server_names: c.server_names.clone(),
                    ..Default::default()
                }),
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(to_any(&manager))),
                }],
                transport_socket,
                ..Default::default()
            }
        })
        .collect();
    EnvoyListener {
        name: l.name.clone(),
        address: Some(socket(&l.address, l.port)),
        filter_chains: chains,
        listener_filters: if https {
            vec![ListenerFilter {
                name: "envoy.filters.listener.tls_inspector".into(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(
                    &TlsInspector::default(),
                ))),
                ..Default::default()
            }]
        } else {
            vec![]
        },
        ..Default::default()
    }
}

fn socket(address: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

fn header_matcher(h: &HeaderMatch) -> HeaderMatcher {
    HeaderMatcher {
        name: h.name.clone(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            if h.regex {
                m::regex(&h.value)
            } else {
                m::exact(&h.value, false)
            },
        )),
        ..Default::default()
    }
}

fn route_config(
    rc: &RouteConfig,
    login: &wayguard_core::login::GatewayLogin,
) -> RouteConfiguration {
    let mut hosts: Vec<Vec<EnvoyRoute>> = rc
        .virtual_hosts
        .iter()
        .map(|vh| vh.routes.iter().map(envoy_route).collect())
        .collect();
    crate::login::apply(login, rc, &mut hosts);
    RouteConfiguration {
        name: rc.name.clone(),
        virtual_hosts: rc
            .virtual_hosts
            .iter()
            .zip(hosts)
            .map(|(vh, routes)| EnvoyVirtualHost {
                name: vh.name.clone(),
                domains: vh.domains.clone(),
                routes,
                ..Default::default()
            })
            .collect(),
        // Hostnames match with or without the port in the Host header.
        ignore_port_in_host_matching: true,
        ..Default::default()
    }
}

/// Gateway API `set` overwrites, `add` appends.
fn header_options(m: &HeaderModifier) -> Vec<HeaderValueOption> {
    let option = |(name, value): &(String, String), action| HeaderValueOption {
        header: Some(HeaderValue {
            key: name.clone(),
            value: value.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    m.set
        .iter()
        .map(|h| {
            option(
                h,
                header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd,
            )
        })
        .chain(m.add.iter().map(|h| {
            option(
                h,
                header_value_option::HeaderAppendAction::AppendIfExistsOrAdd,
            )
        }))
        .collect()
}

/// A path change in Envoy's terms.
enum PathChange {
    Prefix(String),
    Regex(RegexMatchAndSubstitute),
}

fn regex_substitute(pattern: String, substitution: String) -> PathChange {
    PathChange::Regex(RegexMatchAndSubstitute {
        pattern: Some(RegexMatcher {
            regex: pattern,
            ..Default::default()
        }),
        substitution,
    })
}

/// Gateway API path replacement with segment semantics. The route matched `matched` as a
/// `path_separated_prefix` (or `/` as a plain prefix), so `prefix_rewrite` replaces exactly the
/// matched segments; replacing with `/` (or matching `/`) needs a regex, because `prefix_rewrite`
/// would leave a double or a missing slash (`/foo/x` -> `//x`, `/x` -> `/barx`).
fn path_rewrite(path: &PathRewrite) -> PathChange {
    match path {
        PathRewrite::Full(full) => regex_substitute("^/.*$".into(), full.clone()),
        PathRewrite::Prefix {
            matched,
            replacement,
        } => {
            let matched = matched.trim_end_matches('/');
            let replacement = replacement.trim_end_matches('/');
            if matched.is_empty() {
                regex_substitute("^/".into(), format!("{replacement}/"))
            } else if replacement.is_empty() {
                regex_substitute(
                    format!("^{}/*", crate::matcher::quote_meta(matched)),
                    "/".into(),
                )
            } else {
                PathChange::Prefix(replacement.to_string())
            }
        }
    }
}

fn redirect_action(r: &Redirect) -> RedirectAction {
    use redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier};
    // The index resolved the port per Gateway API; `None` (the scheme's well-known port) must
    // stay unset, because Envoy writes any port_redirect it is given into Location.
    let port = r.port.map_or(0, u32::from);
    RedirectAction {
        scheme_rewrite_specifier: r.scheme.clone().map(SchemeRewriteSpecifier::SchemeRedirect),
        host_redirect: r.hostname.clone().unwrap_or_default(),
        port_redirect: port,
        path_rewrite_specifier: r.path.as_ref().map(|p| match p {
            PathRewrite::Full(full) => PathRewriteSpecifier::PathRedirect(full.clone()),
            other => match path_rewrite(other) {
                PathChange::Prefix(prefix) => PathRewriteSpecifier::PrefixRewrite(prefix),
                PathChange::Regex(regex) => PathRewriteSpecifier::RegexRewrite(regex),
            },
        }),
        response_code: match r.status {
            301 => RedirectResponseCode::MovedPermanently,
            303 => RedirectResponseCode::SeeOther,
            307 => RedirectResponseCode::TemporaryRedirect,
            308 => RedirectResponseCode::PermanentRedirect,
            _ => RedirectResponseCode::Found,
        } as i32,
        strip_query: false,
    }
}

fn envoy_route(r: &wayguard_core::routing::Route) -> EnvoyRoute {
    let path_specifier = match &r.matcher.path {
        PathMatch::Exact(p) => route_match::PathSpecifier::Path(p.clone()),
        PathMatch::Prefix(p) if p == "/" => route_match::PathSpecifier::Prefix("/".into()),
        PathMatch::Prefix(p) => {
            route_match::PathSpecifier::PathSeparatedPrefix(p.trim_end_matches('/').to_string())
        }
        PathMatch::Regex(p) => route_match::PathSpecifier::SafeRegex(
            envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher {
                regex: p.clone(),
                ..Default::default()
            },
        ),
    };
    let mut headers: Vec<HeaderMatcher> = r.matcher.headers.iter().map(header_matcher).collect();
    if let Some(method) = &r.matcher.method {
        headers.push(HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                m::exact(method, false),
            )),
            ..Default::default()
        });
    }
    let action = match &r.action {
        CoreAction::Redirect(redirect) => route::Action::Redirect(redirect_action(redirect)),
        CoreAction::Direct { status, body } => {
            route::Action::DirectResponse(DirectResponseAction {
                status: *status,
                body: Some(inline(body)),
                ..Default::default()
            })
        }
        CoreAction::Forward(clusters) => {
            let specifier = if clusters.len() == 1 && !clusters[0].cluster.is_empty() {
                route_action::ClusterSpecifier::Cluster(clusters[0].cluster.clone())
            } else {
                route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
                    clusters: clusters
                        .iter()
                        .map(|c| weighted_cluster::ClusterWeight {
                            // Invalid backends point at a cluster that does not exist: 500 (below).
                            name: if c.cluster.is_empty() {
                                "wayguard.invalid-backend".into()
                            } else {
                                c.cluster.clone()
                            },
                            weight: Some(UInt32Value { value: c.weight }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
            };
            let mut action = RouteAction {
                cluster_specifier: Some(specifier),
                cluster_not_found_response_code:
                    route_action::ClusterNotFoundResponseCode::InternalServerError as i32,
                ..Default::default()
            };
            if let Some(rewrite) = &r.rewrite {
                if let Some(host) = &rewrite.hostname {
                    action.host_rewrite_specifier = Some(
                        route_action::HostRewriteSpecifier::HostRewriteLiteral(host.clone()),
                    );
                }
                match rewrite.path.as_ref().map(path_rewrite) {
                    Some(PathChange::Prefix(prefix)) => action.prefix_rewrite = prefix,
                    Some(PathChange::Regex(regex)) => action.regex_rewrite = Some(regex),
                    None => {}
                }
            }
            route::Action::Route(action)
        }
    };
    EnvoyRoute {
        name: r.name.clone(),
        r#match: Some(EnvoyRouteMatch {
            path_specifier: Some(path_specifier),
            headers,
            query_parameters: r
                .matcher
                .query
                .iter()
                .map(|q| QueryParameterMatcher {
                    name: q.name.clone(),
                    query_parameter_match_specifier: Some(
                        query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                            if q.regex {
                                m::regex(&q.value)
                            } else {
                                m::exact(&q.value, false)
                            },
                        ),
                    ),
                })
                .collect(),
            ..Default::default()
        }),
        action: Some(action),
        request_headers_to_add: header_options(&r.headers.request),
        request_headers_to_remove: r.headers.request.remove.clone(),
        response_headers_to_add: header_options(&r.headers.response),
        response_headers_to_remove: r.headers.response.remove.clone(),
        ..Default::default()
    }
}

fn cluster(c: &Cluster) -> EnvoyCluster {
    let mut options = std::collections::HashMap::new();
    if c.http2 {
        options.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            to_any(&HttpProtocolOptions {
                upstream_protocol_options: Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                    http_protocol_options::ExplicitHttpConfig {
                        protocol_config: Some(http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            Http2ProtocolOptions::default(),
                        )),
                    },
                )),
                ..Default::default()
            }),
        );
    }
    if c.dns {
        // FQDN endpoints: Envoy resolves the names itself.
        return EnvoyCluster {
            name: c.name.clone(),
            connect_timeout: Some(seconds(5)),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::StrictDns as i32,
            )),
            dns_lookup_family: cluster::DnsLookupFamily::V4Preferred as i32,
            load_assignment: Some(load_assignment(c)),
            typed_extension_protocol_options: options,
            ..Default::default()
        };
    }
    EnvoyCluster {
        name: c.name.clone(),
        connect_timeout: Some(seconds(5)),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: c.name.clone(),
        }),
        typed_extension_protocol_options: options,
        ..Default::default()
    }
}

/// A cluster to a host outside the mesh: DNS (or static for an IP), TLS with SNI and the host
/// name checked against the certificate, trusted by the system roots.
fn external_cluster(c: &ExternalCluster) -> EnvoyCluster {
    let ip = c.host.parse::<std::net::IpAddr>().is_ok();
    let transport_socket = c.tls.then(|| {
        let san = SubjectAltNameMatcher {
            san_type: if ip {
                subject_alt_name_matcher::SanType::IpAddress
            } else {
                subject_alt_name_matcher::SanType::Dns
            } as i32,
            matcher: Some(m::exact(&c.host, false)),
            ..Default::default()
        };
        let context = UpstreamTlsContext {
            sni: if ip { String::new() } else { c.host.clone() },
            common_tls_context: Some(CommonTlsContext {
                validation_context_type: Some(
                    common_tls_context::ValidationContextType::ValidationContext(
                        CertificateValidationContext {
                            system_root_certs: Some(
                                certificate_validation_context::SystemRootCerts {},
                            ),
                            match_typed_subject_alt_names: vec![san],
                            ..Default::default()
                        },
                    ),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(to_any(&context))),
        }
    });
    EnvoyCluster {
        name: c.name.clone(),
        connect_timeout: Some(seconds(5)),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(if ip {
            cluster::DiscoveryType::Static
        } else {
            cluster::DiscoveryType::StrictDns
        } as i32)),
        dns_lookup_family: cluster::DnsLookupFamily::V4Preferred as i32,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: c.name.clone(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket(&c.host, c.port)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        transport_socket,
        ..Default::default()
    }
}

fn load_assignment(c: &Cluster) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: c.name.clone(),
        endpoints: if c.endpoints.is_empty() {
            vec![]
        } else {
            vec![LocalityLbEndpoints {
                lb_endpoints: c
                    .endpoints
                    .iter()
                    .map(|(ip, port)| LbEndpoint {
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(socket(ip, *port)),
                            ..Default::default()
                        })),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }]
        },
        ..Default::default()
    }
}

fn secret(s: &TlsSecret) -> Secret {
    let kind = match &s.material {
        SecretMaterial::Certificate { chain, key } => {
            secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(chain)),
                private_key: Some(inline(key)),
                ..Default::default()
            })
        }
        SecretMaterial::ValidationContext { ca } => {
            secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(inline(ca)),
                ..Default::default()
            })
        }
    };
    Secret {
        name: s.name.clone(),
        r#type: Some(kind),
    }
}
