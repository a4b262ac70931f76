//! Self-hosted environments: their keys (SHA-256 hashes only) and the work
//! queue's rows. The rules of a lease are `model::work`'s; this module reads
//! rows and writes them back only if nobody changed them meanwhile
//! (`version`), so two nodes never both take one item.

use sqlx::Row;

use super::{Backend, Store, StoreResult, decode_json};
use crate::cluster::note::NoteKind;
use crate::model::work::{WorkItem, WorkState};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnvironmentKeyRow {
    pub id: String,
    pub environment_id: String,
    pub name: String,
    pub hint: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

const WORK_COLUMNS: &str = "id, environment_id, session_id, state, version, created_at, queued_at, polled_at, \
     acknowledged_at, started_at, latest_heartbeat_at, lease_until, ttl_secs, stop_requested_at, stopped_at, \
     worker_id, token_hash, claims, metadata";

fn decode_item(r: &sqlx::any::AnyRow) -> StoreResult<WorkItem> {
    let state: String = r.try_get("state")?;
    let metadata: String = r.try_get("metadata")?;
    Ok(WorkItem {
        id: r.try_get("id")?,
        environment_id: r.try_get("environment_id")?,
        session_id: r.try_get("session_id")?,
        state: WorkState::parse(&state)
            .ok_or_else(|| anyhow::anyhow!("stored work item has an unknown state `{state}`"))?,
        version: r.try_get("version")?,
        created_at: r.try_get("created_at")?,
        queued_at: r.try_get("queued_at")?,
        polled_at: r.try_get("polled_at")?,
        acknowledged_at: r.try_get("acknowledged_at")?,
        started_at: r.try_get("started_at")?,
        latest_heartbeat_at: r.try_get("latest_heartbeat_at")?,
        lease_until: r.try_get("lease_until")?,
        ttl_secs: r.try_get("ttl_secs")?,
        stop_requested_at: r.try_get("stop_requested_at")?,
        stopped_at: r.try_get("stopped_at")?,
        worker_id: r.try_get("worker_id")?,
        token_hash: r.try_get("token_hash")?,
        claims: r.try_get("claims")?,
        metadata: decode_json("work item metadata", &metadata)?,
    })
}

/// The columns a work item's lease changes, in the order [`bind_state`] binds them.
const STATE_COLUMNS: [&str; 15] = [
    "state",
    "version",
    "queued_at",
    "polled_at",
    "acknowledged_at",
    "started_at",
    "latest_heartbeat_at",
    "lease_until",
    "ttl_secs",
    "stop_requested_at",
    "stopped_at",
    "worker_id",
    "token_hash",
    "claims",
    "metadata",
];

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Bind `it`'s [`STATE_COLUMNS`], in order (one list for the insert and the
/// conditional update, so the two cannot disagree).
fn bind_state<'q>(q: AnyQuery<'q>, it: &'q WorkItem) -> StoreResult<AnyQuery<'q>> {
    Ok(q.bind(it.state.as_str())
        .bind(it.version)
        .bind(it.queued_at)
        .bind(it.polled_at)
        .bind(it.acknowledged_at)
        .bind(it.started_at)
        .bind(it.latest_heartbeat_at)
        .bind(it.lease_until)
        .bind(it.ttl_secs)
        .bind(it.stop_requested_at)
        .bind(it.stopped_at)
        .bind(it.worker_id.as_deref())
        .bind(it.token_hash.as_deref())
        .bind(it.claims)
        .bind(metadata_json(it)?))
}

fn metadata_json(it: &WorkItem) -> StoreResult<String> {
    serde_json::to_string(&it.metadata).map_err(|e| super::StoreError::Other(e.into()))
}

impl Store {
    /// Now (epoch µs) by the database's clock, which every lease decision
    /// uses: a worker's lease is then judged by one clock whichever node
    /// serves its heartbeat, however the nodes' clocks drift. SQLite serves
    /// one node, whose clock it is.
    pub async fn work_clock(&self) -> StoreResult<i64> {
        if self.backend != Backend::Postgres {
            return Ok(crate::time::now_micros());
        }
        let row = sqlx::query("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) AS now")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("now")?)
    }

    pub async fn insert_environment_key(&self, row: &EnvironmentKeyRow, hash: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO environment_keys (id, environment_id, name, hash, hint, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(&row.environment_id)
        .bind(&row.name)
        .bind(hash)
        .bind(&row.hint)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The active environment key with this hash: `(key id, environment id)`.
    pub async fn find_environment_key(&self, hash: &str) -> StoreResult<Option<(String, String)>> {
        let row = sqlx::query("SELECT id, environment_id FROM environment_keys WHERE hash = $1 AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("id")?, r.try_get("environment_id")?))).transpose()
    }

    /// Every environment key (of one environment, when given).
    pub async fn list_environment_keys(&self, environment_id: Option<&str>) -> StoreResult<Vec<EnvironmentKeyRow>> {
        Ok(sqlx::query_as(
            "SELECT id, environment_id, name, hint, created_at, revoked_at FROM environment_keys \
             WHERE ($1 = '' OR environment_id = $1) ORDER BY created_at, id",
        )
        .bind(environment_id.unwrap_or_default())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revoke by id; false if no such active key.
    pub async fn revoke_environment_key(&self, id: &str, at: i64) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE environment_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Store a new work item and tell every node's long polls.
    pub async fn insert_work(&self, it: &WorkItem) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let columns = STATE_COLUMNS.join(", ");
        let values: Vec<String> = (5..5 + STATE_COLUMNS.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO work_items (id, environment_id, session_id, created_at, {columns}) VALUES ($1, $2, $3, $4, {})",
            values.join(", ")
        );
        let query = sqlx::query(&sql).bind(&it.id).bind(&it.environment_id).bind(&it.session_id).bind(it.created_at);
        bind_state(query, it)?.execute(&mut *tx).await?;
        self.notify(&mut *tx, &it.session_id, NoteKind::WorkQueued { environment: it.environment_id.clone() }).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Write `it` back if the stored row is still at `read_version`; false
    /// when another writer changed it first.
    pub async fn save_work(&self, it: &WorkItem, read_version: i64) -> StoreResult<bool> {
        let n = STATE_COLUMNS.len();
        let set: Vec<String> = STATE_COLUMNS.iter().enumerate().map(|(i, c)| format!("{c} = ${}", i + 1)).collect();
        let sql = format!("UPDATE work_items SET {} WHERE id = ${} AND version = ${}", set.join(", "), n + 1, n + 2);
        let done = bind_state(sqlx::query(&sql), it)?.bind(&it.id).bind(read_version).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn get_work(&self, id: &str) -> StoreResult<Option<WorkItem>> {
        let row = sqlx::query(&format!("SELECT {WORK_COLUMNS} FROM work_items WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_item).transpose()
    }

    /// The work item whose current lease this token hash names.
    pub async fn work_by_token(&self, token_hash: &str) -> StoreResult<Option<WorkItem>> {
        let row = sqlx::query(&format!("SELECT {WORK_COLUMNS} FROM work_items WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_item).transpose()
    }

    /// A session's items not stored as stopped, oldest first.
    pub async fn open_work_of_session(&self, session_id: &str) -> StoreResult<Vec<WorkItem>> {
        let rows = sqlx::query(&format!(
            "SELECT {WORK_COLUMNS} FROM work_items WHERE session_id = $1 AND state <> 'stopped' \
             ORDER BY created_at, id"
        ))
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_item).collect()
    }

    /// An environment's items that a poll might take or `stats` counts (not
    /// stored as stopped), in queue order.
    pub async fn open_work(&self, environment_id: &str) -> StoreResult<Vec<WorkItem>> {
        let rows = sqlx::query(&format!(
            "SELECT {WORK_COLUMNS} FROM work_items WHERE environment_id = $1 AND state <> 'stopped' \
             ORDER BY queued_at, id LIMIT 1000"
        ))
        .bind(environment_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_item).collect()
    }

    /// A page of an environment's items, newest first, after the item `after`.
    pub async fn list_work(
        &self,
        environment_id: &str,
        after: Option<&WorkItem>,
        limit: i64,
    ) -> StoreResult<Vec<WorkItem>> {
        let (at, id) = after.map_or((i64::MAX, String::new()), |a| (a.created_at, a.id.clone()));
        let rows = sqlx::query(&format!(
            "SELECT {WORK_COLUMNS} FROM work_items WHERE environment_id = $1 \
             AND (created_at < $2 OR (created_at = $2 AND id < $3) OR $3 = '') \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(environment_id)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_item).collect()
    }

    /// Remember that `worker` polled `environment_id` at `at`.
    pub async fn note_poller(&self, environment_id: &str, worker: &str, at: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO work_pollers (environment_id, worker_id, polled_at) VALUES ($1, $2, $3) \
             ON CONFLICT (environment_id, worker_id) DO UPDATE SET polled_at = excluded.polled_at",
        )
        .bind(environment_id)
        .bind(worker)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Workers that polled `environment_id` since `since`.
    pub async fn count_pollers(&self, environment_id: &str, since: i64) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM work_pollers WHERE environment_id = $1 AND polled_at >= $2")
            .bind(environment_id)
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
