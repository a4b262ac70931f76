//! What a sandbox is asked to be: the spec handed to [`crate::SandboxDriver::claim`],
//! the egress policy, the model route with its credential, resource limits, and
//! the request/outcome types of one exec.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A secret string (the vault token). `Debug`/`Display` never print it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself. Only the host-side egress gateway calls this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// `environment.config.networking` of the Managed Agents API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Networking {
    Unrestricted,
    Limited {
        #[serde(default)]
        allowed_hosts: Vec<String>,
        #[serde(default)]
        allow_package_managers: bool,
        #[serde(default)]
        allow_mcp_servers: bool,
    },
}

impl Default for Networking {
    fn default() -> Self {
        Networking::Limited { allowed_hosts: Vec::new(), allow_package_managers: false, allow_mcp_servers: false }
    }
}

/// The egress policy of one sandbox: the environment's networking plus the hosts
/// of the agent's MCP server URLs (used when `allow_mcp_servers` is true).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressPolicy {
    pub networking: Networking,
    /// Hostnames (or URLs; the host is taken) of the agent's MCP servers.
    #[serde(default)]
    pub mcp_server_hosts: Vec<String>,
    /// Package registry hosts (exact names or `*.` wildcards) that
    /// `allow_package_managers` opens: the operator's list, from config.
    #[serde(default)]
    pub package_manager_hosts: Vec<String>,
}

/// A header the gateway adds on the model route: `value_template` with `{token}`
/// replaced by the vault token (from the harness plugin's credential plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRule {
    pub header: String,
    pub value_template: String,
}

/// The session's model endpoint as seen by the host-side gateway.
#[derive(Debug, Clone)]
pub struct LlmRoute {
    /// Upstream base URL (`https://…`, or `http://` for loopback test upstreams).
    /// The sandbox reaches it as [`crate::Sandbox::llm_base_url_inside`]; a request to
    /// `<inside>/v1/messages` goes to `<llm_base_url>/v1/messages`.
    pub base_url: String,
    pub header_rules: Vec<HeaderRule>,
    pub token: Secret,
    /// The only requests the route forwards (method and path relative to
    /// `base_url`, e.g. `POST /v1/messages`); anything else is a 403.
    pub allowed: Vec<ModelEndpoint>,
    /// Further model routes of the same sandbox, each with its own upstream,
    /// credential and endpoints (a coordinator's children on other
    /// harnesses). The sandbox reaches one as
    /// [`crate::Sandbox::llm_route_url_inside`]; their own `extra` is not
    /// served. Carried on the primary route so every driver's gateway gets
    /// them with it.
    pub extra: Vec<NamedLlmRoute>,
}

/// An extra model route ([`LlmRoute::extra`]), served under
/// [`crate::egress::extra_llm_prefix`]`(name)`.
#[derive(Debug, Clone)]
pub struct NamedLlmRoute {
    /// `[a-z0-9_-]{1,32}` (e.g. the harness's name); unique per sandbox.
    pub name: String,
    pub route: LlmRoute,
}

impl NamedLlmRoute {
    /// Whether `name` can name an extra route.
    pub fn valid_name(name: &str) -> bool {
        (1..=32).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    }
}

/// One model API endpoint the model route forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEndpoint {
    pub method: http::Method,
    /// Relative to the route's base URL path, starting with `/`.
    pub path: String,
}

impl ModelEndpoint {
    pub fn post(path: impl Into<String>) -> Self {
        Self { method: http::Method::POST, path: path.into() }
    }
    pub fn get(path: impl Into<String>) -> Self {
        Self { method: http::Method::GET, path: path.into() }
    }
}

/// One MCP server the agent declares, as the gateway's MCP route serves it:
/// `/mcp/<name>` on the relay port goes to `url` (and `/mcp/<name>/<rest>`
/// to `url/<rest>`), with the credential bound to that URL, if any.
#[derive(Clone)]
pub struct McpRoute {
    /// `[A-Za-z0-9_-]+` (checked at agent create).
    pub name: String,
    /// The declared upstream URL (`http(s)://`).
    pub url: String,
    pub credential: Option<Arc<dyn McpCredential>>,
}

