//! The host-side egress gateway of one sandbox.
//!
//! It listens on a unix socket that only that sandbox sees (its directory is
//! bound read-only at `/run/bridle`); the in-sandbox init relays
//! `127.0.0.1:PORT` to it. It speaks HTTP/1.1 and serves:
//!
//! * `CONNECT host:port` (HTTPS through `HTTPS_PROXY`) and absolute-form plain
//!   HTTP requests (`HTTP_PROXY`), both checked against the environment's
//!   network policy ([`policy::HostPolicy`], entries may carry a port) and,
//!   after DNS resolution, the address policy: only global addresses that
//!   are not the host's own ([`addr`], [`host_addrs`]), unless the operator
//!   allowed the destination (`egress.allow_internal`);
//! * the model route `/llm/...` (origin form, `NO_PROXY` covers 127.0.0.1):
//!   only the endpoints of the harness's API shape ([`model_path`]),
//!   forwarded to the session's `llm_base_url` with the vault credential added
//!   by the harness plugin's header rules. The token never enters the sandbox.
//!
//! * environment-variable secrets ([`inject`]): placeholders replaced in
//!   plain HTTP requests and, for hosts where a secret is due, in `CONNECT`
//!   tunnels whose TLS the gateway terminates with its CA ([`tls`],
//!   [`intercept`]); every other tunnel is left untouched.
//!
//! A runtime outside every sandbox (the resident openai-agents runtime)
//! gets a gateway of its own that serves the MCP route only
//! ([`Gateway::bind_mcp_only`]): the same credentials, network rules and
//! failure reports as a sandbox's.
//!
//! Every gateway shares one [`Hub`]: the limits ([`limits`]: connections per
//! sandbox, connection rate, header and idle timeouts, a global cap sized
//! below the descriptor limit), the address policy and the HTTP clients.
//! Denials get `403` with a plain-text body saying why; upstream failures a
//! `502` that says what failed in words (the detail is logged, never sent).
//! Both are counted in metrics and logged at most once per interval
//! ([`report`]).

pub mod addr;
pub mod git_route;
pub mod host_addrs;
pub mod inject;
mod intercept;
pub mod limits;
pub mod mcp_route;
pub mod model_path;
pub mod policy;
pub mod report;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, debug, info_span, warn};

use crate::spec::{EgressPolicy, EgressStats, EnvSecret, LlmRoute};
pub use limits::GatewayLimits;
use limits::TokenBucket;
use model_path::PathDenial;
pub use policy::InternalTarget;
use policy::{AddressPolicy, Denial, HostPolicy};
use report::Reporter;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type GwBody = BoxBody<Bytes, BoxError>;

/// The path prefix of the model route.
pub const LLM_PREFIX: &str = "/llm";

/// The path prefix of the extra model route `name` ([`LlmRoute::extra`]):
/// `/llm-<name>`, beside the primary route so that no path of one is a path
/// of the other.
pub fn extra_llm_prefix(name: &str) -> String {
    format!("{LLM_PREFIX}-{name}")
}

/// Which model route a gateway path names, and the path after its prefix.
/// `None` for paths that are no model route's.
fn model_route_of(path: &str) -> Option<(Option<&str>, &str)> {
    let rest = path.strip_prefix(LLM_PREFIX)?;
    if rest.is_empty() || rest.starts_with('/') {
        return Some((None, rest));
    }
    let named = rest.strip_prefix('-')?;
    let (name, rest) = named.split_at(named.find('/').unwrap_or(named.len()));
    Some((Some(name), rest))
}

/// The extra routes' names are valid and distinct.
fn check_extra_llm(llm: Option<&LlmRoute>) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for extra in llm.map(|l| l.extra.as_slice()).unwrap_or_default() {
        anyhow::ensure!(
            crate::spec::NamedLlmRoute::valid_name(&extra.name),
            "extra model route name {:?} is not [a-z0-9_-]{{1,32}}",
            extra.name
        );
        anyhow::ensure!(seen.insert(extra.name.as_str()), "extra model route {:?} is given twice", extra.name);
    }
    Ok(())
}

/// How long the gateway waits for an upstream to accept a connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest pause between accept attempts after accept errors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

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

