//! AuthConfig, EnterpriseAgentgatewayPolicy and AgentgatewayBackend validation.

use super::{Report, has_placeholder};
use crate::duration::parse_go_duration;
use crate::solo::{
    AgentgatewayBackendSpec, AuthConfigSpec, EnterpriseAgentgatewayPolicySpec,
    OidcAuthorizationCode, SameSite, TokenExchangeMode,
};

/// Checks an absolute http(s) URL; `${...}` placeholders only warn.
fn url_field(r: &mut Report, path: &str, value: &str, required: bool) {
    if value.is_empty() {
        if required {
            r.error(path, "required field is missing");
        }
        return;
    }
    if has_placeholder(value) {
        r.warn(path, format!("{value:?} contains an unexpanded ${{...}} placeholder; substitute it before applying"));
        return;
    }
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
            if u.host_str().is_none_or(str::is_empty) {
                r.error(path, format!("{value:?} has no host"));
            }
        }
        Ok(u) => r.error(
            path,
            format!(
                "URL scheme {:?} is not supported; use http:// or https://",
                u.scheme()
            ),
        ),
        Err(e) => r.error(path, format!("{value:?} is not an absolute URL: {e}")),
    }
}

fn duration_field(r: &mut Report, path: &str, value: Option<&String>) {
    if let Some(v) = value
        && let Err(e) = parse_go_duration(v)
    {
        r.error(path, format!("{e}; write a duration such as 30s, 5m or 1h"));
    }
}

fn path_field(r: &mut Report, path: &str, value: &str) {
    if !value.is_empty() && !value.starts_with('/') {
        r.error(path, format!("{value:?} must start with '/'"));
    }
}

pub(super) fn auth_config(r: &mut Report, spec: &AuthConfigSpec) {
    if spec.configs.is_empty() {
        r.error("spec.configs", "at least one config is required");
    }
    let mut names = Vec::new();
    for (i, step) in spec.configs.iter().enumerate() {
        let path = format!("spec.configs[{i}]");
        if let Some(name) = &step.name {
            names.push(name.as_str());
        }
        let unsupported = step.unsupported_types();
        for t in &unsupported {
            r.error(
                format!("{path}.{t}"),
                format!("config type {t} is not supported by wayguard; supported: oauth2.oidcAuthorizationCode (validate bearer tokens with a RequestAuthentication instead)"),
            );
        }
        let set = unsupported.len() + usize::from(step.oauth2.is_some());
        if set == 0 {
            r.error(
                &path,
                "exactly one config type must be set; supported: oauth2.oidcAuthorizationCode",
            );
        } else if set > 1 {
            r.error(
                &path,
                "exactly one config type may be set per entry; split them into separate entries",
            );
        }
        let Some(oauth2) = &step.oauth2 else { continue };
        let path = format!("{path}.oauth2");
        if oauth2.access_token_validation.is_some() {
            r.error(format!("{path}.accessTokenValidation"), "accessTokenValidation is not supported by wayguard; validate bearer tokens with a RequestAuthentication");
        }
        if oauth2.oauth2.is_some() {
            r.error(
                format!("{path}.oauth2"),
                "plain OAuth2 is not supported by wayguard; use oidcAuthorizationCode",
            );
        }
        match &oauth2.oidc_authorization_code {
            Some(oidc) => oidc_code(r, &format!("{path}.oidcAuthorizationCode"), oidc),
            None if oauth2.access_token_validation.is_none() && oauth2.oauth2.is_none() => {
                r.error(&path, "oidcAuthorizationCode must be set");
            }
            None => {}
        }
    }
    if let Some(expr) = &spec.boolean_expr {
        for ident in expr
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .filter(|s| !s.is_empty() && *s != "true" && *s != "false")
        {
            if !names.contains(&ident) {
                r.error(
                    "spec.booleanExpr",
                    format!(
                        "references {ident:?}, which is not the name of any entry in spec.configs"
                    ),
                );
            }
        }
    }
}

