//! `GET /v1/sessions/{id}/events/stream`: Server-Sent Events.
//!
//! Each frame is `event: <type>` / `id: <seq>` / `data: <event JSON>`, the
//! shape the official SDKs parse (frames without `event:` are skipped by
//! them, so heartbeats are `event: ping`). A new stream delivers the events
//! appended after it opened. A reconnect with `Last-Event-ID: <seq>` first
//! replays every stored event after that seq, then follows live: the log is
//! read for any gap, so nothing is lost or repeated.
//!
//! A connection that asks with `event_deltas[]` also gets the previews of
//! those event types while they are produced (`event_start`, `event_delta`;
//! no `id:`, so a reconnect resumes after the last stored event). They are
//! live only: a replay or a lagged catch-up has none.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::QueryParams;
use crate::bus::Live;
use crate::model::events::StoredEvent;
use crate::model::previews::{Preview, PreviewKind};

/// Events read from the log per catch-up query.
const CATCH_UP_BATCH: i64 = 500;

fn frame(e: &StoredEvent) -> Event {
    Event::default().event(&e.kind).id(e.seq.to_string()).data(&e.body)
}

fn preview_frame(p: &Preview) -> Event {
    Event::default().event(p.frame_type()).data(p.body())
}

fn error_frame(message: &str) -> Event {
    let body = json!({"type": "error", "error": {"type": "api_error", "message": message}});
    Event::default().event("error").data(body.to_string())
}

#[utoipa::path(
    get,
    path = "/sessions/{session_id}/events/stream",
    tag = "events",
    operation_id = "events_stream",
    summary = "Follow a session's events (Server-Sent Events)",
    description = "Each frame is `event: <type>`, `id: <seq>`, `data: <event JSON>`; heartbeats are `event: ping`. \
                   A reconnect with `Last-Event-ID` first replays the events after that seq.",
    params(
        ("session_id" = String, Path),
        ("event_deltas[]" = Option<Vec<String>>, Query, description = "`agent.message` and/or `agent.thinking`."),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event seq.")
    ),
    responses((status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String))
)]
pub async fn stream(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: QueryParams,
    headers: HeaderMap,
) -> ApiResult<Response> {
    q.allow(&["event_deltas"])?;
    let mut deltas = HashSet::new();
    for d in q.many("event_deltas") {
        let kind = PreviewKind::parse(&d).ok_or_else(|| {
            ApiError::invalid(format!(
                "event_deltas[]: `{d}` is not supported; expected agent.message or agent.thinking"
            ))
        })?;
        deltas.insert(kind);
    }
    super::sessions::load(&st, &id).await?;
    let resume_from = last_event_id(&headers)?;
    // Subscribe before reading the log position, so no event falls between.
    let rx = st.bus.subscribe(&id);
    let start = match resume_from {
        Some(n) => n,
        None => st.store.last_seq(&id).await?.ok_or_else(|| ApiError::not_found(crate::ids::Kind::Session, &id))?,
    };
    tracing::debug!(session_id = %id, start, "event stream opened");
    let events = follow(st.clone(), Log::Session(id), start, deltas, rx);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(st.heartbeat()).event(Event::default().event("ping").data("{}")))
        .into_response())
}

/// A child thread's stream (the thread is known to exist): its own log, as
/// the session's stream carries the session's. (A child thread runs no
/// previews.)
pub async fn thread_stream(st: AppState, thread_id: String, q: QueryParams, headers: HeaderMap) -> ApiResult<Response> {
    q.allow(&["event_deltas"])?;
    let resume_from = last_event_id(&headers)?;
    let rx = st.bus.subscribe(&thread_id);
    let start = match resume_from {
        Some(n) => n,
        None => st.store.thread_last_seq(&thread_id).await?.unwrap_or(0),
    };
    let events = follow(st.clone(), Log::Thread(thread_id), start, HashSet::new(), rx);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(st.heartbeat()).event(Event::default().event("ping").data("{}")))
        .into_response())
}

