//! Endpoint shape checks and the credential plan for Anthropic Messages.

use bridle_harness_sdk::url::PathEnd;
pub use bridle_harness_sdk::url::parse_url;
use bridle_harness_sdk::{CredentialPlan, HeaderRule, LlmEndpoint};

/// Placeholder the runtime sees instead of the real key; the gateway
/// overwrites the header that carries it.
pub const PLACEHOLDER_KEY: &str = "sk-ant-bridle-placeholder";

/// Claude Code appends `/v1/messages` to `ANTHROPIC_BASE_URL`, so the base
/// must be the API root of an Anthropic Messages–compatible endpoint.
pub fn check(llm: &LlmEndpoint) -> Result<(), String> {
    let Some(base) = llm.base_url.as_deref() else {
        return Ok(()); // Claude Code's default, api.anthropic.com
    };
    let url = parse_url(base)?;
    if url.host == "api.openai.com" {
        return Err(format!(
            "`{base}` is the OpenAI API; the claude engine needs an Anthropic Messages endpoint \
             (e.g. https://api.anthropic.com). Use the codex or openai-agents engine for OpenAI."
        ));
    }
    // What Claude Code calls is `<base>/v1/messages`: decide by the path's end.
    match url.path_end() {
        PathEnd::AnthropicRoot | PathEnd::Other => Ok(()),
        PathEnd::MessagesCall => Err(format!(
            "`{base}` already ends in /v1/messages; give the API root instead \
             (Claude Code appends /v1/messages itself)."
        )),
        end @ (PathEnd::ResponsesCall | PathEnd::ChatCompletionsCall | PathEnd::CompletionsCall) => Err(format!(
            "`{base}` looks like an OpenAI-style endpoint (`{}`); the claude engine \
                 needs the root of an Anthropic Messages API (it calls <base>/v1/messages).",
            end.suffix()
        )),
        PathEnd::V1Root => Err(format!(
            "`{base}` ends in /v1, the shape of an OpenAI-compatible API; the claude engine \
             needs an Anthropic Messages base URL without /v1 (Claude Code appends \
             /v1/messages). For MiniMax, for example, use https://api.minimax.io/anthropic."
        )),
    }
}

/// Placeholders for both of Claude Code's credential variables, and the
/// matching header rules. First-party Anthropic only takes `x-api-key`, so
/// no bearer header is sent there; third-party gateways get both.
pub fn credentials(llm: &LlmEndpoint) -> CredentialPlan {
    let first_party = match llm.base_url.as_deref() {
        None => true,
        Some(base) => parse_url(base).map(|u| u.host == "api.anthropic.com").unwrap_or(false),
    };
    let mut plan = CredentialPlan {
        env: vec![("ANTHROPIC_API_KEY".into(), PLACEHOLDER_KEY.into())],
        inject: vec![HeaderRule::new("x-api-key", "{token}")],
    };
    if !first_party {
        plan.env.push(("ANTHROPIC_AUTH_TOKEN".into(), PLACEHOLDER_KEY.into()));
        plan.inject.push(HeaderRule::new("authorization", "Bearer {token}"));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: Option<&str>) -> LlmEndpoint {
        LlmEndpoint { base_url: url.map(str::to_string), model: "claude-sonnet-4-5".into() }
    }

    #[test]
    fn credential_plans() {
        let first = credentials(&ep(None));
        assert_eq!(first.env.len(), 1);
        assert_eq!(first.inject, vec![HeaderRule::new("x-api-key", "{token}")]);
        let third = credentials(&ep(Some("https://gw.example.com")));
        assert_eq!(third.env.len(), 2);
        assert!(third.inject.contains(&HeaderRule::new("authorization", "Bearer {token}")));
    }
}
