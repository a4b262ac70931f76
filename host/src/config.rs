//! Server settings: embedded defaults, then an optional TOML file, then
//! `BRIDLE_*` environment variables, then command-line flags (each layer
//! overrides the one before).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::model::pricing::{ModelPrice, Price};

/// The names of the built-in harnesses, known even before any plugin config.
pub const BUILTIN_HARNESSES: [&str; 3] = ["claude", "codex", "openai-agents"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Where the server keeps its database (SQLite), secret key, node id and
    /// plugin cache (workspaces are in `sessions.sandbox_dir`). Created 0700
    /// on first start.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: SQLite in the data dir.
    pub database_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Seconds between SSE heartbeats (`event: ping`).
    pub sse_heartbeat_secs: u64,
    /// Base64 of a 32-byte key for vault secrets at rest. Default: generated
    /// on first start into `<data_dir>/secret.key`.
    pub secret_key: Option<String>,
    /// The model endpoint used by sessions that attach no LLM vault.
    pub default_llm: DefaultLlm,
    /// Harness plugins by engine name.
    pub harnesses: BTreeMap<String, HarnessConfig>,
    /// What every harness plugin instance may use.
    pub plugins: PluginsConfig,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
    /// Requests per second allowed per API key (bursts up to one second's
    /// worth); 0 turns rate limiting off.
    pub rate_limit_per_second: u32,
    /// Where the agent runtimes (Claude Code, codex, the openai-agents
    /// runtime) are installed by `bridle runtimes install`. Kept outside the
    /// data dir: sandboxes mount it read-only.
    pub runtimes_dir: PathBuf,
    /// Live-session settings.
    pub sessions: SessionsConfig,
    /// Install missing prerequisites at start-up: bubblewrap (with apt-get,
    /// when running as root) and the agent runtimes (from the npm and PyPI
    /// registries, in the background).
    pub auto_install: bool,
    /// The Prometheus scrape endpoint.
    pub metrics: MetricsConfig,
    /// The sandboxes' egress gateway: connection limits and the internal
    /// destinations sandboxes may reach.
    pub egress: EgressConfig,
    /// The Files API.
    pub files: FilesConfig,
    /// List prices by model id (`[pricing."claude-opus-4-5"]`), in USD per
    /// million tokens: what session budgets are measured in. A session may
    /// have a budget only when its agent's model is priced here.
    pub pricing: BTreeMap<String, ModelPrice>,
    /// Self-hosted environments' work queue.
    pub self_hosted: SelfHostedConfig,
    /// What environment package layers are built with: toolchains and mirrors.
    pub packages: PackagesConfig,
}

/// `[packages]`: the toolchains and registries environment package layers are built with
/// (Bridle ships no registry host names: a manager without one is refused, naming its key).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PackagesConfig {
    /// A Rust toolchain directory (`bin/cargo`, `bin/rustc`), bound read-only into layer builds.
    /// Default: the server's own (`rustup which cargo`, else `cargo` on `PATH`).
    pub cargo_toolchain: Option<PathBuf>,
    /// The Go module proxy (`GOPROXY`) `go install` fetches from; go packages need it.
    pub goproxy: Option<String>,
    /// The Go checksum database (`GOSUMDB`); default `off` (a mirror is trusted as is).
    pub gosumdb: Option<String>,
    /// The gem source `gem install` fetches from; gem packages need it.
    pub gem_source: Option<String>,
    /// Seconds apt's package lists are reused between layer builds before a build runs
    /// `apt-get update` again (`0`: every build updates).
    pub apt_lists_max_age_secs: u64,
}

impl Default for PackagesConfig {
    fn default() -> Self {
        PackagesConfig {
            cargo_toolchain: None,
            goproxy: None,
            gosumdb: None,
            gem_source: None,
            // Debian's mirrors publish a few times a day: an hour-old list rarely names a `.deb`
            // that is gone (and a build whose cached lists fail updates them and tries again).
            apt_lists_max_age_secs: 3600,
        }
    }
}

/// `[self_hosted]`: the leases of self-hosted environments' work items.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfHostedConfig {
    /// The lease a poll grants, and a heartbeat extends by unless it asks
    /// for another (`desired_ttl_seconds`): a worker silent this long loses
    /// its item to the queue.
    pub lease_secs: u64,
    /// The longest lease a heartbeat may ask for.
    pub max_lease_secs: u64,
    /// How long a tool call waits for a worker's `user.tool_result` before
    /// it ends with an error result: a worker without the tool never
    /// answers (the SDK's worker skips a tool it lacks). Longer than the
    /// SDK runner's own tool timeout (325 s), which answers with an error.
    pub tool_timeout_secs: u64,
}

