# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""Who listens on a TCP port: the socket tables in /proc/net, the process owning the socket, its unit.

Used by port_owners_info (a port the play will bind, held by another process?) and llm_health_gate (is
the process that answered on the port the unit being gated?). Linux only; read-only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import re


PROC = "/proc"
LISTEN = "0A"
WILDCARDS = ("0.0.0.0", "::")


def _addr(hex_addr):
    """'0100007F:1F90' -> ('127.0.0.1', 8080); IPv6 words are little-endian 32-bit groups."""
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:
        ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        if ip.ipv4_mapped:
            ip = ip.ipv4_mapped
    return str(ip), int(port_hex, 16)


def listeners(proc=PROC):
    """[(address, port, inode)] of listening TCP sockets."""
    found = []
    for table in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, "net", table)) as handle:
                lines = handle.read().splitlines()[1:]
        except (IOError, OSError):
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN:
                address, port = _addr(fields[1])
                found.append((address, port, fields[9]))
    return found


def socket_owners(inodes, proc=PROC):
    """{inode: pid} for the given socket inodes."""
    wanted = {"socket:[%s]" % inode: inode for inode in inodes}
    owners = {}
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except (IOError, OSError):
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except (IOError, OSError):
                continue
            if target in wanted:
                owners.setdefault(wanted[target], int(pid))
    return owners


def process_of(pid, proc=PROC):
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as handle:
            argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
    except (IOError, OSError):
        argv = []
    unit = ""
    try:
        with open(os.path.join(proc, str(pid), "cgroup")) as handle:
            for line in handle:
                found = re.findall(r"/([^/\s]+\.(?:service|scope))(?:/|$)", line.strip())
                if found:
                    unit = found[-1]
                    break
    except (IOError, OSError):
        pass
    return " ".join(argv)[:200], unit


def conflicts_with(bind, address):
    """Whether a listener on `address` stops a server from binding `bind` (same port)."""
    return bind in WILDCARDS or address in WILDCARDS or bind == address or (
        bind == "localhost" and address in ("127.0.0.1", "::1"))




def holders(port, address="127.0.0.1", proc=PROC):
    """[{address, pid, process, unit}] of the listeners that hold `port` for a bind at `address`."""
    table = [(a, p, inode) for a, p, inode in listeners(proc) if p == port and conflicts_with(address, a)]
    pids = socket_owners([inode for _, _, inode in table], proc)
    found = []
    for listen_address, _, inode in table:
        pid = pids.get(inode)
        command, unit = process_of(pid, proc) if pid else ("", "")
        found.append({"address": listen_address, "pid": pid, "process": command, "unit": unit})
    return found
