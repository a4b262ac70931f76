//! `bridle sessions list`: a table of sessions from a running server.

use clap::Args;
use serde_json::Value;

use super::Connection;
use super::client::ApiClient;
use crate::config::Config;

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Sessions per page (1-100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    /// Continue from a page token printed by a previous call.
    #[arg(long)]
    pub page: Option<String>,
    /// Fetch every page.
    #[arg(long, conflicts_with = "page")]
    pub all: bool,
    /// Only sessions in these statuses (idle, running, rescheduling, terminated).
    #[arg(long = "status", value_delimiter = ',')]
    pub statuses: Vec<String>,
    /// Only sessions of this agent.
    #[arg(long)]
    pub agent_id: Option<String>,
    /// Include archived sessions.
    #[arg(long)]
    pub include_archived: bool,
}

pub async fn list(config: &Config, args: ListArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(config, &args.conn)?;
    let mut query = vec![("limit", args.limit.to_string())];
    for s in &args.statuses {
        query.push(("statuses[]", s.clone()));
    }
    if let Some(a) = &args.agent_id {
        query.push(("agent_id", a.clone()));
    }
    if args.include_archived {
        query.push(("include_archived", "true".into()));
    }
    if let Some(p) = &args.page {
        query.push(("page", p.clone()));
    }
    let mut shown = 0usize;
    loop {
        let page = client.get_json("/v1/sessions", &query).await?;
        // After the first answer, so a failed request prints only its error.
        if shown == 0 && !page["data"].as_array().is_none_or(Vec::is_empty) {
            super::say(&header());
        }
        for s in page["data"].as_array().into_iter().flatten() {
            super::say(&row(s));
            shown += 1;
        }
        let next = page["next_page"].as_str().map(str::to_owned);
        match next {
            Some(token) if args.all => {
                query.retain(|(k, _)| *k != "page");
                query.push(("page", token));
            }
            Some(token) => {
                // On stderr, so stdout stays a plain table for scripts.
                eprintln!("more sessions: bridle sessions list --limit {} --page {token}", args.limit);
                break;
            }
            None => break,
        }
    }
    if shown == 0 {
        eprintln!("no sessions");
    }
    Ok(())
}

/// Column widths; the first fits a session id (`sesn_` and a 26-character ULID).
const WIDTHS: [usize; 4] = [31, 12, 32, 19];

fn header() -> String {
    let [a, b, c, d] = WIDTHS;
    format!("{:<a$} {:<b$} {:<c$} {:<d$} TITLE", "ID", "STATUS", "AGENT", "CREATED")
}

/// One table row: id, status (archived marked), agent name and model, creation time, title.
pub fn row(s: &Value) -> String {
    let [a, b, c, d] = WIDTHS;
    let id = s["id"].as_str().unwrap_or("?");
    let mut status = s["status"].as_str().unwrap_or("?").to_owned();
    if !s["archived_at"].is_null() {
        status.push_str(" (arch)");
    }
    let agent = &s["agent"];
    let name = agent["name"].as_str().or_else(|| agent["id"].as_str()).unwrap_or("?");
    let agent = match agent["model"]["id"].as_str().or_else(|| agent["model"].as_str()) {
        Some(model) => format!("{name} ({model})"),
        None => name.to_owned(),
    };
    let created = s["created_at"].as_str().map(short_time).unwrap_or_default();
    let title = s["title"].as_str().unwrap_or("-");
    format!("{id:<a$} {status:<b$} {:<c$} {created:<d$} {title}", clip(&agent, c))
}

/// `2026-11-27T00:12:03.123456Z` → `2026-11-27 00:12:03`.
pub fn short_time(rfc3339: &str) -> String {
    match crate::time::parse_rfc3339(rfc3339) {
        Some(micros) => {
            let t = crate::time::rfc3339(micros);
            format!("{} {}", &t[..10], &t[11..19])
        }
        None => rfc3339.to_owned(),
    }
}

/// At most `max` characters, with an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_show_agent_model_time_and_title() {
        let s = json!({
            "id": "sesn_01", "status": "idle", "archived_at": null, "title": "fix the build",
            "created_at": "2026-11-27T00:12:03.123456Z",
            "agent": {"id": "agent_1", "name": "coder", "model": {"id": "claude-sonnet-4-6"}}
        });
        let r = row(&s);
        assert!(r.starts_with("sesn_01 "), "{r}");
        assert!(r.contains(" idle "), "{r}");
        assert!(r.contains("coder (claude-sonnet-4-6)"), "{r}");
        assert!(r.contains("2026-11-27 00:12:03"), "{r}");
        assert!(r.ends_with(" fix the build"), "{r}");
        // Columns line up with the header for a real-length id.
        let real = json!({"id": "sesn_01M8DC0P2RDSK9179VJEE2H7KT", "status": "running", "agent": {"name": "coder"}});
        let (h, r) = (header(), row(&real));
        assert_eq!(h.find("STATUS"), r.find("running"), "\n{h}\n{r}");
        assert_eq!(h.find("AGENT"), r.find("coder"), "\n{h}\n{r}");
        let archived = json!({"id": "sesn_02", "status": "idle", "archived_at": "2026-11-27T00:00:00Z", "agent": {}});
        let r = row(&archived);
        assert!(r.contains("idle (arch)") && r.ends_with(" -"), "{r}");
    }

    #[test]
    fn clip_marks_cut_text() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
