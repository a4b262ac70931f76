//! Session threads (`BetaManagedAgentsSessionThread`): every session has one
//! primary thread, the agent loop the session's own status, log and stream
//! describe. Its id is the session's with the thread prefix, so it needs no
//! storage of its own and is the same on every node and after a restart.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::sessions::{Session, SessionStatus};
use crate::ids::Kind;

/// A session thread as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionThread {
    pub id: String,
    /// The agent the thread runs (`BetaManagedAgentsSessionThreadAgent`).
    pub agent: Value,
    #[schema(required)]
    pub archived_at: Option<String>,
    pub created_at: String,
    /// The thread that spawned this one; `null` for the primary thread.
    #[schema(required)]
    pub parent_thread_id: Option<String>,
    pub session_id: String,
    #[schema(required)]
    pub stats: Option<Value>,
    pub status: SessionStatus,
    #[serde(rename = "type")]
    pub kind: String,
    pub updated_at: String,
    #[schema(required)]
    pub usage: Option<Value>,
    #[schema(required)]
    pub workflow_run_id: Option<String>,
}

/// The primary thread's id: the session id's body under the thread prefix.
pub fn primary_thread_id(session_id: &str) -> String {
    let body = session_id.strip_prefix(Kind::Session.prefix()).unwrap_or(session_id);
    format!("{}{body}", Kind::SessionThread.prefix())
}

/// The primary thread of a session, as its status, timing and usage say.
pub fn primary(s: &Session) -> SessionThread {
    SessionThread {
        id: primary_thread_id(&s.id),
        agent: thread_agent(&s.agent),
        archived_at: s.archived_at.clone(),
        created_at: s.created_at.clone(),
        parent_thread_id: None,
        session_id: s.id.clone(),
        stats: Some(s.stats.clone()),
        status: s.status,
        kind: "session_thread".into(),
        updated_at: s.updated_at.clone(),
        usage: Some(s.usage.clone()),
        workflow_run_id: None,
    }
}

/// A thread's agent is the session's agent snapshot without the roster
/// (read that from `Session.agent`), with the execution principal every
/// Bridle run has: no customer-named one.
pub fn thread_agent(session_agent: &Value) -> Value {
    let mut agent = session_agent.clone();
    if let Some(o) = agent.as_object_mut() {
        o.remove("multiagent");
        o.entry("execution_identity").or_insert_with(|| serde_json::json!({"type": "service_account"}));
    }
    agent
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn session(status: SessionStatus) -> Session {
        Session {
            id: "sesn_01ABCDEF".into(),
            agent: json!({"id": "agent_01X", "type": "agent", "version": 2, "name": "a", "multiagent": null}),
            archived_at: None,
            budget: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            environment_id: "env_01X".into(),
            metadata: Default::default(),
            outcome_evaluations: vec![],
            resources: vec![],
            stats: json!({"active_seconds": 1.0, "duration_seconds": 2.0}),
            status,
            title: None,
            kind: "session".into(),
            updated_at: "2026-01-01T00:00:02Z".into(),
            usage: json!({"input_tokens": 5}),
            vault_ids: vec![],
        }
    }

    #[test]
    fn the_primary_thread_mirrors_its_session() {
        for status in [SessionStatus::Idle, SessionStatus::Running, SessionStatus::Terminated] {
            let t = primary(&session(status));
            assert_eq!(t.id, "sthr_01ABCDEF");
            assert!(crate::ids::has_kind(&t.id, Kind::SessionThread));
            assert_eq!(t.status, status);
            assert_eq!(t.session_id, "sesn_01ABCDEF");
            assert_eq!(t.parent_thread_id, None);
            assert_eq!(t.usage, Some(json!({"input_tokens": 5})));
            assert_eq!(t.updated_at, "2026-01-01T00:00:02Z");
        }
    }

    #[test]
    fn the_thread_agent_drops_the_roster_and_names_the_principal() {
        let a = thread_agent(&json!({"id": "agent_01X", "multiagent": {"type": "coordinator"}, "version": 1}));
        assert_eq!(a, json!({"id": "agent_01X", "version": 1, "execution_identity": {"type": "service_account"}}));
    }
}
