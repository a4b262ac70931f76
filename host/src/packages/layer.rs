//! Package layers on disk: `<sandbox_dir>/layers/<key>/`, one per normalized package spec,
//! built once in a sandbox of its own and reused by every later session.
//!
//! A build is serialized per key twice: an in-process mutex (many sessions of this node start
//! at once) and a `flock` on `<sandbox_dir>/layer-state/<key>.lock` (other nodes sharing the
//! directory). The sandbox installs into its `/workspace` and streams the result out as a tar on
//! stdout (only the public [`Sandbox`] API, so any driver works); it is unpacked into
//! `layers/<key>.tmp-*` and renamed into place, so a layer directory that exists is complete.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use bridle_sandbox::{EgressPolicy, ExecRequest, ExitStatus, Networking, SandboxDriver, SandboxSpec};
use tokio::io::AsyncReadExt;

use super::apt;
use super::eviction::{self, Entry, Policy};
use super::spec::{self, Installable, Manager, Registries, Spec};

/// Where `layers/` appears inside every sandbox (read-only).
pub const LAYERS_INSIDE: &str = "/opt/bridle/layers";

/// Where a build sandbox installs (inside it).
const BUILD_ROOT: &str = "/workspace/layer";

/// The bytes of installer output a failure message quotes.
const TAIL_BYTES: usize = 1500;

/// Limits of one layer build, from config.
#[derive(Debug, Clone)]
pub struct BuildLimits {
    /// Wall-clock time of the whole build.
    pub timeout: Duration,
    /// Bytes the layer may hold (its tar stream, counted as it arrives).
    pub max_bytes: u64,
    /// When layers are evicted (checked after each build).
    pub evict: Policy,
    /// How long apt's package lists are reused between builds (zero: never).
    pub apt_lists_max_age: Duration,
}

/// Why a layer could not be built, for the session's `session.error`.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("installing {manager} package `{package}` failed (build log: {log}); installer output ends: {tail}")]
    Package { manager: String, package: String, tail: String, log: String },
    #[error("building the package layer failed (build log: {log}): {message}")]
    Other { message: String, log: String },
    #[error("this server cannot install {manager} packages: {why}")]
    Unsupported { manager: String, why: String },
}

/// A layer ready for a session.
#[derive(Debug, Clone)]
pub struct Ready {
    pub key: String,
    /// Environment for the session's sandbox (the layer's PATH and search paths).
    pub env: Vec<(String, String)>,
    /// This call built it (else it was cached).
    pub built: bool,
}

pub struct Layers {
    /// `<sandbox_dir>/layers` (0711: a sandbox may use a layer by its key, not list them).
    root: PathBuf,
    installable: Installable,
    /// `<sandbox_dir>/layer-state`: build logs and lock files (0700).
    state: PathBuf,
    registries: Registries,
    /// The hosts a build sandbox may reach.
    hosts: Vec<String>,
    limits: BuildLimits,
    building: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Layers {
    pub fn new(
        sandbox_dir: &Path,
        installable: Installable,
        registries: Registries,
        hosts: Vec<String>,
        limits: BuildLimits,
    ) -> anyhow::Result<Self> {
        let root = sandbox_dir.join("layers");
        let state = sandbox_dir.join("layer-state");
        for (dir, mode) in [(&root, 0o711), (&state, 0o700)] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting permissions of {}", dir.display()))?;
        }
        Ok(Layers { root, installable, state, registries, hosts, limits, building: Mutex::new(HashMap::new()) })
    }

    /// The directory bound read-only at [`LAYERS_INSIDE`] in every sandbox.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the build log of `key` is kept.
    pub fn log_path(&self, key: &str) -> PathBuf {
        self.state.join(format!("{key}.log"))
    }

