//! `/v1/sessions/{id}/threads`: a session's threads, and each thread's
//! events (list and stream), as the official SDKs call them. Every session
//! has its primary thread, whose log and stream are the session's own; a
//! coordinator's session also has the child threads it delegated to, each
//! with a log of its own.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{QueryParams, check_id};
use super::pagination::{Page, parse_limit, seq_position, seq_token};
use crate::ids::Kind;
use crate::model::threads::{SessionThread, primary, primary_thread_id};
use crate::store::{EventFilter, Order, ThreadChange};

/// Which log a thread's events are in.
enum Log {
    /// The primary thread's: the session's.
    Session,
    /// A child thread's own.
    Child,
}

/// The session and the thread a path names (404 for another session's or
/// an unknown thread).
async fn load(st: &AppState, session_id: &str, thread_id: &str) -> ApiResult<(SessionThread, Log)> {
    let row = super::sessions::load(st, session_id).await?;
    check_id(Kind::SessionThread, thread_id)?;
    if thread_id == primary_thread_id(session_id) {
        return Ok((primary(&super::sessions::present(st, row.session).await?), Log::Session));
    }
    match st.store.get_thread(session_id, thread_id).await? {
        Some(t) => Ok((t, Log::Child)),
        None => Err(ApiError::NotFound(format!("session `{session_id}` has no thread `{thread_id}`"))),
    }
}

#[utoipa::path(
    get,
    path = "/sessions/{session_id}/threads",
    tag = "threads",
    operation_id = "threads_list",
    summary = "List a session's threads",
    params(
        ("session_id" = String, Path),
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 1000, default 1000."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response."),
        ("statuses[]" = Option<Vec<String>>, Query, description = "Only threads with one of these statuses.")
    ),
    responses((status = 200, description = "OK", body = Page<SessionThread>))
)]
pub async fn list(
    State(st): State<AppState>,
    Path(session_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<Page<SessionThread>>> {
    q.allow(&["limit", "page", "statuses"])?;
    let limit = parse_limit(&q, 1000, 1000)?;
    let statuses = super::sessions::parse_statuses(&q)?;
    // Threads in creation order; a page token holds the position after the
    // last thread returned.
    let after = seq_position(&q, Order::Asc)?.unwrap_or(0);
    let row = super::sessions::load(&st, &session_id).await?;
    // The primary thread is position 1; child threads follow in creation order.
    let mut threads = vec![(1, primary(&super::sessions::present(&st, row.session).await?))];
    threads.extend(st.store.list_threads(&session_id).await?);
    let matching: Vec<(i64, SessionThread)> = threads
        .into_iter()
        .filter(|(n, t)| *n > after && (statuses.is_empty() || statuses.contains(&t.status)))
        .collect();
    let more = matching.len() as i64 > limit;
    let data: Vec<(i64, SessionThread)> = matching.into_iter().take(limit as usize).collect();
    let next = more.then(|| data.last().map(|(n, _)| seq_token(Order::Asc, *n))).flatten();
    Ok(Json(Page { data: data.into_iter().map(|(_, t)| t).collect(), next_page: next }))
}

#[utoipa::path(
    get,
    path = "/sessions/{session_id}/threads/{thread_id}",
    tag = "threads",
    operation_id = "threads_retrieve",
    summary = "Retrieve a session thread",
    params(("session_id" = String, Path), ("thread_id" = String, Path)),
    responses((status = 200, description = "OK", body = SessionThread))
)]
pub async fn retrieve(
    State(st): State<AppState>,
    Path((session_id, thread_id)): Path<(String, String)>,
) -> ApiResult<Json<SessionThread>> {
    Ok(Json(load(&st, &session_id, &thread_id).await?.0))
}

