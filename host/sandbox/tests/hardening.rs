//! Sandbox hardening (issue 12, local driver): the workspace disk quota, the
//! CPU limit, the socket-family allow list, and host-wide uid leases.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridle_sandbox::tools::{ToolConfig, ToolSandbox};
use bridle_sandbox::{Sandbox, SandboxDriver, SandboxError};
use common::*;
use serde_json::json;

const QUOTA: u64 = 64 << 20;

/// Bytes the host filesystem holds for files under `dir` (allocated blocks,
/// not apparent sizes), staying on `dir`'s filesystem: mounted volumes are
/// counted by their image file, not by what they contain.
fn allocated_on_host(dir: &Path) -> u64 {
    let dev = std::fs::symlink_metadata(dir).unwrap().dev();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
        if md.dev() != dev {
            continue;
        }
        total += md.blocks() * 512;
        if md.is_dir()
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    total
}

/// Loop devices whose backing file is `img`.
fn loop_devices_of(img: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file"))
            && Path::new(b.trim()) == img
        {
            out.push(name);
        }
    }
    out
}

fn mounted_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = dir.to_string_lossy().into_owned();
    info.lines().filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&d))).map(str::to_owned).collect()
}

#[tokio::test]
async fn workspace_quota_stops_a_9_gib_write_with_enospc() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.workspace_quota = Some(QUOTA);
    let state = cfg.state_dir.clone();
    let d = driver_from(cfg);
    let sbx = d.claim_local(spec("quota")).await.unwrap();

    // 9 GiB as three files (each under the 8 GiB per-file limit, as in the
    // attack that found this), then as one stream.
    let out =
        sh(&*sbx, "echo keep > /workspace/kept; for f in a b c; do fallocate -l 3G /workspace/$f; echo rc=$?; done")
            .await;
    assert!(out.stderr_str().contains("No space left on device"), "{} / {}", out.stdout_str(), out.stderr_str());
    assert!(!out.stdout_str().contains("rc=0"), "{}", out.stdout_str());
    let out = sh(&*sbx, "dd if=/dev/zero of=/workspace/fill bs=1M count=9216; echo rc=$?").await;
    assert!(out.stderr_str().contains("No space left on device"), "{}", out.stderr_str());
    assert!(!out.stdout_str().contains("rc=0"), "{}", out.stdout_str());
    // `/tmp` is on the same quota: it is full too.
    let out = sh(&*sbx, "head -c 1M /dev/zero > /tmp/more; echo rc=$?").await;
    assert!(out.stderr_str().contains("No space left on device"), "{}", out.stderr_str());

    // The host holds at most the quota (plus the image's own metadata).
    let held = allocated_on_host(&state);
    assert!(held <= QUOTA + (4 << 20), "the host holds {held} bytes for a {QUOTA}-byte quota");
    // ... and the writes did fill it.
    let filled = allocated_on_host(&d.workspace_path("quota"));
    assert!(filled > QUOTA / 2 && filled <= QUOTA, "{filled}");

    // Released: nothing mounted, no loop device left.
    let img = state.join("disks/quota.img");
    sbx.release().await.unwrap();
    assert_eq!(mounted_under(&state), Vec::<String>::new());
    assert_eq!(loop_devices_of(&img), Vec::<String>::new());
    assert!(d.workspace_exists("quota").await.unwrap());

    // Claimed again: the workspace is back, `/tmp` starts empty.
    let again = d.claim_local(spec("quota")).await.unwrap();
    let out = sh(&*again, "cat /workspace/kept; ls -A /tmp | wc -l").await;
    assert_eq!(out.stdout_str(), "keep\n0\n", "{}", out.stderr_str());
    again.release().await.unwrap();

    // Deleted: no image, no mount point, no loop device.
    d.delete_workspace("quota").await.unwrap();
    assert!(!d.workspace_exists("quota").await.unwrap());
    assert!(!img.exists());
    assert_eq!(std::fs::read_dir(state.join("volumes")).unwrap().count(), 0);
    assert_eq!(loop_devices_of(&img), Vec::<String>::new());
    assert_eq!(mounted_under(&state), Vec::<String>::new());
}

