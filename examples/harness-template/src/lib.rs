//! A template harness plugin for Bridle: the "echo" runtime.
//!
//! The imaginary runtime reads one JSON object per stdin line,
//! `{"type":"user","text":"..."}`, and answers with JSON lines:
//! `{"type":"text","text":"..."}`, then `{"type":"done"}`; it may print
//! `{"type":"retry","attempt":1,"delay_ms":500}` while its model is busy.
//! Run it as `cat` and you get a working echo agent.
//!
//! Replace the mapping below with your runtime's protocol; keep the shape:
//! parse, map to Managed Agents events, return actions. Plugins report facts
//! and never emit `session.status_*` or `session.error` themselves.

use bridle_harness_sdk::{
    Action, ApiShape, CredentialPlan, ExecutionModel, Harness, HarnessInfo, HarnessSession, HeaderRule, LaunchPlan,
    LlmEndpoint, PreviewedType, RetryReport, RetryStatus, SessionSpec, new_event_id,
};
use serde_json::{Value, json};

pub struct Template;

impl Harness for Template {
    type Session = TemplateSession;

    fn info() -> HarnessInfo {
        HarnessInfo {
            name: "echo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            execution_model: ExecutionModel::AgentInSandbox,
            api_shape: ApiShape::AnthropicMessages,
            description: "Template plugin: echoes each user message back (runtime: cat)".into(),
            // The model API paths the runtime calls (the gateway forwards
            // only these).
            model_paths: ApiShape::AnthropicMessages.default_model_paths(),
            // Set once the plugin honours `SessionSpec::remote_tools` (self-hosted environments).
            remote_tools: false,
        }
    }

    fn check_endpoint(llm: &LlmEndpoint) -> Result<(), String> {
        match &llm.base_url {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                Err(format!("llm_base_url {url:?} is not an http(s) URL; set it to the model API root"))
            }
            _ => Ok(()),
        }
    }

    fn credentials(_llm: &LlmEndpoint) -> CredentialPlan {
        // The runtime only ever sees a placeholder; the host's egress gateway
        // adds the real key to requests for the LLM host.
        CredentialPlan {
            env: vec![("ECHO_API_KEY".into(), "bridle-placeholder".into())],
            inject: vec![HeaderRule::new("x-api-key", "{token}")],
        }
    }
}

pub struct TemplateSession {
    spec: SessionSpec,
    retrying: bool,
}

impl HarnessSession for TemplateSession {
    fn new(spec: SessionSpec) -> Self {
        TemplateSession { spec, retrying: false }
    }

    fn launch(&mut self) -> Result<LaunchPlan, String> {
        Ok(LaunchPlan {
            argv: vec!["cat".into()],
            env: vec![
                ("ECHO_BASE_URL".into(), self.spec.llm.base_url.clone()),
                ("ECHO_MODEL".into(), self.spec.llm.model.clone()),
            ],
            files: vec![],
            cwd: Some(self.spec.workspace.clone()),
            skills_dir: None,
        })
    }

    fn on_input(&mut self, event: Value) -> Result<Vec<Action>, String> {
        match event["type"].as_str() {
            Some("user.message") => {
                let text = event["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|block| block["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("");
                Ok(vec![Action::write_line(&json!({"type": "user", "text": text}))])
            }
            // Nothing to interrupt in an echo: the turn is already over.
            Some("user.interrupt") => Ok(vec![]),
            other => Err(format!("echo does not handle input event {other:?}")),
        }
    }

    fn on_output(&mut self, line: &str) -> Result<Vec<Action>, String> {
        let msg: Value = serde_json::from_str(line).map_err(|e| format!("runtime line is not JSON ({e}): {line}"))?;
        let mut actions = Vec::new();
        if self.retrying && msg["type"] != "retry" {
            self.retrying = false;
            actions.push(Action::Resumed);
        }
        match msg["type"].as_str() {
            Some("text") => actions.push(Action::emit_json(&json!({
                "type": "agent.message",
                "id": new_event_id(),
                "content": [{"type": "text", "text": msg["text"]}],
            }))),
            // `cat` echoes our own `user` line: that is the agent's answer.
            // A runtime that streams its reply previews it as it arrives
            // (stream clients that asked see the text early); the buffered
            // message then carries the preview's id.
            Some("user") => {
                let id = new_event_id();
                let text = msg["text"].as_str().unwrap_or_default();
                actions.push(Action::preview_start(&id, PreviewedType::AgentMessage));
                actions.push(Action::preview_text(&id, 0, text));
                actions.push(Action::emit_json(&json!({
                    "type": "agent.message",
                    "id": id,
                    "content": [{"type": "text", "text": text}],
                })));
            }
            Some("done") => actions.push(Action::end_turn()),
            Some("retry") => {
                self.retrying = true;
                actions.push(Action::Retrying(RetryReport {
                    error_type: "model_overloaded_error".into(),
                    message: "the model is overloaded".into(),
                    attempt: msg["attempt"].as_u64().unwrap_or(1) as u32,
                    max_attempts: None,
                    delay_ms: msg["delay_ms"].as_u64(),
                }));
            }
            _ => {}
        }
        // An echo turn is one line: end it right after the answer.
        if msg["type"] == "user" {
            actions.push(Action::end_turn());
        }
        Ok(actions)
    }

    fn on_exit(&mut self, code: Option<i32>) -> Vec<Action> {
        match code {
            Some(0) => vec![],
            _ => vec![Action::failed("unknown_error", &format!("echo runtime exited with {code:?}"), RetryStatus::Terminal)],
        }
    }
}

bridle_harness_sdk::export_harness!(Template);

#[cfg(test)]
mod tests {
    use super::*;
    use bridle_harness_sdk::reset_event_ids;

    fn session() -> TemplateSession {
        TemplateSession::new(
            SessionSpec::from_json(r#"{"session_id":"sesn_1","llm":{"base_url":"http://gw","model":"m"}}"#).unwrap(),
        )
    }

    #[test]
    fn echo_round_trip() {
        reset_event_ids();
        let mut s = session();
        let input = s.on_input(json!({"type":"user.message","content":[{"type":"text","text":"hi"}]})).unwrap();
        assert_eq!(input, vec![Action::Write(b"{\"text\":\"hi\",\"type\":\"user\"}\n".to_vec())]);
        let out = s.on_output(r#"{"type":"user","text":"hi"}"#).unwrap();
        let golden: Vec<Value> = out.iter().map(Action::to_golden).collect();
        assert_eq!(
            golden,
            vec![
                json!({"preview": {"start": {"event_id":"sevt_test_0001","event_type":"agent.message"}}}),
                json!({"preview": {"text": {"event_id":"sevt_test_0001","index":0,"text":"hi"}}}),
                json!({"emit": {"type":"agent.message","id":"sevt_test_0001",
                                "content":[{"type":"text","text":"hi"}]}}),
                json!({"turn_ended": {"type":"end_turn"}}),
            ]
        );
    }

    #[test]
    fn retry_then_resume() {
        let mut s = session();
        let a = s.on_output(r#"{"type":"retry","attempt":2,"delay_ms":10}"#).unwrap();
        assert!(matches!(&a[..], [Action::Retrying(r)] if r.attempt == 2));
        let b = s.on_output(r#"{"type":"done"}"#).unwrap();
        assert_eq!(b, vec![Action::Resumed, Action::end_turn()]);
    }
}
