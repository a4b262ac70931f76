//! The warm pool, for each driver (bubblewrap and gVisor): a claim takes a
//! booted sandbox and mounts the session's workspace into it; a pooled
//! sandbox serves one session only; claims the pool does not fit start
//! cold; an idle pool empties and refills on demand.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bridle_sandbox::{
    GvisorConfig, GvisorDriver, LlmRoute, LocalConfig, LocalDriver, ModelEndpoint, PoolConfig, Sandbox, SandboxSpec,
    Secret,
};
use common::*;

/// The driver under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bubblewrap,
    Gvisor,
}

/// Either driver, with what these tests read of it.
enum Pooling {
    Bubblewrap(LocalDriver),
    Gvisor(GvisorDriver),
}

/// A claimed sandbox and what the tests check of it.
struct Claimed {
    sbx: Arc<dyn Sandbox>,
    pooled: bool,
    host_uid: u32,
    /// The uid `id -u` prints inside.
    inside_uid: u32,
}

impl std::ops::Deref for Claimed {
    type Target = dyn Sandbox;
    fn deref(&self) -> &Self::Target {
        &*self.sbx
    }
}

impl Kind {
    fn make(self, cfg: LocalConfig) -> Pooling {
        match self {
            Kind::Bubblewrap => Pooling::Bubblewrap(driver_from(cfg)),
            Kind::Gvisor => {
                ensure_runsc();
                init_tracing();
                Pooling::Gvisor(
                    GvisorDriver::new(GvisorConfig { base: cfg, ..Default::default() }).expect("gVisor driver"),
                )
            }
        }
    }

    fn new_driver(self, cfg: LocalConfig) -> bridle_sandbox::Result<()> {
        match self {
            Kind::Bubblewrap => LocalDriver::new(cfg).map(drop),
            Kind::Gvisor => {
                ensure_runsc();
                GvisorDriver::new(GvisorConfig { base: cfg, ..Default::default() }).map(drop)
            }
        }
    }
}

impl Pooling {
    fn pool_ready(&self) -> usize {
        match self {
            Pooling::Bubblewrap(d) => d.pool_ready(),
            Pooling::Gvisor(d) => d.pool_ready(),
        }
    }

    fn workspace_path(&self, session: &str) -> PathBuf {
        match self {
            Pooling::Bubblewrap(d) => d.workspace_path(session),
            Pooling::Gvisor(d) => d.workspace_path(session),
        }
    }

    async fn claim(&self, spec: SandboxSpec) -> Claimed {
        match self {
            Pooling::Bubblewrap(d) => {
                let s = d.claim_local(spec).await.expect("claim");
                Claimed {
                    pooled: s.pooled(),
                    host_uid: s.host_uid().expect("root: a uid per sandbox"),
                    inside_uid: bridle_sandbox::local::INSIDE_UID,
                    sbx: s,
                }
            }
            Pooling::Gvisor(d) => {
                let s = d.claim_gvisor(spec).await.expect("claim");
                Claimed { pooled: s.pooled(), host_uid: s.host_uid(), inside_uid: s.host_uid(), sbx: s }
            }
        }
    }
}

fn pooled(kind: Kind, tmp: &Path, size: usize, edit: impl FnOnce(&mut LocalConfig)) -> Pooling {
    let mut cfg = config(tmp);
    cfg.pool = PoolConfig { size, ..PoolConfig::default() };
    edit(&mut cfg);
    kind.make(cfg)
}

/// Wait (up to 60 s) until the pool holds `n` booted sandboxes.
async fn pool_holds(d: &Pooling, n: usize) {
    for _ in 0..600 {
        if d.pool_ready() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the pool holds {} sandboxes, not {n}", d.pool_ready());
}

/// One test per driver for each named `async fn(Kind)`: `name::bubblewrap`
/// and `name::gvisor`.
macro_rules! per_driver {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn bubblewrap() {
                    super::$name(super::Kind::Bubblewrap).await
                }
                #[tokio::test]
                async fn gvisor() {
                    super::$name(super::Kind::Gvisor).await
                }
            }
        )*
    };
}

