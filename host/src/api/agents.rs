//! `/v1/agents`: create, list, retrieve (`?version=`), update (new version on
//! change, optimistic `version` check), archive, list versions.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams, check_id};
use super::pagination::{Page, next_token, parse_limit, parse_order, position, seq_position, seq_token};
use crate::ids::{Kind, new_id};
use crate::model::agents::{Agent, AgentCreate, AgentUpdate, check_mcp_servers, resolve_skills, resolve_tools};
use crate::model::common::patch_sets;
use crate::model::common::{apply_metadata_patch, check_len};
use crate::model::multiagent;
use crate::model::vaults::check_not_reserved;
use crate::model::{Invalid, Validate};
use crate::store::Order;
use crate::time::{now_micros, rfc3339};

impl Validate for AgentUpdate {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(m) = &self.metadata {
            check_not_reserved("agent", patch_sets(m))?;
        }
        if let Some(n) = &self.name {
            check_len("name", n, 1, 256)?;
        }
        if let Some(Some(d)) = &self.description {
            check_len("description", d, 0, 2048)?;
        }
        if let Some(Some(s)) = &self.system {
            check_len("system", s, 0, 100_000)?;
        }
        if let Some(v) = self.version
            && v < 1
        {
            return Err(Invalid::new("version: must be at least 1"));
        }
        if let Some(Some(m)) = &self.multiagent {
            crate::model::multiagent::parse(m)?;
        }
        Ok(())
    }
}

/// Look up a `multiagent` roster's agents and check it (`owner`: the agent
/// being updated; `None` on create). `Ok(None)`: no coordinator.
async fn resolve_roster(
    st: &AppState,
    multiagent: &Value,
    owner: Option<&str>,
) -> ApiResult<Option<Vec<multiagent::Member>>> {
    let Some(param) = multiagent::parse(multiagent)? else { return Ok(None) };
    let mut found = Vec::with_capacity(param.agents.len());
    for entry in &param.agents {
        found.push(match entry {
            multiagent::EntryParam::SelfRef => multiagent::Lookup::NoAgent,
            multiagent::EntryParam::Agent { id, version } => match st.store.get_agent(id, *version).await? {
                Some(a) => multiagent::Lookup::Found {
                    version: a.version,
                    archived: a.archived_at.is_some(),
                    coordinator: multiagent::is_coordinator(a.multiagent.as_ref()),
                },
                None if version.is_some() && st.store.get_agent(id, None).await?.is_some() => {
                    multiagent::Lookup::NoVersion
                }
                None => multiagent::Lookup::NoAgent,
            },
        });
    }
    Ok(Some(multiagent::resolve(&param, owner, &found)?))
}

#[utoipa::path(
    post,
    path = "/agents",
    tag = "agents",
    operation_id = "agents_create",
    summary = "Create an agent",
    request_body = AgentCreate,
    responses((status = 200, description = "OK", body = Agent))
)]
pub async fn create(State(st): State<AppState>, ApiJson(p): ApiJson<AgentCreate>) -> ApiResult<Json<Agent>> {
    let mcp_servers = p.mcp_servers.unwrap_or_default();
    check_mcp_servers(&mcp_servers)?;
    if let Some(m) = &p.metadata {
        crate::model::agent_keys::check(m, &st.config.harness_names())?;
    }
    let tools = resolve_tools(p.tools.as_deref().unwrap_or_default(), &mcp_servers)?;
    let roster = match &p.multiagent {
        Some(m) => resolve_roster(&st, m, None).await?,
        None => None,
    };
    let now = now_micros();
    let id = new_id(Kind::Agent);
    let agent = Agent {
        multiagent: roster.map(|r| multiagent::to_value(&r, &id, 1)),
        id,
        archived_at: None,
        created_at: rfc3339(now),
        description: p.description.filter(|d| !d.is_empty()),
        mcp_servers: mcp_servers.iter().map(|s| json!(s)).collect(),
        metadata: p.metadata.unwrap_or_default(),
        model: json!(p.model.resolve()?),
        name: p.name,
        skills: super::skills::pin(&st, &resolve_skills(p.skills.as_deref().unwrap_or_default())?).await?,
        system: p.system.filter(|s| !s.is_empty()),
        tools,
        kind: "agent".into(),
        updated_at: rfc3339(now),
        version: 1,
    };
    st.store.insert_agent(&agent, now).await?;
    tracing::info!(agent_id = %agent.id, "agent created");
    Ok(Json(agent))
}

