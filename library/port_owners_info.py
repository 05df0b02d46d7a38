#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: port_owners_info
short_description: Tell which process holds each TCP port a play is about to bind
description:
  - For each named port, finds the listening TCP sockets (C(/proc/net/tcp), C(/proc/net/tcp6)) that
    would stop a server from binding it at the given address, the process that owns each (PID, command)
    and its systemd unit (from C(/proc/PID/cgroup)).
  - A port held by a process of one of I(allowed_units) (edge-llama's own units, restarted by the play)
    is not a conflict; any other holder is, and is listed in C(conflicts) with a sentence naming the
    variable, the port, the process and its unit.
  - Read-only; never changes anything, in check mode too.
version_added: "0.4.0"
author: edge-llama contributors
options:
  ports:
    description: The ports to look at.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The variable that sets the port, for the messages.
        type: str
        required: true
      port:
        description: TCP port.
        type: int
        required: true
      address:
        description: The address the server will bind (C(0.0.0.0) or C(::) for all).
        type: str
        default: 127.0.0.1
  allowed_units:
    description: systemd units whose processes may hold the ports (they are restarted on the new settings).
    type: list
    elements: str
    default: []
notes:
  - Run as root to see other users' processes; a socket whose owner cannot be read is reported with pid null.
"""

EXAMPLES = r"""
- name: Who holds the services' ports
  port_owners_info:
    ports:
      - {name: services_openai_port, port: 8081, address: 127.0.0.1}
    allowed_units: [edge-llama-openai.service]
  register: owners

- name: Refuse a port another process holds
  ansible.builtin.fail:
    msg: "{{ owners.conflicts | join('; ') }}"
  when: owners.conflicts | length > 0
"""

RETURN = r"""
ports:
  description: Per variable, the holders found (empty list when the port is free).
  returned: always
  type: dict
  sample:
    services_openai_port:
      port: 8081
      holders: [{address: 127.0.0.1, pid: 812, process: python3 -m http.server, unit: web.service, ours: false}]
conflicts:
  description: One sentence per port held by a process outside I(allowed_units).
  returned: always
  type: list
  elements: str
"""

import ipaddress
import os
import re

from ansible.module_utils.basic import AnsibleModule

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


def owners_of(ports, allowed_units, proc=PROC):
    table = listeners(proc)
    pids = socket_owners([inode for _, _, inode in table], proc)
    result, conflicts = {}, []
    for entry in ports:
        holders = []
        for address, port, inode in table:
            if port != entry["port"] or not conflicts_with(entry.get("address") or "127.0.0.1", address):
                continue
            pid = pids.get(inode)
            command, unit = process_of(pid, proc) if pid else ("", "")
            ours = bool(unit) and unit in allowed_units
            holders.append({"address": address, "pid": pid, "process": command, "unit": unit, "ours": ours})
            if not ours:
                conflicts.append(
                    "%s: port %d is held by %s (%s%s); choose another port for %s or stop that process"
                    % (entry["name"], port, ("pid %d" % pid) if pid else "a process this user cannot see",
                       command or "?", (", unit " + unit) if unit else "", entry["name"]))
        result[entry["name"]] = {"port": entry["port"], "holders": holders}
    # one sentence per port, even when it listens on several addresses
    return result, list(dict.fromkeys(conflicts))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ports=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                port=dict(type="int", required=True),
                address=dict(type="str", default="127.0.0.1"),
            )),
            allowed_units=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    ports, conflicts = owners_of(module.params["ports"], module.params["allowed_units"])
    module.exit_json(changed=False, ports=ports, conflicts=conflicts)


if __name__ == "__main__":
    main()
