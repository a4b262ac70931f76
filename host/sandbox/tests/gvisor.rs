//! The gVisor driver's own behaviour (the breakout and isolation suites run
//! against it too, as their `gvisor` variant): processes run on gVisor's
//! kernel, execs share the sandbox, stdio is interactive, `kill` takes the
//! process group, files are written as the sandbox user (who has a name),
//! the workspace survives a release, and a missing runsc is a clear error.

mod common;

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use bridle_sandbox::{
    ExecRequest, ExitStatus, GvisorConfig, GvisorDriver, LocalConfig, Sandbox, SandboxDriver, SandboxError,
};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

fn driver(tmp: &std::path::Path) -> GvisorDriver {
    gvisor_driver_with(tmp, |_| {})
}

#[tokio::test]
async fn processes_run_on_gvisors_kernel_and_share_the_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let sbx = d.claim_gvisor(spec("kernel")).await.unwrap();
    // gVisor's kernel announces itself in the kernel log and /proc/version
    // differs from the host's.
    let out = sh(&*sbx, "dmesg 2>/dev/null | head -1; cat /proc/version").await;
    let host_version = std::fs::read_to_string("/proc/version").unwrap();
    assert!(
        out.stdout_str().contains("gVisor") || !out.stdout_str().contains(host_version.trim()),
        "{}",
        out.stdout_str()
    );
    // Two execs see each other's /tmp and processes.
    let sleeper = sbx.exec(ExecRequest::new(["sleep", "305"])).await.unwrap();
    // The exec returns once its process is forked; it shows as `sleep` once it has exec'd.
    let out = sh(
        &*sbx,
        "echo shared > /tmp/x; for i in $(seq 50); do n=$(pgrep -fc 'sleep 30[5]'); [ \"$n\" = 1 ] && break; sleep 0.1; done; echo $n",
    )
    .await;
    assert_eq!(out.stdout_str(), "1\n", "{}", out.stderr_str());
    assert_eq!(sh(&*sbx, "cat /tmp/x").await.stdout_str(), "shared\n");
    // `kill` takes the exec's whole process group.
    let group = sbx.exec(ExecRequest::shell("sleep 306 & sleep 307 & wait")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    group.kill().await.unwrap();
    let st = tokio::time::timeout(Duration::from_secs(10), group.wait()).await.expect("killed in time");
    assert_eq!(st, ExitStatus::Signaled { signal: 9 });
    let out = sh(&*sbx, "pgrep -fc 'sleep 30[67]'; true").await;
    assert_eq!(out.stdout_str(), "0\n", "the group's children survived");
    sleeper.kill().await.unwrap();
    sbx.release().await.unwrap();
    assert!(matches!(sbx.exec(ExecRequest::new(["true"])).await, Err(SandboxError::Gone(_))));
}

#[tokio::test]
async fn interactive_stdio_exit_codes_and_write_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let sbx = d.claim_gvisor(spec("stdio")).await.unwrap();
    let mut child = sbx.exec(ExecRequest::new(["sh", "-c", "while read l; do echo \"got $l\"; done"])).await.unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for word in ["one", "two"] {
        stdin.write_all(format!("{word}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap();
        assert_eq!(line.as_deref(), Some(format!("got {word}").as_str()));
    }
    drop(stdin);
    assert_eq!(child.wait().await, ExitStatus::Exited { code: 0 });
    assert_eq!(sh(&*sbx, "exit 7").await.status, ExitStatus::Exited { code: 7 });
    // The sandbox user has a name (its own passwd entry).
    let out = sh(
        &*sbx,
        "touch /workspace/f && id -un && python3 -c 'import os, pwd; print(pwd.getpwuid(os.stat(\"/workspace/f\").st_uid).pw_name)'",
    )
    .await;
    assert_eq!(out.stdout_str(), "agent\nagent\n", "{}", out.stderr_str());
    // write_file: as the sandbox user, parents made, mode set, links refused.
    sbx.write_file("/workspace/deep/dir/file.txt", b"hello", 0o640).await.unwrap();
    let host = d.workspace_path("stdio").join("deep/dir/file.txt");
    assert_eq!(std::fs::read(&host).unwrap(), b"hello");
    let md = std::fs::metadata(&host).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (sbx.host_uid(), 0o640));
    sh(&*sbx, "ln -s /etc/passwd /workspace/link").await;
    let err = sbx.write_file("/workspace/link", b"x", 0o644).await.unwrap_err();
    assert!(matches!(err, SandboxError::Invalid(_)), "{err}");
    sbx.release().await.unwrap();
}

