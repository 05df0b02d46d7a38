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

# Cheapest first: a failure in check mode or the tutorial's path shows before the long one.
SCENARIOS = ["check", "seed", "default"]


@pytest.mark.scenario
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / ("molecule-%s.log" % scenario)
    started = time.time()
    with open(log, "w") as out:
        proc = subprocess.run(
            ["molecule", "test", "-s", scenario],
            cwd=REPO / "tests", stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ),
            timeout=40 * 60,
        )
    took = time.time() - started
    print("molecule scenario %s: rc %d in %.0f s (log: %s)" % (scenario, proc.returncode, took, log))
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-12000:]
        pytest.fail("molecule test -s %s failed (rc %d) after %.0f s; end of %s:\n%s"
                    % (scenario, proc.returncode, took, log, tail), pytrace=False)
