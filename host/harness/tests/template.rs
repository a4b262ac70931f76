//! The template plugin (examples/harness-template), built like a
//! third-party plugin, swapped in by config under a new engine name.

mod support;

use bridle_harness::{Action, HarnessConfig, HarnessRuntime, Limits, LlmEndpoint, PreviewedType};
use serde_json::{Value, json};
use support::{spec, template};

fn runtime_from_toml() -> HarnessRuntime {
    runtime_for(template())
}

fn runtime_for(wasm: &std::path::Path) -> HarnessRuntime {
    // What an operator writes; `[harnesses.*]` goes over the builtins.
    let toml = format!(
        r#"
        [harnesses.echo]
        plugin = "{}"
        "#,
        wasm.display()
    );
    let operator: HarnessConfig = toml::from_str(&toml).unwrap();
    let config = HarnessConfig { harnesses: Default::default(), limits: Limits::default(), ..HarnessConfig::default() }
        .merge(operator.harnesses);
    HarnessRuntime::new(config).unwrap()
}

#[tokio::test]
async fn template_runs_a_session_under_a_new_engine_name() {
    drive_echo(runtime_from_toml()).await;
}

#[tokio::test]
async fn template_built_with_cargo_component_runs_too() {
    let wasm = support::template_cargo_component().expect("cargo component build of the template");
    drive_echo(runtime_for(wasm)).await;
}

async fn drive_echo(rt: HarnessRuntime) {
    assert_eq!(rt.registry().engines().collect::<Vec<_>>(), vec!["echo"]);
    let echo = rt.registry().get("echo").unwrap();
    assert_eq!(echo.info().name, "echo");
    assert_eq!(echo.contract_version(), "0.3.0");
    assert_eq!(echo.info().model_paths, ["/v1/messages", "/v1/messages/count_tokens"]);

    let llm = LlmEndpoint { base_url: Some("https://api.example.com".into()), model: "m".into() };
    echo.check_endpoint(&llm).await.unwrap();
    let bad = LlmEndpoint { base_url: Some("ftp://x".into()), model: "m".into() };
    assert!(echo.check_endpoint(&bad).await.is_err());
    let creds = echo.credentials(&llm).await.unwrap();
    assert_eq!(creds.inject[0].header, "x-api-key");

    let mut session = echo.new_session(&spec()).await.unwrap();
    assert_eq!(session.session_id(), Some("sesn_test"));
    let plan = session.launch().await.unwrap();
    assert_eq!(plan.argv, vec!["cat"]);
    assert_eq!(plan.cwd.as_deref(), Some("/workspace"));
    assert!(plan.env.contains(&("ECHO_BASE_URL".into(), "http://127.0.0.1:9/llm".into())));

    let input = session
        .on_input(r#"{"type":"user.message","id":"sevt_1","content":[{"type":"text","text":"hello"}]}"#)
        .await
        .unwrap();
    let Action::Write(bytes) = &input[0] else { panic!("{input:?}") };
    let line = std::str::from_utf8(bytes).unwrap();
    assert_eq!(line, "{\"text\":\"hello\",\"type\":\"user\"}\n");

    // `cat` echoes the line back; the plugin previews it, then maps it to
    // an agent message carrying the preview's id.
    let out = session.on_output(line.trim_end()).await.unwrap();
    assert_eq!(out.len(), 4, "{out:?}");
    let Action::Emit(event) = &out[2] else { panic!("{out:?}") };
    let event: Value = serde_json::from_str(event).unwrap();
    assert_eq!(event["type"], "agent.message");
    assert_eq!(event["content"], json!([{"type": "text", "text": "hello"}]));
    // Inside the host, event ids come from the host: sevt_ + a ULID.
    let id = event["id"].as_str().unwrap();
    assert!(id.starts_with("sevt_") && id.len() == 5 + 26, "{id}");
    assert_eq!(out[0], Action::preview_start(id, PreviewedType::AgentMessage));
    assert_eq!(out[1], Action::preview_text(id, 0, "hello"));
    assert_eq!(out[3], Action::end_turn());

    let retry = session.on_output(r#"{"type":"retry","attempt":1,"delay_ms":250}"#).await.unwrap();
    assert!(matches!(&retry[..], [Action::Retrying(r)] if r.delay_ms == Some(250)));
    let resumed = session.on_output(r#"{"type":"done"}"#).await.unwrap();
    assert_eq!(resumed, vec![Action::Resumed, Action::end_turn()]);

    let exit = session.on_exit(Some(1)).await.unwrap();
    assert!(matches!(&exit[..], [Action::Failed(_)]));

    // A mapping error is the plugin's own words and leaves the instance usable.
    let err = session.on_output("not json").await.unwrap_err();
    assert!(!err.is_fault());
    assert!(session.on_output(r#"{"type":"done"}"#).await.is_ok());
}

#[test]
fn inspect_describes_the_template() {
    let d = bridle_harness::inspect(template()).unwrap();
    assert_eq!(d.contract_version.as_deref(), Some("0.3.0"));
    assert_eq!(d.info.as_ref().unwrap().name, "echo");
    assert!(d.error.is_none(), "{d}");
    assert!(d.exports.iter().any(|e| e == "bridle:harness/adapter@0.3.0"));
    assert!(d.imports.iter().any(|i| i == "bridle:harness/host@0.3.0"));
    let text = d.to_string();
    assert!(text.contains("status:      ok"), "{text}");
}
