//! claim → first exec (`true`) → release (with the default disk quota: a
//! workspace volume mounted and unmounted per cycle; and without it), cold
//! and from the warm pool (each pooled claim waits, untimed, for the pool
//! to be full again), beside plain process spawn and Anthropic's sandbox
//! runtime (`srt true`) and the gVisor driver (cold: a `runsc run` per claim,
//! a `runsc exec` per exec), in one run. Prints min, median and p99 per
//! variant. Needs root and bubblewrap (like the tests); gVisor needs `runsc`
//! (skipped when missing).
//!
//! cargo bench -p bridle-sandbox --bench claim
//! (BENCH_ITERS=N, SRT_ITERS=N, SRT_BIN=/path/to/srt, GVISOR_ITERS=N)

use std::path::PathBuf;
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

async fn bridle_cycle(d: &LocalDriver, i: usize) -> anyhow::Result<(Duration, Duration, Duration)> {
    let pool = d.config().pool.size;
    if pool > 0 {
        // Measure the pooled path: wait (untimed) for the refill.
        let waited = Instant::now();
        while d.pool_ready() < pool {
            anyhow::ensure!(waited.elapsed() < Duration::from_secs(30), "the pool did not refill");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let t0 = Instant::now();
    let sbx = d.claim_local(SandboxSpec::new(format!("bench{}", i % 4))).await?;
    anyhow::ensure!(pool == 0 || sbx.pooled(), "a pooled claim started cold");
    let t_claim = t0.elapsed();
    let child = sbx.exec(ExecRequest::new(["true"])).await?;
    let st = child.wait().await;
    anyhow::ensure!(st.success(), "true failed: {st}");
    let t_exec = t0.elapsed();
    sbx.release().await?;
    Ok((t_claim, t_exec, t0.elapsed()))
}

async fn gvisor_cycle(d: &GvisorDriver, i: usize) -> anyhow::Result<(Duration, Duration, Duration)> {
    let t0 = Instant::now();
    let sbx = d.claim_gvisor(SandboxSpec::new(format!("gbench{}", i % 4))).await?;
    let t_claim = t0.elapsed();
    let child = sbx.exec(ExecRequest::new(["true"])).await?;
    let st = child.wait().await;
    anyhow::ensure!(st.success(), "true failed: {st}");
    let t_exec = t0.elapsed();
    sbx.release().await?;
    Ok((t_claim, t_exec, t0.elapsed()))
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; ignore arguments.
    let iters = env_usize("BENCH_ITERS", 200);
    let srt_iters = env_usize("SRT_ITERS", 20);
    let gvisor_iters = env_usize("GVISOR_ITERS", 20);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let tmp = tempfile::tempdir()?;
        let make = |cg: bool, quota: bool, pool: usize, sub: &str, base: u32| {
            LocalDriver::new(LocalConfig {
                state_dir: tmp.path().join(sub),
                init_binary: Some(env!("CARGO_BIN_EXE_bridle-sandbox-init").into()),
                uid_base: base,
                uid_count: 16,
                idle_timeout: None,
                cgroups: cg,
                workspace_quota: if quota { LocalConfig::default().workspace_quota } else { None },
                pool: PoolConfig { size: pool, ..PoolConfig::default() },
                ..LocalConfig::default()
            })
        };
        let d = make(true, true, 0, "cg", 680_000)?;
        let d_noquota = make(true, false, 0, "noquota", 680_050)?;
        let d_nocg = make(false, true, 0, "nocg", 680_100)?;
        let d_pool = make(true, true, 2, "pool", 680_150)?;
        let d_pool_noquota = make(true, false, 2, "poolnoquota", 680_200)?;
        println!(
            "claim -> exec `true` -> release; {iters} iterations (after 10 warm-up), {} cores",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        );

        let mut spawn = Vec::new();
        for i in 0..iters + 10 {
            let t0 = Instant::now();
            let st = tokio::process::Command::new("true").status().await?;
            anyhow::ensure!(st.success());
            if i >= 10 {
                spawn.push(t0.elapsed());
            }
        }

        let run = |d: LocalDriver| async move {
            let (mut claim, mut exec, mut full) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..iters + 10 {
                let (c, e, f) = bridle_cycle(&d, i).await?;
                if i >= 10 {
                    claim.push(c);
                    exec.push(e);
                    full.push(f);
                }
            }
            anyhow::Ok((claim, exec, full))
        };
        let (claim, exec, full) = run(d.clone()).await?;
        let (claim_q, exec_q, full_q) = run(d_noquota.clone()).await?;
        let (claim_n, exec_n, full_n) = run(d_nocg.clone()).await?;
        let (claim_p, exec_p, full_p) = run(d_pool.clone()).await?;
        drop(d_pool);
        let (claim_pq, exec_pq, full_pq) = run(d_pool_noquota.clone()).await?;
        drop(d_pool_noquota);

        let (mut claim_g, mut exec_g, mut full_g) = (Vec::new(), Vec::new(), Vec::new());
        let gvisor = GvisorDriver::new(GvisorConfig {
            base: LocalConfig {
                state_dir: tmp.path().join("gvisor"),
                init_binary: Some(env!("CARGO_BIN_EXE_bridle-sandbox-init").into()),
                uid_base: 680_250,
                uid_count: 16,
                idle_timeout: None,
                ..LocalConfig::default()
            },
            ..GvisorConfig::default()
        });
        let gvisor_platform = match &gvisor {
            Ok(g) => {
                for i in 0..gvisor_iters + 2 {
                    let (c, e, f) = gvisor_cycle(g, i).await?;
                    if i >= 2 {
                        claim_g.push(c);
                        exec_g.push(e);
                        full_g.push(f);
                    }
                }
                g.platform().to_owned()
            }
            Err(e) => {
                println!("gVisor skipped: {e}");
                "unavailable".to_owned()
            }
        };

        let mut srt = Vec::new();
        let srt_bin = find_srt();
        if let Some(bin) = &srt_bin {
            for i in 0..srt_iters + 2 {
                let t0 = Instant::now();
                let out = tokio::process::Command::new(bin).arg("true").output().await?;
                if !out.status.success() {
                    println!("srt failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
                    srt.clear();
                    break;
                }
                if i >= 2 {
                    srt.push(t0.elapsed());
                }
            }
        }

        stats("plain spawn `true` (tokio::process)", spawn);
        stats("bridle claim (cgroups)", claim);
        stats("bridle claim + exec `true` (cgroups)", exec);
        stats("bridle claim + exec + release (cgroups)", full);
        stats("bridle claim (cgroups, no disk quota)", claim_q);
        stats("bridle claim + exec `true` (cgroups, no disk quota)", exec_q);
        stats("bridle claim + exec + release (cgroups, no quota)", full_q);
        stats("bridle claim (rlimits only)", claim_n);
        stats("bridle claim + exec `true` (rlimits only)", exec_n);
        stats("bridle claim + exec + release (rlimits only)", full_n);
        stats("bridle pool claim (cgroups)", claim_p);
        stats("bridle pool claim + exec `true` (cgroups)", exec_p);
        stats("bridle pool claim + exec + release (cgroups)", full_p);
        stats("bridle pool claim (cgroups, no disk quota)", claim_pq);
        stats("bridle pool claim + exec `true` (no disk quota)", exec_pq);
        stats("bridle pool claim + exec + release (no quota)", full_pq);
        stats(&format!("gVisor claim ({gvisor_platform})"), claim_g);
        stats(&format!("gVisor claim + exec `true` ({gvisor_platform})"), exec_g);
        stats(&format!("gVisor claim + exec + release ({gvisor_platform})"), full_g);
        stats(
            &format!(
                "srt true ({})",
                srt_bin.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "srt not found".into())
            ),
            srt,
        );
        anyhow::Ok(())
    })
}
