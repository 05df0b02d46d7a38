"""nvidia_gpu_info fed with nvidia-smi output captured from real devices.

The captures are in tests/unit/fixtures/nvidia_smi/<case>/ and each SOURCE.md names where it was
captured and which lines were composed from another output of the same capture. The only thing
faked here is the GPU itself: the module's commands are answered from those files.
"""

from pathlib import Path

import pytest

import nvidia_gpu_info as module
from conftest import FIXTURES

SMI = "/usr/bin/nvidia-smi"
CASES = FIXTURES / "nvidia_smi"
# `nvcc --version` of Debian bookworm's nvidia-cuda-toolkit 11.8.89 (printed in the cuda scenario).
NVCC_11_8 = (
    "nvcc: NVIDIA (R) Cuda compiler driver\n"
    "Copyright (c) 2005-2022 NVIDIA Corporation\n"
    "Built on Wed_Sep_21_10:33:58_PDT_2022\n"
    "Cuda compilation tools, release 11.8, V11.8.89\n"
    "Build cuda_11.8.r11.8/compiler.31833905_0\n"
)


def case(name, what):
    text = (CASES / name / (what + ".txt")).read_text()
    rc = int((CASES / name / (what + ".rc")).read_text().strip())
    return rc, text


class Host:
    """Answers the module's commands the way a host with the given captures would."""

    def __init__(self, query, smi=None, fallback=None, nvcc=None, smi_path=SMI):
        self.query, self.smi, self.fallback, self.nvcc, self.smi_path = query, smi, fallback, nvcc, smi_path
        self.commands = []

    def run_command(self, argv, **kwargs):
        self.commands.append(list(argv))
        if argv[0].endswith("nvcc"):
            return (0, self.nvcc, "") if self.nvcc else (127, "", "not found")
        query = [arg for arg in argv if arg.startswith("--query-gpu=")]
        if query:
            if "compute_cap" not in query[0] and self.fallback is not None:
                rc, out = self.fallback
            else:
                rc, out = self.query
            return rc, out, ""
        rc, out = self.smi if self.smi else self.query
        return rc, out, ""

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return self.smi_path if name == "nvidia-smi" else None


@pytest.fixture
def host(monkeypatch):
    def install(*args, nvcc_path=None, platform=None, **kwargs):
        fake = Host(*args, **kwargs)
        monkeypatch.setattr(module.AnsibleModule, "run_command", lambda self, argv, **kw: fake.run_command(argv, **kw))
        monkeypatch.setattr(
            module.AnsibleModule, "get_bin_path", lambda self, name, **kw: fake.get_bin_path(name, **kw)
        )
        monkeypatch.setattr(module, "find_nvcc", lambda mod, home: nvcc_path)
        if platform is not None:
            real = module.detect_platform
            monkeypatch.setattr(module, "detect_platform", lambda gpus: real(gpus, **platform))
        return fake

    return install


def test_nine_rtx_a6000(host, run_module):
    host(case("multi_gpu", "query"), case("multi_gpu", "smi"))
    result = run_module(module, {})
    assert result["changed"] is False
    assert result["gpu_count"] == 9
    assert [gpu["index"] for gpu in result["gpus"]] == list(range(9))
    first = result["gpus"][0]
    assert first["name"] == "NVIDIA RTX A6000"
    assert first["uuid"] == "GPU-880b8a57-8586-fe40-bec5-fb703f80ffe6"
    assert first["compute_capability"] == "8.6" and first["cuda_architecture"] == "86"
    assert first["compute_capability_source"] == "nvidia-smi"
    assert (first["memory_total_mib"], first["memory_used_mib"], first["memory_free_mib"]) == (46068, 1, 45619)
    assert first["integrated"] is False
    assert result["driver"] == {
        "state": "ok",
        "version": "550.127.05",
        "cuda_version": "12.4",
        "nvidia_smi": SMI,
        "rc": 0,
        "message": None,
        "advice": None,
    }
    assert len({gpu["uuid"] for gpu in result["gpus"]}) == 9


