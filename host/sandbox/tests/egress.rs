//! The egress gateway driven directly through its socket, as the sandbox's
//! relay would: connection limits under a flood, the address policy (the
//! host's own addresses, in a private network namespace), the model route's
//! path check, and errors that name no upstream.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bridle_sandbox::egress::{Activity, EgressSettings, Gateway, GatewayConfig, GatewayLimits, Hub};
use bridle_sandbox::{EgressPolicy, HeaderRule, LlmRoute, ModelEndpoint, NamedLlmRoute, Networking, Secret};
use common::FakeUpstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn gateway(sock: &Path, hub: &Hub, networking: Networking, llm: Option<LlmRoute>) -> Gateway {
    let sandbox_id = sock.file_stem().unwrap().to_string_lossy().into_owned();
    Gateway::bind(sock, config(sandbox_id, hub, networking, llm), Activity::new()).unwrap()
}

/// A test sandbox's gateway settings: `networking` and `llm`, nothing else routed.
fn config(sandbox_id: String, hub: &Hub, networking: Networking, llm: Option<LlmRoute>) -> GatewayConfig {
    GatewayConfig {
        sandbox_id,
        session_id: "sesn_test".into(),
        policy: EgressPolicy { networking, ..EgressPolicy::default() },
        llm,
        git: None,
        relay_port: 41_080,
        hub: hub.clone(),
        mcp: Vec::new(),
        mcp_failures: None,
        secrets: Vec::new(),
    }
}

fn route(base_url: String) -> LlmRoute {
    LlmRoute {
        base_url,
        header_rules: vec![HeaderRule { header: "x-api-key".into(), value_template: "{token}".into() }],
        token: Secret::new("sk-test"),
        allowed: vec![ModelEndpoint::post("/v1/messages"), ModelEndpoint::post("/v1/messages/count_tokens")],
        extra: Vec::new(),
    }
}

