# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""Check every public setting of edge-llama's roles on one host, before anything changes.

Runs on the controller. For each role named in `roles` it reads the role's meta/argument_specs.yml and
defaults/main.yml, takes the variable's value as the host would see it in that role (inventory, -e, or
the role's default, templated), and checks it with module_utils/edge_llama_inputs.py: types as Ansible
converts them ("8080" and "true" from -e are fine; "abc" for a port is not), ranges, distinct ports,
file names, repo ids, commits, URLs, addresses. Fails with one line per problem, each naming the
variable, the problem and a good value; secrets' values are never shown. Reads nothing on the host.
Returns `binds`: the ports the services will bind and at which address (for port_owners_info), and
`fingerprint`: one SHA-256 of every checked setting's value (secrets included, only hashed) and of the
code that applies them (roles, modules, plugins, playbooks of this checkout), which the run records on
each host it completes (edge_llama_last_run) and the next run compares, with `last_run_inputs`: what that
comparison needs besides (the llama.cpp repository and version, whether the model's SHA-256 is pinned,
the toolchain's packages). Run-control settings (batches, failure limit, connection timeout) are left out.

  - name: Check the settings
    edge_llama_inputs:
      roles: [preflight, nvidia_cuda, toolchain, llama_cpp, model, services]

The settings of roles/edge_llama_defaults (the defaults several roles read) are always checked, first.
"""

from __future__ import annotations

import importlib
import os

import ansible.module_utils
from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

# The rules live in module_utils/ (one home for them); Ansible resolves the configured module_utils
# directories for modules it ships to hosts, not for controller-side plugins: add them here.
for _path in C.DEFAULT_MODULE_UTILS_PATH or []:
    if os.path.isdir(_path) and _path not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(_path)
_rules = importlib.import_module("ansible.module_utils.edge_llama_inputs")


SHARED_DEFAULTS = "edge_llama_defaults"
# The checkout's root (this file's parent's parent): its code is part of the fingerprint.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ActionModule(ActionBase):
    _supports_check_mode = True
    TRANSFERS_FILES = False

    def _role_dir(self, role, task_vars):
        candidates = list(C.DEFAULT_ROLES_PATH or [])
        playbook_dir = task_vars.get("playbook_dir")
        if playbook_dir:
            candidates += [os.path.join(playbook_dir, "roles"), os.path.join(playbook_dir, "..", "roles")]
        for base in candidates:
            path = os.path.join(os.path.expanduser(str(base)), role)
            if os.path.isfile(os.path.join(path, "meta", "argument_specs.yml")):
                return path
        raise AnsibleError("edge_llama_inputs: role %s not found in %s" % (role, ", ".join(map(str, candidates))))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        roles = self._task.args.get("roles") or []
        extra_ports = self._task.args.get("extra_ports") or []
        host = task_vars.get("inventory_hostname", "?")
        values, specs, unresolved = {}, {}, []
        # The settings several roles read have their defaults in one role (edge_llama_defaults), which every
        # role that reads them depends on: it is checked first, and its defaults are seen by the others'.
        roles = [SHARED_DEFAULTS] + [role for role in roles if role != SHARED_DEFAULTS]
        shared = {}
        for role in roles:
            path = self._role_dir(role, task_vars)
            options = self._loader.load_from_file(os.path.join(path, "meta", "argument_specs.yml"))
            options = options["argument_specs"]["main"].get("options") or {}
            defaults = self._loader.load_from_file(os.path.join(path, "defaults", "main.yml"),
                                                   trusted_as_template=True) or {}
            if role == SHARED_DEFAULTS:
                shared = defaults
            defaults = dict(shared, **defaults)
            templar = self._templar.copy_with_new_env(available_variables=dict(defaults, **task_vars))
            for name, spec in options.items():
                raw = task_vars[name] if name in task_vars else defaults.get(name, spec.get("default"))
                try:
                    values[name] = templar.template(raw)
                except Exception as exc:  # a default that needs what only a later role knows
                    unresolved.append("%s (%s)" % (name, type(exc).__name__))
                    continue
                specs[name] = spec
        # The run's own switches, where set (-e or inventory): checked, kept out of the fingerprint.
        for name, spec in _rules.RUN_CONTROL_SPECS.items():
            if name in task_vars:
                try:
                    values[name] = self._templar.template(task_vars[name])
                except Exception as exc:  # noqa: BLE001 (reported like an unresolved setting)
                    unresolved.append("%s (%s)" % (name, type(exc).__name__))
                    continue
                specs[name] = spec
        problems, typed = _rules.check(values, specs, extra_ports=extra_ports)
        result["changed"] = False
        result["checked"] = sorted(specs)
        result["unresolved"] = unresolved
        result["problems"] = [dict(p) for p in problems]
        # What the services will bind, for the port check on the host (no secrets in it).
        result["binds"] = [] if problems else _rules.binds(typed, extra_ports)
        result["fingerprint"] = _rules.fingerprint(values, [u.split(" ")[0] for u in unresolved],
                                                   _rules.code_digest(ROOT))
        result["last_run_inputs"] = {
            "llama_cpp_repo_url": values.get("llama_cpp_repo_url"),
            "llama_cpp_version": values.get("llama_cpp_version"),
            "model_pinned": bool(values.get("model_sha256")),
            "toolchain_packages": [str(p) for p in values.get("toolchain_packages") or []],
        }
        if problems:
            result["failed"] = True
            result["msg"] = "%s: %d setting%s refused before any change:\n%s" % (
                host, len(problems), "" if len(problems) == 1 else "s",
                "\n".join("  - " + p.line() for p in problems))
        else:
            result["msg"] = "%s: %d settings checked" % (host, len(specs))
        return result
