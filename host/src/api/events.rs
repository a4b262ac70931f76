//! `/v1/sessions/{id}/events`: send user events, list the log.

use axum::Json;
use axum::extract::{Path, Request, State};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::extract::{QueryParams, check_id, read_json};
use super::pagination::{parse_limit, parse_order, seq_position, seq_token};
use crate::ids::Kind;
use crate::model::events::{NewEvent, STORED_EVENT_TYPES, UserEvent, is_api_event_type, parse_user_event};
use crate::model::pricing;
use crate::model::sessions::SessionStatus;
use crate::store::{EventFilter, Order, WaitingOnUser};

/// Events accepted in one request.
const MAX_EVENTS_PER_SEND: usize = 50;

/// A message to a session whose list cost reached its budget would start a
/// turn that ends at once: refuse it, saying how to go on.
fn check_budget_left(st: &AppState, s: &crate::model::sessions::Session) -> ApiResult<()> {
    let Some(budget) = &s.budget else { return Ok(()) };
    let Some(spent) = super::sessions::spent(st, s) else { return Ok(()) };
    if spent >= pricing::budget_limit(budget) {
        return Err(ApiError::invalid(format!(
            "session `{}` reached its budget (list cost {} of {} cents): raise budget.max_list_cost with a \
             session update, or remove the budget, to send more messages",
            s.id,
            spent.cents_ceil(),
            pricing::budget_limit(budget).cents_ceil()
        )));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/sessions/{session_id}/events",
    tag = "events",
    operation_id = "events_send",
    summary = "Send user events to a session",
    params(
        ("session_id" = String, Path)
    ),
    request_body = super::openapi::SendEvents,
    responses((status = 200, description = "OK", body = super::openapi::SentEvents))
)]
pub async fn send(State(st): State<AppState>, Path(id): Path<String>, req: Request) -> ApiResult<Json<Value>> {
    let who = req.extensions().get::<Principal>().cloned();
    // The body first: an early answer would leave it unread on the connection.
    let body = read_json(req, &st).await;
    check_id(Kind::Session, &id)?;
    let body = body?;
    let obj = body.as_object().ok_or_else(|| ApiError::invalid("request body must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "events") {
        return Err(ApiError::invalid(format!("{k}: unknown field; the body is {{\"events\": [...]}}")));
    }
    let raw = match obj.get("events") {
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(ApiError::invalid("events: must be an array of events")),
        None => return Err(ApiError::invalid("events: required field is missing")),
    };
    if raw.is_empty() {
        return Err(ApiError::invalid("events: must contain at least one event"));
    }
    if raw.len() > MAX_EVENTS_PER_SEND {
        return Err(ApiError::invalid(format!(
            "events: at most {MAX_EVENTS_PER_SEND} events per request, got {}",
            raw.len()
        )));
    }
    let parsed = raw
        .into_iter()
        .enumerate()
        .map(|(i, v)| parse_user_event(&format!("events[{i}]"), v))
        .collect::<Result<Vec<_>, _>>()?;

    if let Some(Principal::Work { work_id, .. }) = &who
        && let Some((i, _)) = parsed
            .iter()
            .enumerate()
            .find(|(_, e)| !matches!(e, UserEvent::ToolResult { .. } | UserEvent::CustomToolResult { .. }))
    {
        return Err(ApiError::Permission(format!(
            "events[{i}]: the session token of work item `{work_id}` may only send user.tool_result and \
             user.custom_tool_result events"
        )));
    }
    let session = super::sessions::load(&st, &id).await?;
    if session.session.archived_at.is_some() {
        return Err(ApiError::conflict(format!("session `{id}` is archived and accepts no new events")));
    }
    if session.session.status == SessionStatus::Terminated {
        return Err(ApiError::conflict(format!("session `{id}` is terminated and accepts no new events")));
    }
    if parsed.iter().any(|e| matches!(e, UserEvent::Message { .. } | UserEvent::DefineOutcome { .. })) {
        check_budget_left(&st, &session.session)?;
    }
    let mut answered = Vec::new();
    for (i, ev) in parsed.iter().enumerate() {
        super::threads::check_thread_field(&id, &format!("events[{i}].session_thread_id"), ev.session_thread_id())?;
        if let UserEvent::ToolResult { tool_use_id, .. } = ev {
            check_remote_call(&st, &session.session, i, tool_use_id, &mut answered).await?;
        }
        check_reference(&st, &id, i, ev, &mut answered).await?;
        for (field, file_id) in ev.file_ids() {
            super::resources::check_file(&st, Some(&id), &format!("events[{i}].{field}"), &file_id).await?;
        }
    }
    let mut taken = Vec::with_capacity(parsed.len());
    for (i, ev) in parsed.into_iter().enumerate() {
        taken.push(super::outcomes::take(&st, &id, &format!("events[{i}]"), ev).await?);
    }
    let events = taken
        .into_iter()
        .map(|e| serde_json::to_value(e).ok().and_then(NewEvent::from_value))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("user event did not serialize to an object")))?;
    let stored = st.store.append_events(&id, events, true).await?;
    st.bus.publish(&id, &stored);
    st.wake(&id);
    let data = stored
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.body).map_err(|e| ApiError::Internal(e.into())))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({ "data": data })))
}

