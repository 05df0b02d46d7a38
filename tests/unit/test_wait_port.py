"""roles/services/files/wait_port.py, the server unit's ExecStartPre, against real sockets.

The case it exists for, reproduced: the 2023 server (its cpp-httplib sets SO_REUSEPORT only) closed a
connection, so after it exits its side stays on the port (FIN-WAIT-2 while the client keeps its end,
then TIME_WAIT), and a bind + listen with SO_REUSEADDR, as current llama.cpp's server does it, fails
with EADDRINUSE until those expire.
"""

import importlib.util
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "services" / "files" / "wait_port.py"
spec = importlib.util.spec_from_file_location("wait_port", SCRIPT)
wait_port = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wait_port)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(*args):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=60)
    return proc, time.monotonic() - started


def leave_fin_wait(port):
    """A 2023-style server on port closes a connection its client keeps open, then exits; returns the client."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server's side: FIN-WAIT-2 once the client acknowledges; the client's: CLOSE-WAIT
    server.close()
    time.sleep(0.1)
    return client


def test_a_free_port_passes_at_once():
    proc, took = run("127.0.0.1", free_port(), 5)
    assert proc.returncode == 0 and proc.stdout == "" and took < 3, (proc, took)


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT (Linux)")
def test_what_the_old_server_left_blocks_the_port():
    port = free_port()
    client = leave_fin_wait(port)
    try:
        assert isinstance(wait_port.can_bind("127.0.0.1", port), OSError)  # what llama.cpp's server hits
        proc, took = run("127.0.0.1", port, 1)
        assert proc.returncode == 1, proc
        assert "cannot be bound yet" in proc.stdout and "still cannot be bound after 1 s" in proc.stderr, proc
        assert 0.9 < took < 10, took
    finally:
        client.close()


def test_waits_for_a_listener_to_go_away():
    port = free_port()
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen()
    threading.Timer(1.5, listener.close).start()
    proc, took = run("127.0.0.1", port, 20)
    assert proc.returncode == 0, proc
    assert "is free after" in proc.stdout, proc
    assert 1.2 < took < 10, took


def test_usage():
    proc, _ = run("127.0.0.1")
    assert proc.returncode == 2 and "Usage" in proc.stderr
