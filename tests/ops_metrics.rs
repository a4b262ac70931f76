//! Operations: `/metrics`, `/healthz`, `/readyz` and the JSON logs of a real `bridle serve`.
//!
//! * `metrics_health_and_readiness` (PostgreSQL): the scrape parses as Prometheus text, API
//!   requests move the request counters under their route template and status (exact deltas),
//!   no resource id leaks into a label; `/healthz` and `/readyz` answer 200, and once the test
//!   PostgreSQL is stopped `/readyz` answers 503 in the error envelope while `/healthz` and
//!   `/metrics` keep working. A second server serves the metrics at a configured path only.
//! * `session_run_moves_session_metrics` (SQLite): a real Claude Code turn in a bubblewrap
//!   sandbox against the fake model (a bash tool call that tries a host the environment does
//!   not allow) moves the sandbox-claim, plugin-call, egress, event-append and live-session
//!   metrics and the SSE subscriber gauge; its JSON log lines carry request and session ids.
//!
//! Needs root, bubblewrap, node/npm and python3 like `e2e_sessions` (runtimes are installed on
//! first use into `<workspace>/target/bridle-runtimes`, or `$BRIDLE_RUNTIMES_DIR`).
//!
//! Run: `cargo test -p bridle --test ops_metrics -- --nocapture`

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use bridle::runtimes::Runtime;
use bridle_fake_model::{Reply, Scenario, ToolCall};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Api, Backend, Postgres, Server, sessions};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The Prometheus text format (0.0.4), parsed strictly.
//
// Hand-written on purpose: the small crates either mis-split label values that contain `}`
// (our route templates do: `/v1/agents/{agent_id}`) or are LGPL.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug)]
struct Exposition {
    types: HashMap<String, String>,
    series: Vec<Series>,
}

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// `{a="x",b="y\"z"}` (the braces stripped by the caller's split) into a map; returns the rest.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (name, rest) = s.split_once('=').ok_or_else(|| format!("label without `=` in `{s}`"))?;
        let name = name.trim();
        if !is_label_name(name) {
            return Err(format!("bad label name `{name}`"));
        }
        let mut chars = rest.strip_prefix('"').ok_or_else(|| format!("label {name}: value not quoted"))?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("label {name}: bad escape {other:?}")),
                },
                Some((_, '\n')) | None => return Err(format!("label {name}: unterminated value")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        s = &rest[1 + end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut seen_samples: std::collections::HashSet<String> = Default::default();
    let mut series: Vec<Series> = Vec::new();
    let mut keys = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: `{line}`", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let parts: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match parts.as_slice() {
                ["TYPE", name, kind] => {
                    if !is_metric_name(name) {
                        return Err(at(format!("bad metric name {name}")));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind.trim()) {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    if seen_samples.contains(*name) || types.insert(name.to_string(), kind.trim().into()).is_some() {
                        return Err(at("TYPE after samples or repeated".into()));
                    }
                }
                ["HELP", name, ..] if !is_metric_name(name) => return Err(at(format!("bad metric name {name}"))),
                ["HELP", _, ..] => {}
                ["HELP" | "TYPE", ..] => return Err(at("malformed HELP/TYPE".into())),
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at(format!("bad metric name {name}")));
        }
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(l) => parse_labels(l).map_err(at)?,
            None => (BTreeMap::new(), &line[name_end..]),
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let value = match fields.as_slice() {
            [v] => parse_value(v),
            [v, ts] if ts.parse::<i64>().is_ok() => parse_value(v),
            _ => None,
        }
        .ok_or_else(|| at("bad value".into()))?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|base| matches!(types.get(*base).map(String::as_str), Some("histogram" | "summary")))
            .unwrap_or(name);
        seen_samples.insert(family.to_owned());
        if !keys.insert(format!("{name}{labels:?}")) {
            return Err(at("duplicate series".into()));
        }
        series.push(Series { name: name.to_owned(), labels, value });
    }
    let expo = Exposition { types, series };
    expo.check_histograms()?;
    Ok(expo)
}

