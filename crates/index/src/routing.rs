//! A gateway's listeners, routes, clusters and certificates (Gateway API semantics), resolved
//! from Gateways, HTTPRoutes, waypoint-bound Services, EndpointSlices, Secrets and ConfigMaps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use wayguard_api::gateway_api::apis::standard::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom,
    GatewayListenersTlsMode, GatewayTlsFrontendDefaultValidationMode,
    GatewayTlsFrontendPerPortTlsValidationMode,
};
use wayguard_api::gateway_api::apis::standard::httproutes::{
    HttpRoute, HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType,
    HttpRouteRulesMatchesPathType, HttpRouteRulesMatchesQueryParamsType,
};
use wayguard_api::mesh;
use wayguard_api::resource::{Kind, ObjectRef, Resource};
use wayguard_core::GatewayId;
use wayguard_core::authn::{JwksFetchMode, JwksSource, JwtRule};
use wayguard_core::authz::ExtAuthzProvider;
use wayguard_core::routing::{
    Cluster, ExternalCluster, FilterChain, GatewayConfig, HeaderMatch, Listener, ListenerTls,
    PathMatch, Problem, Protocol, Route, RouteAction, RouteConfig, RouteMatch, SecretMaterial,
    TlsSecret, VirtualHost, WeightedCluster,
};

use crate::Index;
use crate::attach::bound_services;

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The cluster name of a Service port, like istiod's `outbound|<port>||<fqdn>`.
pub fn cluster_name(namespace: &str, service: &str, port: u16) -> String {
    format!("outbound|{port}||{service}.{namespace}.svc.cluster.local")
}

struct Builder<'a> {
    index: &'a Index,
    gw: &'a Gateway,
    id: GatewayId,
    problems: Vec<Problem>,
    clusters: BTreeMap<String, Cluster>,
    secrets: BTreeMap<String, TlsSecret>,
    external: BTreeMap<String, ExternalCluster>,
    /// HTTPRoutes attached, by Gateway listener name.
    attached: BTreeMap<String, u32>,
}

impl Index {
    /// The full configuration of a gateway (auth included), or `None` if it is not ours.
    pub fn gateway_config(&self, id: &GatewayId) -> Option<GatewayConfig> {
        let gw = self.gateway(id)?;
        if !self
            .config
            .gateway_classes
            .contains(&gw.spec.gateway_class_name)
        {
            return None;
        }
        let mut b = Builder {
            index: self,
            gw,
            id: id.clone(),
            problems: Vec::new(),
            clusters: BTreeMap::new(),
            secrets: BTreeMap::new(),
            external: BTreeMap::new(),
            attached: BTreeMap::new(),
        };
        let (listeners, routes) = b.listeners();
        // Mesh config is read once per gateway: a parse error is reported and the trust domain
        // falls back to cluster.local alone.
        let trust_domains = self.trust_domains();
        let auth = self.gateway_auth_in(id, trust_domains.clone().unwrap_or_default());
        let jwks_clusters = b.jwks_clusters(&auth.jwt_rules);
        let providers = b.providers(&auth);
        let (login, login_problems) = self.gateway_login(id, gw, &listeners, |ns, svc, port| {
            match self.find(Kind::Service, ns, svc) {
                Some(Resource::Service(s)) if svc_ports(s).contains(&port) => {
                    let name = b.cluster(ns, svc, port);
                    // ext_authz is gRPC.
                    if let Some(c) = b.clusters.get_mut(&name) {
                        c.http2 = true;
                    }
                    Some(name)
                }
                _ => None,
            }
        });
        b.problems.extend(login_problems);
        if let Err(e) = trust_domains {
            b.problem(
                format!(
                    "ConfigMap {}/{}",
                    self.config.root_namespace,
                    mesh::MESH_CONFIGMAP
                ),
                format!("mesh config does not parse ({e}); principals match under trust domain cluster.local only, without aliases"),
            );
        }
        let mut problems = std::mem::take(&mut b.problems);
        problems.sort();
        problems.dedup();
        Some(GatewayConfig {
            id: id.clone(),
            listeners,
            routes,
            clusters: b.clusters.into_values().collect(),
            secrets: b.secrets.into_values().collect(),
            external_clusters: b.external.into_values().collect(),
            jwks_clusters,
            providers,
            attached_routes: std::mem::take(&mut b.attached),
            auth,
            login,
            problems,
        })
    }

    pub(crate) fn find(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Resource> {
        self.entry(&ObjectRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        })?
        .valid
        .as_ref()
    }

    /// Whether a ReferenceGrant in `to_ns` lets `from_kind` objects of `from_ns` reference
    /// `to_kind/to_name` (always true within one namespace).
    fn reference_allowed(
        &self,
        from_kind: &str,
        from_ns: &str,
        to_kind: &str,
        to_ns: &str,
        to_name: &str,
    ) -> bool {
        if from_ns == to_ns {
            return true;
        }
        self.valid(Kind::ReferenceGrant).any(|r| match r {
            Resource::ReferenceGrant(g) if g.metadata.namespace.as_deref() == Some(to_ns) => {
                g.spec.from.iter().any(|f| {
                    f.group == GATEWAY_GROUP && f.kind == from_kind && f.namespace == from_ns
                }) && g.spec.to.iter().any(|t| {
                    t.group.is_empty()
                        && t.kind == to_kind
                        && t.name.as_deref().is_none_or(|n| n == to_name)
                })
            }
            _ => false,
        })
    }
}

