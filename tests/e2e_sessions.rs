//! Sessions end to end: the official `anthropic` Python SDK drives a real `bridle serve`, which
//! runs real Claude Code / real `codex app-server` in real bubblewrap sandboxes, their model
//! traffic going through Bridle's egress gateway to the project's scripted fake model server
//! (`bridle-fake-model`, in process here). The pytest suite is `tests/python/e2e/`.
//!
//! Per harness (one `#[test]` each, run in parallel): a text turn, a bash tool turn, the retry
//! sequence on 529/500/429 and its exhaustion, an interrupt, tool confirmation allow/deny, a
//! resume after the runtime was stopped for idleness, the credential checks, files (an
//! uploaded file mounted as a session resource, read by a tool, outputs downloaded), and event
//! deltas (`event_start` / `event_delta` to stream clients that ask, `test_deltas.py`). Once: a
//! session without any model credential, and a server whose runtimes are missing. The
//! openai-agents suite also runs with `sessions.sandbox_driver = "gvisor"`
//! (`e2e_openai_agents_gvisor`), and so do Claude Code's (`e2e_claude_gvisor`: with it the
//! tests openai-agents skips or takes another branch in) and codex's (`e2e_codex_gvisor`); they
//! need runsc 20240729 or newer (`ensure_runsc` installs it from the distribution's backports).
//! Two suites keep a warm sandbox pool on their main server (`e2e_codex` on bubblewrap,
//! `e2e_openai_agents_gvisor`) and check that sessions were served from it.
//!
//! Needs root (the sandbox switches uids), bubblewrap, node/npm and python3 (the runtimes are
//! installed on first use into `<workspace>/target/bridle-runtimes`, or `$BRIDLE_RUNTIMES_DIR`,
//! the same directory the fake model's own runtime tests use).
//!
//! Run: `cargo test -p bridle --test e2e_sessions -- --nocapture`
//! Narrow the pytest selection with `BRIDLE_E2E_PYTEST_ARGS="-k interrupt"` (shell words:
//! `-k 'files or repos'`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::sessions::{fake_model, install_runtimes, sandbox_dir, session_server};
use support::{Backend, Server};

/// A server running sessions from `sandboxes` (the support code gives it its own uid range and
/// never lets it install runtimes: they are installed, or for the missing-runtime server
/// absent, on purpose).
fn server(runtimes: &Path, sandboxes: &Path, idle_secs: &str) -> Server {
    server_with(runtimes, sandboxes, idle_secs, &[])
}

/// A session server that may reach `internal` addresses (`host:port`, for the tests' own
/// servers on loopback) and the package registries through `egress.allow_internal`.
fn server_with(runtimes: &Path, sandboxes: &Path, idle_secs: &str, internal: &[String]) -> Server {
    server_on(runtimes, sandboxes, idle_secs, internal, Driver::Bubblewrap)
}

/// The sandbox driver a suite runs on (`sessions.sandbox_driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Bubblewrap,
    Gvisor,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Bubblewrap => "bubblewrap",
            Driver::Gvisor => "gvisor",
        }
    }
}

/// [`server_with`] on `driver`, without a warm pool.
fn server_on(runtimes: &Path, sandboxes: &Path, idle_secs: &str, internal: &[String], driver: Driver) -> Server {
    server_pooled(runtimes, sandboxes, idle_secs, internal, driver, 0)
}

