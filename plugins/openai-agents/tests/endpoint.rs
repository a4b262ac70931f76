//! The endpoint check, to the letter: the runtime calls `<base>/responses`, so the path's end
//! decides, whatever the middle names (LLMProxy's bridge names its Anthropic upstream
//! mid-path). Every base URL form of the harness guide (the seed), of issue 21 and of the AI
//! gateways Bridle documents, accepted or refused with a fix.

use bridle_harness_sdk::endpoint_cases::{assert_accepted, assert_refused};
use bridle_plugin_openai_agents::OpenaiAgents;

#[test]
fn accepted_forms() {
    assert_accepted::<OpenaiAgents>(&[
        None, // the SDK's default, OpenAI
        // The guide's openai-agents vault and its Cloudflare AI Gateway example.
        Some("https://api.openai.com/v1"),
        Some("https://api.cloudflare.com/client/v4/accounts/acc123/ai/v1"),
        // LLMProxy bridging an Anthropic-compatible provider into an OpenAI-style harness.
        Some("https://llmproxy.example.com/claude2codex/https://api.z.ai/anthropic/v1"),
        Some("https://gateway.ai.cloudflare.com/client/v4/accounts/acc123/ai/v1"),
        Some("http://litellm.internal:4000/v1"),
        // A path prefix with a trailing slash; a query the gateway wants.
        Some("https://gw.example.com/prefix/"),
        Some("https://gw.example.com/v1?api-version=2025-04-01"),
        Some("http://127.0.0.1:9/v1/"),
    ]);
}

#[test]
fn refused_forms_name_the_url_and_the_fix() {
    // (base URL, words the refusal must carry)
    assert_refused::<OpenaiAgents>(&[
        // The guide's claude vault.
        ("https://api.anthropic.com", "Anthropic Messages endpoint"),
        // Anthropic-shaped roots and calls, wherever they are.
        ("https://api.minimax.io/anthropic", "Anthropic Messages endpoint"),
        ("https://gateway.ai.cloudflare.com/client/v4/accounts/acc123/ai/anthropic", "claude2codex"),
        ("https://gw.example.com/anthropic/", "Anthropic Messages endpoint"),
        ("https://gw.example.com/anthropic#models", "Anthropic Messages endpoint"),
        ("https://gw.example.com/v1/messages/", "Anthropic Messages endpoint"),
        // Whole calls instead of a base (a query or fragment does not hide the path's end).
        ("https://api.openai.com/v1/responses", "ends in /responses"),
        ("https://gw.example.com/v1/responses?api-version=1", "ends in /responses"),
        ("https://gw.example.com/v1/chat/completions", "Chat Completions"),
        ("https://gw.example.com/v1/chat/completions?x=1", "Chat Completions"),
        ("https://gw.example.com/v1/completions", "Chat Completions"),
        // Not a URL the harness can call.
        ("api.openai.com/v1", "no scheme"),
        ("ftp://x/v1", "http or https"),
        ("https:///v1", "no host"),
    ]);
}
