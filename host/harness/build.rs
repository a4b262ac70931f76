//! Builds the built-in harness plugins (plugins/claude, codex, openai-agents)
//! for wasm32-wasip2 and embeds them, so `cargo run` needs no extra step.
//!
//! The nested cargo uses its own target dir (`target/plugins-wasm`), so it
//! never waits on the outer build's lock, and runs with the outer cargo's
//! environment scrubbed (CARGO_*, RUSTFLAGS, clippy's RUSTC_WORKSPACE_WRAPPER
//! would otherwise leak into the wasm build).
//!
//! A plugin that does not build, or builds no `.wasm` (no `cdylib` yet), is
//! embedded as "unavailable" with the reason and a cargo warning; set
//! `BRIDLE_REQUIRE_BUILTINS=1` to make that a build failure (CI, releases).
//! `BRIDLE_SKIP_PLUGIN_BUILD=1` skips the nested build entirely.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const BUILTINS: &[(&str, &str)] = &[
    ("claude", "bridle-plugin-claude"),
    ("codex", "bridle-plugin-codex"),
    ("openai-agents", "bridle-plugin-openai-agents"),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());

    println!("cargo:rerun-if-changed={}", root.join("plugins").display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed={}", root.join("Cargo.lock").display());
    println!("cargo:rerun-if-env-changed=BRIDLE_REQUIRE_BUILTINS");
    println!("cargo:rerun-if-env-changed=BRIDLE_SKIP_PLUGIN_BUILD");

    let require = env::var("BRIDLE_REQUIRE_BUILTINS").is_ok_and(|v| v == "1");
    let skip = env::var("BRIDLE_SKIP_PLUGIN_BUILD").is_ok_and(|v| v == "1");
    let wasm_dir = root.join("target/plugins-wasm");

    let mut code = String::from("pub(crate) static BUILTINS: &[Builtin] = &[\n");
    for (name, package) in BUILTINS {
        let result = if skip {
            Err("not built (BRIDLE_SKIP_PLUGIN_BUILD=1)".to_string())
        } else {
            build_plugin(&root, &wasm_dir, package)
        };
        let wasm = match result {
            Ok(wasm) => {
                let embedded = out_dir.join(format!("{name}.wasm"));
                // A new file, never a rewrite of the old one in place: a target
                // dir shared by hard links (a copied cache) must not change under
                // another build.
                let _ = std::fs::remove_file(&embedded);
                std::fs::copy(&wasm, &embedded).expect("copying the plugin component");
                format!("Ok(include_bytes!({:?}))", embedded.display().to_string())
            }
            Err(reason) => {
                if require {
                    panic!("builtin harness {name} ({package}) is not available: {reason}");
                }
                println!("cargo:warning=builtin harness {name} not embedded: {reason}");
                format!("Err({reason:?})")
            }
        };
        writeln!(code, "    Builtin {{ name: {name:?}, package: {package:?}, wasm: {wasm} }},").unwrap();
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("builtins.rs"), code).unwrap();
}

/// `cargo build --release --target wasm32-wasip2 -p <package>`; the path of
/// the component, or why there is none.
fn build_plugin(root: &Path, target_dir: &Path, package: &str) -> Result<PathBuf, String> {
    match build_plugin_once(root, target_dir, package) {
        // rust-toolchain.toml lists the target, but rustup adds listed targets
        // only when it installs the toolchain: add it to an existing one.
        Err(e) if e.contains("rustup target add") => {
            let added = Command::new("rustup").args(["target", "add", TARGET]).current_dir(root).status();
            if added.is_ok_and(|s| s.success()) { build_plugin_once(root, target_dir, package) } else { Err(e) }
        }
        other => other,
    }
}

fn build_plugin_once(root: &Path, target_dir: &Path, package: &str) -> Result<PathBuf, String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", TARGET, "-p", package])
        .arg("--target-dir")
        .arg(target_dir);
    scrub_env(&mut cmd);
    // The embedded artifact is what every session runs: optimize it as a
    // whole (cross-crate inlining of serde_json matters in wasm).
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "true").env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    let output = cmd.output().map_err(|e| format!("could not run cargo: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("target may not be installed") {
            " (run `rustup target add wasm32-wasip2`)"
        } else {
            ""
        };
        let tail: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).take(3).collect();
        return Err(format!("cargo build failed{hint}: {}", tail.join(" | ")));
    }
    let file = target_dir.join(TARGET).join("release").join(format!("{}.wasm", package.replace('-', "_")));
    if file.is_file() {
        Ok(file)
    } else {
        Err("the crate builds no component yet (needs crate-type = [\"cdylib\", \"rlib\"] and bridle_harness_sdk::export_harness!)".into())
    }
}

/// Drop what the outer cargo set for *this* build: the nested build must
/// behave like a plain `cargo build` from a shell.
fn scrub_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = (key.starts_with("CARGO_")
            && key != "CARGO_HOME"
            && !key.starts_with("CARGO_NET_")
            && !key.starts_with("CARGO_REGISTRIES_")
            && !key.starts_with("CARGO_HTTP_"))
            || key.starts_with("RUSTC")
            || key.starts_with("DEP_")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "CARGO"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "CARGO_MAKEFLAGS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
            );
        if leaks {
            cmd.env_remove(key);
        }
    }
}
