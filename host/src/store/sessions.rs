//! Sessions: the wire object, the harness binding and the status columns.

use crate::cluster::note::NoteKind;
use sqlx::Row;

use super::{Arg, Key, Order, Page, Position, Sql, Store, StoreError, StoreResult, decode_json};
use crate::model::sessions::{HarnessBinding, Session, SessionStatus, session_stats};
use crate::time::now_micros;

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub session: Session,
    pub binding: HarnessBinding,
    pub key: Key,
    pub last_seq: i64,
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub agent_id: Option<String>,
    pub agent_version: Option<i64>,
    pub statuses: Vec<SessionStatus>,
    pub include_archived: bool,
    pub created_gt: Option<i64>,
    pub created_gte: Option<i64>,
    pub created_lt: Option<i64>,
    pub created_lte: Option<i64>,
}

fn decode(row: &sqlx::any::AnyRow) -> StoreResult<SessionRow> {
    let body: String = row.try_get("body")?;
    let binding: String = row.try_get("binding")?;
    let mut session: Session = decode_json("session", &body)?;
    // `stats` are computed when read (the age of a session grows between writes).
    let created: i64 = row.try_get("created_at")?;
    let updated = crate::time::parse_rfc3339(&session.updated_at).unwrap_or(created);
    let (active, since): (i64, i64) = (row.try_get("active_micros")?, row.try_get("running_since")?);
    session.stats = session_stats(session.status, created, updated, active, since, now_micros());
    Ok(SessionRow {
        session,
        binding: decode_json("session binding", &binding)?,
        key: Key { created_at: row.try_get("created_at")?, id: row.try_get("id")? },
        last_seq: row.try_get("last_seq")?,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Other(e.into()))
}

impl Store {
    pub async fn insert_session(
        &self,
        s: &Session,
        binding: &HarnessBinding,
        created_at: i64,
        agent_version: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, agent_id, agent_version, environment_id, status, created_at, binding, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.id)
        .bind(s.agent["id"].as_str().unwrap_or_default())
        .bind(agent_version)
        .bind(&s.environment_id)
        .bind(s.status.as_str())
        .bind(created_at)
        .bind(to_json(binding)?)
        .bind(to_json(s)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_session(&self, id: &str) -> StoreResult<Option<SessionRow>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode).transpose()
    }

    pub async fn list_sessions(
        &self,
        f: &SessionFilter,
        order: Order,
        pos: &Position,
        limit: i64,
    ) -> StoreResult<Page<SessionRow>> {
        let mut sql = Sql::new("SELECT * FROM sessions WHERE 1=1");
        if let Some(a) = &f.agent_id {
            let p = sql.arg(Arg::S(a.clone()));
            sql.push(&format!(" AND agent_id = {p}"));
        }
        if let Some(v) = f.agent_version {
            let p = sql.arg(Arg::I(v));
            sql.push(&format!(" AND agent_version = {p}"));
        }
        if !f.statuses.is_empty() {
            let ps: Vec<String> = f.statuses.iter().map(|s| sql.arg(Arg::S(s.as_str().to_owned()))).collect();
            sql.push(&format!(" AND status IN ({})", ps.join(", ")));
        }
        if !f.include_archived {
            sql.push(" AND archived_at IS NULL");
        }
        for (op, v) in [(">", f.created_gt), (">=", f.created_gte), ("<", f.created_lt), ("<=", f.created_lte)] {
            if let Some(v) = v {
                let p = sql.arg(Arg::I(v));
                sql.push(&format!(" AND created_at {op} {p}"));
            }
        }
        let page = self.page_rows(sql, order, pos, limit).await?;
        let items = page.items.iter().map(decode).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, more_after: page.more_after, more_before: page.more_before })
    }

    /// Read-modify-write a session under its row lock. The status and
    /// archive columns follow the new body.
    pub async fn update_session<F, E>(&self, id: &str, change: F) -> Result<Session, E>
    where
        F: FnOnce(Session) -> Result<Session, E>,
        E: From<StoreError>,
    {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let locked = sqlx::query("UPDATE sessions SET last_seq = last_seq WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        if locked.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("session `{id}` not found")).into());
        }
        let row = sqlx::query("SELECT * FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let current = decode(&row)?;
        let next = change(current.session)?;
        let archived_at = next.archived_at.as_deref().and_then(crate::time::parse_rfc3339);
        let body = to_json(&next)?;
        let result: Result<(), sqlx::Error> = async {
            sqlx::query("UPDATE sessions SET body = $1, status = $2, archived_at = $3 WHERE id = $4")
                .bind(body)
                .bind(next.status.as_str())
                .bind(archived_at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await;
        result.map_err(StoreError::from)?;
        Ok(next)
    }

    /// Remove a session, its event log and its session-scoped files. Returns the sequence number of
    /// its last event, or `None` when there was no such session.
    pub async fn delete_session(&self, id: &str) -> StoreResult<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM session_events WHERE session_id = $1").bind(id).execute(&mut *tx).await?;
        // The session's output files (scoped to it) go with it.
        sqlx::query(
            "DELETE FROM file_chunks WHERE file_id IN (SELECT id FROM files WHERE scope_type = 'session' AND scope_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM files WHERE scope_type = 'session' AND scope_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("DELETE FROM sessions WHERE id = $1 RETURNING last_seq")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let last_seq = row.map(|r| r.try_get::<i64, _>("last_seq")).transpose()?;
        if let Some(last_seq) = last_seq {
            self.notify(&mut *tx, id, NoteKind::Deleted { last_seq }).await?;
        }
        tx.commit().await?;
        Ok(last_seq)
    }
}

/// The session runner's durable state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerState {
    /// The last user event (log sequence) the runner has taken in.
    pub input_seq: i64,
    /// The runtime's resume token.
    pub resume: Option<String>,
}

impl Store {
    pub async fn runner_state(&self, id: &str) -> StoreResult<Option<RunnerState>> {
        let row = sqlx::query("SELECT input_seq, resume FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(RunnerState { input_seq: r.try_get("input_seq")?, resume: r.try_get("resume")? })).transpose()
    }
}