#[tokio::test]
async fn the_workspace_survives_release_and_is_deleted_with_the_session() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let sbx = d.claim(spec("keep")).await.unwrap();
    sh(&*sbx, "echo kept > /workspace/k").await;
    sbx.release().await.unwrap();
    assert!(d.workspace_exists("keep").await.unwrap());
    let again = d.resume(spec("keep")).await.unwrap();
    assert_eq!(sh(&*again, "cat /workspace/k").await.stdout_str(), "kept\n");
    d.delete_workspace("keep").await.unwrap();
    assert!(!again.is_running());
    assert!(!d.workspace_exists("keep").await.unwrap());
    assert!(d.resume(spec("never")).await.is_err());
}

/// A session id that cannot name a workspace is an error from both drivers
/// (the gVisor driver answered "no workspace" to it).
#[tokio::test]
async fn both_drivers_refuse_a_bad_session_id() {
    let tmp = tempfile::tempdir().unwrap();
    let gvisor = driver(&tmp.path().join("g"));
    let local = common::driver_with(&tmp.path().join("l"), |_| {});
    for d in [&gvisor as &dyn SandboxDriver, &local] {
        for bad in ["../etc", "a/b", ""] {
            match d.workspace_exists(bad).await {
                Err(SandboxError::Invalid(m)) => assert!(m.contains("bad session id"), "{}: {m}", d.name()),
                other => panic!("{}: workspace_exists({bad:?}) = {other:?}", d.name()),
            }
            assert!(matches!(d.delete_workspace(bad).await, Err(SandboxError::Invalid(_))), "{}", d.name());
        }
    }
}

/// An exec's environment entry that cannot be passed as it is (an empty
/// name, `=` in the name, a NUL) is refused by both drivers (bubblewrap's
/// passed `A=B` on as a variable named `A`).
#[tokio::test]
async fn both_drivers_refuse_an_exec_environment_they_cannot_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let gvisor = driver(&tmp.path().join("g"));
    let local = common::driver_with(&tmp.path().join("l"), |_| {});
    let sandboxes: [Arc<dyn Sandbox>; 2] =
        [gvisor.claim(spec("env-g")).await.unwrap(), local.claim(spec("env-l")).await.unwrap()];
    for sbx in &sandboxes {
        for (k, v) in [("A=B", "x"), ("", "x"), ("NUL\0", "x"), ("OK", "a\0b")] {
            let mut req = ExecRequest::new(["true"]);
            req.env.push((k.to_string(), v.to_string()));
            match sbx.exec(req).await {
                Err(SandboxError::Invalid(m)) => assert!(m.contains("environment variable"), "{k:?}={v:?}: {m}"),
                Err(e) => panic!("{k:?}={v:?}: {e}"),
                Ok(_) => panic!("{}: {k:?}={v:?} was accepted", sbx.id()),
            }
        }
        // A good one still runs.
        let mut req = ExecRequest::shell("echo $GOOD");
        req.env.push(("GOOD".into(), "yes".into()));
        assert_eq!(sbx.exec(req).await.unwrap().output(4096).await.stdout_str(), "yes\n");
        sbx.release().await.unwrap();
    }
}

#[test]
fn a_missing_runsc_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = GvisorDriver::new(GvisorConfig {
        base: LocalConfig { state_dir: tmp.path().join("s"), ..config(tmp.path()) },
        runsc: Some(tmp.path().join("no-runsc")),
        ..Default::default()
    })
    .err()
    .expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, SandboxError::Unavailable(_)) && msg.contains("apt-get install -y runsc"), "{msg}");
}

