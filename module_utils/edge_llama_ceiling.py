# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""The generation ceiling of a host: GPU memory bandwidth / model bytes. One table, one owner.

Decoding one token with llama.cpp reads every weight of the model once (batch 1), so a GPU cannot
generate faster than its memory bandwidth divided by the bytes of the model. `bandwidth()` looks the
GPU up by the name nvidia-smi reports (library/nvidia_gpu_info.py's `gpus[].name`); `assess()` gives the
bound, the figure it came from and, when there is none, why.

Each figure is NVIDIA's own (product page or datasheet, `source`). `checked` says how the figure was
checked when the table was written: against NVIDIA's text itself, or only against third-party pages that
quote the same number (NVIDIA's page could not be read then). Re-check a figure against `source` before
relying on it for a purchase.

Patterns are regular expressions, matched case-insensitively with re.search against the GPU name; the
first entry that matches wins, so the more specific come first (A100 80GB PCIe before A100 40GB, L40S
before L4, which \\b keeps apart anyway).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

GB = 1000 ** 3  # datasheets count bandwidth in decimal units
TB = 1000 ** 4

# "Orin (nvgpu)" is what nvidia-smi calls the integrated GPU of every Orin module (AGX Orin 204.8 GB/s,
# Orin NX 102.4 GB/s, Orin Nano 68 or 102 GB/s): the name alone does not say which. The entry therefore
# also needs the platform (library/nvidia_gpu_info.py's `platform`): an IGX Orin (its module is the
# Jetson AGX Orin Industrial) or a device-tree model that names an AGX Orin.
ORIN_AGX = re.compile(r"\b(AGX|IGX)\b", re.IGNORECASE)

TABLE = [
    {"pattern": r"\bH200\b", "label": "NVIDIA H200 (SXM / NVL, 141 GB HBM3e)", "bytes_per_second": 4.8 * TB,
     "source": "https://www.nvidia.com/en-us/data-center/h200/",
     "checked": "third-party pages quote 4.8 TB/s (NVIDIA's page not read)"},
    {"pattern": r"\bH100\b.*\bPCIe\b", "label": "NVIDIA H100 PCIe (80 GB HBM2e)", "bytes_per_second": 2.0 * TB,
     "source": "https://manuals.plus/m/d4b5dc21484df3ba8fbe84918338461cc074a3fcebcc13423eadc2b10ac3bda4",
     "checked": "NVIDIA's H100 PCIe product brief PB-11133-001_v02 read in this copy: 'memory bandwidth greater "
                "than 2,000 gigabytes per second' (the PDF on nvidia.com not read)"},
    {"pattern": r"\bH100\b.*\bHBM3\b", "label": "NVIDIA H100 SXM5 (80 GB HBM3)", "bytes_per_second": 3.35 * TB,
     "source": "https://www.nvidia.com/en-us/data-center/h100/",
     "checked": "third-party pages quote 3.35 TB/s (NVIDIA's page not read)"},
    {"pattern": r"\bA100\b(?=.*\b80GB\b)(?=.*\bPCIe\b)", "label": "NVIDIA A100 80GB PCIe",
     "bytes_per_second": 1935 * GB,
     "source": "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
               "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf",
     "checked": "third-party pages quote 1,935 GB/s (NVIDIA's datasheet not read)"},
    {"pattern": r"\bA100\b.*\b80GB\b", "label": "NVIDIA A100 80GB SXM4", "bytes_per_second": 2039 * GB,
     "source": "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
               "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf",
     "checked": "third-party pages quote 2,039 GB/s, one citing this datasheet (NVIDIA's datasheet not read)"},
    {"pattern": r"\bA100\b.*\b40GB\b", "label": "NVIDIA A100 40GB (PCIe or SXM4)", "bytes_per_second": 1555 * GB,
     "source": "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
               "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf",
     "checked": "third-party pages quote 1,555 GB/s, one citing this datasheet (NVIDIA's datasheet not read)"},
    {"pattern": r"\bRTX 6000 Ada\b", "label": "NVIDIA RTX 6000 Ada Generation (48 GB GDDR6)",
     "bytes_per_second": 960 * GB,
     "source": "https://www.nvidia.com/en-us/design-visualization/rtx-6000/",
     "checked": "a third-party page quotes 960 GB/s (NVIDIA's page not read)"},
    {"pattern": r"\bRTX A6000\b", "label": "NVIDIA RTX A6000 (48 GB GDDR6)", "bytes_per_second": 768 * GB,
     "source": "https://www.nvidia.com/en-us/design-visualization/rtx-a6000/",
     "checked": "third-party pages and the project's reference facts (A6000 768 GB/s / 41.4 GB = 18.5 t/s, "
                "measured 76-79% of it) quote 768 GB/s (NVIDIA's page not read)"},
    {"pattern": r"\bL40S\b", "label": "NVIDIA L40S (48 GB GDDR6)", "bytes_per_second": 864 * GB,
     "source": "https://www.nvidia.com/en-us/data-center/l40s/",
     "checked": "third-party pages quote 864 GB/s, some copying NVIDIA's datasheet table (NVIDIA's page not read)"},
    {"pattern": r"\bL4\b", "label": "NVIDIA L4 (24 GB GDDR6)", "bytes_per_second": 300 * GB,
     "source": "https://www.nvidia.com/en-us/data-center/l4/",
     "checked": "third-party pages quote 300 GB/s (NVIDIA's page not read)"},
    {"pattern": r"^Orin \(nvgpu\)$", "label": "Jetson AGX Orin / IGX Orin integrated GPU (256-bit LPDDR5)",
     "bytes_per_second": 204.8 * GB, "platform": "agx_orin",
     "source": "https://www.nvidia.com/en-us/autonomous-machines/embedded-systems/jetson-orin/",
     "checked": "the project's reference facts (IGX Orin: 64 GB LPDDR5 at 204.8 GB/s); no NVIDIA page read"},
]


def _platform_is_agx_orin(platform):
    platform = platform or {}
    if platform.get("kind") == "igx_orin":
        return True
    return bool(ORIN_AGX.search("%s" % (platform.get("model") or "")))


def bandwidth(gpu_name, platform=None):
    """{bytes_per_second, source, matched, label, checked} for a GPU name as nvidia-smi reports it, or None.

    `matched` is the table's pattern. `platform` is nvidia_gpu_info's `platform` (kind, model); only the
    Orin entry needs it."""
    name = ("%s" % (gpu_name or "")).strip()
    if not name:
        return None
    for entry in TABLE:
        if not re.search(entry["pattern"], name, re.IGNORECASE):
            continue
        if entry.get("platform") == "agx_orin" and not _platform_is_agx_orin(platform):
            return None
        return {"bytes_per_second": float(entry["bytes_per_second"]), "source": entry["source"],
                "matched": entry["pattern"], "label": entry["label"], "checked": entry["checked"]}
    return None


def unknown_reason(gpu_name, platform=None):
    """Why `bandwidth()` has no figure for a GPU, in words."""
    name = ("%s" % (gpu_name or "")).strip()
    if re.search(r"^Orin \(nvgpu\)$", name, re.IGNORECASE):
        model = (platform or {}).get("model") or "unknown"
        return ("no bandwidth known for GPU %s on platform %r: every Orin module reports this name "
                "(AGX Orin 204.8 GB/s, Orin NX and Orin Nano less), and the platform is not an AGX or IGX Orin"
                % (name, model))
    return "no bandwidth known for GPU %s" % name


def assess(gpu_names, model_bytes, platform=None):
    """The generation ceiling of a host, with what it rests on.

    Returns {ceiling, bytes_per_second, source, matched, gpu, note}; `ceiling` (tokens/s) is None, with
    `note` saying why, when there is no GPU, a GPU not in the table, or no model size.

    Several GPUs: llama.cpp's default split (--split-mode layer) puts whole layers on each GPU, and one
    token passes through them one after the other, each reading its share of the weights. The time of a
    token is then the sum of share / bandwidth, never less than model bytes / the fastest GPU's
    bandwidth; with equal GPUs exactly that. So the bound reported is the fastest GPU's bandwidth /
    model bytes, and the note says the GPUs' bandwidths are not added up (--split-mode row reads the
    GPUs in parallel and could exceed it)."""
    names = [("%s" % n).strip() for n in (gpu_names or []) if ("%s" % n).strip()]
    result = {"ceiling": None, "bytes_per_second": None, "source": None, "matched": None, "gpu": None,
              "note": ""}
    if not names:
        result["note"] = "no ceiling known: CPU only (no NVIDIA GPU reported)"
        return result
    found = []
    for name in names:
        figure = bandwidth(name, platform)
        if figure is None:
            result["note"] = unknown_reason(name, platform)
            return result
        found.append((name, figure))
    name, figure = max(found, key=lambda pair: pair[1]["bytes_per_second"])
    result.update(bytes_per_second=figure["bytes_per_second"], source=figure["source"], matched=figure["matched"],
                  gpu=name)
    notes = []
    if len(names) > 1:
        notes.append("%d GPUs, layer split: one token passes through them in turn, so the bound is one GPU's "
                     "bandwidth (%s) / model bytes, not the sum" % (len(names), name))
    if not model_bytes or model_bytes <= 0:
        notes.append("no ceiling known: the model's size is unknown")
        result["note"] = "; ".join(notes)
        return result
    result["ceiling"] = figure["bytes_per_second"] / float(model_bytes)
    result["note"] = "; ".join(notes)
    return result


def ceiling(gpu_names, model_bytes, platform=None):
    """Tokens/s that generation cannot exceed (see assess()), or None when unknown."""
    return assess(gpu_names, model_bytes, platform)["ceiling"]
