#!/usr/bin/python3
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""edge-llama's series for the node exporter's textfile collector: the GPUs and the release.

Run by edge-llama-metrics.timer (every few seconds, as root, sandboxed); writes one file,
<textfile dir>/edge_llama.prom, whole or not at all (a temporary file renamed over it), which the node
exporter serves at each scrape. Python's standard library only: it runs with the host's python3.

- The GPUs, from one `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` (the query the facts
  module nvidia_gpu_info runs, with the figures a dashboard wants): memory used and total (bytes),
  utilisation (0-1), temperature (C), power (W), SM clock (Hz), labelled gpu (index), name, uuid.
  A field the GPU does not report (`[N/A]`, `[Not Supported]`: MIG, an Orin iGPU's memory) is left out,
  never written as 0. edge_llama_gpu_query_success says whether nvidia-smi answered (0 on a host
  without it, such as the test hosts: no GPU series then).
- The release, from the release owner's record (/etc/ansible/facts.d/edge_llama_release.fact, read
  only): edge_llama_release_info{commit,model,model_sha256,state} 1 for the serving release
  (state "serving"), those kept to roll back to ("kept") and those refused by their health gate
  ("rejected"); edge_llama_release_since_timestamp_seconds of the serving one. A dashboard shows an
  upgrade as the serving series changing.
- edge_llama_expected_tokens_per_second: --expected-tokens-per-second when above 0, else the tokens/s
  the health gate measured when the serving release last passed it (the last-run record's report);
  0 when neither is known. The site's alert on slow generation compares with it.

The text is Prometheus' exposition format 0.0.4 (the textfile collector's input), written here with
its escaping rules; the unit tests read it back with prometheus-client's parser.
"""

import argparse
import calendar
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

QUERY = ["index", "name", "uuid", "memory.used", "memory.total", "utilization.gpu", "temperature.gpu",
         "power.draw", "clocks.sm"]
# metric: (field, factor, help)
GPU_SERIES = [
    ("edge_llama_gpu_memory_used_bytes", "memory.used", 1048576, "GPU memory in use (bytes)"),
    ("edge_llama_gpu_memory_total_bytes", "memory.total", 1048576, "GPU memory in all (bytes)"),
    ("edge_llama_gpu_utilization_ratio", "utilization.gpu", 0.01,
     "Share of the last sample period the GPU was busy (0-1)"),
    ("edge_llama_gpu_temperature_celsius", "temperature.gpu", 1, "GPU core temperature (Celsius)"),
    ("edge_llama_gpu_power_watts", "power.draw", 1, "GPU power draw (watts)"),
    ("edge_llama_gpu_sm_clock_hertz", "clocks.sm", 1000000, "GPU SM clock (hertz)"),
]
NVIDIA_SMI_PATHS = ("/usr/bin/nvidia-smi", "/usr/local/bin/nvidia-smi", "/usr/sbin/nvidia-smi")
STATES = ("serving", "kept", "rejected")


def escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value):
    if value == int(value) and abs(value) < 1e15:
        return "%d" % value
    return repr(float(value))


class Exposition:
    """Metric families in the text format: each family's HELP and TYPE once, then its samples."""

    def __init__(self):
        self.families = []  # [(name, type, help, [(labels, value)])]
        self.by_name = {}

    def family(self, name, kind, text):
        if name not in self.by_name:
            self.by_name[name] = (name, kind, text, [])
            self.families.append(self.by_name[name])
        return self.by_name[name][3]

    def add(self, name, kind, text, value, labels=None):
        self.family(name, kind, text).append((labels or {}, value))

    def text(self):
        lines = []
        for name, kind, text, samples in self.families:
            lines.append("# HELP %s %s" % (name, text.replace("\\", "\\\\").replace("\n", "\\n")))
            lines.append("# TYPE %s %s" % (name, kind))
            for labels, value in samples:
                inner = ",".join('%s="%s"' % (key, escape(labels[key])) for key in sorted(labels))
                lines.append("%s%s %s" % (name, "{%s}" % inner if inner else "", number(value)))
        return "\n".join(lines) + "\n"


