"""The appliance through the clients its users have, run on the test controller.

test_appliance.py asks from inside the host; here the real user-side clients run on the controller,
as a person or a program on the appliance would (in the test host's network namespace, entered with
nsenter, so the services' 127.0.0.1 is theirs) or as one on the LAN would (from outside, at the
container's address):

  - the official `openai` SDK: chat, streaming (sync and AsyncOpenAI), completions, models, a 400;
  - LangChain's ChatOpenAI (langchain-openai): invoke and stream;
  - curl: a JSON answer, and the raw server-sent events of a stream;
  - a browser: Playwright driving Debian's chromium through the Gradio chat (screenshots in
    tests/artifacts/chat-<host>*.png);
  - recovery: llama.cpp's server killed under an open chat page, and back;
  - the LAN: what a host with `services_expose_on_lan` offers (the key, the login) and what one
    without it refuses.

The clients are scripts in clients/ that print JSON; each runs with this pytest's Python (the
project's .venv). A host's settings (API key, chat login, exposure) come from the scenario's
host_vars/<host>.yml, as its user would know them.
"""

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import appliance

HERE = Path(__file__).resolve().parent
CLIENTS = HERE / "clients"
ARTIFACTS = appliance.ARTIFACTS
WARNING = "\u26a0"  # how the chat app marks a backend error in the chat
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")


@dataclass
class Target:
    """One test host as its user knows it."""

    name: str
    pid: int
    ip: str
    exposed: bool
    api_key: str
    chat_username: str
    chat_password: str
    openai_port: int
    chat_port: int
    llama_port: int

    @property
    def netns(self):
        return "/proc/%d/ns/net" % self.pid

    def base_url(self, lan=False):
        return "http://%s:%d/v1" % (self.ip if lan else "127.0.0.1", self.openai_port)

    def chat_url(self, lan=False):
        return "http://%s:%d/" % (self.ip if lan else "127.0.0.1", self.chat_port)


