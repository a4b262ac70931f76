//! Live sessions. [`Sessions`] keeps one runner task per session with work
//! to do; the API wakes it after storing user events. A runner drives the
//! session's agent runtime through its harness plugin and its sandbox
//! ([`runner`]), turns plugin facts into status events ([`status`]) and
//! checks every plugin event before it is stored ([`validate`]).

pub mod actions;
pub mod engine;
pub mod env_secrets;
pub(crate) mod io;
pub mod launch;
pub(crate) mod mcp;
pub(crate) mod mounts;
pub mod orphans;
pub mod outcome;
pub mod outputs;
pub mod ownership;
pub mod remote;
pub(crate) mod repos;
pub mod resident;
pub(crate) mod resident_mcp;
pub mod runner;
pub(crate) mod skills;
pub(crate) mod start;
pub mod status;
pub mod threads;
pub mod validate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridle_harness::HarnessRuntime;
use bridle_sandbox::SandboxDriver;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::bus::Bus;
use crate::config::{Config, SandboxDriverKind};
use crate::model::environment_keys::DriverChoice;
use crate::runtimes::Runtimes;
use crate::secrets::SecretBox;
use crate::store::Store;

/// Where runtime programs live, on the host and as the sandbox sees them.
#[derive(Debug, Clone)]
pub struct RuntimeDirs {
    /// The installed runtimes; their directory is bind-mounted read-only
    /// into every sandbox.
    pub runtimes: Runtimes,
    /// That directory's path inside the sandbox.
    pub inside: String,
}

impl RuntimeDirs {
    /// The in-sandbox path of a program named in a launch plan (`claude`,
    /// `codex`), or `None` when it is not installed.
    pub fn resolve_inside(&self, program: &str) -> Option<String> {
        if program.starts_with('/') {
            return Some(program.to_owned());
        }
        // Programs Bridle does not install (a third-party plugin's `cat`,
        // `python3`) are looked up on the sandbox's PATH.
        if crate::runtimes::Runtime::from_program(program).is_none() {
            return Some(program.to_owned());
        }
        let host = self.runtimes.resolve(program)?;
        let root = self.runtimes.dir().canonicalize().ok()?;
        let host = host.canonicalize().ok()?;
        let rel = host.strip_prefix(&root).ok()?;
        Some(format!("{}/{}", self.inside.trim_end_matches('/'), rel.display()))
    }

    /// The host path of a program (for resident runtimes, which run outside
    /// any sandbox).
    pub fn resolve_host(&self, program: &str) -> Option<PathBuf> {
        self.runtimes.resolve(program)
    }
}

/// Timing of live sessions.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Stop a runtime process (and its sandbox) after this long without a turn.
    pub runtime_idle: Duration,
    /// How long a runtime may take to end its turn after `user.interrupt`
    /// before the host kills it and ends the turn itself.
    pub interrupt_grace: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { runtime_idle: Duration::from_secs(600), interrupt_grace: Duration::from_secs(15) }
    }
}

/// The driver of the kind a session chose (`None`: the server's default);
/// `None` when this server runs no driver of that kind.
fn pick_driver<'a, D>(
    kind: Option<SandboxDriverKind>,
    default: (SandboxDriverKind, &'a D),
    others: &'a [(SandboxDriverKind, D)],
) -> Option<&'a D> {
    match kind {
        None => Some(default.1),
        Some(k) if k == default.0 => Some(default.1),
        Some(k) => others.iter().find(|(o, _)| *o == k).map(|(_, d)| d),
    }
}

/// A sandbox driver, or why this node has none of that kind.
pub type DriverOrWhy = Result<Arc<dyn SandboxDriver>, String>;

/// The live-session host: shared by the API (to wake runners) and the runners.
pub struct Sessions {
    pub(crate) store: Store,
    pub(crate) bus: Arc<Bus>,
    pub(crate) secrets: SecretBox,
    pub(crate) config: Arc<Config>,
    pub(crate) harness: Arc<HarnessRuntime>,
    /// The sandbox driver, or why there is none (e.g. bubblewrap missing);
    /// sessions then fail with that message instead of the server refusing
    /// to start.
    pub(crate) sandboxes: Result<Arc<dyn SandboxDriver>, String>,
    /// The drivers environments may choose besides `sandboxes`
    /// (`sessions.sandbox_drivers_allowed`), or why each is unavailable.
    pub(crate) other_sandboxes: Vec<(SandboxDriverKind, DriverOrWhy)>,
    pub(crate) runtimes: RuntimeDirs,
    /// Environment package layers (`None`: this node cannot build them, e.g. no sandbox dir).
    pub(crate) layers: Option<Arc<crate::packages::layer::Layers>>,
    pub(crate) timing: Timing,
    pub(crate) residents: resident::Residents,
    live: Mutex<HashMap<String, mpsc::UnboundedSender<()>>>,
    /// This node's name in session leases.
    pub(crate) node: String,
    pub(crate) lease: ownership::LeaseTiming,
    /// Shutting down: no new runners start here.
    pub(crate) draining: AtomicBool,
    /// Runner tasks still running (shutdown waits for them).
    pub(crate) running: AtomicUsize,
}

