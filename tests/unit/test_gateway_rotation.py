"""gateway_rotation against a real HAProxy (Debian's haproxy, installed by tests/setup/bootstrap.sh) in
front of two small HTTP servers on 127.0.0.1, through its real runtime API: the drain waits for a
stream in flight, a stream longer than the bound is cut and counted, ready waits for HAProxy's own health
check. Each server answers with its name, so a test can tell where HAProxy sent a request."""

import http.client
import http.server
import shutil
import subprocess
import threading
import time

import pytest

import gateway_rotation
from services_apps import free_port
from ansible.module_utils.edge_llama_haproxy import RuntimeApiError, servers, set_state, show_stat

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


class Appliance:
    """An endpoint of one appliance: GET /health, GET /stream/N (N events, 0.1 s apart, as SSE)."""

    def __init__(self, name):
        self.name = name
        self.healthy = True
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/health":
                    body = b"ok\n" if outer.healthy else b"down\n"
                    self.send_response(200 if outer.healthy else 503)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("X-Served-By", outer.name)
                    self.end_headers()
                    self.wfile.write(body)
                    return
                count = int(self.path.rsplit("/", 1)[-1])
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("X-Served-By", outer.name)
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for i in range(count):
                        self.wfile.write(b"data: %d\n\n" % i)
                        self.wfile.flush()
                        time.sleep(0.1)
                    self.wfile.write(b"data: [DONE]\n\n")
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client that went away mid-stream
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway(tmp_path):
    apps = {"orin-a": Appliance("orin-a"), "orin-b": Appliance("orin-b")}
    port = free_port()
    sock = tmp_path / "admin.sock"
    servers_lines = "".join("\tserver %s 127.0.0.1:%d\n" % (n, a.port) for n, a in apps.items())
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        "global\n\tstats socket %s mode 600 level admin\n\n"
        "defaults\n\tmode http\n\ttimeout connect 2s\n\ttimeout client 30s\n\ttimeout server 30s\n\n"
        "frontend fe\n\tbind 127.0.0.1:%d\n\tuse_backend be_chat if { path_beg /chat }\n\tdefault_backend be_openai\n\n"
        "backend be_openai\n\tbalance leastconn\n\toption httpchk GET /health\n"
        "\tdefault-server check inter 200ms fall 2 rise 2\n%s\n"
        "backend be_chat\n\tbalance roundrobin\n\toption httpchk GET /health\n"
        "\tdefault-server check inter 200ms fall 2 rise 2\n%s" % (sock, port, servers_lines, servers_lines))
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sock.exists():
            rows = show_stat(str(sock))
            if all(r["status"] == "UP" for r in servers(rows, "orin-a").values()) and \
                    all(r["status"] == "UP" for r in servers(rows, "orin-b").values()):
                break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("HAProxy did not start: %s" % proc.stderr.read().decode())
    yield {"port": port, "socket": str(sock), "apps": apps}
    proc.terminate()
    proc.wait(10)
    for a in apps.values():
        a.close()


def status(gw, server):
    return {b: r["status"] for b, r in servers(show_stat(gw["socket"]), server).items()}


def stream(gw, events, out):
    """GET /stream/N through the gateway; out gets who served it and the events received."""
    conn = http.client.HTTPConnection("127.0.0.1", gw["port"], timeout=30)
    conn.request("GET", "/stream/%d" % events)
    resp = conn.getresponse()
    out["served_by"] = resp.getheader("X-Served-By")
    body = b""
    try:
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            body += chunk
    except (http.client.HTTPException, OSError) as exc:
        out["error"] = repr(exc)
    out["done"] = body.endswith(b"data: [DONE]\n\n")
    out["events"] = body.count(b"data: ")


def served_by(gw):
    conn = http.client.HTTPConnection("127.0.0.1", gw["port"], timeout=10)
    conn.request("GET", "/health")
    resp = conn.getresponse()
    resp.read()
    return resp.getheader("X-Served-By")


def start_stream_on(gw, server, events):
    """Start streams until one is served by `server` (leastconn: the next goes to the idler one)."""
    for _ in range(4):
        out = {}
        t = threading.Thread(target=stream, args=(gw, events, out), daemon=True)
        t.start()
        deadline = time.monotonic() + 5
        while "served_by" not in out and time.monotonic() < deadline:
            time.sleep(0.02)
        if out.get("served_by") == server:
            return t, out
    pytest.fail("no stream reached %s" % server)


