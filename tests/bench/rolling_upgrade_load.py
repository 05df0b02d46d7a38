#!/usr/bin/env python3
"""Chat load while site.yml rolls an upgrade through the fleet, through the gateway and without it (not a
test: it prints figures).

Two loads of the same shape run at once, each --streams clients that send streaming chat completions one
after another (the official openai SDK, max_retries 0, "Count from one to twenty.", --max-tokens,
temperature 0):
  gateway  https://GATEWAY/v1 (playbooks/gateway.yml), trusting only --ca (the site CA the role fetched);
  direct   one appliance's own endpoint (--direct URL, e.g. http://10.88.7.12:8081/v1), for contrast: no
           gateway drains it, so its restart is what its clients see.
First --baseline seconds with nothing changing (each load's median time to a whole answer), then the
command after -- (the rolling upgrade, e.g. ansible-playbook -i INV site.yml -e @TO.json) with the loads
going on, then --settle seconds. Per load it prints:
  sent       requests started during the upgrade (and the settle time);
  failed     requests that got no stream: a connection error or an HTTP status other than 200;
  cut short  streams that began and ended without a finish_reason (the connection closed mid-answer);
  worst added latency  the slowest whole answer during the upgrade minus the baseline median, in seconds
             (a request held while its host drained, or queued behind the others on fewer hosts).
Only loopback or test-host addresses belong here: it is load, aimed at the fleet you are upgrading.

    . tests/setup/env.sh
    python tests/bench/rolling_upgrade_load.py --gateway https://10.88.7.11 --ca tests/artifacts/gateway-ca.crt \\
        --api-key KEY --direct http://10.88.7.12:8081/v1 [--streams 3] [--max-tokens 24] [--baseline 20] \\
        [--settle 10] [--json] [--record] -- ansible-playbook -i INV site.yml -e @TO.json

Exit status: 0 with the figures printed (whatever they are), 1 when the command failed (figures printed
first), 2 when a load does not answer before the upgrade.
"""

import argparse
import json
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

PROMPT = "Count from one to twenty."


class Load:
    """`streams` threads, each sending one streaming chat completion after another until stop()."""

    def __init__(self, label, base_url, api_key, streams=3, max_tokens=24, ca=None, model="llama_2", timeout=300):
        self.label, self.base_url, self.api_key = label, base_url, api_key
        self.streams, self.max_tokens, self.ca, self.model, self.timeout = streams, max_tokens, ca, model, timeout
        self.records = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []

    def _client(self):
        import httpx
        import openai

        verify = ssl.create_default_context(cafile=str(self.ca)) if self.ca else True
        http = httpx.Client(verify=verify, timeout=self.timeout)
        return openai.OpenAI(base_url=self.base_url, api_key=self.api_key or "none", http_client=http, max_retries=0)

    def one(self, sdk):
        """One request: {t0, t1, ok, failed (why, or None), cut, first (s to the first piece), total (s)}."""
        rec = {"t0": time.time(), "ok": False, "failed": None, "cut": False, "first": None, "total": None}
        started, finished, pieces = time.monotonic(), None, 0
        try:
            stream = sdk.chat.completions.create(model=self.model, stream=True, max_tokens=self.max_tokens,
                                                 temperature=0, messages=[{"role": "user", "content": PROMPT}])
            for chunk in stream:
                pieces += 1
                if rec["first"] is None:
                    rec["first"] = round(time.monotonic() - started, 3)
                if chunk.choices and chunk.choices[0].finish_reason:
                    finished = chunk.choices[0].finish_reason
        except Exception as exc:  # noqa: BLE001 - every client-side failure is a figure here
            if pieces:
                rec["cut"] = True
                rec["error"] = "%s: %s" % (type(exc).__name__, str(exc)[:200])
            else:
                rec["failed"] = "%s: %s" % (type(exc).__name__, str(exc)[:200])
        else:
            if finished:
                rec["ok"] = True
            elif pieces:
                rec["cut"] = True
                rec["error"] = "the stream ended without a finish_reason after %d pieces" % pieces
            else:
                rec["failed"] = "an empty stream"
        rec["total"] = round(time.monotonic() - started, 3)
        rec["t1"] = time.time()
        return rec

    def _run(self):
        sdk = self._client()
        while not self._stop.is_set():
            rec = self.one(sdk)
            with self._lock:
                self.records.append(rec)
            if not rec["ok"]:
                time.sleep(0.2)  # an error answers at once: do not spin on it

    def start(self):
        for _ in range(self.streams):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 10)
        return list(self.records)


