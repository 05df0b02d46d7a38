#!/usr/bin/env python3
"""Benchmark of library/hf_model.py (not a test: it prints figures and exits 0).

What it measures, against a hub-layout HTTP server (tests/unit/hubserver.py's Hub) that runs in a process
of its own and serves random files generated on disk:

1. Throughput of the module vs `curl` for the same file from the same server: curl alone, curl + sha256sum,
   curl + sha256sum + sync (the module verifies SHA-256 while it downloads and fsyncs before the rename),
   and the module run as Ansible runs it on a host: `python library/hf_model.py ARGS.json`.
2. Extra bytes on resume: a download cut part-way (the server closes the body after N bytes, or the module
   is killed), then run again; what the server sent on the resume vs the remainder of the file.
3. The time of a re-run with the verified file present, for each size (the record is trusted, nothing is
   hashed), and of verify=full for contrast.

Run it with the controller's virtualenv (huggingface_hub and ansible-core):

    . tests/setup/env.sh && python tests/bench/model_fetch.py [--sizes 1M,1G] [--repeat 3] [--keep]
"""

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "library" / "hf_model.py"
# The module run as its own process, the way a host runs it, with the project's module_utils/ importable as
# ansible.module_utils.NAME (Ansible ships them inside the module's AnsiballZ zip; ansible.cfg:
# module_utils = module_utils). What is left out is AnsiballZ's unzipping, a few milliseconds.
RUN_MODULE = ("import runpy, sys, ansible.module_utils as mu; mu.__path__.append(%r); sys.argv = sys.argv[1:]; "
              "runpy.run_path(sys.argv[0], run_name='__main__')" % str(REPO / "module_utils"))
REPO_ID = "edge-llama-bench/model-GGUF"
MIB = 1024 * 1024
UNITS = {"": 1, "B": 1, "K": 1024, "M": MIB, "G": 1024 * MIB}


# ---------------------------------------------------------------------------------------------------------------
# The server process: `model_fetch.py --serve NAME=PATH=SHA256 ...`
# One Hub (own port) per file, the file read from disk into memory and its ETag given (so that the server does
# not hash 1 GiB on every HEAD and GET). It answers commands on stdin, one JSON object a line:
# {"hub": NAME, "set": {"fail_after": N, "rate": R}, "reset": true} -> {"bytes_sent": ..., "requests": [...]}
# (the counters as they were before the reset).
# ---------------------------------------------------------------------------------------------------------------

