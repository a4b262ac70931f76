//! Tool calls of a self-hosted environment's session: they run on a worker
//! (the SDKs' `EnvironmentWorker`), not in a Bridle sandbox. The call is
//! already in the log as an allowed `agent.tool_use`; this task makes sure
//! the session has a work item a worker can poll, then waits for the
//! worker's `user.tool_result` (the runner hands it over), watching the
//! item's lease meanwhile: a worker that dies mid-call lets its lease lapse,
//! the item goes back to the queue and the next worker runs the call again
//! (the SDK runs every allowed call without a result); a second lapse during
//! the same call ends it with an error result (`model::work::on_lapse`).
//! A call no worker answers within `self_hosted.tool_timeout_secs` ends with
//! an error result too: the SDK's worker silently skips a tool it does not
//! have, so its silence is the only sign.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::Sessions;
use super::engine::ToolOutcome;
use crate::ids::{Kind, new_id};
use crate::model::work::{LapseVerdict, WorkItem, WorkState, on_lapse};

/// How often the lease of the item serving a waiting call is looked at.
const WATCH: Duration = Duration::from_millis(500);

/// The worker's answer to one call, as the runner passes it on.
pub type Answer = oneshot::Sender<ToolOutcome>;

/// A `user.tool_result` body as the outcome of its call.
pub fn outcome_of(tool_use_id: &str, body: &Value) -> ToolOutcome {
    let text = body
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| match b.get("type").and_then(Value::as_str) {
                    Some("text") => b.get("text").and_then(Value::as_str).map(str::to_owned),
                    Some(other) => Some(format!("[{other} block]")),
                    None => None,
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let is_error = body.get("is_error").and_then(Value::as_bool).unwrap_or(false);
    ToolOutcome { id: tool_use_id.to_owned(), content: text, is_error, exit_code: None }
}

/// The error result of a call no worker answered in time.
fn unanswered(call_id: &str, tool: &str, environment_id: &str, waited: Duration) -> ToolOutcome {
    let content = format!(
        "no worker of environment `{environment_id}` answered this `{tool}` call within {} s \
         (self_hosted.tool_timeout_secs): the environment's workers may not offer the `{tool}` tool, or none is running",
        waited.as_secs()
    );
    ToolOutcome { id: call_id.to_owned(), content, is_error: true, exit_code: None }
}

/// Wait for a worker to answer `call_id` (a call of `tool`) of `session_id`.
pub async fn run(
    host: Arc<Sessions>,
    session_id: String,
    environment_id: String,
    (call_id, tool): (String, String),
    answer: oneshot::Receiver<ToolOutcome>,
) -> ToolOutcome {
    let mut answer = answer;
    let timeout = Duration::from_secs(host.config.self_hosted.tool_timeout_secs);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut lapses = 0u32;
    // The lease (by its claim count) whose lapse was counted last.
    let mut counted: Option<i64> = None;
    loop {
        match watch(&host, &session_id, &environment_id).await {
            Ok(Some(lapsed)) if counted != Some(lapsed.claims) => {
                counted = Some(lapsed.claims);
                lapses += 1;
                tracing::warn!(work_id = %lapsed.id, tool_use_id = %call_id, lapses, "a worker's lease lapsed during a tool call");
                if on_lapse(lapses) == LapseVerdict::GiveUp {
                    let content = format!(
                        "the tool call was lost: {lapses} workers of environment `{environment_id}` stopped \
                         heartbeating while running it"
                    );
                    return ToolOutcome { id: call_id, content, is_error: true, exit_code: None };
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "watching the session's work item failed"),
        }
        tokio::select! {
            got = &mut answer => {
                return got.unwrap_or_else(|_| ToolOutcome::interrupted(&call_id));
            }
            () = tokio::time::sleep(WATCH) => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(tool_use_id = %call_id, tool, "no worker answered the tool call in time");
                return unanswered(&call_id, &tool, &environment_id, timeout);
            }
        }
    }
}

/// Make sure the session has a work item a worker serves or can poll;
/// answer the item if its lease has just lapsed.
async fn watch(host: &Sessions, session_id: &str, environment_id: &str) -> anyhow::Result<Option<WorkItem>> {
    let now = host.store.work_clock().await?;
    let open = host.store.open_work_of_session(session_id).await?;
    match open.iter().find(|i| i.state_at(now) != WorkState::Stopped) {
        Some(it) if it.lapsed(now) && it.claims > 0 => Ok(Some(it.clone())),
        Some(_) => Ok(None),
        None => {
            let ttl = i64::try_from(host.config.self_hosted.lease_secs).unwrap_or(300);
            let it = WorkItem::new(new_id(Kind::Work), environment_id, session_id, ttl, now);
            host.store.insert_work(&it).await?;
            host.bus.work_ready(environment_id);
            tracing::info!(work_id = %it.id, "work item queued for the session's tool calls");
            Ok(None)
        }
    }
}

/// The user interrupted the turn: ask the worker serving the session to
/// stop (its next heartbeat ends it).
pub async fn stop_work(host: &Sessions, session_id: &str) {
    let Ok(open) = host.store.open_work_of_session(session_id).await else { return };
    for it in open {
        let Ok(now) = host.store.work_clock().await else { return };
        if let Ok(stopped) = it.stop(false, now)
            && stopped != it
        {
            match host.store.save_work(&stopped, it.version).await {
                Ok(true) => {
                    tracing::info!(work_id = %it.id, state = stopped.state.as_str(), "work item stop requested")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "stopping the session's work item failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_result_body_becomes_the_outcome() {
        let body = json!({"type": "user.tool_result", "tool_use_id": "sevt_1",
                          "content": [{"type": "text", "text": "a"}, {"type": "image", "source": {}}, {"type": "text", "text": "b"}],
                          "is_error": true});
        let o = outcome_of("sevt_1", &body);
        assert_eq!(o.content, "a\n[image block]\nb");
        assert!(o.is_error);
        let bare = outcome_of("sevt_2", &json!({"type": "user.tool_result", "tool_use_id": "sevt_2"}));
        assert_eq!((bare.content.as_str(), bare.is_error), ("", false));
    }

    #[test]
    fn an_unanswered_call_names_the_tool_and_the_setting() {
        let o = unanswered("sevt_3", "web_fetch", "env_1", Duration::from_secs(600));
        assert!(o.is_error);
        assert_eq!(o.id, "sevt_3");
        for part in ["`env_1`", "`web_fetch` call within 600 s", "self_hosted.tool_timeout_secs"] {
            assert!(o.content.contains(part), "{part} missing: {}", o.content);
        }
    }
}
