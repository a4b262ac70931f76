"""Record the resident runtime's framed output against the fake server.

Usage: record.py PYTHON OUT.script.jsonl FAIL_STATUS FAIL_COUNT MODE [MAX_RETRIES]

Runs bridle_agents_runtime.py with PYTHON (a venv with `openai-agents`), sends
one `start` + `input` for session `sesn_rec`, answers every `tool_call` with
"hi", and writes a golden-test script: `{"in": user.message}`, then one
`{"out": <msg>}` per runtime message and a `{"tool_result": ...}` step where
the recorder answered a tool call. Loopback only.
"""
import json
import os
import socket
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
runtime = os.path.join(here, "..", "..", "runtime", "bridle_agents_runtime.py")
py, out_path, fail_status, fail_count, mode = sys.argv[1:6]
max_retries = int(sys.argv[6]) if len(sys.argv) > 6 else 3

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
server = subprocess.Popen([sys.executable, os.path.join(here, "fake_responses.py"), str(port), fail_status, fail_count, mode])
time.sleep(0.5)
rt = subprocess.Popen([py, "-u", runtime], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
SID = "sesn_rec"


def send(msg):
    rt.stdin.write(json.dumps({"session": SID, "msg": msg}) + "\n")
    rt.stdin.flush()


user = {"type": "user.message", "id": "sevt_user_1", "content": [{"type": "text", "text": "say hi"}]}
steps = [{"in": user}]
send({"type": "start", "model": "gpt-fake", "base_url": f"http://127.0.0.1:{port}/v1", "system": "Be brief.",
      "tools": ["bash", "read", "write", "edit", "glob", "grep"], "max_retries": max_retries, "max_turns": 10,
      "resume": None})
send({"type": "input", "content": [{"type": "text", "text": "say hi"}]})
deadline = time.time() + 60
try:
    while time.time() < deadline:
        line = rt.stdout.readline()
        if not line:
            break
        frame = json.loads(line)
        assert frame["session"] == SID, frame
        msg = frame["msg"]
        steps.append({"out": msg})
        if msg["type"] == "tool_call":
            steps.append({"tool_result": {"content": "hi\n", "is_error": False, "exit_code": 0}})
            send({"type": "tool_result", "call_id": msg["call_id"], "output": "hi\n", "is_error": False})
        if msg["type"] in ("turn_end", "error", "interrupted"):
            break
finally:
    rt.stdin.close()
    rt.wait(timeout=10)
    server.kill()
with open(out_path, "w") as f:
    for st in steps:
        f.write(json.dumps(st) + "\n")
print(f"wrote {len(steps)} steps to {out_path}")
