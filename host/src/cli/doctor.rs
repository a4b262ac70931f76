//! `bridle doctor`: is this machine and config ready to run sessions? One line per check
//! (OK, WARN or FAIL), and for each failure the command that fixes it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use clap::Args;
use console::Style;
use sqlx::{ConnectOptions, Connection, Row};

use crate::config::Config;
use crate::runtimes::{Runtime, Runtimes};
use crate::store::{Backend, migrator, redact};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Plain text, no colours (also when stdout is not a terminal, or NO_COLOR is set).
    #[arg(long)]
    pub no_color: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// The outcome of one check.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub level: Level,
    pub detail: String,
    /// What to run or change, for warnings and failures.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check { name: name.into(), level: Level::Ok, detail: detail.into(), fix: None }
    }
    fn warn(name: impl Into<String>, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check { name: name.into(), level: Level::Warn, detail: detail.into(), fix }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name: name.into(), level: Level::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// Every check, in the order they are printed.
pub async fn run(config: &Config) -> Vec<Check> {
    let mut checks = data_dir(config);
    checks.push(database(config).await);
    checks.extend(plugins(config).await);
    if config.sessions.enabled {
        checks.extend(runtimes(config).await);
        checks.push(egress(config));
        let cfg = config.clone();
        match tokio::task::spawn_blocking(move || sandbox(&cfg)).await {
            Ok(c) => checks.extend(c),
            Err(e) => checks.push(Check::fail("sandbox", format!("the check panicked: {e}"), "report a bug")),
        }
        if config.sessions.sandbox_driver == crate::config::SandboxDriverKind::Gvisor {
            let cfg = config.clone();
            match tokio::task::spawn_blocking(move || gvisor(&cfg)).await {
                Ok(c) => checks.extend(c),
                Err(e) => checks.push(Check::fail("gvisor", format!("the check panicked: {e}"), "report a bug")),
            }
        }
    } else {
        checks.push(Check::ok("sessions", "disabled (sessions.enabled = false): no runtimes or sandboxes needed"));
    }
    checks
}

/// Print the checks; returns how many failed.
pub fn print(checks: &[Check], fancy: bool) -> usize {
    let width = checks.iter().map(|c| c.name.chars().count()).max().unwrap_or(0);
    let paint = |s: &str, style: Style| if fancy { style.apply_to(s).to_string() } else { s.to_owned() };
    for c in checks {
        let (word, style) = match c.level {
            Level::Ok => ("OK  ", Style::new().green().bold()),
            Level::Warn => ("WARN", Style::new().yellow().bold()),
            Level::Fail => ("FAIL", Style::new().red().bold()),
        };
        super::say(&format!("{} {:<width$}  {}", paint(word, style), c.name, c.detail));
        if let Some(fix) = &c.fix {
            super::say(&format!("     {:<width$}  {} {fix}", "", paint("fix:", Style::new().bold())));
        }
    }
    let count = |l: Level| checks.iter().filter(|c| c.level == l).count();
    let (ok, warn, fail) = (count(Level::Ok), count(Level::Warn), count(Level::Fail));
    super::say(&format!("{ok} ok, {warn} warning(s), {fail} failure(s)"));
    fail
}

fn mode(p: &Path) -> Option<u32> {
    std::fs::metadata(p).ok().map(|m| m.permissions().mode() & 0o7777)
}

/// The data dir (0700: it holds the database and the key) and the secret key.
fn data_dir(config: &Config) -> Vec<Check> {
    let dir = &config.data_dir;
    let mut checks = Vec::new();
    match std::fs::metadata(dir) {
        Err(_) => checks.push(Check::warn(
            "data dir",
            format!("{} does not exist yet", dir.display()),
            Some("`bridle serve` creates it (mode 0700) on first start".into()),
        )),
        Ok(m) if !m.is_dir() => checks.push(Check::fail(
            "data dir",
            format!("{} is not a directory", dir.display()),
            "point data_dir (--data-dir) at a directory",
        )),
        Ok(m) => {
            let perm = m.permissions().mode() & 0o777;
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            if perm & 0o077 != 0 {
                checks.push(Check::fail(
                    "data dir",
                    format!("{} is mode {perm:04o}: others can read the database and key", dir.display()),
                    format!("chmod 700 {}", dir.display()),
                ));
            } else if m.uid() != me {
                checks.push(Check::warn(
                    "data dir",
                    format!("{} belongs to uid {}, not to this user ({me})", dir.display(), m.uid()),
                    Some(format!("run bridle as its owner, or chown -R {me} {}", dir.display())),
                ));
            } else {
                checks.push(Check::ok("data dir", format!("{} (mode {perm:04o})", dir.display())));
            }
        }
    }
    checks.push(secret_key(config));
    checks
}

fn secret_key(config: &Config) -> Check {
    let decodes = |b64: &str| {
        base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok().filter(|k| k.len() == 32).is_some()
    };
    let gen_fix = "set secret_key to base64 of 32 random bytes, e.g. `openssl rand -base64 32`";
    if let Some(k) = &config.secret_key {
        return if decodes(k) {
            Check::ok("secret key", "from the configuration (secret_key)")
        } else {
            Check::fail("secret key", "secret_key is not base64 of 32 bytes", gen_fix)
        };
    }
    let path = config.data_dir.join("secret.key");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return if path.exists() {
            Check::fail("secret key", format!("{} cannot be read", path.display()), "run bridle as the key's owner")
        } else {
            Check::warn(
                "secret key",
                format!("{} does not exist yet", path.display()),
                Some("`bridle serve` generates it on first start; back it up with the database".into()),
            )
        };
    };
    let perm = mode(&path).unwrap_or(0);
    if !decodes(&text) {
        Check::fail(
            "secret key",
            format!("{} is not base64 of 32 bytes", path.display()),
            format!("restore it from a backup (vault secrets sealed with it cannot be read otherwise); {gen_fix}"),
        )
    } else if perm & 0o077 != 0 {
        Check::fail(
            "secret key",
            format!("{} is mode {perm:04o}: readable by others", path.display()),
            format!("chmod 600 {}", path.display()),
        )
    } else {
        Check::ok("secret key", format!("{} (mode {perm:04o})", path.display()))
    }
}

