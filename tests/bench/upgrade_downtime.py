#!/usr/bin/env python3
"""Chat-endpoint downtime during an upgrade, next to the model load time (not a test: it prints figures).

While `ansible-playbook -i INV site.yml -e @TO --limit HOST` upgrades one host, a poller in the host's
network namespace (nsenter --net=/proc/PID/ns/net, PID from `podman inspect`, so that the services'
127.0.0.1 is the host's) probes, every --interval seconds (100 ms) and without piling up (a probe slower
than the interval is followed at once by the next):

  chat   POST http://127.0.0.1:8081/v1/chat/completions (model llama_2, "Say OK.", max_tokens 1,
         temperature 0, the bearer key if given, 5 s timeout): OK = HTTP 200 with choices;
  llama  GET http://127.0.0.1:8080/health (a 404 there means the 2023 server: GET /model.json instead):
         OK = HTTP 200 (a current server answers 503 while it loads the model).

After the playbook it keeps probing until both have been OK for 3 s (at most 300 s), then prints:
  - the playbook's wall time and exit status;
  - chat downtime: the sum of the outages, an outage lasting from the first failed probe of a run of
    failures to the next OK probe; the number of outages and the longest;
  - llama.cpp unavailable: the same for llama.cpp's readiness (the server's restart and model load);
  - model load time: the last llama.cpp outage (first failed probe to the next OK one);
  - chat downtime / model load time (1.0: the endpoint is down exactly while the model loads);
  - from the server's journal when the host is a podman container (podman exec ... journalctl):
    systemd's "Started" of edge-llama-server to llama.cpp's "model loaded"/"listening" line, and the
    "load time = ... ms" llama.cpp prints itself.
With --from VARS.json the host is first brought to that release (not timed), so that every run upgrades
from a known release; --repeat N runs the pair N times (then --from is required) and adds the medians.

    . tests/setup/env.sh
    python tests/bench/upgrade_downtime.py --inventory INV --host NAME --to TO.json [--from FROM.json] \\
        [--interval 0.1] [--api-key KEY] [--playbook site.yml] [--repeat 1] [--json]

The poll mode (--poll, how the script runs itself in the host's namespace; stdlib only) prints one JSON
line per probe: {"t": time.time() at the start, "kind": "chat"|"llama", "ok", "status" (HTTP status or
null), "ms", and "error" without an HTTP answer, "path" for llama}. It stops at the end of its stdin.

Exit status: 0 with the figures printed, 1 when a playbook failed (the figures of a failed --to run are
printed first), 2 when the host is not serving before the upgrade or cannot be probed.
"""

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import Failure, ansible_playbook, playbook_path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHAT_URL = "http://127.0.0.1:8081/v1/chat/completions"
LLAMA_URL = "http://127.0.0.1:8080"
KINDS = ("chat", "llama")
HOLD = 3.0  # seconds both must have been OK for, after the playbook
SETTLE_MAX = 300.0
BASELINE_MAX = 60.0
UNIT = "edge-llama-server"


# --- the analysis (pure) -----------------------------------------------------------------------------------------

def outages(probes, kind, since=None):
    """The outages of one kind: runs of failed probes, each from its first failed probe to the next OK probe
    (open at the end: to the last probe, recovered False). Probes before `since` are not looked at."""
    seq = sorted((p for p in probes if p["kind"] == kind and (since is None or p["t"] >= since)),
                 key=lambda p: p["t"])
    found, current = [], None
    for probe in seq:
        if not probe["ok"]:
            if current is None:
                current = {"start": probe["t"], "failed": 0, "causes": {}}
            current["failed"] += 1
            cause = str(probe.get("status") or probe.get("error") or "error")
            current["causes"][cause] = current["causes"].get(cause, 0) + 1
        elif current is not None:
            current.update(end=probe["t"], recovered=True)
            found.append(current)
            current = None
    if current is not None:
        current.update(end=seq[-1]["t"], recovered=False)
        found.append(current)
    for outage in found:
        outage["seconds"] = outage["end"] - outage["start"]
    return found


