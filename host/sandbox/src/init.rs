//! The in-sandbox init (`bridle-sandbox-init`), started by bubblewrap as the
//! sandbox's first process (bwrap's own reaper is PID 1). It
//!
//! 1. closes every inherited descriptor but the control socket,
//! 2. listens on `127.0.0.1:PORT` (and `[::1]:PORT`) and relays each connection
//!    to the egress gateway's unix socket at `/run/bridle/gw.sock`,
//! 3. tells the host it is ready, then starts processes on request (stdio
//!    passed over the control socket), reports their exit and signals their
//!    process groups.
//!
//! It exits when the host closes the control socket, which ends the sandbox.
//!
//! The same code runs from the dedicated binary or from any binary that calls
//! [`run_if_init`] first thing in `main` (so `bridle` itself can serve as init).

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use tokio::net::{TcpListener, UnixStream};

use crate::proto::{Channel, FromInit, ToInit};

/// The first argument that selects init mode.
pub const INIT_ARG: &str = "__bridle-sandbox-init";

/// Relay only (the gVisor driver's container process): `--relay-only
/// --port PORT --gateway SOCKET`; prints `ready` on stdout once listening.
pub const RELAY_ARG: &str = "--relay-only";
/// Start `argv` (after `--`) as the leader of a new process group, so the
/// host can signal the whole group (`runsc exec` cannot).
pub const EXEC_ARG: &str = "--exec-group";
/// Set (by the host, never by the agent: the filter is already in force for
/// everything the agent starts) to run an exec without the seccomp filter.
pub const NO_SECCOMP_ENV: &str = "BRIDLE_SANDBOX_NO_SECCOMP";
/// Write `PATH` with mode `MODE` (octal) from stdin, as [`ToInit::WriteFile`]
/// does.
pub const WRITE_ARG: &str = "--write-file";

static MULTICALL: AtomicBool = AtomicBool::new(false);

/// Call first thing in `main`: when this process was started as a sandbox init
/// it runs the init and exits; otherwise it returns at once and records that
/// the current executable can serve as init (the local driver then uses it
/// when no `bridle-sandbox-init` binary is configured or found).
pub fn run_if_init() {
    MULTICALL.store(true, Ordering::SeqCst);
    let mut args = std::env::args();
    let _argv0 = args.next();
    if args.next().as_deref() == Some(INIT_ARG) {
        let rest: Vec<String> = args.collect();
        std::process::exit(main_with_args(&rest));
    }
}

/// Whether [`run_if_init`] was called in this process.
pub fn multicall_registered() -> bool {
    MULTICALL.load(Ordering::SeqCst)
}

/// Entry point of the dedicated binary.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match args.first() {
        Some(a) if a == INIT_ARG => args[1..].to_vec(),
        _ => args,
    };
    main_with_args(&args)
}

struct Opts {
    control_fd: RawFd,
    port: u16,
    gateway: String,
}

fn parse(args: &[String]) -> anyhow::Result<Opts> {
    let mut control_fd = None;
    let mut port = None;
    let mut gateway = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--control-fd" => control_fd = Some(v.parse().context("--control-fd")?),
            "--port" => port = Some(v.parse().context("--port")?),
            "--gateway" => gateway = Some(v.clone()),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Opts {
        control_fd: control_fd.context("--control-fd is required")?,
        port: port.context("--port is required")?,
        gateway: gateway.context("--gateway is required")?,
    })
}