/// The SQLite file a URL names, if any.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Connects (without creating or migrating anything) and compares the applied migrations
/// with the ones this build carries.
async fn database(config: &Config) -> Check {
    let url = config.database_url();
    let shown = redact(&url);
    let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
    if let Some(path) = sqlite_path(&url)
        && !path.exists()
    {
        return Check::warn(
            "database",
            format!("{} does not exist yet", path.display()),
            Some("`bridle serve` creates and migrates it on first start".into()),
        );
    }
    sqlx::any::install_default_drivers();
    let connect = async {
        let opts = sqlx::any::AnyConnectOptions::from_str(&url)?;
        opts.connect().await
    };
    let mut conn = match tokio::time::timeout(Duration::from_secs(15), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Check::fail(
                "database",
                format!("cannot connect to {shown}: {e}"),
                "check database_url and that the database server is running and reachable",
            );
        }
        Err(_) => {
            return Check::fail(
                "database",
                format!("connecting to {shown} timed out"),
                "check database_url and that the database server is reachable",
            );
        }
    };
    let applied = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .map(|rows| rows.iter().filter_map(|r| r.try_get::<i64, _>("version").ok()).collect::<Vec<_>>());
    let _ = conn.close().await;
    let applied = match applied {
        Ok(v) => v,
        Err(e) => {
            return Check::fail(
                "database",
                format!("{shown}: no migrations applied ({e})"),
                "start `bridle serve` once: it applies the migrations",
            );
        }
    };
    let known: Vec<i64> = migrator(backend).iter().map(|m| m.version).collect();
    let pending: Vec<String> = known.iter().filter(|v| !applied.contains(v)).map(i64::to_string).collect();
    let unknown: Vec<String> = applied.iter().filter(|v| !known.contains(v)).map(i64::to_string).collect();
    if !unknown.is_empty() {
        Check::fail(
            "database",
            format!(
                "{shown} has migrations this binary does not know ({}): a newer bridle migrated it",
                unknown.join(", ")
            ),
            "run the newer bridle binary",
        )
    } else if !pending.is_empty() {
        Check::fail(
            "database",
            format!("{shown}: migrations not applied yet: {}", pending.join(", ")),
            "start `bridle serve`: it applies them at start-up",
        )
    } else {
        Check::ok("database", format!("{shown}: connected, {} migrations applied", applied.len()))
    }
}