/// One raw HTTP/1.1 exchange over the gateway socket (`Connection: close`),
/// returning the status code and the whole response text.
async fn exchange(sock: &Path, head: &str) -> (u16, String) {
    let fut = async {
        let mut s = UnixStream::connect(sock).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        if head.starts_with("CONNECT") {
            // The tunnel stays open: the status line and headers are enough.
            let mut buf = [0u8; 4096];
            while !out.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
        } else {
            s.read_to_end(&mut out).await.unwrap();
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, text)
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await.expect("the gateway answered")
}

fn post(path: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: 127.0.0.1:41080\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_capped_and_other_sandboxes_are_served() {
    bridle_sandbox::egress::limits::raise_nofile().unwrap();
    let nofile = bridle_sandbox::egress::limits::nofile();
    let flood = 6000.min(nofile.saturating_sub(1000) as usize);
    assert!(flood >= 2000, "RLIMIT_NOFILE {nofile} is too small for the flood");
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::new(&EgressSettings {
        limits: GatewayLimits {
            max_connections_per_sandbox: 64,
            connections_per_second: 2000,
            connection_burst: 2000,
            header_timeout: Duration::from_secs(30),
            ..GatewayLimits::default()
        },
        ..EgressSettings::default()
    })
    .unwrap();
    let up = FakeUpstream::start().await;
    let flooded = tmp.path().join("flooded.sock");
    let other = tmp.path().join("other.sock");
    let _a = gateway(&flooded, &hub, Networking::Unrestricted, None);
    let _b = gateway(&other, &hub, Networking::Unrestricted, Some(route(format!("http://127.0.0.1:{}/base", up.port))));
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The flood: thousands of connections held open, sending nothing (a
    // connect that finds the backlog full fails at once and is not held).
    let before = open_fds();
    let mut held = Vec::new();
    for _ in 0..flood {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), UnixStream::connect(&flooded)).await {
            held.push(s);
        }
    }
    assert!(held.len() >= 100, "the flood held only {} connections", held.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Server-side descriptors: everything this process opened beyond the
    // flood's own client ends.
    let server_side = open_fds() - before - held.len();
    assert!(server_side <= 64 + 16, "the gateway holds {server_side} descriptors for {} flood connections", held.len());
    // 64 for the flooded sandbox, and each gateway's accept loop holds one
    // permit of the global cap while it waits for its next connection.
    assert!(hub.open_connections() <= 64 + 2, "{}", hub.open_connections());

    // Another sandbox's model request goes through meanwhile, every time.
    for i in 0..5 {
        let (status, text) = exchange(&other, &post("/llm/v1/messages")).await;
        assert_eq!(status, 200, "request {i}: {text}");
        assert!(text.contains("upstream-ok /base/v1/messages"), "{text}");
    }
    drop(held);
}

#[tokio::test]
async fn header_and_idle_timeouts_close_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::new(&EgressSettings {
        limits: GatewayLimits {
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            ..GatewayLimits::default()
        },
        allow_internal: vec!["127.0.0.1".parse().unwrap()],
        ..EgressSettings::default()
    })
    .unwrap();
    let sock = tmp.path().join("t.sock");
    let _g = gateway(&sock, &hub, Networking::Unrestricted, None);
    // A client that never finishes its headers is cut off.
    let mut slow = UnixStream::connect(&sock).await.unwrap();
    slow.write_all(b"GET http://127.0.0.1:1/ HTTP/1.1\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf)).await.expect("closed by the gateway");
    assert!(matches!(n, Ok(_) | Err(_)));
    // An idle CONNECT tunnel (both sides silent) is closed too.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut b = [0u8; 16];
        // Returns when the gateway closes its side.
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await;
    });
    let mut t = UnixStream::connect(&sock).await.unwrap();
    t.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let n = t.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let closed = tokio::time::timeout(Duration::from_secs(10), t.read(&mut buf)).await.expect("idle tunnel closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    tokio::time::timeout(Duration::from_secs(10), upstream).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_model_route_forwards_only_the_api_endpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::new(&EgressSettings::default()).unwrap();
    let up = FakeUpstream::start().await;
    let sock = tmp.path().join("m.sock");
    let _g = gateway(&sock, &hub, Networking::default(), Some(route(format!("http://127.0.0.1:{}/base", up.port))));
    let upstream = format!("127.0.0.1:{}", up.port);

    for path in
        ["/llm/v1/messages?beta=true", "/llm//v1//messages/", "/llm/v1/messages/count_tokens", "/llm/v1/x/../messages"]
    {
        let (status, text) = exchange(&sock, &post(path)).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    let refused = [
        ("GET", "/llm/v1/messages"),
        ("DELETE", "/llm/v1/messages"),
        ("POST", "/llm/v1/files"),
        ("POST", "/llm/v1/messages/batches"),
        ("POST", "/llm/%2e%2e/admin"),
        ("POST", "/llm/v1/%2e%2e/%2e%2e/%2e%2e/admin"),
        ("POST", "/llm/v1/messages/%2e%2e/%2e%2e/organizations"),
        ("POST", "/llm/../../admin"),
        ("POST", "/llm/v1/messages/..%2f..%2fusers"),
        ("POST", "/llm"),
    ];
    for (method, path) in refused {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:41080\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        );
        let (status, text) = exchange(&sock, &head).await;
        assert_eq!(status, 403, "{method} {path}: {text}");
        assert!(!text.contains(&upstream) && !text.contains("/base"), "names the upstream: {text}");
    }
    let seen: Vec<String> = up.requests().iter().map(|r| r.request_line.clone()).collect();
    assert_eq!(
        seen,
        [
            "POST /base/v1/messages?beta=true HTTP/1.1",
            "POST /base/v1/messages HTTP/1.1",
            "POST /base/v1/messages/count_tokens HTTP/1.1",
            "POST /base/v1/messages HTTP/1.1",
        ],
    );
}

/// A sandbox with two model routes (a claude coordinator's own and its codex
/// child's): each reaches its own upstream with its own credential and only
/// its own API shape's endpoints; a path of one route is refused on the other.
#[tokio::test]
async fn two_model_routes_reach_their_own_upstreams() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::new(&EgressSettings::default()).unwrap();
    let anthropic = FakeUpstream::start().await;
    let openai = FakeUpstream::start().await;
    let mut primary = route(format!("http://127.0.0.1:{}/a", anthropic.port));
    primary.extra.push(NamedLlmRoute {
        name: "codex".into(),
        route: LlmRoute {
            base_url: format!("http://127.0.0.1:{}/o", openai.port),
            header_rules: vec![HeaderRule { header: "authorization".into(), value_template: "Bearer {token}".into() }],
            token: Secret::new("sk-openai"),
            allowed: vec![ModelEndpoint::post("/v1/responses")],
            extra: Vec::new(),
        },
    });
    let sock = tmp.path().join("two.sock");
    let _g = gateway(&sock, &hub, Networking::default(), Some(primary));

    for path in ["/llm/v1/messages", "/llm-codex/v1/responses"] {
        let (status, text) = exchange(&sock, &post(path)).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    for path in ["/llm/v1/responses", "/llm-codex/v1/messages", "/llm-codex/../llm/v1/messages"] {
        let (status, text) = exchange(&sock, &post(path)).await;
        assert_eq!(status, 403, "{path}: {text}");
    }
    let (status, text) = exchange(&sock, &post("/llm-other/v1/responses")).await;
    assert_eq!(status, 503, "an unknown route: {text}");
    assert!(text.contains("no model route \"other\""), "{text}");

    let a = anthropic.requests();
    assert_eq!(a.iter().map(|r| r.request_line.as_str()).collect::<Vec<_>>(), ["POST /a/v1/messages HTTP/1.1"]);
    assert_eq!(a[0].header("x-api-key"), Some("sk-test"));
    assert_eq!(a[0].header("authorization"), None);
    let o = openai.requests();
    assert_eq!(o.iter().map(|r| r.request_line.as_str()).collect::<Vec<_>>(), ["POST /o/v1/responses HTTP/1.1"]);
    assert_eq!(o[0].header("authorization"), Some("Bearer sk-openai"));
    assert_eq!(o[0].header("x-api-key"), None);
}

/// Extra routes need distinct, well-formed names: anything else fails the
/// gateway's start, never serves a route nobody can reach.
#[tokio::test]
async fn extra_model_route_names_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::new(&EgressSettings::default()).unwrap();
    let extra = |name: &str| NamedLlmRoute { name: name.into(), route: route("http://127.0.0.1:9".into()) };
    for (i, names) in [vec!["Codex"], vec!["a/b"], vec![""], vec!["codex", "codex"]].into_iter().enumerate() {
        let mut primary = route("http://127.0.0.1:9".into());
        primary.extra = names.iter().map(|n| extra(n)).collect();
        let cfg = config(format!("bad{i}"), &hub, EgressPolicy::default().networking, Some(primary));
        let err = Gateway::bind(&tmp.path().join(format!("bad{i}.sock")), cfg, Activity::new()).err();
        assert!(err.is_some(), "{names:?} was accepted");
    }
}

