//! Validation of every wayguard-served kind, in one place.
//!
//! It rejects what istiod (`pkg/config/validation/validation.go`, `pkg/config/security/security.go`)
//! and the upstream CRD CEL rules reject, with messages kept close to Istio's, plus checks Istio
//! misses (shared/reference/SEMANTICS.md §4-§6). A [`Report`] carries errors (the resource is
//! rejected) and warnings (printed, never failing).

mod istio;
mod solo;
mod values;

use std::fmt;

pub use values::{PathTemplateError, check_port, parse_cidr_or_ip, strip_spiffe_prefix};

use crate::resource::Resource;

/// One problem, located by a field path such as `spec.rules[0].from[1].source.principals[0]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Issue {
    /// Field path; empty when the whole object is concerned.
    pub path: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The outcome of validating one resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Problems that reject the resource.
    pub errors: Vec<Issue>,
    /// Problems worth knowing that do not reject it.
    pub warnings: Vec<Issue>,
}

impl Report {
    /// Whether the resource is valid (it may still have warnings).
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors joined into one message, for a status condition.
    pub fn error_message(&self) -> String {
        self.errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Validates one resource. Kinds wayguard only reads (Services, Secrets, ...) are not validated
/// here beyond decoding; problems with them surface where they are used.
pub fn validate(resource: &Resource) -> Report {
    let mut report = Report::default();
    let meta = resource.meta();
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    match resource {
        Resource::RequestAuthentication(ra) => {
            istio::request_authentication(&mut report, namespace, name, ra);
        }
        Resource::AuthorizationPolicy(ap) => {
            istio::authorization_policy(&mut report, namespace, name, ap);
        }
        Resource::AuthConfig(ac) => solo::auth_config(&mut report, &ac.spec),
        Resource::EnterpriseAgentgatewayPolicy(p) => solo::enterprise_policy(&mut report, &p.spec),
        Resource::AgentgatewayBackend(b) => solo::backend(&mut report, &b.spec),
        Resource::HttpRoute(route) => http_route(&mut report, route),
        Resource::GatewayClass(_)
        | Resource::Gateway(_)
        | Resource::ReferenceGrant(_)
        | Resource::Service(_)
        | Resource::EndpointSlice(_)
        | Resource::Secret(_)
        | Resource::ConfigMap(_)
        | Resource::Namespace(_) => {}
    }
    report
}

/// An HTTPRoute filter type as written in YAML (`URLRewrite`, `CORS`, ...), for messages.
pub fn filter_type_name(
    t: &crate::gateway_api::apis::standard::httproutes::HttpRouteRulesFiltersType,
) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{t:?}"))
}

/// HTTPRoute features wayguard does not program: warned here so that `wayguard validate` shows
/// them before the route answers 500 (the route itself stays valid Gateway API).
fn http_route(
    report: &mut Report,
    route: &crate::gateway_api::apis::standard::httproutes::HttpRoute,
) {
    use crate::gateway_api::apis::standard::httproutes::HttpRouteRulesFiltersType as Type;
    for (ri, rule) in route.spec.rules.iter().flatten().enumerate() {
        for (fi, filter) in rule.filters.iter().flatten().enumerate() {
            if matches!(
                filter.r#type,
                Type::RequestMirror | Type::Cors | Type::ExtensionRef
            ) {
                report.warn(
                    format!("spec.rules[{ri}].filters[{fi}]"),
                    format!(
                        "{} filters are not supported by wayguard; requests to this rule will get 500",
                        filter_type_name(&filter.r#type)
                    ),
                );
            }
        }
        for (bi, backend) in rule.backend_refs.iter().flatten().enumerate() {
            if backend.filters.as_ref().is_some_and(|f| !f.is_empty()) {
                report.warn(
                    format!("spec.rules[{ri}].backendRefs[{bi}].filters"),
                    "backendRef filters are not supported by wayguard; requests to this rule will get 500 (put the filters on the rule)",
                );
            }
        }
    }
}

/// Whether a string still contains an unexpanded `${VAR}` placeholder (as shell-templated manifests do).
pub fn has_placeholder(value: &str) -> bool {
    value
        .find("${")
        .is_some_and(|start| value[start..].contains('}'))
}

#[cfg(test)]
mod tests;
