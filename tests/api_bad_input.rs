//! Bad input on every route: a table of malformed / invalid / unauthorized requests, each of
//! which must be a clear 4xx in Anthropic's error envelope with a `request-id` header; plus a
//! property test that random JSON bodies (and random bytes) POSTed to every create / update /
//! send route never produce a 5xx. Both run on SQLite and on PostgreSQL.
//!
//! Run: `cargo test -p bridle --test api_bad_input -- --nocapture`
//! (`BRIDLE_PROPTEST_CASES=N` changes the number of random bodies per backend.)

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestCaseError, TestRunner};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::{Api, BETA, Backend, Postgres, Server};

const MODEL: &str = "claude-sonnet-4-6";

// ---------------------------------------------------------------------------------------------
// a thin HTTP client
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Auth {
    Key,
    Bearer,
    NoKey,
    BadKey,
    BadBearer,
    NoBeta,
    WrongBeta,
}

#[derive(Clone, Debug)]
enum Body {
    None,
    Json(Value),
    /// Raw bytes with a content type (None = no content-type header).
    Raw(Vec<u8>, Option<&'static str>),
    /// An oversize JSON body of `len` bytes, sent over a raw socket (`chunked` = without
    /// content-length). The server may answer 413 and close before it has read everything; a
    /// client like hyper then reports the broken pipe and drops the response, so this one keeps
    /// reading after a failed write.
    Oversize {
        len: usize,
        chunked: bool,
    },
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        if s.len() > 600 {
            format!("{}… ({} bytes)", &s[..s.floor_char_boundary(600)], s.len())
        } else {
            s.to_string()
        }
    }
}

impl Api {
    async fn send(&self, method: Method, path: &str, auth: Auth, body: Body) -> Result<Resp, String> {
        if let Body::Oversize { len, chunked } = body {
            let addr = self.base.trim_start_matches("http://").to_string();
            let (key, path) = (self.key.clone(), path.to_string());
            return tokio::task::spawn_blocking(move || send_oversize(&addr, &method, &path, &key, len, chunked))
                .await
                .unwrap();
        }
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        rb = match auth {
            Auth::Key => rb.header("x-api-key", &self.key).header("anthropic-beta", BETA),
            Auth::Bearer => rb.header("authorization", format!("Bearer {}", self.key)).header("anthropic-beta", BETA),
            Auth::NoKey => rb.header("anthropic-beta", BETA),
            Auth::BadKey => rb.header("x-api-key", "sk-bridle-0000000000000000").header("anthropic-beta", BETA),
            Auth::BadBearer => rb.header("authorization", "Bearer not-a-key").header("anthropic-beta", BETA),
            Auth::NoBeta => rb.header("x-api-key", &self.key),
            Auth::WrongBeta => rb.header("x-api-key", &self.key).header("anthropic-beta", "prompt-caching-2024-07-31"),
        };
        rb = match body {
            Body::None => rb,
            Body::Json(v) => rb.json(&v),
            Body::Raw(bytes, ct) => {
                let rb = match ct {
                    Some(ct) => rb.header("content-type", ct),
                    None => rb,
                };
                rb.body(bytes)
            }
            Body::Oversize { .. } => unreachable!("sent by send_oversize"),
        };
        let resp = rb.send().await.map_err(|e| format!("transport error: {e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| format!("reading body: {e:?}"))?.to_vec();
        Ok(Resp { status, headers, body })
    }

    /// A request that must succeed; returns its JSON.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let b = body.map(Body::Json).unwrap_or(Body::None);
        let r = self.send(method.clone(), path, Auth::Key, b).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!((200..300).contains(&r.status), "{method} {path} → {}: {}", r.status, r.text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{method} {path}: bad JSON {e}"))
    }
}

fn send_oversize(
    addr: &str,
    method: &Method,
    path: &str,
    key: &str,
    len: usize,
    chunked: bool,
) -> Result<Resp, String> {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let framing = if chunked { "transfer-encoding: chunked".to_string() } else { format!("content-length: {len}") };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {key}\r\nanthropic-beta: {BETA}\r\n\
         content-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n"
    );
    let mut body = b"{\"name\":\"x\",\"model\":\"claude-sonnet-4-6\",\"system\":\"".to_vec();
    body.resize(len - 2, b'a');
    body.extend_from_slice(b"\"}");
    let write_all = |sock: &mut std::net::TcpStream| -> std::io::Result<()> {
        sock.write_all(head.as_bytes())?;
        for piece in body.chunks(1 << 20) {
            if chunked {
                sock.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                sock.write_all(piece)?;
                sock.write_all(b"\r\n")?;
            } else {
                sock.write_all(piece)?;
            }
        }
        if chunked {
            sock.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    };
    // A write error (the server answered and closed early) is fine: the answer is still queued.
    let _ = write_all(&mut sock);
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => return Err(format!("no response to an oversize body: {e}")),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").ok_or_else(|| format!("incomplete response: {text:?}"))?;
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let mut headers = HeaderMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':')
            && let (Ok(k), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()),
                reqwest::header::HeaderValue::from_str(v.trim()),
            )
        {
            headers.append(k, v);
        }
    }
    let body = if headers.get("transfer-encoding").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked")) {
        dechunk(rest.as_bytes())
    } else {
        rest.as_bytes().to_vec()
    };
    Ok(Resp { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < pos + 2 + size {
            break;
        }
        out.extend_from_slice(&b[pos + 2..pos + 2 + size]);
        b = &b[(pos + 4 + size).min(b.len())..];
    }
    out
}

/// The error envelope and request-id header; Err(reason) if anything is off.
fn check_envelope(r: &Resp, want_type: Option<&str>) -> Result<(), String> {
    let v: Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("error body is not JSON ({e}): {}", r.text()))?;
    if v["type"] != "error" {
        return Err(format!("envelope type is not \"error\": {}", r.text()));
    }
    let et = v["error"]["type"].as_str().ok_or_else(|| format!("no error.type: {}", r.text()))?;
    if let Some(w) = want_type
        && et != w
    {
        return Err(format!("error.type {et:?}, wanted {w:?}: {}", r.text()));
    }
    match v["error"]["message"].as_str() {
        Some(m) if !m.trim().is_empty() => {}
        _ => return Err(format!("empty or missing error.message: {}", r.text())),
    }
    let rid = v["request_id"].as_str().ok_or_else(|| format!("no request_id: {}", r.text()))?;
    if !rid.starts_with("req_") {
        return Err(format!("request_id {rid:?} is not req_…"));
    }
    match r.headers.get("request-id").and_then(|h| h.to_str().ok()) {
        Some(h) if h == rid => Ok(()),
        Some(h) => Err(format!("request-id header {h:?} differs from body {rid:?}")),
        None => Err("missing request-id header".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// fixtures
// ---------------------------------------------------------------------------------------------

struct Fx {
    env: String,
    env_archived: String,
    agent: String,
    agent_archived: String,
    vault: String,
    cred: String,
    session: String,
    session_archived: String,
    session_deleted: String,
    /// A real `next_page` token of the agents list.
    agents_page: String,
    /// An uploaded file, and a session holding it as a resource at `/workspace/held.txt`.
    file: String,
    session_with_file: String,
    resource: String,
    /// A memory store holding one memory, and an archived one.
    memory_store: String,
    memory_store_archived: String,
    memory: String,
}

async fn fixtures(api: &Api) -> Fx {
    let id = |v: Value| v["id"].as_str().expect("id").to_string();
    let env_body = json!({"name": "bad-input", "config": {"type": "cloud", "networking": {"type": "unrestricted"}}});
    let env = id(api.ok(Method::POST, "/v1/environments", Some(env_body.clone())).await);
    let env_archived = id(api.ok(Method::POST, "/v1/environments", Some(env_body)).await);
    api.ok(Method::POST, &format!("/v1/environments/{env_archived}/archive"), None).await;
    let agent_body = json!({"name": "bad-input", "model": MODEL});
    let agent = id(api.ok(Method::POST, "/v1/agents", Some(agent_body.clone())).await);
    let agent_archived = id(api.ok(Method::POST, "/v1/agents", Some(agent_body)).await);
    api.ok(Method::POST, &format!("/v1/agents/{agent_archived}/archive"), None).await;
    let vault = id(api.ok(Method::POST, "/v1/vaults", Some(json!({"display_name": "bad-input"}))).await);
    let cred = id(api
        .ok(
            Method::POST,
            &format!("/v1/vaults/{vault}/credentials"),
            Some(json!({"auth": {"type": "static_bearer", "token": "t0k3n", "mcp_server_url": "https://mcp.example.com"}})),
        )
        .await);
    let sess_body = json!({"agent": agent, "environment_id": env});
    let session = id(api.ok(Method::POST, "/v1/sessions", Some(sess_body.clone())).await);
    let session_archived = id(api.ok(Method::POST, "/v1/sessions", Some(sess_body.clone())).await);
    api.ok(Method::POST, &format!("/v1/sessions/{session_archived}/archive"), None).await;
    let session_deleted = id(api.ok(Method::POST, "/v1/sessions", Some(sess_body)).await);
    api.ok(Method::DELETE, &format!("/v1/sessions/{session_deleted}"), None).await;
    let agents = api.ok(Method::GET, "/v1/agents?include_archived=true&limit=1", None).await;
    let agents_page = agents["next_page"].as_str().expect("two agents make two pages").to_string();
    let up = api.send(Method::POST, "/v1/files", Auth::Key, multipart("file", "held.txt")).await.expect("upload");
    assert_eq!(up.status, 200, "upload: {}", up.text());
    let file = id(serde_json::from_slice(&up.body).expect("upload JSON"));
    let held = json!({"agent": agent, "environment_id": env,
                      "resources": [{"type": "file", "file_id": file, "mount_path": "/workspace/held.txt"}]});
    let with_file = api.ok(Method::POST, "/v1/sessions", Some(held)).await;
    let resource = with_file["resources"][0]["id"].as_str().expect("the resource's id").to_string();
    let session_with_file = id(with_file);
    let memory_store = id(api.ok(Method::POST, "/v1/memory_stores", Some(json!({"name": "bad-input"}))).await);
    let memory_store_archived = id(api.ok(Method::POST, "/v1/memory_stores", Some(json!({"name": "archived"}))).await);
    api.ok(Method::POST, &format!("/v1/memory_stores/{memory_store_archived}/archive"), None).await;
    let memory = id(api
        .ok(
            Method::POST,
            &format!("/v1/memory_stores/{memory_store}/memories"),
            Some(json!({"path": "/held.md", "content": "x"})),
        )
        .await);
    Fx {
        env,
        env_archived,
        agent,
        agent_archived,
        vault,
        cred,
        session,
        session_archived,
        session_deleted,
        agents_page,
        file,
        session_with_file,
        resource,
        memory_store,
        memory_store_archived,
        memory,
    }
}

// ---------------------------------------------------------------------------------------------
// the table
// ---------------------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    auth: Auth,
    body: Body,
    /// Acceptable statuses (more than one only where the API leaves the choice open).
    want: &'static [u16],
    want_type: Option<&'static str>,
    /// Text the error message must contain (checked only where set).
    want_msg: Option<&'static str>,
}

impl Case {
    fn msg(mut self, text: &'static str) -> Case {
        self.want_msg = Some(text);
        self
    }
}

fn case(name: &'static str, method: Method, path: impl Into<String>, body: Body, want: &'static [u16]) -> Case {
    let want_type = match want {
        [400] | [400, 409] | [400, 415] => Some("invalid_request_error"),
        [401] => Some("authentication_error"),
        [404] => Some("not_found_error"),
        [413] => Some("request_too_large"),
        _ => None,
    };
    Case { name, method, path: path.into(), auth: Auth::Key, body, want, want_type, want_msg: None }
}

/// A multipart/form-data body of one part named `name` with filename `filename`.
fn multipart(name: &str, filename: &str) -> Body {
    let body = format!(
        "--b0undary\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\r\nhello\r\n--b0undary--\r\n"
    );
    Body::Raw(body.into_bytes(), Some("multipart/form-data; boundary=b0undary"))
}

fn raw_json(s: &str) -> Body {
    Body::Raw(s.as_bytes().to_vec(), Some("application/json"))
}

fn msg(text: &str) -> Value {
    json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]})
}

