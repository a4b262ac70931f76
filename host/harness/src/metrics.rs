//! Plugin call metrics, recorded through the `metrics` facade (the server
//! installs the Prometheus recorder; without one they cost nothing). Labels
//! are the engine name (bounded by configuration) and the export called.

use std::time::Duration;

use crate::HarnessError;

/// Time spent in one call into a plugin, by plugin and call.
pub const CALL_DURATION: &str = "bridle_plugin_call_duration_seconds";
/// Calls that faulted (trap, time-out, memory), by plugin, call and kind.
pub const FAULTS: &str = "bridle_plugin_faults_total";

/// Register the help texts (call once the recorder is installed).
pub fn describe() {
    metrics::describe_histogram!(
        CALL_DURATION,
        metrics::Unit::Seconds,
        "Time spent in one call into a harness plugin (wasm), by plugin and call."
    );
    metrics::describe_counter!(
        FAULTS,
        "Harness plugin calls that faulted, by plugin, call and kind (trap, timeout, memory)."
    );
}

/// Record one call: its duration, and its fault if it had one.
pub(crate) fn call(plugin: &str, call: &'static str, elapsed: Duration, result: Result<(), &HarnessError>) {
    metrics::histogram!(CALL_DURATION, "plugin" => plugin.to_owned(), "call" => call).record(elapsed.as_secs_f64());
    let kind = match result {
        Err(HarnessError::Trap { .. }) => "trap",
        Err(HarnessError::Timeout { .. }) => "timeout",
        Err(HarnessError::MemoryExceeded { .. }) => "memory",
        _ => return,
    };
    metrics::counter!(FAULTS, "plugin" => plugin.to_owned(), "call" => call, "kind" => kind).increment(1);
}
