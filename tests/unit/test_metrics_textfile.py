"""The textfile collector (roles/metrics/files/edge_llama_textfile.py): GPU series from nvidia-smi output
captured on real devices (tests/unit/fixtures/nvidia_smi, README there: an H100 and an L40S under load,
an H100 with MIG on, a host whose driver does not answer), run through a stand-in nvidia-smi that prints
the capture, and the release series from a release record. Every file it writes is read back with
prometheus-client's parser, as a scrape would read it."""

import importlib.util
import json
import os
import stat

import pytest

from conftest import FIXTURES, REPO
from test_openai_metrics import samples

spec = importlib.util.spec_from_file_location("edge_llama_textfile",
                                              REPO / "roles" / "metrics" / "files" / "edge_llama_textfile.py")
textfile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(textfile)

SMI = FIXTURES / "nvidia_smi"
SHA = "a" * 64


def fake_nvidia_smi(tmp_path, output_file, rc=0):
    """A stand-in nvidia-smi printing a captured output, refusing any query but the collector's."""
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\n"
                      'case "$1" in --query-gpu=%s) ;; *) echo "unexpected query $1" >&2; exit 2;; esac\n'
                      'cat "%s"\nexit %d\n' % (",".join(textfile.QUERY), output_file, rc))
    script.chmod(0o755)
    return str(script)


def series(found, name):
    return {labels: value for (metric, labels), value in found.items() if metric == name}


H100 = frozenset({"gpu": "0", "name": "NVIDIA H100 80GB HBM3",
                  "uuid": "GPU-00000000-0000-0000-0000-000000000000"}.items())


def test_an_h100_under_load_gives_every_gpu_series_in_base_units(tmp_path):
    text, problem = textfile.collect(fake_nvidia_smi(tmp_path, SMI / "h100" / "metrics.txt"))
    found = samples(text)
    assert problem == ""
    assert found[("edge_llama_gpu_query_success", frozenset())] == 1
    assert found[("edge_llama_gpu_memory_used_bytes", H100)] == 19818 * 1048576
    assert found[("edge_llama_gpu_memory_total_bytes", H100)] == 81559 * 1048576
    assert found[("edge_llama_gpu_utilization_ratio", H100)] == pytest.approx(1.0)
    assert found[("edge_llama_gpu_temperature_celsius", H100)] == 59
    assert found[("edge_llama_gpu_power_watts", H100)] == pytest.approx(631.95)
    assert found[("edge_llama_gpu_sm_clock_hertz", H100)] == 1980e6


def test_a_field_the_gpu_does_not_report_is_left_out_not_written_as_zero(tmp_path):
    # MIG on: utilization.gpu is [N/A] (captured); the other series are there.
    text, _ = textfile.collect(fake_nvidia_smi(tmp_path, SMI / "h100" / "metrics_mig.txt"))
    found = samples(text)
    assert series(found, "edge_llama_gpu_utilization_ratio") == {}
    assert found[("edge_llama_gpu_memory_used_bytes", H100)] == 11125 * 1048576
    assert found[("edge_llama_gpu_power_watts", H100)] == pytest.approx(433.78)


def test_an_l40s_reads_as_its_own_gpu(tmp_path):
    text, _ = textfile.collect(fake_nvidia_smi(tmp_path, SMI / "l40s" / "metrics.txt"))
    used = series(samples(text), "edge_llama_gpu_memory_used_bytes")
    assert list(used.values()) == [1235 * 1048576]
    assert dict(next(iter(used)))["name"] == "NVIDIA L40S"


def test_a_driver_that_does_not_answer_gives_no_gpu_series_and_says_so(tmp_path):
    rc = int((SMI / "no_driver" / "query.rc").read_text())
    text, problem = textfile.collect(fake_nvidia_smi(tmp_path, SMI / "no_driver" / "query.txt", rc=rc))
    found = samples(text)
    assert found[("edge_llama_gpu_query_success", frozenset())] == 0
    gpu_series = [name for name, _ in found if name.startswith("edge_llama_gpu_")]
    assert gpu_series == ["edge_llama_gpu_query_success"]
    assert "exited 9" in problem and "NVIDIA driver" in problem


