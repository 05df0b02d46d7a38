#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: llama_cpp_source_info
short_description: Tell how a llama.cpp source tree builds and what its server offers
description:
  - Reads a checked-out llama.cpp tree and reports its era, without building or changing anything.
  - The tutorial era (2023, for example e519621) builds with C(make LLAMA_CUBLAS=1) into C(./server),
    has no C(/health) and no native C(/v1) API.
  - Current trees build with CMake (C(GGML_CUDA)) into C(build/bin/llama-server) and serve C(/health)
    and C(/v1/chat/completions) themselves.
  - The answer comes from the files of the commit, not from a list of known versions.
version_added: "0.1.0"
author: edge-llama contributors
options:
  path:
    description: Root of the llama.cpp checkout.
    type: path
    required: true
notes:
  - Supports check mode; never changes anything.
"""

EXAMPLES = r"""
- name: Inspect the checkout
  llama_cpp_source_info:
    path: /opt/edge-llama/llama.cpp/builds/e519621010cac02c6fec0f8f3b16cda0591042c0
  register: src

- name: Build with make when the commit does
  ansible.builtin.command: make -j2 server
  when: src.build_system == 'make'
"""

RETURN = r"""
build_system:
  description: C(make) for the Makefile era (C(LLAMA_CUBLAS)), C(cmake) otherwise.
  returned: success
  type: str
  sample: make
cuda_option:
  description: Name of the switch that enables CUDA in this tree.
  returned: success
  type: str
  sample: LLAMA_CUBLAS
server_target:
  description: Build target of the HTTP server.
  returned: success
  type: str
  sample: server
server_binary:
  description: Path of the server binary relative to I(path) once built.
  returned: success
  type: str
  sample: server
server_source:
  description: Path of the server's main source file relative to I(path).
  returned: success
  type: str
  sample: examples/server/server.cpp
features:
  description: What the server of this tree offers.
  returned: success
  type: dict
  contains:
    health:
      description: The server answers C(GET /health).
      type: bool
    native_openai:
      description: The server serves C(/v1/chat/completions) itself.
      type: bool
    api_like_oai:
      description: The tree ships C(examples/server/api_like_OAI.py).
      type: bool
    model_json:
      description: The server answers C(GET /model.json).
      type: bool
    api_key:
      description: The server accepts C(--api-key).
      type: bool
    reuse_port:
      description: The server accepts C(--reuse-port) (SO_REUSEPORT), so that a new server can bind while
        the previous one's connections are in TIME_WAIT.
      type: bool
    bind_options:
      description: The socket options the server binds its port with, as the services role starts it
        (C(--reuse-port) where the tree has it); what C(wait_port.py) binds with before the server starts.
      type: list
      elements: str
      sample: [SO_REUSEADDR, SO_REUSEPORT]
cpu_options:
  description: How the tree's CPU code can be built for other machines than the build host.
  returned: success
  type: dict
  contains:
    native_option:
      description: The CMake switch for C(-march=native) (C(GGML_NATIVE), C(LLAMA_NATIVE)), empty for none.
      type: str
    all_variants:
      description:
        - The tree can build every CPU variant and pick one at run time (C(GGML_CPU_ALL_VARIANTS) + C(GGML_BACKEND_DL)).
      type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.llama_cpp_tree import detect


def main():
    module = AnsibleModule(
        argument_spec=dict(path=dict(type="path", required=True)),
        supports_check_mode=True,
    )
    try:
        facts = detect(module.params["path"])
    except ValueError as exc:
        module.fail_json(msg="Cannot read the llama.cpp tree: %s" % exc)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
