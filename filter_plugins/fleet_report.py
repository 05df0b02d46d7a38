# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""Filters of playbooks/fleet_report.yml: one row per host, and the table as text and as markdown."""

from __future__ import annotations

import os

DOCUMENTATION = r"""
name: fleet_report_row
short_description: The fleet report's row of one host, from what it measured or why it could not
description:
  - Keys C(host), C(gpu), C(commit) (12 characters), C(model) (file name), C(prompt_tps), C(generation_tps),
    C(ceiling), C(ratio), C(source), C(state) (C(measured), C(not_serving), C(failed), C(no_answer)) and C(note);
    a measured row also has C(model_bytes), C(bandwidth_bytes_per_second) and C(runs) (each run's figures).
positional: _input
options:
  _input:
    description: The host's name.
    type: str
    required: true
  gpu:
    description: C(nvidia_gpu_info)'s result.
    type: dict
  release:
    description: The serving release ({} when none).
    type: dict
  benchmark:
    description: C(llm_benchmark)'s result, successful or failed.
    type: dict
"""

COLUMNS = [("host", "host"), ("gpu", "GPU"), ("commit", "commit"), ("prompt_tps", "prompt t/s"),
           ("generation_tps", "gen t/s"), ("ceiling", "ceiling t/s"), ("ratio", "ratio"), ("note", "note")]


def gpu_text(gpu):
    """'NVIDIA RTX A6000', '9x NVIDIA RTX A6000', 'NVIDIA RTX A6000 + NVIDIA L40S' or 'none (CPU only)'."""
    names = [g.get("name") for g in (gpu or {}).get("gpus") or [] if isinstance(g, dict) and g.get("name")]
    if not names:
        return "none (CPU only)"
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else "%dx %s" % (len(names), names[0])
    return " + ".join(names)


def fleet_report_row(host, gpu=None, release=None, benchmark=None):
    release = release or {}
    row = {"host": host, "gpu": gpu_text(gpu), "commit": ("%s" % (release.get("commit") or ""))[:12],
           "model": os.path.basename("%s" % (release.get("model_path") or "")), "prompt_tps": None,
           "generation_tps": None, "ceiling": None, "ratio": None, "source": None}
    if not release:
        row.update(state="not_serving",
                   note="serves nothing: no release recorded (ansible_local.edge_llama_release)")
        return row
    benchmark = benchmark or {}
    if benchmark.get("failed") or "generation_tokens_per_second" not in benchmark:
        row.update(state="failed", note="benchmark failed: %s" % (benchmark.get("msg") or "no result"))
        return row
    row.update(state="measured", prompt_tps=benchmark.get("prompt_tokens_per_second"),
               generation_tps=benchmark.get("generation_tokens_per_second"), ceiling=benchmark.get("ceiling"),
               ratio=benchmark.get("ratio"), source=(benchmark.get("bandwidth") or {}).get("source"),
               note=benchmark.get("note") or "", model_bytes=benchmark.get("model_bytes"),
               bandwidth_bytes_per_second=(benchmark.get("bandwidth") or {}).get("bytes_per_second"),
               runs=benchmark.get("runs") or [])
    return row


def fleet_report_rows(rows, hosts):
    """Rows in the order of `hosts`; a host that left no row (unreachable, failed before its row) gets one."""
    found = {row.get("host"): row for row in rows or [] if isinstance(row, dict) and row.get("host")}
    result = []
    for host in hosts or []:
        result.append(found.get(host) or {
            "host": host, "gpu": "", "commit": "", "model": "", "prompt_tps": None, "generation_tps": None,
            "ceiling": None, "ratio": None, "source": None, "state": "no_answer",
            "note": "no result: the host did not answer or failed before the benchmark"})
    return result


def _cell(value, key=""):
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "%.2f" % value if key == "ratio" else "%.1f" % value
    return "%s" % value


def fleet_report_lines(rows):
    """The table as aligned text lines (for ansible.builtin.debug msg)."""
    table = [[title for _key, title in COLUMNS]] + [[_cell(row.get(key), key) for key, _title in COLUMNS]
                                                    for row in rows or []]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS) - 1)]
    lines = []
    for number, line in enumerate(table):
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        lines.append("  ".join(cells) + "  " + line[-1])
        if number == 0:
            lines.append("  ".join("-" * width for width in widths) + "  " + "-" * len(line[-1]))
    return [line.rstrip() for line in lines]


def fleet_report_markdown(rows, date=""):
    """The report as markdown: the table, then the bandwidth sources used."""
    out = ["# Fleet performance report%s" % ((" " + date) if date else ""), "",
           "Prompt and generation speed measured by llm_benchmark (median of its runs); ceiling = GPU memory "
           "bandwidth / model bytes; ratio = generation speed / ceiling (see docs/fleet-report.md).", "",
           "| " + " | ".join(title for _key, title in COLUMNS) + " |",
           "|" + "|".join("---" for _column in COLUMNS) + "|"]
    for row in rows or []:
        cells = [_cell(row.get(key), key).replace("|", "\\|") for key, _title in COLUMNS]
        out.append("| " + " | ".join(cells) + " |")
    sources = sorted({(row.get("gpu"), row.get("source")) for row in rows or [] if row.get("source")})
    if sources:
        out += ["", "Bandwidth sources:", ""] + ["- %s: %s" % (gpu, source) for gpu, source in sources]
    return "\n".join(out) + "\n"


class FilterModule:
    def filters(self):
        return {"fleet_report_row": fleet_report_row, "fleet_report_rows": fleet_report_rows,
                "fleet_report_lines": fleet_report_lines, "fleet_report_markdown": fleet_report_markdown}
