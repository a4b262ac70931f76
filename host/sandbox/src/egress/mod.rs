//! The host-side egress gateway of one sandbox.
//!
//! It listens on a unix socket that only that sandbox sees (its directory is
//! bound read-only at `/run/bridle`); the in-sandbox init relays
//! `127.0.0.1:PORT` to it. It speaks HTTP/1.1 and serves:
//!
//! * `CONNECT host:port` (HTTPS through `HTTPS_PROXY`) and absolute-form plain
//!   HTTP requests (`HTTP_PROXY`), both checked against the environment's
//!   network policy; loopback/private/link-local destinations only when named
//!   exactly in `allowed_hosts`;
//! * the model route `/llm/...` (origin form, `NO_PROXY` covers 127.0.0.1),
//!   forwarded to the session's `llm_base_url` with the vault credential added
//!   by the harness plugin's header rules. The token never enters the sandbox.
//!
//! Denials get `403` with a plain-text body saying why, and a `warn` log line.

pub mod policy;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixListener};
use tracing::{Instrument, debug, info_span, warn};

use crate::spec::{EgressPolicy, EgressStats, LlmRoute};
use policy::{Denial, HostPolicy};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type GwBody = BoxBody<Bytes, BoxError>;

/// The path prefix of the model route.
pub const LLM_PREFIX: &str = "/llm";

