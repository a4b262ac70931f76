//! Memory stores, their live memories and the memories' versions. Every
//! write to a memory adds its version in the same transaction; a store's
//! row is locked first, so an archive and a write never interleave.

use sqlx::Row;

use crate::model::Metadata;
use crate::model::memory::{Actor, Operation, PageBuilder, prefix_end};

use super::{Arg, Order, Page, Position, Sql, Store, StoreError, StoreResult, decode_json};

/// A stored memory store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryStoreRow {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub archived_at: Option<i64>,
    pub name: String,
    pub description: String,
    pub metadata: Metadata,
}

/// A live memory (with its content; empty when a list asked for none).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MemoryRow {
    pub id: String,
    pub store_id: String,
    pub path: String,
    pub content: String,
    pub content_sha256: String,
    pub content_size_bytes: i64,
    pub version_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One version of a memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryVersionRow {
    pub id: String,
    pub store_id: String,
    pub memory_id: String,
    pub created_at: i64,
    pub operation: Operation,
    pub path: Option<String>,
    pub content: Option<String>,
    pub content_sha256: Option<String>,
    pub content_size_bytes: Option<i64>,
    pub created_by: Option<Actor>,
    pub redacted_at: Option<i64>,
    pub redacted_by: Option<Actor>,
}

/// Which versions a list returns (every field narrows it).
#[derive(Debug, Clone, Default)]
pub struct VersionFilter {
    pub memory_id: Option<String>,
    pub operation: Option<Operation>,
    pub created_by: Option<Actor>,
    pub created_gte: Option<i64>,
    pub created_lte: Option<i64>,
}

const STORE_COLUMNS: &str = "id, created_at, updated_at, archived_at, name, description, metadata";
const MEMORY_COLUMNS: &str =
    "id, store_id, path, content, content_sha256, content_size_bytes, version_id, created_at, updated_at";
/// The same, with the content left out (`view=basic` lists read no content).
const MEMORY_COLUMNS_BASIC: &str =
    "id, store_id, path, '' AS content, content_sha256, content_size_bytes, version_id, created_at, updated_at";
const VERSION_COLUMNS: &str = "id, store_id, memory_id, created_at, operation, path, content, content_sha256, \
                               content_size_bytes, actor_type, actor_id, redacted_at, redacted_by_type, redacted_by_id";
const VERSION_COLUMNS_BASIC: &str = "id, store_id, memory_id, created_at, operation, path, NULL AS content, \
                                     content_sha256, content_size_bytes, actor_type, actor_id, redacted_at, \
                                     redacted_by_type, redacted_by_id";
/// Rows a memories list reads at a time while it rolls paths up.
const LIST_BATCH: i64 = 200;

fn store_row(row: &sqlx::any::AnyRow) -> StoreResult<MemoryStoreRow> {
    let metadata: String = row.try_get("metadata")?;
    Ok(MemoryStoreRow {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        archived_at: row.try_get("archived_at")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        metadata: decode_json("memory store metadata", &metadata)?,
    })
}

fn actor(kind: Option<String>, id: Option<String>) -> Option<Actor> {
    Actor::from_parts(kind.as_deref()?, id?)
}

fn version_row(row: &sqlx::any::AnyRow) -> StoreResult<MemoryVersionRow> {
    let op: String = row.try_get("operation")?;
    let operation = Operation::parse(&op)
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("stored memory version has operation `{op}`")))?;
    Ok(MemoryVersionRow {
        id: row.try_get("id")?,
        store_id: row.try_get("store_id")?,
        memory_id: row.try_get("memory_id")?,
        created_at: row.try_get("created_at")?,
        operation,
        path: row.try_get("path")?,
        content: row.try_get("content")?,
        content_sha256: row.try_get("content_sha256")?,
        content_size_bytes: row.try_get("content_size_bytes")?,
        created_by: actor(row.try_get("actor_type")?, row.try_get("actor_id")?),
        redacted_at: row.try_get("redacted_at")?,
        redacted_by: actor(row.try_get("redacted_by_type")?, row.try_get("redacted_by_id")?),
    })
}

fn to_json(m: &Metadata) -> StoreResult<String> {
    serde_json::to_string(m).map_err(|e| StoreError::Other(e.into()))
}

fn store_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("memory store `{id}` not found"))
}

fn memory_not_found(store_id: &str, id: &str) -> StoreError {
    StoreError::NotFound(format!("memory `{id}` not found in memory store `{store_id}`"))
}

