//! # Writing a Bridle harness plugin
//!
//! A harness plugin teaches Bridle one agent runtime's native protocol. It is
//! a WebAssembly component exporting `bridle:harness/adapter@0.3.0` (the
//! contract lives in `wit/0.3.0/harness.wit` at the repository root). This crate
//! hides the component plumbing: you write plain Rust against two traits, and
//! the same code runs natively (for golden tests and benchmarks) and inside
//! the host as a component.
//!
//! ## The shape of a plugin
//!
//! ```
//! use bridle_harness_sdk::{
//!     Action, ApiShape, CredentialPlan, ExecutionModel, Harness, HarnessInfo,
//!     HarnessSession, HeaderRule, LaunchPlan, LlmEndpoint, SessionSpec,
//! };
//! use serde_json::{json, Value};
//!
//! pub struct Echo;
//!
//! impl Harness for Echo {
//!     type Session = EchoSession;
//!     fn info() -> HarnessInfo {
//!         HarnessInfo {
//!             name: "echo".into(),
//!             version: "0.1.0".into(),
//!             execution_model: ExecutionModel::AgentInSandbox,
//!             api_shape: ApiShape::AnthropicMessages,
//!             description: "echoes user messages".into(),
//!             model_paths: ApiShape::AnthropicMessages.default_model_paths(),
//!             remote_tools: false,
//!         }
//!     }
//!     fn check_endpoint(_llm: &LlmEndpoint) -> Result<(), String> { Ok(()) }
//!     fn credentials(_llm: &LlmEndpoint) -> CredentialPlan {
//!         CredentialPlan {
//!             env: vec![("ECHO_API_KEY".into(), "placeholder".into())],
//!             inject: vec![HeaderRule::new("authorization", "Bearer {token}")],
//!         }
//!     }
//! }
//!
//! pub struct EchoSession { spec: SessionSpec }
//!
//! impl HarnessSession for EchoSession {
//!     fn new(spec: SessionSpec) -> Self { EchoSession { spec } }
//!     fn launch(&mut self) -> Result<LaunchPlan, String> {
//!         Ok(LaunchPlan { argv: vec!["cat".into()], ..Default::default() })
//!     }
//!     fn on_input(&mut self, event: Value) -> Result<Vec<Action>, String> {
//!         Ok(vec![Action::write_line(&event)])
//!     }
//!     fn on_output(&mut self, line: &str) -> Result<Vec<Action>, String> {
//!         let event: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
//!         Ok(vec![
//!             Action::emit_json(&json!({"type": "agent.message", "content": event["content"]})),
//!             Action::end_turn(),
//!         ])
//!     }
//!     fn on_exit(&mut self, _code: Option<i32>) -> Vec<Action> { vec![] }
//! }
//!
//! bridle_harness_sdk::export_harness!(Echo);
//! # fn main() {}
//! ```
//!
//! * [`Harness`] holds the static, per-plugin functions (`info`,
//!   `check_endpoint`, `credentials`).
//! * [`HarnessSession`] is one live session. The host creates a fresh
//!   instance per session run (a new wasm `Store`), and calls its methods one
//!   at a time, so `&mut self` state is all you need: no locks, no statics.
//! * [`export_harness!`] emits the component exports, and only when compiling
//!   for `wasm32`; on the host target it expands to nothing, so the crate is a
//!   normal Rust library there.
//! * [`wire::read_line`] reads one runtime line into the plugin's serde
//!   types of its runtime's protocol (keep them in the plugin's
//!   `protocol.rs`); stray output is logged and skipped, and [`wire::loose`]
//!   makes a field of another shape read as absent instead of failing the
//!   message.
//! * What every runtime's mapping repeats is here too: [`events`] builds the
//!   span pair (with `model_usage`), tool results and text content;
//!   [`confirmation`] reads `user.tool_confirmation`; [`custom`], [`remote`],
//!   [`policy`], [`previews`] and [`progress`] keep custom tools, worker
//!   tools, permission policies, previews and retry reports.
//! * Natively, `golden` runs a plugin's transcript cases
//!   (`golden_cases!`) and `endpoint_cases` its endpoint tables.
//! * [`new_event_id`] and [`log`] call the host's imports inside wasm. Natively
//!   they are deterministic stand-ins: ids are `sevt_test_0001`,
//!   `sevt_test_0002`, ... per thread (reset with [`reset_event_ids`]), so
//!   golden files are stable; log lines go to stderr.
//!
//! A plugin reports facts; it never acts. It has no filesystem, network,
//! clock or randomness (the host gives it none), and it never emits
//! `session.status_*` or `session.error`: the host derives those from
//! [`Action::Retrying`], [`Action::Resumed`], [`Action::TurnEnded`] and
//! [`Action::Failed`]. Every emitted event is validated by the host before it
//! is stored.
//!
//! ## Errors and panics
//!
//! Return `Err(String)` for input you cannot map (the host turns it into a
//! `session.error` for that session). A panic traps the wasm instance: the
//! host reports it as a plugin fault and poisons that session's instance;
//! other sessions are unaffected. If the host's spec JSON cannot be parsed
//! (a host/plugin version mismatch), the SDK does not call
//! [`HarnessSession::new`]; every later call returns that parse error.
//!
//! ## Cargo setup
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]   # cdylib: the component; rlib: native tests
//!
//! [dependencies]
//! bridle-harness-sdk = { path = "../harness-sdk" }
//! serde_json = "1"
//! ```
//!
//! Build the component with `cargo build --release --target wasm32-wasip2`
//! (the result is `target/wasm32-wasip2/release/<crate_name>.wasm`, already
//! a component). Test natively with `cargo test`: call
//! `MySession::new(spec)` and the trait methods directly, and compare
//! `actions.iter().map(Action::to_golden)` against a golden file.
//!
//! ## Installing
//!
//! In the Bridle config: `[harnesses.<engine>] plugin = "path/to/x.wasm"`;
//! the engine name is what vault metadata `sandbox0.managed_agents.engine`
//! selects. `bridle plugins inspect x.wasm` shows what the component declares.