/// [`server_on`] keeping `pool` sandboxes warm (`sessions.sandbox_pool_size`).
fn server_pooled(
    runtimes: &Path,
    sandboxes: &Path,
    idle_secs: &str,
    internal: &[String],
    driver: Driver,
    pool: u32,
) -> Server {
    if driver == Driver::Gvisor {
        support::sessions::ensure_runsc();
    }
    // Package layer builds reach the registries the host's pip and npm are configured for; a
    // machine that resolves them to non-global addresses (a test network) must allow them.
    let mut allow = bridle::packages::registries::discover(&[], &Default::default()).hosts;
    allow.extend(internal.iter().cloned());
    let allow_internal = format!("[{}]", allow.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(","));
    session_server(
        Backend::Sqlite,
        runtimes,
        sandboxes,
        &[
            ("BRIDLE_EGRESS__ALLOW_INTERNAL", &allow_internal),
            ("BRIDLE_SESSIONS__RUNTIME_IDLE_SECS", idle_secs),
            ("BRIDLE_SESSIONS__INTERRUPT_GRACE_SECS", "10"),
            ("BRIDLE_LOG", "info,bridle=debug"),
            // test_sessions.py's budget test: one cent is 100 tokens of this model.
            ("BRIDLE_PRICING__E2E-BUDGET__INPUT", "100"),
            ("BRIDLE_PRICING__E2E-BUDGET__OUTPUT", "100"),
            ("BRIDLE_SESSIONS__SANDBOX_DRIVER", driver.name()),
            ("BRIDLE_SESSIONS__SANDBOX_POOL_SIZE", &pool.to_string()),
            // test_threads.py's limit test: a session's third delegation is refused.
            ("BRIDLE_SESSIONS__THREADS_PER_SESSION", "2"),
        ],
    )
}

fn log_path(s: &Server) -> String {
    s.data_dir().join("server.log").to_string_lossy().into_owned()
}

/// The environment every single-server suite's pytest gets (the harness, the fake model and its
/// token, the server, its log and sandbox dir), then the suite's own `more`.
fn suite_env(
    (engine, fake, token, main, sandboxes): (&str, &bridle_fake_model::FakeModel, &str, &Server, &Path),
    more: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("BRIDLE_E2E_ENGINE", engine.to_owned()),
        ("BRIDLE_E2E_FAKE_URL", fake.base_url()),
        ("BRIDLE_E2E_FAKE_TOKEN", token.to_owned()),
        ("BRIDLE_BASE_URL", main.base_url.clone()),
        ("BRIDLE_API_KEY", main.api_key.clone()),
        ("BRIDLE_E2E_SERVER_LOG", log_path(main)),
        ("BRIDLE_E2E_SANDBOX_DIR", sandboxes.to_string_lossy().into_owned()),
    ];
    env.extend_from_slice(more);
    env
}

/// `python -m pytest` on files of `tests/python/e2e`, with `envs`.
fn run_pytest(files: &[&str], envs: &[(&str, String)], label: &str) {
    let python = support::python_venv();
    let suite = support::tests_dir().join("python/e2e");
    let mut cmd = Command::new(python);
    support::scrub(&mut cmd);
    cmd.args(["-m", "pytest"])
        .args(files.iter().map(|f| suite.join(f)))
        .args(["-v", "-rfE", "-p", "no:cacheprovider", "--timeout=180", "--color=no", "--durations=5"])
        .current_dir(&suite)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // test_packages.py appends its layer build / reuse times here (the README's benchmark).
    if let Ok(bench) = std::env::var("BRIDLE_E2E_BENCH_FILE") {
        cmd.env("BRIDLE_E2E_BENCH_FILE", bench);
    }
    if let Ok(extra) = std::env::var("BRIDLE_E2E_PYTEST_ARGS") {
        // Shell words, so `-k 'files or repos'` is one expression.
        cmd.args(shlex::split(&extra).unwrap_or_else(|| panic!("BRIDLE_E2E_PYTEST_ARGS is not shell words: {extra}")));
    }
    support::run_and_report(&mut cmd, label);
}

/// The whole per-harness suite against a fresh fake model and two servers: one with the
/// default runtime idle time, one that stops runtimes after 2 s idle.
fn harness_suite(engine: &str) {
    harness_suite_on(engine, Driver::Bubblewrap, ALL_FILES, 0)
}

/// The per-harness pytest files.
const ALL_FILES: &[&str] = &[
    "test_sessions.py",
    "test_runtime_failures.py",
    "test_files.py",
    "test_repos.py",
    "test_deltas.py",
    "test_skills.py",
    "test_mcp.py",
    "test_packages.py",
    "test_outcomes.py",
    "test_threads.py",
];

