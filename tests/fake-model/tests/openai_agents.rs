//! The real openai-agents SDK, through Bridle's resident runtime program
//! (`bridle-agents-runtime`), against the fake model server on loopback. The test plays the
//! host: it frames messages with a session id and runs `bash` tool calls itself (where Bridle
//! would run them in the session's sandbox).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bridle_fake_model::{Failure, FakeModel, Scenario};
use common::runtimes::Runtime;
use common::{LineProc, clean_command, fakes, program};
use serde_json::{Value, json};

const TOKEN: &str = "sk-agents-vault-token-for-tests";
const TURN: Duration = Duration::from_secs(120);

struct Agents {
    proc: LineProc,
    ws: PathBuf,
    _dir: tempfile::TempDir,
}

fn agents() -> Agents {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    let bin = program(Runtime::OpenaiAgents);
    let mut cmd = clean_command(&bin, dir.path());
    cmd.env("OPENAI_API_KEY", TOKEN).env("OPENAI_AGENTS_DISABLE_TRACING", "1");
    let proc = LineProc::spawn("bridle-agents-runtime", cmd, dir.path().join("agents.stderr"));
    Agents { proc, ws, _dir: dir }
}

fn frame(session: &str, msg: Value) -> Value {
    json!({"session": session, "msg": msg})
}

/// Run `bash` tool calls in the workspace, as the host's sandbox would.
fn run_tool(ws: &Path, input: &Value) -> (String, bool) {
    let cmd = input["command"].as_str().unwrap_or_default();
    match Command::new("bash").arg("-c").arg(cmd).current_dir(ws).output() {
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            (text, !out.status.success())
        }
        Err(e) => (e.to_string(), true),
    }
}

impl Agents {
    fn start(&mut self, fm: &FakeModel, session: &str, model: &str, max_retries: u32) {
        self.proc.send(&frame(
            session,
            json!({
            "type": "start", "model": model, "base_url": fm.openai_base_url(),
            "system": "Be brief.", "tools": ["bash"], "max_retries": max_retries, "resume": null}),
        ));
    }

    /// One turn; answers tool calls; returns the session's messages up to `turn_end`/`error`.
    fn turn(&mut self, session: &str, text: &str) -> Vec<Value> {
        self.proc.send(&frame(session, json!({"type": "input", "content": [{"type": "text", "text": text}]})));
        let ws = self.ws.clone();
        let sid = session.to_owned();
        let first = self.proc.lines.len();
        self.proc.wait_for(
            TURN,
            move |p, v| {
                if v["session"] == sid.as_str() && v["msg"]["type"] == "tool_call" {
                    let (output, is_error) = run_tool(&ws, &v["msg"]["input"]);
                    let call_id = v["msg"]["call_id"].clone();
                    p.send(&frame(
                        &sid,
                        json!({"type": "tool_result", "call_id": call_id, "output": output, "is_error": is_error}),
                    ));
                }
            },
            |v| v["session"] == session && matches!(v["msg"]["type"].as_str(), Some("turn_end" | "error")),
        );
        self.proc.lines[first..]
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["session"] == session)
            .map(|v| v["msg"].clone())
            .collect()
    }
}

fn of_type<'a>(msgs: &'a [Value], t: &str) -> Vec<&'a Value> {
    msgs.iter().filter(|m| m["type"] == t).collect()
}

fn fake() -> FakeModel {
    fakes::start(TOKEN)
}

fn assert_token_on_every_request(fm: &FakeModel, model: &str) {
    fakes::assert_token_on_every_request(fm, model, "authorization", &format!("Bearer {TOKEN}"));
}

