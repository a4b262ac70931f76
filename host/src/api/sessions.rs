//! `/v1/sessions`: create (harness selection happens here), list, retrieve,
//! update, archive, delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams, check_id};
use super::pagination::{SessionPage, next_token, parse_limit, parse_order, position, prev_token};
use crate::ids::{Kind, new_id};
use crate::model::agents::{Agent, McpServer, check_mcp_servers, resolve_skills, resolve_tools};
use crate::model::common::patch_sets;
use crate::model::common::{Deleted, apply_metadata_patch, check_len};
use crate::model::events::{NewEvent, StoredEvent, UserEvent, parse_user_event};
use crate::model::pricing::{self, Cost, Price};
use crate::model::sessions::{AgentRef, AgentRefObject, Budget, Session, SessionCreate, SessionStatus, SessionUpdate};
use crate::model::vaults::Credential;
use crate::model::vaults::check_not_reserved;
use crate::model::{Invalid, Validate};
use crate::selection::{CredentialFacts, VaultFacts, select};
use crate::session::threads::delegation::TOOL as DELEGATE_TOOL;
use crate::store::{Order, SessionFilter, Table};
use crate::time::{now_micros, rfc3339};

impl Validate for SessionUpdate {
    fn validate(&self) -> Result<(), Invalid> {
        if self.vault_ids.is_some() {
            return Err(Invalid::new("vault_ids: vaults are fixed at session create and cannot be updated"));
        }
        if let Some(Some(t)) = &self.title {
            check_len("title", t, 0, 512)?;
        }
        if let Some(Some(b)) = &self.budget {
            b.validate()?;
        }
        if let Some(m) = &self.metadata {
            check_not_reserved("session", patch_sets(m))?;
        }
        Ok(())
    }
}

/// The agent snapshot a session runs: the referenced version with any
/// overrides applied (each overridden field is replaced whole).
async fn resolve_agent(st: &AppState, r: &AgentRef) -> ApiResult<(Agent, Value)> {
    let id = r.id();
    if !crate::ids::has_kind(id, Kind::Agent) {
        return Err(ApiError::invalid(format!("agent: `{id}` is not an agent id (agent_...)")));
    }
    let agent = match st.store.get_agent(id, r.version()).await? {
        Some(a) => a,
        None => {
            return Err(match r.version() {
                Some(v) if st.store.get_agent(id, None).await?.is_some() => {
                    ApiError::invalid(format!("agent: agent `{id}` has no version {v}"))
                }
                _ => ApiError::not_found(Kind::Agent, id),
            });
        }
    };
    if agent.archived_at.is_some() {
        return Err(ApiError::invalid(format!("agent: agent `{id}` is archived and cannot start new sessions")));
    }
    if crate::model::multiagent::is_coordinator(agent.multiagent.as_ref())
        && agent.tools.iter().any(|t| t.get("name").and_then(Value::as_str) == Some(DELEGATE_TOOL))
    {
        return Err(ApiError::invalid(format!(
            "agent: agent `{id}` (version {}) is a multiagent coordinator with a tool named `{DELEGATE_TOOL}`, the \
             name of the tool it delegates with; rename that tool",
            agent.version
        )));
    }
    let mut snapshot = agent.session_snapshot();
    if let AgentRef::Object(AgentRefObject::AgentWithOverrides { model, system, tools, mcp_servers, skills, .. }) = r {
        if let Some(m) = model {
            snapshot["model"] = json!(m.resolve()?);
        }
        if let Some(s) = system {
            snapshot["system"] = json!(s.clone().filter(|s| !s.is_empty()));
        }
        let servers: Vec<McpServer> = match mcp_servers {
            Some(s) => {
                check_mcp_servers(s)?;
                snapshot["mcp_servers"] = json!(s);
                s.clone()
            }
            None => {
                serde_json::from_value(snapshot["mcp_servers"].clone()).map_err(|e| ApiError::Internal(e.into()))?
            }
        };
        if let Some(t) = tools {
            snapshot["tools"] = json!(resolve_tools(t, &servers).map_err(|e| prefix(e, "agent."))?);
        }
        if let Some(s) = skills {
            let pinned = super::skills::pin(st, &resolve_skills(s).map_err(|e| prefix(e, "agent."))?).await?;
            snapshot["skills"] = json!(pinned);
        }
    }
    Ok((agent, snapshot))
}

