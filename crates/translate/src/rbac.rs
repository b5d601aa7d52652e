//! AuthorizationPolicies -> RBAC (and CUSTOM ext_authz) HTTP filters
//! (istio/istio `pilot/pkg/security/authz/builder/{builder,extauthz}.go`, SEMANTICS.md §2.1, §2.7).

use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::envoy::config::core::v3::{
    ApiVersion, GrpcService, HttpUri, grpc_service, http_uri,
};
use envoy_types::pb::envoy::config::rbac::v3::{Policy, Rbac as RbacRules, rbac};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    AuthorizationResponse, ExtAuthz, HttpService, ext_authz,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{ListStringMatcher, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use wayguard_core::authz::{Action, AuthzPolicy, ExtAuthzProvider};

use crate::any::to_any;
use crate::matcher as m;
use crate::rbac_model::{Model, permission_any, permission_not, principal_any, principal_not};
use crate::{Diagnostic, names};

const SHADOW_ALLOW_PREFIX: &str = "istio_dry_run_allow_";
const SHADOW_DENY_PREFIX: &str = "istio_dry_run_deny_";
const EXT_AUTHZ_SHADOW_PREFIX: &str = "istio_ext_authz_";
const EXT_AUTHZ_MATCH_PREFIX: &str = "istio-ext-authz";
const BAD_CUSTOM_SUFFIX: &str = "-deny-due-to-bad-CUSTOM-action";

/// ALLOW with no rules: matches nothing, so the ALLOW filter denies everything.
fn match_never() -> Policy {
    Policy {
        permissions: vec![permission_not(permission_any())],
        principals: vec![principal_not(principal_any())],
        ..Default::default()
    }
}

fn rbac_action(action: Action) -> rbac::Action {
    match action {
        Action::Allow => rbac::Action::Allow,
        Action::Audit => rbac::Action::Log,
        Action::Deny | Action::Custom => rbac::Action::Deny,
    }
}

/// Istio's policy key `ns[<ns>]-policy[<name>]-rule[<i>]`.
fn policy_key(policy: &AuthzPolicy, rule: usize, provider: Option<&str>) -> String {
    let prefix = provider
        .map(|p| format!("{EXT_AUTHZ_MATCH_PREFIX}-{p}-"))
        .unwrap_or_default();
    format!(
        "{prefix}ns[{}]-policy[{}]-rule[{rule}]",
        policy.namespace, policy.name
    )
}

/// Generates the RBAC policies of `policies` into `enforce` / `shadow` (dry-run) maps.
fn build_policies(
    policies: &[&AuthzPolicy],
    action: Action,
    for_tcp: bool,
    provider: Option<&str>,
    diagnostics: &mut Vec<Diagnostic>,
) -> (
    BTreeMap<String, Policy>,
    BTreeMap<String, Policy>,
    bool,
    bool,
) {
    let mut enforce = BTreeMap::new();
    let mut shadow = BTreeMap::new();
    let (mut has_enforce, mut has_shadow) = (false, false);
    for policy in policies {
        let target = if policy.dry_run {
            has_shadow = true;
            &mut shadow
        } else {
            has_enforce = true;
            &mut enforce
        };
        if policy.rules.is_empty() {
            target.insert(policy_key(policy, 0, provider), match_never());
            continue;
        }
        for (i, rule) in policy.rules.iter().enumerate() {
            let key = policy_key(policy, i, provider);
            let generated = Model::new(rule).and_then(|model| {
                let evaluation_action = if action == Action::Custom {
                    Action::Deny
                } else {
                    action
                };
                model.generate(for_tcp, evaluation_action, &policy.namespace)
            });
            match generated {
                Ok(p) => {
                    target.insert(key, p);
                }
                Err(e) => diagnostics.push(Diagnostic {
                    namespace: policy.namespace.clone(),
                    name: policy.name.clone(),
                    message: format!("rule {i} skipped: {e}"),
                }),
            }
        }
    }
    (enforce, shadow, has_enforce, has_shadow)
}

fn rules(action: Action, policies: BTreeMap<String, Policy>) -> RbacRules {
    RbacRules {
        action: rbac_action(action) as i32,
        policies: policies.into_iter().collect::<HashMap<_, _>>(),
        ..Default::default()
    }
}

fn http_filter(name: &str, any: envoy_types::pb::google::protobuf::Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any)),
        ..Default::default()
    }
}

