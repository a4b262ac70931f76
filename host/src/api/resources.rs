//! `/v1/sessions/{id}/resources` (`client.beta.sessions.resources`): list,
//! add, retrieve, update, delete; and the checks that `resources` at session
//! create shares with `add`. A session's resources live in its stored body
//! (`Session.resources`); the runner mounts them (see `session::mounts`).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams, check_id};
use super::pagination::parse_limit;
use crate::ids::{Kind, new_id};
use crate::model::resources::{
    self, DeletedResource, MAX_RESOURCES, ResourcePage, ResourceParam, ResourceSpec, ResourceUpdate, SessionResource,
    StoredResource, check_no_overlap,
};
use crate::time::{now_micros, rfc3339};

/// Resource page tokens: the offset of the page's first item.
const PAGE_PREFIX: &str = "rsc_";

/// Check resource params (`field` is `resources`, or empty for the body of
/// `add`) for a session that already holds `existing`, look their files up
/// and seal their tokens: the resources to store, or the first problem.
/// Stores nothing.
pub(crate) async fn prepare(
    st: &AppState,
    session_id: Option<&str>,
    field: &str,
    params: &[Value],
    existing: &[SessionResource],
) -> ApiResult<Vec<StoredResource>> {
    if existing.len() + params.len() > MAX_RESOURCES {
        let what = if field.is_empty() { "resources" } else { field };
        return Err(ApiError::invalid(format!("{what}: a session holds at most {MAX_RESOURCES} resources")));
    }
    let mut specs = Vec::with_capacity(params.len());
    for (i, p) in params.iter().enumerate() {
        let f = if field.is_empty() { String::new() } else { format!("{field}[{i}]") };
        specs.push((f.clone(), resources::parse_param(&f, p)?));
    }
    let named: Vec<(String, &str)> = specs.iter().map(|(f, m)| (at(f, "mount_path"), m.mount_path())).collect();
    check_no_overlap(existing.iter().map(|r| r.mount_path.as_str()), &named)?;
    let now = rfc3339(now_micros());
    let mut out = Vec::with_capacity(specs.len());
    for (f, spec) in specs {
        let resource = |kind: &str, mount_path: String| SessionResource {
            id: new_id(Kind::SessionResource),
            kind: kind.into(),
            file_id: None,
            url: None,
            checkout: None,
            mount_path,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        out.push(match spec {
            ResourceSpec::File(m) => {
                check_file(st, session_id, &at(&f, "file_id"), &m.file_id).await?;
                let r = SessionResource { file_id: Some(m.file_id), ..resource("file", m.mount_path) };
                StoredResource { resource: r, sealed_token: None }
            }
            ResourceSpec::Repo(m) => {
                let sealed_token = m.token.map(|t| seal(st, &t)).transpose()?;
                let r = SessionResource {
                    url: Some(m.url),
                    checkout: m.checkout,
                    ..resource("github_repository", m.mount_path)
                };
                StoredResource { resource: r, sealed_token }
            }
        });
    }
    Ok(out)
}

/// A repository token sealed with the server's secret key (it is stored,
/// never returned).
fn seal(st: &AppState, token: &str) -> ApiResult<String> {
    st.secrets.seal(token.as_bytes()).map_err(ApiError::Internal)
}

/// `field.key`, or `key` alone for the body of `add`.
fn at(field: &str, key: &str) -> String {
    if field.is_empty() { key.to_owned() } else { format!("{field}.{key}") }
}

/// The file exists and may be used by this session: an upload, or a file of
/// this session's own scope.
pub(crate) async fn check_file(st: &AppState, session_id: Option<&str>, field: &str, file_id: &str) -> ApiResult<()> {
    let Some(file) = st.store.get_file(file_id).await? else {
        return Err(ApiError::invalid(format!("{field}: file `{file_id}` not found")));
    };
    if let Some(scope) = &file.scope
        && Some(scope.id.as_str()) != session_id
    {
        return Err(ApiError::invalid(format!(
            "{field}: file `{file_id}` belongs to {} `{}` and cannot be used by another session",
            scope.kind, scope.id
        )));
    }
    Ok(())
}

/// A session's stored resources.
pub(crate) fn of_session(resources: &[Value]) -> ApiResult<Vec<SessionResource>> {
    resources
        .iter()
        .map(|v| {
            serde_json::from_value(v.clone()).map_err(|e| ApiError::Internal(anyhow::anyhow!("stored resource: {e}")))
        })
        .collect()
}

fn to_values(rs: &[StoredResource]) -> ApiResult<Vec<Value>> {
    rs.iter().map(|r| serde_json::to_value(r).map_err(|e| ApiError::Internal(e.into()))).collect()
}

fn not_found(session_id: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("session resource `{id}` not found in session `{session_id}`"))
}