fn hostname_intersection(listener: Option<&str>, route: &str) -> Option<String> {
    let Some(l) = listener.filter(|l| !l.is_empty()) else {
        return Some(route.to_string());
    };
    let matches = |wild: &str, host: &str| {
        wild.strip_prefix('*')
            .is_some_and(|suffix| host.ends_with(suffix) && host.len() > suffix.len())
    };
    if l == route || matches(l, route) {
        Some(route.to_string())
    } else if matches(route, l) {
        Some(l.to_string())
    } else {
        None
    }
}

impl Builder<'_> {
    /// The CUSTOM providers the gateway's policies use, from mesh config `extensionProviders`
    /// (ConfigMap `istio`, key `mesh`, in the root namespace), with their Service clusters added.
    fn providers(
        &mut self,
        auth: &wayguard_core::gateway::GatewayAuth,
    ) -> BTreeMap<String, ExtAuthzProvider> {
        let used: BTreeSet<&str> = auth
            .policies
            .iter()
            .filter(|p| p.action == wayguard_core::authz::Action::Custom)
            .filter_map(|p| p.provider.as_deref())
            .collect();
        let mut out = BTreeMap::new();
        if used.is_empty() {
            return out;
        }
        let root = self.index.config.root_namespace.clone();
        let object = format!("ConfigMap {root}/{}", mesh::MESH_CONFIGMAP);
        let mesh = match self
            .index
            .find(Kind::ConfigMap, &root, mesh::MESH_CONFIGMAP)
        {
            Some(Resource::ConfigMap(cm)) => {
                let text = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(mesh::MESH_KEY))
                    .cloned()
                    .unwrap_or_default();
                match mesh::parse(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        self.problem(
                            &object,
                            format!("mesh config does not parse ({e}); CUSTOM policies deny"),
                        );
                        return out;
                    }
                }
            }
            _ => {
                self.problem(&object, "not found: CUSTOM policies need extensionProviders in mesh config; they deny until then");
                return out;
            }
        };
        for p in mesh
            .extension_providers
            .iter()
            .filter(|p| used.contains(p.name.as_str()))
        {
            let (grpc, settings) = match (&p.envoy_ext_authz_grpc, &p.envoy_ext_authz_http) {
                (Some(g), None) => (true, g),
                (None, Some(h)) => (false, h),
                _ => {
                    self.problem(&object, format!("extension provider {:?} needs exactly one of envoyExtAuthzGrpc or envoyExtAuthzHttp", p.name));
                    continue;
                }
            };
            match self.provider_cluster(settings) {
                Ok((cluster, authority, port)) => {
                    let timeout_ms = settings
                        .timeout
                        .as_deref()
                        .and_then(|t| wayguard_api::duration::parse_go_duration(t).ok())
                        .map_or(600_000, |d| d.as_millis() as u64);
                    out.insert(
                        p.name.clone(),
                        ExtAuthzProvider {
                            name: p.name.clone(),
                            cluster,
                            authority: if grpc {
                                authority
                            } else {
                                format!("{authority}:{port}")
                            },
                            grpc,
                            timeout_ms,
                            fail_open: settings.fail_open,
                            status_on_error: settings
                                .status_on_error
                                .as_deref()
                                .and_then(|s| s.parse().ok()),
                            path_prefix: settings.path_prefix.clone(),
                            include_request_headers_in_check: settings
                                .include_request_headers_in_check
                                .clone(),
                            headers_to_upstream_on_allow: settings
                                .headers_to_upstream_on_allow
                                .clone(),
                            headers_to_downstream_on_deny: settings
                                .headers_to_downstream_on_deny
                                .clone(),
                        },
                    );
                }
                Err(e) => self.problem(
                    &object,
                    format!(
                        "extension provider {:?}: {e}; policies using it deny",
                        p.name
                    ),
                ),
            }
        }
        out
    }

    /// `[<namespace>/]<svc>.<ns>.svc[.cluster.local]` and a port -> the Service's cluster.
    fn provider_cluster(
        &mut self,
        p: &mesh::ExtAuthzProvider,
    ) -> Result<(String, String, u16), String> {
        let host = p
            .service
            .rsplit_once('/')
            .map_or(p.service.as_str(), |(_, h)| h);
        let port = p
            .port
            .as_ref()
            .and_then(mesh::Port::number)
            .ok_or("a port is required")?;
        let (svc, ns) = host
            .strip_suffix(".svc.cluster.local")
            .or_else(|| host.strip_suffix(".svc"))
            .unwrap_or(host)
            .split_once('.')
            .ok_or_else(|| {
                format!(
                    "service {:?} must be <name>.<namespace>.svc.cluster.local",
                    p.service
                )
            })?;
        match self.index.find(Kind::Service, ns, svc) {
            Some(Resource::Service(s)) if svc_ports(s).contains(&port) => {
                Ok((self.cluster(ns, svc, port), host.to_string(), port))
            }
            Some(_) => Err(format!("Service {ns}/{svc} has no port {port}")),
            None => Err(format!("Service {ns}/{svc} not found")),
        }
    }

    /// In hybrid and envoy fetch modes, the cluster through which Envoy fetches each JWKS URI:
    /// the Service's cluster when the host is `<svc>.<ns>.svc[.cluster.local]` with that port,
    /// else (envoy mode only) a cluster wayguard defines for the host. Discovery-only rules are
    /// always fetched by wayguard, as istiod does.
    fn jwks_clusters(&mut self, rules: &[JwtRule]) -> BTreeMap<String, String> {
        let mode = self.index.config.jwks_fetch_mode;
        let mut out = BTreeMap::new();
        if mode == JwksFetchMode::Istiod {
            return out;
        }
        for rule in rules {
            let JwksSource::Uri(uri) = &rule.jwks else {
                continue;
            };
            let Ok(url) = url::Url::parse(uri) else {
                continue;
            };
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                continue;
            };
            let service = host
                .strip_suffix(".svc.cluster.local")
                .or_else(|| host.strip_suffix(".svc"))
                .unwrap_or(host)
                .split_once('.')
                .filter(|(_, ns)| !ns.contains('.'));
            if let Some((svc, ns)) = service
                && let Some(Resource::Service(s)) = self.index.find(Kind::Service, ns, svc)
                && svc_ports(s).contains(&port)
            {
                let cluster = self.cluster(ns, svc, port);
                out.insert(uri.clone(), cluster);
                continue;
            }
            if mode == JwksFetchMode::Envoy {
                let name = format!("jwks|{host}|{port}");
                self.external.insert(
                    name.clone(),
                    ExternalCluster {
                        name: name.clone(),
                        host: host
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string(),
                        port,
                        tls: url.scheme() == "https",
                    },
                );
                out.insert(uri.clone(), name);
            }
        }
        out
    }

    fn problem(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }

    fn bind_address(&self) -> String {
        self.gw
            .spec
            .addresses
            .iter()
            .flatten()
            .find(|a| a.r#type.as_deref().is_none_or(|t| t == "IPAddress"))
            .and_then(|a| a.value.clone())
            .unwrap_or_else(|| "0.0.0.0".into())
    }

    fn listeners(&mut self) -> (Vec<Listener>, Vec<RouteConfig>) {
        let address = self.bind_address();
        let mut by_port: BTreeMap<u16, Listener> = BTreeMap::new();
        let mut routes = Vec::new();
        for gl in &self.gw.spec.listeners {
            let object = format!("Gateway {} listener {}", self.id, gl.name);
            let protocol = match gl.protocol.as_str() {
                "HTTP" => Protocol::Http,
                "HTTPS" => Protocol::Https,
                other => {
                    self.problem(&object, format!(
                        "protocol {other} is not supported by wayguard on stock Envoy (HTTP and HTTPS are); this listener is not programmed"
                    ));
                    continue;
                }
            };
            let Ok(port) = u16::try_from(gl.port) else {
                self.problem(&object, format!("port {} is out of range", gl.port));
                continue;
            };
            let tls = match protocol {
                Protocol::Https => match self.listener_tls(gl, port, &object) {
                    Some(tls) => Some(tls),
                    None => continue,
                },
                Protocol::Http => None,
            };
            let route_config = match protocol {
                Protocol::Http => format!("http-{port}"),
                Protocol::Https => format!("https-{port}-{}", gl.name),
            };
            let listener = by_port.entry(port).or_insert_with(|| Listener {
                name: format!(
                    "{}-{port}",
                    if protocol == Protocol::Http {
                        "http"
                    } else {
                        "https"
                    }
                ),
                address: address.clone(),
                port,
                protocol,
                chains: Vec::new(),
            });
            if listener.protocol != protocol {
                self.problem(&object, format!("port {port} already serves another protocol; this listener is not programmed"));
                continue;
            }
            let hosts = self.virtual_hosts_for(gl, port);
            match protocol {
                Protocol::Http => {
                    if let Some(existing) = routes
                        .iter_mut()
                        .find(|r: &&mut RouteConfig| r.name == route_config)
                    {
                        merge_hosts(&mut existing.virtual_hosts, hosts);
                    } else {
                        routes.push(RouteConfig {
                            name: route_config.clone(),
                            virtual_hosts: hosts,
                        });
                        listener.chains.push(FilterChain {
                            name: gl.name.clone(),
                            server_names: vec![],
                            tls: None,
                            route_config,
                        });
                    }
                }
                Protocol::Https => {
                    routes.push(RouteConfig {
                        name: route_config.clone(),
                        virtual_hosts: hosts,
                    });
                    listener.chains.push(FilterChain {
                        name: gl.name.clone(),
                        server_names: gl
                            .hostname
                            .iter()
                            .filter(|h| !h.is_empty())
                            .cloned()
                            .collect(),
                        tls,
                        route_config,
                    });
                }
            }
        }
        (
            by_port
                .into_values()
                .filter(|l| !l.chains.is_empty())
                .collect(),
            routes,
        )
    }

    fn listener_tls(
        &mut self,
        gl: &GatewayListeners,
        port: u16,
        object: &str,
    ) -> Option<ListenerTls> {
        let Some(tls) = &gl.tls else {
            self.problem(
                object,
                "HTTPS needs tls.certificateRefs; this listener is not programmed",
            );
            return None;
        };
        if tls.mode == Some(GatewayListenersTlsMode::Passthrough) {
            self.problem(object, "TLS Passthrough is not supported (HTTPS listeners terminate TLS); this listener is not programmed");
            return None;
        }
        let mut certificates = Vec::new();
        for r in tls.certificate_refs.iter().flatten() {
            let kind = r.kind.as_deref().unwrap_or("Secret");
            let ns = r
                .namespace
                .clone()
                .unwrap_or_else(|| self.id.namespace.clone());
            if r.group.as_deref().is_some_and(|g| !g.is_empty()) || kind != "Secret" {
                self.problem(
                    object,
                    format!("certificateRef {kind} {ns}/{} is not a core Secret", r.name),
                );
                continue;
            }
            if !self
                .index
                .reference_allowed("Gateway", &self.id.namespace, "Secret", &ns, &r.name)
            {
                self.problem(object, format!("certificateRef Secret {ns}/{} is in another namespace and no ReferenceGrant allows it", r.name));
                continue;
            }
            match self.tls_secret(&ns, &r.name) {
                Ok(name) => certificates.push(name),
                Err(e) => self.problem(object, e),
            }
        }
        if certificates.is_empty() {
            self.problem(
                object,
                "no usable certificate (tls.certificateRefs); this listener is not programmed",
            );
            return None;
        }
        let (refs, insecure) = self.frontend_validation(port);
        let mut client_ca = None;
        for (kind, ns, name) in refs {
            if !self
                .index
                .reference_allowed("Gateway", &self.id.namespace, &kind, &ns, &name)
            {
                self.problem(object, format!("caCertificateRef {kind} {ns}/{name} is in another namespace and no ReferenceGrant allows it"));
                continue;
            }
            match self.ca_secret(&kind, &ns, &name) {
                Ok(sds) => {
                    client_ca = Some(sds);
                    break;
                }
                Err(e) => self.problem(object, e),
            }
        }
        if client_ca.is_none() && self.frontend_validation_configured(port) {
            // Validation was asked for but no CA resolved: refuse rather than serve without mTLS.
            self.problem(object, "client certificate validation is configured but no CA certificate resolved; this listener is not programmed (failing closed)");
            return None;
        }
        Some(ListenerTls {
            certificates,
            require_client_certificate: client_ca.is_some() && !insecure,
            client_ca,
        })
    }

    fn frontend_validation_configured(&self, port: u16) -> bool {
        !self.frontend_validation(port).0.is_empty()
    }

    /// CA refs `(kind, namespace, name)` and whether invalid/missing client certs are allowed.
    fn frontend_validation(&self, port: u16) -> (Vec<(String, String, String)>, bool) {
        let Some(frontend) = self.gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
            return (vec![], false);
        };
        let ns = |n: &Option<String>| n.clone().unwrap_or_else(|| self.id.namespace.clone());
        if let Some(per_port) = frontend
            .per_port
            .iter()
            .flatten()
            .find(|p| p.port == i32::from(port))
        {
            let Some(v) = &per_port.tls.validation else {
                return (vec![], false);
            };
            return (
                v.ca_certificate_refs
                    .iter()
                    .map(|r| (r.kind.clone(), ns(&r.namespace), r.name.clone()))
                    .collect(),
                v.mode == Some(GatewayTlsFrontendPerPortTlsValidationMode::AllowInsecureFallback),
            );
        }
        let Some(v) = &frontend.default.validation else {
            return (vec![], false);
        };
        (
            v.ca_certificate_refs
                .iter()
                .map(|r| (r.kind.clone(), ns(&r.namespace), r.name.clone()))
                .collect(),
            v.mode == Some(GatewayTlsFrontendDefaultValidationMode::AllowInsecureFallback),
        )
    }

    fn tls_secret(&mut self, ns: &str, name: &str) -> Result<String, String> {
        let Some(Resource::Secret(secret)) = self.index.find(Kind::Secret, ns, name) else {
            return Err(format!("Secret {ns}/{name} not found"));
        };
        let data = secret.data.clone().unwrap_or_default();
        let text = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .or_else(|| secret.string_data.as_ref().and_then(|s| s.get(k).cloned()))
        };
        let (Some(chain), Some(key)) = (text("tls.crt"), text("tls.key")) else {
            return Err(format!(
                "Secret {ns}/{name} needs tls.crt and tls.key (type kubernetes.io/tls)"
            ));
        };
        if !chain.contains("-----BEGIN CERTIFICATE-----") || !key.contains("PRIVATE KEY-----") {
            return Err(format!(
                "Secret {ns}/{name}: tls.crt and tls.key must be PEM"
            ));
        }
        let sds = format!("{ns}/{name}");
        self.secrets.insert(
            sds.clone(),
            TlsSecret {
                name: sds.clone(),
                material: SecretMaterial::Certificate {
                    chain: Arc::from(chain),
                    key: Arc::from(key),
                },
            },
        );
        Ok(sds)
    }

    fn ca_secret(&mut self, kind: &str, ns: &str, name: &str) -> Result<String, String> {
        let ca = match (
            kind,
            self.index.find(
                if kind == "Secret" {
                    Kind::Secret
                } else {
                    Kind::ConfigMap
                },
                ns,
                name,
            ),
        ) {
            ("ConfigMap", Some(Resource::ConfigMap(cm))) => {
                cm.data.as_ref().and_then(|d| d.get("ca.crt").cloned())
            }
            ("Secret", Some(Resource::Secret(s))) => s
                .data
                .as_ref()
                .and_then(|d| d.get("ca.crt"))
                .and_then(|b| String::from_utf8(b.0.clone()).ok()),
            ("ConfigMap" | "Secret", _) => return Err(format!("{kind} {ns}/{name} not found")),
            _ => {
                return Err(format!(
                    "caCertificateRef kind {kind} is not supported (ConfigMap or Secret with ca.crt)"
                ));
            }
        };
        let Some(ca) = ca.filter(|c| c.contains("-----BEGIN CERTIFICATE-----")) else {
            return Err(format!("{kind} {ns}/{name} has no PEM ca.crt"));
        };
        let sds = format!("{ns}/{name}/ca.crt");
        self.secrets.insert(
            sds.clone(),
            TlsSecret {
                name: sds.clone(),
                material: SecretMaterial::ValidationContext { ca: Arc::from(ca) },
            },
        );
        Ok(sds)
    }

    fn route_allowed(&self, gl: &GatewayListeners, route_ns: &str) -> bool {
        let from = gl
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
            .and_then(|n| n.from.clone())
            .unwrap_or(GatewayListenersAllowedRoutesNamespacesFrom::Same);
        match from {
            GatewayListenersAllowedRoutesNamespacesFrom::All => true,
            GatewayListenersAllowedRoutesNamespacesFrom::Same => route_ns == self.id.namespace,
            GatewayListenersAllowedRoutesNamespacesFrom::Selector => {
                let selector = gl
                    .allowed_routes
                    .as_ref()
                    .and_then(|a| a.namespaces.as_ref())
                    .and_then(|n| n.selector.as_ref())
                    .and_then(|s| s.match_labels.clone())
                    .unwrap_or_default();
                let labels = match self.index.find(Kind::Namespace, "", route_ns) {
                    Some(Resource::Namespace(n)) => n.metadata.labels.clone().unwrap_or_default(),
                    _ => BTreeMap::new(),
                };
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            }
        }
    }

    fn virtual_hosts_for(&mut self, gl: &GatewayListeners, port: u16) -> Vec<VirtualHost> {
        let https = gl.protocol == "HTTPS";
        let mut hosts: BTreeMap<String, Vec<(SortKey, Route)>> = BTreeMap::new();
        let routes: Vec<HttpRoute> = self
            .index
            .valid(Kind::HttpRoute)
            .filter_map(|r| match r {
                Resource::HttpRoute(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        for route in &routes {
            let route_ns = route.metadata.namespace.clone().unwrap_or_default();
            let route_name = route.metadata.name.clone().unwrap_or_default();
            let attaches = route.spec.parent_refs.iter().flatten().any(|p| {
                p.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
                    && p.kind.as_deref().unwrap_or("Gateway") == "Gateway"
                    && p.name == self.id.name
                    && p.namespace.as_deref().unwrap_or(&route_ns) == self.id.namespace
                    && p.section_name.as_deref().is_none_or(|s| s == gl.name)
                    && p.port.is_none_or(|p| p == i32::from(port))
            });
            if !attaches || !self.route_allowed(gl, &route_ns) {
                continue;
            }
            *self.attached.entry(gl.name.clone()).or_default() += 1;
            let route_hosts = route.spec.hostnames.clone().unwrap_or_default();
            let effective: Vec<String> = if route_hosts.is_empty() {
                vec![
                    gl.hostname
                        .clone()
                        .filter(|h| !h.is_empty())
                        .unwrap_or_else(|| "*".into()),
                ]
            } else {
                route_hosts
                    .iter()
                    .filter_map(|h| hostname_intersection(gl.hostname.as_deref(), h))
                    .collect()
            };
            let object = format!("HTTPRoute {route_ns}/{route_name}");
            let created = route.metadata.creation_timestamp.as_ref().map(|t| t.0);
            for (ri, rule) in route.spec.rules.iter().flatten().enumerate() {
                let (action, filters) = match crate::filters::rule_filters(rule) {
                    Ok(filters) if filters.redirect.is_some() => {
                        // A redirect answers by itself; backendRefs are not used.
                        (invalid_backend(), filters)
                    }
                    Ok(filters) => (self.rule_action(&object, &route_ns, rule), filters),
                    Err(message) => {
                        self.problem(&object, format!("rules[{ri}].{message}"));
                        (invalid_backend(), Default::default())
                    }
                };
                let default_match = [HttpRouteRulesMatches::default()];
                let matches: &[HttpRouteRulesMatches] = match rule.matches.as_deref() {
                    Some(m) if !m.is_empty() => m,
                    _ => &default_match,
                };
                for (mi, m) in matches.iter().enumerate() {
                    let Some(matcher) = route_match(m) else {
                        self.problem(
                            &object,
                            format!("rules[{ri}].matches[{mi}] has an empty path value"),
                        );
                        continue;
                    };
                    let key = SortKey::new(&matcher, created, &route_ns, &route_name, ri, mi);
                    let resolved =
                        crate::filters::route_redirect(&filters, &matcher.path, port, https)
                            .and_then(|redirect| {
                                Ok((
                                    redirect,
                                    crate::filters::route_rewrite(&filters, &matcher.path)?,
                                ))
                            });
                    let (action, rewrite) = match resolved {
                        Ok((Some(redirect), _)) => (RouteAction::Redirect(redirect), None),
                        Ok((None, rewrite)) => (action.clone(), rewrite),
                        Err(message) => {
                            self.problem(&object, format!("rules[{ri}].matches[{mi}]: {message}"));
                            (invalid_backend(), None)
                        }
                    };
                    let r = Route {
                        name: format!("{route_ns}/{route_name}/rule/{ri}/match/{mi}"),
                        matcher,
                        action,
                        headers: filters.headers.clone(),
                        rewrite,
                    };
                    for host in &effective {
                        hosts
                            .entry(host.clone())
                            .or_default()
                            .push((key.clone(), r.clone()));
                    }
                }
            }
        }
        let mut out: Vec<VirtualHost> = hosts
            .into_iter()
            .map(|(host, mut routes)| {
                routes.sort_by(|a, b| a.0.cmp(&b.0));
                VirtualHost {
                    name: host.clone(),
                    domains: vec![host],
                    routes: routes.into_iter().map(|(_, r)| r).collect(),
                }
            })
            .collect();
        out.extend(self.bound_service_hosts(&out));
        out
    }

    /// Routes for Services bound to this gateway with `istio.io/use-waypoint`.
    fn bound_service_hosts(&mut self, existing: &[VirtualHost]) -> Vec<VirtualHost> {
        let taken: BTreeSet<&String> = existing.iter().flat_map(|v| &v.domains).collect();
        let mut out = Vec::new();
        for (ns, name) in bound_services(self.index, &self.id) {
            let Some(Resource::Service(svc)) = self.index.find(Kind::Service, &ns, &name) else {
                continue;
            };
            let svc = svc.clone();
            let mut domains = vec![
                format!("{name}.{ns}.svc.cluster.local"),
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}"),
            ];
            if ns == self.id.namespace {
                domains.push(name.clone());
            }
            domains.retain(|d| !taken.contains(d));
            let ports: Vec<u16> = svc_ports(&svc);
            let mut routes = Vec::new();
            // A Host with an explicit port picks that Service port; without one, the first port.
            for p in &ports {
                let cluster = self.cluster(&ns, &name, *p);
                routes.push(Route {
                    name: format!("{ns}/{name}/port/{p}"),
                    matcher: RouteMatch {
                        headers: vec![HeaderMatch {
                            name: ":authority".into(),
                            value: format!(".*:{p}"),
                            regex: true,
                        }],
                        ..Default::default()
                    },
                    action: forward(cluster),
                    headers: Default::default(),
                    rewrite: None,
                });
            }
            if let Some(first) = ports.first() {
                let cluster = self.cluster(&ns, &name, *first);
                routes.push(Route {
                    name: format!("{ns}/{name}/default"),
                    matcher: RouteMatch::default(),
                    action: forward(cluster),
                    headers: Default::default(),
                    rewrite: None,
                });
            }
            if !routes.is_empty() && !domains.is_empty() {
                out.push(VirtualHost {
                    name: format!("{ns}/{name}"),
                    domains,
                    routes,
                });
            }
        }
        out
    }

    fn rule_action(
        &mut self,
        object: &str,
        route_ns: &str,
        rule: &wayguard_api::gateway_api::apis::standard::httproutes::HttpRouteRules,
    ) -> RouteAction {
        let mut clusters = Vec::new();
        for b in rule.backend_refs.iter().flatten() {
            let weight = b.weight.unwrap_or(1);
            if weight <= 0 {
                continue;
            }
            let ns = b.namespace.clone().unwrap_or_else(|| route_ns.to_string());
            if b.group.as_deref().is_some_and(|g| !g.is_empty())
                || b.kind.as_deref().unwrap_or("Service") != "Service"
            {
                self.problem(
                    object,
                    format!(
                        "backendRef {} is not a core Service; requests to it get 500",
                        b.name
                    ),
                );
                clusters.push(WeightedCluster {
                    cluster: String::new(),
                    weight: weight as u32,
                });
                continue;
            }
            let Some(port) = b.port.and_then(|p| u16::try_from(p).ok()) else {
                self.problem(
                    object,
                    format!("backendRef Service {ns}/{} needs a port", b.name),
                );
                clusters.push(WeightedCluster {
                    cluster: String::new(),
                    weight: weight as u32,
                });
                continue;
            };
            if !self
                .index
                .reference_allowed("HTTPRoute", route_ns, "Service", &ns, &b.name)
            {
                self.problem(object, format!("backendRef Service {ns}/{} is in another namespace and no ReferenceGrant allows it", b.name));
                clusters.push(WeightedCluster {
                    cluster: String::new(),
                    weight: weight as u32,
                });
                continue;
            }
            match self.index.find(Kind::Service, &ns, &b.name) {
                Some(Resource::Service(svc)) if svc_ports(svc).contains(&port) => {
                    clusters.push(WeightedCluster {
                        cluster: self.cluster(&ns, &b.name, port),
                        weight: weight as u32,
                    });
                }
                Some(_) => {
                    self.problem(
                        object,
                        format!("Service {ns}/{} has no port {port}", b.name),
                    );
                    clusters.push(WeightedCluster {
                        cluster: String::new(),
                        weight: weight as u32,
                    });
                }
                None => {
                    self.problem(
                        object,
                        format!(
                            "backendRef Service {ns}/{} not found; requests to it get 500",
                            b.name
                        ),
                    );
                    clusters.push(WeightedCluster {
                        cluster: String::new(),
                        weight: weight as u32,
                    });
                }
            }
        }
        // Gateway API: requests to invalid backends get 500; with weights, in proportion.
        if clusters.iter().all(|c| c.cluster.is_empty()) {
            return invalid_backend();
        }
        RouteAction::Forward(clusters)
    }

    /// Registers the cluster of a Service port with its endpoints, returning its name.
    fn cluster(&mut self, ns: &str, service: &str, port: u16) -> String {
        let name = cluster_name(ns, service, port);
        if self.clusters.contains_key(&name) {
            return name;
        }
        let Some(Resource::Service(svc)) = self.index.find(Kind::Service, ns, service) else {
            return name;
        };
        let svc_port = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|ps| ps.iter().find(|p| p.port == i32::from(port)));
        let port_name = svc_port.and_then(|p| p.name.clone()).unwrap_or_default();
        let http2 = svc_port
            .and_then(|p| p.app_protocol.as_deref())
            .is_some_and(|a| matches!(a, "kubernetes.io/h2c" | "grpc" | "http2" | "h2c"));
        let mut endpoints = BTreeSet::new();
        let mut dns = false;
        for r in self.index.valid(Kind::EndpointSlice) {
            let Resource::EndpointSlice(slice) = r else {
                continue;
            };
            if slice.metadata.namespace.as_deref() != Some(ns)
                || slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    .map(String::as_str)
                    != Some(service)
                || !matches!(slice.address_type.as_str(), "IPv4" | "IPv6" | "FQDN")
            {
                continue;
            }
            dns |= slice.address_type == "FQDN";
            let Some(target) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.clone().unwrap_or_default() == port_name)
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for ep in slice.endpoints.iter().flatten() {
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                for addr in &ep.addresses {
                    endpoints.insert((addr.clone(), target));
                }
            }
        }
        self.clusters.insert(
            name.clone(),
            Cluster {
                name: name.clone(),
                endpoints: endpoints.into_iter().collect(),
                http2,
                dns,
            },
        );
        name
    }
}

