//! OpenAI Responses wire shapes: the SSE stream, the non-streaming `Response`, errors.

use serde_json::{Value, json};

use crate::SseEvent;
use crate::scenario::{Conversation, Response, split_namespace, tool_call_args};

/// Ids for one reply.
pub struct Ids {
    pub response: String,
    pub message: String,
    pub reasoning: String,
    pub function_call: String,
    pub call: String,
}

fn output_items(resp: &Response, conv: &Conversation, ids: &Ids) -> Vec<Value> {
    let mut items = Vec::new();
    if let Some(t) = &resp.thinking {
        items.push(reasoning_item(ids, t));
    }
    if let Some(call) = &resp.tool {
        let (name, input) = tool_call_args(call, &conv.tools);
        items.push(function_call(ids, &name, &input.to_string(), "completed"));
    } else {
        items.push(message_item(ids, &resp.text(), "completed"));
    }
    items
}

/// A `function_call` item; a namespaced tool (`<namespace>.<name>`) is called by its member
/// name with its `namespace`, as the Responses API does.
fn function_call(ids: &Ids, name: &str, arguments: &str, status: &str) -> Value {
    let (namespace, name) = split_namespace(name);
    let mut item = json!({"type": "function_call", "id": ids.function_call, "call_id": ids.call,
                          "name": name, "arguments": arguments, "status": status});
    if let Some(ns) = namespace {
        item["namespace"] = json!(ns);
    }
    item
}

fn reasoning_item(ids: &Ids, text: &str) -> Value {
    json!({"type": "reasoning", "id": ids.reasoning,
           "summary": [{"type": "summary_text", "text": text}]})
}

fn message_item(ids: &Ids, text: &str, status: &str) -> Value {
    let content = if status == "completed" {
        json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
    } else {
        json!([])
    };
    json!({"type": "message", "id": ids.message, "role": "assistant", "status": status, "content": content})
}

fn usage(input_tokens: u64, resp: &Response) -> Value {
    let output = (resp.text().len() as u64 / 4).max(1) + if resp.tool.is_some() { 20 } else { 0 };
    json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output
    })
}

fn response_object(conv: &Conversation, ids: &Ids, status: &str, output: Vec<Value>, usage: Value) -> Value {
    json!({
        "id": ids.response,
        "object": "response",
        "created_at": now_secs(),
        "status": status,
        "model": conv.model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "error": null,
        "incomplete_details": null,
        "usage": usage,
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The non-streaming `Response`.
pub fn response(resp: &Response, conv: &Conversation, ids: &Ids, input_tokens: u64) -> Value {
    response_object(conv, ids, "completed", output_items(resp, conv, ids), usage(input_tokens, resp))
}

/// The SSE events of a streamed reply.
pub fn stream(resp: &Response, conv: &Conversation, ids: &Ids, input_tokens: u64) -> Vec<SseEvent> {
    let mut out: Vec<SseEvent> = Vec::new();
    let mut seq = 0u64;
    let mut push = |out: &mut Vec<SseEvent>, name: &str, mut data: Value, delay_ms: u64| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        let mut e = SseEvent::new(name, data);
        e.delay_ms = delay_ms;
        // The first text delta of the reply.
        e.first_token = name == "response.output_text.delta" && !out.iter().any(|o| o.first_token);
        out.push(e);
    };
    let shell = response_object(conv, ids, "in_progress", vec![], Value::Null);
    push(&mut out, "response.created", json!({"response": shell}), 0);
    push(&mut out, "response.in_progress", json!({"response": shell}), 0);
    let mut index = 0;
    if let Some(t) = &resp.thinking {
        let item = reasoning_item(ids, t);
        push(
            &mut out,
            "response.output_item.added",
            json!({"output_index": index, "item": {"type": "reasoning", "id": ids.reasoning, "summary": []}}),
            0,
        );
        push(
            &mut out,
            "response.reasoning_summary_part.added",
            json!({"item_id": ids.reasoning, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
            0,
        );
        push(
            &mut out,
            "response.reasoning_summary_text.delta",
            json!({"item_id": ids.reasoning, "output_index": index, "summary_index": 0, "delta": t}),
            0,
        );
        push(
            &mut out,
            "response.reasoning_summary_text.done",
            json!({"item_id": ids.reasoning, "output_index": index, "summary_index": 0, "text": t}),
            0,
        );
        push(
            &mut out,
            "response.reasoning_summary_part.done",
            json!({"item_id": ids.reasoning, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": t}}),
            0,
        );
        push(&mut out, "response.output_item.done", json!({"output_index": index, "item": item}), 0);
        index += 1;
    }
    if let Some(call) = &resp.tool {
        let (name, input) = tool_call_args(call, &conv.tools);
        let args = input.to_string();
        let added = function_call(ids, &name, "", "in_progress");
        push(&mut out, "response.output_item.added", json!({"output_index": index, "item": added}), 0);
        push(
            &mut out,
            "response.function_call_arguments.delta",
            json!({"item_id": ids.function_call, "output_index": index, "delta": args}),
            0,
        );
        push(
            &mut out,
            "response.function_call_arguments.done",
            json!({"item_id": ids.function_call, "output_index": index, "arguments": args}),
            0,
        );
        let done = function_call(ids, &name, &args, "completed");
        push(&mut out, "response.output_item.done", json!({"output_index": index, "item": done}), 0);
    } else {
        let text = resp.text();
        push(
            &mut out,
            "response.output_item.added",
            json!({"output_index": index, "item": message_item(ids, "", "in_progress")}),
            0,
        );
        push(
            &mut out,
            "response.content_part.added",
            json!({"item_id": ids.message, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
            0,
        );
        for (i, chunk) in resp.chunks.iter().enumerate() {
            let delay = if i > 0 { resp.chunk_delay_ms } else { 0 };
            push(
                &mut out,
                "response.output_text.delta",
                json!({"item_id": ids.message, "output_index": index, "content_index": 0, "delta": chunk, "logprobs": []}),
                delay,
            );
        }
        push(
            &mut out,
            "response.output_text.done",
            json!({"item_id": ids.message, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
            0,
        );
        push(
            &mut out,
            "response.content_part.done",
            json!({"item_id": ids.message, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}}),
            0,
        );
        push(
            &mut out,
            "response.output_item.done",
            json!({"output_index": index, "item": message_item(ids, &text, "completed")}),
            0,
        );
    }
    let done = response(resp, conv, ids, input_tokens);
    push(&mut out, "response.completed", json!({"response": done}), 0);
    out
}

/// `(type, code)` as the real API reports them for a status.
fn error_kind(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        400 | 422 => ("invalid_request_error", None),
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("invalid_request_error", Some("unsupported_country_region_territory")),
        404 => ("invalid_request_error", Some("not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        503 | 529 => ("server_error", Some("server_is_overloaded")),
        _ => ("server_error", None),
    }
}

fn default_message(status: u16) -> &'static str {
    match status {
        401 => "Incorrect API key provided.",
        429 => "Rate limit reached for requests. Please try again later.",
        503 | 529 => "The server is overloaded. Please try again later.",
        404 => "Not found",
        400 => "Invalid request",
        _ => "The server had an error while processing your request.",
    }
}

/// `{"error":{"message","type","param","code"}}`.
pub fn error_body(status: u16, message: Option<&str>) -> Value {
    let (kind, code) = error_kind(status);
    json!({"error": {
        "message": message.unwrap_or(default_message(status)),
        "type": kind,
        "param": null,
        "code": code,
    }})
}
