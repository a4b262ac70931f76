//! The session event log: append-only, with a dense per-session sequence
//! number taken from the session row inside the appending transaction.

use crate::cluster::note::NoteKind;
use serde_json::Value;
use sqlx::Row;

use super::{Arg, Order, Sql, Store, StoreError, StoreResult};
use crate::ids::{Kind, new_id};
use crate::model::events::{NewEvent, StoredEvent};
use crate::time::{now_micros, rfc3339};

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub types: Vec<String>,
    pub processed_gt: Option<i64>,
    pub processed_gte: Option<i64>,
    pub processed_lt: Option<i64>,
    pub processed_lte: Option<i64>,
}

fn decode(row: &sqlx::any::AnyRow) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        session_id: row.try_get("session_id")?,
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        kind: row.try_get("type")?,
        processed_at: row.try_get("processed_at")?,
        body: row.try_get("body")?,
    })
}

/// The user event that waits for a turn when the session is busy.
const QUEUED_KIND: &str = "user.message";

/// Rows per INSERT statement (keeps the bind count well under SQLite's limit).
const INSERT_CHUNK: usize = 100;

impl Store {
    /// Append events to a session's log, in order, atomically. With
    /// `require_open`, an archived session refuses (conflict).
    pub async fn append_events(
        &self,
        session_id: &str,
        events: Vec<NewEvent>,
        require_open: bool,
    ) -> StoreResult<Vec<StoredEvent>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let _timer = crate::metrics::AppendTimer::start(self.backend(), "api");
        let n = events.len() as i64;
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let guard = if require_open { " AND archived_at IS NULL" } else { "" };
        let row = sqlx::query(&format!(
            "UPDATE sessions SET last_seq = last_seq + $1 WHERE id = $2{guard} RETURNING last_seq, status, turn_seq"
        ))
        .bind(n)
        .bind(session_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            drop(tx);
            return Err(match self.get_session(session_id).await? {
                Some(_) => {
                    StoreError::Conflict(format!("session `{session_id}` is archived and accepts no new events"))
                }
                None => StoreError::NotFound(format!("session `{session_id}` not found")),
            });
        };
        let last: i64 = row.try_get("last_seq")?;
        let queued = self.queued_messages(&mut tx, session_id, &row, &events).await?;
        let stored = self.insert_events(&mut tx, session_id, last, events, &queued).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Which of `events` are user messages that wait behind a turn: the
    /// session is at work on one, or an earlier message (stored before, or
    /// earlier in this batch) has not started its turn yet. Those are stored
    /// with `processed_at: null` until the runner starts their turn; a
    /// message that finds the session free is processed on receipt, as are
    /// interrupts, confirmations and tool results.
    async fn queued_messages(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        session_id: &str,
        session: &sqlx::any::AnyRow,
        events: &[NewEvent],
    ) -> StoreResult<Vec<bool>> {
        if !events.iter().any(|e| e.kind() == QUEUED_KIND) {
            return Ok(Vec::new());
        }
        let status: String = session.try_get("status")?;
        let mut waiting = matches!(status.as_str(), "running" | "rescheduling") || {
            let turn_seq: i64 = session.try_get("turn_seq")?;
            sqlx::query("SELECT 1 FROM session_events WHERE session_id = $1 AND seq > $2 AND type = $3 LIMIT 1")
                .bind(session_id)
                .bind(turn_seq)
                .bind(QUEUED_KIND)
                .fetch_optional(&mut **tx)
                .await?
                .is_some()
        };
        Ok(events
            .iter()
            .map(|e| {
                let message = e.kind() == QUEUED_KIND;
                let queued = message && waiting;
                waiting |= message;
                queued
            })
            .collect())
    }