/// Each configured harness plugin loads and exports the supported contract.
async fn plugins(config: &Config) -> Vec<Check> {
    // Loading keeps compiled plugins in `<data_dir>/plugin-cache`; a data dir that does not
    // exist yet is left for `bridle serve` to create with its private mode.
    let scratch =
        (!config.data_dir.exists()).then(|| std::env::temp_dir().join(format!("bridle-doctor-{}", std::process::id())));
    let mut load_config = config.clone();
    if let Some(dir) = &scratch {
        load_config.data_dir = dir.clone();
    }
    let loaded = crate::server::harness_runtime(&load_config).await;
    if let Some(dir) = &scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    let runtime = match loaded {
        Ok(r) => r,
        Err(e) => {
            return vec![Check::fail("plugins", format!("the plugin runtime did not start: {e:#}"), "report a bug")];
        }
    };
    let mut checks = Vec::new();
    for e in runtime.registry().entries() {
        let name = format!("plugin {}", e.engine);
        match &e.plugin {
            Ok(p)
                if bridle_harness::SUPPORTED_CONTRACTS
                    .iter()
                    .any(|v| p.contract_version().starts_with(&format!("{v}."))) =>
            {
                let info = p.info();
                checks.push(Check::ok(
                    name,
                    format!(
                        "{} {}, contract {}, {:?}, {:?}",
                        e.source,
                        info.version,
                        p.contract_version(),
                        info.execution_model,
                        info.api_shape
                    ),
                ));
            }
            Ok(p) => checks.push(Check::fail(
                name,
                format!("{} declares contract {}", e.source, p.contract_version()),
                format!(
                    "rebuild the plugin against bridle:harness@{}.x",
                    bridle_harness::SUPPORTED_CONTRACTS.join(".x or @")
                ),
            )),
            Err(err) => {
                let fix = match &e.source {
                    bridle_harness::PluginSource::Builtin(_) => {
                        "rebuild bridle with the wasm32-wasip2 target installed (`rustup target add wasm32-wasip2`)"
                            .to_owned()
                    }
                    bridle_harness::PluginSource::Path(p) => format!(
                        "`bridle plugins inspect {}` shows what it declares; fix or remove [harnesses.{}] in the config",
                        p.display(),
                        e.engine
                    ),
                };
                checks.push(Check::fail(name, format!("{}: {err}", e.source), fix));
            }
        }
    }
    checks
}

/// Each runtime is installed at its pinned version and actually runs.
async fn runtimes(config: &Config) -> Vec<Check> {
    // Absolute, so the fix text names the directory whatever the reader's cwd.
    let dir = &std::path::absolute(&config.runtimes_dir).unwrap_or_else(|_| config.runtimes_dir.clone());
    let runtimes = Runtimes::new(dir);
    let mut checks = Vec::new();
    if let Some(m) = mode(dir)
        && m & 0o005 != 0o005
    {
        checks.push(Check::fail(
            "runtimes dir",
            format!("{} is mode {m:04o}: the sandbox users cannot read it", dir.display()),
            format!("chmod -R a+rX {}", dir.display()),
        ));
    }
    for st in runtimes.status() {
        let name = format!("runtime {}", st.runtime.name());
        let (Some(path), None) = (&st.path, &st.problem) else {
            let problem = st.problem.clone().unwrap_or_else(|| "not installed".into());
            checks.push(Check::fail(name, format!("{problem} (pinned {})", st.pinned_version), st.fix.clone()));
            continue;
        };
        let mut cmd = match st.runtime {
            Runtime::OpenaiAgents => {
                let mut c = tokio::process::Command::new(runtimes.dir().join("python/bin/python"));
                c.args(["-c", "import agents, importlib.metadata as m; print(m.version('openai-agents'))"]);
                c
            }
            _ => {
                let mut c = tokio::process::Command::new(path);
                c.arg("--version");
                c
            }
        };
        cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
        let reinstall = format!(
            "reinstall it: remove {} and run `bridle runtimes install {}`",
            runtimes.dir().display(),
            st.runtime.name()
        );
        match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
            Ok(Ok(out)) if out.status.success() => {
                let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if said.contains(st.pinned_version) {
                    checks.push(Check::ok(name, format!("{said} ({})", path.display())));
                } else {
                    checks.push(Check::fail(
                        name,
                        format!("reports `{said}`, pinned {}", st.pinned_version),
                        reinstall,
                    ));
                }
            }
            Ok(Ok(out)) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let err = err.trim().lines().last().unwrap_or("");
                checks.push(Check::fail(
                    name,
                    format!("{} does not run ({}): {err}", path.display(), out.status),
                    reinstall,
                ));
            }
            Ok(Err(e)) => checks.push(Check::fail(name, format!("cannot run {}: {e}", path.display()), reinstall)),
            Err(_) => checks.push(Check::fail(
                name,
                format!("{} --version did not finish in 60 s", path.display()),
                reinstall,
            )),
        }
    }
    checks
}

