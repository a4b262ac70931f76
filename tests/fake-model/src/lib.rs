//! # bridle-fake-model: the scripted fake model server
//!
//! Speaks enough of the real wire protocols that the real runtimes work against it on
//! loopback: Anthropic Messages (`POST /v1/messages`, streaming and not, plus
//! `count_tokens`) for Claude Code, and OpenAI Responses (`POST /v1/responses`, streaming and
//! not) for codex and the openai-agents SDK; `GET /v1/models` for both.
//!
//! **Scenarios are keyed on the model name** the runtime sends (Bridle passes the agent's
//! model through), so concurrent tests never share a script: each test registers its own
//! scenario under a unique model name (see [`Scenario`]; a few built-ins like `fake-tool`,
//! `fake-fail-529-2` need no registration). Unknown models get the default reply.
//!
//! With a token configured, every `/v1/*` request must carry it in `x-api-key` or
//! `authorization: Bearer`, else 401 in the provider's error shape. Every request is recorded
//! (method, path, headers, body) for assertions.
//!
//! **Gateway-shaped base URLs.** AI gateways put the provider API under a path prefix
//! (Cloudflare AI Gateway `/client/v4/accounts/<id>/ai/v1`, LiteLLM `/v1`, an LLMProxy bridge
//! `/claude2codex/https://api.z.ai/anthropic/v1`). The fake serves its API under any prefix
//! below `/gw/`: `/gw/<prefix>/v1/<api path>` is `/v1/<api path>` (see [`api_path`]); the
//! request log keeps the full path.
//!
//! Control endpoints (no auth): `GET /_fake/requests[?model=M]`, `DELETE /_fake/requests`,
//! `POST /_fake/scenario` (`{"model": M, ...scenario}`), `PUT /_fake/scenarios/{model}`,
//! `DELETE /_fake/scenarios/{model}`, `GET /_fake/health`.

pub mod anthropic;
pub mod responses;
pub mod scenario;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use scenario::{Conversation, Failure, Reply, Scenario, ToolCall};

/// Server configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The credential every model request must carry (`x-api-key: T` or
    /// `authorization: Bearer T`). `None`: anything goes.
    pub token: Option<String>,
    /// The scenario for models with neither a registered nor a built-in scenario.
    pub default_scenario: Option<Scenario>,
}

/// One recorded request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordedRequest {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    /// The JSON body, or `{"_raw": "<lossy text>"}` when it is not JSON, or null when empty.
    pub body: Value,
    /// `model` from the body, if any.
    pub model: Option<String>,
    /// Whether the request carried the configured token (true when none is configured).
    pub authorized: bool,
    /// The status answered.
    pub status: u16,
}

impl RecordedRequest {
    /// A model call (`/v1/messages` or `/v1/responses`, not `count_tokens`).
    pub fn is_model_call(&self) -> bool {
        self.method == "POST" && matches!(endpoint(api_path(&self.path)), Endpoint::Messages | Endpoint::Responses)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// One server-sent event, with a pause before it.
#[derive(Clone, Debug, PartialEq)]
pub struct SseEvent {
    pub name: String,
    pub data: Value,
    pub delay_ms: u64,
    /// The reply's first text token: stamped when written (see
    /// [`FakeModel::first_tokens`]).
    pub first_token: bool,
}

impl SseEvent {
    pub fn new(name: &str, data: Value) -> SseEvent {
        SseEvent { name: name.to_owned(), data, delay_ms: 0, first_token: false }
    }

    fn encode(&self) -> Bytes {
        Bytes::from(format!("event: {}\ndata: {}\n\n", self.name, self.data))
    }
}

struct ScenarioState {
    scenario: Scenario,
    /// Injected failures served so far.
    failed: u32,
}

impl ScenarioState {
    fn new(scenario: Scenario) -> ScenarioState {
        ScenarioState { scenario, failed: 0 }
    }

    /// The failure for the next request, if any (consumes it).
    fn next_failure(&mut self) -> Option<Failure> {
        let mut i = self.failed;
        for f in &self.scenario.failures {
            if i < f.times {
                self.failed += 1;
                return Some(f.clone());
            }
            i -= f.times;
        }
        self.scenario.fail_always.clone()
    }
}

#[derive(Default)]
struct Shared {
    token: Mutex<Option<String>>,
    default_scenario: Mutex<Option<Scenario>>,
    scenarios: Mutex<HashMap<String, ScenarioState>>,
    log: Mutex<Vec<RecordedRequest>>,
    seq: AtomicU64,
    /// (model, wall-clock µs) of each streamed reply's first text token.
    first_tokens: Arc<Mutex<Vec<(String, i64)>>>,
}

/// A poisoned lock only means another handler panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn set_scenario(&self, model: &str, s: Scenario) {
        lock(&self.scenarios).insert(model.to_owned(), ScenarioState::new(s));
    }

