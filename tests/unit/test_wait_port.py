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


OLD_2023 = ("SO_REUSEPORT",)  # e519621's cpp-httplib default on Linux
CURRENT = ("SO_REUSEADDR",)  # a current llama-server without --reuse-port
CURRENT_REUSE_PORT = ("SO_REUSEADDR", "SO_REUSEPORT")  # with --reuse-port, as the role starts it


def leave_fin_wait(port, options=OLD_2023):
    """A server that set options on its port closes a connection its client keeps open, then exits; returns
    the client. Its side stays on the port (FIN-WAIT-2, then TIME_WAIT) with the listener's options."""
    server = socket.socket()
    for name in options:
        server.setsockopt(socket.SOL_SOCKET, getattr(socket, name), 1)
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


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT (Linux)")
@pytest.mark.parametrize("old, new, binds", [
    (OLD_2023, CURRENT, False),              # 2023 -> current without --reuse-port: waits out TIME_WAIT
    (OLD_2023, CURRENT_REUSE_PORT, True),    # 2023 -> current with --reuse-port: at once
    (CURRENT_REUSE_PORT, OLD_2023, True),    # its rollback to the 2023 server: at once
    (CURRENT, OLD_2023, False),              # rollback from a current server started without it: waits
    (CURRENT_REUSE_PORT, CURRENT_REUSE_PORT, True),
    (CURRENT, CURRENT_REUSE_PORT, True),     # an older current release -> this role's: SO_REUSEADDR on both
    (OLD_2023, OLD_2023, True),
], ids=["2023-to-current", "2023-to-current-reuse-port", "current-reuse-port-to-2023", "current-to-2023",
        "current-to-current", "current-without-to-current", "2023-to-2023"])
def test_which_upgrades_bind_while_the_old_connections_drain(old, new, binds):
    """The kernel's rule, measured on real sockets: what the old server left lets the new one bind when
    both set SO_REUSEPORT or both SO_REUSEADDR."""
    port = free_port()
    client = leave_fin_wait(port, old)
    try:
        error = wait_port.can_bind("127.0.0.1", port, new)
        assert (error is None) is binds, error
        proc, took = run("--options", ",".join(new), "127.0.0.1", port, 1)
        assert (proc.returncode == 0) is binds, proc
        if binds:
            assert proc.stdout == "" and took < 3, (proc, took)
    finally:
        client.close()


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT (Linux)")
def test_reuse_port_does_not_let_the_server_in_beside_another_programs_listener():
    port = free_port()
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))  # no SO_REUSEPORT: the kind of program that holds a port by mistake
    listener.listen()
    try:
        proc, _ = run("--options", "SO_REUSEADDR,SO_REUSEPORT", "127.0.0.1", port, 1)
        assert proc.returncode == 1 and "still cannot be bound" in proc.stderr, proc
    finally:
        listener.close()


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
    proc, _ = run("--options", "SO_LINGER", "127.0.0.1", free_port())
    assert proc.returncode == 2 and "SO_LINGER" in proc.stderr