fn svc_ports(svc: &Service) -> Vec<u16> {
    let mut ports: Vec<u16> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP"))
        .filter_map(|p| u16::try_from(p.port).ok())
        .collect();
    ports.sort_unstable();
    ports
}

fn forward(cluster: String) -> RouteAction {
    RouteAction::Forward(vec![WeightedCluster { cluster, weight: 1 }])
}

fn invalid_backend() -> RouteAction {
    RouteAction::Direct {
        status: 500,
        body: "no valid backend for this route (see the HTTPRoute's problems in wayguard's /debug/status)\n".into(),
    }
}

fn merge_hosts(into: &mut Vec<VirtualHost>, hosts: Vec<VirtualHost>) {
    for h in hosts {
        match into.iter_mut().find(|v| v.domains == h.domains) {
            Some(v) => v.routes.extend(h.routes),
            None => into.push(h),
        }
    }
}

fn route_match(m: &HttpRouteRulesMatches) -> Option<RouteMatch> {
    let path = match &m.path {
        None => PathMatch::Prefix("/".into()),
        Some(p) => {
            let value = p.value.clone().unwrap_or_else(|| "/".into());
            if value.is_empty() {
                return None;
            }
            match p
                .r#type
                .clone()
                .unwrap_or(HttpRouteRulesMatchesPathType::PathPrefix)
            {
                HttpRouteRulesMatchesPathType::Exact => PathMatch::Exact(value),
                HttpRouteRulesMatchesPathType::PathPrefix => PathMatch::Prefix(value),
                HttpRouteRulesMatchesPathType::RegularExpression => PathMatch::Regex(value),
            }
        }
    };
    let headers = m
        .headers
        .iter()
        .flatten()
        .map(|h| HeaderMatch {
            name: h.name.to_ascii_lowercase(),
            value: h.value.clone(),
            regex: h.r#type == Some(HttpRouteRulesMatchesHeadersType::RegularExpression),
        })
        .collect();
    let query = m
        .query_params
        .iter()
        .flatten()
        .map(|q| HeaderMatch {
            name: q.name.clone(),
            value: q.value.clone(),
            regex: q.r#type == Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression),
        })
        .collect();
    let method = m.method.as_ref().and_then(|meth| {
        serde_json::to_value(meth)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    });
    Some(RouteMatch {
        path,
        headers,
        query,
        method,
    })
}

