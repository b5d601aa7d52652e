//! AuthConfig (`oauth2.oidcAuthorizationCode`) + its Secrets -> [`LoginConfig`] for the ext_authz
//! engine, and EnterpriseAgentgatewayPolicy `traffic.entExtAuth` attachments -> [`GatewayLogin`]
//! for translation (AUTH-FLOWS.md 1.1, 1.2).
//!
//! Defaults follow Gloo's ext-auth-service, except where it is unsafe, and each deviation is
//! named here: RP-initiated logout is a form POST unless `endSessionProperties.methodType:
//! GetMethod` (a GET puts the id_token in a URL, a log and a Referer); a cookie session needs
//! `session.cipherConfig.keyRef` (Gloo would store tokens in a cookie unencrypted); cookie names
//! default per AuthConfig (Gloo's shared `__session` lets two AuthConfigs on one host overwrite
//! each other's sessions); `Secure` is dropped only for an `http://` appUrl.

use std::time::Duration;

use wayguard_api::duration::parse_go_duration;
use wayguard_api::gateway_api::apis::standard::gateways::Gateway;
use wayguard_api::resource::{Kind, Resource};
use wayguard_api::solo::{
    AuthConfig, EndSessionMethod as SoloEndSession, OidcAuthorizationCode, RedisSocketType,
    ResourceRef, SameSite as SoloSameSite,
};
use wayguard_core::GatewayId;
use wayguard_core::login::{
    ClaimHeader, ClientAuth, CookieOptions, DiscoveryOverride, EndSessionMethod, ExtAuthTarget,
    ForwardConfig, GatewayLogin, LoginConfig, LoginPaths, ProviderConfig, RedisConfig, SameSite,
    Secret, SessionConfig, SessionStore, default_cookie_names, join_url, url_path,
};
use wayguard_core::routing::{FilterChain, Listener, Problem};

use crate::Index;

/// Default `callbackPath` (Gloo's `DefaultCallback`).
pub const DEFAULT_CALLBACK_PATH: &str = "/callback";
/// Suffix of the back-channel logout path under the callback path.
pub const BACK_CHANNEL_LOGOUT_SUFFIX: &str = "/backchannel-logout";
/// Default `discoveryPollInterval`.
const DEFAULT_POLL: Duration = Duration::from_secs(30 * 60);
/// Default `cookieOptions.maxAge` (30 days).
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default `redis.preExpiryBuffer`.
const DEFAULT_PRE_EXPIRY: Duration = Duration::from_secs(2);
/// Default `privateKeyJwt.validFor`.
const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(5);
/// The key of the client secret in its Secret (Gloo: type `extauth.solo.io/oauth`).
const CLIENT_SECRET_KEY: &str = "client-secret";
/// Keys tried, in order, for a private_key_jwt signing key.
const SIGNING_KEY_KEYS: &[&str] = &["private-key", "tls.key", "key"];
/// The key of a cipherConfig key (Gloo: type `gloo.solo.io.EncryptionKeySecret`).
const CIPHER_KEY_KEY: &str = "key";

fn problem(object: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        object: object.into(),
        message: message.into(),
    }
}

/// The login step of an AuthConfig (validation allows exactly one supported config type).
fn oidc(ac: &AuthConfig) -> Option<&OidcAuthorizationCode> {
    ac.spec.configs.iter().find_map(|c| {
        c.oauth2
            .as_ref()
            .and_then(|o| o.oidc_authorization_code.as_deref())
    })
}

fn duration(field: &str, value: Option<&String>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(v) => parse_go_duration(v).map_err(|e| format!("{field}: {e}")),
    }
}

/// The paths an AuthConfig answers itself (no Secrets needed: attachments work, and fail
/// closed, even while a Secret is missing).
fn paths_of(o: &OidcAuthorizationCode) -> LoginPaths {
    let callback = url_path(&join_url(&o.app_url, &callback_path(o)));
    LoginPaths {
        back_channel_logout: Some(back_channel_path(&callback)),
        callback,
        logout: (!o.logout_path.is_empty()).then(|| o.logout_path.clone()),
    }
}

