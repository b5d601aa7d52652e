//! JWT rules -> `envoy.filters.http.jwt_authn`
//! (istio/istio `pilot/pkg/security/authn/policy_applier.go`, SEMANTICS.md §1.2-§1.3).

use std::collections::{BTreeSet, HashMap};

use envoy_types::pb::envoy::config::core::v3::{DataSource, HttpUri, data_source, http_uri};
use envoy_types::pb::envoy::config::route::v3::{RouteMatch, route_match};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    JwtAuthentication, JwtClaimToHeader, JwtHeader, JwtProvider, JwtRequirement,
    JwtRequirementAndList, JwtRequirementOrList, RemoteJwks, RequirementRule, jwt_provider,
    jwt_requirement, requirement_rule,
};
use envoy_types::pb::google::protobuf::{Duration as PbDuration, Empty};
use wayguard_core::authn::{JwksConfig, JwtRule};

use crate::matcher::JWT_PAYLOAD;

fn duration(d: std::time::Duration) -> PbDuration {
    PbDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// `permission` and `scope` are always space-delimited; user entries are merged, deduplicated and sorted.
fn space_delimited_claims(rule: &JwtRule) -> Vec<String> {
    let mut claims: BTreeSet<String> = ["permission", "scope"].map(String::from).into();
    claims.extend(rule.space_delimited_claims.iter().cloned());
    claims.into_iter().collect()
}

fn provider(rule: &JwtRule, jwks: JwksConfig, clear_route_cache: bool) -> JwtProvider {
    let source = match jwks {
        JwksConfig::Inline(jwks) => jwt_provider::JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(data_source::Specifier::InlineString(jwks.to_string())),
            ..Default::default()
        }),
        JwksConfig::Remote {
            uri,
            cluster,
            timeout,
            cache_duration,
        } => jwt_provider::JwksSourceSpecifier::RemoteJwks(RemoteJwks {
            http_uri: Some(HttpUri {
                uri,
                timeout: Some(duration(timeout)),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster)),
            }),
            cache_duration: Some(duration(cache_duration)),
            ..Default::default()
        }),
    };
    JwtProvider {
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        forward: rule.forward_original_token,
        from_headers: rule
            .from_headers
            .iter()
            .map(|h| JwtHeader {
                name: h.name.clone(),
                value_prefix: h.prefix.clone(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        forward_payload_header: rule.output_payload_to_header.clone().unwrap_or_default(),
        payload_in_metadata: JWT_PAYLOAD.to_string(),
        normalize_payload_in_metadata: Some(jwt_provider::NormalizePayload {
            space_delimited_claims: space_delimited_claims(rule),
        }),
        claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|c| JwtClaimToHeader {
                header_name: c.header.clone(),
                claim_name: c.claim.clone(),
                ..Default::default()
            })
            .collect(),
        clear_route_cache,
        // Lets the access log tell wayguard about tokens signed by a key it has not seen yet.
        failed_status_in_metadata: crate::names::JWT_FAILURE_KEY.to_string(),
        jwks_source_specifier: Some(source),
        ..Default::default()
    }
}

fn by_name(name: &str) -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::ProviderName(
            name.to_string(),
        )),
    }
}

fn allow_missing() -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::AllowMissing(Empty {})),
    }
}

fn any_of(requirements: Vec<JwtRequirement>) -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::RequiresAny(
            JwtRequirementOrList { requirements },
        )),
    }
}

fn all_of(requirements: Vec<JwtRequirement>) -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::RequiresAll(
            JwtRequirementAndList { requirements },
        )),
    }
}

/// Istio's requirement tree (SEMANTICS.md §1.3): a token, if present, must be valid
/// (`allow_missing`, never `allow_missing_or_failed`).
///
/// wayguard extension, `presence: REQUIRED` on a rule: additionally at least one valid token of a
/// required rule must be present, so a request without a token gets 401 from jwt_authn instead of
/// passing authentication (istio/istio#26559).
fn requirement(names: &[String], required: &[String]) -> JwtRequirement {
    let optional_tree = if names.len() == 1 {
        any_of(vec![by_name(&names[0]), allow_missing()])
    } else {
        let mut outer: Vec<JwtRequirement> = names.iter().map(|n| by_name(n)).collect();
        outer.push(all_of(
            names
                .iter()
                .map(|n| any_of(vec![by_name(n), allow_missing()]))
                .collect(),
        ));
        any_of(outer)
    };
    match required.len() {
        0 => optional_tree,
        1 if names.len() == 1 => by_name(&required[0]),
        1 => all_of(vec![by_name(&required[0]), optional_tree]),
        _ => all_of(vec![
            any_of(required.iter().map(|n| by_name(n)).collect()),
            optional_tree,
        ]),
    }
}

/// Builds the jwt_authn config, or `None` without rules. Providers are `origins-<i>` after a
/// **stable** sort by issuer (istiod's sort is not stable; ours is deterministic).
pub(crate) fn jwt_authn(
    rules: &[JwtRule],
    jwks: &[JwksConfig],
    clear_route_cache: bool,
) -> Option<JwtAuthentication> {
    if rules.is_empty() {
        return None;
    }
    let mut sorted: Vec<(&JwtRule, &JwksConfig)> = rules.iter().zip(jwks).collect();
    sorted.sort_by(|a, b| a.0.issuer.cmp(&b.0.issuer));
    let mut providers = HashMap::new();
    let mut names = Vec::new();
    let mut required = Vec::new();
    for (i, (rule, jwks)) in sorted.into_iter().enumerate() {
        let name = format!("origins-{i}");
        providers.insert(
            name.clone(),
            provider(rule, jwks.clone(), clear_route_cache),
        );
        if rule.required {
            required.push(name.clone());
        }
        names.push(name);
    }
    Some(JwtAuthentication {
        providers,
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            requirement_type: Some(requirement_rule::RequirementType::Requires(requirement(
                &names, &required,
            ))),
        }],
        bypass_cors_preflight: true,
        ..Default::default()
    })
}
