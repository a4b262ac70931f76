//! Which destinations a sandbox may reach: host matching for the
//! environment's `networking` (entries may carry a port), then the address
//! check after DNS resolution (only global addresses that are not the
//! host's own, unless the operator allowed the destination).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::addr;
use super::host_addrs::HostAddrs;
use crate::spec::{EgressPolicy, Networking};

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// `limited` networking and the host (or its port) is not allowed.
    NotAllowed,
    /// The host resolves to a special-purpose (non-global) address.
    InternalAddress {
        ip: IpAddr,
        range: &'static str,
    },
    /// The host resolves to one of the server's own addresses.
    HostAddress(IpAddr),
    BadHost,
}

/// One `allowed_hosts` entry: an exact host or a `*.` suffix, any port or one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: String,
    port: Option<u16>,
}

impl Entry {
    fn port_ok(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }
}

/// A compiled [`EgressPolicy`].
#[derive(Debug, Clone)]
pub struct HostPolicy {
    unrestricted: bool,
    exact: Vec<Entry>,
    /// `.suffix` (from `*.suffix`).
    suffixes: Vec<Entry>,
}

/// Lower-case, no trailing dot, no brackets, scheme/path/port stripped.
pub fn normalize_host(raw: &str) -> String {
    split_host_port(raw).0
}

/// `(normalized host, port)` of `host`, `host:port`, `[v6]:port` or a URL
/// (whose port is not taken: a URL names a server, not a port restriction).
pub fn split_host_port(raw: &str) -> (String, Option<u16>) {
    let mut s = raw.trim();
    let url = s.find("://").map(|i| {
        s = &s[i + 3..];
    });
    if let Some(i) = s.find(['/', '?', '#']) {
        s = &s[..i];
    }
    if let Some(i) = s.rfind('@') {
        s = &s[i + 1..];
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let mut it = rest.splitn(2, ']');
        let h = it.next().unwrap_or("");
        let p = it.next().and_then(|p| p.strip_prefix(':'));
        (h, p)
    } else if s.matches(':').count() == 1 {
        let (h, p) = s.split_once(':').unwrap_or((s, ""));
        (h, Some(p))
    } else {
        (s, None)
    };
    let port = if url.is_some() { None } else { port.and_then(|p| p.parse::<u16>().ok()).filter(|p| *p != 0) };
    (host.trim_end_matches('.').to_ascii_lowercase(), port)
}

impl HostPolicy {
    pub fn new(policy: &EgressPolicy) -> Self {
        let mut p = HostPolicy { unrestricted: false, exact: Vec::new(), suffixes: Vec::new() };
        match &policy.networking {
            Networking::Unrestricted => p.unrestricted = true,
            Networking::Limited { allowed_hosts, allow_package_managers, allow_mcp_servers } => {
                for h in allowed_hosts {
                    p.add(h);
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
        p
    }

    fn add(&mut self, raw: &str) {
        let (host, port) = split_host_port(raw);
        if host.is_empty() {
            return;
        }
        if let Some(suffix) = host.strip_prefix("*.") {
            self.suffixes.push(Entry { host: format!(".{suffix}"), port });
        } else {
            self.exact.push(Entry { host, port });
        }
    }

    /// Whether the policy lets the sandbox reach `host:port` (before
    /// address checks).
    pub fn allows(&self, host: &str, port: u16) -> Result<(), Denial> {
        let h = normalize_host(host);
        if h.is_empty() {
            return Err(Denial::BadHost);
        }
        if self.unrestricted {
            return Ok(());
        }
        let exact = self.exact.iter().any(|e| e.host == h && e.port_ok(port));
        let suffix = self.suffixes.iter().any(|e| h.ends_with(e.host.as_str()) && e.port_ok(port));
        if exact || suffix { Ok(()) } else { Err(Denial::NotAllowed) }
    }
}

/// An internal destination the operator allowed (`egress.allow_internal`):
/// a host name or an address, on any port or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTarget {
    host: String,
    ip: Option<IpAddr>,
    port: Option<u16>,
}

impl std::str::FromStr for InternalTarget {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let (host, port) = split_host_port(raw);
        let valid = !host.is_empty()
            && !raw.contains("://")
            && !raw.contains(['/', '*', '@'])
            && (raw.matches(':').count() <= 1 || raw.starts_with('[') || host.parse::<IpAddr>().is_ok())
            && (port.is_some() || !raw.trim_start_matches('[').contains(':') || host.parse::<IpAddr>().is_ok());
        if !valid {
            return Err(format!(
                "`{raw}` is not a host, an IP address, `host:port`, `ip:port` or `[ipv6]:port` \
                 (no scheme, path or wildcard)"
            ));
        }
        let ip = host.parse::<IpAddr>().ok().map(addr::canonical);
        Ok(InternalTarget { host, ip, port })
    }
}

/// The address check applied to every resolved destination.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow_internal: Vec<InternalTarget>,
    host_addrs: Arc<HostAddrs>,
}

impl AddressPolicy {
    pub fn new(allow_internal: Vec<InternalTarget>, host_addrs: Arc<HostAddrs>) -> Self {
        Self { allow_internal, host_addrs }
    }

    /// Whether `host` (as the sandbox named it) at `ip:port` may be reached.
    pub fn check(&self, host: &str, port: u16, ip: IpAddr) -> Result<(), Denial> {
        if self.operator_allows(host, port, ip) {
            return Ok(());
        }
        if let Some(range) = addr::non_global(ip) {
            return Err(Denial::InternalAddress { ip, range });
        }
        if self.host_addrs.contains(ip) {
            return Err(Denial::HostAddress(ip));
        }
        Ok(())
    }

