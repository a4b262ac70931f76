//! The running sandbox of each session, by session id: what a claim reuses
//! instead of starting another, and what deleting a workspace releases
//! first. Weak: the session's runner owns its sandbox, the table only finds
//! it. The same for every driver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::driver::Sandbox;

/// What the table needs of a sandbox.
pub(crate) trait Tenant {
    fn tenant_id(&self) -> &str;
    fn tenant_running(&self) -> bool;
}

impl<S: Sandbox> Tenant for S {
    fn tenant_id(&self) -> &str {
        self.id()
    }
    fn tenant_running(&self) -> bool {
        self.is_running()
    }
}

/// One driver's sessions and their running sandboxes.
pub(crate) struct Live<S> {
    by_session: Mutex<HashMap<String, Weak<S>>>,
}

impl<S: Tenant> Live<S> {
    pub fn new() -> Self {
        Self { by_session: Mutex::new(HashMap::new()) }
    }

    /// The session's sandbox, while it runs.
    pub fn get(&self, session_id: &str) -> Option<Arc<S>> {
        let map = self.by_session.lock().ok()?;
        map.get(session_id).and_then(Weak::upgrade).filter(|s| s.tenant_running())
    }

    /// Make `sbx` the session's sandbox (entries of dropped sandboxes go on
    /// the way).
    pub fn insert(&self, session_id: &str, sbx: &Arc<S>) {
        if let Ok(mut map) = self.by_session.lock() {
            map.retain(|_, w| w.strong_count() > 0);
            map.insert(session_id.to_owned(), Arc::downgrade(sbx));
        }
    }

    /// A released sandbox leaves: only its own entry (a newer sandbox of the
    /// session may hold it by now).
    pub fn remove(&self, session_id: &str, sandbox_id: &str) {
        if let Ok(mut map) = self.by_session.lock()
            && map.get(session_id).and_then(Weak::upgrade).is_some_and(|s| s.tenant_id() == sandbox_id)
        {
            map.remove(session_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    struct Fake {
        id: &'static str,
        running: AtomicBool,
    }

    impl Tenant for Fake {
        fn tenant_id(&self) -> &str {
            self.id
        }
        fn tenant_running(&self) -> bool {
            self.running.load(Ordering::SeqCst)
        }
    }

    fn fake(id: &'static str) -> Arc<Fake> {
        Arc::new(Fake { id, running: AtomicBool::new(true) })
    }

    #[test]
    fn a_session_finds_its_running_sandbox_only() {
        let live = Live::new();
        let a = fake("sbx_a");
        live.insert("s1", &a);
        assert_eq!(live.get("s1").map(|s| s.id), Some("sbx_a"));
        assert!(live.get("s2").is_none());
        a.running.store(false, Ordering::SeqCst);
        assert!(live.get("s1").is_none(), "a stopped sandbox is not reused");
        a.running.store(true, Ordering::SeqCst);
        drop(a);
        assert!(live.get("s1").is_none(), "a dropped sandbox is gone");
    }

    #[test]
    fn a_released_sandbox_removes_only_its_own_entry() {
        let live = Live::new();
        let old = fake("sbx_old");
        let new = fake("sbx_new");
        live.insert("s1", &old);
        live.insert("s1", &new);
        live.remove("s1", "sbx_old");
        assert_eq!(live.get("s1").map(|s| s.id), Some("sbx_new"));
        live.remove("s1", "sbx_new");
        assert!(live.get("s1").is_none());
    }

    #[test]
    fn inserting_drops_the_entries_of_dropped_sandboxes() {
        let live = Live::new();
        live.insert("gone", &fake("sbx_gone"));
        let kept = fake("sbx_kept");
        live.insert("kept", &kept);
        assert_eq!(live.by_session.lock().map(|m| m.len()).unwrap_or(0), 1);
    }
}
