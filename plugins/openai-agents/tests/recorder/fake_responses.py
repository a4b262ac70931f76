"""Loopback fake OpenAI Responses server for recording the resident runtime.

Usage: fake_responses.py PORT FAIL_STATUS FAIL_COUNT MODE   (MODE: text | tool)
Binds 127.0.0.1 only. The first FAIL_COUNT requests get FAIL_STATUS with
`retry-after: 0`; in tool mode the first successful answer calls the `bash`
tool, later ones answer text.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, FAIL_STATUS, FAIL_COUNT, MODE = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lock = threading.Lock()
state = {"calls": 0, "failed": 0}


def events(n, has_tool_output):
    base = {"id": f"resp_{n}", "object": "response", "created_at": 0, "model": "gpt-fake", "status": "in_progress",
            "output": [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    if MODE == "tool" and not has_tool_output:
        item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "bash",
                "arguments": json.dumps({"command": "echo hi"}), "status": "completed"}
    else:
        item = {"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "Hello from fake", "annotations": []}]}
    evs = [{"type": "response.created", "sequence_number": 0, "response": base}]
    if item["type"] == "message":
        evs.append({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                    "item": dict(item, status="in_progress", content=[])})
        evs.append({"type": "response.output_text.delta", "sequence_number": 2, "item_id": item["id"],
                    "output_index": 0, "content_index": 0, "delta": "Hello from fake", "logprobs": []})
    evs.append({"type": "response.output_item.done", "sequence_number": 3, "output_index": 0, "item": item})
    done = dict(base, status="completed", output=[item],
                usage={"input_tokens": 12, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 3,
                       "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15})
    evs.append({"type": "response.completed", "sequence_number": 4, "response": done})
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in evs).encode()


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, status, body, ctype="application/json", extra=None):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        if not self.path.startswith("/v1/responses"):
            return self._send(404, b'{"error":{"message":"nope"}}')
        with lock:
            state["calls"] += 1
            call = state["calls"]
            fail = FAIL_STATUS and state["failed"] < FAIL_COUNT
            if fail:
                state["failed"] += 1
        if fail:
            err = {"error": {"type": "server_error", "code": "server_error", "message": "fake failure"}}
            return self._send(FAIL_STATUS, json.dumps(err).encode(), extra={"retry-after": "0"})
        inp = body.get("input") if isinstance(body.get("input"), list) else []
        has_out = any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in inp)
        return self._send(200, events(call, has_out), "text/event-stream")


ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
