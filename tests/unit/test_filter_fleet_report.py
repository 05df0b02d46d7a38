"""filter_plugins/fleet_report.py: the rows of playbooks/fleet_report.yml and the table they print."""

import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parents[2] / "filter_plugins" / "fleet_report.py"
spec = importlib.util.spec_from_file_location("fleet_report_filters", PATH)
filters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(filters)
F = filters.FilterModule().filters()

RELEASE = {"commit": "c140b57c76b0aa11bb22cc33dd44ee55ff667788", "model_path": "/media/m2/models/llama-2-7b.Q4_0.gguf",
           "probes": {"llama": "http://127.0.0.1:8080"}}
A6000 = {"gpus": [{"name": "NVIDIA RTX A6000"}], "platform": {"kind": "x86_64"}}
MEASURED = {"changed": False, "prompt_tokens_per_second": 2900.0, "generation_tokens_per_second": 95.0,
            "ceiling": 200.0, "ratio": 0.475, "model_bytes": 3840000000, "note": "", "runs": [{"x": 1}],
            "bandwidth": {"bytes_per_second": 768e9, "source": "https://www.nvidia.com/en-us/design-visualization/rtx-a6000/",
                          "matched": r"\bRTX A6000\b", "gpu": "NVIDIA RTX A6000"}}


def test_a_measured_host():
    row = F["fleet_report_row"]("igx-01", gpu=A6000, release=RELEASE, benchmark=MEASURED)
    assert row["state"] == "measured"
    assert (row["gpu"], row["commit"], row["model"]) == ("NVIDIA RTX A6000", "c140b57c76b0", "llama-2-7b.Q4_0.gguf")
    assert (row["prompt_tps"], row["generation_tps"], row["ceiling"], row["ratio"]) == (2900.0, 95.0, 200.0, 0.475)
    assert row["source"].endswith("/rtx-a6000/")
    assert row["runs"] == [{"x": 1}]


def test_a_host_that_serves_nothing_and_one_whose_benchmark_failed():
    idle = F["fleet_report_row"]("cpu-01", gpu={"gpus": []}, release={}, benchmark={"skipped": True})
    assert idle["state"] == "not_serving" and idle["gpu"] == "none (CPU only)"
    assert idle["note"].startswith("serves nothing")
    failed = F["fleet_report_row"]("igx-02", gpu={"gpus": [{"name": "NVIDIA RTX A6000"}] * 2}, release=RELEASE,
                                   benchmark={"failed": True, "msg": "http://127.0.0.1:8080/completion did not answer"})
    assert failed["state"] == "failed" and failed["gpu"] == "2x NVIDIA RTX A6000"
    assert failed["note"] == "benchmark failed: http://127.0.0.1:8080/completion did not answer"


def test_rows_follow_the_inventory_and_a_silent_host_gets_one():
    rows = F["fleet_report_rows"]([{}, {"host": "b", "note": "x"}], ["a", "b"])
    assert [row["host"] for row in rows] == ["a", "b"]
    assert rows[0]["state"] == "no_answer"


def test_the_table_as_lines_and_markdown():
    rows = [F["fleet_report_row"]("igx-01", gpu=A6000, release=RELEASE, benchmark=MEASURED),
            F["fleet_report_row"]("cpu-01", gpu={}, release={})]
    lines = F["fleet_report_lines"](rows)
    assert lines[0].split() == ["host", "GPU", "commit", "prompt", "t/s", "gen", "t/s", "ceiling", "t/s", "ratio",
                                "note"]
    assert lines[2].split()[:9] == ["igx-01", "NVIDIA", "RTX", "A6000", "c140b57c76b0", "2900.0", "95.0", "200.0",
                                    "0.47"]
    markdown = F["fleet_report_markdown"](rows, "2025-01-31")
    assert markdown.startswith("# Fleet performance report 2025-01-31\n")
    assert "| igx-01 | NVIDIA RTX A6000 | c140b57c76b0 | 2900.0 | 95.0 | 200.0 | 0.47 |  |" in markdown
    assert "- NVIDIA RTX A6000: https://www.nvidia.com/en-us/design-visualization/rtx-a6000/" in markdown
