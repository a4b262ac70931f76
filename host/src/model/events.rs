//! Session events: what clients send (`user.*`) and what the log holds.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::common::Invalid;

/// Every event type the log can hold: what clients send (`parse_user_event`),
/// what harness plugins emit (`session::validate`) and what the host writes
/// itself. The one list; the `types[]` filter accepts exactly these, and tests
/// here and in `session::validate` keep it in step with those checks.
pub const STORED_EVENT_TYPES: &[&str] = &[
    "user.message",
    "user.interrupt",
    "user.tool_confirmation",
    "user.custom_tool_result",
    "user.tool_result",
    "agent.message",
    "agent.thinking",
    "agent.tool_use",
    "agent.tool_result",
    "agent.custom_tool_use",
    "agent.mcp_tool_use",
    "agent.mcp_tool_result",
    "agent.thread_context_compacted",
    "session.status_running",
    "session.status_idle",
    "session.status_rescheduled",
    "session.status_terminated",
    "session.error",
    "session.updated",
    "session.deleted",
    "span.model_request_start",
    "span.model_request_end",
    "user.define_outcome",
    "span.outcome_evaluation_start",
    "span.outcome_evaluation_ongoing",
    "span.outcome_evaluation_end",
];

pub fn is_stored_event_type(t: &str) -> bool {
    STORED_EVENT_TYPES.contains(&t)
}

/// Event types of the Managed Agents API (the official SDKs' session event
/// type) that Bridle never stores: delegated-thread events, system messages,
/// usage reports and workflow runs. A `types[]` filter naming one is valid
/// and simply matches nothing.
pub const UNSTORED_API_EVENT_TYPES: &[&str] = &[
    "system.message",
    "session.usage",
    "agent.thread_message_received",
    "agent.thread_message_sent",
    "session.thread_created",
    "session.thread_status_idle",
    "session.thread_status_rescheduled",
    "session.thread_status_running",
    "session.thread_status_terminated",
    "workflow_run.created",
    "workflow_run.status_running",
    "workflow_run.status_idle",
    "workflow_run.status_ended",
    "workflow_run.error",
    "workflow_run.phase_started",
    "workflow_run.phase_ended",
];

/// Whether `t` names an event type of the API (stored here or not).
pub fn is_api_event_type(t: &str) -> bool {
    is_stored_event_type(t) || UNSTORED_API_EVENT_TYPES.contains(&t)
}

/// Event types a client may send, with their fields checked strictly.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum UserEvent {
    #[serde(rename = "user.message")]
    Message { content: Vec<ContentBlock> },
    #[serde(rename = "user.interrupt")]
    Interrupt {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "user.tool_confirmation")]
    ToolConfirmation {
        tool_use_id: String,
        result: Confirmation,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deny_message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    /// A self-hosted environment's worker answers an `agent.tool_use`.
    #[serde(rename = "user.tool_result")]
    ToolResult {
        tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Vec<ContentBlock>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "user.custom_tool_result")]
    CustomToolResult {
        custom_tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Vec<ContentBlock>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    /// An outcome for the agent to work toward, graded against its rubric
    /// after each turn (see `session::outcome`).
    #[serde(rename = "user.define_outcome")]
    DefineOutcome {
        description: String,
        rubric: Rubric,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_iterations: Option<i64>,
        /// Assigned by the server when it takes the event (`outc_...`);
        /// refused from clients.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome_id: Option<String>,
    },
}

/// How an outcome is graded: inline text, or a Files API file (resolved to
/// its text when the event is taken, so the log holds what was graded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rubric {
    Text { content: String },
    File { file_id: String },
}

/// The API's default and ceiling for `max_iterations`.
pub const OUTCOME_MAX_ITERATIONS_DEFAULT: i64 = 3;
pub const OUTCOME_MAX_ITERATIONS_LIMIT: i64 = 20;

