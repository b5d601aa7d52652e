//! RP-initiated logout and OIDC Back-Channel Logout 1.0 (impl of [`Engine`]).
//!
//! - Logout (`logoutPath`): refused (403) when `Sec-Fetch-Site` says another site sent it (a
//!   cross-site GET logout would end the user's IdP session on a third party's say-so,
//!   AUTH-FLOWS.md 4.3 item 8). The session is deleted and the cookies expired first, then the
//!   browser goes to the provider's `end_session_endpoint` with `id_token_hint`,
//!   `post_logout_redirect_uri` (= `afterLogoutUrl`) and `client_id`: by default as an
//!   auto-submitted form POST, so the id_token never appears in a URL, a log or a Referer; `GET`
//!   with `endSessionProperties.methodType: GetMethod`. Without an end-session endpoint, straight to
//!   `afterLogoutUrl`.
//! - Back-channel logout: the provider POSTs `logout_token` (form); it must verify like an
//!   id_token (signature, `iss`, `aud` = client id, `iat`), carry the back-channel logout event,
//!   `sub` or `sid`, a `jti`, and no `nonce`. The sessions of that `sid` (or `sub`) end: deleted in
//!   Redis, refused from then on in cookie mode (per replica).

use std::time::SystemTime;

use serde_json::Value;
use wayguard_core::login::EndSessionMethod;
use wayguard_jwks::jwt::Expectations;

use crate::engine::{Engine, Found, Policy, own_cookie_names};
use crate::flow;
use crate::metrics::Metrics;
use crate::request::{Decision, Deny, HttpRequest};
use crate::store::Owner;

