#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nvidia_gpu_info
short_description: Report the NVIDIA GPUs, driver, CUDA toolkit and platform of a host
description:
  - Reads C(nvidia-smi) CSV queries, the C(nvidia-smi) banner, C(nvcc --version) and the platform's
    identification files. Changes nothing; safe in check mode.
  - For each GPU it reports index, name, UUID, compute capability, memory total/used/free (MiB) and
    driver version. Drivers that reject the C(compute_cap) field (470 and older) get the compute
    capability from a table of GPU names.
  - The platform is one of C(igx_orin) (with C(mode) C(dgpu) or C(igpu)), C(jetson), C(x86_64) or
    C(arm64_sbsa) (an aarch64 server with a discrete GPU), or C(other).
  - A host without a working driver is not a failure of this module; C(driver.state) says what is
    wrong and C(driver.advice) what to do. Set I(require_gpu=true) to fail instead.
version_added: "0.2.0"
author: edge-llama contributors
options:
  nvidia_smi:
    description:
      - Path of C(nvidia-smi). Empty looks on C(PATH), then in C(/usr/bin), C(/usr/local/bin),
        C(/usr/lib/wsl/lib) and C(/usr/sbin).
    type: path
  cuda_home:
    description:
      - A CUDA toolkit directory to look in first for C(bin/nvcc). Then C(/usr/local/cuda),
        the newest C(/usr/local/cuda-X.Y), C(nvcc) on C(PATH) and C(/usr/bin/nvcc) (Debian's package).
    type: path
  require_gpu:
    description: Fail, with the reason and what to do, unless at least one GPU answers.
    type: bool
    default: false
  pci_devices_dir:
    description: Where sysfs lists the PCI devices (for C(pci_gpus)).
    type: path
    default: /sys/bus/pci/devices
notes:
  - Supports check mode; never changes anything.
  - C(nvidia-smi) exit codes: 2 bad argument, 3 not available, 4 no permission, 6 query failed,
    9 driver not loaded, 12 NVML not found, 15 GPU fell off the bus, 255 other.
"""

EXAMPLES = r"""
- name: Read the GPUs
  nvidia_gpu_info:
  register: gpu

- name: Refuse a GPU that is too old
  ansible.builtin.assert:
    that: gpu.gpus[0].compute_capability is version('8.0', '>=')

- name: Build for the GPU found
  ansible.builtin.debug:
    msg: "CUDA_DOCKER_ARCH=sm_{{ gpu.gpus[0].cuda_architecture }}"
"""

RETURN = r"""
gpus:
  description: One entry per GPU, in C(nvidia-smi) index order. Empty without a working driver.
  returned: always
  type: list
  elements: dict
  sample:
    - index: 0
      name: NVIDIA RTX A6000
      uuid: GPU-7f3bd2a6-0b1e-6c4a-52a7-2b8c3f0e9d11
      compute_capability: "8.6"
      compute_capability_source: nvidia-smi
      cuda_architecture: "86"
      memory_total_mib: 49140
      memory_used_mib: 3
      memory_free_mib: 48677
      driver_version: 535.161.08
      integrated: false
gpu_count:
  description: Number of GPUs that answered.
  returned: always
  type: int
driver:
  description: The driver as C(nvidia-smi) sees it.
  returned: always
  type: dict
  contains:
    state:
      description: >-
        C(ok), C(missing) (no nvidia-smi), C(not_loaded) (exit 9), C(nvml_missing) (12),
        C(gpu_lost) (15), C(no_permission) (4), C(no_gpu) (runs but lists none) or C(error).
      type: str
    version:
      description: Driver version, for example C(535.161.08).
      type: str
    cuda_version:
      description: The newest CUDA version the driver supports (the banner's C(CUDA Version)).
      type: str
    nvidia_smi:
      description: Path of the C(nvidia-smi) that was run.
      type: str
    rc:
      description: Exit code of the query.
      type: int
    message:
      description: What C(nvidia-smi) printed when it failed.
      type: str
    advice:
      description: What to do about a C(state) other than C(ok).
      type: str
platform:
  description: What kind of machine this is.
  returned: always
  type: dict
  contains:
    kind:
      description: C(igx_orin), C(jetson), C(x86_64), C(arm64_sbsa) or C(other).
      type: str
    mode:
      description: For IGX Orin, C(dgpu) or C(igpu) by the GPU that answers; C(igpu) on Jetson; null otherwise.
      type: str
    architecture:
      description: The machine architecture (C(uname -m)).
      type: str
    model:
      description: The device-tree model or the DMI product name.
      type: str
    tegra_release:
      description: First line of C(/etc/nv_tegra_release), if any.
      type: str
    cuda_repo_arch:
      description:
        - The directory of NVIDIA's CUDA repository for this machine, C(x86_64), C(sbsa) (aarch64
          servers, IGX Orin in dGPU mode) or C(arm64) (Jetson, IGX Orin in iGPU mode: CUDA for L4T);
          null for other architectures.
      type: str
pci_gpus:
  description:
    - NVIDIA display controllers (vendor 10de, class 03xx) on the PCI bus, found in sysfs whether or not a
      driver is loaded. Empty on a host without an NVIDIA card, and on Jetson/Orin iGPU (not a PCI device).
  returned: always
  type: list
  elements: dict
  sample: [{slot: "0000:01:00.0", device: "0x2230", class: "0x030000"}]
cuda_toolkit:
  description: The CUDA toolkit found, if any.
  returned: always
  type: dict
  contains:
    nvcc:
      description: Path of C(nvcc), or null.
      type: str
    home:
      description: The toolkit directory (the parent of C(bin/nvcc)).
      type: str
    version:
      description: Major.minor, for example C(11.8).
      type: str
    release:
      description: Full version, for example C(11.8.89).
      type: str
    min_driver:
      description: The oldest Linux driver that runs this toolkit (NVIDIA's compatibility table), if known.
      type: str
"""

import glob
import os
import platform as _platform
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edge_llama_text import int_or_none

QUERY_FIELDS = ["index", "name", "uuid", "compute_cap", "memory.total", "memory.used", "memory.free", "driver_version"]

# Compute capability by GPU name, for drivers that cannot report it (NVIDIA's CUDA GPUs table).
# Most specific patterns first: "RTX 6000 Ada" is 8.9, "Quadro RTX 6000" is 7.5.
NAME_TABLE = [
    (r"\bGB200|\bB200|\bB100", "10.0"),
    (r"RTX PRO \d+ Blackwell|RTX 50\d0", "12.0"),
    (r"\bGH200|\bH200|\bH100|\bH800", "9.0"),
    (r"RTX \d+ Ada|RTX 40\d0|\bL40|\bL4\b|\bL20\b", "8.9"),
    (r"\bOrin\b", "8.7"),
    (r"\bA100\b|\bA800\b|\bA30\b", "8.0"),
    (r"RTX A\d+|\bA40\b|\bA10G?\b|\bA16\b|\bA2\b|RTX 30\d0", "8.6"),
    (r"\bT4\b|Quadro RTX|RTX 20\d0|TITAN RTX|GTX 16\d0", "7.5"),
    (r"Xavier", "7.2"),
    (r"V100|TITAN V\b", "7.0"),
    (r"\bP100\b", "6.0"),
    (r"\bP4\b|\bP40\b|GTX 10\d0|TITAN Xp?\b|Quadro P\d+", "6.1"),
    (r"\bK80\b", "3.7"),
]

# CUDA toolkit -> the oldest Linux driver that runs it (NVIDIA's CUDA toolkit release notes, table 3).
MIN_DRIVER = [
    ("11.0", "450.36.06"),
    ("11.1", "455.23"),
    ("11.2", "460.27.03"),
    ("11.3", "465.19.01"),
    ("11.4", "470.42.01"),
    ("11.5", "495.29.05"),
    ("11.6", "510.39.01"),
    ("11.7", "515.43.04"),
    ("11.8", "520.61.05"),
    ("12.0", "525.60.13"),
    ("12.1", "530.30.02"),
    ("12.2", "535.54.03"),
    ("12.3", "545.23.06"),
    ("12.4", "550.54.14"),
    ("12.5", "555.42.02"),
    ("12.6", "560.28.03"),
    ("12.8", "570.26"),
    ("12.9", "575.51.03"),
    ("13.0", "580.65.06"),
]

ADVICE = {
    "missing": "nvidia-smi is not installed: install the NVIDIA driver (the nvidia_cuda role does where the "
    "platform allows), or use llama_cpp_backend: cpu on a host without an NVIDIA GPU.",
    "not_loaded": "The driver's user-space tools are installed but the kernel driver is not loaded: reboot after a "
    "driver install, check `lsmod | grep nvidia` and `dmesg | grep -i nvidia` (Secure Boot can block an "
    "unsigned module), and make sure the GPU is present (`lspci -d 10de:`).",
    "nvml_missing": "libnvidia-ml.so is missing: the driver installation is incomplete; reinstall the driver "
    "package that matches the kernel module.",
    "gpu_lost": "A GPU fell off the bus (Xid 79): check power and seating, then reboot; the driver cannot use it "
    "until then.",
    "no_permission": "nvidia-smi was refused access: run as root (become: true) or fix /dev/nvidia* permissions.",
    "no_gpu": "The driver runs but lists no GPU: check `lspci -d 10de:` and the GPU's power.",
    "error": "nvidia-smi failed: run it by hand on the host to see why.",
}
STATE_BY_RC = {4: "no_permission", 9: "not_loaded", 12: "nvml_missing", 15: "gpu_lost"}


def _version_key(text):
    return tuple(int(part) for part in re.findall(r"\d+", text or ""))


def compute_capability_from_name(name):
    for pattern, capability in NAME_TABLE:
        if re.search(pattern, name or "", re.I):
            return capability
    return None


def min_driver_for(cuda_version):
    """The oldest driver for a toolkit major.minor; a version between rows takes the row below it."""
    best = None
    for cuda, driver in MIN_DRIVER:
        if _version_key(cuda) <= _version_key(cuda_version):
            best = driver
    return best



def parse_query(text, fields):
    """Parse `--format=csv,noheader,nounits` output for the given fields into GPU dicts."""
    gpus = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        values = [value.strip() for value in line.split(",")]
        if len(values) > len(fields):  # a name with a comma in it
            extra = len(values) - len(fields)
            name_at = fields.index("name")
            values[name_at : name_at + extra + 1] = [", ".join(values[name_at : name_at + extra + 1])]
        if len(values) != len(fields):
            raise ValueError("unexpected nvidia-smi line: %r" % line)
        row = {field: values[at] for at, field in enumerate(fields)}
        row = {key: (None if value in ("[N/A]", "N/A", "[Not Supported]", "") else value) for key, value in row.items()}
        capability = row.get("compute_cap")
        source = "nvidia-smi" if capability else None
        if not capability:
            capability = compute_capability_from_name(row.get("name"))
            source = "name table" if capability else None
        name = row.get("name") or ""
        total = int_or_none(row.get("memory.total"))
        gpus.append(
            {
                "index": int_or_none(row.get("index")),
                "name": name,
                "uuid": row.get("uuid"),
                "compute_capability": capability,
                "compute_capability_source": source,
                "cuda_architecture": capability.replace(".", "") if capability else None,
                "memory_total_mib": total,
                "memory_used_mib": int_or_none(row.get("memory.used")),
                "memory_free_mib": int_or_none(row.get("memory.free")),
                "driver_version": row.get("driver_version"),
                # Orin's GPU shares the SoC's memory: nvidia-smi calls it "Orin (nvgpu)" and has no memory figures.
                "integrated": "nvgpu" in name.lower() or (total is None and name.startswith("Orin")),
            }
        )
    return gpus


def parse_banner(text):
    """Driver and CUDA versions from the plain `nvidia-smi` table's first lines."""
    driver = re.search(r"Driver Version:\s*([0-9.]+)", text or "")
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", text or "")
    return (driver.group(1) if driver else None), (cuda.group(1) if cuda else None)


def cuda_for_driver(driver_version):
    """The newest CUDA the driver supports, from the compatibility table, when the banner has none."""
    best = None
    for cuda, driver in MIN_DRIVER:
        if _version_key(driver_version) >= _version_key(driver):
            best = cuda
    return best


def _read_first_line(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(4096).replace(b"\x00", b"\n").decode("utf-8", "replace").strip().splitlines()[0]
    except (IOError, OSError, IndexError):
        return None


def _read_all(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(4096).replace(b"\x00", b"\n").decode("utf-8", "replace")
    except (IOError, OSError):
        return ""


def detect_platform(gpus, root="/", machine=None):
    machine = machine or _platform.machine()
    join = lambda *parts: os.path.join(root, *parts)  # noqa: E731
    # /proc/device-tree is the kernel's link to /sys/firmware/devicetree/base; read either.
    trees = [join("proc", "device-tree"), join("sys", "firmware", "devicetree", "base")]
    dt_model = next(filter(None, (_read_first_line(os.path.join(tree, "model")) for tree in trees)), None)
    compatible = next(filter(None, (_read_all(os.path.join(tree, "compatible")) for tree in trees)), "")
    product = _read_first_line(join("sys", "class", "dmi", "id", "product_name"))
    tegra = _read_first_line(join("etc", "nv_tegra_release"))
    model = dt_model or product
    text = " ".join(filter(None, [dt_model, product, compatible]))
    igx = "IGX" in text or "p3740" in compatible
    tegra_soc = bool(tegra) or "nvidia,tegra" in compatible
    discrete = [gpu for gpu in gpus if not gpu["integrated"]]
    integrated = [gpu for gpu in gpus if gpu["integrated"]]
    if igx:
        kind = "igx_orin"
        mode = "dgpu" if discrete else ("igpu" if integrated else None)
    elif tegra_soc:
        kind, mode = "jetson", "igpu"
    elif machine in ("x86_64", "amd64"):
        kind, mode = "x86_64", None
    elif machine in ("aarch64", "arm64"):
        kind, mode = "arm64_sbsa", None
    else:
        kind, mode = "other", None
    # NVIDIA's CUDA repositories: sbsa for aarch64 servers and IGX in dGPU mode, arm64 for the
    # integrated GPU of a Jetson (or of an IGX in iGPU mode), whose CUDA is built for L4T.
    if machine in ("x86_64", "amd64"):
        repo_arch = "x86_64"
    elif machine in ("aarch64", "arm64"):
        repo_arch = "arm64" if mode == "igpu" else "sbsa"
    else:
        repo_arch = None
    return {"kind": kind, "mode": mode, "architecture": machine, "model": model, "tegra_release": tegra,
            "cuda_repo_arch": repo_arch}


NVIDIA_VENDOR = "0x10de"


def pci_gpus(base="/sys/bus/pci/devices"):
    """NVIDIA display controllers on the PCI bus (sysfs), whether or not a driver is loaded: the GPUs a
    driver could serve. [{slot, device, class}]; an Orin's integrated GPU is not a PCI device."""
    try:
        slots = sorted(os.listdir(base))
    except (IOError, OSError):
        return []
    found = []
    for slot in slots:
        vendor = (_read_first_line(os.path.join(base, slot, "vendor")) or "").lower()
        pci_class = (_read_first_line(os.path.join(base, slot, "class")) or "").lower()
        if vendor == NVIDIA_VENDOR and pci_class.startswith("0x03"):
            found.append({"slot": slot, "device": (_read_first_line(os.path.join(base, slot, "device")) or "").lower(),
                          "class": pci_class})
    return found


def find_nvcc(module, cuda_home):
    candidates = []
    if cuda_home:
        candidates.append(os.path.join(cuda_home, "bin", "nvcc"))
    candidates.append("/usr/local/cuda/bin/nvcc")
    versioned = sorted(glob.glob("/usr/local/cuda-*/bin/nvcc"), key=_version_key, reverse=True)
    candidates.extend(versioned)
    on_path = module.get_bin_path("nvcc")
    if on_path:
        candidates.append(on_path)
    candidates.append("/usr/bin/nvcc")
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def toolkit_info(module, cuda_home):
    nvcc = find_nvcc(module, cuda_home)
    info = {"nvcc": nvcc, "home": None, "version": None, "release": None, "min_driver": None}
    if not nvcc:
        return info
    info["home"] = os.path.dirname(os.path.dirname(nvcc))
    rc, out, err = module.run_command([nvcc, "--version"], environ_update={"LC_ALL": "C"})
    match = re.search(r"release (\d+\.\d+), V([0-9.]+)", out or "")
    if rc == 0 and match:
        info["version"], info["release"] = match.group(1), match.group(2)
        info["min_driver"] = min_driver_for(info["version"])
    else:
        module.warn("%s --version failed (rc=%s): %s" % (nvcc, rc, (err or out).strip()[:200]))
    return info


def find_nvidia_smi(module, path):
    if path:
        return path if os.path.isfile(path) else None
    return module.get_bin_path("nvidia-smi", opt_dirs=["/usr/bin", "/usr/local/bin", "/usr/lib/wsl/lib", "/usr/sbin"])


def query_gpus(module, smi):
    """Run the CSV query (with the compute_cap fallback). Returns (gpus, driver dict)."""
    driver = {"state": "ok", "version": None, "cuda_version": None, "nvidia_smi": smi, "rc": 0, "message": None}
    fields = list(QUERY_FIELDS)
    base = [smi, "--format=csv,noheader,nounits"]
    rc, out, err = module.run_command(base + ["--query-gpu=" + ",".join(fields)], environ_update={"LC_ALL": "C"})
    text = (out or "") + (err or "")
    if rc != 0 and "compute_cap" in text and "not a valid field" in text:
        fields.remove("compute_cap")
        rc, out, err = module.run_command(base + ["--query-gpu=" + ",".join(fields)], environ_update={"LC_ALL": "C"})
        text = (out or "") + (err or "")
    driver["rc"] = rc
    if rc != 0:
        driver["state"] = STATE_BY_RC.get(rc, "error")
        driver["message"] = text.strip()
        return [], driver
    try:
        gpus = parse_query(out, fields)
    except ValueError as exc:
        driver["state"], driver["message"] = "error", str(exc)
        return [], driver
    if not gpus:
        driver["state"], driver["message"] = "no_gpu", text.strip() or "nvidia-smi listed no GPU"
        return [], driver
    driver["version"] = gpus[0]["driver_version"]
    rc, out, err = module.run_command([smi], environ_update={"LC_ALL": "C"})
    banner_driver, banner_cuda = parse_banner(out if rc == 0 else "")
    driver["version"] = driver["version"] or banner_driver
    driver["cuda_version"] = banner_cuda or cuda_for_driver(driver["version"])
    return gpus, driver


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nvidia_smi=dict(type="path"),
            cuda_home=dict(type="path"),
            require_gpu=dict(type="bool", default=False),
            pci_devices_dir=dict(type="path", default="/sys/bus/pci/devices"),
        ),
        supports_check_mode=True,
    )
    smi = find_nvidia_smi(module, module.params["nvidia_smi"])
    if smi:
        gpus, driver = query_gpus(module, smi)
    else:
        gpus = []
        driver = {"state": "missing", "version": None, "cuda_version": None, "nvidia_smi": None, "rc": None}
        driver["message"] = "nvidia-smi not found%s" % (
            " at %s" % module.params["nvidia_smi"] if module.params["nvidia_smi"] else " on PATH"
        )
    driver["advice"] = ADVICE.get(driver["state"])
    result = {
        "changed": False,
        "gpus": gpus,
        "gpu_count": len(gpus),
        "driver": driver,
        "platform": detect_platform(gpus),
        "pci_gpus": pci_gpus(module.params["pci_devices_dir"]),
        "cuda_toolkit": toolkit_info(module, module.params["cuda_home"]),
    }
    if module.params["require_gpu"] and not gpus:
        module.fail_json(
            msg="No usable NVIDIA GPU: %s (%s). %s" % (driver["state"], driver["message"], driver["advice"]), **result
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