pub mod confirmation;
pub mod content;
pub mod custom;
#[cfg(not(target_arch = "wasm32"))]
pub mod endpoint_cases;
pub mod errors;
pub mod events;
#[cfg(not(target_arch = "wasm32"))]
pub mod golden;
pub mod held;
pub mod input;
pub mod policy;
pub mod previews;
pub mod progress;
pub mod remote;
pub mod skills;
mod types;
pub mod url;
pub mod wire;

pub use serde_json;
pub use types::{
    Action, ApiShape, CredentialPlan, DEFAULT_SKILLS_DIR, ExecutionModel, Failure, File, HarnessInfo, HeaderRule,
    LaunchPlan, LlmEndpoint, LogLevel, Preview, PreviewedType, RetryReport, RetryStatus, SessionSpec, Skill, SpecLlm,
    StopReason, ToolCall, ToolResult,
};

use serde_json::Value;

/// The contract version this SDK builds plugins for (`bridle:harness@0.3.0`).
pub const CONTRACT_VERSION: &str = "0.3.0";

/// The static side of a harness plugin: one per component.
pub trait Harness: 'static {
    /// The per-session state machine.
    type Session: HarnessSession;

    /// Static facts about this harness (name, version, execution model, API shape).
    fn info() -> HarnessInfo;

    /// Does this endpoint fit the harness's API shape? `Err` explains why
    /// not, in words a user can act on. Called at session create. Decide by
    /// what the harness will call: [`url::parse_url`] and [`url::PathEnd`]
    /// (gateways name upstreams anywhere in their paths).
    fn check_endpoint(llm: &LlmEndpoint) -> Result<(), String>;

    /// Placeholder env values and gateway header rules for this endpoint.
    fn credentials(llm: &LlmEndpoint) -> CredentialPlan;
}

