//! HTTPRoute rule filters: `RequestHeaderModifier`, `ResponseHeaderModifier`, `URLRewrite` and
//! `RequestRedirect` (Gateway API core and extended filters stock Envoy implements on the route).
//! `RequestMirror`, `CORS` and `ExtensionRef` are not implemented: a rule using them answers 500
//! and is reported, as Gateway API asks for filters an implementation does not support.

use wayguard_api::gateway_api::apis::standard::httproutes::{
    HttpRouteRules, HttpRouteRulesFiltersRequestRedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme, HttpRouteRulesFiltersType,
    HttpRouteRulesFiltersUrlRewritePathType,
};
use wayguard_api::validation::filter_type_name;
use wayguard_core::routing::{
    HeaderChanges, HeaderModifier, PathMatch, PathRewrite, Redirect, Rewrite,
};

/// A path replacement as written, before it meets a route's path match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PathSpec {
    Full(String),
    Prefix(String),
}

/// The filters of one rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RuleFilters {
    pub headers: HeaderChanges,
    /// `URLRewrite`: hostname and path.
    pub rewrite: Option<(Option<String>, Option<PathSpec>)>,
    /// `RequestRedirect`, its path still a [`PathSpec`].
    pub redirect: Option<(Redirect, Option<PathSpec>)>,
}

/// The request and response modifiers are distinct generated types of the same shape.
macro_rules! header_modifier {
    ($field:expr, $at:expr, $name:literal) => {
        $field
            .as_ref()
            .ok_or_else(|| missing(&$at, $name))
            .map(|m| {
                modifier(
                    m.set.iter().flatten().map(|h| (&h.name, &h.value)),
                    m.add.iter().flatten().map(|h| (&h.name, &h.value)),
                    m.remove.iter().flatten(),
                )
            })
    };
}

/// `URLRewrite` and `RequestRedirect` paths are distinct generated types of the same shape.
macro_rules! path_spec {
    ($path:expr, $kind:ident, $at:expr) => {
        match &$path {
            None => Ok(None),
            Some(p) => match p.r#type {
                $kind::ReplaceFullPath => p
                    .replace_full_path
                    .clone()
                    .map(|v| Some(PathSpec::Full(v)))
                    .ok_or_else(|| missing(&$at, "path.replaceFullPath")),
                $kind::ReplacePrefixMatch => p
                    .replace_prefix_match
                    .clone()
                    .map(|v| Some(PathSpec::Prefix(v)))
                    .ok_or_else(|| missing(&$at, "path.replacePrefixMatch")),
            },
        }
    };
}

/// Reads the rule's filters; `Err` names what cannot be served (the rule then answers 500).
pub(crate) fn rule_filters(rule: &HttpRouteRules) -> Result<RuleFilters, String> {
    for (i, backend) in rule.backend_refs.iter().flatten().enumerate() {
        if backend.filters.as_ref().is_some_and(|f| !f.is_empty()) {
            // Ignoring them would silently drop header changes someone may rely on.
            return Err(format!(
                "backendRefs[{i}].filters are not supported; requests to this rule get 500 (put the filters on the rule)"
            ));
        }
    }
    let mut out = RuleFilters::default();
    let mut seen = Vec::new();
    for (i, f) in rule.filters.iter().flatten().enumerate() {
        let at = format!("filters[{i}] ({})", filter_type_name(&f.r#type));
        if seen.contains(&f.r#type) {
            return Err(format!(
                "{at}: a filter type may appear once per rule (Gateway API); merge them"
            ));
        }
        seen.push(f.r#type.clone());
        match f.r#type {
            HttpRouteRulesFiltersType::RequestHeaderModifier => {
                out.headers.request =
                    header_modifier!(f.request_header_modifier, at, "requestHeaderModifier")?;
            }
            HttpRouteRulesFiltersType::ResponseHeaderModifier => {
                out.headers.response =
                    header_modifier!(f.response_header_modifier, at, "responseHeaderModifier")?;
            }
            HttpRouteRulesFiltersType::UrlRewrite => {
                let r = f
                    .url_rewrite
                    .as_ref()
                    .ok_or_else(|| missing(&at, "urlRewrite"))?;
                let path = path_spec!(r.path, HttpRouteRulesFiltersUrlRewritePathType, at)?;
                out.rewrite = Some((r.hostname.clone(), path));
            }
            HttpRouteRulesFiltersType::RequestRedirect => {
                let r = f
                    .request_redirect
                    .as_ref()
                    .ok_or_else(|| missing(&at, "requestRedirect"))?;
                let path = path_spec!(r.path, HttpRouteRulesFiltersRequestRedirectPathType, at)?;
                let status = match r.status_code.unwrap_or(302) {
                    s @ (301 | 302 | 303 | 307 | 308) => s as u16,
                    other => {
                        return Err(format!(
                            "{at}: statusCode {other} is not a redirect status; use 301, 302, 303, 307 or 308"
                        ));
                    }
                };
                let port = match r.port {
                    None => None,
                    Some(p) => {
                        Some(u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                            format!("{at}: port {p} is not a port number (1-65535)")
                        })?)
                    }
                };
                let redirect = Redirect {
                    scheme: r.scheme.as_ref().map(|s| {
                        match s {
                            HttpRouteRulesFiltersRequestRedirectScheme::Http => "http",
                            HttpRouteRulesFiltersRequestRedirectScheme::Https => "https",
                        }
                        .to_string()
                    }),
                    hostname: r.hostname.clone(),
                    port,
                    path: None,
                    status,
                };
                out.redirect = Some((redirect, path));
            }
            HttpRouteRulesFiltersType::RequestMirror
            | HttpRouteRulesFiltersType::ExtensionRef
            | HttpRouteRulesFiltersType::Cors => {
                return Err(format!(
                    "{at} is not supported; requests to this rule get 500 (supported: RequestHeaderModifier, ResponseHeaderModifier, URLRewrite, RequestRedirect)"
                ));
            }
        }
    }
    if out.redirect.is_some() && out.rewrite.is_some() {
        return Err(
            "filters: RequestRedirect and URLRewrite cannot be used in the same rule (Gateway API)"
                .into(),
        );
    }
    Ok(out)
}