#[tokio::test]
async fn a_full_workspace_is_reported_in_the_tool_result() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.workspace_quota = Some(32 << 20);
    let d = driver_from(cfg);
    let t = ToolSandbox::new(Arc::new(d.clone()), spec("quota-tool"), ToolConfig::default());
    let r = t.call("bash", &json!({"command": "fallocate -l 3G /workspace/big"})).await;
    assert!(r.is_error, "{r:?}");
    assert!(r.content.contains("No space left on device"), "{r:?}");
    let r = t.call("write", &json!({"file_path": "/workspace/w.txt", "content": "x".repeat(40 << 20)})).await;
    assert!(r.is_error, "{r:?}");
    t.release().await.unwrap();
    d.delete_workspace("quota-tool").await.unwrap();
}

/// A session's own quota (an environment's `bridle.sandbox_disk_bytes` in
/// Bridle), smaller than the driver's.
const OWN_QUOTA: u64 = 24 << 20;

#[tokio::test]
async fn a_spec_quota_sizes_a_new_workspace_and_an_existing_one_keeps_its_size() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.workspace_quota = Some(QUOTA);
    let state = cfg.state_dir.clone();
    let d = driver_from(cfg);
    let mut s = spec("own-quota");
    s.workspace_bytes = Some(OWN_QUOTA);
    let sbx = d.claim_local(s.clone()).await.unwrap();
    let img = state.join("disks/own-quota.img");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), OWN_QUOTA);
    // 40 MiB fits the driver's 64 MiB quota, not the session's 24 MiB.
    let out = sh(&*sbx, "dd if=/dev/zero of=/workspace/fill bs=1M count=40; echo rc=$?").await;
    assert!(out.stderr_str().contains("No space left on device"), "{}", out.stderr_str());
    assert!(!out.stdout_str().contains("rc=0"), "{}", out.stdout_str());
    let filled = allocated_on_host(&d.workspace_path("own-quota"));
    assert!(filled > OWN_QUOTA / 2 && filled <= OWN_QUOTA, "{filled}");
    sbx.release().await.unwrap();

    // Claimed again asking for more: the workspace keeps the size it was made with.
    s.workspace_bytes = Some(QUOTA);
    let again = d.claim_local(s).await.unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), OWN_QUOTA);
    let out = sh(&*again, "rm /workspace/fill; dd if=/dev/zero of=/workspace/fill bs=1M count=40; echo rc=$?").await;
    assert!(out.stderr_str().contains("No space left on device"), "{}", out.stderr_str());
    again.release().await.unwrap();

    // Another session without a quota of its own gets the driver's.
    let other = d.claim_local(spec("driver-quota")).await.unwrap();
    assert_eq!(std::fs::metadata(state.join("disks/driver-quota.img")).unwrap().len(), QUOTA);
    let out = sh(&*other, "dd if=/dev/zero of=/workspace/fill bs=1M count=40 2>&1; echo rc=$?").await;
    assert!(out.stdout_str().ends_with("rc=0\n"), "{}", out.stdout_str());
    other.release().await.unwrap();
    d.delete_workspace("own-quota").await.unwrap();
    d.delete_workspace("driver-quota").await.unwrap();
}

#[tokio::test]
async fn a_spec_quota_needs_the_driver_quota_and_its_minimum() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec("bad-quota");
    s.workspace_bytes = Some(QUOTA);
    let off = driver_with(tmp.path(), |c| c.workspace_quota = None);
    match off.claim_local(s.clone()).await {
        Err(SandboxError::Invalid(m)) => assert!(m.contains("without a workspace quota"), "{m}"),
        other => panic!("a session quota on a driver without quotas: {:?}", other.map(|_| ())),
    }
    let tmp = tempfile::tempdir().unwrap();
    let on = driver_with(tmp.path(), |c| c.workspace_quota = Some(QUOTA));
    s.workspace_bytes = Some(bridle_sandbox::MIN_WORKSPACE_BYTES - 1);
    match on.claim_local(s).await {
        Err(SandboxError::Invalid(m)) => assert!(m.contains("at least 16777216"), "{m}"),
        other => panic!("a session quota below the minimum: {:?}", other.map(|_| ())),
    }
    assert!(!tmp.path().join("state/disks/bad-quota.img").exists());
}

#[tokio::test]
async fn cpu_spin_is_held_to_its_quota() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.cpus = Some(0.25);
    let d = driver_from(cfg);
    let sbx = d.claim_local(spec("cpu-quota")).await.unwrap();
    let before = sbx.cpu_usage().expect("the host counts CPU usage per sandbox (cpuacct or cgroup v2)");
    let t0 = Instant::now();
    // Four spinners for three seconds.
    let out = sh(&*sbx, "for i in 1 2 3 4; do timeout 3 sh -c 'while :; do :; done' & done; wait; echo done").await;
    let wall = t0.elapsed();
    let used = sbx.cpu_usage().unwrap() - before;
    assert_eq!(out.stdout_str(), "done\n", "{}", out.stderr_str());
    let allowed = wall.mul_f64(0.25) + Duration::from_millis(300);
    eprintln!("used {used:?} of CPU in {wall:?} (allowed {allowed:?})");
    assert!(used <= allowed, "used {used:?} of CPU in {wall:?} at 0.25 cores");
    assert!(used >= Duration::from_millis(50), "the spinners ran ({used:?})");
    sbx.release().await.unwrap();
}

