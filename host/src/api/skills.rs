//! `/v1/skills`: custom skills and their versions, as the SDKs'
//! `client.beta.skills` (and `.versions`) call them. An upload is a
//! multipart body of `files` parts (the skill's directory, a `SKILL.md` at
//! its root) and an optional `display_name`; each version is kept as one zip
//! archive, which `download` returns.

use axum::Json;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{QueryParams, check_id};
use super::pagination::{Page, next_token, parse_limit, position, token_position_of};
use crate::ids::{Kind, new_id};
use crate::model::agents::SkillRef;
use crate::model::skills::{
    MAX_SKILL_BYTES, Skill, SkillUpload, SkillVersion, agent_entry, archive, check_display_name, parse_upload,
};
use crate::store::{Key, Order, Position, SkillRow, SkillVersionRow};
use crate::time::{now_micros, rfc3339};

/// The multipart body of a create or a new version.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SkillUploadForm {
    /// The skill's files, each named with its path (`my-skill/SKILL.md`, `my-skill/scripts/x.py`).
    #[schema(value_type = Vec<String>, format = Binary)]
    files: Vec<Vec<u8>>,
    /// A one-line label (create only); default: the SKILL.md front matter's `name`.
    display_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeletedSkill {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

fn to_skill(s: SkillRow) -> Skill {
    Skill {
        id: s.id,
        created_at: rfc3339(s.created_at),
        display_name: s.display_name,
        latest_version_id: s.latest_version,
        source: "custom".into(),
        kind: "skill".into(),
        updated_at: rfc3339(s.updated_at),
    }
}

fn to_version(v: SkillVersionRow, name: &str) -> SkillVersion {
    SkillVersion {
        id: v.id,
        created_at: rfc3339(v.created_at),
        description: v.description,
        name: name.to_owned(),
        skill_id: v.skill_id,
        kind: "skill_version".into(),
    }
}

fn bad_multipart(e: MultipartError) -> ApiError {
    ApiError::invalid(format!("invalid multipart body: {}", e.body_text()))
}

/// Read an upload: its files (bounded by [`MAX_SKILL_BYTES`]) and display name.
async fn read_upload(st: &AppState, req: Request, create: bool) -> ApiResult<(SkillUpload, Option<String>)> {
    let multipart = super::extract::is_multipart(req.headers());
    if !multipart {
        return Err(ApiError::invalid("the body must be multipart/form-data with the skill's files in `files` parts"));
    }
    let mut mp = Multipart::from_request(req, st)
        .await
        .map_err(|e| ApiError::invalid(format!("invalid multipart body: {}", e.body_text())))?;
    let mut files = Vec::new();
    let mut total = 0usize;
    let mut display_name = None;
    while let Some(mut field) = mp.next_field().await.map_err(bad_multipart)? {
        match field.name().unwrap_or_default() {
            "files" | "files[]" => {
                let name = field.file_name().map(str::to_owned).ok_or_else(|| {
                    ApiError::invalid(
                        "a `files` part has no filename; name each file with its path, e.g. `my-skill/SKILL.md`",
                    )
                })?;
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad_multipart)? {
                    total += chunk.len();
                    if total > MAX_SKILL_BYTES {
                        return Err(ApiError::TooLarge(format!(
                            "files: a skill version holds at most {MAX_SKILL_BYTES} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                files.push((name, bytes));
            }
            "display_name" if create => {
                let text = field.text().await.map_err(bad_multipart)?;
                check_display_name(&text)?;
                display_name = Some(text.trim().to_owned());
            }
            other => {
                let allowed = if create { "`files` and `display_name`" } else { "`files`" };
                return Err(ApiError::invalid(format!("unknown multipart part `{other}`; this route takes {allowed}")));
            }
        }
    }
    Ok((parse_upload(files)?, display_name))
}

/// Pin an agent's skill references: each skill must exist here, and its
/// version (the latest when none is named) too.
pub async fn pin(st: &AppState, refs: &[SkillRef]) -> ApiResult<Vec<Value>> {
    let mut out = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let unknown = || ApiError::invalid(format!("skills[{i}]: no skill `{}` on this server", r.skill_id));
        if !crate::ids::has_kind(&r.skill_id, Kind::Skill) {
            return Err(unknown());
        }
        let skill = st.store.get_skill(&r.skill_id).await?.ok_or_else(unknown)?;
        let version = match &r.version {
            None => skill.latest_version,
            Some(v) => {
                st.store.get_skill_version(&skill.id, v).await?.ok_or_else(|| {
                    ApiError::invalid(format!("skills[{i}]: skill `{}` has no version `{v}`", skill.id))
                })?;
                v.clone()
            }
        };
        out.push(agent_entry(&skill.id, &version));
    }
    Ok(out)
}

/// A new version id: the time in microseconds, after every version the skill has.
fn version_id(after: Option<&str>) -> String {
    let now = now_micros();
    let last = after.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    now.max(last + 1).to_string()
}

#[utoipa::path(
    post,
    path = "/skills",
    tag = "skills",
    operation_id = "skills_create",
    summary = "Create a skill from its files",
    request_body(content = SkillUploadForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "OK", body = Skill))
)]
pub async fn create(State(st): State<AppState>, q: QueryParams, req: Request) -> Response {
    if let Err(e) = q.allow(&[]) {
        return super::drain_then(req, e).await;
    }
    let result = async {
        let (upload, display_name) = read_upload(&st, req, true).await?;
        let now = now_micros();
        let zip = archive(&upload).map_err(ApiError::Internal)?;
        let skill = SkillRow {
            id: new_id(Kind::Skill),
            created_at: now,
            updated_at: now,
            display_name: display_name.or(upload.title.clone()).unwrap_or_else(|| upload.name.clone()),
            name: upload.name.clone(),
            latest_version: version_id(None),
        };
        let version = SkillVersionRow {
            skill_id: skill.id.clone(),
            id: skill.latest_version.clone(),
            created_at: now,
            description: upload.description.clone(),
        };
        st.store.create_skill(&skill, &version, &zip).await?;
        tracing::info!(skill_id = %skill.id, name = %skill.name, files = upload.files.len(), "skill created");
        ApiResult::Ok(Json(to_skill(skill)))
    }
    .await;
    result.into_response()
}

#[utoipa::path(
    get,
    path = "/skills",
    tag = "skills",
    operation_id = "skills_list",
    summary = "List skills",
    params(
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 1000, default 20."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response."),
        ("source" = Option<String>, Query, description = "`custom` (this server's skills) or `anthropic` (none here).")
    ),
    responses((status = 200, description = "OK, newest first", body = Page<Skill>))
)]
pub async fn list(State(st): State<AppState>, q: QueryParams) -> ApiResult<Json<Page<Skill>>> {
    q.allow(&["limit", "page", "source"])?;
    let limit = parse_limit(&q, 20, 1000)?;
    match q.one("source")? {
        None | Some("custom") => {}
        // Anthropic's own skills cannot be fetched here: there are none to list.
        Some("anthropic") => return Ok(Json(Page { data: Vec::new(), next_page: None })),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "query parameter `source` must be `custom` or `anthropic`, got `{other}`"
            )));
        }
    }
    let order = Order::Desc;
    let page = st.store.list_skills(order, &position(&q, order, Kind::Skill)?, limit).await?;
    let next_page = page
        .more_after
        .then(|| page.items.last().map(|s| next_token(order, &Key { created_at: s.created_at, id: s.id.clone() })))
        .flatten();
    Ok(Json(Page { data: page.items.into_iter().map(to_skill).collect(), next_page }))
}