fn prefix(e: Invalid, p: &str) -> Invalid {
    Invalid(format!("{p}{}", e.0))
}

/// Facts about each attached vault for harness selection.
async fn vault_facts(st: &AppState, ids: &[String]) -> ApiResult<Vec<VaultFacts>> {
    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return Err(ApiError::invalid(format!("vault_ids[{i}]: `{id}` is listed twice")));
        }
        if !crate::ids::has_kind(id, Kind::Vault) {
            return Err(ApiError::invalid(format!("vault_ids[{i}]: `{id}` is not a vault id (vlt_...)")));
        }
        let vault = st
            .store
            .get_doc::<crate::model::vaults::Vault>(Table::Vaults, id)
            .await?
            .ok_or_else(|| ApiError::not_found(Kind::Vault, id))?;
        if vault.archived {
            return Err(ApiError::invalid(format!("vault_ids[{i}]: vault `{id}` is archived")));
        }
        let credentials = st
            .store
            .active_credentials::<Credential>(id)
            .await?
            .into_iter()
            .map(|c| CredentialFacts {
                id: c.doc.id,
                auth_type: c.doc.auth.get("type").and_then(Value::as_str).unwrap_or_default().to_owned(),
                mcp_server_url: c.doc.auth.get("mcp_server_url").and_then(Value::as_str).map(str::to_owned),
            })
            .collect();
        out.push(VaultFacts { id: id.clone(), metadata: vault.doc.metadata, credentials });
    }
    Ok(out)
}

/// The credentials of the attached vaults that are bound to an MCP server URL.
/// Delegated threads run their runtimes beside the coordinator's in the
/// session's sandbox: harnesses whose runtime is one resident process, and
/// self-hosted environments, do not run them (yet).
fn check_coordinator_harness(st: &AppState, engine: &str, self_hosted: bool) -> ApiResult<()> {
    let model = st.harness.plugin(engine).map(|p| p.info().execution_model).ok();
    if model == Some(bridle_harness::ExecutionModel::SandboxAsTool) {
        return Err(ApiError::invalid(format!(
            "agent: a multiagent coordinator's delegated threads run on harnesses whose runtime runs in the \
             session's sandbox (claude, codex); this session's harness `{engine}` runs one resident runtime per session"
        )));
    }
    if self_hosted {
        return Err(ApiError::invalid(
            "agent: a multiagent coordinator cannot run in a self-hosted environment: delegated threads run in the \
             server's sandboxes",
        ));
    }
    Ok(())
}

/// The coordinator's roster agents, with the harness each names.
async fn roster_facts(st: &AppState, snapshot: &Value) -> ApiResult<Vec<crate::selection::RosterFacts>> {
    let mut out = Vec::new();
    for (id, version) in snapshot.get("multiagent").map(crate::model::multiagent::roster).unwrap_or_default() {
        let agent = st.store.get_agent(&id, Some(version)).await?.ok_or_else(|| {
            ApiError::invalid(format!("agent: roster agent `{id}` version {version} no longer exists"))
        })?;
        let engine = crate::model::agent_keys::engine(&agent.metadata).map(str::to_owned);
        out.push(crate::selection::RosterFacts { name: agent.name, id, engine });
    }
    Ok(out)
}

/// A roster agent's own harness runs its runtime in the session's sandbox too.
fn check_delegate_harness(st: &AppState, engine: &str) -> ApiResult<()> {
    let model = st.harness.plugin(engine).map(|p| p.info().execution_model).ok();
    if model == Some(bridle_harness::ExecutionModel::SandboxAsTool) {
        return Err(ApiError::invalid(format!(
            "agent: roster agents run on harnesses whose runtime runs in the session's sandbox (claude, codex); \
             `{engine}` (metadata bridle.engine) runs one resident runtime per session"
        )));
    }
    Ok(())
}