#[utoipa::path(
    get,
    path = "/agents",
    tag = "agents",
    operation_id = "agents_list",
    summary = "List agents",
    params(
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 100, default 20."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response."),
        ("order" = Option<String>, Query, description = "`asc` or `desc` by creation time (default `desc`)."),
        ("include_archived" = Option<bool>, Query, description = "Include archived resources."),
        ("created_at[gte]" = Option<String>, Query, description = "RFC 3339 lower bound on creation time."),
        ("created_at[lte]" = Option<String>, Query, description = "RFC 3339 upper bound on creation time.")
    ),
    responses((status = 200, description = "OK", body = Page<Agent>))
)]
pub async fn list(State(st): State<AppState>, q: QueryParams) -> ApiResult<Json<Page<Agent>>> {
    q.allow(&["limit", "page", "include_archived", "created_at[gte]", "created_at[lte]", "order"])?;
    let order = parse_order(&q, Order::Desc)?;
    let limit = parse_limit(&q, 20, 100)?;
    let page = st
        .store
        .list_agents(
            q.bool("include_archived")?,
            q.time("created_at[gte]")?,
            q.time("created_at[lte]")?,
            order,
            &position(&q, order, Kind::Agent)?,
            limit,
        )
        .await?;
    let next = page.more_after.then(|| page.items.last().map(|r| next_token(order, &r.key))).flatten();
    let data = page.items.into_iter().map(|r| r.agent).collect();
    Ok(Json(Page { data, next_page: next }))
}

#[utoipa::path(
    get,
    path = "/agents/{agent_id}",
    tag = "agents",
    operation_id = "agents_retrieve",
    summary = "Retrieve an agent (latest version, or `version`)",
    params(
        ("agent_id" = String, Path),
        ("version" = Option<i64>, Query, description = "A version number (default: the latest).")
    ),
    responses((status = 200, description = "OK", body = Agent))
)]
pub async fn retrieve(State(st): State<AppState>, Path(id): Path<String>, q: QueryParams) -> ApiResult<Json<Agent>> {
    q.allow(&["version"])?;
    check_id(Kind::Agent, &id)?;
    let version = q.int("version")?;
    if let Some(v) = version
        && v < 1
    {
        return Err(ApiError::invalid("query parameter `version` must be at least 1"));
    }
    match st.store.get_agent(&id, version).await? {
        Some(a) => Ok(Json(a)),
        None => match version {
            Some(v) if st.store.get_agent(&id, None).await?.is_some() => {
                Err(ApiError::NotFound(format!("agent `{id}` has no version {v}")))
            }
            _ => Err(ApiError::not_found(Kind::Agent, &id)),
        },
    }
}

