//! RequestAuthentication and AuthorizationPolicy validation (SEMANTICS.md §4.2, §4.3).

use std::collections::BTreeMap;

use super::Report;
use wayguard_core::attr::{extract_name_in_nested_brackets, split_request_principal};

use super::values::{
    check_path_template, check_port, check_service_account, check_trust_domain, has_inner_wildcard,
    parse_cidr_or_ip,
};
use crate::duration::parse_go_duration;
use crate::istio::{
    Action, AuthorizationPolicy, DRY_RUN_ANNOTATION, JwtRule, Operation, PolicyTargetReference,
    RequestAuthentication, Source, WorkloadSelector,
};

/// Target kinds a policy may reference: `(group, kind)`.
const TARGET_KINDS: &[(&str, &str)] = &[
    ("", "Service"),
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

fn selector_and_targets(
    r: &mut Report,
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) {
    let set = usize::from(selector.is_some())
        + usize::from(target_ref.is_some())
        + usize::from(!target_refs.is_empty());
    if set > 1 {
        r.error(
            "spec",
            "only one of targetRefs or workloadSelector can be set",
        );
    }
    if let Some(selector) = selector {
        if selector.match_labels.is_empty() {
            r.warn(
                "spec.selector",
                "workload selector specified without labels",
            );
        }
        for (k, v) in &selector.match_labels {
            let path = format!("spec.selector.matchLabels[{k}]");
            if k.is_empty() {
                r.error(
                    &path,
                    format!("empty key is not supported in selector: \"{k}={}\"", v.0),
                );
            }
            if k.contains('*') || v.0.contains('*') {
                r.error(
                    &path,
                    format!("wildcard is not supported in selector: \"{k}={}\"", v.0),
                );
            }
            if v.0.len() > 63 {
                r.error(&path, "label value must be no more than 63 characters");
            }
        }
    }
    if target_refs.len() > 16 {
        r.error("spec.targetRefs", "must have at most 16 items");
    }
    let refs = target_ref
        .map(|t| ("spec.targetRef".to_string(), t))
        .into_iter()
        .chain(
            target_refs
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("spec.targetRefs[{i}]"), t)),
        );
    for (path, t) in refs {
        if t.name.is_empty() {
            r.error(format!("{path}.name"), "targetRef name must be set");
        }
        if t.namespace.as_deref().is_some_and(|ns| !ns.is_empty()) {
            r.error(
                format!("{path}.namespace"),
                "targetRef namespace must not be set; cross namespace referencing is not supported",
            );
        }
        if !TARGET_KINDS.contains(&(t.group.as_str(), t.kind.as_str())) {
            r.error(
                &path,
                format!(
                    "targetRef must be to one of [Service ServiceEntry Gateway GatewayClass] but was {}/{}; \
                     use group gateway.networking.k8s.io for Gateway and GatewayClass, and group \"\" for Service",
                    t.group, t.kind
                ),
            );
        }
    }
}

// === RequestAuthentication ===

pub(super) fn request_authentication(
    r: &mut Report,
    namespace: &str,
    name: &str,
    ra: &RequestAuthentication,
) {
    if ra
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DRY_RUN_ANNOTATION))
    {
        r.error(
            format!("metadata.annotations[{DRY_RUN_ANNOTATION}]"),
            format!("{namespace}/{name} has unsupported annotation {DRY_RUN_ANNOTATION}, please remove the annotation"),
        );
    }
    let spec = &ra.spec;
    selector_and_targets(
        r,
        spec.selector.as_ref(),
        spec.target_ref.as_ref(),
        &spec.target_refs,
    );
    if spec.jwt_rules.len() > 4096 {
        r.error("spec.jwtRules", "must have at most 4096 items");
    }
    for (i, rule) in spec.jwt_rules.iter().enumerate() {
        jwt_rule(r, &format!("spec.jwtRules[{i}]"), rule);
    }
    duplicate_issuers(r, &spec.jwt_rules);
}

