//! Third-party harness plugins swapped in by configuration: the template
//! plugin (examples/harness-template, an "echo" runtime that is just `cat`,
//! contract 0.3.0) and the same echo frozen at contract 0.1.0
//! (host/harness/fixtures/echo-v0_1) are built as components, configured
//! under new engine names in one server, selected through LLM vaults'
//! metadata, and each runs a real session in a real sandbox. Runs as root
//! (sandbox uid switching), as in CI.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};
use support::{Backend, Server};

/// The 0.1.0 echo fixture (a member of the Bridle workspace).
fn build_echo_v0_1() -> PathBuf {
    support::build_wasm(".", &["-p", "bridle-harness-fixture-echo-v0-1"], "bridle_harness_fixture_echo_v0_1")
}

struct Api {
    http: Client,
    base: String,
    key: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .header("anthropic-beta", "managed-agents-2026-04-01");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(status, 200, "POST {path}: {v}");
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_2_and_a_0_1_plugin_each_run_a_session_under_a_new_engine_name() {
    let wasm = support::template_plugin();
    let wasm_v0_1 = build_echo_v0_1().to_string_lossy().into_owned();
    // Unmounts what the killed server leaves (its sessions' volumes) when dropped.
    let sandboxes = support::sandbox_dir::sandbox_dir();
    let runtimes = tempfile::Builder::new().prefix("bridle-swap-rt-").tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(runtimes.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let wasm = wasm.to_string_lossy().into_owned();
    let server = Server::start_opts(
        Backend::Sqlite,
        &[],
        &[
            ("BRIDLE_HARNESSES__ECHO__PLUGIN", wasm.as_str()),
            ("BRIDLE_HARNESSES__ECHOOLD__PLUGIN", wasm_v0_1.as_str()),
            ("BRIDLE_SESSIONS__SANDBOX_DIR", &sandboxes.path().to_string_lossy()),
            ("BRIDLE_RUNTIMES_DIR", &runtimes.path().to_string_lossy()),
        ],
    );
    let api = Api { http: Client::new(), base: server.base_url.clone(), key: server.api_key.clone() };

    // The new engine is listed beside the built-ins.
    let out = server
        .cli_command(&["plugins", "list"])
        .env("BRIDLE_HARNESSES__ECHO__PLUGIN", &wasm)
        .env("BRIDLE_HARNESSES__ECHOOLD__PLUGIN", &wasm_v0_1)
        .output()
        .expect("bridle plugins list");
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = |engine: &str| listing.lines().find(|l| l.starts_with(&format!("{engine} "))).unwrap_or("").to_string();
    assert!(line("echo").contains(&wasm) && line("echo").contains("0.3.0"), "plugins list:\n{listing}");
    assert!(line("echoold").contains(&wasm_v0_1) && line("echoold").contains("0.1.0"), "plugins list:\n{listing}");

    let env = api.post("/v1/environments", json!({"name": "swap"})).await;
    let agent = api.post("/v1/agents", json!({"name": "echo", "model": "echo-1"})).await;

    // An unknown engine name is still refused: the config is what makes `echo` known.
    let bogus = api
        .post(
            "/v1/vaults",
            json!({"display_name": "bogus", "metadata": {
                "sandbox0.managed_agents.role": "llm", "sandbox0.managed_agents.engine": "echo2"}}),
        )
        .await;
    let bid = bogus["id"].as_str().unwrap();
    api.post(&format!("/v1/vaults/{bid}/credentials"), json!({"auth": {"type": "static_bearer", "token": "t"}})).await;
    let (status, err) = api
        .call(
            reqwest::Method::POST,
            "/v1/sessions",
            Some(json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": [bid]})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["message"].as_str().unwrap_or("").contains("echo2"), "{err}");

    for engine in ["echo", "echoold"] {
        echo_session(&api, &server, &agent, &env, engine).await;
    }
}

/// One session on `engine`: a message, cat's echo back as the agent's
/// answer, the turn's end.
async fn echo_session(api: &Api, server: &Server, agent: &Value, env: &Value, engine: &str) {
    let vault = api
        .post(
            "/v1/vaults",
            json!({"display_name": format!("{engine} LLM"), "metadata": {
                "sandbox0.managed_agents.role": "llm",
                "sandbox0.managed_agents.engine": engine,
            }}),
        )
        .await;
    let vid = vault["id"].as_str().unwrap();
    api.post(&format!("/v1/vaults/{vid}/credentials"), json!({"auth": {"type": "static_bearer", "token": "tok-echo"}}))
        .await;
    let session =
        api.post("/v1/sessions", json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": [vid]})).await;
    let sid = session["id"].as_str().unwrap();

    api.post(
        &format!("/v1/sessions/{sid}/events"),
        json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "ping from the test"}]}]}),
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let events = loop {
        let (_, page) = api.call(reqwest::Method::GET, &format!("/v1/sessions/{sid}/events"), None).await;
        let events = page["data"].as_array().cloned().unwrap_or_default();
        if events.iter().any(|e| e["type"] == "session.status_idle") {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "{engine}: no session.status_idle within 60 s; events: {events:#?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        ["user.message", "session.status_running", "agent.message", "session.status_idle"],
        "{engine}: events: {events:#?}"
    );
    assert_eq!(events[2]["content"][0]["text"], "ping from the test", "{engine}: cat echoed the message: {events:#?}");
    assert_eq!(events[3]["stop_reason"]["type"], "end_turn", "{engine}");
}
