//! What a runtime is started from, decided without I/O: the model's default
//! upstream per API shape, the sandbox's egress policy from the session's
//! environment, and the one builder of the typed [`SessionSpec`] the plugin
//! gets (own process in a sandbox, or the shared resident runtime).

use bridle_harness::{ApiShape, SessionSpec, SpecLlm};
use serde_json::Value;

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
                "resident": false})
        );
        let spec = session_spec("sesn_1", &agent, None, "https://up", "m", Placement::Resident);
        assert_eq!((spec.llm.base_url.as_str(), spec.resident), ("https://up", true));
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
