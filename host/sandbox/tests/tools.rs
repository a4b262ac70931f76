//! Sandbox-as-tool: lazy claim, the toolset's calls inside the sandbox, exit
//! codes, truncation, time-outs, idle release and re-claim on the same workspace.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bridle_sandbox::tools::{ToolConfig, ToolSandbox};
use bridle_sandbox::{LocalConfig, LocalDriver, SandboxDriver};
use common::*;
use serde_json::json;

fn tools(d: &LocalDriver, session: &str) -> ToolSandbox {
    ToolSandbox::new(Arc::new(d.clone()), spec(session), ToolConfig { max_output_bytes: 2000, ..ToolConfig::default() })
}

#[tokio::test]
async fn bash_is_persistent_with_exit_codes_truncation_and_timeouts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let t = tools(&d, "tools-bash");
    assert!(t.sandbox().await.is_none(), "claimed lazily");
    let r = t.call("bash", &json!({"command": "echo hi; cd /tmp; export X=42; echo err >&2"})).await;
    assert_eq!(r.content, "hi\nerr\n", "{r:?}");
    assert!(!r.is_error && r.exit_code == Some(0));
    assert!(t.sandbox().await.is_some(), "claimed on the first call");

    let r = t.call("bash", &json!({"command": "pwd; echo $X"})).await;
    assert_eq!(r.content, "/tmp\n42\n", "{r:?}");

    let r = t.call("bash", &json!({"command": "echo out; false"})).await;
    assert!(r.is_error && r.exit_code == Some(1), "{r:?}");
    assert!(r.content.starts_with("out\n"), "{r:?}");

    let r = t.call("bash", &json!({"command": "head -c 5000 /dev/zero | tr '\\0' a"})).await;
    assert!(r.truncated, "{r:?}");
    assert!(r.content.starts_with(&"a".repeat(2000)), "{r:?}");
    assert!(r.content.contains("3000 more bytes omitted"), "{r:?}");

    let r = t.call("bash", &json!({"command": "echo before; sleep 20", "timeout_ms": 300})).await;
    assert!(r.timed_out && r.is_error, "{r:?}");
    assert!(r.content.starts_with("before\n"), "{r:?}");
    // A new session after the time-out: state is fresh, the sandbox the same.
    let r = t.call("bash", &json!({"command": "pwd; echo ${X:-unset}"})).await;
    assert_eq!(r.content, "/workspace\nunset\n", "{r:?}");

    let r = t.call("bash", &json!({"command": "exit 7"})).await;
    assert!(r.is_error && r.exit_code == Some(7), "{r:?}");
    let r = t.call("bash", &json!({"command": "echo again"})).await;
    assert_eq!(r.content, "again\n");

    let r = t.call("bash", &json!({"restart": true})).await;
    assert!(!r.is_error, "{r:?}");
    // Quoting of arbitrary commands survives the trip.
    let r = t.call("bash", &json!({"command": "printf '%s|' \"a'b\" 'c\"d' '$HOME' `echo e`"})).await;
    assert_eq!(r.content, "a'b|c\"d|$HOME|e|", "{r:?}");
    t.release().await.unwrap();
}

