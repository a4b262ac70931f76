//! Isolation between sandboxes and from the server, for every way a sandbox
//! is made (cold, from the warm pool and on gVisor, see `common::Variant`): another
//! sandbox's processes cannot be signalled or traced, a daemonized process
//! dies with its sandbox, the memory, process, file-size and disk limits
//! hold, and the server keeps serving through a fork bomb and a CPU spin.

mod common;

use std::time::Duration;

use bridle_sandbox::{ExecRequest, Limit, Limits};
use common::*;

per_variant!(
    cannot_signal_or_trace_another_sandboxs_processes,
    a_daemonized_process_dies_with_its_sandbox,
    memory_process_file_and_disk_limits_hold,
    the_server_stays_responsive_under_a_fork_bomb_and_a_cpu_spin,
);

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

/// Host pids of the processes of host uid `uid` whose command line contains `needle`.
fn host_pids(uid: u32, needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(st) = std::fs::read_to_string(e.path().join("status")) else { continue };
        let owner = st.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1));
        if owner != Some(&uid.to_string()) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// Wait (up to 10 s) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 10 s: {what}");
}

async fn cannot_signal_or_trace_another_sandboxs_processes(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver(tmp.path());
    let a = v.claim(&d, spec("victim")).await;
    let victim = a.exec(ExecRequest::new(["sleep", "301"])).await.unwrap();
    let a_uid = a.host_uid().unwrap();
    // On gVisor the victim is no host process at all: the attacker aims at
    // gVisor's host process of the victim's sandbox instead.
    let host_pid = if v.is_gvisor() {
        eventually("the victim runs", || victim.pid().is_some()).await;
        a.bwrap_pid().expect("gVisor's sandbox process")
    } else {
        eventually("the victim runs", || !host_pids(a_uid, "sleep 301").is_empty()).await;
        host_pids(a_uid, "sleep 301")[0]
    };
    let b = v.claim(&d, spec("attacker")).await;
    let script = format!(
        r#"
        for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -q 'sleep 30[1]' && echo SEES-VICTIM
        kill -9 {host_pid} 2>/dev/null && echo SIGNALLED-BY-PID
        python3 -c 'import ctypes; print("ptrace", ctypes.CDLL(None).ptrace(16, {host_pid}, 0, 0))'
        pkill -9 -f 'sleep 30[1]' 2>/dev/null
        echo done
        # Everything this sandbox may signal (its own init included).
        kill -9 -1 2>/dev/null
        "#,
    );
    let child = b.exec(ExecRequest::shell(script)).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.output(1 << 16)).await.unwrap();
    let s = out.stdout_str();
    assert!(!s.contains("SEES-VICTIM") && !s.contains("SIGNALLED-BY-PID"), "{s}");
    assert!(s.contains("done"), "{s} {:?} {}", out.status, out.stderr_str());
    assert!(s.contains("ptrace -1"), "PTRACE_ATTACH must fail: {s} {}", out.stderr_str());
    // The victim still runs, untouched.
    assert!(tokio::time::timeout(Duration::from_millis(500), victim.wait()).await.is_err(), "the victim process ended");
    assert!(std::path::Path::new(&format!("/proc/{host_pid}")).exists());
    a.release().await.unwrap();
    b.release().await.unwrap();
}

async fn a_daemonized_process_dies_with_its_sandbox(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver(tmp.path());
    let sbx = v.claim(&d, spec("daemon")).await;
    let uid = sbx.host_uid().unwrap();
    // Detached three ways: a new session, a double fork, nohup with closed stdio.
    let out = sh(
        &*sbx,
        "setsid sleep 302 </dev/null >/dev/null 2>&1 & \
         (sh -c 'sleep 303 </dev/null >/dev/null 2>&1 &' &) ; \
         nohup setsid sh -c 'trap \"\" HUP TERM; exec sleep 304' </dev/null >/dev/null 2>&1 & \
         echo started",
    )
    .await;
    assert_eq!(out.stdout_str(), "started\n", "{}", out.stderr_str());
    if v.is_gvisor() {
        // Its processes live in gVisor's kernel: ask it, then check that the
        // sandbox's host process (the kernel itself) is gone with it.
        let out = sh(&*sbx, "sleep 1; pgrep -fc 'sleep 30[234]'").await;
        assert_eq!(out.stdout_str(), "3\n", "{}", out.stderr_str());
        let host = sbx.bwrap_pid().expect("sandbox pid");
        sbx.release().await.unwrap();
        eventually("gVisor's sandbox process is gone", || !std::path::Path::new(&format!("/proc/{host}")).exists())
            .await;
        return;
    }
    // They outlive the exec that started them...
    for n in ["sleep 302", "sleep 303", "sleep 304"] {
        eventually(&format!("{n} runs on after its exec"), || !host_pids(uid, n).is_empty()).await;
    }
    // ... but not the sandbox.
    sbx.release().await.unwrap();
    eventually("no process of the sandbox's uid is left", || host_pids(uid, "").is_empty()).await;
}

