//! `/v1/environments`: create, list, retrieve, update, archive, delete.

use axum::Json;
use axum::extract::{Path, State};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams, check_id};
use super::pagination::{Page, next_token, parse_limit, parse_order, position};
use crate::ids::{Kind, new_id};
use crate::model::common::patch_sets;
use crate::model::common::{Deleted, apply_metadata_patch, check_len};
use crate::model::environment_keys::{self, DiskBounds, DriverChoice};
use crate::model::environments::{ConfigParams, Environment, EnvironmentConfig, EnvironmentCreate, EnvironmentUpdate};
use crate::model::vaults::check_not_reserved;
use crate::model::{Invalid, Validate};
use crate::packages::spec::check_installable;
use crate::store::{DocRow, Order, Table};
use crate::time::{now_micros, rfc3339};

impl Validate for EnvironmentUpdate {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(m) = &self.metadata {
            check_not_reserved("environment", patch_sets(m))?;
        }
        if let Some(n) = &self.name {
            check_len("name", n, 1, 256)?;
        }
        if let Some(Some(d)) = &self.description {
            check_len("description", d, 0, 2048)?;
        }
        if self.scope.is_some() {
            return Err(Invalid::new("scope: only applicable to self_hosted environments"));
        }
        Ok(())
    }
}

/// The packages a request names must be installable on this server (empty lists always are).
fn check_packages(st: &AppState, c: &ConfigParams) -> Result<(), Invalid> {
    match c {
        ConfigParams::Cloud { packages: Some(p), .. } => check_installable(p, &st.packages),
        _ => Ok(()),
    }
}

#[utoipa::path(
    post,
    path = "/environments",
    tag = "environments",
    operation_id = "environments_create",
    summary = "Create an environment",
    request_body = EnvironmentCreate,
    responses((status = 200, description = "OK", body = Environment))
)]
pub async fn create(
    State(st): State<AppState>,
    ApiJson(p): ApiJson<EnvironmentCreate>,
) -> ApiResult<Json<Environment>> {
    environment_keys::check(p.metadata.iter().flatten(), disk_bounds(&st), &driver_choice(&st))?;
    if let Some(c) = &p.config {
        check_packages(&st, c)?;
    }
    let config = EnvironmentConfig::create(p.config.as_ref())?;
    let now = now_micros();
    let env = Environment {
        id: new_id(Kind::Environment),
        archived_at: None,
        config,
        created_at: rfc3339(now),
        description: p.description.filter(|d| !d.is_empty()),
        metadata: p.metadata.unwrap_or_default(),
        name: p.name,
        kind: "environment".into(),
        updated_at: rfc3339(now),
    };
    st.store.insert_doc(Table::Environments, &env.id, now, &env).await?;
    Ok(Json(env))
}

#[utoipa::path(
    get,
    path = "/environments",
    tag = "environments",
    operation_id = "environments_list",
    summary = "List environments",
    params(
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 100, default 20."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response."),
        ("order" = Option<String>, Query, description = "`asc` or `desc` by creation time (default `desc`)."),
        ("include_archived" = Option<bool>, Query, description = "Include archived resources.")
    ),
    responses((status = 200, description = "OK", body = Page<Environment>))
)]
pub async fn list(State(st): State<AppState>, q: QueryParams) -> ApiResult<Json<Page<Environment>>> {
    q.allow(&["limit", "page", "include_archived", "order"])?;
    let order = parse_order(&q, Order::Desc)?;
    let limit = parse_limit(&q, 20, 100)?;
    let page = st
        .store
        .list_docs::<Environment>(
            Table::Environments,
            None,
            q.bool("include_archived")?,
            order,
            &position(&q, order, Kind::Environment)?,
            limit,
        )
        .await?;
    let next = page.more_after.then(|| page.items.last().map(|r| next_token(order, &r.key))).flatten();
    let data = page.items.into_iter().map(|r| r.doc).collect();
    Ok(Json(Page { data, next_page: next }))
}

/// What this server lets an environment's `bridle.sandbox_disk_bytes` ask for.
fn disk_bounds(st: &AppState) -> DiskBounds {
    DiskBounds::new(st.config.sessions.sandbox_disk_bytes_max)
}