fn callback_path(o: &OidcAuthorizationCode) -> String {
    if o.callback_path.is_empty() {
        DEFAULT_CALLBACK_PATH.to_string()
    } else {
        o.callback_path.clone()
    }
}

fn back_channel_path(callback: &str) -> String {
    format!(
        "{}{BACK_CHANNEL_LOGOUT_SUFFIX}",
        callback.trim_end_matches('/')
    )
}

impl Index {
    /// Every AuthConfig in effect, resolved with its Secrets, and a problem for each that could
    /// not be (its routes then answer 503: the engine has no policy for them).
    pub fn login_configs(&self) -> (Vec<LoginConfig>, Vec<Problem>) {
        let mut configs = Vec::new();
        let mut problems = Vec::new();
        for r in self.valid(Kind::AuthConfig) {
            let Resource::AuthConfig(ac) = r else {
                continue;
            };
            let ns = ac.metadata.namespace.clone().unwrap_or_default();
            let name = ac.metadata.name.clone().unwrap_or_default();
            match self.login_config(&ns, &name, ac) {
                Ok(c) => configs.push(c),
                Err(e) => problems.push(problem(format!("AuthConfig {ns}/{name}"), e)),
            }
        }
        (configs, problems)
    }

    /// The problem that keeps one AuthConfig from being served, if any.
    pub fn login_config_problem(&self, namespace: &str, name: &str) -> Option<String> {
        match self.find(Kind::AuthConfig, namespace, name) {
            Some(Resource::AuthConfig(ac)) => self.login_config(namespace, name, ac).err(),
            _ => None,
        }
    }