def test_orin_igpu_has_no_memory_figures(host, run_module, tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.4, GCID: 41062509, BOARD: generic\n"
    )
    host(case("orin_nvgpu", "query"), case("orin_nvgpu", "smi"), platform={"root": str(tmp_path), "machine": "aarch64"})
    result = run_module(module, {})
    gpu = result["gpus"][0]
    assert gpu["name"] == "Orin (nvgpu)" and gpu["integrated"] is True
    assert gpu["memory_total_mib"] is None and gpu["memory_free_mib"] is None
    assert gpu["compute_capability"] == "8.7"
    assert result["driver"]["cuda_version"] == "12.6" and result["driver"]["version"] == "540.4.0"
    assert result["platform"]["kind"] == "jetson" and result["platform"]["mode"] == "igpu"


IGX = Path(__file__).resolve().parents[1] / "molecule" / "arm64" / "igx"  # strings from real machines (SOURCE.md)


def igx_files(board, tree="proc/device-tree", tegra=True):
    files = {"%s/%s" % (tree, name): (IGX / board / name).read_bytes() for name in ("model", "compatible")}
    if tegra:
        files["etc/nv_tegra_release"] = (IGX / "nv_tegra_release").read_bytes()
    return files


@pytest.mark.parametrize(
    "files, machine, kind, mode, repo_arch",
    [
        (igx_files("igx-dgpu", tegra=False), "aarch64", "igx_orin", "dgpu", "sbsa"),
        # An IGX as IGX OS (L4T r36) shows it: the release file too, which alone would say Jetson.
        (igx_files("igx-dgpu"), "aarch64", "igx_orin", "dgpu", "sbsa"),
        # Without /proc/device-tree (the arm64 test host), the same tree under /sys/firmware.
        (igx_files("igx-dgpu", tree="sys/firmware/devicetree/base"), "aarch64", "igx_orin", "dgpu", "sbsa"),
        ({}, "aarch64", "arm64_sbsa", None, "sbsa"),
        ({}, "x86_64", "x86_64", None, "x86_64"),
    ],
    ids=["igx-device-tree", "igx-os", "igx-sysfs-tree", "arm64-server", "x86_64"],
)
def test_platform_with_a_discrete_gpu(host, run_module, tmp_path, files, machine, kind, mode, repo_arch):
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    rc, text = case("multi_gpu", "query")
    host(
        (rc, text.splitlines()[0] + "\n"),
        case("multi_gpu", "smi"),
        platform={"root": str(tmp_path), "machine": machine},
    )
    result = run_module(module, {})
    assert result["gpu_count"] == 1
    platform = result["platform"]
    assert (platform["kind"], platform["mode"], platform["cuda_repo_arch"]) == (kind, mode, repo_arch)
    if kind == "igx_orin":
        assert platform["model"] == "NVIDIA IGX Orin Development Kit"
    if "etc/nv_tegra_release" in files:
        assert platform["tegra_release"].startswith("# R36 (release), REVISION: 4.3")


@pytest.mark.parametrize("board, kind", [("igx-dgpu", "igx_orin"), ("jetson", "jetson")])
def test_orin_igpu_gets_the_l4t_cuda_repository(host, run_module, tmp_path, board, kind):
    for rel, data in igx_files(board, tree="sys/firmware/devicetree/base").items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    host(case("orin_nvgpu", "query"), case("orin_nvgpu", "smi"), platform={"root": str(tmp_path), "machine": "aarch64"})
    platform = run_module(module, {})["platform"]
    assert (platform["kind"], platform["mode"], platform["cuda_repo_arch"]) == (kind, "igpu", "arm64")