/// `sandbox_driver = "gvisor"`: runsc, its platform, root, and a trial
/// gVisor sandbox (the bubblewrap checks still run: the quota, uids and
/// cgroups are shared).
fn gvisor(config: &Config) -> Vec<Check> {
    let sc = &config.sessions;
    let cfg = bridle_sandbox::GvisorConfig {
        base: bridle_sandbox::LocalConfig { state_dir: sc.sandbox_dir.clone(), ..Default::default() },
        platform: sc.gvisor_platform.clone(),
        ..Default::default()
    };
    let d = bridle_sandbox::gvisor::check(&cfg);
    let mut checks = Vec::new();
    match &d.runsc {
        Ok(p) => checks.push(runsc_version(p, d.version.as_deref())),
        Err(e) => checks.push(Check::fail("gvisor", e.clone(), "apt-get install -y runsc")),
    }
    match &d.platform {
        Ok(p) => checks.push(Check::ok("gvisor platform", p.clone())),
        Err(e) => checks.push(Check::fail("gvisor platform", e.clone(), "set sessions.gvisor_platform")),
    }
    if !d.root {
        checks.push(Check::fail("gvisor privileges", "the gVisor driver needs root", "run `bridle serve` as root"));
    }
    if d.runsc.is_ok() && d.root {
        match &d.probe {
            Ok(()) => checks.push(Check::ok("gvisor trial sandbox", "started")),
            Err(e) => checks.push(Check::fail(
                "gvisor trial sandbox",
                e.clone(),
                "check `runsc --platform=<platform> do true` by hand; set sessions.gvisor_platform",
            )),
        }
    }
    checks
}

/// The installed runsc: a release older than the one the suites pass on
/// runs sandboxes, but codex turns can stall on it.
fn runsc_version(path: &std::path::Path, version: Option<&str>) -> Check {
    use bridle_sandbox::gvisor::install::{TESTED_RELEASE, recent_enough};
    let detail = format!("{} ({})", path.display(), version.unwrap_or("version unknown"));
    if version.is_some_and(recent_enough) {
        return Check::ok("gvisor", detail);
    }
    Check::warn(
        "gvisor",
        format!("{detail}: older than release {TESTED_RELEASE}, on which agents' tool calls can stall"),
        Some("upgrade runsc, e.g. `apt-get install -t bookworm-backports runsc` on Debian 12, or set auto_install = true".into()),
    )
}

