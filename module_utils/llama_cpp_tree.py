# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""What a llama.cpp source tree is, and how edge-llama builds it.

Shared by the modules llama_cpp_source_info (what the tree is) and llama_cpp_build_plan (how to build
it, into which directory). Pure functions over the files of the tree and the role's inputs: nothing
here runs a command or writes a file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re

SERVER_SOURCES = (
    "tools/server/server.cpp",
    "examples/server/server.cpp",
)

CPU_TARGETS = ("portable", "all_variants", "native")

# The x86-64 level a single portable build targets: AVX, AVX2, FMA, F16C, BMI2 (Intel Haswell, 2013;
# AMD Zen 1, 2017). The same set as CMake's GGML_NATIVE=OFF defaults (GGML_AVX, GGML_AVX2, GGML_FMA,
# GGML_F16C, GGML_BMI2 = ON); the Makefile era gets it as -march=x86-64-v3, which GCC >= 11 knows.
X86_PORTABLE_MARCH = "x86-64-v3"

# CMake arguments that do not change the binary (parallelism, the compiler launcher): left out of the
# build's identity, so that turning ccache on or off does not rebuild.
_NOT_IDENTITY = re.compile(r"^-D(GGML_CCACHE|LLAMA_CCACHE|CMAKE_C_COMPILER_LAUNCHER|CMAKE_CXX_COMPILER_LAUNCHER)=")


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


# Where cpp-httplib (llama.cpp's HTTP server library) lives in a tree: beside the 2023 server, vendored later.
HTTPLIB_SOURCES = ("httplib.h", "../../vendor/cpp-httplib/httplib.cpp", "../../vendor/cpp-httplib/httplib.h",
                   "../../common/httplib.h")


def bind_options(root, server_dir, reuse_port):
    """The socket options llama.cpp's server binds its port with, as the server is started by the role
    (with --reuse-port where the tree has it). wait_port.py binds the same way before the server starts:
    whether a bind succeeds while the previous server's connections are in TIME_WAIT depends on them.

    Current servers set their own (server-http.cpp: SO_REUSEADDR, and SO_REUSEPORT with --reuse-port);
    older ones take cpp-httplib's default_socket_options, which on Linux was SO_REUSEPORT alone
    (e519621's examples/server/httplib.h)."""
    server_dir_path = os.path.join(root, server_dir)
    own = ""
    for name in sorted(os.listdir(server_dir_path)) if os.path.isdir(server_dir_path) else ():
        if name.endswith(".cpp"):
            own += _read(os.path.join(server_dir_path, name)) or ""
    if re.search(r"set_socket_options\s*\(", own) and "SO_REUSEADDR" in own:
        return ["SO_REUSEADDR", "SO_REUSEPORT"] if reuse_port else ["SO_REUSEADDR"]
    for candidate in HTTPLIB_SOURCES:
        text = _read(os.path.normpath(os.path.join(server_dir_path, candidate))) or ""
        match = re.search(r"void\s+default_socket_options\s*\(\s*socket_t\s+\w+\s*\)\s*\{(.*?)\n\}", text, re.S)
        if match:
            body = match.group(1)
            # The POSIX branch: SO_REUSEPORT where the platform defines it, else SO_REUSEADDR.
            posix_reuseport = re.search(r"#ifdef\s+SO_REUSEPORT\s+[^#]*SO_REUSEPORT", body)
            return ["SO_REUSEPORT"] if posix_reuseport else ["SO_REUSEADDR"]
    return ["SO_REUSEADDR"]


