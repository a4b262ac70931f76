//! The git route `/git/<resource id>/…` (origin form, like the model route):
//! git's smart-HTTP requests for one of the session's `github_repository`
//! resources, forwarded to that repository's URL with its token added. A
//! clone's `origin` points here, so the agent fetches and pushes without the
//! token ever entering the sandbox, and no TLS interception is needed.
//!
//! The repository and token are looked up for every request
//! ([`GitRemotes`]), so a token rotated through the API applies to the next
//! push. Only the three smart-HTTP endpoints are forwarded; the upstream's
//! address passes the same address policy as any other egress (an internal
//! repository host needs the operator's `egress.allow_internal`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use base64::Engine as _;
use http::header::{AUTHORIZATION, COOKIE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::debug;

use super::policy::{AddressPolicy, Denial, normalize_host};
use super::{GwBody, State, UPSTREAM_CONNECT_TIMEOUT};
use crate::spec::Secret;

/// The path prefix of the git route.
pub const GIT_PREFIX: &str = "/git/";

/// One repository as the route reaches it.
#[derive(Debug, Clone)]
pub struct GitRemote {
    /// `https://…` (or `http://`) URL of the repository, as given at create.
    pub url: String,
    /// Added as `Authorization`; `None` for a public repository.
    pub token: Option<Secret>,
}

/// Where the route finds a session's repositories (the host's store).
#[async_trait]
pub trait GitRemotes: Send + Sync {
    /// The repository of `resource_id` in `session_id`, if it has one.
    async fn remote(&self, session_id: &str, resource_id: &str) -> anyhow::Result<Option<GitRemote>>;
}

/// The session's repositories, handed to the gateway with the sandbox spec.
#[derive(Clone)]
pub struct GitRoutes(pub Arc<dyn GitRemotes>);

impl std::fmt::Debug for GitRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GitRoutes(..)")
    }
}

/// The smart-HTTP endpoints the route forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitEndpoint {
    /// `GET info/refs?service=git-upload-pack` (fetch, clone).
    RefsUpload,
    /// `GET info/refs?service=git-receive-pack` (push).
    RefsReceive,
    /// `POST git-upload-pack`.
    UploadPack,
    /// `POST git-receive-pack`.
    ReceivePack,
}

impl GitEndpoint {
    /// The path under the repository URL, and its query.
    fn upstream(self) -> (&'static str, Option<&'static str>) {
        match self {
            GitEndpoint::RefsUpload => ("info/refs", Some("service=git-upload-pack")),
            GitEndpoint::RefsReceive => ("info/refs", Some("service=git-receive-pack")),
            GitEndpoint::UploadPack => ("git-upload-pack", None),
            GitEndpoint::ReceivePack => ("git-receive-pack", None),
        }
    }
}

/// `path` (starting with [`GIT_PREFIX`]) and `query` of a request to the
/// route: the resource id and endpoint, or why it is refused. Strict: no
/// percent-escapes, no extra segments or query parameters.
pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<(String, GitEndpoint), String> {
    let rest = path.strip_prefix(GIT_PREFIX).unwrap_or_default();
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("the path does not name a repository resource (/git/<resource id>/…)".into());
    }
    let endpoint = match (method, tail, query) {
        (&Method::GET, "info/refs", Some("service=git-upload-pack")) => GitEndpoint::RefsUpload,
        (&Method::GET, "info/refs", Some("service=git-receive-pack")) => GitEndpoint::RefsReceive,
        (&Method::POST, "git-upload-pack", None) => GitEndpoint::UploadPack,
        (&Method::POST, "git-receive-pack", None) => GitEndpoint::ReceivePack,
        _ => {
            return Err(format!(
                "{method} {tail} is not a smart-HTTP git request; the route forwards only info/refs, \
                 git-upload-pack and git-receive-pack"
            ));
        }
    };
    Ok((id.to_owned(), endpoint))
}

/// The upstream URL of `endpoint` for the repository at `base`.
pub fn upstream_url(base: &str, endpoint: GitEndpoint) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(base).map_err(|e| format!("the repository URL is invalid: {e}"))?;
    let (tail, query) = endpoint.upstream();
    let path = format!("{}/{tail}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(query);
    url.set_fragment(None);
    Ok(url)
}

