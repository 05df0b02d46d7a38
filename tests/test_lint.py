"""Static checks: syntax, ansible-lint (production profile), yamllint, ruff, and role arguments.

Every role input must be in both defaults/main.yml and meta/argument_specs.yml (the
prometheus-community habit), so a typo in an inventory fails before anything changes.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "defaults" / "main.yml").is_file())
SHARED = "edge_llama_defaults"
SHARED_NAMES = set(yaml.safe_load((REPO / "roles" / SHARED / "defaults" / "main.yml").read_text()))


def run(*cmd):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, "%s failed (rc %d):\n%s\n%s" % (
        " ".join(cmd), proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def test_site_syntax_check_production_inventory():
    run("ansible-playbook", "-i", "inventory/production", "site.yml", "--syntax-check")


def test_site_syntax_check_local_inventory():
    run("ansible-playbook", "-i", "inventory/local", "site.yml", "--syntax-check")


def test_ansible_lint_production_profile():
    out = run("ansible-lint", "--profile", "production", "--offline", "-q")
    assert "error" not in out.lower() or "0 failure" in out.lower()


def test_yamllint():
    run("yamllint", "--strict", ".")


def test_ruff():
    run("ruff", "check", "library", "module_utils", "action_plugins", "callback_plugins", "filter_plugins",
        "tests", "roles", "tools")


def test_variable_reference_is_current():
    """docs/variables.md is written from the argument specs; a spec changed without it fails here."""
    out = run(sys.executable, "tools/variables_reference.py", "--check")
    assert "is current" in out


def test_readme_is_short_with_a_table_of_contents():
    """What a user needs first; the depth lives in docs/, one file per topic, each linked from it."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode("utf-8")) <= 10 * 1024, len(readme.encode("utf-8"))
    assert "## Contents" in readme
    for doc in sorted((REPO / "docs").glob("*.md")):
        if doc.name != "CONVENTIONS.md":
            assert "docs/%s" % doc.name in readme, "README does not link docs/%s" % doc.name
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / target).exists(), target


@pytest.mark.parametrize("role", ROLES)
def test_role_arguments_match_defaults(role):
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options), "defaults and argument_specs of %s differ" % role
    # The shared defaults keep the name of the role that acts on each (model_filename, ...); no other role
    # may define one of them again.
    prefixes = [other + "_" for other in ROLES if other != SHARED] if role == SHARED else [role + "_"]
    for name in defaults:
        assert name.startswith(tuple(prefixes)), "%s: public variable %s lacks the role prefix" % (role, name)
        assert options[name].get("description"), "%s: %s has no description" % (role, name)
        assert role == SHARED or name not in SHARED_NAMES, "%s: %s is already in roles/%s" % (role, name, SHARED)


def test_every_role_that_reads_a_shared_default_depends_on_their_home():
    for role in ROLES:
        if role == SHARED:
            continue
        text = "\n".join(line for sub in ("tasks", "defaults", "vars", "templates")
                         for p in sorted((REPO / "roles" / role / sub).glob("*")) if p.is_file()
                         for line in p.read_text().splitlines() if not line.lstrip().startswith("#"))
        reads = sorted(name for name in SHARED_NAMES if re.search(r"\b%s\b" % name, text))
        meta = yaml.safe_load((REPO / "roles" / role / "meta" / "main.yml").read_text())
        deps = [d["role"] if isinstance(d, dict) else d for d in meta.get("dependencies") or []]
        assert not reads or SHARED in deps, "%s reads %s but does not depend on %s" % (role, reads, SHARED)