/// What this server lets an environment's `bridle.sandbox_driver` name: the
/// operator's list, less the drivers this node could not start (an API-only
/// node knows only the list).
pub(crate) fn driver_choice(st: &AppState) -> DriverChoice {
    match &st.sessions {
        Some(s) => s.driver_choice(),
        None => DriverChoice { allowed: st.config.sessions.sandbox_drivers_allowed.clone(), unavailable: Vec::new() },
    }
}

/// Fetch an environment or 404.
pub async fn load(st: &AppState, id: &str) -> ApiResult<DocRow<Environment>> {
    check_id(Kind::Environment, id)?;
    st.store.get_doc(Table::Environments, id).await?.ok_or_else(|| ApiError::not_found(Kind::Environment, id))
}

#[utoipa::path(
    get,
    path = "/environments/{environment_id}",
    tag = "environments",
    operation_id = "environments_retrieve",
    summary = "Retrieve an environment",
    params(
        ("environment_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Environment))
)]
pub async fn retrieve(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Environment>> {
    Ok(Json(load(&st, &id).await?.doc))
}

#[utoipa::path(
    post,
    path = "/environments/{environment_id}",
    tag = "environments",
    operation_id = "environments_update",
    summary = "Update an environment",
    params(
        ("environment_id" = String, Path)
    ),
    request_body = EnvironmentUpdate,
    responses((status = 200, description = "OK", body = Environment))
)]
pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(p): ApiJson<EnvironmentUpdate>,
) -> ApiResult<Json<Environment>> {
    check_id(Kind::Environment, &id)?;
    // Only the keys the patch sets: a key stored under earlier bounds can
    // still be deleted or left as it is.
    let sets = p.metadata.iter().flatten().filter_map(|(k, v)| v.as_ref().filter(|v| !v.is_empty()).map(|v| (k, v)));
    environment_keys::check(sets, disk_bounds(&st), &driver_choice(&st))?;
    if let Some(c) = &p.config {
        check_packages(&st, c)?;
    }
    let row = st
        .store
        .update_doc(Table::Environments, &id, |mut row: DocRow<Environment>| -> Result<_, ApiError> {
            if row.archived {
                return Err(ApiError::conflict(format!("environment `{id}` is archived and cannot be modified")));
            }
            let e = &mut row.doc;
            if let Some(n) = &p.name {
                e.name.clone_from(n);
            }
            if let Some(d) = &p.description {
                e.description = d.clone().filter(|d| !d.is_empty());
            }
            if let Some(c) = &p.config {
                e.config.apply(c)?;
            }
            if let Some(m) = &p.metadata {
                apply_metadata_patch("metadata", &mut e.metadata, m)?;
            }
            e.updated_at = rfc3339(now_micros());
            Ok((row, None))
        })
        .await?;
    Ok(Json(row.doc))
}

#[utoipa::path(
    post,
    path = "/environments/{environment_id}/archive",
    tag = "environments",
    operation_id = "environments_archive",
    summary = "Archive an environment",
    params(
        ("environment_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Environment))
)]
pub async fn archive(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Environment>> {
    check_id(Kind::Environment, &id)?;
    let row = st.store.archive_doc(Table::Environments, &id).await?;
    Ok(Json(row.doc))
}

#[utoipa::path(
    delete,
    path = "/environments/{environment_id}",
    tag = "environments",
    operation_id = "environments_delete",
    summary = "Delete an environment",
    params(
        ("environment_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Deleted))
)]
pub async fn delete(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Deleted>> {
    load(&st, &id).await?;
    let n = st.store.sessions_using_environment(&id).await?;
    if n > 0 {
        return Err(ApiError::conflict(format!(
            "environment `{id}` is used by {n} session(s); delete them first or archive the environment instead"
        )));
    }
    if !st.store.delete_doc(Table::Environments, &id).await? {
        return Err(ApiError::not_found(Kind::Environment, &id));
    }
    Ok(Json(Deleted { id, kind: "environment_deleted".into() }))
}
