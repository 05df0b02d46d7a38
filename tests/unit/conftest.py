"""Helpers to run the modules in library/ the way Ansible does, in-process."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(REPO / "library"))

import ansible.module_utils  # noqa: E402
from ansible.module_utils import basic  # noqa: E402

# The project's module_utils/, importable as ansible.module_utils.NAME as Ansible ships it to the hosts
# (ansible.cfg: module_utils = module_utils).
ansible.module_utils.__path__.append(str(REPO / "module_utils"))
from ansible.module_utils.common import warnings as _warnings  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402


class ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


def _with_warnings(result):
    warnings = list(_warnings.get_warning_messages())
    if warnings:
        result["warnings"] = warnings
    _warnings._global_warnings.clear()
    return result


def _exit(self, **kwargs):
    kwargs.setdefault("changed", False)
    raise ModuleExit(_with_warnings(kwargs))


def _fail(self, msg, **kwargs):
    kwargs["failed"] = True
    kwargs["msg"] = msg
    raise ModuleExit(_with_warnings(kwargs))


@pytest.fixture
def run_module(monkeypatch):
    """run_module(module, args, check_mode=False, diff=False) -> result dict (with 'failed' on failure)."""
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail)

    def runner(module, args, check_mode=False, diff=False):
        args = dict(args)
        args["_ansible_check_mode"] = check_mode
        args["_ansible_diff"] = diff
        with patch_module_args(args):
            try:
                module.main()
            except ModuleExit as exc:
                # What Ansible would print must serialise.
                json.dumps(exc.result)
                return exc.result
        raise AssertionError("module returned without exit_json/fail_json")

    return runner
