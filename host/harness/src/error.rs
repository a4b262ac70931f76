//! The crate-boundary error type.

use std::time::Duration;

/// Everything that can go wrong between the host and a harness plugin.
///
/// Every variant names the plugin (its engine name, or its file for
/// [`crate::inspect`]). Errors carry rendered messages rather than sources so
/// they are `Clone`: the registry keeps a plugin's load error and hands it
/// out on every lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HarnessError {
    /// The plugin answered with its own `Err(message)`: for `check_endpoint`
    /// the endpoint is rejected (show the message to the user); for session
    /// calls the input could not be mapped. The instance is still usable.
    #[error("plugin {plugin}: {message}")]
    Plugin { plugin: String, message: String },

    /// The plugin trapped (a Rust panic, an `unreachable`, a bad memory
    /// access). The instance is poisoned.
    #[error("plugin {plugin} trapped: {message}")]
    Trap { plugin: String, message: String },

    /// One call ran longer than the per-call deadline. The instance is poisoned.
    #[error("plugin {plugin} exceeded its time limit of {limit:?} per call")]
    Timeout { plugin: String, limit: Duration },

    /// The plugin tried to grow its memory past the cap. The instance is poisoned.
    #[error("plugin {plugin} exceeded its memory limit of {limit_bytes} bytes")]
    MemoryExceeded { plugin: String, limit_bytes: u64 },

    /// The session instance faulted earlier; it accepts no more calls.
    #[error("plugin {plugin} instance is unusable after an earlier fault: {cause}")]
    Poisoned { plugin: String, cause: String },

    /// The component was built for a contract version this host cannot run.
    #[error("plugin {plugin} was built for bridle:harness@{found}; this host supports {supported}")]
    UnsupportedContract { plugin: String, found: String, supported: String },

    /// The component exports no `bridle:harness/adapter` at all.
    #[error(
        "plugin {plugin} is not a Bridle harness plugin: it exports no bridle:harness/adapter interface (exports: {exports})"
    )]
    NotAHarness { plugin: String, exports: String },

    /// A `builtin:` name with no embedded component (unknown, or not built
    /// into this binary).
    #[error("builtin harness {name} is not available: {reason}")]
    BuiltinUnavailable { name: String, reason: String },

    /// No plugin is configured under this engine name.
    #[error("no harness plugin is configured for engine {engine:?} (configured: {known})")]
    UnknownEngine { engine: String, known: String },

    /// Reading, compiling or linking the component failed.
    #[error("failed to load plugin {plugin}: {message}")]
    Load { plugin: String, message: String },

    /// Creating an instance for a new session failed (e.g. the instance pool
    /// is full: too many live sessions).
    #[error("failed to instantiate plugin {plugin}: {message}")]
    Instantiate { plugin: String, message: String },

    /// The runtime itself could not start (engine configuration).
    #[error("harness runtime: {0}")]
    Runtime(String),
}

impl HarnessError {
    /// True for faults that poison the instance (trap, time-out, memory).
    /// The session runner turns these into `session.error` and drops the
    /// session's plugin instance.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            HarnessError::Trap { .. }
                | HarnessError::Timeout { .. }
                | HarnessError::MemoryExceeded { .. }
                | HarnessError::Poisoned { .. }
        )
    }

    /// The plugin (engine name or file) this error is about, if any.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            HarnessError::Plugin { plugin, .. }
            | HarnessError::Trap { plugin, .. }
            | HarnessError::Timeout { plugin, .. }
            | HarnessError::MemoryExceeded { plugin, .. }
            | HarnessError::Poisoned { plugin, .. }
            | HarnessError::UnsupportedContract { plugin, .. }
            | HarnessError::NotAHarness { plugin, .. }
            | HarnessError::Load { plugin, .. }
            | HarnessError::Instantiate { plugin, .. } => Some(plugin),
            HarnessError::BuiltinUnavailable { name, .. } => Some(name),
            HarnessError::UnknownEngine { engine, .. } => Some(engine),
            HarnessError::Runtime(_) => None,
        }
    }
}