def _has_option(name, *texts):
    pattern = re.compile(r"option\s*\(\s*%s\b" % re.escape(name))
    return any(pattern.search(text or "") for text in texts)


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

    if _has_option("GGML_CUDA", ggml_cmakelists, cmakelists):
        cuda_option = "GGML_CUDA"
    elif _has_option("LLAMA_CUDA", cmakelists):
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
        # --reuse-port: the new server binds while the old one's connections drain (an upgrade's outage is
        # the model load, not TIME_WAIT's 60 s).
        "reuse_port": '"--reuse-port"' in args_text,
        # --metrics: the server's own Prometheus metrics on GET /metrics (b2258, 2024-02 on).
        "metrics": '"--metrics"' in args_text,
    }
    features["bind_options"] = bind_options(root, server_dir, features["reuse_port"])
    # How the CPU code can be built for machines other than the build host: the native switch
    # (GGML_NATIVE, 2024 on; LLAMA_NATIVE before) and the CPU variants chosen at run time
    # (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS, 2024-11 on), as llama.cpp's release images build.
    cpu_options = {
        "native_option": ("GGML_NATIVE" if _has_option("GGML_NATIVE", ggml_cmakelists, cmakelists)
                          else ("LLAMA_NATIVE" if _has_option("LLAMA_NATIVE", cmakelists) else "")),
        "all_variants": (_has_option("GGML_CPU_ALL_VARIANTS", ggml_cmakelists)
                         and _has_option("GGML_BACKEND_DL", ggml_cmakelists)),
    }
    return {
        "build_system": build_system,
        "cuda_option": cuda_option,
        "server_target": server_target,
        "server_binary": server_binary,
        "server_source": server_source,
        "features": features,
        "cpu_options": cpu_options,
    }


def cpu_build(tree, machine, cpu_target):
    """How the CPU code is compiled: (kind, cmake args, make args, why).

    kind is one of `portable_baseline` (one x86-64-v3 build), `all_variants` (every CPU variant, chosen
    at run time), `native` (the build host's CPU) and `default` (the tree's own choice: aarch64).
    """
    x86 = machine in ("x86_64", "amd64")
    if cpu_target not in CPU_TARGETS:
        raise ValueError("cpu_target must be one of %s, not %r" % (", ".join(CPU_TARGETS), cpu_target))
    native_option = tree["cpu_options"]["native_option"]
    if cpu_target == "native":
        cmake = ["-D%s=ON" % native_option] if native_option else []
        return ("native", cmake, [], "llama_cpp_cpu_target is native: the binary needs the build host's CPU "
                "(-march=native); it may not run on another CPU, or in a VM that masks CPU features")
    if not x86:
        # aarch64 (the IGX Orin, Grace, Ampere): the Makefile adds -mcpu=native and CMake's default is
        # GGML_NATIVE=ON. Each appliance builds on itself, and the aarch64 baseline (armv8.0) would lose
        # the dot-product and fp16 arithmetic of the Orin's cores. Keep the tree's default.
        return ("default", [], [], "%s builds for the build host's CPU (the tree's default); each appliance "
                "builds its own binary" % machine)
    if cpu_target == "all_variants" and tree["cpu_options"]["all_variants"]:
        return ("all_variants", ["-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON",
                                 "-DBUILD_SHARED_LIBS=ON"],
                [], "every CPU variant of the CPU backend is built and the one the CPU's CPUID promises most "
                "is loaded at start (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS, as llama.cpp's release images); "
                "a VM that lists AMX or AVX-512 it cannot run gets a variant that dies")
    why = "" if cpu_target == "portable" else "this tree cannot choose CPU variants at run time: "
    if tree["build_system"] == "make":
        flags = "-march=%s -mtune=generic" % X86_PORTABLE_MARCH
        # The 2023 Makefile adds -march=native; GCC takes the last -march, and CFLAGS / HOST_CXXFLAGS
        # from the command line come after the Makefile's own (also into nvcc's -Xcompiler).
        return ("portable_baseline", [], ["CFLAGS=%s" % flags, "HOST_CXXFLAGS=%s" % flags],
                why + "one build for %s (AVX2, FMA, F16C; no AVX-512, no AMX)" % X86_PORTABLE_MARCH)
    cmake = ["-D%s=OFF" % native_option] if native_option else []
    return ("portable_baseline", cmake, [], why + "one build for %s (AVX2, FMA, F16C; no AVX-512, no AMX; %s=OFF)"
            % (X86_PORTABLE_MARCH, native_option or "no native switch"))


