//! The HTTP side of the metrics: the layer that counts and times every
//! request by its route template, and the `/metrics` scrape handler.
//!
//! `/metrics` needs no API key (scrapers rarely carry one, and it shows no
//! resource ids or contents); `metrics.enabled = false` removes it and
//! `metrics.path` moves it.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Count and time one request. Runs after routing (a `Router::layer`), so
/// the matched route template is known; unmatched paths share one label.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    crate::metrics::http_request(&method, route.as_deref(), resp.status().as_u16(), started.elapsed());
    resp
}

/// `GET /metrics`: the Prometheus text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics (path set by `metrics.path`; absent when `metrics.enabled = false`)",
    responses((status = 200, description = "Text exposition format 0.0.4", content_type = "text/plain", body = String))
)]
pub async fn scrape(State(st): State<AppState>) -> Response {
    // Gauges of state that lives elsewhere are read at scrape time.
    metrics::gauge!(crate::metrics::SSE_SUBSCRIBERS).set(st.bus.subscriber_count() as f64);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::render()).into_response()
}

/// The scrape route, where the configuration puts it (none when disabled).
pub fn routes(config: &crate::config::Config) -> axum::Router<AppState> {
    let r = axum::Router::new();
    if config.metrics.enabled { r.route(&config.metrics.path, axum::routing::get(scrape)) } else { r }
}