    /// Insert events whose sequence numbers end at `last` (already taken
    /// from the session row in `tx`) and announce them at commit. Shared by
    /// every append path (the runner's fenced one is in `leases.rs`).
    /// `queued[i]` stores event `i` with `processed_at: null` (its column
    /// keeps the receipt time until [`Store::stamp_processed`]).
    pub(super) async fn insert_events(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        session_id: &str,
        last: i64,
        events: Vec<NewEvent>,
        queued: &[bool],
    ) -> StoreResult<Vec<StoredEvent>> {
        let n = events.len() as i64;
        let now = now_micros();
        let stored: Vec<StoredEvent> = events
            .into_iter()
            .enumerate()
            .map(|(i, ev)| {
                let kind = ev.kind().to_owned();
                let id = ev.id.unwrap_or_else(|| new_id(Kind::Event));
                let mut body = ev.body;
                body.insert("id".into(), Value::String(id.clone()));
                let stamp = match queued.get(i) {
                    Some(true) => Value::Null,
                    _ => Value::String(rfc3339(now)),
                };
                body.insert("processed_at".into(), stamp);
                StoredEvent {
                    session_id: session_id.to_owned(),
                    seq: last - n + 1 + i as i64,
                    id,
                    kind,
                    processed_at: now,
                    body: Value::Object(body).to_string(),
                }
            })
            .collect();
        for chunk in stored.chunks(INSERT_CHUNK) {
            let mut sql =
                Sql::new("INSERT INTO session_events (session_id, seq, id, type, processed_at, body) VALUES ");
            for (i, e) in chunk.iter().enumerate() {
                let ps = [
                    sql.arg(Arg::S(e.session_id.clone())),
                    sql.arg(Arg::I(e.seq)),
                    sql.arg(Arg::S(e.id.clone())),
                    sql.arg(Arg::S(e.kind.clone())),
                    sql.arg(Arg::I(e.processed_at)),
                    sql.arg(Arg::S(e.body.clone())),
                ];
                if i > 0 {
                    sql.push(", ");
                }
                sql.push(&format!("({})", ps.join(", ")));
            }
            sql.query().execute(&mut **tx).await?;
        }
        self.notify(&mut **tx, session_id, NoteKind::Appended { first: last - n + 1, last }).await?;
        Ok(stored)
    }

