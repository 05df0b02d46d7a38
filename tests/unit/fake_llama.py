"""A stand-in for llama.cpp's HTTP server, replaying its wire formats, for the endpoint's unit tests.

The 2023 server (e519621, examples/server/server.cpp): `POST /completion` answers JSON, or with
`stream: true` `text/event-stream` events `data: {"content": "...", "stop": false}\\n\\n` and a final
event with `stop: true`, `stopped_eos`/`stopped_word`/`stopped_limit`, `tokens_predicted`,
`tokens_evaluated` (format_partial_response / format_final_response); `GET /model.json`; no /health.
Current servers: `GET /health`, `POST /v1/chat/completions` with OpenAI chunks and `data: [DONE]`.
The real servers run in the molecule scenarios; this one lets the unit tests see what was sent.
"""

import http.server
import json
import threading


class FakeLlama:
    def __init__(self, tokens=("Paris", " is", " the", " capital", "."), era="2023"):
        self.tokens = list(tokens)
        self.era = era
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, events):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for event in events:
                    self.wfile.write(event.encode())
                    self.wfile.flush()
                self.close_connection = True

            def do_GET(self):
                if self.path == "/model.json" and fake.era == "2023":
                    return self._json(200, {"n_ctx": 4096})
                if self.path == "/health" and fake.era == "current":
                    return self._json(200, {"status": "ok"})
                self._json(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, body))
                n = body.get("n_predict", -1)
                tokens = fake.tokens if n is None or n < 0 else fake.tokens[:n]
                limit = n is not None and 0 <= n <= len(tokens) and n < len(fake.tokens)
                final = {"content": "", "stop": True, "model": "llama_2", "tokens_predicted": len(tokens),
                         "tokens_evaluated": 11, "stopped_eos": not limit, "stopped_word": False,
                         "stopped_limit": limit, "stopping_word": ""}
                if self.path == "/completion" and fake.era == "2023":
                    if body.get("stream"):
                        events = ["data: %s\n\n" % json.dumps({"content": t, "stop": False}) for t in tokens]
                        return self._sse(events + ["data: %s\n\n" % json.dumps(final)])
                    return self._json(200, dict(final, content="".join(tokens)))
                if self.path == "/v1/chat/completions" and fake.era == "current":
                    if body.get("stream"):
                        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "llama_2"}
                        events = ["data: %s\n\n" % json.dumps(dict(chunk, choices=[
                            {"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}]))]
                        events += ["data: %s\n\n" % json.dumps(dict(chunk, choices=[
                            {"index": 0, "delta": {"content": t}, "finish_reason": None}])) for t in tokens]
                        events += ["data: %s\n\n" % json.dumps(dict(chunk, choices=[
                            {"index": 0, "delta": {}, "finish_reason": "stop"}])), "data: [DONE]\n\n"]
                        return self._sse(events)
                    return self._json(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "llama_2",
                                            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                                "role": "assistant", "content": "".join(tokens)}}],
                                            "usage": {"prompt_tokens": 3, "completion_tokens": len(tokens),
                                                      "total_tokens": 3 + len(tokens)}})
                self._json(404, {"error": "not found"})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
