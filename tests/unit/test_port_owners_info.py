"""port_owners_info against this machine's real /proc: sockets this test opens, found with their owner."""

import os
import socket

import pytest

import port_owners_info as module
from ansible.module_utils import edge_llama_ports as ports


@pytest.fixture
def listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_a_held_port_names_the_variable_the_port_and_the_process(run_module, listening):
    result = run_module(module, {"ports": [{"name": "services_openai_port", "port": listening}]})
    assert result["changed"] is False
    (holder,) = result["ports"]["services_openai_port"]["holders"]
    assert holder["pid"] == os.getpid() and holder["address"] == "127.0.0.1" and holder["ours"] is False
    assert "python" in holder["process"]
    (conflict,) = result["conflicts"]
    assert conflict.startswith("services_openai_port: port %d is held by pid %d (" % (listening, os.getpid()))
    assert "choose another port for services_openai_port" in conflict


def test_a_free_port_has_no_holder(run_module):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: free for a server after close
    result = run_module(module, {"ports": [{"name": "services_chat_port", "port": port}]})
    assert result["ports"]["services_chat_port"] == {"port": port, "holders": []}
    assert result["conflicts"] == []


def test_our_own_unit_may_hold_it(run_module, listening, monkeypatch):
    monkeypatch.setattr(ports, "process_of", lambda pid, proc=ports.PROC: ("python3 openai_api.py",
                                                                        "edge-llama-openai.service"))
    result = run_module(module, {"ports": [{"name": "services_openai_port", "port": listening}],
                                 "allowed_units": ["edge-llama-openai.service"]})
    assert result["conflicts"] == [] and result["ports"]["services_openai_port"]["holders"][0]["ours"] is True


@pytest.mark.parametrize("bind,address,conflict", [
    ("127.0.0.1", "127.0.0.1", True), ("0.0.0.0", "127.0.0.1", True), ("127.0.0.1", "0.0.0.0", True),
    ("127.0.0.1", "::", True), ("127.0.0.2", "127.0.0.1", False), ("192.168.1.5", "10.0.0.1", False),
])
def test_which_listeners_stop_a_bind(bind, address, conflict):
    assert ports.conflicts_with(bind, address) is conflict


def test_addresses_from_proc_net_tcp():
    assert ports._addr("0100007F:1F90") == ("127.0.0.1", 8080)
    assert ports._addr("00000000000000000000000000000000:1F91") == ("::", 8081)
    assert ports._addr("0000000000000000FFFF00000100007F:1EB4") == ("127.0.0.1", 7860)


def test_the_unit_comes_from_the_cgroup(tmp_path):
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cmdline").write_bytes(b"/usr/bin/python3\0-m\0http.server\0008081\0")
    (tmp_path / "42" / "cgroup").write_text("0::/system.slice/foreign-web.service\n")
    assert ports.process_of(42, str(tmp_path)) == ("/usr/bin/python3 -m http.server 8081", "foreign-web.service")