impl Exposition {
    /// Every histogram: cumulative buckets up to `+Inf`, which equals `_count`.
    fn check_histograms(&self) -> Result<(), String> {
        for (family, _) in self.types.iter().filter(|(_, t)| *t == "histogram") {
            let bucket = format!("{family}_bucket");
            let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
            for s in self.series.iter().filter(|s| s.name == bucket) {
                let mut key = s.labels.clone();
                let le = key.remove("le").ok_or_else(|| format!("{bucket} without le"))?;
                let le = parse_value(&le).ok_or_else(|| format!("{bucket}: bad le {le}"))?;
                groups.entry(key).or_default().push((le, s.value));
            }
            for (key, mut buckets) in groups {
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                if !buckets.windows(2).all(|w| w[0].1 <= w[1].1) {
                    return Err(format!("{family}{key:?}: buckets are not cumulative: {buckets:?}"));
                }
                let inf = buckets.last().filter(|b| b.0 == f64::INFINITY).map(|b| b.1);
                let count = self.series.iter().find(|s| s.name == format!("{family}_count") && s.labels == key);
                match (inf, count) {
                    (Some(i), Some(c)) if i == c.value => {}
                    _ => return Err(format!("{family}{key:?}: +Inf bucket {inf:?} does not match _count")),
                }
            }
        }
        Ok(())
    }

    /// The sum over the series of `name` whose labels include `want` (0 when none).
    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.value)
            .sum()
    }
}

#[test]
fn the_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{route=\"/v1/x/{id}\",s=\"q\\\"\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n";
    let e = parse_exposition(good).unwrap();
    assert_eq!(e.sum("a_total", &[("route", "/v1/x/{id}"), ("s", "q\"")]), 3.0);
    for bad in [
        "a_total{route=\"x} 1\n",
        "a-b 1\n",
        "a 1 2 3\n",
        "a{x=\"1\"} one\n",
        "a 1\na 2\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE a counter\n# TYPE a counter\n",
        "# TYPE a countr\n",
        "# HELP\n",
        "# HELP 1a x\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted: {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl Api {
    async fn send(&self, method: Method, path: &str, body: Option<Value>, auth: bool) -> Resp {
        let mut rb = if auth {
            self.request(method.clone(), path)
        } else {
            self.http.request(method.clone(), format!("{}{path}", self.base))
        };
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        Resp { status, headers, text }
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self.send(method.clone(), path, body, true).await;
        assert!((200..300).contains(&r.status), "{method} {path} → {}: {}", r.status, r.text);
        r.json()
    }

    /// Scrape `path` without an API key; it must parse.
    async fn scrape(&self, path: &str) -> (Exposition, String) {
        let r = self.send(Method::GET, path, None, false).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "content-type {ct}");
        let e =
            parse_exposition(&r.text).unwrap_or_else(|e| panic!("GET {path} is not Prometheus text: {e}\n{}", r.text));
        (e, r.text)
    }
}

/// The envelope of an error answer, checked: `(error.type, message)`.
fn envelope(r: &Resp) -> (String, String) {
    let v = r.json();
    assert_eq!(v["type"], "error", "{v}");
    let rid = r.headers.get("request-id").and_then(|h| h.to_str().ok()).expect("request-id header");
    assert_eq!(v["request_id"], rid, "body and header request ids differ: {v}");
    (v["error"]["type"].as_str().unwrap().to_owned(), v["error"]["message"].as_str().unwrap().to_owned())
}

const REQS: &str = "bridle_http_requests_total";

fn req(method: &'static str, route: &'static str, status: &'static str) -> [(&'static str, &'static str); 3] {
    [("method", method), ("route", route), ("status", status)]
}