fn table(fx: &Fx) -> Vec<Case> {
    use Method as M;
    let j = Body::Json;
    let s = &fx.session;
    let with_resources = |r: Value| json!({"agent": fx.agent, "environment_id": fx.env, "resources": r});
    let file_at = |p: &str| json!({"type": "file", "file_id": fx.file, "mount_path": p});
    let repo = json!({"type": "github_repository", "url": "https://github.com/o/app", "authorization_token": "t"});
    let repo_at = |p: &str| json!({"type": "github_repository", "url": "https://github.com/o/app", "mount_path": p});
    let coordinator = |m: Value| json!({"name": "coordinator", "model": MODEL, "multiagent": m});
    let primary = format!("sthr_{}", s.trim_start_matches("sesn_"));
    let mut t = vec![
        // malformed JSON
        case("malformed JSON", M::POST, "/v1/agents", raw_json("{\"name\": \"x\", \"model\":"), &[400]),
        case("trailing garbage", M::POST, "/v1/agents", raw_json("{\"name\":\"x\",\"model\":\"m\"} trailing"), &[400]),
        case("empty body on create", M::POST, "/v1/agents", raw_json(""), &[400]),
        case(
            "invalid UTF-8",
            M::POST,
            "/v1/vaults",
            Body::Raw(b"{\"display_name\":\"\xff\xfe\"}".to_vec(), Some("application/json")),
            &[400],
        ),
        case(
            "deeply nested JSON",
            M::POST,
            "/v1/environments",
            raw_json(&format!("{{\"name\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000))),
            &[400],
        ),
        case("JSON array instead of object", M::POST, "/v1/sessions", j(json!([1, 2, 3])), &[400]),
        case("JSON null body", M::POST, "/v1/vaults", j(Value::Null), &[400]),
        case(
            "non-JSON content type",
            M::POST,
            "/v1/agents",
            Body::Raw(b"name=x&model=y".to_vec(), Some("application/x-www-form-urlencoded")),
            &[400, 415],
        ),
        case(
            "events: malformed JSON",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            raw_json("{\"events\": [ {\"type\": \"user.message\", "),
            &[400],
        ),
        // wrong types
        case("agent name is a number", M::POST, "/v1/agents", j(json!({"name": 5, "model": MODEL})), &[400]),
        case("agent model is a number", M::POST, "/v1/agents", j(json!({"name": "x", "model": 42})), &[400]),
        case(
            "agent tools is an object",
            M::POST,
            "/v1/agents",
            j(json!({"name": "x", "model": MODEL, "tools": {"type": "custom"}})),
            &[400],
        ),
        case(
            "agent metadata value is a number",
            M::POST,
            "/v1/agents",
            j(json!({"name": "x", "model": MODEL, "metadata": {"a": 1}})),
            &[400],
        ),
        case(
            "agent update version is a string",
            M::POST,
            format!("/v1/agents/{}", fx.agent),
            j(json!({"version": "one", "name": "y"})),
            &[400],
        ),
        case(
            "environment networking type unknown",
            M::POST,
            "/v1/environments",
            j(json!({"name": "x", "config": {"type": "cloud", "networking": {"type": "wide-open"}}})),
            &[400],
        ),
        case(
            "environment config type unknown",
            M::POST,
            "/v1/environments",
            j(json!({"name": "x", "config": {"type": "moon"}})),
            &[400],
        ),
        case(
            "environment packages not lists",
            M::POST,
            "/v1/environments",
            j(json!({"name": "x", "config": {"type": "cloud", "packages": {"pip": "requests"}}})),
            &[400],
        ),
        case(
            "limited networking hosts not a list",
            M::POST,
            "/v1/environments",
            j(
                json!({"name": "x", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": "example.com"}}}),
            ),
            &[400],
        ),
        case(
            "session vault_ids is a string",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.agent, "environment_id": fx.env, "vault_ids": fx.vault})),
            &[400],
        ),
        case(
            "session agent is a number",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": 7, "environment_id": fx.env})),
            &[400],
        ),
        case(
            "session agent ref with unknown type",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": {"type": "robot", "id": fx.agent}, "environment_id": fx.env})),
            &[400],
        ),
        case("session title is an object", M::POST, format!("/v1/sessions/{s}"), j(json!({"title": {"x": 1}})), &[400]),
        case(
            "events is not a list",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": {"type": "user.message"}})),
            &[400],
        ),
        case(
            "user.message content is a number",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "user.message", "content": 3}]})),
            &[400],
        )
        .msg("events[0].content: must be a list"),
        case(
            "custom_tool_result content is a string",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_x", "content": "42"}]})),
            &[400],
        )
        .msg("events[0].content: must be a list"),
        case(
            "tool_confirmation result unknown",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "user.tool_confirmation", "tool_use_id": "sevt_x", "result": "maybe"}]})),
            &[400],
        ),
        case(
            "credential auth type unknown",
            M::POST,
            format!("/v1/vaults/{}/credentials", fx.vault),
            j(json!({"auth": {"type": "password", "password": "hunter2"}})),
            &[400],
        ),
        case(
            "credential token is a number",
            M::POST,
            format!("/v1/vaults/{}/credentials", fx.vault),
            j(json!({"auth": {"type": "static_bearer", "token": 12345, "mcp_server_url": "https://x.example.com"}})),
            &[400],
        ),
        case("vault display_name is a list", M::POST, "/v1/vaults", j(json!({"display_name": ["v"]})), &[400]),
        // missing fields
        case("agent without name", M::POST, "/v1/agents", j(json!({"model": MODEL})), &[400]),
        case("agent without model", M::POST, "/v1/agents", j(json!({"name": "x"})), &[400]),
        case("agent with empty name", M::POST, "/v1/agents", j(json!({"name": "", "model": MODEL})), &[400]),
        case("environment without name", M::POST, "/v1/environments", j(json!({"config": {"type": "cloud"}})), &[400]),
        case("session without agent", M::POST, "/v1/sessions", j(json!({"environment_id": fx.env})), &[400]),
        case("session without environment", M::POST, "/v1/sessions", j(json!({"agent": fx.agent})), &[400]),
        case("vault without display_name", M::POST, "/v1/vaults", j(json!({})), &[400]),
        case(
            "credential without auth",
            M::POST,
            format!("/v1/vaults/{}/credentials", fx.vault),
            j(json!({"display_name": "c"})),
            &[400],
        ),
        case(
            "static_bearer without token",
            M::POST,
            format!("/v1/vaults/{}/credentials", fx.vault),
            j(json!({"auth": {"type": "static_bearer", "mcp_server_url": "https://x.example.com"}})),
            &[400],
        ),
        case(
            "environment_variable without secret_value",
            M::POST,
            format!("/v1/vaults/{}/credentials", fx.vault),
            j(
                json!({"auth": {"type": "environment_variable", "secret_name": "X", "networking": {"type": "unrestricted"}}}),
            ),
            &[400],
        ),
        case("events without events", M::POST, format!("/v1/sessions/{s}/events"), j(json!({})), &[400]),
        case(
            "event without type",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"content": [{"type": "text", "text": "x"}]}]})),
            &[400],
        ),
        case(
            "user.message without content",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "user.message"}]})),
            &[400],
        ),
        case(
            "tool_confirmation without tool_use_id",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "user.tool_confirmation", "result": "allow"}]})),
            &[400],
        ),
        case(
            "custom_tool_result without custom_tool_use_id",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "user.custom_tool_result", "content": []}]})),
            &[400],
        ),
        // documented limits
        case(
            "agent metadata over 16 pairs",
            M::POST,
            "/v1/agents",
            j(
                json!({"name": "x", "model": MODEL, "metadata": (0..17).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            ),
            &[400],
        ),
        case(
            "agent metadata key over 64 chars",
            M::POST,
            "/v1/agents",
            j(json!({"name": "x", "model": MODEL, "metadata": {"k".repeat(65): "v"}})),
            &[400],
        ),
        case(
            "agent metadata value over 512 chars",
            M::POST,
            "/v1/agents",
            j(json!({"name": "x", "model": MODEL, "metadata": {"k": "v".repeat(513)}})),
            &[400],
        ),
        case(
            "agent name over 256 chars",
            M::POST,
            "/v1/agents",
            j(json!({"name": "n".repeat(257), "model": MODEL})),
            &[400],
        ),
        case(
            "vault display_name over 255 chars",
            M::POST,
            "/v1/vaults",
            j(json!({"display_name": "n".repeat(256)})),
            &[400],
        ),
        case("list limit not a number", M::GET, "/v1/agents?limit=lots", Body::None, &[400]),
        case("list limit negative", M::GET, "/v1/sessions?limit=-1", Body::None, &[400]),
        case("list page cursor garbage", M::GET, "/v1/agents?page=%%%not-a-cursor", Body::None, &[400]),
        case("list page cursor forged", M::GET, "/v1/environments?page=eyJmb28iOiJiYXIifQ", Body::None, &[400]),
        case("sessions order unknown", M::GET, "/v1/sessions?order=sideways", Body::None, &[400]),
        case(
            "agents page token on sessions",
            M::GET,
            format!("/v1/sessions?page={}", fx.agents_page),
            Body::None,
            &[400],
        )
        .msg("another list"),
        case(
            "agents page token on events",
            M::GET,
            format!("/v1/sessions/{s}/events?order=desc&page={}", fx.agents_page),
            Body::None,
            &[400],
        )
        .msg("another list"),
        case("sessions statuses unknown", M::GET, "/v1/sessions?statuses[]=exploding", Body::None, &[400])
            .msg("statuses[]: unknown status `exploding`"),
        case(
            "events types unknown",
            M::GET,
            format!("/v1/sessions/{s}/events?types[]=agent.message&types[]=bogus"),
            Body::None,
            &[400],
        )
        .msg("types[]: unknown event type `bogus`"),
        case("events order unknown", M::GET, format!("/v1/sessions/{s}/events?order=up"), Body::None, &[400]),
        case(
            "events created_at not a date",
            M::GET,
            format!("/v1/sessions/{s}/events?created_at[gte]=yesterday"),
            Body::None,
            &[400],
        ),
        case("include_archived not a bool", M::GET, "/v1/vaults?include_archived=perhaps", Body::None, &[400]),
        case("agent version 0", M::GET, format!("/v1/agents/{}?version=0", fx.agent), Body::None, &[400]),
        case("agent version not a number", M::GET, format!("/v1/agents/{}?version=abc", fx.agent), Body::None, &[400]),
        // unknown ids
        case("unknown agent", M::GET, "/v1/agents/agent_011CZkYpogX7uDKUyvBTophP", Body::None, &[404]),
        case("unknown agent version", M::GET, format!("/v1/agents/{}?version=999", fx.agent), Body::None, &[404]),
        case(
            "unknown agent update",
            M::POST,
            "/v1/agents/agent_011CZkYpogX7uDKUyvBTophP",
            j(json!({"name": "x"})),
            &[404],
        ),
        case("unknown agent archive", M::POST, "/v1/agents/agent_011CZkYpogX7uDKUyvBTophP/archive", Body::None, &[404]),
        case(
            "unknown agent versions",
            M::GET,
            "/v1/agents/agent_011CZkYpogX7uDKUyvBTophP/versions",
            Body::None,
            &[404],
        ),
        case("unknown environment", M::GET, "/v1/environments/env_011CZkZ9X2dpNyB7HsEFoRfW", Body::None, &[404]),
        case(
            "unknown environment delete",
            M::DELETE,
            "/v1/environments/env_011CZkZ9X2dpNyB7HsEFoRfW",
            Body::None,
            &[404],
        ),
        case("unknown session", M::GET, "/v1/sessions/sesn_011CZkZAtmR3yMPDzynEDxu7", Body::None, &[404]),
        case(
            "unknown session events",
            M::POST,
            "/v1/sessions/sesn_011CZkZAtmR3yMPDzynEDxu7/events",
            j(msg("x")),
            &[404],
        ),
        case(
            "unknown session stream",
            M::GET,
            "/v1/sessions/sesn_011CZkZAtmR3yMPDzynEDxu7/events/stream",
            Body::None,
            &[404],
        ),
        case("unknown vault", M::GET, "/v1/vaults/vlt_011CZkZDLs7fYzm1hXNPeRjv", Body::None, &[404]),
        case(
            "unknown credential",
            M::GET,
            format!("/v1/vaults/{}/credentials/vcrd_011CZkZEMt8gZan2iYOQfSkw", fx.vault),
            Body::None,
            &[404],
        ),
        case(
            "credential under the wrong vault",
            M::GET,
            format!("/v1/vaults/vlt_011CZkZDLs7fYzm1hXNPeRjv/credentials/{}", fx.cred),
            Body::None,
            &[404],
        ),
        case(
            "session with unknown agent",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": "agent_011CZkYpogX7uDKUyvBTophP", "environment_id": fx.env})),
            &[400, 404],
        ),
        case(
            "session with unknown environment",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.agent, "environment_id": "env_011CZkZ9X2dpNyB7HsEFoRfW"})),
            &[400, 404],
        ),
        case(
            "session with unknown vault",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.agent, "environment_id": fx.env, "vault_ids": ["vlt_011CZkZDLs7fYzm1hXNPeRjv"]})),
            &[400, 404],
        ),
        // wrong id prefixes
        case("agent route with env id", M::GET, format!("/v1/agents/{}", fx.env), Body::None, &[400, 404]),
        case(
            "environment route with agent id",
            M::GET,
            format!("/v1/environments/{}", fx.agent),
            Body::None,
            &[400, 404],
        ),
        case("session route with vault id", M::GET, format!("/v1/sessions/{}", fx.vault), Body::None, &[400, 404]),
        case("vault route with session id", M::GET, format!("/v1/vaults/{s}"), Body::None, &[400, 404]),
        case(
            "credential route with vault id",
            M::GET,
            format!("/v1/vaults/{0}/credentials/{0}", fx.vault),
            Body::None,
            &[400, 404],
        ),
        case("events of an agent id", M::POST, format!("/v1/sessions/{}/events", fx.agent), j(msg("x")), &[400, 404]),
        case(
            "session with env id as agent",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.env, "environment_id": fx.env})),
            &[400, 404],
        ),
        case(
            "session with agent id as environment",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.agent, "environment_id": fx.agent})),
            &[400, 404],
        ),
        // budgets: this server prices no model, and a budget is never added after create
        case(
            "budget on a model without a list price",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.agent, "environment_id": fx.env,
                     "budget": {"type": "limit", "max_list_cost": {"amount": "2500", "currency": "USD"}}})),
            &[400],
        )
        .msg("model_not_budgetable"),
        case(
            "budget added to a session created without one",
            M::POST,
            format!("/v1/sessions/{}", fx.session),
            j(json!({"budget": {"type": "limit", "max_list_cost": {"amount": "2500", "currency": "USD"}}})),
            &[400],
        )
        .msg("budget_create_only"),
        case(
            "budget in a currency other than USD",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.agent, "environment_id": fx.env,
                     "budget": {"type": "limit", "max_list_cost": {"amount": "2500", "currency": "EUR"}}})),
            &[400],
        ),
        case("id with path junk", M::GET, "/v1/agents/agent_..%2F..%2Fetc", Body::None, &[400, 404]),
        // archived resources
        case(
            "session with archived agent",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.agent_archived, "environment_id": fx.env})),
            &[400, 409],
        ),
        case(
            "session with archived environment",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.agent, "environment_id": fx.env_archived})),
            &[400, 409],
        ),
        case(
            "events on archived session",
            M::POST,
            format!("/v1/sessions/{}/events", fx.session_archived),
            j(msg("x")),
            &[409],
        ),
        case(
            "update archived agent",
            M::POST,
            format!("/v1/agents/{}", fx.agent_archived),
            j(json!({"name": "again"})),
            &[400, 409],
        ),
        // unknown / unsupported event types
        case(
            "unknown event type",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "user.teleport"}]})),
            &[400],
        ),
        case(
            "agent event from a client",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "agent.message", "content": [{"type": "text", "text": "x"}]}]})),
            &[400],
        ),
        case(
            "session status event from a client",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "session.status_idle"}]})),
            &[400],
        ),
        case(
            "user.define_outcome past the iteration limit",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(
                json!({"events": [{"type": "user.define_outcome", "description": "d", "rubric": {"type": "text", "content": "r"}, "max_iterations": 21}]}),
            ),
            &[400],
        ),
        case(
            "unknown content block type",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "user.message", "content": [{"type": "hologram"}]}]})),
            &[400],
        ),
        // deleted session
        case(
            "events on deleted session",
            M::POST,
            format!("/v1/sessions/{}/events", fx.session_deleted),
            j(msg("x")),
            &[404],
        ),
        case(
            "list events of deleted session",
            M::GET,
            format!("/v1/sessions/{}/events", fx.session_deleted),
            Body::None,
            &[404],
        ),
        case(
            "stream of deleted session",
            M::GET,
            format!("/v1/sessions/{}/events/stream", fx.session_deleted),
            Body::None,
            &[404],
        ),
        case("retrieve deleted session", M::GET, format!("/v1/sessions/{}", fx.session_deleted), Body::None, &[404]),
        case(
            "archive deleted session",
            M::POST,
            format!("/v1/sessions/{}/archive", fx.session_deleted),
            Body::None,
            &[404],
        ),
        // harness selection / reserved metadata
        case(
            "reserved key in session metadata",
            M::POST,
            "/v1/sessions",
            j(
                json!({"agent": fx.agent, "environment_id": fx.env, "metadata": {"sandbox0.managed_agents.engine": "codex"}}),
            ),
            &[400],
        ),
        case(
            "reserved key in agent metadata",
            M::POST,
            "/v1/agents",
            j(json!({"name": "a", "model": "claude-sonnet-4-6", "metadata": {"sandbox0.managed_agents.engine": "codex"}})),
            &[400],
        )
        .msg("only supported on vault metadata"),
        case(
            "reserved key in agent metadata update",
            M::POST,
            format!("/v1/agents/{}", fx.agent),
            j(json!({"version": 1, "metadata": {"sandbox0.managed_agents.role": "llm"}})),
            &[400],
        )
        .msg("only supported on vault metadata"),
        case(
            "reserved key in environment metadata",
            M::POST,
            "/v1/environments",
            j(json!({"name": "e", "metadata": {"sandbox0.managed_agents.engine": "codex"}})),
            &[400],
        )
        .msg("only supported on vault metadata"),
        case(
            "reserved key in environment metadata update",
            M::POST,
            format!("/v1/environments/{}", fx.env),
            j(json!({"metadata": {"sandbox0.managed_agents.llm_base_url": "http://x"}})),
            &[400],
        )
        .msg("only supported on vault metadata"),
        case(
            "reserved key in credential metadata",
            M::POST,
            format!("/v1/vaults/{}/credentials", fx.vault),
            j(json!({"auth": {"type": "static_bearer", "token": "t"}, "metadata": {"sandbox0.managed_agents.role": "llm"}})),
            &[400],
        )
        .msg("only supported on vault metadata"),
        case(
            "reserved key in credential metadata update",
            M::POST,
            format!("/v1/vaults/{}/credentials/{}", fx.vault, fx.cred),
            j(json!({"metadata": {"sandbox0.managed_agents.engine": "codex"}})),
            &[400],
        )
        .msg("only supported on vault metadata"),
        // packages for a manager this server cannot install: refused, never stored unused
        case(
            "environment packages this server cannot install",
            M::POST,
            "/v1/environments",
            j(json!({"name": "e", "config": {"type": "cloud", "packages": {"go": ["golang.org/x/tools/cmd/stringer"]}}})),
            &[400],
        )
        .msg("config.packages.go: this server cannot install go packages"),
        case(
            "environment update with packages this server cannot install",
            M::POST,
            format!("/v1/environments/{}", fx.env),
            j(json!({"config": {"type": "cloud", "packages": {"gem": ["rake"]}}})),
            &[400],
        )
        .msg("config.packages.gem: this server cannot install gem packages"),
        case(
            "environment package that looks like an option",
            M::POST,
            "/v1/environments",
            j(json!({"name": "e", "config": {"type": "cloud", "packages": {"pip": ["--index-url=http://x"]}}})),
            &[400],
        )
        .msg("config.packages.pip[0]"),
        // Bridle's environment keys: off by default (sessions.sandbox_disk_bytes_max = 0)
        case(
            "environment disk quota while the operator has not enabled it",
            M::POST,
            "/v1/environments",
            j(json!({"name": "e", "metadata": {"bridle.sandbox_disk_bytes": "33554432"}})),
            &[400],
        )
        .msg("metadata.bridle.sandbox_disk_bytes: the operator has not enabled"),
        case(
            "environment disk quota update while the operator has not enabled it",
            M::POST,
            format!("/v1/environments/{}", fx.env),
            j(json!({"metadata": {"bridle.sandbox_disk_bytes": "33554432"}})),
            &[400],
        )
        .msg("sessions.sandbox_disk_bytes_max is 0"),
        case(
            "unknown Bridle key in environment metadata",
            M::POST,
            "/v1/environments",
            j(json!({"name": "e", "metadata": {"bridle.sandbox_disk_byte": "33554432"}})),
            &[400],
        )
        .msg("unknown Bridle environment key"),
        case(
            "environment disk quota key in session metadata",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.agent, "environment_id": fx.env, "metadata": {"bridle.sandbox_disk_bytes": "33554432"}})),
            &[400],
        )
        .msg("only supported on environment metadata"),
        // The per-environment sandbox driver: off by default (sessions.sandbox_drivers_allowed = [])
        case(
            "environment sandbox driver while the operator has not enabled it",
            M::POST,
            "/v1/environments",
            j(json!({"name": "e", "metadata": {"bridle.sandbox_driver": "gvisor"}})),
            &[400],
        )
        .msg("metadata.bridle.sandbox_driver: the operator has not enabled per-environment sandbox drivers"),
        case(
            "environment sandbox driver update while the operator has not enabled it",
            M::POST,
            format!("/v1/environments/{}", fx.env),
            j(json!({"metadata": {"bridle.sandbox_driver": "bubblewrap"}})),
            &[400],
        )
        .msg("sessions.sandbox_drivers_allowed is empty"),
        case(
            "environment sandbox driver key in session metadata",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.agent, "environment_id": fx.env, "metadata": {"bridle.sandbox_driver": "gvisor"}})),
            &[400],
        )
        .msg("only supported on environment metadata"),
        case(
            "environment disk quota key in agent metadata",
            M::POST,
            "/v1/agents",
            j(json!({"name": "a", "model": MODEL, "metadata": {"bridle.sandbox_disk_bytes": "33554432"}})),
            &[400],
        )
        .msg("only supported on environment metadata"),
        case(
            "session update vault_ids",
            M::POST,
            format!("/v1/sessions/{s}"),
            j(json!({"vault_ids": [fx.vault]})),
            &[400],
        ),
        // files
        case("files: JSON instead of multipart", M::POST, "/v1/files", j(json!({"file": "x"})), &[400])
            .msg("multipart/form-data"),
        case("files: multipart without a boundary", M::POST, "/v1/files", Body::Raw(b"x".to_vec(), Some("multipart/form-data")), &[400]),
        case(
            "files: no part at all",
            M::POST,
            "/v1/files",
            Body::Raw(b"--b0undary--\r\n".to_vec(), Some("multipart/form-data; boundary=b0undary")),
            &[400],
        )
        .msg("no `file` part"),
        case("files: a part of another name", M::POST, "/v1/files", multipart("document", "a.txt"), &[400])
            .msg("unknown multipart part `document`"),
        case("files: control character in the filename", M::POST, "/v1/files", multipart("file", "a\tb.txt"), &[400])
            .msg("control characters"),
        case("files: filename too long", M::POST, "/v1/files", multipart("file", &"n".repeat(300)), &[400]).msg("255"),
        case("files: unknown query parameter", M::GET, "/v1/files?order=asc", Body::None, &[400]).msg("`order`"),
        case("files: limit above 1000", M::GET, "/v1/files?limit=1001", Body::None, &[400]),
        case("files: ids with limit", M::GET, "/v1/files?ids[]=file_01A&limit=2", Body::None, &[400]),
        case("files: page token without its prefix", M::GET, format!("/v1/files?page={}", fx.agents_page), Body::None, &[400]),
        case("files: unknown file", M::GET, "/v1/files/file_01NOTTHERE", Body::None, &[404]),
        case("files: id of another kind", M::GET, format!("/v1/files/{}", fx.agent), Body::None, &[404]).msg("file_"),
        case("files: download of an unknown file", M::GET, "/v1/files/file_01NOTTHERE/content", Body::None, &[404]),
        case("files: delete of an unknown file", M::DELETE, "/v1/files/file_01NOTTHERE", Body::None, &[404]),
        case("files: PUT is not a verb here", M::PUT, "/v1/files", Body::None, &[404, 405]),
        // session resources, at create and through /resources: each refused with nothing stored
        // (run_table checks that no session was created and no resource added)
        case("resources: unknown file at create", M::POST, "/v1/sessions", j(with_resources(json!([{"type": "file", "file_id": "file_01NOTTHERE"}]))), &[400])
            .msg("resources[0].file_id: file `file_01NOTTHERE` not found"),
        case("resources: not a file id", M::POST, "/v1/sessions", j(with_resources(json!([{"type": "file", "file_id": fx.agent}]))), &[400])
            .msg("is not a file id"),
        case("resources: mount path outside the roots", M::POST, "/v1/sessions", j(with_resources(json!([file_at("/etc/passwd")]))), &[400])
            .msg("outside the allowed directories"),
        case("resources: mount path with ..", M::POST, "/v1/sessions", j(with_resources(json!([file_at("/workspace/../etc/x")]))), &[400])
            .msg("no `..`"),
        case("resources: relative mount path", M::POST, "/v1/sessions", j(with_resources(json!([file_at("workspace/x")]))), &[400])
            .msg("absolute path"),
        case("resources: in the outputs directory", M::POST, "/v1/sessions", j(with_resources(json!([file_at("/mnt/session/outputs/x")]))), &[400])
            .msg("outside the allowed directories"),
        case("resources: two on one path", M::POST, "/v1/sessions", j(with_resources(json!([file_at("/workspace/a"), file_at("/workspace/a")]))), &[400])
            .msg("resources[1].mount_path: `/workspace/a` collides"),
        case("resources: one inside another", M::POST, "/v1/sessions", j(with_resources(json!([file_at("/workspace/a"), file_at("/workspace/a/b")]))), &[400])
            .msg("collides"),
        case("resources: memory store", M::POST, "/v1/sessions", j(with_resources(json!([{"type": "memory_store", "memory_store_id": "memstore_01A"}]))), &[400])
            .msg("cannot be mounted"),
        case("resources: unknown type", M::POST, "/v1/sessions", j(with_resources(json!([{"type": "url", "url": "https://x"}]))), &[400])
            .msg("unknown resource type `url`"),
        case("resources: unknown field", M::POST, "/v1/sessions", j(with_resources(json!([{"type": "file", "file_id": fx.file, "read_only": true}]))), &[400])
            .msg("resources[0].read_only: unknown field"),
        case("resources: add an unknown file", M::POST, format!("/v1/sessions/{}/resources", fx.session_with_file), j(json!({"type": "file", "file_id": "file_01NOTTHERE"})), &[400])
            .msg("file_id: file `file_01NOTTHERE` not found"),
        case("resources: add on a taken path", M::POST, format!("/v1/sessions/{}/resources", fx.session_with_file), j(file_at("/workspace/held.txt")), &[400])
            .msg("mount_path: `/workspace/held.txt` collides"),
        case("resources: add a path with ..", M::POST, format!("/v1/sessions/{}/resources", fx.session_with_file), j(file_at("/mnt/session/uploads/../../x")), &[400])
            .msg("no `..`"),
        case("resources: add a memory store", M::POST, format!("/v1/sessions/{}/resources", fx.session_with_file), j(json!({"type": "memory_store", "memory_store_id": "memstore_01A"})), &[400])
            .msg("cannot be mounted"),
        case("repository: missing url", M::POST, "/v1/sessions", j(with_resources(json!([{"type": "github_repository", "authorization_token": "t"}]))), &[400])
            .msg("resources[0].url: required"),
        case("repository: mount path outside the roots", M::POST, "/v1/sessions", j(with_resources(json!([repo_at("/etc/app")]))), &[400])
            .msg("outside the allowed directories"),
        case("repository: mount path with ..", M::POST, "/v1/sessions", j(with_resources(json!([repo_at("/workspace/../root/app")]))), &[400])
            .msg("no `..`"),
        case("repository: on a file's path", M::POST, "/v1/sessions", j(with_resources(json!([file_at("/workspace/app"), repo_at("/workspace/app")]))), &[400])
            .msg("resources[1].mount_path: `/workspace/app` collides"),
        case("repository: two on the default path", M::POST, "/v1/sessions", j(with_resources(json!([repo, repo]))), &[400])
            .msg("resources[1].mount_path: `/workspace/app` collides"),
        case("repository: credentials in the url", M::POST, "/v1/sessions", j(with_resources(json!([{"type": "github_repository", "url": "https://x:tok@github.com/o/app"}]))), &[400])
            .msg("must not carry credentials"),
        case("repository: not an https url", M::POST, "/v1/sessions", j(with_resources(json!([{"type": "github_repository", "url": "git@github.com:o/app.git"}]))), &[400])
            .msg("resources[0].url"),
        case("repository: a short commit sha", M::POST, "/v1/sessions", j(with_resources(json!([{"type": "github_repository", "url": "https://github.com/o/app", "checkout": {"type": "commit", "sha": "abc123"}}]))), &[400])
            .msg("must be a full commit SHA"),
        case("repository: a token with a line break", M::POST, "/v1/sessions", j(with_resources(json!([{"type": "github_repository", "url": "https://github.com/o/app", "authorization_token": "a\r\nx-evil: 1"}]))), &[400])
            .msg("authorization_token: must be printable ASCII"),
        case("repository: add on a taken path", M::POST, format!("/v1/sessions/{}/resources", fx.session_with_file), j(repo_at("/workspace/held.txt")), &[400])
            .msg("mount_path: `/workspace/held.txt` collides"),
        case("repository: add without a url", M::POST, format!("/v1/sessions/{}/resources", fx.session_with_file), j(json!({"type": "github_repository"})), &[400])
            .msg("url: required"),
        case("repository: rotate to an empty token", M::POST, format!("/v1/sessions/{}/resources/{}", fx.session_with_file, fx.resource), j(json!({"authorization_token": ""})), &[400])
            .msg("authorization_token: must not be empty"),
        case("resources: add to an unknown session", M::POST, "/v1/sessions/sesn_01NOTTHERE/resources", j(file_at("/workspace/x")), &[404]),
        case("resources: token for a file resource", M::POST, format!("/v1/sessions/{}/resources/{}", fx.session_with_file, fx.resource), j(json!({"authorization_token": "t"})), &[400])
            .msg("only `github_repository` resources take a token"),
        case("resources: update without a token", M::POST, format!("/v1/sessions/{}/resources/{}", fx.session_with_file, fx.resource), j(json!({})), &[400]),
        case("resources: unknown resource", M::GET, format!("/v1/sessions/{}/resources/sesrsc_01NOTTHERE", fx.session_with_file), Body::None, &[404]),
        case("resources: delete an unknown resource", M::DELETE, format!("/v1/sessions/{}/resources/sesrsc_01NOTTHERE", fx.session_with_file), Body::None, &[404]),
        case("resources: id of another kind", M::GET, format!("/v1/sessions/{}/resources/{}", fx.session_with_file, fx.file), Body::None, &[404]),
        case("resources: bad page token", M::GET, format!("/v1/sessions/{}/resources?page=x", fx.session_with_file), Body::None, &[400]),
        case("resources: limit 0", M::GET, format!("/v1/sessions/{}/resources?limit=0", fx.session_with_file), Body::None, &[400]),
        // file sources in message content name a file that exists
        case(
            "message: document of an unknown file",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "user.message", "content": [{"type": "document", "source": {"type": "file", "file_id": "file_01NOTTHERE"}}]}]})),
            &[400],
        )
        .msg("events[0].content[0].source.file_id: file `file_01NOTTHERE` not found"),
        case(
            "message: image of an unknown file at create",
            M::POST,
            "/v1/sessions",
            j(json!({"agent": fx.agent, "environment_id": fx.env, "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "see"}, {"type": "image", "source": {"type": "file", "file_id": "file_01NOTTHERE"}}]}]})),
            &[400],
        )
        .msg("initial_events[0].content[1].source.file_id"),
        // multiagent: a coordinator roster, checked; what Bridle does not run is named
        case("multiagent: multiagent_20261001", M::POST, "/v1/agents", j(coordinator(json!({"type": "multiagent_20261001"}))), &[400])
            .msg("`multiagent_20261001`"),
        case("multiagent: unknown type", M::POST, "/v1/agents", j(coordinator(json!({"type": "swarm", "agents": [fx.agent]}))), &[400])
            .msg("multiagent.type: unknown type `swarm`"),
        case("multiagent: unknown field", M::POST, "/v1/agents", j(coordinator(json!({"type": "coordinator", "agents": [fx.agent], "depth": 2}))), &[400])
            .msg("multiagent.depth: unknown field"),
        case("multiagent: empty roster", M::POST, "/v1/agents", j(coordinator(json!({"type": "coordinator", "agents": []}))), &[400])
            .msg("1 to 20 entries"),
        case("multiagent: advisor entry", M::POST, "/v1/agents", j(coordinator(json!({"type": "coordinator", "agents": [{"type": "advisor", "model": MODEL}]}))), &[400])
            .msg("`advisor` roster entries"),
        case("multiagent: archived roster agent", M::POST, "/v1/agents", j(coordinator(json!({"type": "coordinator", "agents": [fx.agent_archived]}))), &[400])
            .msg("is archived"),
        case("multiagent: unknown roster agent", M::POST, "/v1/agents", j(coordinator(json!({"type": "coordinator", "agents": ["agent_01NOTTHERE"]}))), &[400])
            .msg("`agent_01NOTTHERE` not found"),
        case("multiagent: an environment id", M::POST, "/v1/agents", j(coordinator(json!({"type": "coordinator", "agents": [fx.env]}))), &[400])
            .msg("is not an agent id"),
        case("multiagent: the agent itself on update", M::POST, format!("/v1/agents/{}", fx.agent), j(json!({"multiagent": {"type": "coordinator", "agents": [fx.agent]}})), &[400])
            .msg("is this agent; name it as"),
        // bridle.engine: the harness a roster agent runs on must be one the server has
        case("agent: unknown bridle.engine", M::POST, "/v1/agents", j(json!({"name": "x", "model": MODEL, "metadata": {"bridle.engine": "gpt-pilot"}})), &[400])
            .msg("is not a known harness; known harnesses: claude"),
        case("agent update: unknown bridle.engine", M::POST, format!("/v1/agents/{}", fx.agent), j(json!({"metadata": {"bridle.engine": "gpt-pilot"}})), &[400])
            .msg("is not a known harness; known harnesses: claude"),
        // threads
        case("threads: unknown session", M::GET, "/v1/sessions/sesn_01NOTTHERE/threads", Body::None, &[404]),
        case("threads: unknown thread", M::GET, format!("/v1/sessions/{s}/threads/sthr_01NOTTHERE"), Body::None, &[404]),
        case("threads: id of another kind", M::GET, format!("/v1/sessions/{s}/threads/{s}"), Body::None, &[404]),
        case("threads: events of an unknown thread", M::GET, format!("/v1/sessions/{s}/threads/sthr_01NOTTHERE/events"), Body::None, &[404]),
        case("threads: stream of an unknown thread", M::GET, format!("/v1/sessions/{s}/threads/sthr_01NOTTHERE/stream"), Body::None, &[404]),
        case("threads: unknown status", M::GET, format!("/v1/sessions/{s}/threads?statuses[]=asleep"), Body::None, &[400])
            .msg("`asleep`"),
        case("threads: limit 0", M::GET, format!("/v1/sessions/{s}/threads?limit=0"), Body::None, &[400]),
        case("threads: events order", M::GET, format!("/v1/sessions/{s}/threads/{primary}/events?order=desc"), Body::None, &[400])
            .msg("unknown query parameter `order`"),
        case("threads: bad event_deltas", M::GET, format!("/v1/sessions/{s}/threads/{primary}/stream?event_deltas[]=agent.tool_use"), Body::None, &[400]),
        case("threads: archive the primary thread", M::POST, format!("/v1/sessions/{s}/threads/{primary}/archive"), Body::None, &[400])
            .msg("archived with its session"),
        case(
            "threads: an event for another thread",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            j(json!({"events": [{"type": "user.interrupt", "session_thread_id": "sthr_01NOTTHERE"}]})),
            &[400],
        )
        .msg("events[0].session_thread_id: session"),
        // routes
        case("unknown route", M::GET, "/v1/nothing-here", Body::None, &[404]).msg("GET /v1/nothing-here"),
        case("agents have no DELETE", M::DELETE, format!("/v1/agents/{}", fx.agent), Body::None, &[404, 405]),
        // --- memory stores ---
        case("memory store without name", M::POST, "/v1/memory_stores", j(json!({})), &[400]),
        case("memory store name with a newline", M::POST, "/v1/memory_stores", j(json!({"name": "a\nb"})), &[400]),
        case("memory store unknown field", M::POST, format!("/v1/memory_stores/{}", fx.memory_store), j(json!({"title": "t"})), &[400]),
        case("memory path without leading slash", M::POST, format!("/v1/memory_stores/{}/memories", fx.memory_store), j(json!({"path": "a.md", "content": "x"})), &[400]),
        case("memory path with ..", M::POST, format!("/v1/memory_stores/{}/memories", fx.memory_store), j(json!({"path": "/a/../b", "content": "x"})), &[400]),
        case("memory content over 100 kB", M::POST, format!("/v1/memory_stores/{}/memories", fx.memory_store), j(json!({"path": "/big.md", "content": "x".repeat(102_401)})), &[400]),
        case("memory content null", M::POST, format!("/v1/memory_stores/{}/memories", fx.memory_store), j(json!({"path": "/n.md", "content": null})), &[400]),
        case("memory unknown field", M::POST, format!("/v1/memory_stores/{}/memories", fx.memory_store), j(json!({"path": "/u.md", "content": "x", "mode": "0644"})), &[400]),
        case("memory in an archived store", M::POST, format!("/v1/memory_stores/{}/memories", fx.memory_store_archived), j(json!({"path": "/a.md", "content": "x"})), &[409]),
        case("memory at a taken path", M::POST, format!("/v1/memory_stores/{}/memories", fx.memory_store), j(json!({"path": "/held.md", "content": "x"})), &[409]),
        case("memory precondition not hex", M::POST, format!("/v1/memory_stores/{}/memories/{}", fx.memory_store, fx.memory), j(json!({"content": "y", "precondition": {"type": "content_sha256", "content_sha256": "xyz"}})), &[400]),
        case("memory precondition of another type", M::POST, format!("/v1/memory_stores/{}/memories/{}", fx.memory_store, fx.memory), j(json!({"content": "y", "precondition": {"type": "etag"}})), &[400]),
        case("memory delete digest not hex", M::DELETE, format!("/v1/memory_stores/{}/memories/{}?expected_content_sha256=nope", fx.memory_store, fx.memory), Body::None, &[400]),
        case("memory list prefix without trailing slash", M::GET, format!("/v1/memory_stores/{}/memories?path_prefix=/notes", fx.memory_store), Body::None, &[400]),
        case("memory list negative depth", M::GET, format!("/v1/memory_stores/{}/memories?depth=-1", fx.memory_store), Body::None, &[400]),
        case("memory list unknown view", M::GET, format!("/v1/memory_stores/{}/memories?view=all", fx.memory_store), Body::None, &[400]),
        case("memory list bad page token", M::GET, format!("/v1/memory_stores/{}/memories?page=zzz", fx.memory_store), Body::None, &[400]),
        case("memory list unknown parameter", M::GET, format!("/v1/memory_stores/{}/memories?recursive=true", fx.memory_store), Body::None, &[400]),
        case("memory versions by service account", M::GET, format!("/v1/memory_stores/{}/memory_versions?service_account_id=svac_1", fx.memory_store), Body::None, &[400]),
        case("memory versions unknown operation", M::GET, format!("/v1/memory_stores/{}/memory_versions?operation=renamed", fx.memory_store), Body::None, &[400]),
        case("unknown memory", M::GET, format!("/v1/memory_stores/{}/memories/mem_011CZkZDLs7fYzm1hXNPeRjv", fx.memory_store), Body::None, &[404]),
        case("unknown memory store", M::GET, "/v1/memory_stores/memstore_011CZkZDLs7fYzm1hXNPeRjv", Body::None, &[404]),
        case("memory store route with vault id", M::GET, format!("/v1/memory_stores/{}", fx.vault), Body::None, &[404]),
        case("PUT is not a verb here", M::PUT, "/v1/vaults", j(json!({"display_name": "x"})), &[404, 405]),
        // oversize bodies (default limit 32 MiB)
        case("40 MiB body", M::POST, "/v1/agents", Body::Oversize { len: 40 << 20, chunked: false }, &[413]),
        case("40 MiB chunked body", M::POST, "/v1/agents", Body::Oversize { len: 40 << 20, chunked: true }, &[413]),
        case(
            "40 MiB events body",
            M::POST,
            format!("/v1/sessions/{s}/events"),
            Body::Oversize { len: 40 << 20, chunked: false },
            &[413],
        ),
    ];
    let mut c = case("files: missing key", M::GET, "/v1/files", Body::None, &[401]);
    c.auth = Auth::NoKey;
    t.push(c);
    // auth and the beta header, on a read and a write route
    for (path, method, body) in
        [("/v1/agents".to_string(), M::GET, Body::None), (format!("/v1/sessions/{s}/events"), M::POST, j(msg("x")))]
    {
        for (name, auth, want) in [
            ("missing key", Auth::NoKey, &[401u16][..]),
            ("invalid key", Auth::BadKey, &[401]),
            ("invalid bearer", Auth::BadBearer, &[401]),
            ("missing beta header", Auth::NoBeta, &[400]),
            ("wrong beta header", Auth::WrongBeta, &[400]),
        ] {
            let mut c = case(name, method.clone(), path.clone(), body.clone(), want);
            c.auth = auth;
            t.push(c);
        }
    }
    t
}

async fn run_table(server: &mut Server) {
    let api = Api::new(server);
    let fx = fixtures(&api).await;
    // Bearer auth works (the positive control for the 401 rows).
    let r = api.send(Method::GET, "/v1/agents", Auth::Bearer, Body::None).await.unwrap();
    assert_eq!(r.status, 200, "Authorization: Bearer KEY must work: {}", r.text());

    let sessions_before = session_count(&api).await;
    check_cases(server, &api, table(&fx)).await;
    // Refused input stored nothing: no session was created, no resource added.
    assert_eq!(session_count(&api).await, sessions_before, "a refused session create stored a session");
    let held = api.ok(Method::GET, &format!("/v1/sessions/{}/resources", fx.session_with_file), None).await;
    let ids: Vec<&str> = held["data"].as_array().expect("data").iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, [fx.resource.as_str()], "a refused add stored a resource: {held}");
}