def spacing(probes, kind):
    """Median seconds between the starts of successive probes of one kind (the resolution of an edge)."""
    times = sorted(p["t"] for p in probes if p["kind"] == kind)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return statistics.median(gaps) if gaps else None


def analyse(probes, since=None):
    """Figures of one upgrade from the probe records (dicts with t, kind, ok): per kind the downtime (sum of
    the outages), their number, the longest, whether the last one ended; the model load time (llama.cpp's
    last outage) and chat downtime / model load time."""
    figures = {}
    for kind in KINDS:
        found = outages(probes, kind, since)
        figures[kind] = {
            "downtime_s": sum(o["seconds"] for o in found),
            "outages": len(found),
            "longest_s": max((o["seconds"] for o in found), default=0.0),
            "recovered": all(o["recovered"] for o in found),
            "probes": sum(1 for p in probes if p["kind"] == kind and (since is None or p["t"] >= since)),
            "failed_probes": sum(o["failed"] for o in found),
            "spacing_s": spacing(probes, kind),
            "periods": [{"start": o["start"], "seconds": o["seconds"], "recovered": o["recovered"],
                         "failed": o["failed"], "causes": o["causes"]} for o in found],
        }
    llama = figures["llama"]["periods"]
    load = llama[-1]["seconds"] if llama and llama[-1]["recovered"] else None
    figures["model_load_s"] = load
    figures["chat_over_load"] = figures["chat"]["downtime_s"] / load if load else None
    return figures


def settled(probes, now, hold=HOLD):
    """True once each kind has been OK for `hold` seconds: its latest probe is OK and the first OK probe
    after its last failure started at least `hold` seconds before `now`."""
    for kind in KINDS:
        seq = sorted((p for p in probes if p["kind"] == kind), key=lambda p: p["t"])
        if not seq or not seq[-1]["ok"]:
            return False
        failures = [i for i, p in enumerate(seq) if not p["ok"]]
        first_ok = seq[failures[-1] + 1] if failures else seq[0]
        if now - first_ok["t"] < hold:
            return False
    return True


def serving(probes):
    """Both kinds answered OK in their latest probe."""
    for kind in KINDS:
        seq = [p for p in probes if p["kind"] == kind]
        if not seq or not max(seq, key=lambda p: p["t"])["ok"]:
            return False
    return True


def journal_figures(text):
    """From `journalctl -u edge-llama-server -o short-unix`: seconds from systemd's last "Started" line to
    llama.cpp's first "model loaded"/"listening" line after it, and the first "load time = X ms" after it."""
    start, ready, load_ms = None, None, None
    lines = []
    for line in text.splitlines():
        stamp, _, message = line.partition(" ")
        try:
            lines.append((float(stamp), message))
        except ValueError:
            continue
    for i, (stamp, message) in enumerate(lines):
        if re.search(r"systemd\[\d+\]: Started ", message):
            start, ready, load_ms, first = stamp, None, None, i
    if start is None:
        return {"start_to_ready_s": None, "load_time_ms": None}
    for stamp, message in lines[first + 1:]:
        if ready is None and re.search(r"model loaded|server is listening|HTTP server listening|"
                                       r"llama server listening", message):
            ready = stamp
        found = re.search(r"\bload time\s*=\s*([\d.]+)\s*ms", message)
        if load_ms is None and found:
            load_ms = float(found.group(1))
    return {"start_to_ready_s": ready - start if ready is not None else None, "load_time_ms": load_ms}


# --- the poll mode (runs in the host's network namespace; stdlib only) -------------------------------------------