fn jwt_rule(r: &mut Report, path: &str, rule: &JwtRule) {
    let uri = rule.jwks_uri();
    if rule.issuer.is_empty() && uri.is_none_or(str::is_empty) {
        r.error(path, "issuer or jwksUri must be non-empty string");
    } else if rule.issuer.is_empty() {
        r.warn(
            format!("{path}.issuer"),
            "issuer is empty: Envoy will accept tokens from any issuer signed by this JWKS; set issuer",
        );
    }
    for (j, aud) in rule.audiences.iter().enumerate() {
        if aud.as_str().is_empty() {
            r.error(
                format!("{path}.audiences[{j}]"),
                "audience must be non-empty string",
            );
        }
    }
    let sources = usize::from(rule.jwks_uri.is_some())
        + usize::from(rule.jwks_uri_legacy.is_some())
        + usize::from(rule.jwks.is_some());
    if sources > 1 {
        r.error(path, "only one of jwks or jwksUri can be set");
    }
    if let Some(uri) = uri {
        check_jwks_uri(r, &format!("{path}.jwksUri"), uri);
    }
    if let Some(jwks) = &rule.jwks {
        check_inline_jwks(r, &format!("{path}.jwks"), jwks);
    }
    for (j, h) in rule.from_headers.iter().enumerate() {
        if h.name.is_empty() {
            r.error(
                format!("{path}.fromHeaders[{j}].name"),
                "location header name must be non-empty string",
            );
        } else if !is_header_name(&h.name) {
            r.error(
                format!("{path}.fromHeaders[{j}].name"),
                format!("invalid header name {:?}", h.name),
            );
        }
    }
    for (j, p) in rule.from_params.iter().enumerate() {
        if p.as_str().is_empty() {
            r.error(
                format!("{path}.fromParams[{j}]"),
                "location query must be non-empty string",
            );
        }
    }
    for (j, c) in rule.from_cookies.iter().enumerate() {
        if c.as_str().is_empty() {
            r.error(
                format!("{path}.fromCookies[{j}]"),
                "cookie name must be non-empty string",
            );
        }
    }
    if !rule.output_payload_to_header.is_empty() && !is_header_name(&rule.output_payload_to_header)
    {
        r.error(
            format!("{path}.outputPayloadToHeader"),
            format!(
                "invalid header name {:?}: must match ^[-_A-Za-z0-9]+$",
                rule.output_payload_to_header
            ),
        );
    }
    let mut seen_headers = BTreeMap::new();
    for (j, c) in rule.output_claim_to_headers.iter().enumerate() {
        let p = format!("{path}.outputClaimToHeaders[{j}]");
        if c.header.is_empty() || c.claim.is_empty() {
            r.error(
                &p,
                "outputClaimToHeaders header and claim value must be non-empty string",
            );
            continue;
        }
        if !is_header_name(&c.header) {
            r.error(
                format!("{p}.header"),
                format!(
                    "invalid header name {:?}: must match ^[-_A-Za-z0-9]+$",
                    c.header
                ),
            );
        }
        if let Some(prev) = seen_headers.insert(c.header.to_ascii_lowercase(), j) {
            r.warn(
                format!("{p}.header"),
                format!("header {} is also written by outputClaimToHeaders[{prev}]; only one value survives", c.header),
            );
        }
    }
    if let Some(timeout) = &rule.timeout {
        match parse_go_duration(timeout) {
            Ok(d) if d >= std::time::Duration::from_millis(1) => {}
            Ok(_) => r.error(
                format!("{path}.timeout"),
                "must be a valid duration greater than 1ms",
            ),
            Err(e) => r.error(
                format!("{path}.timeout"),
                format!("must be a valid duration greater than 1ms: {e}"),
            ),
        }
    }
    if rule.space_delimited_claims.len() > 64 {
        r.error(
            format!("{path}.spaceDelimitedClaims"),
            "must have at most 64 items",
        );
    }
    for (j, c) in rule.space_delimited_claims.iter().enumerate() {
        if c.as_str().is_empty() {
            r.error(
                format!("{path}.spaceDelimitedClaims[{j}]"),
                "claim name must be non-empty string",
            );
        }
    }
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_jwks_uri(r: &mut Report, path: &str, uri: &str) {
    if uri.is_empty() {
        r.error(path, "jwksUri must be non-empty string");
        return;
    }
    if uri.len() > 2048 {
        r.error(path, "must be no more than 2048 characters");
    }
    if super::has_placeholder(uri) {
        r.warn(
            path,
            format!(
                "{uri} contains an unexpanded ${{...}} placeholder; substitute it before applying"
            ),
        );
        return;
    }
    match url::Url::parse(uri) {
        Ok(u) if u.scheme() != "http" && u.scheme() != "https" => {
            r.error(
                path,
                format!(
                    "URI scheme {:?} is not supported; url must have scheme http:// or https://",
                    u.scheme()
                ),
            );
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            r.error(path, format!("{uri} has no host"));
        }
        Ok(_) => {}
        Err(e) => r.error(path, format!("failed to parse jwksUri {uri:?}: {e}")),
    }
}

/// Parses an inline JWKS the way Envoy will, so a bad one never reaches (and NACKs) a listener.
fn check_inline_jwks(r: &mut Report, path: &str, jwks: &str) {
    let parsed: serde_json::Value = match serde_json::from_str(jwks) {
        Ok(v) => v,
        Err(e) => {
            r.error(path, format!("jwks parse error: {e}"));
            return;
        }
    };
    let Some(keys) = parsed.get("keys").and_then(serde_json::Value::as_array) else {
        r.error(
            path,
            "jwks parse error: expected a JSON object with a \"keys\" array",
        );
        return;
    };
    if keys.is_empty() {
        r.error(path, "jwks parse error: the \"keys\" array is empty");
    }
    for (i, key) in keys.iter().enumerate() {
        let kty = key
            .get("kty")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let has = |f: &str| {
            key.get(f)
                .and_then(serde_json::Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        let usable = match kty {
            "RSA" => has("n") && has("e"),
            "EC" => has("crv") && has("x") && has("y"),
            "OKP" => has("crv") && has("x"),
            "oct" => has("k"),
            _ => false,
        };
        if !usable {
            r.error(
                format!("{path}.keys[{i}]"),
                format!("jwks parse error: key at index {i} is not a usable JWK (kty {kty:?} without its required members)"),
            );
        }
        if ["d", "p", "q", "dp", "dq", "qi"]
            .iter()
            .any(|f| key.get(*f).is_some())
        {
            r.warn(
                format!("{path}.keys[{i}]"),
                format!("jwks key at index {i} contains private key material; only public keys are used for verification (wayguard strips the private members)"),
            );
        }
    }
}

/// Istio keeps duplicate issuers as separate providers (#19245); wayguard reports them.
fn duplicate_issuers(r: &mut Report, rules: &[JwtRule]) {
    for (i, a) in rules.iter().enumerate() {
        if a.issuer.is_empty() {
            continue;
        }
        if let Some(j) = rules[..i].iter().position(|b| b.issuer == a.issuer) {
            let b = &rules[j];
            let same_locations = a.from_headers == b.from_headers
                && a.from_params == b.from_params
                && a.from_cookies == b.from_cookies;
            let message = format!(
                "issuer {:?} is also configured by jwtRules[{j}]; ",
                a.issuer
            );
            if same_locations {
                r.error(
                    format!("spec.jwtRules[{i}].issuer"),
                    message + "both read the same token locations, so which rule validates a token is undefined; merge them into one rule",
                );
            } else {
                r.warn(
                    format!("spec.jwtRules[{i}].issuer"),
                    message + "they read different token locations, so both are kept and the most permissive one wins",
                );
            }
        }
    }
}

// === AuthorizationPolicy ===

pub(super) fn authorization_policy(
    r: &mut Report,
    namespace: &str,
    name: &str,
    ap: &AuthorizationPolicy,
) {
    let spec = &ap.spec;
    let action = spec.action();
    if let Some(value) = ap
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRY_RUN_ANNOTATION))
    {
        let path = format!("metadata.annotations[{DRY_RUN_ANNOTATION}]");
        if parse_go_bool(value).is_none() {
            r.error(
                &path,
                format!("{namespace}/{name} has annotation {DRY_RUN_ANNOTATION} with invalid value ({value}): strconv.ParseBool: parsing {value:?}: invalid syntax"),
            );
        }
        if !matches!(action, Action::Allow | Action::Deny) {
            r.error(
                &path,
                format!("the annotation {DRY_RUN_ANNOTATION} currently only supports action ALLOW/DENY, found action {} in {namespace}/{name}", action.as_str()),
            );
        }
    }
    selector_and_targets(
        r,
        spec.selector.as_ref(),
        spec.target_ref.as_ref(),
        &spec.target_refs,
    );

    let rules = spec.rules.as_deref().unwrap_or_default();
    match action {
        Action::Custom => {
            if rules.is_empty() {
                r.error("spec.rules", "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request");
            }
            if spec.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                r.error("spec.provider.name", "`provider.name` must not be empty");
            }
        }
        other => {
            if spec.provider.is_some() {
                r.error(
                    "spec.provider",
                    format!(
                        "`provider` must not be with non CUSTOM action, found {}",
                        other.as_str()
                    ),
                );
            }
            if other == Action::Deny && rules.is_empty() {
                r.error("spec.rules", "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request");
            }
        }
    }
    if rules.len() > 512 {
        r.error("spec.rules", "must have at most 512 items");
    }
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        let mut has_authenticated_source = false;
        if let Some(from) = &rule.from {
            if from.is_empty() {
                r.error(format!("{path}.from"), "`from` must not be empty");
            }
            for (j, f) in from.iter().enumerate() {
                let p = format!("{path}.from[{j}].source");
                match &f.source {
                    None => r.error(&p, "`from.source` must not be nil"),
                    Some(s) => {
                        if s == &Source::default() {
                            r.error(&p, "`from.source` must not be empty");
                        }
                        has_authenticated_source |= !s.request_principals.is_empty();
                        source(r, &p, i, s, action);
                    }
                }
            }
        }
        if let Some(to) = &rule.to {
            if to.is_empty() {
                r.error(format!("{path}.to"), "`to` must not be empty");
            }
            for (j, t) in to.iter().enumerate() {
                let p = format!("{path}.to[{j}].operation");
                match &t.operation {
                    None => r.error(&p, "`to.operation` must not be nil"),
                    Some(o) => {
                        if o == &Operation::default() {
                            r.error(&p, "`to.operation` must not be empty");
                        }
                        operation(r, &p, o);
                    }
                }
            }
        }
        for (j, c) in rule.when.iter().flatten().enumerate() {
            let p = format!("{path}.when[{j}]");
            if c.key.is_empty() {
                r.error(format!("{p}.key"), "`key` must not be empty");
                continue;
            }
            if c.values.is_empty() && c.not_values.is_empty() {
                r.error(
                    &p,
                    format!(
                        "at least one of `values` or `notValues` must be set for key {}",
                        c.key
                    ),
                );
            }
            if let Err(e) = attribute(&c.key, &c.values) {
                r.error(
                    format!("{p}.values"),
                    format!("invalid `value` for `key` {}: {e}", c.key),
                );
            }
            if let Err(e) = attribute(&c.key, &c.not_values) {
                r.error(
                    format!("{p}.notValues"),
                    format!("invalid `notValue` for `key` {}: {e}", c.key),
                );
            }
            if action == Action::Custom && custom_unsupported_key(&c.key) {
                r.error(
                    format!("{p}.key"),
                    format!(
                        "when.key {} is currently not supported with CUSTOM action",
                        c.key
                    ),
                );
            }
            let inner: Vec<&String> = c
                .values
                .iter()
                .chain(&c.not_values)
                .filter(|v| has_inner_wildcard(v))
                .collect();
            if !inner.is_empty() && !matches!(c.key.as_str(), "source.namespace") {
                r.warn(p.clone(), inner_wildcard_message(&inner));
            }
            if action == Action::Deny
                && !c.not_values.is_empty()
                && c.key.starts_with("request.auth.")
                && !has_authenticated_source
            {
                r.warn(
                    &p,
                    format!(
                        "DENY with notValues on {} also matches requests without a token (they have no {}), so anonymous requests are denied; add from.source.requestPrincipals: [\"*\"] to deny only authenticated requests",
                        c.key,
                        c.key.trim_start_matches("request.auth.")
                    ),
                );
            }
        }
    }
    if action == Action::Deny && rules.iter().any(deny_rule_only_http) {
        r.warn(
            "spec.rules",
            "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port (this only matters for TCP or TLS listeners: on HTTP listeners the rule works as written)",
        );
    }
}

