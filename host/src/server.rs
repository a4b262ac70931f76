//! Start-up and shutdown of `bridle serve`.

use std::sync::Arc;
use std::time::Duration;

use bridle_harness::{HarnessConfig, HarnessEntry, HarnessRuntime};
use bridle_sandbox::{LocalConfig, LocalDriver, SandboxDriver};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::bus::Bus;
use crate::config::{Config, SandboxDriverKind};
use crate::runtimes::Runtimes;
use crate::secrets::SecretBox;
use crate::session::{RuntimeDirs, Sessions, Timing};
use crate::store::Store;

/// Create the data dir (0700: it holds the key and the database) and open
/// the store.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    prepare_data_dir(config)?;
    Store::connect(&config.database_url()).await
}

pub fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting permissions of {}", dir.display()))?;
    Ok(())
}

/// Everything the API needs, from config. With `live`, also the session
/// host (plugins, sandboxes, runtimes) that runs sessions.
pub async fn build_state(config: Config, live: bool) -> anyhow::Result<AppState> {
    build_state_with(config, live, None).await
}

/// [`build_state`] with a sandbox driver of the caller's instead of the
/// local bubblewrap driver (tests of the session runner without bubblewrap;
/// other drivers).
pub async fn build_state_with(
    config: Config,
    live: bool,
    driver: Option<Arc<dyn SandboxDriver>>,
) -> anyhow::Result<AppState> {
    if config.metrics.enabled {
        crate::metrics::install();
    }
    let store = open_store(&config).await?;
    let secrets = SecretBox::load_or_create(config.secret_key.as_deref(), &config.data_dir)?;
    let limiter = api::auth::limiter(config.rate_limit_per_second);
    let config = Arc::new(config);
    let bus = Arc::new(Bus::default());
    let harness = Arc::new(harness_runtime(&config).await?);
    // Which package managers an environment may name, and where their registries are: from the
    // host's own tool configuration (a few short commands).
    let (hosts, packages) = (config.sessions.package_manager_hosts.clone(), config.packages.clone());
    let found = tokio::task::spawn_blocking(move || crate::packages::registries::discover(&hosts, &packages))
        .await
        .context("package manager discovery panicked")?;
    for e in harness.registry().errors() {
        tracing::warn!(error = %e, "harness plugin not available");
    }
    let sessions = if live {
        Some(
            start_sessions(
                store.clone(),
                bus.clone(),
                secrets.clone(),
                config.clone(),
                harness.clone(),
                driver,
                &found,
            )
            .await?,
        )
    } else {
        None
    };
    if store.backend() == crate::store::Backend::Postgres {
        tokio::spawn(crate::cluster::follow_other_nodes(store.clone(), bus.clone(), sessions.clone()));
    }
    let packages = Arc::new(found.installable);
    Ok(AppState { store, bus, secrets, config, limiter, harness, sessions, packages })
}

