//! Tool calls left waiting on the user with no runtime to take the answer.
//!
//! A pending `always_ask` confirmation or custom tool call lives in the
//! runtime process that asked (Claude Code's control request, codex's server
//! request, the openai-agents runtime's wait). When that process is gone —
//! the server restarted, another node adopted the session, or the runtime
//! died while waiting — nothing can deliver an answer any more. Delivering
//! it to a resumed runtime would need each runtime to replay an unanswered
//! call on resume, which none of the three promises (and a first turn may
//! have no resume state at all). So the turn is ended in the open
//! (`session.error` naming the calls, then `retries_exhausted`), which
//! clears the pending list in the log: late answers get the API's "not
//! waiting" 400, and the next message resumes the runtime as usual.

use anyhow::Context;

use crate::store::Store;

/// The event ids the session's log says wait on the user.
pub(crate) async fn pending_in_log(store: &Store, session_id: &str) -> anyhow::Result<Vec<String>> {
    let waiting = store.waiting_on_user(session_id).await.context("reading the calls waiting on the user")?;
    Ok(waiting.map(|w| w.ids).unwrap_or_default())
}

/// `session.error` text for calls whose runtime is gone; `cause` says how.
pub(crate) fn lost_calls_message(ids: &[String], cause: &str) -> String {
    let list = ids.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ");
    let (calls, was) = if ids.len() == 1 { ("tool call", "was") } else { ("tool calls", "were") };
    format!(
        "{cause}; {calls} {list} {was} waiting for the user and can no longer be answered (a new runtime cannot take \
         the answer), so the turn ends here: send a new message to continue"
    )
}

/// `session.error` text for an answer that arrived after its turn ended.
pub(crate) fn undelivered_answer_message(kind: &str, target: &str) -> String {
    format!(
        "the {kind} for tool call `{target}` could not be delivered: the agent runtime that asked for it is gone and \
         its turn has ended (send a new message to continue)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_requires_action_waits() {
        use crate::store::waiting_ids;
        let idle = json!({"type": "session.status_idle", "stop_reason": {"type": "requires_action", "event_ids": ["sevt_a", "sevt_b"]}});
        assert_eq!(waiting_ids(&idle).unwrap(), ["sevt_a", "sevt_b"]);
        let done = json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}});
        assert_eq!(waiting_ids(&done), None);
        assert_eq!(waiting_ids(&json!({"type": "session.status_running"})), None);
    }

    #[test]
    fn messages_name_the_calls() {
        let m = lost_calls_message(&["sevt_a".into()], "the server restarted");
        assert!(m.starts_with("the server restarted; tool call `sevt_a` was waiting for the user"), "{m}");
        let m = lost_calls_message(&["sevt_a".into(), "sevt_b".into()], "x");
        assert!(m.contains("tool calls `sevt_a`, `sevt_b` were waiting"), "{m}");
    }
}
