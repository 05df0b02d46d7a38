"""llm_health_gate against real HTTP servers on 127.0.0.1.

llama.cpp's server and the OpenAI-compatible endpoint are played by small http.server threads
(or, in the last tests, by the project's own endpoint over tests/unit/fake_llama.py). Only systemd
is faked: `systemctl show` and `journalctl` are answered with captured-looking output.
"""

import http.server
import json
import threading
import time

import pytest

import llm_health_gate as gate

KEY = "sk-edge-secret-4f9c2d71"
FAST = {"interval": 0.05}
SERVER_UNIT = "edge-llama-server.service"
OPENAI_UNIT = "edge-llama-openai.service"
# What `journalctl -u edge-llama-server.service -n 12 --no-pager -o cat` shows after a bad model switch.
CRASH_JOURNAL = (
    "ggml_cuda_init: found 1 CUDA devices:\n"
    "  Device 0: NVIDIA RTX A6000, compute capability 8.6, VMM: yes\n"
    "llama_model_load: error loading model: tensor 'blk.0.attn_q.weight' data is not within the file bounds\n"
    "llama_load_model_from_file: failed to load model\n"
    "main: error: unable to load model\n"
    "edge-llama-server.service: Main process exited, code=exited, status=1/FAILURE\n"
    "edge-llama-server.service: Failed with result 'exit-code'.\n"
)


class Server:
    """A real HTTP server on an ephemeral port; answer(handler) -> (status, body) decides each reply."""

    def __init__(self, answer):
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                server.requests.append({"method": self.command, "path": self.path,
                                        "headers": dict(self.headers), "body": body})
                status, payload = answer(self.command, self.path, self.headers, body)
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _reply

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.block_on_close = False
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def paths(self):
        return [request["path"] for request in self.requests]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def llama(era="current", loading=0, forever=False):
    """llama.cpp's server: current ones answer /health 503 while loading (server.cpp's format), then 200;
    the 2023 one has /model.json and no /health."""
    count = {"health": 0}

    def answer(method, path, headers, body):
        if era == "2023":
            return (200, {"n_ctx": 4096}) if path == "/model.json" else (404, "File Not Found")
        if path == "/health":
            count["health"] += 1
            if forever or count["health"] <= loading:
                return 503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
            return 200, {"status": "ok"}
        return 404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}

    return Server(answer)


def endpoint(key=None, content="Paris is the capital of France.", usage=True, health=200, echo_key=False):
    """The OpenAI-compatible endpoint: /health is open, /v1/chat/completions wants the bearer token."""

    def answer(method, path, headers, body):
        if path == "/health":
            if health == 200:
                return 200, {"status": "ok", "backend": "native"}
            return health, {"error": {"message": "llama.cpp is not ready (HTTP 503 from /health)",
                                      "type": "server_error", "code": "backend_unavailable"}}
        if path == "/v1/chat/completions" and method == "POST":
            given = headers.get("Authorization", "")
            if key and given != "Bearer " + key:
                message = "Missing or wrong API key (send 'Authorization: Bearer <key>')."
                if echo_key:  # a careless endpoint that repeats what it got
                    message += " Got %r." % given
                return 401, {"error": {"message": message, "type": "invalid_request_error",
                                       "code": "invalid_api_key"}}
            reply = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": content}}]}
            if usage:
                reply["usage"] = {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22}
            return 200, reply
        return 404, {"error": {"message": "Not Found", "type": "invalid_request_error"}}

    return Server(answer)


def show(active="active", sub="running", restarts=0, code=0, status=0, result="success", pid=4242,
         load="loaded"):
    """`systemctl show --property=...` output, in systemd's own order."""
    return ("Result=%s\nNRestarts=%s\nMainPID=%s\nExecMainCode=%s\nExecMainStatus=%s\n"
            "LoadState=%s\nActiveState=%s\nSubState=%s\n"
            % (result, restarts, pid, code, status, load, active, sub))


