//! The front of every driver's claim: the session id is checked, a running
//! sandbox of the session is reused, else one comes from the warm pool when
//! it fits or is started cold; each claim is counted by driver and outcome
//! ([`crate::metrics::claim`]). What a pooled and a cold claim then do is the
//! driver's own.

use std::future::Future;
use std::sync::Arc;

use crate::error::Result;
use crate::live::{Live, Tenant};
use crate::local::pool::{Pool, Pooled};
use crate::spec::SandboxSpec;
use crate::workspace::check_session_id;

/// How a claim that did not reuse a sandbox went, as the metric's label.
pub(crate) fn outcome(pooled: bool, ok: bool) -> &'static str {
    match (ok, pooled) {
        (false, _) => "error",
        (true, true) => "pooled",
        (true, false) => "started",
    }
}

/// Claim a sandbox for `spec` from `driver`'s `live` table, `pool`, or
/// `cold`; `from_pool` binds the session to a pooled sandbox.
pub(crate) async fn claim<S, P, PF, C, CF>(
    driver: &'static str,
    live: &Live<S>,
    pool: Option<&Arc<Pool<S>>>,
    spec: SandboxSpec,
    from_pool: P,
    cold: C,
) -> Result<Arc<S>>
where
    S: Tenant + Pooled,
    P: FnOnce(Arc<S>, SandboxSpec) -> PF,
    PF: Future<Output = Result<Arc<S>>>,
    C: FnOnce(SandboxSpec) -> CF,
    CF: Future<Output = Result<Arc<S>>>,
{
    check_session_id(&spec.session_id)?;
    if let Some(s) = live.get(&spec.session_id) {
        crate::metrics::claim(driver, "reused", None);
        return Ok(s);
    }
    let started = std::time::Instant::now();
    let (result, pooled) = match pool.and_then(|p| p.take(&spec.limits)) {
        // The pool's refill waits until the claim is bound (`_binding` dropped).
        Some((sbx, _binding)) => (from_pool(sbx, spec).await, true),
        None => (cold(spec).await, false),
    };
    crate::metrics::claim(driver, outcome(pooled, result.is_ok()), Some(started.elapsed()));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_counted_by_where_its_sandbox_came_from_unless_it_failed() {
        let cases =
            [((true, true), "pooled"), ((false, true), "started"), ((true, false), "error"), ((false, false), "error")];
        for ((pooled, ok), want) in cases {
            assert_eq!(outcome(pooled, ok), want, "pooled={pooled} ok={ok}");
        }
    }
}
