//! The sandbox metrics, recorded through the `metrics` facade: whatever
//! recorder the embedding process installed (the server's Prometheus
//! recorder) sees them; without one they cost nothing. Labels are bounded
//! sets (driver, outcome, decision, route): never session or sandbox ids.

use std::time::Duration;

/// Sandbox claims, by driver and outcome (`started`, `pooled`, `reused`, `error`).
pub const CLAIMS: &str = "bridle_sandbox_claims_total";
/// How long claims that started a sandbox (or failed to) took.
pub const CLAIM_DURATION: &str = "bridle_sandbox_claim_duration_seconds";
/// Egress gateway requests, by decision (`allowed`, `denied`) and route
/// (`model`, `connect`, `http`).
pub const EGRESS: &str = "bridle_egress_requests_total";
/// Egress gateway connections held back or closed by a limit, by limit
/// (`sandbox_connections`, `connection_rate`, `global_connections`,
/// `header_timeout`, `idle_timeout`, `accept_error`).
pub const EGRESS_LIMITED: &str = "bridle_egress_connection_limits_total";

/// Connections all egress gateways of the process may hold together: the
/// global cap, sized from `RLIMIT_NOFILE` at driver start unless configured.
pub const EGRESS_CONNECTIONS_MAX: &str = "bridle_egress_connections_max";

/// Register the help texts (call once the recorder is installed).
pub fn describe() {
    metrics::describe_counter!(CLAIMS, "Sandbox claims, by driver and outcome (started, pooled, reused, error).");
    metrics::describe_histogram!(
        CLAIM_DURATION,
        metrics::Unit::Seconds,
        "Time to start (or take from the warm pool) a sandbox for a claim, by driver and outcome."
    );
    metrics::describe_counter!(
        EGRESS,
        "Egress gateway requests, by decision (allowed, denied) and route (model, connect, http)."
    );
    metrics::describe_counter!(
        EGRESS_LIMITED,
        "Egress gateway connections delayed or closed by a limit, by limit (sandbox_connections, \
         connection_rate, global_connections, header_timeout, idle_timeout, accept_error)."
    );
    metrics::describe_gauge!(
        EGRESS_CONNECTIONS_MAX,
        "Connections all egress gateways may hold together (egress.max_connections, else sized from \
         the open-file limit)."
    );
}

/// The global gateway cap in force.
pub(crate) fn egress_connections_max(cap: u32) {
    metrics::gauge!(EGRESS_CONNECTIONS_MAX).set(f64::from(cap));
}

/// One claim: `elapsed` is `None` when an already running sandbox was reused.
pub(crate) fn claim(driver: &'static str, outcome: &'static str, elapsed: Option<Duration>) {
    metrics::counter!(CLAIMS, "driver" => driver, "outcome" => outcome).increment(1);
    if let Some(d) = elapsed {
        metrics::histogram!(CLAIM_DURATION, "driver" => driver, "outcome" => outcome).record(d.as_secs_f64());
    }
}

/// One egress decision.
pub(crate) fn egress(decision: &'static str, route: &'static str) {
    metrics::counter!(EGRESS, "decision" => decision, "route" => route).increment(1);
}

/// One connection delayed or closed by a gateway limit.
pub(crate) fn egress_limited(limit: &'static str) {
    metrics::counter!(EGRESS_LIMITED, "limit" => limit).increment(1);
}
