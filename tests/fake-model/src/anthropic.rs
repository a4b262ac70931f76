//! Anthropic Messages wire shapes: the SSE stream, the non-streaming `Message`, errors.

use serde_json::{Value, json};

use crate::SseEvent;
use crate::scenario::{Conversation, Response, tool_call_args};

/// Ids for one reply.
pub struct Ids {
    pub message: String,
    pub tool_use: String,
}

fn content_blocks(resp: &Response, conv: &Conversation, ids: &Ids) -> Vec<Value> {
    let mut blocks = Vec::new();
    if let Some(t) = &resp.thinking {
        blocks.push(json!({"type": "thinking", "thinking": t, "signature": "fake-signature"}));
    }
    if let Some(call) = &resp.tool {
        let (name, input) = tool_call_args(call, &conv.tools);
        blocks.push(json!({"type": "tool_use", "id": ids.tool_use, "name": name, "input": input}));
    } else {
        blocks.push(json!({"type": "text", "text": resp.text()}));
    }
    blocks
}

fn stop_reason(resp: &Response) -> &'static str {
    if resp.tool.is_some() { "tool_use" } else { "end_turn" }
}

fn output_tokens(resp: &Response) -> u64 {
    (resp.text().len() as u64 / 4).max(1) + if resp.tool.is_some() { 20 } else { 0 }
}

fn usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard"
    })
}

/// The non-streaming `Message`.
pub fn message(resp: &Response, conv: &Conversation, ids: &Ids, input_tokens: u64) -> Value {
    json!({
        "id": ids.message,
        "type": "message",
        "role": "assistant",
        "model": conv.model,
        "content": content_blocks(resp, conv, ids),
        "stop_reason": stop_reason(resp),
        "stop_sequence": null,
        "usage": usage(input_tokens, output_tokens(resp)),
    })
}

/// The SSE events of a streamed reply. Every event is named (the SDK dispatches on the
/// `event:` line; unnamed events parse as an empty stream, runtimes.md D.1).
pub fn stream(resp: &Response, conv: &Conversation, ids: &Ids, input_tokens: u64) -> Vec<SseEvent> {
    let mut out = Vec::new();
    let ev = |name: &str, data: Value| SseEvent::new(name, data);
    out.push(ev(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": ids.message, "type": "message", "role": "assistant", "model": conv.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(input_tokens, 1)
        }}),
    ));
    out.push(ev("ping", json!({"type": "ping"})));
    let mut index = 0;
    if let Some(t) = &resp.thinking {
        out.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ));
        out.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index,
                   "delta": {"type": "thinking_delta", "thinking": t}}),
        ));
        out.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index,
                   "delta": {"type": "signature_delta", "signature": "fake-signature"}}),
        ));
        out.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": index})));
        index += 1;
    }
    if let Some(call) = &resp.tool {
        let (name, input) = tool_call_args(call, &conv.tools);
        out.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "tool_use", "id": ids.tool_use, "name": name, "input": {}}}),
        ));
        // Two partial-JSON deltas, as the real API splits arguments.
        let args = input.to_string();
        let mid = args.char_indices().map(|(i, _)| i).find(|&i| i >= args.len() / 2).unwrap_or(args.len());
        for part in [&args[..mid], &args[mid..]] {
            out.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": part}}),
            ));
        }
    } else {
        out.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "text", "text": ""}}),
        ));
        for (i, chunk) in resp.chunks.iter().enumerate() {
            let mut e = ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "text_delta", "text": chunk}}),
            );
            if i > 0 {
                e.delay_ms = resp.chunk_delay_ms;
            }
            e.first_token = i == 0;
            out.push(e);
        }
    }
    out.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": index})));
    out.push(ev(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop_reason(resp), "stop_sequence": null},
               "usage": {"output_tokens": output_tokens(resp)}}),
    ));
    out.push(ev("message_stop", json!({"type": "message_stop"})));
    out
}

/// The error `type` the real API uses for a status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

fn default_message(status: u16) -> &'static str {
    match status {
        401 => "invalid x-api-key",
        429 => "Number of request tokens has exceeded your per-minute rate limit",
        529 | 503 => "Overloaded",
        404 => "Not found",
        400 => "Invalid request",
        _ => "Internal server error",
    }
}

/// `{"type":"error","error":{"type","message"},"request_id"}`.
pub fn error_body(status: u16, message: Option<&str>, request_id: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": error_type(status), "message": message.unwrap_or(default_message(status))},
        "request_id": request_id,
    })
}
