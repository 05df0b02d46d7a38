#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: llama_cpp_build_plan
short_description: Decide how a llama.cpp checkout is built, and into which directory
description:
  - Reads the llama.cpp tree at I(path) (as M(llama_cpp_source_info) does) and composes the build: the
    Makefile of the tutorial's era or CMake, the CUDA switches, how the CPU code is compiled and the
    commands to run. Builds nothing and changes nothing.
  - I(cpu_target=portable) (the default) makes a binary that does not depend on the build host's CPU
    extensions. On x86_64 it is one build for x86-64-v3 (AVX2, FMA, F16C; C(GGML_NATIVE=OFF), or
    C(-march=x86-64-v3) for the 2023 Makefile, which adds C(-march=native) itself). On aarch64 the tree's
    default stays (each appliance builds on itself; C(-mcpu=native)).
  - I(cpu_target=all_variants) builds, on x86_64 trees that can, every CPU variant and loads at start the
    one the CPU's CPUID promises most (C(GGML_BACKEND_DL) + C(GGML_CPU_ALL_VARIANTS), as llama.cpp's release
    images); elsewhere it is I(portable). A VM that lists AMX it cannot run gets a variant that dies (measured).
  - I(cpu_target=native) keeps C(-march=native): fastest on the build host, and only there.
  - The build directory is keyed by the build's identity: the commit and everything that changes the
    binary (build system, backend, CUDA architectures and toolkit, CPU build, extra arguments). The job
    count and ccache are not part of it.
version_added: "0.4.0"
author: edge-llama contributors
options:
  path:
    description: A checkout of the commit to build (its files decide the build system and options).
    type: path
    required: true
  commit:
    description: The full commit hash of that checkout.
    type: str
    required: true
  install_dir:
    description: Root under which builds live (C(builds/COMMIT-ID)).
    type: path
    required: true
  machine:
    description: The host's machine (C(ansible_facts.architecture)), for example C(x86_64) or C(aarch64).
    type: str
    required: true
  backend:
    description: C(cuda) or C(cpu).
    type: str
    choices: [cpu, cuda]
    default: cpu
  cpu_target:
    description: C(portable), C(all_variants) or C(native), see above.
    type: str
    choices: [portable, all_variants, native]
    default: portable
  cuda_architectures:
    description: CUDA architectures without C(sm_) (C(86)); required for I(backend=cuda).
    type: list
    elements: str
    default: []
  cuda_home:
    description:
      - CUDA toolkit directory (C(bin/nvcc) inside) for I(backend=cuda); empty leaves nvcc to the PATH (check
        mode before the toolkit is installed).
    type: str
    default: ""
  make_targets:
    description: make targets (Makefile era).
    type: list
    elements: str
    default: [server]
  cmake_targets:
    description: CMake targets.
    type: list
    elements: str
    default: [llama-server]
  make_extra_args:
    description: Extra make variables; part of the identity.
    type: list
    elements: str
    default: []
  cmake_extra_args:
    description: Extra CMake arguments; part of the identity (compiler-launcher switches excepted).
    type: list
    elements: str
    default: []
  jobs:
    description: Parallel build jobs.
    type: int
    default: 2
  ccache:
    description: Compile through ccache.
    type: bool
    default: true
  ccache_dir:
    description: ccache directory.
    type: path
    default: /var/cache/edge-llama/ccache
notes:
  - Supports check mode; never changes anything.
"""

EXAMPLES = r"""
- name: Plan the build
  llama_cpp_build_plan:
    path: /opt/edge-llama/llama.cpp/src
    commit: e519621010cac02c6fec0f8f3b16cda0591042c0
    install_dir: /opt/edge-llama/llama.cpp
    machine: "{{ ansible_facts['architecture'] }}"
    backend: cuda
    cuda_architectures: ["86"]
    cuda_home: /usr/local/cuda
  register: plan
"""

RETURN = r"""
build_dir:
  description: Where this build lives (a git worktree of the commit).
  returned: success
  type: str
  sample: /opt/edge-llama/llama.cpp/builds/e519621010ca-3f1c2b9d0a7e
artifacts:
  description: The paths this build consists of (its directory), for the release's pruning.
  returned: success
  type: list
  elements: str
artifact_root:
  description: The directory whose every entry is a build (C(install_dir)/builds).
  returned: success
  type: str
  sample: /opt/edge-llama/llama.cpp/builds
build_id:
  description: The first 12 hex digits of the SHA-256 of I(identity).
  returned: success
  type: str
outputs:
  description:
    - What the build produced that the server needs, relative to I(build_dir) (the Makefile's C(server); CMake's
      C(build/bin) with its shared libraries): what a host with the same identity receives instead of compiling.
  returned: success
  type: list
  elements: str
  sample: [build/bin]
server_binary:
  description: Absolute path of the server binary once built.
  returned: success
  type: str
identity:
  description:
    - What makes this build (commit, build system, backend, CUDA architectures and toolkit, CPU build, arguments).
  returned: success
  type: dict
cpu_build:
  description: C(portable_baseline), C(all_variants), C(native) or C(default) (aarch64).
  returned: success
  type: str
cpu_build_reason:
  description: One sentence on what I(cpu_build) means for this host.
  returned: success
  type: str
commands:
  description: The commands to run in I(build_dir), in order.
  returned: success
  type: list
  elements: list
environment:
  description: Environment for the commands (PATH with nvcc and ccache, ccache settings).
  returned: success
  type: dict
build_system:
  description: C(make) or C(cmake).
  returned: success
  type: str
features:
  description: What the server of this tree offers (see M(llama_cpp_source_info)).
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.llama_cpp_tree import detect, plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            commit=dict(type="str", required=True),
            install_dir=dict(type="path", required=True),
            machine=dict(type="str", required=True),
            backend=dict(type="str", choices=["cpu", "cuda"], default="cpu"),
            cpu_target=dict(type="str", choices=["portable", "all_variants", "native"], default="portable"),
            cuda_architectures=dict(type="list", elements="str", default=[]),
            cuda_home=dict(type="str", default=""),
            make_targets=dict(type="list", elements="str", default=["server"]),
            cmake_targets=dict(type="list", elements="str", default=["llama-server"]),
            make_extra_args=dict(type="list", elements="str", default=[]),
            cmake_extra_args=dict(type="list", elements="str", default=[]),
            jobs=dict(type="int", default=2),
            ccache=dict(type="bool", default=True),
            ccache_dir=dict(type="path", default="/var/cache/edge-llama/ccache"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        tree = detect(p["path"])
        result = plan(tree, p["commit"], p["install_dir"], p["machine"], backend=p["backend"],
                      cpu_target=p["cpu_target"], cuda_architectures=p["cuda_architectures"],
                      cuda_home=p["cuda_home"], make_targets=p["make_targets"], cmake_targets=p["cmake_targets"],
                      make_extra_args=p["make_extra_args"], cmake_extra_args=p["cmake_extra_args"],
                      jobs=max(1, p["jobs"]), ccache=p["ccache"], ccache_dir=p["ccache_dir"])
    except ValueError as exc:
        module.fail_json(msg="Cannot plan the llama.cpp build: %s" % exc)
    result.update(build_system=tree["build_system"], features=tree["features"], cuda_option=tree["cuda_option"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
