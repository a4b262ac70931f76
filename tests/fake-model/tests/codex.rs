//! Real `codex app-server` (JSON-RPC over stdio) against the fake model server on loopback.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use bridle_fake_model::{Failure, FakeModel, Scenario};
use common::runtimes::Runtime;
use common::{LineProc, clean_command, fakes, program};
use serde_json::{Value, json};

const TOKEN: &str = "sk-openai-vault-token-for-tests";
const TURN: Duration = Duration::from_secs(120);

struct Codex {
    proc: LineProc,
    thread_id: String,
    next_id: u64,
    ws: PathBuf,
    _dir: tempfile::TempDir,
}

fn test_config(fm: &FakeModel, model: &str, stream_max_retries: u32) -> String {
    format!(
        r#"model = "{model}"
model_provider = "fake"
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.fake]
name = "fake"
base_url = "{base}"
wire_api = "responses"
env_key = "FAKE_MODEL_API_KEY"
request_max_retries = 0
stream_max_retries = {stream_max_retries}
"#,
        base = fm.openai_base_url()
    )
}

fn codex(fm: &FakeModel, model: &str, stream_max_retries: u32) -> Codex {
    codex_with(&test_config(fm, model, stream_max_retries), ("FAKE_MODEL_API_KEY", TOKEN))
}

