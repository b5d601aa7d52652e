//! SSRF guard: which destinations a JWKS or discovery fetch may reach.
//!
//! A `jwksUri` is written by whoever can create a RequestAuthentication, and the control plane
//! fetches it with its own network identity. The guard is always on and refuses link-local
//! addresses and cloud metadata endpoints:
//!
//! - for literal-IP URLs and blocked host names, before any connection ([`SsrfGuard::check_url`]);
//! - for host names, **after DNS resolution**, in the resolver handed to reqwest
//!   ([`SsrfResolver`]): blocked addresses are filtered out, and a name with only blocked
//!   addresses fails to resolve (so DNS rebinding to 169.254.169.254 does not help);
//! - on **every redirect hop** (the redirect policy calls `check_url`, and the new host goes
//!   through the same resolver).
//!
//! Loopback stays allowed (a JWKS endpoint on the node is legitimate, and tests use it). Operators
//! add ranges with `blocked_cidrs` (istiod's `BLOCKED_CIDRS_IN_JWKS_URIS`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::{Host, Url};

/// Host names that are refused before resolution (they name metadata services; the addresses
/// they resolve to are refused anyway, this also covers fetches through an HTTP proxy, where
/// the proxy resolves the name).
const BLOCKED_HOSTNAMES: &[&str] = &["metadata.google.internal", "metadata.goog"];

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destination {target} is blocked: {reason}")]
pub struct Blocked {
    /// The address or host name that was refused.
    pub target: String,
    /// Which rule refused it.
    pub reason: &'static str,
}

/// The always-on destination filter, plus optional operator CIDRs.
#[derive(Debug, Clone, Default)]
pub struct SsrfGuard {
    extra: Vec<IpNet>,
}

// === impl SsrfGuard ===

impl SsrfGuard {
    /// A guard with the built-in rules and `extra` blocked ranges.
    pub fn new(extra: Vec<IpNet>) -> Self {
        Self { extra }
    }

    /// Checks one resolved (or literal) address.
    ///
    /// Refused: link-local `169.254.0.0/16` and `fe80::/10` (AWS, GCP, Azure, OpenStack metadata
    /// at 169.254.169.254, ECS at 169.254.170.2), `fd00:ec2::254` (AWS IMDS over IPv6),
    /// `fd20:ce::254` (GCP metadata over IPv6), `100.100.100.200` (Alibaba Cloud),
    /// `192.0.0.192` (Oracle Cloud), `168.63.129.16` (Azure WireServer), and the extra ranges.
    /// IPv4-mapped IPv6 addresses are checked as IPv4.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        let ip = ip.to_canonical();
        let blocked = |reason| {
            Err(Blocked {
                target: ip.to_string(),
                reason,
            })
        };
        match ip {
            IpAddr::V4(v4) => {
                if v4.is_link_local() {
                    return blocked("link-local address");
                }
                const METADATA_V4: &[Ipv4Addr] = &[
                    Ipv4Addr::new(100, 100, 100, 200),
                    Ipv4Addr::new(192, 0, 0, 192),
                    Ipv4Addr::new(168, 63, 129, 16),
                ];
                if METADATA_V4.contains(&v4) {
                    return blocked("cloud metadata address");
                }
            }
            IpAddr::V6(v6) => {
                if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                    return blocked("link-local address");
                }
                const METADATA_V6: &[Ipv6Addr] = &[
                    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
                    Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254),
                ];
                if METADATA_V6.contains(&v6) {
                    return blocked("cloud metadata address");
                }
            }
        }
        if self.extra.iter().any(|net| net.contains(&ip)) {
            return blocked("in a blocked CIDR");
        }
        Ok(())
    }

    /// Checks a URL before it is requested (first request and every redirect hop): the scheme
    /// must be http or https, a literal IP host must pass [`SsrfGuard::check_ip`], and the host
    /// must not be a known metadata name. Host names are checked again after resolution by
    /// [`SsrfResolver`].
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Blocked {
                target: url.to_string(),
                reason: "only http and https are allowed",
            });
        }
        match url.host() {
            None => Err(Blocked {
                target: url.to_string(),
                reason: "URL has no host",
            }),
            Some(Host::Ipv4(v4)) => self.check_ip(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.check_ip(IpAddr::V6(v6)),
            Some(Host::Domain(name)) => self.check_hostname(name),
        }
    }

    fn check_hostname(&self, name: &str) -> Result<(), Blocked> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if BLOCKED_HOSTNAMES.contains(&name.as_str()) {
            return Err(Blocked {
                target: name,
                reason: "cloud metadata host name",
            });
        }
        Ok(())
    }

    /// Keeps the allowed addresses of a resolution result; fails when none is left.
    pub fn filter_addrs(
        &self,
        name: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Blocked> {
        let mut kept = Vec::new();
        let mut first_refusal = None;
        for addr in addrs {
            match self.check_ip(addr.ip()) {
                Ok(()) => kept.push(addr),
                Err(blocked) => {
                    tracing::warn!(%name, %addr, reason = blocked.reason, "JWKS fetch: address refused");
                    first_refusal.get_or_insert(blocked);
                }
            }
        }
        match (kept.is_empty(), first_refusal) {
            (true, Some(blocked)) => Err(Blocked {
                target: format!("{name} ({})", blocked.target),
                reason: blocked.reason,
            }),
            _ => Ok(kept),
        }
    }
}