/// All sessions, archived ones included.
async fn session_count(api: &Api) -> usize {
    let page = api.ok(Method::GET, "/v1/sessions?include_archived=true&limit=100", None).await;
    assert!(page["next_page"].is_null(), "the bad-input server holds more sessions than one page");
    page["data"].as_array().expect("data").len()
}

/// Send each case and fail listing every one that was not answered as it wants.
async fn check_cases(server: &mut Server, api: &Api, cases: Vec<Case>) {
    let total = cases.len();
    let mut failures = Vec::new();
    for c in cases {
        let label = format!("{} ({} {})", c.name, c.method, short(&c.path));
        match api.send(c.method.clone(), &c.path, c.auth, c.body).await {
            Err(e) => failures.push(format!("{label}: {e}")),
            Ok(r) => {
                if !c.want.contains(&r.status) {
                    failures.push(format!("{label}: status {} (wanted {:?}): {}", r.status, c.want, r.text()));
                } else if let Err(e) = check_envelope(&r, c.want_type) {
                    failures.push(format!("{label}: {e}"));
                } else if let Some(want) = c.want_msg
                    && !r.text().contains(want)
                {
                    failures.push(format!("{label}: the message does not contain {want:?}: {}", r.text()));
                }
            }
        }
        if !server.is_running() {
            failures.push(format!("{label}: the server died"));
            break;
        }
    }
    server.assert_alive();
    println!("bad-input table: {} of {total} cases as expected", total - failures.len());
    assert!(
        failures.is_empty(),
        "{} of {total} bad-input cases failed:\n  - {}",
        failures.len(),
        failures.join("\n  - ")
    );
}

