//! Sessions: one agent at work in one environment.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::agents::{McpServer, ModelParam, SkillParam, ToolParam};
use super::common::Invalid;
use super::common::{Metadata, MetadataPatch, Patch, Validate, check_len, check_metadata};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AgentRef {
    Id(String),
    Object(AgentRefObject),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentRefObject {
    Agent {
        id: String,
        #[serde(default)]
        version: Option<i64>,
    },
    AgentWithOverrides {
        id: String,
        #[serde(default)]
        version: Option<i64>,
        #[serde(default)]
        model: Option<ModelParam>,
        #[serde(default, with = "::serde_with::rust::double_option")]
        #[schema(value_type = Option<String>)]
        system: Patch<String>,
        #[serde(default)]
        tools: Option<Vec<ToolParam>>,
        #[serde(default)]
        mcp_servers: Option<Vec<McpServer>>,
        #[serde(default)]
        skills: Option<Vec<SkillParam>>,
    },
}

impl AgentRef {
    pub fn id(&self) -> &str {
        match self {
            AgentRef::Id(id) => id,
            AgentRef::Object(AgentRefObject::Agent { id, .. })
            | AgentRef::Object(AgentRefObject::AgentWithOverrides { id, .. }) => id,
        }
    }

    pub fn version(&self) -> Option<i64> {
        match self {
            AgentRef::Id(_) => None,
            AgentRef::Object(AgentRefObject::Agent { version, .. })
            | AgentRef::Object(AgentRefObject::AgentWithOverrides { version, .. }) => *version,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Budget {
    Limit { max_list_cost: Money },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount: String,
    pub currency: String,
}

impl Budget {
    pub fn validate(&self) -> Result<(), Invalid> {
        let Budget::Limit { max_list_cost } = self;
        if max_list_cost.currency != "USD" {
            return Err(Invalid::new("budget.max_list_cost.currency: only \"USD\" is supported"));
        }
        if max_list_cost.amount.is_empty() || !max_list_cost.amount.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::new(
                "budget.max_list_cost.amount: must be an integer decimal string in minor units, e.g. \"2500\"",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionCreate {
    pub agent: AgentRef,
    pub environment_id: String,
    #[serde(default)]
    pub budget: Option<Budget>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<super::events::UserEvent>>)]
    pub initial_events: Option<Vec<Value>>,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataSchema>)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub resources: Option<Vec<Value>>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub vault_ids: Option<Vec<String>>,
}

impl Validate for SessionCreate {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
            super::vaults::check_not_reserved("session", m.keys())?;
        }
        if let Some(t) = &self.title {
            check_len("title", t, 0, 512)?;
        }
        if let Some(b) = &self.budget {
            b.validate()?;
        }
        if let Some(ev) = &self.initial_events
            && ev.len() > 50
        {
            return Err(Invalid::new("initial_events: at most 50 events are allowed"));
        }
        if let Some(v) = &self.vault_ids
            && v.len() > 20
        {
            return Err(Invalid::new("vault_ids: at most 20 vaults are allowed"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionUpdate {
    #[serde(default)]
    pub agent: Option<SessionAgentUpdate>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<Budget>)]
    pub budget: Patch<Budget>,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataPatchSchema>)]
    pub metadata: Option<MetadataPatch>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<String>)]
    pub title: Patch<String>,
    #[serde(default)]
    pub vault_ids: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionAgentUpdate {
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<Vec<ToolParam>>)]
    pub tools: Patch<Vec<ToolParam>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<Vec<McpServer>>)]
    pub mcp_servers: Patch<Vec<McpServer>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Idle,
    Running,
    Rescheduling,
    Terminated,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Idle => "idle",
            SessionStatus::Running => "running",
            SessionStatus::Rescheduling => "rescheduling",
            SessionStatus::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "idle" => SessionStatus::Idle,
            "running" => SessionStatus::Running,
            "rescheduling" => SessionStatus::Rescheduling,
            "terminated" => SessionStatus::Terminated,
            _ => return None,
        })
    }
}

