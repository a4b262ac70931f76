# Short names for common work. `just` is a convenience for contributors;
# the front door is cargo itself (see README.md).

# Build everything (the server embeds the built-in plugins).
build:
    cargo build --workspace

# Run the server with the embedded defaults.
serve:
    cargo run --release -- serve

# Every test, as CI runs them (CI also checks formatting and lints).
test:
    cargo test --workspace

# Every end-to-end harness suite with sessions.sandbox_driver = "gvisor" (needs root; installs or upgrades runsc).
e2e-gvisor:
    cargo test -p bridle --test e2e_sessions -- --exact e2e_claude_gvisor e2e_codex_gvisor e2e_openai_agents_gvisor

# codex's fork-bomb test on gVisor, `n` times in a row (it once depended on timing there).
e2e-gvisor-fork-bomb n="5":
    for i in $(seq {{n}}); do BRIDLE_E2E_PYTEST_ARGS="-k fork_bomb" cargo test -p bridle --test e2e_sessions -- --exact e2e_codex_gvisor || exit 1; done

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# CI, locally.
ci:
    .ci/run

# Benchmarks: API load, event ingest, SSE fan-out, live sessions, session latency per
# harness, plugin mapping and instantiation, sandbox claim.
bench:
    cargo bench -p bridle --bench api_load
    cargo bench -p bridle --bench event_ingest
    cargo bench -p bridle --bench sse_fanout
    cargo bench -p bridle --bench live_sessions
    cargo bench -p bridle --bench session_latency
    cargo bench -p bridle-harness --bench plugins
    cargo bench -p bridle-sandbox --bench claim

# Failover soak: sessions across 3 nodes while nodes are killed and restarted (about 4 min).
soak:
    cargo bench -p bridle --bench failover_soak

# The configured harness plugins, and what a component declares.
plugins:
    cargo run -q -- plugins list

inspect FILE:
    cargo run -q -- plugins inspect {{FILE}}

# Build the template plugin as a component.
template:
    cd examples/harness-template && cargo build --release --target wasm32-wasip2

# A whole session offline against the fake model (ENGINE=claude|codex|openai-agents).
demo:
    examples/offline-demo.sh

# Install the agent runtimes (Claude Code, codex, openai-agents).
runtimes:
    cargo run -q -- runtimes install
