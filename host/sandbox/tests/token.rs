//! The vault token never enters the sandbox, while the upstream receives it on
//! every model request made through the model route.

mod common;

use bridle_sandbox::{ExecRequest, HeaderRule, LlmRoute, ModelEndpoint, Sandbox, Secret};
use common::*;

const TOKEN: &str = "sk-vault-token-7f3a9c1e2b4d";

#[tokio::test]
async fn token_is_injected_upstream_and_absent_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let up = FakeUpstream::start().await;
    let mut sp = spec("token");
    sp.llm = Some(LlmRoute {
        base_url: format!("http://127.0.0.1:{}/base", up.port),
        header_rules: vec![
            HeaderRule { header: "x-api-key".into(), value_template: "{token}".into() },
            HeaderRule { header: "Authorization".into(), value_template: "Bearer {token}".into() },
        ],
        token: Secret::new(TOKEN),
        allowed: vec![ModelEndpoint::post("/v1/messages")],
        extra: Vec::new(),
    });
    sp.env = vec![
        ("ANTHROPIC_API_KEY".into(), "placeholder-key".into()),
        ("ANTHROPIC_AUTH_TOKEN".into(), "placeholder-token".into()),
    ];
    let sbx = d.claim_local(sp).await.unwrap();
    let inside = sbx.llm_base_url_inside();
    assert_eq!(inside, "http://127.0.0.1:41080/llm");

    // A resident process (like a runtime) stays up while we look around.
    let resident = sbx.exec(ExecRequest::shell("sleep 30").env("ANTHROPIC_BASE_URL", inside.clone())).await.unwrap();

    // Three model requests, the runtime's own placeholder headers included.
    let out = sh(
        &*sbx,
        &format!(
            r#"
            for i in 1 2 3; do
              curl -s -m 5 -H "x-api-key: $ANTHROPIC_API_KEY" -H "authorization: Bearer $ANTHROPIC_AUTH_TOKEN" \
                   -H 'content-type: application/json' -d '{{"n":'$i'}}' "{inside}/v1/messages?beta=true" \
                   -o /workspace/resp$i.txt -D /workspace/hdr$i.txt
              cat /workspace/resp$i.txt; echo
            done
            env > /workspace/env.txt
            "#
        ),
    )
    .await;
    let s = out.stdout_str();
    assert_eq!(s.matches("upstream-ok /base/v1/messages?beta=true").count(), 3, "{s} {}", out.stderr_str());

    // Upstream saw the real token on every request, never the placeholders.
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    for r in &reqs {
        assert_eq!(r.header("x-api-key"), Some(TOKEN), "{r:?}");
        assert_eq!(r.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()), "{r:?}");
        assert!(!format!("{r:?}").contains("placeholder"), "{r:?}");
        assert!(r.request_line.starts_with("POST /base/v1/messages?beta=true"));
    }

    // Nowhere inside: the sandbox dumps the environment and command line of
    // every process, its /tmp and its /run into the workspace (the scan itself
    // must not name the token, or its own command line would hold it), and
    // the host searches the whole workspace.
    let scan = sh(
        &*sbx,
        r#"
        mkdir -p /workspace/scan
        for p in /proc/[0-9]*; do
          echo "== $p"; cat $p/environ 2>/dev/null | tr '\0' '\n'; cat $p/cmdline 2>/dev/null | tr '\0' ' '; echo
        done > /workspace/scan/procdump
        cp -r /tmp /workspace/scan/tmp 2>/dev/null
        ls -la /run /run/bridle > /workspace/scan/run.txt 2>&1
        env > /workspace/scan/env.txt
        echo scanned
        "#,
    )
    .await;
    assert!(scan.stdout_str().contains("scanned"), "{}", scan.stderr_str());
    let dump = std::fs::read_to_string(d.workspace_path("token").join("scan/procdump")).unwrap();
    assert!(dump.matches("== /proc/").count() >= 4, "{dump}");
    assert!(dump.contains("sleep 30"), "the resident process was scanned: {dump}");
    assert!(dump.contains("ANTHROPIC_BASE_URL=http://127.0.0.1:41080/llm"), "{dump}");
    assert!(dump.contains("ANTHROPIC_API_KEY=placeholder-key"), "{dump}");
    assert!(!dump.contains(TOKEN) && !dump.contains("vault-token"), "{dump}");

    // And from the host: no workspace file holds it.
    for e in walk(&d.workspace_path("token")) {
        let body = std::fs::read(&e).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&body).contains(TOKEN), "{} holds the token", e.display());
    }
    // The host-side bwrap command line does not carry it either.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", sbx.bwrap_pid().unwrap())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(TOKEN));

    let st = sbx.egress_stats();
    assert_eq!(st.model_requests, 3, "{st:?}");
    assert!(st.bytes_sent > 0 && st.bytes_received > 0, "{st:?}");
    resident.kill().await.unwrap();
    sbx.release().await.unwrap();
}

#[tokio::test]
async fn model_route_through_the_proxy_and_without_llm() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    // No model route configured: a clear 503.
    let sbx = d.claim_local(spec("nollm")).await.unwrap();
    let out = sh(&*sbx, "curl -s -w ' status=%{http_code}' http://127.0.0.1:41080/llm/v1/messages").await;
    let s = out.stdout_str();
    assert!(s.contains("status=503") && s.contains("no model route"), "{s}");
    sbx.release().await.unwrap();
}

fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path);
                }
            }
        }
    }
    out
}