/// The largest quota the operator lets an environment ask for in [`disk_quota_bounds`].
const DISK_MAX: &str = "1073741824";

/// `bridle.sandbox_disk_bytes` on a server whose operator allows environments a quota of up to
/// 1 GiB: values outside 16 MiB ..= 1 GiB, or not a byte count, are refused on create and update
/// and nothing is stored; values inside are kept, and can be changed and deleted.
#[test]
fn disk_quota_bounds() {
    let mut server = Server::start_opts(Backend::Sqlite, &[], &[("BRIDLE_SESSIONS__SANDBOX_DISK_BYTES_MAX", DISK_MAX)]);
    rt().block_on(async {
        use Method as M;
        let api = Api::new(&server);
        let key = "bridle.sandbox_disk_bytes";
        let env = api.ok(M::POST, "/v1/environments", Some(json!({"name": "q", "metadata": {key: "33554432"}}))).await;
        assert_eq!(env["metadata"][key], "33554432", "{env}");
        let id = env["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/environments/{id}");
        let mut cases = Vec::new();
        for (name, v) in [
            ("below the driver's minimum", "16777215"),
            ("above the operator's max", "1073741825"),
            ("not a number", "1GiB"),
            ("negative", "-33554432"),
            ("with spaces", " 33554432"),
            ("empty", ""),
            ("beyond u64", "184467440737095516160"),
        ] {
            let body = json!({"name": "q", "metadata": {key: v}});
            cases.push(
                case(name, M::POST, "/v1/environments", Body::Json(body), &[400]).msg("from 16777216 to 1073741824"),
            );
            if !v.is_empty() {
                // (An empty value in a patch deletes the key.)
                let body = json!({"metadata": {key: v}});
                cases.push(
                    case(name, M::POST, path.clone(), Body::Json(body), &[400]).msg("sessions.sandbox_disk_bytes_max"),
                );
            }
        }
        check_cases(&mut server, &api, cases).await;
        // Nothing refused was stored.
        assert_eq!(api.ok(M::GET, &path, None).await["metadata"], json!({key: "33554432"}));
        let list = api.ok(M::GET, "/v1/environments", None).await;
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
        // In bounds: changed, then deleted.
        let up = api.ok(M::POST, &path, Some(json!({"metadata": {key: DISK_MAX}}))).await;
        assert_eq!(up["metadata"][key], DISK_MAX);
        let up = api.ok(M::POST, &path, Some(json!({"metadata": {key: null}}))).await;
        assert_eq!(up["metadata"], json!({}));
    });
}

