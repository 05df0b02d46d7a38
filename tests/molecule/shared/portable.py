"""Run a host's llama.cpp build on another CPU: under qemu-user with a named CPU model, on the controller.

The builds must not depend on the build machine's CPU extensions (this machine may have AVX-512 and AMX;
the user's may not). qemu's TCG emulates x86-64 up to AVX2/FMA/F16C and no AVX-512, so `-cpu Haswell-v4`
is a baseline x86-64-v3 machine and `-cpu qemu64` one with SSE2 only. A binary built with
-march=native on an AVX-512 machine dies there with SIGILL; a portable one answers.

The build directory (server and, for CMake builds, its shared libraries and CPU-variant modules) is
copied out of the test host with `podman cp`; the test hosts run Debian 12 like the controller, so the
same system libraries serve. The model is the tiny GGUF v2 of the test mirror.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import appliance

QEMU = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
TINY = appliance.CACHE / "mirror" / "hf" / "models" / "edge-llama-test" / "tiny-llama-GGUF" / "tiny-llama-2l.gguf"


def copy_build(host, server_binary):
    """Copy a build's server out of the host; returns the local path of the binary.

    CMake builds: the whole build/bin directory (shared libraries, CPU-variant modules). The 2023
    Makefile links everything into the one binary."""
    where = Path(tempfile.mkdtemp(prefix="edge-llama-portable-"))
    bin_dir = os.path.dirname(server_binary)
    source = bin_dir if os.path.basename(bin_dir) == "bin" else server_binary
    subprocess.run(["podman", "cp", "%s:%s" % (appliance.name(host), source), str(where)], check=True)
    if source == server_binary:
        return where / os.path.basename(server_binary)
    return where / os.path.basename(source) / os.path.basename(server_binary)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_under_qemu(binary, cpu, timeout=240):
    """Start binary under qemu-x86_64 -cpu CPU with the tiny model and ask for 4 tokens.

    Returns (tokens or None, returncode or None, log text, CPU variant module mapped or None)."""
    assert QEMU, "qemu-user-static is not installed (tests/setup/bootstrap.sh installs it)"
    port = free_port()
    log_path = binary.parent / ("qemu-%s.log" % cpu)
    env = dict(os.environ, LD_LIBRARY_PATH=str(binary.parent))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([QEMU, "-cpu", cpu, str(binary), "-m", str(TINY), "--host", "127.0.0.1",
                                 "--port", str(port), "-c", "256"], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=binary.parent, start_new_session=True)
    tokens, variant, deadline = None, None, time.monotonic() + timeout
    body = json.dumps({"prompt": "Hello", "n_predict": 4, "ignore_eos": True}).encode()
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                req = urllib.request.Request("http://127.0.0.1:%d/completion" % port, data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=max(1, deadline - time.monotonic())) as resp:
                    tokens = json.loads(resp.read())["tokens_predicted"]
                variant = mapped_cpu_variant(proc.pid)
                break
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                if isinstance(exc, urllib.error.HTTPError) and exc.code != 503:
                    raise
                time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = None
        else:
            rc = proc.returncode
    return tokens, rc, log_path.read_text(errors="replace"), variant


def mapped_cpu_variant(pid):
    """The CPU backend module a GGML_BACKEND_DL build loaded (libggml-cpu-haswell.so -> haswell), from the
    process's memory map (qemu-user maps the guest's files with the host's mmap); None for other builds."""
    found = set(re.findall(r"libggml-cpu-([a-z0-9_.]+)\.so", Path("/proc/%d/maps" % pid).read_text()))
    assert len(found) <= 1, found
    return found.pop() if found else None


def assert_answers(binary, cpu):
    """The binary answers under qemu -cpu CPU; returns the CPU variant it loaded (None: not a DL build)."""
    tokens, rc, log, variant = serve_under_qemu(binary, cpu)
    assert tokens and tokens > 0, "%s under qemu -cpu %s gave no tokens (rc %s, a signal is negative):\n%s" % (
        binary, cpu, rc, log[-3000:])
    return variant