fn main_with_args(args: &[String]) -> i32 {
    // The gVisor driver's modes: descriptors cannot cross into gVisor, so
    // it runs the relay alone and starts each process with `runsc exec`.
    match args.first().map(String::as_str) {
        Some(RELAY_ARG) => return relay_only(&args[1..]),
        Some(EXEC_ARG) => return exec_in_group(&args[1..]),
        Some(WRITE_ARG) => return write_from_stdin(&args[1..]),
        // Not in a sandbox: the gVisor driver's watcher on the host.
        Some(crate::gvisor::lifeline::LIFELINE_ARG) => return crate::gvisor::lifeline::watch(&args[1..]),
        _ => {}
    }
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bridle-sandbox-init: {e:#}");
            return 2;
        }
    };
    close_other_fds(opts.control_fd);
    let Some(rt) = current_thread_runtime() else { return 1 };
    match rt.block_on(serve(opts)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bridle-sandbox-init: {e:#}");
            1
        }
    }
}

/// Close every descriptor above 2 except `keep` (bwrap leaves the bind-fd
/// sources open; a directory fd from outside the mount namespace must never
/// reach sandboxed code), and mark `keep` close-on-exec.
fn close_other_fds(keep: RawFd) {
    // SAFETY: plain syscalls on descriptor numbers; nothing in this process owns
    // the descriptors being closed (the runtime has not started yet).
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
        libc::fcntl(keep, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

async fn serve(opts: Opts) -> anyhow::Result<()> {
    // SAFETY: the host passed this descriptor to us and nothing else owns it.
    let control = unsafe { OwnedFd::from_raw_fd(opts.control_fd) };
    let chan = Arc::new(Channel::new(control)?);

    let v4 = TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .with_context(|| format!("listen on 127.0.0.1:{}", opts.port))?;
    tokio::spawn(relay(v4, opts.gateway.clone()));
    if let Ok(v6) = TcpListener::bind(("::1", opts.port)).await {
        tokio::spawn(relay(v6, opts.gateway.clone()));
    }
    chan.send(&FromInit::Ready, &[]).await?;

    let mut groups: HashMap<u64, i32> = HashMap::new();
    let (exited_tx, mut exited_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    loop {
        tokio::select! {
            msg = chan.recv::<ToInit>() => {
                let Some((msg, fds)) = msg? else { return Ok(()) };
                match msg {
                    ToInit::Exec { id, argv, env, cwd } => {
                        match spawn(&argv, &env, cwd.as_deref(), fds) {
                            Ok(mut child) => {
                                let pid = child.id().map(|p| p as i32).unwrap_or(-1);
                                groups.insert(id, pid);
                                chan.send(&FromInit::Started { id, pid }, &[]).await?;
                                let chan = chan.clone();
                                let exited_tx = exited_tx.clone();
                                tokio::spawn(async move {
                                    let (code, signal) = match child.wait().await {
                                        Ok(st) => (st.code(), st.signal()),
                                        Err(_) => (None, Some(libc::SIGKILL)),
                                    };
                                    let _ = exited_tx.send(id);
                                    let _ = chan.send(&FromInit::Exited { id, code, signal }, &[]).await;
                                });
                            }
                            Err(e) => {
                                chan.send(&FromInit::Failed { id, error: format!("{e:#}") }, &[]).await?;
                            }
                        }
                    }
                    ToInit::WriteFile { id, path, mode } => {
                        // Its own task: the host writes the bytes while we read.
                        let chan = chan.clone();
                        tokio::spawn(async move {
                            let reply = match write_file(&path, mode, fds).await {
                                Ok(()) => FromInit::Written { id },
                                Err(e) => FromInit::Failed { id, error: format!("{e:#}") },
                            };
                            let _ = chan.send(&reply, &[]).await;
                        });
                    }
                    ToInit::Signal { id, signal } => {
                        if let Some(pid) = groups.get(&id).copied().filter(|p| *p > 0) {
                            // SAFETY: kill(2) on a process group we created.
                            unsafe {
                                libc::kill(-pid, signal);
                                libc::kill(pid, signal);
                            }
                        }
                    }
                }
            }
            Some(id) = exited_rx.recv() => {
                groups.remove(&id);
            }
        }
    }
}

fn spawn(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&str>,
    fds: Vec<OwnedFd>,
) -> anyhow::Result<tokio::process::Child> {
    let Some(prog) = argv.first() else {
        bail!("empty argv");
    };
    let mut fds = fds.into_iter();
    let (Some(stdin), Some(stdout), Some(stderr)) = (fds.next(), fds.next(), fds.next()) else {
        bail!("exec request without its three stdio descriptors");
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(cwd.unwrap_or("/workspace"))
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    cmd.spawn().with_context(|| format!("cannot run {prog}"))
}

/// Write `path` as the sandbox's user, from the pipe in `fds`. A final
/// symlink is refused (O_NOFOLLOW), so a file an agent replaced with a link
/// is not written through.
async fn write_file(path: &str, mode: u32, fds: Vec<OwnedFd>) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::AsyncWriteExt;
    let Some(source) = fds.into_iter().next() else {
        bail!("write request without its descriptor");
    };
    let path = std::path::Path::new(path);
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.with_context(|| format!("create {}", dir.display()))?;
    }
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .await
        .with_context(|| format!("open {}", path.display()))?;
    let mut source = tokio::fs::File::from_std(std::fs::File::from(source));
    tokio::io::copy(&mut source, &mut file).await.with_context(|| format!("write {}", path.display()))?;
    file.flush().await?;
    // An existing file keeps its old mode through `open`: set it.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .await
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(())
}

async fn relay(listener: TcpListener, gateway: String) {
    loop {
        let (mut tcp, _) = match listener.accept().await {
            Ok(c) => c,
            // Out of descriptors (the sandbox's own RLIMIT_NOFILE) or a
            // transient error: back off instead of spinning on it.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            if let Ok(mut up) = UnixStream::connect(&gateway).await {
                let _ = tcp.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut up).await;
            }
        });
    }
}