/// `bridle.sandbox_driver` on a server whose operator allows both drivers, where gVisor cannot
/// start (a platform its runsc does not have): bubblewrap is kept; gVisor is a 400 saying it is
/// not available and why; an unknown driver is a 400 naming it and the allowed ones; nothing
/// refused is stored.
#[test]
fn sandbox_driver_choice() {
    // A node that runs sessions (an API-only node cannot tell which drivers start).
    let sandboxes = support::sandbox_dir::sandbox_dir();
    let sandbox_dir = sandboxes.path().to_string_lossy().into_owned();
    let mut server = Server::start_opts(
        Backend::Sqlite,
        &[],
        &[
            ("BRIDLE_SESSIONS__SANDBOX_DIR", sandbox_dir.as_str()),
            ("BRIDLE_AUTO_INSTALL", "false"),
            ("BRIDLE_SESSIONS__SANDBOX_DRIVERS_ALLOWED", "[\"bubblewrap\", \"gvisor\"]"),
            ("BRIDLE_SESSIONS__GVISOR_PLATFORM", "no-such-platform"),
        ],
    );
    rt().block_on(async {
        use Method as M;
        let api = Api::new(&server);
        let key = "bridle.sandbox_driver";
        let env =
            api.ok(M::POST, "/v1/environments", Some(json!({"name": "d", "metadata": {key: "bubblewrap"}}))).await;
        assert_eq!(env["metadata"][key], "bubblewrap", "{env}");
        let path = format!("/v1/environments/{}", env["id"].as_str().unwrap());
        let mut cases = Vec::new();
        for (name, v, want) in [
            ("an unavailable driver", "gvisor", "the `gvisor` sandbox driver is not available on this server"),
            ("why it is unavailable", "gvisor", "no-such-platform"),
            (
                "an unknown driver",
                "firecracker",
                "unknown sandbox driver `firecracker`; this server allows: bubblewrap, gvisor",
            ),
            ("a driver name in capitals", "GVISOR", "unknown sandbox driver `GVISOR`"),
        ] {
            let body = json!({"name": "d", "metadata": {key: v}});
            cases.push(case(name, M::POST, "/v1/environments", Body::Json(body), &[400]).msg(want));
            let body = json!({"metadata": {key: v}});
            cases.push(case(name, M::POST, path.clone(), Body::Json(body), &[400]).msg(want));
        }
        check_cases(&mut server, &api, cases).await;
        assert_eq!(api.ok(M::GET, &path, None).await["metadata"], json!({key: "bubblewrap"}));
        let list = api.ok(M::GET, "/v1/environments", None).await;
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
        let up = api.ok(M::POST, &path, Some(json!({"metadata": {key: null}}))).await;
        assert_eq!(up["metadata"], json!({}));
    });
}