/// [`harness_suite`] on `driver`, running `files` (or pytest node ids), the main server
/// keeping `pool` sandboxes warm: with a pool, the suite also checks that claims were served
/// from it.
fn harness_suite_on(engine: &str, driver: Driver, files: &[&str], pool: u32) {
    let started = Instant::now();
    let runtimes = install_runtimes();
    let (fake, token) = fake_model("e2e");
    let main_sb = sandbox_dir();
    let idle_sb = sandbox_dir();
    let (port, mcp_port, down_port) = (support::free_port(), support::free_port(), support::free_port());
    // test_repos.py's git server, test_mcp.py's MCP server and a port nobody listens on: the
    // main server lets sandboxes (and its host-side clones) reach exactly those addresses.
    let internal = [port, mcp_port, down_port].map(|p| format!("127.0.0.1:{p}"));
    let mut main = server_pooled(&runtimes, main_sb.path(), "600", &internal, driver, pool);
    let mut idle = server_on(&runtimes, idle_sb.path(), "2", &[], driver);
    run_pytest(
        files,
        &[
            ("BRIDLE_E2E_MCP_PORT", mcp_port.to_string()),
            ("BRIDLE_E2E_MCP_DOWN_PORT", down_port.to_string()),
            ("BRIDLE_E2E_ENGINE", engine.to_owned()),
            ("BRIDLE_E2E_SANDBOX_DRIVER", driver.name().to_owned()),
            ("BRIDLE_E2E_GIT_PORT", port.to_string()),
            ("BRIDLE_E2E_SERVER_PID", main.pid().expect("the main server runs").to_string()),
            ("BRIDLE_E2E_FAKE_URL", fake.base_url()),
            ("BRIDLE_E2E_FAKE_TOKEN", token.clone()),
            ("BRIDLE_BASE_URL", main.base_url.clone()),
            ("BRIDLE_API_KEY", main.api_key.clone()),
            ("BRIDLE_E2E_SERVER_LOG", log_path(&main)),
            ("BRIDLE_E2E_SANDBOX_DIR", main_sb.path().to_string_lossy().into_owned()),
            ("BRIDLE_E2E_IDLE_URL", idle.base_url.clone()),
            ("BRIDLE_E2E_IDLE_KEY", idle.api_key.clone()),
            ("BRIDLE_E2E_IDLE_LOG", log_path(&idle)),
            ("BRIDLE_E2E_IDLE_SANDBOX_DIR", idle_sb.path().to_string_lossy().into_owned()),
        ],
        &format!("pytest tests/python/e2e {} ({engine}, {}, pool {pool})", files.join(" "), driver.name()),
    );
    main.assert_alive();
    idle.assert_alive();
    if pool > 0 {
        // Sessions really ran in sandboxes taken from the warm pool (not only cold starts).
        let pooled = pooled_claims(&main);
        assert!(pooled > 0.0, "no claim of the {engine} suite on {} came from the warm pool", driver.name());
        println!("{engine} on {}: {pooled} claims from the warm pool", driver.name());
    }
    // The server logs never carry the vault token either.
    for (name, s) in [("main", &main), ("idle", &idle)] {
        assert!(!s.log().contains(&token), "the vault token appears in the {name} server's log");
    }
    println!("{engine} end-to-end suite on {}: {:.1}s", driver.name(), started.elapsed().as_secs_f64());
}

/// Claims served from the warm pool so far: the sum of the server's
/// `bridle_sandbox_claims_total{outcome="pooled"}` series (one per driver).
fn pooled_claims(s: &Server) -> f64 {
    let (status, body) = support::http_get(&s.addr, "/metrics", &[]).expect("scraping /metrics");
    assert_eq!(status, 200, "/metrics answered {status}: {body}");
    pooled_in(&body)
}