/// The route-specific part: a prefix replacement needs the route's `PathPrefix` match.
pub(crate) fn resolve_path(spec: &PathSpec, matched: &PathMatch) -> Result<PathRewrite, String> {
    match (spec, matched) {
        (PathSpec::Full(path), _) => Ok(PathRewrite::Full(path.clone())),
        (PathSpec::Prefix(replacement), PathMatch::Prefix(prefix)) => Ok(PathRewrite::Prefix {
            matched: prefix.clone(),
            replacement: replacement.clone(),
        }),
        (PathSpec::Prefix(_), _) => Err(
            "ReplacePrefixMatch needs a PathPrefix match (Gateway API); requests to this match get 500"
                .into(),
        ),
    }
}

/// The rewrite of one route, from its rule's `URLRewrite`.
pub(crate) fn route_rewrite(
    filters: &RuleFilters,
    matched: &PathMatch,
) -> Result<Option<Rewrite>, String> {
    let Some((hostname, path)) = &filters.rewrite else {
        return Ok(None);
    };
    Ok(Some(Rewrite {
        hostname: hostname.clone(),
        path: path
            .as_ref()
            .map(|p| resolve_path(p, matched))
            .transpose()?,
    }))
}

/// The redirect of one route, from its rule's `RequestRedirect`, on a listener on
/// `listener_port` (`https` when it terminates TLS).
///
/// The port follows Gateway API: the filter's port, else the well-known port of the filter's
/// scheme, else the listener's port; it is left out of `Location` when it is the well-known port
/// of the redirect's scheme.
pub(crate) fn route_redirect(
    filters: &RuleFilters,
    matched: &PathMatch,
    listener_port: u16,
    https: bool,
) -> Result<Option<Redirect>, String> {
    let Some((redirect, path)) = &filters.redirect else {
        return Ok(None);
    };
    let well_known = |scheme: &str| if scheme == "https" { 443 } else { 80 };
    let scheme = redirect
        .scheme
        .clone()
        .unwrap_or_else(|| if https { "https" } else { "http" }.to_string());
    let port = redirect
        .port
        .or(redirect.scheme.as_deref().map(well_known))
        .unwrap_or(listener_port);
    Ok(Some(Redirect {
        path: path
            .as_ref()
            .map(|p| resolve_path(p, matched))
            .transpose()?,
        port: (port != well_known(&scheme)).then_some(port),
        ..redirect.clone()
    }))
}

fn modifier<'a>(
    set: impl Iterator<Item = (&'a String, &'a String)>,
    add: impl Iterator<Item = (&'a String, &'a String)>,
    remove: impl Iterator<Item = &'a String>,
) -> HeaderModifier {
    let pairs = |it: &mut dyn Iterator<Item = (&'a String, &'a String)>| {
        it.map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect()
    };
    let (mut set, mut add) = (set, add);
    HeaderModifier {
        set: pairs(&mut set),
        add: pairs(&mut add),
        remove: remove.map(|n| n.to_ascii_lowercase()).collect(),
    }
}

