//! Resource limits: a fork bomb and a memory hog are stopped and reported as a
//! limit (the runner turns that into `session.error`), the host stays healthy
//! and a sandbox running next to them is unaffected.

mod common;

use std::time::{Duration, Instant};

use bridle_sandbox::{ExecRequest, ExitStatus, Limit, Limits, Sandbox};
use common::*;

fn small_limits() -> Limits {
    Limits {
        memory_bytes: Some(256 << 20),
        max_processes: Some(64),
        cpu_seconds: Some(60),
        file_size_bytes: Some(64 << 20),
        open_files: Some(1024),
        tmp_bytes: Some(64 << 20),
    }
}

/// Host processes owned by `uid`.
fn host_processes_of(uid: u32) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(st) = std::fs::read_to_string(e.path().join("status"))
            && let Some(l) = st.lines().find(|l| l.starts_with("Uid:"))
            && l.split_whitespace().nth(1) == Some(&uid.to_string())
        {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn fork_bomb_is_stopped_and_neighbour_unaffected() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let mut sp = spec("bomb");
    sp.limits = small_limits();
    let bomb_box = d.claim_local(sp).await.unwrap();
    let neighbour = d.claim_local(spec("neighbour")).await.unwrap();
    let bomb_uid = bomb_box.host_uid().unwrap();

    // The neighbour works steadily through the bomb.
    let steady = neighbour
        .exec(ExecRequest::shell("for i in $(seq 1 30); do echo $i > /workspace/n; sleep 0.05; done; echo finished"))
        .await
        .unwrap();

    let started = Instant::now();
    let bomb =
        bomb_box.exec(ExecRequest::new(["/bin/bash", "-c", ":(){ :|:& };: ; while :; do :; done"])).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), bomb.wait()).await.expect("the fork bomb was stopped");
    // The bomb's first shell may die of a refused fork before the sandbox is
    // stopped; either way the status names the process limit.
    assert_eq!(status.limit(), Some(Limit::Processes), "{status:?}");
    assert!(matches!(status, ExitStatus::LimitExceeded { .. }));
    // The sustained pressure stops the whole sandbox.
    let deadline = Instant::now() + Duration::from_secs(15);
    while bomb_box.is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!bomb_box.is_running(), "the fork-bombed sandbox was stopped");
    eprintln!("fork bomb stopped after {:?}", started.elapsed());
    // Every process of the bomb's uid is gone from the host.
    let deadline = Instant::now() + Duration::from_secs(5);
    while host_processes_of(bomb_uid) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(host_processes_of(bomb_uid), 0);

    // The neighbour finished normally and still runs commands.
    let out = tokio::time::timeout(Duration::from_secs(30), steady.output(1 << 16)).await.unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert!(out.stdout_str().contains("finished"));
    let again = sh(&*neighbour, "echo still-here").await;
    assert_eq!(again.stdout_str(), "still-here\n");

    // The host is healthy: it still spawns processes.
    assert!(std::process::Command::new("true").status().unwrap().success());

    // The session can claim again on the same workspace.
    let mut sp = spec("bomb");
    sp.limits = small_limits();
    let again = d.claim_local(sp).await.unwrap();
    assert_eq!(sh(&*again, "echo back").await.stdout_str(), "back\n");
    again.release().await.unwrap();
    neighbour.release().await.unwrap();
}

#[tokio::test]
async fn memory_hog_is_stopped_sandbox_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let mut sp = spec("hog");
    sp.limits = small_limits();
    let sbx = d.claim_local(sp).await.unwrap();
    let neighbour = d.claim_local(spec("hog-neighbour")).await.unwrap();

    // Directly (the process itself is killed) ...
    let hog = sbx.exec(ExecRequest::new(["perl", "-e", "$x = 'x' x (1 << 31); print length($x)"])).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), hog.output(4096)).await.unwrap();
    assert_eq!(out.status, ExitStatus::LimitExceeded { limit: Limit::Memory, signal: Some(9) }, "{}", out.stderr_str());
    // ... and under a shell (the shell reports 137 after the OOM kill).
    let out = sh(&*sbx, "perl -e '$x = \"x\" x (1 << 31)'").await;
    assert_eq!(out.status.limit(), Some(Limit::Memory), "{:?}", out.status);

    // Only the hog died: the sandbox and its neighbour carry on.
    assert!(sbx.is_running());
    assert_eq!(sh(&*sbx, "echo alive").await.stdout_str(), "alive\n");
    assert_eq!(sh(&*neighbour, "echo fine").await.stdout_str(), "fine\n");
    sbx.release().await.unwrap();
    neighbour.release().await.unwrap();
}

#[tokio::test]
async fn cpu_time_and_file_size_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let mut sp = spec("cpu");
    sp.limits = Limits { cpu_seconds: Some(1), file_size_bytes: Some(1 << 20), ..small_limits() };
    let sbx = d.claim_local(sp).await.unwrap();
    let out = sh(&*sbx, "exec /bin/bash -c 'while :; do :; done'").await;
    assert_eq!(out.status.limit(), Some(Limit::CpuTime), "{:?}", out.status);
    let out = sh(&*sbx, "exec head -c 4M /dev/zero > /workspace/big").await;
    assert_eq!(out.status.limit(), Some(Limit::FileSize), "{:?}", out.status);
    let len = std::fs::metadata(d.workspace_path("cpu").join("big")).unwrap().len();
    assert!(len <= 1 << 20, "{len}");
    sbx.release().await.unwrap();
}