fn mcp_bindings(facts: &[VaultFacts]) -> Vec<crate::model::mcp::Binding> {
    facts
        .iter()
        .flat_map(|v| {
            v.credentials.iter().filter(|c| matches!(c.auth_type.as_str(), "static_bearer" | "mcp_oauth")).filter_map(
                |c| {
                    Some(crate::model::mcp::Binding {
                        credential_id: c.id.clone(),
                        vault_id: v.id.clone(),
                        url: c.mcp_server_url.clone()?,
                    })
                },
            )
        })
        .collect()
}

/// One `environment_variable` credential per variable across the session's
/// vaults (a 400 naming both credentials).
async fn check_env_secrets(st: &AppState, vault_ids: &[String]) -> ApiResult<()> {
    let mut named: Vec<(String, String)> = Vec::new();
    for id in vault_ids {
        for c in st.store.active_credentials::<Credential>(id).await? {
            if c.doc.auth.get("type").and_then(Value::as_str) == Some("environment_variable") {
                let name = c.doc.auth.get("secret_name").and_then(Value::as_str).unwrap_or_default().to_owned();
                named.push((c.doc.id, name));
            }
        }
    }
    crate::session::env_secrets::check_unique(named.iter().map(|(c, n)| (c.as_str(), n.as_str())))
        .map_err(|e| ApiError::invalid(format!("vault_ids: {e}")))
}

/// Ask the selected harness whether the vault's base URL fits its API shape.
/// Sessions without an LLM vault skip this: creating them always succeeds.
/// A session in a self-hosted environment sends every workspace tool call to
/// the environment's workers: its harness must route them there (a plugin
/// declaring `remote-tools`).
fn check_remote_tools(st: &AppState, environment_id: &str, engine: &str) -> ApiResult<()> {
    let plugin = st.harness.plugin(engine).map_err(|e| {
        ApiError::invalid(format!("environment_id: harness `{engine}` is not available on this server: {e}"))
    })?;
    if !plugin.info().remote_tools {
        return Err(ApiError::invalid(format!(
            "environment_id: environment `{environment_id}` is self_hosted, and the `{engine}` harness plugin \
             cannot send its tool calls to the environment's workers (it does not declare remote-tools); use \
             claude, codex or openai-agents"
        )));
    }
    Ok(())
}

async fn check_endpoint(
    st: &AppState,
    binding: &crate::model::sessions::HarnessBinding,
    agent: &Value,
) -> ApiResult<()> {
    let Some(vault_id) = &binding.vault_id else { return Ok(()) };
    let plugin = st.harness.plugin(&binding.engine).map_err(|e| {
        ApiError::invalid(format!(
            "vault `{vault_id}`: harness `{}` is not available on this server: {e}",
            binding.engine
        ))
    })?;
    let llm = bridle_harness::LlmEndpoint {
        base_url: binding.llm_base_url.clone(),
        model: agent.pointer("/model/id").and_then(Value::as_str).unwrap_or_default().to_owned(),
    };
    match plugin.check_endpoint(&llm).await {
        Ok(()) => Ok(()),
        Err(bridle_harness::HarnessError::Plugin { message, .. }) => Err(ApiError::invalid(format!(
            "vault `{vault_id}`: the `{}` harness cannot use llm_base_url {}: {message}",
            binding.engine,
            binding.llm_base_url.as_deref().unwrap_or("(none)")
        ))),
        Err(e) => Err(ApiError::Internal(anyhow::anyhow!(e))),
    }
}