per_driver!(
    a_claim_takes_a_pooled_sandbox_with_the_sessions_workspace_tmp_env_and_gateway,
    a_pooled_sandbox_serves_one_session_and_never_another,
    release_unmounts_the_slot_and_keeps_the_workspace,
    claims_with_other_limits_start_cold,
    an_idle_pool_empties_and_refills_at_the_next_claim,
    a_new_server_sweeps_the_slots_a_killed_one_left_mounted_and_keeps_their_workspaces,
);

async fn a_claim_takes_a_pooled_sandbox_with_the_sessions_workspace_tmp_env_and_gateway(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let d = pooled(kind, tmp.path(), 1, |_| {});
    pool_holds(&d, 1).await;
    let up = FakeUpstream::start().await;
    let mut sp = spec("warm1");
    sp.env.push(("SESSION_MARK".into(), "warm-one".into()));
    sp.llm = Some(LlmRoute {
        base_url: format!("http://127.0.0.1:{}", up.port),
        header_rules: Vec::new(),
        token: Secret::new("tok"),
        allowed: vec![ModelEndpoint::post("/v1/messages")],
        extra: Vec::new(),
    });
    let sbx = d.claim(sp).await;
    assert!(sbx.pooled, "the claim was served from the pool");
    assert_eq!(sbx.session_id(), "warm1");
    let out = sh(
        &*sbx,
        r#"id -u; pwd; echo "mark=$SESSION_MARK"; echo inside > /workspace/from-inside; echo t > /tmp/t && echo tmp-ok
           curl -s -X POST -d '{}' "$BRIDLE_LLM_BASE_URL/v1/messages"; echo"#,
    )
    .await;
    let s = out.stdout_str();
    assert!(out.status.success(), "{s} {}", out.stderr_str());
    assert!(s.starts_with(&format!("{}\n/workspace\n", sbx.inside_uid)), "{s}");
    assert!(s.contains("mark=warm-one"), "{s}");
    assert!(s.contains("tmp-ok"), "{s}");
    assert!(s.contains("upstream-ok /v1/messages"), "the session's model route: {s}");
    // The file is in the session's workspace on the host, owned by the
    // sandbox's own uid.
    let host = d.workspace_path("warm1").join("from-inside");
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "inside\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&host).unwrap().uid(), sbx.host_uid);
    sbx.release().await.unwrap();

    // Resumed (from the refilled pool, with another uid): the workspace is back.
    pool_holds(&d, 1).await;
    let again = d.claim(spec("warm1")).await;
    assert!(again.pooled);
    let out = sh(&*again, "cat /workspace/from-inside && echo more >> /workspace/from-inside && echo ok").await;
    assert!(out.stdout_str().contains("inside\nok"), "{} {}", out.stdout_str(), out.stderr_str());
    again.release().await.unwrap();
}

async fn a_pooled_sandbox_serves_one_session_and_never_another(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let d = pooled(kind, tmp.path(), 2, |_| {});
    pool_holds(&d, 2).await;
    let a = d.claim(spec("sess-a")).await;
    let b = d.claim(spec("sess-b")).await;
    assert!(a.pooled && b.pooled);
    assert_ne!(a.id(), b.id());
    assert_ne!(a.host_uid, b.host_uid, "each pooled sandbox has its own uid");
    let out = sh(&*a, "echo secret-a > /workspace/a.txt && echo ok").await;
    assert!(out.stdout_str().contains("ok"));
    let out = sh(&*b, "ls -a /workspace; cat /workspace/a.txt 2>&1; ls /run/bridle /mnt 2>&1").await;
    assert!(!out.stdout_str().contains("secret-a"), "{}", out.stdout_str());
    let a_id = a.id().to_string();
    a.release().await.unwrap();
    assert!(!a.is_running());
    // Claims after a's release never get a's sandbox back.
    for i in 0..3 {
        let c = d.claim(spec(&format!("sess-c{i}"))).await;
        assert_ne!(c.id(), a_id);
        c.release().await.unwrap();
    }
    // A session's claim while its sandbox runs returns that sandbox.
    let b2 = d.claim(spec("sess-b")).await;
    assert_eq!(b2.id(), b.id());
    b.release().await.unwrap();
}