#[tokio::test]
async fn socket_families_outside_the_allow_list_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let sbx = d.claim_local(spec("families")).await.unwrap();
    // family/type/protocol: AF_VSOCK 40; AF_PACKET 17; AF_NETLINK 16 with
    // NETLINK_SOCK_DIAG 4, NETLINK_KOBJECT_UEVENT 15, NETLINK_GENERIC 16 and
    // NETLINK_ROUTE 0; AF_UNIX 1, AF_INET 2, AF_INET6 10.
    let out = sh(
        &*sbx,
        r#"perl -e '
          use Errno;
          for my $f ([40,1,0],[17,2,0],[16,3,4],[16,3,15],[16,3,16],[16,3,0],[1,1,0],[2,1,0],[10,1,0]) {
            my $k = join("/", @$f);
            if (socket(S,$f->[0],$f->[1],$f->[2])) { print "$k=ok\n"; close S }
            else { print "$k=", ($!{EPERM} ? "EPERM" : "other:$!"), "\n" }
          }
          print "pair40=", (socketpair(A,B,40,1,0) ? "ok" : ($!{EPERM} ? "EPERM" : "other")), "\n";
          print "pair1=", (socketpair(A,B,1,1,0) ? "ok" : "$!"), "\n";
        '"#,
    )
    .await;
    let s = out.stdout_str();
    for refused in ["40/1/0=EPERM", "17/2/0=EPERM", "16/3/4=EPERM", "16/3/15=EPERM", "16/3/16=EPERM", "pair40=EPERM"] {
        assert!(s.lines().any(|l| l == refused), "{refused} expected in:\n{s}{}", out.stderr_str());
    }
    for allowed in ["16/3/0=ok", "1/1/0=ok", "2/1/0=ok", "10/1/0=ok", "pair1=ok"] {
        assert!(s.lines().any(|l| l == allowed), "{allowed} expected in:\n{s}{}", out.stderr_str());
    }
    // What NETLINK_ROUTE is kept for: listing interfaces (getifaddrs,
    // if_nameindex; Node's os.networkInterfaces()) still works.
    let out = sh(&*sbx, "python3 -c 'import socket; print(socket.if_nameindex())' || echo no-python").await;
    let s = out.stdout_str();
    assert!(s.contains("'lo'") || s.contains("no-python"), "{s}{}", out.stderr_str());
    sbx.release().await.unwrap();
}

#[tokio::test]
async fn two_servers_on_one_host_get_disjoint_uids() {
    let tmp = tempfile::tempdir().unwrap();
    // Two servers: their own state dirs, the same uid range.
    let mut a_cfg = config(&tmp.path().join("a"));
    a_cfg.uid_count = 4;
    let mut b_cfg = a_cfg.clone();
    b_cfg.state_dir = tmp.path().join("b/state");
    let a = driver_from(a_cfg);
    let b = driver_from(b_cfg);
    let a1 = a.claim_local(spec("a1")).await.unwrap();
    let b1 = b.claim_local(spec("b1")).await.unwrap();
    let a2 = a.claim_local(spec("a2")).await.unwrap();
    let b2 = b.claim_local(spec("b2")).await.unwrap();
    let mut uids: Vec<u32> = [&a1, &b1, &a2, &b2].iter().map(|s| s.host_uid().unwrap()).collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), 4, "{uids:?}");
    // The range is used up across both servers ...
    assert!(matches!(a.claim_local(spec("a3")).await, Err(SandboxError::Exhausted(4))));
    // ... and a uid one server releases is free for the other.
    let freed = b2.host_uid().unwrap();
    b2.release().await.unwrap();
    let a3 = a.claim_local(spec("a3")).await.unwrap();
    assert_eq!(a3.host_uid(), Some(freed));
    for s in [a1, b1, a2, a3] {
        s.release().await.unwrap();
    }
}

