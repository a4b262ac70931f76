//! Shared support for Bridle's integration tests and load benchmark.
//!
//! * [`Server`]: a real `bridle serve` child process on a free loopback port, with a fresh data
//!   dir and an API key made by `bridle keys create`; killed on drop; its log is printed when a
//!   test fails.
//! * [`Postgres`]: a real PostgreSQL 15 cluster started from the machine's binaries in a temp
//!   directory (as the `postgres` OS user when we are root), one database per test, stopped on
//!   drop. Missing binaries are a hard failure that says what to install; nothing is skipped.
//! * [`python_venv`] / [`node_modules`]: the official SDKs, installed once into `tests/.venv`
//!   and `tests/ts/node_modules` from pinned manifests, rebuilt when a manifest changes, and
//!   guarded by a file lock so parallel test binaries never install concurrently.
//!
//! * [`sessions`]: servers that run sessions (runtimes, sandbox dirs, uid ranges, the fake
//!   model).
//!
//! Included by each test target with `#[path = "../tests/support/mod.rs"] mod support;`-style
//! paths (or `mod support;` from a file beside this directory).
#![allow(dead_code)]

pub mod sandbox_dir;
pub mod sessions;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The `bridle` binary cargo built for this test or bench target.
pub fn bridle_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bridle"))
}

/// The repository's top-level `tests/` directory.
pub fn tests_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests");
    dir.canonicalize().unwrap_or_else(|e| panic!("cannot resolve tests dir {}: {e}", dir.display()))
}

/// A free TCP port on 127.0.0.1 (bind to port 0, read it back, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Environment variables that must not leak from the developer's shell into the server or
/// the SDK clients (they would change which server, key or database is used).
pub const SCRUBBED_ENV: &[&str] = &[
    "BRIDLE_LISTEN",
    "BRIDLE_DATA_DIR",
    "BRIDLE_DATABASE_URL",
    "BRIDLE_CONFIG",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_BETA",
];

/// Remove [`SCRUBBED_ENV`] and every other `BRIDLE_*` variable of the test process (the
/// server reads all `BRIDLE_*` variables as configuration) from a command's environment.
pub fn scrub(cmd: &mut Command) -> &mut Command {
    for k in SCRUBBED_ENV {
        cmd.env_remove(k);
    }
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BRIDLE_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn output_text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run a command to completion; panic with its full output if it fails.
pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!("{what} failed: {cmd:?}\n{}", output_text(&out));
    }
    out
}

/// Install Debian `packages` with apt-get (we run as root), refreshing the package lists once
/// if the first try fails: tools the tests need are installed, never skipped.
pub fn apt_install(packages: &[&str]) {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let list = packages.join(" ");
        assert!(install(), "{list} missing and `apt-get install -y {list}` failed");
    }
}

/// Is this process running as root? (The owner of a file we create is our effective uid.)
fn running_as_root() -> bool {
    let probe = tempfile::NamedTempFile::new().expect("create temp file");
    probe.as_file().metadata().expect("stat temp file").uid() == 0
}