impl Sessions {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        bus: Arc<Bus>,
        secrets: SecretBox,
        config: Arc<Config>,
        harness: Arc<HarnessRuntime>,
        sandboxes: Result<Arc<dyn SandboxDriver>, String>,
        other_sandboxes: Vec<(SandboxDriverKind, DriverOrWhy)>,
        runtimes: RuntimeDirs,
        layers: Option<Arc<crate::packages::layer::Layers>>,
        timing: Timing,
    ) -> Arc<Self> {
        let node = ownership::node_name(config.sessions.node_name.as_deref(), &config.data_dir).unwrap_or_else(|e| {
            let n = format!("node_{}", ulid::Ulid::new());
            tracing::warn!(error = format!("{e:#}"), node = %n, "cannot keep a node name in the data dir; using a fresh one");
            n
        });
        let lease = ownership::LeaseTiming::new(config.sessions.lease_secs, config.sessions.lease_renew_secs);
        tracing::info!(node = %node, lease_secs = lease.lease.as_secs_f64(), renew_secs = lease.renew.as_secs_f64(), "session leases");
        Arc::new(Sessions {
            store,
            bus,
            secrets,
            config,
            harness,
            sandboxes,
            other_sandboxes,
            runtimes,
            layers,
            timing,
            residents: resident::Residents::default(),
            live: Mutex::new(HashMap::new()),
            node,
            lease,
            draining: AtomicBool::new(false),
            running: AtomicUsize::new(0),
        })
    }

    /// There is new user input for `session_id`: make sure a runner takes it.
    pub fn wake(self: &Arc<Self>, session_id: &str) {
        if self.draining.load(Ordering::SeqCst) {
            // Stored input waits for the node that adopts the session.
            return;
        }
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = live.get(session_id)
            && tx.send(()).is_ok()
        {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(());
        live.insert(session_id.to_owned(), tx);
        self.running.fetch_add(1, Ordering::SeqCst);
        let span = tracing::info_span!(parent: None, "session", session_id = %session_id);
        tokio::spawn(runner::run(self.clone(), session_id.to_owned(), rx).instrument(span));
    }

    /// A runner with nothing to do asks to leave. Refused (false) when a
    /// wake arrived meanwhile, so no input is stranded.
    pub(crate) fn leave(&self, session_id: &str, rx: &mut mpsc::UnboundedReceiver<()>) -> bool {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if rx.try_recv().is_ok() {
            return false;
        }
        live.remove(session_id);
        true
    }

    /// A runner task ends: forget it (unless a newer runner took its
    /// place) and count it out.
    pub(crate) fn runner_gone(&self, session_id: &str, rx: mpsc::UnboundedReceiver<()>) {
        drop(rx);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.get(session_id).is_some_and(|tx| tx.is_closed()) {
            live.remove(session_id);
        }
        drop(live);
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    /// The session was deleted: end its runner and remove its workspace.
    pub async fn forget(&self, session_id: &str) {
        // Dropping the sender ends the runner's loop; it stops its runtime.
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(session_id);
        self.residents.close_session(session_id).await;
        // Every driver: each releases its own sandbox of the session.
        let mut drivers: Vec<Arc<dyn SandboxDriver>> = self.sandboxes.iter().cloned().collect();
        for (_, d) in &self.other_sandboxes {
            drivers.extend(d.iter().cloned());
        }
        for driver in drivers {
            if let Err(e) = driver.delete_workspace(session_id).await {
                tracing::warn!(session_id, driver = driver.name(), error = %e, "deleting the session workspace failed");
            }
        }
    }

    /// The sandbox driver of a session: the one its environment chose when
    /// it was created, else the server's.
    pub(crate) fn driver(&self, kind: Option<SandboxDriverKind>) -> Result<Arc<dyn SandboxDriver>, String> {
        let default = (self.config.sessions.sandbox_driver, &self.sandboxes);
        pick_driver(kind, default, &self.other_sandboxes).cloned().unwrap_or_else(|| {
            Err(format!(
                "the session's environment chose the `{}` sandbox driver, which this server no longer allows \
                 (sessions.sandbox_drivers_allowed)",
                kind.map_or("?", SandboxDriverKind::as_str)
            ))
        })
    }

    /// What environments may choose with `bridle.sandbox_driver` here.
    pub fn driver_choice(&self) -> DriverChoice {
        let allowed = self.config.sessions.sandbox_drivers_allowed.clone();
        let unavailable = allowed.iter().filter_map(|k| self.driver(Some(*k)).err().map(|why| (*k, why))).collect();
        DriverChoice { allowed, unavailable }
    }

    /// Sessions with a live runner.
    pub fn live_count(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether a runner for this session lives on this node.
    pub fn is_live(&self, session_id: &str) -> bool {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).contains_key(session_id)
    }

    /// The sessions with a live runner here.
    pub fn live_ids(&self) -> Vec<String> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// This node's name in session leases.
    pub fn node(&self) -> &str {
        &self.node
    }
}

#[cfg(test)]
mod pick_driver_tests {
    use super::*;
    use SandboxDriverKind::*;

    #[test]
    fn a_session_gets_the_driver_it_chose_or_the_default() {
        let others = [(Gvisor, "gvisor driver")];
        for (kind, default, others, want) in [
            (None, Bubblewrap, &others[..], Some("default")),
            (Some(Bubblewrap), Bubblewrap, &others[..], Some("default")),
            (Some(Gvisor), Bubblewrap, &others[..], Some("gvisor driver")),
            (Some(Gvisor), Gvisor, &[][..], Some("default")),
            (Some(Gvisor), Bubblewrap, &[][..], None),
            (Some(Bubblewrap), Gvisor, &others[..], None),
        ] {
            assert_eq!(pick_driver(kind, (default, &"default"), others).copied(), want, "{kind:?} on {default:?}");
        }
    }
}
