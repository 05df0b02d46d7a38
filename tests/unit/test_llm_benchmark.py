"""llm_benchmark against real HTTP servers on 127.0.0.1 (http.server threads) that answer POST /completion
the way llama.cpp's servers do."""

import http.server
import json
import socket
import threading

import pytest

import llm_benchmark as bench
from test_openai_api import RECORDED_E519621_STREAM

KEY = "sk-edge-bench-7a1c93e0"
GB = 1000 ** 3

# The final object of llama.cpp's server at the tutorial's commit e519621 (examples/server/server.cpp,
# format_final_response, which a request without "stream" gets as its whole answer), verbatim from the
# recording in tests/unit/test_openai_api.py (RECORDED_E519621_STREAM's last event; the 2-layer test
# model of module_utils/tiny_gguf.py, n_predict 4). Note predicted_n 3 for tokens_predicted 4: the first
# token is sampled from the prompt's logits and timed with the prompt.
# The final event of that stream, as the 2023 server sends it for a request that is not streamed.
RECORDED_E519621_FINAL = RECORDED_E519621_STREAM.split(b"data: ")[-1].strip()


def current(prompt_per_second, predicted_per_second, prompt_n=112, predicted_n=127):
    """A current llama-server's /completion answer (composed: the field names and order of the final
    object of b11208's stream, `cache_n` first in `timings`; numbers made up)."""
    return {
        "index": 0, "content": "The light blinked again.", "tokens": [], "id_slot": 0, "stop": True,
        "model": "gpt-3.5-turbo", "tokens_predicted": predicted_n + 1, "tokens_evaluated": prompt_n,
        "stop_type": "limit", "stopping_word": "", "tokens_cached": prompt_n + predicted_n, "truncated": False,
        "timings": {"cache_n": 0, "prompt_n": prompt_n, "prompt_ms": prompt_n / prompt_per_second * 1000,
                    "prompt_per_token_ms": 1000 / prompt_per_second, "prompt_per_second": prompt_per_second,
                    "predicted_n": predicted_n, "predicted_ms": predicted_n / predicted_per_second * 1000,
                    "predicted_per_token_ms": 1000 / predicted_per_second,
                    "predicted_per_second": predicted_per_second},
    }


