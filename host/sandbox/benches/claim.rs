//! claim → first exec (`true`) → release, in one run and side by side:
//! plain process spawn, bubblewrap cold and from the warm pool, gVisor cold
//! (a `runsc run` per claim) and from its pool, and Anthropic's sandbox
//! runtime (`srt true`, installed with npm into /tmp/srt when missing); then
//! each variant by phase (with and without the disk quota: a workspace
//! volume mounted and unmounted per cycle). Each claim is a new session's
//! (its workspace deleted after the cycle, untimed): from the pool with the
//! quota, that is the adopted path (the pooled sandbox's ready volume); the
//! "resumed" variants claim four sessions in turn, whose images exist. Each
//! pooled claim first waits, untimed, for the pool to be full again. Prints
//! min, median and p99 per variant. Needs root and bubblewrap (like the tests); gVisor needs `runsc`
//! (skipped when missing).
//!
//! cargo bench -p bridle-sandbox --bench claim
//! (BENCH_ITERS=N, SRT_ITERS=N, SRT_BIN=/path/to/srt, GVISOR_ITERS=N)

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridle_sandbox::{
    ExecRequest, GvisorConfig, GvisorDriver, LocalConfig, LocalDriver, PoolConfig, Sandbox, SandboxSpec,
};

fn stats(name: &str, mut v: Vec<Duration>) {
    if v.is_empty() {
        println!("{name:<48} (skipped)");
        return;
    }
    v.sort();
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<48} n={:<4} min {:>8.2} ms   median {:>8.2} ms   p99 {:>8.2} ms",
        v.len(),
        ms(v[0]),
        ms(pct(0.5)),
        ms(pct(0.99))
    );
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn find_srt() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SRT_BIN") {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("/tmp/srt/node_modules/.bin/srt");
    if local.exists() {
        return Some(local);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("srt")).find(|p| p.exists())
}

/// Either driver, as the bench drives it.
#[derive(Clone)]
enum Driver {
    Bubblewrap(LocalDriver),
    Gvisor(GvisorDriver),
}

impl Driver {
    fn pool_size(&self) -> usize {
        match self {
            Driver::Bubblewrap(d) => d.config().pool.size,
            Driver::Gvisor(d) => d.config().pool.size,
        }
    }
    fn pool_ready(&self) -> usize {
        match self {
            Driver::Bubblewrap(d) => d.pool_ready(),
            Driver::Gvisor(d) => d.pool_ready(),
        }
    }
    async fn delete_workspace(&self, session: &str) -> bridle_sandbox::Result<()> {
        use bridle_sandbox::SandboxDriver;
        match self {
            Driver::Bubblewrap(d) => d.delete_workspace(session).await,
            Driver::Gvisor(d) => d.delete_workspace(session).await,
        }
    }
    /// Claim; whether the pool served it.
    async fn claim(&self, spec: SandboxSpec) -> anyhow::Result<(Arc<dyn Sandbox>, bool)> {
        Ok(match self {
            Driver::Bubblewrap(d) => {
                let s = d.claim_local(spec).await?;
                (s.clone() as Arc<dyn Sandbox>, s.pooled())
            }
            Driver::Gvisor(d) => {
                let s = d.claim_gvisor(spec).await?;
                (s.clone() as Arc<dyn Sandbox>, s.pooled())
            }
        })
    }
}

/// Whose claims a variant measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sessions {
    /// A new session each cycle (its workspace deleted after, untimed).
    New,
    /// Four sessions in turn, resumed: their workspaces (images) exist.
    Resumed,
}

