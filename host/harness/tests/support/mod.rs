//! Test support: builds the wasm fixtures once per test binary.
//!
//! Fixtures are built here rather than in build.rs so ordinary builds never
//! pay for them. The nested cargo uses `target/plugins-wasm` (the same dir
//! as build.rs's builtins, sharing compiled dependencies) and a scrubbed
//! environment, like build.rs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use bridle_harness::{HarnessConfig, HarnessRuntime, Limits, PluginSource};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn target_dir() -> PathBuf {
    repo_root().join("target/plugins-wasm")
}

fn cargo_wasm(args: &[&str]) {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(repo_root())
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(args)
        .arg("--target-dir")
        .arg(target_dir());
    scrub(&mut cmd);
    let out = cmd.output().expect("running cargo for the wasm fixtures");
    assert!(out.status.success(), "building wasm fixtures failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// The outer cargo's per-build environment must not leak into nested builds.
fn scrub(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key.starts_with("RUSTC") || key == "RUSTFLAGS" {
            cmd.env_remove(key);
        }
    }
}

fn wasm_file(crate_name: &str) -> PathBuf {
    target_dir().join("wasm32-wasip2/release").join(format!("{crate_name}.wasm"))
}

pub struct Fixtures {
    pub faulty: PathBuf,
    pub wrong_version: PathBuf,
    /// The echo template frozen at contract 0.1.0.
    pub echo_v0_1: PathBuf,
    /// An echo frozen at contract 0.2.0.
    pub echo_v0_2: PathBuf,
}

pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        cargo_wasm(&[
            "-p",
            "bridle-harness-fixture-faulty",
            "-p",
            "bridle-harness-fixture-wrong-version",
            "-p",
            "bridle-harness-fixture-echo-v0-1",
            "-p",
            "bridle-harness-fixture-echo-v0-2",
        ]);
        Fixtures {
            faulty: wasm_file("bridle_harness_fixture_faulty"),
            wrong_version: wasm_file("bridle_harness_fixture_wrong_version"),
            echo_v0_1: wasm_file("bridle_harness_fixture_echo_v0_1"),
            echo_v0_2: wasm_file("bridle_harness_fixture_echo_v0_2"),
        }
    })
}

/// examples/harness-template, built the way a third-party author would.
pub fn template() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let manifest = repo_root().join("examples/harness-template/Cargo.toml");
        cargo_wasm(&["--manifest-path", manifest.to_str().unwrap()]);
        wasm_file("harness_template")
    })
}

/// examples/harness-template built with `cargo component build` (wasip1 +
/// adapter). Installs cargo-component (pinned) and the wasip1 target first
/// when they are missing: the test never skips for want of a tool.
pub fn template_cargo_component() -> Option<&'static Path> {
    static T: OnceLock<Option<PathBuf>> = OnceLock::new();
    T.get_or_init(|| {
        let probe = Command::new("cargo").args(["component", "--version"]).output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!("installing cargo-component 0.21.1 (once; takes a few minutes)");
            let mut install = Command::new("cargo");
            install.args(["install", "cargo-component", "--locked", "--version", "0.21.1"]);
            scrub(&mut install);
            let out = install.output().expect("running cargo install");
            assert!(
                out.status.success(),
                "cargo install cargo-component failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let target = Command::new("rustup").args(["target", "add", "wasm32-wasip1"]).output();
        assert!(target.is_ok_and(|o| o.status.success()), "rustup target add wasm32-wasip1 failed");
        let mut cmd = Command::new("cargo");
        cmd.current_dir(repo_root().join("examples/harness-template"))
            .args(["component", "build", "--release", "--target-dir"])
            .arg(target_dir().join("cargo-component"));
        scrub(&mut cmd);
        let out = cmd.output().expect("running cargo component");
        assert!(out.status.success(), "cargo component build failed:\n{}", String::from_utf8_lossy(&out.stderr));
        Some(target_dir().join("cargo-component/wasm32-wasip1/release/harness_template.wasm"))
    })
    .as_deref()
}

/// A runtime with only the given engines (no builtins) and short limits.
pub fn runtime(plugins: &[(&str, PluginSource)]) -> HarnessRuntime {
    let mut config = HarnessConfig {
        harnesses: Default::default(),
        limits: Limits { memory_bytes: 32 << 20, call_timeout_ms: 300, ..Limits::default() },
        ..HarnessConfig::default()
    };
    for (engine, source) in plugins {
        config = config.with_plugin(*engine, source.clone());
    }
    HarnessRuntime::new(config).expect("runtime starts")
}

/// The session spec the tests use, typed.
pub fn spec() -> bridle_harness::SessionSpec {
    bridle_harness::SessionSpec::from_json(SPEC).unwrap()
}

pub const SPEC: &str = r#"{"session_id":"sesn_test","agent":{"name":"a","model":"m"},"workspace":"/workspace","resume":null,"llm":{"base_url":"http://127.0.0.1:9/llm","upstream_base_url":null,"model":"m"},"resident":false}"#;