def plan(tree, commit, install_dir, machine, backend="cpu", cpu_target="portable", cuda_architectures=None,
         cuda_home="", make_targets=None, cmake_targets=None, make_extra_args=None, cmake_extra_args=None,
         jobs=2, ccache=True, ccache_dir="/var/cache/edge-llama/ccache"):
    """How to build `tree` (the facts detect() returned) at `commit`, and where.

    The build directory is keyed by everything that changes the binary (the build's identity): the
    commit, the build system, the backend, the CUDA architectures and toolkit, the CPU build and the
    extra make/CMake arguments. Changing any of them builds in another directory beside the serving
    one; the same inputs give the same directory, so a re-run finds its build.
    """
    if backend not in ("cpu", "cuda"):
        raise ValueError("backend must be cpu or cuda, not %r" % (backend,))
    cuda = backend == "cuda"
    archs = [str(a) for a in (cuda_architectures or [])] if cuda else []
    if cuda and not archs:
        raise ValueError("a cuda build needs at least one CUDA architecture")
    kind, cpu_cmake, cpu_make, cpu_why = cpu_build(tree, machine, cpu_target)
    make_extra_args = list(make_extra_args or [])
    cmake_extra_args = list(cmake_extra_args or [])

    if tree["build_system"] == "make":
        # The Makefile takes one architecture (CUDA_DOCKER_ARCH): the oldest, which newer GPUs run too.
        oldest = sorted(archs, key=lambda a: int(re.sub(r"\D", "", a) or 0))[:1]
        recipe = (["LLAMA_CUBLAS=1", "CUDA_DOCKER_ARCH=sm_%s" % oldest[0]] if cuda else []) + cpu_make + make_extra_args
        commands = [["make", "-j", str(jobs)] + recipe + list(make_targets or ["server"])]
        identity_args = recipe
    else:
        recipe = ["-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                  "-DLLAMA_BUILD_EXAMPLES=OFF"]
        if cuda:
            # Without cuda_home (check mode, the toolkit not installed yet) CMake finds nvcc on PATH.
            recipe += ["-D%s=ON" % tree["cuda_option"]]
            recipe += ["-DCMAKE_CUDA_COMPILER=%s/bin/nvcc" % cuda_home] if cuda_home else []
            recipe += ["-DCMAKE_CUDA_ARCHITECTURES=%s" % ";".join(archs)]
        recipe += cpu_cmake
        launcher = (["-DGGML_CCACHE=OFF", "-DLLAMA_CCACHE=OFF", "-DCMAKE_C_COMPILER_LAUNCHER=ccache",
                     "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"] if ccache else [])
        configure = ["cmake", "-S", ".", "-B", "build"] + recipe + launcher + cmake_extra_args
        # With GGML_BACKEND_DL the CPU variants are modules nothing links; ggml depends on them
        # (add_dependencies), so building the server builds them too.
        targets = list(cmake_targets or ["llama-server"])
        commands = [configure, ["cmake", "--build", "build", "-j", str(jobs), "--target"] + targets]
        identity_args = recipe + [a for a in cmake_extra_args if not _NOT_IDENTITY.match(a)]

    identity = {
        "commit": commit,
        "build_system": tree["build_system"],
        "backend": backend,
        "cuda_architectures": archs,
        "cuda_home": cuda_home if cuda else "",
        "cpu_target": cpu_target,
        "cpu_build": kind,
        "machine": machine,
        "args": identity_args,
    }
    build_id = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    build_dir = os.path.join(install_dir, "builds", "%s-%s" % (commit[:12], build_id))

    path = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    if cuda and cuda_home:
        path.insert(0, cuda_home.rstrip("/") + "/bin")
    if ccache and tree["build_system"] == "make":
        path.insert(0, "/usr/lib/ccache")
    environment = {"PATH": ":".join(path), "CCACHE_DIR": ccache_dir, "CCACHE_BASEDIR": build_dir,
                   "CCACHE_NOHASHDIR": "true"}
    return {
        "build_id": build_id,
        "build_dir": build_dir,
        # What a build consists of, and the directory whose every entry is a build (the release's
        # pruning removes the entries no kept release uses: failed and rejected builds too).
        "artifacts": [build_dir],
        "artifact_root": os.path.join(install_dir, "builds"),
        "server_binary": os.path.join(build_dir, tree["server_binary"]),
        # What the build produced that the server needs, relative to build_dir: what a host with the
        # same identity receives instead of compiling (the sources come from its own checkout). The
        # Makefile links the server statically; CMake puts it and its shared libraries in build/bin.
        "outputs": ([tree["server_binary"]] if tree["build_system"] == "make"
                    else [os.path.dirname(tree["server_binary"])]),
        "identity": identity,
        "cpu_build": kind,
        "cpu_build_reason": cpu_why,
        "commands": commands,
        "environment": environment,
    }
