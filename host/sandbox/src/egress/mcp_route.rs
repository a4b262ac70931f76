//! The MCP route: `/mcp/<server name>[/<rest>]` on the relay port (origin
//! form, like the model route) goes to the URL the agent declares for that
//! server, and only there. The credential bound to that URL in the
//! session's vaults is added here, host-side: the runtime's MCP config names
//! only the route, so no token enters the sandbox. A 401 asks the
//! credential for a fresh token (OAuth refresh) and retries once.
//!
//! Failures the session should hear of (the server unreachable, refused by
//! the network policy, rejecting the credential) go to the session's runner
//! as [`McpFailure`]s, once per server and kind until that server answers
//! again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::header::{AUTHORIZATION, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::model_path;
use super::policy::Denial;
use super::{GwBody, Resolved, State, bad_gateway, full, refused, relay_response, resolve, strip_hop_by_hop};
use crate::spec::{McpFailure, McpFailureKind, McpRoute, Networking, Secret};

/// The path prefix of the MCP route.
pub const MCP_PREFIX: &str = "/mcp";

/// The largest request body the route buffers (it is kept to retry once
/// after a refresh; MCP requests are small JSON-RPC messages).
const MAX_BODY: usize = 8 << 20;

/// Whether an origin-form path is on the MCP route.
pub fn is_mcp_path(path: &str) -> bool {
    path == MCP_PREFIX || path.starts_with("/mcp/")
}