fn missing(at: &str, field: &str) -> String {
    format!("{at}: the filter's `{field}` is missing")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn rule(filters: Value) -> HttpRouteRules {
        serde_json::from_value(json!({ "filters": filters })).expect("rule parses")
    }

    #[test]
    fn unsupported_and_invalid_filters_are_refused_with_the_reason() {
        let cases = [
            (
                json!([{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "a", "port": 1}}}]),
                "is not supported",
            ),
            (json!([{"type": "CORS", "cors": {}}]), "is not supported"),
            (
                json!([
                    {"type": "RequestHeaderModifier", "requestHeaderModifier": {}},
                    {"type": "RequestHeaderModifier", "requestHeaderModifier": {}}
                ]),
                "may appear once per rule",
            ),
            (
                json!([{"type": "RequestRedirect", "requestRedirect": {"statusCode": 200}}]),
                "statusCode 200 is not a redirect status",
            ),
            (
                json!([{"type": "RequestRedirect", "requestRedirect": {"port": 70000}}]),
                "port 70000 is not a port number",
            ),
            (
                json!([
                    {"type": "RequestRedirect", "requestRedirect": {}},
                    {"type": "URLRewrite", "urlRewrite": {}}
                ]),
                "cannot be used in the same rule",
            ),
            (json!([{"type": "URLRewrite"}]), "`urlRewrite` is missing"),
        ];
        for (filters, needle) in cases {
            let error = rule_filters(&rule(filters.clone())).expect_err(&filters.to_string());
            assert!(error.contains(needle), "{filters}: {error}");
        }
        let backend_filters: HttpRouteRules = serde_json::from_value(json!({
            "backendRefs": [{"name": "a", "port": 1, "filters": [
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x"]}}
            ]}]
        }))
        .expect("rule parses");
        let error = rule_filters(&backend_filters).expect_err("backendRef filters");
        assert!(
            error.contains("backendRefs[0].filters are not supported"),
            "{error}"
        );
    }

    #[test]
    fn header_names_are_lower_cased_and_kept_in_order() {
        let filters = rule_filters(&rule(json!([{
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {
                "set": [{"name": "X-A", "value": "1"}],
                "add": [{"name": "X-B", "value": "2"}],
                "remove": ["X-C"]
            }
        }])))
        .expect("valid");
        assert_eq!(
            filters.headers.request.set,
            vec![("x-a".into(), "1".into())]
        );
        assert_eq!(
            filters.headers.request.add,
            vec![("x-b".into(), "2".into())]
        );
        assert_eq!(filters.headers.request.remove, vec!["x-c".to_string()]);
        assert!(filters.headers.response.is_empty());
    }

    #[test]
    fn prefix_replacement_needs_a_prefix_match() {
        let filters = rule_filters(&rule(json!([{
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}
        }])))
        .expect("valid");
        let prefix = PathMatch::Prefix("/old".into());
        assert_eq!(
            route_rewrite(&filters, &prefix).expect("prefix"),
            Some(Rewrite {
                hostname: None,
                path: Some(PathRewrite::Prefix {
                    matched: "/old".into(),
                    replacement: "/new".into(),
                }),
            })
        );
        let error = route_rewrite(&filters, &PathMatch::Exact("/old".into())).expect_err("exact");
        assert!(error.contains("needs a PathPrefix match"), "{error}");
    }

    #[test]
    fn redirect_ports_follow_gateway_api() {
        // (filter, listener port, listener https) -> port written into Location
        let cases = [
            (json!({}), 8080, false, Some(8080)),
            (json!({}), 80, false, None),
            (json!({}), 443, true, None),
            (json!({"scheme": "https"}), 8080, false, None),
            (json!({"scheme": "http"}), 8443, true, None),
            (
                json!({"scheme": "https", "port": 8443}),
                80,
                false,
                Some(8443),
            ),
            (json!({"scheme": "https", "port": 443}), 80, false, None),
            (
                json!({"hostname": "example.org"}),
                10080,
                false,
                Some(10080),
            ),
        ];
        for (redirect, listener, https, want) in cases {
            let filters = rule_filters(&rule(
                json!([{"type": "RequestRedirect", "requestRedirect": redirect.clone()}]),
            ))
            .expect("valid");
            let got = route_redirect(&filters, &PathMatch::default(), listener, https)
                .expect("resolves")
                .expect("a redirect");
            assert_eq!(got.port, want, "{redirect} on {listener} (https {https})");
            assert_eq!(got.status, 302, "{redirect}");
        }
    }
}
