"""Bridle quickstart with the official Anthropic Python SDK.

Runs one session against a real model provider:

    pip install anthropic
    export BRIDLE_BASE_URL=http://127.0.0.1:4040 BRIDLE_API_KEY=sk-bridle-...   # printed by `bridle serve`
    export MODEL_API_KEY=sk-ant-...                                          # your provider key
    python examples/python/quickstart.py "Write hello.txt containing 'hi', then tell me what you did"

Optional: ENGINE=codex or openai-agents (then LLM_BASE_URL=https://api.openai.com/v1 and
MODEL=gpt-5-codex are the defaults), LLM_BASE_URL, MODEL.
"""

import os
import sys

import anthropic

engine = os.environ.get("ENGINE", "claude")
if engine == "claude":
    default_url, default_model = "https://api.anthropic.com", "claude-sonnet-4-6"
else:
    default_url, default_model = "https://api.openai.com/v1", "gpt-5-codex"

client = anthropic.Anthropic(base_url=os.environ["BRIDLE_BASE_URL"], api_key=os.environ["BRIDLE_API_KEY"])

env = client.beta.environments.create(
    name="quickstart", config={"type": "cloud", "networking": {"type": "unrestricted"}}
)
agent = client.beta.agents.create(
    name="quickstart",
    model=os.environ.get("MODEL", default_model),
    tools=[{"type": "agent_toolset_20260401"}],
)
vault = client.beta.vaults.create(
    display_name=f"{engine} LLM",
    metadata={
        "sandbox0.managed_agents.role": "llm",
        "sandbox0.managed_agents.engine": engine,
        "sandbox0.managed_agents.llm_base_url": os.environ.get("LLM_BASE_URL", default_url),
    },
)
client.beta.vaults.credentials.create(
    vault.id,
    display_name="provider key",
    auth={"type": "static_bearer", "token": os.environ["MODEL_API_KEY"]},
)
session = client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[vault.id])
print(f"session {session.id}")

prompt = " ".join(sys.argv[1:]) or "Say hello in one short sentence."
with client.beta.sessions.events.stream(session.id) as stream:
    client.beta.sessions.events.send(
        session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": prompt}]}]
    )
    for event in stream:
        if event.type == "agent.message":
            print("agent:", "".join(b.text for b in event.content if b.type == "text"))
        elif event.type == "agent.tool_use":
            print(f"tool:  {event.name} {event.input}")
        elif event.type == "session.error":
            print(f"error: {event.error.type}: {event.error.message} ({event.error.retry_status.type})")
        elif event.type == "session.status_idle":
            print(event.type, event.stop_reason.type)
            if event.stop_reason.type != "requires_action":
                break
        elif event.type == "session.status_terminated":
            print(event.type)
            break
