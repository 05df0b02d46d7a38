#!/usr/bin/env python3
"""Where the test suite's time goes, from the files the last `make test` left in tests/artifacts/.

tests/run.sh writes tests/artifacts/suite-times.json (set-up and whole-suite seconds) and pytest's
JUnit XML (tests/artifacts/junit.xml, each test's time); each molecule scenario's verifier writes the
times of its own tests into tests/artifacts/molecule-<scenario>.log (--durations). tests/setup/demo.sh
writes tests/artifacts/demo-times.json. This prints one table and, with --record, writes it into
docs/results.md.

    python tests/bench/suite_times.py [--record]
"""

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

ARTIFACTS = benchlib.REPO / "tests" / "artifacts"


def phases(junit):
    """Seconds per phase of the suite, from pytest's JUnit XML."""
    out = {}
    for case in ET.parse(junit).iter("testcase"):
        name, seconds = case.get("classname", ""), float(case.get("time", 0))
        if "test_scenarios" in name:
            key = "scenario %s" % re.sub(r".*\[(.*)\]", r"\1", case.get("name"))
        elif name.startswith("tests.unit"):
            key = "unit tests"
        else:
            key = name.rsplit(".", 1)[-1].replace("test_", "") + " tests"
        out[key] = out.get(key, 0.0) + seconds
    return out


def slowest_steps(artifacts, scenario, count):
    """The slowest tests of a scenario's verifier, from the --durations lines of its molecule log."""
    log = artifacts / ("molecule-%s.log" % scenario)
    if not log.exists():
        return []
    found = re.findall(r"^\s*([0-9.]+)s (call|setup|teardown)\s+\S+::(\S+)", log.read_text(errors="replace"), re.M)
    return sorted(((float(s), "%s (%s)" % (test, when)) for s, when, test in found), reverse=True)[:count]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", action="store_true", help="write the table into docs/results.md")
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS, help="where make test left its files")
    args = parser.parse_args(argv)
    if not (args.artifacts / "suite-times.json").exists():
        print("no %s: run make test first" % (args.artifacts / "suite-times.json"), file=sys.stderr)
        return 1
    times = json.loads((args.artifacts / "suite-times.json").read_text())
    rows = [("set-up (bootstrap, sources, mirrors)", times["setup_s"])]
    found = phases(args.artifacts / "junit.xml")
    # Scenarios that ran in the background show ~0 s in the JUnit XML (their test only waited for them):
    # their own wall time is in scenario-times.json (tests/test_scenarios.py), when that run wrote one.
    own = args.artifacts / "scenario-times.json"
    for name, entry in (json.loads(own.read_text()) if own.exists() else {}).items():
        found["scenario %s" % name] = entry["seconds"]
    rows += sorted(((k, v) for k, v in found.items() if v >= 0.5 or not k.startswith("scenario")), key=lambda r: -r[1])
    lines = ["| phase of `make test` | seconds |", "| --- | ---: |"]
    lines += ["| %s | %.0f |" % (name, seconds) for name, seconds in rows]
    lines.append("| **whole suite** (%s tests, %s failed) | **%d** |"
                 % (times.get("tests", "?"), times.get("failed", "?"), times["suite_s"]))
    lines += ["", "Scenarios overlap: cuda and arm64 start with upgrade, default once upgrade's step 1 has built;"
              " a scenario without a row of its own ran inside the upgrade row.",
              "", "| slowest steps of the upgrade scenario | seconds |", "| --- | ---: |"]
    lines += ["| %s | %.0f |" % (name, seconds) for seconds, name in slowest_steps(args.artifacts, "upgrade", 8)]
    table = "\n".join(lines)
    print(table)
    if args.record:
        at = times.get("commit")
        print("recorded in %s" % benchlib.record("suite_times", "The test suite (`make test`)", table, at=at))
    return 0


if __name__ == "__main__":
    sys.exit(main())
