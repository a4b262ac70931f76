//! Per-session instantiation cost, and mapping throughput of each builtin
//! plugin through wasmtime against the same code compiled natively.
//!
//! Run: `cargo bench -p bridle-harness --bench plugins`
//!
//! Mapping: one recorded transcript per plugin (its golden-test data), fed
//! step by step (`on_input` / `on_output` / `on_exit`); only the steps are
//! timed, not session creation, on both sides. `cold` times the first pass
//! over a fresh session (a fresh wasm instance: every heap page is touched
//! for the first time); `warm` times a second pass over the same session,
//! the steady state of a live session.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bridle_harness::{HarnessConfig, HarnessRuntime, Limits, Plugin};
use bridle_harness_sdk::{HarnessSession, SessionSpec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

enum Step {
    In(String),
    Out(String),
    Exit(Option<i32>),
}

fn spec() -> String {
    json!({
        "session_id": "sesn_bench",
        "agent": {"model": {"id": "claude-sonnet-4-5"}, "system": null, "tools": [
            {"type": "agent_toolset_20260401",
             "default_config": {"enabled": true, "permission_policy": {"type": "always_allow"}}}
        ]},
        "workspace": "/workspace",
        "resume": null,
        "llm": {"base_url": "http://10.0.0.1:7070/llm", "upstream_base_url": null, "model": "claude-sonnet-4-5"},
        "resident": false
    })
    .to_string()
}

/// A golden-test case: a bare transcript (a user message, then every line
/// as runtime output) or a `.script.jsonl` of in/out/exit steps.
fn load(plugin: &str, case: &str) -> Vec<Step> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins").join(plugin).join("tests/data").join(case);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut steps = Vec::new();
    if case.ends_with(".script.jsonl") {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(e) = v.get("in") {
                steps.push(Step::In(e.to_string()));
            } else if let Some(o) = v.get("out") {
                steps.push(Step::Out(match o {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }));
            } else if let Some(c) = v.get("exit") {
                steps.push(Step::Exit(c.as_i64().map(|c| c as i32)));
            }
        }
    } else {
        steps.push(Step::In(
            json!({"type": "user.message", "id": "sevt_user_1",
                   "content": [{"type": "text", "text": "say hi"}]})
            .to_string(),
        ));
        steps.extend(text.lines().map(|l| Step::Out(l.to_string())));
    }
    steps
}

/// `warmup` untimed passes over the steps, then one timed pass, on a fresh
/// session per iteration. `warmup = 0` is a cold session (fresh heap);
/// `warmup = 1` is the steady state of a live session.
fn native_run<S: HarnessSession>(steps: &[Step], spec: &str, iters: u64, warmup: usize) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut s = S::new(SessionSpec::from_json(spec).unwrap());
        for pass in 0..=warmup {
            let start = Instant::now();
            for step in steps {
                let _ = std::hint::black_box(match step {
                    Step::In(e) => s.on_input(serde_json::from_str(e).unwrap()),
                    Step::Out(line) => s.on_output(line),
                    Step::Exit(code) => Ok(s.on_exit(*code)),
                });
            }
            if pass == warmup {
                total += start.elapsed();
            }
        }
    }
    total
}

async fn wasm_run(plugin: &Plugin, steps: &[Step], spec: &str, iters: u64, warmup: usize) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut s = plugin.new_session(&SessionSpec::from_json(spec).unwrap()).await.unwrap();
        for pass in 0..=warmup {
            let start = Instant::now();
            for step in steps {
                let _ = std::hint::black_box(match step {
                    Step::In(e) => s.on_input(e).await,
                    Step::Out(line) => s.on_output(line).await,
                    Step::Exit(code) => s.on_exit(*code).await,
                });
            }
            if pass == warmup {
                total += start.elapsed();
            }
        }
    }
    total
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn harness(pooling: bool) -> HarnessRuntime {
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugin-cache-bench");
    HarnessRuntime::new(HarnessConfig {
        cache_dir: Some(cache),
        limits: Limits { pooling, ..Limits::default() },
        ..HarnessConfig::default()
    })
    .unwrap()
}

fn mapping(c: &mut Criterion) {
    let rt = tokio_rt();
    let runtime = harness(true);
    let spec = spec();
    let cases: [(&str, &str); 3] =
        [("claude", "cc2.jsonl"), ("codex", "cx1.jsonl"), ("openai-agents", "rec_tool.script.jsonl")];
    for (name, case) in cases {
        let steps = load(name, case);
        let plugin = runtime.plugin(name).unwrap();
        let mut group = c.benchmark_group(format!("mapping/{name}"));
        group.throughput(Throughput::Elements(steps.len() as u64));
        for (label, warmup) in [("cold", 0), ("warm", 1)] {
            group.bench_function(format!("native/{label}"), |b| {
                b.iter_custom(|iters| match name {
                    "claude" => native_run::<bridle_plugin_claude::ClaudeSession>(&steps, &spec, iters, warmup),
                    "codex" => native_run::<bridle_plugin_codex::CodexSession>(&steps, &spec, iters, warmup),
                    _ => native_run::<bridle_plugin_openai_agents::AgentsSession>(&steps, &spec, iters, warmup),
                })
            });
            group.bench_function(format!("wasm/{label}"), |b| {
                b.iter_custom(|iters| rt.block_on(wasm_run(&plugin, &steps, &spec, iters, warmup)))
            });
        }
        group.finish();
    }
}

fn instantiation(c: &mut Criterion) {
    let rt = tokio_rt();
    let spec = spec();
    for pooling in [true, false] {
        let runtime = harness(pooling);
        let label = if runtime.pooling() { "pooling" } else { "on-demand" };
        let plugin = runtime.plugin("claude").unwrap();
        let mut group = c.benchmark_group(format!("instantiate/{label}"));
        group.bench_function("store+instantiate_pre", |b| b.iter(|| rt.block_on(plugin.bench_instantiate()).unwrap()));
        group.bench_function("new_session (incl. constructor)", |b| {
            let spec = SessionSpec::from_json(&spec).unwrap();
            b.iter(|| rt.block_on(plugin.new_session(&spec)).unwrap())
        });
        group.finish();
    }
}

/// The floor: one call that does (almost) nothing, through wasmtime vs native.
fn call_overhead(c: &mut Criterion) {
    let rt = tokio_rt();
    let runtime = harness(true);
    let spec = spec();
    let plugin = runtime.plugin("claude").unwrap();
    let mut wasm = rt.block_on(plugin.new_session(&SessionSpec::from_json(&spec).unwrap())).unwrap();
    let mut native =
        <bridle_plugin_claude::ClaudeSession as HarnessSession>::new(SessionSpec::from_json(&spec).unwrap());
    let mut group = c.benchmark_group("call/claude on_output(\"\")");
    group.bench_function("native", |b| b.iter(|| std::hint::black_box(native.on_output(""))));
    group.bench_function("wasm", |b| b.iter(|| rt.block_on(wasm.on_output(""))));
    group.finish();
}

criterion_group!(benches, instantiation, call_overhead, mapping);
criterion_main!(benches);