    fn operator_allows(&self, host: &str, port: u16, ip: IpAddr) -> bool {
        let host = normalize_host(host);
        let ip = addr::canonical(ip);
        self.allow_internal.iter().any(|t| {
            let named = match t.ip {
                Some(tip) => tip == ip,
                None => t.host == host,
            };
            named && t.port.is_none_or(|p| p == port)
        })
    }

    /// The operator's entries, for reports.
    pub fn allowed_internal(&self) -> HashSet<String> {
        self.allow_internal
            .iter()
            .map(|t| match t.port {
                Some(p) => format!("{}:{p}", t.host),
                None => t.host.clone(),
            })
            .collect()
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
        assert!(p.allows("example.com", 443).is_ok());
        assert!(p.allows("EXAMPLE.COM.", 80).is_ok());
        assert!(p.allows("a.example.com", 443).is_err());
        assert!(p.allows("a.foo.org", 443).is_ok());
        assert!(p.allows("b.a.foo.org", 443).is_ok());
        assert!(p.allows("foo.org", 443).is_err());
        assert!(p.allows("evilfoo.org", 443).is_err());
    }

    #[test]
    fn entries_may_carry_a_port() {
        let p =
            limited(&["example.org:8443", "*.svc.example:443", "plain.example", "[2001:db8::1]:80"], false, false, &[]);
        assert!(p.allows("example.org", 8443).is_ok());
        assert_eq!(p.allows("example.org", 443), Err(Denial::NotAllowed));
        assert!(p.allows("a.svc.example", 443).is_ok());
        assert!(p.allows("a.svc.example", 22).is_err());
        assert!(p.allows("plain.example", 22).is_ok());
        assert!(p.allows("[2001:db8::1]", 80).is_ok());
        assert!(p.allows("2001:db8::1", 81).is_err());
    }

    #[test]
    fn package_managers_and_mcp() {
        let p = limited(&[], false, false, &["https://mcp.example.net/sse"]);
        assert!(p.allows("pkgs.example.org", 443).is_err());
        assert!(p.allows("mcp.example.net", 443).is_err());
        let p = limited(&[], true, true, &["https://mcp.example.net:8443/sse"]);
        assert!(p.allows("pkgs.example.org", 443).is_ok());
        assert!(p.allows("eu.mirror.example.org", 443).is_ok());
        // A URL names a server; its port is not a restriction.
        assert!(p.allows("mcp.example.net", 443).is_ok());
    }

    #[test]
    fn internal_addresses_need_the_operator() {
        let none = AddressPolicy::default();
        // Naming a loopback address in allowed_hosts does not open it.
        let p = limited(&["127.0.0.1"], false, false, &[]);
        assert!(p.allows("127.0.0.1", 80).is_ok());
        assert!(matches!(
            none.check("127.0.0.1", 80, "127.0.0.1".parse().unwrap()),
            Err(Denial::InternalAddress { .. })
        ));
        assert!(none.check("metadata", 80, "169.254.169.254".parse().unwrap()).is_err());
        assert!(none.check("x", 80, "::ffff:127.0.0.1".parse().unwrap()).is_err());
        assert!(none.check("x", 443, "8.8.8.8".parse().unwrap()).is_ok());

        let targets: Vec<InternalTarget> =
            ["10.1.2.3:8080", "db.internal", "[fd00::5]:443"].iter().map(|s| s.parse().unwrap()).collect();
        let op = AddressPolicy::new(targets, Arc::default());
        assert!(op.check("10.1.2.3", 8080, "10.1.2.3".parse().unwrap()).is_ok());
        assert!(op.check("anything", 8080, "::ffff:10.1.2.3".parse().unwrap()).is_ok());
        assert!(op.check("10.1.2.3", 8081, "10.1.2.3".parse().unwrap()).is_err());
        assert!(op.check("db.internal", 5432, "10.9.9.9".parse().unwrap()).is_ok());
        assert!(op.check("other.internal", 5432, "10.9.9.9".parse().unwrap()).is_err());
        assert!(op.check("x", 443, "fd00::5".parse().unwrap()).is_ok());
    }

    #[test]
    fn host_addresses_are_refused() {
        let none = AddressPolicy::default();
        // Loopback is the one address every host has; a global address of
        // this host cannot be built portably here (the server-level test
        // uses the machine's real ones).
        let own = HostAddrs::default();
        for ip in own.current().iter() {
            assert!(none.check("h", 80, *ip).is_err(), "{ip}");
        }
    }

    #[test]
    fn internal_targets_parse() {
        for ok in ["10.1.2.3:8080", "db.internal", "db.internal:5432", "[fd00::1]:443", "fd00::1", "10.0.0.1"] {
            assert!(ok.parse::<InternalTarget>().is_ok(), "{ok}");
        }
        for bad in ["http://db.internal", "db.internal/x", "*.internal", "", "db.internal:port"] {
            assert!(bad.parse::<InternalTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize_host("https://User@Host.Example:8443/x"), "host.example");
        assert_eq!(split_host_port("https://Host.Example:8443/x"), ("host.example".into(), None));
        assert_eq!(split_host_port("Host.Example:8443"), ("host.example".into(), Some(8443)));
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(split_host_port("[::1]:80"), ("::1".into(), Some(80)));
        assert_eq!(normalize_host("::1"), "::1");
    }
}
