"""tests/bench/rolling_upgrade_load.py: how one request is counted (the official openai SDK against a small
HTTP server on 127.0.0.1 that answers a whole stream, one cut mid-answer, or a 503), and the figures."""

import http.server
import importlib.util
import json
import threading
import time
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "bench" / "rolling_upgrade_load.py"
spec = importlib.util.spec_from_file_location("rolling_upgrade_load", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def chunk(content, finish=None):
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "llama_2",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}


@pytest.fixture
def endpoint():
    mode = {"answer": "whole"}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if mode["answer"] == "503":
                body = b'{"error": {"message": "llama.cpp is not answering"}}'
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            events = [chunk("One"), chunk(", two")]
            if mode["answer"] == "whole":
                events.append(chunk("", "stop"))
            for event in events:
                self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            if mode["answer"] == "whole":
                self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    load = bench.Load("t", "http://127.0.0.1:%d/v1" % server.server_address[1], "k", streams=1, timeout=10)
    yield load, mode
    server.shutdown()
    server.server_close()


def test_a_whole_stream_a_cut_one_and_a_refused_request_are_told_apart(endpoint):
    load, mode = endpoint
    sdk = load._client()
    whole = load.one(sdk)
    assert whole["ok"] and not whole["failed"] and not whole["cut"] and whole["first"] is not None
    mode["answer"] = "cut"
    cut = load.one(sdk)
    assert not cut["ok"] and cut["cut"] and not cut["failed"], cut
    mode["answer"] = "503"
    refused = load.one(sdk)
    assert not refused["ok"] and not refused["cut"] and "503" in refused["failed"], refused


def test_the_load_runs_until_stopped(endpoint):
    load, _ = endpoint
    load.start()
    time.sleep(0.5)
    records = load.stop()
    assert len(records) >= 2 and all(r["ok"] for r in records)


def rec(t0, total, ok=True, failed=None, cut=False):
    return {"t0": t0, "total": total, "ok": ok, "failed": failed, "cut": cut}


def test_figures_count_only_the_requests_of_the_upgrade_against_the_baseline():
    records = [rec(1, 1.0), rec(2, 1.2), rec(3, 0.8),  # before: median 1.0
               rec(10, 1.1), rec(11, 4.5), rec(12, 0.2, ok=False, failed="APIStatusError: 503"),
               rec(13, 0.7, ok=False, cut=True), rec(14, 0.9)]
    base = bench.baseline_median(records, 10)
    fig = bench.figures(records, 10, base)
    assert base == 1.0
    assert (fig["sent"], fig["ok"], fig["failed"], fig["cut"]) == (5, 3, 1, 1)
    assert fig["worst_s"] == 4.5 and fig["worst_added_s"] == 3.5 and fig["median_s"] == 1.1
    line = bench.render("gateway", fig)
    assert "sent    5" in line and "failed   1" in line and "cut short   1" in line and "+3.50 s" in line, line
    assert "APIStatusError: 503" in line
