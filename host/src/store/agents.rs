//! Agents and their immutable versions.

use sqlx::Row;

use super::{Key, Order, Page, Position, Sql, Store, StoreError, StoreResult, decode_json};
use crate::model::agents::Agent;
use crate::time::rfc3339;

/// An agent version with its list key.
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub agent: Agent,
    pub key: Key,
}

const SELECT_CURRENT: &str = "SELECT a.id AS id, a.created_at AS created_at, a.archived_at AS archived_at, v.body AS body \
     FROM agents a JOIN agent_versions v ON v.agent_id = a.id AND v.version = a.version WHERE 1=1";

fn row_to_agent(row: &sqlx::any::AnyRow) -> StoreResult<AgentRow> {
    let body: String = row.try_get("body")?;
    let mut agent: Agent = decode_json("agent", &body)?;
    let archived: Option<i64> = row.try_get("archived_at")?;
    agent.archived_at = archived.map(rfc3339);
    let key = Key { created_at: row.try_get("created_at")?, id: row.try_get("id")? };
    Ok(AgentRow { agent, key })
}

impl Store {
    pub async fn insert_agent(&self, agent: &Agent, created_at: i64) -> StoreResult<()> {
        let body = serde_json::to_string(agent).map_err(anyhow::Error::from)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO agents (id, version, created_at) VALUES ($1, $2, $3)")
            .bind(&agent.id)
            .bind(agent.version)
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO agent_versions (agent_id, version, body) VALUES ($1, $2, $3)")
            .bind(&agent.id)
            .bind(agent.version)
            .bind(body)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The current version, or `version` if given.
    pub async fn get_agent(&self, id: &str, version: Option<i64>) -> StoreResult<Option<Agent>> {
        let row = match version {
            None => sqlx::query(&format!("{SELECT_CURRENT} AND a.id = $1")).bind(id).fetch_optional(&self.pool).await?,
            Some(v) => {
                sqlx::query(
                    "SELECT a.id AS id, a.created_at AS created_at, a.archived_at AS archived_at, v.body AS body \
                     FROM agents a JOIN agent_versions v ON v.agent_id = a.id WHERE a.id = $1 AND v.version = $2",
                )
                .bind(id)
                .bind(v)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        row.as_ref().map(row_to_agent).transpose().map(|r| r.map(|r| r.agent))
    }

    pub async fn list_agents(
        &self,
        include_archived: bool,
        created_gte: Option<i64>,
        created_lte: Option<i64>,
        order: Order,
        pos: &Position,
        limit: i64,
    ) -> StoreResult<Page<AgentRow>> {
        let mut sql = Sql::new(&format!("SELECT * FROM ({SELECT_CURRENT}) t WHERE 1=1"));
        if !include_archived {
            sql.push(" AND archived_at IS NULL");
        }
        sql.created_between(created_gte, created_lte);
        let page = self.page_rows(sql, order, pos, limit).await?;
        let items = page.items.iter().map(row_to_agent).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, more_after: page.more_after, more_before: page.more_before })
    }

    /// Versions of one agent, newest first.
    pub async fn list_agent_versions(
        &self,
        id: &str,
        after_version: Option<i64>,
        limit: i64,
    ) -> StoreResult<(Vec<Agent>, bool)> {
        let rows = sqlx::query(
            "SELECT v.body AS body, a.archived_at AS archived_at FROM agent_versions v JOIN agents a ON a.id = v.agent_id \
             WHERE v.agent_id = $1 AND v.version < $2 ORDER BY v.version DESC LIMIT $3",
        )
        .bind(id)
        .bind(after_version.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() as i64 > limit;
        let mut out = Vec::new();
        for row in rows.iter().take(limit as usize) {
            let body: String = row.try_get("body")?;
            let mut a: Agent = decode_json("agent", &body)?;
            let archived: Option<i64> = row.try_get("archived_at")?;
            a.archived_at = archived.map(rfc3339);
            out.push(a);
        }
        Ok((out, more))
    }

    /// Apply `change` to the current version. `change` returns the next
    /// definition, or `None` when nothing changed (no new version). A
    /// mismatching `expected_version` is a conflict.
    pub async fn update_agent<F, E>(&self, id: &str, expected_version: Option<i64>, change: F) -> Result<Agent, E>
    where
        F: FnOnce(&Agent) -> Result<Option<Agent>, E>,
        E: From<StoreError>,
    {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        // A no-op write first: it takes the row lock (PostgreSQL) or the
        // write lock (SQLite) so the read below cannot go stale.
        let locked = sqlx::query("UPDATE agents SET version = version WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        if locked.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("agent `{id}` not found")).into());
        }
        let row = sqlx::query(&format!("{SELECT_CURRENT} AND a.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let current = row_to_agent(&row)?.agent;
        if current.archived_at.is_some() {
            return Err(StoreError::Conflict(format!("agent `{id}` is archived and cannot be modified")).into());
        }
        if let Some(v) = expected_version
            && v != current.version
        {
            return Err(StoreError::Conflict(format!(
                "agent `{id}` is at version {}, not {v}; fetch it again and retry",
                current.version
            ))
            .into());
        }
        let Some(next) = change(&current)? else {
            return Ok(current);
        };
        let body = serde_json::to_string(&next).map_err(|e| StoreError::Other(e.into()))?;
        let result: Result<(), sqlx::Error> = async {
            sqlx::query("UPDATE agents SET version = $1 WHERE id = $2")
                .bind(next.version)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO agent_versions (agent_id, version, body) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(next.version)
                .bind(body)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await;
        result.map_err(StoreError::from)?;
        Ok(next)
    }

    pub async fn archive_agent(&self, id: &str, at: i64) -> StoreResult<Option<Agent>> {
        sqlx::query("UPDATE agents SET archived_at = $1 WHERE id = $2 AND archived_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.get_agent(id, None).await
    }
}