def test_igx_in_igpu_mode(host, run_module, tmp_path):
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_text("NVIDIA IGX Orin Development Kit\x00")
    host(case("orin_nvgpu", "query"), case("orin_nvgpu", "smi"), platform={"root": str(tmp_path), "machine": "aarch64"})
    result = run_module(module, {})
    assert result["platform"] == {
        "kind": "igx_orin",
        "mode": "igpu",
        "architecture": "aarch64",
        "model": "NVIDIA IGX Orin Development Kit",
        "tegra_release": None,
        "cuda_repo_arch": "arm64",
    }


def test_old_driver_falls_back_to_the_name_table(host, run_module):
    """The refusal is a 470 driver's (driver_470/query.txt); the retry's answer is GPU 0 of the A6000 capture
    without its compute_cap column, since no 470 capture with these fields was found (see SOURCE.md)."""
    rc, text = case("multi_gpu", "query")
    fields = text.splitlines()[0].split(", ")
    retry = ", ".join(fields[:3] + fields[4:]) + "\n"
    fake = host(case("driver_470", "query"), case("driver_470", "smi"), fallback=(rc, retry))
    result = run_module(module, {})
    gpu = result["gpus"][0]
    assert gpu["compute_capability"] == "8.6" and gpu["compute_capability_source"] == "name table"
    assert gpu["memory_total_mib"] == 46068
    queries = [c for c in fake.commands if any(a.startswith("--query-gpu") for a in c)]
    assert len(queries) == 2 and "compute_cap" not in queries[1][-1]
    assert result["driver"]["cuda_version"] == "11.4"  # the 470 banner


@pytest.mark.parametrize(
    "name, expected",
    [
        ("NVIDIA RTX 6000 Ada Generation", "8.9"),
        ("Quadro RTX 6000", "7.5"),
        ("NVIDIA RTX A6000", "8.6"),
        ("Orin (nvgpu)", "8.7"),
        ("Tesla T4", "7.5"),
        ("NVIDIA H100 80GB HBM3", "9.0"),
        ("NVIDIA A100-SXM4-80GB", "8.0"),
        ("NVIDIA GeForce RTX 3090", "8.6"),
        ("Tesla K80", "3.7"),
        ("Matrox G200eR2", None),
    ],
)
def test_name_table(name, expected):
    assert module.compute_capability_from_name(name) == expected


@pytest.mark.parametrize(
    "case_name, state, words",
    [
        ("no_driver", "not_loaded", "couldn't communicate with the NVIDIA driver"),
        ("fell_off_bus", "gpu_lost", "Unable to determine the device handle"),
    ],
)
def test_broken_driver_is_reported_not_raised(host, run_module, case_name, state, words):
    host(case(case_name, "query"), case(case_name, "smi"))
    result = run_module(module, {})
    assert "failed" not in result
    assert result["gpus"] == [] and result["gpu_count"] == 0
    assert result["driver"]["state"] == state
    assert words in result["driver"]["message"]
    assert result["driver"]["advice"]


def test_nvml_missing_exit_code(host, run_module):
    # nvidia-smi's documented exit code 12; no real capture of its text was found, so only the code is fed.
    host((12, ""))
    result = run_module(module, {})
    assert result["driver"]["state"] == "nvml_missing"
    assert "libnvidia-ml" in result["driver"]["advice"]


def test_require_gpu_fails_with_the_reason_and_what_to_do(host, run_module):
    host(case("no_driver", "query"))
    result = run_module(module, {"require_gpu": True})
    assert result["failed"] is True
    assert "not_loaded" in result["msg"] and "couldn't communicate" in result["msg"] and "reboot" in result["msg"]


def test_no_nvidia_smi(host, run_module):
    host((0, ""), smi_path=None)
    result = run_module(module, {})
    assert result["driver"]["state"] == "missing"
    assert "install the NVIDIA driver" in result["driver"]["advice"]
    assert result["gpus"] == []


