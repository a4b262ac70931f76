//! Shared pieces of the load drivers in tests/bench: an API client, a raw SSE reader that
//! timestamps each frame on arrival, percentiles, process RSS, and SVG line charts.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use reqwest::{Client, Method};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const BETA: &str = "managed-agents-2026-04-01";

pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Wall-clock microseconds since the epoch (the clock the server stamps events with).
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or_default()
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub key: String,
    pub http: Client,
}

impl Api {
    pub fn new(base: &str, key: &str) -> Api {
        let http =
            Client::builder().pool_max_idle_per_host(64).timeout(Duration::from_secs(60)).build().expect("http client");
        Api { base: base.to_owned(), key: key.to_owned(), http }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .header("anthropic-beta", BETA);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb.send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let bytes = r.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(Method::POST, path, Some(&body)).await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Send one `user.message`.
    pub async fn message(&self, session: &str, text: &str) -> Result<Value, String> {
        let body = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]});
        self.call(Method::POST, &format!("/v1/sessions/{session}/events"), Some(&body)).await
    }

    /// Open a session's SSE stream; frames arrive on the returned channel, each stamped
    /// with the wall clock when its bytes were read. The stream is open when this returns.
    pub async fn stream(&self, session: &str) -> Result<mpsc::UnboundedReceiver<Frame>, String> {
        self.stream_with_deltas(session, &[]).await
    }

    /// [`Api::stream`] asking for the previews of `deltas` (`event_deltas[]`).
    pub async fn stream_with_deltas(
        &self,
        session: &str,
        deltas: &[&str],
    ) -> Result<mpsc::UnboundedReceiver<Frame>, String> {
        let query: Vec<(&str, &str)> = deltas.iter().map(|d| ("event_deltas[]", *d)).collect();
        let r = self
            .http
            .get(format!("{}/v1/sessions/{session}/events/stream", self.base))
            .query(&query)
            .header("x-api-key", &self.key)
            .header("anthropic-beta", BETA)
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("stream: {}", r.status()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut body = r.bytes_stream();
            let mut buf = String::new();
            loop {
                // Stop reading (and close the connection) once the reader is gone.
                let chunk = tokio::select! {
                    c = body.next() => c,
                    () = tx.closed() => return,
                };
                let Some(chunk) = chunk else { return };
                let at = now_us();
                let Ok(chunk) = chunk else { return };
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let raw: String = buf.drain(..end + 2).collect();
                    if let Some(f) = Frame::parse(&raw, at)
                        && tx.send(f).is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// One SSE frame as a client saw it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: String,
    pub seq: i64,
    pub data: String,
    /// Wall-clock µs when the client read it.
    pub at_us: i64,
}

impl Frame {
    fn parse(raw: &str, at_us: i64) -> Option<Frame> {
        let (mut kind, mut seq, mut data) = (String::new(), -1, String::new());
        for line in raw.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                kind = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("id:") {
                seq = v.trim().parse().unwrap_or(-1);
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        (!kind.is_empty() && kind != "ping").then_some(Frame { kind, seq, data, at_us })
    }

    /// The event's `processed_at` (server append time), in epoch µs.
    pub fn processed_at_us(&self) -> Option<i64> {
        let v: Value = serde_json::from_str(&self.data).ok()?;
        bridle::time::parse_rfc3339(v.get("processed_at")?.as_str()?)
    }
}

/// The `p`-quantile (0..=1) of sorted milliseconds.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Resident set size of a process, in KiB (from /proc).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One line of a chart: its name and (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart (log-scale x) written as SVG with plotters.
/// Write `tests/bench/charts/<file>` with [`line_chart`] and say where it is.
pub fn write_chart(file: &str, title: &str, x_label: &str, y_label: &str, series: &[Series]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/bench/charts").join(file);
    std::fs::create_dir_all(path.parent().expect("charts dir has a parent")).expect("create the charts dir");
    line_chart(&path, title, x_label, y_label, series).expect("write the chart");
    println!("chart: {}", path.display());
}

pub fn line_chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (x_min, x_max) = xs.fold((f64::MAX, 1.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (x_min, x_max) = (x_min.min(x_max) / 1.3, x_max * 1.3);
    let y_max = ys.fold(0.0f64, f64::max) * 1.15 + 1e-3;
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0f64..y_max)?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).x_label_formatter(&|x| format!("{x:.0}")).draw()?;
    let colors = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];
    for (i, s) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2)))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// The runtimes directory the end-to-end tests use: `$BRIDLE_RUNTIMES_DIR`, else
