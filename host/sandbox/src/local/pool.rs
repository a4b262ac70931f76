//! The warm pool: sandboxes booted ahead of demand (bubblewrap, init, cgroup,
//! uid, run dir, all but the session), handed to a claim that then only
//! mounts the session's workspace into it ([`super::slot`]) and binds its
//! egress gateway. A pooled sandbox serves one session: once claimed it is
//! never handed out again. The pool keeps any driver's sandboxes
//! ([`Pooled`]): the gVisor driver's pool is this one too.
//!
//! The pool fills at start-up and after each claim; when no claim took from
//! it for the idle limit it empties itself and refills at the next claim, so
//! an idle server holds no warm sandboxes. A refill waits until the claims
//! that took from the pool are bound: booting a replacement competes for the
//! CPU with the claim (and its first exec) it would replace.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{debug, warn};

use async_trait::async_trait;

use crate::spec::Limits;

/// What the pool needs of a driver's sandbox.
#[async_trait]
pub(crate) trait Pooled: Send + Sync + 'static {
    /// False once it ended (its init exited while it waited).
    fn alive(&self) -> bool;
    /// Stop it and free what it holds (the pool emptying or dropped).
    async fn discard(&self, why: &str);
}

/// Settings of the warm pool. `size == 0` (the default) turns it off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// How many sandboxes to keep booted and unclaimed.
    pub size: usize,
    /// Empty the pool after this long without a claim taking from it; it
    /// refills at the next claim.
    pub idle: Duration,
    /// The limits pooled sandboxes boot with. A claim whose
    /// [`crate::SandboxSpec::limits`] differ starts a sandbox of its own.
    pub limits: Limits,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { size: 0, idle: Duration::from_secs(600), limits: Limits::default() }
    }
}

/// How many sandboxes the pool should hold now: full while claims come, none
/// once they stopped for the idle limit.
pub(crate) fn wanted(size: usize, idle: Duration, since_last_claim: Duration) -> usize {
    if since_last_claim >= idle { 0 } else { size }
}

/// What the pool's task does next, given how many it holds and wants.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Boot,
    Release(usize),
    Wait,
}

/// `binding`: claims that took a pooled sandbox and are not bound yet. A
/// boot waits for them (they are latency-bound, the refill is not); a
/// release does not (it frees what the claims may need).
pub(crate) fn step(ready: usize, wanted: usize, binding: usize) -> Step {
    match ready.cmp(&wanted) {
        std::cmp::Ordering::Less if binding > 0 => Step::Wait,
        std::cmp::Ordering::Less => Step::Boot,
        std::cmp::Ordering::Greater => Step::Release(ready - wanted),
        std::cmp::Ordering::Equal => Step::Wait,
    }
}

/// A claim that took a pooled sandbox and is binding it: the pool's refill
/// waits until every one is dropped (bound, or failed).
#[must_use = "the refill waits until this is dropped"]
pub(crate) struct Binding {
    binding: Arc<AtomicUsize>,
    wake: Arc<Notify>,
}

impl Drop for Binding {
    fn drop(&mut self) {
        self.binding.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// The pooled sandboxes, shared by the driver's clones and the refill task.
pub(crate) struct Pool<S> {
    pub cfg: PoolConfig,
    ready: Mutex<VecDeque<Arc<S>>>,
    last_claim: Mutex<Instant>,
    /// Claims holding a [`Binding`].
    binding: Arc<AtomicUsize>,
    wake: Arc<Notify>,
}

impl<S: Pooled> Pool<S> {
    pub fn new(cfg: PoolConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            ready: Mutex::new(VecDeque::new()),
            last_claim: Mutex::new(Instant::now()),
            binding: Arc::new(AtomicUsize::new(0)),
            wake: Arc::new(Notify::new()),
        })
    }

    /// A pooled sandbox for a claim with `limits`, if one is ready and fits.
    /// Any claim that fits counts as demand, so an emptied pool refills; the
    /// refill waits until the returned [`Binding`] is dropped: drop it once
    /// the claim is bound.
    pub fn take(&self, limits: &Limits) -> Option<(Arc<S>, Binding)> {
        if *limits != self.cfg.limits {
            return None;
        }
        // Counted before the refill task can look (it is woken below).
        let binding = Binding { binding: self.binding.clone(), wake: self.wake.clone() };
        self.binding.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut t) = self.last_claim.lock() {
            *t = Instant::now();
        }
        let got = self.ready.lock().ok().and_then(|mut r| {
            // Skip sandboxes that died while waiting (their init exited).
            while let Some(s) = r.pop_front() {
                if s.alive() {
                    return Some(s);
                }
            }
            None
        });
        self.wake.notify_one();
        got.map(|s| (s, binding))
    }

    /// How many are booted and waiting.
    pub fn ready(&self) -> usize {
        self.ready.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn since_last_claim(&self) -> Duration {
        self.last_claim.lock().map(|t| t.elapsed()).unwrap_or_default()
    }
}

