//! One AuthorizationPolicy rule -> one Envoy RBAC `Policy`
//! (istio/istio `pilot/pkg/security/authz/model/{model,generator}.go`, SEMANTICS.md §2.2-§2.6).
//!
//! Differences from istiod, on purpose:
//! - JWT payload matchers use `sourced_metadata` instead of the `metadata` field Envoy 1.40
//!   deprecates (same decisions, no deprecation warning).
//! - Peer identities are always matched with `authenticated` (the client certificate's URI SAN),
//!   since stock Envoy has no `io.istio.peer_principal` filter state.

use envoy_types::pb::envoy::config::core::v3::{CidrRange, TypedExtensionConfig};
use envoy_types::pb::envoy::config::rbac::v3::{
    MetadataSource, Permission, Policy, Principal, SourcedMetadata, permission, principal,
};
use envoy_types::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{MetadataMatcher, StringMatcher};
use envoy_types::pb::google::protobuf::UInt32Value;
use wayguard_core::attr::{
    extract_name_in_brackets, extract_name_in_nested_brackets, split_request_principal,
};
use wayguard_core::authz::{Action, Rule};

use crate::any::to_any;
use crate::matcher as m;

const SPIFFE: &str = "spiffe://";

/// Which side of an RBAC policy an attribute lands on, and how it is generated.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Gen {
    DestIp,
    DestPort,
    ConnSni,
    EnvoyFilter,
    SrcIp,
    RemoteIp,
    SrcNamespace,
    SrcTrustDomain,
    SrcServiceAccount,
    SrcPrincipal,
    RequestPrincipal,
    RequestAudiences,
    RequestPresenter,
    RequestHeader,
    RequestClaims,
    Host,
    Path,
    Method,
}

impl Gen {
    /// Generators that turn all values into one matcher (the OR is inside it).
    fn extended(&self) -> bool {
        matches!(
            self,
            Gen::EnvoyFilter
                | Gen::RequestPrincipal
                | Gen::RequestAudiences
                | Gen::RequestPresenter
                | Gen::RequestClaims
        )
    }

    fn http_only(&self) -> bool {
        matches!(
            self,
            Gen::RequestPrincipal
                | Gen::RequestAudiences
                | Gen::RequestPresenter
                | Gen::RequestHeader
                | Gen::RequestClaims
                | Gen::Host
                | Gen::Path
                | Gen::Method
        )
    }
}

#[derive(Clone, Debug)]
struct Entry {
    key: String,
    values: Vec<String>,
    not_values: Vec<String>,
    generator: Gen,
}

/// The intermediate form of a rule: one AND-list per `to` entry and per `from` entry.
#[derive(Debug)]
pub(crate) struct Model {
    permissions: Vec<Vec<Entry>>,
    principals: Vec<Vec<Entry>>,
}

fn entry(key: &str, values: &[String], not_values: &[String], generator: Gen) -> Option<Entry> {
    (!values.is_empty() || !not_values.is_empty()).then(|| Entry {
        key: key.to_string(),
        values: values.to_vec(),
        not_values: not_values.to_vec(),
        generator,
    })
}