/// The operator's egress settings (config `egress`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressSettings {
    pub limits: GatewayLimits,
    /// Internal destinations sandboxes may reach (the only way to reach a
    /// non-global address or one of the host's own).
    pub allow_internal: Vec<InternalTarget>,
    /// The installation's CA, to terminate TLS for hosts where an
    /// environment-variable secret is due; without one such tunnels stay
    /// untouched (and the secret unused).
    pub ca: Option<tls::CaPem>,
    /// PEM texts of roots trusted for intercepted upstreams besides the
    /// system's.
    pub upstream_roots: Vec<String>,
}

/// What every gateway of this process shares: limits, the global connection
/// cap, the address policy and the upstream HTTP clients.
#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

struct HubInner {
    limits: GatewayLimits,
    global: Arc<Semaphore>,
    global_cap: u32,
    addresses: AddressPolicy,
    model_client: reqwest::Client,
    forward_client: reqwest::Client,
    interceptor: Option<Arc<tls::Interceptor>>,
}

impl Hub {
    /// Size the global cap from the process's current `RLIMIT_NOFILE` (raise
    /// it first: [`limits::raise_nofile`]).
    pub fn new(settings: &EgressSettings) -> anyhow::Result<Self> {
        let cap =
            limits::effective_cap(settings.limits.max_connections, limits::nofile()).map_err(anyhow::Error::msg)?;
        crate::metrics::egress_connections_max(cap);
        let client = |idle_per_host: usize| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(UPSTREAM_CONNECT_TIMEOUT)
                .pool_max_idle_per_host(idle_per_host)
                .build()
        };
        let interceptor = match &settings.ca {
            Some(ca) => Some(Arc::new(
                tls::Interceptor::new(ca, &settings.upstream_roots).context("the egress gateway's TLS interception")?,
            )),
            None => None,
        };
        Ok(Hub(Arc::new(HubInner {
            interceptor,
            limits: settings.limits.clone(),
            global: Arc::new(Semaphore::new(cap as usize)),
            global_cap: cap,
            addresses: AddressPolicy::new(settings.allow_internal.clone(), Arc::default()),
            // One model host for every sandbox: a small pool of kept
            // connections. Plain-HTTP forwarding keeps none (each idle one
            // would hold a descriptor for any host a sandbox names).
            model_client: client(32).context("build model route HTTP client")?,
            forward_client: client(0).context("build egress HTTP client")?,
        })))
    }

    pub fn limits(&self) -> &GatewayLimits {
        &self.0.limits
    }

    /// Connections all gateways together may hold.
    pub fn global_cap(&self) -> u32 {
        self.0.global_cap
    }

    /// Gateway connections open now, across sandboxes.
    pub fn open_connections(&self) -> u32 {
        self.0.global_cap.saturating_sub(self.0.global.available_permits() as u32)
    }
}

/// Configuration of one sandbox's gateway.
#[derive(Clone)]
pub struct GatewayConfig {
    pub sandbox_id: String,
    pub session_id: String,
    pub policy: EgressPolicy,
    pub llm: Option<LlmRoute>,
    /// The session's repositories, for the git route ([`git_route`]).
    pub git: Option<git_route::GitRoutes>,
    /// The port the in-sandbox relay listens on (to recognise the model route
    /// when a client sends it through the proxy anyway).
    pub relay_port: u16,
    pub hub: Hub,
    /// The agent's MCP servers ([`mcp_route`]).
    pub mcp: Vec<crate::spec::McpRoute>,
    /// Where MCP route failures go (the session's runner).
    pub mcp_failures: Option<tokio::sync::mpsc::UnboundedSender<crate::spec::McpFailure>>,
    /// The sandbox's environment-variable secrets.
    pub secrets: Vec<EnvSecret>,
}

struct State {
    cfg: GatewayConfig,
    hosts: HostPolicy,
    secrets: inject::Injector,
    counters: Counters,
    activity: Arc<Activity>,
    reporter: Reporter,
    mcp_reported: mcp_route::Reported,
    /// Serve the MCP route and nothing else.
    mcp_only: bool,
}

impl State {
    fn hub(&self) -> &HubInner {
        &self.cfg.hub.0
    }

    /// A connection delayed or closed by `limit`: counted, logged once per
    /// interval.
    fn limited(&self, limit: &'static str) {
        crate::metrics::egress_limited(limit);
        if let Some(skipped) = self.reporter.should_log(limit, Instant::now()) {
            warn!(limit, skipped, "egress connection limit reached");
        }
    }
}

/// Held for as long as one accepted connection (and its tunnel) lives.
struct ConnGuard {
    _sandbox: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
    _open: OpenGuard,
}

