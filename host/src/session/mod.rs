//! Live sessions: the state machine of one session and the checks on what
//! its harness plugin emits. The runner that drives a runtime through a
//! plugin and a sandbox builds on these.

pub mod status;
pub mod validate;
