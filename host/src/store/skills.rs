//! Skills and their versions (each version's files as one zip archive).

use sqlx::{FromRow, Row};

use super::{Arg, Order, Page, Position, Sql, Store, StoreResult};

/// A stored skill.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SkillRow {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub display_name: String,
    pub name: String,
    pub latest_version: String,
}

/// A stored skill version (without its archive).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SkillVersionRow {
    pub skill_id: String,
    pub id: String,
    pub created_at: i64,
    pub description: String,
}

/// One version as a session places it (see [`Store::skill_bundle`]).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SkillBundle {
    pub name: String,
    pub description: String,
    pub archive: Vec<u8>,
}

const SKILL_COLUMNS: &str = "id, created_at, updated_at, display_name, name, latest_version";
const VERSION_COLUMNS: &str = "skill_id, id, created_at, description";

fn skill(row: &sqlx::any::AnyRow) -> StoreResult<SkillRow> {
    Ok(SkillRow::from_row(row)?)
}

fn version(row: &sqlx::any::AnyRow) -> StoreResult<SkillVersionRow> {
    Ok(SkillVersionRow::from_row(row)?)
}

impl Store {
    /// A new skill with its first version.
    pub async fn create_skill(&self, s: &SkillRow, v: &SkillVersionRow, archive: &[u8]) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("INSERT INTO skills ({SKILL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"))
            .bind(&s.id)
            .bind(s.created_at)
            .bind(s.updated_at)
            .bind(&s.display_name)
            .bind(&s.name)
            .bind(&s.latest_version)
            .execute(&mut *tx)
            .await?;
        insert_version(&mut tx, v, archive).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Add a version to a skill and make it the latest; `false` if the skill is gone.
    pub async fn add_skill_version(&self, v: &SkillVersionRow, archive: &[u8]) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE skills SET latest_version = $1, updated_at = $2 WHERE id = $3")
            .bind(&v.id)
            .bind(v.created_at)
            .bind(&v.skill_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_version(&mut tx, v, archive).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn get_skill(&self, id: &str) -> StoreResult<Option<SkillRow>> {
        let row = sqlx::query(&format!("SELECT {SKILL_COLUMNS} FROM skills WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(skill).transpose()
    }

    pub async fn list_skills(&self, order: Order, pos: &Position, limit: i64) -> StoreResult<Page<SkillRow>> {
        let sql = Sql::new(&format!("SELECT {SKILL_COLUMNS} FROM skills WHERE 1 = 1"));
        let page = self.page_rows(sql, order, pos, limit).await?;
        let items = page.items.iter().map(skill).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, more_after: page.more_after, more_before: page.more_before })
    }

    /// Delete a skill and all its versions; `false` if there was none.
    pub async fn delete_skill(&self, id: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        // The foreign key cascades too; this does not depend on it.
        sqlx::query("DELETE FROM skill_versions WHERE skill_id = $1").bind(id).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM skills WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn get_skill_version(&self, skill_id: &str, id: &str) -> StoreResult<Option<SkillVersionRow>> {
        let row = sqlx::query(&format!("SELECT {VERSION_COLUMNS} FROM skill_versions WHERE skill_id = $1 AND id = $2"))
            .bind(skill_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(version).transpose()
    }

    /// What a session or a download needs of one version, in one read: the
    /// skill's name, the version's description and its archive.
    pub async fn skill_bundle(&self, skill_id: &str, id: &str) -> StoreResult<Option<SkillBundle>> {
        Ok(sqlx::query_as(
            "SELECT s.name, v.description, v.archive FROM skill_versions v JOIN skills s ON s.id = v.skill_id \
             WHERE v.skill_id = $1 AND v.id = $2",
        )
        .bind(skill_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn list_skill_versions(
        &self,
        skill_id: &str,
        order: Order,
        pos: &Position,
        limit: i64,
    ) -> StoreResult<Page<SkillVersionRow>> {
        let mut sql = Sql::new(&format!("SELECT {VERSION_COLUMNS} FROM skill_versions WHERE "));
        let p = sql.arg(Arg::S(skill_id.to_owned()));
        sql.push(&format!("skill_id = {p}"));
        let page = self.page_rows(sql, order, pos, limit).await?;
        let items = page.items.iter().map(version).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, more_after: page.more_after, more_before: page.more_before })
    }

    /// Delete a version that is not the skill's only one; the newest left
    /// becomes the latest. `Ok(None)`: no such version; `Ok(Some(false))`: it
    /// is the only one.
    pub async fn delete_skill_version(&self, skill_id: &str, id: &str) -> StoreResult<Option<bool>> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT 1 AS one FROM skill_versions WHERE skill_id = $1 AND id = $2")
            .bind(skill_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let newest_other = sqlx::query(
            "SELECT id FROM skill_versions WHERE skill_id = $1 AND id <> $2 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(skill_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(newest_other) = newest_other else { return Ok(Some(false)) };
        let newest: String = newest_other.try_get("id")?;
        sqlx::query("DELETE FROM skill_versions WHERE skill_id = $1 AND id = $2")
            .bind(skill_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE skills SET latest_version = $1, updated_at = $2 WHERE id = $3")
            .bind(&newest)
            .bind(crate::time::now_micros())
            .bind(skill_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(true))
    }
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    v: &SkillVersionRow,
    archive: &[u8],
) -> StoreResult<()> {
    sqlx::query(&format!("INSERT INTO skill_versions ({VERSION_COLUMNS}, archive) VALUES ($1, $2, $3, $4, $5)"))
        .bind(&v.skill_id)
        .bind(&v.id)
        .bind(v.created_at)
        .bind(&v.description)
        .bind(archive.to_vec())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