#[utoipa::path(
    post,
    path = "/sessions",
    tag = "sessions",
    operation_id = "sessions_create",
    summary = "Create a session",
    request_body = SessionCreate,
    responses((status = 200, description = "OK", body = Session, headers(("bridle-harness" = String, description = "The harness (engine) that runs this session, e.g. `claude`."))))
)]
pub async fn create(State(st): State<AppState>, ApiJson(p): ApiJson<SessionCreate>) -> ApiResult<WithHarness> {
    // Check the initial events before creating anything.
    let mut initial = Vec::new();
    for (i, ev) in p.initial_events.clone().unwrap_or_default().into_iter().enumerate() {
        let field = format!("initial_events[{i}]");
        match parse_user_event(&field, ev)? {
            ev @ (UserEvent::Message { .. } | UserEvent::DefineOutcome { .. }) => initial.push(ev),
            _ => {
                return Err(ApiError::invalid(format!(
                    "{field}: only user.message and user.define_outcome events may be sent at create"
                )));
            }
        }
    }
    if !crate::ids::has_kind(&p.environment_id, Kind::Environment) {
        return Err(ApiError::invalid(format!(
            "environment_id: `{}` is not an environment id (env_...)",
            p.environment_id
        )));
    }
    let env = super::environments::load(&st, &p.environment_id).await?;
    if env.archived {
        return Err(ApiError::invalid(format!(
            "environment_id: environment `{}` is archived and cannot be used for new sessions",
            p.environment_id
        )));
    }
    let (agent, snapshot) = resolve_agent(&st, &p.agent).await?;
    let vault_ids = p.vault_ids.clone().unwrap_or_default();
    let facts = vault_facts(&st, &vault_ids).await?;
    check_env_secrets(&st, &vault_ids).await?;
    let coordinator = crate::model::multiagent::is_coordinator(snapshot.get("multiagent"));
    let mut binding =
        select(&facts, &st.config.harness_names(), st.config.default_llm.base_url.as_deref(), coordinator)?;
    // The environment's sandbox driver, fixed for the session now.
    binding.sandbox_driver =
        crate::model::environment_keys::sandbox_driver(&env.doc.metadata, &super::environments::driver_choice(&st))
            .map_err(|e| {
                ApiError::invalid(format!("environment_id: environment `{}` has {}", p.environment_id, e.0))
            })?;
    crate::model::mcp::check_unique(&mcp_bindings(&facts))?;
    check_endpoint(&st, &binding, &snapshot).await?;
    if coordinator {
        check_coordinator_harness(&st, &binding.engine, env.doc.config.is_self_hosted())?;
        let roster = roster_facts(&st, &snapshot).await?;
        crate::selection::check_roster(&binding, &roster)?;
        for d in &binding.delegates {
            check_delegate_harness(&st, &d.engine)?;
            check_endpoint(&st, d, &snapshot).await?;
        }
    }
    if env.doc.config.is_self_hosted() {
        check_remote_tools(&st, &p.environment_id, &binding.engine)?;
        crate::model::resources::check_self_hosted(
            &p.environment_id,
            "resources",
            p.resources.as_deref().unwrap_or_default(),
        )?;
    }
    if p.budget.is_some() {
        budget_price(&st, &snapshot)?;
    }
    let id = new_id(Kind::Session);
    let mounts =
        super::resources::prepare(&st, Some(&id), "resources", p.resources.as_deref().unwrap_or_default(), &[]).await?;
    let resources = mounts.iter().map(|r| json!(r)).collect();
    let mut taken = Vec::with_capacity(initial.len());
    for (i, ev) in initial.into_iter().enumerate() {
        for (field, file_id) in ev.file_ids() {
            super::resources::check_file(&st, Some(&id), &format!("initial_events[{i}].{field}"), &file_id).await?;
        }
        taken.push(super::outcomes::take(&st, &id, &format!("initial_events[{i}]"), ev).await?);
    }
    let initial = taken;
    let now = now_micros();
    let session = Session {
        id,
        agent: snapshot,
        archived_at: None,
        budget: p.budget.clone(),
        created_at: rfc3339(now),
        environment_id: p.environment_id.clone(),
        metadata: p.metadata.clone().unwrap_or_default(),
        outcome_evaluations: Vec::new(),
        resources,
        stats: json!({"active_seconds": 0, "duration_seconds": 0}),
        status: SessionStatus::Idle,
        title: p.title.clone(),
        kind: "session".into(),
        updated_at: rfc3339(now),
        usage: json!({"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                      "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0}}),
        vault_ids,
    };
    st.store.insert_session(&session, &binding, now, agent.version).await?;
    tracing::info!(session_id = %session.id, engine = %binding.engine, "session created");
    if !initial.is_empty() {
        let events =
            initial.into_iter().filter_map(|e| serde_json::to_value(e).ok().and_then(NewEvent::from_value)).collect();
        let stored = st.store.append_events(&session.id, events, true).await?;
        st.bus.publish(&session.id, &stored);
        st.wake(&session.id);
    }
    let session = present(&st, session).await?;
    Ok(with_harness(&binding.engine, session))
}