async fn release_unmounts_the_slot_and_keeps_the_workspace(kind: Kind) {
    for quota in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let d = pooled(kind, tmp.path(), 1, |c| {
            if !quota {
                c.workspace_quota = None;
            }
        });
        pool_holds(&d, 1).await;
        let sbx = d.claim(spec("slotted")).await;
        assert!(sbx.pooled);
        let out = sh(&*sbx, "echo kept > /workspace/kept && echo ok").await;
        assert!(out.stdout_str().contains("ok"), "{}", out.stderr_str());
        let mounts_with = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let state = tmp.path().join("state");
        let pool_dir = state.join("pool");
        let ours = |m: &str| m.lines().filter(|l| l.contains(pool_dir.to_str().unwrap())).count();
        assert!(ours(&mounts_with) >= 1, "the slot is mounted while the sandbox runs");
        sbx.release().await.unwrap();
        drop(d);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        // The refilled pool's sandbox went with the driver; nothing stays mounted.
        for _ in 0..50 {
            if ours(&std::fs::read_to_string("/proc/self/mountinfo").unwrap()) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mounts_after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert_eq!(ours(&mounts_after), 0, "quota {quota}: slots left mounted: {mounts}");
        // The workspace survives (reopen it with a driver of its own).
        let mut cfg = config(tmp.path());
        cfg.state_dir = state.clone();
        if !quota {
            cfg.workspace_quota = None;
        }
        let d2 = kind.make(cfg);
        let s2 = d2.claim(spec("slotted")).await;
        assert!(!s2.pooled);
        let out = sh(&*s2, "cat /workspace/kept").await;
        assert_eq!(out.stdout_str(), "kept\n", "quota {quota}");
        s2.release().await.unwrap();
    }
}

async fn claims_with_other_limits_start_cold(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let d = pooled(kind, tmp.path(), 1, |_| {});
    pool_holds(&d, 1).await;
    let mut sp = spec("own-limits");
    sp.limits.max_processes = Some(64);
    let sbx = d.claim(sp).await;
    assert!(!sbx.pooled, "the pool's sandboxes have other limits");
    assert_eq!(d.pool_ready(), 1, "the pool keeps its sandbox");
    sbx.release().await.unwrap();
}

async fn an_idle_pool_empties_and_refills_at_the_next_claim(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.pool = PoolConfig { size: 1, idle: Duration::from_secs(4), ..PoolConfig::default() };
    let d = kind.make(cfg);
    pool_holds(&d, 1).await;
    pool_holds(&d, 0).await;
    // Empty: this claim starts cold, and brings the pool back.
    let sbx = d.claim(spec("after-idle")).await;
    assert!(!sbx.pooled);
    pool_holds(&d, 1).await;
    sbx.release().await.unwrap();
}

#[test]
fn a_pool_larger_than_the_uid_range_is_refused() {
    for kind in [Kind::Bubblewrap, Kind::Gvisor] {
        let tmp = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _g = rt.enter();
        let mut cfg = config(tmp.path());
        cfg.pool.size = cfg.uid_count as usize + 1;
        let err = kind.new_driver(cfg).expect_err("must fail");
        assert!(err.to_string().contains("warm sandbox pool"), "{kind:?}: {err}");
    }
}

