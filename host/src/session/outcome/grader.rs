//! The grader: its prompt, as a request in the session's model API shape,
//! and the parsing of its answer into a verdict. Pure: the HTTP call is in
//! [`super::call`].
//!
//! The grader sees the outcome's description, its rubric, the round and the
//! agent's result for that round — never the agent's conversation — and
//! answers with one JSON object: `{"result": "satisfied" | "needs_revision"
//! | "failed", "explanation": "..."}`.

use bridle_harness::ApiShape;
use serde_json::{Value, json};

use super::Outcome;

/// Marks a grader request (the fake model server keys its grader
/// scenarios on it; a real model just reads it as part of its role).
pub const MARKER: &str = "bridle-outcome-grader";

/// The most the grader may answer, in tokens.
const MAX_TOKENS: u32 = 2048;

/// The longest piece of a malformed answer quoted in an error.
const QUOTE: usize = 200;

const SYSTEM: &str = "You are an impartial grader (bridle-outcome-grader). You decide whether an agent's work meets \
a rubric. You see the task, the rubric and the agent's report of its work for this round; nothing else. Answer with \
exactly one JSON object and no other text: {\"result\": \"satisfied\" | \"needs_revision\" | \"failed\", \
\"explanation\": \"...\"}. Use \"satisfied\" when every criterion is met; \"needs_revision\" when some are not, \
and say in the explanation which and what to change (the agent reads it); \"failed\" only when the rubric cannot \
apply to what was asked or produced.";

/// A verdict of the grader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Satisfied,
    NeedsRevision,
    Failed,
}

/// The grader's answer for one round.
#[derive(Debug, Clone, PartialEq)]
pub struct Grade {
    pub verdict: Verdict,
    pub explanation: String,
}

/// A model request: the path under the session's base URL, and its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub path: &'static str,
    pub body: Value,
}

/// Why a grader answer could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GradeError {
    #[error("the grader's response is not a {0} response: {1}")]
    Shape(&'static str, String),
    #[error("the grader's answer is not a verdict ({why}): `{quote}`")]
    Malformed { why: String, quote: String },
}

/// The user-side text of a grading request.
pub fn prompt(outcome: &Outcome, iteration: u32, result: &str) -> String {
    let result = match result.trim() {
        "" => "(the agent reported nothing)",
        r => r,
    };
    format!(
        "## Task\n{}\n\n## Rubric\n{}\n\n## Evaluation round: {iteration}\n\n## The agent's result for this round\n{result}\n",
        outcome.description, outcome.rubric
    )
}

