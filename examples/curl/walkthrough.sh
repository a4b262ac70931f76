#!/usr/bin/env bash
# Bridle's Managed Agents API with nothing but curl and jq: create an environment, an agent,
# an LLM vault with the provider credential, and a session; send one message; print the
# session's event stream until the agent is done.
#
#   export BRIDLE_BASE_URL=http://127.0.0.1:4040 BRIDLE_API_KEY=sk-bridle-...  # printed by `bridle serve`
#   export MODEL_API_KEY=sk-ant-...                                          # your provider key
#   examples/curl/walkthrough.sh "Write hello.txt containing 'hi', then tell me what you did"
#
# Optional: ENGINE=codex or openai-agents (then LLM_BASE_URL=https://api.openai.com/v1 and
# MODEL=gpt-5-codex are the defaults), LLM_BASE_URL, MODEL.
set -euo pipefail

base=${BRIDLE_BASE_URL:-http://127.0.0.1:4040}
: "${BRIDLE_API_KEY:?set BRIDLE_API_KEY (printed by bridle serve on first start, or made by bridle keys create)}"
: "${MODEL_API_KEY:?set MODEL_API_KEY to your model provider key}"
engine=${ENGINE:-claude}
case $engine in
  claude) llm_url=${LLM_BASE_URL:-https://api.anthropic.com}; model=${MODEL:-claude-sonnet-4-6} ;;
  *) llm_url=${LLM_BASE_URL:-https://api.openai.com/v1}; model=${MODEL:-gpt-5-codex} ;;
esac
prompt=${*:-Say hello in one short sentence.}

# Every Managed Agents call carries the key, the API version and the beta header.
headers=(-H "x-api-key: $BRIDLE_API_KEY" -H "anthropic-version: 2023-06-01"
  -H "anthropic-beta: managed-agents-2026-04-01")

# api METHOD PATH [JSON]: one call; prints the response body, fails on an HTTP error.
api() {
  curl -sS --fail-with-body -X "$1" "$base$2" "${headers[@]}" \
    ${3:+-H "content-type: application/json" --data "$3"}
}

# 1. An environment: where the agent's sandbox comes from, and its network policy.
env_id=$(api POST /v1/environments \
  '{"name": "walkthrough", "config": {"type": "cloud", "networking": {"type": "unrestricted"}}}' | jq -r .id)
echo "environment  $env_id"

# 2. An agent: the model and the built-in tool set (bash, read, write, edit, glob, grep, ...).
agent_id=$(api POST /v1/agents "$(jq -n --arg model "$model" \
  '{name: "walkthrough", model: $model, tools: [{type: "agent_toolset_20260401"}]}')" | jq -r .id)
echo "agent        $agent_id ($model)"

# 3. An LLM vault: selects the harness (engine) and the model endpoint; its one credential
#    holds the provider key, sealed at rest and added to model requests outside the sandbox.
vault_id=$(api POST /v1/vaults "$(jq -n --arg engine "$engine" --arg url "$llm_url" '{
  display_name: "walkthrough LLM",
  metadata: {
    "sandbox0.managed_agents.role": "llm",
    "sandbox0.managed_agents.engine": $engine,
    "sandbox0.managed_agents.llm_base_url": $url
  }}')" | jq -r .id)
credential_id=$(api POST "/v1/vaults/$vault_id/credentials" "$(jq -n --arg token "$MODEL_API_KEY" \
  '{display_name: "provider key", auth: {type: "static_bearer", token: $token}}')" | jq -r .id)
echo "vault        $vault_id (engine $engine, credential $credential_id)"

# 4. A session: the agent at work in the environment, with the vault attached.
session_id=$(api POST /v1/sessions "$(jq -n --arg agent "$agent_id" --arg env "$env_id" --arg vault "$vault_id" \
  '{agent: $agent, environment_id: $env, vault_ids: [$vault], title: "curl walkthrough"}')" | jq -r .id)
echo "session      $session_id"

# 5. A message. The session starts working on it at once.
api POST "/v1/sessions/$session_id/events" "$(jq -n --arg text "$prompt" \
  '{events: [{type: "user.message", content: [{type: "text", text: $text}]}]}')" >/dev/null
echo "sent         $prompt"
echo

# 6. The event stream (Server-Sent Events: `event:`, `id:` and `data:` lines). A new stream
#    carries only what happens after it opens; `Last-Event-ID: 0` asks Bridle to replay the
#    session's events from the start first, so nothing sent before this point is missed.
exec 3< <(curl -sSN --max-time "${STREAM_TIMEOUT:-900}" "${headers[@]}" -H "Last-Event-ID: 0" \
  "$base/v1/sessions/$session_id/events/stream")
stream_pid=$!
finished=
while IFS= read -r line <&3; do
  [[ $line == data:* ]] || continue
  event=${line#data: }
  type=$(jq -r '.type // empty' <<<"$event")
  case $type in
    "") ;; # heartbeat (`event: ping`)
    error) echo "stream error: $(jq -c .error <<<"$event")" >&2; break ;;
    agent.message) echo "agent    $(jq -r '[.content[] | select(.type == "text") | .text] | join("")' <<<"$event")" ;;
    agent.tool_use) echo "tool     $(jq -r '.name + " " + (.input | tostring)' <<<"$event")" ;;
    agent.tool_result) echo "result   $(jq -r '[.content[]? | select(.type == "text") | .text] | join("") | .[0:200]' <<<"$event")" ;;
    span.model_request_end) echo "usage    $(jq -r '.model_usage | "in \(.input_tokens) out \(.output_tokens)"' <<<"$event")" ;;
    session.error) echo "error    $(jq -r '.error | "\(.type): \(.message) (\(.retry_status.type))"' <<<"$event")" ;;
    session.status_idle)
      reason=$(jq -r .stop_reason.type <<<"$event")
      echo "status   idle ($reason)"
      # requires_action waits for a user.tool_confirmation; any other reason ends the turn.
      if [[ $reason != requires_action ]]; then finished=1; break; fi ;;
    session.status_terminated) echo "status   terminated"; finished=1; break ;;
    session.status_*) echo "status   ${type#session.status_}" ;;
    *) echo "$type" ;;
  esac
done
kill "$stream_pid" 2>/dev/null || true
exec 3<&-
[[ -n $finished ]] || { echo "the stream ended before the session went idle" >&2; exit 1; }

# 7. The whole log stays readable afterwards (paginated, oldest first).
echo
echo "$(api GET "/v1/sessions/$session_id/events?limit=1000" | jq '.data | length') events in session $session_id"
