//! The OpenAPI document (`host/openapi.json`, served at `GET /openapi.json`, printed by
//! `bridle openapi`):
//! * the checked-in file is exactly what the code generates, prints and serves;
//! * it matches the router: every documented operation is routed on a real server (no router
//!   404/405), every other method on a documented path is a 405, every route of the real
//!   router (enumerated from the router itself) is documented, and the documented security
//!   is what the server enforces;
//! * real responses validate against their documented schemas (and the request bodies sent
//!   against theirs), errors included.
//!
//! Run: `cargo test -p bridle --test openapi`

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use reqwest::{Client, Method};
use serde_json::{Value, json};
use support::{Backend, Server, run_ok};

const BETA: &str = "managed-agents-2026-04-01";
const REGENERATE: &str =
    "host/openapi.json is stale: regenerate it with `cargo run -p bridle -- openapi > host/openapi.json`";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

fn checked_in() -> String {
    let p = checked_in_path();
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}; {REGENERATE}", p.display()))
}

fn document() -> Value {
    serde_json::from_str(&checked_in()).expect("host/openapi.json is JSON")
}

/// Equal, or a panic that names the first differing line (the files are long).
fn assert_same(what: &str, actual: &str, expected: &str) {
    if actual == expected {
        return;
    }
    let line = actual.lines().zip(expected.lines()).position(|(a, b)| a != b);
    let detail = match line {
        Some(n) => format!(
            "first difference at line {}:\n  {what}: {}\n  checked in: {}",
            n + 1,
            actual.lines().nth(n).unwrap_or(""),
            expected.lines().nth(n).unwrap_or("")
        ),
        None => {
            format!("{what} has {} lines, the checked-in file {}", actual.lines().count(), expected.lines().count())
        }
    };
    panic!("{what} differs from host/openapi.json ({detail})\n{REGENERATE}");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Every (path, method) the document lists.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
    }
    out
}

/// A documented path with its parameters filled in (ids of the right kind that do not exist).
fn concrete(path: &str) -> String {
    path.replace("{agent_id}", "agent_01openapitest")
        .replace("{environment_id}", "env_01openapitest")
        .replace("{vault_id}", "vlt_01openapitest")
        .replace("{credential_id}", "vcrd_01openapitest")
        .replace("{session_id}", "sesn_01openapitest")
        .replace("{resource_id}", "sesrsc_01openapitest")
}

struct Api {
    client: Client,
    base: String,
    key: String,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api { client: Client::new(), base: server.base_url.clone(), key: server.api_key.clone() }
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>, auth: bool) -> (u16, String, Value) {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = self.client.request(method.clone(), format!("{}{path}", self.base));
        if auth {
            req = req.header("x-api-key", &self.key).header("anthropic-beta", BETA);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        // The event stream never ends: its head is all that is needed.
        if ctype.starts_with("text/event-stream") {
            return (status, ctype, Value::Null);
        }
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, ctype, value)
    }
}

/// Did the router send this request to a handler? Its own answers are a 405, or a 404 from
/// the fallback, whose message starts with "no route for".
fn routed(status: u16, body: &Value) -> bool {
    let fallback_404 =
        status == 404 && body["error"]["message"].as_str().is_some_and(|m| m.starts_with("no route for"));
    status != 405 && !fallback_404
}

#[test]
fn checked_in_document_is_what_the_server_generates_prints_and_serves() {
    let expected = checked_in();
    assert_same("the generated document", bridle::api::openapi::document_json(), &expected);

    let out =
        run_ok(support::scrub(std::process::Command::new(support::bridle_bin()).arg("openapi")), "bridle openapi");
    assert_same("`bridle openapi`", &String::from_utf8_lossy(&out.stdout), &expected);

    let server = Server::start(Backend::Sqlite);
    let api = Api::new(&server);
    rt().block_on(async {
        // No API key: the document holds no data.
        let resp = api.client.get(format!("{}/openapi.json", api.base)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ctype.starts_with("application/json"), "content-type {ctype}");
        assert_same("GET /openapi.json", &resp.text().await.unwrap(), &expected);
    });

    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "an OpenAPI 3.1 document");
    // Every operation id is unique (tools generate one function per id).
    let ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "duplicate operationId in {ids:?}");
}

