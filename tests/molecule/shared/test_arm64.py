"""The Orin's own architecture, on the arm64 scenario's host (aarch64 under qemu-user-static).

The other files of this directory already checked the tutorial's path on this host (the 2023 commit
built with its Makefile, the tiny model, the three services, the clients). These tests check what
differs on aarch64, with the real Makefile and the real roles on a real aarch64 userland:

* the build flags the pinned Makefile uses there (-mcpu=native, not x86's -march=native; for cuBLAS
  nvcc with the GPU's architecture and /usr/local/cuda, where IGX OS keeps its toolkit);
* IGX Orin detection from the device tree and /etc/nv_tegra_release, and what follows from it in
  check mode: the preflight's verdict, no driver install (IGX OS ships its own), NVIDIA's `sbsa`
  CUDA repository, and the build's CUDA architecture taken from the RTX A6000 (sm_86); the same for a
  Jetson, which gets the `arm64` (L4T) repository and sm_87;
* the services' virtualenv holds aarch64 wheels.

What a container cannot have is faked with strings from real machines (tests/molecule/arm64/igx/,
SOURCE.md there): the device tree, the release file, an nvidia-smi replaying a real capture, and for
the check-mode runs IGX OS's /etc/os-release (Ubuntu 22.04). NVIDIA's repository cannot be reached
from here: a local HTTP server stands in for it (tests/setup/mirrors.sh), and check mode only asks
it for the key (HEAD).
"""

import json
import os
import shlex
import re
import subprocess

import pytest

import appliance

pytestmark = pytest.mark.arm64

IGX = appliance.REPO / "tests" / "molecule" / "arm64" / "igx"
SMI_CASES = appliance.REPO / "tests" / "unit" / "fixtures" / "nvidia_smi"
TREE = "/sys/firmware/devicetree/base"
MIRROR_HOST = os.environ.get("EDGE_LLAMA_MIRROR_HOST", "host.containers.internal")
CHECK_PLAYBOOKS = ("playbooks/preflight.yml", "playbooks/nvidia.yml", "playbooks/llama_cpp.yml")
EM_AARCH64 = 183  # ELF e_machine of AArch64


def build_fact(host):
    return json.loads(host.file("/etc/ansible/facts.d/edge_llama_llama_cpp.fact").content_string)


def dry_run(host, fact, *extra):
    """`make -n -B` in the build directory with the role's own arguments: every command the
    Makefile runs for them, with its flags, on this machine."""
    args = [arg for arg in fact["build_command"][1:] if arg not in ("-j",) and not arg.isdigit()]
    out = host.run("cd %s && make -n -B %s" % (shlex.quote(fact["build_dir"]), shlex.join(list(extra) + args)))
    assert out.rc == 0, out.stderr
    return out.stdout.splitlines()


def compiles(lines, suffix):
    return [line for line in lines if " -c " in line and line.split(" -c ", 1)[1].split()[0].endswith(suffix)]


def test_the_host_runs_aarch64_binaries(host):
    assert host.check_output("uname -m") == "aarch64"
    fact = build_fact(host)
    e_machine = host.check_output("od -An -tu2 -j18 -N2 %s" % shlex.quote(fact["server_binary"])).strip()
    assert int(e_machine) == EM_AARCH64, "%s is not an AArch64 ELF (e_machine %s)" % (fact["server_binary"], e_machine)


def test_the_pinned_makefile_builds_for_this_cpu(host):
    fact = build_fact(host)
    assert fact["build_system"] == "make" and fact["backend"] == "cpu"
    # aarch64 keeps the tree's -mcpu=native (each appliance builds on itself): no x86 flags added.
    assert fact["cpu_build"] == "default" and not any("x86-64" in arg for arg in fact["build_command"])
    assert fact["build_command"][0] == "make" and "server" in fact["build_command"], fact["build_command"]
    lines = dry_run(host, fact)
    c_lines, cpp_lines = compiles(lines, ".c"), compiles(lines, ".cpp")
    assert any("ggml.c" in line for line in c_lines) and cpp_lines, "\n".join(lines)
    for line in c_lines + cpp_lines:
        assert "-mcpu=native" in line and "-march=native" not in line, line
        assert "GGML_USE_CUBLAS" not in line, line


