//! Requests the gateway sees in clear, for environment-variable secrets:
//! plain HTTP through the proxy, and `CONNECT` tunnels to hosts where a
//! secret is due, whose TLS the gateway terminates with a leaf of its CA
//! ([`super::tls`]) before opening its own verified TLS connection upstream
//! (one upstream connection per sandbox connection, to the address the
//! policy checked). Placeholders are replaced per [`super::inject`]; every
//! other `CONNECT` stays an untouched tunnel.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::header::{CONTENT_LENGTH, HOST, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{Instrument, debug, warn};

use super::inject::Report;
use super::tls::Interceptor;
use super::{BoxError, GwBody, State, Tracked, bad_gateway, full, strip_hop_by_hop};

/// The largest request body scanned for placeholders; the rest of a larger
/// body is sent on unscanned (and that is logged).
pub const MAX_SCANNED_BODY: usize = 16 << 20;

/// The interceptor to use for a `CONNECT` to `host`, when a secret is due
/// there; `None` keeps the tunnel untouched.
pub(super) fn interceptor_for(st: &State, host: &str) -> Option<Arc<Interceptor>> {
    if !st.secrets.intercepts(host) {
        return None;
    }
    let icpt = st.hub().interceptor.clone();
    if icpt.is_none()
        && let Some(skipped) = st.reporter.should_log("no_interceptor", Instant::now())
    {
        warn!(target_host = %host, skipped, "a secret is due on this host but the gateway has no CA: tunnelled untouched");
    }
    icpt
}

/// Log what substitution did to one request (names, never values).
fn log_report(st: &State, host: &str, report: &Report) {
    for (name, place) in &report.substituted {
        debug!(secret = %name, place = place.as_str(), target_host = %host, "secret substituted");
    }
    for l in &report.left {
        if let Some(skipped) = st.reporter.should_log("placeholder_left", Instant::now()) {
            warn!(
                secret = %l.name,
                place = l.place.as_str(),
                target_host = %host,
                reason = l.why.as_str(),
                skipped,
                "a secret's placeholder was sent where the secret is not substituted; left as is"
            );
        }
    }
}

/// Apply the sandbox's secrets to one outbound request to `host`: header
/// values always; the body (read up to [`MAX_SCANNED_BODY`]) when a secret
/// with body injection is due there. Returns the body to send.
pub(super) async fn outbound<B>(st: &Arc<State>, host: &str, headers: &mut HeaderMap, body: B) -> Result<GwBody, String>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut report = Report::default();
    st.secrets.headers(host, headers, &mut report);
    if !st.secrets.wants_body(host) {
        log_report(st, host, &report);
        return Ok(body.map_err(Into::into).boxed());
    }
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(format!("reading the request body failed: {}", e.into())),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
                if buf.len() > MAX_SCANNED_BODY {
                    warn!(target_host = %host, limit = MAX_SCANNED_BODY, "request body too large to scan for placeholders; sent unscanned");
                    log_report(st, host, &report);
                    let head = futures::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from(buf)))]);
                    let rest = TryStreamExt::map_err(BodyStream::new(body), Into::into);
                    return Ok(BodyExt::boxed(StreamBody::new(head.chain(rest))));
                }
            }
        }
    }
    let out = Bytes::from(st.secrets.body(host, &buf, &mut report).into_owned());
    log_report(st, host, &report);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Ok(Full::new(out).map_err(|never| match never {}).boxed())
}

/// Serve one intercepted `CONNECT` to `host:port`: TLS towards the sandbox
/// with a minted leaf, TLS upstream over `upstream` (already connected to the
/// checked address), HTTP/1.1 between.
pub(super) async fn serve<C>(
    st: Arc<State>,
    icpt: Arc<Interceptor>,
    client: C,
    upstream: Tracked<TcpStream>,
    host: String,
    port: u16,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let server_cfg = match icpt.server_config(&host) {
        Ok(c) => c,
        Err(e) => {
            return warn!(target_host = %host, error = %format!("{e:#}"), "cannot mint a certificate; connection closed");
        }
    };
    let tls = match TlsAcceptor::from(server_cfg).accept(client).await {
        Ok(s) => s,
        // Typically a client that does not trust the CA (no CA bundle).
        Err(e) => return debug!(target_host = %host, error = %e, "sandbox side TLS handshake failed"),
    };
    let sender = match connect_upstream(&icpt, &host, upstream).await {
        Ok(s) => Ok(Arc::new(tokio::sync::Mutex::new(s))),
        Err(why) => Err(why),
    };
    let authority = if port == 443 { host.clone() } else { format!("{host}:{port}") };
    let st2 = st.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let st = st2.clone();
        let sender = sender.clone();
        let host = host.clone();
        let authority = authority.clone();
        async move {
            let resp = match sender {
                Ok(s) => relay(&st, &s, req, &host, &authority).await,
                Err(why) => bad_gateway(&st, "the upstream's TLS connection failed", why),
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(st.hub().limits.header_timeout)
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(tls), svc)
        .await;
    if let Err(e) = served {
        debug!(error = %e, "intercepted connection ended");
    }
}

async fn connect_upstream(
    icpt: &Interceptor,
    host: &str,
    upstream: Tracked<TcpStream>,
) -> Result<SendRequest<GwBody>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let name = ServerName::try_from(bare).map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
    let tls = TlsConnector::from(icpt.client_config())
        .connect(name, upstream)
        .await
        .map_err(|e| format!("{host}: TLS handshake with the upstream failed: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("{host}: HTTP handshake failed: {e}"))?;
    tokio::spawn(
        async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "intercepted upstream connection ended");
            }
        }
        .in_current_span(),
    );
    Ok(sender)
}

/// One request of an intercepted connection.
async fn relay(
    st: &Arc<State>,
    sender: &tokio::sync::Mutex<SendRequest<GwBody>>,
    req: Request<Incoming>,
    host: &str,
    authority: &str,
) -> Response<GwBody> {
    st.activity.touch();
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    if let Ok(v) = HeaderValue::from_str(authority) {
        headers.insert(HOST, v);
    }
    let st_count = st.clone();
    let body = body.map_frame(move |f| {
        if let Some(d) = f.data_ref() {
            st_count.counters.sent.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        f
    });
    let body = match outbound(st, host, &mut headers, body).await {
        Ok(b) => b,
        Err(why) => return full(StatusCode::BAD_REQUEST, format!("bridle egress gateway: {why}\n")),
    };
    let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let mut up = Request::new(body);
    *up.method_mut() = parts.method;
    *up.version_mut() = Version::HTTP_11;
    *up.headers_mut() = headers;
    match target.parse() {
        Ok(uri) => *up.uri_mut() = uri,
        Err(_) => return full(StatusCode::BAD_REQUEST, "bridle egress gateway: bad request target\n".into()),
    }
    st.counters.allowed.fetch_add(1, Ordering::Relaxed);
    crate::metrics::egress("allowed", "intercepted");
    let sent = {
        let mut s = sender.lock().await;
        match s.ready().await {
            Ok(()) => s.send_request(up).await,
            Err(e) => Err(e),
        }
    };
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return bad_gateway(st, "the request to the upstream failed", format!("{host}: {e}")),
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let st2 = st.clone();
    let open = st.activity.open();
    let body = body
        .map_frame(move |f| {
            let _keep = &open;
            if let Some(d) = f.data_ref() {
                st2.counters.received.fetch_add(d.len() as u64, Ordering::Relaxed);
                st2.activity.touch();
            }
            f
        })
        .map_err(|e| Box::new(e) as BoxError)
        .boxed();
    Response::from_parts(parts, body)
}
