//! A trap, an endless loop, a memory blow-up and a wrong contract version
//! each give a clear typed error; the engine and other sessions carry on.

mod support;

use bridle_harness::{HarnessError, PluginSource};
use support::{fixtures, runtime, spec};

fn faulty_runtime() -> bridle_harness::HarnessRuntime {
    runtime(&[("faulty", PluginSource::Path(fixtures().faulty.clone()))])
}

/// Drive one fault, then prove the same plugin still serves a new session
/// and the faulted instance refuses further calls.
async fn fault_then_recover(line: &str) -> HarnessError {
    let rt = faulty_runtime();
    let plugin = rt.plugin("faulty").unwrap();
    let mut bystander = plugin.new_session(&spec()).await.unwrap();
    let mut session = plugin.new_session(&spec()).await.unwrap();
    let err = session.on_output(line).await.unwrap_err();
    assert!(err.is_fault(), "{err:?}");
    assert_eq!(err.plugin(), Some("faulty"));

    // The faulted instance is poisoned...
    let again = session.on_output("hello").await.unwrap_err();
    assert!(matches!(again, HarnessError::Poisoned { .. }), "{again:?}");
    assert!(session.poisoned().is_some());

    // ...a session created before the fault is unaffected...
    let actions = bystander.on_output("still here").await.unwrap();
    assert_eq!(actions.len(), 1);

    // ...and a new session works.
    let mut fresh = plugin.new_session(&spec()).await.unwrap();
    assert_eq!(fresh.launch().await.unwrap().argv, vec!["faulty"]);
    assert_eq!(fresh.on_output("hello").await.unwrap().len(), 1);
    err
}

