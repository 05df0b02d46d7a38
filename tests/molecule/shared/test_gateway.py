"""The fleet scenario's TLS gateway (playbooks/gateway.yml on orin-a: Debian's HAProxy) in front of the
appliances it can reach: orin-a on loopback and orin-b on the LAN (orin-c and orin-d listen on loopback
only and are left out). Checked from the controller as a client on the LAN would: the official openai SDK
over https:// trusting the generated site CA (fetched to tests/artifacts/gateway-ca.crt), a stream that
arrives as it is generated, plain HTTP redirected, and a stopped endpoint taken out by the health check
while the gateway keeps answering."""

import importlib.util
import ssl
import time

from types import SimpleNamespace

import httpx
import openai
import pytest

import appliance
import test_clients

_spec = importlib.util.spec_from_file_location("edge_llama_haproxy",
                                               appliance.REPO / "module_utils" / "edge_llama_haproxy.py")
haproxy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(haproxy)

pytestmark = pytest.mark.fleet

CA = appliance.ARTIFACTS / "gateway-ca.crt"


HOSTS = appliance.fleet()
A, B, C, D = (HOSTS + [""] * 4)[:4]


def trust():
    """An SSL context that trusts the site CA the role fetched (and nothing else)."""
    return ssl.create_default_context(cafile=str(CA))


def gateway_address():
    return appliance.host_vars_of(A)["ansible_host"]


def key():
    """The fleet's clients send orin-b's key (orin-a has none and takes any)."""
    return appliance.host_vars_of(B)["services_openai_api_key"]


RUNTIME = ("python3 -c \"import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock');"
           " s.sendall(sys.argv[1].encode() + b'\\n');"
           " print(b''.join(iter(lambda: s.recv(65536), b'')).decode())\" %s")


def runtime(command):
    """One command to HAProxy's runtime API on the gateway host (its admin socket)."""
    return appliance.machine(A).check_output(RUNTIME % ("'%s'" % command))


def server_states():
    """{(backend, server): status} from the runtime API's show stat (read as library/gateway_rotation.py
    reads it)."""
    return {(r["pxname"], r["svname"]): r["status"] for r in haproxy.parse_stat(runtime("show stat"))
            if r["svname"] not in ("FRONTEND", "BACKEND")}


def test_haproxy_runs_sandboxed_on_443_and_80():
    host = appliance.machine(A)
    assert host.service("haproxy").is_running and host.service("haproxy").is_enabled
    assert host.socket("tcp://0.0.0.0:443").is_listening and host.socket("tcp://0.0.0.0:80").is_listening
    score = host.check_output("systemd-analyze security haproxy.service | tail -n 1")
    print("systemd-analyze security haproxy.service on %s: %s" % (A, score))
    assert float(score.split("level for haproxy.service:")[1].split()[0]) <= 4.0, score
    pem = host.file("/etc/haproxy/edge-llama/gateway.pem")
    assert pem.mode == 0o600 and pem.user == "root"


def test_the_openai_sdk_streams_through_https_with_the_site_ca():
    assert CA.is_file(), "the role fetches the site CA to %s" % CA
    base = "https://%s/v1" % gateway_address()
    with httpx.Client(verify=trust(), timeout=120) as http:
        sdk = openai.OpenAI(base_url=base, api_key=key(), http_client=http, max_retries=0)
        started, arrivals, text = time.monotonic(), [], ""
        stream = sdk.chat.completions.create(model="llama_2", stream=True, max_tokens=24, temperature=0,
                                             messages=[{"role": "user", "content": "Count from one to ten."}])
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic() - started)
                text += chunk.choices[0].delta.content
        models = sdk.models.list()
    print("through the gateway: %d pieces, first after %.2f s, last after %.2f s: %r"
          % (len(arrivals), arrivals[0], arrivals[-1], text))
    assert text.strip() and len(arrivals) >= 3
    # Passed through as generated, not held back: the first piece well before the last.
    assert arrivals[0] < arrivals[-1] - 0.05, arrivals
    assert [m.id for m in models.data]
    # Without the CA the certificate is refused: it is the site's own, not a public one.
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/models", headers={"Authorization": "Bearer " + key()}, timeout=20)


def test_plain_http_is_redirected_to_https_and_the_key_is_still_checked():
    address = gateway_address()
    reply = httpx.get("http://%s/v1/models" % address, follow_redirects=False, timeout=20)
    assert reply.status_code == 301 and reply.headers["location"] == "https://%s/v1/models" % address
    with httpx.Client(verify=trust(), timeout=20) as http:
        # orin-b wants its key; orin-a has none: with a wrong key only orin-a could answer, so ask until
        # orin-b did (leastconn spreads the requests).
        codes = {http.get("https://%s/v1/models" % address, headers={"Authorization": "Bearer wrong"}).status_code
                 for _ in range(8)}
        assert 401 in codes, codes
        answer = http.get("https://%s/v1/models" % address, headers={"Authorization": "Bearer " + key()})
    assert answer.status_code == 200 and answer.headers.get("strict-transport-security"), answer.headers


