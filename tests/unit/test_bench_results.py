"""tests/bench: the results file the benchmarks write (docs/results.md) and the suite's time table."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import benchlib  # noqa: E402
import suite_times  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1"
skipped="0" tests="4" time="100"><testcase classname="tests.unit.test_a" name="test_x" time="2.5"/>
<testcase classname="tests.unit.test_b" name="test_y" time="1.5"/>
<testcase classname="tests.test_lint" name="test_ruff" time="7"/>
<testcase classname="tests.test_scenarios" name="test_molecule_scenario[upgrade]" time="1800"/>
</testsuite></testsuites>"""


def test_a_recorded_section_replaces_only_its_own(tmp_path):
    results = tmp_path / "results.md"
    benchlib.record("one", "First", "figure 1", results)
    benchlib.record("two", "Second", "figure 2", results)
    benchlib.record("one", "First", "figure 1 again", results)
    text = results.read_text()
    assert text.startswith("# Measured figures")
    assert "figure 1 again" in text and "figure 1\n" not in text and "figure 2" in text
    assert text.count("<!-- begin one -->") == 1 and text.index("## First") < text.index("## Second")
    assert "cores" in text and "Measured " in text  # the machine and the date are stamped


def test_run_recorded_writes_what_a_successful_run_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(benchlib, "RESULTS", tmp_path / "results.md")
    assert benchlib.run_recorded("demo", "Demo", lambda argv: print("42 tok/s", argv) or 0, ["--x", "--record"]) == 0
    assert "42 tok/s ['--x']" in (tmp_path / "results.md").read_text()
    assert benchlib.run_recorded("fails", "Fails", lambda argv: print("broken") or 1, ["--record"]) == 1
    assert "broken" not in (tmp_path / "results.md").read_text()  # a failed run records nothing


def test_suite_times_table(tmp_path, capsys):
    (tmp_path / "junit.xml").write_text(JUNIT)
    (tmp_path / "suite-times.json").write_text(json.dumps({"setup_s": 300, "suite_s": 2200, "tests": 4, "failed": 1}))
    (tmp_path / "molecule-upgrade.log").write_text(
        "==== slowest durations ====\n612.31s call     ../shared/test_upgrade.py::test_1_upgrade[podman://x]\n"
        "3.00s setup    ../shared/test_upgrade.py::test_0_tutorial[podman://x]\n")
    assert suite_times.main(["--artifacts", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "scenario arm64" not in out  # no time of its own known
    (tmp_path / "scenario-times.json").write_text(json.dumps({"arm64": {"seconds": 1500, "rc": 0, "started": 1}}))
    assert suite_times.main(["--artifacts", str(tmp_path)]) == 0
    assert "| scenario arm64 | 1500 |" in capsys.readouterr().out
    assert "| unit tests | 4 |" in out and "| lint tests | 7 |" in out and "| scenario upgrade | 1800 |" in out
    assert "| **whole suite** (4 tests, 1 failed) | **2200** |" in out
    assert "| test_1_upgrade[podman://x] (call) | 612 |" in out
