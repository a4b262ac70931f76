//! When a sandbox is released for being idle: the same rule for every
//! driver (each watches its sandboxes with its own monitor task).

use std::time::Duration;

/// Whether a sandbox idle for `idle_for` is released under the driver's
/// `timeout`. An unclaimed pooled sandbox (`has_session` false) idles by the
/// pool's own rule instead.
pub(crate) fn expired(timeout: Option<Duration>, has_session: bool, idle_for: Duration) -> bool {
    match timeout {
        Some(limit) => has_session && idle_for >= limit,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_sandbox_idle_past_the_timeout_is_released() {
        let s = Duration::from_secs;
        // (timeout, has session, idle for) -> released
        let cases = [
            ((None, true, s(86_400)), false),
            ((Some(s(60)), true, s(59)), false),
            ((Some(s(60)), true, s(60)), true),
            ((Some(s(60)), true, s(61)), true),
            // Pooled, not yet claimed: the pool decides.
            ((Some(s(60)), false, s(600)), false),
            ((Some(Duration::ZERO), true, Duration::ZERO), true),
        ];
        for ((timeout, bound, idle), want) in cases {
            assert_eq!(expired(timeout, bound, idle), want, "{timeout:?} bound={bound} idle={idle:?}");
        }
    }
}