impl Model {
    /// Builds the model; an unknown `when` key fails the whole rule (it is then skipped).
    pub(crate) fn new(rule: &Rule) -> Result<Model, String> {
        let mut base_permission = Vec::new();
        let mut base_principal = Vec::new();
        for when in &rule.when {
            let k = when.key.as_str();
            let (generator, permission_side) = match k {
                "destination.ip" => (Gen::DestIp, true),
                "destination.port" => (Gen::DestPort, true),
                "connection.sni" => (Gen::ConnSni, true),
                _ if k.starts_with("experimental.envoy.filters.") => (Gen::EnvoyFilter, true),
                "source.ip" => (Gen::SrcIp, false),
                "remote.ip" => (Gen::RemoteIp, false),
                "source.namespace" => (Gen::SrcNamespace, false),
                "source.trustDomain" => (Gen::SrcTrustDomain, false),
                "source.serviceAccount" => (Gen::SrcServiceAccount, false),
                "source.principal" => (Gen::SrcPrincipal, false),
                "request.auth.principal" => (Gen::RequestPrincipal, false),
                "request.auth.audiences" => (Gen::RequestAudiences, false),
                "request.auth.presenter" => (Gen::RequestPresenter, false),
                _ if k.starts_with("request.headers") => (Gen::RequestHeader, false),
                _ if k.starts_with("request.auth.claims") => (Gen::RequestClaims, false),
                _ => return Err(format!("unknown attribute {k}")),
            };
            if let Some(e) = entry(k, &when.values, &when.not_values, generator) {
                if permission_side {
                    base_permission.push(e);
                } else {
                    base_principal.push(e);
                }
            }
        }
        let mut principals = Vec::new();
        for from in &rule.from {
            let s = from;
            let mut list: Vec<Entry> = [
                entry(
                    "source.principal",
                    &s.principals,
                    &s.not_principals,
                    Gen::SrcPrincipal,
                ),
                entry(
                    "request.auth.principal",
                    &s.request_principals,
                    &s.not_request_principals,
                    Gen::RequestPrincipal,
                ),
                entry(
                    "source.serviceAccount",
                    &s.service_accounts,
                    &s.not_service_accounts,
                    Gen::SrcServiceAccount,
                ),
                entry(
                    "source.trustDomain",
                    &s.trust_domains,
                    &s.not_trust_domains,
                    Gen::SrcTrustDomain,
                ),
                entry(
                    "source.namespace",
                    &s.namespaces,
                    &s.not_namespaces,
                    Gen::SrcNamespace,
                ),
                entry(
                    "remote.ip",
                    &s.remote_ip_blocks,
                    &s.not_remote_ip_blocks,
                    Gen::RemoteIp,
                ),
                entry("source.ip", &s.ip_blocks, &s.not_ip_blocks, Gen::SrcIp),
            ]
            .into_iter()
            .flatten()
            .collect();
            list.extend(base_principal.iter().cloned());
            principals.push(list);
        }
        if rule.from.is_empty() {
            principals.push(base_principal);
        }
        let mut permissions = Vec::new();
        for o in &rule.to {
            let mut list: Vec<Entry> = [
                entry(":authority", &o.hosts, &o.not_hosts, Gen::Host),
                entry(":method", &o.methods, &o.not_methods, Gen::Method),
                entry("path-matcher", &o.paths, &o.not_paths, Gen::Path),
                entry("destination.port", &o.ports, &o.not_ports, Gen::DestPort),
            ]
            .into_iter()
            .flatten()
            .collect();
            list.extend(base_permission.iter().cloned());
            permissions.push(list);
        }
        if rule.to.is_empty() {
            permissions.push(base_permission);
        }
        Ok(Model {
            permissions,
            principals,
        })
    }

    /// Generates the RBAC policy. `policy_namespace` resolves `serviceAccounts` without a namespace.
    /// For ALLOW a generation error fails the rule (a narrower allow); for DENY/AUDIT the failing
    /// attribute is dropped (a wider deny), as istiod does.
    pub(crate) fn generate(
        &self,
        for_tcp: bool,
        action: Action,
        policy_namespace: &str,
    ) -> Result<Policy, String> {
        let mut permissions = Vec::new();
        for list in &self.permissions {
            let mut and = Vec::new();
            for e in list {
                and.extend(e.permissions(for_tcp, action, policy_namespace)?);
            }
            if and.is_empty() {
                and.push(permission_any());
            }
            permissions.push(permission_and(and));
        }
        let mut principals = Vec::new();
        for list in &self.principals {
            let mut and = Vec::new();
            for e in list {
                and.extend(e.principals(for_tcp, action, policy_namespace)?);
            }
            if and.is_empty() {
                and.push(principal_any());
            }
            principals.push(principal_and(and));
        }
        Ok(Policy {
            permissions,
            principals,
            ..Default::default()
        })
    }
}

