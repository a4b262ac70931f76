//! What a runtime is started from, decided without I/O: the model's default
//! upstream per API shape, the sandbox's egress policy and workspace quota
//! from the session's environment, and the one builder of the typed
//! [`SessionSpec`] the plugin gets (own process in a sandbox, or the shared
//! resident runtime).

use bridle_harness::{ApiShape, SessionSpec, SpecLlm};
use serde_json::Value;

use crate::model::Metadata;
use crate::model::environment_keys::{self, DiskBounds};
use crate::model::environments::Networking;

/// The provider URL a session without a configured base URL talks to.
pub fn default_base_url(shape: ApiShape) -> &'static str {
    match shape {
        ApiShape::AnthropicMessages => "https://api.anthropic.com",
        ApiShape::OpenaiCompatible | ApiShape::OpenaiResponses => "https://api.openai.com/v1",
    }
}

/// The sandbox's egress policy: the environment's networking, the agent's
/// MCP server hosts, and the operator's package registry hosts.
pub fn egress(networking: Networking, agent: &Value, package_manager_hosts: &[String]) -> bridle_sandbox::EgressPolicy {
    bridle_sandbox::EgressPolicy {
        networking: match networking {
            Networking::Unrestricted => bridle_sandbox::Networking::Unrestricted,
            Networking::Limited { allowed_hosts, allow_mcp_servers, allow_package_managers } => {
                bridle_sandbox::Networking::Limited { allowed_hosts, allow_package_managers, allow_mcp_servers }
            }
        },
        mcp_server_hosts: agent
            .get("mcp_servers")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.get("url").and_then(Value::as_str).map(str::to_owned)).collect())
            .unwrap_or_default(),
        package_manager_hosts: package_manager_hosts.to_vec(),
    }
}

/// The workspace quota the sandbox spec asks for: the environment's
/// `bridle.sandbox_disk_bytes` within today's `sessions.sandbox_disk_bytes_max`
/// (`max`), or `None` for the server's `sessions.sandbox_disk_bytes`. It sizes
/// the workspace only when the session's first sandbox creates it. A value
/// the operator no longer allows (checked at environment create and update
/// under the bounds of then) fails the start rather than being ignored.
pub fn workspace_bytes(environment: &Metadata, max: u64) -> Result<Option<u64>, String> {
    environment_keys::disk_bytes(environment, DiskBounds::new(max))
        .map_err(|e| format!("the session's environment asks for a workspace quota this server refuses: {e}"))
}

/// Where the runtime of a session runs, for its spec.
pub enum Placement<'a> {
    /// In the session's sandbox: the workspace and model route as the
    /// sandbox sees them.
    Sandbox { workspace: &'a str, llm_base_url: String },
    /// The shared resident runtime outside any sandbox: it calls the
    /// upstream itself (the host adds the key to its `start` message).
    Resident,
}

/// The spec a plugin session starts from.
pub fn session_spec(
    session_id: &str,
    agent: &Value,
    resume: Option<&str>,
    upstream: &str,
    model: &str,
    placement: Placement<'_>,
) -> SessionSpec {
    let (workspace, base_url, resident) = match placement {
        Placement::Sandbox { workspace, llm_base_url } => (workspace.to_owned(), llm_base_url, false),
        Placement::Resident => ("/workspace".to_owned(), upstream.to_owned(), true),
    };
    SessionSpec {
        session_id: session_id.to_owned(),
        agent: agent.clone(),
        workspace,
        resume: resume.map(str::to_owned),
        llm: SpecLlm { base_url, upstream_base_url: Some(upstream.to_owned()), model: model.to_owned() },
        resident,
        skills: Vec::new(),
        remote_tools: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_serializes_as_the_plugins_read_it() {
        let agent = json!({"model": {"id": "m"}});
        let spec = session_spec(
            "sesn_1",
            &agent,
            Some("tok"),
            "https://up",
            "m",
            Placement::Sandbox { workspace: "/workspace", llm_base_url: "http://127.0.0.1:9/llm".into() },
        );
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"session_id": "sesn_1", "agent": agent, "workspace": "/workspace", "resume": "tok",
                "llm": {"base_url": "http://127.0.0.1:9/llm", "upstream_base_url": "https://up", "model": "m"},
                "resident": false, "skills": [], "remote_tools": false})
        );
        let spec = session_spec("sesn_1", &agent, None, "https://up", "m", Placement::Resident);
        assert_eq!((spec.llm.base_url.as_str(), spec.resident), ("https://up", true));
    }

    #[test]
    fn workspace_bytes_come_from_the_environment_within_the_operators_bounds() {
        const KEY: &str = "bridle.sandbox_disk_bytes";
        let meta =
            |kv: &[(&str, &str)]| -> Metadata { kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        for (env, max, want) in [
            (meta(&[]), 0, Ok(None)),
            (meta(&[]), 8 << 30, Ok(None)),
            (meta(&[("team", "a")]), 8 << 30, Ok(None)),
            (meta(&[(KEY, "33554432")]), 8 << 30, Ok(Some(32 << 20))),
            (meta(&[(KEY, "8589934592")]), 8 << 30, Ok(Some(8 << 30))),
            (meta(&[(KEY, "16777216")]), 16 << 20, Ok(Some(16 << 20))),
            // The operator lowered the max, or turned it off, since the environment was made.
            (meta(&[(KEY, "8589934592")]), 4 << 30, Err("from 16777216 to 4294967296")),
            (meta(&[(KEY, "33554432")]), 0, Err("has not enabled")),
            (meta(&[(KEY, "lots")]), 8 << 30, Err("got `lots`")),
        ] {
            match (workspace_bytes(&env, max), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{env:?} under max {max}"),
                (Err(e), Err(needle)) => {
                    assert!(e.contains(needle) && e.contains(KEY), "{env:?} under max {max}: {e}")
                }
                (got, want) => panic!("{env:?} under max {max}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn egress_takes_mcp_hosts_from_the_agent() {
        let agent = json!({"mcp_servers": [{"url": "https://mcp.example/x"}, {"name": "no url"}]});
        let e = egress(
            Networking::Limited {
                allowed_hosts: vec!["a.example".into()],
                allow_mcp_servers: true,
                allow_package_managers: false,
            },
            &agent,
            &["pkgs.example".into()],
        );
        assert_eq!(e.mcp_server_hosts, ["https://mcp.example/x"]);
        assert_eq!(e.package_manager_hosts, ["pkgs.example"]);
        assert!(matches!(e.networking, bridle_sandbox::Networking::Limited { allow_mcp_servers: true, .. }));
    }
}