    /// The layer of `spec`, built now if no node has built it yet.
    pub async fn ensure(&self, driver: &Arc<dyn SandboxDriver>, spec: &Spec) -> Result<Ready, BuildError> {
        // An environment stored before its manager was refused at the API.
        for (m, _) in spec.lists() {
            if let Some(why) = self.installable.why_not(m) {
                return Err(BuildError::Unsupported { manager: m.to_string(), why: why.to_string() });
            }
        }
        let key = spec.key();
        let env = spec::layer_env(spec, &format!("{LAYERS_INSIDE}/{key}"));
        let dir = self.root.join(&key);
        if self.touch(&dir) {
            return Ok(Ready { key, env, built: false });
        }
        let gate = self.building.lock().unwrap_or_else(|p| p.into_inner()).entry(key.clone()).or_default().clone();
        let _in_process = gate.lock().await;
        let lock_path = self.state.join(format!("{key}.lock"));
        let log = self.log_path(&key).display().to_string();
        let other = |message: String| BuildError::Other { message, log: log.clone() };
        let _across_nodes = tokio::task::spawn_blocking(move || lock(&lock_path))
            .await
            .map_err(|e| other(format!("lock task: {e}")))?
            .map_err(|e| other(format!("{e:#}")))?;
        if self.touch(&dir) {
            return Ok(Ready { key, env, built: false });
        }
        let t0 = Instant::now();
        tracing::info!(key = %key, "building package layer");
        self.build(driver, spec, &key).await?;
        tracing::info!(key = %key, secs = t0.elapsed().as_secs_f64(), "package layer built");
        match self.evict() {
            Ok(gone) if !gone.is_empty() => tracing::info!(layers = ?gone, "package layers evicted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "evicting package layers failed"),
        }
        Ok(Ready { key, env, built: true })
    }

    /// Mark `dir` used now; `false` when it does not exist.
    fn touch(&self, dir: &Path) -> bool {
        match File::open(dir) {
            Ok(f) => {
                let _ = f.set_modified(SystemTime::now());
                true
            }
            Err(_) => false,
        }
    }

    async fn build(&self, driver: &Arc<dyn SandboxDriver>, spec: &Spec, key: &str) -> Result<(), BuildError> {
        let log_path = self.log_path(key);
        let log = log_path.display().to_string();
        let other = |message: String| BuildError::Other { message, log: log.clone() };
        let mut log_file = File::create(&log_path).map_err(|e| other(format!("creating {log}: {e}")))?;
        let session_id = format!("layer-{key}");
        // A build a crashed server left behind starts over.
        let _ = driver.delete_workspace(&session_id).await;
        let mut sandbox_spec = SandboxSpec::new(session_id.clone());
        sandbox_spec.egress = EgressPolicy {
            networking: Networking::Limited {
                allowed_hosts: self.hosts.clone(),
                allow_package_managers: false,
                allow_mcp_servers: false,
            },
            ..EgressPolicy::default()
        };
        sandbox_spec.env = vec![("npm_config_update_notifier".into(), "false".into())];
        let sandbox = driver.claim(sandbox_spec).await.map_err(|e| other(format!("build sandbox: {e}")))?;
        let tar_path = self.root.join(format!("{key}.tmp-{}.tar", ulid::Ulid::new()));
        let streamed =
            tokio::time::timeout(self.limits.timeout, self.run(sandbox.as_ref(), spec, &tar_path, &mut log_file)).await;
        let _ = sandbox.stop().await;
        let _ = driver.delete_workspace(&session_id).await;
        let result = match streamed {
            Err(_) => Err(format!(
                "the build took longer than {} s (sessions.package_build_timeout_secs)",
                self.limits.timeout.as_secs()
            )),
            Ok(r) => r,
        };
        let result = match result {
            Ok(()) => self.unpack(&tar_path, key).await,
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&tar_path);
        if let Err(e) = &result {
            let _ = writeln!(log_file, "[bridle] build failed: {e}");
        }
        drop(log_file);
        result.map_err(|message| {
            let text = std::fs::read(&log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let tail = tail(&text, TAIL_BYTES);
            match spec::failed_package(&text) {
                Some((manager, package)) => BuildError::Package { manager, package, tail, log: log.clone() },
                None => BuildError::Other { message: format!("{message}; output ends: {tail}"), log: log.clone() },
            }
        })
    }

    /// Run the install script; its tar goes to `tar_path`, its log to `log`.
    async fn run(
        &self,
        sandbox: &dyn bridle_sandbox::Sandbox,
        spec: &Spec,
        tar_path: &Path,
        log: &mut File,
    ) -> Result<(), String> {
        let script = spec::install_script(spec, &self.registries, BUILD_ROOT);
        let mut apt_lists = None;
        if spec.lists().any(|(m, _)| m == Manager::Apt) {
            // The host's apt configuration and a copy of its dpkg status (read here, never written).
            let inputs = tokio::task::spawn_blocking(apt::host_inputs)
                .await
                .map_err(|e| format!("apt inputs task: {e}"))?
                .map_err(|e| format!("reading the host's apt configuration: {e:#}"))?;
            let cache = self.state.join("apt-lists").join(format!("{}.tar", apt::lists_key(&inputs)));
            for (path, body) in inputs {
                sandbox.write_file(&path, &body, 0o644).await.map_err(|e| format!("placing {path}: {e}"))?;
            }
            if fresh(&cache, self.limits.apt_lists_max_age) {
                match exec_from_file(sandbox, apt::lists_restore_script(), &cache).await {
                    Ok(()) => {
                        let _ = writeln!(log, "[bridle] apt: package lists restored from {}", cache.display());
                    }
                    Err(e) => tracing::warn!(error = %e, "restoring cached apt lists failed; the build updates them"),
                }
            }
            apt_lists = Some(cache);
        }
        let result = self.install(sandbox, script, tar_path, log).await;
        // Lists this build updated are kept for the next (even when a package failed: they are
        // the sources' lists, not the packages').
        if let Some(cache) = apt_lists.filter(|_| !self.limits.apt_lists_max_age.is_zero()) {
            match exec_to_file(sandbox, apt::lists_export_script(), &cache).await {
                Ok(true) => {
                    tracing::debug!(path = %cache.display(), "apt lists cached");
                    prune_stale(cache.parent().unwrap_or(&self.state), self.limits.apt_lists_max_age);
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "caching apt lists failed"),
            }
        }
        result
    }

    /// Run the install script; its tar goes to `tar_path`, its log to `log`.
    async fn install(
        &self,
        sandbox: &dyn bridle_sandbox::Sandbox,
        script: String,
        tar_path: &Path,
        log: &mut File,
    ) -> Result<(), String> {
        let child =
            sandbox.exec(ExecRequest::shell(script)).await.map_err(|e| format!("starting the installer: {e}"))?;
        // Only the control crosses awaits below (the stdio halves are not `Sync`).
        let bridle_sandbox::ExecChild { stdin, stdout: mut out, stderr: mut err, control } = child;
        drop(stdin);
        let mut tar = File::create(tar_path).map_err(|e| format!("creating {}: {e}", tar_path.display()))?;
        let max = self.limits.max_bytes;
        let copy_out = async {
            let mut n = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            while let Some(r) = out.as_mut() {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        n += k as u64;
                        if n > max {
                            return Err(format!(
                                "the layer is larger than {max} bytes (sessions.package_layer_max_bytes)"
                            ));
                        }
                        tar.write_all(&buf[..k]).map_err(|e| format!("writing the layer: {e}"))?;
                    }
                }
            }
            Ok(())
        };
        let copy_err = async {
            let mut buf = vec![0u8; 16 * 1024];
            while let Some(r) = err.as_mut() {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        let _ = log.write_all(&buf[..k]);
                    }
                }
            }
        };
        let (copied, ()) = tokio::join!(copy_out, copy_err);
        if let Err(e) = copied {
            let _ = control.kill().await;
            return Err(e);
        }
        match control.wait().await {
            ExitStatus::Exited { code: 0 } => Ok(()),
            status => Err(format!("the installer ended with {status:?}")),
        }
    }

    /// Unpack the build's tar into `layers/<key>.tmp-*`, then rename it into place.
    async fn unpack(&self, tar_path: &Path, key: &str) -> Result<(), String> {
        let (tar_path, root, key) = (tar_path.to_path_buf(), self.root.clone(), key.to_string());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let tmp = root.join(format!("{key}.tmp-{}", ulid::Ulid::new()));
            std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let unpacked = (|| -> anyhow::Result<()> {
                let mut archive = tar::Archive::new(File::open(&tar_path)?);
                archive.set_preserve_permissions(true);
                archive.set_overwrite(false);
                // `unpack` keeps every entry inside `tmp` (no `..`, no writes through links).
                archive.unpack(&tmp).context("unpacking the layer")?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
                std::fs::rename(&tmp, root.join(&key)).context("moving the layer into place")?;
                Ok(())
            })();
            if unpacked.is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            unpacked
        })
        .await
        .map_err(|e| format!("unpack task: {e}"))?
        .map_err(|e| format!("{e:#}"))
    }

    /// Evict by the configured limits (see [`evict`]).
    pub fn evict(&self) -> anyhow::Result<Vec<String>> {
        evict_in(&self.root, &self.state, self.limits.evict)
    }
}