/// The `Authorization` value for a repository token: GitHub's form for
/// tokens over HTTPS (any user name; the token as password).
pub fn basic_auth(token: &str) -> String {
    let pair = format!("x-access-token:{token}");
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// Why a repository's address may not be used.
#[derive(Debug)]
pub enum AddressError {
    Denied(Denial),
    Failed(String),
}

impl std::fmt::Display for AddressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressError::Denied(Denial::InternalAddress { ip, range }) => write!(
                f,
                "it resolves to {ip}, a {range} address; internal destinations are reachable only when the \
                 server's operator allows them (egress.allow_internal)"
            ),
            AddressError::Denied(Denial::HostAddress(ip)) => write!(
                f,
                "it resolves to {ip}, an address of the server itself; reachable only when the server's operator \
                 allows it (egress.allow_internal)"
            ),
            AddressError::Denied(_) => f.write_str("the URL names no valid host"),
            AddressError::Failed(e) => f.write_str(e),
        }
    }
}

/// Resolve `url`'s host and keep the addresses `policy` allows: what the
/// route (and the host-side clone) may connect to, pinned so that nothing
/// re-resolves elsewhere.
pub async fn resolve(policy: &AddressPolicy, url: &reqwest::Url) -> Result<(String, Vec<SocketAddr>), AddressError> {
    let host = url.host_str().ok_or(AddressError::Denied(Denial::BadHost))?;
    let port = url.port_or_known_default().ok_or(AddressError::Denied(Denial::BadHost))?;
    let bare = normalize_host(host);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare.as_str(), port))
        .await
        .map_err(|e| AddressError::Failed(format!("cannot resolve {bare}: {e}")))?
        .collect();
    let mut denial = None;
    let ok: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match policy.check(&bare, port, a.ip()) {
            Ok(()) => true,
            Err(d) => {
                denial.get_or_insert(d);
                false
            }
        })
        .collect();
    match (ok.is_empty(), denial) {
        (false, _) => Ok((bare, ok)),
        (true, Some(d)) => Err(AddressError::Denied(d)),
        (true, None) => Err(AddressError::Failed(format!("{bare} has no address"))),
    }
}

