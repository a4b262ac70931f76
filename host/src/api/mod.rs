//! The HTTP API: the Managed Agents routes (one file per resource), the error
//! envelope, authentication, pagination and the SSE event stream.

pub mod agents;
pub mod auth;
pub mod credentials;
pub mod environments;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod pagination;
pub mod sessions;
pub mod stream;
pub mod vaults;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::bus::Bus;
use crate::config::Config;
use crate::ids::{Kind, new_id};
use crate::secrets::SecretBox;
use crate::store::Store;
use error::{ApiError, REQUEST_ID};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub bus: Arc<Bus>,
    pub secrets: SecretBox,
    pub config: Arc<Config>,
    pub limiter: Option<Arc<auth::Limiter>>,
    /// The harness plugins (asked at session create whether an endpoint fits).
    pub harness: Arc<bridle_harness::HarnessRuntime>,
    /// The live-session host; `None` on API-only nodes.
    pub sessions: Option<Arc<crate::session::Sessions>>,
}

impl AppState {
    /// New user input was stored for a session: let its runner take it.
    pub fn wake(&self, session_id: &str) {
        if let Some(s) = &self.sessions {
            s.wake(session_id);
        }
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.config.sse_heartbeat_secs)
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/agents", post(agents::create).get(agents::list))
        .route("/agents/{agent_id}", get(agents::retrieve).post(agents::update))
        .route("/agents/{agent_id}/archive", post(agents::archive))
        .route("/agents/{agent_id}/versions", get(agents::versions))
        .route("/environments", post(environments::create).get(environments::list))
        .route(
            "/environments/{environment_id}",
            get(environments::retrieve).post(environments::update).delete(environments::delete),
        )
        .route("/environments/{environment_id}/archive", post(environments::archive))
        .route("/vaults", post(vaults::create).get(vaults::list))
        .route("/vaults/{vault_id}", get(vaults::retrieve).post(vaults::update).delete(vaults::delete))
        .route("/vaults/{vault_id}/archive", post(vaults::archive))
        .route("/vaults/{vault_id}/credentials", post(credentials::create).get(credentials::list))
        .route(
            "/vaults/{vault_id}/credentials/{credential_id}",
            get(credentials::retrieve).post(credentials::update).delete(credentials::delete),
        )
        .route("/vaults/{vault_id}/credentials/{credential_id}/archive", post(credentials::archive))
        .route("/sessions", post(sessions::create).get(sessions::list))
        .route("/sessions/{session_id}", get(sessions::retrieve).post(sessions::update).delete(sessions::delete))
        .route("/sessions/{session_id}/archive", post(sessions::archive))
        .route("/sessions/{session_id}/events", post(events::send).get(events::list))
        .route("/sessions/{session_id}/events/stream", get(stream::stream))
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_auth));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read by our own extractor, which enforces the limit
        // and answers 413 in the envelope.
        .layer(DefaultBodyLimit::disable())
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

/// Give every request an id (echoed in `request-id` and in error bodies)
/// and a tracing span.
async fn request_context(req: Request, next: Next) -> Response {
    let request_id = new_id(Kind::Request);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = std::time::Instant::now();
    let mut resp =
        REQUEST_ID.scope(request_id.clone(), tracing::Instrument::instrument(next.run(req), span.clone())).await;
    let status = resp.status();
    span.in_scope(|| {
        tracing::info!(status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request done");
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

async fn unknown_route(req: Request) -> Response {
    let err = ApiError::NotFound(format!("no route for {} {}", req.method(), req.uri().path()));
    drain_then(req, err).await
}

async fn method_not_allowed(req: Request) -> Response {
    let err = ApiError::invalid(format!("method {} is not allowed on {}", req.method(), req.uri().path()));
    let mut resp = drain_then(req, err).await;
    *resp.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    resp
}

/// Answer an error for a request whose body was not read. The body is read
/// (up to a bound) first: answering early leaves unread bytes on a
/// keep-alive connection, which hyper then closes under the client.
pub(crate) async fn drain_then(req: Request, err: ApiError) -> Response {
    const DRAIN_LIMIT: usize = 1 << 20;
    let mut resp = err.into_response();
    if axum::body::to_bytes(req.into_body(), DRAIN_LIMIT).await.is_err() {
        // Too big to drain: tell the client this connection ends here.
        resp.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
