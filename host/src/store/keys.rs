//! API keys, stored as SHA-256 hashes (keys are 256-bit random, so a plain
//! hash is enough; the raw key is shown once at creation).

use sqlx::Row;

use super::{Store, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    /// The first characters of the key, to tell keys apart in listings.
    pub hint: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Store {
    pub async fn insert_api_key(&self, row: &ApiKeyRow, hash: &str) -> StoreResult<()> {
        sqlx::query("INSERT INTO api_keys (id, name, hash, hint, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&row.id)
            .bind(&row.name)
            .bind(hash)
            .bind(&row.hint)
            .bind(row.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The active key with this hash, if any.
    pub async fn find_api_key(&self, hash: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT id FROM api_keys WHERE hash = $1 AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    pub async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRow>> {
        Ok(sqlx::query_as("SELECT id, name, hint, created_at, revoked_at FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn count_active_api_keys(&self) -> StoreResult<i64> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL").fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// Revoke by id; false if no such active key.
    pub async fn revoke_api_key(&self, id: &str, at: i64) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
