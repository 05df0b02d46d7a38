#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: llama_cpp_smoke
short_description: Prove that a freshly built llama.cpp server computes, before anything switches to it
description:
  - Starts the given llama.cpp server binary on loopback with a tiny Llama GGUF v2, asks C(POST /completion)
    for a few tokens, and stops it. A build that prints C(--help) but dies at its first computation (a CPU
    instruction the host cannot run, a broken kernel) is caught here, long before a switch.
  - Without I(model) the module writes its own tiny model (2 layers, ~0.3 MB, Q8_0 weight matrices so that
    the quantised SIMD kernels run, standard library only, GGUF v2 so that both the 2023 server and current
    ones read it) into a temporary directory, removed afterwards with the server's log.
  - Fails when the server exits or is killed by a signal (the message names the signal, for example
    C(SIGILL)), answers without tokens, answers an HTTP error, or does not answer within I(timeout).
    The result then carries C(rc), C(signal) and the last lines of the server's log.
  - With I(expect_offload) the server's log must say that every layer was offloaded to the GPU
    (C(offloaded N/N layers to GPU)).
  - Both eras work: the 2023 server opens its port once the model is loaded; current servers answer
    503 while loading, which is waited out.
version_added: "0.4.0"
author: edge-llama contributors
options:
  server_binary:
    description: Path of the server binary (C(server) of the 2023 Makefile, C(build/bin/llama-server) later).
    type: path
    required: true
  model:
    description: A GGUF to load instead of the module's own tiny model.
    type: path
  n_gpu_layers:
    description: C(-ngl) for the server (0 computes on the CPU).
    type: int
    default: 0
  expect_offload:
    description: Require the server's log to report all layers offloaded to the GPU.
    type: bool
    default: false
  n_predict:
    description: Tokens to generate (C(ignore_eos) keeps the server generating that many).
    type: int
    default: 4
  timeout:
    description: Seconds for the whole check, from start to answer.
    type: int
    default: 300
notes:
  - Changes nothing on the host; in check mode it does not start the server and reports C(skipped).
  - The port is chosen free on 127.0.0.1 by the kernel; nothing listens beyond loopback.
"""

EXAMPLES = r"""
- name: Prove the new build computes
  llama_cpp_smoke:
    server_binary: /opt/edge-llama/llama.cpp/builds/e519621010ca-0123456789ab/server
  register: smoke
"""

RETURN = r"""
tokens:
  description: Tokens the server generated.
  returned: success
  type: int
  sample: 4
seconds:
  description: Seconds from start to the answer (loading included).
  returned: always
  type: float
offloaded_layers:
  description: Layers the server's log says it offloaded to the GPU, and of how many (null when it says nothing).
  returned: always
  type: list
  sample: [3, 3]
rc:
  description: Exit status of a server that ended by itself (negative is the signal), null while it ran.
  returned: failure
  type: int
  sample: -4
signal:
  description: Name of the signal that ended the server, empty when none.
  returned: always
  type: str
  sample: SIGILL
log_tail:
  description: The last lines of the server's log.
  returned: always
  type: list
  elements: str
command:
  description: The server's command line.
  returned: always
  type: list
  elements: str
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

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.six.moves.urllib import error as urllib_error
from ansible.module_utils.six.moves.urllib import request as urllib_request
from ansible.module_utils.tiny_gguf import write as write_tiny_gguf

OFFLOAD_RE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
LOG_LINES = 15


def free_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def signal_name(rc):
    if rc is None or rc >= 0:
        return ""
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return "signal %d" % -rc


def log_tail(path, lines=LOG_LINES):
    try:
        with open(path, "rb") as handle:
            text = handle.read()[-64 * 1024:].decode("utf-8", "replace")
    except (IOError, OSError):
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def offloaded(path):
    try:
        with open(path, "rb") as handle:
            found = OFFLOAD_RE.findall(handle.read().decode("utf-8", "replace"))
    except (IOError, OSError):
        return None
    return [int(found[-1][0]), int(found[-1][1])] if found else None


_opener = urllib_request.build_opener(urllib_request.ProxyHandler({}))


