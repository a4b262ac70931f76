//! Helpers for the failover tests and the soak run: real `bridle serve` nodes running sessions
//! (real Claude Code in bubblewrap sandboxes) against the in-process fake model, a REST client,
//! a live SSE collector, and the invariant check over a session's stored event log.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;

use crate::support::sessions::session_server;
use crate::support::{Backend, Server};

// The soak benchmark takes these from here.
pub use crate::support::Api;
pub use crate::support::sessions::{install_runtimes, sandbox_dir};

/// Start a node running sessions from `sandboxes` with `runtimes`, with short leases. Each
/// node gets its own sandbox uid range from the test support.
pub fn start_node(backend: Backend<'_>, runtimes: &Path, sandboxes: &Path, lease_secs: u64) -> Server {
    let lease = lease_secs.to_string();
    session_server(
        backend,
        runtimes,
        sandboxes,
        &[
            ("BRIDLE_SESSIONS__LEASE_SECS", &lease),
            ("BRIDLE_SESSIONS__LEASE_RENEW_SECS", "1"),
            ("BRIDLE_LOG", "info,bridle=debug"),
        ],
    )
}

/// The database a node uses (its own SQLite file, or the shared PostgreSQL database).
pub fn database_url(server: &Server) -> String {
    match &server.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}?mode=ro", server.data_dir().join("bridle.db").display()),
    }
}

impl Api {
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
        let mut rb = self.request(method.clone(), path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| format!("{method} {path}: {e}"))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await.unwrap_or_else(|e| panic!("{e}"));
        assert!((200..300).contains(&status), "{method} {path} → {status}: {v}");
        v
    }

    /// Send one user message; returns its event id.
    pub async fn send(&self, sid: &str, text: &str) -> String {
        let body = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]});
        let r = self.ok(Method::POST, &format!("/v1/sessions/{sid}/events"), Some(body)).await;
        r["data"][0]["id"].as_str().expect("stored event id").to_owned()
    }

    /// An agent on `model` (Claude Code, its built-in tools), an LLM vault pointing at the fake
    /// model with `token`, and a session; returns the session id.
    pub async fn session(&self, model: &str, fake_url: &str, token: &str) -> String {
        let env = self.ok(Method::POST, "/v1/environments", Some(json!({"name": format!("env-{model}")}))).await;
        let agent = self
            .ok(
                Method::POST,
                "/v1/agents",
                Some(json!({"name": format!("agent-{model}"), "model": model,
                    "tools": [{"type": "agent_toolset_20260401"}]})),
            )
            .await;
        let vid = self.llm_vault(&format!("llm-{model}"), fake_url, token).await;
        let s = self
            .ok(
                Method::POST,
                "/v1/sessions",
                Some(json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": [vid]})),
            )
            .await;
        s["id"].as_str().unwrap().to_owned()
    }
}

/// One event frame of an SSE stream.
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: i64,
    pub kind: String,
    pub body: Value,
}

impl Frame {
    /// The text of an `agent.message`.
    pub fn text(&self) -> String {
        self.body["content"]
            .as_array()
            .map(|blocks| blocks.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join(""))
            .unwrap_or_default()
    }
}