#[utoipa::path(
    post,
    path = "/agents/{agent_id}",
    tag = "agents",
    operation_id = "agents_update",
    summary = "Update an agent (a change makes a new version)",
    params(
        ("agent_id" = String, Path)
    ),
    request_body = AgentUpdate,
    responses((status = 200, description = "OK", body = Agent))
)]
pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(p): ApiJson<AgentUpdate>,
) -> ApiResult<Json<Agent>> {
    check_id(Kind::Agent, &id)?;
    let skills = match &p.skills {
        Some(s) => Some(super::skills::pin(&st, &resolve_skills(s.as_deref().unwrap_or_default())?).await?),
        None => None,
    };
    // `Some(None)`: the update clears `multiagent`.
    let roster = match &p.multiagent {
        Some(Some(m)) => Some(resolve_roster(&st, m, Some(&id)).await?),
        Some(None) => Some(None),
        None => None,
    };
    let engines = st.config.harness_names();
    let agent = st
        .store
        .update_agent(&id, p.version, |cur| -> Result<Option<Agent>, ApiError> {
            let mut next = cur.clone();
            if let Some(n) = &p.name {
                next.name.clone_from(n);
            }
            if let Some(m) = &p.model {
                next.model = json!(m.resolve()?);
            }
            if let Some(d) = &p.description {
                next.description = d.clone().filter(|d| !d.is_empty());
            }
            if let Some(s) = &p.system {
                next.system = s.clone().filter(|s| !s.is_empty());
            }
            let servers = match &p.mcp_servers {
                Some(s) => s.clone().unwrap_or_default(),
                None => serde_json::from_value(json!(cur.mcp_servers)).map_err(|e| ApiError::Internal(e.into()))?,
            };
            check_mcp_servers(&servers)?;
            next.mcp_servers = servers.iter().map(|s| json!(s)).collect();
            match &p.tools {
                Some(t) => next.tools = resolve_tools(t.as_deref().unwrap_or_default(), &servers)?,
                // Servers changed but tools did not: re-check the references.
                None if p.mcp_servers.is_some() => {
                    let referenced: Vec<&str> =
                        cur.tools.iter().filter_map(|t| t.get("mcp_server_name").and_then(Value::as_str)).collect();
                    for s in &servers {
                        if !referenced.contains(&s.name.as_str()) {
                            return Err(ApiError::invalid(format!(
                                "mcp_servers: server `{}` is not referenced by any mcp_toolset in tools",
                                s.name
                            )));
                        }
                    }
                    for r in referenced {
                        if !servers.iter().any(|s| s.name == r) {
                            return Err(ApiError::invalid(format!(
                                "mcp_servers: tools reference server `{r}`, which the update removes"
                            )));
                        }
                    }
                }
                None => {}
            }
            if let Some(s) = &skills {
                next.skills.clone_from(s);
            }
            // `self` stands for the version being written: compared at the
            // current version, re-pointed when a new version is made.
            if let Some(r) = &roster {
                next.multiagent = r.as_ref().map(|r| multiagent::to_value(r, &id, cur.version));
            }
            if let Some(m) = &p.metadata {
                apply_metadata_patch("metadata", &mut next.metadata, m)?;
                crate::model::agent_keys::check(&next.metadata, &engines)?;
            }
            if next.same_definition(cur) {
                return Ok(None);
            }
            next.version = cur.version + 1;
            multiagent::pin_self(&mut next.multiagent, &id, next.version);
            next.updated_at = rfc3339(now_micros());
            Ok(Some(next))
        })
        .await?;
    Ok(Json(agent))
}

#[utoipa::path(
    post,
    path = "/agents/{agent_id}/archive",
    tag = "agents",
    operation_id = "agents_archive",
    summary = "Archive an agent",
    params(
        ("agent_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Agent))
)]
pub async fn archive(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Agent>> {
    check_id(Kind::Agent, &id)?;
    st.store.archive_agent(&id, now_micros()).await?.map(Json).ok_or_else(|| ApiError::not_found(Kind::Agent, &id))
}

#[utoipa::path(
    get,
    path = "/agents/{agent_id}/versions",
    tag = "agents",
    operation_id = "agents_versions",
    summary = "List an agent's versions, newest first",
    params(
        ("agent_id" = String, Path),
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 100, default 20."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response.")
    ),
    responses((status = 200, description = "OK", body = Page<Agent>))
)]
pub async fn versions(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<Page<Agent>>> {
    q.allow(&["limit", "page"])?;
    check_id(Kind::Agent, &id)?;
    if st.store.get_agent(&id, None).await?.is_none() {
        return Err(ApiError::not_found(Kind::Agent, &id));
    }
    let limit = parse_limit(&q, 20, 100)?;
    let after = seq_position(&q, Order::Desc)?;
    let (items, more) = st.store.list_agent_versions(&id, after, limit).await?;
    let next = more.then(|| items.last().map(|a| seq_token(Order::Desc, a.version))).flatten();
    Ok(Json(Page { data: items, next_page: next }))
}
