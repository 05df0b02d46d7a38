"""The molecule scenarios, each run end to end (create, converge, idempotence, verify, destroy).

Slow: each builds llama.cpp on real test hosts (podman containers with systemd). Their logs go to
tests/artifacts/molecule-<scenario>.log; a failure shows the end of it.
"""

import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"

# Cheapest first: a failure in check mode shows before the long ones.
SCENARIOS = ["check", "upgrade", "cuda", "arm64", "default"]
# The upgrade scenario is the longest and waits much of its time (health gates, restarts, ports): the
# cuda scenario (first minutes downloading and unpacking the CUDA toolkit, 1.6 GB: network and disk)
# and the arm64 scenario (one emulated host, mostly one CPU) start in the background with it and are
# waited for in their own turn.
ALONGSIDE = {"upgrade": ["cuda", "arm64"]}
TIMEOUT = 40 * 60
_background = {}


def _start(scenario):
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / ("molecule-%s.log" % scenario)
    out = open(log, "w")
    proc = subprocess.Popen(
        ["molecule", "test", "-s", scenario],
        cwd=REPO / "tests", stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ),
    )
    return proc, out, log, time.time()


def _finish(scenario, proc, out, log, started):
    try:
        rc = proc.wait(timeout=max(1, TIMEOUT - (time.time() - started)))
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    out.close()
    took = time.time() - started
    print("molecule scenario %s: rc %d in %.0f s (log: %s)" % (scenario, rc, took, log))
    if rc != 0:
        tail = log.read_text(errors="replace")[-12000:]
        pytest.fail("molecule test -s %s failed (rc %d) after %.0f s; end of %s:\n%s"
                    % (scenario, rc, took, log, tail), pytrace=False)


@pytest.mark.scenario
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    if scenario in _background:
        _finish(scenario, *_background.pop(scenario))
        return
    for other in ALONGSIDE.get(scenario, []):
        _background[other] = _start(other)
    _finish(scenario, *_start(scenario))
