//! The fake's wire shapes, checked over HTTP without any runtime.

use bridle_fake_model::{Config, Failure, FakeModel, Reply, Scenario, ToolCall};
use serde_json::{Value, json};

const TOKEN: &str = "tok-123";

async fn fake() -> FakeModel {
    FakeModel::start(Config { token: Some(TOKEN.into()), ..Config::default() }).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// A request sent to the fake, which must answer (any status).
trait Answered {
    async fn reply(self) -> reqwest::Response;
    /// The answer's body as JSON.
    async fn reply_json<T: serde::de::DeserializeOwned>(self) -> T;
    /// The answer's body as server-sent events.
    async fn reply_sse(self) -> Vec<(String, Value)>;
}

impl Answered for reqwest::RequestBuilder {
    async fn reply(self) -> reqwest::Response {
        self.send().await.unwrap()
    }

    async fn reply_json<T: serde::de::DeserializeOwned>(self) -> T {
        self.reply().await.json().await.unwrap()
    }

    async fn reply_sse(self) -> Vec<(String, Value)> {
        parse_sse(&self.reply().await.text().await.unwrap())
    }
}

/// `(event name, data)` pairs of an SSE body.
fn parse_sse(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

fn tool_scenario() -> Scenario {
    Scenario {
        turns: vec![Reply {
            tools: vec![ToolCall::bash("echo hi")],
            text: "result: {{tool_output}}".into(),
            ..Reply::default()
        }],
        ..Scenario::default()
    }
}

#[tokio::test]
async fn anthropic_streaming_text_and_tool_use() {
    let fm = fake().await;
    fm.set_scenario("m-tool", tool_scenario());
    let body = json!({"model": "m-tool", "stream": true, "max_tokens": 100,
        "tools": [{"name": "Bash", "input_schema": {}}],
        "messages": [{"role": "user", "content": "go"}]});
    let resp = client()
        .post(format!("{}/v1/messages?beta=true", fm.base_url()))
        .header("x-api-key", TOKEN)
        .json(&body)
        .reply()
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = parse_sse(&resp.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "event name matches data type");
    }
    assert_eq!(events[2].1["content_block"]["name"], "Bash");
    let json: String =
        events[3..5].iter().map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_owned()).collect();
    let input: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(input["command"], "echo hi");
    assert_eq!(events[6].1["delta"]["stop_reason"], "tool_use");

    // After the tool result: the text, with the tool output templated in.
    let id = events[2].1["content_block"]["id"].clone();
    let body = json!({"model": "m-tool", "stream": false, "max_tokens": 100,
    "tools": [{"name": "Bash", "input_schema": {}}],
    "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Bash", "input": input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": [{"type": "text", "text": "hi\n"}]}]}
    ]});
    let msg: Value = client()
        .post(format!("{}/v1/messages", fm.base_url()))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&body)
        .reply_json()
        .await;
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["stop_reason"], "end_turn");
    assert_eq!(msg["content"][0]["text"], "result: hi");
    assert!(msg["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(fm.model_requests("m-tool").len(), 2);
}

#[tokio::test]
async fn thinking_block_streams_before_text() {
    let fm = fake().await;
    fm.set_scenario(
        "m-think",
        Scenario {
            turns: vec![Reply { thinking: Some("hmm".into()), text: "yes".into(), ..Reply::default() }],
            ..Scenario::default()
        },
    );
    let events = client()
        .post(format!("{}/v1/messages", fm.base_url()))
        .header("x-api-key", TOKEN)
        .json(&json!({"model": "m-think", "stream": true, "messages": [{"role": "user", "content": "?"}]}))
        .reply_sse()
        .await;
    assert_eq!(events[2].1["content_block"]["type"], "thinking");
    assert_eq!(events[3].1["delta"]["thinking"], "hmm");
    assert_eq!(events[4].1["delta"]["type"], "signature_delta");
    assert!(events.iter().any(|(_, d)| d["delta"]["text"] == "yes"));
}

#[tokio::test]
async fn credential_is_checked_in_each_providers_shape() {
    let fm = fake().await;
    let c = client();
    let r = c
        .post(format!("{}/v1/messages", fm.base_url()))
        .header("x-api-key", "wrong")
        .json(&json!({"model": "x", "messages": []}))
        .reply()
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("request-id"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");

    let r = c.post(format!("{}/v1/responses", fm.base_url())).json(&json!({"model": "x", "input": "hi"})).reply().await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(body["error"]["message"].is_string());

    let log = fm.requests();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|r| !r.authorized && r.status == 401));
    assert_eq!(log[0].header("x-api-key"), Some("wrong"));
}

#[tokio::test]
async fn injected_failures_then_success_with_real_error_shapes() {
    let fm = fake().await;
    fm.set_scenario(
        "m-retry",
        Scenario::text("ok")
            .with_failures(Failure::new(529).retry_after(1.0).times(2))
            .with_failures(Failure::new(429)),
    );
    let c = client();
    let send = || {
        c.post(format!("{}/v1/messages", fm.base_url()))
            .header("x-api-key", TOKEN)
            .json(&json!({"model": "m-retry", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    for _ in 0..2 {
        let r = send().await.unwrap();
        assert_eq!(r.status(), 529);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["retry-after-ms"], "1000");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "overloaded_error");
    }
    let r = send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(!r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "rate_limit_error");
    let r = send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["content"][0]["text"], "ok");

    // OpenAI shape for the same kind of failure on /v1/responses.
    fm.set_scenario("m-retry", Scenario::default().with_failures(Failure::new(429)));
    let r = c
        .post(format!("{}/v1/responses", fm.base_url()))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "m-retry", "input": "hi"}))
        .reply()
        .await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");
}