class Server:
    """A real HTTP server on an ephemeral port; answer(path, headers, body) -> (status, payload)."""

    def __init__(self, answer):
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, payload = answer(self.path, self.headers, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.block_on_close = False
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    started = []

    def start(answer):
        server = Server(answer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def completion_only(replies):
    """Answers POST /completion with the next of `replies`, anything else with 404."""
    replies = list(replies)

    def answer(path, headers, body):
        if path != "/completion":
            return 404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}
        return 200, replies.pop(0) if len(replies) > 1 else replies[0]

    return answer


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.gguf"
    with open(path, "wb") as handle:
        handle.truncate(3_840_000_000)  # sparse: 3.84 GB on paper
    return str(path)


def test_the_2023_server_on_a_cpu_host(run_module, serve, model):
    server = serve(completion_only([RECORDED_E519621_FINAL]))
    result = run_module(bench, {"server_url": server.url + "/", "model_path": model})
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["url"] == server.url + "/completion"
    assert len(result["runs"]) == 3
    assert result["runs"][0] == {"prompt_tokens": 29, "prompt_tokens_per_second": 175.89, "generated_tokens": 3,
                                 "generation_tokens_per_second": 12.14, "prompt_ms": 164.873,
                                 "generation_ms": 247.213}
    assert result["prompt_tokens_per_second"] == 175.89
    assert result["generation_tokens_per_second"] == 12.14
    assert (result["prompt_tokens"], result["generated_tokens"]) == (29, 3)
    assert result["model_bytes"] == 3_840_000_000
    assert result["ceiling"] is None and result["ratio"] is None
    assert result["note"] == "no ceiling known: CPU only (no NVIDIA GPU reported)"
    assert result["bandwidth"] == {"bytes_per_second": None, "source": None, "matched": None, "gpu": None}


def test_what_is_asked(run_module, serve, model):
    server = serve(completion_only([RECORDED_E519621_FINAL]))
    run_module(bench, {"server_url": server.url, "model_path": model, "n_predict": 64, "repeat": 2})
    bodies = [request["body"] for request in server.requests]
    assert [request["path"] for request in server.requests] == ["/completion", "/completion"]
    for index, body in enumerate(bodies, 1):
        assert body["n_predict"] == 64
        assert (body["temperature"], body["seed"], body["cache_prompt"], body["ignore_eos"]) == (0, 42, False, True)
        # a different first word each run: the 2023 server reuses the previous request's common prefix
        assert body["prompt"].startswith("Run %d of 2. The lighthouse keeper" % index)
        assert body["prompt"].endswith("Continue the story in the same style for several paragraphs.")
    assert "Authorization" not in server.requests[0]["headers"]


def test_a_current_server_on_an_a6000_median_and_ratio(run_module, serve, model):
    server = serve(completion_only([current(2900.0, 95.0), current(3100.0, 99.5), current(1200.0, 60.0)]))
    result = run_module(bench, {"server_url": server.url, "model_path": model, "api_key": KEY,
                                "gpu_names": ["NVIDIA RTX A6000"], "platform": {"kind": "x86_64"}})
    assert not result.get("failed"), result
    assert [run["generation_tokens_per_second"] for run in result["runs"]] == [95.0, 99.5, 60.0]
    assert result["generation_tokens_per_second"] == 95.0  # the median, not the mean
    assert result["prompt_tokens_per_second"] == 2900.0
    assert (result["prompt_tokens"], result["generated_tokens"]) == (112, 127)
    assert result["ceiling"] == 200.0  # 768 GB/s / 3.84 GB
    assert result["ratio"] == 0.475
    assert result["bandwidth"]["source"] == "https://www.nvidia.com/en-us/design-visualization/rtx-a6000/"
    assert result["bandwidth"]["gpu"] == "NVIDIA RTX A6000"
    assert result["note"] == ""
    assert server.requests[0]["headers"]["Authorization"] == "Bearer " + KEY
    assert KEY not in json.dumps(result)


def test_a_gpu_not_in_the_table(run_module, serve, model):
    server = serve(completion_only([current(900.0, 30.0)]))
    result = run_module(bench, {"server_url": server.url, "model_path": model, "repeat": 1,
                                "gpu_names": ["NVIDIA GeForce RTX 4090"]})
    assert result["ceiling"] is None and result["ratio"] is None
    assert result["note"] == "no bandwidth known for GPU NVIDIA GeForce RTX 4090"
    assert result["generation_tokens_per_second"] == 30.0


def test_an_orin_needs_its_platform(run_module, serve, model):
    server = serve(completion_only([current(400.0, 20.48)]))
    igx = run_module(bench, {"server_url": server.url, "model_path": model, "repeat": 1, "gpu_names": ["Orin (nvgpu)"],
                             "platform": {"kind": "igx_orin", "mode": "igpu", "model": "NVIDIA IGX Orin"}})
    assert igx["ceiling"] == 53.33  # 204.8 GB/s / 3.84 GB
    assert igx["ratio"] == 0.384
    unknown = run_module(bench, {"server_url": server.url, "model_path": model, "repeat": 1,
                                 "gpu_names": ["Orin (nvgpu)"]})
    assert unknown["ceiling"] is None
    assert unknown["note"].startswith("no bandwidth known for GPU Orin (nvgpu)")


def test_a_split_model_counts_every_part(run_module, serve, tmp_path):
    for part in (1, 2, 3):
        with open(tmp_path / ("m-%05d-of-00003.gguf" % part), "wb") as handle:
            handle.truncate(1_280_000_000)
    server = serve(completion_only([current(2900.0, 100.0)]))
    result = run_module(bench, {"server_url": server.url, "repeat": 1, "gpu_names": ["NVIDIA RTX A6000"],
                                "model_path": str(tmp_path / "m-00001-of-00003.gguf")})
    assert result["model_bytes"] == 3_840_000_000
    assert result["ceiling"] == 200.0


def test_no_model_path_no_ceiling(run_module, serve):
    server = serve(completion_only([current(2900.0, 100.0)]))
    result = run_module(bench, {"server_url": server.url, "repeat": 1, "gpu_names": ["NVIDIA L40S"]})
    assert result["model_bytes"] is None and result["ceiling"] is None
    assert "size is unknown" in result["note"]


def test_check_mode_measures_the_same(run_module, serve, model):
    server = serve(completion_only([current(2900.0, 100.0)]))
    result = run_module(bench, {"server_url": server.url, "model_path": model, "repeat": 1}, check_mode=True)
    assert result["changed"] is False
    assert result["generation_tokens_per_second"] == 100.0
    assert len(server.requests) == 1


@pytest.mark.parametrize("reply, says", [
    ({"content": "was than9v", "model": "llama_2", "stop": True, "tokens_predicted": 4}, "answered without timings"),
    ({"content": "x", "timings": {"prompt_n": -1, "prompt_ms": -1.0, "predicted_n": -1, "predicted_ms": -1.0}},
     "answered timings without prompt_n, prompt_per_second, predicted_n, predicted_per_second"),
    ([1, 2, 3], "answered without timings"),
])
def test_an_answer_without_timings_fails_naming_the_url(run_module, serve, model, reply, says):
    server = serve(completion_only([reply]))
    result = run_module(bench, {"server_url": server.url, "model_path": model, "api_key": KEY})
    assert result["failed"]
    assert result["msg"].startswith(server.url + "/completion " + says), result["msg"]
    assert len(server.requests) == 1


def test_an_http_error_fails_naming_the_url_without_the_key(run_module, serve, model):
    def answer(path, headers, body):
        return 401, {"error": {"code": 401, "message": "Invalid API Key (got %s)" % headers.get("Authorization"),
                               "type": "authentication_error"}}

    server = serve(answer)
    result = run_module(bench, {"server_url": server.url, "model_path": model, "api_key": KEY})
    assert result["failed"]
    assert result["msg"].startswith(server.url + "/completion answered HTTP 401")
    assert KEY not in json.dumps(result)


def test_a_server_that_answers_html(run_module, serve, model):
    server = serve(lambda path, headers, body: (200, b"<html>nginx</html>"))
    result = run_module(bench, {"server_url": server.url, "model_path": model})
    assert result["msg"] == server.url + "/completion answered something that is not JSON: <html>nginx</html>"


def test_a_refused_connection_fails_naming_the_url(run_module, model):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = "http://127.0.0.1:%d" % port
    result = run_module(bench, {"server_url": url, "model_path": model, "timeout": 5})
    assert result["failed"]
    assert result["msg"].startswith(url + "/completion did not answer: ")
    assert "refused" in result["msg"].lower()


def test_a_missing_model_fails_before_asking(run_module, serve, tmp_path):
    server = serve(completion_only([current(2900.0, 100.0)]))
    result = run_module(bench, {"server_url": server.url, "model_path": str(tmp_path / "gone.gguf")})
    assert result["failed"]
    assert result["msg"] == "cannot read the size of the model %s: No such file or directory" % (tmp_path / "gone.gguf")
    assert server.requests == []


@pytest.mark.parametrize("key", ["n_predict", "repeat", "timeout"])
def test_counts_below_one_are_refused(run_module, key):
    result = run_module(bench, {"server_url": "http://127.0.0.1:9", key: 0})
    assert result["msg"] == "%s must be at least 1 (got 0)" % key