/// Gateway API route precedence: exact path, then longest prefix, then regex; then method,
/// header and query match counts; then oldest route, namespace/name, rule and match order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SortKey {
    path_rank: (u8, std::cmp::Reverse<usize>),
    method: std::cmp::Reverse<bool>,
    headers: std::cmp::Reverse<usize>,
    query: std::cmp::Reverse<usize>,
    created: Option<k8s_openapi::jiff::Timestamp>,
    namespace: String,
    name: String,
    rule: usize,
    matcher: usize,
}

impl SortKey {
    fn new(
        m: &RouteMatch,
        created: Option<k8s_openapi::jiff::Timestamp>,
        ns: &str,
        name: &str,
        rule: usize,
        matcher: usize,
    ) -> Self {
        let path_rank = match &m.path {
            PathMatch::Exact(p) => (0, std::cmp::Reverse(p.len())),
            PathMatch::Prefix(p) => (1, std::cmp::Reverse(p.len())),
            PathMatch::Regex(p) => (2, std::cmp::Reverse(p.len())),
        };
        SortKey {
            path_rank,
            method: std::cmp::Reverse(m.method.is_some()),
            headers: std::cmp::Reverse(m.headers.len()),
            query: std::cmp::Reverse(m.query.len()),
            created,
            namespace: ns.to_string(),
            name: name.to_string(),
            rule,
            matcher,
        }
    }
}