impl Default for SelfHostedConfig {
    fn default() -> Self {
        // The SDK's worker assumes 300 s until its first heartbeat answers.
        SelfHostedConfig { lease_secs: 300, max_lease_secs: 3600, tool_timeout_secs: 600 }
    }
}

/// `[files]`: the Files API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Largest file accepted by `POST /v1/files`, in bytes; larger uploads
    /// are refused with 413 and nothing is stored. This limit, not
    /// `max_body_bytes`, bounds a file upload's body.
    pub max_bytes: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        // The Anthropic API's own limit per file.
        FilesConfig { max_bytes: 500 * 1024 * 1024 }
    }
}

/// `[egress]`: limits of the per-sandbox egress gateways (HTTP proxy and
/// model route) and the operator's internal destinations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Internal destinations (non-global addresses, or the host's own)
    /// sandboxes may reach, in `unrestricted` and `limited` networking
    /// alike, and the server itself on a session's behalf (repository
    /// clones, MCP OAuth token endpoints, the resident runtime's MCP route): `host`, `host:port`, `ip`, `ip:port` or `[ipv6]:port`. Hosts
    /// match the name a sandbox asks for; addresses match after resolution.
    pub allow_internal: Vec<String>,
    /// PEM files of CA certificates the gateway trusts, besides the system
    /// roots, when it verifies the upstreams of connections it intercepts
    /// (hosts where an environment-variable secret is due): an internal CA.
    pub upstream_ca_files: Vec<PathBuf>,
    /// Connections one sandbox may hold open through the gateway at once.
    pub max_connections_per_sandbox: u32,
    /// New connections per second one sandbox may open (sustained).
    pub connections_per_second: u32,
    /// Connections a sandbox may open at once before the rate applies.
    pub connection_burst: u32,
    /// Seconds a client has to send a request's headers.
    pub header_timeout_secs: u64,
    /// Seconds without a byte either way after which a gateway connection
    /// (or `CONNECT` tunnel) is closed.
    pub idle_timeout_secs: u64,
    /// Connections all sandboxes together may hold; default: a quarter of
    /// the process's open-file limit (each costs two descriptors), leaving
    /// the other half to the API and everything else.
    pub max_connections: Option<u32>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        let l = bridle_sandbox::egress::GatewayLimits::default();
        EgressConfig {
            allow_internal: Vec::new(),
            upstream_ca_files: Vec::new(),
            max_connections_per_sandbox: l.max_connections_per_sandbox,
            connections_per_second: l.connections_per_second,
            connection_burst: l.connection_burst,
            header_timeout_secs: l.header_timeout.as_secs(),
            idle_timeout_secs: l.idle_timeout.as_secs(),
            max_connections: l.max_connections,
        }
    }
}

impl EgressConfig {
    fn allow_internal(&self) -> anyhow::Result<Vec<bridle_sandbox::egress::InternalTarget>> {
        self.allow_internal
            .iter()
            .enumerate()
            .map(|(i, raw)| raw.parse().map_err(|e: String| anyhow::anyhow!("egress.allow_internal[{i}]: {e}")))
            .collect()
    }

    /// The address policy of the connections the server makes itself for a
    /// session (repository clones, MCP OAuth token endpoints, the resident
    /// runtime's MCP route): the gateway's, with the operator's
    /// `allow_internal`. Entries are checked at startup; should they not
    /// parse here, nothing internal is reachable.
    pub fn address_policy(&self) -> bridle_sandbox::egress::policy::AddressPolicy {
        let allow_internal = self.allow_internal().unwrap_or_else(|e| {
            tracing::error!(
                error = format!("{e:#}"),
                "egress.allow_internal unreadable; nothing internal is reachable"
            );
            Vec::new()
        });
        bridle_sandbox::egress::policy::AddressPolicy::new(allow_internal, std::sync::Arc::default())
    }

