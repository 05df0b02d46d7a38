"""The cuda scenario: the tutorial's cuBLAS build with Debian's real CUDA 11.8 toolkit, on a host
without a GPU (preflight_gpu_required: false stages it). The toolkit is real; no driver is installed,
since no NVIDIA card is on the PCI bus (nvidia-smi's own no-driver answer is a captured fixture in
tests/unit/fixtures/nvidia_smi/no_driver, replayed by the unit tests and tests/test_preflight.py).
"""

import json

import pytest

pytestmark = pytest.mark.cuda


def fact(host, name):
    return json.loads(host.file("/etc/ansible/facts.d/edge_llama_%s.fact" % name).content_string)


def test_toolkit_is_debians_cuda_11_8(host):
    nvcc = host.run("/usr/bin/nvcc --version")
    print(nvcc.stdout)
    assert nvcc.rc == 0
    assert "release 11.8, V11.8.89" in nvcc.stdout
    assert not host.file("/usr/local/cuda").exists  # the role found it outside /usr/local/cuda
    gpu = fact(host, "gpu")
    assert gpu["cuda_toolkit"]["nvcc"] == "/usr/bin/nvcc"
    assert gpu["cuda_toolkit"]["release"] == "11.8.89"
    assert gpu["cuda_toolkit"]["min_driver"] == "520.61.05"


def test_no_driver_is_installed_without_an_nvidia_card_on_the_pci_bus(host):
    """The toolkit is installed (the build needs nvcc); the driver is not: nothing from NVIDIA sits on
    this host's PCI bus, so a driver would find no GPU (and the role would reboot the host for nothing)."""
    nvidia = host.run("grep -l 0x10de /sys/bus/pci/devices/*/vendor")
    assert nvidia.stdout.strip() == "", nvidia.stdout  # the premise: no NVIDIA card here
    for package in ("nvidia-smi", "nvidia-driver", "nvidia-kernel-dkms"):
        assert not host.package(package).is_installed, package
    assert host.package("nvidia-cuda-toolkit").is_installed
    gpu = fact(host, "gpu")
    assert gpu["gpus"] == [] and gpu["driver"]["state"] == "missing"
    assert gpu["platform"]["kind"] == "x86_64"


def test_server_was_built_with_cublas_for_sm_86(host):
    built = fact(host, "llama_cpp")
    assert built["build_system"] == "make"
    binary = built["server_binary"]
    ldd = host.run("ldd %s", binary)
    assert ldd.rc == 0
    for lib in ("libcublas.so.11", "libcudart.so.11.0", "libcublasLt.so.11"):
        assert lib in ldd.stdout, "%s does not link %s:\n%s" % (binary, lib, ldd.stdout)
    # The CUDA kernels were compiled for the A6000's architecture (sm_86) and nothing else.
    archs = host.run("cuobjdump --list-elf %s", binary)
    assert archs.rc == 0, archs.stderr
    assert "sm_86" in archs.stdout and "sm_52" not in archs.stdout
    assert host.run("%s --help", binary).rc == 0


def test_the_smoke_check_was_skipped_without_a_gpu_and_the_build_is_unverified(host):
    """A cuBLAS build cannot compute without a GPU: the smoke check is skipped (the run says why) and the
    build is recorded as unverified, to be checked on the first run that finds the GPU working."""
    built = fact(host, "llama_cpp")
    record = json.loads(host.file("%s/.edge-llama-build.json" % built["build_dir"]).content_string)
    assert record["state"] == "unverified" and record["smoke"] == {}, record
    assert record["identity"]["backend"] == "cuda" and record["identity"]["cuda_architectures"] == ["86"]
    # x86_64 and the 2023 Makefile: one x86-64-v3 build, also for the code nvcc hands to the host compiler.
    assert built["cpu_build"] == "portable_baseline"
    assert "HOST_CXXFLAGS=-march=x86-64-v3 -mtune=generic" in built["build_command"]


def test_a_cublas_server_without_a_gpu_exits_at_start(host):
    """Why the preflight refuses the cuda backend without a GPU: the build serves nothing."""
    built, model = fact(host, "llama_cpp"), fact(host, "model")
    run = host.run("timeout 60 %s -m %s -ngl 1 --port 18999", built["server_binary"], model["path"])
    assert run.rc not in (0, 124), "the server did not exit"
    assert "no CUDA-capable device is detected" in run.stdout + run.stderr


@pytest.mark.parametrize("unit", ["edge-llama-server", "edge-llama-openai", "edge-llama-chat"])
def test_units_installed_but_not_started(host, unit):
    assert host.file("/etc/systemd/system/%s.service" % unit).exists
    service = host.service(unit)
    assert not service.is_running
    assert not service.is_enabled