/// A session as returned by the API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub id: String,
    pub agent: Value,
    #[schema(required)]
    pub archived_at: Option<String>,
    #[schema(required)]
    pub budget: Option<Budget>,
    pub created_at: String,
    pub environment_id: String,
    #[schema(value_type = super::common::MetadataSchema)]
    pub metadata: Metadata,
    pub outcome_evaluations: Vec<Value>,
    pub resources: Vec<Value>,
    pub stats: Value,
    pub status: SessionStatus,
    #[schema(required)]
    pub title: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub updated_at: String,
    pub usage: Value,
    pub vault_ids: Vec<String>,
}

/// A session's timing as the API reports it (`stats`), from what the store
/// keeps: `active_seconds` is the time spent in `running` (closed spans plus
/// the open one), `duration_seconds` the time since creation, frozen at the
/// last update once the session is terminated. Pure: `now` is given.
pub fn session_stats(
    status: SessionStatus,
    created_micros: i64,
    updated_micros: i64,
    active_micros: i64,
    running_since: i64,
    now: i64,
) -> Value {
    let open = if running_since > 0 { (now - running_since).max(0) } else { 0 };
    let end = if status == SessionStatus::Terminated { updated_micros } else { now };
    let secs = |micros: i64| micros.max(0) as f64 / 1e6;
    serde_json::json!({
        "active_seconds": secs(active_micros + open),
        "duration_seconds": secs(end - created_micros),
    })
}

/// How a session's model traffic is wired: chosen once at create and kept
/// with the session (never returned by the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HarnessBinding {
    /// The harness engine name (`claude`, `codex`, `openai-agents`, ...).
    pub engine: String,
    /// The LLM vault and its one credential, if a vault selected the harness.
    pub vault_id: Option<String>,
    pub credential_id: Option<String>,
    /// Upstream model base URL, if set on the vault (or the server default).
    pub llm_base_url: Option<String>,
    /// The sandbox driver the session's environment chose when the session
    /// was created (`bridle.sandbox_driver`); `None`: the server's
    /// `sessions.sandbox_driver`. Kept, so a later change to the
    /// environment never moves a session's workspace to another driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_driver: Option<crate::config::SandboxDriverKind>,
    /// A coordinator's further harnesses (one LLM vault each), which its
    /// roster agents naming them (`bridle.engine`) run on; never the
    /// session's own engine, one per engine, their own `delegates` empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegates: Vec<HarnessBinding>,
}

impl HarnessBinding {
    /// The binding a runtime on `engine` uses: this one for the session's
    /// engine, else the delegate's (in the session's sandbox driver).
    pub fn for_engine(&self, engine: &str) -> Option<HarnessBinding> {
        if engine == self.engine {
            return Some(self.clone());
        }
        let d = self.delegates.iter().find(|d| d.engine == engine)?;
        Some(HarnessBinding { sandbox_driver: self.sandbox_driver, delegates: Vec::new(), ..d.clone() })
    }
}

#[cfg(test)]
mod stats_tests {
    use super::*;

    #[test]
    fn stats_count_running_spans_and_freeze_when_terminated() {
        use SessionStatus::*;
        // (status, created, updated, active, running_since, now) → (active s, duration s)
        let cases = [
            // A new session: nothing active, its age so far.
            (Idle, 0, 0, 0, 0, 2_500_000, 0.0, 2.5),
            // Running for 1 s now, 3 s in closed spans before.
            (Running, 0, 9_000_000, 3_000_000, 9_000_000, 10_000_000, 4.0, 10.0),
            // Idle again: only closed spans count; the age goes on.
            (Idle, 0, 9_000_000, 4_000_000, 0, 20_000_000, 4.0, 20.0),
            // Terminated: the duration stops at the final update.
            (Terminated, 1_000_000, 11_000_000, 4_000_000, 0, 99_000_000, 4.0, 10.0),
            // A clock that went back never makes a negative figure.
            (Running, 5_000_000, 5_000_000, 0, 6_000_000, 4_000_000, 0.0, 0.0),
        ];
        for (status, created, updated, active, since, now, want_active, want_duration) in cases {
            let got = session_stats(status, created, updated, active, since, now);
            assert_eq!(
                (got["active_seconds"].as_f64().unwrap(), got["duration_seconds"].as_f64().unwrap()),
                (want_active, want_duration),
                "{status:?} created {created} updated {updated} active {active} since {since} now {now}"
            );
        }
    }
}
