//! `/v1/memory_stores`: memory stores, their memories and the memories'
//! versions, as the SDKs' `client.beta.memory_stores` (with `.memories` and
//! `.memory_versions`) call them. Writes are attributed to the calling API
//! key (`api_actor`). Attaching a store to a session is not served yet.

use axum::extract::{Path, State};
use axum::{Extension, Json};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams, check_id};
use super::pagination::{Page, next_token, parse_limit, position};
use crate::ids::{Kind, new_id};
use crate::model::common::{Deleted, apply_metadata_patch};
use crate::model::memory::{
    Actor, FULL_VIEW_PAGE, Item, Memory, MemoryCreate, MemoryCursor, MemoryListItem, MemoryPrefix, MemoryStore,
    MemoryStoreCreate, MemoryStoreUpdate, MemoryUpdate, MemoryVersion, Operation, PageBuilder, Precondition, View,
    check_prefix, check_sha256, content_sha256, resume_bound,
};
use crate::store::{Key, MemoryRow, MemoryStoreRow, MemoryVersionRow, Order, VersionFilter};
use crate::time::{now_micros, rfc3339};

// ---------------------------------------------------------------------------------------------
// Wire conversions and shared checks
// ---------------------------------------------------------------------------------------------

fn to_store(s: MemoryStoreRow) -> MemoryStore {
    MemoryStore {
        id: s.id,
        archived_at: s.archived_at.map(rfc3339),
        created_at: rfc3339(s.created_at),
        description: s.description,
        metadata: s.metadata,
        name: s.name,
        kind: "memory_store".into(),
        updated_at: rfc3339(s.updated_at),
    }
}

fn to_memory(m: MemoryRow, view: View) -> Memory {
    Memory {
        id: m.id,
        content: (view == View::Full).then_some(m.content),
        content_sha256: m.content_sha256,
        content_size_bytes: m.content_size_bytes,
        created_at: rfc3339(m.created_at),
        memory_store_id: m.store_id,
        memory_version_id: m.version_id,
        path: m.path,
        kind: "memory".into(),
        updated_at: rfc3339(m.updated_at),
    }
}

fn to_version(v: MemoryVersionRow, view: View) -> MemoryVersion {
    MemoryVersion {
        id: v.id,
        content: if view == View::Full { v.content } else { None },
        content_sha256: v.content_sha256,
        content_size_bytes: v.content_size_bytes,
        created_at: rfc3339(v.created_at),
        created_by: v.created_by,
        memory_id: v.memory_id,
        memory_store_id: v.store_id,
        operation: v.operation,
        path: v.path,
        redacted_at: v.redacted_at.map(rfc3339),
        redacted_by: v.redacted_by,
        kind: "memory_version".into(),
    }
}

/// Who a write is recorded as: the API key that authenticated it.
fn actor(who: &Principal) -> ApiResult<Actor> {
    match who {
        Principal::ApiKey(id) => Ok(Actor::ApiActor { api_key_id: id.clone() }),
        // `auth::permits` keeps other credentials off these routes.
        _ => Err(ApiError::Permission("only an API key can call the memory stores API".into())),
    }
}

/// `view`, or its default for the route.
fn view(q: &QueryParams, default: View) -> ApiResult<View> {
    match q.one("view")? {
        None => Ok(default),
        Some(v) => View::parse(v)
            .ok_or_else(|| ApiError::invalid(format!("query parameter `view` must be `basic` or `full`, got `{v}`"))),
    }
}

/// A list's page size: 1 to 100 (default 20), at most 20 with `view=full`.
fn list_limit(q: &QueryParams, view: View) -> ApiResult<i64> {
    let limit = parse_limit(q, 20, 100)?;
    Ok(if view == View::Full { limit.min(FULL_VIEW_PAGE) } else { limit })
}

async fn load_store(st: &AppState, id: &str) -> ApiResult<MemoryStoreRow> {
    check_id(Kind::MemoryStore, id)?;
    st.store.get_memory_store(id).await?.ok_or_else(|| ApiError::not_found(Kind::MemoryStore, id))
}

fn memory_not_found(store_id: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("memory `{id}` not found in memory store `{store_id}`"))
}

