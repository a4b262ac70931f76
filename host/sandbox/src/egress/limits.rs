//! The gateway's connection limits: what they are, how the global cap is
//! sized from the process's descriptor limit, and the per-sandbox token
//! bucket for the connection rate.

use std::time::{Duration, Instant};

/// Connection limits of the egress gateways (one per sandbox, all sharing
/// the global cap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayLimits {
    /// Connections one sandbox may hold open at once; past it the gateway
    /// stops accepting from that sandbox until one closes.
    pub max_connections_per_sandbox: u32,
    /// New connections one sandbox may open per second (sustained).
    pub connections_per_second: u32,
    /// Connections a sandbox may open at once before the rate applies.
    pub connection_burst: u32,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// A connection (either side of a `CONNECT` tunnel included) with no
    /// byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Connections all gateways together may hold; `None`: sized from the
    /// process's `RLIMIT_NOFILE` by [`global_cap`].
    pub max_connections: Option<u32>,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            max_connections_per_sandbox: 256,
            connections_per_second: 50,
            connection_burst: 100,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_connections: None,
        }
    }
}

/// Descriptors one gateway connection may cost: the accepted socket and
/// the upstream one.
pub const FDS_PER_CONNECTION: u64 = 2;
/// Descriptors always left to the rest of the server (API connections, the
/// database, sandboxes' pipes) however small the limit.
pub const MIN_RESERVE: u64 = 256;

/// The global connection cap for a descriptor limit of `nofile`: the
/// gateways together use at most half the descriptors, and never more
/// than leaves [`MIN_RESERVE`] for the rest of the server.
pub fn global_cap(nofile: u64) -> u32 {
    let share = (nofile / 2).min(nofile.saturating_sub(MIN_RESERVE));
    u32::try_from(share / FDS_PER_CONNECTION).unwrap_or(u32::MAX).max(1)
}

/// The cap to use: the configured one if the descriptor limit leaves the
/// reserve beside it, else an error naming the setting.
pub fn effective_cap(configured: Option<u32>, nofile: u64) -> Result<u32, String> {
    match configured {
        None => Ok(global_cap(nofile)),
        Some(0) => Err("egress max_connections must be at least 1".into()),
        Some(n) if u64::from(n) * FDS_PER_CONNECTION + MIN_RESERVE > nofile => Err(format!(
            "egress max_connections = {n} needs {} file descriptors plus {MIN_RESERVE} for the rest of the server, \
             but the process may open {nofile} (RLIMIT_NOFILE); lower it or raise the limit",
            u64::from(n) * FDS_PER_CONNECTION
        )),
        Some(n) => Ok(n),
    }
}

/// The soft `RLIMIT_NOFILE` of this process.
pub fn nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(soft, _)| soft).unwrap_or(1024)
}

/// The hard `RLIMIT_NOFILE`: what [`raise_nofile`] raises the soft one to.
pub fn hard_nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(_, hard)| hard).unwrap_or(1024)
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (call once at start-up,
/// before sizing anything from it). Returns `(before, after)`.
pub fn raise_nofile() -> std::io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((soft, hard.max(soft)))
}

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate: f64::from(rate.max(1)), burst, tokens: burst, at: now }
    }

    /// Take one token, or say how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_cap_leaves_a_reserve() {
        for (nofile, cap) in [(256, 1), (512, 128), (1024, 256), (2048, 512), (1 << 20, 1 << 18)] {
            assert_eq!(global_cap(nofile), cap, "{nofile}");
            assert!(u64::from(cap) * FDS_PER_CONNECTION + MIN_RESERVE <= nofile.max(MIN_RESERVE + 2), "{nofile}");
        }
        assert_eq!(effective_cap(Some(100), 1024), Ok(100));
        assert!(effective_cap(Some(500), 1024).unwrap_err().contains("max_connections = 500"));
        assert!(effective_cap(Some(0), 1024).is_err());
        assert_eq!(effective_cap(None, 2048), Ok(512));
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(100)).is_err());
        // Idle time refills up to the burst, no further.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take(later).is_ok());
        }
        assert!(b.take(later).is_err());
    }
}