/// `codex app-server` with `config` as `$CODEX_HOME/config.toml` and the key in `key_env`.
fn codex_with(config: &str, key_env: (&str, &str)) -> Codex {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("codex-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("config.toml"), config).unwrap();
    let ws = dir.path().join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    let bin = program(Runtime::Codex);
    let mut cmd = clean_command(&bin, dir.path());
    cmd.arg("app-server").current_dir(&ws).env("CODEX_HOME", &home).env(key_env.0, key_env.1);
    let mut proc = LineProc::spawn("codex app-server", cmd, dir.path().join("codex.stderr"));
    proc.send(&json!({"method": "initialize", "id": 0,
        "params": {"clientInfo": {"name": "bridle-test", "title": "Bridle test", "version": "0.0.1"}}}));
    proc.wait_for(TURN, |_, _| {}, |v| v["id"] == 0 && v.get("result").is_some());
    proc.send(&json!({"method": "initialized"}));
    proc.send(&json!({"method": "thread/start", "id": 1,
        "params": {"cwd": ws, "approvalPolicy": "never", "sandbox": "danger-full-access"}}));
    let started = proc.wait_for(TURN, |_, _| {}, |v| v["id"] == 1);
    let thread_id = started["result"]["thread"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("thread/start failed: {started}\n{}", proc.diagnostics()))
        .to_owned();
    Codex { proc, thread_id, next_id: 2, ws, _dir: dir }
}

impl Codex {
    /// Run one turn; returns the `turn/completed` params.
    fn turn(&mut self, text: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.proc.send(&json!({"method": "turn/start", "id": id, "params": {
            "threadId": self.thread_id,
            "input": [{"type": "text", "text": text, "text_elements": []}]}}));
        let done = self.proc.wait_for(TURN, |_, _| {}, |v| v["method"] == "turn/completed");
        done["params"].clone()
    }

    fn notifications(&self, method: &str) -> Vec<Value> {
        self.proc.values().into_iter().filter(|v| v["method"] == method).map(|v| v["params"].clone()).collect()
    }

    fn agent_messages(&self) -> Vec<String> {
        self.notifications("item/completed")
            .iter()
            .filter(|p| p["item"]["type"] == "agentMessage")
            .map(|p| p["item"]["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn fake() -> FakeModel {
    fakes::start(TOKEN)
}

fn assert_token_on_every_request(fm: &FakeModel, model: &str) {
    fakes::assert_token_on_every_request(fm, model, "authorization", &format!("Bearer {TOKEN}"));
    assert!(fm.model_requests(model).iter().all(|r| r.path == "/v1/responses"));
}

#[test]
fn text_turn() {
    let fm = fake();
    fm.set_scenario("cx-text", Scenario::text("Hello from the fake, {{last_user}}!"));
    let mut c = codex(&fm, "cx-text", 0);
    let done = c.turn("Ada");
    assert_eq!(done["turn"]["status"], "completed", "{}", c.proc.diagnostics());
    assert_eq!(c.agent_messages(), vec!["Hello from the fake, Ada!"], "{}", c.proc.diagnostics());
    assert!(!c.notifications("item/agentMessage/delta").is_empty());
    assert_eq!(fm.model_requests("cx-text")[0].body["stream"], true);
    assert_token_on_every_request(&fm, "cx-text");
}

#[test]
fn bash_tool_turn_creates_a_file() {
    let fm = fake();
    fm.set_scenario("cx-tool", fakes::bash_then("echo hi > out.txt && cat out.txt", "Done."));
    let mut c = codex(&fm, "cx-tool", 0);
    let done = c.turn("write the file");
    assert_eq!(done["turn"]["status"], "completed", "{}", c.proc.diagnostics());
    assert_eq!(std::fs::read_to_string(c.ws.join("out.txt")).unwrap(), "hi\n");
    let commands: Vec<Value> =
        c.notifications("item/completed").into_iter().filter(|p| p["item"]["type"] == "commandExecution").collect();
    assert_eq!(commands.len(), 1, "{}", c.proc.diagnostics());
    assert_eq!(commands[0]["item"]["exitCode"], 0);
    assert_eq!(c.agent_messages(), vec!["Done."]);
    let reqs = fm.model_requests("cx-tool");
    assert_eq!(reqs.len(), 2, "tool call, then the answer");
    let tools: Vec<&str> =
        reqs[0].body["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(tools.contains(&"exec_command"), "codex offers exec_command: {tools:?}");
    let second = reqs[1].body["input"].as_array().unwrap();
    assert!(second.iter().any(|i| i["type"] == "function_call_output"));
    assert_token_on_every_request(&fm, "cx-tool");
}

fn retry_errors(c: &Codex) -> Vec<Value> {
    c.notifications("error")
}

#[test]
fn retries_500_429_529_then_success() {
    let fm = fake();
    let s = Scenario::text("made it")
        .with_failures(Failure::new(500).retry_after(0.2))
        .with_failures(Failure::new(429).retry_after(0.2))
        .with_failures(Failure::new(529).retry_after(0.2));
    fm.set_scenario("cx-retry", s);
    let mut c = codex(&fm, "cx-retry", 5);
    let done = c.turn("hi");
    assert_eq!(done["turn"]["status"], "completed", "{}", c.proc.diagnostics());
    assert_eq!(c.agent_messages(), vec!["made it"]);
    let errors = retry_errors(&c);
    assert_eq!(errors.len(), 3, "{}", c.proc.diagnostics());
    assert!(errors.iter().all(|e| e["willRetry"] == true), "{errors:#?}");
    let statuses: Vec<u16> = fm.model_requests("cx-retry").iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 429, 529, 200]);
    assert_token_on_every_request(&fm, "cx-retry");
}

#[test]
fn persistent_failure_fails_the_turn() {
    let fm = fake();
    fm.set_scenario("cx-down", Scenario { fail_always: Some(Failure::new(500)), ..Scenario::default() });
    let mut c = codex(&fm, "cx-down", 1);
    let done = c.turn("hi");
    assert_eq!(done["turn"]["status"], "failed", "{}", c.proc.diagnostics());
    let errors = retry_errors(&c);
    assert_eq!(errors.first().map(|e| e["willRetry"].clone()), Some(json!(true)), "{errors:#?}");
    assert_eq!(errors.last().map(|e| e["willRetry"].clone()), Some(json!(false)), "{errors:#?}");
}

#[test]
fn second_turn_sees_the_first() {
    let fm = fake();
    fm.set_scenario("cx-recall", fakes::recall());
    let mut c = codex(&fm, "cx-recall", 0);
    c.turn("Please remember the word PAPAYA.");
    let done = c.turn("What did I ask you to remember?");
    assert_eq!(done["turn"]["status"], "completed", "{}", c.proc.diagnostics());
    assert_eq!(c.agent_messages(), vec!["OK.", "You asked me to remember the word PAPAYA"]);
}

#[test]
fn slow_reply_can_be_interrupted() {
    let fm = fake();
    fm.set_scenario("cx-slow", fakes::slow());
    let mut c = codex(&fm, "cx-slow", 0);
    c.proc.send(&json!({"method": "turn/start", "id": 50, "params": {
        "threadId": c.thread_id, "input": [{"type": "text", "text": "count", "text_elements": []}]}}));
    let started = c.proc.wait_for(TURN, |_, _| {}, |v| v["id"] == 50);
    let turn_id = started["result"]["turn"]["id"].as_str().unwrap().to_owned();
    c.proc.wait_for(TURN, |_, _| {}, |v| v["method"] == "item/agentMessage/delta");
    c.proc.send(&json!({"method": "turn/interrupt", "id": 51, "params": {"threadId": c.thread_id, "turnId": turn_id}}));
    let done = c.proc.wait_for(TURN, |_, _| {}, |v| v["method"] == "turn/completed");
    assert_eq!(done["params"]["turn"]["status"], "interrupted", "{}", c.proc.diagnostics());
}

/// A fact about codex 0.171 the harness must live with: a 429 without `retry-after` is not
/// retried at turn level (`responseTooManyFailedAttempts`, `willRetry: false`).
#[test]
fn rate_limit_without_retry_after_is_final_for_codex() {
    let fm = fake();
    fm.set_scenario("cx-429", Scenario::text("never").with_failures(Failure::new(429)));
    let mut c = codex(&fm, "cx-429", 5);
    let done = c.turn("hi");
    assert_eq!(done["turn"]["status"], "failed", "{}", c.proc.diagnostics());
    let errors = retry_errors(&c);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["willRetry"], false);
    assert_eq!(errors[0]["error"]["codexErrorInfo"]["responseTooManyFailedAttempts"]["httpStatusCode"], 429);
}

/// MiniMax detection beyond the unit tests: for a MiniMax upstream the codex plugin writes its
/// MiniMax provider (own `env_key`, no OpenAI auth, more stream retries), and real codex runs a
/// turn with that config, reading the key from the variable the plugin's credential plan names.
/// The base URL is the gateway's (here the fake), as Bridle gives codex; detection goes by the
/// upstream the vault names.
#[test]
fn minimax_provider_config_runs() {
    use bridle_harness_sdk::{Harness, HarnessSession, LlmEndpoint, SessionSpec};
    use bridle_plugin_codex::{Codex as Plugin, CodexSession};

    let upstream = "https://api.minimax.io/v1";
    let fm = fake();
    fm.set_scenario("MiniMax-M2", Scenario::text("Hello from MiniMax, {{last_user}}!"));
    let spec = json!({
        "session_id": "sesn_mm", "agent": {"model": "MiniMax-M2"}, "workspace": "/workspace", "resume": null,
        "llm": {"base_url": fm.openai_base_url(), "upstream_base_url": upstream, "model": "MiniMax-M2"},
    });
    let plan = CodexSession::new(SessionSpec::from_json(&spec.to_string()).unwrap()).launch().unwrap();
    let config = String::from_utf8(plan.files[0].contents.clone()).unwrap();
    assert!(config.lines().any(|l| l == "model_provider = \"minimax\""), "{config}");
    let credentials = Plugin::credentials(&LlmEndpoint { base_url: Some(upstream.into()), model: "MiniMax-M2".into() });
    let key_env = credentials.env[0].0.as_str();
    assert_eq!(key_env, "MINIMAX_API_KEY");
    let mut c = codex_with(&config, (key_env, TOKEN));
    let done = c.turn("Ada");
    assert_eq!(done["turn"]["status"], "completed", "{}", c.proc.diagnostics());
    assert_eq!(c.agent_messages(), vec!["Hello from MiniMax, Ada!"], "{}", c.proc.diagnostics());
    assert_token_on_every_request(&fm, "MiniMax-M2");
}