/// Remove the cached lists in `dir` older than `max_age` (those of an apt configuration the
/// host no longer has would otherwise stay forever).
fn prune_stale(dir: &Path, max_age: Duration) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "tar") && !fresh(&path, max_age) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// `path` exists and was written less than `max_age` ago.
fn fresh(path: &Path, max_age: Duration) -> bool {
    let modified = std::fs::metadata(path).and_then(|m| m.modified());
    modified.is_ok_and(|t| SystemTime::now().duration_since(t).is_ok_and(|age| age < max_age))
}

/// Run `script` in `sandbox` with `file` on its stdin.
async fn exec_from_file(sandbox: &dyn bridle_sandbox::Sandbox, script: String, file: &Path) -> Result<(), String> {
    let mut input = tokio::fs::File::open(file).await.map_err(|e| format!("opening {}: {e}", file.display()))?;
    let child = sandbox.exec(ExecRequest::shell(script)).await.map_err(|e| format!("starting: {e}"))?;
    // Output kept open until the end (a closed pipe would end the script early).
    let bridle_sandbox::ExecChild { stdin, stdout: _stdout, stderr: _stderr, control } = child;
    if let Some(mut stdin) = stdin {
        tokio::io::copy(&mut input, &mut stdin).await.map_err(|e| format!("feeding {}: {e}", file.display()))?;
        tokio::io::AsyncWriteExt::shutdown(&mut stdin).await.map_err(|e| format!("closing stdin: {e}"))?;
    }
    match control.wait().await {
        ExitStatus::Exited { code: 0 } => Ok(()),
        status => Err(format!("ended with {status:?}")),
    }
}

