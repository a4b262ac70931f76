//! Storage-level guarantees seen from outside the server, on SQLite and PostgreSQL:
//! vault secrets and API keys never appear in plain text at rest (database files, WAL, dump,
//! server log); `bridle keys` create/list/revoke; everything survives a kill -9 and restart
//! (including SSE resumption with Last-Event-ID across it, and memory stores listed in byte order
//! of their paths); and two nodes sharing one
//! PostgreSQL database see each other's writes and live events.
//!
//! Run: `cargo test -p bridle --test api_storage -- --nocapture`

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Api, Backend, Postgres, Server};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self.request(method.clone(), path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert!((200..300).contains(&status), "{method} {path} → {status}: {v}");
        v
    }

    /// Open the SSE stream (optionally resuming) and collect `n` user-event frames as
    /// (seq, event id), failing after `timeout`.
    async fn stream_user_events(
        &self,
        sid: &str,
        last_event_id: Option<&str>,
        n: usize,
        timeout: Duration,
        on_open: impl std::future::Future<Output = ()>,
    ) -> Vec<(u64, String)> {
        let mut rb = self
            .request(Method::GET, &format!("/v1/sessions/{sid}/events/stream"))
            .timeout(timeout + Duration::from_secs(5));
        if let Some(id) = last_event_id {
            rb = rb.header("Last-Event-ID", id);
        }
        let resp = rb.send().await.expect("open stream");
        assert_eq!(resp.status().as_u16(), 200, "stream status");
        on_open.await;
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < n {
            let chunk = tokio::time::timeout_at(deadline, body.next())
                .await
                .unwrap_or_else(|_| panic!("stream gave {} of {n} events in {timeout:?}: {out:?}", out.len()))
                .expect("stream ended early")
                .expect("stream read error");
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (None, None, String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                match event.as_deref() {
                    Some(e) if e.starts_with("user.") => {
                        let v: Value = serde_json::from_str(&data).expect("frame data is JSON");
                        let seq = id.expect("event frame without id:").parse().expect("numeric id");
                        out.push((seq, v["id"].as_str().unwrap().to_string()));
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

fn msg(text: &str) -> Value {
    json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]})
}

/// Every file under `dir`, recursively, as bytes (database, WAL, logs, keys).
fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p.display().to_string(), bytes));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn pg_dump(database_url: &str) -> Vec<u8> {
    // postgres://postgres@127.0.0.1:PORT/NAME
    let rest = database_url.rsplit('@').next().unwrap();
    let (hostport, db) = rest.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap();
    let out = Command::new(support::pg_bin_dir().join("pg_dump"))
        .args(["-h", host, "-p", port, "-U", "postgres", "--data-only", db])
        .output()
        .expect("run pg_dump");
    assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// secrets at rest
// ---------------------------------------------------------------------------------------------

fn secrets_at_rest(server: &mut Server) {
    let rt = rt();
    let api = Api::new(server);
    let tag = ulid_like();
    let secrets: Vec<String> = ["bearer", "access", "refresh", "clientsecret", "envvalue"]
        .iter()
        .map(|k| format!("PLAINTEXT-{k}-{tag}"))
        .collect();
    rt.block_on(async {
        let vault = api.ok(Method::POST, "/v1/vaults", Some(json!({"display_name": format!("VISIBLE-{tag}")}))).await;
        let vid = vault["id"].as_str().unwrap();
        let creds = format!("/v1/vaults/{vid}/credentials");
        let c1 = api
            .ok(
                Method::POST,
                &creds,
                Some(json!({"auth": {"type": "static_bearer", "token": secrets[0], "mcp_server_url": "https://a.example.com"}})),
            )
            .await;
        api.ok(
            Method::POST,
            &creds,
            Some(json!({"auth": {"type": "mcp_oauth", "access_token": secrets[1], "mcp_server_url": "https://b.example.com",
                "refresh": {"client_id": "cid", "refresh_token": secrets[2], "token_endpoint": "https://t.example.com/token",
                            "token_endpoint_auth": {"type": "client_secret_post", "client_secret": secrets[3]}}}})),
        )
        .await;
        api.ok(
            Method::POST,
            &creds,
            Some(json!({"auth": {"type": "environment_variable", "secret_name": "API_TOKEN", "secret_value": secrets[4],
                "networking": {"type": "unrestricted"}}})),
        )
        .await;
        // Rotating a secret must not leave the old one behind in plain text either.
        let cid = c1["id"].as_str().unwrap();
        api.ok(
            Method::POST,
            &format!("{creds}/{cid}"),
            Some(json!({"auth": {"type": "static_bearer", "token": format!("{}-rotated", secrets[0])}})),
        )
        .await;
    });
    server.restart(); // flush: the SQLite WAL is checkpointed or at least on disk
    let mut places = all_files(server.data_dir());
    if let Some(url) = &server.database_url {
        places.push(("pg_dump".into(), pg_dump(url)));
    }
    // Positive control: the scan does see what the server stored (a plain display name).
    let visible = format!("VISIBLE-{tag}");
    assert!(
        places.iter().any(|(_, b)| contains(b, &visible)),
        "the at-rest scan cannot find even the vault's display name; it would prove nothing"
    );
    let mut leaks = Vec::new();
    for (name, bytes) in &places {
        for s in &secrets {
            if contains(bytes, s) {
                leaks.push(format!("{s} in {name}"));
            }
        }
        if contains(bytes, &server.api_key) {
            leaks.push(format!("the raw API key in {name}"));
        }
    }
    assert!(leaks.is_empty(), "plain-text secrets at rest:\n  {}", leaks.join("\n  "));
    // ... and the credentials still work (the server can decrypt after a restart): the secret
    // key must have been persisted, so the metadata reads fine.
    let api = Api::new(server);
    rt.block_on(async {
        let (status, v) = api.call(Method::GET, "/v1/vaults?limit=100", None).await;
        assert_eq!(status, 200, "{v}");
    });
    server.assert_alive();
}

fn ulid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

#[test]
fn secrets_not_plaintext_at_rest_sqlite() {
    let mut server = Server::start(Backend::Sqlite);
    secrets_at_rest(&mut server);
}

#[test]
fn secrets_not_plaintext_at_rest_postgres() {
    let pg = Postgres::start();
    let mut server = Server::start(Backend::Postgres(&pg));
    secrets_at_rest(&mut server);
}

// ---------------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------------

fn keys_lifecycle(server: &mut Server) {
    let rt = rt();
    let temp = server.create_key("temporary-key");
    assert_ne!(temp, server.api_key);
    let list = server.cli(&["keys", "list"]);
    assert!(list.status.success(), "keys list: {}", String::from_utf8_lossy(&list.stderr));
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(!listing.contains(&temp) && !listing.contains(&server.api_key), "keys list shows a raw key:\n{listing}");
    let line =
        listing.lines().find(|l| l.contains("temporary-key")).unwrap_or_else(|| panic!("no key line:\n{listing}"));
    let id = line.split_whitespace().next().unwrap().to_string();
    assert!(line.contains("integration-tests") || listing.contains("integration-tests"), "{listing}");

    let with_temp = Api::with_key(server, &temp);
    rt.block_on(async {
        let (s, v) = with_temp.call(Method::GET, "/v1/agents", None).await;
        assert_eq!(s, 200, "a freshly created key works while the server runs: {v}");
    });
    let out = server.cli(&["keys", "revoke", &id]);
    assert!(
        out.status.success(),
        "keys revoke {id}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    rt.block_on(async {
        let (s, v) = with_temp.call(Method::GET, "/v1/agents", None).await;
        assert_eq!(s, 401, "a revoked key is refused at once: {v}");
        assert_eq!(v["error"]["type"], "authentication_error", "{v}");
        let (s, _) = Api::new(server).call(Method::GET, "/v1/agents", None).await;
        assert_eq!(s, 200, "other keys keep working");
    });
    // bridle's own BRIDLE_LOG / BRIDLE_CONFIG variables do not break the CLI (they once were
    // read as unknown config keys).
    let cfg = server.data_dir().join("empty.toml");
    std::fs::write(&cfg, "").unwrap();
    let out =
        server.cli_command(&["keys", "list"]).env("BRIDLE_LOG", "debug").env("BRIDLE_CONFIG", &cfg).output().unwrap();
    assert!(
        out.status.success(),
        "BRIDLE_LOG/BRIDLE_CONFIG broke `bridle keys list`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.cli(&["keys", "revoke", "apikey_01M8D0G3CSYA2P2XCG88T6YF66"]);
    assert!(!out.status.success(), "revoking an unknown key id must fail");
    server.assert_alive();
}

#[test]
fn api_keys_sqlite() {
    let mut server = Server::start(Backend::Sqlite);
    keys_lifecycle(&mut server);
}

#[test]
fn api_keys_postgres() {
    let pg = Postgres::start();
    let mut server = Server::start(Backend::Postgres(&pg));
    keys_lifecycle(&mut server);
}

// ---------------------------------------------------------------------------------------------
// kill -9 and restart
// ---------------------------------------------------------------------------------------------

/// Paths in an order no locale collation gives: lists walk them in byte order on both databases
/// (a prefix's memories are one byte range).
const MEMORY_PATHS: [&str; 6] = ["/B.md", "/Z.md", "/a-b.md", "/a/x.md", "/a/y.md", "/\u{e9}t\u{e9}.md"];

/// A memory store with memories and versions; returns the store's id and one memory's id.
async fn seed_memory_store(api: &Api) -> (String, String) {
    let s = api.ok(Method::POST, "/v1/memory_stores", Some(json!({"name": "persist", "metadata": {"k": "v"}}))).await;
    let store = s["id"].as_str().unwrap().to_string();
    // Created out of order; listed sorted.
    let mut ids = Vec::new();
    for p in MEMORY_PATHS.iter().rev() {
        let m = api
            .ok(Method::POST, &format!("/v1/memory_stores/{store}/memories"), Some(json!({"path": p, "content": p})))
            .await;
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    let first = ids[0].clone();
    api.ok(Method::POST, &format!("/v1/memory_stores/{store}/memories/{first}"), Some(json!({"content": "edited"})))
        .await;
    (store, first)
}

/// What [`seed_memory_store`] wrote, read back (after a restart, or from another node).
async fn check_memory_store(api: &Api, store: &str, memory: &str) {
    let s = api.ok(Method::GET, &format!("/v1/memory_stores/{store}"), None).await;
    assert_eq!(s["metadata"]["k"], "v");
    let listed = api.ok(Method::GET, &format!("/v1/memory_stores/{store}/memories?limit=100"), None).await;
    let paths: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap()).collect();
    assert_eq!(paths, MEMORY_PATHS, "memories in byte order of their paths");
    let rolled = api.ok(Method::GET, &format!("/v1/memory_stores/{store}/memories?depth=1&limit=2"), None).await;
    let page2 = rolled["next_page"].as_str().expect("a second page");
    let rest =
        api.ok(Method::GET, &format!("/v1/memory_stores/{store}/memories?depth=1&limit=100&page={page2}"), None).await;
    let items: Vec<String> = rolled["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["data"].as_array().unwrap())
        .map(|i| format!("{}:{}", i["type"].as_str().unwrap(), i["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        items,
        ["memory:/B.md", "memory:/Z.md", "memory:/a-b.md", "memory_prefix:/a/", "memory:/\u{e9}t\u{e9}.md"]
    );
    let m = api.ok(Method::GET, &format!("/v1/memory_stores/{store}/memories/{memory}"), None).await;
    assert_eq!(m["content"], "edited");
    let versions =
        api.ok(Method::GET, &format!("/v1/memory_stores/{store}/memory_versions?memory_id={memory}"), None).await;
    let ops: Vec<&str> =
        versions["data"].as_array().unwrap().iter().map(|v| v["operation"].as_str().unwrap()).collect();
    assert_eq!(ops, ["modified", "created"]);
    assert_eq!(versions["data"][0]["created_by"]["type"], "api_actor");
}

fn survives_restart(server: &mut Server) {
    let rt = rt();
    let api = Api::new(server);
    let (store, memory) = rt.block_on(seed_memory_store(&api));
    let (agent, env, vault, sid, sent) = rt.block_on(async {
        let env = api
            .ok(Method::POST, "/v1/environments", Some(json!({"name": "persist", "config": {"type": "cloud"}})))
            .await;
        let agent =
            api.ok(Method::POST, "/v1/agents", Some(json!({"name": "persist", "model": "claude-sonnet-4-6"}))).await;
        let aid = agent["id"].as_str().unwrap().to_string();
        api.ok(Method::POST, &format!("/v1/agents/{aid}"), Some(json!({"name": "persist-v2"}))).await;
        let vault = api.ok(Method::POST, "/v1/vaults", Some(json!({"display_name": "persist"}))).await;
        let s = api.ok(Method::POST, "/v1/sessions", Some(json!({"agent": aid, "environment_id": env["id"]}))).await;
        let sid = s["id"].as_str().unwrap().to_string();
        let mut sent = Vec::new();
        for i in 0..4 {
            let r =
                api.ok(Method::POST, &format!("/v1/sessions/{sid}/events"), Some(msg(&format!("before {i}")))).await;
            sent.push(r["data"][0]["id"].as_str().unwrap().to_string());
        }
        (aid, env["id"].as_str().unwrap().to_string(), vault["id"].as_str().unwrap().to_string(), sid, sent)
    });
    // The seq of the first event, from a live stream.
    let first_seq = rt.block_on(async {
        let got = api.stream_user_events(&sid, Some("0"), 1, Duration::from_secs(15), async {}).await;
        assert_eq!(got[0].1, sent[0], "Last-Event-ID: 0 replays from the start");
        got[0].0
    });

    server.restart(); // SIGKILL, then start on the same storage
    let api = Api::new(server);
    rt.block_on(async {
        let a = api.ok(Method::GET, &format!("/v1/agents/{agent}"), None).await;
        assert_eq!(a["version"], 2);
        assert_eq!(a["name"], "persist-v2");
        api.ok(Method::GET, &format!("/v1/environments/{env}"), None).await;
        api.ok(Method::GET, &format!("/v1/vaults/{vault}"), None).await;
        check_memory_store(&api, &store, &memory).await;
        api.ok(Method::GET, &format!("/v1/sessions/{sid}"), None).await;
        let listed = api.ok(Method::GET, &format!("/v1/sessions/{sid}/events?types[]=user.message"), None).await;
        let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, sent.iter().map(String::as_str).collect::<Vec<_>>());

        // Resume across the restart: everything after the first event, then live.
        let after = api
            .ok(Method::POST, &format!("/v1/sessions/{sid}/events"), Some(msg("after restart")))
            .await["data"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let got =
            api.stream_user_events(&sid, Some(&first_seq.to_string()), 4, Duration::from_secs(15), async {}).await;
        let want: Vec<String> = sent[1..].iter().cloned().chain([after]).collect();
        assert_eq!(got.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>(), want);
        // Sequence numbers keep increasing across the restart (no reuse).
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > first_seq, "{seqs:?}");
    });
    server.assert_alive();
}

#[test]
fn survives_kill_and_restart_sqlite() {
    let mut server = Server::start(Backend::Sqlite);
    survives_restart(&mut server);
}

#[test]
fn survives_kill_and_restart_postgres() {
    let pg = Postgres::start();
    let mut server = Server::start(Backend::Postgres(&pg));
    survives_restart(&mut server);
}

// ---------------------------------------------------------------------------------------------
// two nodes, one PostgreSQL
// ---------------------------------------------------------------------------------------------

#[test]
fn two_nodes_share_postgres() {
    let pg = Postgres::start();
    let mut a = Server::start(Backend::Postgres(&pg));
    let mut b = a.start_second_node();
    let rt = rt();
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    rt.block_on(async {
        let env = api_a.ok(Method::POST, "/v1/environments", Some(json!({"name": "shared"}))).await;
        let agent =
            api_a.ok(Method::POST, "/v1/agents", Some(json!({"name": "shared", "model": "claude-sonnet-4-6"}))).await;
        // B sees A's writes, and can use them.
        api_b.ok(Method::GET, &format!("/v1/agents/{}", agent["id"].as_str().unwrap()), None).await;
        let s = api_b
            .ok(Method::POST, "/v1/sessions", Some(json!({"agent": agent["id"], "environment_id": env["id"]})))
            .await;
        let sid = s["id"].as_str().unwrap().to_string();
        // Optimistic concurrency holds across nodes.
        let aid = agent["id"].as_str().unwrap();
        let (s1, _) =
            api_a.call(Method::POST, &format!("/v1/agents/{aid}"), Some(json!({"version": 1, "name": "a"}))).await;
        let (s2, _) =
            api_b.call(Method::POST, &format!("/v1/agents/{aid}"), Some(json!({"version": 1, "name": "b"}))).await;
        assert_eq!((s1, s2), (200, 409));
        // Vault secrets written on A are usable on B (same secret key): an LLM vault made on
        // A passes session-create checks on B.
        let v = api_a
            .ok(
                Method::POST,
                "/v1/vaults",
                Some(json!({"display_name": "llm", "metadata": {"sandbox0.managed_agents.role": "llm",
                    "sandbox0.managed_agents.engine": "codex"}})),
            )
            .await;
        let vid = v["id"].as_str().unwrap();
        api_a
            .ok(
                Method::POST,
                &format!("/v1/vaults/{vid}/credentials"),
                Some(json!({"auth": {"type": "static_bearer", "token": "model-key"}})),
            )
            .await;
        api_b
            .ok(
                Method::POST,
                "/v1/sessions",
                Some(json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": [vid]})),
            )
            .await;
        // Last (the slowest to fail): a client streaming from B sees events sent through A,
        // live (PostgreSQL LISTEN/NOTIFY or equivalent between nodes).
        let send_on_a = async {
            let r = api_a.ok(Method::POST, &format!("/v1/sessions/{sid}/events"), Some(msg("via node A"))).await;
            assert!(r["data"][0]["id"].is_string());
        };
        let got = api_b.stream_user_events(&sid, None, 1, Duration::from_secs(20), send_on_a).await;
        let listed = api_a.ok(Method::GET, &format!("/v1/sessions/{sid}/events?types[]=user.message"), None).await;
        assert_eq!(got[0].1, listed["data"][0]["id"].as_str().unwrap());
    });
    a.assert_alive();
    b.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// memory paths in byte order under a locale's collation
// ---------------------------------------------------------------------------------------------

/// Memory lists walk paths in byte order (a prefix's memories are one byte range, roll-ups are
/// contiguous) also on a database whose default collation is a locale's, where `a` sorts before
/// `B` and punctuation is nearly ignored: the `path` column is declared `COLLATE "C"`.
#[test]
fn memory_paths_sort_as_bytes_under_a_locale_collation_postgres() {
    use bridle::model::memory::{Actor, Item, PageBuilder, content_sha256};
    use bridle::store::{MemoryRow, MemoryStoreRow, Store};
    use sqlx::Connection;

    let pg = Postgres::start();
    let admin = pg.create_database("admin");
    let url = format!("{}/bridle_icu", admin.rsplit_once('/').unwrap().0);
    rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(&admin).await.expect("connect");
        sqlx::query("CREATE DATABASE bridle_icu TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'")
            .execute(&mut c)
            .await
            .expect("create a database with an ICU collation");
        let mut icu = sqlx::PgConnection::connect(&url).await.expect("connect");
        let (locale_order,): (bool,) = sqlx::query_as("SELECT 'a.md' < 'B.md'").fetch_one(&mut icu).await.unwrap();
        assert!(locale_order, "the database's default collation must not be bytewise, or this test proves nothing");

        let store = Store::connect(&url).await.expect("open and migrate");
        let s = MemoryStoreRow {
            id: "memstore_01ICU".into(),
            created_at: 1,
            updated_at: 1,
            archived_at: None,
            name: "icu".into(),
            description: String::new(),
            metadata: Default::default(),
        };
        store.create_memory_store(&s).await.unwrap();
        let by = Actor::ApiActor { api_key_id: "apikey_1".into() };
        let paths = ["/b.md", "/a0.md", "/\u{e9}.md", "/a/y.md", "/Z.md", "/a-b.md", "/a/x.md", "/B.md"];
        for (i, p) in paths.iter().enumerate() {
            let m = MemoryRow {
                id: format!("mem_{i}"),
                store_id: s.id.clone(),
                path: p.to_string(),
                content: String::new(),
                content_sha256: content_sha256(""),
                content_size_bytes: 0,
                version_id: format!("memver_{i}"),
                created_at: 1,
                updated_at: 1,
            };
            store.create_memory(&m, &by).await.unwrap();
        }
        let list = |prefix: &'static str, depth: usize| {
            let store = &store;
            async move {
                let mut page = PageBuilder::new(prefix, depth, 100);
                store.list_memories("memstore_01ICU", prefix, None, false, &mut page).await.unwrap();
                page.finish()
                    .0
                    .iter()
                    .map(|i| match i {
                        Item::Memory(p, _) => p.clone(),
                        Item::Prefix(p) => format!("{p}*"),
                    })
                    .collect::<Vec<_>>()
            }
        };
        let mut bytewise: Vec<&str> = paths.to_vec();
        bytewise.sort();
        assert_eq!(list("/", 0).await, bytewise);
        assert_eq!(list("/", 1).await, ["/B.md", "/Z.md", "/a-b.md", "/a/*", "/a0.md", "/b.md", "/\u{e9}.md"]);
        assert_eq!(list("/a/", 0).await, ["/a/x.md", "/a/y.md"]);
    });
}