/// bubblewrap, the sandbox init, seccomp, and a trial sandbox as the first sandbox uid.
fn sandbox(config: &Config) -> Vec<Check> {
    let sc = &config.sessions;
    let cfg = bridle_sandbox::LocalConfig {
        state_dir: sc.sandbox_dir.clone(),
        uid_base: sc.sandbox_uid_base,
        uid_count: sc.max_sandboxes,
        workspace_quota: sc.disk_quota(),
        cpus: sc.cpu_limit(),
        ..bridle_sandbox::LocalConfig::default()
    };
    let d = bridle_sandbox::local::check(&cfg);
    let mut checks = Vec::new();
    match &d.bwrap {
        Ok(p) => checks.push(Check::ok(
            "bubblewrap",
            format!("{} ({})", p.display(), d.bwrap_version.as_deref().unwrap_or("version unknown")),
        )),
        Err(e) => checks.push(Check::fail("bubblewrap", e.clone(), "apt-get install -y bubblewrap")),
    }
    match &d.init {
        Ok(p) => checks.push(Check::ok("sandbox init", p.display().to_string())),
        Err(e) => checks.push(Check::fail(
            "sandbox init",
            e.clone(),
            "set BRIDLE_SANDBOX_INIT to a bridle-sandbox-init binary, or run the `bridle` binary itself",
        )),
    }
    if let Err(e) = &d.seccomp {
        checks.push(Check::fail("seccomp", e.clone(), "report a bug: the deny list must compile on this architecture"));
    }
    if d.root {
        checks.push(Check::ok(
            "privileges",
            format!("root: one host uid per sandbox, from {} ({} uids)", sc.sandbox_uid_base, sc.max_sandboxes),
        ));
    } else {
        checks.push(Check::warn(
            "privileges",
            "not root: every sandbox runs as the server's own uid, without cgroup limits",
            Some("run `bridle serve` as root for one unprivileged uid per sandbox".into()),
        ));
    }
    match &d.cgroups {
        Some(c) => checks.push(Check::ok("limits", format!("{c} + rlimits"))),
        None => checks.push(Check::warn(
            "limits",
            "no writable cgroup hierarchy: memory and process limits are rlimits only",
            None,
        )),
    }
    match (&d.cpu, sc.cpu_limit()) {
        (Some(c), Some(cpus)) => checks.push(Check::ok("cpu limit", format!("{cpus} CPU core(s) per sandbox: {c}"))),
        (None, Some(_)) => checks.push(Check::warn(
            "cpu limit",
            "no cgroup cpu controller (not root, or none mounted): sandboxes run without a CPU limit",
            Some("run as root on a host with the cgroup cpu controller, or set sessions.sandbox_cpus = 0".into()),
        )),
        (_, None) => checks.push(Check::ok("cpu limit", "off (sessions.sandbox_cpus = 0)")),
    }
    checks.push(disk_quota(d.quota.as_ref(), sc.sandbox_disk_bytes_max));
    if d.bwrap.is_ok() {
        match &d.probe {
            Ok(()) => checks.push(Check::ok(
                "trial sandbox",
                if d.root { format!("started as uid {}", sc.sandbox_uid_base) } else { "started".to_owned() },
            )),
            Err(e) => checks.push(Check::fail(
                "trial sandbox",
                e.clone(),
                "allow unprivileged user namespaces: `sysctl -w user.max_user_namespaces=15000` \
                 (Debian: kernel.unprivileged_userns_clone=1; Ubuntu: kernel.apparmor_restrict_unprivileged_userns=0)",
            )),
        }
    }
    if d.root {
        checks.push(sandbox_dir(&sc.sandbox_dir));
    }
    checks
}

/// The disk quota: the driver's mechanism after a trial mount (`None`: configured off), and how
/// large a quota environments may ask for (`env_max`, `sessions.sandbox_disk_bytes_max`).
fn disk_quota(quota: Option<&Result<String, String>>, env_max: u64) -> Check {
    match quota {
        Some(Ok(q)) => Check::ok(
            "disk quota",
            match env_max {
                0 => q.clone(),
                max => {
                    format!("{q}; environments may set their own up to {} MiB (bridle.sandbox_disk_bytes)", max >> 20)
                }
            },
        ),
        Some(Err(e)) => Check::fail(
            "disk quota",
            e.clone(),
            "run as root with loop devices and e2fsprogs (mkfs.ext4), or set sessions.sandbox_disk_bytes = 0 \
             to run sandboxes without a disk quota",
        ),
        None => {
            Check::warn("disk quota", "off (sessions.sandbox_disk_bytes = 0): a session can fill the host's disk", None)
        }
    }
}

/// The egress gateways' descriptor budget, as `bridle serve` will size it (it raises the soft
/// open-file limit to the hard one first).
fn egress(config: &Config) -> Check {
    use bridle_sandbox::egress::limits;
    let e = &config.egress;
    let nofile = limits::hard_nofile();
    match limits::effective_cap(e.max_connections, nofile) {
        Ok(cap) => {
            let detail = format!(
                "open-file limit {nofile}: at most {cap} gateway connections in all, {} per sandbox, \
                 {}/s new per sandbox; {} internal destination(s) allowed",
                e.max_connections_per_sandbox,
                e.connections_per_second,
                e.allow_internal.len()
            );
            if cap < u32::max(e.max_connections_per_sandbox, 256) {
                Check::warn(
                    "egress",
                    detail,
                    Some("raise the hard open-file limit (LimitNOFILE= in the systemd unit, `ulimit -Hn`)".into()),
                )
            } else {
                Check::ok("egress", detail)
            }
        }
        Err(msg) => Check::fail("egress", msg, "lower egress.max_connections or raise the hard open-file limit"),
    }
}

