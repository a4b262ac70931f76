//! The CLI for people and the examples, against real servers.
//!
//! * `bridle sessions list` pages through a server's sessions.
//! * `bridle sessions tail --until-idle` follows a real session (real Claude Code in a real
//!   sandbox, the scripted fake model with one injected 529) while it runs, and renders the
//!   same lines again for the recorded session afterwards.
//! * `bridle doctor` fails, with the fix, on a machine missing its runtimes or with an
//!   unmigrated database, and passes on a healthy config.
//! * `examples/curl/walkthrough.sh`, `examples/python/quickstart.py` and
//!   `examples/typescript/quickstart.ts` (type-checked with tsc, then run with node) complete a
//!   session against the fake model.
//!
//! Needs root (sandbox uids), bubblewrap, node/npm, python3, curl and jq; runtimes are
//! installed on first use into `<workspace>/target/bridle-runtimes` (or `$BRIDLE_RUNTIMES_DIR`).
//!
//! Run: `cargo test -p bridle --test cli -- --nocapture`

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bridle::runtimes::Runtime;
use bridle_fake_model::{Failure, FakeModel, Reply, Scenario, ToolCall};
use serde_json::{Value, json};
use support::sessions::{fake_model, install_runtimes, sandbox_dir, session_server};
use support::{Backend, Server};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// The installed runtimes, the fake model, and a server that runs sessions with them.
/// (Fields drop in order: the server goes first.)
struct Live {
    server: Server,
    _sandboxes: support::sessions::SandboxDir,
    fake: FakeModel,
    token: String,
}

fn live_server() -> Live {
    let runtimes = install_runtimes();
    let (fake, token) = fake_model("cli");
    let sandboxes = sandbox_dir();
    let server = session_server(Backend::Sqlite, &runtimes, sandboxes.path(), &[]);
    Live { server, _sandboxes: sandboxes, fake, token }
}

/// One API call (blocking), with the headers the SDKs send; panics on an error status.
fn api(server: &Server, method: &str, path: &str, body: Option<Value>) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client
            .request(method.parse().unwrap(), format!("{}{path}", server.base_url))
            .header("x-api-key", &server.api_key)
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "managed-agents-2026-04-01");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path} -> {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: bad JSON {e}: {text}"))
    })
}

/// Environment, agent on `model`, and (with a fake model) an LLM vault pointing at it.
fn setup(server: &Server, model: &str, fake: Option<(&FakeModel, &str)>) -> (String, String, Option<String>) {
    let env = api(server, "POST", "/v1/environments", Some(json!({"name": "cli-env"})));
    let agent = api(
        server,
        "POST",
        "/v1/agents",
        Some(json!({"name": "cli-agent", "model": model, "tools": [{"type": "agent_toolset_20260401"}]})),
    );
    let vault = fake.map(|(fake, token)| {
        let vault = api(
            server,
            "POST",
            "/v1/vaults",
            Some(json!({"display_name": "fake LLM", "metadata": {
                "sandbox0.managed_agents.role": "llm",
                "sandbox0.managed_agents.engine": "claude",
                "sandbox0.managed_agents.llm_base_url": fake.base_url(),
            }})),
        );
        let vid = vault["id"].as_str().unwrap().to_owned();
        api(
            server,
            "POST",
            &format!("/v1/vaults/{vid}/credentials"),
            Some(json!({"auth": {"type": "static_bearer", "token": token}})),
        );
        vid
    });
    (env["id"].as_str().unwrap().to_owned(), agent["id"].as_str().unwrap().to_owned(), vault)
}

