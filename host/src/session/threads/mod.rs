//! Delegated threads: a coordinator agent's session runs its roster agents
//! as child threads ([`delegation`] decides, [`child`] runs one).

pub mod child;
pub mod delegation;

use serde_json::{Value, json};

use super::Sessions;
use crate::model::multiagent;
use crate::model::sessions::SessionStatus;
use delegation::RosterAgent;

/// The roster of a session's agent snapshot, each entry the agent's own
/// snapshot at its pinned version; `None` for an agent that coordinates no one.
pub(crate) async fn roster(host: &Sessions, agent: &Value) -> anyhow::Result<Option<Vec<RosterAgent>>> {
    let Some(stored) = agent.get("multiagent").filter(|m| multiagent::is_coordinator(Some(m))) else {
        return Ok(None);
    };
    let mut agents = Vec::new();
    let mut engines = Vec::new();
    for (id, version) in multiagent::roster(stored) {
        match host.store.get_agent(&id, Some(version)).await? {
            Some(a) => {
                engines.push(crate::model::agent_keys::engine(&a.metadata).map(str::to_owned));
                agents.push(a.session_snapshot());
            }
            None => anyhow::bail!("roster agent `{id}` version {version} no longer exists"),
        }
    }
    let mut roster = delegation::name_roster(agents);
    for (agent, engine) in roster.iter_mut().zip(engines) {
        agent.engine = engine;
    }
    Ok(Some(roster))
}

/// The change that terminates a thread.
fn terminated() -> crate::store::ThreadChange {
    crate::store::ThreadChange { status: Some(SessionStatus::Terminated), ..Default::default() }
}

/// A runner takes a session over (after a crash or a restart): child threads
/// it finds running lost their runtimes with the node. They end, terminated,
/// with the reason in their own log; the coordinator's resumed turn hears of
/// it when its runtime calls again.
pub(crate) async fn end_orphans(host: &Sessions, session_id: &str, epoch: i64) -> anyhow::Result<()> {
    let threads = host.store.list_threads(session_id).await?;
    for (_, t) in threads.into_iter().filter(|(_, t)| t.status == SessionStatus::Running) {
        let name = t.agent.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        host.store.update_thread(&t.id, terminated()).await?;
        let message = "the server running this thread stopped before its turn ended; the thread is terminated";
        let error = json!({"type": "session.error",
                           "error": {"type": "unknown_error", "message": message, "retry_status": {"type": "terminal"}}});
        let ended = delegation::status_terminated(&t.id, &name);
        let new = [error, ended.clone()].into_iter().filter_map(crate::model::events::NewEvent::from_value).collect();
        let stored = host.store.append_thread_events(&t.id, new).await?;
        host.bus.publish(&t.id, &stored);
        let new = crate::model::events::NewEvent::from_value(ended).into_iter().collect();
        let stored = host.store.runner_commit(session_id, epoch, None, None, None, new).await?;
        host.bus.publish(session_id, &stored);
        tracing::info!(thread_id = %t.id, "delegated thread left running by a stopped server: terminated");
    }
    Ok(())
}
