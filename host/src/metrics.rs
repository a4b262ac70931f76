//! Prometheus metrics. Everything records through the `metrics` facade (the
//! library crates too: `bridle_harness::metrics`, `bridle_sandbox::metrics`);
//! the server installs one `metrics-exporter-prometheus` recorder and renders
//! it on its own `/metrics` route (no second listener).
//!
//! Labels are bounded sets: route templates (never raw paths), methods,
//! status codes, engine names, session states, backends. No session, sandbox
//! or request ids: those belong in logs and spans.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::sessions::SessionStatus;

/// API requests, by method, route template and status.
pub const HTTP_REQUESTS: &str = "bridle_http_requests_total";
/// API request duration (until the response head; for SSE, until the stream opens).
pub const HTTP_DURATION: &str = "bridle_http_request_duration_seconds";
/// Sessions with a runner on this node, by harness and status.
pub const SESSIONS_LIVE: &str = "bridle_sessions_live";
/// Time to append a batch of events to a session's log (one transaction), by
/// backend and writer (`api`: user events; `runner`: runtime output).
pub const EVENT_APPEND: &str = "bridle_event_append_duration_seconds";
/// Open SSE event streams on this node.
pub const SSE_SUBSCRIBERS: &str = "bridle_sse_subscribers";

/// Histogram buckets (seconds), per family: requests and appends are
/// milliseconds, plugin calls microseconds, sandbox starts up to seconds.
const REQUEST_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const APPEND_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
const PLUGIN_BUCKETS: &[f64] = &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01, 0.1, 1.0];
const CLAIM_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process-wide Prometheus recorder (once; later calls return the
/// same handle). If another recorder was installed first (an embedding
/// program's), ours still renders, just without the facade's data.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will not see Bridle's metrics");
        } else {
            describe();
        }
        handle
    })
}

fn builder() -> PrometheusBuilder {
    let families: [(&str, &[f64]); 4] = [
        (HTTP_DURATION, REQUEST_BUCKETS),
        (EVENT_APPEND, APPEND_BUCKETS),
        (bridle_harness::metrics::CALL_DURATION, PLUGIN_BUCKETS),
        (bridle_sandbox::metrics::CLAIM_DURATION, CLAIM_BUCKETS),
    ];
    families.into_iter().fold(PrometheusBuilder::new(), |b, (name, buckets)| {
        b.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .expect("bucket lists are constant and not empty (see the test below)")
    })
}

fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(HTTP_REQUESTS, "API requests, by method, route template and status code.");
    metrics::describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "API request duration until the response head (SSE: until the stream opens), by method and route template."
    );
    metrics::describe_gauge!(SESSIONS_LIVE, "Sessions with a runner on this node, by harness and status.");
    metrics::describe_histogram!(
        EVENT_APPEND,
        Unit::Seconds,
        "Time to append one batch of events to a session's log (one transaction), by backend and writer (api, runner)."
    );
    metrics::describe_gauge!(SSE_SUBSCRIBERS, "Open SSE event streams on this node.");
    bridle_harness::metrics::describe();
    bridle_sandbox::metrics::describe();
}

/// The metrics in the Prometheus text format.
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}

/// Methods outside the usual set share one label value (bounded cardinality).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// One answered API request. `route` is the matched route template, `None`
/// when no route matched (recorded as `unmatched`).
pub fn http_request(method: &axum::http::Method, route: Option<&str>, status: u16, elapsed: Duration) {
    let method = method_label(method);
    let route = route.unwrap_or("unmatched").to_owned();
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route).record(elapsed.as_secs_f64());
}

/// Counts one live session in [`SESSIONS_LIVE`] under its current status
/// for as long as it lives (the session runner holds one).
#[derive(Debug)]
pub struct LiveSession {
    harness: String,
    status: SessionStatus,
}

impl LiveSession {
    pub fn new(harness: &str, status: SessionStatus) -> Self {
        let live = LiveSession { harness: harness.to_owned(), status };
        live.gauge(status).increment(1.0);
        live
    }

    /// The session moved to `status`.
    pub fn set(&mut self, status: SessionStatus) {
        if status != self.status {
            self.gauge(self.status).decrement(1.0);
            self.gauge(status).increment(1.0);
            self.status = status;
        }
    }

    fn gauge(&self, status: SessionStatus) -> metrics::Gauge {
        metrics::gauge!(SESSIONS_LIVE, "harness" => self.harness.clone(), "state" => status.as_str())
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.gauge(self.status).decrement(1.0);
    }
}

/// Times one event-log append; records on drop (failed appends too).
#[must_use = "the append is timed until this is dropped"]
pub struct AppendTimer {
    backend: &'static str,
    writer: &'static str,
    started: Instant,
}

impl AppendTimer {
    pub fn start(backend: crate::store::Backend, writer: &'static str) -> Self {
        let backend = match backend {
            crate::store::Backend::Sqlite => "sqlite",
            crate::store::Backend::Postgres => "postgres",
        };
        AppendTimer { backend, writer, started: Instant::now() }
    }
}

impl Drop for AppendTimer {
    fn drop(&mut self) {
        metrics::histogram!(EVENT_APPEND, "backend" => self.backend, "writer" => self.writer)
            .record(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_buckets() {
        for b in [REQUEST_BUCKETS, APPEND_BUCKETS, PLUGIN_BUCKETS, CLAIM_BUCKETS] {
            assert!(!b.is_empty() && b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
        }
    }

    #[test]
    fn odd_methods_share_a_label() {
        let m = axum::http::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&m), "other");
        assert_eq!(method_label(&axum::http::Method::POST), "POST");
    }
}
