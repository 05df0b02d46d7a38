#!/usr/bin/env python3
"""Wall time of a re-run with nothing to do, for 1 and for N hosts (not a test: it prints figures).

For each count c of --counts, `ansible-playbook -i INV site.yml --limit <the first c of --hosts>` runs once
as a warm-up, which must already change nothing (changed=0 on every host in its PLAY RECAP, else the
script stops with "not idempotent: <host> changed=N"), then --repeat times, each run again required to
end with changed=0, failed=0 and unreachable=0 on every host of the limit. It prints the median (min-max)
seconds per count, the seconds per host (median / c) and the ratio of each count's median to the first
count's (N hosts / 1 host: 1.0 would be hosts handled fully in parallel, c would be one after the other).
Every run's output is kept in a temporary directory whose path is printed.

    . tests/setup/env.sh
    python tests/bench/rerun_walltime.py --inventory INV --hosts h1,h2,h3,h4 --counts 1,4 [--repeat 3] \\
        [--extra-vars @FILE] [--playbook site.yml] [--json]

Exit status: 0 with the figures printed, 1 when a run changed something, failed or could not reach a host.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import Failure, ansible_playbook, playbook_path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RECAP_LINE = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$")


def parse_recap(output):
    """{host: {"ok": n, "changed": n, ...}} from the last PLAY RECAP of an ansible-playbook output."""
    at = output.rfind("PLAY RECAP")
    if at < 0:
        return {}
    recap = {}
    for line in output[at:].splitlines()[1:]:
        found = RECAP_LINE.match(line.strip())
        if found:
            recap[found.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found.group(2))}
        elif recap and line.strip():
            break  # the recap ends at the first line that is not a host's
    return recap


def problems(recap, hosts):
    """What keeps a run from counting as a re-run with nothing to do: missing hosts, failures, changes."""
    found = []
    for host in hosts:
        counts = recap.get(host)
        if counts is None:
            found.append("no PLAY RECAP line for %s" % host)
            continue
        for key in ("unreachable", "failed"):
            if counts.get(key, 0):
                found.append("%s %s=%d" % (host, key, counts[key]))
        if counts.get("changed", 0):
            found.append("not idempotent: %s changed=%d" % (host, counts["changed"]))
    return found


def run(opts, hosts, log):
    """One ansible-playbook run limited to hosts: (seconds, rc, output), the output also written to log."""
    argv = [ansible_playbook()]
    for inventory in opts.inventory:
        argv += ["-i", inventory]
    argv += [opts.playbook_path, "--limit", ",".join(hosts)]
    for extra in opts.extra_vars:
        argv += ["-e", extra]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seconds = time.monotonic() - started
    Path(log).write_text("$ %s\n%s" % (" ".join(argv), proc.stdout))
    return seconds, proc.returncode, proc.stdout


def bench(opts, tmpdir):
    results = []
    for count in opts.counts:
        hosts = opts.hosts[:count]
        label = "%d host%s" % (count, "" if count == 1 else "s")
        times = []
        for i in range(opts.repeat + 1):
            name = "warm-up" if i == 0 else "run %d/%d" % (i, opts.repeat)
            log = os.path.join(tmpdir, "%d-hosts-%s.log" % (count, "warmup" if i == 0 else "run%d" % i))
            seconds, rc, output = run(opts, hosts, log)
            found = problems(parse_recap(output), hosts)
            if rc != 0 and not found:
                found.append("ansible-playbook exited with %d" % rc)
            if found:
                raise Failure("%s, %s: %s (log %s)" % (label, name, "; ".join(found), log))
            print("%s, %s: %.1f s, changed=0 on %s" % (label, name, seconds, ",".join(hosts)), flush=True)
            if i:
                times.append(seconds)
        results.append({"hosts": hosts, "count": count, "seconds": times, "median": statistics.median(times),
                        "min": min(times), "max": max(times)})
    base = results[0]["median"]
    for result in results:
        result["per_host"] = result["median"] / result["count"]
        result["ratio"] = result["median"] / base if base else None
    return results


def print_table(results):
    base = results[0]["count"]
    print()
    print("%-7s %-5s %-24s %-10s %s" % ("hosts", "runs", "seconds median (min-max)", "s/host",
                                        "ratio to %d host%s" % (base, "" if base == 1 else "s")))
    for r in results:
        print("%-7d %-5d %-24s %-10.1f %s" % (
            r["count"], len(r["seconds"]), "%.1f (%.1f-%.1f)" % (r["median"], r["min"], r["max"]), r["per_host"],
            "%.2f" % r["ratio"] if r["ratio"] is not None else "-"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inventory", "-i", required=True, action="append",
                        help="the inventory (e.g. molecule's ansible_inventory.yml); may be given more than once")
    parser.add_argument("--hosts", required=True, help="comma-separated hosts; a count c takes the first c")
    parser.add_argument("--counts", default="1", help="comma-separated host counts (default 1; e.g. 1,4)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per count after the warm-up (default 3)")
    parser.add_argument("--extra-vars", "-e", action="append", default=[], metavar="VARS",
                        help="passed to ansible-playbook -e (e.g. @FILE); may be given more than once")
    parser.add_argument("--playbook", default="site.yml", help="the playbook (default site.yml of the repository)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object (last line)")
    opts = parser.parse_args(argv)
    opts.hosts = [h.strip() for h in opts.hosts.split(",") if h.strip()]
    try:
        opts.counts = [int(c) for c in opts.counts.split(",") if c.strip()]
    except ValueError:
        parser.error("--counts takes comma-separated numbers")
    if not opts.counts or any(c < 1 or c > len(opts.hosts) for c in opts.counts):
        parser.error("each count must be between 1 and the number of --hosts (%d)" % len(opts.hosts))
    if opts.repeat < 1:
        parser.error("--repeat must be at least 1")
    opts.inventory = [os.path.abspath(i) for i in opts.inventory]
    tmpdir = tempfile.mkdtemp(prefix="rerun-walltime-")
    try:
        opts.playbook_path = playbook_path(opts.playbook)
        print("re-run wall time: %s -i %s, counts %s of %s, %d runs each after a warm-up; logs in %s" % (
            opts.playbook_path, " -i ".join(opts.inventory), ",".join(map(str, opts.counts)), ",".join(opts.hosts),
            opts.repeat, tmpdir), flush=True)
        results = bench(opts, tmpdir)
    except Failure as exc:
        print("rerun_walltime: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print_table(results)
    if opts.json:
        print(json.dumps({"playbook": opts.playbook_path, "inventory": opts.inventory, "logs": tmpdir,
                          "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(benchlib.run_recorded('rerun_walltime', 'Re-run wall time', main))