/// The grading request for `shape`, to `model`.
pub fn request(shape: ApiShape, model: &str, outcome: &Outcome, iteration: u32, result: &str) -> Request {
    let user = prompt(outcome, iteration, result);
    match shape {
        ApiShape::AnthropicMessages => Request {
            path: "/v1/messages",
            body: json!({"model": model, "max_tokens": MAX_TOKENS, "system": SYSTEM,
                         "messages": [{"role": "user", "content": user}]}),
        },
        ApiShape::OpenaiResponses => Request {
            path: "/responses",
            body: json!({"model": model, "instructions": SYSTEM, "input": user, "store": false,
                         "max_output_tokens": MAX_TOKENS}),
        },
        ApiShape::OpenaiCompatible => Request {
            path: "/chat/completions",
            body: json!({"model": model, "max_tokens": MAX_TOKENS,
                         "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]}),
        },
    }
}

/// The grader's text and its usage (as `span.model_request_end` counts it)
/// from a response of `shape`.
pub fn answer(shape: ApiShape, body: &Value) -> Result<(String, Value), GradeError> {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let (name, text, usage) = match shape {
        ApiShape::AnthropicMessages => {
            let text = body.get("content").and_then(Value::as_array).map(|blocks| {
                blocks
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<String>()
            });
            let u = body.get("usage");
            let usage = json!({
                "input_tokens": n(u.and_then(|u| u.get("input_tokens"))),
                "output_tokens": n(u.and_then(|u| u.get("output_tokens"))),
                "cache_read_input_tokens": n(u.and_then(|u| u.get("cache_read_input_tokens"))),
                "cache_creation_input_tokens": n(u.and_then(|u| u.get("cache_creation_input_tokens"))),
            });
            ("Messages", text, usage)
        }
        ApiShape::OpenaiResponses => {
            let text = body.get("output").and_then(Value::as_array).map(|items| {
                items
                    .iter()
                    .filter(|i| i.get("type").and_then(Value::as_str) == Some("message"))
                    .filter_map(|i| i.get("content").and_then(Value::as_array))
                    .flatten()
                    .filter(|c| c.get("type").and_then(Value::as_str) == Some("output_text"))
                    .filter_map(|c| c.get("text").and_then(Value::as_str))
                    .collect::<String>()
            });
            let u = body.get("usage");
            let usage = json!({
                "input_tokens": n(u.and_then(|u| u.get("input_tokens"))),
                "output_tokens": n(u.and_then(|u| u.get("output_tokens"))),
                "cache_read_input_tokens": n(u.and_then(|u| u.pointer("/input_tokens_details/cached_tokens"))),
                "cache_creation_input_tokens": 0,
            });
            ("Responses", text, usage)
        }
        ApiShape::OpenaiCompatible => {
            let text = body.pointer("/choices/0/message/content").and_then(Value::as_str).map(str::to_owned);
            let u = body.get("usage");
            let usage = json!({
                "input_tokens": n(u.and_then(|u| u.get("prompt_tokens"))),
                "output_tokens": n(u.and_then(|u| u.get("completion_tokens"))),
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
            });
            ("Chat Completions", text, usage)
        }
    };
    let text = text.ok_or_else(|| GradeError::Shape(name, quote(&body.to_string())))?;
    Ok((text, usage))
}

/// The verdict in the grader's text: one JSON object (a code fence or words
/// around it are tolerated), with a known `result` and an `explanation`.
pub fn verdict(text: &str) -> Result<Grade, GradeError> {
    let bad = |why: &str| GradeError::Malformed { why: why.to_owned(), quote: quote(text) };
    let (Some(start), Some(end)) = (text.find('{'), text.rfind('}')) else {
        return Err(bad("no JSON object"));
    };
    if end < start {
        return Err(bad("no JSON object"));
    }
    let v: Value = serde_json::from_str(&text[start..=end]).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
    let verdict = match v.get("result").and_then(Value::as_str) {
        Some("satisfied") => Verdict::Satisfied,
        Some("needs_revision") => Verdict::NeedsRevision,
        Some("failed") => Verdict::Failed,
        Some(other) => return Err(bad(&format!("unknown result `{other}`"))),
        None => return Err(bad("no `result` string")),
    };
    let explanation = match v.get("explanation").and_then(Value::as_str).map(str::trim) {
        Some(e) if !e.is_empty() => e.to_owned(),
        _ => return Err(bad("no `explanation` string")),
    };
    Ok(Grade { verdict, explanation })
}

fn quote(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(QUOTE) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> Outcome {
        Outcome { id: "outc_1".into(), description: "Write a haiku".into(), rubric: "5-7-5".into(), max_iterations: 3 }
    }

    #[test]
    fn the_prompt_holds_task_rubric_round_and_result_only() {
        let p = prompt(&outcome(), 1, "  old pond  ");
        for part in
            ["## Task\nWrite a haiku", "## Rubric\n5-7-5", "## Evaluation round: 1", "result for this round\nold pond"]
        {
            assert!(p.contains(part), "{part} in {p}");
        }
        assert!(prompt(&outcome(), 0, " ").contains("(the agent reported nothing)"));
    }

    #[test]
    fn requests_per_shape() {
        let cases = [
            (ApiShape::AnthropicMessages, "/v1/messages", "/system", "/messages/0/content"),
            (ApiShape::OpenaiResponses, "/responses", "/instructions", "/input"),
            (ApiShape::OpenaiCompatible, "/chat/completions", "/messages/0/content", "/messages/1/content"),
        ];
        for (shape, path, system, user) in cases {
            let r = request(shape, "m", &outcome(), 2, "done");
            assert_eq!(r.path, path, "{shape:?}");
            assert_eq!(r.body["model"], "m");
            assert!(r.body.pointer(system).and_then(Value::as_str).unwrap().contains(MARKER), "{shape:?}");
            assert!(r.body.pointer(user).and_then(Value::as_str).unwrap().contains("## Evaluation round: 2"));
        }
    }

    #[test]
    fn answers_per_shape() {
        let text = r#"{"result": "satisfied", "explanation": "ok"}"#;
        let cases = [
            (
                ApiShape::AnthropicMessages,
                json!({"content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": text}],
                       "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 2}}),
                json!({"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 0}),
            ),
            (
                ApiShape::OpenaiResponses,
                json!({"output": [{"type": "reasoning"}, {"type": "message", "content": [{"type": "output_text", "text": text}]}],
                       "usage": {"input_tokens": 7, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 1}}}),
                json!({"input_tokens": 7, "output_tokens": 4, "cache_read_input_tokens": 1, "cache_creation_input_tokens": 0}),
            ),
            (
                ApiShape::OpenaiCompatible,
                json!({"choices": [{"message": {"content": text}}], "usage": {"prompt_tokens": 5, "completion_tokens": 6}}),
                json!({"input_tokens": 5, "output_tokens": 6, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}),
            ),
        ];
        for (shape, body, usage) in cases {
            assert_eq!(answer(shape, &body).unwrap(), (text.to_owned(), usage), "{shape:?}");
        }
        let e = answer(ApiShape::AnthropicMessages, &json!({"type": "error"})).unwrap_err();
        assert!(matches!(e, GradeError::Shape("Messages", _)), "{e}");
    }

    #[test]
    fn verdicts() {
        let ok = |t: &str| verdict(t).map(|g| (g.verdict, g.explanation));
        assert_eq!(ok(r#"{"result":"satisfied","explanation":"all met"}"#), Ok((Verdict::Satisfied, "all met".into())));
        assert_eq!(
            ok("```json\n{\"result\": \"needs_revision\", \"explanation\": \"line 2 has 8\"}\n```"),
            Ok((Verdict::NeedsRevision, "line 2 has 8".into()))
        );
        assert_eq!(ok(r#"Verdict: {"result":"failed","explanation":" n/a "}"#), Ok((Verdict::Failed, "n/a".into())));
        let bad = [
            ("looks good to me", "no JSON object"),
            ("} {", "no JSON object"),
            ("{result: satisfied}", "invalid JSON"),
            (r#"{"result": "pass", "explanation": "x"}"#, "unknown result `pass`"),
            (r#"{"explanation": "x"}"#, "no `result` string"),
            (r#"{"result": "satisfied"}"#, "no `explanation` string"),
            (r#"{"result": "satisfied", "explanation": "  "}"#, "no `explanation` string"),
        ];
        for (text, why) in bad {
            let e = verdict(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
        let long = "x".repeat(1000);
        let e = verdict(&long).unwrap_err().to_string();
        assert!(e.len() < 400 && e.ends_with("…`"), "{e}");
    }
}