#[tokio::test]
async fn file_tools_work_inside_the_workspace_only() {
    let tmp = tempfile::tempdir().unwrap();
    let d = driver(tmp.path());
    let t = tools(&d, "tools-files");
    let r = t.call("write", &json!({"file_path": "src/a.txt", "content": "one\ntwo\nthree\ntwo\n"})).await;
    assert!(!r.is_error, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(d.workspace_path("tools-files").join("src/a.txt")).unwrap(),
        "one\ntwo\nthree\ntwo\n"
    );
    let r = t.call("read", &json!({"file_path": "/workspace/src/a.txt"})).await;
    assert_eq!(r.content, "     1\tone\n     2\ttwo\n     3\tthree\n     4\ttwo\n");
    let r = t.call("read", &json!({"file_path": "src/a.txt", "view_range": [2, 3]})).await;
    assert_eq!(r.content, "     2\ttwo\n     3\tthree\n");

    let r = t.call("edit", &json!({"file_path": "src/a.txt", "old_string": "two", "new_string": "2"})).await;
    assert!(r.is_error && r.content.contains("occurs 2 times"), "{r:?}");
    let r = t.call("edit", &json!({"file_path": "src/a.txt", "old_string": "three", "new_string": "3"})).await;
    assert!(!r.is_error, "{r:?}");
    let r = t
        .call("edit", &json!({"file_path": "src/a.txt", "old_string": "two", "new_string": "2", "replace_all": true}))
        .await;
    assert!(!r.is_error && r.content.contains("2 occurrences"), "{r:?}");
    let r = t.call("edit", &json!({"file_path": "src/a.txt", "old_string": "zzz", "new_string": "y"})).await;
    assert!(r.is_error && r.content.contains("not found"), "{r:?}");
    let r = t.call("read", &json!({"file_path": "src/a.txt"})).await;
    assert_eq!(r.content, "     1\tone\n     2\t2\n     3\t3\n     4\t2\n");

    t.call("write", &json!({"file_path": "src/deep/b.rs", "content": "fn main() {}\n"})).await;
    let r = t.call("glob", &json!({"pattern": "**/*.rs"})).await;
    assert_eq!(r.content, "/workspace/src/deep/b.rs", "{r:?}");
    let r = t.call("glob", &json!({"pattern": "src/*", "path": "/workspace"})).await;
    assert_eq!(r.content, "/workspace/src/a.txt\n/workspace/src/deep", "{r:?}");
    let r = t.call("glob", &json!({"pattern": "$(touch /workspace/pwned)*"})).await;
    assert_eq!(r.content, "No files found", "{r:?}");
    assert!(!d.workspace_path("tools-files").join("pwned").exists());
    let r = t.call("grep", &json!({"pattern": "fn ma+in"})).await;
    assert_eq!(r.content, "/workspace/src/deep/b.rs:1:fn main() {}", "{r:?}");
    let r = t.call("grep", &json!({"pattern": "nothing-here-xyz", "path": "src"})).await;
    assert_eq!(r.content, "No matches found", "{r:?}");

    // Outside the workspace: host files are not there or not writable.
    let r = t.call("write", &json!({"file_path": "/usr/evil", "content": "x"})).await;
    assert!(r.is_error, "{r:?}");
    assert!(!std::path::Path::new("/usr/evil").exists());
    let r = t.call("read", &json!({"file_path": "/etc/shadow"})).await;
    assert!(r.is_error, "{r:?}");
    let r = t.call("read", &json!({"file_path": tmp.path().join("state/etc/passwd")})).await;
    assert!(r.is_error, "{r:?}");
    let r = t.call("nope", &json!({})).await;
    assert!(r.is_error);
    let r = t.call("read", &json!({"path": "x"})).await;
    assert!(r.is_error && r.content.contains("invalid read input"), "{r:?}");
    t.release().await.unwrap();
}

#[tokio::test]
async fn idle_sandboxes_are_released_and_workspace_kept_until_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    init_tracing();
    common::ensure_bubblewrap();
    let d = LocalDriver::new(LocalConfig {
        state_dir: tmp.path().join("state"),
        init_binary: Some(env!("CARGO_BIN_EXE_bridle-sandbox-init").into()),
        uid_base: 690_000 + std::process::id() % 1000 * 10,
        uid_count: 10,
        idle_timeout: Some(Duration::from_millis(700)),
        ..LocalConfig::default()
    })
    .unwrap();
    let t = tools(&d, "tools-idle");
    let r = t.call("write", &json!({"file_path": "keep.txt", "content": "kept"})).await;
    assert!(!r.is_error, "{r:?}");
    let first = t.sandbox().await.unwrap();
    let first_id = first.id().to_string();
    // A long-running call is not idle.
    let r = t.call("bash", &json!({"command": "sleep 1.5; echo slept"})).await;
    assert_eq!(r.content, "slept\n", "{r:?}");
    assert!(first.is_running());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(!first.is_running(), "released after idling");
    assert!(t.sandbox().await.is_none());
    // The next call claims again, on the same workspace.
    let r = t.call("read", &json!({"file_path": "keep.txt"})).await;
    assert_eq!(r.content, "     1\tkept\n", "{r:?}");
    let second = t.sandbox().await.unwrap();
    assert_ne!(second.id(), first_id);
    t.release().await.unwrap();
    assert!(d.workspace_exists("tools-idle").await.unwrap());
    d.delete_workspace("tools-idle").await.unwrap();
    assert!(!d.workspace_exists("tools-idle").await.unwrap());
    assert!(!d.workspace_path("tools-idle").exists());
    assert!(d.resume(spec("tools-idle")).await.is_err(), "nothing to resume");
}
