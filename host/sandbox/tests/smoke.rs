//! The doctor, the missing-prerequisite message, and a basic round trip.

mod common;

use bridle_sandbox::local::check;
use bridle_sandbox::{ExecRequest, LocalConfig, LocalDriver, Sandbox, SandboxError};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn doctor_reports_ok_here() {
    common::ensure_bubblewrap();
    let doc = check(&LocalConfig {
        init_binary: Some(env!("CARGO_BIN_EXE_bridle-sandbox-init").into()),
        ..LocalConfig::default()
    });
    let report = doc.report();
    assert!(doc.ok(), "{report}");
    assert!(report.contains("bubblewrap") && report.contains("trial sandbox"), "{report}");
    // The quota mechanism (after a trial mount) and the CPU controller in use.
    assert!(report.contains("ok   disk quota: ext4 image per workspace, 4096 MiB"), "{report}");
    assert!(report.contains("ok   CPU limit: cgroup"), "{report}");
}

#[test]
fn a_quota_that_cannot_be_enforced_stops_the_driver_and_names_the_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LocalConfig {
        state_dir: tmp.path().join("s"),
        init_binary: Some(env!("CARGO_BIN_EXE_bridle-sandbox-init").into()),
        workspace_quota: Some(1 << 20),
        ..LocalConfig::default()
    };
    let err = LocalDriver::new(cfg.clone()).err().expect("must fail");
    assert!(matches!(err, SandboxError::Unavailable(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("disk quota") && msg.contains("sessions.sandbox_disk_bytes = 0"), "{msg}");
    let doc = check(&cfg);
    assert!(!doc.ok());
    assert!(doc.report().contains("FAIL disk quota"), "{}", doc.report());
    // Off by the operator's choice: the driver starts, the doctor says so.
    let off = LocalConfig { workspace_quota: None, ..cfg };
    LocalDriver::new(off.clone()).expect("driver without a quota");
    assert!(check(&off).report().contains("disk quota: off"));
}

#[test]
fn missing_bwrap_says_what_and_how() {
    let tmp = tempfile::tempdir().unwrap();
    let err = LocalDriver::new(LocalConfig {
        state_dir: tmp.path().join("s"),
        bwrap: Some("/nonexistent/bwrap".into()),
        ..LocalConfig::default()
    })
    .err()
    .expect("must fail");
    assert!(matches!(err, SandboxError::Unavailable(_)));
    let msg = err.to_string();
    assert!(msg.contains("bubblewrap") && msg.contains("apt-get install -y bubblewrap"), "{msg}");
    let doc = check(&LocalConfig { bwrap: Some("/nonexistent/bwrap".into()), ..LocalConfig::default() });
    assert!(!doc.ok());
    assert!(doc.report().contains("FAIL bubblewrap"), "{}", doc.report());
}

#[tokio::test]
async fn interactive_stdio_kill_and_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let sbx = d.claim_local(spec("stdio")).await.unwrap();
    // A line-oriented process fed through stdin.
    let mut child =
        sbx.exec(ExecRequest::new(["/bin/sh", "-c", "while read l; do echo \"got $l\"; done; exit 3"])).await.unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(b"one\ntwo\n").await.unwrap();
    drop(stdin);
    let mut s = String::new();
    stdout.read_to_string(&mut s).await.unwrap();
    assert_eq!(s, "got one\ngot two\n");
    assert_eq!(child.wait().await.code(), Some(3));

    // kill() ends a process and its group.
    let child = sbx.exec(ExecRequest::shell("sleep 100 & sleep 100")).await.unwrap();
    child.kill().await.unwrap();
    assert_eq!(child.wait().await.code(), Some(137));
    // The group's other member dies on the same signal, but its zombie waits for the sandbox's
    // init to reap it (pgrep counts zombies): a deadline for it to go at all, not a speed check.
    let mut left = String::new();
    for _ in 0..50 {
        left = sh(&*sbx, "pgrep -c sleep || true").await.stdout_str().trim().to_owned();
        if left == "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, "0", "a killed group's process outlived the kill");

    // An unknown program is a clear error, not a hang.
    let err = sbx.exec(ExecRequest::new(["/nope"])).await.err().unwrap();
    assert!(err.to_string().contains("/nope"), "{err}");

    // stop(): every process ends, execs report SandboxGone, the workspace stays.
    sh(&*sbx, "echo kept > /workspace/k").await;
    let long = sbx.exec(ExecRequest::shell("sleep 100")).await.unwrap();
    sbx.stop().await.unwrap();
    assert_eq!(long.wait().await, bridle_sandbox::ExitStatus::SandboxGone);
    assert!(!sbx.is_running());
    assert!(matches!(sbx.exec(ExecRequest::new(["true"])).await, Err(SandboxError::Gone(_))));
    let again = d.claim_local(spec("stdio")).await.unwrap();
    assert_eq!(sh(&*again, "cat /workspace/k").await.stdout_str(), "kept\n");
    again.release().await.unwrap();
}

#[tokio::test]
async fn write_file_writes_as_the_sandbox_user_without_a_shell() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let sbx = d.claim_local(spec("write-file")).await.unwrap();
    // Parents are made; the mode is the one asked for; the owner is the sandbox's user.
    sbx.write_file("/workspace/.cfg/deep/settings.json", b"{\"a\": 1}\n", 0o600).await.unwrap();
    let out =
        sh(&*sbx, "cat /workspace/.cfg/deep/settings.json; stat -c '%a %u' /workspace/.cfg/deep/settings.json").await;
    assert_eq!(out.stdout_str(), "{\"a\": 1}\n600 1000\n", "{}", out.stderr_str());
    // Larger than any pipe buffer or control message, and an existing file is replaced.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    sbx.write_file("/workspace/.cfg/deep/settings.json", &big, 0o644).await.unwrap();
    let out =
        sh(&*sbx, "wc -c < /workspace/.cfg/deep/settings.json; stat -c '%a' /workspace/.cfg/deep/settings.json").await;
    assert_eq!(out.stdout_str(), "3000000\n644\n", "{}", out.stderr_str());
    // A file the agent replaced with a link is not written through.
    sh(&*sbx, "ln -s /tmp/elsewhere /workspace/link.json").await;
    let err = sbx.write_file("/workspace/link.json", b"x", 0o600).await.expect_err("through a symlink");
    assert!(err.to_string().contains("/workspace/link.json"), "{err}");
    assert_eq!(sh(&*sbx, "test -e /tmp/elsewhere && echo there || echo absent").await.stdout_str(), "absent\n");
    // Relative paths are refused; so is a stopped sandbox.
    assert!(matches!(sbx.write_file("rel", b"x", 0o600).await, Err(SandboxError::Invalid(_))));
    sbx.stop().await.unwrap();
    assert!(matches!(sbx.write_file("/workspace/x", b"x", 0o600).await, Err(SandboxError::Gone(_))));
}