fn short(p: &str) -> String {
    if p.len() > 90 { format!("{}…", &p[..p.floor_char_boundary(90)]) } else { p.to_string() }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn bad_input_table_sqlite() {
    let mut server = Server::start(Backend::Sqlite);
    rt().block_on(run_table(&mut server));
}

#[test]
fn bad_input_table_postgres() {
    let pg = Postgres::start();
    let mut server = Server::start(Backend::Postgres(&pg));
    rt().block_on(run_table(&mut server));
}

// ---------------------------------------------------------------------------------------------
// property test: random bodies never yield a 5xx
// ---------------------------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "name",
    "model",
    "id",
    "type",
    "version",
    "system",
    "description",
    "metadata",
    "tools",
    "mcp_servers",
    "skills",
    "multiagent",
    "config",
    "networking",
    "allowed_hosts",
    "allow_package_managers",
    "allow_mcp_servers",
    "packages",
    "pip",
    "apt",
    "agent",
    "environment_id",
    "vault_ids",
    "title",
    "resources",
    "initial_events",
    "budget",
    "events",
    "content",
    "text",
    "source",
    "tool_use_id",
    "result",
    "deny_message",
    "custom_tool_use_id",
    "is_error",
    "session_thread_id",
    "display_name",
    "auth",
    "token",
    "mcp_server_url",
    "access_token",
    "refresh",
    "secret_name",
    "secret_value",
    "injection_location",
    "speed",
    "effort",
    "input_schema",
    "sandbox0.managed_agents.role",
    "sandbox0.managed_agents.engine",
    "sandbox0.managed_agents.llm_base_url",
    "bridle.sandbox_disk_bytes",
    "scope",
    "expires_at",
    "rubric",
];

