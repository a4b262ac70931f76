//! The model API endpoints a session's model route forwards, by the
//! harness's API shape: what the real runtimes call (Claude Code: messages
//! and count-tokens; codex and OpenAI SDK clients: responses, chat
//! completions, models), relative to the base URL. Everything else on the
//! model host is refused by the egress gateway. One function, so a plugin
//! declaration of its model paths can replace the table later.

use bridle_harness::ApiShape;
use bridle_sandbox::ModelEndpoint;

pub fn for_shape(shape: ApiShape) -> Vec<ModelEndpoint> {
    match shape {
        ApiShape::AnthropicMessages => {
            vec![ModelEndpoint::post("/v1/messages"), ModelEndpoint::post("/v1/messages/count_tokens")]
        }
        ApiShape::OpenaiResponses | ApiShape::OpenaiCompatible => vec![
            ModelEndpoint::post("/responses"),
            ModelEndpoint::post("/chat/completions"),
            ModelEndpoint::get("/models"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_shape() {
        let paths = |s| for_shape(s).into_iter().map(|e| format!("{} {}", e.method, e.path)).collect::<Vec<_>>();
        assert_eq!(paths(ApiShape::AnthropicMessages), ["POST /v1/messages", "POST /v1/messages/count_tokens"]);
        for s in [ApiShape::OpenaiResponses, ApiShape::OpenaiCompatible] {
            assert_eq!(paths(s), ["POST /responses", "POST /chat/completions", "GET /models"]);
        }
    }
}
