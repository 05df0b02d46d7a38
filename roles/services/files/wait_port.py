#!/usr/bin/python3
"""ExecStartPre of edge-llama-server: wait until llama.cpp's port can be bound and listened on again.

Current llama.cpp's server binds with SO_REUSEADDR (SO_REUSEPORT only with --reuse-port). The 2023
server's cpp-httplib set SO_REUSEPORT only, so the connections it closed (TIME_WAIT, 60 s on Linux;
FIN-WAIT-2 while a client such as the OpenAI endpoint's keep-alive pool keeps its end) block that
bind: after an upgrade from it under load the new server exited at once with "couldn't bind HTTP
server socket", and the health gate rolled the upgrade back (found by the downtime benchmark, and
reproduced with ss in the test host). This binds and listens the way the server does, as its user,
until that works, and says how long it waited. (The role also stops the endpoint before it restarts
the server, so that its pooled connections close first.)

Usage: wait_port.py HOST PORT [TIMEOUT_SECONDS]      (standard library only; the system python3)
"""

import socket
import sys
import time


def can_bind(host, port):
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1)
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
    print("%s:%d cannot be bound yet (%s): waiting up to %.0f s for the previous server's "
          "connections to close" % (host, port, error.strerror or error, timeout), flush=True)
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