/// ALLOW propagates an error (the rule is skipped); DENY/AUDIT ignore it (the value is dropped).
fn check<T>(action: Action, result: Result<Option<T>, String>) -> Result<Option<T>, String> {
    match result {
        Err(e) if action == Action::Allow => Err(e),
        Err(_) => Ok(None),
        ok => ok,
    }
}

impl Entry {
    fn permissions(
        &self,
        for_tcp: bool,
        action: Action,
        ns: &str,
    ) -> Result<Vec<Permission>, String> {
        let mut out = Vec::new();
        if self.generator.extended() {
            if !self.values.is_empty()
                && let Some(p) = check(action, self.extended_permission(&self.values, for_tcp))?
            {
                out.push(p);
            }
            if !self.not_values.is_empty()
                && let Some(p) = check(action, self.extended_permission(&self.not_values, for_tcp))?
            {
                out.push(permission_not(p));
            }
            return Ok(out);
        }
        let mut or = Vec::new();
        for v in &self.values {
            if let Some(p) = check(action, self.permission(v, for_tcp, ns))? {
                or.push(p);
            }
        }
        if !or.is_empty() {
            out.push(permission_or(or));
        }
        let mut or = Vec::new();
        for v in &self.not_values {
            if let Some(p) = check(action, self.permission(v, for_tcp, ns))? {
                or.push(p);
            }
        }
        if !or.is_empty() {
            out.push(permission_not(permission_or(or)));
        }
        Ok(out)
    }

    fn principals(
        &self,
        for_tcp: bool,
        action: Action,
        ns: &str,
    ) -> Result<Vec<Principal>, String> {
        let mut out = Vec::new();
        if self.generator.extended() {
            if !self.values.is_empty()
                && let Some(p) = check(action, self.extended_principal(&self.values, for_tcp))?
            {
                out.push(p);
            }
            if !self.not_values.is_empty()
                && let Some(p) = check(action, self.extended_principal(&self.not_values, for_tcp))?
            {
                out.push(principal_not(p));
            }
            return Ok(out);
        }
        let mut or = Vec::new();
        for v in &self.values {
            if let Some(p) = check(action, self.principal(v, for_tcp, ns))? {
                or.push(p);
            }
        }
        if !or.is_empty() {
            out.push(principal_or(or));
        }
        let mut or = Vec::new();
        for v in &self.not_values {
            if let Some(p) = check(action, self.principal(v, for_tcp, ns))? {
                or.push(p);
            }
        }
        if !or.is_empty() {
            out.push(principal_not(principal_or(or)));
        }
        Ok(out)
    }

    fn http_only(&self, for_tcp: bool) -> Result<(), String> {
        if for_tcp && self.generator.http_only() {
            Err(format!("{:?} is HTTP only", self.key))
        } else {
            Ok(())
        }
    }

    fn permission(&self, v: &str, for_tcp: bool, _ns: &str) -> Result<Option<Permission>, String> {
        self.http_only(for_tcp)?;
        let rule = match self.generator {
            Gen::DestIp => permission::Rule::DestinationIp(cidr(v)?),
            Gen::DestPort => permission::Rule::DestinationPort(port(v)?),
            Gen::ConnSni => permission::Rule::RequestedServerName(m::string_matcher(v)),
            Gen::Host => permission::Rule::Header(m::host(":authority", v)),
            Gen::Method => permission::Rule::Header(m::header(":method", v)),
            Gen::Path if v.contains("{*}") || v.contains("{**}") => {
                let template = v.replace("{**}", "**").replace("{*}", "*");
                permission::Rule::UriTemplate(TypedExtensionConfig {
                    name: "uri-template".into(),
                    typed_config: Some(to_any(&UriTemplateMatchConfig {
                        path_template: template,
                    })),
                })
            }
            Gen::Path => permission::Rule::UrlPath(m::path(v)),
            _ => return Err(format!("{} is not a permission attribute", self.key)),
        };
        Ok(Some(Permission { rule: Some(rule) }))
    }