async fn load(st: &AppState, id: &str) -> ApiResult<SkillRow> {
    check_id(Kind::Skill, id)?;
    st.store.get_skill(id).await?.ok_or_else(|| ApiError::not_found(Kind::Skill, id))
}

async fn load_version(st: &AppState, skill_id: &str, version: &str) -> ApiResult<(SkillRow, SkillVersionRow)> {
    let skill = load(st, skill_id).await?;
    let v = st
        .store
        .get_skill_version(skill_id, version)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("skill `{skill_id}` has no version `{version}`")))?;
    Ok((skill, v))
}

#[utoipa::path(
    get,
    path = "/skills/{skill_id}",
    tag = "skills",
    operation_id = "skills_retrieve",
    summary = "Retrieve a skill",
    params(("skill_id" = String, Path)),
    responses((status = 200, description = "OK", body = Skill))
)]
pub async fn retrieve(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Skill>> {
    Ok(Json(to_skill(load(&st, &id).await?)))
}

#[utoipa::path(
    delete,
    path = "/skills/{skill_id}",
    tag = "skills",
    operation_id = "skills_delete",
    summary = "Delete a skill and all its versions",
    params(("skill_id" = String, Path)),
    responses((status = 200, description = "OK", body = DeletedSkill))
)]
pub async fn delete(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<DeletedSkill>> {
    check_id(Kind::Skill, &id)?;
    if !st.store.delete_skill(&id).await? {
        return Err(ApiError::not_found(Kind::Skill, &id));
    }
    tracing::info!(skill_id = %id, "skill deleted");
    Ok(Json(DeletedSkill { id, kind: "skill_deleted".into() }))
}

#[utoipa::path(
    post,
    path = "/skills/{skill_id}/versions",
    tag = "skills",
    operation_id = "skills_versions_create",
    summary = "Add a version to a skill (it becomes the latest)",
    params(("skill_id" = String, Path)),
    request_body(content = SkillUploadForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "OK", body = SkillVersion))
)]
pub async fn create_version(State(st): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let skill = match load(&st, &id).await {
        Ok(s) => s,
        Err(e) => return super::drain_then(req, e).await,
    };
    let result = async {
        let (upload, _) = read_upload(&st, req, false).await?;
        if upload.name != skill.name {
            return Err(ApiError::invalid(format!(
                "SKILL.md: this upload is skill `{}`, but skill `{id}` is `{}`; a skill's name never changes",
                upload.name, skill.name
            )));
        }
        let zip = archive(&upload).map_err(ApiError::Internal)?;
        let v = SkillVersionRow {
            skill_id: id.clone(),
            id: version_id(Some(&skill.latest_version)),
            created_at: now_micros(),
            description: upload.description.clone(),
        };
        if !st.store.add_skill_version(&v, &zip).await? {
            return Err(ApiError::not_found(Kind::Skill, &id));
        }
        tracing::info!(skill_id = %id, version = %v.id, "skill version created");
        Ok(Json(to_version(v, &skill.name)))
    }
    .await;
    result.into_response()
}

