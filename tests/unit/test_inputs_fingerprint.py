"""The inputs' fingerprint (module_utils/edge_llama_inputs.py, returned by action_ruless/edge_llama_inputs.py):
what decides whether a re-run has nothing to do (edge_llama_last_run compares it with the one the last
complete run recorded)."""

import shutil
from pathlib import Path

from ansible.module_utils import edge_llama_inputs as rules

REPO = Path(__file__).resolve().parents[2]

VALUES = {"services_llama_ctx_size": 4096, "services_openai_api_key": "a-secret-key",
          "llama_cpp_version": "e519621", "edge_llama_serial": [1, "25%"], "edge_llama_max_fail_percentage": 0}


def test_the_same_inputs_give_the_same_fingerprint_and_any_setting_another():
    one = rules.fingerprint(VALUES, [], "code")
    assert one == rules.fingerprint(dict(reversed(list(VALUES.items()))), [], "code")
    assert len(one) == 64 and "a-secret-key" not in one
    assert rules.fingerprint(dict(VALUES, services_llama_ctx_size=2048), [], "code") != one
    assert rules.fingerprint(dict(VALUES, services_openai_api_key="another-key"), [], "code") != one
    assert rules.fingerprint(VALUES, [], "other code") != one
    assert rules.fingerprint(VALUES, ["services_llama_alias"], "code") != one


def test_how_a_run_goes_is_not_an_input():
    one = rules.fingerprint(VALUES, [], "code")
    assert rules.fingerprint(dict(VALUES, edge_llama_serial=[1, 3], edge_llama_max_fail_percentage=50,
                                   edge_llama_connect_timeout=10), [], "code") == one


def test_the_code_digest_follows_every_file_of_the_code_and_nothing_else(tmp_path):
    for top in rules.CODE:
        source = REPO / top
        if source.is_dir():
            shutil.copytree(source, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / top)
    first = rules.code_digest(str(tmp_path))
    assert first == rules.code_digest(str(REPO))  # the same files give the same digest wherever they are
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "anything.py").write_text("x = 1\n")
    (tmp_path / "roles" / "services" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "roles" / "services" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    rules._code_digest.clear()
    assert rules.code_digest(str(tmp_path)) == first
    template = tmp_path / "roles" / "services" / "templates" / "edge-llama-server.service.j2"
    template.write_text(template.read_text() + "# one more line\n")
    rules._code_digest.clear()
    assert rules.code_digest(str(tmp_path)) != first