/// `<workspace>/target/bridle-runtimes`. Every runtime is installed there (a no-op when
/// up to date).
pub fn install_runtimes() -> std::path::PathBuf {
    let dir = std::env::var_os("BRIDLE_RUNTIMES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bridle-runtimes"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let rt = bridle::runtimes::Runtimes::new(&dir);
    if let Err(e) = rt.install(&bridle::runtimes::Runtime::ALL) {
        panic!("installing the runtimes into {}: {e:#}", dir.display());
    }
    dir.canonicalize().unwrap_or(dir)
}

/// The environment of a `bridle serve` that runs real sessions (real runtimes, real
/// sandboxes), logging in JSON with `extra_log` directives added.
pub fn session_server_env(runtimes: &Path, sandboxes: &Path, extra_log: &str) -> Vec<(String, String)> {
    vec![
        ("BRIDLE_RUNTIMES_DIR".into(), runtimes.display().to_string()),
        ("BRIDLE_AUTO_INSTALL".into(), "false".into()),
        ("BRIDLE_SESSIONS__SANDBOX_DIR".into(), sandboxes.display().to_string()),
        ("BRIDLE_SESSIONS__MAX_SANDBOXES".into(), "1000".into()),
        ("BRIDLE_SESSIONS__RUNTIME_IDLE_SECS".into(), "600".into()),
        ("BRIDLE_LOG".into(), format!("warn,bridle=info{extra_log}")),
    ]
}

/// Environment, LLM vault (engine `engine`, model calls to the fake) and agent for `model`;
/// returns (environment id, vault id, agent id).
pub async fn session_setup(
    api: &Api,
    engine: &str,
    llm_base_url: &str,
    token: &str,
    model: &str,
) -> (String, String, String) {
    let env = api
        .post(
            "/v1/environments",
            json!({"name": format!("bench-{model}"), "config": {"type": "cloud", "networking": {"type": "unrestricted"}}}),
        )
        .await;
    let vault = api
        .post(
            "/v1/vaults",
            json!({"display_name": format!("llm-{model}"), "metadata": {
                "sandbox0.managed_agents.role": "llm",
                "sandbox0.managed_agents.engine": engine,
                "sandbox0.managed_agents.llm_base_url": llm_base_url,
            }}),
        )
        .await;
    let vid = vault["id"].as_str().expect("vault id").to_owned();
    api.post(
        &format!("/v1/vaults/{vid}/credentials"),
        json!({"display_name": "model key", "auth": {"type": "static_bearer", "token": token}}),
    )
    .await;
    let agent = api
        .post(
            "/v1/agents",
            json!({"name": format!("bench-{model}"), "model": model, "tools": [{"type": "agent_toolset_20260401"}]}),
        )
        .await;
    (env["id"].as_str().unwrap().to_owned(), vid, agent["id"].as_str().unwrap().to_owned())
}

pub async fn new_session(api: &Api, env: &str, vault: &str, agent: &str) -> Result<String, String> {
    let s = api
        .call(Method::POST, "/v1/sessions", Some(&json!({"agent": agent, "environment_id": env, "vault_ids": [vault]})))
        .await?;
    Ok(s["id"].as_str().ok_or("session without id")?.to_owned())
}

/// Wait for the first frame matching `pred` (other frames are handed to `seen`), up to `limit`.
pub async fn wait_frame(
    rx: &mut mpsc::UnboundedReceiver<Frame>,
    limit: Duration,
    mut pred: impl FnMut(&Frame) -> bool,
    mut seen: impl FnMut(&Frame),
) -> Result<Frame, String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return Err(format!("timed out after {limit:?}")),
            Ok(None) => return Err("the event stream ended".into()),
            Ok(Some(f)) => {
                seen(&f);
                if f.kind == "session.error" || f.kind == "session.status_terminated" {
                    return Err(format!("{}: {}", f.kind, f.data));
                }
                if pred(&f) {
                    return Ok(f);
                }
            }
        }
    }
}