impl fmt::Debug for McpRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpRoute")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("credential", &self.credential.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The vault credential of one MCP server, held host-side. The gateway
/// asks it for the token to send and, when the server rejects one, for a
/// fresh one (OAuth refresh); static tokens cannot be refreshed.
#[async_trait]
pub trait McpCredential: Send + Sync {
    /// The access token to send now (refreshed first when it has expired).
    async fn token(&self) -> Result<Secret, McpAuthError>;
    /// The server answered 401 to `rejected`: a new token, or why none.
    async fn refresh(&self, rejected: &Secret) -> Result<Secret, McpAuthError>;
}

/// Why no usable token could be had, in words for `session.error` (never
/// holding a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct McpAuthError(pub String);

/// What went wrong on the MCP route, as the session reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpFailureKind {
    /// The server rejected the credential, or no fresh token could be had
    /// (`mcp_authentication_failed_error`).
    Authentication,
    /// The server could not be reached, or the network policy refuses it
    /// (`mcp_connection_failed_error`).
    Connection,
}

impl McpFailureKind {
    /// The Managed Agents `session.error` type.
    pub fn error_type(self) -> &'static str {
        match self {
            McpFailureKind::Authentication => "mcp_authentication_failed_error",
            McpFailureKind::Connection => "mcp_connection_failed_error",
        }
    }
}

/// A failure of one MCP server's route, sent to the session's runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpFailure {
    pub server: String,
    pub kind: McpFailureKind,
    /// Words for the client (no secret, no upstream response body).
    pub message: String,
}

/// An environment-variable secret (a vault credential of type
/// `environment_variable`): every process of the sandbox sees `name` holding
/// `placeholder`; the egress gateway puts `value` in its place in outbound
/// requests to `hosts`, in header values and/or the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSecret {
    /// The environment variable's name.
    pub name: String,
    /// What the sandbox sees instead of the secret.
    pub placeholder: String,
    pub value: Secret,
    /// Substitute in request header values.
    pub header: bool,
    /// Substitute in request bodies.
    pub body: bool,
    pub hosts: SecretHosts,
}

/// The hosts a secret is substituted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretHosts {
    /// Every host the environment's network policy lets the sandbox reach.
    Any,
    /// Exact names or IPv4 addresses, or `*.example.com` (subdomains only).
    Only(Vec<String>),
}

/// Resource limits of one sandbox. `None` leaves a limit off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Memory of the whole sandbox (cgroup), or per-process address space
    /// (`RLIMIT_AS`) where no memory cgroup is available.
    pub memory_bytes: Option<u64>,
    /// Processes/threads of the whole sandbox (pids cgroup and `RLIMIT_NPROC` of
    /// the sandbox's own host uid).
    pub max_processes: Option<u64>,
    /// CPU seconds per process (`RLIMIT_CPU`).
    pub cpu_seconds: Option<u64>,
    /// Largest file a process may write (`RLIMIT_FSIZE`).
    pub file_size_bytes: Option<u64>,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Size of the private `/dev/shm` tmpfs, and of `/tmp` when there is no
    /// workspace quota (with one, `/tmp` is on the workspace's volume and
    /// counts against its quota).
    pub tmp_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: Some(4 << 30),
            max_processes: Some(1024),
            cpu_seconds: Some(4 * 3600),
            file_size_bytes: Some(8 << 30),
            open_files: Some(8192),
            tmp_bytes: Some(1 << 30),
        }
    }
}