    /// The sandbox driver's settings; errors name the setting.
    pub fn settings(&self) -> anyhow::Result<bridle_sandbox::egress::EgressSettings> {
        for (name, v) in [
            ("max_connections_per_sandbox", u64::from(self.max_connections_per_sandbox)),
            ("connections_per_second", u64::from(self.connections_per_second)),
            ("connection_burst", u64::from(self.connection_burst)),
            ("header_timeout_secs", self.header_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
        ] {
            anyhow::ensure!(v >= 1, "egress.{name} must be at least 1");
        }
        let allow_internal = self.allow_internal()?;
        let upstream_roots = self
            .upstream_ca_files
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let key = format!("egress.upstream_ca_files[{i}]");
                let pem =
                    std::fs::read_to_string(path).with_context(|| format!("{key}: reading {}", path.display()))?;
                bridle_sandbox::egress::tls::parse_pem_certs(&format!("{key} ({})", path.display()), &pem)?;
                Ok(pem)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(bridle_sandbox::egress::EgressSettings {
            limits: bridle_sandbox::egress::GatewayLimits {
                max_connections_per_sandbox: self.max_connections_per_sandbox,
                connections_per_second: self.connections_per_second,
                connection_burst: self.connection_burst,
                header_timeout: Duration::from_secs(self.header_timeout_secs),
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                max_connections: self.max_connections,
            },
            allow_internal,
            // The installation's CA is added by the server (it lives sealed
            // in the data dir, see `egress_ca`).
            ca: None,
            upstream_roots,
        })
    }
}

/// `/metrics` is served without an API key, like `/healthz`: it carries no
/// resource ids or contents. Turn it off, or move it to a path a reverse
/// proxy keeps internal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Record metrics and serve them.
    pub enabled: bool,
    /// Where they are served.
    pub path: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, path: "/metrics".into() }
    }
}

/// `sessions.sandbox_driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxDriverKind {
    Bubblewrap,
    Gvisor,
}

impl SandboxDriverKind {
    pub const ALL: [SandboxDriverKind; 2] = [SandboxDriverKind::Bubblewrap, SandboxDriverKind::Gvisor];

    /// The name in config and in the `bridle.sandbox_driver` environment key.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxDriverKind::Bubblewrap => "bubblewrap",
            SandboxDriverKind::Gvisor => "gvisor",
        }
    }

    pub fn parse(name: &str) -> Option<SandboxDriverKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for SandboxDriverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// Run sessions on this node. `false` makes an API-only node: events are
    /// stored and streamed, but no runtime takes them.
    pub enabled: bool,
    /// Stop an agent runtime after this many seconds without a turn; the
    /// next message resumes it with its own resume mechanism.
    pub runtime_idle_secs: u64,
    /// Seconds a runtime may take to end its turn after `user.interrupt`.
    pub interrupt_grace_secs: u64,
    /// First host uid of the range sandboxes run as (one uid per sandbox).
    pub sandbox_uid_base: u32,
    /// How many sandboxes may run at once.
    pub max_sandboxes: u32,
    /// Release a sandbox idle this many seconds.
    pub sandbox_idle_secs: u64,
    /// Sandboxes kept booted ahead of demand (the warm pool): a claim takes
    /// one and only mounts the session's workspace into it. `0` (the
    /// default) turns the pool off. Needs root; pooled sandboxes count
    /// against `max_sandboxes`, and each serves one session only.
    pub sandbox_pool_size: u32,
    /// Empty the warm pool after this many seconds without a claim; it
    /// refills at the next claim.
    pub sandbox_pool_idle_secs: u64,
    /// Bytes a session's workspace and `/tmp` may hold together (an ext4
    /// image per workspace, loop-mounted: needs root and loop devices).
    /// `0` runs without a disk quota; otherwise a host that cannot enforce it
    /// refuses to start sandboxes. Applies to workspaces created afterwards.
    pub sandbox_disk_bytes: u64,
    /// The largest workspace quota an environment may ask for with its
    /// `bridle.sandbox_disk_bytes` metadata key (at least 16 MiB). `0`:
    /// environments may not set one (the key is refused). Needs
    /// `sandbox_disk_bytes` on.
    pub sandbox_disk_bytes_max: u64,
    /// CPU cores each sandbox may use (cgroup CPU bandwidth; fractions
    /// allowed). `0` leaves CPU unlimited.
    pub sandbox_cpus: f64,
    /// Where sandboxes keep their workspaces and run state. Every parent
    /// must be traversable by other users (the sandbox uids), so it lives
    /// outside the 0700 data dir.
    pub sandbox_dir: PathBuf,
    /// Which sandbox driver runs every session: `bubblewrap` (namespaces on
    /// the host kernel, the default) or `gvisor` (gVisor's user-space kernel
    /// through `runsc`; needs root). Either keeps a warm pool
    /// (`sandbox_pool_size`).
    pub sandbox_driver: SandboxDriverKind,
    /// The drivers an environment may choose for its sessions with its
    /// `bridle.sandbox_driver` metadata key (empty, the default: the key is
    /// refused and every session runs on `sandbox_driver`). The server
    /// starts each listed driver beside `sandbox_driver`; the warm pool is
    /// `sandbox_driver`'s.
    pub sandbox_drivers_allowed: Vec<SandboxDriverKind>,
    /// gVisor's platform (`systrap`, `ptrace` or `kvm`); default: the best
    /// the installed `runsc` has of `systrap` and `ptrace`.
    pub gvisor_platform: Option<String>,
    /// Seconds a node's ownership of a live session lasts unless renewed;
    /// after a node dies, another adopts its sessions within about this long.
    pub lease_secs: u64,
    /// Seconds between lease renewals (and scans for sessions to adopt);
    /// well under `lease_secs`.
    pub lease_renew_secs: u64,
    /// This node's name in session leases. Default: generated once into
    /// `<data_dir>/node-id`, so a restarted node takes its sessions back at
    /// once. Must differ between nodes that run at the same time.
    pub node_name: Option<String>,
    /// Package registry hosts (exact names or `*.` wildcards) a `limited`
    /// environment with `allow_package_managers: true` may reach, e.g. the
    /// Debian, PyPI, npm and crates registries or the operator's mirrors.
    /// Empty by default: Bridle ships no list of third-party hosts.
    pub package_manager_hosts: Vec<String>,
    /// Seconds one build of an environment's package layer may take.
    pub package_build_timeout_secs: u64,
    /// Bytes one package layer may hold.
    pub package_layer_max_bytes: u64,
    /// Evict the least recently used package layers beyond this many bytes in all (`0`: no
    /// size limit). Evicted layers are rebuilt by the next session that needs them.
    pub package_layers_max_bytes: u64,
    /// Evict package layers unused for this many seconds (`0`: never by age).
    pub package_layer_max_age_secs: u64,
    /// Delegated threads one session may create (`0`: no limit); past it a
    /// coordinator's delegation is refused with a `thread_limit_error`.
    pub threads_per_session: u32,
    /// Delegated-thread runtimes this node runs at once (`0`: no limit);
    /// past it a delegation is refused with a `thread_limit_error`.
    pub thread_runtimes_per_node: u32,
}