// ---------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/memory_stores",
    tag = "memory_stores",
    operation_id = "memory_stores_create",
    summary = "Create a memory store",
    request_body = MemoryStoreCreate,
    responses((status = 200, description = "OK", body = MemoryStore))
)]
pub async fn create(
    State(st): State<AppState>,
    ApiJson(p): ApiJson<MemoryStoreCreate>,
) -> ApiResult<Json<MemoryStore>> {
    let now = now_micros();
    let row = MemoryStoreRow {
        id: new_id(Kind::MemoryStore),
        created_at: now,
        updated_at: now,
        archived_at: None,
        name: p.name,
        description: p.description.unwrap_or_default(),
        metadata: p.metadata.unwrap_or_default(),
    };
    st.store.create_memory_store(&row).await?;
    tracing::info!(memory_store_id = %row.id, "memory store created");
    Ok(Json(to_store(row)))
}

#[utoipa::path(
    get,
    path = "/memory_stores",
    tag = "memory_stores",
    operation_id = "memory_stores_list",
    summary = "List memory stores, newest first",
    params(
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 100, default 20."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response."),
        ("include_archived" = Option<bool>, Query, description = "Include archived stores (default false)."),
        ("created_at[gte]" = Option<String>, Query, description = "Created at or after (RFC 3339)."),
        ("created_at[lte]" = Option<String>, Query, description = "Created at or before (RFC 3339).")
    ),
    responses((status = 200, description = "OK", body = Page<MemoryStore>))
)]
pub async fn list(State(st): State<AppState>, q: QueryParams) -> ApiResult<Json<Page<MemoryStore>>> {
    q.allow(&["limit", "page", "include_archived", "created_at[gte]", "created_at[lte]"])?;
    let limit = parse_limit(&q, 20, 100)?;
    let order = Order::Desc;
    let page = st
        .store
        .list_memory_stores(
            q.bool("include_archived")?,
            q.time("created_at[gte]")?,
            q.time("created_at[lte]")?,
            order,
            &position(&q, order, Kind::MemoryStore)?,
            limit,
        )
        .await?;
    let next_page = page
        .more_after
        .then(|| page.items.last().map(|s| next_token(order, &Key { created_at: s.created_at, id: s.id.clone() })))
        .flatten();
    Ok(Json(Page { data: page.items.into_iter().map(to_store).collect(), next_page }))
}

#[utoipa::path(
    get,
    path = "/memory_stores/{memory_store_id}",
    tag = "memory_stores",
    operation_id = "memory_stores_retrieve",
    summary = "Retrieve a memory store",
    params(("memory_store_id" = String, Path)),
    responses((status = 200, description = "OK", body = MemoryStore))
)]
pub async fn retrieve(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<MemoryStore>> {
    Ok(Json(to_store(load_store(&st, &id).await?)))
}

#[utoipa::path(
    post,
    path = "/memory_stores/{memory_store_id}",
    tag = "memory_stores",
    operation_id = "memory_stores_update",
    summary = "Update a memory store's name, description or metadata (not when archived)",
    params(("memory_store_id" = String, Path)),
    request_body = MemoryStoreUpdate,
    responses((status = 200, description = "OK", body = MemoryStore))
)]
pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(p): ApiJson<MemoryStoreUpdate>,
) -> ApiResult<Json<MemoryStore>> {
    check_id(Kind::MemoryStore, &id)?;
    let row = st
        .store
        .update_memory_store(&id, |s| -> ApiResult<()> {
            if s.archived_at.is_some() {
                return Err(ApiError::conflict(format!("memory store `{id}` is archived and cannot be updated")));
            }
            if let Some(n) = &p.name {
                s.name.clone_from(n);
            }
            if let Some(d) = &p.description {
                s.description.clone_from(d);
            }
            if let Some(m) = &p.metadata {
                apply_metadata_patch("metadata", &mut s.metadata, m)?;
            }
            s.updated_at = now_micros();
            Ok(())
        })
        .await?;
    Ok(Json(to_store(row)))
}