def _value(text):
    """A CSV value of nvidia-smi's nounits format as a float; None for [N/A], [Not Supported], ..."""
    text = (text or "").strip()
    if not text or text.startswith("["):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse(text):
    """nvidia-smi's rows as dicts of QUERY's fields (a name with a comma in it kept whole)."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [v.strip() for v in line.split(",")]
        extra = len(values) - len(QUERY)
        if extra < 0:
            raise ValueError("nvidia-smi printed %d fields, expected %d: %r" % (len(values), len(QUERY), line))
        if extra:
            at = QUERY.index("name")
            values[at:at + extra + 1] = [", ".join(values[at:at + extra + 1])]
        gpus.append(dict(zip(QUERY, values, strict=True)))
    return gpus


def find_nvidia_smi(path=""):
    if path:
        return path if os.access(path, os.X_OK) else ""
    found = shutil.which("nvidia-smi")
    if found:
        return found
    return next((p for p in NVIDIA_SMI_PATHS if os.access(p, os.X_OK)), "")


def query(nvidia_smi, timeout=20):
    """(gpus, problem): the rows, or [] and why not."""
    if not nvidia_smi:
        return [], "no nvidia-smi on this host"
    try:
        proc = subprocess.run([nvidia_smi, "--query-gpu=" + ",".join(QUERY), "--format=csv,noheader,nounits"],
                              capture_output=True, timeout=timeout, check=False, text=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], "%s: %s" % (nvidia_smi, exc)
    if proc.returncode != 0:
        return [], "%s exited %d: %s" % (nvidia_smi, proc.returncode, (proc.stdout + proc.stderr).strip()[:200])
    try:
        return parse(proc.stdout), ""
    except ValueError as exc:
        return [], str(exc)


def add_gpus(out, gpus, problem):
    out.add("edge_llama_gpu_query_success", "gauge",
            "Whether nvidia-smi answered the last query (1) or not (0: no driver, no GPU, an error)",
            0 if problem else 1)
    for gpu in gpus:
        labels = {"gpu": gpu["index"], "name": gpu["name"], "uuid": gpu["uuid"]}
        for metric, field, factor, text in GPU_SERIES:
            value = _value(gpu.get(field))
            if value is not None:
                out.add(metric, "gauge", text, value * factor, labels)


def _model(release):
    return os.path.basename(release.get("model_path") or "")


def _short(commit):
    return (commit or "")[:12]


def _timestamp(text):
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None


def add_release(out, record):
    record = record if isinstance(record, dict) else {}
    releases = [r for r in record.get("releases") or [] if isinstance(r, dict)]
    rejected = [r for r in record.get("rejected") or [] if isinstance(r, dict)]
    text = ("The releases on this appliance (llama.cpp commit, model file, its SHA-256): the serving one, "
            "those kept to roll back to, and those refused by their health gate")
    seen = set()
    for state, release in ([("serving", r) for r in releases[:1]] + [("kept", r) for r in releases[1:]]
                           + [("rejected", r) for r in rejected]):
        labels = {"commit": _short(release.get("commit")), "model": _model(release),
                  "model_sha256": release.get("model_sha256") or "", "state": state}
        key = tuple(sorted(labels.items()))
        if key in seen:
            continue
        seen.add(key)
        out.add("edge_llama_release_info", "gauge", text, 1, labels)
    if releases:
        since = _timestamp(releases[0].get("since"))
        if since is not None:
            out.add("edge_llama_release_since_timestamp_seconds", "gauge",
                    "When the serving release began to serve (Unix time)", since,
                    {"commit": _short(releases[0].get("commit")), "model": _model(releases[0])})


def expected_tokens_per_second(given, last_run):
    if given and given > 0:
        return given
    try:
        figure = last_run["reports"]["services_report"]["tokens_per_second"]
        return float(figure) if figure else 0.0
    except (KeyError, TypeError, ValueError):
        return 0.0


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def collect(nvidia_smi="", release_record="", last_run_record="", expected=0.0):
    out = Exposition()
    gpus, problem = query(find_nvidia_smi(nvidia_smi))
    add_gpus(out, gpus, problem)
    add_release(out, read_json(release_record) if release_record else {})
    out.add("edge_llama_expected_tokens_per_second", "gauge",
            "Generation tokens/s this appliance is expected to reach (set, or its last health gate's; 0: unknown)",
            expected_tokens_per_second(expected, read_json(last_run_record) if last_run_record else {}))
    return out.text(), problem


def write(path, text):
    """Whole or not at all: the node exporter never reads half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(prefix=".edge_llama.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, help="the .prom file in the node exporter's textfile directory")
    parser.add_argument("--nvidia-smi", default="", help="path of nvidia-smi (default: PATH, then /usr/bin, ...)")
    parser.add_argument("--release-record", default="/etc/ansible/facts.d/edge_llama_release.fact")
    parser.add_argument("--last-run-record", default="/etc/ansible/facts.d/edge_llama_last_run.fact")
    parser.add_argument("--expected-tokens-per-second", type=float, default=0.0)
    parser.add_argument("--verbose", action="store_true", help="say why there are no GPU series (stderr)")
    args = parser.parse_args(argv)
    text, problem = collect(args.nvidia_smi, args.release_record, args.last_run_record,
                            args.expected_tokens_per_second)
    write(args.output, text)
    if problem and args.verbose:
        print("edge-llama metrics: no GPU series (%s)" % problem, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