#[utoipa::path(
    get,
    path = "/sessions/{session_id}/resources",
    tag = "sessions",
    operation_id = "sessions_resources_list",
    summary = "List a session's resources",
    params(
        ("session_id" = String, Path),
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 1000; all when absent."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response.")
    ),
    responses((status = 200, description = "OK, oldest first", body = ResourcePage))
)]
pub async fn list(State(st): State<AppState>, Path(id): Path<String>, q: QueryParams) -> ApiResult<Json<ResourcePage>> {
    q.allow(&["limit", "page"])?;
    let limit = match q.one("limit")? {
        Some(_) => parse_limit(&q, 1000, 1000)? as usize,
        None => usize::MAX,
    };
    let start = match q.one("page")? {
        None => 0,
        Some(p) => p.strip_prefix(PAGE_PREFIX).and_then(|n| n.parse::<usize>().ok()).ok_or_else(|| {
            ApiError::invalid("query parameter `page` is not a valid page token (give a `next_page` value back)")
        })?,
    };
    let row = super::sessions::load(&st, &id).await?;
    let all = of_session(&row.session.resources)?;
    let data: Vec<SessionResource> = all.iter().skip(start).take(limit).cloned().collect();
    let end = start.saturating_add(data.len());
    let next_page = (end < all.len()).then(|| format!("{PAGE_PREFIX}{end}"));
    Ok(Json(ResourcePage { data, next_page }))
}

#[utoipa::path(
    post,
    path = "/sessions/{session_id}/resources",
    tag = "sessions",
    operation_id = "sessions_resources_add",
    summary = "Add a resource (a file or a repository) to a session",
    params(("session_id" = String, Path)),
    request_body(content = Object, description = "`{\"type\": \"file\", \"file_id\", \"mount_path\"?}` or `{\"type\": \"github_repository\", \"url\", \"authorization_token\"?, \"checkout\"?, \"mount_path\"?}`"),
    responses((status = 200, description = "OK", body = SessionResource))
)]
pub async fn add(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(ResourceParam(body)): ApiJson<ResourceParam>,
) -> ApiResult<Json<SessionResource>> {
    let row = super::sessions::load(&st, &id).await?;
    // A deleted environment's sessions keep what they had.
    let env: Option<crate::store::DocRow<crate::model::environments::Environment>> =
        st.store.get_doc(crate::store::Table::Environments, &row.session.environment_id).await?;
    if env.is_some_and(|e| e.doc.config.is_self_hosted()) {
        resources::check_self_hosted(&row.session.environment_id, "", std::slice::from_ref(&body))?;
    }
    let existing = of_session(&row.session.resources)?;
    let mut new = prepare(&st, Some(&id), "", std::slice::from_ref(&body), &existing).await?;
    let added = new.pop().ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no resource prepared")))?;
    let stored = added.clone();
    st.store
        .update_session(&id, |mut s| -> Result<_, ApiError> {
            if s.archived_at.is_some() {
                return Err(ApiError::conflict(format!("session `{id}` is archived and cannot be modified")));
            }
            // Checked again under the row lock: another add may have won the path.
            let current = of_session(&s.resources)?;
            let named = [("mount_path".to_owned(), stored.resource.mount_path.as_str())];
            check_no_overlap(current.iter().map(|r| r.mount_path.as_str()), &named)?;
            if current.len() >= MAX_RESOURCES {
                return Err(ApiError::invalid(format!("a session holds at most {MAX_RESOURCES} resources")));
            }
            s.resources.extend(to_values(std::slice::from_ref(&stored))?);
            s.updated_at = rfc3339(now_micros());
            Ok(s)
        })
        .await?;
    let added = added.resource;
    tracing::info!(session_id = %id, resource_id = %added.id, kind = %added.kind, "session resource added");
    Ok(Json(added))
}

