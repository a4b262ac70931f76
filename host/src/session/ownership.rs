//! Which node runs which session. A runner holds a lease on its session in
//! the database (see `store/leases.rs`); this node renews the leases of its
//! live runners, adopts sessions whose owner died (lease ran out) or handed
//! them over, and on shutdown parks its sessions so another node (or this
//! one, restarted) resumes them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;

use super::Sessions;

/// Lease settings of this node.
#[derive(Debug, Clone)]
pub struct LeaseTiming {
    /// How long a claim lasts unless renewed.
    pub lease: Duration,
    /// How often live leases are renewed and orphans looked for.
    pub renew: Duration,
}

impl LeaseTiming {
    /// From the config, with the renewal kept well inside the lease.
    pub fn new(lease_secs: u64, renew_secs: u64) -> LeaseTiming {
        let lease = Duration::from_secs(lease_secs.max(1));
        let renew = Duration::from_secs(renew_secs.max(1)).min(lease / 3).max(Duration::from_millis(200));
        LeaseTiming { lease, renew }
    }

    pub fn lease_micros(&self) -> i64 {
        self.lease.as_micros() as i64
    }
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming::new(15, 5)
    }
}

/// This node's name in leases: configured, or generated once into the data
/// dir (so a restart keeps it).
pub fn node_name(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(n) = configured.map(str::trim).filter(|n| !n.is_empty()) {
        return Ok(n.to_owned());
    }
    let file = data_dir.join("node-id");
    match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    }
    let name = format!("node_{}", ulid::Ulid::new());
    std::fs::write(&file, &name).with_context(|| format!("writing {}", file.display()))?;
    Ok(name)
}

/// Renew this node's leases and adopt orphaned sessions, every `renew`,
/// until the node drains. Also takes back, at start, the sessions a
/// previous run of this node owned.
pub async fn keep_leases(host: Arc<Sessions>) {
    match host.store.sessions_owned_by(&host.node).await {
        Ok(ids) => {
            for id in ids {
                tracing::info!(session_id = %id, "taking back a session this node owned before it restarted");
                host.wake(&id);
            }
        }
        Err(e) => tracing::warn!(error = format!("{e:#}"), "listing this node's sessions failed"),
    }
    let mut tick = tokio::time::interval(host.lease.renew);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if host.draining.load(Ordering::SeqCst) {
            return;
        }
        let live = host.live_ids();
        if !live.is_empty()
            && let Err(e) = host.store.renew_leases(&host.node, &live, host.lease.lease_micros()).await
        {
            tracing::warn!(error = format!("{e:#}"), "renewing session leases failed");
        }
        match host.store.sessions_to_adopt(&host.node).await {
            Ok(ids) => {
                for id in ids.into_iter().filter(|id| !host.is_live(id)) {
                    tracing::info!(session_id = %id, "adopting a session whose owner is gone");
                    host.wake(&id);
                }
            }
            Err(e) => tracing::warn!(error = format!("{e:#}"), "looking for sessions to adopt failed"),
        }
    }
}

impl Sessions {
    /// Graceful shutdown: take no new sessions, end every runner (each
    /// stops its runtime and releases its lease, handing a turn in progress
    /// over to another node), and wait up to `grace` for them to finish.
    pub async fn park_all(&self, grace: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let parked = {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            let n = live.len();
            // Dropping the senders ends the runners' loops.
            live.clear();
            n
        };
        tracing::info!(sessions = parked, "parking live sessions");
        let deadline = tokio::time::Instant::now() + grace;
        while self.running.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.running.load(Ordering::SeqCst);
        if left > 0 {
            tracing::warn!(runners = left, "runners still busy at shutdown; their leases lapse on their own");
        }
    }

    /// Another node appended to a session or handed it over: wake its
    /// runner here if there is one, or try to adopt it when `adopt`.
    pub fn remote_activity(self: &Arc<Self>, session_id: &str, adopt: bool) {
        if self.is_live(session_id) || (adopt && !self.draining.load(Ordering::SeqCst)) {
            self.wake(session_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_stays_inside_the_lease() {
        let t = LeaseTiming::new(6, 10);
        assert_eq!(t.renew, Duration::from_secs(2));
        let t = LeaseTiming::new(15, 5);
        assert_eq!(t.renew, Duration::from_secs(5));
    }

    #[test]
    fn node_name_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = node_name(None, dir.path()).unwrap();
        assert_eq!(node_name(None, dir.path()).unwrap(), a);
        assert_eq!(node_name(Some("n1"), dir.path()).unwrap(), "n1");
    }
}
