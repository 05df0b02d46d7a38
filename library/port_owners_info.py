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

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edge_llama_ports import PROC, holders


def owners_of(ports, allowed_units, proc=PROC):
    result, conflicts = {}, []
    for entry in ports:
        found = holders(entry["port"], entry.get("address") or "127.0.0.1", proc)
        for holder in found:
            holder["ours"] = bool(holder["unit"]) and holder["unit"] in allowed_units
            if not holder["ours"]:
                conflicts.append(
                    "%s: port %d is held by %s (%s%s); choose another port for %s or stop that process"
                    % (entry["name"], entry["port"],
                       ("pid %d" % holder["pid"]) if holder["pid"] else "a process this user cannot see",
                       holder["process"] or "?", (", unit " + holder["unit"]) if holder["unit"] else "",
                       entry["name"]))
        result[entry["name"]] = {"port": entry["port"], "holders": found}
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