/// Go `strconv.ParseBool`.
pub(crate) fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn inner_wildcard_message(values: &[&String]) -> String {
    format!(
        "{} {} a `*` in the middle, which is matched literally, not as a wildcard; only a leading or trailing `*` is a wildcard",
        values
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        if values.len() == 1 { "has" } else { "have" }
    )
}

fn empty_values(r: &mut Report, path: &str, field: &str, values: &[String]) {
    for (k, v) in values.iter().enumerate() {
        if v.is_empty() {
            r.error(
                format!("{path}[{k}]"),
                format!("empty value not allowed, found in {field}"),
            );
        }
    }
}

fn source(r: &mut Report, path: &str, rule_index: usize, s: &Source, action: Action) {
    let sa: Vec<String> = s.service_accounts.iter().map(|v| v.0.clone()).collect();
    let not_sa: Vec<String> = s.not_service_accounts.iter().map(|v| v.0.clone()).collect();
    let fields: [(&str, &str, &[String]); 14] = [
        ("principals", "Principals", &s.principals),
        ("notPrincipals", "NotPrincipals", &s.not_principals),
        (
            "requestPrincipals",
            "RequestPrincipals",
            &s.request_principals,
        ),
        (
            "notRequestPrincipals",
            "NotRequestPrincipals",
            &s.not_request_principals,
        ),
        ("namespaces", "Namespaces", &s.namespaces),
        ("notNamespaces", "NotNamespaces", &s.not_namespaces),
        ("serviceAccounts", "ServiceAccounts", &sa),
        ("notServiceAccounts", "NotServiceAccounts", &not_sa),
        ("trustDomains", "TrustDomains", &s.trust_domains),
        ("notTrustDomains", "NotTrustDomains", &s.not_trust_domains),
        ("ipBlocks", "IpBlocks", &s.ip_blocks),
        ("notIpBlocks", "NotIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", "RemoteIpBlocks", &s.remote_ip_blocks),
        (
            "notRemoteIpBlocks",
            "NotRemoteIpBlocks",
            &s.not_remote_ip_blocks,
        ),
    ];
    for (name, field, values) in fields {
        let p = format!("{path}.{name}");
        empty_values(r, &p, field, values);
        if action == Action::Custom
            && !values.is_empty()
            && !matches!(
                name,
                "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks"
            )
        {
            r.error(
                &p,
                format!("From.{field} is currently not supported with CUSTOM action"),
            );
        }
    }
    if (!sa.is_empty() || !not_sa.is_empty())
        && (!s.principals.is_empty()
            || !s.not_principals.is_empty()
            || !s.namespaces.is_empty()
            || !s.not_namespaces.is_empty())
    {
        r.error(path, format!("cannot set serviceAccounts with namespaces or principals, found at rule {rule_index}"));
    }
    for (name, values) in [("serviceAccounts", &sa), ("notServiceAccounts", &not_sa)] {
        if values.len() > 16 {
            r.error(format!("{path}.{name}"), "may not have more than 16 values");
        }
        for (k, v) in values.iter().enumerate() {
            if let Err(e) = check_service_account(v) {
                r.error(format!("{path}.{name}[{k}]"), e);
            }
        }
    }
    for (name, values) in [
        ("trustDomains", &s.trust_domains),
        ("notTrustDomains", &s.not_trust_domains),
    ] {
        for (k, v) in values.iter().enumerate() {
            if let Err(e) = check_trust_domain(v) {
                r.error(format!("{path}.{name}[{k}]"), e);
            }
        }
    }
    for (name, values) in [
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ] {
        for (k, v) in values.iter().enumerate() {
            if !v.is_empty()
                && let Err(e) = parse_cidr_or_ip(v)
            {
                r.error(format!("{path}.{name}[{k}]"), e);
            }
        }
    }
    for (name, values) in [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
    ] {
        for (k, v) in values.iter().enumerate() {
            if let Some(stripped) = v.strip_prefix("spiffe://") {
                r.warn(
                    format!("{path}.{name}[{k}]"),
                    format!("{v:?} starts with spiffe://; wayguard strips it and matches {stripped:?}, but istiod prefixes spiffe:// to every principal, so under istiod this value never matches; write {stripped:?}"),
                );
            }
        }
    }
    for (name, values) in [
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
    ] {
        for (k, v) in values.iter().enumerate() {
            let (iss, sub, _) = split_request_principal(v);
            if v.ends_with('*') && iss.ends_with(":/") {
                r.warn(
                    format!("{path}.{name}[{k}]"),
                    format!("{v:?} is split at the last '/' into iss {iss:?} and sub {sub:?}, so it never matches; to match every subject of an issuer write \"<issuer>/*\""),
                );
            }
        }
    }
    let inner: Vec<&String> = s
        .principals
        .iter()
        .chain(&s.not_principals)
        .chain(&s.request_principals)
        .chain(&s.not_request_principals)
        .filter(|v| has_inner_wildcard(v))
        .collect();
    if !inner.is_empty() {
        r.warn(path, inner_wildcard_message(&inner));
    }
}

