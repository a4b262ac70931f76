"""Custom skills reach every runtime: a skill uploaded with the official SDK's Skills API and
attached to the agent is placed where the harness's runtime reads skills (Claude Code's
`$CLAUDE_CONFIG_DIR/skills`, codex's `$CODEX_HOME/skills`, the openai-agents tool sandbox's
`/mnt/session/skills`), the runtime tells the model about it, and a tool call runs its script."""

from __future__ import annotations

import json
import uuid

from .lib import is_idle, text_of


def test_a_custom_skill_reaches_the_runtime_and_its_script_runs(stack, model, sessions):
    tag = uuid.uuid4().hex[:10]
    name = f"e2e-units-{tag}"
    description = f"Convert units (marker {tag}). Use when the user asks to convert a unit."
    md = f"---\nname: {name}\ndescription: {description}\n---\n# Units\nRun scripts/convert.sh.\n"
    skill = stack.client.beta.skills.create(files=[
        (f"{name}/SKILL.md", md.encode()),
        (f"{name}/scripts/convert.sh", f"echo converted-{tag}\n".encode()),
    ])
    try:
        # The command finds the script wherever this harness's runtime reads skills.
        find = f"sh \"$(find /workspace /mnt/session -path '*/{name}/scripts/convert.sh' 2>/dev/null | head -n1)\""
        stack.fake.set_scenario(model, {"turns": [{"tools": [{"command": find}], "text": "Tool said: {{tool_output}}"}]})
        s = stack.session(model, agent_extra={"skills": [{"type": "custom", "skill_id": skill.id}]})
        sessions.append(s)
        evs = s.turn("Convert 3 km to miles.")
        _, result, msg, _ = s.expect_order(evs, ["agent.tool_use", "agent.tool_result", "agent.message",
                                                 is_idle("end_turn")], "a turn that runs the skill's script")
        s.check(f"converted-{tag}" in json.dumps(result.get("content")),
                f"the skill's script did not run in the sandbox: {result.get('content')}")
        s.check(f"converted-{tag}" in text_of(msg), f"the reply lacks the script's output: {text_of(msg)!r}")
        told = [r for r in stack.fake.requests(model) if f"marker {tag}" in json.dumps(r.get("body"))]
        s.check(bool(told), "no model request mentions the skill: the runtime did not load it")
    finally:
        stack.client.beta.skills.delete(skill.id)
