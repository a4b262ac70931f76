//! Real Claude Code (`claude -p` stream-json) against the fake model server on loopback.

mod common;

use std::path::Path;
use std::time::Duration;

use bridle_fake_model::{Failure, FakeModel, Scenario};
use common::runtimes::Runtime;
use common::{LineProc, clean_command, fakes, program};
use serde_json::{Value, json};

const TOKEN: &str = "sk-ant-vault-token-for-tests";
const TURN: Duration = Duration::from_secs(120);

struct Claude {
    proc: LineProc,
    _dir: tempfile::TempDir,
}

fn workspace(dir: &Path) -> std::path::PathBuf {
    let ws = dir.join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    ws
}

fn claude(fm: &FakeModel, dir: tempfile::TempDir, model: &str, extra_args: &[&str], max_retries: u32) -> Claude {
    let bin = program(Runtime::ClaudeCode);
    let mut cmd = clean_command(&bin, dir.path());
    cmd.current_dir(workspace(dir.path()))
        .args(["-p", "--output-format", "stream-json", "--input-format", "stream-json", "--verbose"])
        .args(["--model", model, "--allowedTools", "Bash"])
        .args(extra_args)
        .env("ANTHROPIC_BASE_URL", fm.base_url())
        .env("ANTHROPIC_API_KEY", TOKEN)
        .env("CLAUDE_CONFIG_DIR", dir.path().join(".claude"))
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", max_retries.to_string());
    let stderr = dir.path().join("claude.stderr");
    Claude { proc: LineProc::spawn("claude", cmd, stderr), _dir: dir }
}

fn user(text: &str) -> Value {
    json!({"type": "user", "message": {"role": "user", "content": text}})
}

fn is_result(v: &Value) -> bool {
    v["type"] == "result"
}

fn turn(c: &mut Claude, text: &str) -> Value {
    c.proc.send(&user(text));
    c.proc.wait_for(TURN, |_, _| {}, is_result)
}

fn fake() -> FakeModel {
    fakes::start(TOKEN)
}

/// Every model request carried the vault token as `x-api-key`.
fn assert_token_on_every_request(fm: &FakeModel, model: &str) {
    fakes::assert_token_on_every_request(fm, model, "x-api-key", TOKEN);
}

#[test]
fn text_turn() {
    let fm = fake();
    fm.set_scenario("cc-text", Scenario::text("Hello from the fake, {{last_user}}!"));
    let mut c = claude(&fm, tempfile::tempdir().unwrap(), "cc-text", &[], 2);
    let result = turn(&mut c, "Ada");
    assert_eq!(result["is_error"], false, "{}", c.proc.diagnostics());
    assert_eq!(result["result"], "Hello from the fake, Ada!");
    let assistant: Vec<Value> = c.proc.values().into_iter().filter(|v| v["type"] == "assistant").collect();
    assert!(
        assistant.iter().any(|a| a["message"]["content"][0]["text"] == "Hello from the fake, Ada!"),
        "{}",
        c.proc.diagnostics()
    );
    let reqs = fm.model_requests("cc-text");
    assert_eq!(reqs[0].body["stream"], true, "Claude Code streams");
    assert_eq!(reqs[0].path, "/v1/messages");
    assert_token_on_every_request(&fm, "cc-text");
    c.proc.close_stdin();
    assert!(c.proc.child.wait().unwrap().success());
}

