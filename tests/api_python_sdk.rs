//! API compatibility: the official `anthropic` Python SDK (pinned in
//! `tests/python/requirements.txt`, installed into `tests/.venv`) drives a live `bridle serve`
//! through every Managed Agents route, once on SQLite and once on a real PostgreSQL.
//!
//! The Files API tests (`tests/python/test_files.py`) run against session-scoped files seeded
//! here through the store (as a session's outputs will be), and after the suite the database
//! must hold no file and no chunk: every byte uploaded was deleted with its file.
//!
//! Run: `cargo test -p bridle --test api_python_sdk -- --nocapture`
//! Narrow the pytest selection with `BRIDLE_PYTEST_ARGS="-k sessions"`.

mod support;

use std::process::Command;
use support::{Backend, Postgres, Server};

/// A short SSE heartbeat so the heartbeat test need not wait the default 15 s.
const HEARTBEAT_SECS: &str = "2";

/// `files.max_bytes` for the suite: small, so the 413 test sends little (8 MiB).
const FILES_MAX_BYTES: &str = "8388608";

/// Session outputs seeded for `test_files.py` (it knows the same list).
const SCOPED_FILES: [(&str, &[u8], bool); 3] = [
    ("out-1.txt", b"first output\n", true),
    ("out-2.txt", b"second output\n", true),
    ("log.txt", b"not for download\n", false),
];

fn start(backend: Backend<'_>) -> Server {
    Server::start_opts(
        backend,
        &[],
        &[("BRIDLE_SSE_HEARTBEAT_SECS", HEARTBEAT_SECS), ("BRIDLE_FILES__MAX_BYTES", FILES_MAX_BYTES)],
    )
}

/// The server's database, writable.
fn database_url(server: &Server) -> String {
    match &server.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", server.data_dir().join("bridle.db").display()),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Store files scoped to a made-up session, as the runner stores a session's outputs;
/// returns that session id.
fn seed_session_outputs(server: &Server) -> String {
    seed_scoped(server, &SCOPED_FILES).0
}

/// One more output of another made-up session, for `test_resources.py` (it may not be
/// mounted by any other session; the test deletes it): its file id.
fn seed_foreign_output(server: &Server) -> String {
    seed_scoped(server, &[("foreign.txt", b"another session's output\n", true)]).1.remove(0)
}

/// Store `files` scoped to a fresh made-up session: its id and the files' ids.
fn seed_scoped(server: &Server, files: &[(&str, &[u8], bool)]) -> (String, Vec<String>) {
    use bridle::ids::{Kind, new_id};
    use bridle::model::files::FileScope;
    use bridle::store::{FileRow, Store};
    let session = new_id(Kind::Session);
    let mut ids = Vec::new();
    rt().block_on(async {
        let store = Store::connect(&database_url(server)).await.expect("open the server's database");
        for &(name, content, downloadable) in files {
            let meta = FileRow {
                id: new_id(Kind::File),
                created_at: bridle::time::now_micros(),
                filename: name.into(),
                mime_type: "text/plain".into(),
                size_bytes: 0,
                downloadable,
                scope: Some(FileScope::session(&session)),
            };
            let mut w = store.begin_file(&meta).await.expect("begin a seeded file");
            w.write(content).await.expect("write a seeded file");
            ids.push(w.finish().await.expect("finish a seeded file").id);
        }
    });
    (session, ids)
}

/// Every file the suite stored was deleted, and its bytes with it (only a whole run deletes
/// the seeded files too).
fn check_no_file_left(server: &Server, label: &str) {
    if std::env::var_os("BRIDLE_PYTEST_ARGS").is_some() {
        println!("{label}: a narrowed run; not checking that no file is left");
        return;
    }
    let counts = rt().block_on(async {
        let store = bridle::store::Store::connect(&database_url(server)).await.expect("open the server's database");
        // An upload cut off by its client is deleted right after; give that a moment.
        let mut counts = store.file_row_counts().await.expect("count file rows");
        for _ in 0..50 {
            if counts == (0, 0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            counts = store.file_row_counts().await.expect("count file rows");
        }
        counts
    });
    assert_eq!(counts, (0, 0), "{label}: (file rows, chunk rows) left in the database after the suite");
}

fn run_pytest(server: &Server, label: &str) {
    let scoped_session = seed_session_outputs(server);
    let foreign_file = seed_foreign_output(server);
    let python = support::python_venv();
    let suite = support::tests_dir().join("python");
    let mut cmd = Command::new(python);
    support::scrub(&mut cmd);
    cmd.args(["-m", "pytest"])
        .arg(&suite)
        // The end-to-end session suite lives below (tests/python/e2e, run by e2e_sessions.rs).
        .arg(format!("--ignore={}", suite.join("e2e").display()))
        .args(["-q", "-rfE", "-p", "no:cacheprovider", "--timeout=180", "--color=no"])
        .current_dir(&suite)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("BRIDLE_BASE_URL", &server.base_url)
        .env("BRIDLE_API_KEY", &server.api_key)
        .env("BRIDLE_BACKEND", label)
        .env("BRIDLE_HEARTBEAT_SECS", HEARTBEAT_SECS)
        .env("BRIDLE_FILES_MAX_BYTES", FILES_MAX_BYTES)
        .env("BRIDLE_SCOPED_SESSION", &scoped_session)
        .env("BRIDLE_FOREIGN_FILE", &foreign_file);
    if let Ok(extra) = std::env::var("BRIDLE_PYTEST_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    support::run_and_report(&mut cmd, &format!("pytest tests/python against {label}"));
}

#[test]
fn python_sdk_against_sqlite() {
    let mut server = start(Backend::Sqlite);
    run_pytest(&server, "sqlite");
    server.assert_alive();
    check_no_file_left(&server, "sqlite");
}

#[test]
fn python_sdk_against_postgres() {
    let pg = Postgres::start();
    let mut server = start(Backend::Postgres(&pg));
    run_pytest(&server, "postgres");
    server.assert_alive();
    check_no_file_left(&server, "postgres");
}