/// A `Last-Event-ID` header, read.
fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    match headers.get("last-event-id").map(|v| v.to_str().map(str::trim)) {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::invalid(format!(
                "Last-Event-ID must be the `id:` of an event from this stream (a sequence number), got `{v}`"
            ))
        })?)),
        Some(Err(_)) => Err(ApiError::invalid("Last-Event-ID is not valid text")),
    }
}

/// The log a stream follows.
enum Log {
    Session(String),
    /// A child thread's own log.
    Thread(String),
}

impl Log {
    fn id(&self) -> &str {
        match self {
            Log::Session(id) | Log::Thread(id) => id,
        }
    }
}

/// A session's or thread's live stream as SSE frames.
fn follow(
    st: AppState,
    log: Log,
    start: i64,
    deltas: HashSet<PreviewKind>,
    rx: tokio::sync::broadcast::Receiver<Live>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let id = log.id().to_owned();
    let log = Arc::new(log);
    let replay = move |after| {
        let (st, log) = (st.clone(), log.clone());
        async move { catch_up(&st, &log, after).await }
    };
    follow_log(id, replay, start, deltas, rx).map(|f| {
        Ok(match f {
            Frame::Event(e) => frame(&e),
            Frame::Preview(p) => preview_frame(&p),
            Frame::Error(msg) => error_frame(&msg),
        })
    })
}

/// What a stream sends, before it is framed.
#[derive(Debug)]
enum Frame {
    Event(Arc<StoredEvent>),
    Preview(Arc<Preview>),
    /// The log could not be read: the last frame.
    Error(String),
}