    /// Stamp a queued event as processed now (its turn starts), in the
    /// runner's transaction; an event already stamped is left alone.
    pub(super) async fn stamp_processed(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        session_id: &str,
        seq: i64,
    ) -> StoreResult<()> {
        let row = sqlx::query("SELECT body FROM session_events WHERE session_id = $1 AND seq = $2")
            .bind(session_id)
            .bind(seq)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(row) = row else { return Ok(()) };
        let body: String = row.try_get("body")?;
        let mut body: serde_json::Map<String, Value> = super::decode_json("event", &body)?;
        if !body.get("processed_at").is_some_and(Value::is_null) {
            return Ok(());
        }
        let now = now_micros();
        body.insert("processed_at".into(), Value::String(rfc3339(now)));
        sqlx::query("UPDATE session_events SET body = $1, processed_at = $2 WHERE session_id = $3 AND seq = $4")
            .bind(Value::Object(body).to_string())
            .bind(now)
            .bind(session_id)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// A page of a session's events. `after_seq` continues a previous page
    /// in the same order.
    pub async fn list_events(
        &self,
        session_id: &str,
        f: &EventFilter,
        order: Order,
        after_seq: Option<i64>,
        limit: i64,
    ) -> StoreResult<(Vec<StoredEvent>, bool)> {
        let mut sql = Sql::new("SELECT * FROM session_events WHERE session_id = ");
        let p = sql.arg(Arg::S(session_id.to_owned()));
        sql.push(&p);
        if !f.types.is_empty() {
            let ps: Vec<String> = f.types.iter().map(|t| sql.arg(Arg::S(t.clone()))).collect();
            sql.push(&format!(" AND type IN ({})", ps.join(", ")));
        }
        for (op, v) in [(">", f.processed_gt), (">=", f.processed_gte), ("<", f.processed_lt), ("<=", f.processed_lte)]
        {
            if let Some(v) = v {
                let p = sql.arg(Arg::I(v));
                sql.push(&format!(" AND processed_at {op} {p}"));
            }
        }
        if let Some(s) = after_seq {
            let p = sql.arg(Arg::I(s));
            sql.push(&format!(" AND seq {} {p}", order.after_op()));
        }
        let lim = sql.arg(Arg::I(limit + 1));
        sql.push(&format!(" ORDER BY seq {} LIMIT {lim}", order.sql()));
        let rows = sql.query().fetch_all(&self.pool).await?;
        let more = rows.len() as i64 > limit;
        let events = rows.iter().take(limit as usize).map(decode).collect::<StoreResult<Vec<_>>>()?;
        Ok((events, more))
    }

    /// Events with `first <= seq <= last`, oldest first.
    pub async fn events_between(&self, session_id: &str, first: i64, last: i64) -> StoreResult<Vec<StoredEvent>> {
        let rows =
            sqlx::query("SELECT * FROM session_events WHERE session_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq")
                .bind(session_id)
                .bind(first)
                .bind(last)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(decode).collect()
    }

    /// Events after `seq`, oldest first (SSE catch-up).
    pub async fn events_after(&self, session_id: &str, seq: i64, limit: i64) -> StoreResult<Vec<StoredEvent>> {
        let rows = sqlx::query("SELECT * FROM session_events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(session_id)
            .bind(seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// The highest sequence number of a session's log (0 when empty).
    pub async fn last_seq(&self, session_id: &str) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT last_seq FROM sessions WHERE id = $1")
            .bind(session_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("last_seq")).transpose()?)
    }

    /// Look an event up by id within a session.
    pub async fn get_event(&self, session_id: &str, event_id: &str) -> StoreResult<Option<StoredEvent>> {
        let row = sqlx::query("SELECT * FROM session_events WHERE session_id = $1 AND id = $2")
            .bind(session_id)
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }
}

impl Store {
    /// User events after `seq`, oldest first: the runner's input queue.
    pub async fn user_events_after(&self, session_id: &str, seq: i64) -> StoreResult<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM session_events WHERE session_id = $1 AND seq > $2 AND type LIKE 'user.%' ORDER BY seq LIMIT 100",
        )
        .bind(session_id)
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }
}

/// The tool calls a session's log says wait on the user.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingOnUser {
    /// Sequence number of the `session.status_idle` `requires_action` event.
    pub seq: i64,
    /// Its `stop_reason.event_ids`.
    pub ids: Vec<String>,
}

impl Store {
    /// The calls waiting on the user: the `event_ids` of the session's last
    /// status event, if it is `session.status_idle` `requires_action`
    /// (answers stored since are not subtracted).
    pub async fn waiting_on_user(&self, session_id: &str) -> StoreResult<Option<WaitingOnUser>> {
        let statuses = EventFilter {
            types: [
                "session.status_idle",
                "session.status_running",
                "session.status_rescheduled",
                "session.status_terminated",
            ]
            .map(String::from)
            .to_vec(),
            ..EventFilter::default()
        };
        let (last, _) = self.list_events(session_id, &statuses, Order::Desc, None, 1).await?;
        let Some(last) = last.first() else { return Ok(None) };
        let body: Value = serde_json::from_str(&last.body)
            .map_err(|e| StoreError::Other(anyhow::Error::new(e).context("decoding the last status event")))?;
        Ok(waiting_ids(&body).map(|ids| WaitingOnUser { seq: last.seq, ids }))
    }
}

/// The `event_ids` of a `requires_action` status event; `None` for any other.
pub fn waiting_ids(status: &Value) -> Option<Vec<String>> {
    if status.pointer("/stop_reason/type").and_then(Value::as_str) != Some("requires_action") {
        return None;
    }
    Some(
        status
            .pointer("/stop_reason/event_ids")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
    )
}
