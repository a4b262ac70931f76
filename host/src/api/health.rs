//! `/healthz` (the process is up) and `/readyz` (it can serve: database
//! reachable). Both answer without an API key, for probes.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};

/// How long `/readyz` waits for the database: probes time out in seconds,
/// and the pool would otherwise wait its full acquire timeout.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "The process is up",
    responses((status = 200, description = "Up", body = super::openapi::Status))
)]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "The server can serve (its database answers)",
    responses((status = 200, description = "Ready (503 in the error envelope when not)", body = super::openapi::Status))
)]
pub async fn readyz(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let why = match tokio::time::timeout(READY_TIMEOUT, st.store.ping()).await {
        Ok(Ok(())) => return Ok(Json(json!({"status": "ready"}))),
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => format!("no answer within {}s", READY_TIMEOUT.as_secs()),
    };
    // The cause stays in the log: this route is unauthenticated.
    tracing::warn!(error = %why, "not ready: the database is not reachable");
    Err(ApiError::Unavailable("not ready: the database is not reachable; the server log has the cause".into()))
}