fn operation(r: &mut Report, path: &str, o: &Operation) {
    let fields: [(&str, &str, &[String]); 8] = [
        ("hosts", "Hosts", &o.hosts),
        ("notHosts", "NotHosts", &o.not_hosts),
        ("ports", "Ports", &o.ports),
        ("notPorts", "NotPorts", &o.not_ports),
        ("methods", "Methods", &o.methods),
        ("notMethods", "NotMethods", &o.not_methods),
        ("paths", "Paths", &o.paths),
        ("notPaths", "NotPaths", &o.not_paths),
    ];
    for (name, field, values) in fields {
        empty_values(r, &format!("{path}.{name}"), field, values);
    }
    for (name, values) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
        for (k, v) in values.iter().enumerate() {
            if !v.is_empty()
                && let Err(e) = check_port(v)
            {
                r.error(format!("{path}.{name}[{k}]"), e);
            }
        }
    }
    for (name, field, values) in [
        ("paths", "Paths", &o.paths),
        ("notPaths", "NotPaths", &o.not_paths),
    ] {
        for (k, v) in values.iter().enumerate() {
            if let Err(e) = check_path_template(field, v) {
                r.error(format!("{path}.{name}[{k}]"), e.0);
            }
        }
    }
    let inner: Vec<&String> = o
        .hosts
        .iter()
        .chain(&o.not_hosts)
        .chain(&o.methods)
        .chain(&o.not_methods)
        .chain(
            o.paths
                .iter()
                .chain(&o.not_paths)
                .filter(|p| !super::values::contains_path_template(p)),
        )
        .filter(|v| has_inner_wildcard(v))
        .collect();
    if !inner.is_empty() {
        r.warn(path, inner_wildcard_message(&inner));
    }
}

