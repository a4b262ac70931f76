//! The gateway's MCP route driven through its socket, as the sandbox's
//! relay would: the credential added host-side (whatever the sandbox sent
//! replaced), a 401 refreshed once and retried, only the declared URL
//! reached, and the failures the session hears of (server down, token
//! rejected, networking refusing MCP, an internal address the operator did
//! not allow).

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bridle_sandbox::egress::{Activity, EgressSettings, Gateway, GatewayConfig, Hub};
use bridle_sandbox::{
    EgressPolicy, McpAuthError, McpCredential, McpFailure, McpFailureKind, McpRoute, Networking, Secret,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// What the upstream saw: (path and query, Authorization header).
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A loopback MCP-ish upstream: 200 `ok <path> <body>` for an accepted
/// bearer token, 401 otherwise; records (path, authorization).
struct Upstream {
    port: u16,
    accepted: Arc<Mutex<Vec<String>>>,
    seen: Seen,
}

async fn upstream() -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen: Seen = Arc::default();
    let (a, s) = (accepted.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (a, s) = (a.clone(), s.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (a, s) = (a.clone(), s.clone());
                    async move {
                        let path = req.uri().to_string();
                        let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_string());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        s.lock().unwrap().push((path.clone(), auth.clone()));
                        let ok = auth
                            .as_deref()
                            .and_then(|h| h.strip_prefix("Bearer "))
                            .is_some_and(|t| a.lock().unwrap().iter().any(|x| x == t));
                        let (status, text) = match ok {
                            true => (200, format!("ok {path} {}", String::from_utf8_lossy(&body))),
                            false => (401, "unauthorized".to_string()),
                        };
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(text)));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream { port, accepted, seen }
}

/// A credential whose refresh hands out `next` (once), counting refreshes.
struct TestCredential {
    token: Mutex<String>,
    next: Mutex<Option<String>>,
    refreshes: Mutex<u32>,
}

#[async_trait]
impl McpCredential for TestCredential {
    async fn token(&self) -> Result<Secret, McpAuthError> {
        Ok(Secret::new(self.token.lock().unwrap().clone()))
    }
    async fn refresh(&self, _rejected: &Secret) -> Result<Secret, McpAuthError> {
        *self.refreshes.lock().unwrap() += 1;
        match self.next.lock().unwrap().take() {
            Some(t) => {
                *self.token.lock().unwrap() = t.clone();
                Ok(Secret::new(t))
            }
            None => Err(McpAuthError("no refresh token".into())),
        }
    }
}

fn credential(token: &str, next: Option<&str>) -> Arc<TestCredential> {
    Arc::new(TestCredential {
        token: Mutex::new(token.into()),
        next: Mutex::new(next.map(str::to_string)),
        refreshes: Mutex::new(0),
    })
}

fn hub(allow: &[String]) -> Hub {
    Hub::new(&EgressSettings {
        allow_internal: allow.iter().map(|a| a.parse().unwrap()).collect(),
        ..EgressSettings::default()
    })
    .unwrap()
}

fn gateway(
    sock: &Path,
    hub: &Hub,
    networking: Networking,
    routes: Vec<McpRoute>,
) -> (Gateway, mpsc::UnboundedReceiver<McpFailure>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let gw = Gateway::bind(
        sock,
        GatewayConfig {
            sandbox_id: "mcp-test".into(),
            session_id: "sesn_test".into(),
            policy: EgressPolicy { networking, ..EgressPolicy::default() },
            llm: None,
            relay_port: 41_080,
            hub: hub.clone(),
            mcp: routes,
            mcp_failures: Some(tx),
            git: None,
            secrets: Vec::new(),
        },
        Activity::new(),
    )
    .unwrap();
    (gw, rx)
}

fn route(name: &str, url: String, cred: Option<Arc<TestCredential>>) -> McpRoute {
    McpRoute { name: name.into(), url, credential: cred.map(|c| c as Arc<dyn McpCredential>) }
}

async fn post(sock: &Path, path: &str, extra: &str) -> (u16, String) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:41080\r\n{extra}content-length: 7\r\nconnection: close\r\n\r\n{{\"a\":1}}"
    );
    let fut = async {
        let mut s = UnixStream::connect(sock).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        (text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), text)
    };
    tokio::time::timeout(Duration::from_secs(20), fut).await.expect("the gateway answered")
}