    fn secret_value(
        &self,
        owner_ns: &str,
        r: &ResourceRef,
        keys: &[&str],
    ) -> Result<Vec<u8>, String> {
        let ns = r.namespace.as_deref().unwrap_or(owner_ns);
        let Some(Resource::Secret(secret)) = self.find(Kind::Secret, ns, &r.name) else {
            return Err(format!("Secret {ns}/{} not found", r.name));
        };
        for k in keys {
            if let Some(v) = secret.data.as_ref().and_then(|d| d.get(*k)) {
                return Ok(v.0.clone());
            }
            if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(*k)) {
                return Ok(v.as_bytes().to_vec());
            }
        }
        Err(format!(
            "Secret {ns}/{} has no key {}",
            r.name,
            keys.join(" or ")
        ))
    }

    fn login_config(&self, ns: &str, name: &str, ac: &AuthConfig) -> Result<LoginConfig, String> {
        let id = format!("{ns}/{name}");
        let o = oidc(ac).ok_or("no oauth2.oidcAuthorizationCode config")?;
        let path = "spec.configs[].oauth2.oidcAuthorizationCode";
        if o.parse_callback_path_as_regex {
            return Err(format!(
                "{path}.parseCallbackPathAsRegex is not supported: the callback path is matched exactly (a regex widens what counts as a callback); remove it"
            ));
        }
        let client_auth = self.client_auth(ns, o, path)?;
        let session_spec = o.session.clone().unwrap_or_default();
        let cipher_key = match session_spec
            .cipher_config
            .as_ref()
            .and_then(|c| c.key_ref.as_ref())
        {
            Some(r) => {
                let key = self
                    .secret_value(ns, r, &[CIPHER_KEY_KEY])
                    .map_err(|e| format!("{path}.session.cipherConfig.keyRef: {e}"))?;
                if key.len() != 32 {
                    return Err(format!(
                        "{path}.session.cipherConfig.keyRef: the key must be exactly 32 bytes, it is {}",
                        key.len()
                    ));
                }
                Some(Secret::new(key))
            }
            None => None,
        };
        let (default_name, transaction_name) = default_cookie_names(&id);
        let (store, cookie_name, allow_refreshing, pre_expiry, session_header) = match (
            &session_spec.redis,
            &session_spec.cookie,
        ) {
            (Some(redis), _) => {
                let opts = redis.options.clone().unwrap_or_default();
                (
                    SessionStore::Redis(RedisConfig {
                        address: opts.host.clone(),
                        db: i64::from(opts.db.unwrap_or(0)),
                        key_prefix: redis.key_prefix.clone(),
                        tls: opts.socket_type == Some(RedisSocketType::Tls),
                    }),
                    (!redis.cookie_name.is_empty()).then(|| redis.cookie_name.clone()),
                    redis.allow_refreshing.unwrap_or(true),
                    duration(
                        &format!("{path}.session.redis.preExpiryBuffer"),
                        redis.pre_expiry_buffer.as_ref(),
                        DEFAULT_PRE_EXPIRY,
                    )?,
                    (!redis.header_name.is_empty()).then(|| redis.header_name.clone()),
                )
            }
            (None, cookie) => {
                let Some(key) = cipher_key.clone() else {
                    return Err(format!(
                        "{path}.session: tokens kept in the cookie need session.cipherConfig.keyRef (a Secret with a 32-byte `key`); wayguard never stores tokens in a cookie unencrypted. Or keep sessions in Redis with session.redis"
                    ));
                };
                let prefix = cookie
                    .as_ref()
                    .map(|c| c.key_prefix.clone())
                    .unwrap_or_default();
                (
                    SessionStore::Cookie { key },
                    (!prefix.is_empty()).then(|| format!("{prefix}_{default_name}")),
                    cookie
                        .as_ref()
                        .and_then(|c| c.allow_refreshing)
                        .unwrap_or(false),
                    DEFAULT_PRE_EXPIRY,
                    None,
                )
            }
        };
        let co = session_spec.cookie_options.clone().unwrap_or_default();
        let cookie = CookieOptions {
            name: cookie_name.unwrap_or(default_name),
            transaction_name,
            max_age: match co.max_age {
                None => Some(DEFAULT_MAX_AGE),
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(u64::from(s))),
            },
            secure: !co.not_secure && !o.app_url.starts_with("http://"),
            http_only: co.http_only.unwrap_or(true),
            path: match co.path.as_deref() {
                None => Some("/".into()),
                Some("") => None,
                Some(p) => Some(p.to_string()),
            },
            same_site: match co.same_site {
                None | Some(SoloSameSite::DefaultMode | SoloSameSite::LaxMode) => SameSite::Lax,
                Some(SoloSameSite::StrictMode) => SameSite::Strict,
                Some(SoloSameSite::NoneMode) => SameSite::None,
            },
            domain: co.domain.clone().filter(|d| !d.is_empty()),
        };
        let headers = o.headers.clone().unwrap_or_default();
        let claims = |c: &Option<wayguard_api::solo::ClaimsToHeaders>| {
            c.iter()
                .flat_map(|c| c.claims_to_headers.iter())
                .map(|m| ClaimHeader {
                    claim: m.claim.clone(),
                    header: m.header.clone(),
                    append: m.append,
                })
                .collect::<Vec<_>>()
        };
        let mut scopes = vec!["openid".to_string()];
        for s in &o.scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let overrides = o.discovery_override.clone().unwrap_or_default();
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        let callback = callback_path(o);
        Ok(LoginConfig {
            id,
            provider: ProviderConfig {
                issuer_url: o.issuer_url.clone(),
                overrides: DiscoveryOverride {
                    authorization_endpoint: some(&overrides.auth_endpoint),
                    token_endpoint: some(&overrides.token_endpoint),
                    jwks_uri: some(&overrides.jwks_uri),
                    end_session_endpoint: some(&overrides.end_session_endpoint),
                    revocation_endpoint: some(&overrides.revocation_endpoint),
                    id_token_algs: overrides.id_token_algs.clone(),
                },
                poll_interval: duration(
                    &format!("{path}.discoveryPollInterval"),
                    o.discovery_poll_interval.as_ref(),
                    DEFAULT_POLL,
                )?,
            },
            client_id: o.client_id.clone(),
            client_auth,
            app_url: o.app_url.clone(),
            back_channel_logout_path: Some(back_channel_path(&url_path(&join_url(
                &o.app_url, &callback,
            )))),
            callback_path: callback,
            logout_path: some(&o.logout_path),
            after_logout_url: some(&o.after_logout_url).unwrap_or_else(|| o.app_url.clone()),
            end_session: match o
                .end_session_properties
                .as_ref()
                .and_then(|e| e.method_type)
            {
                Some(SoloEndSession::GetMethod) => EndSessionMethod::Get,
                Some(SoloEndSession::PostMethod) | None => EndSessionMethod::Post,
            },
            scopes,
            auth_query_params: o.auth_endpoint_query_params.clone(),
            token_query_params: o.token_endpoint_query_params.clone(),
            session: SessionConfig {
                store,
                cookie,
                allow_refreshing,
                pre_expiry_buffer: pre_expiry,
                fail_on_fetch_failure: session_spec.fail_on_fetch_failure,
                session_id_header: session_header.or_else(|| some(&o.session_id_header_name)),
            },
            forward: ForwardConfig {
                id_token_header: some(&headers.id_token_header),
                access_token_header: some(&headers.access_token_header),
                bearer: headers.use_bearer_schema_for_authorization.unwrap_or(false),
                id_token_claims: claims(&o.identity_token),
                access_token_claims: claims(&o.access_token),
                metadata_from_claims: o.dynamic_metadata_from_claims.clone(),
            },
            fail_on_redirect: ac.spec.fail_on_redirect,
        })
    }

    fn client_auth(
        &self,
        ns: &str,
        o: &OidcAuthorizationCode,
        path: &str,
    ) -> Result<ClientAuth, String> {
        let ca = o.client_authentication.as_ref();
        if let Some(pk) = ca.and_then(|c| c.private_key_jwt.as_ref()) {
            let r = pk.signing_key_ref.as_ref().ok_or_else(|| {
                format!("{path}.clientAuthentication.privateKeyJwt.signingKeyRef is required")
            })?;
            let field = format!("{path}.clientAuthentication.privateKeyJwt.signingKeyRef");
            let key = self
                .secret_value(ns, r, SIGNING_KEY_KEYS)
                .map_err(|e| format!("{field}: {e}"))?;
            if !String::from_utf8_lossy(&key).contains("PRIVATE KEY-----") {
                return Err(format!(
                    "{field}: the key must be a PEM private key (PKCS#8 RSA or EC)"
                ));
            }
            let kid = self
                .secret_value(ns, r, &["kid"])
                .ok()
                .and_then(|k| String::from_utf8(k).ok());
            return Ok(ClientAuth::PrivateKeyJwt {
                key_pem: Secret::new(key),
                kid,
                valid_for: duration(
                    &format!("{path}.clientAuthentication.privateKeyJwt.validFor"),
                    pk.valid_for.as_ref(),
                    DEFAULT_ASSERTION_LIFETIME,
                )?,
            });
        }
        let cs = ca.and_then(|c| c.client_secret.as_ref());
        let disabled = cs
            .and_then(|c| c.disable_client_secret)
            .or(o.disable_client_secret);
        if disabled == Some(true) {
            return Ok(ClientAuth::None);
        }
        // clientAuthentication.clientSecret.clientSecretRef, else the deprecated top-level field.
        let (field, r) = match cs.and_then(|c| c.client_secret_ref.as_ref()) {
            Some(r) => (
                format!("{path}.clientAuthentication.clientSecret.clientSecretRef"),
                r,
            ),
            None => match o.client_secret_ref.as_ref() {
                Some(r) => (format!("{path}.clientSecretRef"), r),
                None => {
                    return Err(format!(
                        "{path}.clientSecretRef is required unless the client is public (disableClientSecret) or uses privateKeyJwt"
                    ));
                }
            },
        };
        let secret = self
            .secret_value(ns, r, &[CLIENT_SECRET_KEY])
            .map_err(|e| format!("{field}: {e}"))?;
        let text = String::from_utf8(secret)
            .map_err(|_| format!("{field}: the client secret is not UTF-8"))?;
        Ok(ClientAuth::SecretBasic(Secret::new(
            text.trim_end_matches(['\n', '\r']),
        )))
    }

    /// The login attachments of a gateway whose Envoy listeners are `listeners`, and their
    /// problems. `service_cluster` registers a Service port's cluster and returns its name (the
    /// backendRef), or `None` when the Service or port does not exist.
    pub(crate) fn gateway_login(
        &self,
        id: &GatewayId,
        gw: &Gateway,
        listeners: &[Listener],
        mut service_cluster: impl FnMut(&str, &str, u16) -> Option<String>,
    ) -> (GatewayLogin, Vec<Problem>) {
        let mut login = GatewayLogin::default();
        let mut problems = Vec::new();
        let mut backend: Option<(String, String, Option<u16>, String, bool)> = None;
        let chains: Vec<&FilterChain> = listeners.iter().flat_map(|l| &l.chains).collect();
        for r in self.valid(Kind::EnterpriseAgentgatewayPolicy) {
            let Resource::EnterpriseAgentgatewayPolicy(p) = r else {
                continue;
            };
            let Some(ea) = p
                .spec
                .traffic
                .as_ref()
                .and_then(|t| t.ent_ext_auth.as_ref())
            else {
                continue;
            };
            let pns = p.metadata.namespace.clone().unwrap_or_default();
            let pname = p.metadata.name.clone().unwrap_or_default();
            let object = format!("EnterpriseAgentgatewayPolicy {pns}/{pname}");
            let ac_ns = ea
                .auth_config_ref
                .namespace
                .clone()
                .unwrap_or_else(|| pns.clone());
            let ac_id = format!("{ac_ns}/{}", ea.auth_config_ref.name);
            let mut attached = false;
            for t in &p.spec.target_refs {
                let slot = match (t.group.as_str(), t.kind.as_str()) {
                    ("gateway.networking.k8s.io", "Gateway")
                        if t.name == id.name && pns == id.namespace =>
                    {
                        match &t.section_name {
                            None => &mut login.gateway,
                            Some(section) => {
                                attach_section(
                                    &mut login,
                                    &mut problems,
                                    &object,
                                    gw,
                                    section,
                                    &chains,
                                    &ac_id,
                                );
                                attached = true;
                                continue;
                            }
                        }
                    }
                    ("gateway.networking.k8s.io", "HTTPRoute") => {
                        let key = format!("{pns}/{}", t.name);
                        if !self.route_attaches(&pns, &t.name, id) {
                            continue;
                        }
                        attached = true;
                        if let Some(other) = login.http_routes.get(&key) {
                            if *other != ac_id {
                                problems.push(problem(&object, format!("HTTPRoute {key} already logs in with AuthConfig {other} (from another policy); this policy's AuthConfig {ac_id} is not applied there")));
                            }
                            continue;
                        }
                        login.http_routes.insert(key, ac_id.clone());
                        continue;
                    }
                    ("gateway.networking.k8s.io", "Gateway") => continue,
                    (g, k) => {
                        problems.push(problem(&object, format!("traffic.entExtAuth on {}{k} {} is not supported; target a Gateway, a listener (sectionName) or an HTTPRoute", if g.is_empty() { String::new() } else { format!("{g}/") }, t.name)));
                        continue;
                    }
                };
                attached = true;
                match slot {
                    Some(other) if *other != ac_id => problems.push(problem(&object, format!("Gateway {id} already logs in with AuthConfig {other} (from another policy); this policy's AuthConfig {ac_id} is not applied"))),
                    Some(_) => {}
                    None => *slot = Some(ac_id.clone()),
                }
            }
            if !attached {
                continue;
            }
            match self.find(Kind::AuthConfig, &ac_ns, &ea.auth_config_ref.name) {
                Some(Resource::AuthConfig(ac)) => match oidc(ac) {
                    Some(o) => {
                        login.paths.insert(ac_id.clone(), paths_of(o));
                    }
                    None => problems.push(problem(&object, format!("AuthConfig {ac_id} has no oidcAuthorizationCode config; its routes answer 503"))),
                },
                _ => problems.push(problem(&object, format!("AuthConfig {ac_id} not found (or not valid); its routes answer 503 until it is"))),
            }
            // The first policy (by namespace and name) with a backendRef says where ext_authz is.
            match (&ea.backend_ref, &backend) {
                (Some(b), None | Some((_, _, _, _, false))) => {
                    backend = Some((
                        b.namespace.clone().unwrap_or_else(|| pns.clone()),
                        b.name.clone(),
                        b.port.and_then(|p| u16::try_from(p).ok()),
                        object.clone(),
                        true,
                    ));
                }
                (None, None) => {
                    backend = Some((String::new(), String::new(), None, object.clone(), false));
                }
                _ => {}
            }
        }
        if login.is_empty() {
            return (GatewayLogin::default(), problems);
        }
        login.target = self.ext_auth_target(backend, &mut service_cluster, &mut problems);
        (login, problems)
    }

    fn ext_auth_target(
        &self,
        backend: Option<(String, String, Option<u16>, String, bool)>,
        service_cluster: &mut impl FnMut(&str, &str, u16) -> Option<String>,
        problems: &mut Vec<Problem>,
    ) -> ExtAuthTarget {
        let own = self.config.extauth_upstream.clone();
        let Some((ns, name, port, object, _)) = backend else {
            return own.map_or(ExtAuthTarget::Unresolved, |(h, p)| {
                ExtAuthTarget::Address(h, p)
            });
        };
        if !name.is_empty() {
            let port = port.unwrap_or(8083);
            if let Some(cluster) = service_cluster(&ns, &name, port) {
                return ExtAuthTarget::Service(cluster);
            }
            if own.is_none() {
                problems.push(problem(&object, format!("traffic.entExtAuth.backendRef: Service {ns}/{name} port {port} not found and wayguard has no --extauth-upstream; login routes answer 503 until one resolves")));
            }
        }
        match own {
            Some((h, p)) => ExtAuthTarget::Address(h, p),
            None => {
                if name.is_empty() {
                    problems.push(problem(&object, "traffic.entExtAuth has no backendRef and wayguard has no --extauth-upstream; login routes answer 503"));
                }
                ExtAuthTarget::Unresolved
            }
        }
    }

    /// Whether HTTPRoute `ns/name` names `gateway` as a parent.
    fn route_attaches(&self, ns: &str, name: &str, gateway: &GatewayId) -> bool {
        let Some(Resource::HttpRoute(r)) = self.find(Kind::HttpRoute, ns, name) else {
            return false;
        };
        r.spec.parent_refs.iter().flatten().any(|p| {
            p.kind.as_deref().unwrap_or("Gateway") == "Gateway"
                && p.name == gateway.name
                && p.namespace.as_deref().unwrap_or(ns) == gateway.namespace
        })
    }
}