/// Shared activity clock: milliseconds since `epoch` of the last sign of life.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    open: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { epoch: Instant::now(), last_ms: AtomicU64::new(0), open: AtomicU64::new(0) })
    }
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    /// How long since the last sign of life; zero while a connection is open.
    pub fn idle_for(&self) -> std::time::Duration {
        if self.open.load(Ordering::Relaxed) > 0 {
            return std::time::Duration::ZERO;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        std::time::Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
    /// Count one more open connection/busy exec.
    pub fn open_raw(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }
    /// The matching close of [`open_raw`](Self::open_raw).
    pub fn close(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }
    fn open(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.touch();
        OpenGuard(self.clone())
    }
}

struct OpenGuard(Arc<Activity>);
impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

#[derive(Debug, Default)]
struct Counters {
    allowed: AtomicU64,
    denied: AtomicU64,
    model: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

/// Configuration of one sandbox's gateway.
#[derive(Clone)]
pub struct GatewayConfig {
    pub sandbox_id: String,
    pub session_id: String,
    pub policy: EgressPolicy,
    pub llm: Option<LlmRoute>,
    /// The port the in-sandbox relay listens on (to recognise the model route
    /// when a client sends it through the proxy anyway).
    pub relay_port: u16,
    /// Client for the model route (shared; TLS via rustls + webpki roots).
    pub model_client: reqwest::Client,
}

struct State {
    cfg: GatewayConfig,
    hosts: HostPolicy,
    counters: Counters,
    activity: Arc<Activity>,
    forward_client: tokio::sync::OnceCell<reqwest::Client>,
}

/// A running gateway; dropping it stops accepting.
pub struct Gateway {
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    /// Listen on `socket` (created; an existing file is replaced).
    pub fn bind(socket: &Path, cfg: GatewayConfig, activity: Arc<Activity>) -> anyhow::Result<Self> {
        let _ = std::fs::remove_file(socket);
        let listener =
            UnixListener::bind(socket).with_context(|| format!("bind egress socket {}", socket.display()))?;
        let state = Arc::new(State {
            hosts: HostPolicy::new(&cfg.policy),
            cfg,
            counters: Counters::default(),
            activity,
            forward_client: tokio::sync::OnceCell::new(),
        });
        let span = info_span!("egress", sandbox = %state.cfg.sandbox_id, session_id = %state.cfg.session_id);
        let st = state.clone();
        let task = tokio::spawn(
            async move {
                loop {
                    let stream = match listener.accept().await {
                        Ok((s, _)) => s,
                        Err(e) => {
                            warn!(error = %e, "egress accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let st = st.clone();
                    tokio::spawn(
                        async move {
                            let _open = st.activity.open();
                            let svc = service_fn(move |req| {
                                let st = st.clone();
                                async move { Ok::<_, Infallible>(handle(st, req).await) }
                            });
                            let conn = hyper::server::conn::http1::Builder::new()
                                .preserve_header_case(true)
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades();
                            if let Err(e) = conn.await {
                                debug!(error = %e, "egress connection ended");
                            }
                        }
                        .in_current_span(),
                    );
                }
            }
            .instrument(span),
        );
        Ok(Self { state, task })
    }

    pub fn stats(&self) -> EgressStats {
        let c = &self.state.counters;
        EgressStats {
            requests_allowed: c.allowed.load(Ordering::Relaxed),
            requests_denied: c.denied.load(Ordering::Relaxed),
            model_requests: c.model.load(Ordering::Relaxed),
            bytes_sent: c.sent.load(Ordering::Relaxed),
            bytes_received: c.received.load(Ordering::Relaxed),
        }
    }
}

fn full(status: StatusCode, body: String) -> Response<GwBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn empty(status: StatusCode) -> Response<GwBody> {
    let mut r = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r
}

fn deny(st: &State, route: &'static str, target: &str, why: &Denial) -> Response<GwBody> {
    st.counters.denied.fetch_add(1, Ordering::Relaxed);
    crate::metrics::egress("denied", route);
    let reason = match why {
        Denial::NotAllowed => match &st.cfg.policy.networking {
            crate::spec::Networking::Unrestricted => "not allowed".to_string(),
            crate::spec::Networking::Limited { allow_package_managers, allow_mcp_servers, .. } => format!(
                "networking is `limited` and the host is not in allowed_hosts \
                 (allow_package_managers={allow_package_managers}, allow_mcp_servers={allow_mcp_servers})"
            ),
        },
        Denial::PrivateAddress(ip) => format!(
            "it resolves to the internal address {ip}; loopback, private and link-local \
             destinations are reachable only when named exactly in allowed_hosts"
        ),
        Denial::BadHost => "the request names no valid host".to_string(),
    };
    warn!(target_host = %target, reason = %reason, "egress denied");
    let mut r = full(
        StatusCode::FORBIDDEN,
        format!("bridle egress gateway: access to {target} denied by the environment's network policy: {reason}\n"),
    );
    r.headers_mut().insert("x-bridle-egress", HeaderValue::from_static("denied"));
    r
}

fn bad_gateway(st: &State, target: &str, err: impl std::fmt::Display) -> Response<GwBody> {
    warn!(target_host = %target, error = %err, "egress upstream failed");
    let _ = st;
    full(StatusCode::BAD_GATEWAY, format!("bridle egress gateway: upstream {target} failed: {err}\n"))
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Response<GwBody> {
    st.activity.touch();
    if req.method() == Method::CONNECT {
        return connect(st, req).await;
    }
    let uri = req.uri().clone();
    let is_model_route = |path: &str| path == LLM_PREFIX || path.starts_with("/llm/");
    match uri.host() {
        None => {
            if is_model_route(uri.path()) {
                model_route(st, req).await
            } else {
                full(
                    StatusCode::NOT_FOUND,
                    format!("bridle egress gateway: unknown path {}; the model route is {LLM_PREFIX}/…\n", uri.path()),
                )
            }
        }
        Some(host) => {
            let local = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
                && uri.port_u16() == Some(st.cfg.relay_port);
            if local && is_model_route(uri.path()) { model_route(st, req).await } else { forward(st, req).await }
        }
    }
}

/// Resolve `host:port`, applying the address check.
async fn resolve(st: &State, host: &str, port: u16) -> Result<Vec<SocketAddr>, Result<Denial, String>> {
    let bare = policy::normalize_host(host);
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((bare.as_str(), port)).await {
        Ok(a) => a.collect(),
        Err(e) => return Err(Err(format!("cannot resolve {bare}: {e}"))),
    };
    let mut ok = Vec::new();
    let mut first_denial = None;
    for a in addrs {
        match st.hosts.check_addr(&bare, a.ip()) {
            Ok(()) => ok.push(a),
            Err(d) => {
                first_denial.get_or_insert(d);
            }
        }
    }
    if ok.is_empty() {
        return Err(match first_denial {
            Some(d) => Ok(d),
            None => Err(format!("{bare} has no address")),
        });
    }
    Ok(ok)
}

async fn connect(st: Arc<State>, req: Request<Incoming>) -> Response<GwBody> {
    let Some(auth) = req.uri().authority().cloned() else {
        return full(StatusCode::BAD_REQUEST, "bridle egress gateway: CONNECT needs host:port\n".into());
    };
    let host = auth.host().to_string();
    let port = auth.port_u16().unwrap_or(443);
    let target = format!("{host}:{port}");
    if let Err(d) = st.hosts.allows(&host) {
        return deny(&st, "connect", &target, &d);
    }
    let addrs = match resolve(&st, &host, port).await {
        Ok(a) => a,
        Err(Ok(d)) => return deny(&st, "connect", &target, &d),
        Err(Err(e)) => return bad_gateway(&st, &target, e),
    };
    let mut upstream = match TcpStream::connect(&addrs[..]).await {
        Ok(s) => s,
        Err(e) => return bad_gateway(&st, &target, e),
    };
    st.counters.allowed.fetch_add(1, Ordering::Relaxed);
    crate::metrics::egress("allowed", "connect");
    debug!(target_host = %target, "egress tunnel");
    let st2 = st.clone();
    tokio::spawn(
        async move {
            let _open = st2.activity.open();
            match hyper::upgrade::on(req).await {
                Ok(up) => {
                    let mut up = TokioIo::new(up);
                    match tokio::io::copy_bidirectional(&mut up, &mut upstream).await {
                        Ok((sent, recv)) => {
                            st2.counters.sent.fetch_add(sent, Ordering::Relaxed);
                            st2.counters.received.fetch_add(recv, Ordering::Relaxed);
                        }
                        Err(e) => debug!(error = %e, "tunnel closed"),
                    }
                }
                Err(e) => debug!(error = %e, "CONNECT upgrade failed"),
            }
        }
        .in_current_span(),
    );
    empty(StatusCode::OK)
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let extra: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter_map(|s| HeaderName::from_bytes(s.as_bytes()).ok())
        .collect();
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
    for h in extra {
        headers.remove(h);
    }
}

fn counting_request_body(st: &Arc<State>, body: Incoming) -> reqwest::Body {
    let st = st.clone();
    let stream = BodyStream::new(body).try_filter_map(|frame| async move { Ok(frame.into_data().ok()) }).inspect_ok(
        move |b: &Bytes| {
            st.counters.sent.fetch_add(b.len() as u64, Ordering::Relaxed);
            st.activity.touch();
        },
    );
    reqwest::Body::wrap_stream(stream)
}

fn relay_response(st: &Arc<State>, resp: reqwest::Response) -> Response<GwBody> {
    let status = resp.status();
    let mut headers = resp.headers().clone();
    strip_hop_by_hop(&mut headers);
    let st2 = st.clone();
    let open = st.activity.open();
    let stream = resp.bytes_stream().map(move |r| {
        let _keep = &open;
        match r {
            Ok(b) => {
                st2.counters.received.fetch_add(b.len() as u64, Ordering::Relaxed);
                st2.activity.touch();
                Ok(Frame::data(b))
            }
            Err(e) => Err(Box::new(e) as BoxError),
        }
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// Plain HTTP through `HTTP_PROXY` (absolute-form request target).
async fn forward(st: Arc<State>, req: Request<Incoming>) -> Response<GwBody> {
    let uri = req.uri().clone();
    let host = uri.host().unwrap_or_default().to_string();
    let target =
        format!("{}://{}", uri.scheme_str().unwrap_or("http"), uri.authority().map(|a| a.as_str()).unwrap_or(""));
    if uri.scheme_str() != Some("http") {
        return full(
            StatusCode::BAD_REQUEST,
            "bridle egress gateway: only http:// URLs are forwarded; use CONNECT (HTTPS_PROXY) for https\n".into(),
        );
    }
    if let Err(d) = st.hosts.allows(&host) {
        return deny(&st, "http", &target, &d);
    }
    let port = uri.port_u16().unwrap_or(80);
    let addrs = match resolve(&st, &host, port).await {
        Ok(a) => a,
        Err(Ok(d)) => return deny(&st, "http", &target, &d),
        Err(Err(e)) => return bad_gateway(&st, &target, e),
    };
    let client = match st
        .forward_client
        .get_or_try_init(|| async {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(std::time::Duration::from_secs(30))
                .build()
        })
        .await
    {
        Ok(c) => c.clone(),
        Err(e) => return bad_gateway(&st, &target, e),
    };
    // Pin the checked address so that the request cannot re-resolve elsewhere.
    let mut url = match reqwest::Url::parse(&uri.to_string()) {
        Ok(u) => u,
        Err(e) => return bad_gateway(&st, &target, e),
    };
    let host_header = uri.authority().map(|a| a.as_str().to_string());
    if url.set_ip_host(addrs[0].ip()).is_err() {
        return bad_gateway(&st, &target, "cannot address upstream");
    }
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    if let Some(h) = host_header.and_then(|h| HeaderValue::from_str(&h).ok()) {
        headers.insert(http::header::HOST, h);
    }
    st.counters.allowed.fetch_add(1, Ordering::Relaxed);
    crate::metrics::egress("allowed", "http");
    let result = client.request(parts.method, url).headers(headers).body(counting_request_body(&st, body)).send().await;
    match result {
        Ok(resp) => relay_response(&st, resp),
        Err(e) => bad_gateway(&st, &target, e),
    }
}

/// `/llm/<rest>` → `<llm_base_url>/<rest>` with the credential headers.
async fn model_route(st: Arc<State>, req: Request<Incoming>) -> Response<GwBody> {
    let Some(llm) = st.cfg.llm.clone() else {
        return full(
            StatusCode::SERVICE_UNAVAILABLE,
            "bridle egress gateway: this sandbox has no model route configured\n".into(),
        );
    };
    let uri = req.uri().clone();
    let rest = uri.path().strip_prefix(LLM_PREFIX).unwrap_or("");
    let mut url = format!("{}{}", llm.base_url.trim_end_matches('/'), rest);
    if let Some(q) = uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    for rule in &llm.header_rules {
        let Ok(name) = HeaderName::from_bytes(rule.header.as_bytes()) else {
            warn!(header = %rule.header, "invalid header rule name; skipped");
            continue;
        };
        headers.remove(&name);
        let value = rule.value_template.replace("{token}", llm.token.expose());
        match HeaderValue::from_str(&value) {
            Ok(mut v) => {
                v.set_sensitive(true);
                headers.insert(name, v);
            }
            Err(_) => warn!(header = %rule.header, "header rule value is not a valid header value"),
        }
    }
    st.counters.allowed.fetch_add(1, Ordering::Relaxed);
    st.counters.model.fetch_add(1, Ordering::Relaxed);
    crate::metrics::egress("allowed", "model");
    debug!(path = %rest, "model request");
    let result = st
        .cfg
        .model_client
        .request(parts.method, &url)
        .headers(headers)
        .body(counting_request_body(&st, body))
        .send()
        .await;
    match result {
        Ok(resp) => relay_response(&st, resp),
        Err(e) => bad_gateway(&st, "the model endpoint", e),
    }
}

/// The client used for model routes: no proxy, no redirects, rustls.
pub fn model_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .context("build model route HTTP client")
}
