"""playbooks/preflight.yml against a fleet of two hosts, run for real by ansible-playbook.

What cannot exist here is faked, and only that: each host's nvidia-smi is a script replaying output
captured from a real device (tests/unit/fixtures/nvidia_smi/, sources in each SOURCE.md), and nvcc a
script printing what Debian's CUDA 11.8 nvcc prints. The model's header comes over HTTP from a
server with the hub's layout (tests/unit/hubserver.py): a GGUF v2 written by gguf 0.4.4 with the
tensor table of Llama-2-70B Q4_K_M (80 layers, n_embd 8192, 8 KV heads) and no tensor data, since
the preflight reads only the header. The hosts are this machine over a local connection; the
checks only read, and the play after them only writes into a temporary directory.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "unit"))

from hubserver import Hub  # noqa: E402

gguf = pytest.importorskip("gguf")

SMI_CASES = REPO / "tests" / "unit" / "fixtures" / "nvidia_smi"
REPO_ID, FILENAME = "TheBloke/Llama-2-70B-chat-GGUF", "llama-2-70b-chat.Q4_K_M.gguf"
NVCC = "Cuda compilation tools, release %s, V%s\n"


def header_only_70b(path, q6k_only=False):
    """q6k_only: the layout of TheBloke's Q6_K file (every matrix Q6_K), which the hub holds in two parts."""
    q4k, q6k, f32 = gguf.GGMLQuantizationType.Q4_K, gguf.GGMLQuantizationType.Q6_K, gguf.GGMLQuantizationType.F32
    if q6k_only:
        q4k = q6k
    size = {q4k: (256, 144), q6k: (256, 210), f32: (1, 4)}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("LLaMA v2")
    writer.add_context_length(4096)
    writer.add_embedding_length(8192)
    writer.add_block_count(80)
    writer.add_feed_forward_length(28672)
    writer.add_head_count(64)
    writer.add_head_count_kv(8)
    writer.add_file_type(18 if q6k_only else 15)  # MOSTLY_Q6_K, MOSTLY_Q4_K_M
    writer.add_token_list(["<unk>", "<s>", "</s>"] + ["tok%d" % i for i in range(31997)])

    def tensor(name, shape, kind):
        elems = 1
        for dim in shape:
            elems *= dim
        block, nbytes = size[kind]
        writer.add_tensor_info(name, shape, None, elems // block * nbytes, raw_dtype=kind)

    tensor("token_embd.weight", [32000, 8192], q4k)
    tensor("output_norm.weight", [8192], f32)
    tensor("output.weight", [32000, 8192], q6k)
    for i in range(80):
        for part, shape, kind in [
            ("attn_norm", [8192], f32),
            ("ffn_norm", [8192], f32),
            ("attn_q", [8192, 8192], q4k),
            ("attn_k", [1024, 8192], q4k),
            ("attn_v", [1024, 8192], q6k),
            ("attn_output", [8192, 8192], q4k),
            ("ffn_gate", [28672, 8192], q4k),
            ("ffn_up", [28672, 8192], q4k),
            ("ffn_down", [8192, 28672], q6k if i % 2 else q4k),
        ]:
            tensor("blk.%d.%s.weight" % (i, part), shape, kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path.read_bytes()


SPLIT_FILENAME = "llama-2-70b-chat.Q6_K.gguf"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    data = header_only_70b(tmp_path_factory.mktemp("gguf") / FILENAME)
    # Over 50 GB, so the hub has it only as two parts, no file of that name (as TheBloke's repository).
    # The first part holds the header and the first of the tensor data (here: zeros), the second the rest.
    split = header_only_70b(tmp_path_factory.mktemp("gguf") / SPLIT_FILENAME, q6k_only=True) + bytes(1 << 20)
    cut = len(split) - (1 << 19)
    files = {(REPO_ID, FILENAME): data, (REPO_ID, SPLIT_FILENAME + "-split-a"): split[:cut],
             (REPO_ID, SPLIT_FILENAME + "-split-b"): split[cut:]}
    with Hub(files) as server:
        yield server


def fake_tool(path, outputs):
    """A script that answers like the real tool: outputs = [(argument substring or '', text, rc)]."""
    lines = ["#!/bin/sh", 'case "$*" in']
    for pattern, text, rc in outputs:
        lines.append("  *%s*) cat <<'EOF'\n%sEOF\n    exit %d;;" % (pattern, text, rc))
    lines.append("esac")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return str(path)


def smi_from(case, first_gpu_only=False):
    query = (SMI_CASES / case / "query.txt").read_text()
    if first_gpu_only:
        query = query.splitlines(True)[0]
    query_rc = int((SMI_CASES / case / "query.rc").read_text())
    smi = (SMI_CASES / case / "smi.txt").read_text()
    smi_rc = int((SMI_CASES / case / "smi.rc").read_text())
    return [("--query-gpu=", query, query_rc), ("", smi, smi_rc)]


def run_fleet(tmp_path, hub, hosts, **group_vars):
    """Run preflight.yml, then a play that writes tmp/changed/<host>, on the given hosts."""
    host_vars = {}
    for name, spec in hosts.items():
        tools = tmp_path / name
        (tools / "bin").mkdir(parents=True)
        fake_tool(tools / "bin" / "nvcc", [("--version", NVCC % spec.get("nvcc", ("11.8", "11.8.89")), 0)])
        # The captures come from machines with their NVIDIA card on the PCI bus (an RTX A6000's ids).
        pci = tools / "pci" / "0000:01:00.0"
        pci.mkdir(parents=True)
        for field, value in (("vendor", "0x10de"), ("device", "0x2230"), ("class", "0x030000")):
            (pci / field).write_text(value + "\n")
        host_vars[name] = {
            "preflight_nvidia_smi": fake_tool(tools / "nvidia-smi", spec["smi"]),
            "preflight_cuda_home": str(tools),
            "preflight_pci_devices_dir": str(tools / "pci" if spec.get("pci", True) else tools / "no-pci"),
        }
        host_vars[name].update(spec.get("vars", {}))
    inventory = {
        "llm_appliances": {
            "hosts": host_vars,
            "vars": {
                "ansible_connection": "local",
                "ansible_become": False,
                "ansible_python_interpreter": sys.executable,
                "llama_cpp_backend": "cuda",
                "preflight_driver_install": False,
                "preflight_hf_endpoint": hub.url,
                "preflight_model_repo_id": REPO_ID,
                "preflight_model_filename": FILENAME,
                "preflight_model_dir": str(tmp_path / "models"),
                **group_vars,
            },
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    changed = tmp_path / "changed"
    (tmp_path / "fleet.yml").write_text(
        "- name: Preflight\n  ansible.builtin.import_playbook: %s/playbooks/preflight.yml\n"
        "- name: The first change\n  hosts: llm_appliances\n  gather_facts: false\n  tasks:\n"
        "    - name: Change something\n      ansible.builtin.copy:\n"
        "        dest: '%s/{{ inventory_hostname }}'\n        content: changed\n        mode: '0644'\n"
        "    - name: Show the verdict\n      ansible.builtin.debug:\n        var: preflight_result\n" % (REPO, changed)
    )
    changed.mkdir()
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CALLBACK_RESULT_FORMAT="yaml",
        ANSIBLE_CACHE_PLUGIN="memory",
    )
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "fleet.yml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return proc, proc.stdout + proc.stderr, sorted(p.name for p in changed.iterdir())


A6000 = {"smi": smi_from("multi_gpu", first_gpu_only=True)}


def test_one_host_without_a_driver_stops_the_fleet_before_any_change(tmp_path, hub):
    proc, out, changed = run_fleet(tmp_path, hub, {"orin-a": A6000, "orin-b": {"smi": smi_from("no_driver")}})
    assert proc.returncode != 0, out
    assert changed == [], "a host changed before the fleet was checked:\n" + out
    assert "orin-b: llama_cpp_backend is cuda but there is no working NVIDIA GPU (not_loaded" in out
    assert "couldn't communicate with the NVIDIA driver" in out
    assert "no CUDA-capable device is detected" in out  # why: what the cuBLAS build does without one
    assert "orin-a: llama_cpp_backend is cuda but" not in out


def test_70b_fits_an_a6000_fully_offloaded(tmp_path, hub):
    proc, out, changed = run_fleet(tmp_path, hub, {"orin-a": A6000, "orin-c": A6000})
    assert proc.returncode == 0, out
    assert changed == ["orin-a", "orin-c"]
    # 46068 MiB (this A6000 runs with ECC on) less the 512 MiB reserve; about 43 GB needed.
    assert "needs about 41338 MiB" in out and "of the 45556 MiB of GPU memory available" in out, out
    assert "1280 KV cache" in out  # the tutorial's log: KV 1280 MB
    flat = " ".join(out.split())  # the yaml callback folds long messages
    assert "driver ok 550.127.05 (CUDA 12.4); CUDA toolkit 11.8.89; GPU0 NVIDIA RTX A6000 sm_86 46068 MiB" in flat
    assert "n_gpu_layers" not in out.split("PLAY [The first change]")[1]  # every layer: the server's -ngl


def test_a_model_that_does_not_fit_fails_with_the_numbers_and_the_choices(tmp_path, hub):
    busy = {"smi": A6000["smi"], "vars": {"preflight_memory_reserve_mib": 16384}}  # a GPU shared with others
    proc, out, changed = run_fleet(tmp_path, hub, {"orin-a": busy})
    assert proc.returncode != 0 and changed == []
    assert "needs about 41338 MiB at -c 4096" in out and "the GPUs have 29684 MiB" in out, out
    assert "a smaller quantisation" in out and "a shorter context" in out
    assert "preflight_partial_offload: true to run" in out and "of 80 layers on the GPU" in out


def test_partial_offload_runs_the_largest_ngl_that_fits(tmp_path, hub):
    busy = {"smi": A6000["smi"], "vars": {"preflight_memory_reserve_mib": 16384, "preflight_partial_offload": True}}
    proc, out, changed = run_fleet(tmp_path, hub, {"orin-a": busy})
    assert proc.returncode == 0, out
    verdict = yaml.safe_load(out.split("preflight_result:", 1)[1].split("\n\n")[0].replace("\n    ", "\n"))
    layers = verdict["n_gpu_layers"]
    # Each layer is ~490 MiB of weights plus 16 MiB of KV cache: 29684 MiB holds 57 or so, not 80.
    assert 50 <= layers <= 60, verdict


def test_a_model_the_hub_holds_in_parts_is_estimated_before_the_download(tmp_path, hub):
    """Q6_K 70B (about 53 GB of weights) exists on the hub only as -split-a and -split-b; the preflight
    reads its header from the first part and refuses it on an A6000 with the numbers, before any change."""
    proc, out, changed = run_fleet(tmp_path, hub, {"orin-a": A6000}, preflight_model_filename=SPLIT_FILENAME)
    assert proc.returncode != 0 and changed == [], out
    assert "HTTP 404" not in out, out
    flat = " ".join(out.split())
    assert "orin-a: %s needs about" % SPLIT_FILENAME in flat and "but the GPUs have 45556 MiB" in flat, out
    needed = int(flat.split("%s needs about " % SPLIT_FILENAME)[1].split(" ")[0])
    assert 52000 < needed < 56000, needed  # 80 layers of Q6_K at 8192/28672 plus 1280 MiB KV and 512 MiB
    assert "preflight_partial_offload: true to run" in flat


def test_toolkit_newer_than_the_driver_is_refused(tmp_path, hub):
    new_toolkit = {"smi": A6000["smi"], "nvcc": ("12.6", "12.6.85")}
    proc, out, changed = run_fleet(tmp_path, hub, {"orin-a": new_toolkit})
    assert proc.returncode != 0 and changed == []
    assert "the CUDA 12.6 toolkit needs driver 560.28.03 or newer; driver 550.127.05 supports CUDA up to 12.4" in out


def test_old_gpu_is_refused(tmp_path, hub):
    proc, out, changed = run_fleet(tmp_path, hub, {"orin-a": A6000}, preflight_min_compute_capability="8.9")
    assert proc.returncode != 0 and changed == []
    assert "GPU0 NVIDIA RTX A6000 has compute capability 8.6; edge-llama needs 8.9" in out


def test_cpu_backend_checks_the_hosts_ram(tmp_path, hub):
    proc, out, changed = run_fleet(tmp_path, hub, {"orin-a": {"smi": smi_from("no_driver")}}, llama_cpp_backend="cpu")
    ram = int(open("/proc/meminfo").read().split()[1]) // 1024
    if ram > 45000:
        pytest.skip("this machine has %d MiB of RAM: the 70B model fits it" % ram)
    assert proc.returncode != 0 and changed == []
    assert "needs about 41338 MiB" in out and "but the host has" in out, out


def test_build_architecture_follows_each_hosts_gpu(tmp_path):
    """llama_cpp's own preflight takes the CUDA architecture from the GPU found (8.6 -> 86, 8.9 -> 89)."""
    hosts = {}
    mixed = smi_from("h100")
    mixed[0] = (
        "--query-gpu=",
        mixed[0][1] + smi_from("multi_gpu", first_gpu_only=True)[0][1].replace("0, ", "1, ", 1),
        0,
    )
    for name, smi in (
        ("orin-a6000", smi_from("multi_gpu", first_gpu_only=True)),
        ("host-l40s", smi_from("l40s")),
        # Two real captures in one host (H100 as GPU0, an A6000 as GPU1): no such mixed capture exists.
        ("host-mixed", mixed),
    ):
        tools = tmp_path / name
        (tools / "bin").mkdir(parents=True)
        fake_tool(tools / "bin" / "nvcc", [("--version", NVCC % ("11.8", "11.8.89"), 0)])
        fake_tool(tools / "bin" / "nvidia-smi", smi)
        hosts[name] = {"llama_cpp_cuda_home": str(tools), "__tools": str(tools / "bin")}
    inventory = {
        "all": {
            "hosts": hosts,
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "arch.yml").write_text(
        "- name: Choose the architecture\n  hosts: all\n  gather_facts: false\n"
        '  environment:\n    PATH: "{{ __tools }}:/usr/bin:/bin"\n  tasks:\n'
        "    - name: Run llama_cpp's preflight\n      ansible.builtin.include_role:\n"
        "        name: llama_cpp\n        tasks_from: preflight\n      vars:\n        llama_cpp_backend: cuda\n"
        "    - name: Show it\n      ansible.builtin.debug:\n"
        "        msg: \"arch {{ inventory_hostname }} {{ __llama_cpp_cuda_archs | join(';') }}\"\n"
    )
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "arch.yml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_CACHE_PLUGIN="memory"),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "arch orin-a6000 86" in out and "arch host-l40s 89" in out, out
    assert "arch host-mixed 86;90" in out, out  # numeric order: make takes the first, the oldest


def test_cuda_on_a_host_without_an_nvidia_card_is_refused_before_anything_is_installed(tmp_path, hub):
    """No nvidia-smi and nothing from NVIDIA on the PCI bus: a driver install would find no GPU (and
    reboot the host for nothing). Refused in the preflight, before any host changes."""
    bare = {"smi": smi_from("no_driver"), "pci": False,
            "vars": {"preflight_nvidia_smi": "/nonexistent/nvidia-smi", "preflight_driver_install": True}}
    proc, out, changed = run_fleet(tmp_path, hub, {"orin-a": A6000, "orin-b": bare})
    assert proc.returncode != 0, out
    assert changed == [], "a host changed before the fleet was checked:\n" + out
    assert "orin-b: llama_cpp_backend is cuda but this host has no NVIDIA GPU: nothing from NVIDIA (vendor 10de)" in out
    assert "Nothing was installed" in out and "Traceback" not in out


def test_a_card_without_its_driver_waits_for_the_driver_install(tmp_path, hub):
    """The same host with its card on the PCI bus: the nvidia_cuda role installs the driver, and the GPU
    checks wait for it."""
    card = {"smi": smi_from("no_driver"),
            "vars": {"preflight_nvidia_smi": "/nonexistent/nvidia-smi", "preflight_driver_install": True}}
    proc, out, changed = run_fleet(tmp_path, hub, {"orin-a": card})
    assert proc.returncode == 0, out
    assert "the nvidia_cuda\nrole installs one" in out or "the nvidia_cuda role installs one" in out, out[-3000:]
