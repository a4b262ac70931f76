//! `/v1/vaults`: create, list, retrieve, update, archive, delete.

use axum::Json;
use axum::extract::{Path, State};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams, check_id};
use super::pagination::{Page, next_token, parse_limit, parse_order, position};
use crate::ids::{Kind, new_id};
use crate::model::common::{Deleted, apply_metadata_patch, check_len};
use crate::model::vaults::{Vault, VaultCreate, VaultUpdate, check_vault_reserved};
use crate::model::{Invalid, Validate};
use crate::store::{DocRow, Order, Table};
use crate::time::{now_micros, rfc3339};

impl Validate for VaultUpdate {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(n) = &self.display_name {
            check_len("display_name", n, 1, 255)?;
        }
        Ok(())
    }
}

#[utoipa::path(
    post,
    path = "/vaults",
    tag = "vaults",
    operation_id = "vaults_create",
    summary = "Create a vault",
    request_body = VaultCreate,
    responses((status = 200, description = "OK", body = Vault))
)]
pub async fn create(State(st): State<AppState>, ApiJson(p): ApiJson<VaultCreate>) -> ApiResult<Json<Vault>> {
    let now = now_micros();
    let vault = Vault {
        id: new_id(Kind::Vault),
        archived_at: None,
        created_at: rfc3339(now),
        display_name: p.display_name,
        metadata: p.metadata.unwrap_or_default(),
        kind: "vault".into(),
        updated_at: rfc3339(now),
    };
    st.store.insert_doc(Table::Vaults, &vault.id, now, &vault).await?;
    Ok(Json(vault))
}

#[utoipa::path(
    get,
    path = "/vaults",
    tag = "vaults",
    operation_id = "vaults_list",
    summary = "List vaults",
    params(
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 100, default 20."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response."),
        ("order" = Option<String>, Query, description = "`asc` or `desc` by creation time (default `desc`)."),
        ("include_archived" = Option<bool>, Query, description = "Include archived resources.")
    ),
    responses((status = 200, description = "OK", body = Page<Vault>))
)]
pub async fn list(State(st): State<AppState>, q: QueryParams) -> ApiResult<Json<Page<Vault>>> {
    q.allow(&["limit", "page", "include_archived", "order"])?;
    let order = parse_order(&q, Order::Desc)?;
    let limit = parse_limit(&q, 20, 100)?;
    let page = st
        .store
        .list_docs::<Vault>(
            Table::Vaults,
            None,
            q.bool("include_archived")?,
            order,
            &position(&q, order, Kind::Vault)?,
            limit,
        )
        .await?;
    let next = page.more_after.then(|| page.items.last().map(|r| next_token(order, &r.key))).flatten();
    let data = page.items.into_iter().map(|r| r.doc).collect();
    Ok(Json(Page { data, next_page: next }))
}

/// Fetch a vault or 404.
pub async fn load(st: &AppState, id: &str) -> ApiResult<DocRow<Vault>> {
    check_id(Kind::Vault, id)?;
    st.store.get_doc(Table::Vaults, id).await?.ok_or_else(|| ApiError::not_found(Kind::Vault, id))
}

#[utoipa::path(
    get,
    path = "/vaults/{vault_id}",
    tag = "vaults",
    operation_id = "vaults_retrieve",
    summary = "Retrieve a vault",
    params(
        ("vault_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Vault))
)]
pub async fn retrieve(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Vault>> {
    Ok(Json(load(&st, &id).await?.doc))
}

#[utoipa::path(
    post,
    path = "/vaults/{vault_id}",
    tag = "vaults",
    operation_id = "vaults_update",
    summary = "Update a vault",
    params(
        ("vault_id" = String, Path)
    ),
    request_body = VaultUpdate,
    responses((status = 200, description = "OK", body = Vault))
)]
pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(p): ApiJson<VaultUpdate>,
) -> ApiResult<Json<Vault>> {
    check_id(Kind::Vault, &id)?;
    let row = st
        .store
        .update_doc(Table::Vaults, &id, |mut row: DocRow<Vault>| -> Result<_, ApiError> {
            if row.archived {
                return Err(ApiError::conflict(format!("vault `{id}` is archived and cannot be modified")));
            }
            if let Some(n) = &p.display_name {
                row.doc.display_name.clone_from(n);
            }
            if let Some(m) = &p.metadata {
                apply_metadata_patch("metadata", &mut row.doc.metadata, m)?;
                check_vault_reserved(&row.doc.metadata)?;
            }
            row.doc.updated_at = rfc3339(now_micros());
            Ok((row, None))
        })
        .await?;
    Ok(Json(row.doc))
}

#[utoipa::path(
    post,
    path = "/vaults/{vault_id}/archive",
    tag = "vaults",
    operation_id = "vaults_archive",
    summary = "Archive a vault",
    params(
        ("vault_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Vault))
)]
pub async fn archive(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Vault>> {
    check_id(Kind::Vault, &id)?;
    let row = st.store.archive_doc(Table::Vaults, &id).await?;
    Ok(Json(row.doc))
}

#[utoipa::path(
    delete,
    path = "/vaults/{vault_id}",
    tag = "vaults",
    operation_id = "vaults_delete",
    summary = "Delete a vault and its credentials",
    params(
        ("vault_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Deleted))
)]
pub async fn delete(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Deleted>> {
    load(&st, &id).await?;
    if !st.store.delete_doc(Table::Vaults, &id).await? {
        return Err(ApiError::not_found(Kind::Vault, &id));
    }
    Ok(Json(Deleted { id, kind: "vault_deleted".into() }))
}