/// What to create. The workspace of `session_id` is created on first claim and
/// kept (across stop, release, idle release and later claims) until
/// [`crate::SandboxDriver::delete_workspace`].
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// `[A-Za-z0-9_-]{1,128}`; names the workspace.
    pub session_id: String,
    pub egress: EgressPolicy,
    /// The model route; `None` when the runtime reaches no model from inside
    /// (sandbox-as-tool).
    pub llm: Option<LlmRoute>,
    pub limits: Limits,
    /// The size of the session's workspace volume (`/workspace` and `/tmp`
    /// together) if this claim creates it, i.e. on the session's first claim;
    /// `None` takes the driver's configured quota. A workspace keeps the size
    /// it was made with. Needs the driver's quota on
    /// ([`crate::LocalConfig::workspace_quota`]) and at least
    /// [`crate::MIN_WORKSPACE_BYTES`].
    pub workspace_bytes: Option<u64>,
    /// Extra environment for every process of the sandbox (placeholders such as
    /// `ANTHROPIC_API_KEY=placeholder`, never the real token).
    pub env: Vec<(String, String)>,
    /// The session's repositories, served by the gateway's git route.
    pub git: Option<crate::egress::git_route::GitRoutes>,
    /// The agent's MCP servers, served on the gateway's MCP route.
    pub mcp: Vec<McpRoute>,
    /// Where the gateway reports MCP route failures (the session's runner).
    pub mcp_failures: Option<tokio::sync::mpsc::UnboundedSender<McpFailure>>,
    /// Environment-variable secrets: their placeholders join `env`, the
    /// gateway substitutes them (see [`EnvSecret`]).
    pub secrets: Vec<EnvSecret>,
}

impl SandboxSpec {
    pub fn new(session_id: impl Into<String>) -> Self {
        Self {
            session_id: session_id.into(),
            egress: EgressPolicy::default(),
            llm: None,
            limits: Limits::default(),
            workspace_bytes: None,
            env: Vec::new(),
            git: None,
            mcp: Vec::new(),
            mcp_failures: None,
            secrets: Vec::new(),
        }
    }
}

/// One process to start inside a sandbox, stdio piped.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// `argv[0]` is looked up in the sandbox's `PATH`.
    pub argv: Vec<String>,
    /// Added to (and overriding) the sandbox environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox; default `/workspace`.
    pub cwd: Option<String>,
    /// A resident process (a runtime waiting for its next turn, a persistent
    /// shell): it does not keep the sandbox from idling out; its stdio still
    /// counts as activity.
    pub resident: bool,
}

impl ExecRequest {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { argv: argv.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    /// `sh -c <script>`.
    pub fn shell(script: impl Into<String>) -> Self {
        Self::new(["/bin/sh".to_string(), "-c".to_string(), script.into()])
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    pub fn resident(mut self, resident: bool) -> Self {
        self.resident = resident;
        self
    }
}

/// Which limit stopped a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Memory,
    Processes,
    CpuTime,
    FileSize,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Memory => "memory",
            Limit::Processes => "process count",
            Limit::CpuTime => "CPU time",
            Limit::FileSize => "file size",
        })
    }
}

/// How an exec ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExitStatus {
    /// The process exited by itself.
    Exited { code: i32 },
    /// Killed by a signal that no limit explains (including [`crate::ExecChild::kill`]).
    Signaled { signal: i32 },
    /// Stopped by a resource limit: the runner reports this as `session.error`.
    LimitExceeded { limit: Limit, signal: Option<i32> },
    /// The sandbox was stopped, released (also after idling) or its init died.
    SandboxGone,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Exited { code: 0 })
    }
    /// The exit code, `128 + signal` for signals (shell convention), `None` when
    /// the sandbox went away.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited { code } => Some(*code),
            ExitStatus::Signaled { signal } => Some(128 + signal),
            ExitStatus::LimitExceeded { signal, .. } => signal.map(|s| 128 + s),
            ExitStatus::SandboxGone => None,
        }
    }
    pub fn limit(&self) -> Option<Limit> {
        match self {
            ExitStatus::LimitExceeded { limit, .. } => Some(*limit),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited { code } => write!(f, "exited with code {code}"),
            ExitStatus::Signaled { signal } => write!(f, "killed by signal {signal}"),
            ExitStatus::LimitExceeded { limit, .. } => {
                write!(f, "stopped: sandbox {limit} limit exceeded")
            }
            ExitStatus::SandboxGone => f.write_str("sandbox stopped"),
        }
    }
}

/// Per-sandbox egress counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EgressStats {
    pub requests_allowed: u64,
    pub requests_denied: u64,
    pub model_requests: u64,
    /// Bytes from the sandbox to upstreams (request bodies, tunnel upload).
    pub bytes_sent: u64,
    /// Bytes from upstreams to the sandbox.
    pub bytes_received: u64,
}