#[test]
fn metrics_health_and_readiness() {
    let pg = Postgres::start();
    let mut server = Server::start(Backend::Postgres(&pg));
    let moved = Server::start_opts(Backend::Sqlite, &[], &[("BRIDLE_METRICS__PATH", "/internal/metrics")]);
    rt().block_on(async {
        let api = Api::new(&server);
        let h = api.send(Method::GET, "/healthz", None, false).await;
        assert_eq!((h.status, h.json()), (200, json!({"status": "ok"})));
        let r = api.send(Method::GET, "/readyz", None, false).await;
        assert_eq!((r.status, r.json()), (200, json!({"status": "ready"})));

        let (before, _) = api.scrape("/metrics").await;
        let agent =
            api.ok(Method::POST, "/v1/agents", Some(json!({"name": "metrics", "model": "claude-sonnet-4-5"}))).await;
        let agent_id = agent["id"].as_str().unwrap().to_owned();
        for _ in 0..3 {
            api.ok(Method::GET, &format!("/v1/agents/{agent_id}"), None).await;
        }
        let missing = api.send(Method::GET, "/v1/agents/agent_01JZZZZZZZZZZZZZZZZZZZZZZZ", None, true).await;
        assert_eq!(missing.status, 404, "{}", missing.text);
        let unauth = api.send(Method::GET, "/v1/agents", None, false).await;
        assert_eq!(unauth.status, 401, "{}", unauth.text);
        let unknown = api.send(Method::GET, "/v1/no-such-thing/123", None, true).await;
        assert_eq!(unknown.status, 404, "{}", unknown.text);
        api.send(Method::GET, "/healthz", None, false).await;
        let wrong_method = api.send(Method::DELETE, "/healthz", None, false).await;
        assert_eq!(wrong_method.status, 405, "{}", wrong_method.text);
        let (after, text) = api.scrape("/metrics").await;

        let delta = |labels: &[(&str, &str)]| after.sum(REQS, labels) - before.sum(REQS, labels);
        assert_eq!(delta(&req("POST", "/v1/agents", "200")), 1.0);
        assert_eq!(delta(&req("GET", "/v1/agents/{agent_id}", "200")), 3.0);
        assert_eq!(delta(&req("GET", "/v1/agents/{agent_id}", "404")), 1.0);
        assert_eq!(delta(&req("GET", "/v1/agents", "401")), 1.0, "a request refused by auth keeps its route");
        assert_eq!(delta(&req("GET", "unmatched", "404")), 1.0, "unknown paths share one label");
        assert_eq!(delta(&req("DELETE", "/healthz", "405")), 1.0);
        assert_eq!(delta(&req("GET", "/healthz", "200")), 1.0);
        assert_eq!(after.sum(REQS, &req("GET", "/readyz", "200")), 1.0);
        // The first scrape is counted once it has been answered.
        assert_eq!(delta(&req("GET", "/metrics", "200")), 1.0);
        let dur = "bridle_http_request_duration_seconds_count";
        let route = [("method", "GET"), ("route", "/v1/agents/{agent_id}")];
        assert_eq!(after.sum(dur, &route) - before.sum(dur, &route), 4.0);
        assert_eq!(after.types.get(REQS).map(String::as_str), Some("counter"));
        assert_eq!(after.types.get("bridle_http_request_duration_seconds").map(String::as_str), Some("histogram"));
        assert!(text.contains("# HELP bridle_http_requests_total "), "help text missing");
        assert!(!text.contains(&agent_id) && !text.contains("agent_01"), "a resource id leaked into a label");

        // The database goes away: not ready (503, in the envelope), but alive and scrapable.
        drop(pg);
        let r = api.send(Method::GET, "/readyz", None, false).await;
        assert_eq!(r.status, 503, "{}", r.text);
        let (kind, message) = envelope(&r);
        assert_eq!(kind, "api_error");
        assert!(message.contains("database"), "{message}");
        let h = api.send(Method::GET, "/healthz", None, false).await;
        assert_eq!(h.status, 200, "{}", h.text);
        let (down, _) = api.scrape("/metrics").await;
        assert_eq!(down.sum(REQS, &req("GET", "/readyz", "503")), 1.0);
        assert!(server.log().contains("not ready: the database is not reachable"), "the cause is not logged");
        server.assert_alive();

        // Moved by configuration: served there, and only there.
        let api = Api::new(&moved);
        let old = api.send(Method::GET, "/metrics", None, false).await;
        assert_eq!((old.status, envelope(&old).0.as_str()), (404, "not_found_error"));
        let (m, _) = api.scrape("/internal/metrics").await;
        assert_eq!(m.sum(REQS, &req("GET", "unmatched", "404")), 1.0);
    });
}

// ---------------------------------------------------------------------------------------------
// A session run
// ---------------------------------------------------------------------------------------------

/// The probe runs `/usr/bin/curl` inside the sandbox (which sees the host's `/usr`): install
/// it when missing, as the support code does for bubblewrap.
fn ensure_curl() {
    if !Path::new("/usr/bin/curl").exists() {
        support::apt_install(&["curl"]);
    }
}