def serve(specs):
    sys.path.insert(0, str(REPO / "tests" / "unit"))
    from hubserver import Hub

    hubs = {}
    try:
        for spec in specs:
            name, path, sha = spec.split("=", 2)
            hubs[name] = Hub({(REPO_ID, name): Path(path).read_bytes()}, etag=sha).__enter__()
        print(json.dumps({name: hub.url for name, hub in hubs.items()}), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            hub = hubs[cmd["hub"]]
            for key, value in cmd.get("set", {}).items():
                setattr(hub, key, value)
            reply = {"bytes_sent": hub.bytes_sent, "requests": [list(r[:3]) for r in hub.requests]}
            if cmd.get("reset"):
                hub.bytes_sent = 0
                hub.requests.clear()
            print(json.dumps(reply), flush=True)
    finally:
        for hub in hubs.values():
            hub.__exit__(None, None, None)


class Server:
    """The parent's handle on the server process."""

    def __init__(self, files):
        specs = ["%s=%s=%s" % (f["name"], f["path"], f["sha256"]) for f in files]
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", *specs], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the server process did not start (rc %s)" % self.proc.wait())
        self.urls = json.loads(line)

    def command(self, hub, reset=False, **settings):
        self.proc.stdin.write(json.dumps({"hub": hub, "set": settings, "reset": reset}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def settle(self, hub):
        """Wait until a request cut short (a killed client) has stopped counting; return the counters."""
        last = self.command(hub)
        for _ in range(100):
            time.sleep(0.1)
            now = self.command(hub)
            if now["bytes_sent"] == last["bytes_sent"]:
                return now
            last = now
        return last

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------

def parse_size(text):
    match = re.fullmatch(r"\s*(\d+)\s*([BKMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError("not a size: %r (examples: 1M, 512K, 1G, 1048576)" % text)
    return int(match.group(1)) * UNITS[match.group(2).upper()]


def size_name(nbytes):
    for unit in ("G", "M", "K"):
        if nbytes >= UNITS[unit] and nbytes % UNITS[unit] == 0:
            return "%d%siB" % (nbytes // UNITS[unit], unit)
    return "%dB" % nbytes


def make_file(path, size):
    """Random content on disk; returns its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        todo = size
        while todo:
            block = os.urandom(min(8 * MIB, todo))
            out.write(block)
            digest.update(block)
            todo -= len(block)
        out.flush()
        os.fsync(out.fileno())  # no write-back of it during the measurements
    return digest.hexdigest()


def timed(cmd, env, check=True):
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if check and proc.returncode:
        raise SystemExit("%s failed (rc %d):\n%s%s" % (" ".join(map(str, cmd)), proc.returncode, proc.stdout,
                                                       proc.stderr))
    return seconds, proc


def module_result(proc):
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit("hf_model printed no result (rc %d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr))


def clear_dest(dest):
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)


def mbps(nbytes, seconds):
    return nbytes / 1e6 / seconds


def fmt_bytes(nbytes):
    return f"{nbytes:,}"


class Bench:
    def __init__(self, opts, work):
        self.opts = opts
        self.work = work
        # The module and curl talk to 127.0.0.1 directly, whatever proxy the environment names.
        self.env = dict(os.environ, no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost",
                        HF_HUB_DISABLE_TELEMETRY="1")
        for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "HF_ENDPOINT"):
            self.env.pop(var, None)
        self.files = {}
        self.server = None
        self.calls = 0

    def say(self, text):
        print(text, flush=True)

    # -- module runs --------------------------------------------------------------------------------------------

    def module_args(self, name, dest, **extra):
        args = {"repo_id": REPO_ID, "filename": name, "dest": str(dest), "endpoint": self.server.urls[name],
                "allow_root_filesystem": True, "space_margin": 1, "chunk_size": self.opts.chunk_size}
        args.update(extra)
        self.calls += 1
        path = self.work / ("args-%03d.json" % self.calls)
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        return [sys.executable, "-c", RUN_MODULE, str(MODULE), str(path)]

    def run_module(self, name, dest, expect_ok=True, **extra):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds, proc = timed(self.module_args(name, dest, **extra), self.env, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = module_result(proc)
        # The module's own CPU time (user + system), its threads included.
        result["_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if expect_ok and result.get("failed"):
            raise SystemExit("hf_model failed: %s" % result.get("msg"))
        return seconds, result

    # -- 1. throughput ------------------------------------------------------------------------------------------

    def throughput(self):
        f = self.files[self.opts.throughput_size]
        name, size, url = f["name"], f["size"], self.server.urls[f["name"]] + "/%s/resolve/main/%s" % (
            REPO_ID, f["name"])
        self.say("\n[1] throughput, %s file, %d repetitions" % (size_name(size), self.opts.repeat))
        curl_dir, mod_dir = self.work / "tp-curl", self.work / "tp-module"
        curl_dir.mkdir()
        out = curl_dir / name
        times = {"curl": [], "sha256sum": [], "openssl": [], "sync": [], "module": [], "module_cpu": []}
        for rep in range(self.opts.repeat):
            # Alternate who goes first, so that neither always meets a freshly flushed page cache.
            order = ("curl", "module") if rep % 2 == 0 else ("module", "curl")
            for who in order:
                if who == "curl":
                    out.unlink(missing_ok=True)
                    self.server.command(name, reset=True)
                    t_curl, _ = timed(["curl", "-sSf", "-o", str(out), url], self.env)
                    got = self.server.command(name, reset=True)["bytes_sent"]
                    t_sum, proc = timed(["sha256sum", str(out)], self.env)
                    t_ssl, proc2 = timed(["openssl", "dgst", "-sha256", "-r", str(out)], self.env)
                    if got != size or {proc.stdout.split()[0], proc2.stdout.split()[0]} != {f["sha256"]}:
                        raise SystemExit("curl's copy is wrong (%d bytes sent, sha256 %s)" % (got, proc.stdout))
                    t_sync, _ = timed(["sync", str(out)], self.env)
                    out.unlink()
                    for key, value in (("curl", t_curl), ("sha256sum", t_sum), ("openssl", t_ssl),
                                       ("sync", t_sync)):
                        times[key].append(value)
                    self.say("    rep %d curl %.2f s, sha256sum %.2f s, openssl dgst %.2f s, sync %.2f s"
                             % (rep + 1, t_curl, t_sum, t_ssl, t_sync))
                else:
                    clear_dest(mod_dir)
                    self.server.command(name, reset=True)
                    t_mod, result = self.run_module(name, mod_dir)
                    got = self.server.command(name, reset=True)["bytes_sent"]
                    if result["verified"] != "download" or result["sha256"] != f["sha256"] or got != size:
                        raise SystemExit("the module's run is not a full verified download: %s" % result)
                    times["module"].append(t_mod)
                    times["module_cpu"].append(result["_cpu_s"])
                    self.say("    rep %d module %.2f s (CPU %.2f s)" % (rep + 1, t_mod, result["_cpu_s"]))
        clear_dest(mod_dir)
        def pair(*keys):
            total = [sum(values) for values in zip(*(times[key] for key in keys), strict=True)]
            return statistics.median(total), min(total), max(total)

        rows = [("curl -sSf -o FILE URL", pair("curl")),
                ("curl, then sha256sum FILE", pair("curl", "sha256sum")),
                ("curl, sha256sum, sync FILE", pair("curl", "sha256sum", "sync")),
                ("curl, openssl dgst -sha256, sync FILE", pair("curl", "openssl", "sync")),
                ("hf_model (SHA-256 streamed, fsync, rename)", pair("module"))]
        return {"size": size, "rows": rows, "module": rows[-1][1][0], "module_cpu": pair("module_cpu")}

    # -- 2. resume ----------------------------------------------------------------------------------------------

    def resume(self, key, how):
        f = self.files[key]
        name, size = f["name"], f["size"]
        dest = self.work / ("dest-%s" % size_name(size))
        clear_dest(dest)
        partial = dest / ("." + name + ".partial")
        self.server.command(name, reset=True)
        if how == "cut":
            cut = size // 2 + 4097 if size > 8192 else size // 2
            self.server.command(name, fail_after=cut)
            _, first = self.run_module(name, dest, expect_ok=False)
            if not first.get("failed"):
                raise SystemExit("the cut download did not fail: %s" % first)
            self.server.command(name, fail_after=None)
            label = "server closes at %d%%" % round(100.0 * cut / size)
        else:
            # Throttle the server so that the module can be killed part-way, then SIGKILL it.
            self.server.command(name, rate=max(size // 4, MIB))
            proc = subprocess.Popen(self.module_args(name, dest), env=self.env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                if partial.exists() and partial.stat().st_size >= size * 0.4:
                    break
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.server.settle(name)
            self.server.command(name, rate=None)
            label = "module killed (SIGKILL)"
        self.server.command(name, reset=True)
        have = partial.stat().st_size if partial.exists() else 0
        seconds, result = self.run_module(name, dest)
        stats = self.server.command(name, reset=True)
        if result["verified"] != "download" or result["sha256"] != f["sha256"]:
            raise SystemExit("the resumed download is not verified: %s" % result)
        ranges = [r[2] for r in stats["requests"] if r[0] == "GET"]
        remainder = size - have
        row = {"file": size_name(size), "how": label, "partial": have,
               "remainder": remainder, "sent": stats["bytes_sent"], "extra": stats["bytes_sent"] - remainder,
               "range": ",".join(r or "none" for r in ranges), "seconds": seconds,
               "resumed_from": result["resumed_from"]}
        self.say("    %s, %s: partial %s, resume sent %s for a remainder of %s (extra %s), GET Range %s, %.2f s"
                 % (row["file"], label, fmt_bytes(have), fmt_bytes(row["sent"]), fmt_bytes(remainder),
                    fmt_bytes(row["extra"]), row["range"], seconds))
        return row

    # -- 3. re-run with the file present ------------------------------------------------------------------------

    def rerun(self, key):
        f = self.files[key]
        name, size = f["name"], f["size"]
        dest = self.work / ("dest-%s" % size_name(size))
        if not (dest / name).exists():
            clear_dest(dest)
            self.run_module(name, dest)
        self.server.command(name, reset=True)
        auto, full, cold = [], [], []
        for _ in range(self.opts.reruns):
            seconds, result = self.run_module(name, dest)
            if result["changed"] or result["verified"] != "record":
                raise SystemExit("a re-run did not trust the record: %s" % result)
            auto.append(seconds)
        sent = self.server.command(name, reset=True)["bytes_sent"]
        for _ in range(self.opts.repeat):
            seconds, result = self.run_module(name, dest, verify="full")
            if result["changed"] or result["verified"] != "hash":
                raise SystemExit("verify=full did not hash the file: %s" % result)
            full.append(seconds)
        for _ in range(self.opts.repeat):
            # The same with the file's pages dropped from the page cache (this file only).
            fd = os.open(dest / name, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            seconds, result = self.run_module(name, dest, verify="full")
            cold.append(seconds)
        sent += self.server.command(name, reset=True)["bytes_sent"]
        row = {"file": size_name(size), "auto": statistics.median(auto), "auto_min": min(auto),
               "auto_max": max(auto), "full": statistics.median(full), "cold": statistics.median(cold),
               "sent": sent}
        self.say("    %s: re-run %.3f s (min %.3f, max %.3f), verify=full %.2f s (warm cache), %.2f s (cold), "
                 "%d body bytes sent" % (row["file"], row["auto"], row["auto_min"], row["auto_max"], row["full"],
                                         row["cold"], sent))
        return row

    def floor(self):
        """Python start-up plus the module's imports (ansible's basic, huggingface_hub), doing nothing."""
        code = ("import sys, ansible.module_utils as mu; mu.__path__.append(%r); sys.path.insert(0, %r); "
                "import hf_model" % (str(REPO / "module_utils"), str(REPO / "library")))
        return statistics.median(timed([sys.executable, "-c", code], self.env)[0] for _ in range(self.opts.reruns))


def versions():
    from ansible.release import __version__ as ansible_version

    try:
        import huggingface_hub
        hub_version = huggingface_hub.__version__
    except ImportError:
        raise SystemExit("huggingface_hub is missing: run with the controller's virtualenv "
                         "(. tests/setup/env.sh)") from None
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()[1]
    return "python %s, ansible-core %s, huggingface_hub %s, curl %s, %d CPUs" % (
        sys.version.split()[0], ansible_version, hub_version, curl, os.cpu_count())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1M,1G", type=lambda s: [parse_size(x) for x in s.split(",") if x],
                        help="file sizes for the resume and re-run figures (default 1M,1G)")
    parser.add_argument("--throughput-size", default="1G", type=parse_size,
                        help="file size for the throughput comparison (default 1G)")
    parser.add_argument("--repeat", default=3, type=int,
                        help="repetitions of each download and of verify=full; medians are printed (default 3)")
    parser.add_argument("--reruns", default=5, type=int, help="re-runs with the file present (default 5)")
    parser.add_argument("--chunk-size", default=8 * MIB, type=parse_size,
                        help="the module's chunk_size (default 8M, the module's default)")
    parser.add_argument("--tmpdir", default=None, help="where the files go (default: $TMPDIR or /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and downloads")
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.serve:
        serve(opts.serve)
        return 0
    if opts.repeat < 1 or opts.reruns < 1:
        parser.error("--repeat and --reruns must be at least 1")
    for tool in ("curl", "sha256sum", "openssl", "sync"):
        if not shutil.which(tool):
            raise SystemExit("%s is not installed; the comparison needs it" % tool)
    about = versions()

    keys = sorted(set(opts.sizes) | {opts.throughput_size})
    base = Path(opts.tmpdir or tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    # Sources, the module's copy of each, and curl's copy of the throughput file, with room to spare.
    needed = 2 * sum(keys) + opts.throughput_size + 64 * MIB
    free = shutil.disk_usage(base).free
    if free < needed:
        raise SystemExit("%s has %d bytes free; the benchmark needs about %d" % (base, free, needed))
    work = Path(tempfile.mkdtemp(prefix="edge-llama-bench-", dir=base))
    bench = Bench(opts, work)
    started = time.monotonic()
    print("hf_model benchmark in %s\n%s" % (work, about), flush=True)
    try:
        (work / "src").mkdir()
        for size in keys:
            t0 = time.perf_counter()
            name = "bench-%s.gguf" % size_name(size)
            path = work / "src" / name
            bench.files[size] = {"name": name, "size": size, "path": path, "sha256": make_file(path, size)}
            print("generated %s (%s bytes) in %.1f s" % (path, fmt_bytes(size), time.perf_counter() - t0),
                  flush=True)
        bench.server = Server(bench.files.values())
        print("server process %d: tests/unit/hubserver.Hub, one port per file" % bench.server.proc.pid, flush=True)

        tp = bench.throughput()
        bench.say("\n[2] resume")
        resumes = [bench.resume(size, "cut") for size in sorted(opts.sizes)]
        resumes.append(bench.resume(opts.throughput_size, "kill"))
        bench.say("\n[3] re-run with the verified file present, %d re-runs each" % opts.reruns)
        reruns = [bench.rerun(size) for size in sorted(opts.sizes)]
        floor = bench.floor()
    finally:
        if bench.server:
            bench.server.close()
        if opts.keep:
            print("kept %s" % work, flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)

    w = 44
    print("\n" + "=" * 100)
    print("RESULTS  %s\n         MB = 10^6 bytes; server: tests/unit/hubserver.Hub in a separate python process "
          "on 127.0.0.1" % about)
    print("=" * 100)
    print("\nThroughput, %s file (%s bytes), median of %d" % (size_name(tp["size"]), fmt_bytes(tp["size"]),
                                                            opts.repeat))
    print("  %-*s %9s %7s %7s %9s %21s" % (w, "what", "seconds", "min", "max", "MB/s", "ratio module/this"))
    for label, (seconds, low, high) in tp["rows"]:
        print("  %-*s %9.2f %7.2f %7.2f %9.1f %21.2f" % (w, label, seconds, low, high, mbps(tp["size"], seconds),
                                                         seconds / tp["module"]))
    print("  hf_model is run as Ansible runs a module on a host: `python library/hf_model.py ARGS.json`, default\n"
          "  chunk_size unless --chunk-size; curl and the module alternate which goes first.")
    print("  ratio module/this: the module's MB/s divided by that row's (above 1: the module is faster).\n"
          "  The module's time is a whole run: python start-up and imports, HEAD (metadata), GET, SHA-256 of the\n"
          "  stream, fsync, rename, the record. `curl, sha256sum, sync FILE` is the pair that does the same work;\n"
          "  coreutils' sha256sum does not use the CPU's SHA instructions, OpenSSL (like the module's hashlib)\n"
          "  does, hence the openssl row.")
    cpu = tp["module_cpu"][0]
    per_gb = cpu / (tp["size"] / 1e9)
    print("  hf_model's CPU time (user + system, all its threads): %.2f s (%.2f-%.2f), %.2f s per GB, %.0f%% of one\n"
          "  core over the run; at that rate the 41.4 GB Llama-2-70B Q4_K_M file costs about %.0f CPU-seconds."
          % (cpu, tp["module_cpu"][1], tp["module_cpu"][2], per_gb, 100.0 * cpu / tp["module"], per_gb * 41.4))

    print("\nExtra bytes on resume (body bytes the server sent; headers not counted)")
    print("  %-6s %-24s %15s %15s %15s %7s %-17s %8s" % (
        "file", "how cut", "partial", "remainder", "sent on resume", "extra", "resume Range", "seconds"))
    for r in resumes:
        print("  %-6s %-24s %15s %15s %15s %7s %-17s %8.2f" % (
            r["file"], r["how"], fmt_bytes(r["partial"]), fmt_bytes(r["remainder"]), fmt_bytes(r["sent"]),
            fmt_bytes(r["extra"]), r["range"], r["seconds"]))
    print("  remainder = file size - partial file left by the cut run; extra = sent on resume - remainder.\n"
          "  seconds: the whole resuming run, which first re-hashes the partial file.")

    print("\nRe-run with the verified file present (verify=auto trusts the record), median of %d" % opts.reruns)
    print("  %-6s %12s %10s %10s %20s %20s %12s" % ("file", "re-run s", "min", "max", "verify=full s (warm)",
                                                   "verify=full s (cold)", "bytes sent"))
    for r in reruns:
        print("  %-6s %12.3f %10.3f %10.3f %20.2f %20.2f %12s" % (
            r["file"], r["auto"], r["auto_min"], r["auto_max"], r["full"], r["cold"], fmt_bytes(r["sent"])))
    if len(reruns) > 1:
        print("  re-run time, largest / smallest file: %.2f" % (reruns[-1]["auto"] / reruns[0]["auto"]))
    print("  floor: python start-up + the module's imports, doing nothing: %.3f s" % floor)
    print("  verify=full: median of %d; cold = the file's pages dropped first (posix_fadvise DONTNEED)"
          % opts.repeat)
    print("\ntotal %.0f s" % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(benchlib.run_recorded('model_fetch', 'Model download: hf_model against curl', main))
