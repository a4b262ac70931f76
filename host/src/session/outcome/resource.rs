//! The session's `outcome_evaluations`: one entry per `user.define_outcome`,
//! folded from the log (the define event and its
//! `span.outcome_evaluation_*` events), so it survives restarts and needs
//! no state of its own.

use serde_json::{Map, Value, json};

/// The event types the fold reads.
pub const EVENT_TYPES: &[&str] =
    &["user.define_outcome", "span.outcome_evaluation_start", "span.outcome_evaluation_end"];

const TERMINAL: &[&str] = &["satisfied", "max_iterations_reached", "failed", "interrupted"];

/// `outcome_evaluations` from a session's outcome events (wire JSON, in log
/// order). The first outcome not yet ended is `running` (or `evaluating`);
/// later ones wait (`pending`).
pub fn fold(events: &[Value]) -> Vec<Value> {
    let mut out: Vec<Map<String, Value>> = Vec::new();
    let s = |e: &Value, k: &str| e.get(k).cloned().unwrap_or(Value::Null);
    for e in events {
        let ty = e.get("type").and_then(Value::as_str).unwrap_or_default();
        if ty == "user.define_outcome" {
            let Value::Object(entry) = json!({
                "type": "outcome_evaluation", "outcome_id": s(e, "outcome_id"), "description": s(e, "description"),
                "iteration": 0, "result": "pending", "explanation": null, "completed_at": null,
            }) else {
                continue;
            };
            out.push(entry);
            continue;
        }
        let id = e.get("outcome_id");
        let Some(entry) = out.iter_mut().find(|o| o.get("outcome_id") == id) else { continue };
        match ty {
            "span.outcome_evaluation_start" => {
                entry.insert("iteration".into(), s(e, "iteration"));
                entry.insert("result".into(), json!("evaluating"));
            }
            "span.outcome_evaluation_end" => {
                let result = e.get("result").and_then(Value::as_str).unwrap_or("failed");
                entry.insert("explanation".into(), s(e, "explanation"));
                if TERMINAL.contains(&result) {
                    entry.insert("iteration".into(), s(e, "iteration"));
                    entry.insert("result".into(), json!(result));
                    entry.insert("completed_at".into(), s(e, "processed_at"));
                } else {
                    // Another round follows.
                    let next = e.get("iteration").and_then(Value::as_u64).unwrap_or(0) + 1;
                    entry.insert("iteration".into(), json!(next));
                    entry.insert("result".into(), json!("running"));
                }
            }
            _ => {}
        }
    }
    // The first outcome not ended is the one being worked on.
    if let Some(first) = out.iter_mut().find(|o| o.get("completed_at").is_some_and(Value::is_null))
        && first.get("result").and_then(Value::as_str) == Some("pending")
    {
        first.insert("result".into(), json!("running"));
    }
    out.into_iter().map(Value::Object).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn define(id: &str) -> Value {
        json!({"type": "user.define_outcome", "outcome_id": id, "description": format!("d{id}"),
               "rubric": {"type": "text", "content": "r"}, "processed_at": "t0"})
    }
    fn start(id: &str, i: u64) -> Value {
        json!({"type": "span.outcome_evaluation_start", "outcome_id": id, "iteration": i, "processed_at": "t"})
    }
    fn end(id: &str, i: u64, result: &str) -> Value {
        json!({"type": "span.outcome_evaluation_end", "outcome_id": id, "iteration": i, "result": result,
               "explanation": format!("e{i}"), "processed_at": format!("t{i}")})
    }
    /// An entry as the table writes it: outcome id, iteration, result, completed_at.
    type Row = (String, u64, String, Value);

    fn view(v: &[Value]) -> Vec<Row> {
        v.iter()
            .map(|o| {
                (
                    o["outcome_id"].as_str().unwrap().to_owned(),
                    o["iteration"].as_u64().unwrap(),
                    o["result"].as_str().unwrap().to_owned(),
                    o["completed_at"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn the_resource_follows_the_log() {
        let row = |id: &str, i, r: &str, done: Value| (id.to_owned(), i, r.to_owned(), done);
        let cases: Vec<(Vec<Value>, Vec<Row>)> = vec![
            (vec![], vec![]),
            (vec![define("a")], vec![row("a", 0, "running", Value::Null)]),
            (vec![define("a"), start("a", 0)], vec![row("a", 0, "evaluating", Value::Null)]),
            (
                vec![define("a"), start("a", 0), end("a", 0, "needs_revision")],
                vec![row("a", 1, "running", Value::Null)],
            ),
            (
                vec![
                    define("a"),
                    start("a", 0),
                    end("a", 0, "needs_revision"),
                    start("a", 1),
                    end("a", 1, "satisfied"),
                ],
                vec![row("a", 1, "satisfied", json!("t1"))],
            ),
            (
                vec![define("a"), define("b"), start("a", 0), end("a", 0, "max_iterations_reached")],
                vec![row("a", 0, "max_iterations_reached", json!("t0")), row("b", 0, "running", Value::Null)],
            ),
            (
                vec![define("a"), define("b")],
                vec![row("a", 0, "running", Value::Null), row("b", 0, "pending", Value::Null)],
            ),
            // Events of an unknown outcome are ignored.
            (vec![start("z", 0)], vec![]),
        ];
        for (events, want) in cases {
            assert_eq!(view(&fold(&events)), want, "{events:?}");
        }
        let v = fold(&[define("a"), start("a", 0), end("a", 0, "needs_revision")]);
        assert_eq!(v[0]["explanation"], "e0");
        assert_eq!(v[0]["description"], "da");
        assert_eq!(v[0]["type"], "outcome_evaluation");
    }
}
