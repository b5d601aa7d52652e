//! The part of an Envoy `CheckRequest` the login flow reads, and the decision it returns.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// An HTTP request as Envoy describes it to ext_authz (header names lower-case).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method.
    pub method: String,
    /// `http` or `https`, as Envoy saw it.
    pub scheme: String,
    /// `:authority`.
    pub host: String,
    /// `:path`, query included.
    pub path: String,
    /// Headers, lower-case names (Envoy joins repeated headers with `,`; `cookie` with `; `).
    pub headers: BTreeMap<String, String>,
    /// Request body (only when Envoy buffers it; form posts to the back-channel logout path).
    pub body: String,
}

impl HttpRequest {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("/")
    }

    /// Decoded query parameters, in order (a parameter given twice is listed twice).
    pub fn query(&self) -> Vec<(String, String)> {
        let Some((_, q)) = self.path.split_once('?') else {
            return Vec::new();
        };
        let q = q.split('#').next().unwrap_or_default();
        url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// Whether this looks like a top-level browser navigation, which may be redirected to the
    /// IdP. Everything else (fetch/XHR, API clients, non-GET requests) gets 401: a cross-origin
    /// 302 breaks a fetch in confusing ways (AUTH-FLOWS.md 4.3 item 10).
    pub fn is_navigation(&self) -> bool {
        if !matches!(self.method.as_str(), "GET" | "HEAD") {
            return false;
        }
        if self.header("x-requested-with").is_some() {
            return false;
        }
        if let Some(mode) = self.header("sec-fetch-mode") {
            return mode.eq_ignore_ascii_case("navigate");
        }
        match self.header("accept") {
            None => true,
            Some(accept) => {
                let accept = accept.to_ascii_lowercase();
                accept.contains("text/html")
                    || accept.contains("*/*") && !accept.contains("application/json")
            }
        }
    }

    /// `Sec-Fetch-Site` says the request came from another site.
    pub fn is_cross_site(&self) -> bool {
        self.header("sec-fetch-site").is_some_and(|s| {
            s.eq_ignore_ascii_case("cross-site") || s.eq_ignore_ascii_case("same-site")
        })
    }
}

/// What Envoy is told.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Forward upstream, changed like this.
    Allow(Allow),
    /// Answer the client directly (a redirect, a 401, a 503, the end of a login).
    Deny(Deny),
}

/// Changes to an allowed request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allow {
    /// Headers set on the upstream request (replacing any the client sent).
    pub set_headers: Vec<(String, String)>,
    /// Headers appended on the upstream request.
    pub append_headers: Vec<(String, String)>,
    /// Headers removed from the upstream request.
    pub remove_headers: Vec<String>,
    /// Headers added to the response to the client (`Set-Cookie` after a refresh).
    pub response_headers: Vec<(String, String)>,
    /// Dynamic metadata (namespace `envoy.filters.http.ext_authz`).
    pub metadata: Map<String, Value>,
}

/// A direct response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deny {
    /// HTTP status.
    pub status: u16,
    /// Response headers (`Set-Cookie` may repeat).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Deny {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![
                ("content-type".into(), "text/plain; charset=utf-8".into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: body.into(),
        }
    }

    /// A redirect to `location`.
    pub fn redirect(location: impl Into<String>) -> Self {
        Self {
            status: 302,
            headers: vec![
                ("location".into(), location.into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: String::new(),
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `Set-Cookie` headers.
    pub fn with_cookies(mut self, cookies: Vec<String>) -> Self {
        self.headers
            .extend(cookies.into_iter().map(|c| ("set-cookie".to_string(), c)));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            scheme: "https".into(),
            host: "app.example".into(),
            path: "/a?x=1&x=2&y=%2F".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: String::new(),
        }
    }

    #[test]
    fn only_top_level_navigations_are_redirected() {
        let nav = [
            req(
                "GET",
                &[
                    ("sec-fetch-mode", "navigate"),
                    ("accept", "application/json"),
                ],
            ),
            req(
                "GET",
                &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
            ),
            req("GET", &[]),
            req("HEAD", &[("accept", "*/*")]),
        ];
        for r in nav {
            assert!(r.is_navigation(), "{r:?}");
        }
        let api = [
            req("GET", &[("sec-fetch-mode", "cors")]),
            req("GET", &[("sec-fetch-mode", "no-cors")]),
            req("GET", &[("accept", "application/json")]),
            req("GET", &[("accept", "application/json, */*")]),
            req("GET", &[("x-requested-with", "XMLHttpRequest")]),
            req("POST", &[("accept", "text/html")]),
        ];
        for r in api {
            assert!(!r.is_navigation(), "{r:?}");
        }
    }

    #[test]
    fn query_and_path_are_split() {
        let r = req("GET", &[]);
        assert_eq!(r.path_only(), "/a");
        assert_eq!(
            r.query(),
            vec![
                ("x".into(), "1".into()),
                ("x".into(), "2".into()),
                ("y".into(), "/".into())
            ]
        );
    }
}