/// Which failures were reported and not yet cleared by a success.
#[derive(Debug, Default)]
pub(super) struct Reported(Mutex<HashSet<(String, &'static str)>>);

/// `/mcp/<name>[/<rest>]` → (`name`, `rest`), `rest` empty or starting
/// with `/`.
pub fn split(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix("/mcp/")?;
    let (name, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    (!name.is_empty()).then_some((name, rest))
}

/// The upstream URL for `rest` (normalized; empty is the declared URL
/// itself) and the request's query under the declared `base`.
pub fn upstream_url(base: &str, rest: &str, query: Option<&str>) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(base).map_err(|e| format!("the declared URL does not parse: {e}"))?;
    if !rest.is_empty() {
        let path = model_path::normalize(rest).map_err(|_| "the path is malformed or leaves the route".to_string())?;
        if path != "/" {
            let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
            url.set_path(&joined);
        }
    }
    match (query, url.query().map(str::to_owned)) {
        (Some(q), Some(own)) => url.set_query(Some(&format!("{own}&{q}"))),
        (Some(q), None) => url.set_query(Some(q)),
        (None, _) => {}
    }
    Ok(url)
}

/// Whether the environment's networking lets the sandbox reach its MCP
/// servers: `unrestricted`, or `limited` with `allow_mcp_servers`.
pub fn admits(networking: &Networking) -> Result<(), &'static str> {
    match networking {
        Networking::Unrestricted | Networking::Limited { allow_mcp_servers: true, .. } => Ok(()),
        Networking::Limited { allow_mcp_servers: false, .. } => {
            Err("the environment's networking is `limited` with allow_mcp_servers false")
        }
    }
}

impl State {
    /// Tell the session, once per server and kind until it answers again.
    fn mcp_failed(&self, server: &str, kind: McpFailureKind, message: String) {
        let key = (server.to_string(), kind.error_type());
        let fresh = self.mcp_reported.0.lock().map(|mut r| r.insert(key)).unwrap_or(true);
        if !fresh {
            return;
        }
        warn!(server, error_type = kind.error_type(), %message, "MCP route failed");
        if let Some(tx) = &self.cfg.mcp_failures {
            let _ = tx.send(McpFailure { server: server.to_string(), kind, message });
        }
    }

    fn mcp_answered(&self, server: &str) {
        if let Ok(mut r) = self.mcp_reported.0.lock() {
            r.retain(|(s, _)| s != server);
        }
    }
}

/// Serve one request on the MCP route.
pub(super) async fn serve(st: Arc<State>, req: Request<Incoming>) -> Response<GwBody> {
    let uri = req.uri().clone();
    let declared = || st.cfg.mcp.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ");
    let Some((name, rest)) = split(uri.path()) else {
        return full(
            StatusCode::NOT_FOUND,
            format!("bridle egress gateway: the MCP route is {MCP_PREFIX}/<server name>; servers: {}\n", declared()),
        );
    };
    let Some(route) = st.cfg.mcp.iter().find(|r| r.name == name).cloned() else {
        return full(
            StatusCode::NOT_FOUND,
            format!("bridle egress gateway: `{name}` is not an MCP server of this agent; servers: {}\n", declared()),
        );
    };
    if let Err(why) = admits(&st.cfg.policy.networking) {
        st.mcp_failed(&route.name, McpFailureKind::Connection, format!("MCP server `{}` refused: {why}", route.name));
        return refused(
            &st,
            "mcp",
            &route.name,
            format!("bridle egress gateway: MCP server `{}` refused: {why}\n", route.name),
        );
    }
    let url = match upstream_url(&route.url, rest, uri.query()) {
        Ok(u) => u,
        Err(e) => return full(StatusCode::BAD_REQUEST, format!("bridle egress gateway: MCP route: {e}\n")),
    };
    let (Some(host), Some(port)) = (url.host_str().map(str::to_owned), url.port_or_known_default()) else {
        return bad_gateway(&st, "the MCP server URL names no host", &route.name);
    };
    let addrs = match resolve(&st, &host, port).await {
        Resolved::Ok(a) => a,
        Resolved::Denied(d) => {
            let why = format!("MCP server `{}` refused: {}", route.name, denial_words(&d));
            st.mcp_failed(&route.name, McpFailureKind::Connection, why.clone());
            return refused(&st, "mcp", &route.name, format!("bridle egress gateway: {why}\n"));
        }
        Resolved::Failed(e) => {
            st.mcp_failed(
                &route.name,
                McpFailureKind::Connection,
                format!("MCP server `{}` could not be reached: its host name does not resolve", route.name),
            );
            return bad_gateway(&st, "the MCP server's host name could not be resolved", e);
        }
    };
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return full(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("bridle egress gateway: MCP request bodies are limited to {MAX_BODY} bytes\n"),
            );
        }
    };
    st.counters.sent.fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    // Whatever the runtime sent is not the credential.
    headers.remove(AUTHORIZATION);
    // Pinned to the checked addresses; TLS still verifies the host name.
    let client = match reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(super::UPSTREAM_CONNECT_TIMEOUT)
        .resolve_to_addrs(&host, &addrs)
        .build()
    {
        Ok(c) => c,
        Err(e) => return bad_gateway(&st, "the MCP route's HTTP client could not be built", e),
    };
    st.counters.allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    crate::metrics::egress("allowed", "mcp");
    let started = Instant::now();
    let send = |token: Option<Secret>| {
        let mut h = headers.clone();
        if let Some(t) = token
            && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
        {
            v.set_sensitive(true);
            h.insert(AUTHORIZATION, v);
        }
        client.request(parts.method.clone(), url.clone()).headers(h).body(body.clone()).send()
    };
    let token = match &route.credential {
        None => None,
        Some(c) => match c.token().await {
            Ok(t) => Some(t),
            Err(e) => {
                st.mcp_failed(
                    &route.name,
                    McpFailureKind::Authentication,
                    format!("MCP server `{}`: no usable token: {e}", route.name),
                );
                return full(
                    StatusCode::UNAUTHORIZED,
                    format!("bridle egress gateway: MCP server `{}`: no usable credential\n", route.name),
                );
            }
        },
    };
    let mut resp = match send(token.clone()).await {
        Ok(r) => r,
        Err(e) => return connect_failed(&st, &route, e),
    };
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp = match retry_after_401(&st, &route, token.as_ref()).await {
            Some(fresh) => match send(Some(fresh)).await {
                Ok(r) => r,
                Err(e) => return connect_failed(&st, &route, e),
            },
            None => resp,
        };
        if resp.status() == StatusCode::UNAUTHORIZED {
            let why = match &route.credential {
                Some(_) => "rejected the credential bound to its URL",
                None => "requires authentication and no credential in the session's vaults is bound to its URL",
            };
            st.mcp_failed(&route.name, McpFailureKind::Authentication, format!("MCP server `{}` {why}", route.name));
            return relay_response(&st, resp);
        }
    }
    st.mcp_answered(&route.name);
    debug!(server = %route.name, status = resp.status().as_u16(), ms = started.elapsed().as_millis() as u64, "MCP request");
    relay_response(&st, resp)
}