/// Attaches `ac_id` to the route configuration of listener `section`.
fn attach_section(
    login: &mut GatewayLogin,
    problems: &mut Vec<Problem>,
    object: &str,
    gw: &Gateway,
    section: &str,
    chains: &[&FilterChain],
    ac_id: &str,
) {
    let Some(rc) = section_route_config(gw, section, chains, object, problems) else {
        return;
    };
    match login.route_configs.get(&rc) {
        Some(other) if other != ac_id => problems.push(problem(object, format!("listener {section} already logs in with AuthConfig {other} (from another policy); this policy's AuthConfig {ac_id} is not applied"))),
        Some(_) => {}
        None => {
            login.route_configs.insert(rc, ac_id.to_string());
        }
    }
}

/// The route configuration serving Gateway listener `section`. HTTP listeners on one port share
/// one: the login then covers them all (reported; failing closed beats leaving one open).
fn section_route_config(
    gw: &Gateway,
    section: &str,
    chains: &[&FilterChain],
    object: &str,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    if let Some(c) = chains.iter().find(|c| c.name == section) {
        return Some(c.route_config.clone());
    }
    let Some(gl) = gw.spec.listeners.iter().find(|l| l.name == section) else {
        problems.push(problem(
            object,
            format!("targetRefs sectionName {section}: the Gateway has no such listener"),
        ));
        return None;
    };
    let rc = format!("http-{}", gl.port);
    if gl.protocol == "HTTP" && chains.iter().any(|c| c.route_config == rc) {
        problems.push(problem(object, format!("listener {section} shares port {} with other HTTP listeners; the login applies to all of them", gl.port)));
        return Some(rc);
    }
    problems.push(problem(
        object,
        format!("listener {section} is not programmed; nothing to attach to"),
    ));
    None
}

#[cfg(test)]
#[path = "auth_config_tests.rs"]
mod tests;