/// [`pooled_claims`] of a Prometheus text exposition.
fn pooled_in(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("bridle_sandbox_claims_total{") && l.contains(r#"outcome="pooled""#))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn pooled_claims_are_read_from_the_exposition() {
    let text = "# TYPE bridle_sandbox_claims_total counter\n\
                bridle_sandbox_claims_total{driver=\"gvisor\",outcome=\"pooled\"} 3\n\
                bridle_sandbox_claims_total{driver=\"gvisor\",outcome=\"started\"} 5\n\
                bridle_sandbox_claims_total{driver=\"bubblewrap\",outcome=\"pooled\"} 2\n\
                bridle_sandbox_claim_duration_seconds_count{driver=\"gvisor\",outcome=\"pooled\"} 3\n";
    assert_eq!(pooled_in(text), 5.0);
    assert_eq!(pooled_in("bridle_sandbox_claims_total{driver=\"gvisor\",outcome=\"started\"} 5\n"), 0.0);
}

#[test]
fn e2e_claude() {
    harness_suite("claude");
}

/// codex with two sandboxes kept warm: its runtimes run in sandboxes claimed from the pool.
#[test]
fn e2e_codex() {
    harness_suite_on("codex", Driver::Bubblewrap, ALL_FILES, 2);
}

/// Sandbox as tool: the resident openai-agents runtime outside the sandbox,
/// the sandbox claimed on its first tool call.
#[test]
fn e2e_openai_agents() {
    harness_suite("openai-agents");
}

/// The openai-agents suite with every tool call in a gVisor sandbox
/// (`sessions.sandbox_driver = "gvisor"`), two of them kept warm.
#[test]
fn e2e_openai_agents_gvisor() {
    harness_suite_on("openai-agents", Driver::Gvisor, ALL_FILES, 2);
}

/// Claude Code itself in gVisor sandboxes: the whole suite, including what openai-agents
/// (sandbox as tool) skips or takes another branch in there (delegated threads, the runtime
/// dying in its sandbox, the fork bomb ending the runtime's own sandbox).
#[test]
fn e2e_claude_gvisor() {
    harness_suite_on("claude", Driver::Gvisor, ALL_FILES, 0);
}

/// codex app-server itself running in gVisor sandboxes. On Debian 12's own runsc (20221219,
/// `ptrace`) some codex turns stalled with an exited tool process codex never reaped; on
/// 20240729 (what `ensure_runsc` installs) the suite passes, on `ptrace` and on `systrap`.
#[test]
fn e2e_codex_gvisor() {
    harness_suite_on("codex", Driver::Gvisor, ALL_FILES, 0);
}
/// cargo, go and gem packages (`test_packages_toolchains.py`), one harness: their layer builds
/// do not depend on it, and a crate's compile is long for every harness. The suite serves a Go
/// module proxy and a gem source on this host's own address (Go does not use a proxy for
/// loopback addresses, and a build reaches its registries only through the egress gateway),
/// allowed through `egress.allow_internal`. Installs `golang-go` and `ruby` when missing.
#[test]
fn e2e_packages_toolchains() {
    for (tool, package) in [("go", "golang-go"), ("gem", "ruby")] {
        if which(tool).is_none() {
            support::apt_install(&[package]);
        }
    }
    let runtimes = install_runtimes();
    let (fake, token) = fake_model("e2e");
    let sb = sandbox_dir();
    let ip = host_address();
    let (go_addr, gem_addr) = (format!("{ip}:{}", support::free_port()), format!("{ip}:{}", support::free_port()));
    let toolchain = staged_toolchain();
    let toolchain_dir = toolchain.path().join("rust");
    // The registry hosts the server will discover with this toolchain (cargo's among them).
    let packages =
        bridle::config::PackagesConfig { cargo_toolchain: Some(toolchain_dir.clone()), ..Default::default() };
    let mut allow = bridle::packages::registries::discover(&[], &packages).hosts;
    allow.extend([go_addr.clone(), gem_addr.clone()]);
    let allow_internal = format!("[{}]", allow.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(","));
    let (goproxy, gem_source) = (format!("http://{go_addr}"), format!("http://{gem_addr}/"));
    let toolchain_dir = toolchain_dir.to_string_lossy().into_owned();
    let mut main = session_server(
        Backend::Sqlite,
        &runtimes,
        sb.path(),
        &[
            ("BRIDLE_EGRESS__ALLOW_INTERNAL", &allow_internal),
            ("BRIDLE_PACKAGES__CARGO_TOOLCHAIN", &toolchain_dir),
            ("BRIDLE_PACKAGES__GOPROXY", &goproxy),
            ("BRIDLE_PACKAGES__GEM_SOURCE", &gem_source),
            ("BRIDLE_LOG", "info,bridle=debug"),
        ],
    );
    run_pytest(
        &["test_packages_toolchains.py"],
        &suite_env(
            ("claude", &fake, &token, &main, sb.path()),
            &[("BRIDLE_E2E_GOPROXY_ADDR", go_addr), ("BRIDLE_E2E_GEM_ADDR", gem_addr)],
        ),
        "pytest tests/python/e2e/test_packages_toolchains.py",
    );
    main.assert_alive();
}

/// The Rust toolchain this test runs with, where sandbox users can read it: a hard-linked copy
/// (a plain copy across filesystems) in a world-traversable temporary directory, since rustup's
/// usual home under `/root` is not.
fn staged_toolchain() -> tempfile::TempDir {
    let out = Command::new("rustup").args(["which", "cargo"]).output().expect("running rustup which cargo");
    let cargo = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let source = cargo.parent().and_then(Path::parent).expect("a toolchain directory above bin/cargo");
    // rustup's toolchain directories may be links (copied as links, they would lead back).
    let source = source.canonicalize().expect("resolving the toolchain directory");
    let dir = tempfile::Builder::new().prefix("bridle-e2e-toolchain-").tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let target = dir.path().join("rust");
    let copied =
        |flags: &str| Command::new("cp").args([flags, &source.to_string_lossy(), &target.to_string_lossy()]).status();
    if !copied("-al").is_ok_and(|s| s.success()) {
        let _ = std::fs::remove_dir_all(&target);
        assert!(copied("-a").is_ok_and(|s| s.success()), "copying {} failed", source.display());
    }
    dir
}

/// This host's first non-loopback IPv4 address (`hostname -I`).
fn host_address() -> String {
    let out = Command::new("hostname").arg("-I").output().expect("running hostname -I");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()))
        .expect("this host has a non-loopback IPv4 address")
        .to_string()
}