/// Read SSE frames until one of type `kind` (bounded by `limit`); returns the event bodies seen.
async fn read_until(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    kind: &str,
    limit: Duration,
) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let data: String = frame.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            let is_event = frame.lines().any(|l| l.starts_with("event:") && !l.contains("ping"));
            if is_event && !data.is_empty() {
                let v: Value = serde_json::from_str(&data).expect("frame data is JSON");
                let done = v["type"] == kind;
                seen.push(v);
                if done {
                    return seen;
                }
            }
        }
        let types: Vec<_> = seen.iter().map(|v| v["type"].clone()).collect();
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} within {limit:?}; events so far: {types:?}"))
            .unwrap_or_else(|| panic!("the stream ended before {kind}; events so far: {types:?}"))
            .expect("stream read error");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Scrape until `pred` holds (state that settles in the background), at most `limit`.
async fn scrape_until(api: &Api, what: &str, limit: Duration, pred: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (e, text) = api.scrape("/metrics").await;
        if pred(&e) {
            return e;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} not reached within {limit:?}:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn session_run_moves_session_metrics() {
    let runtimes = sessions::install(&[Runtime::ClaudeCode]);
    ensure_curl();
    let (fake, token) = sessions::fake_model("ops");
    let model = format!("ops-metrics-{}", std::process::id());
    // One turn: a bash call that tries a host the environment does not allow (the gateway
    // answers 403), then text. Each model request waits a little, so the turn is still running
    // when the test looks at the live-sessions gauge after `session.status_running`.
    let probe = "curl -s -o /dev/null -w 'status=%{http_code}' http://denied.bridle-metrics.invalid/; echo";
    fake.set_scenario(
        &model,
        Scenario {
            turns: vec![Reply {
                tools: vec![ToolCall::bash(probe)],
                text: "Probe said {{tool_output}}".into(),
                delay_ms: 1500,
                ..Reply::default()
            }],
            ..Scenario::default()
        },
    );
    let sandboxes = sessions::sandbox_dir();
    let server = sessions::session_server(
        Backend::Sqlite,
        &runtimes,
        sandboxes.path(),
        &[("BRIDLE_SSE_HEARTBEAT_SECS", "1"), ("BRIDLE_LOG_FORMAT", "json"), ("BRIDLE_LOG", "info,bridle=debug")],
    );
    rt().block_on(async {
        let api = Api::new(&server);
        let env = api
            .ok(
                Method::POST,
                "/v1/environments",
                Some(json!({"name": "ops", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": []}}})),
            )
            .await;
        let vault_id = api.llm_vault("llm", &fake.base_url(), &token).await;
        let agent = api
            .ok(
                Method::POST,
                "/v1/agents",
                Some(json!({"name": "ops", "model": model, "tools": [{"type": "agent_toolset_20260401"}]})),
            )
            .await;
        let session = api
            .ok(
                Method::POST,
                "/v1/sessions",
                Some(json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": [vault_id]})),
            )
            .await;
        let sid = session["id"].as_str().unwrap().to_owned();

        let (before, _) = api.scrape("/metrics").await;
        assert_eq!(before.sum("bridle_sse_subscribers", &[]), 0.0);
        let stream = api
            .request(Method::GET, &format!("/v1/sessions/{sid}/events/stream"))
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .expect("open the event stream");
        assert_eq!(stream.status().as_u16(), 200);
        let (open, _) = api.scrape("/metrics").await;
        assert_eq!(open.sum("bridle_sse_subscribers", &[]), 1.0, "one open stream");

        let sent = api
            .send(
                Method::POST,
                &format!("/v1/sessions/{sid}/events"),
                Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "Probe."}]}]})),
                true,
            )
            .await;
        assert_eq!(sent.status, 200, "{}", sent.text);
        let request_id = sent.headers.get("request-id").and_then(|v| v.to_str().ok()).unwrap().to_owned();
        let mut body = stream.bytes_stream();
        let mut buf = String::new();
        read_until(&mut body, &mut buf, "session.status_running", Duration::from_secs(180)).await;
        let (running, _) = api.scrape("/metrics").await;
        let live = |e: &Exposition, state| e.sum("bridle_sessions_live", &[("harness", "claude"), ("state", state)]);
        assert_eq!(live(&running, "running"), 1.0, "the live-sessions gauge during the turn");
        let evs = read_until(&mut body, &mut buf, "session.status_idle", Duration::from_secs(180)).await;
        let result = evs.iter().find(|e| e["type"] == "agent.tool_result").expect("a tool result");
        assert!(result.to_string().contains("status=403"), "the gateway did not refuse the probe: {result}");
        let idle = evs.last().unwrap();
        assert_eq!(idle["stop_reason"]["type"], "end_turn", "{idle}");

        let (after, text) = api.scrape("/metrics").await;
        let d = |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
        assert_eq!(live(&after, "idle"), 1.0, "the runner keeps the session live and idle");
        assert_eq!(live(&after, "running"), 0.0);
        assert_eq!(d("bridle_sandbox_claims_total", &[("driver", "local"), ("outcome", "started")]), 1.0);
        let claim = "bridle_sandbox_claim_duration_seconds_count";
        assert_eq!(d(claim, &[("driver", "local"), ("outcome", "started")]), 1.0);
        assert!(after.sum("bridle_sandbox_claim_duration_seconds_sum", &[("outcome", "started")]) > 0.0);
        let calls = "bridle_plugin_call_duration_seconds_count";
        assert_eq!(d(calls, &[("plugin", "claude"), ("call", "launch")]), 1.0);
        assert_eq!(d(calls, &[("plugin", "claude"), ("call", "on_input")]), 1.0);
        assert!(d(calls, &[("plugin", "claude"), ("call", "on_output")]) >= 3.0, "runtime lines go through the plugin");
        assert_eq!(after.sum("bridle_plugin_faults_total", &[]), 0.0, "no plugin faults in a clean turn");
        let egress = "bridle_egress_requests_total";
        assert!(d(egress, &[("decision", "allowed"), ("route", "model")]) >= 2.0, "two model requests at least");
        assert!(d(egress, &[("decision", "denied"), ("route", "http")]) >= 1.0, "the probe was denied");
        let append = "bridle_event_append_duration_seconds_count";
        assert_eq!(d(append, &[("backend", "sqlite"), ("writer", "api")]), 1.0, "one user.message batch");
        assert!(d(append, &[("backend", "sqlite"), ("writer", "runner")]) >= 4.0, "status and agent events");
        let ev_route = req("POST", "/v1/sessions/{session_id}/events", "200");
        assert_eq!(d(REQS, &ev_route), 1.0);
        assert!(!text.contains(&sid) && !text.contains("sesn_") && !text.contains("sbx_"), "an id leaked into a label");

        // Deleting the session ends its runner; closing the stream ends the subscription.
        drop(body);
        let del = api.send(Method::DELETE, &format!("/v1/sessions/{sid}"), None, true).await;
        assert_eq!(del.status, 200, "{}", del.text);
        scrape_until(&api, "no live session and no subscriber", Duration::from_secs(60), |e| {
            live(e, "idle") == 0.0 && live(e, "running") == 0.0 && e.sum("bridle_sse_subscribers", &[]) == 0.0
        })
        .await;

        // JSON logs: every line parses; request lines carry the request and session ids, and
        // the runner's lines the session id.
        let log = server.log();
        let lines: Vec<Value> = log
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}")))
            .collect();
        let in_span = |l: &Value, key: &str, want: &str| {
            l["spans"].as_array().is_some_and(|spans| spans.iter().any(|s| s[key] == want))
        };
        let done = lines
            .iter()
            .find(|l| l["fields"]["message"] == "request done" && in_span(l, "request_id", &request_id))
            .unwrap_or_else(|| panic!("no `request done` line for {request_id}"));
        assert!(in_span(done, "session_id", &sid), "the request span lacks the session id: {done}");
        assert!(
            lines.iter().any(|l| l["fields"]["message"] == "runtime started" && in_span(l, "session_id", &sid)),
            "the runner's `runtime started` line lacks the session span"
        );
        assert!(
            lines.iter().any(|l| l["fields"]["message"] == "egress denied" && in_span(l, "session_id", &sid)),
            "the egress gateway's denial lacks the session span"
        );
    });
    drop(fake);
}
