//! Endpoint shape checks and the credential plan for Anthropic Messages.

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
    let path = url.path.trim_end_matches('/').to_ascii_lowercase();
    for suffix in ["/chat/completions", "/responses", "/completions"] {
        if path.ends_with(suffix) {
            return Err(format!(
                "`{base}` looks like an OpenAI-style endpoint (`{suffix}`); the claude engine \
                 needs the root of an Anthropic Messages API (it calls <base>/v1/messages)."
            ));
        }
    }
    if path.ends_with("/v1/messages") {
        return Err(format!(
            "`{base}` already ends in /v1/messages; give the API root instead \
             (Claude Code appends /v1/messages itself)."
        ));
    }
    if path.ends_with("/v1") || path.ends_with("/openai/v1") {
        return Err(format!(
            "`{base}` ends in /v1, the shape of an OpenAI-compatible API; the claude engine \
             needs an Anthropic Messages base URL without /v1 (Claude Code appends \
             /v1/messages). For MiniMax, for example, use https://api.minimax.io/anthropic."
        ));
    }
    Ok(())
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
    fn accepts_anthropic_shapes() {
        for u in [
            None,
            Some("https://api.anthropic.com"),
            Some("https://api.minimax.io/anthropic"),
            Some("http://127.0.0.1:8080/"),
            // AI gateways: a prefix (with a trailing slash), Cloudflare AI Gateway's Anthropic route.
            Some("https://gw.example.com/anthropic-proxy/"),
            Some("https://gateway.ai.cloudflare.com/client/v4/accounts/acc123/ai/anthropic"),
        ] {
            assert_eq!(check(&ep(u)), Ok(()), "{u:?}");
        }
    }

    #[test]
    fn rejects_openai_shapes_with_a_hint() {
        for u in [
            "https://api.openai.com",
            "https://api.openai.com/v1",
            "https://api.minimax.io/v1",
            "https://gw.example.com/v1/chat/completions",
            "https://gw.example.com/v1/responses",
            "https://api.anthropic.com/v1/messages",
            "https://gw.example.com/v1/",
            "https://gw.example.com/v1/messages/",
            "https://gateway.ai.cloudflare.com/client/v4/accounts/acc123/ai/v1",
        ] {
            let err = check(&ep(Some(u))).unwrap_err();
            assert!(err.contains(u), "{err}");
        }
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