fn arb_string(ids: Vec<String>) -> BoxedStrategy<String> {
    let mut words: Vec<String> = [
        "",
        "\u{0}",
        "x\u{0}y",
        "agent_",
        "sesn_",
        "claude",
        "codex",
        "openai-agents",
        "llm",
        "user.message",
        "user.interrupt",
        "user.define_outcome",
        "static_bearer",
        "mcp_oauth",
        "environment_variable",
        "cloud",
        "limited",
        "unrestricted",
        "agent",
        "agent_with_overrides",
        "text",
        "allow",
        "deny",
        "-1",
        "1e999",
        "null",
        "2026-01-01T00:00:00Z",
        "9999-99-99",
        "https://example.com",
        "\u{202e}rtl",
        "🦀",
        "'; DROP TABLE agents; --",
        "%s%n",
        "../..",
        MODEL,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    words.extend(ids);
    prop_oneof![
        4 => any::<String>(),
        4 => prop::sample::select(words),
        1 => (1usize..200_000).prop_map(|n| "z".repeat(n)),
    ]
    .boxed()
}

fn arb_json(ids: Vec<String>) -> BoxedStrategy<Value> {
    let s = arb_string(ids.clone());
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        s.clone().prop_map(Value::String),
    ];
    let key = prop_oneof![3 => prop::sample::select(KEYS).prop_map(String::from), 1 => s];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// One route a body can be POSTed to: path, a valid template, and nested objects to mutate.
struct Route {
    path: String,
    template: Value,
    nested: Vec<Vec<PathPart>>,
}

#[derive(Clone)]
enum PathPart {
    K(String),
    I(usize),
}

fn routes(fx: &Fx) -> Vec<Route> {
    use PathPart::{I, K};
    let r = |path: String, template: Value, nested: Vec<Vec<PathPart>>| Route { path, template, nested };
    vec![
        r(
            "/v1/agents".into(),
            json!({"name": "p", "model": MODEL, "tools": [{"type": "agent_toolset_20260401"}]}),
            vec![vec![K("tools".into()), I(0)]],
        ),
        r(
            format!("/v1/agents/{}", fx.agent),
            json!({"name": "p2", "metadata": {"a": "b"}}),
            vec![vec![K("metadata".into())]],
        ),
        r(
            "/v1/environments".into(),
            json!({"name": "e", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["example.com"]}, "packages": {"pip": ["rich"]}}}),
            vec![
                vec![K("config".into())],
                vec![K("config".into()), K("networking".into())],
                vec![K("config".into()), K("packages".into())],
            ],
        ),
        r(
            format!("/v1/environments/{}", fx.env),
            json!({"description": "d", "config": {"type": "cloud"}}),
            vec![vec![K("config".into())]],
        ),
        r(
            "/v1/sessions".into(),
            json!({"agent": {"type": "agent_with_overrides", "id": fx.agent, "system": "s"}, "environment_id": fx.env, "vault_ids": [fx.vault], "metadata": {"k": "v"}}),
            vec![vec![K("agent".into())], vec![K("metadata".into())]],
        ),
        r(
            format!("/v1/sessions/{}", fx.session),
            json!({"title": "t", "metadata": {"k": "v"}}),
            vec![vec![K("metadata".into())]],
        ),
        r(
            format!("/v1/sessions/{}/resources", fx.session),
            json!({"type": "file", "file_id": fx.file, "mount_path": "/workspace/p.txt"}),
            vec![],
        ),
        r(
            format!("/v1/sessions/{}/events", fx.session),
            json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "x"}]}]}),
            vec![vec![K("events".into()), I(0)], vec![K("events".into()), I(0), K("content".into()), I(0)]],
        ),
        r(
            format!("/v1/sessions/{}/events", fx.session),
            json!({"events": [{"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_1", "content": [{"type": "text", "text": "x"}]}]}),
            vec![vec![K("events".into()), I(0)]],
        ),
        r(
            "/v1/vaults".into(),
            json!({"display_name": "v", "metadata": {"sandbox0.managed_agents.role": "llm"}}),
            vec![vec![K("metadata".into())]],
        ),
        r(format!("/v1/vaults/{}", fx.vault), json!({"display_name": "v2"}), vec![]),
        r(
            "/v1/memory_stores".into(),
            json!({"name": "m", "description": "d", "metadata": {"a": "b"}}),
            vec![vec![K("metadata".into())]],
        ),
        r(
            format!("/v1/memory_stores/{}/memories", fx.memory_store),
            json!({"path": "/fuzz/a.md", "content": "x"}),
            vec![],
        ),
        r(
            format!("/v1/memory_stores/{}/memories/{}", fx.memory_store, fx.memory),
            json!({"content": "y", "precondition": {"type": "content_sha256", "content_sha256": "0".repeat(64)}}),
            vec![vec![K("precondition".into())]],
        ),
        r(
            format!("/v1/vaults/{}/credentials", fx.vault),
            json!({"auth": {"type": "mcp_oauth", "access_token": "a", "mcp_server_url": "https://m.example.com", "refresh": {"client_id": "c", "refresh_token": "r", "token_endpoint": "https://t.example.com", "token_endpoint_auth": {"type": "none"}}}}),
            vec![vec![K("auth".into())], vec![K("auth".into()), K("refresh".into())]],
        ),
        r(
            format!("/v1/vaults/{}/credentials/{}", fx.vault, fx.cred),
            json!({"display_name": "c", "auth": {"type": "static_bearer", "token": "n"}}),
            vec![vec![K("auth".into())]],
        ),
    ]
}

