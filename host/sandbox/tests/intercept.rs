//! Environment-variable secrets through a real sandbox: the process sees
//! only the placeholder; curl (trusting the gateway's CA through the
//! sandbox's bundle) reaches an HTTPS upstream on loopback, which receives
//! the secret in the header and the body on the allowed host, only the
//! placeholder on another host (an untouched tunnel), and nothing from a
//! gateway that cannot verify the upstream's certificate.

mod common;

use std::sync::{Arc, Mutex};

use bridle_sandbox::egress::tls::{CaPem, Minter, generate_ca};
use bridle_sandbox::{EnvSecret, Networking, Secret, SecretHosts};
use common::{driver_with, sh, spec};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "sk-live-7f3a9c-never-in-the-sandbox";
const PLACEHOLDER: &str = "bridle_placeholder_5c1d0e7a9b3f4e21a8c6d2b0f9e8a7c1";

/// What an upstream received: (request head, body).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTPS server on `ip` with a leaf for `names` issued by `ca`,
/// recording requests and answering `200 ok`.
async fn tls_upstream(ca: &CaPem, ip: &str, names: &[&str]) -> (u16, Seen) {
    let minter = Minter::new(ca).unwrap();
    let (cert_pem, key_pem) = minter.issue_pem(names[0]).unwrap();
    let chain = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let cfg = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = s.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = buf[head_end + 4..].to_vec();
                while body.len() < len {
                    let Ok(n) = s.read(&mut chunk).await else { return };
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                seen.lock().unwrap().push((head, String::from_utf8_lossy(&body).into_owned()));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n").await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn secrets_reach_allowed_hosts_only_and_the_sandbox_sees_placeholders() {
    let tmp = tempfile::tempdir().unwrap();
    // The upstreams' own CA: trusted by the gateway as an operator root, not by the sandbox.
    let upstream_ca = generate_ca("test upstream CA").unwrap();
    let (allowed_port, allowed_seen) = tls_upstream(&upstream_ca, "127.0.0.2", &["127.0.0.2"]).await;
    let (other_port, other_seen) = tls_upstream(&upstream_ca, "127.0.0.3", &["127.0.0.3"]).await;
    // A third upstream whose certificate no configured root vouches for.
    let stranger_ca = generate_ca("unknown CA").unwrap();
    let (stranger_port, stranger_seen) = tls_upstream(&stranger_ca, "127.0.0.4", &["127.0.0.4"]).await;

    let gateway_ca = generate_ca("Bridle test gateway CA").unwrap();
    let d = driver_with(tmp.path(), |c| {
        c.egress.allow_internal = ["127.0.0.2", "127.0.0.3", "127.0.0.4"].iter().map(|s| s.parse().unwrap()).collect();
        c.egress.ca = Some(gateway_ca.clone());
        c.egress.upstream_roots = vec![upstream_ca.cert_pem.clone()];
    });
    let mut sp = spec("intercept");
    sp.egress.networking = Networking::Unrestricted;
    sp.secrets = vec![EnvSecret {
        name: "API_TOKEN".into(),
        placeholder: PLACEHOLDER.into(),
        value: Secret::new(SECRET),
        header: true,
        body: true,
        hosts: SecretHosts::Only(vec!["127.0.0.2".into(), "127.0.0.4".into()]),
    }];
    let sbx = d.claim_local(sp).await.unwrap();

    // The sandbox's environment, and every process's, holds the placeholder only.
    let env = sh(sbx.as_ref(), "echo \"$API_TOKEN\"; cat /proc/self/environ | tr '\\0' '\\n'").await;
    assert!(env.stdout_str().starts_with(PLACEHOLDER), "{}", env.stdout_str());
    assert!(!env.stdout_str().contains(SECRET));

    // The allowed host: curl trusts the gateway's leaf through the sandbox's bundle; the
    // upstream gets the secret in the header and the body.
    let allowed = sh(
        sbx.as_ref(),
        &format!(
            "curl -sS --fail-with-body -H \"Authorization: Bearer $API_TOKEN\" -d \"key=$API_TOKEN\" \
             https://127.0.0.2:{allowed_port}/allowed"
        ),
    )
    .await;
    assert_eq!(allowed.stdout_str(), "ok\n", "curl: {}", allowed.stderr_str());
    let got = allowed_seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let (head, body) = &got[0];
    assert!(head.contains(&format!("Bearer {SECRET}")), "{head}");
    assert!(!head.contains(PLACEHOLDER), "{head}");
    assert_eq!(body, &format!("key={SECRET}"));
    assert!(head.to_ascii_lowercase().contains(&format!("host: 127.0.0.2:{allowed_port}")), "{head}");

    // Another host: the tunnel is untouched (curl sees the upstream's own certificate, which
    // the sandbox does not trust: -k), so the placeholder arrives as it was sent.
    let other = sh(
        sbx.as_ref(),
        &format!("curl -sS -k -H \"Authorization: Bearer $API_TOKEN\" https://127.0.0.3:{other_port}/other"),
    )
    .await;
    assert_eq!(other.stdout_str(), "ok\n", "curl: {}", other.stderr_str());
    let got = other_seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].0.contains(&format!("Bearer {PLACEHOLDER}")), "{}", got[0].0);
    assert!(!got[0].0.contains(SECRET));
    // Without -k the untouched tunnel fails verification in the sandbox: it was not intercepted.
    let strict = sh(sbx.as_ref(), &format!("curl -sS https://127.0.0.3:{other_port}/strict")).await;
    assert!(!strict.status.success(), "an untouched tunnel must show the upstream's own certificate");

    // An allowed host whose certificate the gateway cannot verify: 502, nothing sent.
    let stranger = sh(
        sbx.as_ref(),
        &format!("curl -sS -o /dev/null -w '%{{http_code}}' -H \"Authorization: Bearer $API_TOKEN\" https://127.0.0.4:{stranger_port}/x"),
    )
    .await;
    assert_eq!(stranger.stdout_str(), "502", "curl: {}", stranger.stderr_str());
    assert!(stranger_seen.lock().unwrap().is_empty(), "the secret went to an unverified upstream");

    // The secret never shows in what the sandbox saw.
    for out in [&env, &allowed, &other, &strict, &stranger] {
        assert!(!out.stdout_str().contains(SECRET) && !out.stderr_str().contains(SECRET));
    }
    bridle_sandbox::Sandbox::stop(sbx.as_ref()).await.unwrap();
}