/// Sessions whose runtime cannot start: no model credential at all (no LLM vault, no
/// `default_llm`), and a server whose runtimes directory is empty.
#[test]
fn e2e_start_failures() {
    let runtimes = install_runtimes();
    let (fake, token) = fake_model("e2e");
    let sb = sandbox_dir();
    let empty_runtimes = tempfile::Builder::new().prefix("bridle-e2e-no-runtimes-").tempdir().expect("tempdir");
    let norun_sb = sandbox_dir();
    let mut main = server(&runtimes, sb.path(), "600");
    let mut norun = server(empty_runtimes.path(), norun_sb.path(), "600");
    run_pytest(
        &["test_start_failures.py"],
        &suite_env(
            ("claude", &fake, &token, &main, sb.path()),
            &[
                ("BRIDLE_E2E_NORUNTIME_URL", norun.base_url.clone()),
                ("BRIDLE_E2E_NORUNTIME_KEY", norun.api_key.clone()),
                ("BRIDLE_E2E_NORUNTIME_LOG", log_path(&norun)),
            ],
        ),
        "pytest tests/python/e2e/test_start_failures.py",
    );
    main.assert_alive();
    norun.assert_alive();
}

/// Harness selection through AI gateways: every harness behind gateway-shaped base URLs (the
/// fake model serving under their path prefixes, LLMProxy's bridge form included), and a
/// session without an LLM vault on the operator's `default_llm`, each to a finished turn.
#[test]
fn e2e_gateways() {
    let runtimes = install_runtimes();
    let (fake, token) = fake_model("e2e");
    let sb = sandbox_dir();
    let mut main = session_server(
        Backend::Sqlite,
        &runtimes,
        sb.path(),
        &[
            ("BRIDLE_DEFAULT_LLM__BASE_URL", fake.base_url().as_str()),
            ("BRIDLE_DEFAULT_LLM__API_KEY", token.as_str()),
            ("BRIDLE_LOG", "info,bridle=debug"),
        ],
    );
    run_pytest(
        &["test_gateways.py"],
        &suite_env(("claude", &fake, &token, &main, sb.path()), &[]),
        "pytest tests/python/e2e/test_gateways.py",
    );
    main.assert_alive();
    assert!(!main.log().contains(&token), "the model key appears in the server's log");
}