#[utoipa::path(
    get,
    path = "/sessions/{session_id}/resources/{resource_id}",
    tag = "sessions",
    operation_id = "sessions_resources_retrieve",
    summary = "Retrieve a session resource",
    params(("session_id" = String, Path), ("resource_id" = String, Path)),
    responses((status = 200, description = "OK", body = SessionResource))
)]
pub async fn retrieve(
    State(st): State<AppState>,
    Path((id, rid)): Path<(String, String)>,
) -> ApiResult<Json<SessionResource>> {
    Ok(Json(find(&st, &id, &rid).await?))
}

/// One resource of a session, or 404.
async fn find(st: &AppState, id: &str, rid: &str) -> ApiResult<SessionResource> {
    check_id(Kind::SessionResource, rid)?;
    let row = super::sessions::load(st, id).await?;
    let found = of_session(&row.session.resources)?.into_iter().find(|r| r.id == rid);
    found.ok_or_else(|| not_found(id, rid))
}

#[utoipa::path(
    post,
    path = "/sessions/{session_id}/resources/{resource_id}",
    tag = "sessions",
    operation_id = "sessions_resources_update",
    summary = "Update a session resource (rotate a repository token)",
    params(("session_id" = String, Path), ("resource_id" = String, Path)),
    request_body = ResourceUpdate,
    responses((status = 200, description = "OK", body = SessionResource))
)]
pub async fn update(
    State(st): State<AppState>,
    Path((id, rid)): Path<(String, String)>,
    ApiJson(body): ApiJson<ResourceUpdate>,
) -> ApiResult<Json<SessionResource>> {
    let r = find(&st, &id, &rid).await?;
    if r.kind != "github_repository" {
        return Err(ApiError::invalid(format!(
            "authorization_token: resource `{}` is a `{}` resource; only `github_repository` resources take a token",
            r.id, r.kind
        )));
    }
    let sealed = seal(&st, &body.authorization_token)?;
    let now = rfc3339(now_micros());
    let mut updated = None;
    st.store
        .update_session(&id, |mut s| -> Result<_, ApiError> {
            if s.archived_at.is_some() {
                return Err(ApiError::conflict(format!("session `{id}` is archived and cannot be modified")));
            }
            // Under the row lock: the resource may have been removed since.
            let v = s
                .resources
                .iter_mut()
                .find(|v| v.get("id").and_then(Value::as_str) == Some(rid.as_str()))
                .ok_or_else(|| not_found(&id, &rid))?;
            let mut stored: StoredResource = serde_json::from_value(v.clone())
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored resource: {e}")))?;
            stored.sealed_token = Some(sealed.clone());
            stored.resource.updated_at = now.clone();
            *v = serde_json::to_value(&stored).map_err(|e| ApiError::Internal(e.into()))?;
            updated = Some(stored.resource);
            s.updated_at = now.clone();
            Ok(s)
        })
        .await?;
    let updated = updated.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("resource not updated")))?;
    // Later fetches and pushes through the gateway read the new token.
    tracing::info!(session_id = %id, resource_id = %rid, "repository token rotated");
    Ok(Json(updated))
}

#[utoipa::path(
    delete,
    path = "/sessions/{session_id}/resources/{resource_id}",
    tag = "sessions",
    operation_id = "sessions_resources_delete",
    summary = "Remove a resource from a session",
    params(("session_id" = String, Path), ("resource_id" = String, Path)),
    responses((status = 200, description = "OK", body = DeletedResource))
)]
pub async fn delete(
    State(st): State<AppState>,
    Path((id, rid)): Path<(String, String)>,
) -> ApiResult<Json<DeletedResource>> {
    check_id(Kind::SessionResource, &rid)?;
    super::sessions::load(&st, &id).await?;
    st.store
        .update_session(&id, |mut s| -> Result<_, ApiError> {
            let before = s.resources.len();
            s.resources.retain(|v| v.get("id").and_then(Value::as_str) != Some(rid.as_str()));
            if s.resources.len() == before {
                return Err(not_found(&id, &rid));
            }
            s.updated_at = rfc3339(now_micros());
            Ok(s)
        })
        .await?;
    tracing::info!(session_id = %id, resource_id = %rid, "session resource removed");
    Ok(Json(DeletedResource { id: rid, kind: "session_resource_deleted".into() }))
}