fn failures(rx: &mut mpsc::UnboundedReceiver<McpFailure>) -> Vec<McpFailure> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[tokio::test]
async fn the_credential_is_added_host_side_and_only_the_declared_url_is_reached() {
    let up = upstream().await;
    up.accepted.lock().unwrap().push("good".into());
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("gw.sock");
    let cred = credential("good", None);
    let url = format!("http://127.0.0.1:{}/team/mcp", up.port);
    let (_gw, mut rx) = gateway(
        &sock,
        &hub(&[format!("127.0.0.1:{}", up.port)]),
        Networking::Unrestricted,
        vec![route("docs", url, Some(cred.clone()))],
    );
    // The sandbox's own Authorization header never reaches the server.
    let (status, text) = post(&sock, "/mcp/docs?x=1", "authorization: Bearer placeholder\r\n").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("ok /team/mcp?x=1 {\"a\":1}"), "{text}");
    let (status, text) = post(&sock, "/mcp/docs/sub/../messages", "").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("ok /team/mcp/messages"), "{text}");
    // Nothing above the declared path, and no undeclared server.
    assert_eq!(post(&sock, "/mcp/docs/../../admin", "").await.0, 400);
    let (status, text) = post(&sock, "/mcp/other", "").await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("docs"), "the refusal names the declared servers: {text}");
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|(_, a)| a.as_deref() == Some("Bearer good")), "{seen:?}");
    assert!(failures(&mut rx).is_empty());
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_once_and_the_request_retried() {
    let up = upstream().await;
    up.accepted.lock().unwrap().push("fresh".into());
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("gw.sock");
    let cred = credential("stale", Some("fresh"));
    let (_gw, mut rx) = gateway(
        &sock,
        &hub(&[format!("127.0.0.1:{}", up.port)]),
        Networking::Unrestricted,
        vec![route("docs", format!("http://127.0.0.1:{}/mcp", up.port), Some(cred.clone()))],
    );
    let (status, text) = post(&sock, "/mcp/docs", "").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(post(&sock, "/mcp/docs", "").await.0, 200);
    assert_eq!(*cred.refreshes.lock().unwrap(), 1);
    let auths: Vec<_> = up.seen.lock().unwrap().iter().map(|(_, a)| a.clone().unwrap_or_default()).collect();
    assert_eq!(auths, ["Bearer stale", "Bearer fresh", "Bearer fresh"]);
    assert!(failures(&mut rx).is_empty());
}

#[tokio::test]
async fn a_rejected_token_that_cannot_be_refreshed_is_an_authentication_failure() {
    let up = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("gw.sock");
    let (_gw, mut rx) = gateway(
        &sock,
        &hub(&[format!("127.0.0.1:{}", up.port)]),
        Networking::Unrestricted,
        vec![route("docs", format!("http://127.0.0.1:{}/mcp", up.port), Some(credential("bad", None)))],
    );
    assert_eq!(post(&sock, "/mcp/docs", "").await.0, 401);
    // Reported once, not per request.
    assert_eq!(post(&sock, "/mcp/docs", "").await.0, 401);
    let f = failures(&mut rx);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].server.as_str(), f[0].kind), ("docs", McpFailureKind::Authentication));
    assert!(!f[0].message.contains("bad"), "the message holds no token: {}", f[0].message);
}

#[tokio::test]
async fn unreachable_refused_and_internal_servers_are_connection_failures() {
    let up = upstream().await;
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let allow = [format!("127.0.0.1:{}", up.port), format!("127.0.0.1:{down}")];
    let routes = || {
        vec![
            route("down", format!("http://127.0.0.1:{down}/mcp"), None),
            route("up", format!("http://127.0.0.1:{}/mcp", up.port), None),
        ]
    };

    let sock = tmp.path().join("a.sock");
    let (_gw, mut rx) = gateway(&sock, &hub(&allow), Networking::Unrestricted, routes());
    assert_eq!(post(&sock, "/mcp/down", "").await.0, 502);
    let f = failures(&mut rx);
    assert_eq!((f[0].server.as_str(), f[0].kind), ("down", McpFailureKind::Connection), "{f:?}");

    // Limited networking without allow_mcp_servers: refused before any connection.
    let sock = tmp.path().join("b.sock");
    let limited =
        Networking::Limited { allowed_hosts: vec![], allow_package_managers: false, allow_mcp_servers: false };
    let (_gw, mut rx) = gateway(&sock, &hub(&allow), limited, routes());
    let (status, text) = post(&sock, "/mcp/up", "").await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("allow_mcp_servers"), "{text}");
    let f = failures(&mut rx);
    assert_eq!((f[0].server.as_str(), f[0].kind), ("up", McpFailureKind::Connection), "{f:?}");
    assert!(f[0].message.contains("allow_mcp_servers"), "{f:?}");
    let limited = Networking::Limited { allowed_hosts: vec![], allow_package_managers: false, allow_mcp_servers: true };
    let sock = tmp.path().join("c.sock");
    let (_gw, _rx) = gateway(&sock, &hub(&allow), limited, routes());
    assert_eq!(post(&sock, "/mcp/up", "").await.0, 401, "allowed through, answered by the server");

    // Loopback the operator did not allow.
    let sock = tmp.path().join("d.sock");
    let (_gw, mut rx) = gateway(&sock, &hub(&[]), Networking::Unrestricted, routes());
    let (status, text) = post(&sock, "/mcp/up", "").await;
    assert_eq!(status, 403, "{text}");
    let f = failures(&mut rx);
    assert_eq!((f[0].server.as_str(), f[0].kind), ("up", McpFailureKind::Connection), "{f:?}");
    assert!(f[0].message.contains("egress.allow_internal"), "{f:?}");
    assert_eq!(up.seen.lock().unwrap().len(), 1, "only the allowed gateway reached the server");
}