/// The events after `start` in order, each once: the broadcast `rx` wakes the stream, and the log
/// (`replay(after)`: every stored event after a seq) fills in whatever the broadcast dropped
/// (a lagged receiver) or delivered out of order (concurrent appenders).
fn follow_log<R, F>(
    id: String,
    replay: R,
    start: i64,
    deltas: HashSet<PreviewKind>,
    mut rx: tokio::sync::broadcast::Receiver<Live>,
) -> impl Stream<Item = Frame>
where
    R: Fn(i64) -> F,
    F: std::future::Future<Output = Result<Vec<StoredEvent>, String>>,
{
    async_stream::stream! {
        let mut last = start;
        // Replay what the client missed (only when resuming), and again whenever this receiver
        // lagged behind the broadcast: the log is the truth.
        let mut lagged = true;
        loop {
            if std::mem::take(&mut lagged) {
                match replay(last).await {
                    Ok(batch) => {
                        for e in batch {
                            last = e.seq;
                            yield Frame::Event(Arc::new(e));
                        }
                    }
                    Err(msg) => {
                        yield Frame::Error(msg);
                        return;
                    }
                }
            }
            let e: Arc<StoredEvent> = match rx.recv().await {
                Ok(Live::Event(e)) => e,
                Ok(Live::Preview(p)) => {
                    if deltas.contains(&p.kind()) {
                        yield Frame::Preview(p);
                    }
                    continue;
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(session_id = %id, skipped = n, "stream lagged; catching up from the log");
                    lagged = true;
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            if e.kind == "session.deleted" {
                yield Frame::Event(e);
                return;
            }
            if e.seq <= last {
                continue;
            }
            if e.seq > last + 1 {
                // Published out of order by concurrent appenders: fill the gap.
                match replay(last).await {
                    Ok(batch) => {
                        // `last` moves to `e.seq` below.
                        for b in batch.into_iter().filter(|b| b.seq < e.seq) {
                            yield Frame::Event(Arc::new(b));
                        }
                    }
                    Err(msg) => {
                        yield Frame::Error(msg);
                        return;
                    }
                }
            }
            last = e.seq;
            yield Frame::Event(e);
        }
    }
}

/// Every stored event after `after`, oldest first.
async fn catch_up(st: &AppState, log: &Log, mut after: i64) -> Result<Vec<StoredEvent>, String> {
    let mut all = Vec::new();
    let session_id = log.id();
    loop {
        let batch = match log {
            Log::Session(id) => st.store.events_after(id, after, CATCH_UP_BATCH).await,
            Log::Thread(id) => st.store.thread_events_after(id, after, CATCH_UP_BATCH).await,
        };
        let batch = batch.map_err(|e| {
            tracing::error!(session_id = %session_id, error = %e, "event stream catch-up failed");
            "reading the event log failed; reconnect with Last-Event-ID to resume".to_owned()
        })?;
        let Some(tail) = batch.last() else { return Ok(all) };
        after = tail.seq;
        all.extend(batch);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use tokio::sync::broadcast;

    use super::*;

    fn ev(seq: i64) -> StoredEvent {
        StoredEvent {
            session_id: "sesn_1".into(),
            seq,
            id: format!("sevt_{seq}"),
            kind: "agent.message".into(),
            processed_at: seq,
            body: "{}".into(),
        }
    }

    /// Runs `follow_log` from seq 0 over what `rx` holds, with a log that answers each replay
    /// from `script` in turn. Returns the stream's frames (event seqs, `-1` for the deletion,
    /// the error text) and the `after` of each replay.
    async fn run(
        script: Vec<Result<Vec<StoredEvent>, String>>,
        rx: broadcast::Receiver<Live>,
    ) -> (Vec<Result<i64, String>>, Vec<i64>) {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (s, c) = (script.clone(), calls.clone());
        let replay = move |after| {
            c.lock().unwrap().push(after);
            let answer = s.lock().unwrap().pop_front().unwrap_or(Ok(Vec::new()));
            async move { answer }
        };
        let frames = follow_log("sesn_1".into(), replay, 0, HashSet::new(), rx)
            .map(|f| match f {
                Frame::Event(e) if e.kind == "session.deleted" => Ok(-1),
                Frame::Event(e) => Ok(e.seq),
                Frame::Preview(_) => Err("preview".into()),
                Frame::Error(msg) => Err(msg),
            })
            .collect::<Vec<_>>()
            .await;
        let calls = calls.lock().unwrap().clone();
        (frames, calls)
    }

    fn send(tx: &broadcast::Sender<Live>, e: StoredEvent) {
        tx.send(Live::Event(Arc::new(e))).expect("a receiver");
    }

    #[tokio::test]
    async fn a_lagged_stream_reads_what_it_missed_from_the_log() {
        // Room for one message: the receiver keeps only the deletion, which ends the stream
        // without a gap check, so only the lag's replay can deliver 1..=6.
        let (tx, rx) = broadcast::channel(1);
        for seq in 1..=6 {
            send(&tx, ev(seq));
        }
        send(&tx, StoredEvent::session_deleted("sesn_1", 6, 7));
        // The opening replay finds nothing yet; the one after the lag finds all six.
        let (frames, calls) = run(vec![Ok(vec![]), Ok((1..=6).map(ev).collect())], rx).await;
        assert_eq!(frames, vec![Ok(1), Ok(2), Ok(3), Ok(4), Ok(5), Ok(6), Ok(-1)]);
        assert_eq!(calls, vec![0, 0], "one replay on open, one after the lag");
    }

    #[tokio::test]
    async fn a_gap_is_filled_from_the_log_and_late_events_are_not_repeated() {
        let (tx, rx) = broadcast::channel(16);
        for seq in [1, 3, 2] {
            send(&tx, ev(seq));
        }
        send(&tx, StoredEvent::session_deleted("sesn_1", 3, 4));
        let (frames, calls) = run(vec![Ok(vec![]), Ok(vec![ev(2), ev(3)])], rx).await;
        assert_eq!(frames, vec![Ok(1), Ok(2), Ok(3), Ok(-1)]);
        assert_eq!(calls, vec![0, 1]);
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_read_ends_the_stream_with_an_error() {
        let (tx, rx) = broadcast::channel(16);
        send(&tx, ev(1));
        send(&tx, ev(3));
        let (frames, _) = run(vec![Ok(vec![]), Err("reading the event log failed".into())], rx).await;
        assert_eq!(frames, vec![Ok(1), Err("reading the event log failed".into())]);
        drop(tx);
    }
}