fn relay_only(args: &[String]) -> i32 {
    let mut port = None;
    let mut gateway = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--port", Some(v)) => port = v.parse::<u16>().ok(),
            ("--gateway", Some(v)) => gateway = Some(v.clone()),
            _ => {
                eprintln!("bridle-sandbox-init: bad relay argument {a}");
                return 2;
            }
        }
    }
    let (Some(port), Some(gateway)) = (port, gateway) else {
        eprintln!("bridle-sandbox-init: --relay-only needs --port and --gateway");
        return 2;
    };
    let Some(rt) = current_thread_runtime() else { return 1 };
    let served: anyhow::Result<()> = rt.block_on(async move {
        let v4 = TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("listen on 127.0.0.1:{port}"))?;
        tokio::spawn(relay(v4, gateway.clone()));
        if let Ok(v6) = TcpListener::bind(("::1", port)).await {
            tokio::spawn(relay(v6, gateway.clone()));
        }
        {
            use std::io::Write;
            let mut out = std::io::stdout();
            writeln!(out, "ready").context("report ready")?;
            out.flush().context("report ready")?;
        }
        tokio::spawn(reap_orphans());
        watch_process_limit().await;
        std::future::pending::<()>().await;
        Ok(())
    });
    match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bridle-sandbox-init: {e:#}");
            1
        }
    }
}

/// What the relay prints the first time it sees the sandbox's tasks at its
/// process limit (a runtime that aborts for want of a thread died of it).
pub const PROCESS_LIMIT_SEEN_LINE: &str = "processes at limit";
/// What the relay prints when the sandbox's tasks stay at its process limit.
pub const PROCESS_LIMIT_LINE: &str = "limit processes";