def poll(opts):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    key = os.environ.get("EDGE_LLAMA_API_KEY", "")
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    body = json.dumps({"model": opts.model, "messages": [{"role": "user", "content": "Say OK."}],
                       "max_tokens": 1, "temperature": 0}).encode()
    llama = opts.llama_url.rstrip("/")
    stop = threading.Event()
    lock = threading.Lock()

    def fetch(request):
        """(status or None, body or None, error or None)"""
        try:
            with opener.open(request, timeout=opts.timeout) as reply:
                return reply.status, reply.read(), None
        except urllib.error.HTTPError as exc:
            try:
                exc.read()
            except (OSError, http.client.HTTPException):
                pass
            exc.close()
            return exc.code, None, None
        except urllib.error.URLError as exc:
            reason = exc.reason
            return None, None, "timeout" if isinstance(reason, TimeoutError) else type(reason).__name__
        except TimeoutError:
            return None, None, "timeout"
        except (OSError, http.client.HTTPException) as exc:
            return None, None, type(exc).__name__

    def chat():
        status, data, error = fetch(urllib.request.Request(opts.chat_url, data=body, headers=headers, method="POST"))
        ok = False
        if status == 200:
            try:
                ok = bool(json.loads(data).get("choices"))
            except (ValueError, AttributeError):
                error = "not JSON with choices"
        return {"ok": ok, "status": status, "error": error}

    def ready():
        status, _, error = fetch(urllib.request.Request(llama + "/health"))
        path = "/health"
        if status == 404:  # the 2023 server has no /health
            path = "/model.json"
            status, _, error = fetch(urllib.request.Request(llama + path))
        return {"ok": status == 200, "status": status, "error": error, "path": path}

    def emit(record):
        line = json.dumps(record) + "\n"
        with lock:
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                stop.set()

    def loop(kind, probe):
        while not stop.is_set():
            started, t = time.monotonic(), time.time()
            result = probe()
            record = {"t": round(t, 3), "kind": kind, "ok": result.pop("ok"), "status": result.pop("status"),
                      "ms": round((time.monotonic() - started) * 1000, 1)}
            record.update((k, v) for k, v in result.items() if v is not None)
            emit(record)
            rest = opts.interval - (time.monotonic() - started)
            if rest > 0:
                stop.wait(rest)

    def until_eof():  # os.read: no buffered reader whose lock a daemon thread would hold at exit
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threads = [threading.Thread(target=loop, args=(kind, probe), daemon=True)
               for kind, probe in (("chat", chat), ("llama", ready))]
    for thread in threads:
        thread.start()
    threading.Thread(target=until_eof, daemon=True).start()
    stop.wait(opts.max_seconds)
    stop.set()
    for thread in threads:
        thread.join(opts.timeout * 2 + 1)
    return 0


# --- the controller side -----------------------------------------------------------------------------------------

class Poller:
    """The poll mode as a child process (in the host's namespace), its records collected as they come."""

    def __init__(self, argv, env, jsonl):
        self.probes, self.errors = [], []
        self.lock = threading.Lock()
        self.jsonl = open(jsonl, "w")  # closed in stop()
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, env=env)
        except OSError as exc:
            self.jsonl.close()
            raise Failure("cannot start the poller (%s): %s" % (argv[0], exc), 2) from None
        self.readers = [threading.Thread(target=self._read, daemon=True),
                        threading.Thread(target=self._errors, daemon=True)]
        for reader in self.readers:
            reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.probes.append(record)
                self.jsonl.write(line)

    def _errors(self):
        for line in self.proc.stderr:
            self.errors.append(line.rstrip())

    def snapshot(self):
        with self.lock:
            return list(self.probes)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for reader in self.readers:
            reader.join(5)
        with self.lock:
            self.jsonl.close()
        return self.snapshot()