#[utoipa::path(
    post,
    path = "/memory_stores/{memory_store_id}/archive",
    tag = "memory_stores",
    operation_id = "memory_stores_archive",
    summary = "Archive a memory store (for good): its memories stay readable but take no writes",
    params(("memory_store_id" = String, Path)),
    responses((status = 200, description = "OK", body = MemoryStore))
)]
pub async fn archive(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<MemoryStore>> {
    check_id(Kind::MemoryStore, &id)?;
    let row = st
        .store
        .update_memory_store(&id, |s| -> ApiResult<()> {
            // Archiving an archived store changes nothing.
            if s.archived_at.is_none() {
                let now = now_micros();
                s.archived_at = Some(now);
                s.updated_at = now;
            }
            Ok(())
        })
        .await?;
    tracing::info!(memory_store_id = %id, "memory store archived");
    Ok(Json(to_store(row)))
}

#[utoipa::path(
    delete,
    path = "/memory_stores/{memory_store_id}",
    tag = "memory_stores",
    operation_id = "memory_stores_delete",
    summary = "Delete a memory store with all its memories and versions",
    params(("memory_store_id" = String, Path)),
    responses((status = 200, description = "OK", body = Deleted))
)]
pub async fn delete(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Deleted>> {
    check_id(Kind::MemoryStore, &id)?;
    if !st.store.delete_memory_store(&id).await? {
        return Err(ApiError::not_found(Kind::MemoryStore, &id));
    }
    tracing::info!(memory_store_id = %id, "memory store deleted");
    Ok(Json(Deleted { id, kind: "memory_store_deleted".into() }))
}

// ---------------------------------------------------------------------------------------------
// Memories
// ---------------------------------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/memory_stores/{memory_store_id}/memories",
    tag = "memories",
    operation_id = "memories_create",
    summary = "Create a memory at a path (409 if one is there)",
    params(
        ("memory_store_id" = String, Path),
        ("view" = Option<String>, Query, description = "`basic` (default: no content) or `full`.")
    ),
    request_body = MemoryCreate,
    responses((status = 200, description = "OK", body = Memory))
)]
pub async fn create_memory(
    State(st): State<AppState>,
    Path(store_id): Path<String>,
    Extension(who): Extension<Principal>,
    q: QueryParams,
    ApiJson(p): ApiJson<MemoryCreate>,
) -> ApiResult<Json<Memory>> {
    q.allow(&["view"])?;
    let view = view(&q, View::Basic)?;
    check_id(Kind::MemoryStore, &store_id)?;
    let by = actor(&who)?;
    let content = p.content.unwrap_or_default();
    let now = now_micros();
    let m = MemoryRow {
        id: new_id(Kind::Memory),
        store_id,
        path: p.path,
        content_sha256: content_sha256(&content),
        content_size_bytes: content.len() as i64,
        content,
        version_id: new_id(Kind::MemoryVersion),
        created_at: now,
        updated_at: now,
    };
    st.store.create_memory(&m, &by).await?;
    Ok(Json(to_memory(m, view)))
}

#[utoipa::path(
    get,
    path = "/memory_stores/{memory_store_id}/memories/{memory_id}",
    tag = "memories",
    operation_id = "memories_retrieve",
    summary = "Retrieve a memory",
    params(
        ("memory_store_id" = String, Path),
        ("memory_id" = String, Path),
        ("view" = Option<String>, Query, description = "`full` (default) or `basic`.")
    ),
    responses((status = 200, description = "OK", body = Memory))
)]
pub async fn retrieve_memory(
    State(st): State<AppState>,
    Path((store_id, id)): Path<(String, String)>,
    q: QueryParams,
) -> ApiResult<Json<Memory>> {
    q.allow(&["view"])?;
    let view = view(&q, View::Full)?;
    load_store(&st, &store_id).await?;
    check_id(Kind::Memory, &id)?;
    let m = st.store.get_memory(&store_id, &id).await?.ok_or_else(|| memory_not_found(&store_id, &id))?;
    Ok(Json(to_memory(m, view)))
}

