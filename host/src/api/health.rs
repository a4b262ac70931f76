//! `/healthz` (the process is up) and `/readyz` (it can serve: database reachable).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    st.store.ping().await.map_err(|e| ApiError::Internal(e.context("database not reachable")))?;
    Ok(Json(json!({"status": "ready"})))
}
