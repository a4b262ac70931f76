//! The host's own interface addresses: a service bound to `0.0.0.0` on the
//! host answers on each of them, so the gateway refuses them all. Read on
//! first use and again when older than the refresh interval (addresses
//! come and go with DHCP, VPNs, containers).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::addr;

/// How old the cached list may get.
pub const REFRESH: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct HostAddrs {
    cached: Mutex<Option<(Instant, Arc<HashSet<IpAddr>>)>>,
}

impl Default for HostAddrs {
    fn default() -> Self {
        Self { cached: Mutex::new(None) }
    }
}

impl HostAddrs {
    /// Whether `ip` (IPv4-mapped and NAT64 forms reduced) is one of the
    /// host's addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.current().contains(&addr::canonical(ip))
    }

    /// The current list, re-read when stale.
    pub fn current(&self) -> Arc<HashSet<IpAddr>> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        match &*cached {
            Some((at, set)) if at.elapsed() < REFRESH => set.clone(),
            _ => {
                let set = Arc::new(read());
                *cached = Some((Instant::now(), set.clone()));
                set
            }
        }
    }
}

/// Every address of every interface (an unreadable list is logged and
/// treated as empty: the special-range check still holds).
fn read() -> HashSet<IpAddr> {
    match nix::ifaddrs::getifaddrs() {
        Ok(list) => list
            .filter_map(|ifa| {
                let a = ifa.address?;
                if let Some(v4) = a.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    a.as_sockaddr_in6().map(|v6| addr::canonical(IpAddr::V6(v6.ip())))
                }
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the host's interface addresses");
            HashSet::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_loopback() {
        let h = HostAddrs::default();
        assert!(h.contains("127.0.0.1".parse().unwrap()), "{:?}", h.current());
        assert!(h.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!h.contains("192.0.2.1".parse().unwrap()));
    }
}