#[test]
fn bash_tool_turn_creates_a_file() {
    let fm = fake();
    fm.set_scenario(
        "cc-tool",
        fakes::bash_then("echo hi > out.txt && cat out.txt", "The command printed: {{tool_output}}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let mut c = claude(&fm, dir, "cc-tool", &[], 2);
    let result = turn(&mut c, "write the file");
    assert_eq!(result["is_error"], false, "{}", c.proc.diagnostics());
    assert_eq!(result["result"], "The command printed: hi");
    assert_eq!(std::fs::read_to_string(ws.join("out.txt")).unwrap(), "hi\n");
    let values = c.proc.values();
    let tool_use = values
        .iter()
        .find(|v| v["type"] == "assistant" && v["message"]["content"][0]["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use\n{}", c.proc.diagnostics()));
    assert_eq!(tool_use["message"]["content"][0]["name"], "Bash");
    assert!(values.iter().any(|v| v["type"] == "user" && v["message"]["content"][0]["type"] == "tool_result"));
    // Two model calls: the tool call, then the answer after the result came back.
    let reqs = fm.model_requests("cc-tool");
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_token_on_every_request(&fm, "cc-tool");
}

fn retries(values: &[Value]) -> Vec<(i64, String)> {
    values
        .iter()
        .filter(|v| v["type"] == "system" && v["subtype"] == "api_retry")
        .map(|v| (v["error_status"].as_i64().unwrap_or(-1), v["error"].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[test]
fn retries_529_429_500_then_success() {
    let fm = fake();
    let s = Scenario::text("made it")
        .with_failures(Failure::new(529).retry_after(1.0))
        .with_failures(Failure::new(429))
        .with_failures(Failure::new(500).retry_after(1.0));
    fm.set_scenario("cc-retry", s);
    let mut c = claude(&fm, tempfile::tempdir().unwrap(), "cc-retry", &[], 5);
    let result = turn(&mut c, "hi");
    assert_eq!(result["is_error"], false, "{}", c.proc.diagnostics());
    assert_eq!(result["result"], "made it");
    let seen = retries(&c.proc.values());
    assert_eq!(
        seen,
        vec![(529, "overloaded".into()), (429, "rate_limit".into()), (500, "server_error".into())],
        "{}",
        c.proc.diagnostics()
    );
    let statuses: Vec<u16> = fm.model_requests("cc-retry").iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![529, 429, 500, 200]);
    assert_token_on_every_request(&fm, "cc-retry");
}

#[test]
fn persistent_failure_exhausts_retries() {
    let fm = fake();
    fm.set_scenario(
        "cc-down",
        Scenario { fail_always: Some(Failure::new(500).retry_after(0.1)), ..Scenario::default() },
    );
    let mut c = claude(&fm, tempfile::tempdir().unwrap(), "cc-down", &[], 1);
    let result = turn(&mut c, "hi");
    assert_eq!(result["is_error"], true, "{}", c.proc.diagnostics());
    assert_eq!(result["api_error_status"], 500);
    assert_eq!(retries(&c.proc.values()).len(), 1);
    assert_eq!(fm.model_requests("cc-down").len(), 2);
}

#[test]
fn wrong_credential_is_rejected_with_401() {
    let fm = fake();
    fm.set_token(Some("another-token".into()));
    let mut c = claude(&fm, tempfile::tempdir().unwrap(), "cc-auth", &[], 1);
    let result = turn(&mut c, "hi");
    assert_eq!(result["is_error"], true, "{}", c.proc.diagnostics());
    let reqs = fm.model_requests("cc-auth");
    assert!(reqs.iter().all(|r| r.status == 401 && !r.authorized), "{reqs:#?}");
}

#[test]
fn multi_turn_and_resume_keep_context() {
    let fm = fake();
    fm.set_scenario("cc-recall", fakes::recall());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_path_buf();
    let mut c = claude(&fm, dir, "cc-recall", &[], 1);
    let r1 = turn(&mut c, "Please remember the word PAPAYA.");
    assert_eq!(r1["result"], "OK.", "{}", c.proc.diagnostics());
    let r2 = turn(&mut c, "What did I ask you to remember?");
    assert_eq!(r2["result"], "You asked me to remember the word PAPAYA", "{}", c.proc.diagnostics());
    let session_id = r2["session_id"].as_str().unwrap().to_owned();
    c.proc.close_stdin();
    c.proc.child.wait().unwrap();

    // A new process resumed from the session id carries the earlier turns.
    let bin = program(Runtime::ClaudeCode);
    let mut cmd = clean_command(&bin, &home);
    cmd.current_dir(home.join("workspace"))
        .args(["-p", "--output-format", "stream-json", "--input-format", "stream-json", "--verbose"])
        .args(["--model", "cc-recall", "--resume", &session_id])
        .env("ANTHROPIC_BASE_URL", fm.base_url())
        .env("ANTHROPIC_API_KEY", TOKEN)
        .env("CLAUDE_CONFIG_DIR", home.join(".claude"))
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1");
    let mut p = LineProc::spawn("claude --resume", cmd, home.join("resume.stderr"));
    p.send(&user("And once more: what was it?"));
    let r3 = p.wait_for(TURN, |_, _| {}, is_result);
    assert_eq!(r3["result"], "You asked me to remember the word PAPAYA", "{}", p.diagnostics());
    let last = fm.model_requests("cc-recall").pop().unwrap();
    let user_msgs = last.body["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "user").count();
    assert!(user_msgs >= 3, "resumed request carries the history: {}", last.body["messages"]);
}

#[test]
fn slow_reply_can_be_interrupted() {
    let fm = fake();
    fm.set_scenario("cc-slow", fakes::slow());
    let mut c = claude(&fm, tempfile::tempdir().unwrap(), "cc-slow", &["--include-partial-messages"], 1);
    c.proc.send(&user("count"));
    // Wait for the first text delta, then interrupt through the control protocol.
    c.proc.wait_for(TURN, |_, _| {}, |v| v["type"] == "stream_event" && v["event"]["delta"]["type"] == "text_delta");
    c.proc.send(&json!({"type": "control_request", "request_id": "int-1", "request": {"subtype": "interrupt"}}));
    let result = c.proc.wait_for(TURN, |_, _| {}, is_result);
    let deltas = c
        .proc
        .values()
        .iter()
        .filter(|v| v["type"] == "stream_event" && v["event"]["delta"]["type"] == "text_delta")
        .count();
    assert!(deltas < 40, "interrupted before the stream ended ({deltas} deltas): {result}");
}

/// As the sandbox runs it: an unprivileged uid, permission prompts skipped (Claude Code
/// refuses that as root), binaries straight from the runtimes dir.
#[test]
fn unprivileged_user_with_skipped_permissions() {
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let fm = fake();
    fm.set_scenario("cc-nobody", fakes::bash_then("id -u > uid.txt", "done"));
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    for p in [dir.path(), ws.as_path()] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let bin = program(Runtime::ClaudeCode);
    let mut cmd = clean_command(&bin, dir.path());
    cmd.current_dir(&ws)
        .args(["-p", "--output-format", "stream-json", "--input-format", "stream-json", "--verbose"])
        .args(["--model", "cc-nobody", "--dangerously-skip-permissions"])
        .env("ANTHROPIC_BASE_URL", fm.base_url())
        .env("ANTHROPIC_API_KEY", TOKEN)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .uid(NOBODY)
        .gid(NOBODY);
    let mut p = LineProc::spawn("claude (nobody)", cmd, dir.path().join("claude.stderr"));
    p.send(&user("go"));
    let result = p.wait_for(TURN, |_, _| {}, is_result);
    assert_eq!(result["is_error"], false, "{}", p.diagnostics());
    assert_eq!(std::fs::read_to_string(ws.join("uid.txt")).unwrap().trim(), NOBODY.to_string());
    let init = p.values().into_iter().find(|v| v["subtype"] == "init").unwrap();
    assert_eq!(init["permissionMode"], "bypassPermissions");
}