#[utoipa::path(
    post,
    path = "/sessions/{session_id}/threads/{thread_id}/archive",
    tag = "threads",
    operation_id = "threads_archive",
    summary = "Archive a session thread",
    description = "A child thread is archived (it stays listed, with `archived_at`); the primary thread is archived \
                   with its session (archive the session).",
    params(("session_id" = String, Path), ("thread_id" = String, Path)),
    responses((status = 200, description = "OK", body = SessionThread))
)]
pub async fn archive(
    State(st): State<AppState>,
    Path((session_id, thread_id)): Path<(String, String)>,
) -> ApiResult<Json<SessionThread>> {
    if let (_, Log::Child) = load(&st, &session_id, &thread_id).await? {
        let t = st.store.update_thread(&thread_id, ThreadChange { archive: true, ..Default::default() }).await?;
        return t
            .map(Json)
            .ok_or_else(|| ApiError::NotFound(format!("session `{session_id}` has no thread `{thread_id}`")));
    }
    Err(ApiError::invalid(format!(
        "thread `{thread_id}` is the primary thread of session `{session_id}`: it is archived with its session \
         (POST /v1/sessions/{session_id}/archive)"
    )))
}

#[utoipa::path(
    get,
    path = "/sessions/{session_id}/threads/{thread_id}/events",
    tag = "threads",
    operation_id = "threads_events_list",
    summary = "List a session thread's events",
    params(
        ("session_id" = String, Path),
        ("thread_id" = String, Path),
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 1000, default 1000."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response.")
    ),
    responses((status = 200, description = "OK", body = super::pagination::Page<super::openapi::SessionEvent>))
)]
pub async fn events(
    State(st): State<AppState>,
    Path((session_id, thread_id)): Path<(String, String)>,
    q: QueryParams,
) -> ApiResult<Json<Value>> {
    q.allow(&["limit", "page"])?;
    let limit = parse_limit(&q, 1000, 1000)?;
    let after = seq_position(&q, Order::Asc)?;
    let (events, more) = match load(&st, &session_id, &thread_id).await?.1 {
        // The primary thread's log is the session's.
        Log::Session => st.store.list_events(&session_id, &EventFilter::default(), Order::Asc, after, limit).await?,
        Log::Child => {
            let mut events = st.store.thread_events_after(&thread_id, after.unwrap_or(0), limit + 1).await?;
            let more = events.len() as i64 > limit;
            events.truncate(limit as usize);
            (events, more)
        }
    };
    let next = more.then(|| events.last().map(|e| seq_token(Order::Asc, e.seq))).flatten();
    let data = events
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.body).map_err(|e| ApiError::Internal(e.into())))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({"data": data, "next_page": next})))
}

#[utoipa::path(
    get,
    path = "/sessions/{session_id}/threads/{thread_id}/stream",
    tag = "threads",
    operation_id = "threads_events_stream",
    summary = "Follow a session thread's events (Server-Sent Events)",
    description = "Frames as on the session's stream; the primary thread's stream is the session's, a child \
                   thread's carries its own log.",
    params(
        ("session_id" = String, Path),
        ("thread_id" = String, Path),
        ("event_deltas[]" = Option<Vec<String>>, Query, description = "`agent.message` and/or `agent.thinking`."),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event seq.")
    ),
    responses((status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String))
)]
pub async fn stream(
    State(st): State<AppState>,
    Path((session_id, thread_id)): Path<(String, String)>,
    q: QueryParams,
    headers: HeaderMap,
) -> ApiResult<Response> {
    match load(&st, &session_id, &thread_id).await?.1 {
        Log::Session => super::stream::stream(State(st), Path(session_id), q, headers).await,
        Log::Child => super::stream::thread_stream(st, thread_id, q, headers).await,
    }
}

/// A `session_thread_id` on a sent event must name the session's primary
/// thread: delegated threads take no client events (their calls never wait
/// on the client, and an interrupt of the session interrupts them).
pub fn check_thread_field(session_id: &str, field: &str, thread_id: Option<&str>) -> ApiResult<()> {
    match thread_id {
        Some(t) if t != primary_thread_id(session_id) => Err(ApiError::invalid(format!(
            "{field}: session `{session_id}` has no thread `{t}` that takes client events (its primary thread is \
             `{}`; delegated threads are interrupted with the session)",
            primary_thread_id(session_id)
        ))),
        _ => Ok(()),
    }
}