    /// The plan for a model request: a consumed failure, or the scenario to answer with.
    fn plan(&self, model: &str) -> (Option<Failure>, Scenario) {
        let mut map = lock(&self.scenarios);
        let st = map.entry(model.to_owned()).or_insert_with(|| {
            let s = Scenario::builtin(model).or_else(|| lock(&self.default_scenario).clone()).unwrap_or_default();
            ScenarioState::new(s)
        });
        (st.next_failure(), st.scenario.clone())
    }
}

/// A running fake model server. Stops when dropped.
pub struct FakeModel {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeModel {
    /// Start on `127.0.0.1:0` on the current tokio runtime.
    pub async fn start(config: Config) -> std::io::Result<FakeModel> {
        FakeModel::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Start on `addr` on the current tokio runtime.
    pub async fn bind(addr: SocketAddr, config: Config) -> std::io::Result<FakeModel> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        *lock(&shared.token) = config.token;
        *lock(&shared.default_scenario) = config.default_scenario;
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            // Errors here mean the listener died; the tests will see connection errors.
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeModel { addr, shared, task: Some(task), runtime: None })
    }

    /// Start on `127.0.0.1:0` on a runtime of its own, for synchronous tests.
    pub fn start_blocking(config: Config) -> std::io::Result<FakeModel> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-model")
            .enable_all()
            .build()?;
        let mut fm = rt.block_on(FakeModel::start(config))?;
        fm.runtime = Some(rt);
        Ok(fm)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`: the OpenAI client's / codex provider's `base_url`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Register (or replace, resetting its failure counter) the scenario for a model name.
    pub fn set_scenario(&self, model: &str, scenario: Scenario) {
        self.shared.set_scenario(model, scenario);
    }

    pub fn set_token(&self, token: Option<String>) {
        *lock(&self.shared.token) = token;
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    /// The model calls (`/v1/messages`, `/v1/responses`) for one model name.
    pub fn model_requests(&self, model: &str) -> Vec<RecordedRequest> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.is_model_call() && r.model.as_deref() == Some(model))
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// When each streamed reply to `model` wrote its first text token, in
    /// wall-clock µs since the epoch, oldest first (for latency benchmarks).
    pub fn first_tokens(&self, model: &str) -> Vec<i64> {
        lock(&self.shared.first_tokens).iter().filter(|(m, _)| m == model).map(|(_, at)| *at).collect()
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The axum app (for embedding in another server).
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(handle)
        // Claude Code's requests carry the whole conversation and tool schemas.
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(shared)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Messages,
    CountTokens,
    Responses,
    Models,
    Other,
}

/// The API path of a request: `/gw/<prefix>/v1/<rest>` is `/v1/<rest>` (the prefix's last
/// `/v1` segment starts the API); any other path is its own.
pub fn api_path(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/gw") else { return path };
    let bytes = rest.as_bytes();
    let at = rest.rmatch_indices("/v1").map(|(i, _)| i).find(|&i| matches!(bytes.get(i + 3), None | Some(b'/')));
    match at {
        Some(i) => &rest[i..],
        None => path,
    }
}

fn endpoint(path: &str) -> Endpoint {
    let p = path.trim_end_matches('/');
    match p {
        "/v1/messages" => Endpoint::Messages,
        "/v1/messages/count_tokens" => Endpoint::CountTokens,
        "/v1/responses" | "/responses" => Endpoint::Responses,
        _ if p == "/v1/models" || p.starts_with("/v1/models/") => Endpoint::Models,
        _ => Endpoint::Other,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Provider {
    Anthropic,
    OpenAi,
}

fn provider(path: &str, headers: &HeaderMap) -> Provider {
    if path.starts_with("/v1/messages")
        || headers.contains_key("anthropic-version")
        || headers.contains_key("x-api-key")
    {
        Provider::Anthropic
    } else {
        Provider::OpenAi
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let full_path = parts.uri.path().to_owned();
    let path = api_path(&full_path).to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("unreadable body: {e}")),
    };
    if let Some(rest) = path.strip_prefix("/_fake/") {
        return control(&shared, &parts.method, rest, query.as_deref(), &bytes);
    }
    let json_body = !bytes.is_empty() && serde_json::from_slice::<Value>(&bytes).is_ok();
    let body = parse_body(&bytes);
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let authorized = authorized(&shared, &parts.headers);
    let model = body.get("model").and_then(Value::as_str).map(str::to_owned);
    let prov = provider(&path, &parts.headers);
    let request_id = format!("req_fake_{seq:06}");

    let (status, response) = if parts.method == Method::HEAD {
        (StatusCode::OK, StatusCode::OK.into_response())
    } else if parts.method == Method::GET && (path == "/" || path == "/v1" || path == "/v1/") {
        (StatusCode::OK, axum::Json(json!({"ok": true})).into_response())
    } else if endpoint(&path) != Endpoint::Other && !authorized {
        let s = StatusCode::UNAUTHORIZED;
        (s, error_response(prov, 401, None, &request_id, None))
    } else {
        let body = if json_body { &body } else { &Value::Null };
        let resp = route(&shared, &parts.method, &path, body, bytes.len(), prov, &request_id).await;
        (resp.status(), resp)
    };
    record(
        &shared,
        RecordedRequest {
            seq,
            method: parts.method.to_string(),
            path: full_path,
            query,
            headers: header_map(&parts.headers),
            body,
            model,
            authorized,
            status: status.as_u16(),
        },
    );
    let mut response = response;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        let name = if prov == Provider::Anthropic { "request-id" } else { "x-request-id" };
        response.headers_mut().insert(name, v);
    }
    response
}

async fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    body: &Value,
    body_len: usize,
    prov: Provider,
    request_id: &str,
) -> Response {
    let input_tokens = (body_len as u64 / 4).max(1);
    let ep = endpoint(path);
    match (method.clone(), ep) {
        (Method::POST, Endpoint::CountTokens) => axum::Json(json!({"input_tokens": input_tokens})).into_response(),
        (Method::GET, Endpoint::Models) => models(path),
        (Method::POST, Endpoint::Messages | Endpoint::Responses) => {
            if !body.is_object() {
                return error_response(prov, 400, Some("request body is not a JSON object"), request_id, None);
            }
            let conv = if ep == Endpoint::Messages {
                Conversation::from_messages(body)
            } else {
                Conversation::from_responses(body)
            };
            let (failure, scenario) = shared.plan(&conv.model);
            if let Some(f) = failure {
                return error_response(prov, f.status, f.message.as_deref(), request_id, Some(&f));
            }
            let resp = scenario::respond(&scenario, &conv);
            if resp.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(resp.delay_ms)).await;
            }
            let n = shared.seq.load(Ordering::Relaxed);
            if ep == Endpoint::Messages {
                let ids =
                    anthropic::Ids { message: format!("msg_fake_{n:06}"), tool_use: format!("toolu_fake_{n:06}") };
                if conv.stream {
                    sse(
                        anthropic::stream(&resp, &conv, &ids, input_tokens),
                        shared.first_tokens.clone(),
                        conv.model.clone(),
                    )
                } else {
                    axum::Json(anthropic::message(&resp, &conv, &ids, input_tokens)).into_response()
                }
            } else {
                let ids = responses::Ids {
                    response: format!("resp_fake_{n:06}"),
                    message: format!("msg_fake_{n:06}"),
                    reasoning: format!("rs_fake_{n:06}"),
                    function_call: format!("fc_fake_{n:06}"),
                    call: format!("call_fake_{n:06}"),
                };
                if conv.stream {
                    sse(
                        responses::stream(&resp, &conv, &ids, input_tokens),
                        shared.first_tokens.clone(),
                        conv.model.clone(),
                    )
                } else {
                    axum::Json(responses::response(&resp, &conv, &ids, input_tokens)).into_response()
                }
            }
        }
        _ => error_response(prov, 404, Some(&format!("no route for {method} {path}")), request_id, None),
    }
}

fn models(path: &str) -> Response {
    let ids = ["fake-text", "fake-tool", "fake-recall", "fake-slow"];
    let model = |id: &str| {
        json!({"id": id, "object": "model", "type": "model", "created": 0,
               "created_at": "2025-01-01T00:00:00Z", "owned_by": "bridle-fake", "display_name": id})
    };
    if let Some(id) = path.trim_end_matches('/').strip_prefix("/v1/models/") {
        return axum::Json(model(id)).into_response();
    }
    let data: Vec<Value> = ids.iter().map(|i| model(i)).collect();
    axum::Json(json!({
        "object": "list", "data": data, "has_more": false,
        "first_id": ids[0], "last_id": ids[ids.len() - 1],
        // codex's model list shape.
        "models": []
    }))
    .into_response()
}

/// Stream `events`; the first-token event is stamped into `stamps` under `model`.
fn sse(events: Vec<SseEvent>, stamps: Arc<Mutex<Vec<(String, i64)>>>, model: String) -> Response {
    let stream = async_stream::stream! {
        for e in events {
            if e.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(e.delay_ms)).await;
            }
            if e.first_token {
                lock(&stamps).push((model.clone(), now_us()));
            }
            yield Ok::<Bytes, Infallible>(e.encode());
        }
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn error_response(
    prov: Provider,
    status: u16,
    message: Option<&str>,
    request_id: &str,
    failure: Option<&Failure>,
) -> Response {
    let body = match prov {
        Provider::Anthropic => anthropic::error_body(status, message, request_id),
        Provider::OpenAi => responses::error_body(status, message),
    };
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (code, axum::Json(body)).into_response();
    if let Some(f) = failure {
        let h = resp.headers_mut();
        if let Some(secs) = f.retry_after {
            // Whole seconds in `retry-after` (what most clients parse), exact in `-ms`.
            let whole = secs.ceil().max(0.0) as u64;
            h.insert("retry-after", HeaderValue::from(whole));
            h.insert("retry-after-ms", HeaderValue::from((secs.max(0.0) * 1000.0) as u64));
        }
        if let Some(b) = f.should_retry {
            h.insert("x-should-retry", HeaderValue::from_static(if b { "true" } else { "false" }));
        }
    }
    resp
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (status, msg.to_owned()).into_response()
}

fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| json!({"_raw": String::from_utf8_lossy(bytes)}))
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = lock(&shared.token).clone() else {
        return true;
    };
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    key == Some(token.as_str()) || bearer.map(str::trim) == Some(token.as_str())
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        out.entry(k.as_str().to_owned())
            .and_modify(|cur| {
                cur.push_str(", ");
                cur.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

fn record(shared: &Shared, r: RecordedRequest) {
    lock(&shared.log).push(r);
}

/// `{"model": M, ...scenario}` (not serde's flatten: it would swallow unknown fields).
fn named_scenario(body: &[u8]) -> Result<(String, Scenario), String> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let model = v
        .as_object_mut()
        .and_then(|o| o.remove("model"))
        .and_then(|m| m.as_str().map(str::to_owned))
        .ok_or("`model` (a string) is required")?;
    let s = serde_json::from_value(v).map_err(|e| e.to_string())?;
    Ok((model, s))
}

fn control(shared: &Shared, method: &Method, rest: &str, query: Option<&str>, body: &[u8]) -> Response {
    let bad = |e: String| plain(StatusCode::BAD_REQUEST, &e);
    match (method.clone(), rest.trim_end_matches('/')) {
        (Method::GET, "health") => axum::Json(json!({"ok": true})).into_response(),
        (Method::GET, "requests") => {
            let model = query
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("model=")).map(|m| m.replace("%2F", "/")));
            let log = lock(&shared.log);
            let out: Vec<&RecordedRequest> =
                log.iter().filter(|r| model.is_none() || r.model.as_deref() == model.as_deref()).collect();
            axum::Json(json!(out)).into_response()
        }
        (Method::DELETE, "requests") => {
            lock(&shared.log).clear();
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::POST, "scenario") => match named_scenario(body) {
            Ok((model, scenario)) => {
                shared.set_scenario(&model, scenario);
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => bad(format!("bad scenario: {e}")),
        },
        (Method::PUT, p) if p.starts_with("scenarios/") => {
            let model = &p["scenarios/".len()..];
            match serde_json::from_slice::<Scenario>(body) {
                Ok(s) => {
                    shared.set_scenario(model, s);
                    StatusCode::NO_CONTENT.into_response()
                }
                Err(e) => bad(format!("bad scenario: {e}")),
            }
        }
        (Method::DELETE, p) if p.starts_with("scenarios/") => {
            lock(&shared.scenarios).remove(&p["scenarios/".len()..]);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => plain(StatusCode::NOT_FOUND, "unknown control endpoint"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::api_path;
    use crate::scenario::{self, Conversation, Scenario};
    use crate::{anthropic, responses};

    /// Every wire protocol streams the default reply's text in several chunks, and marks
    /// the first one (what runtimes preview, and benchmarks time).
    #[test]
    fn text_streams_in_several_chunks_on_every_protocol() {
        let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}],
                          "input": "hi"});
        let text = scenario::DEFAULT_TEXT;
        let conv = Conversation::from_messages(&body);
        let resp = scenario::respond(&Scenario::default(), &conv);
        let ids = anthropic::Ids { message: "msg".into(), tool_use: "tu".into() };
        let events = anthropic::stream(&resp, &conv, &ids, 1);
        let deltas: Vec<_> = events.iter().filter(|e| e.data["delta"]["type"] == "text_delta").collect();
        assert!(deltas.len() >= 3, "{deltas:?}");
        assert_eq!(deltas.iter().map(|e| e.data["delta"]["text"].as_str().unwrap()).collect::<String>(), text);
        assert!(deltas[0].first_token && events.iter().filter(|e| e.first_token).count() == 1);

        let conv = Conversation::from_responses(&body);
        let resp = scenario::respond(&Scenario::default(), &conv);
        let ids = responses::Ids {
            response: "r".into(),
            message: "m".into(),
            reasoning: "rs".into(),
            function_call: "fc".into(),
            call: "c".into(),
        };
        let events = responses::stream(&resp, &conv, &ids, 1);
        let deltas: Vec<_> = events.iter().filter(|e| e.name == "response.output_text.delta").collect();
        assert!(deltas.len() >= 3, "{deltas:?}");
        assert_eq!(deltas.iter().map(|e| e.data["delta"].as_str().unwrap()).collect::<String>(), text);
        assert!(deltas[0].first_token && events.iter().filter(|e| e.first_token).count() == 1);
    }

    #[test]
    fn gateway_prefixes_are_stripped_to_the_api_path() {
        for (path, want) in [
            ("/v1/messages", "/v1/messages"),
            ("/gw/anthropic-proxy/v1/messages", "/v1/messages"),
            ("/gw/anthropic-proxy//v1/messages/count_tokens", "/v1/messages/count_tokens"),
            ("/gw/client/v4/accounts/acc123/ai/v1/responses", "/v1/responses"),
            ("/gw/litellm/v1/responses", "/v1/responses"),
            ("/gw/claude2codex/https://api.z.ai/anthropic/v1/responses", "/v1/responses"),
            ("/gw/x/v1", "/v1"),
            // `/v1beta` is not a `/v1` segment; no API path: the request 404s as sent.
            ("/gw/x/v1beta/models", "/gw/x/v1beta/models"),
            ("/gw/no-api-here", "/gw/no-api-here"),
        ] {
            assert_eq!(api_path(path), want, "{path}");
        }
    }
}