fn oidc_code(r: &mut Report, path: &str, o: &OidcAuthorizationCode) {
    if o.client_id.is_empty() {
        r.error(format!("{path}.clientId"), "required field is missing");
    }
    url_field(r, &format!("{path}.issuerUrl"), &o.issuer_url, true);
    url_field(r, &format!("{path}.appUrl"), &o.app_url, true);
    path_field(r, &format!("{path}.callbackPath"), &o.callback_path);
    if o.app_url.ends_with('/') && o.callback_path.starts_with('/') {
        let joined = format!("{}{}", o.app_url.trim_end_matches('/'), o.callback_path);
        r.warn(
            format!("{path}.appUrl"),
            format!("ends with \"/\" and callbackPath starts with one: Gloo sends redirect_uri {:?}, wayguard sends {joined:?}; register {joined:?} at the provider and drop the trailing slash here", format!("{}{}", o.app_url, o.callback_path)),
        );
    }
    path_field(r, &format!("{path}.logoutPath"), &o.logout_path);
    if !o.logout_path.is_empty() && o.logout_path == o.callback_path {
        r.error(
            format!("{path}.logoutPath"),
            "must differ from callbackPath",
        );
    }
    if !o.after_logout_url.is_empty() {
        url_field(
            r,
            &format!("{path}.afterLogoutUrl"),
            &o.after_logout_url,
            false,
        );
    }
    let public_client = o.disable_client_secret == Some(true)
        || o.client_authentication.as_ref().is_some_and(|c| {
            c.private_key_jwt.is_some()
                || c.client_secret
                    .as_ref()
                    .is_some_and(|s| s.disable_client_secret == Some(true))
        });
    let secret_ref = o.client_secret_ref.is_some()
        || o.client_authentication
            .as_ref()
            .and_then(|c| c.client_secret.as_ref())
            .is_some_and(|s| s.client_secret_ref.is_some());
    if !public_client && !secret_ref {
        r.error(
            format!("{path}.clientSecretRef"),
            "required unless the client is public (clientAuthentication.clientSecret.disableClientSecret: true) or uses privateKeyJwt",
        );
    }
    if let Some(ca) = &o.client_authentication
        && ca.client_secret.is_some() == ca.private_key_jwt.is_some()
    {
        r.error(
            format!("{path}.clientAuthentication"),
            "exactly one of clientSecret or privateKeyJwt must be set",
        );
    }
    for (k, _) in o
        .auth_endpoint_query_params
        .iter()
        .filter(|(k, _)| k.starts_with("code_challenge"))
    {
        r.warn(
            format!("{path}.authEndpointQueryParams[{k}]"),
            "a static PKCE challenge defeats PKCE; wayguard generates a fresh S256 challenge per login, remove this parameter",
        );
    }
    duration_field(
        r,
        &format!("{path}.discoveryPollInterval"),
        o.discovery_poll_interval.as_ref(),
    );
    if let Some(session) = &o.session {
        let sp = format!("{path}.session");
        if session.cookie.is_some() && session.redis.is_some() {
            r.error(&sp, "only one of cookie or redis can be set");
        }
        if let Some(redis) = &session.redis {
            duration_field(
                r,
                &format!("{sp}.redis.preExpiryBuffer"),
                redis.pre_expiry_buffer.as_ref(),
            );
            match &redis.options {
                None => r.error(
                    format!("{sp}.redis.options.host"),
                    "required field is missing",
                ),
                Some(opts) if opts.host.is_empty() => r.error(
                    format!("{sp}.redis.options.host"),
                    "required field is missing (host:port, :port for localhost, or unix://path)",
                ),
                Some(opts) if !opts.host.starts_with("unix://") && !opts.host.contains(':') => r
                    .error(
                        format!("{sp}.redis.options.host"),
                        format!("{:?} must be host:port (or :port for localhost)", opts.host),
                    ),
                Some(_) => {}
            }
        }
        if let Some(cookie) = &session.cookie_options
            && cookie.same_site == Some(SameSite::NoneMode)
            && cookie.not_secure
        {
            r.error(format!("{sp}.cookieOptions.sameSite"), "NoneMode requires a Secure cookie; browsers reject SameSite=None without Secure (remove notSecure)");
        }
    }
    if let Some(pk) = o
        .client_authentication
        .as_ref()
        .and_then(|c| c.private_key_jwt.as_ref())
    {
        duration_field(
            r,
            &format!("{path}.clientAuthentication.privateKeyJwt.validFor"),
            pk.valid_for.as_ref(),
        );
        if pk.signing_key_ref.is_none() {
            r.error(
                format!("{path}.clientAuthentication.privateKeyJwt.signingKeyRef"),
                "required field is missing",
            );
        }
    }
}