/// A reqwest DNS resolver that resolves with the system resolver (`getaddrinfo`) and drops the
/// addresses [`SsrfGuard`] refuses.
#[derive(Debug, Clone)]
pub struct SsrfResolver {
    guard: Arc<SsrfGuard>,
}

// === impl SsrfResolver ===

impl SsrfResolver {
    /// A resolver filtering with `guard`.
    pub fn new(guard: Arc<SsrfGuard>) -> Self {
        Self { guard }
    }
}

impl reqwest::dns::Resolve for SsrfResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            guard.check_hostname(&host)?;
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept = guard.filter_addrs(&host, resolved)?;
            if kept.is_empty() {
                return Err(format!("{host}: no addresses").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn builtin_rules() {
        let guard = SsrfGuard::default();
        let cases: &[(&str, bool)] = &[
            ("169.254.169.254", false),
            ("169.254.170.2", false),
            ("169.254.0.1", false),
            ("fe80::1", false),
            ("febf::1", false),
            ("fd00:ec2::254", false),
            ("fd20:ce::254", false),
            ("100.100.100.200", false),
            ("192.0.0.192", false),
            ("168.63.129.16", false),
            ("::ffff:169.254.169.254", false),
            ("127.0.0.1", true),
            ("::1", true),
            ("10.0.0.1", true),
            ("8.8.8.8", true),
            ("fec0::1", true),
            ("100.100.100.201", true),
        ];
        for (addr, allowed) in cases {
            assert_eq!(guard.check_ip(ip(addr)).is_ok(), *allowed, "{addr}");
        }
    }

    #[test]
    fn extra_cidrs() {
        let guard = SsrfGuard::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]);
        assert!(guard.check_ip(ip("10.1.2.3")).is_err());
        assert!(guard.check_ip(ip("::ffff:10.1.2.3")).is_err());
        assert!(guard.check_ip(ip("2001:db8::1")).is_err());
        assert!(guard.check_ip(ip("11.0.0.1")).is_ok());
    }

    #[test]
    fn urls() {
        let guard = SsrfGuard::default();
        let cases: &[(&str, bool)] = &[
            ("http://169.254.169.254/latest/meta-data", false),
            ("http://[fd00:ec2::254]/", false),
            ("http://[::ffff:a9fe:a9fe]/", false),
            // WHATWG URL parsing turns these into 169.254.169.254.
            ("http://2852039166/", false),
            ("http://0xa9.0xfe.0xa9.0xfe/", false),
            ("http://metadata.google.internal/computeMetadata/v1/", false),
            ("http://METADATA.google.internal./", false),
            ("ftp://example.com/keys", false),
            ("file:///etc/passwd", false),
            ("https://example.com/keys", true),
            ("http://127.0.0.1:8080/keys", true),
        ];
        for (url, allowed) in cases {
            let url = Url::parse(url).unwrap();
            assert_eq!(guard.check_url(&url).is_ok(), *allowed, "{url}");
        }
    }

    #[test]
    fn resolution_results_are_filtered() {
        let guard = SsrfGuard::default();
        let addrs = ["169.254.169.254:80", "93.184.216.34:80"].map(|a| a.parse().unwrap());
        assert_eq!(
            guard.filter_addrs("rebind.example", addrs).unwrap(),
            vec!["93.184.216.34:80".parse::<SocketAddr>().unwrap()]
        );
        let only_metadata = ["169.254.169.254:80".parse().unwrap()];
        let err = guard
            .filter_addrs("metadata.example", only_metadata)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("metadata.example (169.254.169.254)"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn resolver_refuses_names_resolving_to_blocked_addresses() {
        use reqwest::dns::Resolve as _;
        // localhost resolves to loopback: allowed by default, refused once loopback is blocked.
        let open = SsrfResolver::new(Arc::new(SsrfGuard::default()));
        let addrs: Vec<_> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));

        let closed = SsrfResolver::new(Arc::new(SsrfGuard::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ])));
        let err = closed
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("blocked"), "{err}");
    }
}