fn custom_unsupported_key(key: &str) -> bool {
    matches!(
        key,
        "source.namespace" | "source.serviceAccount" | "source.trustDomain" | "source.principal"
    ) || key.starts_with("request.auth.")
}

/// A DENY rule that only uses HTTP attributes (no ports) denies all TCP traffic (SEMANTICS.md §2.6).
fn deny_rule_only_http(rule: &crate::istio::Rule) -> bool {
    let http_source = rule
        .from
        .iter()
        .flatten()
        .filter_map(|f| f.source.as_ref())
        .any(|s| !s.request_principals.is_empty() || !s.not_request_principals.is_empty());
    let http_op = rule
        .to
        .iter()
        .flatten()
        .filter_map(|t| t.operation.as_ref())
        .any(|o| {
            !o.hosts.is_empty()
                || !o.not_hosts.is_empty()
                || !o.methods.is_empty()
                || !o.not_methods.is_empty()
                || !o.paths.is_empty()
                || !o.not_paths.is_empty()
        });
    let http_when = rule
        .when
        .iter()
        .flatten()
        .any(|c| c.key.starts_with("request."));
    let has_port = rule
        .to
        .iter()
        .flatten()
        .filter_map(|t| t.operation.as_ref())
        .any(|o| !o.ports.is_empty() || !o.not_ports.is_empty())
        || rule
            .when
            .iter()
            .flatten()
            .any(|c| c.key == "destination.port");
    (http_source || http_op || http_when) && !has_port
}