def run_playbook(opts, varsfile, log):
    argv = [ansible_playbook(), "-i", opts.inventory, opts.playbook_path, "-e", "@" + varsfile, "--limit", opts.host]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    with open(log, "w") as out:
        out.write("$ %s\n" % " ".join(argv))
        out.flush()
        started = time.time()
        rc = subprocess.run(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    return rc, started, time.time()


def podman(*args, timeout=60):
    try:
        proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    return (proc.stdout if proc.returncode == 0 else None), proc.stderr.strip()


def netns_of(opts):
    """The network namespace to poll from: --netns, none with --no-netns, else the container's."""
    if opts.no_netns:
        return None
    if opts.netns:
        return opts.netns
    out, err = podman("inspect", "-f", "{{.State.Pid}}", opts.container)
    if out is None or not out.strip().isdigit() or int(out) <= 0:
        raise Failure("cannot find the PID of container %s (podman inspect: %s); give --container, --netns "
                      "or --no-netns" % (opts.container, err or out.strip()), 2)
    return "/proc/%d/ns/net" % int(out)


def poller_argv(opts, netns):
    argv = [sys.executable, str(Path(__file__).resolve()), "--poll", "--interval", str(opts.interval),
            "--timeout", str(opts.timeout), "--model", opts.model, "--chat-url", opts.chat_url,
            "--llama-url", opts.llama_url]
    return (["nsenter", "--net=" + netns, "--"] + argv) if netns else argv


def read_journal(opts, since):
    if not opts.journal_container:
        return None, None
    out, err = podman("exec", opts.journal_container, "journalctl", "-u", UNIT, "--since", "@%d" % int(since),
                      "-o", "short-unix", "--no-pager", timeout=120)
    if out is None:
        return None, err
    return out, None


def wait_for(poller, test, limit, what):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not poller.alive():
            raise Failure("the poller stopped: %s" % "\n".join(poller.errors[-10:] or ["(no output)"]), 2)
        if test(poller.snapshot()):
            return True
        time.sleep(0.1)
    return False


def one_run(opts, run, tmpdir):
    tag = "run %d/%d" % (run, opts.repeat)
    result = {"run": run}
    if opts.from_vars:
        log = os.path.join(tmpdir, "from-%d.log" % run)
        print("%s: bringing %s to --from %s (not timed; log %s)" % (tag, opts.host, opts.from_vars, log), flush=True)
        rc, started, ended = run_playbook(opts, opts.from_vars, log)
        print("%s: --from playbook: rc %d in %.1f s" % (tag, rc, ended - started), flush=True)
        if rc != 0:
            raise Failure("the --from playbook failed (rc %d); see %s" % (rc, log))
    env = dict(os.environ, PYTHONUNBUFFERED="1", EDGE_LLAMA_API_KEY=opts.api_key or "")
    for name in list(env):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            del env[name]
    jsonl = os.path.join(tmpdir, "probes-%d.jsonl" % run)
    poller = Poller(poller_argv(opts, opts.netns_path), env, jsonl)
    try:
        if not wait_for(poller, serving, BASELINE_MAX, "serving"):
            last = {p["kind"]: p for p in poller.snapshot()}
            raise Failure("%s is not serving before the upgrade (after %.0f s: %s)" % (
                opts.host, BASELINE_MAX, json.dumps(last)), 2)
        log = os.path.join(tmpdir, "to-%d.log" % run)
        print("%s: serving; upgrading with --to %s (log %s)" % (tag, opts.to_vars, log), flush=True)
        rc, started, ended = run_playbook(opts, opts.to_vars, log)
        print("%s: --to playbook: rc %d in %.1f s" % (tag, rc, ended - started), flush=True)
        ok = wait_for(poller, lambda probes: settled(probes, time.time()), SETTLE_MAX, "settled")
        print("%s: %s, %.1f s after the playbook ended" % (
            tag, "both OK for %.0f s" % HOLD if ok else "NOT serving again", time.time() - ended), flush=True)
    finally:
        probes = poller.stop()
    result.update(analyse(probes, since=started), playbook_s=ended - started, playbook_rc=rc, log=log,
                  probes_file=jsonl, started=started, settled=ok)
    text, err = read_journal(opts, started)
    if text is not None:
        path = os.path.join(tmpdir, "journal-%d.txt" % run)
        Path(path).write_text(text)
        result["journal"] = dict(journal_figures(text), file=path)
    elif err:
        result["journal"] = {"error": err}
    return result


# --- printing ----------------------------------------------------------------------------------------------------

def num(value, fmt="%.1f"):
    return "-" if value is None else fmt % value


def rows(results):
    def pick(key, sub=None):
        return [r[key][sub] if sub else r[key] for r in results]

    def journal(key):
        return [(r.get("journal") or {}).get(key) for r in results]

    out = [("playbook (s)", pick("playbook_s"), "%.1f"),
           ("playbook rc", pick("playbook_rc"), "%d"),
           ("chat downtime (s)", pick("chat", "downtime_s"), "%.2f"),
           ("  outages", pick("chat", "outages"), "%d"),
           ("  longest (s)", pick("chat", "longest_s"), "%.2f"),
           ("llama.cpp unavailable (s)", pick("llama", "downtime_s"), "%.2f"),
           ("  outages", pick("llama", "outages"), "%d"),
           ("  longest (s)", pick("llama", "longest_s"), "%.2f"),
           ("model load time (s)", pick("model_load_s"), "%.2f"),
           ("chat downtime / load", pick("chat_over_load"), "%.2f")]
    if any(r.get("journal", {}).get("start_to_ready_s") is not None for r in results):
        out.append(("journal: Started->ready (s)", journal("start_to_ready_s"), "%.2f"))
    if any(r.get("journal", {}).get("load_time_ms") is not None for r in results):
        out.append(("journal: load time (ms)", journal("load_time_ms"), "%.0f"))
    return out


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def print_table(results):
    width = 12
    head = "%-28s" % "" + "".join("%-*s" % (width, "run %d" % r["run"]) for r in results)
    many = len(results) > 1
    print()
    print((head + ("median" if many else "")).rstrip())
    for label, values, fmt in rows(results):
        line = "%-28s" % label + "".join("%-*s" % (width, num(v, fmt)) for v in values)
        if many and label != "playbook rc":
            line += num(median_or_none(values), fmt)
        print(line.rstrip())
    for r in results:
        print()
        print("run %d outages (seconds after the playbook started; causes: HTTP status or error x probes):" % r["run"])
        periods = [(kind, p) for kind in KINDS for p in r[kind]["periods"]]
        if not periods:
            print("  none")
        for kind, p in sorted(periods, key=lambda kp: kp[1]["start"]):
            causes = ", ".join("%s x%d" % (c, n) for c, n in sorted(p["causes"].items(), key=lambda cn: -cn[1]))
            print("  %-5s +%7.2f  %7.2f s%s  (%s)" % (kind, p["start"] - r["started"], p["seconds"],
                                                       "" if p["recovered"] else " NOT RECOVERED", causes))
        print("  resolution: a probe every %s ms (chat), %s ms (llama.cpp), median; log %s; probes %s" % (
            num(r["chat"]["spacing_s"] and r["chat"]["spacing_s"] * 1000, "%.0f"),
            num(r["llama"]["spacing_s"] and r["llama"]["spacing_s"] * 1000, "%.0f"), r["log"], r["probes_file"]))
        if r["playbook_rc"]:
            print("  warning: the playbook failed (rc %d); see its log" % r["playbook_rc"])
        if not r["settled"]:
            print("  warning: not both OK for %.0f s within %.0f s after the playbook" % (HOLD, SETTLE_MAX))
        journal = r.get("journal") or {}
        if journal.get("error"):
            print("  journal not read: %s" % journal["error"])


# --- main --------------------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inventory", "-i", help="the inventory (e.g. molecule's ansible_inventory.yml)")
    parser.add_argument("--host", help="the host to upgrade (--limit)")
    parser.add_argument("--to", dest="to_vars", metavar="VARS.json", help="extra vars of the release to upgrade to")
    parser.add_argument("--from", dest="from_vars", metavar="VARS.json",
                        help="extra vars of a release to bring the host to first (not timed)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between probes (default 0.1)")
    parser.add_argument("--api-key", default=os.environ.get("EDGE_LLAMA_API_KEY", ""),
                        help="the endpoint's API key (default: $EDGE_LLAMA_API_KEY)")
    parser.add_argument("--playbook", default="site.yml", help="the playbook (default site.yml of the repository)")
    parser.add_argument("--repeat", type=int, default=1, help="upgrades to measure (more than 1 needs --from)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object (last line)")
    parser.add_argument("--container", help="podman container of the host, for its PID and journal "
                                            "(default: the --host name)")
    parser.add_argument("--netns", help="network namespace to poll from (default /proc/<container PID>/ns/net)")
    parser.add_argument("--no-netns", action="store_true",
                        help="poll from this machine's own network namespace (services on this machine's "
                             "loopback; no journal then)")
    parser.add_argument("--no-journal", action="store_true", help="do not read the server's journal")
    parser.add_argument("--chat-url", default=CHAT_URL, help="chat completions URL (default %(default)s)")
    parser.add_argument("--llama-url", default=LLAMA_URL, help="llama.cpp's server (default %(default)s)")
    parser.add_argument("--model", default="llama_2", help="model sent in the chat probe (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per probe (default 5)")
    parser.add_argument("--poll", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=4 * 3600, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.interval <= 0 or opts.timeout <= 0:
        parser.error("--interval and --timeout must be positive")
    if opts.poll:
        return poll(opts)
    for name in ("inventory", "host", "to_vars"):
        if not getattr(opts, name):
            parser.error("--%s is required" % name.replace("_vars", ""))
    if opts.repeat < 1:
        parser.error("--repeat must be at least 1")
    if opts.repeat > 1 and not opts.from_vars:
        parser.error("--repeat more than 1 needs --from (after the first upgrade there is nothing left to do)")
    for path in (opts.to_vars, opts.from_vars):
        if path and not os.path.isfile(path):
            parser.error("no file %s" % path)
    opts.to_vars = os.path.abspath(opts.to_vars)
    opts.from_vars = opts.from_vars and os.path.abspath(opts.from_vars)
    opts.inventory = os.path.abspath(opts.inventory)
    explicit = opts.container
    opts.container = opts.container or opts.host
    tmpdir = tempfile.mkdtemp(prefix="upgrade-downtime-")
    results = []
    try:
        opts.playbook_path = playbook_path(opts.playbook)
        opts.netns_path = netns_of(opts)
        use_journal = not opts.no_journal and (explicit or not (opts.no_netns or opts.netns))
        opts.journal_container = opts.container if use_journal else None
        print("upgrade downtime: %s (inventory %s, %s), --to %s%s" % (
            opts.host, opts.inventory, opts.playbook_path, opts.to_vars,
            ", --from %s" % opts.from_vars if opts.from_vars else ""))
        print("probes every %.0f ms from %s: chat POST %s, llama.cpp GET %s/health (or /model.json); files in %s"
              % (opts.interval * 1000, opts.netns_path or "this machine's network namespace", opts.chat_url,
                 opts.llama_url.rstrip("/"), tmpdir), flush=True)
        for run in range(1, opts.repeat + 1):
            results.append(one_run(opts, run, tmpdir))
    except Failure as exc:
        if results:
            print_table(results)
        print("upgrade_downtime: %s" % exc, file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    print_table(results)
    if opts.json:
        print(json.dumps({"host": opts.host, "to": opts.to_vars, "from": opts.from_vars, "interval": opts.interval,
                          "files": tmpdir, "runs": results}))
    return 1 if any(r["playbook_rc"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(benchlib.run_recorded('upgrade_downtime', 'Downtime during an upgrade', main))