async fn memory_process_file_and_disk_limits_hold(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    // Files up to 8 MiB, on a 32 MiB workspace volume (which holds /tmp too).
    let limits = Limits { file_size_bytes: Some(8 << 20), ..small_limits() };
    let d = v.driver_with(tmp.path(), |c| c.pool.limits = limits.clone());
    let mut sp = spec("limits");
    sp.limits = limits;
    sp.workspace_bytes = Some(32 << 20);
    let mut sbx = v.claim(&d, sp.clone()).await;
    // Memory: the hog is OOM-killed, the sandbox lives on. On gVisor the
    // whole sandbox is one host process: the limit ends the sandbox, and the
    // session claims again.
    let out = sh(&*sbx, "perl -e '$x = \"x\" x (1 << 31)'").await;
    assert_eq!(out.status.limit(), Some(Limit::Memory), "{:?} {}", out.status, out.stderr_str());
    if v.is_gvisor() {
        assert_eq!(sbx.limit_hit(), Some(Limit::Memory));
        eventually("the sandbox ended", || !sbx.is_running()).await;
        sbx = v.claim(&d, sp).await;
    }
    // Processes: forks past the limit are refused (children leave quickly:
    // sustained pressure would stop the sandbox as a fork bomb).
    let out = sh(
        &*sbx,
        "python3 -c '
import os, time
n = 0
try:
    for i in range(200):
        if os.fork() == 0:
            time.sleep(0.2)
            os._exit(0)
        n += 1
    print(\"all\", n)
except OSError:
    print(\"refused after\", n)
'",
    )
    .await;
    let s = out.stdout_str();
    let n: usize = s.trim().strip_prefix("refused after ").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
    assert!(n < 64, "forks under a limit of 64: {s} {}", out.stderr_str());
    tokio::time::sleep(Duration::from_secs(1)).await;
    // File size: the writer is stopped at the limit.
    let out = sh(&*sbx, "exec head -c 20M /dev/zero > /tmp/big").await;
    assert_eq!(out.status.limit(), Some(Limit::FileSize), "{:?}", out.status);
    // Disk: the session's 32 MiB quota fills; the write fails with ENOSPC.
    let out = sh(
        &*sbx,
        "rm -f /tmp/big; for i in 1 2 3 4 5 6; do head -c 7M /dev/zero > /workspace/fill$i || { echo failed-at=$i; break; }; done",
    )
    .await;
    let s = out.stdout_str() + &out.stderr_str();
    assert!(s.contains("No space left on device") && s.contains("failed-at="), "{s}");
    assert!(sbx.is_running());
    assert_eq!(sh(&*sbx, "rm /workspace/fill*; echo alive").await.stdout_str(), "alive\n");
    sbx.release().await.unwrap();
}

async fn the_server_stays_responsive_under_a_fork_bomb_and_a_cpu_spin(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver_with(tmp.path(), |c| {
        c.pool.limits = small_limits();
        if c.pool.size > 0 {
            c.pool.size = 2;
        }
    });
    let mut bomb_spec = spec("bomb");
    bomb_spec.limits = small_limits();
    let bomb_box = v.claim(&d, bomb_spec).await;
    let mut spin_spec = spec("spin");
    spin_spec.limits = small_limits();
    let spin_box = v.claim(&d, spin_spec).await;

    let spin = spin_box
        .exec(ExecRequest::shell("for i in 1 2 3 4; do timeout 8 sh -c 'while :; do :; done' & done; wait"))
        .await
        .unwrap();
    let bomb =
        bomb_box.exec(ExecRequest::new(["/bin/bash", "-c", ":(){ :|:& };: ; while :; do :; done"])).await.unwrap();
    // Meanwhile the server claims, runs and releases other sessions' sandboxes.
    for i in 0..3 {
        let mut sp = spec(&format!("meanwhile{i}"));
        sp.limits = small_limits();
        let other = tokio::time::timeout(Duration::from_secs(30), v.claim(&d, sp)).await.expect("claim in time");
        let out = sh(&*other, "echo served").await;
        assert_eq!(out.stdout_str(), "served\n", "{}", out.stderr_str());
        other.release().await.unwrap();
    }
    // Sustained pressure on the process limit ends the sandbox (on gVisor,
    // where the kernel only refuses forks past RLIMIT_NPROC, its relay
    // reports the limit and the driver ends it).
    let status = tokio::time::timeout(Duration::from_secs(30), bomb.wait()).await.expect("the fork bomb was stopped");
    assert_eq!(status.limit(), Some(Limit::Processes), "{status:?}");
    assert_eq!(bomb_box.limit_hit(), Some(Limit::Processes));
    spin.kill().await.unwrap();
    spin_box.release().await.unwrap();
    bomb_box.release().await.unwrap();
}