impl Index {
    /// Secrets and ConfigMaps that wayguard's gateways and AuthConfigs reference: the only ones a
    /// Kubernetes source needs to watch (least privilege, and no cluster-wide Secret cache).
    pub fn referenced_objects(&self) -> BTreeSet<ObjectRef> {
        let mut out = BTreeSet::new();
        out.insert(ObjectRef {
            kind: Kind::ConfigMap,
            namespace: self.config.root_namespace.clone(),
            name: mesh::MESH_CONFIGMAP.to_string(),
        });
        let obj = |kind: Kind, namespace: &str, name: &str| ObjectRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        for id in self.gateways() {
            let Some(gw) = self.gateway(&id) else {
                continue;
            };
            for l in &gw.spec.listeners {
                for r in l
                    .tls
                    .iter()
                    .flat_map(|t| t.certificate_refs.iter().flatten())
                {
                    if r.kind.as_deref().unwrap_or("Secret") == "Secret" {
                        out.insert(obj(
                            Kind::Secret,
                            r.namespace.as_deref().unwrap_or(&id.namespace),
                            &r.name,
                        ));
                    }
                }
            }
            if let Some(frontend) = gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) {
                let default = frontend.default.validation.iter().flat_map(|v| {
                    v.ca_certificate_refs
                        .iter()
                        .map(|r| (r.kind.clone(), r.namespace.clone(), r.name.clone()))
                });
                let per_port = frontend.per_port.iter().flatten().flat_map(|p| {
                    p.tls.validation.iter().flat_map(|v| {
                        v.ca_certificate_refs
                            .iter()
                            .map(|r| (r.kind.clone(), r.namespace.clone(), r.name.clone()))
                    })
                });
                for (kind, ns, name) in default.chain(per_port) {
                    let kind = if kind == "Secret" {
                        Kind::Secret
                    } else {
                        Kind::ConfigMap
                    };
                    out.insert(obj(kind, ns.as_deref().unwrap_or(&id.namespace), &name));
                }
            }
        }
        for r in self.valid(Kind::AuthConfig) {
            let Resource::AuthConfig(ac) = r else {
                continue;
            };
            let ns = ac.metadata.namespace.clone().unwrap_or_default();
            for step in &ac.spec.configs {
                let Some(oidc) = step
                    .oauth2
                    .as_ref()
                    .and_then(|o| o.oidc_authorization_code.as_ref())
                else {
                    continue;
                };
                let refs = [
                    oidc.client_secret_ref.as_ref(),
                    oidc.client_authentication
                        .as_ref()
                        .and_then(|c| c.client_secret.as_ref())
                        .and_then(|c| c.client_secret_ref.as_ref()),
                    oidc.client_authentication
                        .as_ref()
                        .and_then(|c| c.private_key_jwt.as_ref())
                        .and_then(|p| p.signing_key_ref.as_ref()),
                    oidc.session
                        .as_ref()
                        .and_then(|s| s.cipher_config.as_ref())
                        .and_then(|c| c.key_ref.as_ref()),
                ];
                for r in refs.into_iter().flatten() {
                    out.insert(obj(
                        Kind::Secret,
                        r.namespace.as_deref().unwrap_or(&ns),
                        &r.name,
                    ));
                }
            }
        }
        out
    }
}
