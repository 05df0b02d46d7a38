#!/usr/bin/python3
"""ExecStartPre of edge-llama-server: wait until llama.cpp's port can be bound and listened on again.

Whether a new server can bind while the previous one's closed connections are still on the port
(TIME_WAIT, 60 s on Linux; FIN-WAIT-2 while a client such as the OpenAI endpoint's keep-alive pool keeps
its end) depends on the socket options of both: the kernel lets the bind through when both set
SO_REUSEPORT, or both SO_REUSEADDR. The 2023 server's cpp-httplib sets SO_REUSEPORT alone; a current
server SO_REUSEADDR, and SO_REUSEPORT as well with --reuse-port, which the role passes where the tree has
it. So a 2023 -> current upgrade (and its rollback) binds at once when the current server runs with
--reuse-port, and waited out TIME_WAIT (65 s measured by the downtime benchmark) without it.

This binds and listens with the options the new server will use (--options, the release's
`bind_options` feature; SO_REUSEADDR when not given), as its user, until that works, and says how long it
waited. A port that another program listens on stays refused (SO_REUSEPORT lets a second listener in
only for the same user), and after TIMEOUT_SECONDS the unit fails with the reason.

Usage: wait_port.py [--options SO_REUSEADDR,SO_REUSEPORT] HOST PORT [TIMEOUT_SECONDS]   (standard library only)
"""

import socket
import sys
import time

KNOWN_OPTIONS = ("SO_REUSEADDR", "SO_REUSEPORT")


def can_bind(host, port, options=("SO_REUSEADDR",)):
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        for name in options:
            if hasattr(socket, name):
                sock.setsockopt(socket.SOL_SOCKET, getattr(socket, name), 1)
        sock.bind(address)
        sock.listen(1)
        return None
    except OSError as exc:
        return exc
    finally:
        sock.close()


def parse(argv):
    args = list(argv[1:])
    options = ["SO_REUSEADDR"]
    if args[:1] == ["--options"] and len(args) > 1:
        options = [name.strip() for name in args[1].split(",") if name.strip()]
        args = args[2:]
        unknown = [name for name in options if name not in KNOWN_OPTIONS]
        if unknown or not options:
            raise ValueError("--options takes %s, not %r" % (" and ".join(KNOWN_OPTIONS), argv[2]))
    if len(args) not in (2, 3):
        raise ValueError("expected HOST PORT [TIMEOUT_SECONDS]")
    return args[0], int(args[1]), float(args[2]) if len(args) == 3 else 120.0, options


def main(argv):
    try:
        host, port, timeout, options = parse(argv)
    except ValueError as exc:
        print("%s\n%s" % (exc, __doc__.strip().splitlines()[-1]), file=sys.stderr)
        return 2
    started = time.monotonic()
    error = can_bind(host, port, options)
    if error is None:
        return 0
    print("%s:%d cannot be bound yet with %s (%s): waiting up to %.0f s for the previous server's "
          "connections to close" % (host, port, "+".join(options), error.strerror or error, timeout), flush=True)
    while time.monotonic() - started < timeout:
        time.sleep(0.5)
        error = can_bind(host, port, options)
        if error is None:
            print("%s:%d is free after %.1f s" % (host, port, time.monotonic() - started), flush=True)
            return 0
    print("%s:%d still cannot be bound after %.0f s (%s); is another server listening on it?"
          % (host, port, timeout, error.strerror or error), file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
