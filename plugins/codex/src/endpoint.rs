//! Endpoint checks, the credential plan and the model-provider settings
//! (OpenAI Responses, with MiniMax detected by host).

use bridle_harness_sdk::url::PathEnd;
pub use bridle_harness_sdk::url::parse_url;
use bridle_harness_sdk::{CredentialPlan, HeaderRule, LlmEndpoint};

/// Placeholder the runtime sees instead of the real key; the gateway
/// overwrites the `authorization` header that carries it.
pub const PLACEHOLDER_KEY: &str = "sk-bridle-placeholder";

/// The codex model provider Bridle configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Key under `[model_providers]` and the `model_provider` value.
    pub id: &'static str,
    pub name: &'static str,
    /// The environment variable codex reads the (placeholder) key from.
    pub env_key: &'static str,
    /// Turn-level retries; they surface as `error {willRetry: true}`.
    pub stream_max_retries: u32,
}

pub const OPENAI: Provider = Provider {
    id: "bridle",
    name: "Bridle gateway (OpenAI Responses)",
    env_key: "OPENAI_API_KEY",
    stream_max_retries: 5,
};

pub const MINIMAX: Provider = Provider {
    id: "minimax",
    name: "MiniMax (via Bridle gateway)",
    env_key: "MINIMAX_API_KEY",
    stream_max_retries: 10,
};

/// Is this (upstream) base URL MiniMax's API?
pub fn is_minimax(base_url: Option<&str>) -> bool {
    base_url.and_then(|u| parse_url(u).ok()).is_some_and(|u| {
        ["api.minimax.io", "api.minimaxi.com"].iter().any(|h| u.host == *h || u.host.ends_with(&format!(".{h}")))
    })
}

/// The provider for an upstream base URL.
pub fn provider_for(upstream: Option<&str>) -> &'static Provider {
    if is_minimax(upstream) { &MINIMAX } else { &OPENAI }
}

/// Codex posts to `<base>/responses`: the base must be the root of an
/// OpenAI Responses–compatible API (usually ending in `/v1`).
pub fn check(llm: &LlmEndpoint) -> Result<(), String> {
    let Some(base) = llm.base_url.as_deref() else {
        return Ok(()); // OpenAI's default endpoint
    };
    let url = parse_url(base)?;
    let minimax_hint = if is_minimax(Some(base)) { " For MiniMax use https://api.minimax.io/v1." } else { "" };
    if url.host == "api.anthropic.com" {
        return Err(anthropic_endpoint(base, minimax_hint));
    }
    // What codex calls is `<base>/responses`: decide by the path's end (see
    // `bridle_harness_sdk::url`), so gateway paths that name an Anthropic
    // upstream mid-path, as LLMProxy's bridge does, pass.
    match url.path_end() {
        PathEnd::V1Root | PathEnd::Other => Ok(()),
        PathEnd::AnthropicRoot | PathEnd::MessagesCall => Err(anthropic_endpoint(base, minimax_hint)),
        end @ (PathEnd::ResponsesCall | PathEnd::ChatCompletionsCall | PathEnd::CompletionsCall) => Err(format!(
            "`{base}` ends in {}; give the API root instead (e.g. https://api.openai.com/v1): \
             codex appends /responses itself.{minimax_hint}",
            end.suffix()
        )),
    }
}

fn anthropic_endpoint(base: &str, minimax_hint: &str) -> String {
    format!(
        "`{base}` is an Anthropic Messages endpoint; the codex engine needs an OpenAI \
         Responses-compatible base URL (it calls <base>/responses).{minimax_hint} \
         Use the claude engine for Anthropic endpoints, or a gateway that serves Responses \
         (e.g. LLMProxy's https://<host>/claude2codex/<provider URL>)."
    )
}

/// Placeholder key in the provider's env var, bearer injection.
pub fn credentials(llm: &LlmEndpoint) -> CredentialPlan {
    let provider = provider_for(llm.base_url.as_deref());
    CredentialPlan {
        env: vec![(provider.env_key.into(), PLACEHOLDER_KEY.into())],
        inject: vec![HeaderRule::new("authorization", "Bearer {token}")],
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `$CODEX_HOME/config.toml` for a session.
pub struct ConfigToml<'a> {
    pub model: &'a str,
    pub base_url: &'a str,
    pub provider: &'a Provider,
    pub approval_policy: &'a str,
    pub mcp_servers: Vec<McpServerToml<'a>>,
    /// codex's shell tool (off when a self-hosted environment's workers run the tools).
    pub shell_tool: bool,
}

/// One `[mcp_servers.<name>]` table.
pub struct McpServerToml<'a> {
    pub name: &'a str,
    pub url: &'a str,
    /// `Some`: only these tools (the toolset's default is disabled).
    pub enabled_tools: Option<Vec<&'a str>>,
    pub disabled_tools: Vec<&'a str>,
    /// codex's `default_tools_approval_mode`: `prompt` (codex asks the
    /// client, [`crate::session`] maps it to `requires_action`) or `approve`.
    pub default_approval: &'static str,
    /// Tools whose approval mode differs from the default.
    pub tool_approvals: Vec<(&'a str, &'static str)>,
}