impl SessionsConfig {
    /// The drivers this server runs: `sandbox_driver` first, then the
    /// others environments may choose.
    pub fn drivers(&self) -> Vec<SandboxDriverKind> {
        let mut v = vec![self.sandbox_driver];
        for k in &self.sandbox_drivers_allowed {
            if !v.contains(k) {
                v.push(*k);
            }
        }
        v
    }

    /// The workspace quota for the sandbox driver (`None`: off).
    pub fn disk_quota(&self) -> Option<u64> {
        (self.sandbox_disk_bytes > 0).then_some(self.sandbox_disk_bytes)
    }

    /// When package layers are evicted (`0` turns a limit off).
    pub fn eviction(&self) -> crate::packages::eviction::Policy {
        crate::packages::eviction::Policy {
            max_total_bytes: (self.package_layers_max_bytes > 0).then_some(self.package_layers_max_bytes),
            max_age: (self.package_layer_max_age_secs > 0)
                .then(|| Duration::from_secs(self.package_layer_max_age_secs)),
        }
    }

    /// The per-sandbox CPU limit for the sandbox driver (`None`: off).
    pub fn cpu_limit(&self) -> Option<f64> {
        (self.sandbox_cpus > 0.0).then_some(self.sandbox_cpus)
    }
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            enabled: true,
            runtime_idle_secs: 600,
            interrupt_grace_secs: 15,
            sandbox_uid_base: 600_000,
            max_sandboxes: 1000,
            sandbox_idle_secs: 900,
            sandbox_pool_size: 0,
            sandbox_pool_idle_secs: 600,
            sandbox_disk_bytes: 4 << 30,
            sandbox_disk_bytes_max: 0,
            sandbox_cpus: 1.0,
            sandbox_dir: PathBuf::from("/var/lib/bridle-sandboxes"),
            sandbox_driver: SandboxDriverKind::Bubblewrap,
            sandbox_drivers_allowed: Vec::new(),
            gvisor_platform: None,
            lease_secs: 15,
            lease_renew_secs: 5,
            node_name: None,
            package_manager_hosts: Vec::new(),
            package_build_timeout_secs: 900,
            package_layer_max_bytes: 2 << 30,
            package_layers_max_bytes: 20 << 30,
            package_layer_max_age_secs: 30 * 24 * 3600,
            threads_per_session: 25,
            thread_runtimes_per_node: 16,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultLlm {
    /// Upstream base URL, e.g. the Anthropic API or a gateway.
    pub base_url: Option<String>,
    /// The operator's credential for it (never shown to sessions).
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarnessConfig {
    /// `builtin:<name>` or a path to a `.wasm` component.
    pub plugin: String,
}

/// `[plugins]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    pub limits: PluginLimits,
}

/// `[plugins.limits]`: the operator's bounds on harness plugin instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// The most plugin instances at once (live sessions plus in-flight
    /// plugin-level calls): the size of the pre-reserved instance pool.
    pub pool_size: u32,
    /// Linear memory one instance may use, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock budget of one call into a plugin, in milliseconds.
    pub call_timeout_ms: u64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        let l = bridle_harness::Limits::default();
        PluginLimits { pool_size: l.max_instances, memory_bytes: l.memory_bytes, call_timeout_ms: l.call_timeout_ms }
    }
}