def test_toolkit_version_and_minimum_driver(host, run_module):
    host(case("multi_gpu", "query"), case("multi_gpu", "smi"), nvcc=NVCC_11_8, nvcc_path="/usr/bin/nvcc")
    toolkit = run_module(module, {})["cuda_toolkit"]
    assert toolkit == {
        "nvcc": "/usr/bin/nvcc",
        "home": "/usr",
        "version": "11.8",
        "release": "11.8.89",
        "min_driver": "520.61.05",
    }


def test_check_mode_runs_the_same_read_only_commands(host, run_module):
    fake = host(case("multi_gpu", "query"), case("multi_gpu", "smi"))
    result = run_module(module, {}, check_mode=True)
    assert result["gpu_count"] == 9 and result["changed"] is False
    assert all(cmd[0] == SMI for cmd in fake.commands)


@pytest.mark.parametrize(
    "driver, cuda", [("535.161.08", "12.2"), ("520.61.05", "11.8"), ("470.63.01", "11.4"), ("580.65.06", "13.0")]
)
def test_cuda_for_driver_table(driver, cuda):
    assert module.cuda_for_driver(driver) == cuda


def test_a_name_with_a_comma_keeps_its_columns():
    gpus = module.parse_query(
        "0, NVIDIA A100-SXM4-80GB, MIG 1g, GPU-1, 8.0, 81920, 0, 81050, 535.54.03\n", module.QUERY_FIELDS
    )
    assert gpus[0]["name"] == "NVIDIA A100-SXM4-80GB, MIG 1g" and gpus[0]["memory_total_mib"] == 81920


@pytest.mark.parametrize(
    "case_name, name, capability, memory, driver, cuda",
    [
        # Ada, the RTX 6000 Ada's generation (AD102); nvidia-smi's own compute_cap column.
        ("l40s", "NVIDIA L40S", "8.9", (46068, 0, 45460), "595.80", "13.2"),
        ("h100", "NVIDIA H100 80GB HBM3", "9.0", (81559, 0, 81081), "590.48.01", "13.1"),
    ],
)
def test_current_drivers(host, run_module, case_name, name, capability, memory, driver, cuda):
    host(case(case_name, "query"), case(case_name, "smi"))
    result = run_module(module, {})
    gpu = result["gpus"][0]
    assert (gpu["name"], gpu["compute_capability"], gpu["compute_capability_source"]) == (
        name,
        capability,
        "nvidia-smi",
    )
    assert (gpu["memory_total_mib"], gpu["memory_used_mib"], gpu["memory_free_mib"]) == memory
    assert (result["driver"]["version"], result["driver"]["cuda_version"]) == (driver, cuda)
    assert gpu["cuda_architecture"] == capability.replace(".", "")


def test_pci_gpus_are_nvidia_display_controllers_only(tmp_path):
    import nvidia_gpu_info
    devices = {"0000:01:00.0": ("0x10de", "0x2230", "0x030000"),   # RTX A6000 (VGA)
               "0000:01:00.1": ("0x10de", "0x1aef", "0x040300"),   # its HDMI audio function
               "0000:00:02.0": ("0x8086", "0x4680", "0x030000"),   # an Intel iGPU
               "0000:41:00.0": ("0x10de", "0x2330", "0x030200")}   # H100 (3D controller)
    for slot, (vendor, device, pci_class) in devices.items():
        (tmp_path / slot).mkdir()
        for name, value in (("vendor", vendor), ("device", device), ("class", pci_class)):
            (tmp_path / slot / name).write_text(value + "\n")
    found = nvidia_gpu_info.pci_gpus(str(tmp_path))
    assert [g["slot"] for g in found] == ["0000:01:00.0", "0000:41:00.0"]
    assert found[0] == {"slot": "0000:01:00.0", "device": "0x2230", "class": "0x030000"}
    assert nvidia_gpu_info.pci_gpus(str(tmp_path / "none")) == []
