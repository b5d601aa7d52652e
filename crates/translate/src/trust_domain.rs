//! Trust-domain aliases, as istiod applies them (`pilot/pkg/security/trustdomain/bundle.go`,
//! `MigrateTrustDomain` in `pilot/pkg/security/authz/model/model.go`).
//!
//! The bundle is the mesh's `trustDomain` followed by its `trustDomainAliases`. A principal
//! (`<td>/ns/<ns>/sa/<sa>`) whose trust domain is in the bundle, or is `cluster.local` (which
//! always means "the local trust domain and its aliases"), matches that identity under every
//! trust domain of the bundle; `trustDomains` values that name a bundle member expand to the
//! whole bundle. Principals starting with `*/`, or not shaped like a SPIFFE path, are kept as
//! written, as are principals of trust domains outside the bundle.

use std::borrow::Cow;

use wayguard_core::authz::AuthzPolicy;

/// istiod's `constants.DefaultClusterLocalDomain`.
const CLUSTER_LOCAL: &str = "cluster.local";

/// The policies with principals and trust domains migrated to `bundle`. Borrowed when nothing
/// can change (no bundle, or only `cluster.local`).
pub(crate) fn migrate<'a>(
    policies: &'a [AuthzPolicy],
    bundle: &[String],
) -> Cow<'a, [AuthzPolicy]> {
    if bundle.is_empty() || bundle == [CLUSTER_LOCAL] {
        return Cow::Borrowed(policies);
    }
    let mut policies = policies.to_vec();
    for rule in policies.iter_mut().flat_map(|p| p.rules.iter_mut()) {
        for source in &mut rule.from {
            source.principals = replace_aliases(&source.principals, bundle);
            source.not_principals = replace_aliases(&source.not_principals, bundle);
            source.trust_domains = expand_aliases(&source.trust_domains, bundle);
            source.not_trust_domains = expand_aliases(&source.not_trust_domains, bundle);
        }
        for condition in &mut rule.when {
            match condition.key.as_str() {
                "source.principal" => {
                    condition.values = replace_aliases(&condition.values, bundle);
                    condition.not_values = replace_aliases(&condition.not_values, bundle);
                }
                "source.trustDomain" => {
                    condition.values = expand_aliases(&condition.values, bundle);
                    condition.not_values = expand_aliases(&condition.not_values, bundle);
                }
                _ => {}
            }
        }
    }
    Cow::Owned(policies)
}

/// istiod's `ReplaceTrustDomainAliases`.
pub(crate) fn replace_aliases(principals: &[String], bundle: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for principal in principals {
        let parts: Vec<&str> = principal.split('/').collect();
        // Not a SPIFFE path, or `*/...`: the policy does not constrain the trust domain.
        if parts.len() != 5 || parts[0] == "*" {
            out.push(principal.clone());
            continue;
        }
        let from = parts[0];
        if !bundle.iter().any(|td| string_match(from, td)) && from != CLUSTER_LOCAL {
            out.push(principal.clone());
            continue;
        }
        let mut expanded: Vec<String> = Vec::new();
        for td in bundle {
            let candidate = if suffix_match(td, from) {
                principal.clone()
            } else {
                format!("{td}/{}", parts[1..].join("/"))
            };
            if !expanded.contains(&candidate) {
                expanded.push(candidate);
            }
        }
        out.extend(expanded);
    }
    out
}

/// istiod's `ExpandTrustDomainAliases`.
pub(crate) fn expand_aliases(values: &[String], bundle: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        let items: Vec<String> = if bundle.contains(value) {
            bundle.to_vec()
        } else {
            vec![value.clone()]
        };
        for item in items {
            if !out.contains(&item) {
                out.push(item);
            }
        }
    }
    out
}

/// istiod's `stringMatch` for one list entry: equal, `*`, or a prefix/suffix wildcard either way.
fn string_match(a: &str, s: &str) -> bool {
    a == s
        || s == "*"
        || prefix_match(a, s)
        || prefix_match(s, a)
        || suffix_match(a, s)
        || suffix_match(s, a)
}

fn prefix_match(a: &str, pattern: &str) -> bool {
    pattern
        .strip_suffix('*')
        .is_some_and(|prefix| a.starts_with(prefix))
}