impl PluginLimits {
    /// The runtime's limits: these bounds over its defaults.
    pub fn to_limits(&self) -> bridle_harness::Limits {
        bridle_harness::Limits {
            max_instances: self.pool_size,
            memory_bytes: self.memory_bytes,
            call_timeout_ms: self.call_timeout_ms,
            ..bridle_harness::Limits::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        let harnesses = BUILTIN_HARNESSES
            .iter()
            .map(|name| {
                let plugin = format!("builtin:{name}");
                ((*name).to_owned(), HarnessConfig { plugin })
            })
            .collect();
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 4040)),
            data_dir: PathBuf::from(".bridle"),
            database_url: None,
            max_body_bytes: 32 * 1024 * 1024,
            sse_heartbeat_secs: 15,
            secret_key: None,
            default_llm: DefaultLlm::default(),
            harnesses,
            plugins: PluginsConfig::default(),
            log_format: LogFormat::Text,
            rate_limit_per_second: 0,
            runtimes_dir: PathBuf::from(".bridle-runtimes"),
            sessions: SessionsConfig::default(),
            auto_install: true,
            metrics: MetricsConfig::default(),
            egress: EgressConfig::default(),
            files: FilesConfig::default(),
            pricing: BTreeMap::new(),
            self_hosted: SelfHostedConfig::default(),
            packages: PackagesConfig::default(),
        }
    }
}

