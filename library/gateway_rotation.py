#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gateway_rotation
short_description: Take an appliance out of a HAProxy gateway's rotation for its switch, and put it back
description:
  - Runs on the gateway host (C(delegate_to)), through HAProxy's runtime API (its admin socket, level admin),
    on one server name in every backend that has it (edge-llama's gateway names its servers after the
    appliances' inventory names, in C(be_openai) and C(be_chat)).
  - I(state=drained) sets the server to C(drain) (no new requests; those in flight go on), waits until
    none is in flight (C(scur) 0 in every backend) or I(drain_timeout) has passed, then sets it to
    C(maint) (out of rotation, no health checks while its units restart). Requests still in flight at the
    timeout are shut down and counted in C(cut).
  - I(state=ready) sets the server to C(ready) and waits until HAProxy's own health check has passed
    (status C(UP), not C(UP 1/3) which HAProxy shows right after leaving maintenance) in every backend,
    failing after I(ready_timeout) seconds with each backend's last check.
  - A socket that does not exist (the gateway is not installed yet) or a server no backend has (an
    appliance the gateway does not balance) changes nothing and is said in C(present) and C(found).
  - HAProxy keeps these states in memory only: a restart of HAProxy puts every server back in rotation
    behind its health checks.
version_added: "1.1.0"
author: edge-llama contributors
options:
  server:
    description: The HAProxy server name (the same in every backend).
    type: str
    required: true
  state:
    description: C(drained) takes the server out of rotation after its requests finish; C(ready) puts it back.
    type: str
    required: true
    choices: [drained, ready]
  socket:
    description: HAProxy's admin socket.
    type: path
    default: /run/haproxy/admin.sock
  backends:
    description: The backends to act on; empty acts on every backend that has I(server).
    type: list
    elements: str
    default: []
  drain_timeout:
    description: Seconds to wait for the requests in flight to finish before they are shut down.
    type: int
    default: 120
  ready_timeout:
    description: Seconds to wait for HAProxy's health check to pass after C(ready).
    type: int
    default: 60
  poll_interval:
    description: Seconds between two readings of C(show stat).
    type: float
    default: 0.5
notes:
  - Check mode reads the server's state and says what would change; it sends no command.
"""

EXAMPLES = r"""
- name: Drain this appliance on the gateway before its units restart
  gateway_rotation:
    server: "{{ inventory_hostname }}"
    state: drained
    drain_timeout: 120
  delegate_to: gateway-1
  register: drained

- name: Put it back once its health gate passed
  gateway_rotation:
    server: "{{ inventory_hostname }}"
    state: ready
  delegate_to: gateway-1
"""

RETURN = r"""
present:
  description: Whether the admin socket exists (false - the gateway is not installed there; nothing done).
  returned: always
  type: bool
found:
  description: Whether some backend has the server.
  returned: always
  type: bool
backends:
  description: Per backend that has the server, its status before and after (HAProxy's C(status) column).
  returned: always
  type: dict
  sample: {be_openai: {before: UP, after: MAINT}, be_chat: {before: UP, after: MAINT}}
in_flight:
  description: Requests in flight on the server when the drain began (every backend).
  returned: state=drained
  type: int
cut:
  description: Requests still in flight at I(drain_timeout), shut down.
  returned: state=drained
  type: int
waited:
  description: Seconds spent waiting (for the drain, or for the health check after C(ready)).
  returned: always
  type: float
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edge_llama_haproxy import RuntimeApiError, servers, set_state, show_stat, shutdown_sessions


def _rows(path, server, backends):
    rows = servers(show_stat(path), server)
    if backends:
        rows = {b: r for b, r in rows.items() if b in backends}
    return rows


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _begin(module, path, server, backends, state, already):
    """The server's rows and each backend's status before; `state` set in every backend unless each one
    already is there (already(status)), and not in check mode. Returns (before, rows, acted)."""
    rows = _rows(path, server, backends)
    before = {b: r["status"] for b, r in rows.items()}
    if all(already(s) for s in before.values()):
        return before, rows, False
    if not module.check_mode:
        for b in rows:
            set_state(path, b, server, state)
    return before, rows, True


def _drain(module, path, server, backends, result):
    p = module.params
    before, rows, acted = _begin(module, path, server, backends, "drain", lambda s: s.startswith("MAINT"))
    result["in_flight"] = sum(_int(r.get("scur")) for r in rows.values())
    result["cut"] = 0
    result["changed"] = acted
    if not acted or module.check_mode:
        return before, rows
    start = time.monotonic()
    while True:
        rows = _rows(path, server, backends)
        left = sum(_int(r.get("scur")) for r in rows.values())
        if left == 0 or time.monotonic() - start >= p["drain_timeout"]:
            break
        time.sleep(p["poll_interval"])
    result["waited"] = round(time.monotonic() - start, 2)
    for b in rows:
        set_state(path, b, server, "maint")
    if left:
        result["cut"] = left
        for b, r in rows.items():
            if _int(r.get("scur")):
                shutdown_sessions(path, b, server)
    return before, _rows(path, server, backends)


def _ready(module, path, server, backends, result):
    p = module.params
    before, rows, acted = _begin(module, path, server, backends, "ready", lambda s: s == "UP")
    result["changed"] = acted
    if not acted or module.check_mode:
        return before, rows
    start = time.monotonic()
    while True:
        rows = _rows(path, server, backends)
        if all(r["status"] == "UP" for r in rows.values()):
            break
        if time.monotonic() - start >= p["ready_timeout"]:
            result["waited"] = round(time.monotonic() - start, 2)
            result["backends"] = {b: {"before": before[b], "after": r["status"]} for b, r in rows.items()}
            checks = "; ".join("%s/%s %s (last check: %s %s)" % (
                b, server, r["status"], r.get("check_status", ""), r.get("last_chk", ""))
                for b, r in sorted(rows.items()))
            module.fail_json(msg="%s is back in rotation but HAProxy's health check has not passed within %s s: %s"
                             % (server, p["ready_timeout"], checks), **result)
        time.sleep(p["poll_interval"])
    result["waited"] = round(time.monotonic() - start, 2)
    return before, rows


def main():
    module = AnsibleModule(
        argument_spec=dict(
            server=dict(type="str", required=True),
            state=dict(type="str", required=True, choices=["drained", "ready"]),
            socket=dict(type="path", default="/run/haproxy/admin.sock"),
            backends=dict(type="list", elements="str", default=[]),
            drain_timeout=dict(type="int", default=120),
            ready_timeout=dict(type="int", default=60),
            poll_interval=dict(type="float", default=0.5),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = dict(changed=False, present=os.path.exists(p["socket"]), found=False, backends={}, waited=0.0)
    if not result["present"]:
        module.exit_json(msg="no HAProxy admin socket at %s: nothing to do" % p["socket"], **result)
    for name in ("drain_timeout", "ready_timeout"):
        if p[name] < 0:
            module.fail_json(msg="%s must be 0 or more seconds, not %s" % (name, p[name]), **result)
    try:
        rows = _rows(p["socket"], p["server"], p["backends"])
        if not rows:
            module.exit_json(msg="no backend has server %s: nothing to do" % p["server"], **result)
        result["found"] = True
        act = _drain if p["state"] == "drained" else _ready
        before, after = act(module, p["socket"], p["server"], p["backends"], result)
    except RuntimeApiError as exc:
        module.fail_json(msg=str(exc), **result)
    result["backends"] = {b: {"before": before.get(b), "after": r["status"]} for b, r in after.items()}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