class Systemd:
    """Answers systemctl and journalctl; each unit walks through its list of `show` outputs."""

    def __init__(self):
        self.units = {}
        self.journals = {}
        self.journalctl = "/usr/bin/journalctl"
        self.commands = []

    def run_command(self, argv, **kwargs):
        self.commands.append(list(argv))
        if argv[0].endswith("systemctl"):
            unit = argv[-1]
            states = self.units.get(unit) or [show(load="not-found", active="inactive", sub="dead", pid=0)]
            return 0, states.pop(0) if len(states) > 1 else states[0], ""
        if argv[0].endswith("journalctl"):
            return 0, self.journals.get(argv[argv.index("-u") + 1], "-- No entries --\n"), ""
        raise AssertionError("unexpected command %r" % argv)

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return {"systemctl": "/usr/bin/systemctl", "journalctl": self.journalctl}.get(name)


@pytest.fixture
def systemd(monkeypatch):
    fake = Systemd()
    monkeypatch.setattr(gate.AnsibleModule, "run_command", lambda self, argv, **kw: fake.run_command(argv, **kw))
    monkeypatch.setattr(gate.AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: fake.get_bin_path(name))
    return fake


@pytest.fixture
def servers():
    started = []

    def add(server):
        started.append(server)
        return server

    yield add
    for server in started:
        server.close()


def timed(run_module, args, **kwargs):
    started = time.monotonic()
    result = run_module(gate, args, **kwargs)
    return result, time.monotonic() - started


def no_key(result):
    assert KEY not in json.dumps(result)


def test_current_era_answers(run_module, servers, systemd):
    server, api = servers(llama()), servers(endpoint(key=KEY))
    systemd.units = {SERVER_UNIT: [show(restarts=2)], OPENAI_UNIT: [show(pid=4250)]}
    result = run_module(gate, dict(FAST, server_url=server.url, openai_url=api.url, api_key=KEY,
                                   units=[SERVER_UNIT, OPENAI_UNIT], timeout=10))
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["completion"]["text"] == "Paris is the capital of France."
    assert result["completion"]["completion_tokens"] == 8
    assert result["completion"]["tokens_per_second"] > 0
    # Reported to the millisecond: a stub that answers within half a millisecond shows 0.0.
    assert result["completion"]["seconds"] >= 0
    assert result["completion"]["finish_reason"] == "stop"
    assert 0 <= result["ready_seconds"] < 5
    assert result["units"] == {
        SERVER_UNIT: {"active_state": "active", "sub_state": "running", "n_restarts": 2},
        OPENAI_UNIT: {"active_state": "active", "sub_state": "running", "n_restarts": 0},
    }
    assert server.paths() == ["/health"]
    assert "Authorization" not in server.requests[0]["headers"]  # the key is the endpoint's, not llama.cpp's
    chat = [r for r in api.requests if r["path"] == "/v1/chat/completions"]
    assert len(chat) == 1 and chat[0]["headers"]["Authorization"] == "Bearer " + KEY
    assert chat[0]["body"] == {"model": "llama_2", "messages": [
        {"role": "user", "content": "Reply with one short sentence."}], "max_tokens": 16, "temperature": 0}
    shown = [c for c in systemd.commands if c[0].endswith("systemctl")]
    assert shown[0][:2] == ["/usr/bin/systemctl", "show"] and shown[0][-1] == SERVER_UNIT
    no_key(result)


def test_2023_era_answers(run_module, servers, systemd):
    """The tutorial server has no /health: its /model.json says it is up; the answer has no usage."""
    server = servers(llama(era="2023"))
    api = servers(endpoint(content=" The capital of France is Paris. ", usage=False))
    systemd.units = {SERVER_UNIT: [show()]}
    result = run_module(gate, dict(FAST, server_url=server.url + "/", server_ready_path="/model.json",
                                   openai_url=api.url + "/v1", model="llama-2-7b-chat", prompt="Capital of France?",
                                   max_tokens=24, units=[SERVER_UNIT], timeout=10))
    assert not result.get("failed"), result
    assert result["completion"]["text"] == "The capital of France is Paris."
    assert result["completion"]["completion_tokens"] == 6  # words, without usage
    assert result["completion"]["tokens_per_second"] > 0
    assert server.paths() == ["/model.json"]
    chat = [r for r in api.requests if r["path"] == "/v1/chat/completions"][0]
    assert "Authorization" not in chat["headers"]
    assert chat["body"]["model"] == "llama-2-7b-chat" and chat["body"]["max_tokens"] == 24
    assert chat["body"]["messages"] == [{"role": "user", "content": "Capital of France?"}]


