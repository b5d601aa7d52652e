//! API objects -> validated core model. Only called on objects that passed validation.

use wayguard_api::duration::parse_go_duration;
use wayguard_api::istio::{self, DRY_RUN_ANNOTATION};
use wayguard_core::authn::{ClaimToHeader, DEFAULT_JWKS_TIMEOUT, JwksSource, JwtRule, TokenHeader};
use wayguard_core::authz::{Action, AuthzPolicy, Condition, Operation, Rule, Source};

/// The JWT rules of a RequestAuthentication.
pub fn jwt_rules(ra: &istio::RequestAuthentication) -> Vec<JwtRule> {
    ra.spec.jwt_rules.iter().map(jwt_rule).collect()
}

fn jwt_rule(r: &istio::JwtRule) -> JwtRule {
    let jwks = match (&r.jwks, r.jwks_uri()) {
        (Some(inline), _) => JwksSource::Inline(inline.clone()),
        (None, Some(uri)) if !uri.is_empty() => JwksSource::Uri(uri.to_string()),
        _ => JwksSource::Discovery,
    };
    JwtRule {
        issuer: r.issuer.clone(),
        audiences: r.audiences.iter().map(|a| a.0.clone()).collect(),
        jwks,
        from_headers: r
            .from_headers
            .iter()
            .map(|h| TokenHeader {
                name: h.name.clone(),
                prefix: h.prefix.clone(),
            })
            .collect(),
        from_params: r.from_params.iter().map(|p| p.0.clone()).collect(),
        from_cookies: r.from_cookies.iter().map(|c| c.0.clone()).collect(),
        forward_original_token: r.forward_original_token,
        output_payload_to_header: (!r.output_payload_to_header.is_empty())
            .then(|| r.output_payload_to_header.clone()),
        output_claim_to_headers: r
            .output_claim_to_headers
            .iter()
            .map(|c| ClaimToHeader {
                header: c.header.clone(),
                claim: c.claim.clone(),
            })
            .collect(),
        timeout: r
            .timeout
            .as_deref()
            .and_then(|t| parse_go_duration(t).ok())
            .unwrap_or(DEFAULT_JWKS_TIMEOUT),
        space_delimited_claims: r
            .space_delimited_claims
            .iter()
            .map(|c| c.0.clone())
            .collect(),
        required: r.presence == Some(istio::JwtPresence::Required),
    }
}

/// Whether an AuthorizationPolicy is in dry-run mode (Go `strconv.ParseBool` of the annotation).
fn dry_run(ap: &istio::AuthorizationPolicy) -> bool {
    ap.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRY_RUN_ANNOTATION))
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "TRUE" | "true" | "True"))
}

/// wayguard accepts principals with or without `spiffe://` (istiod would never match the former).
fn principals(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.strip_prefix("spiffe://").unwrap_or(v).to_string())
        .collect()
}

/// An AuthorizationPolicy.
pub fn authz_policy(ap: &istio::AuthorizationPolicy) -> AuthzPolicy {
    let spec = &ap.spec;
    AuthzPolicy {
        namespace: ap.metadata.namespace.clone().unwrap_or_default(),
        name: ap.metadata.name.clone().unwrap_or_default(),
        action: match spec.action() {
            istio::Action::Allow => Action::Allow,
            istio::Action::Deny => Action::Deny,
            istio::Action::Audit => Action::Audit,
            istio::Action::Custom => Action::Custom,
        },
        provider: spec.provider.as_ref().map(|p| p.name.clone()),
        dry_run: dry_run(ap),
        rules: spec.rules.iter().flatten().map(rule).collect(),
    }
}

fn rule(r: &istio::Rule) -> Rule {
    Rule {
        from: r
            .from
            .iter()
            .flatten()
            .filter_map(|f| f.source.as_ref())
            .map(|s| Source {
                principals: principals(&s.principals),
                not_principals: principals(&s.not_principals),
                request_principals: s.request_principals.clone(),
                not_request_principals: s.not_request_principals.clone(),
                namespaces: s.namespaces.clone(),
                not_namespaces: s.not_namespaces.clone(),
                service_accounts: s.service_accounts.iter().map(|v| v.0.clone()).collect(),
                not_service_accounts: s.not_service_accounts.iter().map(|v| v.0.clone()).collect(),
                trust_domains: s.trust_domains.clone(),
                not_trust_domains: s.not_trust_domains.clone(),
                ip_blocks: s.ip_blocks.clone(),
                not_ip_blocks: s.not_ip_blocks.clone(),
                remote_ip_blocks: s.remote_ip_blocks.clone(),
                not_remote_ip_blocks: s.not_remote_ip_blocks.clone(),
            })
            .collect(),
        to: r
            .to
            .iter()
            .flatten()
            .filter_map(|t| t.operation.as_ref())
            .map(|o| Operation {
                hosts: o.hosts.clone(),
                not_hosts: o.not_hosts.clone(),
                ports: o.ports.clone(),
                not_ports: o.not_ports.clone(),
                methods: o.methods.clone(),
                not_methods: o.not_methods.clone(),
                paths: o.paths.clone(),
                not_paths: o.not_paths.clone(),
            })
            .collect(),
        when: r
            .when
            .iter()
            .flatten()
            .map(|c| {
                let principal = c.key == "source.principal";
                Condition {
                    key: c.key.clone(),
                    values: if principal {
                        principals(&c.values)
                    } else {
                        c.values.clone()
                    },
                    not_values: if principal {
                        principals(&c.not_values)
                    } else {
                        c.not_values.clone()
                    },
                }
            })
            .collect(),
    }
}