/// Paths to every node below the root of `v` (objects' keys and arrays' items).
fn leaf_paths(v: &Value, prefix: &mut Vec<PathPart>, out: &mut Vec<Vec<PathPart>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(PathPart::K(k.clone()));
                out.push(prefix.clone());
                leaf_paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(PathPart::I(i));
                out.push(prefix.clone());
                leaf_paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[PathPart]) -> Option<&'a mut Value> {
    let mut cur = v;
    for p in path {
        cur = match p {
            PathPart::K(k) => cur.get_mut(k.as_str())?,
            PathPart::I(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

#[derive(Debug, Clone)]
enum Input {
    /// Any JSON value as the whole body.
    Whole(Value),
    /// A valid template with fields overwritten (`nested` picks which object, 0 = top).
    Patched { nested: usize, patch: Vec<(String, Value)> },
    /// A valid template with one leaf (chosen by index) removed or replaced: near-valid
    /// bodies that get past the outer validation.
    Leaf { pick: usize, replacement: Option<Value> },
    /// JSON cut short.
    Truncated(Value, usize),
    /// Random bytes claimed to be JSON.
    Bytes(Vec<u8>),
}

fn arb_input(ids: Vec<String>) -> BoxedStrategy<(usize, Input)> {
    let j = arb_json(ids.clone());
    let key = prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(String::from),
        1 => arb_string(ids),
    ];
    let plausible = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-2i64..1000).prop_map(|n| json!(n)),
        arb_string(vec![]).prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
        Just(json!([{}])),
    ];
    let input = prop_oneof![
        2 => j.clone().prop_map(Input::Whole),
        4 => (any::<usize>(), prop::option::weighted(0.8, plausible))
            .prop_map(|(pick, replacement)| Input::Leaf { pick, replacement }),
        5 => (0usize..4, prop::collection::vec((key, j.clone()), 1..4))
            .prop_map(|(nested, patch)| Input::Patched { nested, patch }),
        1 => (j, any::<usize>()).prop_map(|(v, n)| Input::Truncated(v, n)),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Input::Bytes),
    ];
    (0usize..64, input).boxed()
}

fn materialize(route: &Route, input: &Input) -> Vec<u8> {
    match input {
        Input::Whole(v) => serde_json::to_vec(v).unwrap(),
        Input::Patched { nested, patch } => {
            let mut body = route.template.clone();
            let target = if *nested == 0 || route.nested.is_empty() {
                Some(&mut body)
            } else {
                let p = &route.nested[(nested - 1) % route.nested.len()];
                get_mut(&mut body, p)
            };
            if let Some(Value::Object(m)) = target {
                for (k, v) in patch {
                    m.insert(k.clone(), v.clone());
                }
            }
            serde_json::to_vec(&body).unwrap()
        }
        Input::Leaf { pick, replacement } => {
            let mut body = route.template.clone();
            let mut paths = Vec::new();
            leaf_paths(&body, &mut Vec::new(), &mut paths);
            let path = &paths[pick % paths.len()];
            let (last, parent) = path.split_last().unwrap();
            let parent = get_mut(&mut body, parent).unwrap();
            match (parent, last, replacement) {
                (Value::Object(m), PathPart::K(k), None) => {
                    m.remove(k);
                }
                (Value::Array(a), PathPart::I(i), None) => {
                    a.remove(*i);
                }
                (p, last, Some(v)) => {
                    let slot = match last {
                        PathPart::K(k) => p.get_mut(k.as_str()),
                        PathPart::I(i) => p.get_mut(*i),
                    };
                    if let Some(slot) = slot {
                        *slot = v.clone();
                    }
                }
                _ => {}
            }
            serde_json::to_vec(&body).unwrap()
        }
        Input::Truncated(v, n) => {
            let mut b = serde_json::to_vec(v).unwrap();
            let cut = if b.is_empty() { 0 } else { n % b.len() };
            b.truncate(cut);
            b
        }
        Input::Bytes(b) => b.clone(),
    }
}

fn run_property(server: &mut Server) {
    let rt = rt();
    let api = Api::new(server);
    let fx = rt.block_on(fixtures(&api));
    let ids = vec![
        fx.env.clone(),
        fx.env_archived.clone(),
        fx.agent.clone(),
        fx.agent_archived.clone(),
        fx.vault.clone(),
        fx.cred.clone(),
        fx.session.clone(),
        fx.session_archived.clone(),
        fx.session_deleted.clone(),
    ];
    let routes = routes(&fx);
    let cases = std::env::var("BRIDLE_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(384);
    let mut runner =
        TestRunner::new(PtConfig { cases, max_shrink_iters: 256, failure_persistence: None, ..PtConfig::default() });
    let counts = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    let result = runner.run(&arb_input(ids), |(ri, input)| {
        let route = &routes[ri % routes.len()];
        let body = materialize(route, &input);
        let r = rt
            .block_on(api.send(Method::POST, &route.path, Auth::Key, Body::Raw(body.clone(), Some("application/json"))))
            .map_err(|e| TestCaseError::fail(format!("POST {}: {e}", route.path)))?;
        *counts.borrow_mut().entry(r.status).or_default() += 1;
        let shown = String::from_utf8_lossy(&body[..body.len().min(400)]).to_string();
        if r.status >= 500 {
            return Err(TestCaseError::fail(format!(
                "POST {} with body {shown:?} → {}: {}",
                route.path,
                r.status,
                r.text()
            )));
        }
        if r.status >= 400 {
            check_envelope(&r, None).map_err(|e| {
                TestCaseError::fail(format!("POST {} with body {shown:?} → {}: {e}", route.path, r.status))
            })?;
        } else if serde_json::from_slice::<Value>(&r.body).is_err() {
            return Err(TestCaseError::fail(format!(
                "POST {} → {} with a non-JSON body: {}",
                route.path,
                r.status,
                r.text()
            )));
        }
        Ok(())
    });
    println!("random bodies: {cases} cases, statuses seen: {:?}", counts.borrow());
    server.assert_alive();
    if let Err(e) = result {
        panic!("random-body property failed: {e}");
    }
}

#[test]
fn random_bodies_never_5xx_sqlite() {
    let mut server = Server::start(Backend::Sqlite);
    run_property(&mut server);
}

#[test]
fn random_bodies_never_5xx_postgres() {
    let pg = Postgres::start();
    let mut server = Server::start(Backend::Postgres(&pg));
    run_property(&mut server);
}
