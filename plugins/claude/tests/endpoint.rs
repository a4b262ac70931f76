//! The endpoint check, to the letter: Claude Code calls `<base>/v1/messages`, so the path's end
//! decides, whatever the middle names. Every base URL form of the harness guide (the seed), of
//! issue 21 and of the AI gateways Bridle documents, accepted or refused with a fix.

use bridle_harness_sdk::endpoint_cases::{assert_accepted, assert_refused};
use bridle_plugin_claude::Claude;

#[test]
fn accepted_forms() {
    assert_accepted::<Claude>(&[
        None, // Claude Code's default, api.anthropic.com
        // The guide's claude vault.
        Some("https://api.anthropic.com"),
        Some("https://api.anthropic.com/"),
        // Anthropic-compatible providers: MiniMax, Z.ai.
        Some("https://api.minimax.io/anthropic"),
        Some("https://api.z.ai/api/anthropic"),
        // Gateways: a path prefix with a trailing slash; Cloudflare AI Gateway's Anthropic route;
        // LiteLLM, which serves /v1/messages at its root.
        Some("https://gw.example.com/anthropic-proxy/"),
        Some("https://gw.example.com/team/a/"),
        Some("https://gateway.ai.cloudflare.com/client/v4/accounts/acc123/ai/anthropic"),
        Some("http://litellm.internal:4000"),
        Some("http://127.0.0.1:8080/?tenant=a"),
    ]);
}

#[test]
fn refused_forms_name_the_url_and_the_fix() {
    // (base URL, words the refusal must carry)
    assert_refused::<Claude>(&[
        // The guide's codex and openai-agents vaults, and its Cloudflare AI Gateway example.
        ("https://api.openai.com/v1", "Anthropic Messages endpoint"),
        ("https://api.openai.com", "Anthropic Messages endpoint"),
        ("https://api.cloudflare.com/client/v4/accounts/acc123/ai/v1", "ends in /v1"),
        // OpenAI-shaped gateway routes: Cloudflare, LiteLLM, LLMProxy's bridge into OpenAI harnesses.
        ("https://gateway.ai.cloudflare.com/client/v4/accounts/acc123/ai/v1", "ends in /v1"),
        ("http://litellm.internal:4000/v1", "ends in /v1"),
        ("https://llmproxy.example.com/claude2codex/https://api.z.ai/anthropic/v1", "ends in /v1"),
        ("https://api.minimax.io/v1", "https://api.minimax.io/anthropic"),
        ("https://gw.example.com/v1/", "ends in /v1"),
        // Whole calls instead of a base.
        ("https://api.anthropic.com/v1/messages", "appends /v1/messages"),
        ("https://gw.example.com/anthropic/v1/messages/", "appends /v1/messages"),
        ("https://gw.example.com/v1/chat/completions", "OpenAI-style"),
        ("https://gw.example.com/v1/responses", "OpenAI-style"),
        ("https://gw.example.com/v1/responses?x=1", "OpenAI-style"),
        ("https://gw.example.com/v1/completions", "OpenAI-style"),
        // Not a URL the harness can call.
        ("api.anthropic.com", "no scheme"),
        ("ftp://api.anthropic.com", "http or https"),
        ("https:///anthropic", "no host"),
    ]);
}