def ask(port, n_predict, timeout):
    """POST /completion; returns (status, parsed body or text)."""
    body = json.dumps({"prompt": "Hello", "n_predict": n_predict, "ignore_eos": True, "temperature": 0,
                       "cache_prompt": False}).encode("utf-8")
    req = urllib_request.Request("http://127.0.0.1:%d/completion" % port, data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        resp = _opener.open(req, timeout=timeout)
        status, data = resp.getcode(), resp.read()
    except urllib_error.HTTPError as exc:
        status, data = exc.code, exc.read()
    text = data.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class SmokeFailure(Exception):
    pass


def run_check(binary, model, n_gpu_layers, n_predict, timeout, workdir, sleep=time.sleep):
    """Start the server, get tokens, stop it. Returns the result dict; raises SmokeFailure(result)."""
    port = free_port()
    log_path = os.path.join(workdir, "server.log")
    command = [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-c", "256",
               "-ngl", str(n_gpu_layers)]
    result = {"command": command, "signal": "", "log_tail": [], "offloaded_layers": None, "seconds": 0.0}
    started = time.time()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=workdir, start_new_session=True)
        except OSError as exc:
            result["msg"] = "cannot start %s: %s" % (binary, exc)
            raise SmokeFailure(result) from None
    last = "no answer yet"
    try:
        while True:
            rc = proc.poll()
            if rc is not None:
                result.update(rc=rc, signal=signal_name(rc))
                how = ("was killed by %s" % result["signal"]) if rc < 0 else ("exited with status %d" % rc)
                result["msg"] = "the server %s before it answered (last: %s)" % (how, last)
                raise SmokeFailure(result)
            left = timeout - (time.time() - started)
            if left <= 0:
                result["msg"] = "the server did not answer within %d s (last: %s)" % (timeout, last)
                raise SmokeFailure(result)
            try:
                status, answer = ask(port, n_predict, max(1.0, left))
            except (urllib_error.URLError, socket.error, OSError, EOFError) as exc:
                reason = getattr(exc, "reason", exc)
                last = "%s" % (reason,)
                sleep(0.25)
                continue
            except Exception as exc:  # http.client.RemoteDisconnected and friends: a dying server
                last = "%s: %s" % (type(exc).__name__, exc)
                sleep(0.25)
                continue
            if status == 503:  # current servers while the model loads
                last = "503 (loading)"
                sleep(0.25)
                continue
            if status != 200 or not isinstance(answer, dict):
                result["msg"] = "the server answered HTTP %s: %s" % (status, ("%s" % (answer,))[:300])
                raise SmokeFailure(result)
            tokens = answer.get("tokens_predicted") or 0
            if tokens < 1:
                result["msg"] = "the server answered without tokens: %s" % json.dumps(answer)[:300]
                raise SmokeFailure(result)
            timings = answer.get("timings") or {}
            result.update(tokens=int(tokens), tokens_per_second=timings.get("predicted_per_second"))
            # Still alive after computing: a server that crashes right after its first answer is no better.
            sleep(0.2)
            rc = proc.poll()
            if rc is not None:
                result.update(rc=rc, signal=signal_name(rc))
                result["msg"] = "the server answered, then ended (%s)" % (result["signal"] or "status %d" % rc)
                raise SmokeFailure(result)
            return result
    finally:
        result["seconds"] = round(time.time() - started, 2)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        result["log_tail"] = log_tail(log_path)
        result["offloaded_layers"] = offloaded(log_path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            server_binary=dict(type="path", required=True),
            model=dict(type="path"),
            n_gpu_layers=dict(type="int", default=0),
            expect_offload=dict(type="bool", default=False),
            n_predict=dict(type="int", default=4),
            timeout=dict(type="int", default=300),
        ),
        supports_check_mode=True,
    )
    p = module.params
    binary = p["server_binary"]
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, msg="check mode: %s not started" % binary)
    if not os.access(binary, os.X_OK):
        module.fail_json(msg="%s is not an executable file" % binary, command=[binary], signal="", log_tail=[])
    for name in ("n_predict", "timeout"):
        if p[name] < 1:
            module.fail_json(msg="%s must be at least 1, got %d" % (name, p[name]))
    workdir = tempfile.mkdtemp(prefix="edge-llama-smoke-")
    try:
        model = p["model"]
        if not model:
            model = os.path.join(workdir, "tiny-llama-2l.gguf")
            write_tiny_gguf(model)
        try:
            result = run_check(binary, model, p["n_gpu_layers"], p["n_predict"], p["timeout"], workdir)
        except SmokeFailure as exc:
            failed = exc.args[0]
            module.fail_json(**failed)
        if p["expect_offload"]:
            layers = result["offloaded_layers"]
            if not layers or layers[0] < 1 or layers[0] != layers[1]:
                result["msg"] = ("the server computed, but its log does not say that every layer was offloaded to "
                                 "the GPU (%s)" % ("offloaded %d/%d" % tuple(layers) if layers else "no offload line"))
                module.fail_json(**result)
        module.exit_json(changed=False, **result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
