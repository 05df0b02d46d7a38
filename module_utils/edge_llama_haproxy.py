# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""HAProxy's runtime API (its admin socket): one command per connection, the answer read to the end.

Used by library/gateway_rotation.py (drain and ready around a host's switch) and by the tests, which
read the same `show stat` the module does. Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import io
import socket

# A server's admin states, as `set server <backend>/<server> state <state>` takes them.
STATES = ("ready", "drain", "maint")


class RuntimeApiError(Exception):
    """The admin socket could not be reached, or it refused a command."""


def command(path, line, timeout=5.0):
    """Send one command (no newline) to the socket at path and return HAProxy's whole answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(line.encode("ascii") + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (OSError, socket.timeout) as exc:
        raise RuntimeApiError("HAProxy's runtime API at %s did not answer %r: %s" % (path, line, exc)) from exc
    finally:
        sock.close()
    return b"".join(chunks).decode("utf-8", "replace")


def act(path, line, timeout=5.0):
    """A command that changes something: HAProxy answers an empty line when it took it, a sentence
    (No such server., No such backend., Unknown command...) when it did not."""
    answer = command(path, line, timeout).strip()
    if answer:
        raise RuntimeApiError("HAProxy refused %r: %s" % (line, answer.splitlines()[0]))


def parse_stat(text):
    """`show stat` CSV -> a list of dicts, one per frontend, backend and server (pxname, svname, ...)."""
    text = text.lstrip()
    if text.startswith("# "):
        text = text[2:]
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("pxname"):
            rows.append({k: v for k, v in row.items() if k})
    return rows


def servers(rows, server):
    """The rows of one server name, in every backend that has it: {backend: row}."""
    return {r["pxname"]: r for r in rows
            if r.get("svname") == server and r["svname"] not in ("FRONTEND", "BACKEND")}


def show_stat(path, timeout=5.0):
    return parse_stat(command(path, "show stat", timeout))


def set_state(path, backend, server, state, timeout=5.0):
    if state not in STATES:
        raise ValueError("state must be one of %s" % ", ".join(STATES))
    act(path, "set server %s/%s state %s" % (backend, server, state), timeout)


def shutdown_sessions(path, backend, server, timeout=5.0):
    act(path, "shutdown sessions server %s/%s" % (backend, server), timeout)
