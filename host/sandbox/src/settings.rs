//! Checks of the settings both drivers share ([`LocalConfig`]), made before
//! anything starts: the same errors from either driver.

use std::ops::Range;

use crate::error::{Result, SandboxError};
use crate::local::LocalConfig;

/// Whether `cfg` can run (`root`: the server is root).
pub(crate) fn check(cfg: &LocalConfig, root: bool) -> Result<()> {
    if cfg.uid_count == 0 {
        return Err(SandboxError::Invalid("uid_count must be at least 1".into()));
    }
    if let Some(c) = cfg.cpus
        && !(c.is_finite() && c > 0.0)
    {
        return Err(SandboxError::Invalid(format!(
            "the sandbox CPU limit must be a positive number of cores, got {c}"
        )));
    }
    if cfg.pool.size > 0 && !root {
        return Err(SandboxError::Unavailable(
            "the warm sandbox pool needs root (a claim mounts the session's workspace into a pooled sandbox); set \
             its size to 0 (`sessions.sandbox_pool_size = 0`)"
                .into(),
        ));
    }
    if cfg.pool.size > cfg.uid_count as usize {
        return Err(SandboxError::Invalid(format!(
            "the warm sandbox pool ({}) cannot be larger than the number of sandboxes that may run at once ({})",
            cfg.pool.size, cfg.uid_count
        )));
    }
    Ok(())
}

/// The host uids sandboxes are given.
pub(crate) fn uid_range(cfg: &LocalConfig) -> Result<Range<u32>> {
    let end = cfg
        .uid_base
        .checked_add(cfg.uid_count)
        .ok_or_else(|| SandboxError::Invalid(format!("uid range {} + {} overflows", cfg.uid_base, cfg.uid_count)))?;
    Ok(cfg.uid_base..end)
}

/// When the warm pool is on, the runtime its refill task runs on: the one
/// the driver is made in.
pub(crate) fn pool_runtime(cfg: &LocalConfig) -> Result<Option<tokio::runtime::Handle>> {
    if cfg.pool.size == 0 {
        return Ok(None);
    }
    tokio::runtime::Handle::try_current().map(Some).map_err(|_| {
        SandboxError::Invalid("the warm sandbox pool needs the driver to be made inside a tokio runtime".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::PoolConfig;

    fn cfg(uid_count: u32, cpus: Option<f64>, pool: usize) -> LocalConfig {
        LocalConfig { uid_count, cpus, pool: PoolConfig { size: pool, ..Default::default() }, ..Default::default() }
    }

    #[test]
    fn settings_that_cannot_run_are_refused_with_what_is_wrong() {
        // (uid count, cpus, pool size, root) -> the error's words, or fine
        type Case = ((u32, Option<f64>, usize, bool), Option<&'static str>);
        let cases: [Case; 11] = [
            ((10, Some(1.0), 0, false), None),
            ((10, None, 0, false), None),
            ((10, Some(0.5), 10, true), None),
            ((0, Some(1.0), 0, true), Some("uid_count")),
            ((10, Some(0.0), 0, true), Some("CPU limit")),
            ((10, Some(-1.0), 0, true), Some("CPU limit")),
            ((10, Some(f64::NAN), 0, true), Some("CPU limit")),
            ((10, Some(f64::INFINITY), 0, true), Some("CPU limit")),
            ((10, None, 1, false), Some("needs root")),
            ((10, None, 11, true), Some("cannot be larger")),
            ((1, None, 1, true), None),
        ];
        for ((uids, cpus, pool, root), want) in cases {
            let got = check(&cfg(uids, cpus, pool), root);
            match (&got, want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{uids} {cpus:?} {pool} {root}: {e}"),
                _ => panic!("{uids} {cpus:?} {pool} {root}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_uid_range_must_fit_in_u32() {
        let mut c = cfg(20, None, 0);
        c.uid_base = 600_000;
        assert_eq!(uid_range(&c).expect("range"), 600_000..600_020);
        c.uid_base = u32::MAX - 5;
        assert!(matches!(uid_range(&c), Err(SandboxError::Invalid(m)) if m.contains("overflows")));
    }

    #[test]
    fn no_pool_needs_no_runtime() {
        assert!(pool_runtime(&cfg(1, None, 0)).expect("no pool").is_none());
        assert!(matches!(pool_runtime(&cfg(1, None, 1)), Err(SandboxError::Invalid(m)) if m.contains("tokio runtime")));
    }
}