async fn a_new_server_sweeps_the_slots_a_killed_one_left_mounted_and_keeps_their_workspaces(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // What a killed server leaves: a slot with a session's workspace on it.
    let dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    let _ = { dead }.wait();
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let ws = state.join("workspaces/left");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("keep.txt"), "mine").unwrap();
    let slot = state.join(format!("pool/{host}-{dead_pid}/sbx_dead/ws"));
    std::fs::create_dir_all(&slot).unwrap();
    let mount = |args: &[&str]| assert!(std::process::Command::new("mount").args(args).status().unwrap().success());
    mount(&["--bind", slot.to_str().unwrap(), slot.to_str().unwrap()]);
    mount(&["--make-shared", slot.to_str().unwrap()]);
    mount(&["--bind", ws.to_str().unwrap(), slot.to_str().unwrap()]);
    assert!(slot.join("keep.txt").exists());

    let d = pooled(kind, tmp.path(), 1, |c| {
        c.state_dir = state.clone();
        c.workspace_quota = None;
    });
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&format!("{host}-{dead_pid}")), "the dead server's slot is unmounted");
    assert!(!state.join(format!("pool/{host}-{dead_pid}")).exists(), "and removed");
    assert_eq!(std::fs::read_to_string(ws.join("keep.txt")).unwrap(), "mine", "the workspace is untouched");
    pool_holds(&d, 1).await;
}

#[test]
fn a_runtime_shut_down_while_the_pool_boots_leaves_nothing_mounted() {
    for kind in [Kind::Bubblewrap, Kind::Gvisor] {
        a_runtime_shut_down_while_the_pool_boots_leaves_nothing_mounted_with(kind);
    }
}

fn a_runtime_shut_down_while_the_pool_boots_leaves_nothing_mounted_with(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    for wait_ms in [0, 5, 20, 60] {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let d = {
            let _g = rt.enter();
            pooled(kind, tmp.path(), 3, |c| c.state_dir = state.clone())
        };
        std::thread::sleep(Duration::from_millis(wait_ms));
        drop(d);
        // Shutting down cancels the pool's task wherever it is in a boot.
        drop(rt);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let ours: Vec<&str> = mounts.lines().filter(|l| l.contains(state.to_str().unwrap())).collect();
        assert!(ours.is_empty(), "{kind:?}, after {wait_ms} ms: {ours:#?}");
        // Pooled volumes (the disk quota is on) went too.
        assert_eq!(pooled_images(&state), Vec::<String>::new(), "{kind:?}, after {wait_ms} ms");
        assert_eq!(loops_under(&state), Vec::<String>::new(), "{kind:?}, after {wait_ms} ms");
    }
}

/// The pooled volumes' images under `state` (`disks/pool.*`).
fn pooled_images(state: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(state.join("disks"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pool."))
        .collect();
    v.sort();
    v
}

/// Loop devices backed by a file under `state`.
fn loops_under(state: &Path) -> Vec<String> {
    let out = std::process::Command::new("losetup")
        .args(["--list", "--noheadings", "--output", "NAME,BACK-FILE"])
        .output()
        .expect("losetup");
    let state = state.to_str().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(state)).map(str::to_owned).collect()
}

/// Mounts (`/proc/self/mountinfo` lines) under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir))
        .map(str::to_owned)
        .collect()
}

/// Wait (up to 30 s) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 30 s: {what}");
}

fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).ino()
}

/// The smallest quota, so that filling it is quick.
const SMALL_QUOTA: u64 = bridle_sandbox::local::MIN_WORKSPACE_BYTES;

