//! Delegated session threads and their own event logs. A child thread's
//! log is dense and 1-based like a session's, with its sequence taken from
//! the thread row inside the appending transaction.

use serde_json::Value;
use sqlx::Row;

use super::{Store, StoreError, StoreResult, decode_json};
use crate::ids::{Kind, new_id};
use crate::model::events::{NewEvent, StoredEvent};
use crate::model::sessions::SessionStatus;
use crate::model::threads::SessionThread;
use crate::time::{now_micros, rfc3339};

fn decode_thread(row: &sqlx::any::AnyRow) -> StoreResult<SessionThread> {
    let body: String = row.try_get("body")?;
    Ok(decode_json("session thread", &body)?)
}

fn decode_event(row: &sqlx::any::AnyRow) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        // A thread event's log is the thread's: it names the thread.
        session_id: row.try_get("thread_id")?,
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        kind: row.try_get("type")?,
        processed_at: row.try_get("processed_at")?,
        body: row.try_get("body")?,
    })
}

/// What [`Store::update_thread`] changes (`None`: left as it is).
#[derive(Debug, Clone, Default)]
pub struct ThreadChange {
    pub status: Option<SessionStatus>,
    pub usage: Option<Value>,
    pub stats: Option<Value>,
    /// Stamp `archived_at` (if not yet archived).
    pub archive: bool,
    /// The thread runtime's resume token.
    pub resume: Option<String>,
}

fn encode(t: &SessionThread) -> StoreResult<String> {
    serde_json::to_string(t).map_err(|e| StoreError::Other(e.into()))
}

impl Store {
    /// Store a new child thread, at the next position of its session
    /// (positions start at 2: the primary thread is 1).
    pub async fn create_thread(&self, t: &SessionThread) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        // One statement: its position is read under the write it makes.
        sqlx::query(
            "INSERT INTO session_threads (id, session_id, position, created_at, status, last_seq, body) \
             VALUES ($1, $2, (SELECT COALESCE(MAX(position), 1) + 1 FROM session_threads WHERE session_id = $2), \
             $3, $4, 0, $5)",
        )
        .bind(&t.id)
        .bind(&t.session_id)
        .bind(now_micros())
        .bind(t.status.as_str())
        .bind(encode(t)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One child thread of a session.
    pub async fn get_thread(&self, session_id: &str, thread_id: &str) -> StoreResult<Option<SessionThread>> {
        let row = sqlx::query("SELECT body FROM session_threads WHERE session_id = $1 AND id = $2")
            .bind(session_id)
            .bind(thread_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_thread).transpose()
    }

    /// A child thread's runtime resume token, if its runtime left one.
    pub async fn thread_resume(&self, thread_id: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT resume FROM session_threads WHERE id = $1")
            .bind(thread_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>("resume")).transpose()?.flatten())
    }

    /// A session's child threads with their positions, in creation order.
    pub async fn list_threads(&self, session_id: &str) -> StoreResult<Vec<(i64, SessionThread)>> {
        let rows = sqlx::query("SELECT position, body FROM session_threads WHERE session_id = $1 ORDER BY position")
            .bind(session_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("position")?, decode_thread(r)?))).collect()
    }

    /// Change a thread as `change` says. Returns the thread as now stored.
    pub async fn update_thread(&self, thread_id: &str, change: ThreadChange) -> StoreResult<Option<SessionThread>> {
        let ThreadChange { status, usage, stats, archive, resume } = change;
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        // A write first (a no-op one): a transaction that read before it wrote could not
        // take SQLite's write lock after another connection wrote (SQLITE_BUSY_SNAPSHOT).
        let Some(row) = sqlx::query("UPDATE session_threads SET status = status WHERE id = $1 RETURNING body")
            .bind(thread_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let mut t = decode_thread(&row)?;
        let now = rfc3339(now_micros());
        if let Some(s) = status {
            t.status = s;
        }
        if let Some(u) = usage {
            t.usage = Some(u);
        }
        if let Some(x) = stats {
            t.stats = Some(x);
        }
        if archive && t.archived_at.is_none() {
            t.archived_at = Some(now.clone());
        }
        t.updated_at = now;
        sqlx::query("UPDATE session_threads SET status = $1, body = $2, resume = COALESCE($3, resume) WHERE id = $4")
            .bind(t.status.as_str())
            .bind(encode(&t)?)
            .bind(resume)
            .bind(thread_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(t))
    }

    /// Append events to a child thread's log, in order, atomically.
    pub async fn append_thread_events(&self, thread_id: &str, events: Vec<NewEvent>) -> StoreResult<Vec<StoredEvent>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let n = events.len() as i64;
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("UPDATE session_threads SET last_seq = last_seq + $1 WHERE id = $2 RETURNING last_seq")
            .bind(n)
            .bind(thread_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("thread `{thread_id}` not found")))?;
        let last: i64 = row.try_get("last_seq")?;
        let now = now_micros();
        let mut stored = Vec::with_capacity(events.len());
        for (i, ev) in events.into_iter().enumerate() {
            let kind = ev.kind().to_owned();
            let id = ev.id.unwrap_or_else(|| new_id(Kind::Event));
            let mut body = ev.body;
            body.insert("id".into(), Value::String(id.clone()));
            body.insert("processed_at".into(), Value::String(rfc3339(now)));
            let e = StoredEvent {
                session_id: thread_id.to_owned(),
                seq: last - n + 1 + i as i64,
                id,
                kind,
                processed_at: now,
                body: Value::Object(body).to_string(),
            };
            sqlx::query(
                "INSERT INTO session_thread_events (thread_id, seq, id, type, processed_at, body) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(thread_id)
            .bind(e.seq)
            .bind(&e.id)
            .bind(&e.kind)
            .bind(e.processed_at)
            .bind(&e.body)
            .execute(&mut *tx)
            .await?;
            stored.push(e);
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// A thread's events after `seq`, oldest first.
    pub async fn thread_events_after(&self, thread_id: &str, seq: i64, limit: i64) -> StoreResult<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT thread_id, seq, id, type, processed_at, body FROM session_thread_events \
             WHERE thread_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(thread_id)
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_event).collect()
    }

    /// The highest sequence number of a thread's log.
    pub async fn thread_last_seq(&self, thread_id: &str) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT last_seq FROM session_threads WHERE id = $1")
            .bind(thread_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("last_seq").map_err(StoreError::from)).transpose()
    }
}