/// The sandbox uids resolve bind sources by path, so every ancestor of the sandbox dir must
/// be searchable by others.
fn sandbox_dir(dir: &Path) -> Check {
    let full = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let existing = full.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
    let resolved = existing.canonicalize().unwrap_or_else(|_| existing.to_path_buf());
    for anc in resolved.ancestors() {
        let Some(m) = mode(anc) else { continue };
        // The server gives the dir itself mode 0711; its parents are what matter.
        let is_self = anc == resolved && full.exists();
        if !is_self && m & 0o001 == 0 {
            return Check::fail(
                "sandbox dir",
                format!(
                    "{} is below {} (mode {m:04o}), which the sandbox uids cannot traverse",
                    dir.display(),
                    anc.display()
                ),
                format!(
                    "put sessions.sandbox_dir outside private directories (e.g. /var/lib/bridle-sandboxes) or `chmod o+x {}`",
                    anc.display()
                ),
            );
        }
    }
    let state = if full.exists() { "exists" } else { "will be created" };
    Check::ok("sandbox dir", format!("{} ({state})", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(sqlite_path("sqlite:///tmp/x/bridle.db?mode=rwc"), Some(PathBuf::from("/tmp/x/bridle.db")));
        assert_eq!(sqlite_path("sqlite:rel.db"), Some(PathBuf::from("rel.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }

    #[test]
    fn private_parents_of_the_sandbox_dir_fail_with_a_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let private = tmp.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = sandbox_dir(&private.join("sandboxes"));
        assert_eq!(c.level, Level::Fail, "{c:?}");
        assert!(c.fix.unwrap().contains(&format!("chmod o+x {}", private.display())));
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(sandbox_dir(&private.join("sandboxes")).level, Level::Ok);
    }

    #[test]
    fn missing_runtimes_name_the_dir_absolutely() {
        let rel = PathBuf::from("target/bridle-doctor-test-no-runtimes");
        let config = Config { runtimes_dir: rel.clone(), ..Config::default() };
        let abs = std::env::current_dir().unwrap().join(&rel);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let checks = rt.block_on(runtimes(&config));
        assert_eq!(checks.len(), Runtime::ALL.len(), "{checks:?}");
        for c in checks {
            assert_eq!(c.level, Level::Fail, "{c:?}");
            assert!(c.fix.as_deref().unwrap().contains(&format!("(runtimes dir {})", abs.display())), "{c:?}");
        }
    }

    #[test]
    fn an_old_runsc_is_a_warning() {
        let p = std::path::Path::new("/usr/bin/runsc");
        let cases = [
            (Some("runsc version 0.0~20240729.0"), Level::Ok),
            (Some("runsc version release-20251110.0"), Level::Ok),
            (Some("runsc version 0.0~20221219.0"), Level::Warn),
            (None, Level::Warn),
        ];
        for (version, level) in cases {
            let c = runsc_version(p, version);
            assert_eq!(c.level, level, "{c:?}");
            assert_eq!(c.fix.is_some(), level == Level::Warn, "{c:?}");
        }
    }

    #[test]
    fn disk_quota_says_what_environments_may_ask_for() {
        let mech: Result<String, String> = Ok("ext4 image per workspace, 4096 MiB each".into());
        let c = disk_quota(Some(&mech), 0);
        assert_eq!((c.level, c.detail.as_str()), (Level::Ok, "ext4 image per workspace, 4096 MiB each"));
        let c = disk_quota(Some(&mech), 8 << 30);
        assert_eq!(c.level, Level::Ok);
        assert!(
            c.detail.ends_with("; environments may set their own up to 8192 MiB (bridle.sandbox_disk_bytes)"),
            "{c:?}"
        );
        let c = disk_quota(Some(&Err("no loop devices".into())), 8 << 30);
        assert_eq!((c.level, c.detail.as_str()), (Level::Fail, "no loop devices"));
        assert_eq!(disk_quota(None, 0).level, Level::Warn);
    }

    #[test]
    fn key_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config { data_dir: tmp.path().to_path_buf(), ..Config::default() };
        assert_eq!(secret_key(&config).level, Level::Warn);
        let key = tmp.path().join("secret.key");
        std::fs::write(&key, format!("{}\n", base64::engine::general_purpose::STANDARD.encode([7u8; 32]))).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = secret_key(&config);
        assert_eq!(c.level, Level::Fail);
        assert_eq!(c.fix.unwrap(), format!("chmod 600 {}", key.display()));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(secret_key(&config).level, Level::Ok);
    }
}