#[tokio::test]
async fn a_new_sessions_claim_adopts_the_pooled_volume_and_keeps_the_quota() {
    use bridle_sandbox::SandboxDriver;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let d = pooled(Kind::Bubblewrap, tmp.path(), 1, |c| c.workspace_quota = Some(SMALL_QUOTA));
    let Pooling::Bubblewrap(local) = &d else { unreachable!() };
    pool_holds(&d, 1).await;
    // The pool made the volume ahead of the claim.
    let made = pooled_images(&state);
    assert_eq!(made.len(), 1, "one pooled volume per pooled sandbox: {made:?}");
    let made_ino = inode(&state.join("disks").join(&made[0]));

    let sbx = d.claim(spec("fresh")).await;
    assert!(sbx.pooled);
    // Adopted: the session's image is the very file the pool made.
    assert_eq!(inode(&state.join("disks/fresh.img")), made_ino, "the pooled image became the session's");
    assert!(!state.join("disks").join(&made[0]).exists());
    let out = sh(&*sbx, "echo hi > /workspace/a && echo t > /tmp/t && echo ok").await;
    assert!(out.stdout_str().contains("ok"), "{}", out.stderr_str());
    use std::os::unix::fs::MetadataExt;
    let host = local.workspace_path("fresh").join("a");
    assert_eq!(std::fs::metadata(&host).unwrap().uid(), sbx.host_uid, "owned by the sandbox's uid");
    // The quota holds: a write past it fails inside the sandbox.
    let out = sh(&*sbx, "dd if=/dev/zero of=/workspace/fill bs=1M count=32").await;
    assert!(!out.status.success());
    assert!(out.stderr_str().contains("No space left on device"), "{}", out.stderr_str());
    let out = sh(&*sbx, "dd if=/dev/zero of=/tmp/more bs=1M count=8").await;
    assert!(out.stderr_str().contains("No space left on device"), "/tmp shares it: {}", out.stderr_str());
    sh(&*sbx, "rm -f /workspace/fill /tmp/more").await;
    sbx.release().await.unwrap();
    assert!(mounts_under(&state.join("volumes/fresh")).is_empty(), "released: the session's volume is unmounted");

    // Claimed again (from the refilled pool): the resume path mounts the
    // session's own image; the pooled volume it did not need goes.
    pool_holds(&d, 1).await;
    let again = d.claim(spec("fresh")).await;
    assert!(again.pooled);
    let out = sh(&*again, "cat /workspace/a; ls /tmp").await;
    assert_eq!(out.stdout_str(), "hi\n", "the same files; /tmp emptied: {}", out.stderr_str());
    assert_eq!(inode(&state.join("disks/fresh.img")), made_ino);
    let out = sh(&*again, "dd if=/dev/zero of=/workspace/fill bs=1M count=32").await;
    assert!(out.stderr_str().contains("No space left on device"), "{}", out.stderr_str());
    again.release().await.unwrap();
    pool_holds(&d, 1).await;
    eventually("only the refilled pool's volume is left", || pooled_images(&state).len() == 1).await;

    // The image goes with the session.
    local.delete_workspace("fresh").await.unwrap();
    assert!(!state.join("disks/fresh.img").exists());
    drop(d);
    eventually("the pool's volume goes with the driver", || {
        pooled_images(&state).is_empty() && loops_under(&state).is_empty() && mounts_under(&state).is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_claim_of_another_size_gets_an_image_of_its_own_and_the_pooled_one_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let d = pooled(Kind::Bubblewrap, tmp.path(), 1, |c| c.workspace_quota = Some(SMALL_QUOTA));
    pool_holds(&d, 1).await;
    let made = pooled_images(&state);
    let mut sp = spec("bigger");
    sp.workspace_bytes = Some(2 * SMALL_QUOTA);
    let sbx = d.claim(sp).await;
    assert!(sbx.pooled);
    let img = state.join("disks/bigger.img");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 2 * SMALL_QUOTA, "an image of the size asked for");
    assert_eq!(made.len(), 1);
    eventually("the pooled volume the claim did not use goes", || !state.join("disks").join(&made[0]).exists()).await;
    let out = sh(&*sbx, "dd if=/dev/zero of=/workspace/f bs=1M count=20 && echo fits").await;
    assert!(out.stdout_str().contains("fits"), "20 MiB fit in 32: {}", out.stderr_str());
    sbx.release().await.unwrap();
}

#[tokio::test]
async fn pooled_volumes_never_show_up_in_two_sessions() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let d = pooled(Kind::Bubblewrap, tmp.path(), 2, |c| c.workspace_quota = Some(SMALL_QUOTA));
    pool_holds(&d, 2).await;
    let a = d.claim(spec("two-a")).await;
    let b = d.claim(spec("two-b")).await;
    assert!(a.pooled && b.pooled);
    pool_holds(&d, 2).await;
    // Every volume is its own filesystem: the two sessions' and the two
    // the pool made since.
    let mut devs: Vec<u64> = ["two-a", "two-b"]
        .iter()
        .map(|s| std::fs::metadata(d.workspace_path(s)).unwrap().dev())
        .chain(pooled_images(&state).iter().map(|img| {
            let name = img.trim_end_matches(".img");
            std::fs::metadata(state.join("volumes").join(name)).unwrap().dev()
        }))
        .collect();
    assert_eq!(devs.len(), 4);
    devs.sort();
    devs.dedup();
    assert_eq!(devs.len(), 4, "no volume is mounted for two of them");
    let out = sh(&*a, "echo secret-a > /workspace/a.txt && echo ok").await;
    assert!(out.stdout_str().contains("ok"));
    let out = sh(&*b, "cat /workspace/a.txt 2>&1; ls -a /workspace").await;
    assert!(!out.stdout_str().contains("secret-a"), "{}", out.stdout_str());
    a.release().await.unwrap();
    b.release().await.unwrap();
}

