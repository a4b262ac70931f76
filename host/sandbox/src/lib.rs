//! Bridle's sandboxes.
//!
//! * [`SandboxDriver`] / [`Sandbox`] / [`ExecChild`]: the driver abstraction.
//! * [`LocalDriver`]: one machine, bubblewrap, one unprivileged host uid per
//!   sandbox, cgroups or rlimits, seccomp, an in-sandbox init ([`init`]).
//! * [`GvisorDriver`]: the same sandboxes on gVisor's user-space kernel
//!   (`runsc`), one `runsc exec` per process.
//! * [`egress`]: the host-side gateway (HTTP proxy with the environment's
//!   network policy, and the model route that adds the vault credential).
//! * [`tools`]: sandbox-as-tool (bash/read/write/edit/glob/grep).
//! * [`metrics`]: claim and egress metrics (the `metrics` facade).

mod claim;
pub mod driver;
pub mod egress;
pub mod error;
pub mod gvisor;
mod idle;
pub mod init;
mod live;
pub mod local;
mod lockfile;
pub mod metrics;
pub mod proto;
mod resources;
pub mod seccomp;
mod settings;
pub mod spec;
pub mod tools;
pub mod uids;
mod workspace;

pub use driver::{BoxedRead, BoxedWrite, BusyGuard, ExecChild, ExecControl, Output, Sandbox, SandboxDriver};
pub use error::{Result, SandboxError};
pub use gvisor::{GvisorConfig, GvisorDriver};
pub use local::{Doctor, LocalConfig, LocalDriver, MIN_WORKSPACE_BYTES, PoolConfig};
pub use spec::{
    EgressPolicy, EgressStats, EnvSecret, ExecRequest, ExitStatus, HeaderRule, Limit, Limits, LlmRoute, McpAuthError,
    McpCredential, McpFailure, McpFailureKind, McpRoute, ModelEndpoint, NamedLlmRoute, Networking, SandboxSpec, Secret,
    SecretHosts,
};
