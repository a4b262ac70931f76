//! Outcomes (`user.define_outcome`): the agent works toward a description
//! over several turns; after each turn a grader — a separate model call on
//! the session's own endpoint and credential, never sharing the agent's
//! context — decides whether the rubric is satisfied.
//!
//! - [`grader`]: the grader's prompt and the parsing of its answer (pure);
//! - [`cycle`]: what happens after a turn and after a verdict (pure);
//! - [`resource`]: the session's `outcome_evaluations`, folded from the log;
//! - [`call`]: the grader's HTTP request (the I/O edge).

pub mod call;
pub mod cycle;
pub mod grader;
pub mod resource;

use serde_json::Value;

use crate::model::events::{OUTCOME_MAX_ITERATIONS_DEFAULT, Rubric};
use crate::store::{EventFilter, Order, Store, StoreResult};

/// An outcome as the host works on it (from its stored `user.define_outcome`).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: String,
    pub description: String,
    /// The rubric's text (a file rubric was resolved when the event was taken).
    pub rubric: String,
    /// Evaluations before giving up (1..=20).
    pub max_iterations: u32,
}

impl Outcome {
    /// The outcome a stored `user.define_outcome` body defines; `None` for
    /// a body that is not one (or lacks its server-assigned id).
    pub fn from_event(body: &Value) -> Option<Outcome> {
        if body.get("type").and_then(Value::as_str) != Some("user.define_outcome") {
            return None;
        }
        let rubric = match serde_json::from_value::<Rubric>(body.get("rubric")?.clone()).ok()? {
            Rubric::Text { content } => content,
            Rubric::File { .. } => return None,
        };
        let max = body.get("max_iterations").and_then(Value::as_i64).unwrap_or(OUTCOME_MAX_ITERATIONS_DEFAULT);
        Some(Outcome {
            id: body.get("outcome_id")?.as_str()?.to_owned(),
            description: body.get("description")?.as_str()?.to_owned(),
            rubric,
            max_iterations: u32::try_from(max).unwrap_or(1).max(1),
        })
    }
}

/// A session's outcome events (wire JSON, in log order).
pub async fn events(store: &Store, session_id: &str) -> StoreResult<Vec<Value>> {
    let filter =
        EventFilter { types: resource::EVENT_TYPES.iter().map(|t| (*t).to_owned()).collect(), ..Default::default() };
    let (events, _) = store.list_events(session_id, &filter, Order::Asc, None, i64::from(u32::MAX)).await?;
    Ok(events.iter().filter_map(|e| serde_json::from_str(&e.body).ok()).collect())
}

/// A session's `outcome_evaluations`.
pub async fn evaluations(store: &Store, session_id: &str) -> StoreResult<Vec<Value>> {
    Ok(resource::fold(&events(store, session_id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_event_defines_its_outcome() {
        let body = json!({"type": "user.define_outcome", "outcome_id": "outc_1", "description": "d",
                          "rubric": {"type": "text", "content": "r"}});
        let o = Outcome::from_event(&body).unwrap();
        assert_eq!((o.id.as_str(), o.rubric.as_str(), o.max_iterations), ("outc_1", "r", 3));
        let mut unresolved = body.clone();
        unresolved["rubric"] = json!({"type": "file", "file_id": "file_1"});
        assert_eq!(Outcome::from_event(&unresolved), None);
        assert_eq!(Outcome::from_event(&json!({"type": "user.message"})), None);
    }
}