def test_slow_readiness_waits(run_module, servers, systemd):
    server, api = servers(llama(loading=5)), servers(endpoint())
    systemd.units = {SERVER_UNIT: [show()], OPENAI_UNIT: [show()]}
    result = run_module(gate, dict(FAST, server_url=server.url, openai_url=api.url,
                                   units=[SERVER_UNIT, OPENAI_UNIT], timeout=10))
    assert not result.get("failed"), result
    assert server.paths() == ["/health"] * 6
    assert result["ready_seconds"] >= 5 * 0.05 * 0.8
    assert result["completion"]["tokens_per_second"] > 0


def test_a_failed_unit_fails_fast(run_module, servers, systemd):
    server, api = servers(llama(forever=True)), servers(endpoint())
    systemd.units = {
        SERVER_UNIT: [show(), show(), show(active="activating", sub="start", restarts=0),
                      show(active="failed", sub="failed", restarts=1, code=1, status=1, result="exit-code", pid=0)],
        OPENAI_UNIT: [show()],
    }
    systemd.journals = {SERVER_UNIT: CRASH_JOURNAL + "loaded with --api-key %s\n" % KEY}
    result, took = timed(run_module, dict(FAST, server_url=server.url, openai_url=api.url, api_key=KEY,
                                          units=[SERVER_UNIT, OPENAI_UNIT], timeout=60))
    assert result["failed"] and result["reason"] == "unit_failed"
    assert took < 5
    msg = result["msg"]
    assert msg.startswith("%s failed: exited with status 1, restarted 1 time(s) by systemd while waiting for %s/health."
                          % (SERVER_UNIT, server.url)), msg
    assert "Last journal lines:" in msg and "error loading model: tensor 'blk.0.attn_q.weight'" in msg
    assert result["journal"][-2] == "edge-llama-server.service: Failed with result 'exit-code'."
    assert result["journal"][0] == "ggml_cuda_init: found 1 CUDA devices:"
    assert result["units"][SERVER_UNIT] == {"active_state": "failed", "sub_state": "failed", "n_restarts": 1}
    assert ["/usr/bin/journalctl", "-u", SERVER_UNIT, "-n", "12", "--no-pager", "-o", "cat"] in systemd.commands
    no_key(result)


def test_restarts_that_grow_fail_fast(run_module, servers, systemd):
    """systemd already brought the server back (running, new PID): the restart still fails the gate."""
    server, api = servers(llama(forever=True)), servers(endpoint())
    systemd.units = {SERVER_UNIT: [show(restarts=3), show(restarts=3), show(restarts=4, pid=5120)]}
    systemd.journals = {SERVER_UNIT: CRASH_JOURNAL}
    result, took = timed(run_module, dict(FAST, server_url=server.url, openai_url=api.url,
                                          units=[SERVER_UNIT], timeout=60))
    assert result["reason"] == "unit_failed" and took < 5
    assert "%s stopped: restarted 1 time(s) by systemd" % SERVER_UNIT in result["msg"]
    assert "runs again as PID 5120" in result["msg"]
    assert result["units"][SERVER_UNIT]["n_restarts"] == 4


def test_auto_restart_without_journalctl(run_module, servers, systemd):
    server, api = servers(llama()), servers(endpoint(health=503))
    systemd.journalctl = None
    systemd.units = {SERVER_UNIT: [show()],
                     OPENAI_UNIT: [show(), show(), show(), show(active="activating", sub="auto-restart", code=3,
                                                             status=11, result="core-dump", pid=0)]}
    result, took = timed(run_module, dict(FAST, server_url=server.url, openai_url=api.url,
                                          units=[SERVER_UNIT, OPENAI_UNIT], timeout=60))
    assert result["reason"] == "unit_failed" and took < 5
    assert result["msg"] == (
        "%s stopped: dumped core on signal 11 (SIGSEGV), systemd is about to restart it while waiting for "
        "%s/health. No journal lines: journalctl is not available on this host." % (OPENAI_UNIT, api.url))
    assert result["journal"] == []


def test_a_unit_that_is_not_installed(run_module, servers, systemd):
    server, api = servers(llama()), servers(endpoint())
    result = run_module(gate, dict(FAST, server_url=server.url, openai_url=api.url,
                                   units=["edge-llama-sever.service"], timeout=60))
    assert result["reason"] == "unit_failed"
    assert result["msg"].startswith("edge-llama-sever.service is not installed")