#[utoipa::path(
    post,
    path = "/memory_stores/{memory_store_id}/memories/{memory_id}",
    tag = "memories",
    operation_id = "memories_update",
    summary = "Change a memory's content and/or path (a rename keeps its id)",
    params(
        ("memory_store_id" = String, Path),
        ("memory_id" = String, Path),
        ("view" = Option<String>, Query, description = "`basic` (default) or `full`.")
    ),
    request_body = MemoryUpdate,
    responses((status = 200, description = "OK", body = Memory))
)]
pub async fn update_memory(
    State(st): State<AppState>,
    Path((store_id, id)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
    q: QueryParams,
    ApiJson(p): ApiJson<MemoryUpdate>,
) -> ApiResult<Json<Memory>> {
    q.allow(&["view"])?;
    let view = view(&q, View::Basic)?;
    check_id(Kind::MemoryStore, &store_id)?;
    check_id(Kind::Memory, &id)?;
    let by = actor(&who)?;
    let expect = p.precondition.as_ref().map(|Precondition::ContentSha256 { content_sha256 }| content_sha256.as_str());
    let m = st
        .store
        .update_memory(&store_id, &id, expect, &by, |cur| {
            let content = p.content.clone().unwrap_or_else(|| cur.content.clone());
            let path = p.path.clone().unwrap_or_else(|| cur.path.clone());
            // Nothing changes: no new version.
            if content == cur.content && path == cur.path {
                return None;
            }
            Some(MemoryRow {
                path,
                content_sha256: content_sha256(&content),
                content_size_bytes: content.len() as i64,
                content,
                version_id: new_id(Kind::MemoryVersion),
                updated_at: now_micros(),
                ..cur.clone()
            })
        })
        .await?;
    Ok(Json(to_memory(m, view)))
}

#[utoipa::path(
    delete,
    path = "/memory_stores/{memory_store_id}/memories/{memory_id}",
    tag = "memories",
    operation_id = "memories_delete",
    summary = "Delete a memory (its versions stay, with a `deleted` one added)",
    params(
        ("memory_store_id" = String, Path),
        ("memory_id" = String, Path),
        ("expected_content_sha256" = Option<String>, Query, description = "Delete only if the content has this digest (409 otherwise).")
    ),
    responses((status = 200, description = "OK", body = Deleted))
)]
pub async fn delete_memory(
    State(st): State<AppState>,
    Path((store_id, id)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
    q: QueryParams,
) -> ApiResult<Json<Deleted>> {
    q.allow(&["expected_content_sha256"])?;
    let expect = q.one("expected_content_sha256")?;
    if let Some(s) = expect {
        check_sha256("query parameter `expected_content_sha256`", s)?;
    }
    check_id(Kind::MemoryStore, &store_id)?;
    check_id(Kind::Memory, &id)?;
    let by = actor(&who)?;
    st.store.delete_memory(&store_id, &id, expect, &by, &new_id(Kind::MemoryVersion), now_micros()).await?;
    Ok(Json(Deleted { id, kind: "memory_deleted".into() }))
}

#[utoipa::path(
    get,
    path = "/memory_stores/{memory_store_id}/memories",
    tag = "memories",
    operation_id = "memories_list",
    summary = "List memories by path; with `depth`, deeper ones as `memory_prefix` items",
    params(
        ("memory_store_id" = String, Path),
        ("path_prefix" = Option<String>, Query, description = "Whole segments, ending with `/` (e.g. `/notes/`)."),
        ("depth" = Option<i64>, Query, description = "0 (default): every memory below the prefix; n: n segments below it, deeper ones rolled up."),
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 100, default 20 (at most 20 with `view=full`)."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response."),
        ("view" = Option<String>, Query, description = "`basic` (default) or `full`.")
    ),
    responses((status = 200, description = "OK, in byte order of path", body = Page<MemoryListItem>))
)]
pub async fn list_memories(
    State(st): State<AppState>,
    Path(store_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<Page<MemoryListItem>>> {
    q.allow(&["depth", "limit", "page", "path_prefix", "view"])?;
    let view = view(&q, View::Basic)?;
    let limit = list_limit(&q, view)?;
    let prefix = q.one("path_prefix")?.unwrap_or("/").to_owned();
    check_prefix("query parameter `path_prefix`", &prefix)?;
    let depth = match q.int("depth")? {
        None => 0,
        Some(d) if (0..=crate::model::memory::MAX_SEGMENTS as i64).contains(&d) => d as usize,
        Some(d) => {
            return Err(ApiError::invalid(format!(
                "query parameter `depth` must be between 0 and {}, got {d}",
                crate::model::memory::MAX_SEGMENTS
            )));
        }
    };
    let from = match q.one("page")? {
        None => None,
        Some(t) => Some(resume_bound(&MemoryCursor::decode(t, &prefix, depth)?.after)),
    };
    load_store(&st, &store_id).await?;
    let mut page = PageBuilder::new(&prefix, depth, limit as usize);
    st.store.list_memories(&store_id, &prefix, from, view == View::Full, &mut page).await?;
    let (items, next_page) = page.finish();
    let data = items
        .into_iter()
        .map(|i| match i {
            Item::Memory(_, m) => MemoryListItem::Memory(to_memory(m, view)),
            Item::Prefix(path) => MemoryListItem::Prefix(MemoryPrefix { path, kind: "memory_prefix".into() }),
        })
        .collect();
    Ok(Json(Page { data, next_page }))
}

// ---------------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/memory_stores/{memory_store_id}/memory_versions",
    tag = "memory_versions",
    operation_id = "memory_versions_list",
    summary = "List a store's memory versions, newest first",
    params(
        ("memory_store_id" = String, Path),
        ("memory_id" = Option<String>, Query, description = "Only this memory's versions (also after it was deleted)."),
        ("operation" = Option<String>, Query, description = "`created`, `modified` or `deleted`."),
        ("api_key_id" = Option<String>, Query, description = "Only versions written with this API key."),
        ("session_id" = Option<String>, Query, description = "Only versions written by this session."),
        ("created_at[gte]" = Option<String>, Query, description = "Written at or after (RFC 3339)."),
        ("created_at[lte]" = Option<String>, Query, description = "Written at or before (RFC 3339)."),
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 100, default 20 (at most 20 with `view=full`)."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response."),
        ("view" = Option<String>, Query, description = "`basic` (default) or `full`.")
    ),
    responses((status = 200, description = "OK", body = Page<MemoryVersion>))
)]
pub async fn list_versions(
    State(st): State<AppState>,
    Path(store_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<Page<MemoryVersion>>> {
    // `service_account_id` is a filter the SDK sends; Bridle has no service
    // accounts, so it is named in a 400 rather than ignored.
    if q.one("service_account_id")?.is_some() {
        return Err(ApiError::invalid(
            "query parameter `service_account_id` is not supported: this server has no service accounts \
             (versions are written by API keys; filter with `api_key_id`)",
        ));
    }
    q.allow(&[
        "api_key_id",
        "created_at[gte]",
        "created_at[lte]",
        "limit",
        "memory_id",
        "operation",
        "page",
        "session_id",
        "view",
    ])?;
    let view = view(&q, View::Basic)?;
    let limit = list_limit(&q, view)?;
    let operation = q
        .one("operation")?
        .map(|o| {
            Operation::parse(o).ok_or_else(|| {
                ApiError::invalid(format!(
                    "query parameter `operation` must be created, modified or deleted, got `{o}`"
                ))
            })
        })
        .transpose()?;
    let created_by = match (q.one("api_key_id")?, q.one("session_id")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give at most one of `api_key_id` and `session_id`: a version has one author",
            ));
        }
        (Some(k), None) => Some(Actor::ApiActor { api_key_id: k.to_owned() }),
        (None, Some(s)) => Some(Actor::SessionActor { session_id: s.to_owned() }),
        (None, None) => None,
    };
    let filter = VersionFilter {
        memory_id: q.one("memory_id")?.map(str::to_owned),
        operation,
        created_by,
        created_gte: q.time("created_at[gte]")?,
        created_lte: q.time("created_at[lte]")?,
    };
    let order = Order::Desc;
    let pos = position(&q, order, Kind::MemoryVersion)?;
    load_store(&st, &store_id).await?;
    let page = st.store.list_memory_versions(&store_id, &filter, view == View::Full, order, &pos, limit).await?;
    let next_page = page
        .more_after
        .then(|| page.items.last().map(|v| next_token(order, &Key { created_at: v.created_at, id: v.id.clone() })))
        .flatten();
    Ok(Json(Page { data: page.items.into_iter().map(|v| to_version(v, view)).collect(), next_page }))
}

