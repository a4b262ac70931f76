//! Session ownership: which node's runner drives a session, by a renewable
//! lease on the session row, and the runner's fenced writes. Every write a
//! runner makes (events, status, input and resume progress) carries the
//! lease epoch it claimed and is refused once another node has claimed the
//! session since, so a paused old owner cannot write after adoption.
//!
//! Lease times use the database's clock, so nodes need not agree on time.

use crate::cluster::note::NoteKind;
use serde_json::Value;
use sqlx::Row;

use super::{Arg, Backend, Sql, Store, StoreError, StoreResult, decode_json};
use crate::model::events::{NewEvent, StoredEvent};
use crate::model::sessions::{Session, SessionStatus};
use crate::time::{now_micros, rfc3339};

/// A claimed session: the lease epoch every later write must carry, and
/// where the runner left off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub epoch: i64,
    /// The user.message whose turn was started last (0: none yet).
    pub turn_seq: i64,
}

/// A session status written together with the events that announce it.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub status: SessionStatus,
    pub usage: Value,
}

/// Statuses in which a runner is at work on a turn.
const BUSY: &str = "('running', 'rescheduling')";

impl Store {
    /// The database's current time in unix microseconds, as SQL.
    fn db_now(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS BIGINT)",
        }
    }

    /// Claim a session for `node` for `lease_micros`: granted when nobody
    /// holds it, `node` itself does (a restarted node keeps its name), or
    /// the holder's lease ran out. Each grant starts a new epoch.
    pub async fn claim_session(&self, id: &str, node: &str, lease_micros: i64) -> StoreResult<Option<Claim>> {
        let now = self.db_now();
        let row = sqlx::query(&format!(
            "UPDATE sessions SET lease_owner = $1, lease_epoch = lease_epoch + 1, lease_until = {now} + $2 \
             WHERE id = $3 AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < {now}) \
             RETURNING lease_epoch, turn_seq"
        ))
        .bind(node)
        .bind(lease_micros)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(Claim { epoch: r.try_get("lease_epoch")?, turn_seq: r.try_get("turn_seq")? })).transpose()
    }

    /// Extend the leases `node` holds on `ids` (its live runners). Returns
    /// how many were extended.
    pub async fn renew_leases(&self, node: &str, ids: &[String], lease_micros: i64) -> StoreResult<u64> {
        let mut renewed = 0;
        for chunk in ids.chunks(500) {
            let mut sql = Sql::new("UPDATE sessions SET lease_until = ");
            sql.push(self.db_now()).push(" + ");
            let p = sql.arg(Arg::I(lease_micros));
            sql.push(&p).push(" WHERE lease_owner = ");
            let p = sql.arg(Arg::S(node.to_owned()));
            sql.push(&p).push(" AND id IN (");
            let ps: Vec<String> = chunk.iter().map(|id| sql.arg(Arg::S(id.clone()))).collect();
            sql.push(&ps.join(", ")).push(")");
            renewed += sql.query().execute(&self.pool).await?.rows_affected();
        }
        Ok(renewed)
    }

    /// Give a session up (the runner stops). With `handover`, other nodes
    /// are told at once, so one adopts the session without waiting for a
    /// lease to run out.
    pub async fn release_session(&self, id: &str, epoch: i64, handover: bool) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET lease_owner = NULL, lease_until = 0 WHERE id = $1 AND lease_epoch = $2 \
             AND lease_owner IS NOT NULL",
        )
        .bind(id)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        if handover && done.rows_affected() > 0 {
            self.notify(&mut *tx, id, NoteKind::Released).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sessions some node should take up: leases that ran out (their owner
    /// died or hangs), sessions left mid-turn without an owner, and
    /// unowned sessions with user events no runner has taken yet.
    pub async fn sessions_to_adopt(&self, node: &str) -> StoreResult<Vec<String>> {
        let now = self.db_now();
        let rows = sqlx::query(&format!(
            "SELECT id FROM sessions s WHERE \
               (s.lease_owner IS NOT NULL AND s.lease_owner <> $1 AND s.lease_until < {now}) \
               OR (s.lease_owner IS NULL AND s.status IN {BUSY}) \
               OR (s.lease_owner IS NULL AND s.input_seq < s.last_seq AND s.archived_at IS NULL AND EXISTS ( \
                   SELECT 1 FROM session_events e WHERE e.session_id = s.id AND e.seq > s.input_seq \
                   AND e.type LIKE 'user.%')) \
             LIMIT 1000"
        ))
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Sessions whose lease names `node` (a restarted node takes its own
    /// sessions back at once instead of waiting for the lease to lapse).
    pub async fn sessions_owned_by(&self, node: &str) -> StoreResult<Vec<String>> {
        let rows =
            sqlx::query("SELECT id FROM sessions WHERE lease_owner = $1").bind(node).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// The refusal for a runner write that matched no row.
    async fn fenced(&self, id: &str) -> StoreError {
        match sqlx::query("SELECT 1 FROM sessions WHERE id = $1").bind(id).fetch_optional(&self.pool).await {
            Ok(Some(_)) => StoreError::Fenced(format!("session `{id}` was adopted by another node")),
            Ok(None) => StoreError::NotFound(format!("session `{id}` not found")),
            Err(e) => e.into(),
        }
    }

    /// The runner's one write path for events: append `events`, and in the
    /// same transaction set the session's status (and usage), or its usage
    /// alone, and, when a turn starts, the turn's user event, all only while
    /// `epoch` is the session's lease epoch.
    pub async fn runner_commit(
        &self,
        id: &str,
        epoch: i64,
        status: Option<StatusChange>,
        usage: Option<Value>,
        turn_seq: Option<i64>,
        events: Vec<NewEvent>,
    ) -> StoreResult<Vec<StoredEvent>> {
        let _timer = (!events.is_empty()).then(|| crate::metrics::AppendTimer::start(self.backend(), "runner"));
        let n = events.len() as i64;
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let mut sql = Sql::new("UPDATE sessions SET last_seq = last_seq + ");
        let p = sql.arg(Arg::I(n));
        sql.push(&p);
        if let Some(t) = turn_seq {
            let p = sql.arg(Arg::I(t));
            sql.push(&format!(", turn_seq = {p}"));
        }
        let p = sql.arg(Arg::S(id.to_owned()));
        sql.push(&format!(" WHERE id = {p} AND lease_epoch = "));
        let p = sql.arg(Arg::I(epoch));
        // The session body is read back only to change its status or usage.
        let body_change = status.is_some() || usage.is_some();
        sql.push(&p).push(if body_change { " RETURNING last_seq, body" } else { " RETURNING last_seq" });
        let Some(row) = sql.query().fetch_optional(&mut *tx).await? else {
            drop(tx);
            return Err(self.fenced(id).await);
        };
        let last: i64 = row.try_get("last_seq")?;
        if let (None, Some(usage)) = (&status, usage) {
            let body: String = row.try_get("body")?;
            let mut session: Session = decode_json("session", &body)?;
            session.usage = usage;
            let body = serde_json::to_string(&session).map_err(|e| StoreError::Other(e.into()))?;
            sqlx::query("UPDATE sessions SET body = $1 WHERE id = $2").bind(body).bind(id).execute(&mut *tx).await?;
        }
        if let Some(change) = status {
            let body: String = row.try_get("body")?;
            let mut session: Session = decode_json("session", &body)?;
            let now = now_micros();
            session.status = change.status;
            session.usage = change.usage;
            session.updated_at = rfc3339(now);
            let body = serde_json::to_string(&session).map_err(|e| StoreError::Other(e.into()))?;
            // A span of `running` opens when the status becomes running and
            // closes (into `active_micros`) when it becomes anything else.
            let running = i64::from(change.status == SessionStatus::Running);
            sqlx::query(
                "UPDATE sessions SET body = $1, status = $2,                  active_micros = active_micros + CASE WHEN running_since > 0 AND $3 = 0                    THEN $4 - running_since ELSE 0 END,                  running_since = CASE WHEN $3 = 0 THEN 0 WHEN running_since > 0 THEN running_since ELSE $4 END                  WHERE id = $5",
            )
            .bind(body)
            .bind(change.status.as_str())
            .bind(running)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(t) = turn_seq {
            // The turn's message is processed now, if it was queued.
            self.stamp_processed(&mut tx, id, t).await?;
        }
        let stored =
            if events.is_empty() { Vec::new() } else { self.insert_events(&mut tx, id, last, events, &[]).await? };
        tx.commit().await?;
        Ok(stored)
    }

    /// Record that the runner took user events up to `seq` (fenced).
    pub async fn set_input_seq_fenced(&self, id: &str, epoch: i64, seq: i64) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE sessions SET input_seq = CASE WHEN input_seq < $1 THEN $1 ELSE input_seq END \
             WHERE id = $2 AND lease_epoch = $3",
        )
        .bind(seq)
        .bind(id)
        .bind(epoch)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(self.fenced(id).await);
        }
        Ok(())
    }

    /// Record the runtime's resume token (fenced).
    pub async fn set_resume_fenced(&self, id: &str, epoch: i64, resume: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE sessions SET resume = $1 WHERE id = $2 AND lease_epoch = $3")
            .bind(resume)
            .bind(id)
            .bind(epoch)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(self.fenced(id).await);
        }
        Ok(())
    }

    /// User events with `first <= seq <= last`, oldest first (what a runner
    /// had taken in but not finished when its node died).
    pub async fn user_events_between(&self, id: &str, first: i64, last: i64) -> StoreResult<Vec<StoredEvent>> {
        let events = self.events_between(id, first, last).await?;
        Ok(events.into_iter().filter(|e| e.kind.starts_with("user.")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh SQLite store (kept alive by the returned dir) holding one idle
    /// session `s1`.
    async fn store_with_idle_session() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO sessions (id, agent_id, agent_version, environment_id, status, created_at, binding, body) \
             VALUES ('s1', 'a', 1, 'e', 'idle', 0, '{}', '{}')",
        )
        .execute(store.pool())
        .await
        .unwrap();
        (dir, store)
    }

    fn event(kind: &str) -> NewEvent {
        let body = serde_json::json!({"type": kind});
        NewEvent { id: None, body: body.as_object().cloned().unwrap_or_default() }
    }

    #[test]
    fn a_lapsed_owner_is_fenced_out() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (_dir, store) = store_with_idle_session().await;
            let minute = 60_000_000;
            let first = store.claim_session("s1", "n1", minute).await.unwrap().unwrap();
            assert!(store.claim_session("s1", "n2", minute).await.unwrap().is_none(), "a live lease holds");
            // The same node (restarted) takes it back; then its lease lapses.
            let old = store.claim_session("s1", "n1", -1).await.unwrap().unwrap();
            assert!(old.epoch > first.epoch);
            assert_eq!(store.sessions_to_adopt("n2").await.unwrap(), ["s1"]);
            let new = store.claim_session("s1", "n2", minute).await.unwrap().unwrap();
            // The old owner can no longer write anything.
            let e = store.runner_commit("s1", old.epoch, None, None, Some(1), vec![event("agent.message")]).await;
            assert!(matches!(e, Err(StoreError::Fenced(_))), "{e:?}");
            assert!(matches!(store.set_input_seq_fenced("s1", old.epoch, 5).await, Err(StoreError::Fenced(_))));
            assert!(matches!(store.set_resume_fenced("s1", old.epoch, "r").await, Err(StoreError::Fenced(_))));
            assert!(!store.release_session("s1", old.epoch, false).await.unwrap());
            // The new owner writes with dense sequence numbers.
            let stored = store.runner_commit("s1", new.epoch, None, None, Some(1), vec![event("a"), event("b")]).await;
            assert_eq!(stored.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
            assert!(store.sessions_to_adopt("n1").await.unwrap().is_empty());
            assert!(store.release_session("s1", new.epoch, false).await.unwrap());
            assert_eq!(store.claim_session("s1", "n3", minute).await.unwrap().unwrap().turn_seq, 1);
        });
    }

    fn message() -> NewEvent {
        let body = serde_json::json!({"type": "user.message", "content": []});
        NewEvent { id: None, body: body.as_object().cloned().unwrap_or_default() }
    }

    fn stamp(e: &StoredEvent) -> Value {
        serde_json::from_str::<Value>(&e.body).unwrap()["processed_at"].clone()
    }

    #[test]
    fn a_queued_message_is_stamped_when_its_turn_starts() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (_dir, store) = store_with_idle_session().await;
            // Idle with nothing queued: processed on receipt; the next one waits behind it.
            let sent = store.append_events("s1", vec![message(), message(), event("user.interrupt")], true).await;
            let sent = sent.unwrap();
            assert!(stamp(&sent[0]).is_string() && stamp(&sent[2]).is_string());
            assert!(stamp(&sent[1]).is_null());
            let claim = store.claim_session("s1", "n1", 60_000_000).await.unwrap().unwrap();
            store.runner_commit("s1", claim.epoch, None, None, Some(1), Vec::new()).await.unwrap();
            // The second message has not started yet: one sent now waits behind it.
            let later = store.append_events("s1", vec![message()], true).await.unwrap();
            assert!(stamp(&later[0]).is_null());
            let before = store.get_event("s1", &sent[0].id).await.unwrap().unwrap();
            store.runner_commit("s1", claim.epoch, None, None, Some(2), Vec::new()).await.unwrap();
            let second = store.get_event("s1", &sent[1].id).await.unwrap().unwrap();
            assert!(stamp(&second).is_string(), "{}", second.body);
            assert!(second.processed_at >= sent[1].processed_at);
            // An event already stamped is left alone.
            store.runner_commit("s1", claim.epoch, None, None, Some(1), Vec::new()).await.unwrap();
            assert_eq!(store.get_event("s1", &sent[0].id).await.unwrap().unwrap(), before);
            assert!(stamp(&store.get_event("s1", &later[0].id).await.unwrap().unwrap()).is_null());
        });
    }
}
