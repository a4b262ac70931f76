//! API key and beta-header checks for every `/v1` route, and what each kind
//! of credential may call: an API key everything; an environment key only
//! its environment's work queue; a work item's per-session token only that
//! session (read it, follow its events, answer its tool calls) and that
//! item's lease.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::keys::{WORK_TOKEN_PREFIX, hash_key};
use crate::model::work::WorkState;

/// Who a request comes from (a request extension on every `/v1` route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    ApiKey(String),
    /// A self-hosted environment's worker.
    Environment {
        key_id: String,
        environment_id: String,
    },
    /// The per-session token of one work item's lease.
    Work {
        work_id: String,
        session_id: String,
        environment_id: String,
    },
}

impl Principal {
    /// The rate limiter's key.
    fn limit_key(&self) -> &str {
        match self {
            Principal::ApiKey(id) | Principal::Environment { key_id: id, .. } => id,
            Principal::Work { work_id, .. } => work_id,
        }
    }
}

/// Whether `who` may call `method path` (the path inside `/v1`).
pub fn permits(who: &Principal, method: &Method, path: &str) -> Result<(), ApiError> {
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match who {
        Principal::ApiKey(_) => Ok(()),
        Principal::Environment { environment_id, .. } => match parts.as_slice() {
            ["environments", env, "work", ..] if env == environment_id => Ok(()),
            ["environments", env, "work", ..] => Err(ApiError::Permission(format!(
                "this environment key belongs to environment `{environment_id}`; it cannot act on `{env}`"
            ))),
            _ => Err(ApiError::Permission(format!(
                "an environment key can only call its environment's work queue (/v1/environments/{environment_id}/work...), \
                 not {method} /v1{path}"
            ))),
        },
        Principal::Work { work_id, session_id, environment_id } => {
            let ok = match (method, parts.as_slice()) {
                (&Method::GET, ["sessions", s]) => s == session_id,
                (&Method::GET, ["sessions", s, "events"]) | (&Method::POST, ["sessions", s, "events"]) => {
                    s == session_id
                }
                (&Method::GET, ["sessions", s, "events", "stream"]) => s == session_id,
                (&Method::GET, ["sessions", s, "resources", ..]) => s == session_id,
                (&Method::GET | &Method::POST, ["environments", e, "work", w]) => e == environment_id && w == work_id,
                (&Method::POST, ["environments", e, "work", w, "ack" | "heartbeat" | "stop"]) => {
                    e == environment_id && w == work_id
                }
                _ => false,
            };
            match ok {
                true => Ok(()),
                false => Err(ApiError::Permission(format!(
                    "a work item's session token only reaches session `{session_id}` and work item `{work_id}`, \
                     not {method} /v1{path}"
                ))),
            }
        }
    }
}

pub const BETA: &str = "managed-agents-2026-04-01";

/// The Files API's beta. The SDKs' `files` resources send no beta header
/// unless asked to (the Files API is generally available there), and this
/// one when a client lists it; the files routes take either.
pub const FILES_BETA: &str = "files-api-2025-04-14";

/// The memory stores API's own beta: the SDKs send it (not [`BETA`]) on
/// `memory_stores` calls; those routes take either.
pub const MEMORY_BETA: &str = "agent-memory-2026-07-22";

/// Whether a `/v1` route belongs to the memory stores API.
pub fn is_memory_route(path: &str) -> bool {
    let path = path.strip_prefix("/v1").unwrap_or(path);
    path == "/memory_stores" || path.starts_with("/memory_stores/")
}

/// Whether a `/v1` route belongs to the Files or Skills API, whose beta
/// header is optional (the SDKs send none by default).
/// Inside the nested `/v1` router the path has lost its prefix.
pub fn is_beta_optional_route(path: &str) -> bool {
    let path = path.strip_prefix("/v1").unwrap_or(path);
    ["/files", "/skills"]
        .iter()
        .any(|root| path == *root || path.strip_prefix(root).is_some_and(|r| r.starts_with('/')))
}

/// The key from `x-api-key` or `Authorization: Bearer`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    let auth = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let who = match check(&state, req.headers(), is_beta_optional_route(path), is_memory_route(path)).await {
        Ok(who) => who,
        Err(e) => return super::drain_then(req, e).await,
    };
    if let Err(e) = permits(&who, req.method(), req.uri().path()) {
        return super::drain_then(req, e).await;
    }
    let key_id = who.limit_key().to_owned();
    req.extensions_mut().insert(who);
    if let Some(limiter) = &state.limiter
        && let Err(not_until) = limiter.check_key(&key_id)
    {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut resp = ApiError::RateLimited(format!("rate limit exceeded for this API key; retry after {secs} s"))
            .into_response();
        if let Ok(v) = secs.to_string().parse() {
            resp.headers_mut().insert("retry-after", v);
        }
        return resp;
    }
    tracing::debug!(api_key = %key_id, "authenticated");
    next.run(req).await
}

/// Per-API-key request rate limiter.
pub type Limiter = governor::DefaultKeyedRateLimiter<String>;

pub fn limiter(per_second: u32) -> Option<std::sync::Arc<Limiter>> {
    let rate = std::num::NonZeroU32::new(per_second)?;
    Some(std::sync::Arc::new(governor::RateLimiter::keyed(governor::Quota::per_second(rate))))
}

