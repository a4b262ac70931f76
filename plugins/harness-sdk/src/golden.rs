//! Golden tests for plugins: a transcript in, the exact actions out (native
//! builds only). A plugin's `tests/golden.rs` names its session type, a
//! default spec ([`default_spec`]) and how to label a runtime line, then
//! lists its cases with [`golden_cases!`](crate::golden_cases).
//!
//! Cases live in the plugin's `tests/data/`:
//! * `NAME.jsonl` — recorded runtime stdout: the run starts with a
//!   `user.message` and feeds every line to `on_output`;
//! * `NAME.script.jsonl` — one step per line: `{"spec": {...}}` (first line,
//!   optional), `{"in": <user event>}`, `{"out": <runtime line as JSON, or a
//!   string for raw text>}`, `{"tool_result": {...}}` (its `id` defaults to
//!   the last `tool-call` action's), `{"exit": <code or null>}`.
//!
//! The expected actions are in `NAME.expected.json`; `BLESS=1 cargo test
//! --test golden` rewrites them (then review the diff by eye).

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::{Action, HarnessSession, SessionSpec, reset_event_ids};

/// One plugin's golden-test settings.
pub struct Golden {
    /// `tests/data` of the plugin.
    pub data_dir: PathBuf,
    /// The session spec used when a script gives none.
    pub default_spec: Value,
    /// A short label for a runtime line in the results (`out <label>`).
    pub describe_out: fn(&Value) -> String,
}

/// The spec a case runs with when its script gives none: the agent's model,
/// the whole toolset under `always_allow`, and the session's model route
/// (`upstream` is the route's real upstream, when the plugin reads it).
pub fn default_spec(model: &str, base_url: &str, upstream: Option<&str>, resident: bool) -> Value {
    json!({
        "session_id": "sesn_test",
        "agent": {"model": {"id": model}, "system": null, "tools": [
            {"type": "agent_toolset_20260401",
             "default_config": {"enabled": true, "permission_policy": {"type": "always_allow"}}}
        ]},
        "workspace": "/workspace",
        "resume": null,
        "llm": {"base_url": base_url, "upstream_base_url": upstream, "model": model},
        "resident": resident
    })
}

/// One `#[test]` per golden case: `golden_cases! { goldens(), MySession; name => "case.jsonl", ... }`
/// where `goldens()` is the plugin's [`Golden`].
#[macro_export]
macro_rules! golden_cases {
    ($golden:expr, $session:ty; $($test:ident => $file:literal),* $(,)?) => {
        $( #[test] fn $test() { $golden.check::<$session>($file); } )*
    };
}

enum Step {
    In(Value),
    Out(String),
    ToolResult(Value),
    Exit(Option<i32>),
}

impl Golden {
    /// A plugin's goldens, in `tests/data` of `manifest_dir` (its
    /// `env!("CARGO_MANIFEST_DIR")`).
    pub fn new(manifest_dir: &str, default_spec: Value, describe_out: fn(&Value) -> String) -> Golden {
        Golden { data_dir: PathBuf::from(manifest_dir).join("tests/data"), default_spec, describe_out }
    }

    fn load(&self, name: &str) -> (Value, Vec<Step>) {
        let text = std::fs::read_to_string(self.data_dir.join(name)).expect("case file");
        let mut spec = self.default_spec.clone();
        let mut steps = Vec::new();
        if name.ends_with(".script.jsonl") {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).expect("script line is JSON");
                if let Some(s) = v.get("spec") {
                    spec = s.clone();
                } else if let Some(e) = v.get("in") {
                    steps.push(Step::In(e.clone()));
                } else if let Some(o) = v.get("out") {
                    steps.push(Step::Out(match o {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }));
                } else if let Some(r) = v.get("tool_result") {
                    steps.push(Step::ToolResult(r.clone()));
                } else if let Some(c) = v.get("exit") {
                    steps.push(Step::Exit(c.as_i64().map(|c| c as i32)));
                } else {
                    panic!("bad script line {line}");
                }
            }
        } else {
            steps.push(Step::In(json!({"type": "user.message", "id": "sevt_user_1",
                "content": [{"type": "text", "text": "say hi"}]})));
            steps.extend(text.lines().map(|l| Step::Out(l.to_string())));
        }
        (spec, steps)
    }

    /// Run a case; the result lists every step that produced actions.
    pub fn run<S: HarnessSession>(&self, name: &str) -> Value {
        reset_event_ids();
        let (spec, steps) = self.load(name);
        let mut session = S::new(SessionSpec::from_json(&spec.to_string()).expect("spec"));
        let mut log = Vec::new();
        let mut last_call: Option<String> = None;
        for (i, step) in steps.into_iter().enumerate() {
            let (label, result) = match step {
                Step::In(e) => (format!("in {}", e["type"].as_str().unwrap_or("?")), session.on_input(e)),
                Step::Out(line) => {
                    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    (format!("out {}", (self.describe_out)(&v)), session.on_output(&line))
                }
                Step::ToolResult(mut r) => {
                    if r.get("id").is_none() {
                        r["id"] = json!(last_call.clone().unwrap_or_default());
                    }
                    let r: crate::ToolResult = serde_json::from_value(r).expect("tool_result step is a tool result");
                    ("tool result".to_string(), session.on_tool_result(r))
                }
                Step::Exit(code) => (format!("exit {code:?}"), Ok(session.on_exit(code))),
            };
            if let Ok(actions) = &result {
                for a in actions {
                    if let Action::ToolCall(call) = a {
                        last_call = Some(call.id.clone());
                    }
                }
            }
            match result {
                Ok(actions) if actions.is_empty() => {}
                Ok(actions) => log.push(json!({
                    "step": i, "what": label,
                    "actions": actions.iter().map(Action::to_golden).collect::<Vec<_>>(),
                })),
                Err(e) => log.push(json!({"step": i, "what": label, "error": e})),
            }
        }
        Value::Array(log)
    }

    /// Run a case and compare with (or, with `BLESS=1`, write) its expected file.
    pub fn check<S: HarnessSession>(&self, name: &str) {
        let actual = self.run::<S>(name);
        let stem = name.trim_end_matches(".jsonl").trim_end_matches(".script");
        let path = self.data_dir.join(format!("{stem}.expected.json"));
        let pretty = serde_json::to_string_pretty(&actual).expect("json") + "\n";
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&path, pretty).expect("write expected");
            return;
        }
        let expected =
            std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing; run with BLESS=1", path.display()));
        let expected: Value = serde_json::from_str(&expected).expect("expected is JSON");
        assert!(expected == actual, "{name}: actions differ from {}\n--- actual ---\n{pretty}", path.display());
    }
}

