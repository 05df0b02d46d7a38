#!/usr/bin/python3
"""ExecStartPre of edge-llama-server: wait until llama.cpp's port can be bound again.

Current llama.cpp (its vendored cpp-httplib) binds with SO_REUSEPORT only, not SO_REUSEADDR, so the
connections the previous server closed itself (TIME_WAIT, 60 s on Linux) make the new server's bind
fail ("couldn't bind HTTP server socket") until they expire. The 2023 server closes every
connection, so an upgrade from it while clients use it hit this every time: the new server exited,
and the health gate rolled the upgrade back. This binds the way the server does, as its user, until
that works, and says how long it waited.

Usage: wait_port.py HOST PORT [TIMEOUT_SECONDS]      (standard library only; the system python3)
"""

import socket
import sys
import time


def can_bind(host, port):
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        return None
    except OSError as exc:
        return exc
    finally:
        sock.close()


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    host, port = argv[1], int(argv[2])
    timeout = float(argv[3]) if len(argv) == 4 else 120.0
    started = time.monotonic()
    error = can_bind(host, port)
    if error is None:
        return 0
    print("%s:%d cannot be bound yet (%s): waiting up to %.0f s for the previous server's closed "
          "connections to expire" % (host, port, error.strerror or error, timeout), flush=True)
    while time.monotonic() - started < timeout:
        time.sleep(0.5)
        error = can_bind(host, port)
        if error is None:
            print("%s:%d is free after %.1f s" % (host, port, time.monotonic() - started), flush=True)
            return 0
    print("%s:%d still cannot be bound after %.0f s (%s); is another server listening on it?"
          % (host, port, timeout, error.strerror or error), file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
