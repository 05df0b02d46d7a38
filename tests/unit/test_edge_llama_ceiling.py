"""The bandwidth table and the ceiling, with the GPU names nvidia-smi printed on real devices
(tests/unit/fixtures/nvidia_smi/*/query.txt)."""

import re

import pytest

from conftest import FIXTURES
from ansible.module_utils import edge_llama_ceiling as ceiling

GB = 1000 ** 3


def captured_names():
    """{case: [names]} from the captured `nvidia-smi --query-gpu=index,name,...` CSVs that list GPUs."""
    found = {}
    for query in sorted((FIXTURES / "nvidia_smi").glob("*/query.txt")):
        names = []
        for line in query.read_text().splitlines():
            fields = [field.strip() for field in line.split(",")]
            if len(fields) == 8 and fields[0].isdigit():
                names.append(fields[1])
        if names:
            found[query.parent.name] = names
    return found


CAPTURED = captured_names()
IGX = {"kind": "igx_orin", "mode": "igpu", "model": "NVIDIA IGX Orin Developer Kit"}
AGX = {"kind": "jetson", "mode": "igpu", "model": "NVIDIA Jetson AGX Orin Developer Kit"}
NANO = {"kind": "jetson", "mode": "igpu", "model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"}


def test_the_fixtures_hold_the_names_the_table_is_for():
    assert CAPTURED["multi_gpu"] == ["NVIDIA RTX A6000"] * 9
    assert CAPTURED["orin_nvgpu"] == ["Orin (nvgpu)"]
    assert CAPTURED["h100"] == ["NVIDIA H100 80GB HBM3"]
    assert CAPTURED["l40s"] == ["NVIDIA L40S"]


@pytest.mark.parametrize("case, platform, gbps, source", [
    ("multi_gpu", None, 768, "https://www.nvidia.com/en-us/design-visualization/rtx-a6000/"),
    ("h100", None, 3350, "https://www.nvidia.com/en-us/data-center/h100/"),
    ("l40s", None, 864, "https://www.nvidia.com/en-us/data-center/l40s/"),
    ("orin_nvgpu", IGX, 204.8, "https://www.nvidia.com/en-us/autonomous-machines/embedded-systems/jetson-orin/"),
    ("orin_nvgpu", AGX, 204.8, "https://www.nvidia.com/en-us/autonomous-machines/embedded-systems/jetson-orin/"),
])
def test_captured_names_find_their_bandwidth(case, platform, gbps, source):
    figure = ceiling.bandwidth(CAPTURED[case][0], platform)
    assert figure["bytes_per_second"] == pytest.approx(gbps * GB)
    assert figure["source"] == source
    assert re.search(figure["matched"], CAPTURED[case][0], re.IGNORECASE)
    assert figure["checked"]


def test_an_orin_the_platform_does_not_name_has_no_bandwidth():
    """Every Orin module is 'Orin (nvgpu)' (the fixture's own capture is an 8 GB Orin, not an AGX)."""
    name = CAPTURED["orin_nvgpu"][0]
    assert ceiling.bandwidth(name) is None
    assert ceiling.bandwidth(name, NANO) is None
    result = ceiling.assess([name], 4 * GB, NANO)
    assert result["ceiling"] is None
    assert result["note"].startswith("no bandwidth known for GPU Orin (nvgpu)")
    assert "Orin Nano" in result["note"]


@pytest.mark.parametrize("name, gbps", [
    ("NVIDIA H200", 4800),
    ("NVIDIA H200 NVL", 4800),
    ("NVIDIA H100 PCIe", 2000),
    ("NVIDIA H100 80GB HBM3", 3350),
    ("NVIDIA A100-SXM4-80GB", 2039),
    ("NVIDIA A100 80GB PCIe", 1935),
    ("NVIDIA A100-PCIE-40GB", 1555),
    ("NVIDIA A100-SXM4-40GB", 1555),
    ("NVIDIA RTX 6000 Ada Generation", 960),
    ("NVIDIA RTX A6000", 768),
    ("NVIDIA L40S", 864),
    ("NVIDIA L4", 300),
])
def test_names_as_nvidia_smi_spells_them(name, gbps):
    assert ceiling.bandwidth(name)["bytes_per_second"] == pytest.approx(gbps * GB)
    assert ceiling.bandwidth(name.lower())["bytes_per_second"] == pytest.approx(gbps * GB)


@pytest.mark.parametrize("name", ["NVIDIA GH200 480GB", "NVIDIA H100 NVL", "NVIDIA L40", "NVIDIA GeForce RTX 4090",
                                  "Tesla P4", "NVIDIA RTX A4000", "", None])
def test_names_not_in_the_table(name):
    assert ceiling.bandwidth(name) is None


def test_every_entry_has_an_nvidia_source_and_says_how_it_was_checked():
    for entry in ceiling.TABLE:
        assert entry["source"].startswith("https://"), entry
        assert entry["checked"], entry
        re.compile(entry["pattern"])


def test_one_gpu_bandwidth_over_model_bytes():
    result = ceiling.assess(["NVIDIA RTX A6000"], 3.84 * GB)
    assert result["ceiling"] == pytest.approx(200.0)
    assert result["gpu"] == "NVIDIA RTX A6000"
    assert result["note"] == ""
    assert ceiling.ceiling(["NVIDIA RTX A6000"], 3.84 * GB) == pytest.approx(200.0)


def test_several_gpus_do_not_add_up():
    """Layer split: a token passes through the GPUs in turn; nine A6000s are no faster than one."""
    result = ceiling.assess(CAPTURED["multi_gpu"], 3.84 * GB)
    assert result["ceiling"] == pytest.approx(200.0)
    assert result["note"].startswith("9 GPUs, layer split")
    assert "not the sum" in result["note"]


def test_mixed_gpus_use_the_fastest_and_an_unknown_one_leaves_no_bound():
    result = ceiling.assess(["NVIDIA RTX A6000", "NVIDIA L40S"], 8.64 * GB)
    assert result["ceiling"] == pytest.approx(100.0)
    assert result["gpu"] == "NVIDIA L40S"
    unknown = ceiling.assess(["NVIDIA RTX A6000", "NVIDIA GeForce RTX 4090"], 8.64 * GB)
    assert unknown["ceiling"] is None
    assert unknown["note"] == "no bandwidth known for GPU NVIDIA GeForce RTX 4090"


def test_cpu_only_and_no_model_size():
    cpu = ceiling.assess([], 4 * GB)
    assert cpu["ceiling"] is None
    assert cpu["note"] == "no ceiling known: CPU only (no NVIDIA GPU reported)"
    no_size = ceiling.assess(["NVIDIA L4"], None)
    assert no_size["ceiling"] is None
    assert no_size["bytes_per_second"] == pytest.approx(300 * GB)
    assert "size is unknown" in no_size["note"]
