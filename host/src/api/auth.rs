//! API key and beta-header checks for every `/v1` route.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::keys::hash_key;

pub const BETA: &str = "managed-agents-2026-04-01";

/// The Files API's beta. The SDKs' `files` resources send no beta header
/// unless asked to (the Files API is generally available there), and this
/// one when a client lists it; the files routes take either.
pub const FILES_BETA: &str = "files-api-2025-04-14";

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

pub async fn require_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let key_id = match check(&state, req.headers(), is_beta_optional_route(req.uri().path())).await {
        Ok(key_id) => key_id,
        Err(e) => return super::drain_then(req, e).await,
    };
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

async fn check(state: &AppState, headers: &HeaderMap, beta_optional: bool) -> Result<String, ApiError> {
    let Some(key) = presented_key(headers).filter(|k| !k.is_empty()) else {
        return Err(ApiError::Authentication(
            "missing API key: send it in the x-api-key header or as Authorization: Bearer <key>".into(),
        ));
    };
    let Some(key_id) = state.store.find_api_key(&hash_key(key)).await.map_err(|e| ApiError::Internal(e.into()))? else {
        return Err(ApiError::Authentication("invalid API key".into()));
    };
    let beta_ok = headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|b| b.trim() == BETA);
    if !beta_ok && !beta_optional {
        return Err(ApiError::invalid(format!("the Managed Agents API requires the `anthropic-beta: {BETA}` header")));
    }
    Ok(key_id)
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
}