def test_the_pinned_makefile_cublas_flags_on_aarch64(host):
    """What `make LLAMA_CUBLAS=1 CUDA_DOCKER_ARCH=sm_86` runs here: nvcc for the A6000, and the
    toolkit from /usr/local/cuda (the Makefile's targets/x86_64-linux paths point nowhere on aarch64)."""
    lines = dry_run(host, build_fact(host), "LLAMA_CUBLAS=1", "CUDA_DOCKER_ARCH=sm_86")
    nvcc = [line for line in lines if line.startswith("nvcc ")]
    assert len(nvcc) == 1 and "ggml-cuda.cu" in nvcc[0], "\n".join(lines)
    assert "-arch=sm_86" in nvcc[0].split() and "-arch=native" not in nvcc[0], nvcc[0]
    assert "-mcpu=native" in nvcc[0], nvcc[0]  # forwarded to the host compiler
    link = [line for line in lines if " -o server" in line]
    assert link and "-L/usr/local/cuda/lib64" in link[0] and "-lcublas" in link[0], link
    for line in compiles(lines, ".c"):
        assert "-DGGML_USE_CUBLAS" in line and "-I/usr/local/cuda/include" in line, line


def test_the_services_run_on_aarch64_wheels(host):
    """The endpoint and chat app's virtualenv took aarch64 wheels for its compiled packages."""
    venv = "/opt/edge-llama/venvs/services"
    found = host.run("ls -d %s/lib/python3*/site-packages/pydantic_core/_pydantic_core*.so" % venv)
    assert found.rc == 0, found.stderr
    for library in found.stdout.split():
        e_machine = host.check_output("od -An -tu2 -j18 -N2 %s" % library).strip()
        assert int(e_machine) == EM_AARCH64, library
    wheels = host.run("cat %s/lib/python3*/site-packages/pydantic_core-*.dist-info/WHEEL" % venv).stdout
    assert "aarch64" in wheels, wheels


@pytest.fixture
def cuda_repos():
    """The stand-in for developer.download.nvidia.com (tests/setup/mirrors.sh, port 18092), and a
    function returning the requests it logged since this test began."""
    log = appliance.CACHE / "run" / "nvidia.log"
    start = log.stat().st_size if log.exists() else 0

    def requests():
        with open(log, "rb") as handle:
            handle.seek(start)
            return re.findall(r'"(HEAD|GET) (\S+) HTTP/[0-9.]+" (\d+)', handle.read().decode("utf-8", "replace"))

    return "http://%s:18092/compute/cuda/repos" % MIRROR_HOST, requests


def _smi_script(case, device, first_gpu_only):
    """The nvidia-smi stand-in prepare.yml installs (igx/nvidia-smi.j2), replaying another capture."""
    import jinja2
    query = (SMI_CASES / case / "query.txt").read_text()
    smi = (SMI_CASES / case / "smi.txt").read_text()
    replay = {
        "device": device, "dir": case,
        "query": query.splitlines()[0] if first_gpu_only else query.rstrip("\n"),
        "query_rc": (SMI_CASES / case / "query.rc").read_text().strip(),
        "smi": smi[:-1] if smi.endswith("\n") else smi,
        "smi_rc": (SMI_CASES / case / "smi.rc").read_text().strip(),
    }
    template = jinja2.Template((IGX / "nvidia-smi.j2").read_text(), keep_trailing_newline=True)
    return template.render(__igx_smi_case=replay)


def _put(host, path, data, mode="0644"):
    import base64
    encoded = base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()
    out = host.run("echo %s | base64 -d > %s && chmod %s %s" % (encoded, path, mode, path))
    assert out.rc == 0, out.stderr


@pytest.fixture
def dressed_as(host):
    """Dress the host as another board for one test (device tree, nvidia-smi, IGX OS's os-release);
    put back what prepare.yml wrote afterwards."""
    saved = {path: host.file(path).content for path in
             (TREE + "/model", TREE + "/compatible", "/usr/bin/nvidia-smi", "/etc/os-release")}
    os_release_link = host.run("readlink /etc/os-release").stdout.strip()

    def dress(board, smi_case, device, first_gpu_only):
        host.run("rm -f /etc/os-release")
        _put(host, "/etc/os-release", (IGX / "os-release").read_bytes())
        for name in ("model", "compatible"):
            _put(host, "%s/%s" % (TREE, name), (IGX / board / name).read_bytes(), "0444")
        _put(host, "/usr/bin/nvidia-smi", _smi_script(smi_case, device, first_gpu_only), "0755")

    yield dress
    for path, data in saved.items():
        _put(host, path, data, "0755" if path.endswith("nvidia-smi") else "0644")
    if os_release_link:
        host.run("rm -f /etc/os-release && ln -s %s /etc/os-release" % shlex.quote(os_release_link))