/// Istio's `ValidateAttribute` for one `when` key and its values.
fn attribute(key: &str, values: &[String]) -> Result<(), String> {
    if values.iter().any(String::is_empty) {
        return Err(format!("empty value not allowed, found in {key}"));
    }
    let map_key = |prefix: &str| -> Result<(), String> {
        let rest = &key[prefix.len()..];
        if !rest.starts_with('[') || !rest.ends_with(']') || rest.len() < 3 {
            return Err(format!("bad key ({key}): should have format a[b]"));
        }
        if prefix == "request.auth.claims" {
            let names = extract_name_in_nested_brackets(rest)?;
            if names.iter().any(String::is_empty) {
                return Err(format!("bad key ({key}): claim names must not be empty"));
            }
        }
        Ok(())
    };
    let ips = || {
        values
            .iter()
            .try_for_each(|v| parse_cidr_or_ip(v).map(drop))
    };
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => ips(),
        "destination.port" => values.iter().try_for_each(|v| check_port(v).map(drop)),
        "source.namespace"
        | "source.principal"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(()),
        "source.serviceAccount" => values.iter().try_for_each(|v| check_service_account(v)),
        "source.trustDomain" => values.iter().try_for_each(|v| check_trust_domain(v)),
        "destination.namespace" => {
            Err("attribute destination.namespace is replaced by the metadata.namespace".into())
        }
        k if k.starts_with("destination.labels") => {
            Err("attribute destination.labels[..] is replaced by the workload selector".into())
        }
        "destination.name" | "destination.user" => Err(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        )),
        k if k.starts_with("request.headers") => map_key("request.headers"),
        k if k.starts_with("request.auth.claims") => map_key("request.auth.claims"),
        k if k.starts_with("experimental.envoy.filters.") => {
            let rest = &key["experimental.envoy.filters.".len()..];
            match rest.find('[') {
                Some(i) if i > 0 && rest.ends_with(']') && rest.len() > i + 2 => Ok(()),
                _ => Err(format!("bad key ({key}): should have format a[b]")),
            }
        }
        _ => Err(format!("unknown attribute: {key}")),
    }
}
