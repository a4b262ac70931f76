//! The agent's tool policy, shared with every plugin (in the SDK).

pub use bridle_harness_sdk::policy::{Perm, ToolPolicy};