#[tokio::test]
async fn an_idle_pool_releases_its_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut cfg = config(tmp.path());
    cfg.workspace_quota = Some(SMALL_QUOTA);
    cfg.pool = PoolConfig { size: 2, idle: Duration::from_secs(4), ..PoolConfig::default() };
    let d = Kind::Bubblewrap.make(cfg);
    pool_holds(&d, 2).await;
    assert_eq!(pooled_images(&state).len(), 2);
    assert_eq!(loops_under(&state).len(), 2, "each pooled volume is loop-mounted");
    pool_holds(&d, 0).await;
    eventually("the emptied pool's volumes are gone", || {
        pooled_images(&state).is_empty() && loops_under(&state).is_empty() && mounts_under(&state).is_empty()
    })
    .await;
}

/// Set to a state dir in the child process of
/// [`a_server_killed_with_pooled_volumes_leaves_them_to_the_next_one`].
const CHILD_STATE: &str = "BRIDLE_TEST_POOL_CHILD_STATE";

/// The server that test kills: a full pool with the quota on, then wait.
#[tokio::test]
#[ignore = "the child process of a_server_killed_with_pooled_volumes_leaves_them_to_the_next_one"]
async fn child_server_holding_a_full_pool() {
    let state = PathBuf::from(std::env::var_os(CHILD_STATE).expect("run by the parent test"));
    let mut cfg = config(&state);
    cfg.state_dir = state.clone();
    cfg.workspace_quota = Some(SMALL_QUOTA);
    cfg.pool = PoolConfig { size: 2, ..PoolConfig::default() };
    let d = Kind::Bubblewrap.make(cfg);
    pool_holds(&d, 2).await;
    std::fs::write(state.join("child-ready"), b"").unwrap();
    tokio::time::sleep(Duration::from_secs(300)).await;
}

#[tokio::test]
async fn a_server_killed_with_pooled_volumes_leaves_them_to_the_next_one() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_server_holding_a_full_pool", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_STATE, &state)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the child's pool is full", || state.join("child-ready").exists()).await;
    assert_eq!(pooled_images(&state).len(), 2, "{:?}", pooled_images(&state));
    assert_eq!(loops_under(&state).len(), 2, "{:?}", loops_under(&state));
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed: its pooled volumes are still mounted, on their loop devices.
    assert_eq!(loops_under(&state).len(), 2);
    assert!(!mounts_under(&state.join("volumes")).is_empty());

    // The next server (no pool of its own) sweeps them.
    let mut cfg = config(tmp.path());
    cfg.state_dir = state.clone();
    cfg.workspace_quota = Some(SMALL_QUOTA);
    let d = driver_from(cfg);
    eventually("no leaked loop device", || loops_under(&state).is_empty()).await;
    assert_eq!(mounts_under(&state), Vec::<String>::new(), "nothing stays mounted");
    assert_eq!(pooled_images(&state), Vec::<String>::new(), "the pooled images are removed");
    let left: Vec<_> = std::fs::read_dir(state.join("volumes")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "no mount point or lock file left: {left:?}");
    // And it works: a cold claim gets a volume of its own.
    let sbx = d.claim_local(spec("after")).await.unwrap();
    assert!(!sbx.pooled());
    sbx.release().await.unwrap();
}