def figures(records, since, baseline):
    """The figures of the requests started at or after `since` (time.time()), against a baseline median
    time to a whole answer (s): sent, failed, cut, worst added latency, median, and the first reasons."""
    during = [r for r in records if r["t0"] >= since]
    whole = [r["total"] for r in during if r["ok"]]
    worst = max(whole) if whole else None
    return {
        "sent": len(during),
        "ok": len(whole),
        "failed": sum(1 for r in during if r["failed"]),
        "cut": sum(1 for r in during if r["cut"]),
        "baseline_median_s": round(baseline, 3) if baseline is not None else None,
        "median_s": round(statistics.median(whole), 3) if whole else None,
        "worst_s": worst,
        "worst_added_s": round(worst - baseline, 3) if worst is not None and baseline is not None else None,
        "reasons": sorted({r.get("failed") or r.get("error") or "cut short" for r in during if not r["ok"]})[:5],
    }


def baseline_median(records, until):
    whole = [r["total"] for r in records if r["ok"] and r["t0"] < until]
    return statistics.median(whole) if whole else None


def render(label, fig):
    added = "-" if fig["worst_added_s"] is None else "%+.2f s" % fig["worst_added_s"]
    line = ("%-8s sent %4d  failed %3d  cut short %3d  worst added latency %s  (median %s s, baseline %s s)"
            % (label, fig["sent"], fig["failed"], fig["cut"], added, fig["median_s"], fig["baseline_median_s"]))
    for reason in fig["reasons"]:
        line += "\n         %s" % reason
    return line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", required=True, help="the gateway's base URL, https://NAME (no /v1)")
    parser.add_argument("--ca", help="the site CA to trust (tests/artifacts/gateway-ca.crt in the fleet scenario)")
    parser.add_argument("--api-key", default="", help="the key the appliances take")
    parser.add_argument("--direct", help="one appliance's own endpoint, http://HOST:8081/v1, for contrast")
    parser.add_argument("--direct-api-key", help="its key (default: --api-key)")
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--baseline", type=float, default=20.0, help="seconds of load before the command")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of load after the command")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command that rolls the upgrade")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the upgrade's command after --")

    loads = [Load("gateway", args.gateway.rstrip("/") + "/v1", args.api_key, args.streams, args.max_tokens, args.ca)]
    if args.direct:
        loads.append(Load("direct", args.direct, args.direct_api_key or args.api_key, args.streams, args.max_tokens))
    for load in loads:
        load.start()
    time.sleep(args.baseline)
    since = time.time()
    bases = {load.label: baseline_median(load.records, since) for load in loads}
    for label, base in bases.items():
        if base is None:
            for load in loads:
                load.stop()
            print("rolling_upgrade_load: the %s load had no whole answer in %.0f s before the upgrade"
                  % (label, args.baseline))
            return 2
    print("load running (%d streams each: %s); baseline medians %s; running: %s" % (
        args.streams, ", ".join(load.label for load in loads),
        ", ".join("%s %.2f s" % kv for kv in bases.items()), " ".join(command)), flush=True)
    started = time.monotonic()
    proc = subprocess.run(command, check=False)
    took = time.monotonic() - started
    time.sleep(args.settle)
    results = {load.label: figures(load.stop(), since, bases[load.label]) for load in loads}
    print("\nupgrade: rc %d in %.0f s (+%.0f s after it)" % (proc.returncode, took, args.settle))
    for label, fig in results.items():
        print(render(label, fig))
    if args.json:
        print(json.dumps({"rc": proc.returncode, "seconds": round(took, 1), "loads": results}, indent=2))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(benchlib.run_recorded("rolling_upgrade_load",
                                   "Chat load during a rolling upgrade, through the gateway and not", main))
