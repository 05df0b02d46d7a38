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
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

SERVER_SOURCES = (
    "tools/server/server.cpp",
    "examples/server/server.cpp",
)


def _read(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def executable_target(cmake_text):
    """The name of the executable a server CMakeLists.txt builds.

    Current trees define several targets there (server-context, llama-server-impl, llama-server);
    only the one passed to add_executable() is the server binary.
    """
    current = None
    for match in re.finditer(r"set\s*\(\s*TARGET\s+([A-Za-z0-9_.-]+)\s*\)|add_executable\s*\(\s*(\S+)", cmake_text):
        if match.group(1):
            current = match.group(1)
        else:
            name = match.group(2)
            if name.startswith("${TARGET}"):
                if current:
                    return current
            else:
                return name
    return None


def detect(root):
    """Return the facts about the llama.cpp tree at root, or raise ValueError."""
    if not os.path.isdir(root):
        raise ValueError("%s is not a directory" % root)
    makefile = _read(os.path.join(root, "Makefile")) or ""
    cmakelists = _read(os.path.join(root, "CMakeLists.txt"))
    ggml_cmakelists = _read(os.path.join(root, "ggml", "CMakeLists.txt")) or ""
    if cmakelists is None and not makefile:
        raise ValueError("%s has neither a Makefile nor a CMakeLists.txt: not a llama.cpp checkout" % root)

    server_source = None
    server_text = ""
    for candidate in SERVER_SOURCES:
        text = _read(os.path.join(root, candidate))
        if text is not None:
            server_source, server_text = candidate, text
            break
    if server_source is None:
        raise ValueError("%s has no server source (looked for %s)" % (root, ", ".join(SERVER_SOURCES)))

    # The Makefile era: the Makefile still knows LLAMA_CUBLAS, has a `server` target (renamed
    # llama-server in 2024) and is not the later stub that only says "Build system changed".
    legacy_make = (
        "LLAMA_CUBLAS" in makefile
        and "Build system changed" not in makefile
        and re.search(r"^server\s*:", makefile, re.M) is not None
    )

    if re.search(r"option\s*\(\s*GGML_CUDA\b", ggml_cmakelists) or re.search(
        r"option\s*\(\s*GGML_CUDA\b", cmakelists or ""
    ):
        cuda_option = "GGML_CUDA"
    elif re.search(r"option\s*\(\s*LLAMA_CUDA\b", cmakelists or ""):
        cuda_option = "LLAMA_CUDA"
    else:
        cuda_option = "LLAMA_CUBLAS"

    server_dir = os.path.dirname(server_source)
    server_cmake = _read(os.path.join(root, server_dir, "CMakeLists.txt")) or ""
    server_target = executable_target(server_cmake) or "server"

    if legacy_make:
        build_system = "make"
        server_binary = "server"
    else:
        if cmakelists is None:
            raise ValueError("%s has no CMakeLists.txt and its Makefile no longer builds" % root)
        build_system = "cmake"
        server_binary = "build/bin/%s" % server_target

    args_text = server_text + (_read(os.path.join(root, "common", "arg.cpp")) or "") + (
        _read(os.path.join(root, "common", "common.cpp")) or "")
    features = {
        "health": '"/health"' in server_text,
        "native_openai": '"/v1/chat/completions"' in server_text,
        "api_like_oai": os.path.isfile(os.path.join(root, server_dir, "api_like_OAI.py")),
        "model_json": '"/model.json"' in server_text,
        "api_key": '"--api-key"' in args_text,
    }
    return {
        "build_system": build_system,
        "cuda_option": cuda_option,
        "server_target": server_target,
        "server_binary": server_binary,
        "server_source": server_source,
        "features": features,
    }


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
