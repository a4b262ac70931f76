//! Environments, vaults and credentials: objects stored as their wire JSON
//! with creation and archive times beside it. One set of queries serves all
//! three tables.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;

use crate::model::common::Archivable;
use crate::time::{now_micros, rfc3339};

use super::{Arg, Key, Order, Page, Position, Sql, Store, StoreError, StoreResult, decode_json};

/// The document tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Environments,
    Vaults,
    Credentials,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Environments => "environments",
            Table::Vaults => "vaults",
            Table::Credentials => "credentials",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Table::Environments => "environment",
            Table::Vaults => "vault",
            Table::Credentials => "credential",
        }
    }
}

/// A stored object with its list key (and, for credentials, the sealed secret).
#[derive(Debug, Clone)]
pub struct DocRow<T> {
    pub doc: T,
    pub key: Key,
    pub archived: bool,
    pub sealed: Option<String>,
}

fn decode<T: DeserializeOwned>(table: Table, row: &sqlx::any::AnyRow) -> StoreResult<DocRow<T>> {
    let body: String = row.try_get("body")?;
    let archived: Option<i64> = row.try_get("archived_at")?;
    let sealed = if table == Table::Credentials { Some(row.try_get::<String, _>("sealed")?) } else { None };
    Ok(DocRow {
        doc: decode_json(table.noun(), &body)?,
        key: Key { created_at: row.try_get("created_at")?, id: row.try_get("id")? },
        archived: archived.is_some(),
        sealed,
    })
}

fn to_body<T: Serialize>(doc: &T) -> StoreResult<String> {
    serde_json::to_string(doc).map_err(|e| StoreError::Other(e.into()))
}

impl Store {
    /// Insert an environment or vault.
    pub async fn insert_doc<T: Serialize>(&self, table: Table, id: &str, created_at: i64, doc: &T) -> StoreResult<()> {
        let sql = format!("INSERT INTO {} (id, created_at, body) VALUES ($1, $2, $3)", table.name());
        sqlx::query(&sql).bind(id).bind(created_at).bind(to_body(doc)?).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn insert_credential<T: Serialize>(
        &self,
        id: &str,
        vault_id: &str,
        created_at: i64,
        doc: &T,
        sealed: &str,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO credentials (id, vault_id, created_at, body, sealed) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(vault_id)
            .bind(created_at)
            .bind(to_body(doc)?)
            .bind(sealed)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn get_doc<T: DeserializeOwned>(&self, table: Table, id: &str) -> StoreResult<Option<DocRow<T>>> {
        let sql = format!("SELECT * FROM {} WHERE id = $1", table.name());
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(|r| decode(table, r)).transpose()
    }

    /// List one table; `vault_id` scopes credentials to their vault.
    pub async fn list_docs<T: DeserializeOwned>(
        &self,
        table: Table,
        vault_id: Option<&str>,
        include_archived: bool,
        order: Order,
        pos: &Position,
        limit: i64,
    ) -> StoreResult<Page<DocRow<T>>> {
        let mut sql = Sql::new(&format!("SELECT * FROM {} WHERE 1=1", table.name()));
        if let Some(v) = vault_id {
            let p = sql.arg(Arg::S(v.to_owned()));
            sql.push(&format!(" AND vault_id = {p}"));
        }
        if !include_archived {
            sql.push(" AND archived_at IS NULL");
        }
        let page = self.page_rows(sql, order, pos, limit).await?;
        let items = page.items.iter().map(|r| decode(table, r)).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, more_after: page.more_after, more_before: page.more_before })
    }

    /// Read-modify-write one object under a lock. `change` gets the current
    /// object and sealed secret and returns the new ones; `archived_at` set
    /// on the result is written to its column too.
    pub async fn update_doc<T, F, E>(&self, table: Table, id: &str, change: F) -> Result<DocRow<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(DocRow<T>) -> Result<(DocRow<T>, Option<i64>), E>,
        E: From<StoreError>,
    {
        let name = table.name();
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        // A no-op write takes the lock before the read (see update_agent).
        let locked = sqlx::query(&format!("UPDATE {name} SET id = id WHERE id = $1"))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        if locked.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("{} `{id}` not found", table.noun())).into());
        }
        let row = sqlx::query(&format!("SELECT * FROM {name} WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let current = decode(table, &row)?;
        let (next, archived_at) = change(current)?;
        let body = to_body(&next.doc)?;
        let result: Result<(), sqlx::Error> = async {
            let sql = if table == Table::Credentials {
                format!(
                    "UPDATE {name} SET body = $1, archived_at = COALESCE(archived_at, $2), sealed = $3 WHERE id = $4"
                )
            } else {
                format!("UPDATE {name} SET body = $1, archived_at = COALESCE(archived_at, $2) WHERE id = $3")
            };
            let mut q = sqlx::query(&sql).bind(body).bind(archived_at);
            if table == Table::Credentials {
                q = q.bind(next.sealed.clone().unwrap_or_default());
            }
            q.bind(id).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await;
        result.map_err(StoreError::from)?;
        Ok(next)
    }

    /// Archive one object; archiving an archived one changes nothing.
    pub async fn archive_doc<T>(&self, table: Table, id: &str) -> StoreResult<DocRow<T>>
    where
        T: Serialize + DeserializeOwned + Archivable,
    {
        self.update_doc(table, id, |mut row: DocRow<T>| -> StoreResult<_> {
            if row.archived {
                return Ok((row, None));
            }
            let now = now_micros();
            row.doc.stamp_archived(rfc3339(now));
            Ok((row, Some(now)))
        })
        .await
    }

    /// Delete one object (a vault takes its credentials with it).
    pub async fn delete_doc(&self, table: Table, id: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        if table == Table::Vaults {
            sqlx::query("DELETE FROM credentials WHERE vault_id = $1").bind(id).execute(&mut *tx).await?;
        }
        let done =
            sqlx::query(&format!("DELETE FROM {} WHERE id = $1", table.name())).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Active credentials of a vault, oldest first (for harness selection).
    pub async fn active_credentials<T: DeserializeOwned>(&self, vault_id: &str) -> StoreResult<Vec<DocRow<T>>> {
        let rows = sqlx::query(
            "SELECT * FROM credentials WHERE vault_id = $1 AND archived_at IS NULL ORDER BY created_at, id LIMIT 100",
        )
        .bind(vault_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| decode(Table::Credentials, r)).collect()
    }

    /// How many sessions use an environment (it cannot be deleted while any do).
    pub async fn sessions_using_environment(&self, env_id: &str) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM sessions WHERE environment_id = $1")
            .bind(env_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
