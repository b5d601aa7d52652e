//! Envoy matcher builders with Istio's wildcard rules
//! (istio/istio `pilot/pkg/security/authz/matcher/{string,header,metadata,template}.go`).

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, header_matcher::HeaderMatchSpecifier,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListMatcher, MetadataMatcher, OrMatcher, PathMatcher, RegexMatcher, StringMatcher,
    ValueMatcher, list_matcher, metadata_matcher, path_matcher, string_matcher, value_matcher,
};

/// The metadata namespace jwt_authn writes the verified payload into.
pub const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
/// The key every provider uses for the payload (`payload_in_metadata`).
pub const JWT_PAYLOAD: &str = "payload";

fn string(pattern: string_matcher::MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        ignore_case,
        match_pattern: Some(pattern),
    }
}

/// Exact match.
pub fn exact(v: &str, ignore_case: bool) -> StringMatcher {
    string(
        string_matcher::MatchPattern::Exact(v.to_string()),
        ignore_case,
    )
}

/// Prefix match.
pub fn prefix(v: &str, ignore_case: bool) -> StringMatcher {
    string(
        string_matcher::MatchPattern::Prefix(v.to_string()),
        ignore_case,
    )
}

/// Suffix match.
pub fn suffix(v: &str, ignore_case: bool) -> StringMatcher {
    string(
        string_matcher::MatchPattern::Suffix(v.to_string()),
        ignore_case,
    )
}

/// RE2 regex match.
pub fn regex(r: &str) -> StringMatcher {
    string(
        string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex: r.to_string(),
            ..Default::default()
        }),
        false,
    )
}

/// `.+`: present and non-empty.
pub fn any_non_empty() -> StringMatcher {
    regex(".+")
}

/// Go `regexp.QuoteMeta`.
pub fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Istio `StringMatcherWithPrefix`: `*` is `.+`, `*x` a suffix (a regex when a prefix is given),
/// `x*` a prefix, anything else exact; `prefix` is prepended (`spiffe://` for principals).
pub fn string_with_prefix(v: &str, pfx: &str) -> StringMatcher {
    if v == "*" {
        any_non_empty()
    } else if let Some(rest) = v.strip_prefix('*') {
        if pfx.is_empty() {
            suffix(rest, false)
        } else {
            regex(&format!("{pfx}.*{}", quote_meta(rest)))
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        prefix(&format!("{pfx}{rest}"), false)
    } else {
        exact(&format!("{pfx}{v}"), false)
    }
}

/// Istio `StringMatcher`.
pub fn string_matcher(v: &str) -> StringMatcher {
    string_with_prefix(v, "")
}

fn header_with_case(name: &str, v: &str, ignore_case: bool) -> HeaderMatcher {
    let specifier = if v == "*" {
        HeaderMatchSpecifier::PresentMatch(true)
    } else if let Some(rest) = v.strip_prefix('*') {
        HeaderMatchSpecifier::StringMatch(suffix(rest, ignore_case))
    } else if let Some(rest) = v.strip_suffix('*') {
        HeaderMatchSpecifier::StringMatch(prefix(rest, ignore_case))
    } else {
        HeaderMatchSpecifier::StringMatch(exact(v, ignore_case))
    };
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

/// Istio `HeaderMatcher`: `*` is presence, prefix/suffix wildcards, case-sensitive.
pub fn header(name: &str, v: &str) -> HeaderMatcher {
    header_with_case(name, v, false)
}

/// Istio `HostMatcher`: like [`header`] but case-insensitive.
pub fn host(name: &str, v: &str) -> HeaderMatcher {
    header_with_case(name, v, true)
}

/// Istio `PathMatcher`.
pub fn path(v: &str) -> PathMatcher {
    PathMatcher {
        rule: Some(path_matcher::Rule::Path(string_matcher(v))),
    }
}

/// A value matcher for one string matcher.
pub fn value_string(m: StringMatcher) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(m)),
    }
}

/// Matches a list when any element matches `value`.
pub fn value_list_one_of(value: ValueMatcher) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
            ListMatcher {
                match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(value))),
            },
        ))),
    }
}

/// Istio `OrMatcher`: a single matcher stays as is.
pub fn value_or(mut matchers: Vec<ValueMatcher>) -> ValueMatcher {
    if matchers.len() == 1 {
        return matchers.remove(0);
    }
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
            value_matchers: matchers,
        })),
    }
}

/// Istio `StringOrMatcher`.
pub fn string_or(values: &[String]) -> ValueMatcher {
    value_or(
        values
            .iter()
            .map(|v| value_string(string_matcher(v)))
            .collect(),
    )
}

fn path_segments(keys: &[&str]) -> Vec<metadata_matcher::PathSegment> {
    keys.iter()
        .map(|k| metadata_matcher::PathSegment {
            segment: Some(metadata_matcher::path_segment::Segment::Key(
                (*k).to_string(),
            )),
        })
        .collect()
}

/// A metadata matcher on `filter` at `keys`.
pub fn metadata(filter: &str, keys: &[&str], value: ValueMatcher) -> MetadataMatcher {
    MetadataMatcher {
        filter: filter.to_string(),
        path: path_segments(keys),
        value: Some(value),
        ..Default::default()
    }
}

/// Istio `MetadataListValueMatcher` with `useExtendedJwt`: matches a list claim when any element
/// matches, and a scalar claim when it matches (`or_match[list_match.one_of(X), X]`).
pub fn metadata_list_or_scalar(
    filter: &str,
    keys: &[&str],
    value: ValueMatcher,
) -> MetadataMatcher {
    let list = value_list_one_of(value.clone());
    metadata(
        filter,
        keys,
        ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
                value_matchers: vec![list, value],
            })),
        },
    )
}

/// A JWT claim matcher at `payload.<claims...>` (the value matcher L of SEMANTICS.md §2.4).
pub fn jwt_claims(claims: &[String], value: ValueMatcher) -> MetadataMatcher {
    let mut keys = vec![JWT_PAYLOAD];
    keys.extend(claims.iter().map(String::as_str));
    metadata_list_or_scalar(JWT_FILTER, &keys, value)
}

/// A string matcher on one top-level JWT claim (`iss`, `sub`).
pub fn jwt_claim_string(claim: &str, m: StringMatcher) -> MetadataMatcher {
    metadata(JWT_FILTER, &[JWT_PAYLOAD, claim], value_string(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_meta_matches_go() {
        assert_eq!(quote_meta("a.b*c"), "a\\.b\\*c");
        assert_eq!(
            quote_meta("x[1](2){3}|^$?+\\"),
            "x\\[1\\]\\(2\\)\\{3\\}\\|\\^\\$\\?\\+\\\\"
        );
        assert_eq!(quote_meta("plain-text_1/2"), "plain-text_1/2");
    }

    #[test]
    fn string_with_prefix_follows_istio() {
        assert_eq!(string_with_prefix("*", "spiffe://"), any_non_empty());
        assert_eq!(
            string_with_prefix("abc*", "spiffe://"),
            prefix("spiffe://abc", false)
        );
        assert_eq!(
            string_with_prefix("*a.c", "spiffe://"),
            regex("spiffe://.*a\\.c")
        );
        assert_eq!(string_with_prefix("*abc", ""), suffix("abc", false));
        assert_eq!(
            string_with_prefix("x", "spiffe://"),
            exact("spiffe://x", false)
        );
    }
}