    fn extended_permission(
        &self,
        values: &[String],
        for_tcp: bool,
    ) -> Result<Option<Permission>, String> {
        self.http_only(for_tcp)?;
        if self.generator != Gen::EnvoyFilter {
            return Err(format!("{} is not a permission attribute", self.key));
        }
        // "experimental.envoy.filters.a.b[c]" -> filter "envoy.filters.a.b", key "c".
        let trimmed = self
            .key
            .trim_start_matches("experimental.")
            .trim_end_matches(']');
        let Some((filter, key)) = trimmed.split_once('[') else {
            return Err(format!("invalid key: {}", self.key));
        };
        let matchers = values
            .iter()
            .map(
                |v| match v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                    Some(inner) => m::value_list_one_of(m::value_string(m::string_matcher(inner))),
                    None => m::value_string(m::string_matcher(v)),
                },
            )
            .collect();
        let meta = m::metadata(filter, &[key], m::value_or(matchers));
        Ok(Some(Permission {
            rule: Some(permission::Rule::SourcedMetadata(sourced(meta))),
        }))
    }

    fn principal(&self, v: &str, for_tcp: bool, ns: &str) -> Result<Option<Principal>, String> {
        self.http_only(for_tcp)?;
        let id = match self.generator {
            Gen::SrcIp => principal::Identifier::DirectRemoteIp(cidr(v)?),
            Gen::RemoteIp => principal::Identifier::RemoteIp(cidr(v)?),
            Gen::SrcNamespace => {
                let parts: Vec<String> = v.split('*').map(m::quote_meta).collect();
                authenticated(m::regex(&format!(".*/ns/{}/.*", parts.join(".*"))))
            }
            Gen::SrcServiceAccount => {
                let (sa_ns, sa) = v.split_once('/').unwrap_or((ns, v));
                authenticated(m::regex(&format!(
                    "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
                    m::quote_meta(sa_ns),
                    m::quote_meta(sa)
                )))
            }
            Gen::SrcTrustDomain => authenticated(if v == "*" {
                m::prefix(SPIFFE, false)
            } else if !v.contains('*') {
                m::prefix(&format!("{SPIFFE}{v}/"), false)
            } else {
                let (pre, suf) = v.split_once('*').unwrap_or((v, ""));
                m::regex(&format!(
                    "spiffe://{}[^/]*{}/.*",
                    m::quote_meta(pre),
                    m::quote_meta(suf)
                ))
            }),
            Gen::SrcPrincipal => authenticated(m::string_with_prefix(v, SPIFFE)),
            Gen::RequestHeader => {
                let name =
                    extract_name_in_brackets(self.key.trim_start_matches("request.headers"))?;
                principal::Identifier::Header(m::header(name, v))
            }
            _ => return Err(format!("{} is not a principal attribute", self.key)),
        };
        Ok(Some(Principal {
            identifier: Some(id),
        }))
    }

    fn extended_principal(
        &self,
        values: &[String],
        for_tcp: bool,
    ) -> Result<Option<Principal>, String> {
        self.http_only(for_tcp)?;
        let meta = |mm: MetadataMatcher| Principal {
            identifier: Some(principal::Identifier::SourcedMetadata(sourced(mm))),
        };
        match self.generator {
            Gen::RequestPrincipal => {
                let mut or: Vec<Principal> = values
                    .iter()
                    .map(|v| {
                        let (iss, sub) = request_principal_matchers(v);
                        principal_and(vec![
                            meta(m::jwt_claim_string("iss", iss)),
                            meta(m::jwt_claim_string("sub", sub)),
                        ])
                    })
                    .collect();
                Ok(match or.len() {
                    0 => None,
                    1 => Some(or.remove(0)),
                    _ => Some(principal_or(or)),
                })
            }
            Gen::RequestAudiences => Ok(Some(meta(m::jwt_claims(
                &["aud".into()],
                m::string_or(values),
            )))),
            Gen::RequestPresenter => Ok(Some(meta(m::jwt_claims(
                &["azp".into()],
                m::string_or(values),
            )))),
            Gen::RequestClaims => {
                let claims = extract_name_in_nested_brackets(
                    self.key.trim_start_matches("request.auth.claims"),
                )?;
                Ok(Some(meta(m::jwt_claims(&claims, m::string_or(values)))))
            }
            _ => Err(format!("{} is not a principal attribute", self.key)),
        }
    }
}