impl UserEvent {
    /// The thread an event is addressed to, when it names one.
    pub fn session_thread_id(&self) -> Option<&str> {
        match self {
            UserEvent::Interrupt { session_thread_id }
            | UserEvent::ToolConfirmation { session_thread_id, .. }
            | UserEvent::ToolResult { session_thread_id, .. }
            | UserEvent::CustomToolResult { session_thread_id, .. } => session_thread_id.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Confirmation {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContentBlock {
    Text {
        text: String,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    SearchResult {
        source: String,
        title: String,
        content: Vec<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
    },
    Redacted {},
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    Base64 { data: String, media_type: String },
    Text { data: String, media_type: String },
    Url { url: String },
    File { file_id: String },
}

impl UserEvent {
    /// The Files API files its content blocks name (`{"type": "file",
    /// "file_id"}` sources), with the field that names each.
    pub fn file_ids(&self) -> Vec<(String, String)> {
        let blocks = match self {
            UserEvent::Message { content } => content.as_slice(),
            UserEvent::CustomToolResult { content: Some(c), .. } | UserEvent::ToolResult { content: Some(c), .. } => {
                c.as_slice()
            }
            _ => &[],
        };
        blocks
            .iter()
            .enumerate()
            .filter_map(|(i, b)| match b {
                ContentBlock::Image { source: Source::File { file_id } }
                | ContentBlock::Document { source: Source::File { file_id }, .. } => {
                    Some((format!("content[{i}].source.file_id"), file_id.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

/// Parse and check one client event; `field` names it in error messages.
pub fn parse_user_event(field: &str, value: Value) -> Result<UserEvent, Invalid> {
    let ty = value.get("type").and_then(Value::as_str).map(str::to_owned);
    match ty.as_deref() {
        None => return Err(Invalid::new(format!("{field}.type: required string field is missing"))),
        Some("system.message") => {
            return Err(Invalid::new(format!("{field}: system.message is not supported by this server")));
        }
        Some(
            "user.message"
            | "user.interrupt"
            | "user.tool_confirmation"
            | "user.custom_tool_result"
            | "user.tool_result"
            | "user.define_outcome",
        ) => {}
        Some(other) => {
            return Err(Invalid::new(format!(
                "{field}.type: unknown event type `{other}`; expected one of user.message, user.interrupt, user.tool_confirmation, user.custom_tool_result, user.tool_result, user.define_outcome"
            )));
        }
    }
    // Internally tagged enums lose the error path, so `content` is checked
    // first (a list; `null` allowed on a custom tool result), then each block,
    // for messages that name the field.
    if let Some(c) = value.get("content")
        && !c.is_array()
        && !(c.is_null() && matches!(ty.as_deref(), Some("user.custom_tool_result" | "user.tool_result")))
        && matches!(ty.as_deref(), Some("user.message" | "user.custom_tool_result" | "user.tool_result"))
    {
        return Err(Invalid::new(format!("{field}.content: must be a list of content blocks")));
    }
    if let Some(Value::Array(blocks)) = value.get("content") {
        for (i, b) in blocks.iter().enumerate() {
            serde_path_to_error::deserialize::<_, ContentBlock>(b.clone())
                .map_err(|e| Invalid::new(format!("{field}.content[{i}]{}: {}", path_suffix(e.path()), e.inner())))?;
        }
    }
    if ty.as_deref() == Some("user.define_outcome")
        && let Some(r) = value.get("rubric")
    {
        serde_json::from_value::<Rubric>(r.clone()).map_err(|e| Invalid::new(format!("{field}.rubric: {e}")))?;
    }
    let ev: UserEvent = serde_path_to_error::deserialize(value)
        .map_err(|e| Invalid::new(format!("{field}{}: {}", path_suffix(e.path()), e.inner())))?;
    match &ev {
        UserEvent::Message { content } if content.is_empty() => {
            Err(Invalid::new(format!("{field}.content: must contain at least one block")))
        }
        UserEvent::ToolConfirmation { result: Confirmation::Allow, deny_message: Some(_), .. } => {
            Err(Invalid::new(format!("{field}.deny_message: only allowed when result is \"deny\"")))
        }
        UserEvent::ToolConfirmation { tool_use_id, .. }
            if !crate::ids::has_kind(tool_use_id, crate::ids::Kind::Event) =>
        {
            Err(Invalid::new(format!("{field}.tool_use_id: `{tool_use_id}` is not an event id (sevt_...)")))
        }
        UserEvent::ToolResult { tool_use_id, .. } if !crate::ids::has_kind(tool_use_id, crate::ids::Kind::Event) => {
            Err(Invalid::new(format!("{field}.tool_use_id: `{tool_use_id}` is not an event id (sevt_...)")))
        }
        UserEvent::CustomToolResult { custom_tool_use_id, .. }
            if !crate::ids::has_kind(custom_tool_use_id, crate::ids::Kind::Event) =>
        {
            Err(Invalid::new(format!(
                "{field}.custom_tool_use_id: `{custom_tool_use_id}` is not an event id (sevt_...)"
            )))
        }
        UserEvent::DefineOutcome { .. } => check_outcome(field, &ev).map(|()| ev),
        _ => Ok(ev),
    }
}

fn check_outcome(field: &str, ev: &UserEvent) -> Result<(), Invalid> {
    let UserEvent::DefineOutcome { description, rubric, max_iterations, outcome_id } = ev else { return Ok(()) };
    if outcome_id.is_some() {
        return Err(Invalid::new(format!("{field}.outcome_id: assigned by the server; do not send it")));
    }
    if description.trim().is_empty() {
        return Err(Invalid::new(format!("{field}.description: must not be empty")));
    }
    match rubric {
        Rubric::Text { content } if content.trim().is_empty() => {
            return Err(Invalid::new(format!("{field}.rubric.content: must not be empty")));
        }
        Rubric::File { file_id } if !crate::ids::has_kind(file_id, crate::ids::Kind::File) => {
            return Err(Invalid::new(format!("{field}.rubric.file_id: `{file_id}` is not a file id (file_...)")));
        }
        _ => {}
    }
    if let Some(n) = max_iterations
        && !(1..=OUTCOME_MAX_ITERATIONS_LIMIT).contains(n)
    {
        return Err(Invalid::new(format!(
            "{field}.max_iterations: must be between 1 and {OUTCOME_MAX_ITERATIONS_LIMIT}, got {n}"
        )));
    }
    Ok(())
}

/// `.a.b` for a non-empty path, `` for the root.
fn path_suffix(p: &serde_path_to_error::Path) -> String {
    let s = p.to_string();
    if s == "." { String::new() } else { format!(".{s}") }
}

/// One event as stored in a session's log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub session_id: String,
    /// Dense, 1-based position in the session's log.
    pub seq: i64,
    pub id: String,
    pub kind: String,
    pub processed_at: i64,
    /// The full wire JSON (with `id`, `type`, `processed_at`).
    pub body: String,
}

impl StoredEvent {
    /// The `session.deleted` event that ends a deleted session's live
    /// streams. It is never stored (the log is gone with the session); it
    /// takes the position after the session's last event.
    pub fn session_deleted(session_id: &str, last_seq: i64, processed_at: i64) -> StoredEvent {
        let id = crate::ids::new_id(crate::ids::Kind::Event);
        let body = serde_json::json!({
            "type": "session.deleted",
            "id": id,
            "processed_at": crate::time::rfc3339(processed_at),
        });
        StoredEvent {
            session_id: session_id.to_owned(),
            seq: last_seq + 1,
            id,
            kind: "session.deleted".into(),
            processed_at,
            body: body.to_string(),
        }
    }
}

/// An event to append: its type and fields (without `id`/`processed_at`;
/// the store assigns them unless `id` is already set).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Option<String>,
    pub body: serde_json::Map<String, Value>,
}

impl NewEvent {
    pub fn from_value(v: Value) -> Option<NewEvent> {
        match v {
            Value::Object(mut body) => {
                let id = body.remove("id").and_then(|v| v.as_str().map(str::to_owned));
                body.remove("processed_at");
                body.get("type")?.as_str()?;
                Some(NewEvent { id, body })
            }
            _ => None,
        }
    }

    pub fn kind(&self) -> &str {
        self.body.get("type").and_then(Value::as_str).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unsupported_and_unknown_types_are_named() {
        let e = parse_user_event("events[0]", json!({"type": "system.message"})).unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        let e = parse_user_event("events[0]", json!({"type": "user.dance"})).unwrap_err();
        assert!(e.to_string().contains("unknown event type `user.dance`"), "{e}");
        let e =
            parse_user_event("events[1]", json!({"type": "user.message", "content": [{"type": "text"}]})).unwrap_err();
        assert!(e.to_string().starts_with("events[1].content[0]"), "{e}");
    }

    #[test]
    fn user_types_in_the_list_are_the_ones_clients_may_send() {
        for t in STORED_EVENT_TYPES.iter().filter(|t| t.starts_with("user.")) {
            let e = parse_user_event("e", json!({"type": t})).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(!e.contains("unknown event type") && !e.contains("not supported"), "{t}: {e}");
        }
        assert!(!is_stored_event_type("user.dance"));
        assert!(parse_user_event("e", json!({"type": "user.dance"})).is_err());
    }

    #[test]
    fn outcome_fields_are_checked_by_name() {
        let ok = json!({"type": "user.define_outcome", "description": "a poem",
                        "rubric": {"type": "text", "content": "rhymes"}, "max_iterations": 20});
        assert!(parse_user_event("e", ok).is_ok());
        let file =
            json!({"type": "user.define_outcome", "description": "d", "rubric": {"type": "file", "file_id": "file_1"}});
        assert!(parse_user_event("e", file).is_ok());
        let cases = [
            (json!({"description": "d"}), "rubric"),
            (json!({"description": " ", "rubric": {"type": "text", "content": "r"}}), "e.description"),
            (json!({"description": "d", "rubric": {"type": "text", "content": ""}}), "e.rubric.content"),
            (json!({"description": "d", "rubric": {"type": "file", "file_id": "x"}}), "e.rubric.file_id"),
            (json!({"description": "d", "rubric": {"type": "url", "url": "x"}}), "e.rubric"),
            (
                json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "max_iterations": 0}),
                "e.max_iterations",
            ),
            (
                json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "max_iterations": 21}),
                "e.max_iterations",
            ),
            (
                json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "outcome_id": "outc_1"}),
                "e.outcome_id",
            ),
            (json!({"description": "d", "rubric": {"type": "text", "content": "r"}, "grade": 1}), "grade"),
        ];
        for (mut body, field) in cases {
            body["type"] = json!("user.define_outcome");
            let e = parse_user_event("e", body.clone()).expect_err(&body.to_string()).to_string();
            assert!(e.contains(field), "{body}: {e}");
        }
    }

    #[test]
    fn valid_events_parse() {
        assert!(
            parse_user_event("e", json!({"type": "user.message", "content": [{"type": "text", "text": "hi"}]})).is_ok()
        );
        assert!(parse_user_event("e", json!({"type": "user.interrupt"})).is_ok());
        let bad =
            json!({"type": "user.tool_confirmation", "tool_use_id": "sevt_1", "result": "allow", "deny_message": "no"});
        assert!(parse_user_event("e", bad).is_err());
    }
}