@pytest.mark.parametrize("given", ["sk-wrong", ""])
def test_a_refused_key_is_a_clear_failure(run_module, servers, systemd, given):
    server, api = servers(llama()), servers(endpoint(key=KEY, echo_key=True))
    result, took = timed(run_module, dict(FAST, server_url=server.url, openai_url=api.url, api_key=given,
                                          timeout=60))
    assert result["reason"] == "bad_answer" and took < 5
    assert result["msg"].startswith("%s/v1/chat/completions refused the chat request: HTTP 401 (Missing or wrong "
                                    "API key" % api.url), result["msg"]
    if given:
        assert "does not take the api_key given" in result["msg"]
        assert given not in result["msg"]  # the careless endpoint echoed it; the gate masks it
    else:
        assert "no api_key was given" in result["msg"]
    no_key(result)


@pytest.mark.parametrize("content", ["", "  \n", None])
def test_an_empty_answer_fails(run_module, servers, systemd, content):
    server, api = servers(llama()), servers(endpoint(content=content))
    result = run_module(gate, dict(FAST, server_url=server.url, openai_url=api.url, timeout=10))
    assert result["failed"] and result["reason"] == "bad_answer"
    assert "empty answer" in result["msg"] and api.url + "/v1/chat/completions" in result["msg"]


def test_timeout_names_the_url_and_what_it_said(run_module, servers, systemd):
    server, api = servers(llama(forever=True)), servers(endpoint())
    systemd.units = {SERVER_UNIT: [show()]}
    systemd.journals = {SERVER_UNIT: "llama_model_loader: loaded meta data with 19 key-value pairs\n"}
    result, took = timed(run_module, dict(FAST, server_url=server.url, openai_url=api.url, api_key=KEY,
                                          units=[SERVER_UNIT], timeout=1))
    assert result["reason"] == "timeout"
    assert 1 <= took < 4
    assert result["msg"].startswith("Timed out after 1 s waiting for %s/health to answer 200: the last answer was "
                                    "HTTP 503 (Loading model)." % server.url), result["msg"]
    assert "Units: %s active/running (0 restart(s))." % SERVER_UNIT in result["msg"]
    assert result["journal"] == ["[%s] llama_model_loader: loaded meta data with 19 key-value pairs" % SERVER_UNIT]
    assert len(server.requests) > 5  # it kept polling
    no_key(result)


def test_timeout_when_nothing_listens(run_module, servers, systemd):
    closed = servers(llama())
    url = closed.url
    closed.close()
    api = servers(endpoint())
    result = run_module(gate, dict(FAST, server_url=url, openai_url=api.url, timeout=1))
    assert result["reason"] == "timeout"
    assert "waiting for %s/health to answer 200: the last attempt failed: connection refused" % url in result["msg"]


def test_timeout_on_the_endpoint_says_the_server_was_ready(run_module, servers, systemd):
    server, api = servers(llama()), servers(endpoint(health=503))
    result = run_module(gate, dict(FAST, server_url=server.url, openai_url=api.url, timeout=1))
    assert result["reason"] == "timeout"
    assert result["msg"].startswith(
        "Timed out after 1 s waiting for %s/health to answer 200: the last answer was HTTP 503 (llama.cpp is not "
        "ready (HTTP 503 from /health))." % api.url), result["msg"]
    assert "llama.cpp's server at %s/health was ready after" % server.url in result["msg"]


def test_a_2023_server_asked_for_health_fails_with_a_hint(run_module, servers, systemd):
    server, api = servers(llama(era="2023")), servers(endpoint())
    result, took = timed(run_module, dict(FAST, server_url=server.url, openai_url=api.url, timeout=60))
    assert result["reason"] == "bad_answer" and took < 5
    assert "HTTP 404" in result["msg"] and "server_ready_path: /model.json" in result["msg"]


def test_check_mode_reads_the_same(run_module, servers, systemd):
    server, api = servers(llama(loading=2)), servers(endpoint(key=KEY))
    systemd.units = {SERVER_UNIT: [show()]}
    result = run_module(gate, dict(FAST, server_url=server.url, openai_url=api.url, api_key=KEY,
                                   units=[SERVER_UNIT], timeout=10), check_mode=True)
    assert not result.get("failed"), result
    assert result["changed"] is False and result["completion"]["text"]
    no_key(result)


def test_bad_options(run_module, systemd):
    result = run_module(gate, dict(server_url="http://127.0.0.1:1", openai_url="http://127.0.0.1:2", interval=0))
    assert result["failed"] and "interval" in result["msg"]