/// A `user.tool_result` answers a tool call of a self-hosted environment's
/// session that a worker is running: an allowed `agent.tool_use` of this
/// session (or an asked one the user allowed) with no result yet, in the
/// turn in progress.
async fn check_remote_call(
    st: &AppState,
    s: &crate::model::sessions::Session,
    i: usize,
    target: &str,
    answered: &mut Vec<String>,
) -> ApiResult<()> {
    let env = super::environments::load(st, &s.environment_id).await?;
    if !env.doc.config.is_self_hosted() {
        return Err(ApiError::invalid(format!(
            "events[{i}]: user.tool_result is only valid in self_hosted environments; session `{}` runs in cloud \
             environment `{}`, whose tools Bridle runs itself",
            s.id, s.environment_id
        )));
    }
    let not_waiting = |why: &str| {
        ApiError::invalid(format!(
            "events[{i}].tool_use_id: `{target}` is not a pending tool call of session `{}`: {why}",
            s.id
        ))
    };
    let Some(call) = st.store.get_event(&s.id, target).await? else {
        return Err(not_waiting("no such event in the session"));
    };
    if call.kind != "agent.tool_use" {
        return Err(not_waiting(&format!("it is a {}, not an agent.tool_use", call.kind)));
    }
    let body: Value = serde_json::from_str(&call.body).map_err(|e| ApiError::Internal(e.into()))?;
    let confirmed = || async {
        let filter = EventFilter { types: vec!["user.tool_confirmation".into()], ..EventFilter::default() };
        let (later, _) = st.store.list_events(&s.id, &filter, Order::Asc, Some(call.seq), 1000).await?;
        Ok::<_, ApiError>(later.iter().any(|e| {
            serde_json::from_str::<Value>(&e.body).is_ok_and(|b| {
                b.get("tool_use_id").and_then(Value::as_str) == Some(target)
                    && b.get("result").and_then(Value::as_str) == Some("allow")
            })
        }))
    };
    match body.get("evaluated_permission").and_then(Value::as_str) {
        Some("allow") => {}
        Some("ask") if confirmed().await? => {}
        Some("ask") => return Err(not_waiting("the call waits for the user's confirmation")),
        _ => return Err(not_waiting("the call was not allowed to run")),
    }
    let results =
        EventFilter { types: vec!["agent.tool_result".into(), "user.tool_result".into()], ..EventFilter::default() };
    let (later, _) = st.store.list_events(&s.id, &results, Order::Asc, Some(call.seq), 1000).await?;
    let done = later.iter().any(|e| {
        serde_json::from_str::<Value>(&e.body)
            .ok()
            .and_then(|b| b.get("tool_use_id").and_then(Value::as_str).map(|t| t == target))
            == Some(true)
    });
    if done || answered.iter().any(|a| a == target) {
        return Err(not_waiting("it has a result already"));
    }
    if s.status != SessionStatus::Running {
        return Err(not_waiting("its turn has ended"));
    }
    answered.push(target.to_owned());
    Ok(())
}