/// The iss/sub matchers of a request principal (SEMANTICS.md §2.4 table).
fn request_principal_matchers(value: &str) -> (StringMatcher, StringMatcher) {
    let (iss, sub, found) = split_request_principal(value);
    if value == "*" {
        (m::any_non_empty(), m::any_non_empty())
    } else if value.starts_with('*') {
        if found {
            let iss_m = if iss == "*" {
                m::any_non_empty()
            } else {
                m::suffix(iss.trim_start_matches('*'), false)
            };
            (iss_m, m::exact(sub, false))
        } else {
            (
                m::any_non_empty(),
                m::suffix(value.trim_start_matches('*'), false),
            )
        }
    } else if value.ends_with('*') {
        if found {
            let sub_m = if sub == "*" {
                m::any_non_empty()
            } else {
                m::prefix(sub.trim_end_matches('*'), false)
            };
            (m::exact(iss, false), sub_m)
        } else {
            (
                m::prefix(value.trim_end_matches('*'), false),
                m::any_non_empty(),
            )
        }
    } else {
        (m::exact(iss, false), m::exact(sub, false))
    }
}

fn sourced(metadata_matcher: MetadataMatcher) -> SourcedMetadata {
    SourcedMetadata {
        metadata_matcher: Some(metadata_matcher),
        metadata_source: MetadataSource::Dynamic as i32,
    }
}

fn authenticated(name: StringMatcher) -> principal::Identifier {
    principal::Identifier::Authenticated(principal::Authenticated {
        principal_name: Some(name),
    })
}

fn cidr(v: &str) -> Result<CidrRange, String> {
    let net: ipnet::IpNet = if v.contains('/') {
        v.parse().map_err(|e| format!("invalid CIDR {v}: {e}"))?
    } else {
        v.parse::<std::net::IpAddr>()
            .map(ipnet::IpNet::from)
            .map_err(|e| format!("invalid IP {v}: {e}"))?
    };
    Ok(CidrRange {
        address_prefix: net.addr().to_string(),
        prefix_len: Some(UInt32Value {
            value: u32::from(net.prefix_len()),
        }),
    })
}

fn port(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(p) if p <= 65535 => Ok(p),
        _ => Err(format!("invalid port {v}")),
    }
}

pub(crate) fn permission_any() -> Permission {
    Permission {
        rule: Some(permission::Rule::Any(true)),
    }
}

fn permission_and(rules: Vec<Permission>) -> Permission {
    Permission {
        rule: Some(permission::Rule::AndRules(permission::Set { rules })),
    }
}

fn permission_or(rules: Vec<Permission>) -> Permission {
    Permission {
        rule: Some(permission::Rule::OrRules(permission::Set { rules })),
    }
}

pub(crate) fn permission_not(p: Permission) -> Permission {
    Permission {
        rule: Some(permission::Rule::NotRule(Box::new(p))),
    }
}

pub(crate) fn principal_any() -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Any(true)),
    }
}

fn principal_and(ids: Vec<Principal>) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::AndIds(principal::Set { ids })),
    }
}

fn principal_or(ids: Vec<Principal>) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::OrIds(principal::Set { ids })),
    }
}

pub(crate) fn principal_not(p: Principal) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::NotId(Box::new(p))),
    }
}