def test_the_documentation_matches_the_argument_spec():
    import yaml

    options = yaml.safe_load(gate.DOCUMENTATION)["options"]
    spec = {}

    class Capture(Exception):
        pass

    def capture(**kwargs):
        spec.update(kwargs["argument_spec"])
        raise Capture

    original = gate.AnsibleModule
    gate.AnsibleModule = capture
    try:
        with pytest.raises(Capture):
            gate.main()
    finally:
        gate.AnsibleModule = original
    assert set(options) == set(spec)
    for name, arg in spec.items():
        doc = options[name]
        assert doc["type"] == arg["type"], name
        assert doc.get("default") == arg.get("default"), name
        assert doc.get("required", False) == arg.get("required", False), name
        assert doc.get("elements") == arg.get("elements"), name
    assert spec["api_key"]["no_log"] is True


# The project's own endpoint (roles/services/files/openai_api.py) in front of fake_llama.py.

def running_endpoint(llama_url, mode, key):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from services_apps import RunningAPI

    env = {"EDGE_LLAMA_LLAMA_URL": llama_url, "EDGE_LLAMA_BACKEND_MODE": mode, "EDGE_LLAMA_CHAT_TEMPLATE": "llama2",
           "EDGE_LLAMA_MODEL_ALIAS": "llama_2", "EDGE_LLAMA_API_KEY": key}
    return RunningAPI(env)


@pytest.mark.parametrize("era,mode,ready_path", [("current", "native", "/health"),
                                                 ("2023", "completion", "/model.json")])
def test_the_real_endpoint(run_module, systemd, era, mode, ready_path):
    from fake_llama import FakeLlama

    llama_server = FakeLlama(era=era)
    api = running_endpoint(llama_server.url, mode, KEY)
    try:
        args = dict(FAST, server_url=llama_server.url, server_ready_path=ready_path, openai_url=api.url,
                    api_key=KEY, timeout=20)
        result = run_module(gate, args)
        assert not result.get("failed"), result
        assert result["completion"]["text"] == "Paris is the capital."
        assert result["completion"]["tokens_per_second"] > 0
        no_key(result)
        refused = run_module(gate, dict(args, api_key="sk-not-it"))
        assert refused["reason"] == "bad_answer" and "HTTP 401" in refused["msg"]
    finally:
        api.close()
        llama_server.close()


def test_an_answer_from_another_process_on_the_port_fails_the_gate(run_module, servers, systemd):
    """The endpoint's port answers, but the process listening there (this test's stand-in, found through
    /proc/net/tcp and /proc/PID/fd) is not in edge-llama-openai.service: not our unit, not a pass."""
    import os
    from urllib.parse import urlparse
    server, api = servers(llama()), servers(endpoint())
    systemd.units = {SERVER_UNIT: [show()], OPENAI_UNIT: [show()]}
    port = urlparse(api.url).port
    result = run_module(gate, dict(FAST, server_url=server.url, openai_url=api.url, units=[SERVER_UNIT, OPENAI_UNIT],
                                   listeners=[{"port": port, "unit": OPENAI_UNIT}], timeout=10))
    assert result["failed"] and result["reason"] == "foreign_listener", result
    assert result["msg"].startswith("Port %d answered, but from pid %d (" % (port, os.getpid())), result["msg"]
    assert "not from %s" % OPENAI_UNIT in result["msg"]
    assert not [r for r in api.requests if r["path"] == "/v1/chat/completions"]  # no chat with a stranger


def test_an_answer_from_the_gated_unit_passes(run_module, servers, systemd, monkeypatch):
    from urllib.parse import urlparse

    from ansible.module_utils import edge_llama_ports
    server, api = servers(llama()), servers(endpoint())
    systemd.units = {SERVER_UNIT: [show()], OPENAI_UNIT: [show()]}
    monkeypatch.setattr(edge_llama_ports, "process_of",
                        lambda pid, proc="/proc": ("python3 openai_api.py", OPENAI_UNIT))
    port = urlparse(api.url).port
    result = run_module(gate, dict(FAST, server_url=server.url, openai_url=api.url, units=[SERVER_UNIT, OPENAI_UNIT],
                                   listeners=[{"port": port, "unit": OPENAI_UNIT}], timeout=10))
    assert not result.get("failed"), result
