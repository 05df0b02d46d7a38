#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: mount_point_info
short_description: Tell which mount point holds a path, or would hold it once created
description:
  - The mount point of I(path)'s nearest existing ancestor, symbolic links resolved: the test hf_model
    makes before a download (the same code, module_utils/edge_llama_store.py), for roles that must refuse
    a place on the root filesystem before they create anything (an SSD that is not mounted).
  - Read-only; never changes anything, in check mode too.
version_added: "0.5.0"
author: edge-llama contributors
options:
  path:
    description: The directory or file to look at (it need not exist yet).
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Where the mirror's cache would land
  mount_point_info:
    path: /media/m2/hf-mirror
  register: cache_mount

- name: Refuse the root filesystem
  ansible.builtin.assert:
    that: cache_mount.mount_point != '/'
"""

RETURN = r"""
mount_point:
  description: The mount point that holds the path.
  returned: always
  type: str
  sample: /media/m2
existing:
  description: The path itself when it exists, else its nearest existing ancestor.
  returned: always
  type: str
  sample: /media/m2
exists:
  description: Whether the path itself exists.
  returned: always
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edge_llama_store import existing_ancestor, mount_point


def main():
    module = AnsibleModule(argument_spec=dict(path=dict(type="path", required=True)), supports_check_mode=True)
    path = module.params["path"]
    module.exit_json(changed=False, mount_point=mount_point(path), existing=existing_ancestor(path),
                     exists=os.path.exists(path))


if __name__ == "__main__":
    main()