/// A `bridle` client command for `server` (scrubbed environment, explicit URL and key).
fn client(server: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new(support::bridle_bin());
    support::scrub(&mut cmd);
    cmd.args(args)
        .args(["--url", &server.base_url, "--api-key", &server.api_key])
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(out: &Output) -> String {
    format!("status {}\n--- stdout ---\n{}\n--- stderr ---\n{}", out.status, text(&out.stdout), text(&out.stderr))
}

/// Run with a bound on its time (a hung child fails the test instead of hanging it).
fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (out_t.join().unwrap(), err_t.join().unwrap());
            panic!(
                "{what} did not finish within {limit:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                text(&o),
                text(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output { status, stdout: out_t.join().unwrap(), stderr: err_t.join().unwrap() }
}

/// A tail line without its `HH:MM:SS ` time column.
fn untimed(line: &str) -> &str {
    let b = line.as_bytes();
    if b.len() > 9 && b[2] == b':' && b[5] == b':' && b[8] == b' ' { &line[9..] } else { line }
}

/// Assert `wanted` lines appear in `lines` in this order (other lines may come between).
fn assert_in_order(lines: &[&str], wanted: &[&str], output: &str) {
    let mut at = 0;
    for w in wanted {
        match lines[at..].iter().position(|l| l == w) {
            Some(i) => at += i + 1,
            None => panic!("expected line {w:?} (in this order: {wanted:#?})\n--- output ---\n{output}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sessions list
// ---------------------------------------------------------------------------------------------

#[test]
fn sessions_list_pages_through_sessions() {
    let server = Server::start(Backend::Sqlite);
    let (env, agent, _) = setup(&server, "claude-sonnet-4-6", None);
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let s = api(
                &server,
                "POST",
                "/v1/sessions",
                Some(json!({"agent": agent, "environment_id": env, "title": format!("cli title {i}")})),
            );
            s["id"].as_str().unwrap().to_owned()
        })
        .collect();

    let out = client(&server, &["sessions", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "header + 3 rows:\n{stdout}");
    for h in ["ID", "STATUS", "AGENT", "CREATED", "TITLE"] {
        assert!(lines[0].contains(h), "header {:?} lacks {h}", lines[0]);
    }
    // Newest first, every column filled.
    for (line, i) in lines[1..].iter().zip([2, 1, 0]) {
        assert!(line.starts_with(&format!("{} ", ids[i])), "row {line:?} should be session {}", ids[i]);
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "idle", "{line}");
        assert!(line.contains("cli-agent (claude-sonnet-4-6)"), "{line}");
        assert!(line.ends_with(&format!(" cli title {i}")), "{line}");
        assert!(cols.iter().any(|c| c.len() == 10 && c.starts_with("20")), "no creation date in {line}");
    }

    // One page at a time: the next page's token is printed on stderr.
    let out = client(&server, &["sessions", "list", "--limit", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let page1 = text(&out.stdout);
    assert_eq!(page1.lines().count(), 3, "{page1}");
    assert!(page1.contains(&ids[2]) && page1.contains(&ids[1]) && !page1.contains(&ids[0]), "{page1}");
    let stderr = text(&out.stderr);
    let token = stderr
        .split("--page ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no next-page hint on stderr: {stderr}"))
        .to_owned();
    let out = client(&server, &["sessions", "list", "--limit", "2", "--page", &token]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let page2 = text(&out.stdout);
    assert_eq!(page2.lines().count(), 2, "{page2}");
    assert!(page2.lines().nth(1).unwrap().starts_with(&ids[0]), "{page2}");
    assert!(!text(&out.stderr).contains("--page"), "the last page has no next page: {}", show(&out));

    // --all follows every page.
    let out = client(&server, &["sessions", "list", "--limit", "1", "--all"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(text(&out.stdout).lines().count(), 4, "{}", show(&out));

    // Errors say what is wrong.
    let mut bad_key = Command::new(support::bridle_bin());
    support::scrub(&mut bad_key);
    let out =
        bad_key.args(["sessions", "list", "--url", &server.base_url, "--api-key", "sk-bridle-wrong"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401 authentication_error"), "{}", show(&out));
    assert!(out.stdout.is_empty(), "a failed list prints no table header: {}", show(&out));
    let mut nobody = Command::new(support::bridle_bin());
    support::scrub(&mut nobody);
    let url = format!("http://127.0.0.1:{}", support::free_port());
    let out = nobody.args(["sessions", "list", "--url", &url, "--api-key", "k"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot reach Bridle"), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    let out = client(&server, &["sessions", "tail", "sesn_011CZkYpogX7uDKUyvBTophP"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("404 not_found_error"), "{}", show(&out));
}

// ---------------------------------------------------------------------------------------------
// sessions tail
// ---------------------------------------------------------------------------------------------

#[test]
fn tail_follows_a_live_session_and_replays_it_the_same() {
    let Live { fake, token, server, .. } = &live_server();
    // One overloaded answer (retried by the runtime), then a bash call and a text reply.
    fake.set_scenario(
        "cli-tail",
        Scenario {
            turns: vec![Reply {
                tools: vec![ToolCall::bash("echo hello-from-tail > out.txt && cat out.txt")],
                text: "Done: {{tool_output}}".into(),
                ..Reply::default()
            }],
            ..Scenario::default()
        }
        .with_failures(Failure::new(529).retry_after(1.0)),
    );
    let (env, agent, vault) = setup(server, "cli-tail", Some((fake, token)));
    let session = api(
        server,
        "POST",
        "/v1/sessions",
        Some(json!({"agent": agent, "environment_id": env, "vault_ids": [vault.unwrap()], "title": "tail test"})),
    );
    let sid = session["id"].as_str().unwrap().to_owned();

    // Live: tail starts on an empty session, the message is sent while it follows.
    let mut live = client(server, &["sessions", "tail", &sid, "--until-idle"]);
    let live = std::thread::spawn(move || run_bounded(&mut live, Duration::from_secs(300), "live tail"));
    api(
        server,
        "POST",
        &format!("/v1/sessions/{sid}/events"),
        Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "Create out.txt"}]}]})),
    );
    let live = live.join().unwrap();
    assert!(live.status.success(), "{}", show(&live));
    let live_out = text(&live.stdout);
    println!("--- live tail ---\n{live_out}");
    assert!(!live_out.contains('\x1b'), "no escape codes when stdout is not a terminal:\n{live_out}");

    let lines: Vec<&str> = live_out.lines().collect();
    // The header shows the status when tail started: idle, or running if the runner was quicker.
    let header = |status: &str| format!("session {sid} · {status} · agent cli-agent (cli-tail) · \"tail test\"");
    assert!(lines[0] == header("idle") || lines[0] == header("running"), "header: {:?}", lines[0]);
    let body: Vec<&str> = lines[1..].iter().map(|l| untimed(l)).collect();
    for l in &lines[1..] {
        assert!(l.starts_with(' ') || untimed(l) != *l, "line without a time column: {l:?}");
    }
    assert_in_order(
        &body,
        &[
            "user     Create out.txt",
            "status   running",
            "status   rescheduled",
            "status   running",
            "tool     bash  echo hello-from-tail > out.txt && cat out.txt",
            "result   bash  →",
            "agent    Done: hello-from-tail",
            "status   idle (end_turn)",
        ],
        &live_out,
    );
    let error = body.iter().find(|l| l.starts_with("error ")).unwrap_or_else(|| panic!("no error line:\n{live_out}"));
    assert!(
        error.starts_with("error    model_overloaded_error: ") && error.ends_with(" [retrying]"),
        "the 529 is shown with its retry status: {error}"
    );
    let result_at = body.iter().position(|l| *l == "result   bash  →").unwrap();
    assert_eq!(body[result_at + 1].trim(), "hello-from-tail", "the tool output follows its result line");
    let usage = body.iter().filter(|l| l.starts_with("usage    in ")).count();
    assert!(usage >= 1, "model usage is shown:\n{live_out}");
    assert_eq!(*body.last().unwrap(), "status   idle (end_turn)", "--until-idle stops at the idle event");

    // Recorded: the same session again, now finished, is replayed from its log line for line.
    let mut again = client(server, &["sessions", "tail", &sid, "--until-idle", "--no-color"]);
    let recorded = run_bounded(&mut again, Duration::from_secs(60), "recorded tail");
    assert!(recorded.status.success(), "{}", show(&recorded));
    let replay = text(&recorded.stdout);
    assert_eq!(replay.lines().next().unwrap(), header("idle"));
    assert_eq!(
        replay.lines().skip(1).collect::<Vec<_>>(),
        lines[1..],
        "replaying the recorded session renders the same lines\n--- replay ---\n{replay}"
    );
}

// ---------------------------------------------------------------------------------------------
// doctor
// ---------------------------------------------------------------------------------------------

/// `bridle doctor` on the server's data dir and database, with `envs`.
fn doctor(server: &Server, envs: &[(&str, &Path)], extra: &[&str]) -> Output {
    let mut cmd = server.cli_command(&["doctor"]);
    cmd.args(extra);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run_bounded(&mut cmd, Duration::from_secs(180), "bridle doctor")
}

fn line_of<'a>(stdout: &'a str, start: &str) -> &'a str {
    stdout.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line starting {start:?}:\n{stdout}"))
}

#[test]
fn doctor_fails_with_fixes_when_runtimes_are_missing() {
    let server = Server::start(Backend::Sqlite);
    let empty = tempfile::Builder::new().prefix("bridle-cli-no-runtimes-").tempdir().unwrap();
    let sandboxes = sandbox_dir();
    let out = doctor(
        &server,
        &[("BRIDLE_RUNTIMES_DIR", empty.path()), ("BRIDLE_SESSIONS__SANDBOX_DIR", sandboxes.path())],
        &[],
    );
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(!out.status.success(), "a missing runtime is a failure:\n{}", show(&out));
    assert!(text(&out.stderr).contains("check(s) failed"), "{}", show(&out));
    for r in Runtime::ALL {
        let name = format!("runtime {}", r.name());
        let line = line_of(&stdout, &format!("FAIL {name} "));
        assert!(line.contains("not installed"), "{line}");
        // The fix is on the next line.
        let next = stdout.lines().skip_while(|l| *l != line).nth(1).unwrap();
        assert!(next.contains(&format!("fix: bridle runtimes install {}", r.name())), "{next}");
    }
    // The other checks still ran and passed on this machine.
    assert!(line_of(&stdout, "OK   database ").contains("migrations applied"), "{stdout}");
    for engine in ["claude", "codex", "openai-agents"] {
        assert!(line_of(&stdout, &format!("OK   plugin {engine} ")).contains("contract 0.3"), "{stdout}");
    }
    line_of(&stdout, "OK   bubblewrap ");
    line_of(&stdout, "OK   trial sandbox ");
    line_of(&stdout, "OK   secret key ");
    line_of(&stdout, "OK   data dir ");

    // An empty database file: connects, but nothing is migrated.
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("empty.db");
    std::fs::write(&db, b"").unwrap();
    let url = format!("sqlite://{}", db.display());
    let out = doctor(&server, &[("BRIDLE_SESSIONS__SANDBOX_DIR", sandboxes.path())], &["--database-url", &url]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{}", show(&out));
    let line = line_of(&stdout, "FAIL database ");
    assert!(line.contains("no migrations applied"), "{line}");
    assert!(stdout.contains("fix: start `bridle serve` once: it applies the migrations"), "{stdout}");
}

#[test]
fn doctor_passes_on_a_healthy_config() {
    let runtimes = install_runtimes();
    let server = Server::start(Backend::Sqlite);
    let sandboxes = sandbox_dir();
    let out =
        doctor(&server, &[("BRIDLE_RUNTIMES_DIR", &runtimes), ("BRIDLE_SESSIONS__SANDBOX_DIR", sandboxes.path())], &[]);
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stdout.contains("FAIL"), "{stdout}");
    for r in Runtime::ALL {
        let line = line_of(&stdout, &format!("OK   runtime {} ", r.name()));
        assert!(line.contains(r.version()), "the runtime ran and reported its pinned version: {line}");
    }
    assert!(stdout.lines().last().unwrap().ends_with(" 0 failure(s)"), "{stdout}");
    // The sandbox limits in force: the quota mechanism (after a trial mount) and the CPU controller.
    assert!(line_of(&stdout, "OK   disk quota ").contains("ext4 image per workspace, 4096 MiB"), "{stdout}");
    assert!(line_of(&stdout, "OK   cpu limit ").contains("1 CPU core(s) per sandbox: cgroup"), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// examples
// ---------------------------------------------------------------------------------------------

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// curl and jq, installed with apt-get when missing (as root).
fn ensure_curl_and_jq() {
    let have = |p: &str| {
        Command::new("sh").args(["-c", &format!("command -v {p}")]).output().is_ok_and(|o| o.status.success())
    };
    if !(have("curl") && have("jq")) {
        support::apt_install(&["curl", "jq"]);
    }
}

/// The example settings for a session on the fake model's `fake-tool` script.
fn example_env(cmd: &mut Command, live: &Live) {
    support::scrub(cmd);
    cmd.env("BRIDLE_BASE_URL", &live.server.base_url)
        .env("BRIDLE_API_KEY", &live.server.api_key)
        .env("MODEL_API_KEY", &live.token)
        .env("LLM_BASE_URL", live.fake.base_url())
        .env("MODEL", "fake-tool")
        .env("ENGINE", "claude")
        .stdin(Stdio::null());
}

/// Run an example to completion (bounded by `limit`); it must succeed, print a line starting
/// with each of `want`, and have called the model with the vault token. Returns its stdout.
fn run_example(live: &Live, cmd: &mut Command, limit: Duration, what: &str, want: &[&str]) -> String {
    let out = run_bounded(cmd, limit, what);
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "{}", show(&out));
    for want in want {
        assert!(stdout.lines().any(|l| l.starts_with(want)), "no line starting {want:?}:\n{stdout}");
    }
    let calls = live.fake.model_requests("fake-tool");
    assert!(!calls.is_empty() && calls.iter().all(|r| r.authorized), "the model was called with the vault token");
    stdout
}

#[test]
fn curl_walkthrough_runs_a_session() {
    ensure_curl_and_jq();
    let live = live_server();
    let mut cmd = Command::new("bash");
    cmd.arg(repo_dir().join("examples/curl/walkthrough.sh")).arg("Create out.txt");
    example_env(&mut cmd, &live);
    cmd.env("STREAM_TIMEOUT", "300");
    let stdout = run_example(
        &live,
        &mut cmd,
        Duration::from_secs(320),
        "examples/curl/walkthrough.sh",
        &[
            "environment  env_",
            "agent        agent_",
            "vault        vlt_",
            "session      sesn_",
            "sent         Create out.txt",
            "status   running",
            "tool     bash {\"command\":\"echo hello > out.txt\"",
            "agent    I wrote out.txt.",
            "usage    in ",
            "status   idle (end_turn)",
        ],
    );
    assert!(stdout.lines().last().unwrap().contains(" events in session sesn_"), "{stdout}");
}

#[test]
fn python_quickstart_runs_a_session() {
    let python = support::python_venv();
    let live = live_server();
    let mut cmd = Command::new(python);
    cmd.arg(repo_dir().join("examples/python/quickstart.py")).arg("Create out.txt");
    example_env(&mut cmd, &live);
    run_example(
        &live,
        &mut cmd,
        Duration::from_secs(300),
        "examples/python/quickstart.py",
        &[
            "session sesn_",
            "tool:  bash {'command': 'echo hello > out.txt'",
            "agent: I wrote out.txt.",
            "session.status_idle end_turn",
        ],
    );
}

#[test]
fn typescript_quickstart_runs_a_session() {
    let ts = support::node_modules();
    // The example pins what this test runs it with.
    let pins = |p: PathBuf| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let example = pins(repo_dir().join("examples/typescript/package.json"));
    let tested = pins(ts.join("package.json"));
    assert_eq!(example["dependencies"]["@anthropic-ai/sdk"], tested["dependencies"]["@anthropic-ai/sdk"]);
    for dev in ["typescript", "@types/node"] {
        assert_eq!(example["devDependencies"][dev], tested["devDependencies"][dev], "{dev} pin");
    }

    // Build it as a user would (tsc with the example's tsconfig, strict), in a scratch copy.
    let build = tempfile::Builder::new().prefix("bridle-ts-quickstart-").tempdir().unwrap();
    for f in ["quickstart.ts", "tsconfig.json", "package.json"] {
        std::fs::copy(repo_dir().join("examples/typescript").join(f), build.path().join(f)).unwrap();
    }
    std::os::unix::fs::symlink(ts.join("node_modules"), build.path().join("node_modules")).unwrap();
    let mut tsc = Command::new("node");
    tsc.arg(ts.join("node_modules/typescript/bin/tsc")).args(["-p", "."]).current_dir(build.path());
    support::run_and_report(&mut tsc, "tsc -p examples/typescript");

    let live = live_server();
    let mut node = Command::new("node");
    node.arg("dist/quickstart.js").arg("Create out.txt").current_dir(build.path());
    example_env(&mut node, &live);
    run_example(
        &live,
        &mut node,
        Duration::from_secs(300),
        "node dist/quickstart.js",
        &[
            "session sesn_",
            "tool:  bash {\"command\":\"echo hello > out.txt\"",
            "agent: I wrote out.txt.",
            "session.status_idle end_turn",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// environments layers
// ---------------------------------------------------------------------------------------------

/// `bridle environments layers` lists the package layers of a sandbox dir, `--log KEY` prints
/// a layer's build log, and `--evict` removes those unused beyond the age limit, then the least
/// recently used beyond the size limit.
#[test]
fn environments_layers_lists_and_evicts() {
    let sandboxes = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let now = std::time::SystemTime::now();
    let mib = 1 << 20;
    // (key, bytes, last used this long ago)
    let layers = [("a0", mib, 10 * 86400), ("b1", 3 * mib, 3600), ("c2", mib, 60)];
    for (key, bytes, ago) in layers {
        let dir = sandboxes.path().join("layers").join(key);
        std::fs::create_dir_all(dir.join("python")).unwrap();
        std::fs::write(dir.join("python/m.py"), vec![b'x'; bytes]).unwrap();
        let f = std::fs::File::open(&dir).unwrap();
        f.set_modified(now - Duration::from_secs(ago)).unwrap();
    }
    std::fs::create_dir_all(sandboxes.path().join("layer-state")).unwrap();
    std::fs::write(sandboxes.path().join("layer-state/b1.log"), "[bridle] pip: installing rich\n").unwrap();
    let command = |extra: &[&str]| {
        let mut cmd = Command::new(support::bridle_bin());
        support::scrub(&mut cmd);
        cmd.args(["environments", "layers"])
            .args(extra)
            .arg("--data-dir")
            .arg(data.path())
            .env("BRIDLE_SESSIONS__SANDBOX_DIR", sandboxes.path())
            .env("BRIDLE_SESSIONS__PACKAGE_LAYER_MAX_AGE_SECS", "86400")
            .env("BRIDLE_SESSIONS__PACKAGE_LAYERS_MAX_BYTES", (3 * mib + mib / 2).to_string());
        run_bounded(&mut cmd, Duration::from_secs(60), "bridle environments layers")
    };
    let run = |extra: &[&str]| {
        let out = command(extra);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run(&["--log", "b1"]), "[bridle] pip: installing rich\n");
    for (key, want) in [("c2", "no build log for layer c2"), ("../b1", "is not a layer key")] {
        let out = command(&["--log", key]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "--log {key}: {err}");
    }
    let listed = run(&[]);
    for key in ["a0", "b1", "c2"] {
        assert!(listed.contains(key), "{key} not listed:\n{listed}");
    }
    assert!(listed.contains("3.0"), "b1's size in MiB not shown:\n{listed}");
    let evicted = run(&["--evict"]);
    assert!(evicted.contains("evicted a0") && evicted.contains("evicted b1"), "{evicted}");
    assert!(!evicted.contains("evicted c2"), "{evicted}");
    assert!(sandboxes.path().join("layers/c2").is_dir());
    assert!(!sandboxes.path().join("layers/a0").exists() && !sandboxes.path().join("layers/b1").exists());
}