/// Run `script` in `sandbox`, its stdout into `file` (replaced whole, only on success); `false`
/// when the script exits 4 (nothing to write).
async fn exec_to_file(sandbox: &dyn bridle_sandbox::Sandbox, script: String, file: &Path) -> Result<bool, String> {
    let dir = file.parent().ok_or("no parent directory")?;
    tokio::fs::create_dir_all(dir).await.map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".tmp-{}", ulid::Ulid::new()));
    let result = async {
        let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        let child = sandbox.exec(ExecRequest::shell(script)).await.map_err(|e| format!("starting: {e}"))?;
        let bridle_sandbox::ExecChild { stdin, stdout, stderr: _stderr, control } = child;
        drop(stdin);
        if let Some(mut stdout) = stdout {
            tokio::io::copy(&mut stdout, &mut out).await.map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        }
        tokio::io::AsyncWriteExt::flush(&mut out).await.map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        match control.wait().await {
            ExitStatus::Exited { code: 0 } => {
                tokio::fs::rename(&tmp, file).await.map_err(|e| format!("moving into {}: {e}", file.display()))?;
                Ok(true)
            }
            ExitStatus::Exited { code: 4 } => Ok(false),
            status => Err(format!("ended with {status:?}")),
        }
    }
    .await;
    let _ = tokio::fs::remove_file(&tmp).await;
    result
}