#[utoipa::path(
    get,
    path = "/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}",
    tag = "memory_versions",
    operation_id = "memory_versions_retrieve",
    summary = "Retrieve a memory version",
    params(
        ("memory_store_id" = String, Path),
        ("memory_version_id" = String, Path),
        ("view" = Option<String>, Query, description = "`full` (default) or `basic`.")
    ),
    responses((status = 200, description = "OK", body = MemoryVersion))
)]
pub async fn retrieve_version(
    State(st): State<AppState>,
    Path((store_id, id)): Path<(String, String)>,
    q: QueryParams,
) -> ApiResult<Json<MemoryVersion>> {
    q.allow(&["view"])?;
    let view = view(&q, View::Full)?;
    load_store(&st, &store_id).await?;
    check_id(Kind::MemoryVersion, &id)?;
    let v =
        st.store.get_memory_version(&store_id, &id).await?.ok_or_else(|| {
            ApiError::NotFound(format!("memory version `{id}` not found in memory store `{store_id}`"))
        })?;
    Ok(Json(to_version(v, view)))
}

#[utoipa::path(
    post,
    path = "/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}/redact",
    tag = "memory_versions",
    operation_id = "memory_versions_redact",
    summary = "Redact a memory version: its content, path, digest and size are dropped",
    params(("memory_store_id" = String, Path), ("memory_version_id" = String, Path)),
    responses((status = 200, description = "OK", body = MemoryVersion))
)]
pub async fn redact_version(
    State(st): State<AppState>,
    Path((store_id, id)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
    q: QueryParams,
) -> ApiResult<Json<MemoryVersion>> {
    q.allow(&[])?;
    check_id(Kind::MemoryStore, &store_id)?;
    check_id(Kind::MemoryVersion, &id)?;
    let by = actor(&who)?;
    let v = st.store.redact_memory_version(&store_id, &id, &by, now_micros()).await?;
    tracing::info!(memory_store_id = %store_id, memory_version_id = %id, "memory version redacted");
    Ok(Json(to_version(v, View::Full)))
}
