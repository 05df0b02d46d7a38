"""llama_cpp_smoke against stand-in servers that behave as the real ones do at their worst.

Each stand-in is a small Python program started exactly as the module starts llama.cpp's server
(`-m MODEL --host 127.0.0.1 --port P -c 256 -ngl N`). It checks that the model it was given is a GGUF v2
(the file the module writes), prints the log lines llama.cpp prints, and then: answers like the 2023
server (port opens after loading), like current servers (503 while loading), dies by SIGILL at its first
computation (what a binary built for another CPU does), exits at start, answers without tokens, or never
answers. The real servers are checked by the molecule scenarios (the role runs this module after every
build, and the upgrade scenario's broken-compute commit is rejected by it).
"""

import os
import signal
import struct
import sys
import time

import pytest

import llama_cpp_smoke as module

STANDIN = r'''#!%(python)s
import json, os, signal, struct, sys, time, http.server
MODE = %(mode)r
argv = sys.argv[1:]
model, port, ngl = argv[argv.index("-m") + 1], int(argv[argv.index("--port") + 1]), int(argv[argv.index("-ngl") + 1])
with open(model, "rb") as f:
    magic, version = f.read(4), struct.unpack("<I", f.read(4))[0]
if magic != b"GGUF" or version != 2:
    print("gguf_init: not a GGUF v2 file: %%r %%r" %% (magic, version), flush=True)
    sys.exit(1)
print("llama_model_loader: loaded meta data from %%s" %% model, flush=True)
if MODE == "exit_at_start":
    print("error: unable to load model", flush=True)
    sys.exit(1)
if ngl and MODE != "no_offload":
    print("load_tensors: offloaded 3/3 layers to GPU", flush=True)
loading_until = time.time() + (1.0 if MODE == "current" else 0)
if MODE == "old":
    time.sleep(0.5)  # the 2023 server opens its port once the model is loaded

class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if time.time() < loading_until:
            self.send_response(503); self.send_header("Content-Length", "0"); self.end_headers(); return
        if MODE == "sigill":
            print("llama threadpool init, n_threads = 2", flush=True)
            os.kill(os.getpid(), signal.SIGILL)
        if MODE == "hang":
            time.sleep(60)
        n = 0 if MODE == "no_tokens" else body["n_predict"]
        data = json.dumps({"content": "x" * n, "tokens_predicted": n, "ignore_eos_seen": body.get("ignore_eos"),
                           "timings": {"predicted_per_second": 123.4}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)

srv = http.server.HTTPServer(("127.0.0.1", port), H)
print("HTTP server listening on port %%d" %% port, flush=True)
srv.serve_forever()
'''


def standin(tmp_path, mode):
    path = tmp_path / ("server-" + mode)
    path.write_text(STANDIN % {"python": sys.executable, "mode": mode})
    path.chmod(0o755)
    return str(path)


def smoke(run_module, tmp_path, mode, **extra):
    started = time.time()
    result = run_module(module, dict({"server_binary": standin(tmp_path, mode), "timeout": 20}, **extra))
    result["wall"] = time.time() - started
    return result


@pytest.mark.parametrize("mode", ["old", "current"])
def test_a_server_that_computes_passes(run_module, tmp_path, mode):
    result = smoke(run_module, tmp_path, mode)
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["tokens"] == 4 and result["tokens_per_second"] == 123.4
    assert result["signal"] == "" and result["offloaded_layers"] is None
    assert result["command"][1:3] == ["-m", result["command"][2]] and "127.0.0.1" in result["command"]
    assert any("listening" in line for line in result["log_tail"])


def test_a_server_killed_by_sigill_at_its_first_computation_is_rejected(run_module, tmp_path):
    result = smoke(run_module, tmp_path, "sigill")
    assert result["failed"]
    assert result["signal"] == "SIGILL" and result["rc"] == -signal.SIGILL
    assert "was killed by SIGILL" in result["msg"]
    assert "llama threadpool init, n_threads = 2" in result["log_tail"]
    assert result["wall"] < 15  # found when it died, not at the timeout


def test_a_server_that_exits_at_start_is_rejected_with_its_log(run_module, tmp_path):
    result = smoke(run_module, tmp_path, "exit_at_start")
    assert result["failed"] and result["rc"] == 1 and result["signal"] == ""
    assert "exited with status 1" in result["msg"]
    assert "error: unable to load model" in result["log_tail"]


def test_no_tokens_is_rejected(run_module, tmp_path):
    result = smoke(run_module, tmp_path, "no_tokens")
    assert result["failed"] and "without tokens" in result["msg"]


def test_a_server_that_never_answers_times_out_and_is_stopped(run_module, tmp_path):
    result = smoke(run_module, tmp_path, "hang", timeout=3)
    assert result["failed"] and "did not answer within 3 s" in result["msg"]
    assert result["wall"] < 20
    # The stand-in was stopped with its process group: nothing listens on its port any more.
    port = int(result["command"][result["command"].index("--port") + 1])
    import socket
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_gpu_offload_is_required_when_asked(run_module, tmp_path):
    ok = smoke(run_module, tmp_path, "old", n_gpu_layers=99, expect_offload=True)
    assert not ok.get("failed"), ok
    assert ok["offloaded_layers"] == [3, 3]
    assert "-ngl" in ok["command"] and ok["command"][ok["command"].index("-ngl") + 1] == "99"
    missing = smoke(run_module, tmp_path, "no_offload", n_gpu_layers=99, expect_offload=True)
    assert missing["failed"] and "offloaded to the GPU" in missing["msg"] and "no offload line" in missing["msg"]


def test_the_module_writes_its_own_gguf_v2_and_removes_it(run_module, tmp_path):
    result = smoke(run_module, tmp_path, "old")
    model = result["command"][2]
    assert model.endswith("tiny-llama-2l.gguf")
    assert not os.path.exists(model) and not os.path.exists(os.path.dirname(model))


def test_a_given_model_is_used(run_module, tmp_path):
    model = tmp_path / "other.gguf"
    model.write_bytes(b"GGUF" + struct.pack("<I", 3))  # v3: the stand-in refuses it
    result = smoke(run_module, tmp_path, "old", model=str(model))
    assert result["failed"] and "not a GGUF v2 file" in "\n".join(result["log_tail"])


def test_check_mode_starts_nothing(run_module, tmp_path):
    result = run_module(module, {"server_binary": standin(tmp_path, "sigill")}, check_mode=True)
    assert result["changed"] is False and result["skipped"] is True


def test_not_executable_fails_clearly(run_module, tmp_path):
    result = run_module(module, {"server_binary": str(tmp_path / "nope")})
    assert result["failed"] and "is not an executable file" in result["msg"]