/// One claim → exec `true` → release: the times to the claim, to the
/// exec's end, and to the release's end.
async fn sandbox_cycle(d: &Driver, i: usize, sessions: Sessions) -> anyhow::Result<Vec<Duration>> {
    let pool = d.pool_size();
    if pool > 0 {
        // Measure the pooled path: wait (untimed) for the refill.
        let waited = Instant::now();
        while d.pool_ready() < pool {
            anyhow::ensure!(waited.elapsed() < Duration::from_secs(60), "the pool did not refill");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let session = match sessions {
        Sessions::New => format!("bench{i}"),
        Sessions::Resumed => format!("resumed{}", i % 4),
    };
    let t0 = Instant::now();
    let (sbx, pooled) = d.claim(SandboxSpec::new(&session)).await?;
    anyhow::ensure!(pool == 0 || pooled, "a pooled claim started cold");
    let t_claim = t0.elapsed();
    let child = sbx.exec(ExecRequest::new(["true"])).await?;
    let st = child.wait().await;
    anyhow::ensure!(st.success(), "true failed: {st}");
    let t_exec = t0.elapsed();
    sbx.release().await?;
    let times = vec![t_claim, t_exec, t0.elapsed()];
    if sessions == Sessions::New {
        d.delete_workspace(&session).await?;
    }
    Ok(times)
}

/// Run `cycle` `warmup + iters` times and keep the last `iters`: one list
/// of samples per phase the cycle reports.
async fn measure<F, Fut>(iters: usize, warmup: usize, mut cycle: F) -> anyhow::Result<Vec<Vec<Duration>>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<Duration>>>,
{
    let mut phases: Vec<Vec<Duration>> = Vec::new();
    for i in 0..warmup + iters {
        let times = cycle(i).await?;
        if i < warmup {
            continue;
        }
        phases.resize_with(times.len().max(phases.len()), Vec::new);
        for (p, t) in phases.iter_mut().zip(times) {
            p.push(t);
        }
    }
    Ok(phases)
}

/// [`measure`] of a driver's claim cycle.
async fn measure_driver(d: &Driver, iters: usize, warmup: usize) -> anyhow::Result<Vec<Vec<Duration>>> {
    measure(iters, warmup, |i| sandbox_cycle(d, i, Sessions::New)).await
}

/// [`measure_driver`] of resumed sessions.
async fn measure_resumed(d: &Driver, iters: usize, warmup: usize) -> anyhow::Result<Vec<Vec<Duration>>> {
    measure(iters, warmup, |i| sandbox_cycle(d, i, Sessions::Resumed)).await
}

/// `srt`: the one on `SRT_BIN` or `PATH`, else installed with npm into
/// `/tmp/srt` (the bench's setup; `None` when that fails), with the tools
/// it needs on Linux (ripgrep, socat) installed with apt-get when missing.
fn find_or_install_srt() -> Option<PathBuf> {
    let missing = |tool: &str| {
        !std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if missing("rg") || missing("socat") {
        println!("installing ripgrep and socat (srt needs them) with apt-get");
        let _ = std::process::Command::new("apt-get")
            .args(["install", "-y", "-qq", "ripgrep", "socat"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    if let Some(p) = find_srt() {
        return Some(p);
    }
    println!("installing {SRT_PACKAGE} into /tmp/srt with npm");
    let ok = std::process::Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix", "/tmp/srt", SRT_PACKAGE])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("could not install {SRT_PACKAGE} (is npm installed?)");
    }
    find_srt()
}

/// Anthropic's sandbox runtime on npm.
const SRT_PACKAGE: &str = "@anthropic-ai/sandbox-runtime";

/// `srt`'s version, from its package.json under /tmp/srt.
fn srt_version(bin: &Path) -> String {
    let pkg = bin
        .parent()
        .and_then(Path::parent)
        .map(|nm| nm.join("@anthropic-ai/sandbox-runtime/package.json"))
        .and_then(|p| std::fs::read_to_string(p).ok());
    pkg.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; ignore arguments.
    let iters = env_usize("BENCH_ITERS", 200);
    let srt_iters = env_usize("SRT_ITERS", 20);
    let gvisor_iters = env_usize("GVISOR_ITERS", 20);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let tmp = tempfile::tempdir()?;
        let config = |cg: bool, quota: bool, pool: usize, sub: &str, base: u32| LocalConfig {
            state_dir: tmp.path().join(sub),
            init_binary: Some(env!("CARGO_BIN_EXE_bridle-sandbox-init").into()),
            uid_base: base,
            uid_count: 16,
            idle_timeout: None,
            cgroups: cg,
            workspace_quota: if quota { LocalConfig::default().workspace_quota } else { None },
            pool: PoolConfig { size: pool, ..PoolConfig::default() },
            ..LocalConfig::default()
        };
        let bwrap = |cfg: LocalConfig| LocalDriver::new(cfg).map(Driver::Bubblewrap);
        let gvisor = |cfg: LocalConfig| GvisorDriver::new(GvisorConfig { base: cfg, ..GvisorConfig::default() });
        println!(
            "claim -> exec `true` -> release; {iters} iterations (gVisor {gvisor_iters}, srt {srt_iters}) after \
             warm-up, {} cores, load average {}",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split(' ')
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );

        let spawn = measure(iters, 10, |_| async {
            let t0 = Instant::now();
            let st = tokio::process::Command::new("true").status().await?;
            anyhow::ensure!(st.success());
            Ok(vec![t0.elapsed()])
        })
        .await?;
        let cold = measure_driver(&bwrap(config(true, true, 0, "cg", 680_000))?, iters, 10).await?;
        let cold_nq = measure_driver(&bwrap(config(true, false, 0, "noquota", 680_050))?, iters, 10).await?;
        let cold_rl = measure_driver(&bwrap(config(false, true, 0, "nocg", 680_100))?, iters, 10).await?;
        let pooled = measure_driver(&bwrap(config(true, true, 2, "pool", 680_150))?, iters, 10).await?;
        let pooled_nq = measure_driver(&bwrap(config(true, false, 2, "poolnoquota", 680_200))?, iters, 10).await?;
        let cold_resumed = measure_resumed(&bwrap(config(true, true, 0, "cgresumed", 680_350))?, iters, 10).await?;
        let pooled_resumed = measure_resumed(&bwrap(config(true, true, 2, "poolresumed", 680_400))?, iters, 10).await?;

        let (g_cold, g_pooled, platform) = match gvisor(config(true, true, 0, "gvisor", 680_250)) {
            Ok(g) => {
                let platform = g.platform().to_owned();
                let c = measure_driver(&Driver::Gvisor(g), gvisor_iters, 2).await?;
                let p = match gvisor(config(true, true, 2, "gvisorpool", 680_300)) {
                    Ok(g) => measure_driver(&Driver::Gvisor(g), gvisor_iters, 2).await?,
                    Err(e) => {
                        println!("gVisor pool skipped: {e}");
                        Vec::new()
                    }
                };
                (c, p, platform)
            }
            Err(e) => {
                println!("gVisor skipped: {e}");
                (Vec::new(), Vec::new(), "unavailable".to_owned())
            }
        };

        let srt_bin = if srt_iters > 0 { find_or_install_srt() } else { None };
        let srt = match &srt_bin {
            Some(bin) => {
                let bin = bin.clone();
                let run = measure(srt_iters, 2, |_| {
                    let bin = bin.clone();
                    async move {
                        let t0 = Instant::now();
                        let out = tokio::process::Command::new(&bin).arg("true").output().await?;
                        anyhow::ensure!(
                            out.status.success(),
                            "srt failed ({}): {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        );
                        Ok(vec![t0.elapsed()])
                    }
                })
                .await;
                run.unwrap_or_else(|e| {
                    println!("{e}");
                    Vec::new()
                })
            }
            None => Vec::new(),
        };
        let srt_name = match &srt_bin {
            Some(bin) => format!("srt true (sandbox-runtime {})", srt_version(bin)),
            None => "srt true (srt not installed)".into(),
        };

        println!("\nside by side: a new session's claim + first exec `true` (disk quota on where it applies)");
        let phase = |v: &[Vec<Duration>], i: usize| v.get(i).cloned().unwrap_or_default();
        stats("plain spawn `true` (tokio::process)", phase(&spawn, 0));
        stats("bubblewrap cold", phase(&cold, 1));
        stats("bubblewrap from the pool", phase(&pooled, 1));
        stats(&format!("gVisor cold ({platform})"), phase(&g_cold, 1));
        stats(&format!("gVisor from the pool ({platform})"), phase(&g_pooled, 1));
        stats(&srt_name, phase(&srt, 0));

        println!("\nby phase: claim / claim + exec / claim + exec + release");
        for (name, v) in [
            ("bubblewrap cold", &cold),
            ("bubblewrap cold, no disk quota", &cold_nq),
            ("bubblewrap cold, rlimits only", &cold_rl),
            ("bubblewrap pool", &pooled),
            ("bubblewrap pool, no disk quota", &pooled_nq),
            ("bubblewrap cold, resumed session", &cold_resumed),
            ("bubblewrap pool, resumed session", &pooled_resumed),
            ("gVisor cold", &g_cold),
            ("gVisor pool", &g_pooled),
        ] {
            for (i, what) in ["claim", "claim + exec", "claim + exec + release"].into_iter().enumerate() {
                stats(&format!("{name}: {what}"), phase(v, i));
            }
        }
        anyhow::Ok(())
    })
}