#[tokio::test]
async fn trap_is_a_typed_error_with_the_panic_message() {
    let err = fault_then_recover("trap").await;
    match &err {
        HarnessError::Trap { plugin, message } => {
            assert_eq!(plugin, "faulty");
            assert!(message.contains("fixture asked to trap"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(err.to_string().starts_with("plugin faulty trapped"), "{err}");
}

#[tokio::test]
async fn endless_loop_times_out() {
    let started = std::time::Instant::now();
    let err = fault_then_recover("loop").await;
    assert!(matches!(err, HarnessError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("exceeded its time limit"), "{err}");
    // Not a timed assertion on performance: only that the deadline fired
    // at all instead of hanging the test.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_cap() {
    let err = fault_then_recover("alloc").await;
    assert!(matches!(err, HarnessError::MemoryExceeded { limit_bytes, .. } if limit_bytes == 32 << 20), "{err:?}");
}

#[tokio::test]
async fn a_looping_plugin_does_not_block_other_tasks() {
    // current_thread-like check: while one session spins until its deadline,
    // another task on the same runtime keeps making progress, because the
    // guest yields at every epoch tick.
    let rt = faulty_runtime();
    let plugin = rt.plugin("faulty").unwrap();
    let mut looping = plugin.new_session(&spec()).await.unwrap();
    let ticker = tokio::spawn(async {
        let mut n = 0;
        for _ in 0..5 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            n += 1;
        }
        n
    });
    let err = looping.on_output("loop").await.unwrap_err();
    assert!(matches!(err, HarnessError::Timeout { .. }));
    assert_eq!(ticker.await.unwrap(), 5);
}

#[tokio::test]
async fn plugin_errors_are_not_faults() {
    let rt = faulty_runtime();
    let plugin = rt.plugin("faulty").unwrap();
    let mut session = plugin.new_session(&spec()).await.unwrap();
    let err = session.on_output("error").await.unwrap_err();
    assert_eq!(err, HarnessError::Plugin { plugin: "faulty".into(), message: "fixture returned an error".into() });
    assert!(!err.is_fault());
    assert_eq!(session.on_output("fine").await.unwrap().len(), 1);

    let bad = bridle_harness::LlmEndpoint { base_url: Some("http://bad.example".into()), model: "m".into() };
    let rejected = plugin.check_endpoint(&bad).await.unwrap_err();
    assert!(matches!(rejected, HarnessError::Plugin { .. }), "{rejected:?}");
}

#[tokio::test]
async fn a_trap_in_a_plugin_level_call_leaves_the_plugin_usable() {
    let rt = faulty_runtime();
    let plugin = rt.plugin("faulty").unwrap();
    let trap = bridle_harness::LlmEndpoint { base_url: Some("trap".into()), model: "m".into() };
    let err = plugin.check_endpoint(&trap).await.unwrap_err();
    assert!(matches!(err, HarnessError::Trap { .. }), "{err:?}");
    let ok = bridle_harness::LlmEndpoint { base_url: Some("http://fine".into()), model: "m".into() };
    plugin.check_endpoint(&ok).await.unwrap();
}

/// Instances that end give their pool slot to the next one: it must start from the module's
/// own memory, whatever the last one wrote (the pool resets only the pages it finds dirty).
#[tokio::test]
async fn a_new_instance_starts_with_clean_memory() {
    let rt = faulty_runtime();
    let plugin = rt.plugin("faulty").unwrap();
    let count = |actions: Vec<bridle_harness::Action>| match actions.as_slice() {
        [bridle_harness::Action::Emit(json)] => json.clone(),
        other => panic!("expected one event, got {other:?}"),
    };
    for _ in 0..3 {
        let mut session = plugin.new_session(&spec()).await.unwrap();
        for n in 1..=3 {
            let text = count(session.on_output("count").await.unwrap());
            assert!(text.contains(&format!("\"text\":\"{n}\"")), "{text}");
        }
        // Also dirty many pages (2 MiB of heap) before the slot is handed on.
        session.on_output(&"x".repeat(2 << 20)).await.unwrap();
    }
}

#[test]
fn wrong_contract_version_is_refused_with_a_clear_message() {
    let rt = runtime(&[("future", PluginSource::Path(fixtures().wrong_version.clone()))]);
    let err = rt.plugin("future").unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin future was built for bridle:harness@0.9.0; this host supports 0.1.x, 0.2.x, 0.3.x"
    );
    assert!(matches!(err, HarnessError::UnsupportedContract { .. }));

    let description = bridle_harness::inspect(&fixtures().wrong_version).unwrap();
    assert_eq!(description.contract_version.as_deref(), Some("0.9.0"));
    assert!(description.error.is_some());
    assert!(description.to_string().contains("NOT LOADABLE"));
}

#[test]
fn a_component_that_is_not_a_harness_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wasm");
    // The smallest valid component: magic + component-model layer version.
    std::fs::write(&empty, b"\0asm\x0d\x00\x01\x00").unwrap();
    let rt = runtime(&[("empty", PluginSource::Path(empty.clone()))]);
    let err = rt.plugin("empty").unwrap_err();
    assert!(matches!(err, HarnessError::NotAHarness { .. }), "{err:?}");

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let rt = runtime(&[("junk", PluginSource::Path(junk))]);
    let err = rt.plugin("junk").unwrap_err();
    assert!(matches!(err, HarnessError::Load { .. }), "{err:?}");
    assert!(rt.plugin("nope").unwrap_err().to_string().contains("no harness plugin"));
}

#[test]
fn plugin_log_lines_reach_tracing_with_plugin_and_session() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    tracing::subscriber::with_default(subscriber, || {
        let rt = faulty_runtime();
        let plugin = rt.plugin("faulty").unwrap();
        futures_lite_block_on(async {
            let mut session = plugin.new_session(&spec()).await.unwrap();
            assert!(session.on_output("log").await.unwrap().is_empty());
        });
    });
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let line =
        out.lines().find(|l| l.contains("hello from faulty")).unwrap_or_else(|| panic!("no log line in:\n{out}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("plugin=\"faulty\""), "{line}");
    assert!(line.contains("session_id=\"sesn_test\""), "{line}");
}

/// Every call is timed and every fault counted, under the plugin's engine name and the call.
#[test]
fn calls_and_faults_are_recorded_as_metrics() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let rt = faulty_runtime();
    let plugin = rt.plugin("faulty").unwrap();
    metrics::with_local_recorder(&recorder, || {
        futures_lite_block_on(async {
            let mut session = plugin.new_session(&spec()).await.unwrap();
            session.on_output("hello").await.unwrap();
            session.on_output("hello").await.unwrap();
            assert!(matches!(session.on_output("trap").await, Err(HarnessError::Trap { .. })));
            // Poisoned: refused without entering wasm, so neither timed nor counted again.
            assert!(matches!(session.on_output("hello").await, Err(HarnessError::Poisoned { .. })));
        });
    });
    let text = handle.render();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
            .to_owned()
    };
    let calls = "bridle_plugin_call_duration_seconds_count{plugin=\"faulty\",call=";
    assert_eq!(line(&format!("{calls}\"new_session\"}}")), "1");
    assert_eq!(line(&format!("{calls}\"on_output\"}}")), "3");
    assert_eq!(line("bridle_plugin_faults_total{plugin=\"faulty\",call=\"on_output\",kind=\"trap\"}"), "1");
}

fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}
