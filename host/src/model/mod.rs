//! Wire types of the Managed Agents API (beta `managed-agents-2026-04-01`),
//! as the official SDKs define them: request params (strict: unknown fields
//! are rejected, as Anthropic's API does) and response objects.

pub mod agent_keys;
pub mod agents;
pub mod common;
pub mod environment_keys;
pub mod environments;
pub mod events;
pub mod files;
pub mod mcp;
pub mod memory;
pub mod multiagent;
pub mod previews;
pub mod pricing;
pub mod resources;
pub mod sessions;
pub mod skills;
pub mod threads;
pub mod vaults;
pub mod work;

pub use common::{Invalid, Metadata, MetadataPatch, Validate};