/// A file placed right after a cold claim (a session's `file` resources)
/// lands, readable by the agent.
#[tokio::test]
async fn a_file_placed_right_after_a_cold_claim_lands() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let sbx = d.claim(spec("placed-cold")).await.unwrap();
    sbx.place_read_only("/mnt/session/uploads/a.txt", Box::pin(&b"upload\n"[..])).await.unwrap();
    sbx.place_read_only("/workspace/in/b.txt", Box::pin(&b"data\n"[..])).await.unwrap();
    let out = sh(&*sbx, "cat /mnt/session/uploads/a.txt /workspace/in/b.txt").await;
    assert_eq!(out.stdout_str(), "upload\ndata\n", "{}", out.stderr_str());
    sbx.release().await.unwrap();
}

/// Orphans are reparented to the sandbox's PID 1, the relay, which reaps
/// them: no zombie stays behind (each would count against the process limit).
#[tokio::test]
async fn orphans_are_reaped() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let sbx = d.claim_gvisor(spec("orphans")).await.unwrap();
    // Each subshell leaves a `true` behind that exits as an orphan.
    let out =
        sh(&*sbx, "for i in 1 2 3; do (true &); done; sleep 2; grep -l '^State:.*Z' /proc/[0-9]*/status; true").await;
    assert_eq!(out.stdout_str(), "", "zombies left: {}", out.stderr_str());
    sbx.release().await.unwrap();
}

/// The server-like process of [`a_sandbox_ends_when_its_server_is_killed`]:
/// claims a sandbox, prints its id and the gVisor sandbox's host pid, and
/// waits to be killed.
#[tokio::test]
#[ignore = "a helper process of a_sandbox_ends_when_its_server_is_killed"]
async fn lifeline_server() {
    let Some(dir) = std::env::var_os("BRIDLE_TEST_LIFELINE_DIR") else { return };
    let d = driver(std::path::Path::new(&dir));
    let sbx = d.claim_gvisor(spec("lifeline")).await.unwrap();
    println!("SANDBOX {} {}", sbx.id(), sbx.sandbox_pid().expect("sandbox pid"));
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// runsc's sandboxes are not the server's children: when the server dies
/// (`kill -9`), its lifeline watcher deletes them.
#[test]
fn a_sandbox_ends_when_its_server_is_killed() {
    use std::io::BufRead;
    ensure_runsc();
    let tmp = tempfile::tempdir().unwrap();
    let mut server = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lifeline_server", "--ignored", "--nocapture", "--test-threads=1"])
        .env("BRIDLE_TEST_LIFELINE_DIR", tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let (id, pid) = loop {
        let line = lines.next().expect("the server printed its sandbox").unwrap();
        // libtest prints the test's name on the same line.
        if let Some(rest) = line.split_once("SANDBOX ").map(|(_, r)| r) {
            let (id, pid) = rest.split_once(' ').unwrap();
            break (id.to_owned(), pid.parse::<u32>().unwrap());
        }
    };
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    // Whether a runsc state root of that server still lists the sandbox.
    let listed = || {
        std::fs::read_dir(tmp.path().join("state")).unwrap().flatten().any(|root| {
            root.file_name().to_string_lossy().starts_with("runsc-") && {
                let out = std::process::Command::new("runsc")
                    .arg(format!("--root={}", root.path().display()))
                    .args(["list", "-quiet"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).contains(&id)
            }
        })
    };
    assert!(alive(pid) && listed(), "the sandbox runs");
    server.kill().unwrap();
    server.wait().unwrap();
    // Not a speed check: a deadline for the deletion to happen at all.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (alive(pid) || listed()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!alive(pid), "gVisor sandbox {id} (pid {pid}) outlived its server");
    assert!(!listed(), "runsc still lists {id}");
    // The next server on that state dir unmounts the workspace volume left.
    drop(driver(tmp.path()));
}
