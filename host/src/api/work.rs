//! `/v1/environments/{id}/work...`: the work queue of a self-hosted
//! environment, as the SDKs' `environments.work` resource and their
//! `EnvironmentWorker` call it. The lease rules are `model::work`'s; each
//! change is read, decided there, and written back only if the row is
//! unchanged (`save_work`), so any node serves any worker.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams, check_id};
use super::pagination::parse_limit;
use crate::ids::Kind;
use crate::keys::{WORK_TOKEN_PREFIX, hash_key, random_secret};
use crate::model::common::{Invalid, Validate, check_metadata};
use crate::model::work::{
    self, DEFAULT_RECLAIM_MS, HeartbeatParams, HeartbeatResponse, POLLING_WINDOW_MICROS, QueueStats, Refusal,
    StopParams, Work, WorkItem, WorkList, WorkUpdate,
};

/// How often a write that lost a race to another writer is tried again.
const RACE_RETRIES: usize = 8;

impl Validate for WorkUpdate {
    fn validate(&self) -> Result<(), Invalid> {
        let sets = self.metadata.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect();
        check_metadata("metadata", &sets)
    }
}

impl Validate for StopParams {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Conflict(m) => ApiError::Conflict(m),
            Refusal::Precondition { message, current } => ApiError::HeartbeatPrecondition(message, Box::new(current)),
        }
    }
}

/// The environment exists and is self-hosted.
async fn self_hosted(st: &AppState, environment_id: &str) -> ApiResult<()> {
    let env = super::environments::load(st, environment_id).await?;
    if !env.doc.config.is_self_hosted() {
        return Err(ApiError::invalid(format!(
            "environment `{environment_id}` is a cloud environment: only self_hosted environments have a work queue"
        )));
    }
    Ok(())
}

/// The work item, which must belong to the environment.
async fn load(st: &AppState, environment_id: &str, work_id: &str) -> ApiResult<WorkItem> {
    check_id(Kind::Work, work_id)?;
    match st.store.get_work(work_id).await? {
        Some(it) if it.environment_id == environment_id => Ok(it),
        _ => Err(ApiError::NotFound(format!("work item `{work_id}` not found in environment `{environment_id}`"))),
    }
}

/// Read, decide, write back unless another writer got there first (then
/// read again). `decide` answers the item to store and what to return.
async fn change<T>(
    st: &AppState,
    environment_id: &str,
    work_id: &str,
    decide: impl Fn(&WorkItem, i64) -> Result<(WorkItem, T), Refusal>,
) -> ApiResult<T> {
    for _ in 0..RACE_RETRIES {
        let it = load(st, environment_id, work_id).await?;
        let (new, out) = decide(&it, st.store.work_clock().await?)?;
        if new == it || st.store.save_work(&new, it.version).await? {
            return Ok(out);
        }
    }
    Err(ApiError::conflict(format!("work item `{work_id}` is changing too fast; try again")))
}

/// A POST body that may be absent (the SDK sends none on ack and heartbeat).
async fn no_body(req: Request, st: &AppState) -> ApiResult<()> {
    let bytes = axum::body::to_bytes(req.into_body(), st.config.max_body_bytes)
        .await
        .map_err(|e| ApiError::invalid(format!("could not read the request body: {e}")))?;
    if bytes.is_empty() {
        return Ok(());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) if m.is_empty() => Ok(()),
        Ok(Value::Object(m)) => {
            let k = m.keys().next().map(String::as_str).unwrap_or_default();
            Err(ApiError::invalid(format!("{k}: unknown field; this request takes no body")))
        }
        _ => Err(ApiError::invalid("request body must be a JSON object")),
    }
}