#[utoipa::path(
    get,
    path = "/skills/{skill_id}/versions",
    tag = "skills",
    operation_id = "skills_versions_list",
    summary = "List a skill's versions",
    params(
        ("skill_id" = String, Path),
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 1000, default 20."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response.")
    ),
    responses((status = 200, description = "OK, newest first", body = Page<SkillVersion>))
)]
pub async fn list_versions(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<Page<SkillVersion>>> {
    q.allow(&["limit", "page"])?;
    let limit = parse_limit(&q, 20, 1000)?;
    let skill = load(&st, &id).await?;
    let order = Order::Desc;
    let pos = match q.one("page")? {
        None => Position::Start,
        Some(p) => token_position_of(p, order, |v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))?,
    };
    let page = st.store.list_skill_versions(&id, order, &pos, limit).await?;
    let next_page = page
        .more_after
        .then(|| page.items.last().map(|v| next_token(order, &Key { created_at: v.created_at, id: v.id.clone() })))
        .flatten();
    Ok(Json(Page { data: page.items.into_iter().map(|v| to_version(v, &skill.name)).collect(), next_page }))
}

#[utoipa::path(
    get,
    path = "/skills/{skill_id}/versions/{version}",
    tag = "skills",
    operation_id = "skills_versions_retrieve",
    summary = "Retrieve a skill version",
    params(("skill_id" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "OK", body = SkillVersion))
)]
pub async fn retrieve_version(
    State(st): State<AppState>,
    Path((id, version)): Path<(String, String)>,
) -> ApiResult<Json<SkillVersion>> {
    let (skill, v) = load_version(&st, &id, &version).await?;
    Ok(Json(to_version(v, &skill.name)))
}

#[utoipa::path(
    delete,
    path = "/skills/{skill_id}/versions/{version}",
    tag = "skills",
    operation_id = "skills_versions_delete",
    summary = "Delete a skill version (not the only one: delete the skill instead)",
    params(("skill_id" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "OK", body = DeletedSkill))
)]
pub async fn delete_version(
    State(st): State<AppState>,
    Path((id, version)): Path<(String, String)>,
) -> ApiResult<Json<DeletedSkill>> {
    load(&st, &id).await?;
    match st.store.delete_skill_version(&id, &version).await? {
        None => Err(ApiError::NotFound(format!("skill `{id}` has no version `{version}`"))),
        Some(false) => Err(ApiError::invalid(format!(
            "version `{version}` is skill `{id}`'s only version; delete the skill instead"
        ))),
        Some(true) => {
            tracing::info!(skill_id = %id, version = %version, "skill version deleted");
            Ok(Json(DeletedSkill { id: version, kind: "skill_version_deleted".into() }))
        }
    }
}

#[utoipa::path(
    get,
    path = "/skills/{skill_id}/versions/{version}/content",
    tag = "skills",
    operation_id = "skills_versions_download",
    summary = "Download a skill version as a zip archive",
    params(("skill_id" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "The zip archive", content_type = "application/zip", body = String))
)]
pub async fn download(State(st): State<AppState>, Path((id, version)): Path<(String, String)>) -> ApiResult<Response> {
    let Some(bundle) = st.store.skill_bundle(&id, &version).await? else {
        // Which of the two is missing, for the message.
        load(&st, &id).await?;
        return Err(ApiError::NotFound(format!("skill `{id}` has no version `{version}`")));
    };
    let mut resp = bundle.archive.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    let disposition = format!("attachment; filename=\"{}.zip\"", bundle.name);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