/// The list prices a session with a budget is measured at: its agent's model
/// must be priced in the operator's config.
fn budget_price(st: &AppState, agent: &Value) -> ApiResult<Price> {
    let model = pricing::model_id(agent).unwrap_or_default();
    st.config.price_of(model).ok_or_else(|| {
        ApiError::invalid(format!(
            "budget: model `{model}` has no list price on this server (model_not_budgetable); the operator prices \
             models in the server config ([pricing.\"{model}\"]), or create the session without a budget"
        ))
    })
}

/// What a budget change must respect: a budget only replaces one the session
/// was created with (and never comes back once removed), and a new ceiling
/// must be above what the session has already spent.
fn check_budget_change(st: &AppState, s: &Session, new: &Option<Budget>) -> ApiResult<()> {
    let Some(b) = new else { return Ok(()) };
    if s.budget.is_none() {
        return Err(ApiError::invalid(
            "budget: a budget can only replace the budget a session was created with, and a removed budget \
             cannot be re-added (budget_create_only)",
        ));
    }
    budget_price(st, &s.agent)?;
    let spent = spent(st, s).unwrap_or_default();
    // Compared as the API shows both: whole cents, the cost rounded up.
    if pricing::budget_limit(b).cents_ceil() <= spent.cents_ceil() {
        return Err(ApiError::invalid(format!(
            "budget.max_list_cost.amount: must be above the session's list cost so far ({} cents) \
             (budget_not_raised)",
            spent.cents_ceil()
        )));
    }
    Ok(())
}

/// What a session has spent at list prices, when the operator prices its
/// model.
pub(crate) fn spent(st: &AppState, s: &Session) -> Option<Cost> {
    let price = st.config.price_of(pricing::model_id(&s.agent)?)?;
    Some(pricing::list_cost(s.usage.as_object()?, &price))
}

/// The session as the API shows it: its usage priced (`usage.list_cost`)
/// when the operator prices its model, its resources without their sealed
/// tokens.
pub(crate) async fn present(st: &AppState, mut s: Session) -> ApiResult<Session> {
    s.resources.iter_mut().for_each(crate::model::resources::hide_secrets);
    if let (Some(cost), Some(usage)) = (spent(st, &s), s.usage.as_object_mut()) {
        usage.insert("list_cost".into(), json!(cost.money()));
    }
    s.outcome_evaluations = super::outcomes::evaluations(st, &s.id).await?;
    Ok(s)
}

/// The harness that runs a session, as the `bridle-harness` response header of
/// create and retrieve: the Session object is the API's own and has no field
/// for it, and a header leaves the official SDKs' parsing untouched (read it
/// with `with_raw_response`). Operators use it to check harness selection,
/// above all for sessions without an LLM vault.
type WithHarness = ([(HeaderName, HeaderValue); 1], Json<Session>);

fn with_harness(engine: &str, session: Session) -> WithHarness {
    let value = HeaderValue::from_str(engine).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    ([(HeaderName::from_static("bridle-harness"), value)], Json(session))
}