/// The principal a presented key stands for.
async fn principal(state: &AppState, key: &str) -> Result<Option<Principal>, ApiError> {
    let hash = hash_key(key);
    let store = &state.store;
    if let Some(id) = store.find_api_key(&hash).await? {
        return Ok(Some(Principal::ApiKey(id)));
    }
    if let Some((key_id, environment_id)) = store.find_environment_key(&hash).await? {
        return Ok(Some(Principal::Environment { key_id, environment_id }));
    }
    if key.starts_with(WORK_TOKEN_PREFIX)
        && let Some(item) = store.work_by_token(&hash).await?
        && item.state_at(crate::time::now_micros()) != WorkState::Stopped
    {
        let (work_id, session_id, environment_id) = (item.id, item.session_id, item.environment_id);
        return Ok(Some(Principal::Work { work_id, session_id, environment_id }));
    }
    Ok(None)
}

async fn check(
    state: &AppState,
    headers: &HeaderMap,
    beta_optional: bool,
    memory: bool,
) -> Result<Principal, ApiError> {
    let Some(key) = presented_key(headers).filter(|k| !k.is_empty()) else {
        return Err(ApiError::Authentication(
            "missing API key: send it in the x-api-key header or as Authorization: Bearer <key>".into(),
        ));
    };
    let Some(who) = principal(state, key).await? else {
        let what = match key {
            k if k.starts_with(WORK_TOKEN_PREFIX) => "invalid session token: its work item's lease has ended",
            k if k.starts_with(crate::keys::ENV_KEY_PREFIX) => "invalid environment key (unknown or revoked)",
            _ => "invalid API key",
        };
        return Err(ApiError::Authentication(what.into()));
    };
    let beta_ok = headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|b| b.trim() == BETA || (memory && b.trim() == MEMORY_BETA));
    if !beta_ok && !beta_optional {
        if memory {
            return Err(ApiError::invalid(format!(
                "the memory stores API requires the `anthropic-beta: {MEMORY_BETA}` (or `{BETA}`) header"
            )));
        }
        return Err(ApiError::invalid(format!("the Managed Agents API requires the `anthropic-beta: {BETA}` header")));
    }
    Ok(who)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_key_headers() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(presented_key(&h), Some("abc"));
        h.insert("x-api-key", "xyz".parse().unwrap());
        assert_eq!(presented_key(&h), Some("xyz"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&h), None);
    }

    #[test]
    fn scoped_credentials_reach_only_their_routes() {
        let api = Principal::ApiKey("apikey_1".into());
        let env = Principal::Environment { key_id: "envkey_1".into(), environment_id: "env_a".into() };
        let work =
            Principal::Work { work_id: "work_1".into(), session_id: "sesn_1".into(), environment_id: "env_a".into() };
        let (get, post, del) = (Method::GET, Method::POST, Method::DELETE);
        for (who, method, path, ok) in [
            (&api, &get, "/agents", true),
            (&api, &post, "/environments/env_b/work/poll", true),
            (&env, &get, "/environments/env_a/work/poll", true),
            (&env, &get, "/v1/environments/env_a/work", true),
            (&env, &post, "/environments/env_a/work/work_9/heartbeat", true),
            (&env, &get, "/environments/env_b/work/poll", false),
            (&env, &get, "/environments/env_a", false),
            (&env, &get, "/sessions/sesn_1", false),
            (&env, &post, "/agents", false),
            (&work, &get, "/sessions/sesn_1", true),
            (&work, &get, "/sessions/sesn_1/events", true),
            (&work, &post, "/sessions/sesn_1/events", true),
            (&work, &get, "/sessions/sesn_1/events/stream", true),
            (&work, &post, "/environments/env_a/work/work_1/heartbeat", true),
            (&work, &post, "/environments/env_a/work/work_1/stop", true),
            (&work, &get, "/sessions/sesn_2", false),
            (&work, &post, "/sessions/sesn_1", false),
            (&work, &del, "/sessions/sesn_1", false),
            (&work, &post, "/sessions/sesn_1/archive", false),
            (&work, &post, "/environments/env_a/work/work_2/heartbeat", false),
            (&work, &get, "/environments/env_a/work/poll", false),
            (&work, &get, "/sessions", false),
        ] {
            assert_eq!(permits(who, method, path).is_ok(), ok, "{who:?} {method} {path}");
        }
        let e = permits(&env, &get, "/environments/env_b/work/poll").unwrap_err();
        assert!(e.to_string().contains("belongs to environment `env_a`"), "{e}");
        assert_eq!(e.status(), axum::http::StatusCode::FORBIDDEN);
    }

    #[test]
    fn files_and_skills_routes_are_recognised() {
        for p in [
            "/files",
            "/files/file_1",
            "/files/file_1/content",
            "/v1/files",
            "/v1/files/file_1",
            "/skills",
            "/v1/skills/skill_1/versions",
        ] {
            assert!(is_beta_optional_route(p), "{p}");
        }
        for p in ["/filesystem", "/agents", "/v1/sessions/files", "/skillset", "/"] {
            assert!(!is_beta_optional_route(p), "{p}");
        }
    }

    #[test]
    fn memory_store_routes_are_recognised() {
        for p in ["/memory_stores", "/v1/memory_stores", "/memory_stores/memstore_1/memories/mem_1"] {
            assert!(is_memory_route(p), "{p}");
        }
        for p in ["/memory_storesx", "/agents", "/v1/sessions/memory_stores", "/"] {
            assert!(!is_memory_route(p), "{p}");
        }
    }
}