/// `type/subtype/event.type` of a JSON line (stream-json style labels).
pub fn describe_typed(v: &Value) -> String {
    [v["type"].as_str(), v["subtype"].as_str(), v["event"]["type"].as_str()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/")
}

impl Golden {
    /// Robustness: run a case, and before each runtime line feed the
    /// session variants of it with one field (at any depth up to four, the
    /// first element of each list) replaced by `null`, a number, a string, a
    /// list or an object, and the line cut in half. Panics (the test fails)
    /// if `on_output` returns an error for any of them; a panic in the
    /// plugin fails the test too. Returns how many variants were fed.
    pub fn check_odd_lines<S: HarnessSession>(&self, name: &str) -> usize {
        let (spec, steps) = self.load(name);
        let mut session = S::new(SessionSpec::from_json(&spec.to_string()).expect("spec"));
        let mut fed = 0;
        for step in steps {
            match step {
                Step::In(e) => drop(session.on_input(e)),
                Step::Out(line) => {
                    for odd in odd_variants(&line) {
                        fed += 1;
                        if let Err(e) = session.on_output(&odd) {
                            panic!("{name}: on_output failed on {odd}: {e}");
                        }
                    }
                    session.on_output(&line).unwrap_or_else(|e| panic!("{name}: on_output failed on {line}: {e}"));
                }
                Step::ToolResult(mut r) => {
                    if r.get("id").is_none() {
                        r["id"] = json!("");
                    }
                    if let Ok(r) = serde_json::from_value(r) {
                        drop(session.on_tool_result(r));
                    }
                }
                Step::Exit(code) => drop(session.on_exit(code)),
            }
        }
        fed
    }
}

impl Golden {
    /// [`Golden::check_odd_lines`] for each case; each must have a runtime
    /// line to vary.
    pub fn check_odd_lines_of<S: HarnessSession>(&self, cases: &[&str]) {
        for case in cases {
            assert!(self.check_odd_lines::<S>(case) > 0, "{case}: no runtime line to vary");
        }
    }
}

/// The variants of a JSON line that [`Golden::check_odd_lines`] feeds.
pub fn odd_variants(line: &str) -> Vec<String> {
    let half: String = line.chars().take(line.chars().count() / 2).collect();
    let mut out = vec![half];
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return out;
    };
    let mut pointers = Vec::new();
    collect_pointers(&v, String::new(), 0, &mut pointers);
    let odd = [json!(null), json!(7), json!("x"), json!([1]), json!({"k": 1})];
    for p in pointers {
        for r in &odd {
            let mut m = v.clone();
            if let Some(slot) = m.pointer_mut(&p) {
                *slot = r.clone();
                out.push(m.to_string());
            }
        }
    }
    out
}

fn collect_pointers(v: &Value, at: String, depth: usize, out: &mut Vec<String>) {
    if depth >= 4 {
        return;
    }
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                collect_pointers(child, p, depth + 1, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let p = format!("{at}/0");
            out.push(p.clone());
            collect_pointers(&a[0], p, depth + 1, out);
        }
        _ => {}
    }
}