#[utoipa::path(
    get,
    path = "/sessions",
    tag = "sessions",
    operation_id = "sessions_list",
    summary = "List sessions",
    params(
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 100, default 20."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response."),
        ("order" = Option<String>, Query, description = "`asc` or `desc` by creation time (default `desc`)."),
        ("include_archived" = Option<bool>, Query, description = "Include archived resources."),
        ("agent_id" = Option<String>, Query, description = "Only sessions of this agent."),
        ("agent_version" = Option<i64>, Query, description = "Only sessions of this agent version."),
        ("statuses[]" = Option<Vec<SessionStatus>>, Query, description = "Only sessions in these statuses."),
        ("created_at[gt]" = Option<String>, Query, description = "RFC 3339 bound on creation time."),
        ("created_at[gte]" = Option<String>, Query, description = "RFC 3339 bound on creation time."),
        ("created_at[lt]" = Option<String>, Query, description = "RFC 3339 bound on creation time."),
        ("created_at[lte]" = Option<String>, Query, description = "RFC 3339 bound on creation time.")
    ),
    responses((status = 200, description = "OK", body = SessionPage))
)]
pub async fn list(State(st): State<AppState>, q: QueryParams) -> ApiResult<Json<SessionPage>> {
    q.allow(&[
        "limit",
        "page",
        "order",
        "agent_id",
        "agent_version",
        "statuses",
        "include_archived",
        "created_at[gt]",
        "created_at[gte]",
        "created_at[lt]",
        "created_at[lte]",
    ])?;
    let order = parse_order(&q, Order::Desc)?;
    let limit = parse_limit(&q, 20, 100)?;
    let statuses = parse_statuses(&q)?;
    let filter = SessionFilter {
        agent_id: q.one("agent_id")?.map(str::to_owned),
        agent_version: q.int("agent_version")?,
        statuses,
        include_archived: q.bool("include_archived")?,
        created_gt: q.time("created_at[gt]")?,
        created_gte: q.time("created_at[gte]")?,
        created_lt: q.time("created_at[lt]")?,
        created_lte: q.time("created_at[lte]")?,
    };
    let page = st.store.list_sessions(&filter, order, &position(&q, order, Kind::Session)?, limit).await?;
    let next = page.more_after.then(|| page.items.last().map(|r| next_token(order, &r.key))).flatten();
    let prev = page.more_before.then(|| page.items.first().map(|r| prev_token(order, &r.key))).flatten();
    let mut data = Vec::with_capacity(page.items.len());
    for r in page.items {
        data.push(present(&st, r.session).await?);
    }
    Ok(Json(SessionPage { data, next_page: next, prev_page: prev }))
}

/// Fetch a session or 404.
pub async fn load(st: &AppState, id: &str) -> ApiResult<crate::store::SessionRow> {
    check_id(Kind::Session, id)?;
    st.store.get_session(id).await?.ok_or_else(|| ApiError::not_found(Kind::Session, id))
}

#[utoipa::path(
    get,
    path = "/sessions/{session_id}",
    tag = "sessions",
    operation_id = "sessions_retrieve",
    summary = "Retrieve a session",
    params(
        ("session_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Session, headers(("bridle-harness" = String, description = "The harness (engine) that runs this session, e.g. `claude`."))))
)]
pub async fn retrieve(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<WithHarness> {
    let row = load(&st, &id).await?;
    let session = present(&st, row.session).await?;
    Ok(with_harness(&row.binding.engine, session))
}

#[utoipa::path(
    post,
    path = "/sessions/{session_id}",
    tag = "sessions",
    operation_id = "sessions_update",
    summary = "Update a session",
    params(
        ("session_id" = String, Path)
    ),
    request_body = SessionUpdate,
    responses((status = 200, description = "OK", body = Session))
)]
pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(p): ApiJson<SessionUpdate>,
) -> ApiResult<Json<Session>> {
    check_id(Kind::Session, &id)?;
    let mut changed = serde_json::Map::new();
    let session = st
        .store
        .update_session(&id, |mut s| -> Result<Session, ApiError> {
            if s.archived_at.is_some() {
                return Err(ApiError::conflict(format!("session `{id}` is archived and cannot be modified")));
            }
            if let Some(a) = &p.agent {
                if s.status != SessionStatus::Idle {
                    return Err(ApiError::conflict(format!(
                        "session `{id}` is {}; its agent can only be updated while idle",
                        s.status.as_str()
                    )));
                }
                let servers: Vec<McpServer> = match &a.mcp_servers {
                    Some(v) => v.clone().unwrap_or_default(),
                    None => serde_json::from_value(s.agent["mcp_servers"].clone())
                        .map_err(|e| ApiError::Internal(e.into()))?,
                };
                check_mcp_servers(&servers)?;
                s.agent["mcp_servers"] = json!(servers);
                if let Some(t) = &a.tools {
                    s.agent["tools"] = json!(
                        resolve_tools(t.as_deref().unwrap_or_default(), &servers).map_err(|e| prefix(e, "agent."))?
                    );
                }
                changed.insert("agent".into(), s.agent.clone());
            }
            if let Some(b) = &p.budget {
                check_budget_change(&st, &s, b)?;
                s.budget = b.clone();
                changed.insert("budget".into(), json!(s.budget));
            }
            if let Some(m) = &p.metadata {
                apply_metadata_patch("metadata", &mut s.metadata, m)?;
                changed.insert("metadata".into(), json!(s.metadata));
            }
            if let Some(t) = &p.title {
                s.title = t.clone();
                changed.insert("title".into(), json!(s.title));
            }
            s.updated_at = rfc3339(now_micros());
            Ok(s)
        })
        .await?;
    if !changed.is_empty() {
        changed.insert("type".into(), json!("session.updated"));
        let ev = NewEvent { id: None, body: changed };
        let stored = st.store.append_events(&id, vec![ev], false).await?;
        st.bus.publish(&id, &stored);
    }
    Ok(Json(present(&st, session).await?))
}

