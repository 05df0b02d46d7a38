"""The molecule scenarios, each run end to end (create, converge, idempotence, verify, destroy).

Slow: each builds llama.cpp on real test hosts (podman containers with systemd). Their logs go to
tests/artifacts/molecule-<scenario>.log; a failure shows the end of it.
"""

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"

# Cheapest first: a failure in check mode shows before the long ones.
SCENARIOS = ["check", "upgrade", "cuda", "arm64", "fleet"]
# The upgrade scenario is the longest and waits much of its time (health gates, restarts, ports): the
# cuda scenario (first minutes downloading and unpacking the CUDA toolkit, 1.6 GB: network and disk)
# and the arm64 scenario (one emulated host, mostly one CPU) start in the background with it and are
# waited for in their own turn.
ALONGSIDE = {"upgrade": ["cuda", "arm64"]}
# The fleet scenario builds the same current llama.cpp as the upgrade scenario's step 1 (once, for its
# four hosts): it starts in the background once that build exists (its log in tests/artifacts),
# compiling from a warm ccache, and fills the time the upgrade scenario spends waiting on health gates
# and restarts.
AFTER = {"fleet": ("upgrade", "upgrade-1-current.log")}
# Each scenario's limit (a hung one is stopped with its log); the CI job has 90 minutes for the whole suite.
TIMEOUT = 65 * 60
_background = {}
_waiting = {}
_running = {}


def _start(scenario):
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / ("molecule-%s.log" % scenario)
    out = open(log, "w")
    proc = subprocess.Popen(
        ["molecule", "test", "-s", scenario],
        cwd=REPO / "tests", stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ),
    )
    return proc, out, log, time.time()


def _start_after(scenario, after, marker, deadline):
    """Start scenario once tests/artifacts/<marker> appears, or once scenario `after` has ended."""
    def wait_then_start():
        while not (ARTIFACTS / marker).exists() and time.time() < deadline:
            proc = _running.get(after)
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(5)
        _background[scenario] = _start(scenario)
    thread = threading.Thread(target=wait_then_start, daemon=True)
    thread.start()
    _waiting[scenario] = thread


def _finish(scenario, proc, out, log, started):
    # A scenario that ran in the background may have ended long before its turn: its own time ends with
    # the last line it wrote, not when it is collected.
    ended_before = proc.poll() is not None
    try:
        rc = proc.wait(timeout=max(1, TIMEOUT - (time.time() - started)))
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    out.close()
    took = (log.stat().st_mtime if ended_before else time.time()) - started
    print("molecule scenario %s: rc %d in %.0f s (log: %s)" % (scenario, rc, took, log))
    # Each scenario's own wall time, also for those that ran in the background (tests/bench/suite_times.py).
    times = ARTIFACTS / "scenario-times.json"
    recorded = json.loads(times.read_text()) if times.exists() else {}
    recorded[scenario] = {"seconds": round(took), "rc": rc, "started": round(started)}
    times.write_text(json.dumps(recorded, indent=1, sort_keys=True))
    if rc != 0:
        tail = log.read_text(errors="replace")[-12000:]
        pytest.fail("molecule test -s %s failed (rc %d) after %.0f s; end of %s:\n%s"
                    % (scenario, rc, took, log, tail), pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def _no_scenario_outlives_the_run():
    """A scenario started in the background whose own test was not selected (-k) is stopped at the end."""
    yield
    for thread in list(_waiting.values()):
        thread.join(timeout=1)
    for proc, out, _log, _started in _background.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()


@pytest.mark.scenario
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    if scenario in _waiting:
        _waiting.pop(scenario).join()
    if scenario in _background:
        _finish(scenario, *_background.pop(scenario))
        return
    for other in ALONGSIDE.get(scenario, []):
        _background[other] = _start(other)
    for other, (after, marker) in AFTER.items():
        if after == scenario:
            (ARTIFACTS / marker).unlink(missing_ok=True)
            _start_after(other, after, marker, time.time() + TIMEOUT)
    started = _start(scenario)
    _running[scenario] = started[0]
    _finish(scenario, *started)