/// The event a logout token must carry.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Engine {
    pub(crate) async fn logout(
        &self,
        policy: &Policy,
        req: &HttpRequest,
        _now: SystemTime,
    ) -> Decision {
        let cfg = &policy.cfg;
        if req.is_cross_site() {
            Metrics::count(&self.metrics.logouts, &cfg.id, "cross_site_refused");
            return Decision::Deny(Deny::text(403, "logout must come from this site\n"));
        }
        let id_token = match self.find_session(policy, req).await {
            Found::Session { id, session } => {
                self.end_session(policy, &id).await;
                Some(session.id_token)
            }
            Found::None | Found::StoreDown(_) => None,
        };
        let cookies = crate::cookies::parse(req.header("cookie").unwrap_or_default());
        let mut expired = Vec::new();
        for name in own_cookie_names(policy, req) {
            expired.extend(crate::cookies::expire(&cfg.session.cookie, &name, &cookies));
        }
        Metrics::count(&self.metrics.logouts, &cfg.id, "logout");
        let end_session = match policy.provider.discovery().await {
            Ok(d) => d.end_session_endpoint.clone(),
            Err(_) => None,
        };
        let Some(endpoint) = end_session else {
            return Decision::Deny(
                Deny::redirect(cfg.after_logout_url.clone()).with_cookies(expired),
            );
        };
        let mut params = vec![
            ("post_logout_redirect_uri", cfg.after_logout_url.clone()),
            ("client_id", cfg.client_id.clone()),
        ];
        if let Some(t) = id_token {
            params.push(("id_token_hint", t));
        }
        let deny = match cfg.end_session {
            EndSessionMethod::Get => {
                let mut url = match url::Url::parse(&endpoint) {
                    Ok(u) => u,
                    Err(_) => {
                        return Decision::Deny(
                            Deny::redirect(cfg.after_logout_url.clone()).with_cookies(expired),
                        );
                    }
                };
                for (k, v) in &params {
                    url.query_pairs_mut().append_pair(k, v);
                }
                Deny::redirect(url.to_string())
            }
            EndSessionMethod::Post => {
                let fields: String = params
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                            html_escape(v)
                        )
                    })
                    .collect();
                Deny {
                    status: 200,
                    headers: vec![
                        ("content-type".into(), "text/html; charset=utf-8".into()),
                        ("cache-control".into(), "no-store".into()),
                        (
                            "content-security-policy".into(),
                            "default-src 'none'; script-src 'unsafe-inline'; form-action *".into(),
                        ),
                    ],
                    body: format!(
                        "<!doctype html><html><body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">{fields}<noscript><button type=\"submit\">Continue signing out</button></noscript></form></body></html>\n",
                        html_escape(&endpoint)
                    ),
                }
            }
        };
        Decision::Deny(deny.with_cookies(expired))
    }

    pub(crate) async fn back_channel_logout(
        &self,
        policy: &Policy,
        req: &HttpRequest,
        now: SystemTime,
    ) -> Decision {
        let cfg = &policy.cfg;
        let bad = |why: &str| {
            tracing::info!(authconfig = %cfg.id, why, "back-channel logout refused");
            Metrics::count(&self.metrics.logouts, &cfg.id, "backchannel_refused");
            Decision::Deny(Deny {
                status: 400,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("cache-control".into(), "no-store".into()),
                ],
                body: format!(
                    "{{\"error\":\"invalid_request\",\"error_description\":\"{why}\"}}\n"
                ),
            })
        };
        if req.method != "POST" {
            return bad("back-channel logout is a POST");
        }
        let form: Vec<(String, String)> = url::form_urlencoded::parse(req.body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let tokens: Vec<&str> = form
            .iter()
            .filter(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.as_str())
            .collect();
        let [token] = tokens.as_slice() else {
            return bad("exactly one logout_token is required");
        };
        let discovery = match policy.provider.discovery().await {
            Ok(d) => d,
            Err(_) => {
                return Decision::Deny(crate::engine::unavailable(
                    "the identity provider cannot be reached",
                ));
            }
        };
        let issuer = if discovery.issuer.is_empty() {
            cfg.provider.issuer_url.clone()
        } else {
            discovery.issuer.clone()
        };
        let mut expect = Expectations::new(issuer, vec![cfg.client_id.clone()]);
        expect.leeway = flow::ID_TOKEN_LEEWAY;
        expect.require_exp = false;
        let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
        let keys = match policy.provider.keys(kid.as_deref()).await {
            Ok(k) => k,
            Err(_) => {
                return Decision::Deny(crate::engine::unavailable(
                    "the identity provider's keys cannot be fetched",
                ));
            }
        };
        let v = match keys.verify(token, &expect, now) {
            Ok(v) => v,
            Err(e) => return bad(&format!("logout_token: {e}")),
        };
        let has_event = v
            .claims
            .get("events")
            .and_then(Value::as_object)
            .is_some_and(|e| e.contains_key(BACKCHANNEL_EVENT));
        if !has_event {
            return bad("logout_token has no back-channel logout event");
        }
        if v.claims.contains_key("nonce") {
            return bad("logout_token must not carry a nonce");
        }
        if v.str_claim("jti").is_none() || v.time_claim("iat").is_none() {
            return bad("logout_token needs jti and iat");
        }
        let owner = match (v.str_claim("sid"), v.str_claim("sub")) {
            (Some(sid), _) => Owner::IdpSession(sid.to_string()),
            (None, Some(sub)) => Owner::Subject(sub.to_string()),
            (None, None) => return bad("logout_token needs sub or sid"),
        };
        match self.revoke_in(policy, owner.clone()).await {
            Ok(n) => {
                tracing::info!(authconfig = %cfg.id, ?owner, sessions = n, "back-channel logout");
                Metrics::count(&self.metrics.logouts, &cfg.id, "backchannel");
                Decision::Deny(Deny {
                    status: 200,
                    headers: vec![("cache-control".into(), "no-store".into())],
                    body: String::new(),
                })
            }
            // The provider retries on a 5xx (OIDC Back-Channel Logout 2.8).
            Err(e) => {
                tracing::warn!(authconfig = %cfg.id, error = %e, "back-channel logout: store unavailable");
                Decision::Deny(crate::engine::unavailable(
                    "the session store is unavailable",
                ))
            }
        }
    }
}