/// The RBAC filter config of one local action (AUDIT, DENY or ALLOW), when policies of that
/// action exist.
pub(crate) fn local_filter(
    policies: &[AuthzPolicy],
    action: Action,
    for_tcp: bool,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<RbacFilter> {
    let selected: Vec<&AuthzPolicy> = policies.iter().filter(|p| p.action == action).collect();
    if selected.is_empty() {
        return None;
    }
    let (enforce, shadow, has_enforce, has_shadow) =
        build_policies(&selected, action, for_tcp, None, diagnostics);
    let shadow_prefix = match (has_shadow, action) {
        (true, Action::Deny) => SHADOW_DENY_PREFIX,
        (true, Action::Allow) => SHADOW_ALLOW_PREFIX,
        _ => "",
    };
    Some(RbacFilter {
        rules: has_enforce.then(|| rules(action, enforce)),
        shadow_rules: has_shadow.then(|| rules(action, shadow)),
        shadow_rules_stat_prefix: shadow_prefix.to_string(),
        ..Default::default()
    })
}

pub(crate) fn http_filter_of(
    name: &str,
    any: envoy_types::pb::google::protobuf::Any,
) -> HttpFilter {
    http_filter(name, any)
}

/// The CUSTOM filters: per provider (sorted by name), an RBAC filter whose shadow rules mark
/// matching requests and an ext_authz filter enabled only for them. A provider that is unknown
/// or invalid gets a DENY filter over the same rules instead: CUSTOM fails closed.
///
/// Unlike istiod (which needs `PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS`), several providers
/// per gateway are supported; the enable matcher is `istio-ext-authz-<provider>-ns[` so that a
/// provider named `a` is not triggered by the policies of a provider named `ab`.
pub(crate) fn custom_filters(
    policies: &[AuthzPolicy],
    providers: &BTreeMap<String, ExtAuthzProvider>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<HttpFilter> {
    let mut by_provider: BTreeMap<&str, Vec<&AuthzPolicy>> = BTreeMap::new();
    for p in policies.iter().filter(|p| p.action == Action::Custom) {
        by_provider
            .entry(p.provider.as_deref().unwrap_or_default())
            .or_default()
            .push(p);
    }
    let mut filters = Vec::new();
    for (provider, selected) in by_provider {
        let (enforce, shadow, _, _) = build_policies(
            &selected,
            Action::Custom,
            false,
            Some(provider),
            diagnostics,
        );
        let Some(config) = providers.get(provider) else {
            for p in &selected {
                diagnostics.push(Diagnostic {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    message: format!(
                        "CUSTOM provider {provider:?} is not defined; requests matching this policy are denied until it is"
                    ),
                });
            }
            let denied = enforce
                .into_iter()
                .map(|(k, v)| (format!("{k}{BAD_CUSTOM_SUFFIX}"), v))
                .collect();
            let filter = RbacFilter {
                rules: Some(rules(Action::Deny, denied)),
                ..Default::default()
            };
            filters.push(http_filter(names::RBAC, to_any(&filter)));
            continue;
        };
        let filter = RbacFilter {
            // Dry-run CUSTOM policies go in `rules` (istiod's documented limitation): they mark
            // requests without sending them to the authorizer.
            rules: (!shadow.is_empty()).then(|| rules(Action::Deny, shadow)),
            shadow_rules: Some(rules(Action::Deny, enforce)),
            shadow_rules_stat_prefix: EXT_AUTHZ_SHADOW_PREFIX.to_string(),
            ..Default::default()
        };
        filters.push(http_filter(names::RBAC, to_any(&filter)));
        filters.push(http_filter(
            names::EXT_AUTHZ,
            to_any(&ext_authz_for(config)),
        ));
    }
    filters
}

fn header_patterns(headers: &[String]) -> Option<ListStringMatcher> {
    (!headers.is_empty()).then(|| ListStringMatcher {
        patterns: headers
            .iter()
            .map(|h| {
                let mut sm: StringMatcher = if let Some(rest) = h.strip_prefix('*') {
                    m::suffix(rest, true)
                } else if let Some(rest) = h.strip_suffix('*') {
                    m::prefix(rest, true)
                } else {
                    m::exact(h, true)
                };
                sm.ignore_case = true;
                sm
            })
            .collect(),
    })
}

fn ext_authz_for(p: &ExtAuthzProvider) -> ExtAuthz {
    let timeout = PbDuration {
        seconds: (p.timeout_ms / 1000) as i64,
        nanos: ((p.timeout_ms % 1000) * 1_000_000) as i32,
    };
    let services = if p.grpc {
        ext_authz::Services::GrpcService(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: p.cluster.clone(),
                    authority: p.authority.clone(),
                    ..Default::default()
                },
            )),
            timeout: Some(timeout),
            ..Default::default()
        })
    } else {
        let response = (!p.headers_to_upstream_on_allow.is_empty()
            || !p.headers_to_downstream_on_deny.is_empty())
        .then(|| AuthorizationResponse {
            allowed_upstream_headers: header_patterns(&p.headers_to_upstream_on_allow),
            allowed_client_headers: header_patterns(&p.headers_to_downstream_on_deny),
            ..Default::default()
        });
        ext_authz::Services::HttpService(HttpService {
            path_prefix: p.path_prefix.clone(),
            server_uri: Some(HttpUri {
                uri: format!("http://{}", p.authority),
                timeout: Some(timeout),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(p.cluster.clone())),
            }),
            authorization_response: response,
            ..Default::default()
        })
    };
    ExtAuthz {
        services: Some(services),
        status_on_error: p.status_on_error.map(|code| HttpStatus {
            code: StatusCode::try_from(code as i32)
                .map_or(StatusCode::Forbidden as i32, |c| c as i32),
        }),
        failure_mode_allow: p.fail_open,
        transport_api_version: ApiVersion::V3 as i32,
        allowed_headers: if p.grpc {
            None
        } else {
            header_patterns(&p.include_request_headers_in_check)
        },
        filter_enabled_metadata: Some(m::metadata(
            names::RBAC,
            &[&format!(
                "{EXT_AUTHZ_SHADOW_PREFIX}shadow_effective_policy_id"
            )],
            m::value_string(m::prefix(
                &format!("{EXT_AUTHZ_MATCH_PREFIX}-{}-ns[", p.name),
                false,
            )),
        )),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    //! HTTP-only attributes on TCP filter chains (istio `model.go` `checkError`, SEMANTICS.md §2.6;
    //! goldens tcp/allow-only-http-out.yaml and tcp/deny-both-http-tcp-out.yaml).

    use wayguard_core::authz::{Operation, Rule, Source};

    use super::*;

    fn policy(action: Action, rules: Vec<Rule>) -> AuthzPolicy {
        AuthzPolicy {
            namespace: "foo".into(),
            name: "p".into(),
            action,
            provider: None,
            dry_run: false,
            rules,
        }
    }

    fn http_only_rule() -> Rule {
        Rule {
            from: vec![Source {
                request_principals: vec!["*".into()],
                ..Default::default()
            }],
            to: vec![Operation {
                methods: vec!["GET".into()],
                ..Default::default()
            }],
            when: vec![],
        }
    }

    fn port_rule() -> Rule {
        Rule {
            from: vec![Source {
                request_principals: vec!["*".into()],
                ..Default::default()
            }],
            to: vec![Operation {
                ports: vec!["8080".into()],
                ..Default::default()
            }],
            when: vec![],
        }
    }

    #[test]
    fn allow_skips_rules_with_http_only_attributes_on_tcp() {
        let mut diagnostics = Vec::new();
        let p = policy(Action::Allow, vec![http_only_rule()]);
        let filter = local_filter(&[p], Action::Allow, true, &mut diagnostics).expect("filter");
        // Every rule skipped: an ALLOW filter with no policies, which denies all TCP traffic.
        assert!(filter.rules.expect("rules").policies.is_empty());
        assert_eq!(diagnostics.len(), 1);
        assert!(
            diagnostics[0].message.contains("is HTTP only"),
            "{diagnostics:?}"
        );
    }

    #[test]
    fn deny_drops_only_the_http_attributes_on_tcp() {
        let mut diagnostics = Vec::new();
        let p = policy(Action::Deny, vec![http_only_rule(), port_rule()]);
        let filter = local_filter(&[p], Action::Deny, true, &mut diagnostics).expect("filter");
        let policies = filter.rules.expect("rules").policies;
        assert!(diagnostics.is_empty());
        // Rule 0 becomes any/any: deny all TCP traffic (wider, never narrower, for DENY).
        let widened = &policies["ns[foo]-policy[p]-rule[0]"];
        assert_eq!(
            widened.permissions,
            vec![permission::and(vec![permission_any()])]
        );
        assert_eq!(
            widened.principals,
            vec![principal::and(vec![principal_any()])]
        );
        // Rule 1 keeps its port: a port-only deny.
        let port_only = &policies["ns[foo]-policy[p]-rule[1]"];
        let json =
            serde_json::to_string(&crate::json::to_json(port_only).expect("json")).expect("text");
        assert!(json.contains("\"destinationPort\":8080"), "{json}");
        assert!(!json.contains("jwt_authn"), "{json}");
    }

    #[test]
    fn http_filters_keep_http_attributes() {
        let mut diagnostics = Vec::new();
        let p = policy(Action::Allow, vec![http_only_rule()]);
        let filter = local_filter(&[p], Action::Allow, false, &mut diagnostics).expect("filter");
        assert_eq!(filter.rules.expect("rules").policies.len(), 1);
        assert!(diagnostics.is_empty());
    }

    mod permission {
        use envoy_types::pb::envoy::config::rbac::v3::{Permission, permission};
        pub fn and(rules: Vec<Permission>) -> Permission {
            Permission {
                rule: Some(permission::Rule::AndRules(permission::Set { rules })),
            }
        }
    }

    mod principal {
        use envoy_types::pb::envoy::config::rbac::v3::{Principal, principal};
        pub fn and(ids: Vec<Principal>) -> Principal {
            Principal {
                identifier: Some(principal::Identifier::AndIds(principal::Set { ids })),
            }
        }
    }
}