#[test]
fn text_turn() {
    let fm = fake();
    fm.set_scenario("oa-text", Scenario::text("Hello from the fake, {{last_user}}!"));
    let mut a = agents();
    a.start(&fm, "s1", "oa-text", 2);
    let msgs = a.turn("s1", "Ada");
    let end = of_type(&msgs, "turn_end");
    assert_eq!(end.len(), 1, "{}", a.proc.diagnostics());
    assert_eq!(end[0]["final_output"], "Hello from the fake, Ada!");
    assert_eq!(of_type(&msgs, "message")[0]["text"], "Hello from the fake, Ada!");
    let usage = &of_type(&msgs, "model_request_end")[0]["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap() > 0, "usage reported: {usage}");
    assert_eq!(fm.model_requests("oa-text")[0].body["stream"], true);
    assert_token_on_every_request(&fm, "oa-text");
}

#[test]
fn bash_tool_turn_creates_a_file() {
    let fm = fake();
    fm.set_scenario(
        "oa-tool",
        fakes::bash_then("echo hi > out.txt && cat out.txt", "The command printed: {{tool_output}}"),
    );
    let mut a = agents();
    a.start(&fm, "s1", "oa-tool", 2);
    let msgs = a.turn("s1", "write the file");
    let calls = of_type(&msgs, "tool_call");
    assert_eq!(calls.len(), 1, "{}", a.proc.diagnostics());
    assert_eq!(calls[0]["name"], "bash");
    assert_eq!(std::fs::read_to_string(a.ws.join("out.txt")).unwrap(), "hi\n");
    assert_eq!(of_type(&msgs, "turn_end")[0]["final_output"], "The command printed: hi");
    assert_eq!(fm.model_requests("oa-tool").len(), 2);
    assert_token_on_every_request(&fm, "oa-tool");
}

#[test]
fn retries_529_429_500_then_success() {
    let fm = fake();
    let s = Scenario::text("made it")
        .with_failures(Failure::new(529).retry_after(0.2))
        .with_failures(Failure::new(429))
        .with_failures(Failure::new(500).retry_after(0.2));
    fm.set_scenario("oa-retry", s);
    let mut a = agents();
    a.start(&fm, "s1", "oa-retry", 5);
    let msgs = a.turn("s1", "hi");
    let retries: Vec<(Value, Value)> =
        of_type(&msgs, "retry").iter().map(|r| (r["status"].clone(), r["retry"].clone())).collect();
    assert_eq!(
        retries,
        vec![(json!(529), json!(true)), (json!(429), json!(true)), (json!(500), json!(true))],
        "{}",
        a.proc.diagnostics()
    );
    assert_eq!(of_type(&msgs, "turn_end")[0]["final_output"], "made it");
    // The client is built with max_retries=0: no hidden SDK retry.
    let reqs = fm.model_requests("oa-retry");
    assert_eq!(reqs.iter().map(|r| r.status).collect::<Vec<_>>(), vec![529, 429, 500, 200]);
    assert!(reqs.iter().all(|r| r.header("x-stainless-retry-count") == Some("0")));
    assert_token_on_every_request(&fm, "oa-retry");
}

#[test]
fn persistent_failure_is_an_error() {
    let fm = fake();
    fm.set_scenario("oa-down", Scenario { fail_always: Some(Failure::new(500)), ..Scenario::default() });
    let mut a = agents();
    a.start(&fm, "s1", "oa-down", 1);
    let msgs = a.turn("s1", "hi");
    let err = of_type(&msgs, "error");
    assert_eq!(err.len(), 1, "{}", a.proc.diagnostics());
    assert_eq!(err[0]["kind"], "api");
    assert_eq!(err[0]["status"], 500);
    assert_eq!(fm.model_requests("oa-down").len(), 2);
}

#[test]
fn sessions_are_independent_and_keep_context() {
    let fm = fake();
    fm.set_scenario("oa-recall", fakes::recall());
    let mut a = agents();
    a.start(&fm, "s1", "oa-recall", 1);
    a.start(&fm, "s2", "oa-recall", 1);
    a.turn("s1", "Please remember the word PAPAYA.");
    a.turn("s2", "Please remember the word MANGO.");
    let m1 = a.turn("s1", "What was it?");
    let m2 = a.turn("s2", "What was it?");
    assert_eq!(of_type(&m1, "turn_end")[0]["final_output"], "You asked me to remember the word PAPAYA");
    assert_eq!(of_type(&m2, "turn_end")[0]["final_output"], "You asked me to remember the word MANGO");
}

#[test]
fn slow_reply_can_be_interrupted() {
    let fm = fake();
    fm.set_scenario("oa-slow", fakes::slow());
    let mut a = agents();
    a.start(&fm, "s1", "oa-slow", 1);
    a.proc.send(&frame("s1", json!({"type": "input", "content": [{"type": "text", "text": "count"}]})));
    a.proc.wait_for(TURN, |_, _| {}, |v| v["msg"]["type"] == "model_request_start");
    std::thread::sleep(Duration::from_millis(500));
    a.proc.send(&frame("s1", json!({"type": "interrupt"})));
    let end = a.proc.wait_for(
        TURN,
        |_, _| {},
        |v| matches!(v["msg"]["type"].as_str(), Some("interrupted" | "turn_end" | "error")),
    );
    assert_eq!(end["msg"]["type"], "interrupted", "{}", a.proc.diagnostics());
}