/// gVisor's kernel enforces the process limit as `RLIMIT_NPROC`, where a
/// fork bomb only makes forks fail and goes on spinning; the bubblewrap
/// driver's pids cgroup ends the sandbox instead. The relay, the gVisor
/// sandbox's first process, counts the sandbox's tasks (threads, as a pids
/// cgroup does) and when they stay at the limit for half a second (as the
/// bubblewrap driver's three samples in a row: a burst of short-lived
/// children is not a fork bomb; by time, as a sample under a bomb is slow)
/// tells the host ([`PROCESS_LIMIT_LINE`] on stdout), which ends
/// the sandbox the same way; the first sample at the limit is reported too
/// ([`PROCESS_LIMIT_SEEN_LINE`]). Returns at once without a limit.
async fn watch_process_limit() {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut rl) } != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return;
    }
    let limit = rl.rlim_cur;
    let say = |line: &str| {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let (mut at_limit_since, mut seen) = (None::<std::time::Instant>, false);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if count_tasks(std::path::Path::new("/proc")) < limit {
            at_limit_since = None;
            continue;
        }
        if !seen {
            seen = true;
            say(PROCESS_LIMIT_SEEN_LINE);
        }
        let since = *at_limit_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() >= std::time::Duration::from_millis(500) {
            say(PROCESS_LIMIT_LINE);
            return;
        }
    }
}

/// How often the relay reaps the orphans reparented to it.
const REAP_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The relay is the gVisor sandbox's PID 1: orphans (a daemonized process, a
/// subshell's background job, codex's `git` helpers) are reparented to it and
/// stay zombies until it reaps them, each one a task against the process
/// limit ([`watch_process_limit`] counts them).
async fn reap_orphans() {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        // SAFETY: waitpid(2) on our own children; the relay starts no
        // process of its own, so nothing else here waits for them.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    }
}

/// The tasks (threads) of every process under `proc` (a procfs).
fn count_tasks(proc: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(proc) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
        // A process gone meanwhile counts as one.
        .map(|e| std::fs::read_dir(e.path().join("task")).map_or(1, |t| t.count().max(1) as u64))
        .sum()
}

fn exec_in_group(args: &[String]) -> i32 {
    use std::os::unix::process::CommandExt;
    let argv = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    let Some(prog) = argv.first() else {
        eprintln!("bridle-sandbox-init: --exec-group needs a program");
        return 2;
    };
    // The same deny list as under bubblewrap, enforced by gVisor's kernel
    // (no nested namespaces, mounts, keyrings, ...).
    if std::env::var_os(NO_SECCOMP_ENV).is_none()
        && let Err(e) = crate::seccomp::apply()
    {
        eprintln!("bridle-sandbox-init: {e:#}");
        return 126;
    }
    let err = std::process::Command::new(prog).args(&argv[1..]).process_group(0).exec();
    eprintln!("cannot run {prog}: {err}");
    127
}

fn write_from_stdin(args: &[String]) -> i32 {
    let (Some(path), Some(mode)) = (args.first(), args.get(1).and_then(|m| u32::from_str_radix(m, 8).ok())) else {
        eprintln!("bridle-sandbox-init: --write-file needs PATH and an octal MODE");
        return 2;
    };
    let Some(rt) = current_thread_runtime() else { return 1 };
    // SAFETY: fd 0 is this process's stdin, owned by nothing else here.
    let stdin = unsafe { OwnedFd::from_raw_fd(0) };
    match rt.block_on(write_file(path, mode, vec![stdin])) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

/// A single-threaded runtime for the one-shot modes; `None` (reported) when
/// it cannot be built.
fn current_thread_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("bridle-sandbox-init: runtime: {e}"))
        .ok()
}

#[cfg(test)]
mod process_limit_tests {
    use super::*;

    #[test]
    fn tasks_are_counted_per_thread_across_processes() {
        let proc = tempfile::tempdir().unwrap();
        let mk = |p: &str| std::fs::create_dir_all(proc.path().join(p)).unwrap();
        for p in ["1/task/1", "1/task/7", "1/task/8", "20/task/20", "33", "self/task/1", "sys"] {
            mk(p);
        }
        // 3 threads of pid 1, one of 20, 33 (gone meanwhile) as one; not `self` or `sys`.
        assert_eq!(count_tasks(proc.path()), 5);
        assert_eq!(count_tasks(&proc.path().join("missing")), 0);
    }
}