/// Target kinds an EnterpriseAgentgatewayPolicy may reference: `(group, kind)`.
const POLICY_TARGETS: &[(&str, &str)] = &[
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "HTTPRoute"),
    ("agentgateway.dev", "AgentgatewayBackend"),
    ("", "Service"),
];

pub(super) fn enterprise_policy(r: &mut Report, spec: &EnterpriseAgentgatewayPolicySpec) {
    if spec.target_refs.is_empty() {
        r.error(
            "spec.targetRefs",
            "at least one target reference is required",
        );
    }
    if spec.target_refs.len() > 16 {
        r.error("spec.targetRefs", "must have at most 16 items");
    }
    for (i, t) in spec.target_refs.iter().enumerate() {
        if t.name.is_empty() {
            r.error(
                format!("spec.targetRefs[{i}].name"),
                "required field is missing",
            );
        }
        if !POLICY_TARGETS.contains(&(t.group.as_str(), t.kind.as_str())) {
            r.error(
                format!("spec.targetRefs[{i}]"),
                format!(
                    "unsupported target {}/{}; supported: gateway.networking.k8s.io/Gateway, gateway.networking.k8s.io/HTTPRoute, agentgateway.dev/AgentgatewayBackend, Service (group \"\")",
                    t.group, t.kind
                ),
            );
        }
    }
    let ext_auth = spec.traffic.as_ref().and_then(|t| t.ent_ext_auth.as_ref());
    let exchange = spec
        .backend
        .as_ref()
        .and_then(|b| b.token_exchange.as_ref());
    if ext_auth.is_none() && exchange.is_none() {
        r.error(
            "spec",
            "nothing to apply: set traffic.entExtAuth or backend.tokenExchange",
        );
    }
    if let Some(ea) = ext_auth {
        if ea.auth_config_ref.name.is_empty() {
            r.error(
                "spec.traffic.entExtAuth.authConfigRef.name",
                "required field is missing",
            );
        }
        if let Some(b) = &ea.backend_ref
            && b.name.is_empty()
        {
            r.error(
                "spec.traffic.entExtAuth.backendRef.name",
                "required field is missing",
            );
        }
    }
    if let Some(te) = exchange {
        match te.mode {
            None => r.error("spec.backend.tokenExchange.mode", "required field is missing; supported: ExchangeOnly"),
            Some(TokenExchangeMode::ElicitationOnly) => r.error(
                "spec.backend.tokenExchange.mode",
                "ElicitationOnly (upstream OAuth consent) is not supported by wayguard; supported: ExchangeOnly",
            ),
            Some(TokenExchangeMode::ExchangeOnly) => {}
        }
        if let Some(entra) = &te.entra {
            for (field, value) in [
                ("tenantId", &entra.tenant_id),
                ("clientId", &entra.client_id),
                ("scope", &entra.scope),
                ("clientSecretRef.name", &entra.client_secret_ref.name),
                ("clientSecretRef.key", &entra.client_secret_ref.key),
            ] {
                if value.is_empty() {
                    r.error(
                        format!("spec.backend.tokenExchange.entra.{field}"),
                        "required field is missing",
                    );
                }
            }
        }
    }
}

pub(super) fn backend(r: &mut Report, spec: &AgentgatewayBackendSpec) {
    let unsupported = [
        ("ai", spec.ai.is_some()),
        ("dynamicForwardProxy", spec.dynamic_forward_proxy.is_some()),
        ("aws", spec.aws.is_some()),
        ("a2a", spec.a2a.is_some()),
        ("policies", spec.policies.is_some()),
    ];
    for (name, set) in unsupported {
        if set {
            r.error(
                format!("spec.{name}"),
                format!(
                    "{name} is not supported by wayguard; supported: static, mcp (static targets)"
                ),
            );
        }
    }
    let kinds = usize::from(spec.r#static.is_some())
        + usize::from(spec.mcp.is_some())
        + unsupported
            .iter()
            .filter(|(n, set)| *set && *n != "policies")
            .count();
    if kinds != 1 {
        r.error("spec", "exactly one of static or mcp must be set");
    }
    if let Some(mcp) = &spec.mcp {
        if mcp.targets.is_empty() {
            r.error("spec.mcp.targets", "at least one target is required");
        }
        for (i, t) in mcp.targets.iter().enumerate() {
            if t.r#static.is_none() {
                r.error(
                    format!("spec.mcp.targets[{i}].static"),
                    "required: wayguard supports static MCP targets",
                );
            }
        }
    }
}