#[utoipa::path(
    get,
    path = "/environments/{environment_id}/work",
    tag = "work",
    operation_id = "work_list",
    summary = "List a self-hosted environment's work items",
    params(
        ("environment_id" = String, Path),
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 100, default 20."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response.")
    ),
    responses((status = 200, description = "OK", body = WorkList))
)]
pub async fn list(
    State(st): State<AppState>,
    Path(environment_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<WorkList>> {
    q.allow(&["limit", "page"])?;
    self_hosted(&st, &environment_id).await?;
    let limit = parse_limit(&q, 20, 100)?;
    let after = match q.one("page")? {
        Some(p) => Some(load(&st, &environment_id, p).await.map_err(|_| {
            ApiError::invalid(format!("page: `{p}` is not a next_page token of this environment's work list"))
        })?),
        None => None,
    };
    let mut items = st.store.list_work(&environment_id, after.as_ref(), limit + 1).await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_page = more.then(|| items.last().map(|i| i.id.clone())).flatten();
    let now = st.store.work_clock().await?;
    Ok(Json(WorkList { data: items.iter().map(|i| i.to_wire(now, None)).collect(), next_page }))
}

#[utoipa::path(
    get,
    path = "/environments/{environment_id}/work/poll",
    tag = "work",
    operation_id = "work_poll",
    summary = "Long poll for a work item",
    description = "Answers the oldest work item no live lease holds (leased to the caller, with the `secret` of its \
                   per-session token), or `null` after `block_ms`.",
    params(
        ("environment_id" = String, Path),
        ("block_ms" = Option<i64>, Query, description = "Wait up to this long (1 to 999 ms) for work; default: do not wait."),
        ("reclaim_older_than_ms" = Option<i64>, Query, description = "Take back polled items not acknowledged for this long (default 5000 ms)."),
        ("Anthropic-Worker-ID" = Option<String>, Header, description = "The polling worker's unique id.")
    ),
    responses((status = 200, description = "A work item, or `null`", body = Option<Work>))
)]
pub async fn poll(
    State(st): State<AppState>,
    Path(environment_id): Path<String>,
    headers: HeaderMap,
    q: QueryParams,
) -> ApiResult<Json<Option<Work>>> {
    q.allow(&["block_ms", "reclaim_older_than_ms"])?;
    let block_ms = match q.int("block_ms")? {
        None => 0,
        Some(n @ 1..=999) => n,
        Some(n) => return Err(ApiError::invalid(format!("block_ms: must be from 1 to 999, got {n}"))),
    };
    let reclaim_ms = match q.int("reclaim_older_than_ms")? {
        None => DEFAULT_RECLAIM_MS,
        Some(n) if n >= 0 => n,
        Some(n) => return Err(ApiError::invalid(format!("reclaim_older_than_ms: must be >= 0, got {n}"))),
    };
    let worker = match headers.get("anthropic-worker-id").map(|v| v.to_str()) {
        Some(Ok(w)) if !w.is_empty() && w.len() <= 256 => Some(w.to_owned()),
        Some(_) => return Err(ApiError::invalid("Anthropic-Worker-ID: must be 1 to 256 visible characters")),
        None => None,
    };
    self_hosted(&st, &environment_id).await?;
    if let Some(w) = &worker {
        st.store.note_poller(&environment_id, w, st.store.work_clock().await?).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(block_ms as u64);
    let waiter = st.bus.work_waiter(&environment_id);
    loop {
        // Registered before looking, so work queued meanwhile still wakes us.
        let notified = waiter.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(work) = claim_one(&st, &environment_id, worker.as_deref(), reclaim_ms).await? {
            return Ok(Json(Some(work)));
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Ok(Json(None));
        }
    }
}

/// Lease the oldest claimable item to the caller, if any.
async fn claim_one(
    st: &AppState,
    environment_id: &str,
    worker: Option<&str>,
    reclaim_ms: i64,
) -> ApiResult<Option<Work>> {
    for _ in 0..RACE_RETRIES {
        let now = st.store.work_clock().await?;
        let open = st.store.open_work(environment_id).await?;
        let Some(it) = open.iter().find(|i| i.claimable(now, reclaim_ms)) else { return Ok(None) };
        let token = random_secret(WORK_TOKEN_PREFIX);
        let claimed = it.claim(now, worker, &hash_key(&token));
        if st.store.save_work(&claimed, it.version).await? {
            tracing::info!(work_id = %it.id, session_id = %it.session_id, worker, claims = claimed.claims, "work item leased");
            return Ok(Some(claimed.to_wire(now, Some(work::secret_for(&token)))));
        }
    }
    Ok(None)
}

#[utoipa::path(
    get,
    path = "/environments/{environment_id}/work/stats",
    tag = "work",
    operation_id = "work_stats",
    summary = "The work queue's depth and workers",
    params(("environment_id" = String, Path)),
    responses((status = 200, description = "OK", body = QueueStats))
)]
pub async fn stats(
    State(st): State<AppState>,
    Path(environment_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<QueueStats>> {
    q.allow(&[])?;
    self_hosted(&st, &environment_id).await?;
    let now = st.store.work_clock().await?;
    let open = st.store.open_work(&environment_id).await?;
    let polling = st.store.count_pollers(&environment_id, now - POLLING_WINDOW_MICROS).await?;
    Ok(Json(work::stats(open.iter(), polling, now)))
}

#[utoipa::path(
    get,
    path = "/environments/{environment_id}/work/{work_id}",
    tag = "work",
    operation_id = "work_retrieve",
    summary = "Retrieve a work item",
    params(("environment_id" = String, Path), ("work_id" = String, Path)),
    responses((status = 200, description = "OK", body = Work))
)]
pub async fn retrieve(
    State(st): State<AppState>,
    Path((environment_id, work_id)): Path<(String, String)>,
) -> ApiResult<Json<Work>> {
    let it = load(&st, &environment_id, &work_id).await?;
    Ok(Json(it.to_wire(st.store.work_clock().await?, None)))
}

