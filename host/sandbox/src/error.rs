//! The crate boundary's error type.

/// Errors of the sandbox drivers, the gateway and the tool executor.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A prerequisite of the driver is missing; the message says what and how to
    /// install it.
    #[error("sandbox driver unavailable: {0}")]
    Unavailable(String),
    /// The spec or request is invalid.
    #[error("invalid sandbox request: {0}")]
    Invalid(String),
    /// The sandbox was stopped or released (possibly after idling): claim again.
    #[error("sandbox {0} is no longer running (stopped, released or idle-released)")]
    Gone(String),
    /// Every sandbox uid of the configured range is in use.
    #[error("no free sandbox uid: all {0} uids of the configured range are in use on this host")]
    Exhausted(usize),
    /// Anything else, with context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