/// Where the build log of `key` is kept under `sandbox_dir`.
pub fn log_path(sandbox_dir: &Path, key: &str) -> PathBuf {
    sandbox_dir.join("layer-state").join(format!("{key}.log"))
}

/// The build log of layer `key` under `sandbox_dir`.
pub fn read_log(sandbox_dir: &Path, key: &str) -> anyhow::Result<String> {
    // A key is what `Spec::key` makes: hex digits only, so never a path.
    anyhow::ensure!(
        !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "`{key}` is not a layer key (the hex key `bridle environments layers` lists)"
    );
    let path = log_path(sandbox_dir, key);
    let bytes = std::fs::read(&path).with_context(|| format!("no build log for layer {key} ({})", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Remove the layers `policy` picks under `<sandbox_dir>/layers`; a layer being built is left.
/// A session still using an evicted layer loses it (the next session rebuilds it): keep the age
/// limit well above a session's lifetime. Returns the keys removed.
pub fn evict(sandbox_dir: &Path, policy: Policy) -> anyhow::Result<Vec<String>> {
    evict_in(&sandbox_dir.join("layers"), &sandbox_dir.join("layer-state"), policy)
}

fn evict_in(root: &Path, state: &Path, policy: Policy) -> anyhow::Result<Vec<String>> {
    let chosen = eviction::choose(&list(root)?, policy, SystemTime::now());
    if !chosen.is_empty() {
        std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    }
    let mut removed = Vec::new();
    for key in chosen {
        let lock_path = state.join(format!("{key}.lock"));
        let Ok(file) = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        // Renamed first, so no session finds a half-removed layer.
        let doomed = root.join(format!("{key}.evicted-{}", ulid::Ulid::new()));
        if std::fs::rename(root.join(&key), &doomed).is_ok() {
            std::fs::remove_dir_all(&doomed).with_context(|| format!("removing {}", doomed.display()))?;
            removed.push(key);
        }
    }
    Ok(removed)
}

/// Every complete layer under `root` (`<sandbox_dir>/layers`), least recently used first.
pub fn list(root: &Path) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let last_used = e.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
        out.push(Entry { key: name, bytes: du(&e.path()), last_used });
    }
    out.sort_by_key(|l| l.last_used);
    Ok(out)
}

/// Bytes of the regular files under `dir` (links not followed).
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// Take the exclusive `flock` of `path`, waiting for another builder (this or another node).
fn lock(path: &Path) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    file.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// The last `max` bytes of `text` (at a char boundary), on one line.
fn tail(text: &str, max: usize) -> String {
    let start = text.len().saturating_sub(max);
    let start = text.ceil_char_boundary(start);
    text[start..].trim().replace('\n', " | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_list_caches_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new, other) = (dir.path().join("a.tar"), dir.path().join("b.tar"), dir.path().join("c.log"));
        for p in [&old, &new, &other] {
            std::fs::write(p, "x").unwrap();
        }
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for p in [&old, &other] {
            File::options().write(true).open(p).unwrap().set_modified(hour_ago).unwrap();
        }
        assert!(!fresh(&old, Duration::from_secs(600)) && fresh(&new, Duration::from_secs(600)));
        assert!(!fresh(&dir.path().join("missing.tar"), Duration::from_secs(600)));
        prune_stale(dir.path(), Duration::from_secs(600));
        assert!(!old.exists() && new.exists() && other.exists());
    }
}
