//! Streamed model responses reach a runtime whole, on every driver: a
//! client inside the sandbox sends model requests the way codex does (one
//! kept-alive HTTP/1.1 connection, request bodies of tens of kilobytes,
//! pauses between turns) through the relay and the egress gateway to an
//! upstream that answers with a chunked server-sent-event stream, and every
//! response must arrive complete.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bridle_sandbox::{ExecRequest, HeaderRule, LlmRoute, ModelEndpoint, Secret};
use bytes::Bytes;
use common::*;
use http_body_util::StreamBody;
use hyper::body::Frame;

/// Events per streamed response, and the pause before each.
const EVENTS: usize = 12;
const EVENT_PAUSE: Duration = Duration::from_millis(3);
/// The last event of every response: the client checks it arrived.
const LAST: &str = "event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n";

/// An upstream that answers every request with a chunked SSE stream and keeps
/// its connections alive (as the model APIs and the fake model do).
async fn sse_upstream() -> (u16, tokio::task::JoinHandle<()>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    // Read the whole request first, as a model API does.
                    let _ = req.into_body().collect().await;
                    let events = futures::stream::unfold(0usize, |i| async move {
                        if i > EVENTS {
                            return None;
                        }
                        tokio::time::sleep(EVENT_PAUSE).await;
                        let text = if i == EVENTS {
                            LAST.to_string()
                        } else {
                            format!("event: response.output_text.delta\ndata: {{\"delta\":\"word {i} \"}}\n\n")
                        };
                        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(text))), i + 1))
                    });
                    let resp = hyper::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(StreamBody::new(events))
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (port, task)
}

/// The client: `ROUNDS` requests on one kept-alive connection (a new one
/// after a failure), each bounded by a socket timeout; prints `ok N` or
/// `fail N <why>` per request.
const CLIENT: &str = r#"
import http.client, json, sys, time
base, rounds, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
port = int(base.split(":")[2].split("/")[0])
conn = None
for i in range(rounds):
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"round": i, "input": "x" * size})
    try:
        conn.request("POST", "/llm/v1/responses", body, {"content-type": "application/json"})
        r = conn.getresponse()
        data = r.read().decode()
        if r.status == 200 and data.endswith("response.completed\"}\n\n"):
            print("ok", i, flush=True)
        else:
            print("fail", i, r.status, repr(data[-80:]), flush=True)
    except Exception as e:
        print("fail", i, repr(e), flush=True)
        conn.close()
        conn = None
    # A tool call or a user between turns.
    time.sleep(0.02 * (i % 4))
"#;

const ROUNDS: usize = 60;

async fn model_streams_arrive_whole(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver(tmp.path());
    let (port, upstream) = sse_upstream().await;
    let mut sp = spec(&format!("stream-{v:?}").to_lowercase());
    sp.llm = Some(LlmRoute {
        base_url: format!("http://127.0.0.1:{port}"),
        header_rules: vec![HeaderRule { header: "authorization".into(), value_template: "Bearer {token}".into() }],
        token: Secret::new("sk-test"),
        allowed: vec![ModelEndpoint::post("/v1/responses")],
        extra: Vec::new(),
    });
    let sbx = v.claim(&d, sp).await;
    let base = sbx.llm_base_url_inside();
    let child = sbx
        .exec(ExecRequest::new([
            "/usr/bin/python3",
            "-c",
            CLIENT,
            &base,
            &ROUNDS.to_string(),
            // About the size of codex's first request (instructions, tools).
            "40000",
        ]))
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(600), child.output(1 << 20)).await.expect("client finished");
    let text = out.stdout_str();
    let failed: Vec<&str> = text.lines().filter(|l| !l.starts_with("ok ")).collect();
    assert!(
        failed.is_empty() && text.lines().count() == ROUNDS,
        "{v:?}: {} of {ROUNDS} responses whole; others: {failed:?}; stderr: {}",
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        out.stderr_str()
    );
    sbx.release().await.unwrap();
    upstream.abort();
}

per_variant!(model_streams_arrive_whole);