/// What a request handler knows of its connection.
#[derive(Clone)]
struct Conn {
    clock: Arc<IdleClock>,
    guard: Arc<ConnGuard>,
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
        Self::bind_as(socket, cfg, activity, false)
    }

    /// A gateway that serves only the MCP route (`cfg.mcp`), for a runtime
    /// that runs outside every sandbox: every other request is a 404.
    pub fn bind_mcp_only(socket: &Path, cfg: GatewayConfig) -> anyhow::Result<Self> {
        Self::bind_as(socket, cfg, Activity::new(), true)
    }

    fn bind_as(socket: &Path, cfg: GatewayConfig, activity: Arc<Activity>, mcp_only: bool) -> anyhow::Result<Self> {
        check_extra_llm(cfg.llm.as_ref())?;
        let _ = std::fs::remove_file(socket);
        let listener =
            UnixListener::bind(socket).with_context(|| format!("bind egress socket {}", socket.display()))?;
        let state = Arc::new(State {
            hosts: HostPolicy::new(&cfg.policy),
            secrets: inject::Injector::new(cfg.secrets.clone()),
            cfg,
            counters: Counters::default(),
            activity,
            reporter: Reporter::default(),
            mcp_reported: mcp_route::Reported::default(),
            mcp_only,
        });
        let span = info_span!("egress", sandbox = %state.cfg.sandbox_id, session_id = %state.cfg.session_id);
        let task = tokio::spawn(accept_loop(state.clone(), listener).instrument(span));
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

/// Take a permit, waiting (and counting the wait under `limit`) when none
/// is free. A closed semaphore never happens: both live as long as the loop.
async fn permit(st: &State, sem: &Arc<Semaphore>, limit: &'static str) -> Option<OwnedSemaphorePermit> {
    match sem.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => {
            st.limited(limit);
            sem.clone().acquire_owned().await.ok()
        }
    }
}

/// Accept only what the limits allow: a token of the sandbox's rate, a
/// permit of its connection cap and one of the global cap come first, so a
/// sandbox past a limit waits in the socket's backlog at no descriptor cost
/// to the server.
async fn accept_loop(st: Arc<State>, listener: UnixListener) {
    let limits = st.hub().limits.clone();
    let sandbox = Arc::new(Semaphore::new(limits.max_connections_per_sandbox.max(1) as usize));
    let global = st.hub().global.clone();
    let mut bucket = TokenBucket::new(limits.connections_per_second, limits.connection_burst, Instant::now());
    let mut backoff = Duration::ZERO;
    loop {
        if let Err(wait) = bucket.take(Instant::now()) {
            st.limited("connection_rate");
            tokio::time::sleep(wait).await;
            continue;
        }
        let Some(sandbox_permit) = permit(&st, &sandbox, "sandbox_connections").await else { return };
        let Some(global_permit) = permit(&st, &global, "global_connections").await else { return };
        let stream = loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    backoff = Duration::ZERO;
                    break s;
                }
                Err(e) => {
                    // EMFILE and the like: wait for descriptors to come back
                    // instead of spinning.
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                    crate::metrics::egress_limited("accept_error");
                    if let Some(skipped) = st.reporter.should_log("accept_error", Instant::now()) {
                        warn!(error = %e, skipped, "egress accept failed; backing off");
                    }
                    tokio::time::sleep(backoff).await;
                }
            }
        };
        let guard = Arc::new(ConnGuard { _sandbox: sandbox_permit, _global: global_permit, _open: st.activity.open() });
        tokio::spawn(serve_connection(st.clone(), stream, guard).in_current_span());
    }
}

async fn serve_connection(st: Arc<State>, stream: tokio::net::UnixStream, guard: Arc<ConnGuard>) {
    let limits = &st.hub().limits;
    let clock = IdleClock::new();
    let conn = Conn { clock: clock.clone(), guard };
    let st2 = st.clone();
    let svc = service_fn(move |req| {
        let st = st2.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(st, conn, req).await) }
    });
    let serve = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(Tracked::new(stream, clock.clone())), svc)
        .with_upgrades();
    tokio::select! {
        r = serve => if let Err(e) = r {
            if e.is_timeout() {
                st.limited("header_timeout");
            } else {
                debug!(error = %e, "egress connection ended");
            }
        },
        () = clock.expired(limits.idle_timeout) => st.limited("idle_timeout"),
    }
}