/// A confirmation or custom tool result must answer a tool use of this
/// session that is waiting for it (`answered`: targets of earlier events of
/// the same request).
async fn check_reference(
    st: &AppState,
    session_id: &str,
    i: usize,
    ev: &UserEvent,
    answered: &mut Vec<String>,
) -> ApiResult<()> {
    let (field, target, kinds): (&str, &str, &[&str]) = match ev {
        UserEvent::ToolConfirmation { tool_use_id, .. } => {
            ("tool_use_id", tool_use_id, &["agent.tool_use", "agent.mcp_tool_use"])
        }
        UserEvent::CustomToolResult { custom_tool_use_id, .. } => {
            ("custom_tool_use_id", custom_tool_use_id, &["agent.custom_tool_use"])
        }
        _ => return Ok(()),
    };
    match st.store.get_event(session_id, target).await? {
        Some(e) if kinds.contains(&e.kind.as_str()) => {
            if answered.iter().any(|a| a == target)
                || !pending_answers(st, session_id).await?.iter().any(|p| p == target)
            {
                return Err(ApiError::invalid(format!(
                    "events[{i}].{field}: {} `{target}` is not waiting for an answer (it was answered already, \
                     or its turn ended)",
                    e.kind
                )));
            }
            answered.push(target.to_owned());
            Ok(())
        }
        Some(e) => Err(ApiError::invalid(format!(
            "events[{i}].{field}: event `{target}` is a {}, not {}",
            e.kind,
            kinds.join(" or ")
        ))),
        None => Err(ApiError::invalid(format!("events[{i}].{field}: no event `{target}` in session `{session_id}`"))),
    }
}

/// Tool uses waiting on the user, from the log: the `event_ids` of the last
/// status event if it is `status_idle` `requires_action`, less those answered
/// since (answers the runner has not taken yet).
async fn pending_answers(st: &AppState, session_id: &str) -> ApiResult<Vec<String>> {
    let Some(WaitingOnUser { seq, ids: mut pending }) = st.store.waiting_on_user(session_id).await? else {
        return Ok(Vec::new());
    };
    let answers = EventFilter {
        types: vec!["user.tool_confirmation".into(), "user.custom_tool_result".into()],
        ..EventFilter::default()
    };
    let (since, _) = st.store.list_events(session_id, &answers, Order::Asc, Some(seq), 1000).await?;
    for e in since {
        let body: Value = serde_json::from_str(&e.body).map_err(|e| ApiError::Internal(e.into()))?;
        let target = body.get("tool_use_id").or_else(|| body.get("custom_tool_use_id")).and_then(Value::as_str);
        pending.retain(|p| Some(p.as_str()) != target);
    }
    Ok(pending)
}

#[utoipa::path(
    get,
    path = "/sessions/{session_id}/events",
    tag = "events",
    operation_id = "events_list",
    summary = "List a session's events",
    params(
        ("session_id" = String, Path),
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 1000, default 1000."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response."),
        ("order" = Option<String>, Query, description = "`asc` (default) or `desc` by position in the log."),
        ("types[]" = Option<Vec<String>>, Query, description = "Only events of these types; an unknown type is a 400."),
        ("created_at[gt]" = Option<String>, Query, description = "RFC 3339 bound on `processed_at`."),
        ("created_at[gte]" = Option<String>, Query, description = "RFC 3339 bound on `processed_at`."),
        ("created_at[lt]" = Option<String>, Query, description = "RFC 3339 bound on `processed_at`."),
        ("created_at[lte]" = Option<String>, Query, description = "RFC 3339 bound on `processed_at`.")
    ),
    responses((status = 200, description = "OK", body = super::pagination::Page<super::openapi::SessionEvent>))
)]
pub async fn list(State(st): State<AppState>, Path(id): Path<String>, q: QueryParams) -> ApiResult<Json<Value>> {
    q.allow(&[
        "limit",
        "page",
        "order",
        "types",
        "created_at[gt]",
        "created_at[gte]",
        "created_at[lt]",
        "created_at[lte]",
    ])?;
    super::sessions::load(&st, &id).await?;
    let order = parse_order(&q, Order::Asc)?;
    let limit = parse_limit(&q, 1000, 1000)?;
    let types = q.many("types");
    if let Some(bad) = types.iter().find(|t| !is_api_event_type(t)) {
        return Err(ApiError::invalid(format!(
            "types[]: unknown event type `{bad}`; expected one of {}",
            STORED_EVENT_TYPES.join(", ")
        )));
    }
    let filter = EventFilter {
        types,
        processed_gt: q.time("created_at[gt]")?,
        processed_gte: q.time("created_at[gte]")?,
        processed_lt: q.time("created_at[lt]")?,
        processed_lte: q.time("created_at[lte]")?,
    };
    let (events, more) = st.store.list_events(&id, &filter, order, seq_position(&q, order)?, limit).await?;
    let next = more.then(|| events.last().map(|e| seq_token(order, e.seq))).flatten();
    let data = events
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.body).map_err(|e| ApiError::Internal(e.into())))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({"data": data, "next_page": next})))
}