/// One live session of a harness.
pub trait HarnessSession: 'static {
    /// Build the session from the host's spec.
    fn new(spec: SessionSpec) -> Self;

    /// How to start the runtime (argv, env, files, cwd).
    fn launch(&mut self) -> Result<LaunchPlan, String>;

    /// A user event (`user.message`, `user.interrupt`,
    /// `user.tool_confirmation`, `user.custom_tool_result`) with its `id`.
    fn on_input(&mut self, event: Value) -> Result<Vec<Action>, String>;

    /// One stdout line of the runtime, without the newline.
    fn on_output(&mut self, line: &str) -> Result<Vec<Action>, String>;

    /// The result of an [`Action::ToolCall`] (sandbox as tool, or remote
    /// tools). Other harnesses never receive one, hence the default.
    fn on_tool_result(&mut self, result: ToolResult) -> Result<Vec<Action>, String> {
        let _ = result;
        Err("this harness does not make tool calls".to_string())
    }

    /// The runtime process exited (`None` when killed by a signal).
    fn on_exit(&mut self, code: Option<i32>) -> Vec<Action>;
}

/// A fresh Managed Agents event id (`sevt_...`).
///
/// Inside the host this is `sevt_` + a ULID. Natively it is
/// `sevt_test_0001`, `sevt_test_0002`, ... counted per thread.
pub fn new_event_id() -> String {
    #[cfg(target_arch = "wasm32")]
    {
        bindings::bridle::harness::host::new_event_id()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        native::next_event_id()
    }
}

/// Restart the native event-id counter (no-op inside wasm).
pub fn reset_event_ids() {
    #[cfg(not(target_arch = "wasm32"))]
    native::reset_event_ids();
}

/// Write a line to the host's log, tagged with the plugin and session.
/// Natively it goes to stderr.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use bindings::bridle::harness::host::LogLevel as L;
        let level = match level {
            LogLevel::Trace => L::Trace,
            LogLevel::Debug => L::Debug,
            LogLevel::Info => L::Info,
            LogLevel::Warn => L::Warn,
            LogLevel::Error => L::Error,
        };
        bindings::bridle::harness::host::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Parse a JSON payload handed over by the host, with a readable error.
pub fn parse_json(what: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what} is not valid JSON: {e}"))
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::cell::Cell;

    thread_local! {
        // Per thread, because `cargo test` runs each test on its own thread:
        // every test starts at 0001 without coordinating with the others.
        static NEXT_ID: Cell<u32> = const { Cell::new(1) };
    }

    pub(crate) fn next_event_id() -> String {
        NEXT_ID.with(|n| {
            let id = n.get();
            n.set(id + 1);
            format!("sevt_test_{id:04}")
        })
    }

    pub(crate) fn reset_event_ids() {
        NEXT_ID.with(|n| n.set(1));
    }
}

/// Export `H: Harness` as the component's `bridle:harness/adapter@0.3.0`.
///
/// Call it once, at the crate root of the plugin (`cdylib`). It expands to
/// nothing unless the target is `wasm32`.
#[macro_export]
macro_rules! export_harness {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __BridleHarnessExport = $crate::__private::Adapter<$ty>;
            $crate::bindings::__export_harness_raw!(
                __BridleHarnessExport with_types_in $crate::bindings
            );
        };
    };
}

