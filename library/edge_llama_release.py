#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: edge_llama_release
short_description: Own the release record of an edge-llama host - plan, commit, reject and prune
description:
  - A release is a build of llama.cpp serving a model with a chat template (and where it answers). The
    record (by default C(/etc/ansible/facts.d/edge_llama_release.fact), also C(ansible_local.edge_llama_release))
    holds the releases kept, newest (serving) first, and the rejected ones.
  - C(state=planned) reads the record and says what serves, what is wanted and whether that is a switch.
    Changes nothing.
  - C(state=committed) is for a release that passed its health gate. It becomes the serving release (an
    older entry of the same release is replaced), the newest I(keep) are kept, and what no kept release
    uses is removed - the artefacts older and rejected releases registered (I(wanted.artifacts), as the
    roles that made them gave them) and the entries of each of I(roots) (a directory an owner declared
    wholly its own, such as llama.cpp's builds) that no kept release uses.
  - C(state=rejected) is for a release that failed its gate after the host went back to the one before.
    It is remembered among the rejected, so that the next committed release prunes its build and model.
  - The logic is C(module_utils/edge_llama_release.py); the record is written whole or not at all.
version_added: "0.5.0"
author: edge-llama contributors
options:
  state:
    description: What to do with I(wanted).
    type: str
    choices: [planned, committed, rejected]
    default: planned
  wanted:
    description:
      - The release this run wants (C(committed), C(planned)) or failed to switch to (C(rejected)).
      - Keys that make it a release of its own are C(server_binary), C(model_path), C(model_sha256) and
        C(chat_template); the others (C(commit), C(build_dir), C(features), C(probes), C(ports), C(artifacts))
        are recorded with it.
    type: dict
    required: true
  keep:
    description: How many releases to keep (the serving one and those to roll back to).
    type: int
    default: 2
  roots:
    description: Directories whose every entry belongs to some release; entries no kept release uses are removed.
    type: list
    elements: path
    default: []
  path:
    description: The record.
    type: path
    default: /etc/ansible/facts.d/edge_llama_release.fact
notes:
  - Supports check mode (nothing is written or removed; C(removed) lists what would be) and diff mode (the record).
"""

EXAMPLES = r"""
- name: What serves and what is wanted
  edge_llama_release:
    wanted: "{{ release }}"
  register: plan

- name: Commit a release that passed its gate, keep two, prune the rest
  edge_llama_release:
    state: committed
    wanted: "{{ release }}"
    keep: 2
    roots: [/opt/edge-llama/llama.cpp/builds]
"""

RETURN = r"""
serving:
  description: The release that served when the module ran ({} before the first).
  returned: always
  type: dict
wanted:
  description: I(wanted), as recorded (with C(since) once committed).
  returned: always
  type: dict
switching:
  description: Whether I(wanted) is another release than the serving one.
  returned: always
  type: bool
first:
  description: Whether no release served before.
  returned: always
  type: bool
record:
  description: The record after the module ran (what it would be, in check mode).
  returned: always
  type: dict
  sample: {releases: [{commit: c140b57c76b0, model_path: /media/m2/models/SmolLM2.gguf}], rejected: []}
removed:
  description: Paths removed (C(committed); in check mode, the paths that would be).
  returned: always
  type: list
  elements: str
"""

import datetime
import os
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils import edge_llama_release as release
from ansible.module_utils.edge_llama_store import read_json, write_json_atomic


def remove(path):
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def run(module):
    p = module.params
    on_disk = read_json(p["path"])
    record = release.normalise(on_disk)
    planned = release.plan(record, p["wanted"])
    result = dict(changed=False, removed=[], record=record, **planned)
    if p["state"] == "planned":
        return result
    if p["state"] == "rejected":
        new, gone = release.reject(record, p["wanted"]), []
    else:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        new, gone = release.commit(record, p["wanted"], p["keep"], now, roots=p["roots"])
        result["wanted"] = new["releases"][0]
    gone = [path for path in gone if os.path.lexists(path)]
    result.update(record=new, removed=gone, changed=bool(gone) or new != on_disk)
    if module._diff and new != record:
        result["diff"] = {"before": record, "after": new, "before_header": p["path"], "after_header": p["path"]}
    if module.check_mode:
        return result
    if new != on_disk:
        write_json_atomic(p["path"], new)
    for path in gone:
        try:
            remove(path)
        except OSError as exc:
            module.fail_json(msg="the release was recorded, but removing %s failed: %s" % (path, exc), **result)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["planned", "committed", "rejected"], default="planned"),
            wanted=dict(type="dict", required=True),
            keep=dict(type="int", default=2),
            roots=dict(type="list", elements="path", default=[]),
            path=dict(type="path", default=release.RECORD),
        ),
        supports_check_mode=True,
    )
    if module.params["keep"] < 1:
        module.fail_json(msg="keep must be at least 1, not %d" % module.params["keep"])
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