def test_a_stopped_endpoint_is_taken_out_by_the_health_check_and_the_gateway_keeps_answering():
    name_b = B
    states = server_states()
    assert states[("be_openai", A)] == "UP" and states[("be_openai", name_b)] == "UP", states
    assert not [s for s in states if s[1] in (C, D)], states  # loopback only: not balanced
    appliance.machine(B).check_output("systemctl stop edge-llama-openai.service")
    stopped = time.monotonic()
    try:
        appliance.wait_for("be_openai/%s DOWN" % name_b,
                           lambda: server_states()[("be_openai", name_b)].startswith("DOWN"), 30)
        took = time.monotonic() - stopped
        print("be_openai/%s DOWN %.1f s after its endpoint stopped (inter 2s x fall 3)" % (name_b, took))
        assert took <= 10, took
        with httpx.Client(verify=trust(), timeout=60) as http:
            for _ in range(4):
                reply = http.get("https://%s/v1/models" % gateway_address(),
                                 headers={"Authorization": "Bearer " + key()})
                assert reply.status_code == 200, reply.text
    finally:
        appliance.machine(B).check_output("systemctl start edge-llama-openai.service")
    appliance.wait_for("be_openai/%s UP again" % name_b, lambda: server_states()[("be_openai", name_b)] == "UP", 60)


def test_the_runtime_api_can_drain_a_server():
    """What an upgrade's drain step will use: a drained server takes no new request, ready puts it back."""
    runtime("set server be_openai/%s state drain" % B)
    try:
        assert server_states()[("be_openai", B)] == "DRAIN"
        seen = set()
        with httpx.Client(verify=trust(), timeout=60) as http:
            for _ in range(6):
                reply = http.get("https://%s/v1/models" % gateway_address(), headers={"Authorization": "Bearer wrong"})
                seen.add(reply.status_code)
        assert seen == {200}, seen  # only orin-a, which has no key, answered
    finally:
        runtime("set server be_openai/%s state ready" % B)
    assert server_states()[("be_openai", B)] == "UP"


HEALTH = ("python3 -c \"import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).status)\" "
          "http://%s:%d/health")


def test_orin_b_answers_the_gateway_and_no_other_host_of_the_lan():
    """orin-b's endpoint and chat app listen on the LAN but take connections only from the gateway (and
    the controller, for the client tests): services_lan_allowed_networks, the units' IPAddressAllow=.
    orin-c, on the same LAN, gets no answer."""
    b = appliance.host_vars_of(B)
    assert appliance.host_vars_of(A)["ansible_host"] + "/32" in b["services_lan_allowed_networks"], b
    from_gateway = appliance.machine(A).run(HEALTH % (b["ansible_host"], 8081))
    assert from_gateway.rc == 0 and from_gateway.stdout.strip() == "200", from_gateway.stderr
    for port in (8081, 7860):
        from_c = appliance.machine(C).run(HEALTH % (b["ansible_host"], port))
        assert from_c.rc != 0 and ("timed out" in from_c.stderr or "Connection refused" in from_c.stderr), \
            (port, from_c.stdout, from_c.stderr[-500:])


def test_chromium_chats_through_https_trusting_the_site_ca_and_refuses_without_it(monkeypatch):
    """A person's browser at https://<gateway>/: Debian's chromium (test_clients.py's Browser, from the
    LAN) trusting the site CA from an NSS database, as a user's Chromium on Linux would; the gateway's
    chat app (orin-a's, or orin-b's behind its login) answers. Without the CA the page does not load."""
    url = "https://%s/" % gateway_address()
    target = SimpleNamespace(name="gateway")
    monkeypatch.setenv("EDGE_LLAMA_BROWSER_CA", str(CA))
    with test_clients.Browser(target, lan=True) as browser:
        state = browser.do("open", url=url)
        if state["login_page"]:  # orin-b's chat app (the cookie keeps the browser there)
            b = appliance.host_vars_of(B)
            state = browser.do("login", username=b["services_chat_username"], password=b["services_chat_password"])
        assert state["chat_page"] and state["url"].startswith("https://"), state
        reply = browser.ask("What is the capital of France?")
        browser.screenshot("-https")
        assert reply["answer"] and reply["bot_messages"] == 1, reply
    monkeypatch.delenv("EDGE_LLAMA_BROWSER_CA")
    with test_clients.Browser(target, lan=True) as browser:
        browser.send("open", url=url, timeout=20)
        with pytest.raises(AssertionError, match="ERR_CERT_AUTHORITY_INVALID"):
            browser.receive(60)
