//! Which resources of one type a client subscribes to, with the xDS wildcard rules.
//!
//! - `*` subscribes to everything (any type), alongside any explicit names.
//! - Legacy wildcard: an empty first request for LDS or CDS means "everything". In SotW it lasts
//!   while every later request is empty too; a request naming resources without `*` ends it.
//!   In Delta it lasts until the client subscribes a name without `*` or unsubscribes `*`.
//! - For other types an empty name list means "nothing" (SotW: unsubscribe from all).

use std::collections::BTreeSet;

use crate::type_url;

const WILDCARD: &str = "*";

/// Subscription of one client to one resource type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Names {
    wildcard: bool,
    /// Subscribed by an empty first request (legacy wildcard) rather than by `*`.
    legacy: bool,
    names: BTreeSet<String>,
}

impl Names {
    /// Whether `name` is part of the subscription.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    pub(crate) fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The explicitly named resources.
    pub(crate) fn explicit(&self) -> &BTreeSet<String> {
        &self.names
    }

    /// Applies a SotW request's `resource_names`. Returns true if the subscription grew (a new
    /// name, or wildcard), which calls for a response.
    pub(crate) fn apply_sotw(&mut self, type_url: &str, first: bool, names: &[String]) -> bool {
        let next = if names.is_empty() {
            if (first && type_url::is_legacy_wildcard_type(type_url)) || (!first && self.legacy) {
                Names {
                    wildcard: true,
                    legacy: true,
                    names: BTreeSet::new(),
                }
            } else {
                Names::default()
            }
        } else {
            let mut next = Names::default();
            for name in names {
                if name == WILDCARD {
                    next.wildcard = true;
                } else {
                    next.names.insert(name.clone());
                }
            }
            next
        };
        let grew = (next.wildcard && !self.wildcard)
            || next.names.difference(&self.names).next().is_some();
        *self = next;
        grew || first
    }

    /// Applies a Delta request's subscribe/unsubscribe lists. Returns the newly subscribed
    /// explicit names and whether wildcard was newly turned on.
    pub(crate) fn apply_delta(
        &mut self,
        type_url: &str,
        first: bool,
        subscribe: &[String],
        unsubscribe: &[String],
    ) -> (Vec<String>, bool) {
        let was_wildcard = self.wildcard;
        if first && subscribe.is_empty() && type_url::is_legacy_wildcard_type(type_url) {
            self.wildcard = true;
            self.legacy = true;
        }
        let mut added = Vec::new();
        let mut explicit_wildcard = false;
        for name in subscribe {
            if name == WILDCARD {
                explicit_wildcard = true;
            } else if self.names.insert(name.clone()) {
                added.push(name.clone());
            }
        }
        if explicit_wildcard {
            self.wildcard = true;
            self.legacy = false;
        } else if self.legacy && !subscribe.is_empty() {
            // Naming resources without `*` ends a legacy wildcard subscription.
            self.wildcard = false;
            self.legacy = false;
        }
        for name in unsubscribe {
            if name == WILDCARD {
                self.wildcard = false;
                self.legacy = false;
            } else {
                self.names.remove(name);
            }
        }
        (added, self.wildcard && !was_wildcard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn sotw_wildcard_rules() {
        struct Case {
            name: &'static str,
            type_url: &'static str,
            requests: Vec<Vec<String>>,
            wildcard: bool,
            has_a: bool,
        }
        let cases = [
            Case {
                name: "empty first LDS request is legacy wildcard",
                type_url: type_url::LISTENER,
                requests: vec![s(&[])],
                wildcard: true,
                has_a: true,
            },
            Case {
                name: "legacy wildcard survives later empty requests",
                type_url: type_url::CLUSTER,
                requests: vec![s(&[]), s(&[])],
                wildcard: true,
                has_a: true,
            },
            Case {
                name: "naming resources ends legacy wildcard",
                type_url: type_url::CLUSTER,
                requests: vec![s(&[]), s(&["b"])],
                wildcard: false,
                has_a: false,
            },
            Case {
                name: "explicit * then empty unsubscribes all",
                type_url: type_url::LISTENER,
                requests: vec![s(&["*"]), s(&[])],
                wildcard: false,
                has_a: false,
            },
            Case {
                name: "empty first EDS request subscribes nothing",
                type_url: type_url::ENDPOINT,
                requests: vec![s(&[])],
                wildcard: false,
                has_a: false,
            },
            Case {
                name: "* works for any type",
                type_url: type_url::SECRET,
                requests: vec![s(&["*", "b"])],
                wildcard: true,
                has_a: true,
            },
            Case {
                name: "named RDS",
                type_url: type_url::ROUTE,
                requests: vec![s(&["a"])],
                wildcard: false,
                has_a: true,
            },
        ];
        for case in cases {
            let mut names = Names::default();
            for (i, request) in case.requests.iter().enumerate() {
                names.apply_sotw(case.type_url, i == 0, request);
            }
            assert_eq!(names.is_wildcard(), case.wildcard, "{}", case.name);
            assert_eq!(names.contains("a"), case.has_a, "{}", case.name);
        }
    }

    #[test]
    fn sotw_reports_growth_only() {
        let mut names = Names::default();
        assert!(names.apply_sotw(type_url::ROUTE, true, &s(&["a"])));
        assert!(!names.apply_sotw(type_url::ROUTE, false, &s(&["a"])));
        assert!(names.apply_sotw(type_url::ROUTE, false, &s(&["a", "b"])));
        assert!(!names.apply_sotw(type_url::ROUTE, false, &s(&["b"])));
    }

    #[test]
    fn delta_wildcard_rules() {
        let mut lds = Names::default();
        assert_eq!(
            lds.apply_delta(type_url::LISTENER, true, &[], &[]),
            (vec![], true)
        );
        assert!(lds.contains("anything"));
        assert_eq!(
            lds.apply_delta(type_url::LISTENER, false, &[], &[]),
            (vec![], false)
        );
        assert!(lds.is_wildcard());

        let mut cds = Names::default();
        cds.apply_delta(type_url::CLUSTER, true, &[], &[]);
        assert_eq!(
            cds.apply_delta(type_url::CLUSTER, false, &s(&["a"]), &[]),
            (s(&["a"]), false)
        );
        assert!(!cds.is_wildcard(), "a name without * ends legacy wildcard");

        let mut mixed = Names::default();
        assert_eq!(
            mixed.apply_delta(type_url::CLUSTER, true, &s(&["*", "a"]), &[]),
            (s(&["a"]), true)
        );
        mixed.apply_delta(type_url::CLUSTER, false, &[], &s(&["*"]));
        assert!(!mixed.is_wildcard());
        assert!(mixed.contains("a"));
        assert!(!mixed.contains("b"));

        let mut eds = Names::default();
        assert_eq!(
            eds.apply_delta(type_url::ENDPOINT, true, &[], &[]),
            (vec![], false)
        );
        assert!(!eds.contains("a"));
    }
}
