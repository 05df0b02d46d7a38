#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: edge_llama_last_run
short_description: Record what a complete run left on a host, and tell the next run whether it has nothing to do
description:
  - I(state=recorded) (the end of a complete site.yml run whose health gate passed) observes what the run
    owns on the host and writes it, with the run's input I(fingerprint), to I(path) (mode 0600, root).
    Files are hashed (SHA-256, mode, owner); I(large_files) are compared by size and mtime (a model of
    41 GB is not read on every run); I(units) must stay enabled and active; I(users) must exist;
    I(packages) must stay installed; I(venvs) must hold the same distributions.
  - I(state=check) (the next run's first checks) reads that record and answers C(unchanged=true) only when the
    fingerprint is the same, everything recorded is observed the same now, and the llama.cpp version
    (a branch or tag) still names the recorded commit (C(git ls-remote), a commit prefix needs no network).
    Otherwise C(unchanged=false) and C(reasons) say what differs. It changes nothing, in check mode too.
  - The observation and the comparison live in module_utils/edge_llama_last_run.py.
version_added: "1.4.0"
author: edge-llama contributors
options:
  state:
    description: C(check) the record against the host, or write it (C(recorded)).
    type: str
    choices: [check, recorded]
    default: check
  fingerprint:
    description: The run's inputs as one SHA-256 (edge_llama_inputs returns it).
    type: str
    required: true
  path:
    description: The record.
    type: path
    default: /etc/ansible/facts.d/edge_llama_last_run.fact
  files:
    description: Files to hash (C(recorded) only; a check reads the list from the record).
    type: list
    elements: path
    default: []
  trees:
    description: Directories whose every file is hashed (a build's outputs).
    type: list
    elements: path
    default: []
  large_files:
    description: Files compared by size, mtime and mode.
    type: list
    elements: path
    default: []
  units:
    description: systemd units that must stay enabled and active.
    type: list
    elements: str
    default: []
  users:
    description: Users that must exist (with the same uid and gid).
    type: list
    elements: str
    default: []
  packages:
    description: Debian packages that must stay installed.
    type: list
    elements: str
    default: []
  venvs:
    description: Virtualenvs whose distributions must stay the same.
    type: list
    elements: path
    default: []
  remote:
    description: The llama.cpp repository C(url), the C(version) the run asked for and the C(commit) it built.
    type: dict
    default: {}
  reports:
    description: The run's reports (llama_cpp_report, model_report, services_report), returned by a check.
    type: dict
    default: {}
  gate:
    description: The health gate's arguments without secrets, returned by a check.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Find whether the last complete run left this host as this run would
  edge_llama_last_run:
    fingerprint: "{{ __edge_llama_inputs.fingerprint }}"
  register: __edge_llama_last_run

- name: Record what this run left
  edge_llama_last_run:
    state: recorded
    fingerprint: "{{ __edge_llama_inputs.fingerprint }}"
    files: [/etc/systemd/system/edge-llama-server.service]
    units: [edge-llama-server.service]
"""

RETURN = r"""
unchanged:
  description: (check) Whether the run has nothing to do on this host.
  returned: always
  type: bool
reasons:
  description: (check) What differs, one line each (empty when unchanged).
  returned: always
  type: list
  elements: str
  sample: ["file /etc/systemd/system/edge-llama-server.service: content changed"]
reports:
  description: (check) The reports the recorded run ended with.
  returned: always
  type: dict
gate:
  description: (check) The recorded health gate's arguments.
  returned: always
  type: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils import edge_llama_last_run as last_run
from ansible.module_utils.edge_llama_store import write_json_atomic


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["check", "recorded"], default="check"),
            fingerprint=dict(type="str", required=True),
            path=dict(type="path", default=last_run.RECORD),
            files=dict(type="list", elements="path", default=[]),
            trees=dict(type="list", elements="path", default=[]),
            large_files=dict(type="list", elements="path", default=[]),
            units=dict(type="list", elements="str", default=[]),
            users=dict(type="list", elements="str", default=[]),
            packages=dict(type="list", elements="str", default=[]),
            venvs=dict(type="list", elements="path", default=[]),
            remote=dict(type="dict", default={}),
            reports=dict(type="dict", default={}),
            gate=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    params = module.params

    def run(argv):
        return module.run_command(argv, environ_update={"LC_ALL": "C", "SYSTEMD_PAGER": ""})

    record = last_run.read(params["path"])
    if params["state"] == "check":
        ok, reasons = last_run.check(record, params["fingerprint"], run)
        module.exit_json(changed=False, unchanged=ok, reasons=reasons,
                         reports=(record or {}).get("reports") or {} if ok else {},
                         gate=(record or {}).get("gate") or {} if ok else {})

    spec = {kind: params[kind] for kind in last_run.KINDS}
    new = last_run.make_record(params["fingerprint"], spec, last_run.observe(spec, run), params["remote"],
                              params["reports"], params["gate"])
    new = json.loads(json.dumps(new))
    # The reports (the gate's tokens/s among them) are what the run said, not what it left: a record that
    # differs only there is rewritten without counting as a change.
    changed = dict(new, reports=None) != dict(record or {}, reports=None)
    if new != record and not module.check_mode:
        write_json_atomic(params["path"], new, mode=0o600)  # the reports and the gate: root only
    module.exit_json(changed=changed, unchanged=False, reasons=[], reports={}, gate={})


if __name__ == "__main__":
    main()
