#!/usr/bin/env python3
"""Write docs/variables.md, the reference of every role variable, from the roles' meta/argument_specs.yml.

The argument specs are what Ansible checks a play against, so the reference cannot drift from them:
tests/test_lint.py runs this script with --check, which fails when docs/variables.md is not what it
would write. After changing a spec: python tools/variables_reference.py
"""

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "variables.md"
# In the order a run meets them, after the settings several roles share (roles/edge_llama_defaults).
ROLES = ["edge_llama_defaults", "preflight", "nvidia_cuda", "toolchain", "llama_cpp", "model", "metrics", "services",
         "hf_mirror", "monitoring", "gateway"]


def markup(text):
    """Ansible's documentation markup (C(), O(), I(), B(), U(), L()) as Markdown."""
    text = " ".join(str(text).split())
    text = re.sub(r"[CO]\(([^()]*(?:\([^()]*\)[^()]*)*)\)", r"`\1`", text)
    text = re.sub(r"I\(([^)]*)\)", r"*\1*", text)
    text = re.sub(r"B\(([^)]*)\)", r"**\1**", text)
    text = re.sub(r"U\(([^)]*)\)", r"<\1>", text)
    text = re.sub(r"L\(([^,]*),\s*([^)]*)\)", r"[\1](\2)", text)
    return text.replace("|", "\\|")


def paragraphs(value):
    items = value if isinstance(value, list) else [value] if value else []
    return [markup(item) for item in items]


def default(spec):
    if "default" not in spec:
        return "*required*" if spec.get("required") else ""
    value = spec["default"]
    if isinstance(value, str):
        return "`%s`" % value.replace("|", "\\|") if value else '`""`'
    if isinstance(value, bool):
        return "`%s`" % str(value).lower()
    return "`%s`" % json.dumps(value).replace("|", "\\|")


def kind(spec):
    text = spec.get("type", "str")
    if text == "list" and spec.get("elements"):
        text = "list of %s" % spec["elements"]
    if spec.get("choices"):
        text += ": " + ", ".join("`%s`" % c for c in spec["choices"])
    return text


def render():
    lines = [
        "# Role variables",
        "",
        "<!-- Written by tools/variables_reference.py from roles/*/meta/argument_specs.yml; do not edit. -->",
        "",
        "Every input of every role, from the argument specs Ansible checks each play against. Before any",
        "host changes, `playbooks/preflight.yml` checks all of them on the controller as they arrive from the",
        "inventory or `-e` (types, ranges, distinct ports, names, URLs) and names each one that is wrong.",
        "Set them in `inventory/<site>/group_vars/` (see `inventory/production/`), or per host in `host_vars/`.",
        "",
    ]
    lines += ["- [%s](#%s)" % (role, role) for role in ROLES]
    for role in ROLES:
        spec = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
        main = spec["argument_specs"]["main"]
        lines += ["", "## %s" % role, "", "**%s**" % markup(main.get("short_description", "")), ""]
        for para in paragraphs(main.get("description")):
            lines += [para, ""]
        lines += ["| variable | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, option in main.get("options", {}).items():
            meaning = " ".join(paragraphs(option.get("description")))
            if option.get("no_log"):
                meaning += " (secret: never logged)"
            lines.append("| `%s` | %s | %s | %s |" % (name, kind(option), default(option), meaning))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/variables.md is not current")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                       str(OUT), "generated"))
            print("docs/variables.md is not current: run python tools/variables_reference.py", file=sys.stderr)
            return 1
        print("docs/variables.md is current (%d roles)" % len(ROLES))
        return 0
    OUT.write_text(text)
    print("wrote %s (%d bytes)" % (OUT.relative_to(REPO), len(text)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