/// Top-level setting names (for picking `BRIDLE_*` variables).
const SETTINGS: [&str; 20] = [
    "pricing",
    "auto_install",
    "listen",
    "data_dir",
    "database_url",
    "max_body_bytes",
    "sse_heartbeat_secs",
    "secret_key",
    "default_llm",
    "harnesses",
    "plugins",
    "log_format",
    "rate_limit_per_second",
    "runtimes_dir",
    "sessions",
    "metrics",
    "egress",
    "files",
    "self_hosted",
    "packages",
];

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Load defaults ← `file` (if given) ← `BRIDLE_*` env ← `overrides`.
    /// Nested env keys use a double underscore: `BRIDLE_DEFAULT_LLM__BASE_URL`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            anyhow::ensure!(file.exists(), "config file {} does not exist", file.display());
            fig = fig.merge(Toml::file(file));
        }
        // Only variables naming a setting: BRIDLE_LOG, BRIDLE_CONFIG and
        // tooling variables share the prefix without being settings.
        let env = Env::prefixed("BRIDLE_")
            .filter(|k| {
                let top = k.as_str().split("__").next().unwrap_or_default();
                SETTINGS.iter().any(|s| top.eq_ignore_ascii_case(s))
            })
            .split("__");
        let fig = fig.merge(env).merge(Serialized::globals(overrides));
        let config: Config = fig.extract().context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_body_bytes >= 1024, "max_body_bytes must be at least 1024");
        anyhow::ensure!(self.sse_heartbeat_secs >= 1, "sse_heartbeat_secs must be at least 1");
        for (name, h) in &self.harnesses {
            anyhow::ensure!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "harness name `{name}` must be letters, digits, `-` or `_`"
            );
            anyhow::ensure!(!h.plugin.is_empty(), "harness `{name}` has an empty plugin source");
        }
        let pl = &self.plugins.limits;
        anyhow::ensure!(pl.pool_size >= 1, "plugins.limits.pool_size must be at least 1");
        anyhow::ensure!(pl.memory_bytes >= 1 << 20, "plugins.limits.memory_bytes must be at least 1 MiB (1048576)");
        anyhow::ensure!(pl.call_timeout_ms >= 10, "plugins.limits.call_timeout_ms must be at least 10");
        let mp = &self.metrics.path;
        anyhow::ensure!(
            mp.starts_with('/')
                && mp.len() > 1
                && !mp.contains(['{', '}', '*', '?', '#'])
                && !mp.starts_with("/v1/")
                && !["/v1", "/healthz", "/readyz"].contains(&mp.as_str()),
            "metrics.path must be an absolute path outside /v1, /healthz and /readyz, without {{ }} * ? #; got `{mp}`"
        );
        let sc = &self.sessions;
        anyhow::ensure!(
            sc.sandbox_pool_size <= sc.max_sandboxes,
            "sessions.sandbox_pool_size ({}) cannot exceed sessions.max_sandboxes ({})",
            sc.sandbox_pool_size,
            sc.max_sandboxes
        );
        anyhow::ensure!(
            sc.gvisor_platform.is_none() || sc.drivers().contains(&SandboxDriverKind::Gvisor),
            "sessions.gvisor_platform applies only with sandbox_driver = \"gvisor\" or \"gvisor\" in \
             sandbox_drivers_allowed"
        );
        anyhow::ensure!(
            sc.sandbox_pool_size == 0 || sc.sandbox_pool_idle_secs > 0,
            "sessions.sandbox_pool_idle_secs must be above 0 when the pool is on"
        );
        anyhow::ensure!(
            sc.sandbox_cpus.is_finite() && sc.sandbox_cpus >= 0.0,
            "sessions.sandbox_cpus must be a number of cores >= 0 (0: no CPU limit), got {}",
            sc.sandbox_cpus
        );
        let min = bridle_sandbox::MIN_WORKSPACE_BYTES;
        anyhow::ensure!(
            sc.sandbox_disk_bytes == 0 || sc.sandbox_disk_bytes >= min,
            "sessions.sandbox_disk_bytes must be 0 (no disk quota) or at least {min} (16 MiB), got {}",
            sc.sandbox_disk_bytes
        );
        anyhow::ensure!(
            sc.sandbox_disk_bytes_max == 0 || sc.sandbox_disk_bytes_max >= min,
            "sessions.sandbox_disk_bytes_max must be 0 (environments may not set a quota) or at least {min} \
             (16 MiB), got {}",
            sc.sandbox_disk_bytes_max
        );
        anyhow::ensure!(
            sc.sandbox_disk_bytes_max == 0 || sc.sandbox_disk_bytes > 0,
            "sessions.sandbox_disk_bytes_max lets environments set a workspace quota, which needs the quota \
             machinery on: set sessions.sandbox_disk_bytes above 0, or sandbox_disk_bytes_max to 0"
        );
        self.egress.settings()?;
        anyhow::ensure!(self.files.max_bytes >= 1, "files.max_bytes must be at least 1, got 0");
        for (model, price) in &self.pricing {
            Price::from_config(price).map_err(|e| anyhow::anyhow!("pricing.\"{model}\".{e}"))?;
        }
        if let Some(url) = &self.database_url {
            anyhow::ensure!(
                url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:"),
                "database_url must start with sqlite: or postgres:, got `{url}`"
            );
        }
        Ok(())
    }

    /// The list prices of `model`, when the operator priced it.
    pub fn price_of(&self, model: &str) -> Option<Price> {
        self.pricing.get(model).and_then(|p| Price::from_config(p).ok())
    }

    /// The effective database URL.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("bridle.db").display()),
        }
    }

    /// Engine names a session may select.
    pub fn harness_names(&self) -> Vec<String> {
        self.harnesses.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridle.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9999\"\n[harnesses.echo]\nplugin = \"/x/echo.wasm\"\n[default_llm]\nbase_url = \"http://127.0.0.1:1\"\n",
        )
        .unwrap();
        let overrides = Overrides { data_dir: Some("/tmp/d".into()), ..Default::default() };
        let c = Config::load(Some(&file), &overrides).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(c.harnesses["echo"].plugin, "/x/echo.wasm");
        assert_eq!(c.harnesses["claude"].plugin, "builtin:claude");
        assert_eq!(c.default_llm.base_url.as_deref(), Some("http://127.0.0.1:1"));
        assert!(c.database_url().starts_with("sqlite:///tmp/d/bridle.db"));
    }

    #[test]
    fn metrics_path_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridle.toml");
        for (toml, ok) in [
            ("[metrics]\npath = \"/internal/metrics\"\n", true),
            ("[metrics]\nenabled = false\n", true),
            ("[metrics]\npath = \"metrics\"\n", false),
            ("[metrics]\npath = \"/v1/metrics\"\n", false),
            ("[metrics]\npath = \"/healthz\"\n", false),
            ("[metrics]\npath = \"/m/{x}\"\n", false),
        ] {
            std::fs::write(&file, toml).unwrap();
            assert_eq!(Config::load(Some(&file), &Overrides::default()).is_ok(), ok, "{toml}");
        }
    }

    #[test]
    fn environment_disk_quota_max_is_checked() {
        assert_eq!(Config::default().sessions.sandbox_disk_bytes_max, 0, "environments may not set a quota by default");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridle.toml");
        for (toml, err) in [
            ("[sessions]\nsandbox_disk_bytes_max = 1073741824\n", None),
            ("[sessions]\nsandbox_disk_bytes_max = 16777216\n", None),
            ("[sessions]\nsandbox_disk_bytes = 0\n", None),
            ("[sessions]\nsandbox_disk_bytes_max = 16777215\n", Some("at least 16777216")),
            ("[sessions]\nsandbox_disk_bytes = 0\nsandbox_disk_bytes_max = 1073741824\n", Some("needs the quota")),
        ] {
            std::fs::write(&file, toml).unwrap();
            match (Config::load(Some(&file), &Overrides::default()), err) {
                (Ok(_), None) => {}
                (Err(e), Some(needle)) => assert!(format!("{e:#}").contains(needle), "{toml}: {e:#}"),
                (got, want) => panic!("{toml}: wanted {want:?}, got {:?}", got.map(|_| ())),
            }
        }
    }

    #[test]
    fn sandbox_pool_is_off_by_default_and_checked() {
        assert_eq!(Config::default().sessions.sandbox_pool_size, 0, "no warm sandboxes by default");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridle.toml");
        for (toml, err) in [
            ("[sessions]\nsandbox_pool_size = 4\n", None),
            ("[sessions]\nsandbox_pool_size = 4\nsandbox_pool_idle_secs = 30\n", None),
            ("[sessions]\nmax_sandboxes = 2\nsandbox_pool_size = 3\n", Some("cannot exceed sessions.max_sandboxes")),
            ("[sessions]\nsandbox_pool_size = 1\nsandbox_pool_idle_secs = 0\n", Some("above 0")),
        ] {
            std::fs::write(&file, toml).unwrap();
            match (Config::load(Some(&file), &Overrides::default()), err) {
                (Ok(c), None) => assert!(c.sessions.sandbox_pool_size > 0, "{toml}"),
                (Err(e), Some(needle)) => assert!(format!("{e:#}").contains(needle), "{toml}: {e:#}"),
                (got, want) => panic!("{toml}: wanted {want:?}, got {:?}", got.map(|_| ())),
            }
        }
    }

    #[test]
    fn sandbox_driver_is_bubblewrap_by_default_and_checked() {
        assert_eq!(Config::default().sessions.sandbox_driver, SandboxDriverKind::Bubblewrap);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridle.toml");
        for (toml, err) in [
            ("[sessions]\nsandbox_driver = \"gvisor\"\n", None),
            ("[sessions]\nsandbox_driver = \"gvisor\"\ngvisor_platform = \"ptrace\"\n", None),
            (
                "[sessions]\nsandbox_driver = \"firecracker\"\n",
                Some("found `firecracker`, expected ``bubblewrap` or `gvisor``"),
            ),
            ("[sessions]\nsandbox_driver = \"gvisor\"\nsandbox_pool_size = 2\n", None),
            ("[sessions]\ngvisor_platform = \"ptrace\"\n", Some("only with sandbox_driver = \"gvisor\"")),
            ("[sessions]\nsandbox_drivers_allowed = [\"gvisor\", \"kata\"]\n", Some("found `kata`")),
        ] {
            std::fs::write(&file, toml).unwrap();
            match (Config::load(Some(&file), &Overrides::default()), err) {
                (Ok(c), None) => assert_eq!(c.sessions.sandbox_driver, SandboxDriverKind::Gvisor, "{toml}"),
                (Err(e), Some(needle)) => assert!(format!("{e:#}").contains(needle), "{toml}: {e:#}"),
                (got, want) => panic!("{toml}: wanted {want:?}, got {:?}", got.map(|_| ())),
            }
        }
    }

    #[test]
    fn files_max_bytes_is_checked() {
        assert_eq!(Config::default().files.max_bytes, 500 << 20, "the Anthropic API's limit by default");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridle.toml");
        for (toml, want) in [
            ("[files]\nmax_bytes = 1048576\n", Ok(1 << 20)),
            ("[files]\nmax_bytes = 0\n", Err("files.max_bytes must be at least 1")),
            ("[files]\nmax_size = 10\n", Err("max_size")),
        ] {
            std::fs::write(&file, toml).unwrap();
            match (Config::load(Some(&file), &Overrides::default()), want) {
                (Ok(c), Ok(n)) => assert_eq!(c.files.max_bytes, n, "{toml}"),
                (Err(e), Err(needle)) => assert!(format!("{e:#}").contains(needle), "{toml}: {e:#}"),
                (got, want) => panic!("{toml}: wanted {want:?}, got {:?}", got.map(|c| c.files.max_bytes)),
            }
        }
    }

    #[test]
    fn pricing_is_the_operators_and_checked_at_load() {
        assert!(Config::default().pricing.is_empty(), "no built-in price list");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridle.toml");
        for (toml, want) in [
            ("[pricing.\"claude-opus-4-5\"]\ninput = \"5\"\noutput = 25\n", Ok(("claude-opus-4-5", 5_000_000))),
            ("[pricing.\"gpt-4.1\"]\ninput = 2\noutput = 8\n", Ok(("gpt-4.1", 2_000_000))),
            ("[pricing.m]\ninput = \"-1\"\noutput = 1\n", Err("pricing.\"m\".input: a price cannot be negative")),
            ("[pricing.m]\ninput = 1\n", Err("output")),
            ("[pricing.m]\ninput = 1\noutput = 1\nbatch_input = 1\n", Err("batch_input")),
        ] {
            std::fs::write(&file, toml).unwrap();
            match (Config::load(Some(&file), &Overrides::default()), want) {
                (Ok(c), Ok((model, input))) => {
                    assert_eq!(c.price_of(model).map(|p| p.input), Some(input), "{toml}");
                    assert_eq!(c.price_of("unpriced"), None);
                }
                (Err(e), Err(needle)) => assert!(format!("{e:#}").contains(needle), "{toml}: {e:#}"),
                (got, want) => panic!("{toml}: wanted {want:?}, got {:?}", got.map(|c| c.pricing)),
            }
        }
    }

    #[test]
    fn package_manager_hosts_come_from_the_operator() {
        assert!(Config::default().sessions.package_manager_hosts.is_empty(), "no built-in list of third-party hosts");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridle.toml");
        std::fs::write(&file, "[sessions]\npackage_manager_hosts = [\"pkgs.example.org\", \"*.mirror.example.org\"]\n")
            .unwrap();
        let c = Config::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.sessions.package_manager_hosts, ["pkgs.example.org", "*.mirror.example.org"]);
    }

    #[test]
    fn egress_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridle.toml");
        std::fs::write(
            &file,
            "[egress]\nallow_internal = [\"10.1.2.3:8080\", \"db.internal\"]\nmax_connections_per_sandbox = 32\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &Overrides::default()).unwrap();
        let s = c.egress.settings().unwrap();
        assert_eq!(s.allow_internal.len(), 2);
        assert_eq!(s.limits.max_connections_per_sandbox, 32);
        assert_eq!(s.limits.connections_per_second, 50, "defaults kept");
        for (toml, needle) in [
            ("[egress]\nallow_internal = [\"http://x/\"]\n", "egress.allow_internal[0]"),
            ("[egress]\nidle_timeout_secs = 0\n", "egress.idle_timeout_secs"),
            ("[egress]\nmax_conections = 1\n", "max_conections"),
            ("[egress]\nupstream_ca_files = [\"/nonexistent/ca.pem\"]\n", "egress.upstream_ca_files[0]"),
            (&format!("[egress]\nupstream_ca_files = [{:?}]\n", file.display().to_string()), "holds no certificate"),
        ] {
            std::fs::write(&file, toml).unwrap();
            let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{toml}: {err:#}");
        }
    }

    #[test]
    fn plugin_limits_reach_the_runtime_and_unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridle.toml");
        let defaults = Config::default().plugins.limits.to_limits();
        assert_eq!(defaults, bridle_harness::Limits::default());
        std::fs::write(
            &file,
            "[plugins.limits]
pool_size = 50
memory_bytes = 33554432
call_timeout_ms = 250
",
        )
        .unwrap();
        let limits = Config::load(Some(&file), &Overrides::default()).unwrap().plugins.limits.to_limits();
        assert_eq!((limits.max_instances, limits.memory_bytes, limits.call_timeout_ms), (50, 32 << 20, 250));
        for (toml, key) in [
            (
                "[plugins.limits]
pool = 5
",
                "pool",
            ),
            (
                "[plugins]
limit = {}
",
                "limit",
            ),
            (
                "[plugins.limits]
pool_size = 0
",
                "pool_size",
            ),
            (
                "[plugins.limits]
call_timeout_ms = 0
",
                "call_timeout_ms",
            ),
        ] {
            std::fs::write(&file, toml).unwrap();
            let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{toml}: {err:#}");
        }
    }

    #[test]
    fn rejects_unknown_keys_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
        assert!(Config::load(Some(&dir.path().join("none.toml")), &Overrides::default()).is_err());
    }
}