#[utoipa::path(
    post,
    path = "/environments/{environment_id}/work/{work_id}",
    tag = "work",
    operation_id = "work_update",
    summary = "Update a work item's metadata",
    params(("environment_id" = String, Path), ("work_id" = String, Path)),
    request_body = WorkUpdate,
    responses((status = 200, description = "OK", body = Work))
)]
pub async fn update(
    State(st): State<AppState>,
    Path((environment_id, work_id)): Path<(String, String)>,
    ApiJson(p): ApiJson<WorkUpdate>,
) -> ApiResult<Json<Work>> {
    let it = change(&st, &environment_id, &work_id, |it, now| {
        let new = it.with_metadata(&p.metadata);
        if new.metadata.len() > 16 {
            return Err(Refusal::Conflict("metadata: at most 16 pairs are allowed".into()));
        }
        Ok((new.clone(), new.to_wire(now, None)))
    })
    .await?;
    Ok(Json(it))
}

#[utoipa::path(
    post,
    path = "/environments/{environment_id}/work/{work_id}/ack",
    tag = "work",
    operation_id = "work_ack",
    summary = "Acknowledge a polled work item",
    params(("environment_id" = String, Path), ("work_id" = String, Path)),
    responses((status = 200, description = "OK", body = Work))
)]
pub async fn ack(
    State(st): State<AppState>,
    Path((environment_id, work_id)): Path<(String, String)>,
    req: Request,
) -> ApiResult<Json<Work>> {
    no_body(req, &st).await?;
    let w = change(&st, &environment_id, &work_id, |it, now| {
        let new = it.ack(now)?;
        Ok((new.clone(), new.to_wire(now, None)))
    })
    .await?;
    Ok(Json(w))
}

#[utoipa::path(
    post,
    path = "/environments/{environment_id}/work/{work_id}/heartbeat",
    tag = "work",
    operation_id = "work_heartbeat",
    summary = "Extend a work item's lease",
    description = "`expected_last_heartbeat` (`NO_HEARTBEAT` for the first) must be the stored heartbeat, else 412 \
                   `heartbeat_precondition_failed`; so is a heartbeat for a lease that expired.",
    params(
        ("environment_id" = String, Path),
        ("work_id" = String, Path),
        ("desired_ttl_seconds" = Option<i64>, Query, description = "The lease to ask for (bounded by the server)."),
        ("expected_last_heartbeat" = Option<String>, Query, description = "The last heartbeat this worker was given.")
    ),
    responses((status = 200, description = "OK", body = HeartbeatResponse))
)]
pub async fn heartbeat(
    State(st): State<AppState>,
    Path((environment_id, work_id)): Path<(String, String)>,
    q: QueryParams,
    req: Request,
) -> ApiResult<Json<HeartbeatResponse>> {
    no_body(req, &st).await?;
    q.allow(&["desired_ttl_seconds", "expected_last_heartbeat"])?;
    let p = HeartbeatParams {
        desired_ttl_seconds: q.int("desired_ttl_seconds")?,
        expected_last_heartbeat: q.one("expected_last_heartbeat")?.map(str::to_owned),
    };
    let max_ttl = i64::try_from(st.config.self_hosted.max_lease_secs).unwrap_or(i64::MAX);
    let r = change(&st, &environment_id, &work_id, |it, now| {
        let beat = it.heartbeat(p.expected_last_heartbeat.as_deref(), p.desired_ttl_seconds, max_ttl, now)?;
        Ok((beat.item, beat.response))
    })
    .await?;
    Ok(Json(r))
}

#[utoipa::path(
    post,
    path = "/environments/{environment_id}/work/{work_id}/stop",
    tag = "work",
    operation_id = "work_stop",
    summary = "Stop a work item",
    description = "`force`: stopped at once; otherwise `stopping`, and the worker's next heartbeat ends it. 409 when \
                   already stopped.",
    params(("environment_id" = String, Path), ("work_id" = String, Path)),
    request_body = StopParams,
    responses((status = 200, description = "OK", body = Work))
)]
pub async fn stop(
    State(st): State<AppState>,
    Path((environment_id, work_id)): Path<(String, String)>,
    ApiJson(p): ApiJson<StopParams>,
) -> ApiResult<Json<Work>> {
    let force = p.force.unwrap_or(false);
    let w = change(&st, &environment_id, &work_id, |it, now| {
        let new = it.stop(force, now)?;
        Ok((new.clone(), new.to_wire(now, None)))
    })
    .await?;
    Ok(Json(w))
}