def podman_inspect(name, template):
    proc = subprocess.run(["podman", "inspect", "-f", template, name], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, "podman inspect %s failed: %s" % (name, proc.stderr)
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def target(host):
    name = host.backend.name
    settings = appliance.host_vars_of(name)
    pid = int(podman_inspect(name, "{{.State.Pid}}"))
    assert pid > 0, "%s is not running" % name
    networks = json.loads(podman_inspect(name, "{{json .NetworkSettings.Networks}}") or "{}")
    ips = [net.get("IPAddress") for net in (networks or {}).values() if net.get("IPAddress")]
    assert ips, "%s has no address of its own (a container on the host's network has none to test from " \
                "outside): %s" % (name, networks)
    return Target(
        name=name, pid=pid, ip=ips[0], exposed=bool(settings.get("services_expose_on_lan", False)),
        api_key=str(settings.get("services_openai_api_key") or ""),
        chat_username=str(settings.get("services_chat_username") or "edge-llama"),
        chat_password=str(settings.get("services_chat_password") or ""),
        openai_port=int(settings.get("services_openai_port", 8081)),
        chat_port=int(settings.get("services_chat_port", 7860)),
        llama_port=int(settings.get("services_llama_port", 8080)))


# --- running the clients -------------------------------------------------------------------------

def client_env(api_key=None):
    """The controller's environment without proxies or OpenAI settings of its own, plus the key."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS and not k.startswith("OPENAI_")}
    env["PYTHONUNBUFFERED"] = "1"
    if api_key:
        env["OPENAI_API_KEY"] = api_key
    return env


def command(target, argv, lan):
    """argv run in the host's network namespace (its 127.0.0.1), or as it is from the LAN."""
    return list(argv) if lan else ["nsenter", "--net=" + target.netns, "--", *argv]


def run(target, argv, lan=False, api_key=None, timeout=240):
    started = time.monotonic()
    proc = subprocess.run(command(target, argv, lan), capture_output=True, text=True, timeout=timeout,
                          env=client_env(api_key))
    proc.seconds = time.monotonic() - started
    return proc


def py_client(target, script, *args, lan=False, api_key=None, timeout=240):
    """Run clients/<script> and return the JSON it printed."""
    argv = [sys.executable, str(CLIENTS / script), *args]
    proc = run(target, argv, lan=lan, api_key=target.api_key if api_key is None else api_key, timeout=timeout)
    assert proc.returncode == 0, "%s on %s failed (rc %d) after %.1f s:\n%s\n%s" % (
        script, target.name, proc.returncode, proc.seconds, proc.stdout[-3000:], proc.stderr[-6000:])
    lines = proc.stdout.strip().splitlines()
    assert lines, "%s printed nothing; stderr:\n%s" % (script, proc.stderr[-3000:])
    result = json.loads(lines[-1])
    print("%s %s on %s: %.1f s" % (script, " ".join(args[:1]), target.name, proc.seconds))
    return result


def sdk(target, check, lan=False, api_key=None):
    return py_client(target, "openai_sdk.py", check, "--base-url", target.base_url(lan), lan=lan, api_key=api_key)


def curl(target, url, *args, lan=False, api_key=None, timeout=120):
    """curl as a user runs it; returns (rc, HTTP status, body). rc 7: the connection was refused."""
    argv = ["curl", "-sS", "--noproxy", "*", "--connect-timeout", "5", "--max-time", str(timeout),
            "-w", "\n%{http_code}"]
    if api_key:
        argv += ["-H", "Authorization: Bearer %s" % api_key]
    proc = run(target, [*argv, *args, url], lan=lan, timeout=timeout + 30)
    body, _, status = proc.stdout.rpartition("\n")
    return proc.returncode, int(status or 0), body, proc.stderr


def post_json(payload):
    return ["-H", "Content-Type: application/json", "-d", json.dumps(payload)]


def openai_error(body):
    """The OpenAI error object in a response body, asserting its shape."""
    error = json.loads(body)["error"] if isinstance(body, str) else body["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    assert error["message"], error
    return error


class Browser:
    """clients/chat_browser.py: chromium under Playwright, one JSON command and reply at a time."""

    def __init__(self, target, lan=False):
        self.target, self.lan = target, lan
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            command(target, [sys.executable, str(CLIENTS / "chat_browser.py")], lan),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1,
            env=client_env())
        self.replies = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.receive(90)
        assert ready.get("ready"), ready

    def _read(self):
        for line in self.proc.stdout:
            self.replies.put(line)
        self.replies.put(None)

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read()[-4000:]

    def send(self, action, **args):
        self.proc.stdin.write(json.dumps(dict(args, do=action)) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout):
        try:
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the browser did not answer within %d s; its log:\n%s" % (timeout, self.log())) \
                from None
        if line is None:
            raise AssertionError("the browser driver exited (rc %s); its log:\n%s" % (self.proc.wait(), self.log()))
        reply = json.loads(line)
        assert "error" not in reply, "browser on %s: %s\npage text: %s\n%s" % (
            self.target.name, reply["error"], reply.get("page_text"), reply.get("traceback", ""))
        return reply

    def do(self, action, wait=60, **args):
        self.send(action, **args)
        return self.receive(wait)

    def ask(self, question, timeout=120):
        return self.do("ask", wait=timeout + 30, question=question, timeout=timeout)

    def open_chat(self):
        """Open the chat page; log in where the host has a chat password."""
        state = self.do("open", url=self.target.chat_url(self.lan))
        if self.target.chat_password:
            assert state["login_page"], "%s has a chat password but shows no login page: %s" % (self.target.name, state)
            state = self.do("login", username=self.target.chat_username, password=self.target.chat_password)
        assert state["chat_page"], "no chat page on %s: %s" % (self.target.name, state)
        return state

    def screenshot(self, suffix=""):
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / ("chat-%s%s.png" % (self.target.name, suffix))
        self.do("screenshot", path=str(path))
        return path

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def assert_streamed_answer(reply):
    """A normal answer in the chat, seen growing as it streamed."""
    assert reply["answer"], reply
    assert WARNING not in reply["answer"], "the chat shows an error: %s" % reply
    assert reply["question_shown"], reply
    # The page's own record of the answer's text: more than one length means it grew in place.
    if len(reply["answer"]) > 40:
        assert len(set(reply["lengths"])) >= 2, "the answer appeared at once, not streamed: %s" % reply


# --- a. the official openai SDK ------------------------------------------------------------------

@pytest.fixture(scope="module")
def sdk_checks(target):
    """All the SDK's checks in one run of the client (one interpreter start per host, not six)."""
    checks = sdk(target, "all")
    print("the SDK's checks on %s: %s" % (target.name, ", ".join(
        "%s %s s" % (name, r.get("seconds")) for name, r in checks.items())))
    return checks


def sdk_check(sdk_checks, name):
    r = sdk_checks[name]
    assert "error" not in r, "the SDK's %s check failed: %s" % (name, r)
    return r


def test_openai_sdk_chat(sdk_checks):
    r = sdk_check(sdk_checks, "chat")
    assert r["status"] == 200, r
    assert r["object"] == "chat.completion", r
    assert r["role"] == "assistant", r
    assert r["content"], r
    assert r["finish_reason"] in ("stop", "length"), r
    assert r["usage"] and r["usage"]["completion_tokens"] > 0, r


@pytest.mark.parametrize("check", ["stream", "async_stream"])
def test_openai_sdk_streams(sdk_checks, check):
    r = sdk_check(sdk_checks, check)
    assert r["status"] == 200, r
    assert r["content_chunks"] >= 2, r
    assert r["text"].strip(), r
    assert r["finish_reason"] in ("stop", "length"), r


def test_openai_sdk_completions(sdk_checks):
    r = sdk_check(sdk_checks, "completions")
    assert r["status"] == 200, r
    assert r["object"] == "text_completion", r
    assert r["text"], r
    assert r["finish_reason"] in ("stop", "length"), r


def test_openai_sdk_lists_the_model(sdk_checks):
    r = sdk_check(sdk_checks, "models")
    assert r["status"] == 200, r
    assert "llama_2" in r["ids"], r


def test_openai_sdk_bad_request_is_an_openai_error(sdk_checks):
    r = sdk_check(sdk_checks, "bad_request")
    assert r["status"] == 400, r
    assert r["exception"] == "BadRequestError", r
    error = openai_error(r["response"])
    assert error["type"] == "invalid_request_error", error
    assert error["param"] == "temperature", error


# --- b. LangChain --------------------------------------------------------------------------------

def test_langchain_chat_openai(target):
    r = py_client(target, "langchain_chat.py", "--base-url", target.base_url())
    assert r["invoke"]["type"] == "ai", r
    assert r["invoke"]["content"].strip(), r
    assert r["stream"]["content_chunks"] >= 2, r
    assert r["stream"]["text"].strip(), r
    assert r["stream"]["finish_reason"] in ("stop", "length"), r


# --- c. curl -------------------------------------------------------------------------------------

CURL_CHAT = {"model": "llama_2", "temperature": 0, "max_tokens": 32,
             "messages": [{"role": "user", "content": "Count from one to ten."}]}


def test_curl_chat_completion(target):
    rc, status, body, err = curl(target, target.base_url() + "/chat/completions", *post_json(CURL_CHAT),
                                 api_key=target.api_key)
    assert rc == 0 and status == 200, (rc, status, body, err)
    reply = json.loads(body)
    assert reply["object"] == "chat.completion", reply
    assert reply["choices"][0]["message"]["content"], reply


def test_curl_streams_server_sent_events(target):
    rc, status, body, err = curl(target, target.base_url() + "/chat/completions", "-N",
                                 *post_json(dict(CURL_CHAT, stream=True)), api_key=target.api_key)
    assert rc == 0 and status == 200, (rc, status, body[-2000:], err)
    # Server-sent events: `data: ...` lines, each event ended by a blank line, the last `data: [DONE]`.
    assert body.endswith("data: [DONE]\n\n"), body[-500:]
    events = body.split("\n\n")[:-1]
    assert all(event.startswith("data: ") and "\n" not in event for event in events), events[:5]
    chunks = [json.loads(event[len("data: "):]) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks), chunks[:3]
    content = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([text for text in content if text]) >= 2, chunks
    assert any(c["choices"] and c["choices"][0]["finish_reason"] for c in chunks), chunks[-3:]


def scrape(target):
    """The endpoint's GET /metrics (with the key when the host has one), parsed by prometheus-client."""
    from prometheus_client.parser import text_string_to_metric_families

    rc, status, body, err = curl(target, "http://127.0.0.1:%d/metrics" % target.openai_port, api_key=target.api_key)
    assert rc == 0 and status == 200, (rc, status, body[-2000:], err)
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


def test_metrics_count_a_stream(target):
    """One streamed chat through curl moves the request counter and adds a time-to-first-token and a
    tokens observation; no stream is left in flight."""
    route = "/v1/chat/completions"
    requests = ("edge_llama_openai_requests_total", frozenset({"route": route, "status": "200"}.items()))
    ttft = ("edge_llama_openai_time_to_first_token_seconds_count", frozenset({"route": route}.items()))
    tokens = ("edge_llama_openai_completion_tokens_sum", frozenset({"route": route}.items()))
    before = scrape(target)
    rc, status, body, err = curl(target, target.base_url() + "/chat/completions", "-N",
                                 *post_json(dict(CURL_CHAT, stream=True)), api_key=target.api_key)
    assert rc == 0 and status == 200, (rc, status, body[-2000:], err)
    after = scrape(target)
    assert after[requests] == before.get(requests, 0) + 1, (before.get(requests), after.get(requests))
    assert after[ttft] == before.get(ttft, 0) + 1
    assert after[tokens] > before.get(tokens, 0)
    assert after[("edge_llama_openai_streams_in_flight", frozenset())] == 0


def exporter_page(target, path):
    """One of the pages the endpoint passes through (/metrics/llama, /metrics/node), with the key."""
    rc, status, body, err = curl(target, "http://127.0.0.1:%d%s" % (target.openai_port, path), api_key=target.api_key)
    assert rc == 0, (rc, err)
    return status, body


def parsed(body):
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


def serving_release(host):
    return json.loads(host.file("/etc/ansible/facts.d/edge_llama_release.fact").content_string)["releases"][0]


def test_llama_cpp_metrics_where_the_build_serves_them(host, target):
    """llama.cpp's own /metrics, through the endpoint: counting where the release's tree has --metrics
    (detected from the tree), a 404 that says why where it has not (the tutorial's e519621)."""
    release = serving_release(host)
    status, body = exporter_page(target, "/metrics/llama")
    if not release["features"].get("metrics"):
        assert status == 404 and "b2258" in openai_error(body)["message"], (status, body[:500])
        return
    assert status == 200, body[:500]
    predicted = ("llamacpp:tokens_predicted_total", frozenset())
    before = parsed(body)[predicted]
    rc, status, body, err = curl(target, target.base_url() + "/chat/completions", *post_json(CURL_CHAT),
                                 api_key=target.api_key)
    assert rc == 0 and status == 200, (rc, status, body[-2000:], err)
    answered = json.loads(body)["usage"]["completion_tokens"]
    status, body = exporter_page(target, "/metrics/llama")
    assert status == 200
    assert parsed(body)[predicted] >= before + answered > before, (before, answered, parsed(body)[predicted])


def test_node_exporter_names_the_serving_release_and_stays_on_loopback(host, target):
    """The node exporter (Debian's), through the endpoint: the host's series and edge-llama's textfile
    series, whose release info names the commit and model that serve (the collector runs every 15 s).
    The test hosts have no nvidia-smi: the GPU collector says so (edge_llama_gpu_query_success 0); its
    GPU series are checked on captured real-device output in tests/unit/test_metrics_textfile.py."""
    release = serving_release(host)
    wanted = {"commit": release["commit"][:12], "model": os.path.basename(release["model_path"]),
              "model_sha256": release["model_sha256"], "state": "serving"}
    deadline, found = time.monotonic() + 45, {}
    while time.monotonic() < deadline:
        status, body = exporter_page(target, "/metrics/node")
        assert status == 200, body[:500]
        found = parsed(body)
        if found.get(("edge_llama_release_info", frozenset(wanted.items()))) == 1:
            break
        time.sleep(3)
    serving = [dict(k[1]) for k in found if k[0] == "edge_llama_release_info" and dict(k[1])["state"] == "serving"]
    assert serving == [wanted], serving
    assert found[("edge_llama_gpu_query_success", frozenset())] == 0
    assert ("node_load1", frozenset()) in found
    assert host.file("/etc/systemd/system/prometheus-node-exporter.service.d/edge-llama.conf").exists
    # Loopback only: from the LAN the port is refused (curl's rc 7), exposed host or not.
    rc, status, body, err = curl(target, "http://%s:9100/metrics" % target.ip, lan=True)
    assert rc == 7, "the node exporter on %s answered the LAN: rc %d, HTTP %s %s" % (target.name, rc, status, err)


# --- d. a browser --------------------------------------------------------------------------------

def test_browser_chat_answers_and_clears(target):
    with Browser(target) as browser:
        browser.open_chat()
        reply = browser.ask("Describe Paris in three sentences.")
        browser.screenshot()
        print("chat on %s: first text after %.1f s, done after %.1f s, lengths seen %s" % (
            target.name, reply["first_text_s"], reply["seconds"], reply["lengths"]))
        assert reply["user_messages"] == 1 and reply["bot_messages"] == 1, reply
        assert_streamed_answer(reply)
        cleared = browser.do("clear")
        assert cleared == {"user_messages": 0, "bot_messages": 0}, cleared


# --- f. the LAN ----------------------------------------------------------------------------------

def test_lan_cannot_reach_llama_cpp_server(target):
    # llama.cpp's own API has no key at the tutorial's commit: loopback only, exposed or not.
    rc, status, body, err = curl(target, "http://%s:%d/health" % (target.ip, target.llama_port), lan=True)
    assert rc == 7, "llama.cpp's port %d on %s should refuse LAN connections: rc %d, HTTP %s %s %s" % (
        target.llama_port, target.ip, rc, status, body[:300], err)


def test_lan_openai_endpoint(target):
    models = "%s/models" % target.base_url(lan=True)
    rc, status, body, err = curl(target, models, lan=True)
    if not target.exposed:
        assert rc == 7, "%s is not exposed: %s should refuse the connection (rc %d, HTTP %s %s %s)" % (
            target.name, models, rc, status, body[:300], err)
        return
    assert rc == 0 and status == 401, (rc, status, body, err)
    assert openai_error(body)["code"] == "invalid_api_key", body
    rc, status, body, err = curl(target, models, lan=True, api_key="not-the-" + target.api_key)
    assert status == 401, (rc, status, body, err)
    rc, status, body, err = curl(target, models, lan=True, api_key=target.api_key)
    assert rc == 0 and status == 200, (rc, status, body, err)
    assert "llama_2" in [m["id"] for m in json.loads(body)["data"]], body
    # The SDK from the LAN: refused without the key (its AuthenticationError), answers with it.
    r = sdk(target, "models", lan=True, api_key="")
    assert r["status"] == 401 and r["exception"] == "AuthenticationError", r
    r = sdk(target, "chat", lan=True)
    assert r["status"] == 200 and r["content"], r


def test_lan_chat_app(target):
    url = target.chat_url(lan=True)
    if not target.exposed:
        rc, status, body, err = curl(target, url, lan=True)
        assert rc == 7, "%s is not exposed: %s should refuse the connection (rc %d, HTTP %s %s %s)" % (
            target.name, url, rc, status, body[:300], err)
        return
    # Without a login Gradio answers nothing but its login page.
    rc, status, body, err = curl(target, url + "config", lan=True)
    assert rc == 0 and status == 401, (rc, status, body[:300], err)
    with Browser(target, lan=True) as browser:
        state = browser.do("open", url=url)
        browser.screenshot("-lan-login")
        assert state["login_page"] and not state["chat_page"], state
        wrong = browser.do("login", username=target.chat_username, password="not-" + target.chat_password)
        assert wrong["login_page"] and not wrong["chat_page"], wrong
        state = browser.do("login", username=target.chat_username, password=target.chat_password)
        assert state["chat_page"], state
        reply = browser.ask("What is the capital of France?")
        browser.screenshot("-lan")
        assert reply["answer"] and WARNING not in reply["answer"], reply


# --- e. recovery (last: it restarts llama.cpp's server) -------------------------------------------

def unit_state(host, unit):
    out = host.run("systemctl show -p NRestarts -p MainPID -p ActiveState %s", unit)
    assert out.rc == 0, out.stderr
    return dict(line.split("=", 1) for line in out.stdout.strip().splitlines())


def test_killed_model_server_shows_in_the_chat_and_recovers(host, target):
    units = ("edge-llama-server", "edge-llama-openai", "edge-llama-chat")
    before = {unit: unit_state(host, unit) for unit in units}
    assert all(state["ActiveState"] == "active" for state in before.values()), before
    with Browser(target) as browser:
        browser.open_chat()
        # Everything ready before the kill: the unit comes back after RestartSec=5.
        poller = subprocess.Popen(
            command(target, [sys.executable, str(CLIENTS / "openai_sdk.py"), "backend_down",
                             "--base-url", target.base_url(), "--within", "5"], lan=False),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=client_env(target.api_key))
        try:
            assert json.loads(poller.stdout.readline() or "{}").get("ready"), poller.stderr.read()
            kill = host.run("systemctl kill -s KILL edge-llama-server")
            killed_at = time.monotonic()
            assert kill.rc == 0, kill.stderr
            poller.stdin.write("go\n")
            poller.stdin.flush()
            browser.send("ask", question="What is the capital of France?", timeout=30)
            out, err = poller.communicate(timeout=60)
        finally:
            if poller.poll() is None:
                poller.kill()
        down = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"stderr": err}
        during = browser.receive(60)
        asked_in = time.monotonic() - killed_at
        browser.screenshot("-backend-down")
        print("server killed on %s: the SDK saw %s after %s s, the chat's answer after %.1f s: %r" % (
            target.name, down.get("status"), down.get("after_s"), asked_in, during["answer"][:200]))
        assert down.get("status") == 503, "no 503 from the endpoint within 5 s of the kill: %s" % down
        assert down["exception"] == "InternalServerError", down
        assert openai_error(down["response"])["code"] == "backend_unavailable", down
        assert WARNING in during["answer"], "the chat did not show the error: %s" % during

        # Back by itself: llama.cpp restarted by systemd, the endpoint and the chat app untouched.
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            rc, status, body, err = curl(target, "http://127.0.0.1:%d/health" % target.openai_port, timeout=10)
            health = (rc, status, body[:300], err)
            if status == 200:
                break
            time.sleep(0.5)
        print("endpoint healthy again %.1f s after the kill" % (time.monotonic() - killed_at))
        assert health and health[1] == 200, "the endpoint's /health is not 200 120 s after the kill: %s" % (health,)
        after = {unit: unit_state(host, unit) for unit in units}
        assert int(after["edge-llama-server"]["NRestarts"]) == int(before["edge-llama-server"]["NRestarts"]) + 1, \
            (before, after)
        for unit in ("edge-llama-openai", "edge-llama-chat"):
            assert after[unit]["MainPID"] == before[unit]["MainPID"], "%s restarted: %s -> %s" % (
                unit, before[unit], after[unit])
        # A new question in the same page, after Clear: a small model would otherwise answer by
        # repeating the error notice it finds in the history it is sent.
        assert browser.do("clear") == {"user_messages": 0, "bot_messages": 0}
        reply = browser.ask("What is the capital of France?")
        browser.screenshot("-recovered")
        assert reply["bot_messages"] == 1, reply
        assert reply["answer"] and WARNING not in reply["answer"], reply