/// The console (`/console`) in headless Chromium (Debian's, installed here when missing), driven
/// by Playwright against a claude session on the fake model: the page uses the public API only,
/// so one harness shows it.
#[test]
fn e2e_console() {
    if which("chromium").is_none() {
        support::apt_install(&["chromium"]);
    }
    let runtimes = install_runtimes();
    let (fake, token) = fake_model("e2e");
    let sb = sandbox_dir();
    let mut main = server(&runtimes, sb.path(), "600");
    let artifacts = support::tests_dir().join("../target/e2e-artifacts/console");
    run_pytest(
        &["test_console.py"],
        &suite_env(
            ("claude", &fake, &token, &main, sb.path()),
            &[("BRIDLE_E2E_ARTIFACTS", artifacts.to_string_lossy().into_owned())],
        ),
        "pytest tests/python/e2e/test_console.py",
    );
    main.assert_alive();
    println!("console screenshots: {}", artifacts.display());
}

/// The first `name` on PATH.
fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Environment-variable credentials, every harness: a bash tool's `curl` to an HTTPS server on
/// loopback (its certificate from a CA the server trusts through `egress.upstream_ca_files`,
/// the loopback addresses opened by `egress.allow_internal`) gets the secret on the allowed
/// host and the placeholder elsewhere; the secret is nowhere in the sandbox, events or logs.
#[test]
fn e2e_env_credentials() {
    use bridle_sandbox::egress::tls::{Minter, generate_ca};
    let runtimes = install_runtimes();
    let (fake, token) = fake_model("e2e");
    let sb = sandbox_dir();
    let certs = tempfile::Builder::new().prefix("bridle-e2e-tls-").tempdir().expect("tempdir");
    let ca = generate_ca("e2e upstream CA").expect("generate a CA");
    let (leaf, key) = Minter::new(&ca).and_then(|m| m.issue_pem("127.0.0.2")).expect("issue a leaf");
    let (ca_file, cert_file, key_file) =
        (certs.path().join("ca.pem"), certs.path().join("leaf.pem"), certs.path().join("leaf.key"));
    std::fs::write(&ca_file, &ca.cert_pem).expect("write CA");
    std::fs::write(&cert_file, leaf).expect("write leaf");
    std::fs::write(&key_file, key).expect("write key");
    let port = support::free_port();
    let allow = format!("[\"127.0.0.2:{port}\", \"127.0.0.3:{port}\"]");
    let roots = format!("[{:?}]", ca_file.display().to_string());
    let mut main = session_server(
        Backend::Sqlite,
        &runtimes,
        sb.path(),
        &[
            ("BRIDLE_LOG", "info,bridle=debug"),
            ("BRIDLE_EGRESS__ALLOW_INTERNAL", allow.as_str()),
            ("BRIDLE_EGRESS__UPSTREAM_CA_FILES", roots.as_str()),
        ],
    );
    run_pytest(
        &["test_env_credentials.py"],
        &suite_env(
            ("claude", &fake, &token, &main, sb.path()),
            &[
                ("BRIDLE_E2E_TLS_CERT", cert_file.to_string_lossy().into_owned()),
                ("BRIDLE_E2E_TLS_KEY", key_file.to_string_lossy().into_owned()),
                ("BRIDLE_E2E_TLS_PORT", port.to_string()),
            ],
        ),
        "pytest tests/python/e2e/test_env_credentials.py",
    );
    main.assert_alive();
    assert!(!main.log().contains(&token), "the model key appears in the server's log");
}