#[tokio::test]
async fn a_restarted_server_sweeps_stale_volumes_and_resumes_the_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside-file");
    std::fs::write(&outside, "host").unwrap();
    let mut cfg = config(tmp.path());
    cfg.workspace_quota = Some(QUOTA);
    let state = cfg.state_dir.clone();
    let a = driver_from(cfg);
    let s = a.claim_local(spec("restart")).await.unwrap();
    let script = format!("echo before > /workspace/f; ln -s {} /workspace/link; echo ok", outside.display());
    assert_eq!(sh(&*s, &script).await.stdout_str(), "ok\n");
    let uid_a = s.host_uid();
    s.release().await.unwrap();
    drop(a);

    // A server that was killed left the volume mounted (and its loop device).
    let img = state.join("disks/restart.img");
    let mp = state.join("volumes/restart");
    std::fs::create_dir(&mp).unwrap();
    let st = std::process::Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&mp).status().unwrap();
    assert!(st.success());
    assert_eq!(loop_devices_of(&img).len(), 1);

    // The next server (another uid range) releases it when it starts ...
    let mut cfg = config(tmp.path());
    cfg.workspace_quota = Some(QUOTA);
    let b = driver_from(cfg);
    assert_eq!(mounted_under(&state), Vec::<String>::new());
    assert_eq!(loop_devices_of(&img), Vec::<String>::new());
    // ... then resumes the workspace, giving it to its uid without following the link.
    let s = b.claim_local(spec("restart")).await.unwrap();
    assert_ne!(s.host_uid(), uid_a);
    let out = sh(&*s, "cat /workspace/f; stat -c %u /workspace/f").await;
    assert_eq!(out.stdout_str(), "before\n1000\n", "{}", out.stderr_str());
    assert_eq!(mounted_under(&state).len(), 1, "{:?}", mounted_under(&state));
    assert_eq!(std::fs::metadata(&outside).unwrap().uid(), 0, "the link's target kept its owner");

    // A second server on the same state dir (one that adopts the session
    // while the first still holds it: a fenced owner) neither sweeps a
    // volume in use nor mounts it a second time: it uses the one mount ...
    let mut cfg = config(tmp.path());
    cfg.workspace_quota = Some(QUOTA);
    let c = driver_from(cfg);
    assert_eq!(mounted_under(&state).len(), 1);
    let borrowed = c.claim_local(spec("restart")).await.unwrap();
    assert_eq!(mounted_under(&state).len(), 1, "{:?}", mounted_under(&state));
    assert_eq!(loop_devices_of(&img).len(), 1);
    assert_eq!(sh(&*borrowed, "cat /workspace/f").await.stdout_str(), "before\n");
    // ... and leaves it mounted for its holder when it lets go first (the
    // holder unmounts it when it releases its own sandbox).
    borrowed.release().await.unwrap();
    assert_eq!(mounted_under(&state).len(), 1, "{:?}", mounted_under(&state));
    assert_eq!(loop_devices_of(&img).len(), 1);

    s.release().await.unwrap();
    assert_eq!(mounted_under(&state), Vec::<String>::new());
    assert_eq!(loop_devices_of(&img), Vec::<String>::new());
    b.delete_workspace("restart").await.unwrap();
    assert!(!img.exists());
}

#[tokio::test]
async fn turning_the_quota_off_keeps_existing_workspaces() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.workspace_quota = Some(QUOTA);
    let state = cfg.state_dir.clone();
    let a = driver_from(cfg);
    let s = a.claim_local(spec("was-quota")).await.unwrap();
    assert_eq!(sh(&*s, "echo kept > /workspace/f; echo ok").await.stdout_str(), "ok\n");
    s.release().await.unwrap();
    drop(a);

    let mut cfg = config(tmp.path());
    cfg.workspace_quota = None;
    let b = driver_from(cfg);
    // The old workspace is still its image, quota and all ...
    let s = b.claim_local(spec("was-quota")).await.unwrap();
    let out = sh(&*s, "cat /workspace/f; fallocate -l 1G /workspace/big; echo rc=$?").await;
    assert!(out.stdout_str().starts_with("kept\n"), "{}", out.stdout_str());
    assert!(out.stderr_str().contains("No space left on device"), "{}", out.stderr_str());
    s.release().await.unwrap();
    // ... and a new one is a plain directory.
    let n = b.claim_local(spec("no-quota")).await.unwrap();
    assert_eq!(b.workspace_path("no-quota"), state.join("workspaces/no-quota"));
    n.release().await.unwrap();
    assert!(!state.join("disks/no-quota.img").exists());
    b.delete_workspace("was-quota").await.unwrap();
    assert!(!state.join("disks/was-quota.img").exists());
}
