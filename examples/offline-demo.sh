#!/usr/bin/env bash
# A whole session, offline, with one command: builds Bridle and the fake model
# server, installs the agent runtimes and the Python SDK on first use, runs a
# real Claude Code (or codex, or the openai-agents runtime with sandbox tools) against the fake
# model, and prints the event stream.
#
#   examples/offline-demo.sh      # or ENGINE=codex, ENGINE=openai-agents
#
# Needs root for the sandbox's uid switch (as the test suite does).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d /tmp/bridle-demo.XXXXXX)
chmod 755 "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build -q -p bridle -p bridle-fake-model
bin=$root/target/debug

venv=$root/target/demo-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "anthropic==2.14.0"
fi

export BRIDLE_RUNTIMES_DIR=$root/target/bridle-runtimes
"$bin/bridle" runtimes install >/dev/null

token="demo-token-$RANDOM$RANDOM"
port_fake=$(( 20000 + RANDOM % 20000 ))
port_api=$(( port_fake + 1 ))
"$bin/bridle-fake-model" --listen "127.0.0.1:$port_fake" --token "$token" >"$work/fake.log" 2>&1 &

key=$("$bin/bridle" keys create --name demo --data-dir "$work/data" 2>/dev/null)
BRIDLE_SESSIONS__SANDBOX_DIR="$work/sandboxes" "$bin/bridle" serve \
  --data-dir "$work/data" --listen "127.0.0.1:$port_api" >"$work/bridle.log" 2>&1 &
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port_api/healthz" >/dev/null && break
  sleep 0.5
done

BRIDLE_BASE_URL="http://127.0.0.1:$port_api" BRIDLE_API_KEY="$key" \
FAKE_MODEL_URL="http://127.0.0.1:$port_fake" FAKE_MODEL_TOKEN="$token" \
  "$venv/bin/python" examples/python/offline_demo.py
echo "workspace after the session:"
ls "$work"/sandboxes/workspaces/*/