/// When a connection last moved a byte, either way.
#[derive(Debug)]
struct IdleClock {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl IdleClock {
    fn new() -> Arc<Self> {
        Arc::new(Self { epoch: Instant::now(), last_ms: AtomicU64::new(0) })
    }
    fn touch(&self) {
        self.last_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
    /// Resolves once no byte moved for `limit`.
    async fn expired(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

/// A stream that touches an [`IdleClock`] whenever bytes move.
struct Tracked<S> {
    inner: S,
    clock: Arc<IdleClock>,
}

impl<S> Tracked<S> {
    fn new(inner: S, clock: Arc<IdleClock>) -> Self {
        clock.touch();
        Self { inner, clock }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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

/// A 403 from the gateway: counted, logged once per interval.
fn refused(st: &State, route: &'static str, log_target: &str, body: String) -> Response<GwBody> {
    st.counters.denied.fetch_add(1, Ordering::Relaxed);
    crate::metrics::egress("denied", route);
    if let Some(skipped) = st.reporter.should_log("denied", Instant::now()) {
        // One line per interval; `skipped`: denials since the last line, not logged.
        warn!(route, target_host = %log_target, skipped, "egress denied");
    }
    let mut r = full(StatusCode::FORBIDDEN, body);
    r.headers_mut().insert("x-bridle-egress", HeaderValue::from_static("denied"));
    r
}

/// `target` is the host the sandbox itself named (never the model route's
/// upstream).
fn deny(st: &State, route: &'static str, target: &str, why: &Denial) -> Response<GwBody> {
    let reason = match why {
        Denial::NotAllowed => match &st.cfg.policy.networking {
            crate::spec::Networking::Unrestricted => "not allowed".to_string(),
            crate::spec::Networking::Limited { allow_package_managers, allow_mcp_servers, .. } => format!(
                "networking is `limited` and the host (with this port) is not in allowed_hosts \
                 (allow_package_managers={allow_package_managers}, allow_mcp_servers={allow_mcp_servers})"
            ),
        },
        Denial::InternalAddress { ip, range } => format!(
            "it resolves to {ip}, a {range} address; internal destinations are reachable only when the \
             server's operator allows them (egress.allow_internal)"
        ),
        Denial::HostAddress(ip) => format!(
            "it resolves to {ip}, an address of the server itself; reachable only when the server's operator \
             allows it (egress.allow_internal)"
        ),
        Denial::BadHost => "the request names no valid host".to_string(),
    };
    refused(
        st,
        route,
        target,
        format!("bridle egress gateway: access to {target} denied by the environment's network policy: {reason}\n"),
    )
}

/// A 502 that says in words what failed; the detail (with the upstream's
/// URL) goes to the log only.
fn bad_gateway(st: &State, what: &'static str, detail: impl std::fmt::Display) -> Response<GwBody> {
    if let Some(skipped) = st.reporter.should_log("upstream_failed", Instant::now()) {
        warn!(error = %detail, skipped, "egress upstream failed: {what}");
    }
    full(StatusCode::BAD_GATEWAY, format!("bridle egress gateway: {what}\n"))
}

/// Words for a client-side HTTP error, naming no URL.
fn upstream_failure(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "the upstream did not answer in time"
    } else if e.is_connect() {
        "the upstream could not be connected to"
    } else if e.is_body() || e.is_decode() {
        "the upstream's response could not be read"
    } else {
        "the request to the upstream failed"
    }
}

async fn handle(st: Arc<State>, conn: Conn, req: Request<Incoming>) -> Response<GwBody> {
    st.activity.touch();
    if st.mcp_only {
        return if req.uri().host().is_none() && mcp_route::is_mcp_path(req.uri().path()) {
            mcp_route::serve(st, req).await
        } else {
            full(StatusCode::NOT_FOUND, "bridle egress gateway: this gateway serves only the MCP route /mcp/…\n".into())
        };
    }
    if req.method() == Method::CONNECT {
        return connect(st, conn, req).await;
    }
    let uri = req.uri().clone();
    let is_model_route = |path: &str| model_route_of(path).is_some();
    match uri.host() {
        None if uri.path().starts_with(git_route::GIT_PREFIX) => git_route::serve(st, req).await,
        None => {
            if is_model_route(uri.path()) {
                model_route(st, req).await
            } else if mcp_route::is_mcp_path(uri.path()) {
                mcp_route::serve(st, req).await
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
            if local && is_model_route(uri.path()) {
                model_route(st, req).await
            } else if local && mcp_route::is_mcp_path(uri.path()) {
                mcp_route::serve(st, req).await
            } else {
                forward(st, req).await
            }
        }
    }
}

enum Resolved {
    Ok(Vec<SocketAddr>),
    Denied(Denial),
    Failed(String),
}

/// Resolve `host:port` and keep the addresses the address policy allows.
async fn resolve(st: &State, host: &str, port: u16) -> Resolved {
    let bare = policy::normalize_host(host);
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((bare.as_str(), port)).await {
        Ok(a) => a.collect(),
        Err(e) => return Resolved::Failed(format!("cannot resolve {bare}: {e}")),
    };
    let mut ok = Vec::new();
    let mut first_denial = None;
    for a in addrs {
        match st.hub().addresses.check(&bare, port, a.ip()) {
            Ok(()) => ok.push(a),
            Err(d) => {
                first_denial.get_or_insert(d);
            }
        }
    }
    match (ok.is_empty(), first_denial) {
        (false, _) => Resolved::Ok(ok),
        (true, Some(d)) => Resolved::Denied(d),
        (true, None) => Resolved::Failed(format!("{bare} has no address")),
    }
}

async fn connect(st: Arc<State>, conn: Conn, req: Request<Incoming>) -> Response<GwBody> {
    let Some(auth) = req.uri().authority().cloned() else {
        return full(StatusCode::BAD_REQUEST, "bridle egress gateway: CONNECT needs host:port\n".into());
    };
    let host = auth.host().to_string();
    let port = auth.port_u16().unwrap_or(443);
    let target = format!("{host}:{port}");
    if let Err(d) = st.hosts.allows(&host, port) {
        return deny(&st, "connect", &target, &d);
    }
    let addrs = match resolve(&st, &host, port).await {
        Resolved::Ok(a) => a,
        Resolved::Denied(d) => return deny(&st, "connect", &target, &d),
        Resolved::Failed(e) => return bad_gateway(&st, "the host name could not be resolved", e),
    };
    let upstream = match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(&addrs[..])).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return bad_gateway(&st, "the upstream could not be connected to", format!("{target}: {e}")),
        Err(_) => return bad_gateway(&st, "the upstream did not accept the connection in time", &target),
    };
    st.counters.allowed.fetch_add(1, Ordering::Relaxed);
    crate::metrics::egress("allowed", "connect");
    debug!(target_host = %target, "egress tunnel");
    let intercepting = intercept::interceptor_for(&st, &host);
    let st2 = st.clone();
    tokio::spawn(
        async move {
            // The connection's permits live as long as the tunnel.
            let _guard = conn.guard.clone();
            let _open = st2.activity.open();
            let up = match hyper::upgrade::on(req).await {
                Ok(up) => up,
                Err(e) => return debug!(error = %e, "CONNECT upgrade failed"),
            };
            // The upgraded side still runs over the connection's tracked
            // stream; the upstream side touches the same clock.
            let mut client = TokioIo::new(up);
            let mut upstream = Tracked::new(upstream, conn.clock.clone());
            let idle = st2.hub().limits.idle_timeout;
            if let Some(icpt) = intercepting {
                tokio::select! {
                    () = intercept::serve(st2.clone(), icpt, client, upstream, host, port) => {}
                    () = conn.clock.expired(idle) => st2.limited("idle_timeout"),
                }
                return;
            }
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match r {
                    Ok((sent, recv)) => {
                        st2.counters.sent.fetch_add(sent, Ordering::Relaxed);
                        st2.counters.received.fetch_add(recv, Ordering::Relaxed);
                    }
                    Err(e) => debug!(error = %e, "tunnel closed"),
                },
                () = conn.clock.expired(idle) => st2.limited("idle_timeout"),
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

fn counting_request_body<B>(st: &Arc<State>, body: B) -> reqwest::Body
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
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
            Err(e) => {
                // Logged without the URL the error carries.
                debug!(error = %e.without_url(), "upstream body failed");
                Err(Box::new(std::io::Error::other("the upstream's response ended early")) as BoxError)
            }
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
    let port = uri.port_u16().unwrap_or(80);
    if let Err(d) = st.hosts.allows(&host, port) {
        return deny(&st, "http", &target, &d);
    }
    let addrs = match resolve(&st, &host, port).await {
        Resolved::Ok(a) => a,
        Resolved::Denied(d) => return deny(&st, "http", &target, &d),
        Resolved::Failed(e) => return bad_gateway(&st, "the host name could not be resolved", e),
    };
    // Pin the checked address so that the request cannot re-resolve elsewhere.
    let mut url = match reqwest::Url::parse(&uri.to_string()) {
        Ok(u) => u,
        Err(e) => return full(StatusCode::BAD_REQUEST, format!("bridle egress gateway: bad request URL: {e}\n")),
    };
    let host_header = uri.authority().map(|a| a.as_str().to_string());
    if url.set_ip_host(addrs[0].ip()).is_err() {
        return bad_gateway(&st, "the upstream could not be addressed", &target);
    }
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    if let Some(h) = host_header.and_then(|h| HeaderValue::from_str(&h).ok()) {
        headers.insert(http::header::HOST, h);
    }
    let body = match intercept::outbound(&st, &host, &mut headers, body).await {
        Ok(b) => b,
        Err(why) => return full(StatusCode::BAD_REQUEST, format!("bridle egress gateway: {why}\n")),
    };
    st.counters.allowed.fetch_add(1, Ordering::Relaxed);
    crate::metrics::egress("allowed", "http");
    let result = st
        .hub()
        .forward_client
        .request(parts.method, url)
        .headers(headers)
        .body(counting_request_body(&st, body))
        .send()
        .await;
    match result {
        Ok(resp) => relay_response(&st, resp),
        Err(e) => bad_gateway(&st, upstream_failure(&e), format!("{target}: {}", e.without_url())),
    }
}

/// `/llm/<rest>` → `<llm_base_url>/<rest>` with the credential headers, for
/// the API shape's endpoints only; `/llm-<name>/<rest>` likewise on the extra
/// route `name`.
async fn model_route(st: Arc<State>, req: Request<Incoming>) -> Response<GwBody> {
    let uri = req.uri().clone();
    let Some((name, rest)) = model_route_of(uri.path()) else {
        return full(StatusCode::NOT_FOUND, format!("bridle egress gateway: unknown path {}\n", uri.path()));
    };
    let route = match name {
        None => st.cfg.llm.clone(),
        Some(name) => {
            st.cfg.llm.as_ref().and_then(|l| l.extra.iter().find(|e| e.name == name)).map(|e| e.route.clone())
        }
    };
    let Some(llm) = route else {
        let which = name.map_or_else(|| "no model route".to_string(), |n| format!("no model route {n:?}"));
        return full(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("bridle egress gateway: this sandbox has {which} configured\n"),
        );
    };
    let path = match model_path::check(&llm.allowed, req.method(), rest) {
        Ok(p) => p,
        Err(why) => {
            let endpoints: Vec<String> = llm.allowed.iter().map(|e| format!("{} {}", e.method, e.path)).collect();
            let what = match why {
                PathDenial::Malformed => "the path is malformed or leaves the route".to_string(),
                PathDenial::NotAllowed(p) => format!("{p} is not a model API endpoint of this session"),
                PathDenial::Method(m, p) => format!("{m} is not allowed on {p}"),
            };
            return refused(
                &st,
                "model",
                "model route",
                format!(
                    "bridle egress gateway: the model route refused the request: {what}; it forwards only {}\n",
                    endpoints.join(", ")
                ),
            );
        }
    };
    let mut url = match reqwest::Url::parse(&llm.base_url) {
        Ok(u) => u,
        Err(e) => return bad_gateway(&st, "the model endpoint is misconfigured", e),
    };
    // Under the base URL's path, with the normalized path only.
    let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(uri.query());
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
    debug!(path = %path, "model request");
    let result = st
        .hub()
        .model_client
        .request(parts.method, url)
        .headers(headers)
        .body(counting_request_body(&st, body))
        .send()
        .await;
    match result {
        Ok(resp) => relay_response(&st, resp),
        Err(e) => {
            let what = match upstream_failure(&e) {
                "the upstream did not answer in time" => "the model endpoint did not answer in time",
                "the upstream could not be connected to" => "the model endpoint could not be connected to",
                _ => "the request to the model endpoint failed",
            };
            bad_gateway(&st, what, e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_route_paths_name_their_route() {
        let cases = [
            ("/llm", Some((None, ""))),
            ("/llm/v1/messages", Some((None, "/v1/messages"))),
            ("/llm-codex/v1/responses", Some((Some("codex"), "/v1/responses"))),
            ("/llm-openai-agents", Some((Some("openai-agents"), ""))),
            ("/llm-", Some((Some(""), ""))),
            ("/llmx/v1/messages", None),
            ("/mcp/x", None),
            ("/git/llm", None),
        ];
        for (path, want) in cases {
            assert_eq!(model_route_of(path), want, "{path}");
        }
    }
}
