//! The MCP route of a session whose runtime is resident (outside every
//! sandbox, so no sandbox gateway sits in its way): a gateway of its own that
//! serves only the MCP route, on a unix socket that only the resident
//! runtime's uid may open. It is the sandbox gateway's route code
//! (`bridle_sandbox::egress::mcp_route`): the vault credential added
//! host-side, the environment's networking (`allow_mcp_servers`) and the
//! address policy applied, failures reported to the runner as the same
//! `session.error`s.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use bridle_sandbox::SandboxSpec;
use bridle_sandbox::egress::{Gateway, GatewayConfig, Hub};

use crate::config::EgressConfig;

/// The base of the MCP server URLs the resident runtime is given
/// (`<base>/mcp/<name>`). Never dialled: its client connects to the socket.
pub const ROUTE_BASE: &str = "http://bridle-mcp.invalid";

/// The hub of this node's resident MCP routes (limits, address policy,
/// clients), made on first use.
#[derive(Default)]
pub(crate) struct ResidentHub(OnceLock<Hub>);

impl ResidentHub {
    fn get(&self, egress: &EgressConfig) -> anyhow::Result<Hub> {
        if let Some(h) = self.0.get() {
            return Ok(h.clone());
        }
        let hub = Hub::new(&egress.settings()?)?;
        // Another session may have made one meanwhile: either serves.
        Ok(self.0.get_or_init(|| hub).clone())
    }
}

/// A session's resident MCP route; closed when dropped.
pub(crate) struct ResidentMcp {
    _gateway: Gateway,
    socket: PathBuf,
}

impl ResidentMcp {
    /// Open the route for `spec.mcp` (its credentials, networking and failure
    /// channel), reachable by `uid` only (the resident runtime's, when the
    /// server runs as root). `None` when the agent declares no MCP server.
    pub fn open(
        hub: &ResidentHub,
        egress: &EgressConfig,
        spec: &SandboxSpec,
        uid: Option<u32>,
    ) -> anyhow::Result<Option<ResidentMcp>> {
        if spec.mcp.is_empty() {
            return Ok(None);
        }
        let dir = std::env::temp_dir().join(format!("bridle-mcp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // Others may pass through to their own socket, never list the directory.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("chmod {}", dir.display()))?;
        // One per runtime start: a release of the session's previous runtime
        // removes its own socket, never this one.
        let socket = dir.join(format!("{}-{}.sock", spec.session_id, ulid::Ulid::new()));
        let gateway = Gateway::bind_mcp_only(
            &socket,
            GatewayConfig {
                sandbox_id: format!("resident-{}", spec.session_id),
                session_id: spec.session_id.clone(),
                policy: spec.egress.clone(),
                llm: None,
                git: None,
                relay_port: 0,
                hub: hub.get(egress).context("the resident MCP route's gateway")?,
                mcp: spec.mcp.clone(),
                mcp_failures: spec.mcp_failures.clone(),
                secrets: Vec::new(),
            },
        )?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&socket, Some(uid), Some(uid)).context("chown the resident MCP socket")?;
        }
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .context("chmod the resident MCP socket")?;
        Ok(Some(ResidentMcp { _gateway: gateway, socket }))
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for ResidentMcp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}