/// Serve one request to the git route.
pub(super) async fn serve(st: Arc<State>, req: Request<Incoming>) -> Response<GwBody> {
    let uri = req.uri().clone();
    let (id, endpoint) = match parse(req.method(), uri.path(), uri.query()) {
        Ok(p) => p,
        Err(why) => {
            return super::refused(&st, "git", "git route", format!("bridle egress gateway: {why}\n"));
        }
    };
    let Some(routes) = st.cfg.git.clone() else {
        return super::full(StatusCode::NOT_FOUND, "bridle egress gateway: this sandbox has no repositories\n".into());
    };
    let remote = match routes.0.remote(&st.cfg.session_id, &id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return super::full(
                StatusCode::NOT_FOUND,
                format!("bridle egress gateway: the session has no repository resource `{id}`\n"),
            );
        }
        Err(e) => return super::bad_gateway(&st, "the repository could not be looked up", format!("{e:#}")),
    };
    let url = match upstream_url(&remote.url, endpoint) {
        Ok(u) => u,
        Err(e) => return super::bad_gateway(&st, "the repository URL is invalid", e),
    };
    let (host, addrs) = match resolve(&st.hub().addresses, &url).await {
        Ok(r) => r,
        Err(AddressError::Denied(d)) => return super::deny(&st, "git", url.host_str().unwrap_or_default(), &d),
        Err(AddressError::Failed(e)) => return super::bad_gateway(&st, "the host name could not be resolved", e),
    };
    // A client per request: it connects only to the checked addresses, and
    // keeps TLS checking the repository's own host name.
    let client = match reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(UPSTREAM_CONNECT_TIMEOUT)
        .resolve_to_addrs(&host, &addrs)
        .build()
    {
        Ok(c) => c,
        Err(e) => return super::bad_gateway(&st, "the request to the repository could not be prepared", e),
    };
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    super::strip_hop_by_hop(&mut headers);
    // Whatever the sandbox sent in its name is dropped; the token is the host's.
    headers.remove(AUTHORIZATION);
    headers.remove(COOKIE);
    if let Some(token) = &remote.token {
        match HeaderValue::from_str(&basic_auth(token.expose())) {
            Ok(mut v) => {
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            }
            Err(_) => return super::bad_gateway(&st, "the repository token is not a valid header value", &id),
        }
    }
    st.counters.allowed.fetch_add(1, Ordering::Relaxed);
    crate::metrics::egress("allowed", "git");
    debug!(resource_id = %id, ?endpoint, "git request");
    let result =
        client.request(parts.method, url).headers(headers).body(super::counting_request_body(&st, body)).send().await;
    match result {
        Ok(resp) => super::relay_response(&st, resp),
        Err(e) => super::bad_gateway(&st, super::upstream_failure(&e), format!("git {id}: {}", e.without_url())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let ok = [
            (Method::GET, "/git/sesrsc_01A/info/refs", Some("service=git-upload-pack"), GitEndpoint::RefsUpload),
            (Method::GET, "/git/sesrsc_01A/info/refs", Some("service=git-receive-pack"), GitEndpoint::RefsReceive),
            (Method::POST, "/git/sesrsc_01A/git-upload-pack", None, GitEndpoint::UploadPack),
            (Method::POST, "/git/sesrsc_01A/git-receive-pack", None, GitEndpoint::ReceivePack),
        ];
        for (m, p, q, want) in ok {
            assert_eq!(parse(&m, p, q), Ok(("sesrsc_01A".to_owned(), want)), "{m} {p}");
        }
        let bad = [
            (Method::GET, "/git/", None),
            (Method::GET, "/git/sesrsc_01A", None),
            (Method::GET, "/git/../llm/info/refs", Some("service=git-upload-pack")),
            (Method::GET, "/git/sesrsc%2F01A/info/refs", Some("service=git-upload-pack")),
            (Method::GET, "/git/sesrsc_01A/info/refs", None),
            (Method::GET, "/git/sesrsc_01A/info/refs", Some("service=git-upload-archive")),
            (Method::GET, "/git/sesrsc_01A/info/refs", Some("service=git-upload-pack&x=1")),
            (Method::POST, "/git/sesrsc_01A/info/refs", Some("service=git-upload-pack")),
            (Method::GET, "/git/sesrsc_01A/git-upload-pack", None),
            (Method::POST, "/git/sesrsc_01A/git-receive-pack", Some("x=1")),
            (Method::GET, "/git/sesrsc_01A/HEAD", None),
            (Method::GET, "/git/sesrsc_01A/objects/info/packs", None),
            (Method::POST, "/git/sesrsc_01A/../x/git-upload-pack", None),
        ];
        for (m, p, q) in bad {
            assert!(parse(&m, p, q).is_err(), "{m} {p} {q:?}");
        }
    }

    #[test]
    fn upstream_urls() {
        let cases = [
            (
                "https://github.com/o/r",
                GitEndpoint::RefsUpload,
                "https://github.com/o/r/info/refs?service=git-upload-pack",
            ),
            ("https://github.com/o/r.git", GitEndpoint::UploadPack, "https://github.com/o/r.git/git-upload-pack"),
            ("http://127.0.0.1:9/repos/r/", GitEndpoint::ReceivePack, "http://127.0.0.1:9/repos/r/git-receive-pack"),
            ("https://h/o/r?x=1#f", GitEndpoint::RefsReceive, "https://h/o/r/info/refs?service=git-receive-pack"),
        ];
        for (base, ep, want) in cases {
            assert_eq!(upstream_url(base, ep).unwrap().as_str(), want, "{base}");
        }
        assert!(upstream_url("not a url", GitEndpoint::UploadPack).is_err());
    }

    #[test]
    fn token_header() {
        // base64("x-access-token:tok")
        assert_eq!(basic_auth("tok"), "Basic eC1hY2Nlc3MtdG9rZW46dG9r");
    }
}