#[tokio::test]
async fn gateway_errors_name_no_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let hub =
        Hub::new(&EgressSettings { allow_internal: vec!["127.0.0.1".parse().unwrap()], ..EgressSettings::default() })
            .unwrap();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sock = tmp.path().join("e.sock");
    let _g =
        gateway(&sock, &hub, Networking::Unrestricted, Some(route(format!("http://127.0.0.1:{closed}/secret-base"))));
    let (status, text) = exchange(&sock, &post("/llm/v1/messages")).await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("model endpoint"), "{text}");
    assert!(!text.contains(&closed.to_string()) && !text.contains("secret-base"), "{text}");
}

/// The host's own addresses: a veth interface with a global-looking
/// address in a private network namespace (nothing leaves the machine), a
/// service bound to 0.0.0.0 there, and a gateway in `unrestricted` mode.
#[test]
fn the_hosts_own_address_is_unreachable_in_unrestricted_mode() {
    common::init_tracing();
    let result = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare a network namespace (root)");
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "add", "bridle-t0", "type", "veth", "peer", "name", "bridle-t1"],
            &["addr", "add", "100.128.0.1/32", "dev", "bridle-t0"],
            &["link", "set", "bridle-t0", "up"],
            &["link", "set", "bridle-t1", "up"],
        ] {
            let st = std::process::Command::new("ip").args(args).status().expect("run ip (iproute2)");
            assert!(st.success(), "ip {args:?}");
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(host_address_probe());
    })
    .join();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

async fn host_address_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let service = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = service.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hits2 = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = service.accept().await {
            hits2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: close\r\n\r\nhost-service")
                    .await;
            });
        }
    });
    let plain = format!(
        "GET http://100.128.0.1:{port}/metrics HTTP/1.1\r\nhost: 100.128.0.1:{port}\r\nconnection: close\r\n\r\n"
    );
    let connect = format!("CONNECT 100.128.0.1:{port} HTTP/1.1\r\nhost: 100.128.0.1:{port}\r\n\r\n");

    let hub = Hub::new(&EgressSettings::default()).unwrap();
    let sock = tmp.path().join("u.sock");
    let g = gateway(&sock, &hub, Networking::Unrestricted, None);
    for head in [&plain, &connect] {
        let (status, text) = exchange(&sock, head).await;
        assert_eq!(status, 403, "{head}: {text}");
        assert!(text.contains("an address of the server itself"), "{text}");
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the host service was reached");
    drop(g);

    // The operator can open it: the same requests then reach the service,
    // so the refusal above was the gateway's and not the network's.
    let hub = Hub::new(&EgressSettings { allow_internal: vec!["100.128.0.1".parse().unwrap()], ..Default::default() })
        .unwrap();
    let _g = gateway(&sock, &hub, Networking::Unrestricted, None);
    let (status, text) = exchange(&sock, &plain).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("host-service"), "{text}");
    let (status, text) = exchange(&sock, &connect).await;
    assert_eq!(status, 200, "{text}");
}