/// A tiny watchdog: once `parent` (this test process) is gone, run `on_orphan` (a shell
/// snippet). It guards against leaking servers when a test binary is killed outright; on a
/// normal drop the watchdog is killed first and never fires.
fn spawn_watchdog(on_orphan: &str) -> Option<Child> {
    let script = format!("while kill -0 {} 2>/dev/null; do sleep 1; done; {on_orphan}", std::process::id());
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn stop_watchdog(w: &mut Option<Child>) {
    if let Some(mut c) = w.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// Where the PostgreSQL 15 server binaries live (override with `BRIDLE_TEST_PG_BIN`).
pub fn pg_bin_dir() -> PathBuf {
    std::env::var_os("BRIDLE_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

const PG_INSTALL_HINT: &str = "PostgreSQL 15 server binaries are required by the PostgreSQL-backed tests \
     (they are never skipped). Install them with:\n    apt-get update && apt-get install -y postgresql-15\n\
     (Debian package `postgresql-15`; it provides /usr/lib/postgresql/15/bin/{initdb,pg_ctl,postgres,createdb} \
     and the `postgres` OS user). Or point BRIDLE_TEST_PG_BIN at another PostgreSQL 15 bin directory.";

/// A throwaway PostgreSQL cluster: `initdb` in a temp dir, trust auth, listening on a free
/// loopback port with its unix socket inside the temp dir. Stopped (immediate) on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
    watchdog: Option<Child>,
    next_db: AtomicU32,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = pg_bin_dir();
        for tool in ["initdb", "pg_ctl", "postgres", "createdb"] {
            if !bin.join(tool).is_file() {
                panic!("missing {}/{tool}.\n{PG_INSTALL_HINT}", bin.display());
            }
        }
        let as_postgres_user = running_as_root();
        let dir = tempfile::Builder::new().prefix("bridle-pg-").tempdir().expect("create postgres temp dir");
        if as_postgres_user {
            // PostgreSQL refuses to run as root: hand the directory to the `postgres` user.
            let out = Command::new("id").args(["-u", "postgres"]).output().expect("run id -u postgres");
            if !out.status.success() {
                panic!("we run as root but there is no `postgres` OS user.\n{PG_INSTALL_HINT}");
            }
            let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            let gid: u32 = {
                let out = run_ok(Command::new("id").args(["-g", "postgres"]), "id -g postgres");
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
            };
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown postgres temp dir");
            if Command::new("runuser").arg("--help").output().is_err() {
                panic!("`runuser` (util-linux) is needed to start PostgreSQL as the postgres user");
            }
        }
        let mut pg = Postgres { dir, bin, port: 0, as_postgres_user, watchdog: None, next_db: AtomicU32::new(0) };
        let data = pg.data_dir();
        run_ok(
            &mut pg.as_pg(
                "initdb",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
            ),
            "initdb",
        );
        // A free port can be taken between our probe and postgres' bind: retry a few times.
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                pg.dir.path().display()
            );
            let log = pg.dir.path().join("postgres.log");
            let out = pg
                .as_pg(
                    "pg_ctl",
                    &[
                        "-D",
                        data.to_str().unwrap(),
                        "-l",
                        log.to_str().unwrap(),
                        "-o",
                        &opts,
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ],
                )
                .output()
                .expect("run pg_ctl start");
            if out.status.success() {
                pg.port = port;
                let stop = pg.stop_command_line();
                pg.watchdog = spawn_watchdog(&stop);
                return pg;
            }
            last_err = format!(
                "{}\n--- postgres.log ---\n{}",
                output_text(&out),
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("PostgreSQL failed to start:\n{last_err}");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command running PostgreSQL tool `tool`, as the postgres user when we are root.
    fn as_pg(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args).current_dir(self.dir.path());
        cmd.stdin(Stdio::null());
        cmd
    }

    fn stop_command_line(&self) -> String {
        let pg_ctl = self.bin.join("pg_ctl");
        let base = format!("{} -D {} -m immediate -w stop", pg_ctl.display(), self.data_dir().display());
        if self.as_postgres_user { format!("runuser -u postgres -- {base}") } else { base }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Create a fresh database and return its URL (`postgres://postgres@127.0.0.1:PORT/NAME`).
    pub fn create_database(&self, hint: &str) -> String {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst);
        let clean: String =
            hint.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        let name = format!("bridle_{clean}_{n}");
        let port = self.port.to_string();
        run_ok(
            Command::new(self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", &name])
                .stdin(Stdio::null()),
            "createdb",
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop_watchdog(&mut self.watchdog);
        if std::thread::panicking() {
            eprintln!("--- postgres.log (tail) ---\n{}", tail(&self.log(), 60));
        }
        let data = self.data_dir();
        let _ = self
            .as_pg("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------------------------
// bridle serve
// ---------------------------------------------------------------------------------------------

/// Which storage backend a server uses.
pub enum Backend<'a> {
    /// Embedded SQLite in the data dir (the default).
    Sqlite,
    /// PostgreSQL: a fresh database in this cluster.
    Postgres(&'a Postgres),
}

impl Backend<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// How long a server may take to answer `/healthz` (debug builds compile the harness plugins
/// at startup, and several test binaries start servers at once on two cores).
pub const STARTUP_TIMEOUT_SECS: u64 = 240;

/// A running `bridle serve`.
pub struct Server {
    child: Option<Child>,
    watchdog: Option<Child>,
    /// Claimed on the first start with a sandbox dir and kept across restarts, like a real
    /// node's configured range.
    uid_range: Option<sessions::UidRange>,
    data_dir: tempfile::TempDir,
    log_path: PathBuf,
    extra_args: Vec<String>,
    envs: Vec<(String, String)>,
    /// `RLIMIT_NOFILE` (soft, hard) the server process starts with; `None`: this process's.
    nofile: Option<(u64, u64)>,
    pub addr: String,
    pub base_url: String,
    pub api_key: String,
    pub database_url: Option<String>,
}

impl Server {
    /// Start a server on `backend` with no extra flags.
    pub fn start(backend: Backend<'_>) -> Server {
        Server::start_with(backend, &[])
    }

    /// Start a server on `backend`, with `extra_args` appended to `bridle serve`.
    pub fn start_with(backend: Backend<'_>, extra_args: &[&str]) -> Server {
        Server::start_opts(backend, extra_args, &[])
    }

    /// Start a server on `backend`, with `extra_args` appended to `bridle serve` and `envs`
    /// set in its environment (e.g. `BRIDLE_SSE_HEARTBEAT_SECS`).
    pub fn start_opts(backend: Backend<'_>, extra_args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::start_full(backend, extra_args, envs, None)
    }

    /// [`Server::start_opts`] with the server's open-file limit set to `(soft, hard)` before it
    /// runs: a hard limit this test process could not raise back once lowered.
    pub fn start_with_nofile(backend: Backend<'_>, envs: &[(&str, &str)], nofile: (u64, u64)) -> Server {
        Server::start_full(backend, &[], envs, Some(nofile))
    }

    fn start_full(
        backend: Backend<'_>,
        extra_args: &[&str],
        envs: &[(&str, &str)],
        nofile: Option<(u64, u64)>,
    ) -> Server {
        let data_dir = tempfile::Builder::new().prefix("bridle-test-").tempdir().expect("create data dir");
        let database_url = match &backend {
            Backend::Sqlite => None,
            Backend::Postgres(pg) => Some(pg.create_database("test")),
        };
        let mut server = Server {
            child: None,
            watchdog: None,
            uid_range: None,
            log_path: data_dir.path().join("server.log"),
            data_dir,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            envs: envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            nofile,
            addr: String::new(),
            base_url: String::new(),
            api_key: String::new(),
            database_url,
        };
        // 1. An API key, made by the CLI before the server starts.
        server.api_key = server.create_key("integration-tests");
        // 2. The server.
        server.spawn();
        server
    }

    /// Another node on the same PostgreSQL database: its own data dir (with a copy of this
    /// node's secret key file, so both can read vault secrets) and port, the same API key.
    pub fn start_second_node(&self) -> Server {
        assert!(self.database_url.is_some(), "a second node needs a shared (PostgreSQL) database");
        let data_dir = tempfile::Builder::new().prefix("bridle-node2-").tempdir().expect("create data dir");
        for entry in fs::read_dir(self.data_dir.path()).unwrap().flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().contains("key") && entry.path().is_file() {
                fs::copy(entry.path(), data_dir.path().join(&name)).expect("copy secret key");
            }
        }
        let mut node = Server {
            child: None,
            watchdog: None,
            uid_range: None,
            log_path: data_dir.path().join("server.log"),
            data_dir,
            extra_args: self.extra_args.clone(),
            envs: self.envs.clone(),
            nofile: self.nofile,
            addr: String::new(),
            base_url: String::new(),
            api_key: self.api_key.clone(),
            database_url: self.database_url.clone(),
        };
        node.spawn();
        node
    }

    /// `bridle keys create --name NAME` against this server's storage; returns the raw key.
    pub fn create_key(&self, name: &str) -> String {
        let mut keys = self.cli_command(&["keys", "create", "--name", name]);
        let out = run_ok(&mut keys, "bridle keys create");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "`bridle keys create` must print exactly one line (the raw key), got:\n{}",
            output_text(&out)
        );
        lines[0].trim().to_string()
    }

    /// Stop the server (kill) and start it again on the same data dir and database, on a new
    /// port (`base_url` changes).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stop the server gracefully (SIGTERM) and wait for it to exit (the data dir stays).
    pub fn terminate(&mut self) {
        stop_watchdog(&mut self.watchdog);
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the server again after [`Server::stop`] or [`Server::terminate`], on the same data
    /// dir and database (on a new port: `base_url` changes).
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Kill the server process (the data dir stays).
    pub fn stop(&mut self) {
        stop_watchdog(&mut self.watchdog);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn spawn(&mut self) {
        // A free port can be taken between our probe and the server's bind: retry.
        let mut last_failure = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let log = OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open server log");
            let mut cmd = self.cli_command(&["serve", "--listen", &addr]);
            cmd.env("RUST_BACKTRACE", "1");
            // Test servers never install anything on their own, and run
            // sessions only when the test gives them a sandbox dir; each such
            // server gets its own sandbox uid range so servers running at
            // once never share a uid.
            cmd.env("BRIDLE_AUTO_INSTALL", "false");
            if self.envs.iter().any(|(k, _)| k == "BRIDLE_SESSIONS__SANDBOX_DIR") {
                sessions::ensure_bubblewrap();
                let uids = self.uid_range.get_or_insert_with(sessions::claim_uid_range);
                cmd.env("BRIDLE_SESSIONS__SANDBOX_UID_BASE", uids.base.to_string())
                    .env("BRIDLE_SESSIONS__MAX_SANDBOXES", sessions::UID_RANGE_LEN.to_string());
            } else {
                cmd.env("BRIDLE_SESSIONS__ENABLED", "false");
            }
            cmd.envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .args(&self.extra_args);
            if let Some((soft, hard)) = self.nofile {
                use std::os::unix::process::CommandExt;
                let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
                // SAFETY: between fork and exec the hook only calls setrlimit (async-signal-safe)
                // on a value it owns.
                unsafe {
                    cmd.pre_exec(move || {
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                            Ok(())
                        } else {
                            Err(std::io::Error::last_os_error())
                        }
                    });
                }
            }
            let mut child = cmd.spawn().expect("spawn bridle serve");
            let deadline = Instant::now() + Duration::from_secs(STARTUP_TIMEOUT_SECS);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    last_failure =
                        format!("bridle serve exited early with {status}\n--- server log ---\n{}", self.log());
                    break;
                }
                if let Ok((200, _)) = http_get(&addr, "/healthz", &[]) {
                    self.watchdog = spawn_watchdog(&format!("kill -9 {}", child.id()));
                    self.child = Some(child);
                    self.base_url = format!("http://{addr}");
                    self.addr = addr;
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "bridle serve did not answer GET /healthz with 200 within {STARTUP_TIMEOUT_SECS}s\n--- server log ---\n{}",
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("bridle serve failed to start:\n{last_failure}");
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The `bridle serve` process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the server wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A `bridle` command with this server's data dir / database and a scrubbed environment.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bridle_bin());
        scrub(&mut cmd);
        cmd.args(args)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .current_dir(self.data_dir.path())
            .stdin(Stdio::null());
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        cmd
    }

    /// Run a `bridle` CLI subcommand against this server's data dir / database.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run bridle cli")
    }

    /// Is the server process still alive?
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    /// Panic (with the log) if the server died, e.g. after a test that might crash it.
    pub fn assert_alive(&mut self) {
        if !self.is_running() {
            panic!("bridle serve is no longer running\n--- server log ---\n{}", self.log());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_watchdog(&mut self.watchdog);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- bridle serve log ({}) ---\n{}", self.base_url, tail(&self.log(), 200));
        }
    }
}

pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// A minimal blocking HTTP/1.1 GET over loopback (no client library needed); returns
/// (status, body). Used for readiness checks.
pub fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("").to_string();
    Ok((status, body))
}

// ---------------------------------------------------------------------------------------------
// REST client
// ---------------------------------------------------------------------------------------------

/// The `anthropic-beta` value the SDKs send with Managed Agents requests.
pub const BETA: &str = "managed-agents-2026-04-01";

/// A REST client for one server: its base URL and API key, and an HTTP client whose timeout
/// bounds a hang. Each test target adds the calls it needs in its own `impl Api` block.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(server: &Server) -> Api {
        Api::with_key(server, &server.api_key)
    }

    /// A client for `server` that authenticates with `key`.
    pub fn with_key(server: &Server, key: &str) -> Api {
        Api {
            base: server.base_url.clone(),
            key: key.to_owned(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client"),
        }
    }

    /// `method path` with the API key and the beta header.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .header("anthropic-beta", BETA)
    }
}

// ---------------------------------------------------------------------------------------------
// SDK toolchains (Python venv, node_modules)
// ---------------------------------------------------------------------------------------------

/// Hold an exclusive lock on `path` for the guard's lifetime (across processes).
fn lock_file(path: &Path) -> File {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open lock file {}: {e}", path.display()));
    f.lock().unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    f
}

fn python3() -> String {
    std::env::var("BRIDLE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `tests/.venv` with the pinned packages of `tests/python/requirements.txt` (official
/// `anthropic` SDK, pytest, httpx). Built if absent or stale, reused otherwise. Returns the
/// venv's python interpreter.
pub fn python_venv() -> PathBuf {
    let tests = tests_dir();
    let _lock = lock_file(&tests.join(".venv.lock"));
    let venv = tests.join(".venv");
    let requirements = tests.join("python/requirements.txt");
    let reqs = fs::read_to_string(&requirements).unwrap_or_else(|e| panic!("read {}: {e}", requirements.display()));
    let py_version = Command::new(python3()).arg("--version").output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{}` ({e}); the Python SDK tests need CPython 3 with venv and pip \
                 (apt-get install -y python3 python3-venv python3-pip)",
            python3()
        )
    });
    let stamp_want = format!("{}\n{}", String::from_utf8_lossy(&py_version.stdout).trim(), reqs);
    let stamp = venv.join(".bridle-stamp");
    let python = venv.join("bin/python");
    if python.is_file() && fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_want.as_str()) {
        return python;
    }
    eprintln!("setting up {} from {}", venv.display(), requirements.display());
    if venv.exists() {
        fs::remove_dir_all(&venv).expect("remove stale venv");
    }
    run_ok(
        Command::new(python3()).args(["-m", "venv"]).arg(&venv),
        "python3 -m venv (install python3-venv if this fails)",
    );
    run_ok(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", "-r"])
            .arg(&requirements),
        "pip install -r tests/python/requirements.txt",
    );
    fs::write(&stamp, stamp_want).expect("write venv stamp");
    python
}

/// `tests/ts/node_modules` installed with `npm ci` from the pinned `package-lock.json`.
/// Returns the `tests/ts` directory.
pub fn node_modules() -> PathBuf {
    let tests = tests_dir();
    let ts = tests.join("ts");
    let _lock = lock_file(&tests.join(".node_modules.lock"));
    let manifest = fs::read_to_string(ts.join("package.json")).expect("read tests/ts/package.json");
    let lockfile = fs::read_to_string(ts.join("package-lock.json")).expect("read tests/ts/package-lock.json");
    let node_version = Command::new("node").arg("--version").output().unwrap_or_else(|e| {
        panic!("cannot run `node` ({e}); the TypeScript SDK smoke test needs Node.js >= 18 and npm (apt-get install -y nodejs npm)")
    });
    let stamp_want = format!("{}\n{manifest}\n{lockfile}", String::from_utf8_lossy(&node_version.stdout).trim());
    let stamp = ts.join("node_modules/.bridle-stamp");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_want.as_str()) {
        return ts;
    }
    eprintln!("installing {}/node_modules with npm ci", ts.display());
    run_ok(
        Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&ts),
        "npm ci in tests/ts",
    );
    fs::write(&stamp, stamp_want).expect("write node_modules stamp");
    ts
}

/// Run a prepared command, print everything it wrote, and panic unless it succeeded.
pub fn run_and_report(cmd: &mut Command, what: &str) {
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    println!(
        "--- {what} ({:.1}s) ---\n{}{}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed ({}); its output is above", out.status);
}

// ---------------------------------------------------------------------------------------------
// plugins built as a plugin author builds them
// ---------------------------------------------------------------------------------------------

/// The template plugin (`examples/harness-template`: an echo harness whose runtime is `cat`),
/// built with `cargo build --target wasm32-wasip2` as a plugin author would.
pub fn template_plugin() -> PathBuf {
    build_wasm("examples/harness-template", &[], "harness_template")
}

/// Build a plugin crate in `dir` (relative to the repo root) for `wasm32-wasip2` into
/// `target/template-wasm`; returns the component's path.
pub fn build_wasm(dir: &str, args: &[&str], crate_name: &str) -> PathBuf {
    let root = tests_dir().parent().expect("repo root").to_path_buf();
    let target = root.join("target/template-wasm");
    let mut cmd = Command::new("cargo");
    scrub(&mut cmd);
    cmd.current_dir(root.join(dir))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(args)
        .arg("--target-dir")
        .arg(&target);
    run_ok(&mut cmd, &format!("cargo build of {crate_name}"));
    let wasm = target.join(format!("wasm32-wasip2/release/{crate_name}.wasm"));
    assert!(wasm.is_file(), "the build produced no {}", wasm.display());
    wasm
}
