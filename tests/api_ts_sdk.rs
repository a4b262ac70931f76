//! Smoke test with the official TypeScript SDK (`@anthropic-ai/sdk`, pinned in
//! `tests/ts/package.json` / `package-lock.json`, installed with `npm ci` into
//! `tests/ts/node_modules`) against a live `bridle serve` on SQLite.
//!
//! Run: `cargo test -p bridle --test api_ts_sdk -- --nocapture`

mod support;

use std::process::Command;
use support::{Backend, Server};

#[test]
fn typescript_sdk_smoke() {
    let ts = support::node_modules();
    let mut server = Server::start(Backend::Sqlite);
    let mut cmd = Command::new("node");
    support::scrub(&mut cmd);
    cmd.arg("smoke.mjs")
        .current_dir(&ts)
        .env("BRIDLE_BASE_URL", &server.base_url)
        .env("BRIDLE_API_KEY", &server.api_key);
    support::run_and_report(&mut cmd, "node tests/ts/smoke.mjs");
    server.assert_alive();
}