/// A unique-index violation (two memories at one path) as a 409.
fn path_taken(e: sqlx::Error, path: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(format!("a memory already exists at path `{path}` in this store"))
        }
        _ => e.into(),
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Lock a store's row for this transaction and say whether it is archived.
async fn lock_store(tx: &mut Tx<'_>, id: &str) -> StoreResult<bool> {
    let locked = sqlx::query("UPDATE memory_stores SET id = id WHERE id = $1").bind(id).execute(&mut **tx).await?;
    if locked.rows_affected() == 0 {
        return Err(store_not_found(id));
    }
    let row = sqlx::query("SELECT archived_at FROM memory_stores WHERE id = $1").bind(id).fetch_one(&mut **tx).await?;
    Ok(row.try_get::<Option<i64>, _>("archived_at")?.is_some())
}

/// Refuse writes to an archived store.
async fn lock_open_store(tx: &mut Tx<'_>, id: &str, what: &str) -> StoreResult<()> {
    if lock_store(tx, id).await? {
        return Err(StoreError::Conflict(format!(
            "memory store `{id}` is archived: its memories can be read, deleted and their versions redacted, \
             but not {what}"
        )));
    }
    Ok(())
}

async fn path_in_use(tx: &mut Tx<'_>, store_id: &str, path: &str) -> StoreResult<bool> {
    let row = sqlx::query("SELECT id FROM memories WHERE store_id = $1 AND path = $2")
        .bind(store_id)
        .bind(path)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

async fn insert_version(tx: &mut Tx<'_>, v: &MemoryVersionRow) -> StoreResult<()> {
    let (actor_type, actor_id) = v.created_by.as_ref().map(Actor::to_parts).unzip();
    sqlx::query(&format!(
        "INSERT INTO memory_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL, NULL)"
    ))
    .bind(&v.id)
    .bind(&v.store_id)
    .bind(&v.memory_id)
    .bind(v.created_at)
    .bind(v.operation.as_str())
    .bind(v.path.as_deref())
    .bind(v.content.as_deref())
    .bind(v.content_sha256.as_deref())
    .bind(v.content_size_bytes)
    .bind(actor_type)
    .bind(actor_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The version that records a memory as it now is.
fn version_of(m: &MemoryRow, operation: Operation, by: &Actor) -> MemoryVersionRow {
    MemoryVersionRow {
        id: m.version_id.clone(),
        store_id: m.store_id.clone(),
        memory_id: m.id.clone(),
        created_at: m.updated_at,
        operation,
        path: Some(m.path.clone()),
        content: Some(m.content.clone()),
        content_sha256: Some(m.content_sha256.clone()),
        content_size_bytes: Some(m.content_size_bytes),
        created_by: Some(by.clone()),
        redacted_at: None,
        redacted_by: None,
    }
}

fn check_expected(m: &MemoryRow, expect: Option<&str>) -> StoreResult<()> {
    match expect {
        Some(want) if want != m.content_sha256 => Err(StoreError::Conflict(format!(
            "precondition failed: memory `{}` has content_sha256 `{}`, not `{want}`; nothing was changed",
            m.id, m.content_sha256
        ))),
        _ => Ok(()),
    }
}

impl Store {
    pub async fn create_memory_store(&self, s: &MemoryStoreRow) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(&format!("INSERT INTO memory_stores ({STORE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(&s.id)
            .bind(s.created_at)
            .bind(s.updated_at)
            .bind(s.archived_at)
            .bind(&s.name)
            .bind(&s.description)
            .bind(to_json(&s.metadata)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn get_memory_store(&self, id: &str) -> StoreResult<Option<MemoryStoreRow>> {
        let row = sqlx::query(&format!("SELECT {STORE_COLUMNS} FROM memory_stores WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(store_row).transpose()
    }

    pub async fn list_memory_stores(
        &self,
        include_archived: bool,
        created_gte: Option<i64>,
        created_lte: Option<i64>,
        order: Order,
        pos: &Position,
        limit: i64,
    ) -> StoreResult<Page<MemoryStoreRow>> {
        let mut sql = Sql::new(&format!("SELECT {STORE_COLUMNS} FROM memory_stores WHERE 1 = 1"));
        if !include_archived {
            sql.push(" AND archived_at IS NULL");
        }
        sql.created_between(created_gte, created_lte);
        let page = self.page_rows(sql, order, pos, limit).await?;
        let items = page.items.iter().map(store_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, more_after: page.more_after, more_before: page.more_before })
    }

    /// Change a store under its lock: `change` gets the current row (and
    /// refuses, e.g. when it is archived) and edits it.
    pub async fn update_memory_store<F, E>(&self, id: &str, change: F) -> Result<MemoryStoreRow, E>
    where
        F: FnOnce(&mut MemoryStoreRow) -> Result<(), E>,
        E: From<StoreError>,
    {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        lock_store(&mut tx, id).await?;
        let row = sqlx::query(&format!("SELECT {STORE_COLUMNS} FROM memory_stores WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let mut s = store_row(&row)?;
        change(&mut s)?;
        sqlx::query(
            "UPDATE memory_stores SET updated_at = $1, archived_at = $2, name = $3, description = $4, metadata = $5 \
             WHERE id = $6",
        )
        .bind(s.updated_at)
        .bind(s.archived_at)
        .bind(&s.name)
        .bind(&s.description)
        .bind(to_json(&s.metadata)?)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(s)
    }

    /// Delete a store with its memories and versions; `false` if there was none.
    pub async fn delete_memory_store(&self, id: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        // The foreign keys cascade too; this does not depend on them.
        sqlx::query("DELETE FROM memory_versions WHERE store_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM memories WHERE store_id = $1").bind(id).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM memory_stores WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// A new memory and its `created` version.
    pub async fn create_memory(&self, m: &MemoryRow, by: &Actor) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        lock_open_store(&mut tx, &m.store_id, "given new memories").await?;
        if path_in_use(&mut tx, &m.store_id, &m.path).await? {
            return Err(StoreError::Conflict(format!("a memory already exists at path `{}` in this store", m.path)));
        }
        sqlx::query(&format!("INSERT INTO memories ({MEMORY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
            .bind(&m.id)
            .bind(&m.store_id)
            .bind(&m.path)
            .bind(&m.content)
            .bind(&m.content_sha256)
            .bind(m.content_size_bytes)
            .bind(&m.version_id)
            .bind(m.created_at)
            .bind(m.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| path_taken(e, &m.path))?;
        insert_version(&mut tx, &version_of(m, Operation::Created, by)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_memory(&self, store_id: &str, id: &str) -> StoreResult<Option<MemoryRow>> {
        Ok(sqlx::query_as(&format!("SELECT {MEMORY_COLUMNS} FROM memories WHERE store_id = $1 AND id = $2"))
            .bind(store_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Apply a change to a memory. `next` turns the current row into the
    /// new one (new version id, digest, times); an unchanged memory gets no
    /// new version and is returned as it is.
    pub async fn update_memory(
        &self,
        store_id: &str,
        id: &str,
        expect_sha256: Option<&str>,
        by: &Actor,
        next: impl FnOnce(&MemoryRow) -> Option<MemoryRow>,
    ) -> StoreResult<MemoryRow> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        lock_open_store(&mut tx, store_id, "updated").await?;
        let current: MemoryRow =
            sqlx::query_as(&format!("SELECT {MEMORY_COLUMNS} FROM memories WHERE store_id = $1 AND id = $2"))
                .bind(store_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| memory_not_found(store_id, id))?;
        check_expected(&current, expect_sha256)?;
        let Some(new) = next(&current) else { return Ok(current) };
        if new.path != current.path && path_in_use(&mut tx, store_id, &new.path).await? {
            return Err(StoreError::Conflict(format!("a memory already exists at path `{}` in this store", new.path)));
        }
        sqlx::query(
            "UPDATE memories SET path = $1, content = $2, content_sha256 = $3, content_size_bytes = $4, \
             version_id = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(&new.path)
        .bind(&new.content)
        .bind(&new.content_sha256)
        .bind(new.content_size_bytes)
        .bind(&new.version_id)
        .bind(new.updated_at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| path_taken(e, &new.path))?;
        insert_version(&mut tx, &version_of(&new, Operation::Modified, by)).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Delete a memory, recording a `deleted` version (its path, no content).
    pub async fn delete_memory(
        &self,
        store_id: &str,
        id: &str,
        expect_sha256: Option<&str>,
        by: &Actor,
        version_id: &str,
        at: i64,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        // Deleting is allowed in an archived store; the lock orders it with a store delete.
        lock_store(&mut tx, store_id).await?;
        let current: MemoryRow =
            sqlx::query_as(&format!("SELECT {MEMORY_COLUMNS} FROM memories WHERE store_id = $1 AND id = $2"))
                .bind(store_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| memory_not_found(store_id, id))?;
        check_expected(&current, expect_sha256)?;
        sqlx::query("DELETE FROM memories WHERE id = $1").bind(id).execute(&mut *tx).await?;
        let v = MemoryVersionRow {
            id: version_id.to_owned(),
            store_id: store_id.to_owned(),
            memory_id: id.to_owned(),
            created_at: at,
            operation: Operation::Deleted,
            path: Some(current.path),
            content: None,
            content_sha256: None,
            content_size_bytes: None,
            created_by: Some(by.clone()),
            redacted_at: None,
            redacted_by: None,
        };
        insert_version(&mut tx, &v).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Fill `page` with the memories below `prefix` in byte order of their
    /// paths, from `from` (a bound and whether it is inclusive) on.
    pub async fn list_memories(
        &self,
        store_id: &str,
        prefix: &str,
        from: Option<(String, bool)>,
        full: bool,
        page: &mut PageBuilder<MemoryRow>,
    ) -> StoreResult<()> {
        let end = prefix_end(prefix);
        let mut from = from.unwrap_or_else(|| (prefix.to_owned(), true));
        let columns = if full { MEMORY_COLUMNS } else { MEMORY_COLUMNS_BASIC };
        loop {
            let op = if from.1 { ">=" } else { ">" };
            let rows: Vec<MemoryRow> = sqlx::query_as(&format!(
                "SELECT {columns} FROM memories WHERE store_id = $1 AND path {op} $2 AND path < $3 \
                 ORDER BY path LIMIT $4"
            ))
            .bind(store_id)
            .bind(&from.0)
            .bind(&end)
            .bind(LIST_BATCH)
            .fetch_all(&self.pool)
            .await?;
            let n = rows.len() as i64;
            let mut last = None;
            for m in rows {
                last = Some(m.path.clone());
                if !page.push(m.path.clone(), m) {
                    return Ok(());
                }
            }
            let Some(last) = last else { return Ok(()) };
            if n < LIST_BATCH {
                return Ok(());
            }
            from = page.read_on_after(&last);
        }
    }

    pub async fn list_memory_versions(
        &self,
        store_id: &str,
        filter: &VersionFilter,
        full: bool,
        order: Order,
        pos: &Position,
        limit: i64,
    ) -> StoreResult<Page<MemoryVersionRow>> {
        let columns = if full { VERSION_COLUMNS } else { VERSION_COLUMNS_BASIC };
        let mut sql = Sql::new(&format!("SELECT {columns} FROM memory_versions WHERE "));
        let p = sql.arg(Arg::S(store_id.to_owned()));
        sql.push(&format!("store_id = {p}"));
        if let Some(m) = &filter.memory_id {
            let p = sql.arg(Arg::S(m.clone()));
            sql.push(&format!(" AND memory_id = {p}"));
        }
        if let Some(op) = filter.operation {
            let p = sql.arg(Arg::S(op.as_str().to_owned()));
            sql.push(&format!(" AND operation = {p}"));
        }
        if let Some(a) = &filter.created_by {
            let (kind, id) = a.to_parts();
            let k = sql.arg(Arg::S(kind.to_owned()));
            let i = sql.arg(Arg::S(id.to_owned()));
            sql.push(&format!(" AND actor_type = {k} AND actor_id = {i}"));
        }
        sql.created_between(filter.created_gte, filter.created_lte);
        let page = self.page_rows(sql, order, pos, limit).await?;
        let items = page.items.iter().map(version_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, more_after: page.more_after, more_before: page.more_before })
    }

    pub async fn get_memory_version(&self, store_id: &str, id: &str) -> StoreResult<Option<MemoryVersionRow>> {
        let row =
            sqlx::query(&format!("SELECT {VERSION_COLUMNS} FROM memory_versions WHERE store_id = $1 AND id = $2"))
                .bind(store_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(version_row).transpose()
    }

    /// Redact a version: its content, path, digest and size are dropped for
    /// good. The version a live memory shows is refused (its content would
    /// still be served); a redacted version is returned as it is.
    pub async fn redact_memory_version(
        &self,
        store_id: &str,
        id: &str,
        by: &Actor,
        at: i64,
    ) -> StoreResult<MemoryVersionRow> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        lock_store(&mut tx, store_id).await?;
        let row =
            sqlx::query(&format!("SELECT {VERSION_COLUMNS} FROM memory_versions WHERE store_id = $1 AND id = $2"))
                .bind(store_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    StoreError::NotFound(format!("memory version `{id}` not found in memory store `{store_id}`"))
                })?;
        let mut v = version_row(&row)?;
        if v.redacted_at.is_some() {
            return Ok(v);
        }
        let head =
            sqlx::query("SELECT id FROM memories WHERE version_id = $1").bind(id).fetch_optional(&mut *tx).await?;
        if head.is_some() {
            return Err(StoreError::Conflict(format!(
                "memory version `{id}` holds the current content of memory `{}`; update or delete the memory first, \
                 then redact this version",
                v.memory_id
            )));
        }
        let (kind, actor_id) = by.to_parts();
        sqlx::query(
            "UPDATE memory_versions SET path = NULL, content = NULL, content_sha256 = NULL, content_size_bytes = NULL, \
             redacted_at = $1, redacted_by_type = $2, redacted_by_id = $3 WHERE id = $4",
        )
        .bind(at)
        .bind(kind)
        .bind(actor_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        v.path = None;
        v.content = None;
        v.content_sha256 = None;
        v.content_size_bytes = None;
        v.redacted_at = Some(at);
        v.redacted_by = Some(by.clone());
        Ok(v)
    }
}
