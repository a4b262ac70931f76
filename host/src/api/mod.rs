//! The HTTP API: the Managed Agents routes (one file per resource), the error
//! envelope, authentication, pagination, the SSE event stream and the OpenAPI
//! document of it all.

pub mod agents;
pub mod auth;
pub mod console;
pub mod credentials;
pub mod environments;
pub mod error;
pub mod events;
pub mod extract;
pub mod files;
pub mod health;
pub mod memory_stores;
pub mod metrics;
pub mod openapi;
pub mod outcomes;
pub mod pagination;
pub mod resources;
pub mod sessions;
pub mod skills;
pub mod stream;
pub mod threads;
pub mod vaults;
pub mod work;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// Which package managers an environment may name (the others are a 400).
    pub packages: Arc<crate::packages::spec::Installable>,
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

/// The `/v1` routes. Each handler's `#[utoipa::path]` documents it, so this
/// one table makes both the router and the OpenAPI document.
pub(crate) fn v1_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(agents::create, agents::list))
        .routes(routes!(agents::retrieve, agents::update))
        .routes(routes!(agents::archive))
        .routes(routes!(agents::versions))
        .routes(routes!(environments::create, environments::list))
        .routes(routes!(environments::retrieve, environments::update, environments::delete))
        .routes(routes!(environments::archive))
        .routes(routes!(work::list))
        .routes(routes!(work::poll))
        .routes(routes!(work::stats))
        .routes(routes!(work::retrieve, work::update))
        .routes(routes!(work::ack))
        .routes(routes!(work::heartbeat))
        .routes(routes!(work::stop))
        .routes(routes!(vaults::create, vaults::list))
        .routes(routes!(vaults::retrieve, vaults::update, vaults::delete))
        .routes(routes!(vaults::archive))
        .routes(routes!(credentials::create, credentials::list))
        .routes(routes!(credentials::retrieve, credentials::update, credentials::delete))
        .routes(routes!(credentials::archive))
        .routes(routes!(sessions::create, sessions::list))
        .routes(routes!(sessions::retrieve, sessions::update, sessions::delete))
        .routes(routes!(sessions::archive))
        .routes(routes!(events::send, events::list))
        .routes(routes!(stream::stream))
        .routes(routes!(threads::list))
        .routes(routes!(threads::retrieve))
        .routes(routes!(threads::archive))
        .routes(routes!(threads::events))
        .routes(routes!(threads::stream))
        .routes(routes!(files::upload, files::list))
        .routes(routes!(files::retrieve, files::delete))
        .routes(routes!(files::download))
        .routes(routes!(resources::list, resources::add))
        .routes(routes!(resources::retrieve, resources::update, resources::delete))
        .routes(routes!(skills::create, skills::list))
        .routes(routes!(skills::retrieve, skills::delete))
        .routes(routes!(skills::create_version, skills::list_versions))
        .routes(routes!(skills::retrieve_version, skills::delete_version))
        .routes(routes!(skills::download))
        .routes(routes!(memory_stores::create, memory_stores::list))
        .routes(routes!(memory_stores::retrieve, memory_stores::update, memory_stores::delete))
        .routes(routes!(memory_stores::archive))
        .routes(routes!(memory_stores::create_memory, memory_stores::list_memories))
        .routes(routes!(memory_stores::retrieve_memory, memory_stores::update_memory, memory_stores::delete_memory))
        .routes(routes!(memory_stores::list_versions))
        .routes(routes!(memory_stores::retrieve_version))
        .routes(routes!(memory_stores::redact_version))
}

/// The routes outside `/v1`, answered without an API key (`/metrics` is
/// added by [`router`], where the configuration puts it).
pub(crate) fn root_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::serve))
        .routes(routes!(console::redirect))
        .routes(routes!(console::page))
        .routes(routes!(console::file))
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let v1 = Router::from(v1_routes())
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_auth));
    Router::new()
        .nest("/v1", v1)
        .merge(Router::from(root_routes()))
        .merge(metrics::routes(&state.config))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read by our own extractor, which enforces the limit
        // and answers 413 in the envelope.
        .layer(DefaultBodyLimit::disable())
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()))
        .layer(middleware::from_fn(request_context))
        .layer(middleware::from_fn(metrics::track))
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
        session_id = session_in_path(req.uri().path()),
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

/// The session a `/v1/sessions/{id}/...` request is about, for its span.
fn session_in_path(path: &str) -> Option<&str> {
    let id = path.strip_prefix("/v1/sessions/")?.split('/').next()?;
    crate::ids::has_kind(id, Kind::Session).then_some(id)
}

async fn unknown_route(req: Request) -> Response {
    // Inside the nested `/v1` router the URI has lost its prefix; name the path as sent.
    let path = match req.extensions().get::<axum::extract::OriginalUri>() {
        Some(original) => original.path().to_owned(),
        None => req.uri().path().to_owned(),
    };
    let err = ApiError::NotFound(format!("no route for {} {path}", req.method()));
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