/// The generated wit-bindgen bindings for world `bridle:harness/harness`.
/// Plugin code should not need them; they are public for the export macro.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/0.3.0",
        world: "harness",
        pub_export_macro: true,
        export_macro_name: "__export_harness_raw",
        default_bindings_module: "bridle_harness_sdk::bindings",
    });
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __private {
    //! Glue from the generated `Guest` traits to [`Harness`]/[`HarnessSession`].

    use super::bindings::bridle::harness::types as wit;
    use super::bindings::exports::bridle::harness::adapter::{Guest, GuestSession};
    use super::*;
    use std::cell::RefCell;
    use std::marker::PhantomData;

    pub struct Adapter<H>(PhantomData<H>);

    /// The wasm resource. `Err` holds a spec error (the agent snapshot is
    /// not JSON), reported by every later call (the WIT constructor cannot
    /// fail).
    pub struct SessionCell<S>(Result<RefCell<S>, String>);

    impl<S: HarnessSession> SessionCell<S> {
        fn with<R>(&self, f: impl FnOnce(&mut S) -> Result<R, String>) -> Result<R, String> {
            match &self.0 {
                Ok(cell) => f(&mut cell.borrow_mut()),
                Err(e) => Err(e.clone()),
            }
        }
    }

    impl<H: Harness> Guest for Adapter<H> {
        type Session = SessionCell<H::Session>;

        fn info() -> wit::HarnessInfo {
            let i = H::info();
            wit::HarnessInfo {
                name: i.name,
                version: i.version,
                execution_model: match i.execution_model {
                    ExecutionModel::AgentInSandbox => wit::ExecutionModel::AgentInSandbox,
                    ExecutionModel::SandboxAsTool => wit::ExecutionModel::SandboxAsTool,
                },
                api_shape: match i.api_shape {
                    ApiShape::AnthropicMessages => wit::ApiShape::AnthropicMessages,
                    ApiShape::OpenaiCompatible => wit::ApiShape::OpenaiCompatible,
                    ApiShape::OpenaiResponses => wit::ApiShape::OpenaiResponses,
                },
                description: i.description,
                model_paths: i.model_paths,
                remote_tools: i.remote_tools,
            }
        }

        fn check_endpoint(llm: wit::LlmEndpoint) -> Result<(), String> {
            H::check_endpoint(&endpoint(llm))
        }

        fn credentials(llm: wit::LlmEndpoint) -> wit::CredentialPlan {
            let plan = H::credentials(&endpoint(llm));
            wit::CredentialPlan {
                env: plan.env,
                inject: plan
                    .inject
                    .into_iter()
                    .map(|r| wit::HeaderRule { header: r.header, value_template: r.value_template })
                    .collect(),
            }
        }
    }

    impl<S: HarnessSession> GuestSession for SessionCell<S> {
        fn new(spec: wit::SessionSpec) -> Self {
            let spec = parse_json("the session spec's agent", &spec.agent_json).map(|agent| SessionSpec {
                session_id: spec.session_id,
                agent,
                workspace: spec.workspace,
                resume: spec.resume,
                llm: SpecLlm {
                    base_url: spec.llm.base_url,
                    upstream_base_url: spec.llm.upstream_base_url,
                    model: spec.llm.model,
                },
                resident: spec.resident,
                skills: spec
                    .skills
                    .into_iter()
                    .map(|s| crate::types::Skill { name: s.name, description: s.description })
                    .collect(),
                remote_tools: spec.remote_tools,
            });
            SessionCell(spec.map(|spec| RefCell::new(S::new(spec))))
        }

        fn launch(&self) -> Result<wit::LaunchPlan, String> {
            let plan = self.with(|s| s.launch())?;
            Ok(wit::LaunchPlan {
                argv: plan.argv,
                env: plan.env,
                files: plan
                    .files
                    .into_iter()
                    .map(|f| wit::File { path: f.path, contents: f.contents, mode: f.mode })
                    .collect(),
                cwd: plan.cwd,
                skills_dir: plan.skills_dir,
            })
        }

        fn on_input(&self, event_json: String) -> Result<Vec<wit::Action>, String> {
            let event = parse_json("input event", &event_json)?;
            self.with(|s| s.on_input(event)).map(actions)
        }

        fn on_output(&self, line: String) -> Result<Vec<wit::Action>, String> {
            self.with(|s| s.on_output(&line)).map(actions)
        }

        fn on_tool_result(&self, r: wit::ToolResult) -> Result<Vec<wit::Action>, String> {
            let result = ToolResult { id: r.id, content: r.content, is_error: r.is_error, exit_code: r.exit_code };
            self.with(|s| s.on_tool_result(result)).map(actions)
        }

        fn on_exit(&self, code: Option<i32>) -> Vec<wit::Action> {
            match &self.0 {
                Ok(cell) => actions(cell.borrow_mut().on_exit(code)),
                Err(_) => Vec::new(),
            }
        }
    }

    fn endpoint(llm: wit::LlmEndpoint) -> LlmEndpoint {
        LlmEndpoint { base_url: llm.base_url, model: llm.model }
    }

    fn actions(list: Vec<Action>) -> Vec<wit::Action> {
        list.into_iter().map(action).collect()
    }

    fn action(a: Action) -> wit::Action {
        match a {
            Action::Emit(s) => wit::Action::Emit(s),
            Action::Write(b) => wit::Action::Write(b),
            Action::Retrying(r) => wit::Action::Retrying(wit::RetryReport {
                error_type: r.error_type,
                message: r.message,
                attempt: r.attempt,
                max_attempts: r.max_attempts,
                delay_ms: r.delay_ms,
            }),
            Action::Resumed => wit::Action::Resumed,
            Action::ToolCall(c) => {
                wit::Action::ToolCall(wit::ToolCall { id: c.id, name: c.name, input_json: c.input.to_string() })
            }
            Action::Checkpoint(s) => wit::Action::Checkpoint(s),
            Action::TurnEnded(StopReason::EndTurn) => wit::Action::TurnEnded(wit::StopReason::EndTurn),
            Action::Failed(f) => wit::Action::Failed(wit::Failure {
                error_type: f.error_type,
                message: f.message,
                retry: match f.retry {
                    RetryStatus::Exhausted => wit::RetryStatus::Exhausted,
                    RetryStatus::Terminal => wit::RetryStatus::Terminal,
                },
            }),
            Action::Preview(Preview::Start { event_id, event_type }) => {
                wit::Action::Preview(wit::Preview::Start(wit::PreviewStart {
                    event_id,
                    event_type: match event_type {
                        PreviewedType::AgentMessage => wit::PreviewedType::AgentMessage,
                        PreviewedType::AgentThinking => wit::PreviewedType::AgentThinking,
                    },
                }))
            }
            Action::Preview(Preview::Text { event_id, index, text }) => {
                wit::Action::Preview(wit::Preview::Text(wit::TextDelta { event_id, index, text }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn native_event_ids_are_deterministic() {
        reset_event_ids();
        assert_eq!(new_event_id(), "sevt_test_0001");
        assert_eq!(new_event_id(), "sevt_test_0002");
        reset_event_ids();
        assert_eq!(new_event_id(), "sevt_test_0001");
    }

    #[test]
    fn spec_parses_with_defaults() {
        let spec =
            SessionSpec::from_json(r#"{"session_id":"sesn_1","llm":{"base_url":"http://gw","model":"m"}}"#).unwrap();
        assert_eq!(spec.workspace, "/workspace");
        assert_eq!(spec.resume, None);
        assert!(!spec.resident);
        assert!(SessionSpec::from_json("{}").is_err());
    }

    #[test]
    fn action_helpers() {
        assert_eq!(Action::write_line(&json!({"a": 1})), Action::Write(b"{\"a\":1}\n".to_vec()));
        assert_eq!(
            Action::failed("model_overloaded_error", "busy", RetryStatus::Exhausted).to_golden(),
            json!({"failed": {"type": "model_overloaded_error", "message": "busy",
                              "retry_status": {"type": "exhausted"}}})
        );
        assert_eq!(Action::end_turn().to_golden(), json!({"turn_ended": {"type": "end_turn"}}));
        let call = ToolCall { id: "sevt_1".into(), name: "bash".into(), input: json!({"command": "ls"}) };
        assert_eq!(
            Action::ToolCall(call).to_golden(),
            json!({"tool_call": {"id": "sevt_1", "name": "bash", "input": {"command": "ls"}}})
        );
    }

    #[test]
    fn failures_read_strictly() {
        let f = Failure::from_json(r#"{"type":"billing_error","message":"no","retry_status":{"type":"terminal"}}"#)
            .unwrap();
        assert_eq!(f.retry, RetryStatus::Terminal);
        assert_eq!(Failure::from_json(&f.to_json().to_string()).unwrap(), f);
        assert!(Failure::from_json(r#"{"type":"x","message":"m"}"#).is_err());
        assert!(Failure::from_json(r#"{"type":"x","message":"m","retry_status":{"type":"later"}}"#).is_err());
        assert!(Failure::from_json("nope").is_err());
    }
}
