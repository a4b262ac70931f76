//! Host matching for the environment's `networking`.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::spec::{EgressPolicy, Networking};

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    NotAllowed,
    PrivateAddress(IpAddr),
    BadHost,
}

/// A compiled [`EgressPolicy`].
#[derive(Debug, Clone)]
pub struct HostPolicy {
    unrestricted: bool,
    exact: HashSet<String>,
    suffixes: Vec<String>,
    /// Hosts named exactly by `allowed_hosts`: the only way to reach loopback or
    /// private addresses through the gateway.
    explicit: HashSet<String>,
}

/// Lower-case, no trailing dot, no brackets, scheme/path/port stripped.
pub fn normalize_host(raw: &str) -> String {
    let mut s = raw.trim();
    if let Some(i) = s.find("://") {
        s = &s[i + 3..];
    }
    if let Some(i) = s.find(['/', '?', '#']) {
        s = &s[..i];
    }
    if let Some(i) = s.rfind('@') {
        s = &s[i + 1..];
    }
    let host = if let Some(rest) = s.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if s.matches(':').count() == 1 {
        s.split(':').next().unwrap_or("")
    } else {
        s
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl HostPolicy {
    pub fn new(policy: &EgressPolicy) -> Self {
        let mut p =
            HostPolicy { unrestricted: false, exact: HashSet::new(), suffixes: Vec::new(), explicit: HashSet::new() };
        match &policy.networking {
            Networking::Unrestricted => p.unrestricted = true,
            Networking::Limited { allowed_hosts, allow_package_managers, allow_mcp_servers } => {
                for h in allowed_hosts {
                    p.add(h);
                    let n = normalize_host(h);
                    if !n.starts_with("*.") {
                        p.explicit.insert(n);
                    }
                }
                if *allow_package_managers {
                    for h in &policy.package_manager_hosts {
                        p.add(h);
                    }
                }
                if *allow_mcp_servers {
                    for h in &policy.mcp_server_hosts {
                        p.add(h);
                    }
                }
            }
        }
        // Unrestricted still keeps loopback/private addresses closed: `explicit`
        // is empty, so `check_addr` refuses them.
        p
    }

    fn add(&mut self, raw: &str) {
        let n = normalize_host(raw);
        if n.is_empty() {
            return;
        }
        if let Some(suffix) = n.strip_prefix("*.") {
            self.suffixes.push(format!(".{suffix}"));
        } else {
            self.exact.insert(n);
        }
    }

    /// Whether the policy lets the sandbox reach `host` (before address checks).
    pub fn allows(&self, host: &str) -> Result<(), Denial> {
        let h = normalize_host(host);
        if h.is_empty() {
            return Err(Denial::BadHost);
        }
        if self.unrestricted || self.exact.contains(&h) {
            return Ok(());
        }
        if self.suffixes.iter().any(|s| h.ends_with(s.as_str())) {
            return Ok(());
        }
        Err(Denial::NotAllowed)
    }

    /// Whether `host` was named exactly in `allowed_hosts` (may resolve to a
    /// loopback or private address).
    pub fn is_explicit(&self, host: &str) -> bool {
        self.explicit.contains(&normalize_host(host))
    }

    /// Address check applied after resolution.
    pub fn check_addr(&self, host: &str, ip: IpAddr) -> Result<(), Denial> {
        if is_internal(ip) && !self.is_explicit(host) {
            return Err(Denial::PrivateAddress(ip));
        }
        Ok(())
    }
}

/// Loopback, private, link-local (cloud metadata), unspecified, CGNAT, ULA.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            v6.is_loopback() || v6.is_unspecified() || (seg[0] & 0xfe00) == 0xfc00 || (seg[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(hosts: &[&str], pm: bool, mcp: bool, mcp_hosts: &[&str]) -> HostPolicy {
        HostPolicy::new(&EgressPolicy {
            networking: Networking::Limited {
                allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
                allow_package_managers: pm,
                allow_mcp_servers: mcp,
            },
            mcp_server_hosts: mcp_hosts.iter().map(|s| s.to_string()).collect(),
            package_manager_hosts: vec!["pkgs.example.org".into(), "*.mirror.example.org".into()],
        })
    }

    #[test]
    fn exact_and_wildcard() {
        let p = limited(&["Example.com", "*.foo.org"], false, false, &[]);
        assert!(p.allows("example.com").is_ok());
        assert!(p.allows("EXAMPLE.COM.").is_ok());
        assert!(p.allows("a.example.com").is_err());
        assert!(p.allows("a.foo.org").is_ok());
        assert!(p.allows("b.a.foo.org").is_ok());
        assert!(p.allows("foo.org").is_err());
        assert!(p.allows("evilfoo.org").is_err());
    }

    #[test]
    fn package_managers_and_mcp() {
        let p = limited(&[], false, false, &["https://mcp.example.net/sse"]);
        assert!(p.allows("pkgs.example.org").is_err());
        assert!(p.allows("mcp.example.net").is_err());
        let p = limited(&[], true, true, &["https://mcp.example.net/sse"]);
        assert!(p.allows("pkgs.example.org").is_ok());
        assert!(p.allows("eu.mirror.example.org").is_ok());
        assert!(p.allows("mcp.example.net").is_ok());
    }

    #[test]
    fn private_addresses_need_an_explicit_host() {
        let p = limited(&["127.0.0.1", "*.internal"], false, false, &[]);
        assert!(p.check_addr("127.0.0.1", "127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check_addr("x.internal", "10.0.0.1".parse().unwrap()).is_err());
        let u = HostPolicy::new(&EgressPolicy { networking: Networking::Unrestricted, ..EgressPolicy::default() });
        assert!(u.allows("anything.example").is_ok());
        assert!(u.check_addr("metadata", "169.254.169.254".parse().unwrap()).is_err());
        assert!(u.check_addr("x", "::ffff:127.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize_host("https://User@Host.Example:8443/x"), "host.example");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("::1"), "::1");
    }
}