#[utoipa::path(
    post,
    path = "/sessions/{session_id}/archive",
    tag = "sessions",
    operation_id = "sessions_archive",
    summary = "Archive a session",
    params(
        ("session_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Session))
)]
pub async fn archive(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Session>> {
    check_id(Kind::Session, &id)?;
    let session = st
        .store
        .update_session(&id, |mut s| -> Result<Session, ApiError> {
            if s.archived_at.is_some() {
                return Ok(s);
            }
            if matches!(s.status, SessionStatus::Running | SessionStatus::Rescheduling) {
                return Err(ApiError::conflict(format!(
                    "session `{id}` is {}; send a user.interrupt event and archive it once idle",
                    s.status.as_str()
                )));
            }
            let now = rfc3339(now_micros());
            s.archived_at = Some(now.clone());
            s.updated_at = now;
            Ok(s)
        })
        .await?;
    Ok(Json(present(&st, session).await?))
}

#[utoipa::path(
    delete,
    path = "/sessions/{session_id}",
    tag = "sessions",
    operation_id = "sessions_delete",
    summary = "Delete a session and its events",
    params(
        ("session_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Deleted))
)]
pub async fn delete(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Deleted>> {
    let row = load(&st, &id).await?;
    if matches!(row.session.status, SessionStatus::Running | SessionStatus::Rescheduling) {
        return Err(ApiError::conflict(format!(
            "session `{id}` is {}; send a user.interrupt event and delete it once idle",
            row.session.status.as_str()
        )));
    }
    let Some(last_seq) = st.store.delete_session(&id).await? else {
        return Err(ApiError::not_found(Kind::Session, &id));
    };
    // `session.deleted` ends the live streams.
    st.bus.publish(&id, &[StoredEvent::session_deleted(&id, last_seq, now_micros())]);
    st.bus.close(&id);
    if let Some(sessions) = &st.sessions {
        sessions.forget(&id).await;
    }
    tracing::info!(session_id = %id, "session deleted");
    Ok(Json(Deleted { id, kind: "session_deleted".into() }))
}

/// The `statuses[]` filter of a session or thread list.
pub(super) fn parse_statuses(q: &QueryParams) -> ApiResult<Vec<SessionStatus>> {
    q.many("statuses")
        .iter()
        .map(|s| {
            SessionStatus::parse(s).ok_or_else(|| {
                ApiError::invalid(format!(
                    "statuses[]: unknown status `{s}`; expected idle, running, rescheduling or terminated"
                ))
            })
        })
        .collect()
}