/// The plugin runtime, the sandbox driver and the runtime programs.
async fn start_sessions(
    store: Store,
    bus: Arc<Bus>,
    secrets: SecretBox,
    config: Arc<Config>,
    harness: Arc<HarnessRuntime>,
    driver: Option<Arc<dyn SandboxDriver>>,
    found: &crate::packages::registries::Discovered,
) -> anyhow::Result<Arc<Sessions>> {
    let runtimes = runtime_dirs(&config)?;
    let layers = package_layers(&config, found);
    let gvisor = config.sessions.drivers().contains(&SandboxDriverKind::Gvisor);
    if config.auto_install {
        if driver.is_none() {
            install_bubblewrap().await;
            if gvisor {
                install_runsc().await;
            }
        }
        install_runtimes(runtimes.runtimes.clone());
    } else if driver.is_none() && config.sessions.sandbox_driver == SandboxDriverKind::Gvisor {
        // The operator chose gVisor: a missing runsc stops the server here
        // rather than failing every session.
        bridle_sandbox::gvisor::find_runsc(None).map_err(|e| {
            anyhow::anyhow!("sessions.sandbox_driver = \"gvisor\" but {e} (or set auto_install = true)")
        })?;
    }
    let timing = Timing {
        runtime_idle: Duration::from_secs(config.sessions.runtime_idle_secs),
        interrupt_grace: Duration::from_secs(config.sessions.interrupt_grace_secs),
    };
    if let Some(driver) = driver {
        return Ok(Sessions::new(
            store,
            bus,
            secrets,
            config.clone(),
            harness,
            Ok(driver),
            Vec::new(),
            runtimes,
            layers,
            timing,
        ));
    }
    let sc = &config.sessions;
    let local = LocalConfig {
        state_dir: sc.sandbox_dir.clone(),
        uid_base: sc.sandbox_uid_base,
        uid_count: sc.max_sandboxes,
        idle_timeout: Some(Duration::from_secs(sc.sandbox_idle_secs)),
        workspace_quota: sc.disk_quota(),
        cpus: sc.cpu_limit(),
        extra_ro_binds: std::iter::once((runtimes.runtimes.dir().to_path_buf(), runtimes.inside.clone()))
            .chain(layers.as_ref().map(|l| (l.root().to_path_buf(), crate::packages::layer::LAYERS_INSIDE.to_string())))
            // cargo layer builds run the operator's Rust toolchain (read-only, like /usr).
            .chain(
                found
                    .cargo_toolchain
                    .clone()
                    .map(|dir| (dir, crate::packages::spec::CARGO_TOOLCHAIN_INSIDE.to_string())),
            )
            .collect(),
        egress: bridle_sandbox::egress::EgressSettings {
            ca: Some(crate::egress_ca::load_or_create(&config.data_dir, &secrets)?),
            ..config.egress.settings()?
        },
        pool: bridle_sandbox::PoolConfig {
            size: sc.sandbox_pool_size as usize,
            idle: Duration::from_secs(sc.sandbox_pool_idle_secs),
            ..bridle_sandbox::PoolConfig::default()
        },
        ..LocalConfig::default()
    };
    let make = |kind: SandboxDriverKind, local: LocalConfig| -> Result<Arc<dyn SandboxDriver>, String> {
        let made: Result<Arc<dyn SandboxDriver>, bridle_sandbox::SandboxError> = match kind {
            SandboxDriverKind::Gvisor => bridle_sandbox::GvisorDriver::new(bridle_sandbox::GvisorConfig {
                base: local,
                platform: sc.gvisor_platform.clone(),
                ..Default::default()
            })
            .map(|d| Arc::new(d) as Arc<dyn SandboxDriver>),
            SandboxDriverKind::Bubblewrap => LocalDriver::new(local).map(|d| Arc::new(d) as Arc<dyn SandboxDriver>),
        };
        made.map_err(|e| {
            tracing::warn!(driver = %kind, error = %e, "sandboxes unavailable: sessions will fail until this is fixed");
            format!("sandboxes are unavailable on this server: {e}")
        })
    };
    // The drivers environments may choose share the state dir and uid range
    // (uid leases are host-wide); the warm pool is the default driver's.
    let others = sc
        .drivers()
        .into_iter()
        .skip(1)
        .map(|k| (k, make(k, LocalConfig { pool: bridle_sandbox::PoolConfig::default(), ..local.clone() })))
        .collect();
    let sandboxes = make(sc.sandbox_driver, local);
    Ok(Sessions::new(store, bus, secrets, config.clone(), harness, sandboxes, others, runtimes, layers, timing))
}

/// The package layer store under `sessions.sandbox_dir` (`None`, with a warning, when it cannot
/// be made: sessions whose environment names packages then fail with that reason).
fn package_layers(
    config: &Config,
    found: &crate::packages::registries::Discovered,
) -> Option<Arc<crate::packages::layer::Layers>> {
    let sc = &config.sessions;
    let limits = crate::packages::layer::BuildLimits {
        timeout: Duration::from_secs(sc.package_build_timeout_secs),
        max_bytes: sc.package_layer_max_bytes,
        evict: sc.eviction(),
        apt_lists_max_age: Duration::from_secs(config.packages.apt_lists_max_age_secs),
    };
    match crate::packages::layer::Layers::new(
        &sc.sandbox_dir,
        found.installable.clone(),
        found.registries.clone(),
        found.hosts.clone(),
        limits,
    ) {
        Ok(l) => {
            tracing::info!(registry_hosts = ?found.hosts, "package layers");
            Some(Arc::new(l))
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "package layers unavailable");
            None
        }
    }
}