fn suffix_match(a: &str, pattern: &str) -> bool {
    pattern
        .strip_prefix('*')
        .is_some_and(|suffix| a.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(td: &str, aliases: &[&str]) -> Vec<String> {
        std::iter::once(td)
            .chain(aliases.iter().copied())
            .map(String::from)
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The cases of istiod's `TestReplaceTrustDomainAliases`
    /// (pilot/pkg/security/trustdomain/bundle_test.go), same inputs and expectations.
    #[test]
    fn replace_matches_istiod() {
        /// (name, bundle, principals, expected)
        type Case = (
            &'static str,
            Vec<String>,
            &'static [&'static str],
            &'static [&'static str],
        );
        let cases: [Case; 13] = [
            (
                "no aliases",
                bundle("cluster.local", &[]),
                &["cluster.local/ns/foo/sa/bar"],
                &["cluster.local/ns/foo/sa/bar"],
            ),
            ("principal *", bundle("cluster.local", &[]), &["*"], &["*"]),
            (
                "principal with * prefix",
                bundle("cluster.local", &[]),
                &["*/ns/foo/sa/bar"],
                &["*/ns/foo/sa/bar"],
            ),
            (
                "one alias, one principal",
                bundle("td2", &["td1"]),
                &["td1/ns/foo/sa/bar"],
                &["td2/ns/foo/sa/bar", "td1/ns/foo/sa/bar"],
            ),
            (
                "one alias, two principals",
                bundle("td1", &["cluster.local"]),
                &["cluster.local/ns/foo/sa/bar", "cluster.local/ns/yyy/sa/zzz"],
                &[
                    "td1/ns/foo/sa/bar",
                    "cluster.local/ns/foo/sa/bar",
                    "td1/ns/yyy/sa/zzz",
                    "cluster.local/ns/yyy/sa/zzz",
                ],
            ),
            (
                "one alias, principals with * as-is",
                bundle("td1", &["cluster.local"]),
                &["*/ns/foo/sa/bar", "*sa/zzz", "*"],
                &["*/ns/foo/sa/bar", "*sa/zzz", "*"],
            ),
            (
                "two aliases, two principals",
                bundle("td2", &["td1", "cluster.local"]),
                &["cluster.local/ns/foo/sa/bar", "td1/ns/yyy/sa/zzz"],
                &[
                    "td2/ns/foo/sa/bar",
                    "td1/ns/foo/sa/bar",
                    "cluster.local/ns/foo/sa/bar",
                    "td2/ns/yyy/sa/zzz",
                    "td1/ns/yyy/sa/zzz",
                    "cluster.local/ns/yyy/sa/zzz",
                ],
            ),
            (
                "two aliases with * prefix in trust domain",
                bundle("td2", &["foo-td1", "cluster.local"]),
                &["*-td1/ns/foo/sa/bar"],
                &[
                    "td2/ns/foo/sa/bar",
                    "*-td1/ns/foo/sa/bar",
                    "cluster.local/ns/foo/sa/bar",
                ],
            ),
            (
                "no trust domain matches",
                bundle("td1", &["td2"]),
                &["some-td/ns/foo/sa/bar"],
                &["some-td/ns/foo/sa/bar"],
            ),
            (
                "matches one alias",
                bundle("td1", &["td2", "some-td"]),
                &["some-td/ns/foo/sa/bar"],
                &[
                    "td1/ns/foo/sa/bar",
                    "td2/ns/foo/sa/bar",
                    "some-td/ns/foo/sa/bar",
                ],
            ),
            (
                "one of two principals matches an alias",
                bundle("new-td", &["td2", "td3"]),
                &["td1/ns/some-ns/sa/some-sa", "td2/ns/foo/sa/bar"],
                &[
                    "td1/ns/some-ns/sa/some-sa",
                    "new-td/ns/foo/sa/bar",
                    "td2/ns/foo/sa/bar",
                    "td3/ns/foo/sa/bar",
                ],
            ),
            (
                "empty trust domain",
                bundle("new-td", &["td2", "td3"]),
                &["/ns/some-ns/sa/some-sa"],
                &["/ns/some-ns/sa/some-sa"],
            ),
            (
                "no duplicates for a prefix",
                bundle("new-td", &["old-td"]),
                &["*-td/ns/some-ns/sa/some-sa"],
                &["*-td/ns/some-ns/sa/some-sa"],
            ),
        ];
        for (name, bundle, principals, want) in cases {
            assert_eq!(
                replace_aliases(&strings(principals), &bundle),
                strings(want),
                "{name}"
            );
        }
    }

    #[test]
    fn expand_matches_istiod() {
        let b = bundle("td1", &["td2"]);
        assert_eq!(
            expand_aliases(&strings(&["td2", "other"]), &b),
            strings(&["td1", "td2", "other"])
        );
        assert_eq!(
            expand_aliases(&strings(&["td1", "td2"]), &b),
            strings(&["td1", "td2"])
        );
        assert_eq!(expand_aliases(&strings(&["*"]), &b), strings(&["*"]));
    }
}