def _check_mode(label, repo_url):
    # Facts are gathered afresh (the os-release changed) and not cached for later runs.
    return appliance.playbook(label, {"llama_cpp_backend": "cuda", "nvidia_cuda_repo_url": repo_url},
                              check=True, playbooks=CHECK_PLAYBOOKS,
                              env={"ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory"})


def _nothing_installed(host):
    assert not host.file("/usr/share/keyrings/cuda-archive-keyring.gpg").exists
    assert host.run("ls /etc/apt/sources.list.d/cuda-*").rc != 0
    assert build_fact(host)["backend"] == "cpu"  # the fact file was not rewritten


@pytest.mark.parametrize("board, smi_case, device, first_gpu_only, platform, repo_arch, arch", [
    ("igx-dgpu", "multi_gpu", "RTX A6000 (GPU 0 of a 9-GPU host)", True, "igx_orin (dgpu)", "sbsa", "86"),
    ("jetson", "orin_nvgpu", "Jetson Orin iGPU", False, "jetson (igpu)", "arm64", "87"),
], ids=["igx-orin-dgpu", "jetson-orin"])
def test_check_mode_follows_the_board(host, dressed_as, cuda_repos, board, smi_case, device, first_gpu_only,
                                      platform, repo_arch, arch):
    dressed_as(board, smi_case, device, first_gpu_only)
    repo_url, requests = cuda_repos
    run = _check_mode("arm64-check-%s" % board, repo_url)
    assert run.rc == 0, run.output[-6000:]
    name = appliance.name(host)
    # The preflight names the board and its GPU.
    assert "%s: %s; driver ok" % (name, platform) in run.output, run.output[-6000:]
    # IGX OS and JetPack ship the driver: none is planned; the toolkit comes from the board's repository.
    repo = "%s/ubuntu2204/%s" % (repo_url, repo_arch)
    assert "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] %s/ /" % repo in run.output
    assert "/etc/apt/sources.list.d/cuda-ubuntu2204-%s.list" % repo_arch in run.output
    key = "/compute/cuda/repos/ubuntu2204/%s/cuda-archive-keyring.gpg" % repo_arch
    assert ("HEAD", key, "200") in requests(), requests()
    assert not [request for request in requests() if request[0] == "GET"], requests()  # nothing downloaded
    assert "would install cuda-toolkit-12-2 from %s" % repo in run.output
    assert "cuda-drivers" not in run.output
    # The build follows the GPU found: the Makefile's CUDA_DOCKER_ARCH, in the would-be fact's diff.
    assert "CUDA build for sm_%s (from %s:" % (arch, platform.replace(" (", " ").rstrip(")")) in run.output
    assert '"CUDA_DOCKER_ARCH=sm_%s"' % arch in run.output and '"LLAMA_CUBLAS=1"' in run.output
    _nothing_installed(host)


def gpu_info(host):
    """library/nvidia_gpu_info on the host, as the roles run it (ad hoc, its JSON result)."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_CACHE_PLUGIN="ansible.builtin.memory")
    proc = subprocess.run(["ansible", "-i", os.environ["MOLECULE_INVENTORY_FILE"], appliance.name(host),
                           "-m", "nvidia_gpu_info"], cwd=appliance.REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The JSON document, then the fleet summary the edge_llama_summary callback prints.
    document, _ = json.JSONDecoder().raw_decode(proc.stdout)
    return document["plays"][0]["tasks"][0]["hosts"][appliance.name(host)]


def test_igx_orin_in_dgpu_mode_is_recognised(host):
    """prepare.yml's IGX as the module reads it: device tree under /sys/firmware, L4T release file,
    the A6000 replay. The release file alone would say Jetson; the device tree says IGX."""
    release = host.file("/etc/nv_tegra_release").content_string.splitlines()[0]
    assert release.startswith("# R36 (release)"), release
    info = gpu_info(host)
    assert info["platform"] == {
        "kind": "igx_orin", "mode": "dgpu", "architecture": "aarch64",
        "model": "NVIDIA IGX Orin Development Kit", "tegra_release": release, "cuda_repo_arch": "sbsa",
    }
    assert [(gpu["name"], gpu["cuda_architecture"], gpu["memory_total_mib"]) for gpu in info["gpus"]] == [
        ("NVIDIA RTX A6000", "86", 46068)]
    assert info["driver"]["state"] == "ok" and info["driver"]["cuda_version"] == "12.4"