#[test]
fn every_documented_operation_is_routed_and_every_route_is_documented() {
    let doc = document();
    let ops = operations(&doc);
    let documented: BTreeSet<(String, String)> = ops.iter().map(|(p, m, _)| (p.clone(), m.clone())).collect();
    let paths: BTreeSet<String> = ops.iter().map(|(p, _, _)| p.clone()).collect();

    // The real router, enumerated: its Debug form lists every route path.
    let routes = rt().block_on(router_paths());
    assert!(routes.len() > 10, "could not enumerate the router's paths (axum's Debug format changed?): {routes:?}");
    let undocumented: Vec<&String> = routes.iter().filter(|r| !paths.contains(*r)).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document: {undocumented:?}; give each handler a #[utoipa::path] and \
         register it with routes!() in host/src/api/mod.rs, then {}",
        &REGENERATE[REGENERATE.find("regenerate").unwrap()..]
    );
    let unrouted: Vec<&String> = paths.iter().filter(|p| !routes.contains(*p)).collect();
    assert!(unrouted.is_empty(), "documented paths the router does not have: {unrouted:?}");

    let server = Server::start(Backend::Sqlite);
    let api = Api::new(&server);
    rt().block_on(async {
        let mut failures = Vec::new();
        for path in &paths {
            let url = concrete(path);
            for method in METHODS {
                let (status, _, body) = api.call(method, &url, None, true).await;
                let is_documented = documented.contains(&(path.clone(), method.to_string()));
                if is_documented && !routed(status, &body) {
                    failures.push(format!("{method} {path}: documented but not routed ({status} {body})"));
                }
                if !is_documented && status != 405 {
                    failures.push(format!("{method} {path}: routed ({status}) but not documented"));
                }
            }
        }
        // The documented security is what the server enforces.
        for (path, method, op) in &ops {
            let (status, _, body) = api.call(method, &concrete(path), None, false).await;
            let needs_key = op.get("security").is_some();
            if needs_key && status != 401 {
                failures.push(format!("{method} {path}: documents an API key but answers {status} without one"));
            }
            if !needs_key && (status == 401 || !routed(status, &body)) {
                failures.push(format!("{method} {path}: documents no API key but answers {status} without one"));
            }
            let beta_param = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "anthropic-beta" && p["in"] == "header"));
            assert_eq!(beta_param, needs_key, "{method} {path}: the beta header goes with the API key");
        }
        assert!(failures.is_empty(), "the document and the router disagree:\n{}", failures.join("\n"));
    });
}

/// The route paths of the router `bridle serve` runs (default config, no plugins), from
/// the router's Debug form (`Node { paths: {RouteId(0): "/v1/agents", ...} }`); axum's
/// internal catch-all routes are left out.
async fn router_paths() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = bridle::config::Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
    config.harnesses.clear();
    let state = bridle::server::build_state(config, false).await.expect("build the server state");
    let debug = format!("{:?}", bridle::api::router(state));
    // The fallback router (after `fallback_router:`) holds only fallbacks.
    let (routes, _fallbacks) = debug.split_once("fallback_router:").expect("a Router's Debug form");
    let mut out = BTreeSet::new();
    let mut rest = routes;
    while let Some(i) = rest.find("RouteId(") {
        rest = &rest[i..];
        let Some(q) = rest.find(": \"") else { break };
        let after = &rest[q + 3..];
        let end = after.find('"').unwrap();
        let path = &after[..end];
        if !path.contains("__private__axum") {
            out.insert(path.to_string());
        }
        rest = &after[end..];
    }
    out
}

/// The JSON Schema of an operation's request body or 200 response, with the document's
/// components beside it so `$ref`s resolve.
fn schema_of(doc: &Value, path: &str, method: &str, request: bool) -> Value {
    let op = &doc["paths"][path][method];
    let media = if request { &op["requestBody"]["content"] } else { &op["responses"]["200"]["content"] };
    let schema = media["application/json"]["schema"].clone();
    assert!(!schema.is_null(), "{method} {path}: no documented JSON {}", if request { "body" } else { "response" });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    })
}

fn error_schema(doc: &Value, path: &str, method: &str) -> Value {
    let schema = doc["paths"][path][method]["responses"]["default"]["content"]["application/json"]["schema"].clone();
    assert_eq!(schema["$ref"], "#/components/schemas/ErrorEnvelope", "{method} {path}: errors are documented");
    json!({"components": doc["components"], "allOf": [schema]})
}

fn check(what: &str, schema: &Value, instance: &Value) {
    let validator = jsonschema::draft202012::new(schema).unwrap_or_else(|e| panic!("{what}: invalid schema: {e}"));
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its documented schema:\n{}\ninstance: {instance:#}",
        errors.join("\n")
    );
}

