//! A small client of Bridle's own HTTP API for the CLI: authentication headers, the error
//! envelope turned into readable errors, and the SSE event stream.

use std::time::Duration;

use anyhow::{Context, anyhow};
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::Stream;
use serde_json::Value;

use super::Connection;
use crate::api::auth::BETA;
use crate::config::Config;

/// The Anthropic API version header the official SDKs send.
const API_VERSION: &str = "2023-06-01";

pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// An SSE frame, or why the stream broke.
pub type SseItem = Result<Event, EventStreamError<reqwest::Error>>;

impl ApiClient {
    /// From flags/env, defaulting the URL to the configured listen address.
    pub fn new(config: &Config, conn: &Connection) -> anyhow::Result<ApiClient> {
        let base = match &conn.url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => default_url(config),
        };
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "--url must start with http:// or https://, got `{base}`"
        );
        let key = conn.api_key.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
            anyhow!("no API key: pass --api-key or set BRIDLE_API_KEY (`bridle keys create` makes one)")
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("bridle-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(ApiClient { http, base, key })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .header("anthropic-version", API_VERSION)
            .header("anthropic-beta", BETA)
    }

    /// `GET path?query` as JSON; an error response becomes an error naming its type.
    pub async fn get_json(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let resp = self
            .request(path)
            .query(query)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let resp = check(resp).await?;
        resp.json().await.with_context(|| format!("reading the response of GET {path}"))
    }

    /// Open a session's event stream. `after`: replay every event after this sequence number
    /// first (Bridle's `Last-Event-ID` resume).
    pub async fn event_stream(
        &self,
        session_id: &str,
        after: Option<i64>,
    ) -> anyhow::Result<impl Stream<Item = SseItem> + Unpin + use<>> {
        let mut req = self.request(&format!("/v1/sessions/{session_id}/events/stream"));
        if let Some(seq) = after {
            req = req.header("last-event-id", seq.to_string());
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let resp = check(resp).await?;
        Ok(resp.bytes_stream().eventsource())
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        anyhow!("cannot reach Bridle at {} ({e}); is `bridle serve` running there? (set --url)", self.base)
    }
}

/// `http://<listen>`, with a wildcard address replaced by loopback.
pub fn default_url(config: &Config) -> String {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}")
}

/// An error answer from the server, from Anthropic's error envelope.
#[derive(Debug, thiserror::Error)]
#[error("{status} {kind}: {message}{}", request_id.as_ref().map(|r| format!(" (request {r})")).unwrap_or_default())]
pub struct ApiError {
    pub status: u16,
    pub kind: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl ApiError {
    /// A client error that asking again will not fix (rate limits and timeouts will pass).
    pub fn is_permanent(&self) -> bool {
        (400..500).contains(&self.status) && self.status != 408 && self.status != 429
    }
}

/// Pass a success through; turn Anthropic's error envelope into an [`ApiError`].
async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let request_id = resp.headers().get("request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = resp.text().await.unwrap_or_default();
    let (kind, message) = match serde_json::from_str::<Value>(&body) {
        Ok(v) => (
            v["error"]["type"].as_str().unwrap_or("error").to_owned(),
            v["error"]["message"].as_str().unwrap_or(body.trim()).to_owned(),
        ),
        Err(_) => ("error".to_owned(), body.trim().to_owned()),
    };
    Err(ApiError { status: status.as_u16(), kind, message, request_id }.into())
}

/// Every page of a list endpoint, oldest first for events.
pub async fn all_pages(
    client: &ApiClient,
    path: &str,
    mut query: Vec<(&str, String)>,
    mut each: impl FnMut(Value),
) -> anyhow::Result<()> {
    loop {
        let page = client.get_json(path, &query).await?;
        for item in page["data"].as_array().into_iter().flatten() {
            each(item.clone());
        }
        match page["next_page"].as_str() {
            Some(token) => {
                query.retain(|(k, _)| *k != "page");
                query.push(("page", token.to_owned()));
            }
            None => return Ok(()),
        }
    }
}