impl<S> Drop for Pool<S> {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// Keeps the pool at its wanted size until the pool is dropped. `boot`
/// starts one pooled sandbox.
pub(crate) async fn run<S, F, Fut>(pool: Weak<Pool<S>>, boot: F)
where
    S: Pooled,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = crate::Result<Arc<S>>>,
{
    let Some(wake) = pool.upgrade().map(|p| p.wake.clone()) else { return };
    loop {
        let Some(p) = pool.upgrade() else { return };
        let want = wanted(p.cfg.size, p.cfg.idle, p.since_last_claim());
        let ready = {
            let mut r = match p.ready.lock() {
                Ok(r) => r,
                Err(_) => return,
            };
            r.retain(|s| s.alive());
            r.len()
        };
        match step(ready, want, p.binding.load(Ordering::SeqCst)) {
            Step::Boot => {
                drop(p);
                match boot().await {
                    Ok(sbx) => {
                        let Some(p) = pool.upgrade() else {
                            sbx.discard("pool dropped").await;
                            return;
                        };
                        if let Ok(mut r) = p.ready.lock() {
                            r.push_back(sbx);
                        }
                        debug!(ready = p.ready(), "pooled sandbox ready");
                    }
                    Err(e) => {
                        warn!(error = %e, "could not boot a pooled sandbox; retrying in 5 s");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
            Step::Release(n) => {
                let gone: Vec<_> = match p.ready.lock() {
                    Ok(mut r) => (0..n).filter_map(|_| r.pop_back()).collect(),
                    Err(_) => return,
                };
                drop(p);
                for s in gone {
                    s.discard("pool idle").await;
                }
            }
            Step::Wait => {
                // Wake for a claim, the pool's end, or the idle limit.
                let left = p.cfg.idle.saturating_sub(p.since_last_claim()).max(Duration::from_millis(100));
                drop(p);
                if want == 0 {
                    wake.notified().await;
                } else {
                    let _ = tokio::time::timeout(left, wake.notified()).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_is_full_while_claims_come_and_none_after_the_idle_limit() {
        let idle = Duration::from_secs(60);
        for (size, since, want) in [
            (4, Duration::ZERO, 4),
            (4, Duration::from_secs(59), 4),
            (4, Duration::from_secs(60), 0),
            (4, Duration::from_secs(3600), 0),
            (0, Duration::ZERO, 0),
        ] {
            assert_eq!(wanted(size, idle, since), want, "size {size}, {since:?} since the last claim");
        }
    }

    #[test]
    fn step_boots_up_to_the_wanted_size_and_releases_the_rest() {
        for (ready, want, expect) in [
            (0, 2, Step::Boot),
            (1, 2, Step::Boot),
            (2, 2, Step::Wait),
            (0, 0, Step::Wait),
            (3, 0, Step::Release(3)),
            (3, 1, Step::Release(2)),
        ] {
            assert_eq!(step(ready, want, 0), expect, "{ready} ready, {want} wanted");
        }
    }

    #[test]
    fn step_defers_a_refill_while_a_claim_binds_but_not_a_release() {
        for (ready, want, binding, expect) in [
            (1, 2, 1, Step::Wait),
            (0, 2, 2, Step::Wait),
            (1, 2, 0, Step::Boot),
            (2, 2, 1, Step::Wait),
            (3, 0, 1, Step::Release(3)),
            (2, 1, 1, Step::Release(1)),
        ] {
            assert_eq!(step(ready, want, binding), expect, "{ready} ready, {want} wanted, {binding} binding");
        }
    }

    struct Fake;
    #[async_trait]
    impl Pooled for Fake {
        fn alive(&self) -> bool {
            true
        }
        async fn discard(&self, _why: &str) {}
    }

    #[test]
    fn a_binding_counts_until_dropped_and_a_misfit_claim_takes_none() {
        let pool: Arc<Pool<Fake>> = Pool::new(PoolConfig { size: 2, ..PoolConfig::default() });
        pool.ready.lock().unwrap().extend([Arc::new(Fake), Arc::new(Fake)]);
        let other = Limits { max_processes: Some(7), ..Limits::default() };
        assert!(pool.take(&other).is_none());
        assert_eq!(pool.binding.load(Ordering::SeqCst), 0, "a claim the pool does not fit holds nothing");
        let (_a, bind_a) = pool.take(&Limits::default()).expect("one");
        let (_b, bind_b) = pool.take(&Limits::default()).expect("two");
        assert_eq!(pool.binding.load(Ordering::SeqCst), 2);
        drop(bind_a);
        assert_eq!(pool.binding.load(Ordering::SeqCst), 1);
        drop(bind_b);
        // An empty pool still counts the claim until it is dropped.
        let (none, bind) = (pool.take(&Limits::default()), pool.binding.load(Ordering::SeqCst));
        assert!(none.is_none());
        assert_eq!(bind, 0, "no sandbox taken, nothing to bind");
    }
}
