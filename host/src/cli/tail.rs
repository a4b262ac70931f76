//! `bridle sessions tail ID`: a session's events rendered for a terminal.
//!
//! History first (the events list, oldest first), then the live stream resumed right after
//! the last listed event (`Last-Event-ID` = its sequence number: a session's log is dense
//! from 1), so nothing is shown twice or missed. A dropped stream is resumed the same way.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use console::Style;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::Connection;
use super::client::{ApiClient, ApiError, all_pages};
use super::sessions::clip;
use crate::config::Config;

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Session id (`sesn_...`).
    pub id: String,
    #[command(flatten)]
    pub conn: Connection,
    /// Exit once the session is idle with a terminal stop reason (end_turn,
    /// retries_exhausted), or terminated; default: follow until Ctrl-C.
    /// A session with no finished turn yet keeps it waiting (by design: start
    /// the tail, then send the message).
    #[arg(long)]
    pub until_idle: bool,
    /// Plain text: no colours, no spinner (also when stdout is not a terminal, or NO_COLOR is set).
    #[arg(long)]
    pub no_color: bool,
}

pub async fn tail(config: &Config, args: TailArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(config, &args.conn)?;
    let fancy = super::fancy_output(args.no_color);
    let session = client.get_json(&format!("/v1/sessions/{}", args.id), &[]).await?;
    let out = Output::new(fancy);
    out.line(&Renderer::header(&session, fancy));

    let mut renderer = Renderer::new(fancy);
    let mut history = Vec::new();
    all_pages(
        &client,
        &format!("/v1/sessions/{}/events", args.id),
        vec![("limit", "1000".into()), ("order", "asc".into())],
        |e| history.push(e),
    )
    .await?;
    let mut last_seq = history.len() as i64;
    for e in &history {
        for l in renderer.render(e) {
            out.line(&l);
        }
    }
    out.spinner(renderer.activity());
    if renderer.gone() || (args.until_idle && renderer.settled()) {
        out.finish();
        return Ok(());
    }

    let follow = async {
        let mut backoff = Duration::from_millis(250);
        loop {
            match client.event_stream(&args.id, Some(last_seq)).await {
                Ok(mut stream) => {
                    while let Some(item) = stream.next().await {
                        let frame = match item {
                            Ok(f) => f,
                            Err(e) => {
                                out.note(&format!("event stream interrupted ({e}); resuming"));
                                break;
                            }
                        };
                        match frame.event.as_str() {
                            "ping" => continue,
                            "error" => bail!("the event stream reported an error: {}", frame.data),
                            _ => {}
                        }
                        let Ok(event) = serde_json::from_str::<Value>(&frame.data) else {
                            out.note(&format!("unreadable `{}` frame: {}", frame.event, clip(&frame.data, 200)));
                            continue;
                        };
                        if let Ok(seq) = frame.id.parse::<i64>() {
                            last_seq = last_seq.max(seq);
                        }
                        backoff = Duration::from_millis(250);
                        for l in renderer.render(&event) {
                            out.line(&l);
                        }
                        out.spinner(renderer.activity());
                        if renderer.gone() || (args.until_idle && renderer.settled()) {
                            return Ok(());
                        }
                    }
                }
                // A client error (the session is gone, the key revoked) will not heal.
                Err(e) if is_client_error(&e) => return Err(e),
                Err(e) => out.note(&format!("{e:#}; retrying")),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    };
    let result = tokio::select! {
        r = follow => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    out.finish();
    result
}

fn is_client_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>().is_some_and(ApiError::is_permanent)
}

/// Lines to stdout, around a spinner that is shown only on a terminal.
struct Output {
    bar: ProgressBar,
    fancy: bool,
    spinning: std::cell::Cell<bool>,
}

impl Output {
    fn new(fancy: bool) -> Output {
        let bar = if fancy {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Output { bar, fancy, spinning: std::cell::Cell::new(false) }
    }

    fn line(&self, l: &str) {
        self.bar.suspend(|| super::say(l));
    }

    fn note(&self, l: &str) {
        self.bar.suspend(|| eprintln!("{l}"));
    }

    /// Spin with `activity` while the agent works; clear the spinner otherwise.
    fn spinner(&self, activity: Option<String>) {
        if !self.fancy {
            return;
        }
        match activity {
            Some(msg) => {
                if !self.spinning.replace(true) {
                    self.bar.reset();
                    self.bar.enable_steady_tick(Duration::from_millis(100));
                }
                self.bar.set_message(msg);
            }
            None => {
                if self.spinning.replace(false) {
                    self.bar.finish_and_clear();
                }
            }
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Turns events into display lines and tracks what the session is doing.
pub struct Renderer {
    fancy: bool,
    /// Tool names by tool-use event id, to label results.
    tools: HashMap<String, String>,
    /// Idle with a terminal stop reason (or terminated) and nothing new since.
    settled: bool,
    /// The session was deleted or terminated: no more events will come.
    gone: bool,
    /// What the agent is doing, while it works.
    activity: Option<String>,
}

/// Width of the event label column.
const LABEL: usize = 8;
/// Longest tool result excerpt, in lines.
const RESULT_LINES: usize = 6;

impl Renderer {
    pub fn new(fancy: bool) -> Renderer {
        Renderer { fancy, tools: HashMap::new(), settled: false, gone: false, activity: None }
    }

    /// `session sesn_... · idle · agent coder (model) · "title"`.
    pub fn header(s: &Value, fancy: bool) -> String {
        let mut parts = vec![format!("session {}", s["id"].as_str().unwrap_or("?"))];
        parts.push(s["status"].as_str().unwrap_or("?").to_owned());
        let agent = &s["agent"];
        if let Some(name) = agent["name"].as_str() {
            match agent["model"]["id"].as_str() {
                Some(m) => parts.push(format!("agent {name} ({m})")),
                None => parts.push(format!("agent {name}")),
            }
        }
        if let Some(t) = s["title"].as_str() {
            parts.push(format!("\"{t}\""));
        }
        let line = parts.join(" · ");
        if fancy { Style::new().bold().apply_to(line).to_string() } else { line }
    }

    /// Idle with a terminal stop reason, or terminated, and no activity since.
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Deleted or terminated.
    pub fn gone(&self) -> bool {
        self.gone
    }

    /// The spinner message while the agent works.
    pub fn activity(&self) -> Option<String> {
        self.activity.clone()
    }

    /// The display lines of one event (none for events not worth a line).
    pub fn render(&mut self, e: &Value) -> Vec<String> {
        let kind = e["type"].as_str().unwrap_or("");
        let time = e["processed_at"].as_str().and_then(clock).unwrap_or_else(|| "--:--:--".into());
        let (label, style, body): (&str, Style, String) = match kind {
            "user.message" => {
                self.settled = false;
                ("user", Style::new().green().bold(), text_of(&e["content"]))
            }
            "user.interrupt" => ("user", Style::new().green(), "(interrupt)".into()),
            "user.tool_confirmation" => {
                self.settled = false;
                let verdict = e["result"].as_str().unwrap_or("?");
                let mut s = format!("{verdict} {}", e["tool_use_id"].as_str().unwrap_or(""));
                if let Some(m) = e["deny_message"].as_str() {
                    s.push_str(&format!(": {m}"));
                }
                ("confirm", Style::new().green(), s)
            }
            "user.custom_tool_result" => {
                self.settled = false;
                ("result", Style::new().green(), text_of(&e["content"]))
            }
            "system.message" => ("system", Style::new().dim(), text_of(&e["content"])),
            "agent.message" => ("agent", Style::new().bold(), text_of(&e["content"])),
            "agent.thinking" => {
                self.activity = Some("thinking".into());
                ("thinking", Style::new().dim(), String::new())
            }
            "agent.tool_use" | "agent.mcp_tool_use" | "agent.custom_tool_use" => {
                let mut name = e["name"].as_str().unwrap_or("?").to_owned();
                if let Some(server) = e["mcp_server_name"].as_str() {
                    name = format!("{server}/{name}");
                }
                if let Some(id) = e["id"].as_str() {
                    self.tools.insert(id.to_owned(), name.clone());
                }
                self.activity = Some(format!("running {name}"));
                let mut s = format!("{name}  {}", tool_input(&e["input"]));
                match e["evaluated_permission"].as_str() {
                    Some("ask") => s.push_str("  [needs confirmation]"),
                    Some("deny") => s.push_str("  [denied]"),
                    _ => {}
                }
                ("tool", Style::new().cyan(), s)
            }
            "agent.tool_result" | "agent.mcp_tool_result" => {
                let use_id = e["tool_use_id"].as_str().or_else(|| e["mcp_tool_use_id"].as_str()).unwrap_or("");
                let name = self.tools.get(use_id).cloned().unwrap_or_else(|| "tool".into());
                self.activity = Some("working".into());
                let failed = e["is_error"].as_bool().unwrap_or(false);
                let output = excerpt(&text_of(&e["content"]), RESULT_LINES);
                let s = if output.is_empty() {
                    format!("{name}  {}", if failed { "error" } else { "ok" })
                } else {
                    format!("{name}  {}\n{output}", if failed { "error:" } else { "→" })
                };
                ("result", if failed { Style::new().red() } else { Style::new().cyan().dim() }, s)
            }
            "session.status_running" => {
                self.settled = false;
                self.activity = Some("working".into());
                ("status", Style::new().yellow(), "running".into())
            }
            "session.status_rescheduled" => {
                self.settled = false;
                self.activity = Some("rescheduled, retrying".into());
                ("status", Style::new().yellow(), "rescheduled".into())
            }
            "session.status_idle" => {
                let reason = e["stop_reason"]["type"].as_str().unwrap_or("?").to_owned();
                self.activity = None;
                self.settled = reason != "requires_action";
                let mut s = format!("idle ({reason})");
                if let Some(ids) = e["stop_reason"]["event_ids"].as_array() {
                    let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
                    s.push_str(&format!(": waiting for {}", ids.join(", ")));
                }
                ("status", Style::new().yellow(), s)
            }
            "session.status_terminated" => {
                self.activity = None;
                self.settled = true;
                self.gone = true;
                ("status", Style::new().red(), "terminated".into())
            }
            "session.deleted" => {
                self.activity = None;
                self.settled = true;
                self.gone = true;
                ("status", Style::new().red(), "deleted".into())
            }
            "session.error" => {
                let err = &e["error"];
                let retry = err["retry_status"]["type"].as_str().unwrap_or("?");
                let s = format!(
                    "{}: {} [{retry}]",
                    err["type"].as_str().unwrap_or("error"),
                    err["message"].as_str().unwrap_or("")
                );
                ("error", Style::new().red().bold(), s)
            }
            "session.updated" => {
                let mut fields: Vec<&str> = e
                    .as_object()
                    .map(|m| {
                        m.keys().map(String::as_str).filter(|k| !matches!(*k, "type" | "id" | "processed_at")).collect()
                    })
                    .unwrap_or_default();
                fields.sort_unstable();
                ("updated", Style::new().dim(), fields.join(", "))
            }
            "span.model_request_start" => {
                self.activity = Some("waiting for the model".into());
                return Vec::new();
            }
            "span.model_request_end" => {
                self.activity = Some("working".into());
                let u = &e["model_usage"];
                let n = |k: &str| u[k].as_i64().unwrap_or(0);
                let mut s = format!("in {} · out {}", n("input_tokens"), n("output_tokens"));
                let (read, write) = (n("cache_read_input_tokens"), n("cache_creation_input_tokens"));
                if read > 0 || write > 0 {
                    s.push_str(&format!(" · cache read {read} · cache write {write}"));
                }
                if e["is_error"].as_bool() == Some(true) {
                    s.push_str(" · request failed");
                }
                ("usage", Style::new().dim(), s)
            }
            other => ("event", Style::new().dim(), other.to_owned()),
        };
        let label = format!("{label:<LABEL$}");
        let indent = " ".repeat(time.len() + 1 + LABEL + 1);
        let mut lines = body.lines();
        let first = lines.next().unwrap_or("").to_owned();
        let mut out = Vec::new();
        let paint = |s: &str| if self.fancy { style.apply_to(s).to_string() } else { s.to_owned() };
        let time = if self.fancy { Style::new().dim().apply_to(&time).to_string() } else { time };
        out.push(format!("{time} {} {}", paint(&label), paint(&first)).trim_end().to_owned());
        for l in lines {
            out.push(format!("{indent}{}", paint(l)).trim_end().to_owned());
        }
        out
    }
}

/// `HH:MM:SS` (UTC) of an RFC 3339 time.
fn clock(rfc3339: &str) -> Option<String> {
    let t = crate::time::rfc3339(crate::time::parse_rfc3339(rfc3339)?);
    Some(t[11..19].to_owned())
}

/// The text blocks of a content array, joined; other blocks by their type.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b["type"].as_str() {
                Some("text") => b["text"].as_str().unwrap_or("").to_owned(),
                Some(t) => format!("[{t}]"),
                None => String::new(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A tool's input on one line: the command for shell tools, compact JSON otherwise.
fn tool_input(input: &Value) -> String {
    let one_line = |s: &str| clip(&s.replace('\n', "⏎"), 160);
    for key in ["command", "cmd", "file_path", "path", "pattern", "url", "query"] {
        if let Some(s) = input[key].as_str()
            && input.as_object().is_some_and(|m| m.len() <= 2)
        {
            return one_line(s);
        }
    }
    if let Some(cmd) = input["command"].as_str() {
        return one_line(cmd);
    }
    one_line(&input.to_string())
}

/// The first `max` lines (each clipped), with a count of the rest.
fn excerpt(text: &str, max: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let mut out: Vec<String> = lines.iter().take(max).map(|l| clip(l, 200)).collect();
    if lines.len() > max {
        out.push(format!("… {} more lines", lines.len() - max));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain(r: &mut Renderer, e: Value) -> Vec<String> {
        r.render(&e)
    }

    #[test]
    fn renders_a_turn_and_tracks_state() {
        let t = "2026-11-27T00:12:03.5Z";
        let mut r = Renderer::new(false);
        assert!(!r.settled());
        let l = plain(
            &mut r,
            json!({"type": "user.message", "processed_at": t, "content": [{"type": "text", "text": "hi\nthere"}]}),
        );
        assert_eq!(l, ["00:12:03 user     hi", "                  there"]);
        let l = plain(&mut r, json!({"type": "session.status_running", "processed_at": t}));
        assert_eq!(l, ["00:12:03 status   running"]);
        assert_eq!(r.activity().as_deref(), Some("working"));
        assert!(plain(&mut r, json!({"type": "span.model_request_start", "processed_at": t})).is_empty());
        let l = plain(
            &mut r,
            json!({"type": "agent.tool_use", "id": "sevt_1", "processed_at": t, "name": "bash",
                   "input": {"command": "echo hi > out.txt"}, "evaluated_permission": "allow"}),
        );
        assert_eq!(l, ["00:12:03 tool     bash  echo hi > out.txt"]);
        assert_eq!(r.activity().as_deref(), Some("running bash"));
        let l = plain(
            &mut r,
            json!({"type": "agent.tool_result", "processed_at": t, "tool_use_id": "sevt_1",
                   "content": [{"type": "text", "text": "a\nb"}], "is_error": false}),
        );
        assert_eq!(l, ["00:12:03 result   bash  →", "                  a", "                  b"]);
        let l = plain(
            &mut r,
            json!({"type": "session.error", "processed_at": t, "error": {"type": "model_overloaded_error",
                   "message": "Overloaded", "retry_status": {"type": "retrying"}}}),
        );
        assert_eq!(l, ["00:12:03 error    model_overloaded_error: Overloaded [retrying]"]);
        let l = plain(
            &mut r,
            json!({"type": "span.model_request_end", "processed_at": t, "is_error": false,
                   "model_usage": {"input_tokens": 12, "output_tokens": 5, "cache_read_input_tokens": 0,
                                   "cache_creation_input_tokens": 0}}),
        );
        assert_eq!(l, ["00:12:03 usage    in 12 · out 5"]);
        let l = plain(
            &mut r,
            json!({"type": "session.status_idle", "processed_at": t, "stop_reason": {"type": "requires_action", "event_ids": ["sevt_1"]}}),
        );
        assert_eq!(l, ["00:12:03 status   idle (requires_action): waiting for sevt_1"]);
        assert!(!r.settled(), "requires_action is not terminal");
        plain(&mut r, json!({"type": "session.status_idle", "processed_at": t, "stop_reason": {"type": "end_turn"}}));
        assert!(r.settled());
        assert_eq!(r.activity(), None);
        plain(&mut r, json!({"type": "user.message", "processed_at": t, "content": []}));
        assert!(!r.settled(), "a new message starts work again");
        assert!(!r.gone());
        plain(&mut r, json!({"type": "session.deleted", "processed_at": t}));
        assert!(r.gone());
    }

    #[test]
    fn long_results_are_cut() {
        let text: Vec<String> = (1..=10).map(|i| format!("line {i}")).collect();
        let e = excerpt(&text.join("\n"), 3);
        assert_eq!(e, "line 1\nline 2\nline 3\n… 7 more lines");
    }

    #[test]
    fn plain_output_has_no_escape_codes_and_fancy_output_does() {
        let e = json!({"type": "agent.message", "processed_at": "2026-11-27T00:00:00Z", "content": [{"type": "text", "text": "x"}]});
        assert!(!Renderer::new(false).render(&e)[0].contains('\x1b'));
        console::set_colors_enabled(true);
        assert!(Renderer::new(true).render(&e)[0].contains('\x1b'));
    }
}