def test_drain_waits_for_the_stream_in_flight_then_takes_the_server_out(run_module, gateway):
    t, out = start_stream_on(gateway, "orin-b", 15)
    result = run_module(gateway_rotation, {"server": "orin-b", "state": "drained", "socket": gateway["socket"],
                                           "drain_timeout": 20, "poll_interval": 0.1})
    t.join(10)
    assert result["changed"] and result["found"] and result["present"]
    assert result["in_flight"] == 1 and result["cut"] == 0
    assert result["waited"] >= 0.5  # the stream had about 1.5 s left
    assert out["done"] and out["events"] == 16, out  # the stream ended whole
    assert result["backends"] == {"be_openai": {"before": "UP", "after": "MAINT"},
                                  "be_chat": {"before": "UP", "after": "MAINT"}}
    assert status(gateway, "orin-b") == {"be_openai": "MAINT", "be_chat": "MAINT"}
    assert {served_by(gateway) for _ in range(6)} == {"orin-a"}
    # Again: already out, nothing to do.
    again = run_module(gateway_rotation, {"server": "orin-b", "state": "drained", "socket": gateway["socket"]})
    assert not again["changed"] and again["in_flight"] == 0


def test_a_stream_longer_than_the_bound_is_cut_and_counted(run_module, gateway):
    t, out = start_stream_on(gateway, "orin-b", 300)
    result = run_module(gateway_rotation, {"server": "orin-b", "state": "drained", "socket": gateway["socket"],
                                           "drain_timeout": 1, "poll_interval": 0.1})
    t.join(10)
    assert not t.is_alive()
    assert result["changed"] and result["in_flight"] == 1 and result["cut"] == 1
    assert 1 <= result["waited"] < 3
    assert not out["done"] and out["events"] < 300
    assert status(gateway, "orin-b") == {"be_openai": "MAINT", "be_chat": "MAINT"}


def test_ready_waits_for_the_health_check_and_traffic_comes_back(run_module, gateway):
    run_module(gateway_rotation, {"server": "orin-b", "state": "drained", "socket": gateway["socket"]})
    result = run_module(gateway_rotation, {"server": "orin-b", "state": "ready", "socket": gateway["socket"],
                                           "poll_interval": 0.05})
    assert result["changed"]
    assert result["backends"] == {"be_openai": {"before": "MAINT", "after": "UP"},
                                  "be_chat": {"before": "MAINT", "after": "UP"}}
    assert result["waited"] > 0  # HAProxy shows "UP 1/2" until a check passes
    assert "orin-b" in {served_by(gateway) for _ in range(6)}
    again = run_module(gateway_rotation, {"server": "orin-b", "state": "ready", "socket": gateway["socket"]})
    assert not again["changed"]


def test_ready_fails_with_the_last_check_when_the_appliance_does_not_answer_healthy(run_module, gateway):
    run_module(gateway_rotation, {"server": "orin-b", "state": "drained", "socket": gateway["socket"]})
    gateway["apps"]["orin-b"].healthy = False
    result = run_module(gateway_rotation, {"server": "orin-b", "state": "ready", "socket": gateway["socket"],
                                           "ready_timeout": 2, "poll_interval": 0.1})
    assert result["failed"]
    assert "orin-b is back in rotation but HAProxy's health check has not passed within 2 s" in result["msg"]
    assert "be_openai/orin-b DOWN" in result["msg"] and "L7STS" in result["msg"]
    assert {served_by(gateway) for _ in range(6)} == {"orin-a"}


def test_only_the_named_backends(run_module, gateway):
    result = run_module(gateway_rotation, {"server": "orin-a", "state": "drained", "socket": gateway["socket"],
                                           "backends": ["be_chat"]})
    assert list(result["backends"]) == ["be_chat"]
    assert status(gateway, "orin-a") == {"be_openai": "UP", "be_chat": "MAINT"}


def test_check_mode_sends_nothing(run_module, gateway):
    result = run_module(gateway_rotation, {"server": "orin-b", "state": "drained", "socket": gateway["socket"]},
                        check_mode=True)
    assert result["changed"]
    assert status(gateway, "orin-b") == {"be_openai": "UP", "be_chat": "UP"}


def test_a_server_no_backend_has_and_a_gateway_not_installed_change_nothing(run_module, gateway, tmp_path):
    result = run_module(gateway_rotation, {"server": "orin-z", "state": "drained", "socket": gateway["socket"]})
    assert not result["changed"] and not result["found"] and result["present"]
    assert "no backend has server orin-z" in result["msg"]
    result = run_module(gateway_rotation, {"server": "orin-b", "state": "drained",
                                           "socket": str(tmp_path / "absent.sock")})
    assert not result["changed"] and not result["present"]


def test_refusals_of_the_runtime_api_are_errors(gateway):
    with pytest.raises(RuntimeApiError, match="No such server"):
        set_state(gateway["socket"], "be_openai", "orin-z", "drain")
    with pytest.raises(RuntimeApiError, match="No such backend"):
        set_state(gateway["socket"], "be_nothing", "orin-a", "drain")
