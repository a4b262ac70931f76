"""The offline demo's client: one session against the fake model server.

Started by examples/offline-demo.sh, which runs `bridle serve` and the fake
model server on loopback and passes their addresses in the environment.
"""

import os

import anthropic

client = anthropic.Anthropic(base_url=os.environ["BRIDLE_BASE_URL"], api_key=os.environ["BRIDLE_API_KEY"])
engine = os.environ.get("ENGINE", "claude")
fake = os.environ["FAKE_MODEL_URL"]

env = client.beta.environments.create(name="demo")
# The fake model server picks its script by model name: `fake-tool` runs a
# bash command, then answers.
agent = client.beta.agents.create(name="demo", model="fake-tool", tools=[{"type": "agent_toolset_20260401"}])
vault = client.beta.vaults.create(
    display_name="fake LLM",
    metadata={
        "sandbox0.managed_agents.role": "llm",
        "sandbox0.managed_agents.engine": engine,
        "sandbox0.managed_agents.llm_base_url": fake if engine == "claude" else fake + "/v1",
    },
)
client.beta.vaults.credentials.create(
    vault.id, auth={"type": "static_bearer", "token": os.environ["FAKE_MODEL_TOKEN"]}
)
session = client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[vault.id])
print(f"session {session.id} ({engine})")

with client.beta.sessions.events.stream(session.id) as stream:
    client.beta.sessions.events.send(
        session.id,
        events=[{"type": "user.message", "content": [{"type": "text", "text": "Create out.txt"}]}],
    )
    for event in stream:
        detail = ""
        if event.type == "agent.message":
            detail = "".join(b.text for b in event.content if b.type == "text")
        elif event.type == "agent.tool_use":
            detail = f"{event.name} {event.input}"
        elif event.type == "session.status_idle":
            detail = event.stop_reason.type
        print(f"{event.type:28} {detail}")
        if event.type in ("session.status_idle", "session.status_terminated"):
            break