/// A session's event stream from one node, collected in the background.
pub struct Stream {
    pub frames: Arc<Mutex<Vec<Frame>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream {
    /// Open the stream (from the start of the log) and collect its frames until dropped.
    pub async fn open(api: &Api, sid: &str) -> Stream {
        let resp = api
            .request(Method::GET, &format!("/v1/sessions/{sid}/events/stream"))
            .timeout(Duration::from_secs(3600))
            // Replay the whole log first, then follow it live.
            .header("Last-Event-ID", "0")
            .send()
            .await
            .expect("open stream");
        assert_eq!(resp.status().as_u16(), 200, "stream status");
        let frames = Arc::new(Mutex::new(Vec::new()));
        let out = frames.clone();
        let task = tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    let (mut id, mut data) = (None, String::new());
                    for line in frame.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = v.trim().parse::<i64>().ok();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    let (Some(seq), Ok(body)) = (id, serde_json::from_str::<Value>(&data)) else { continue };
                    let kind = body["type"].as_str().unwrap_or_default().to_owned();
                    out.lock().unwrap().push(Frame { seq, kind, body });
                }
            }
        });
        Stream { frames, task }
    }

    pub fn snapshot(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    /// Wait until a frame at index `from` or later matches; returns its index. Panics with
    /// the frames seen after `timeout` (a bound on a hang, not a speed check).
    pub async fn wait_for(&self, from: usize, what: &str, timeout: Duration, pred: impl Fn(&Frame) -> bool) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.snapshot().iter().skip(from).position(&pred) {
                return from + i;
            }
            if tokio::time::Instant::now() > deadline {
                let seen: Vec<String> =
                    self.snapshot().iter().map(|f| format!("{} {} {}", f.seq, f.kind, f.text())).collect();
                panic!("no frame for `{what}` after {timeout:?}; frames:\n{}", seen.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A session's stored event log, read straight from the database.
#[derive(Debug)]
pub struct Log {
    /// (seq, event id, type, body) in seq order.
    pub events: Vec<(i64, String, String, Value)>,
    pub last_seq: i64,
    /// The last user event the runner took in.
    pub input_seq: i64,
    pub lease_owner: Option<String>,
    /// The session's stored `usage`.
    pub usage: Value,
}

impl Log {
    pub async fn read(database_url: &str, sid: &str) -> Log {
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(database_url).await.expect("open database");
        let rows = sqlx::query("SELECT seq, id, type, body FROM session_events WHERE session_id = $1 ORDER BY seq")
            .bind(sid)
            .fetch_all(&mut conn)
            .await
            .expect("read events");
        let events = rows
            .iter()
            .map(|r| {
                let body: String = r.get("body");
                (r.get("seq"), r.get("id"), r.get("type"), serde_json::from_str(&body).expect("event body is JSON"))
            })
            .collect();
        let row = sqlx::query("SELECT last_seq, input_seq, lease_owner, body FROM sessions WHERE id = $1")
            .bind(sid)
            .fetch_one(&mut conn)
            .await
            .expect("read session");
        Log {
            events,
            last_seq: row.get("last_seq"),
            input_seq: row.get("input_seq"),
            lease_owner: row.get("lease_owner"),
            usage: serde_json::from_str::<Value>(&row.get::<String, _>("body")).expect("session body is JSON")["usage"]
                .clone(),
        }
    }

    /// The invariants every session's log keeps through crashes and failovers: sequence
    /// numbers 1..=last_seq with no gap or repeat, no event id twice, and the session's usage
    /// the sum of its stored model requests' and outcome verdicts' usage (a request cut off by a crash and run again
    /// counts twice, as it was paid twice; one never stored counts never). Returns the problems.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for key in ["input_tokens", "output_tokens"] {
            let summed: u64 = self
                .events
                .iter()
                .filter_map(|(_, _, k, b)| match k.as_str() {
                    "span.model_request_end" => b["model_usage"][key].as_u64(),
                    // An outcome's grader calls are paid too: their usage is on the verdict.
                    "span.outcome_evaluation_end" => b["usage"][key].as_u64(),
                    _ => None,
                })
                .sum();
            let stored = self.usage[key].as_u64().unwrap_or(0);
            if stored != summed {
                out.push(format!("usage.{key} is {stored} but the stored model requests add up to {summed}"));
            }
        }
        for (i, (seq, ..)) in self.events.iter().enumerate() {
            if *seq != i as i64 + 1 {
                out.push(format!("seq {seq} at position {} (gap or repeat)", i + 1));
                break;
            }
        }
        if self.events.len() as i64 != self.last_seq {
            out.push(format!("{} events stored but last_seq is {}", self.events.len(), self.last_seq));
        }
        let mut ids = HashSet::new();
        for (_, id, ..) in &self.events {
            if !ids.insert(id) {
                out.push(format!("event id {id} appears twice"));
            }
        }
        out
    }

    pub fn kinds(&self) -> Vec<&str> {
        self.events.iter().map(|(_, _, k, _)| k.as_str()).collect()
    }

    /// `agent.message` texts, in order.
    pub fn agent_texts(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|(_, _, k, _)| k == "agent.message")
            .map(|(.., b)| {
                b["content"]
                    .as_array()
                    .map(|blocks| blocks.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join(""))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The texts of the `user.message` events, in order.
    pub fn user_texts(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|(_, _, k, _)| k == "user.message")
            .filter_map(|(.., b)| b["content"][0]["text"].as_str().map(str::to_owned))
            .collect()
    }

    /// How many `agent.message` events answer `text` (the echo scenario quotes it).
    pub fn answers(&self, text: &str) -> usize {
        let quoted = format!("[{text}]");
        self.agent_texts().iter().filter(|t| t.contains(&quoted)).count()
    }

    /// Whether `text` was answered and its turn ended.
    pub fn answered(&self, text: &str) -> bool {
        let quoted = format!("[{text}]");
        let Some(at) = self.events.iter().position(|(_, _, k, b)| {
            k == "agent.message"
                && b["content"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|x| x["text"].as_str().is_some_and(|t| t.contains(&quoted))))
        }) else {
            return false;
        };
        self.events[at..].iter().any(|(_, _, k, _)| k == "session.status_idle")
    }

    /// How many `user.message` events carry exactly `text`.
    pub fn user_messages(&self, text: &str) -> usize {
        self.events
            .iter()
            .filter(|(_, _, k, b)| k == "user.message" && b["content"][0]["text"].as_str() == Some(text))
            .count()
    }
}

/// The reply of the failover scenario: it quotes the message it answers, streamed slowly so a
/// node can be killed mid-turn.
pub fn slow_echo(words: usize, chunk_delay_ms: u64) -> bridle_fake_model::Scenario {
    let filler: Vec<String> = (1..=words).map(|i| format!("w{i}")).collect();
    bridle_fake_model::Scenario {
        turns: vec![bridle_fake_model::Reply {
            text: format!("answer to [{{{{last_user}}}}] {}", filler.join(" ")),
            chunks: Some(words),
            chunk_delay_ms,
            ..bridle_fake_model::Reply::default()
        }],
        ..Default::default()
    }
}

/// The `last_user` texts of every model request for `model` (what the runtime was asked).
pub fn asked(fake: &bridle_fake_model::FakeModel, model: &str) -> Vec<Vec<String>> {
    fake.model_requests(model)
        .iter()
        .map(|r| bridle_fake_model::Conversation::from_messages(&r.body).user_texts)
        .collect()
}