/// A fresh token after a 401, if the credential can give one (failures are
/// reported here).
async fn retry_after_401(st: &State, route: &McpRoute, rejected: Option<&Secret>) -> Option<Secret> {
    let (Some(cred), Some(rejected)) = (&route.credential, rejected) else { return None };
    match cred.refresh(rejected).await {
        Ok(t) => Some(t),
        Err(e) => {
            st.mcp_failed(
                &route.name,
                McpFailureKind::Authentication,
                format!("MCP server `{}` rejected the credential and it could not be refreshed: {e}", route.name),
            );
            None
        }
    }
}

fn connect_failed(st: &State, route: &McpRoute, e: reqwest::Error) -> Response<GwBody> {
    let what = super::upstream_failure(&e);
    st.mcp_failed(&route.name, McpFailureKind::Connection, format!("MCP server `{}`: {what}", route.name));
    bad_gateway(st, "the MCP server could not be reached", e.without_url())
}

/// Words for an address-policy denial.
fn denial_words(d: &Denial) -> String {
    match d {
        Denial::InternalAddress { ip, range } => format!(
            "it resolves to {ip}, a {range} address, which the server's operator does not allow (egress.allow_internal)"
        ),
        Denial::HostAddress(ip) => format!(
            "it resolves to {ip}, an address of the server itself, which the operator does not allow (egress.allow_internal)"
        ),
        Denial::NotAllowed | Denial::BadHost => "its host is not allowed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_paths_split_into_server_and_rest() {
        for (path, want) in [
            ("/mcp/docs", Some(("docs", ""))),
            ("/mcp/docs/", Some(("docs", "/"))),
            ("/mcp/docs/sse/x", Some(("docs", "/sse/x"))),
            ("/mcp/", None),
            ("/mcp", None),
            ("/mcpdocs", None),
            ("/llm/v1/messages", None),
        ] {
            assert_eq!(split(path), want, "{path}");
        }
        assert!(is_mcp_path("/mcp/x") && is_mcp_path("/mcp") && !is_mcp_path("/mcpx") && !is_mcp_path("/llm"));
    }

    #[test]
    fn upstream_urls_stay_under_the_declared_url() {
        for (base, rest, query, want) in [
            ("https://mcp.example/mcp", "", None, Ok("https://mcp.example/mcp")),
            ("https://mcp.example/mcp/", "", None, Ok("https://mcp.example/mcp/")),
            ("https://mcp.example/mcp", "/", None, Ok("https://mcp.example/mcp")),
            ("https://mcp.example/mcp", "/messages", Some("s=1"), Ok("https://mcp.example/mcp/messages?s=1")),
            ("https://mcp.example/mcp?k=v", "", Some("s=1"), Ok("https://mcp.example/mcp?k=v&s=1")),
            ("http://127.0.0.1:9/a/b", "/c/../d", None, Ok("http://127.0.0.1:9/a/b/d")),
            // Never above the declared path.
            ("https://mcp.example/mcp", "/../../admin", None, Err(())),
            ("https://mcp.example/mcp", "/%2e%2e/x", None, Err(())),
        ] {
            let got = upstream_url(base, rest, query).map(|u| u.to_string()).map_err(|_| ());
            assert_eq!(got, want.map(str::to_string), "{base} + {rest}");
        }
    }

    #[test]
    fn limited_networking_admits_mcp_only_when_allowed() {
        let limited = |allow_mcp_servers| Networking::Limited {
            allowed_hosts: vec!["mcp.example".into()],
            allow_package_managers: false,
            allow_mcp_servers,
        };
        assert!(admits(&Networking::Unrestricted).is_ok());
        assert!(admits(&limited(true)).is_ok());
        assert!(admits(&limited(false)).unwrap_err().contains("allow_mcp_servers"));
    }
}