def test_a_host_without_nvidia_smi_still_writes_its_release(tmp_path):
    record = tmp_path / "release.fact"
    record.write_text(json.dumps({"releases": [{"commit": "e519621" + "0" * 33, "model_path": "/m/x.gguf",
                                                "model_sha256": SHA, "since": "2026-12-03T06:00:00Z"}]}))
    text, problem = textfile.collect(str(tmp_path / "absent-nvidia-smi"), str(record))
    found = samples(text)
    assert problem == "no nvidia-smi on this host"
    assert found[("edge_llama_gpu_query_success", frozenset())] == 0
    assert series(found, "edge_llama_release_info") == {
        frozenset({"commit": "e51962100000", "model": "x.gguf", "model_sha256": SHA, "state": "serving"}.items()): 1}


def test_release_info_names_the_serving_release_those_kept_and_those_rejected(tmp_path):
    record = {
        "releases": [
            {"commit": "1" * 40, "model_path": "/m/new.gguf", "model_sha256": SHA, "since": "2026-12-03T06:00:00Z"},
            {"commit": "2" * 40, "model_path": "/m/old.gguf", "model_sha256": "b" * 64,
             "since": "2026-12-01T00:00:00Z"},
        ],
        "rejected": [{"commit": "3" * 40, "model_path": '/m/we"ird\\name.gguf', "model_sha256": "c" * 64}],
    }
    out = textfile.Exposition()
    textfile.add_release(out, record)
    found = samples(out.text())
    states = {dict(labels)["state"]: dict(labels) for labels in series(found, "edge_llama_release_info")}
    assert set(states) == {"serving", "kept", "rejected"}
    assert states["serving"]["commit"] == "111111111111" and states["serving"]["model"] == "new.gguf"
    assert states["kept"]["model_sha256"] == "b" * 64
    assert states["rejected"]["model"] == 'we"ird\\name.gguf'  # escaped in the file, whole once parsed
    since = series(found, "edge_llama_release_since_timestamp_seconds")
    assert list(since.values()) == [1796277600]  # 2026-12-03T06:00:00Z (date -u -d @1796277600)
    assert dict(next(iter(since)))["commit"] == "111111111111"


def test_no_release_record_gives_no_release_series():
    out = textfile.Exposition()
    textfile.add_release(out, {})
    assert out.text() == "\n"


def test_the_expected_tokens_per_second_is_the_setting_else_the_last_gate_else_zero():
    last_run = {"reports": {"services_report": {"tokens_per_second": 41.5}}}
    assert textfile.expected_tokens_per_second(12.0, last_run) == 12.0
    assert textfile.expected_tokens_per_second(0.0, last_run) == 41.5
    no_figure = {"reports": {"services_report": {"tokens_per_second": None}}}
    assert textfile.expected_tokens_per_second(0.0, no_figure) == 0
    assert textfile.expected_tokens_per_second(0.0, {}) == 0


def test_a_gpu_name_with_a_comma_stays_whole():
    row = "0, NVIDIA Graphics Device, rev 2, GPU-1, 10, 20, 5, 40, 100.5, 1500"
    (gpu,) = textfile.parse(row)
    assert gpu["name"] == "NVIDIA Graphics Device, rev 2" and gpu["uuid"] == "GPU-1" and gpu["clocks.sm"] == "1500"
    with pytest.raises(ValueError):
        textfile.parse("0, short")


def test_main_writes_the_file_whole_readable_by_the_exporter_and_leaves_nothing_else(tmp_path):
    out_dir = tmp_path / "textfile"
    out_dir.mkdir()
    target = out_dir / "edge_llama.prom"
    record = tmp_path / "release.fact"
    record.write_text(json.dumps({"releases": [{"commit": "4" * 40, "model_path": "/m/y.gguf", "model_sha256": SHA}]}))
    smi = fake_nvidia_smi(tmp_path, SMI / "l40s" / "metrics.txt")
    rc = textfile.main(["--output", str(target), "--nvidia-smi", smi, "--release-record", str(record),
                        "--last-run-record", str(tmp_path / "none"), "--expected-tokens-per-second", "30"])
    assert rc == 0
    assert os.listdir(out_dir) == ["edge_llama.prom"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    found = samples(target.read_text())
    assert found[("edge_llama_expected_tokens_per_second", frozenset())] == 30
    assert found[("edge_llama_gpu_query_success", frozenset())] == 1
    assert len(series(found, "edge_llama_release_info")) == 1