/// Start the plugin runtime with every configured harness loaded.
pub async fn harness_runtime(config: &Config) -> anyhow::Result<HarnessRuntime> {
    let harness_config = HarnessConfig {
        cache_dir: Some(config.data_dir.join("plugin-cache")),
        harnesses: config
            .harnesses
            .iter()
            .map(|(name, h)| {
                let plugin = h.plugin.parse().unwrap_or_else(|never| match never {});
                (name.clone(), HarnessEntry { plugin })
            })
            .collect(),
        limits: config.plugins.limits.to_limits(),
    };
    // Compiling components takes a moment (once, then cached): off the reactor.
    tokio::task::spawn_blocking(move || HarnessRuntime::new(harness_config))
        .await
        .context("plugin loader panicked")?
        .context("starting the harness plugin runtime")
}

/// The runtimes directory: created world-readable so sandboxes can read it.
fn runtime_dirs(config: &Config) -> anyhow::Result<RuntimeDirs> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &config.runtimes_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating runtimes dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting permissions of {}", dir.display()))?;
    let runtimes = Runtimes::new(dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?);
    for st in runtimes.status() {
        if !st.ready() {
            tracing::warn!("{st}");
        }
    }
    Ok(RuntimeDirs { runtimes, inside: RUNTIMES_INSIDE.into() })
}

/// bubblewrap is the local sandbox driver's one external program; on a
/// fresh Debian machine, install it (as root) rather than fail every session.
async fn install_bubblewrap() {
    let have = |p: &str| std::path::Path::new(p).exists();
    if have("/usr/bin/bwrap") || have("/usr/local/bin/bwrap") {
        return;
    }
    apt_install("bubblewrap").await;
}

/// gVisor's `runsc`, for `sandbox_driver = "gvisor"`: installed, or
/// upgraded from the distribution's backports when too old for agents.
async fn install_runsc() {
    use bridle_sandbox::gvisor::install::{self, Ensured};
    match tokio::task::spawn_blocking(install::ensure).await {
        Ok(Ok(Ensured::Present { .. })) => {}
        Ok(Ok(Ensured::Installed { path, version })) => {
            tracing::info!(path = %path.display(), %version, "runsc installed (auto_install = true)")
        }
        Ok(Err(e)) => tracing::warn!("gVisor: {e}"),
        Err(e) => tracing::warn!(error = %e, "installing runsc panicked"),
    }
}

/// Install one Debian package (as root, with apt-get), or say how to.
async fn apt_install(package: &'static str) {
    let have = |p: &str| std::path::Path::new(p).exists();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !have("/usr/bin/apt-get") {
        tracing::warn!(
            "{package} is missing: install it with `apt-get install -y {package}`; sessions fail until then"
        );
        return;
    }
    tracing::info!("{package} is missing; installing it with apt-get (auto_install = true)");
    let run = |args: Vec<&'static str>| async move {
        tokio::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .await
            .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned()))
    };
    let mut result = run(vec!["install", "-y", "-qq", package]).await;
    if !matches!(result, Ok((true, _))) {
        let _ = run(vec!["update", "-qq"]).await;
        result = run(vec!["install", "-y", "-qq", package]).await;
    }
    match result {
        Ok((true, _)) => tracing::info!("{package} installed"),
        Ok((false, err)) => tracing::warn!(stderr = %err.trim(), "installing {package} failed"),
        Err(e) => tracing::warn!(error = %e, "running apt-get failed"),
    }
}