#[tokio::test]
async fn persistent_failure_and_builtin_scenarios() {
    let fm = fake().await;
    let c = client();
    let post = |model: &str| {
        c.post(format!("{}/v1/responses", fm.base_url()))
            .bearer_auth(TOKEN)
            .json(&json!({"model": model, "input": "hi"}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(post("fake-fail-503-always").await.unwrap().status(), 503);
    }
    assert_eq!(post("fake-fail-500-1").await.unwrap().status(), 500);
    let r: Value = post("fake-fail-500-1").await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "completed");
    assert_eq!(r["output"][0]["content"][0]["text"], bridle_fake_model::scenario::DEFAULT_TEXT);
}

#[tokio::test]
async fn responses_streaming_function_call_then_text() {
    let fm = fake().await;
    fm.set_scenario("r-tool", tool_scenario());
    let c = client();
    let tools = json!([{"type": "function", "name": "exec_command", "parameters": {}}]);
    let events = c
        .post(format!("{}/v1/responses", fm.openai_base_url().trim_end_matches("/v1")))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "r-tool", "stream": true, "tools": tools,
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}]}))
        .reply_sse()
        .await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    let seqs: Vec<u64> = events.iter().map(|(_, d)| d["sequence_number"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    let done = events.iter().find(|(n, _)| n == "response.output_item.done").unwrap();
    let item = &done.1["item"];
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["name"], "exec_command");
    let args: Value = serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["cmd"], "echo hi");
    let completed = &events.last().unwrap().1["response"];
    assert!(completed["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(completed["output"][0]["call_id"], item["call_id"]);

    let events = c
        .post(format!("{}/responses", fm.openai_base_url()))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "r-tool", "stream": true, "tools": tools, "input": [
            {"role": "user", "content": "go"},
            item,
            {"type": "function_call_output", "call_id": item["call_id"], "output": "hi"}
        ]}))
        .reply_sse()
        .await;
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, "result: hi");
    assert_eq!(events.last().unwrap().1["response"]["output"][0]["content"][0]["text"], "result: hi");
}

#[tokio::test]
async fn startup_probes_count_tokens_and_models() {
    let fm = fake().await;
    let c = client();
    assert_eq!(c.head(fm.base_url()).reply().await.status(), 200);
    let n: Value = c
        .post(format!("{}/v1/messages/count_tokens?beta=true", fm.base_url()))
        .header("x-api-key", TOKEN)
        .json(&json!({"model": "x", "messages": [{"role": "user", "content": "hello"}]}))
        .reply_json()
        .await;
    assert!(n["input_tokens"].as_u64().unwrap() > 0);
    let models: Value = c.get(format!("{}/models", fm.openai_base_url())).bearer_auth(TOKEN).reply_json().await;
    assert_eq!(models["object"], "list");
    assert!(!models["data"].as_array().unwrap().is_empty());
    let r = c.get(format!("{}/v1/nope", fm.base_url())).bearer_auth(TOKEN).reply().await;
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].is_string());
    let r = c.post(format!("{}/v1/messages", fm.base_url())).header("x-api-key", TOKEN).body("not json").reply().await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn control_endpoints() {
    let fm = fake().await;
    let c = client();
    let r = c
        .post(format!("{}/_fake/scenario", fm.base_url()))
        .json(&json!({"model": "ctl", "turns": [{"text": "scripted {{turn}}"}]}))
        .reply()
        .await;
    assert_eq!(r.status(), 204);
    let r = c
        .put(format!("{}/_fake/scenarios/ctl2", fm.base_url()))
        .json(&json!({"failures": [{"status": 500}]}))
        .reply()
        .await;
    assert_eq!(r.status(), 204);
    let bad =
        c.post(format!("{}/_fake/scenario", fm.base_url())).json(&json!({"model": "x", "turnz": []})).reply().await;
    assert_eq!(bad.status(), 400);
    let msg: Value = c
        .post(format!("{}/v1/messages", fm.base_url()))
        .header("x-api-key", TOKEN)
        .json(&json!({"model": "ctl", "messages": [{"role": "user", "content": "a"}]}))
        .reply_json()
        .await;
    assert_eq!(msg["content"][0]["text"], "scripted 1");
    let log: Vec<Value> = c.get(format!("{}/_fake/requests?model=ctl", fm.base_url())).reply_json().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["headers"]["x-api-key"], TOKEN);
    assert_eq!(log[0]["body"]["messages"][0]["content"], "a");
    assert_eq!(log[0]["authorized"], true);
    c.delete(format!("{}/_fake/requests", fm.base_url())).reply().await;
    assert!(fm.requests().is_empty());
}