impl ConfigToml<'_> {
    pub fn render(&self) -> String {
        let p = self.provider;
        let mut t = String::from("# Written by Bridle at every launch of this session; edits are overwritten.\n");
        t.push_str(&format!("model = {}\n", toml_str(self.model)));
        t.push_str(&format!("model_provider = {}\n", toml_str(p.id)));
        // codex 0.171 refuses `untrusted` in config.toml (it is still a valid
        // `approvalPolicy` on thread/start, where the session sets it).
        if self.approval_policy != "untrusted" {
            t.push_str(&format!("approval_policy = {}\n", toml_str(self.approval_policy)));
        }
        // The isolation is Bridle's sandbox; codex's own would get in the way.
        t.push_str("sandbox_mode = \"danger-full-access\"\n");
        t.push_str("check_for_update_on_startup = false\n\n");
        t.push_str(&format!("[model_providers.{}]\n", p.id));
        t.push_str(&format!("name = {}\n", toml_str(p.name)));
        t.push_str(&format!("base_url = {}\n", toml_str(self.base_url)));
        t.push_str("wire_api = \"responses\"\n");
        t.push_str(&format!("env_key = {}\n", toml_str(p.env_key)));
        if p.id != OPENAI.id {
            t.push_str("requires_openai_auth = false\n");
        }
        // Transport retries are silent; with none, every retry is a
        // turn-level one that codex reports as `error {willRetry: true}`.
        t.push_str("request_max_retries = 0\n");
        t.push_str(&format!("stream_max_retries = {}\n", p.stream_max_retries));
        t.push_str("stream_idle_timeout_ms = 300000\n");
        if !self.shell_tool {
            t.push_str("\n[features]\nshell_tool = false\n");
        }
        let list = |names: &[&str]| names.iter().map(|n| toml_str(n)).collect::<Vec<_>>().join(", ");
        for m in &self.mcp_servers {
            t.push_str(&format!("\n[mcp_servers.{}]\n", toml_str(m.name)));
            t.push_str(&format!("url = {}\n", toml_str(m.url)));
            if let Some(enabled) = &m.enabled_tools {
                t.push_str(&format!("enabled_tools = [{}]\n", list(enabled)));
            }
            if !m.disabled_tools.is_empty() {
                t.push_str(&format!("disabled_tools = [{}]\n", list(&m.disabled_tools)));
            }
            t.push_str(&format!("default_tools_approval_mode = {}\n", toml_str(m.default_approval)));
            for (tool, mode) in &m.tool_approvals {
                t.push_str(&format!("\n[mcp_servers.{}.tools.{}]\n", toml_str(m.name), toml_str(tool)));
                t.push_str(&format!("approval_mode = {}\n", toml_str(mode)));
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: Option<&str>) -> LlmEndpoint {
        LlmEndpoint { base_url: url.map(str::to_string), model: "gpt-5-codex".into() }
    }

    #[test]
    fn minimax_detection() {
        assert!(is_minimax(Some("https://api.minimax.io/v1")));
        assert!(is_minimax(Some("https://API.MINIMAXI.COM/v1")));
        assert!(!is_minimax(Some("https://api.minimax.io.evil.com/v1")));
        assert!(!is_minimax(Some("https://api.openai.com/v1")));
        assert!(!is_minimax(None));
        assert_eq!(credentials(&ep(Some("https://api.minimaxi.com/v1"))).env[0].0, "MINIMAX_API_KEY");
        assert_eq!(credentials(&ep(None)).env[0].0, "OPENAI_API_KEY");
    }

    #[test]
    fn mcp_servers_carry_their_approval_modes() {
        let provider = provider_for(None);
        let config = ConfigToml {
            model: "m",
            base_url: "http://127.0.0.1:1/llm",
            provider,
            approval_policy: "on-request",
            shell_tool: true,
            mcp_servers: vec![McpServerToml {
                name: "docs",
                url: "http://127.0.0.1:1/mcp/docs",
                enabled_tools: None,
                disabled_tools: vec!["drop"],
                default_approval: "approve",
                tool_approvals: vec![("lookup", "prompt")],
            }],
        }
        .render();
        let parsed: toml::Value = config.parse().expect("valid TOML");
        let docs = &parsed["mcp_servers"]["docs"];
        assert_eq!(docs["url"].as_str(), Some("http://127.0.0.1:1/mcp/docs"));
        assert_eq!(docs["default_tools_approval_mode"].as_str(), Some("approve"));
        assert_eq!(docs["tools"]["lookup"]["approval_mode"].as_str(), Some("prompt"));
        assert_eq!(docs["disabled_tools"][0].as_str(), Some("drop"));
        assert_eq!(parsed["approval_policy"].as_str(), Some("on-request"));
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