#[test]
fn real_requests_and_responses_match_their_schemas() {
    let doc = document();
    let server = Server::start(Backend::Sqlite);
    let api = Api::new(&server);
    rt().block_on(async {
        // Send a body (checked against the request schema), check the 200 answer.
        let ok = |path: &'static str, method: &'static str, url: String, body: Option<Value>| {
            let doc = &doc;
            let api = &api;
            async move {
                if let Some(b) = &body {
                    check(&format!("request to {method} {path}"), &schema_of(doc, path, method, true), b);
                }
                let (status, ctype, v) = api.call(method, &url, body.as_ref(), true).await;
                assert_eq!(status, 200, "{method} {url}: {v}");
                assert!(ctype.starts_with("application/json"), "{method} {url}: content-type {ctype}");
                check(&format!("{method} {path}"), &schema_of(doc, path, method, false), &v);
                v
            }
        };
        let agent_body = json!({
            "name": "openapi",
            "model": {"id": "claude-sonnet-4-6", "effort": "high"},
            "system": "Be brief.",
            "tools": [
                {"type": "agent_toolset_20260401", "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]},
                {"type": "custom", "name": "lookup", "description": "Look a thing up", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}
            ],
            "metadata": {"team": "docs"}
        });
        let agent = ok("/v1/agents", "post", "/v1/agents".into(), Some(agent_body)).await;
        let aid = agent["id"].as_str().unwrap().to_string();
        ok("/v1/agents/{agent_id}", "post", format!("/v1/agents/{aid}"), Some(json!({"description": null, "metadata": {"team": null}}))).await;
        ok("/v1/agents", "get", "/v1/agents".into(), None).await;
        ok("/v1/agents/{agent_id}/versions", "get", format!("/v1/agents/{aid}/versions"), None).await;

        let env_body = json!({"name": "openapi", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["example.com"]}}});
        let env = ok("/v1/environments", "post", "/v1/environments".into(), Some(env_body)).await;
        let eid = env["id"].as_str().unwrap().to_string();

        let vault = ok("/v1/vaults", "post", "/v1/vaults".into(), Some(json!({"display_name": "openapi"}))).await;
        let vid = vault["id"].as_str().unwrap().to_string();
        let cred_body = json!({"auth": {"type": "static_bearer", "token": "secret-token", "mcp_server_url": "https://mcp.example.com/"}});
        ok("/v1/vaults/{vault_id}/credentials", "post", format!("/v1/vaults/{vid}/credentials"), Some(cred_body)).await;
        ok("/v1/vaults/{vault_id}/credentials", "get", format!("/v1/vaults/{vid}/credentials"), None).await;

        let store = ok("/v1/memory_stores", "post", "/v1/memory_stores".into(), Some(json!({"name": "openapi", "metadata": {"k": "v"}}))).await;
        let msid = store["id"].as_str().unwrap().to_string();
        ok("/v1/memory_stores/{memory_store_id}", "post", format!("/v1/memory_stores/{msid}"), Some(json!({"description": "d", "metadata": {"k": null}}))).await;
        ok("/v1/memory_stores", "get", "/v1/memory_stores".into(), None).await;
        let mems = "/v1/memory_stores/{memory_store_id}/memories";
        let one = "/v1/memory_stores/{memory_store_id}/memories/{memory_id}";
        let m = ok(mems, "post", format!("/v1/memory_stores/{msid}/memories"), Some(json!({"path": "/a/b.md", "content": "x"}))).await;
        let mid = m["id"].as_str().unwrap().to_string();
        ok(mems, "post", format!("/v1/memory_stores/{msid}/memories?view=full"), Some(json!({"path": "/top.md", "content": "y"}))).await;
        let precondition = json!({"type": "content_sha256", "content_sha256": m["content_sha256"]});
        ok(one, "post", format!("/v1/memory_stores/{msid}/memories/{mid}"), Some(json!({"content": "z", "path": "/a/c.md", "precondition": precondition}))).await;
        ok(one, "get", format!("/v1/memory_stores/{msid}/memories/{mid}"), None).await;
        let listed = ok(mems, "get", format!("/v1/memory_stores/{msid}/memories?depth=1"), None).await;
        let kinds: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["memory_prefix", "memory"], "{listed}");
        ok(one, "delete", format!("/v1/memory_stores/{msid}/memories/{mid}"), None).await;
        let versions = ok("/v1/memory_stores/{memory_store_id}/memory_versions", "get", format!("/v1/memory_stores/{msid}/memory_versions?view=full"), None).await;
        assert_eq!(versions["data"][0]["operation"], "deleted", "{versions}");
        let first = versions["data"].as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_string();
        ok("/v1/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}/redact", "post", format!("/v1/memory_stores/{msid}/memory_versions/{first}/redact"), None).await;
        ok("/v1/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}", "get", format!("/v1/memory_stores/{msid}/memory_versions/{first}"), None).await;
        ok("/v1/memory_stores/{memory_store_id}/archive", "post", format!("/v1/memory_stores/{msid}/archive"), None).await;
        ok("/v1/memory_stores/{memory_store_id}", "delete", format!("/v1/memory_stores/{msid}"), None).await;

        let session_body = json!({"agent": {"type": "agent", "id": aid}, "environment_id": eid, "title": "openapi"});
        let session = ok("/v1/sessions", "post", "/v1/sessions".into(), Some(session_body)).await;
        let sid = session["id"].as_str().unwrap().to_string();
        ok("/v1/sessions/{session_id}", "get", format!("/v1/sessions/{sid}"), None).await;
        ok("/v1/sessions", "get", "/v1/sessions".into(), None).await;
        let interrupt = json!({"events": [{"type": "user.interrupt"}]});
        let sent =
            ok("/v1/sessions/{session_id}/events", "post", format!("/v1/sessions/{sid}/events"), Some(interrupt)).await;
        assert_eq!(sent["data"][0]["type"], "user.interrupt");
        let events = ok("/v1/sessions/{session_id}/events", "get", format!("/v1/sessions/{sid}/events"), None).await;
        assert!(!events["data"].as_array().unwrap().is_empty(), "the log has the sent event: {events}");
        // The stream answers with the documented media type.
        let stream = "/v1/sessions/{session_id}/events/stream";
        let media: Vec<&String> = doc["paths"][stream]["get"]["responses"]["200"]["content"].as_object().unwrap().keys().collect();
        assert_eq!(media, ["text/event-stream"]);
        let (status, ctype, _) = api.call("get", &format!("/v1/sessions/{sid}/events/stream"), None, true).await;
        assert_eq!(status, 200);
        assert!(ctype.starts_with("text/event-stream"), "content-type {ctype}");
        let threads = ok("/v1/sessions/{session_id}/threads", "get", format!("/v1/sessions/{sid}/threads"), None).await;
        let tid = threads["data"][0]["id"].as_str().expect("the primary thread").to_string();
        ok("/v1/sessions/{session_id}/threads/{thread_id}", "get", format!("/v1/sessions/{sid}/threads/{tid}"), None)
            .await;
        let thread_events = "/v1/sessions/{session_id}/threads/{thread_id}/events";
        ok(thread_events, "get", format!("/v1/sessions/{sid}/threads/{tid}/events"), None).await;
        ok("/v1/sessions/{session_id}", "delete", format!("/v1/sessions/{sid}"), None).await;
        ok("/v1/files", "get", "/v1/files".into(), None).await;
        ok("/healthz", "get", "/healthz".into(), None).await;

        // Errors: a missing resource, a bad body, no API key.
        for (path, method, url, body, auth, want) in [
            ("/v1/agents/{agent_id}", "get", "/v1/agents/agent_01missing".to_string(), None, true, 404),
            ("/v1/agents", "post", "/v1/agents".to_string(), Some(json!({"name": 1})), true, 400),
            ("/v1/sessions", "get", "/v1/sessions".to_string(), None, false, 401),
        ] {
            let (status, _, v) = api.call(method, &url, body.as_ref(), auth).await;
            assert_eq!(status, want, "{method} {url}: {v}");
            check(&format!("the {status} error of {method} {path}"), &error_schema(&doc, path, method), &v);
        }
        // The schemas are not vacuous: a wrong shape fails them.
        let wrong = json!({"type": "error", "error": {"type": "no_such_error", "message": "x"}, "request_id": "req_1"});
        let schema = error_schema(&doc, "/v1/agents", "get");
        assert!(!jsonschema::draft202012::new(&schema).unwrap().is_valid(&wrong), "an unknown error type must not validate");
        let mut bad_agent = agent.clone();
        bad_agent["version"] = json!("one");
        let schema = schema_of(&doc, "/v1/agents", "post", false);
        assert!(!jsonschema::draft202012::new(&schema).unwrap().is_valid(&bad_agent), "a string version must not validate");
    });
}