/// Install missing agent runtimes in the background; sessions that start
/// before it finishes fail with "not installed" and work once it is done.
fn install_runtimes(runtimes: Runtimes) {
    let missing: Vec<_> = runtimes.status().into_iter().filter(|s| !s.ready()).map(|s| s.runtime).collect();
    if missing.is_empty() {
        return;
    }
    tracing::info!(?missing, dir = %runtimes.dir().display(), "installing agent runtimes in the background (auto_install = true)");
    tokio::task::spawn_blocking(move || match runtimes.install(&missing) {
        Ok(()) => tracing::info!("agent runtimes installed"),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "installing agent runtimes failed; run `bridle runtimes install`")
        }
    });
}

/// Where sandboxes see the runtimes directory.
pub const RUNTIMES_INSIDE: &str = "/opt/bridle/runtimes";

/// Run the server until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // Every sandbox connection through the egress gateway costs descriptors:
    // take all the kernel allows before sizing the gateway's global cap from
    // it (the cap leaves the other half to the API and the rest).
    match bridle_sandbox::egress::limits::raise_nofile() {
        Ok((before, after)) => tracing::info!(before, after, "RLIMIT_NOFILE raised to the hard limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE"),
    }
    let listen = config.listen;
    let live = config.sessions.enabled;
    let state = build_state(config, live).await?;
    if state.store.count_active_api_keys().await? == 0 {
        let (row, raw) = crate::keys::create_key(&state.store, "initial").await?;
        // Printed once, to the terminal; only the hash is stored.
        eprintln!(
            "\nNo API key existed, so one was created ({}). Keep it; it is not shown again:\n\n    {raw}\n",
            row.id
        );
    }
    if let Some(sessions) = &state.sessions {
        // Renews this node's leases; takes back the sessions a previous run
        // of this node owned and adopts those whose owner is gone (their
        // interrupted turns resume).
        tokio::spawn(crate::session::ownership::keep_leases(sessions.clone()));
    }
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let listener = ApiListener::new(listener);
    tracing::info!(
        %addr,
        database = ?state.store.backend(),
        data_dir = %state.config.data_dir.display(),
        "bridle listening on http://{addr}"
    );
    let sessions = state.sessions.clone();
    let (stop_tx, mut stopped) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    // Without TCP_NODELAY, Nagle holds a small SSE frame back until the
    // client's delayed ACK for the previous one (~40 ms on Linux).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, api::router(state)).with_graceful_shutdown(signal).into_future();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        r = &mut server => return r.context("server error"),
        _ = stopped.wait_for(|s| *s) => {}
    }
    // The listener accepts no more connections. Park the live sessions:
    // runtimes stopped, leases released, turns in progress handed over to
    // another node (requests in flight go on meanwhile).
    if let Some(s) = &sessions {
        s.park_all(SHUTDOWN_GRACE).await;
    }
    // Open event streams would hold the shutdown forever: they get a moment
    // to end, then the process exits (clients resume with Last-Event-ID).
    tokio::select! {
        r = &mut server => r.context("server error")?,
        () = tokio::time::sleep(Duration::from_secs(2)) => tracing::info!("closing the remaining event streams"),
    }
    tracing::info!("bridle stopped");
    Ok(())
}

/// The API's listener: accept errors (the process out of descriptors, say)
/// back off from 5 ms doubling to 1 s instead of axum's fixed second, and
/// are logged once per 10 s, not once per attempt. The descriptors it needs
/// are kept free by the egress gateway's global cap (at most half of them).
struct ApiListener {
    inner: TcpListener,
    backoff: Duration,
    logged: Option<std::time::Instant>,
    skipped: u64,
}

impl ApiListener {
    fn new(inner: TcpListener) -> Self {
        Self { inner, backoff: Duration::ZERO, logged: None, skipped: 0 }
    }
}

impl axum::serve::Listener for ApiListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok(conn) => {
                    self.backoff = Duration::ZERO;
                    return conn;
                }
                // The client's problem, not ours: take the next one.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    self.backoff = (self.backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    if self.logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::error!(error = %e, skipped = self.skipped, "API accept failed; backing off");
                        self.logged = Some(std::time::Instant::now());
                        self.skipped = 0;
                    } else {
                        self.skipped += 1;
                    }
                    tokio::time::sleep(self.backoff).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// How long shutdown waits for live sessions to park.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
