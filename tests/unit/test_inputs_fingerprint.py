"""action_plugins/edge_llama_inputs.py's fingerprint: what decides whether a re-run has nothing to do
(edge_llama_last_run compares it with the one the last complete run recorded)."""

import importlib.util
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("edge_llama_inputs_action",
                                               REPO / "action_plugins" / "edge_llama_inputs.py")
plugin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plugin)

VALUES = {"services_llama_ctx_size": 4096, "services_openai_api_key": "a-secret-key",
          "llama_cpp_version": "e519621", "edge_llama_serial": [1, "25%"], "edge_llama_max_fail_percentage": 0}


def test_the_same_inputs_give_the_same_fingerprint_and_any_setting_another():
    one = plugin.fingerprint(VALUES, [], "code")
    assert one == plugin.fingerprint(dict(reversed(list(VALUES.items()))), [], "code")
    assert len(one) == 64 and "a-secret-key" not in one
    assert plugin.fingerprint(dict(VALUES, services_llama_ctx_size=2048), [], "code") != one
    assert plugin.fingerprint(dict(VALUES, services_openai_api_key="another-key"), [], "code") != one
    assert plugin.fingerprint(VALUES, [], "other code") != one
    assert plugin.fingerprint(VALUES, ["services_llama_alias"], "code") != one


def test_how_a_run_goes_is_not_an_input():
    one = plugin.fingerprint(VALUES, [], "code")
    assert plugin.fingerprint(dict(VALUES, edge_llama_serial=[1, 3], edge_llama_max_fail_percentage=50,
                                   edge_llama_connect_timeout=10), [], "code") == one


def test_the_code_digest_follows_every_file_of_the_code_and_nothing_else(tmp_path):
    for top in plugin.CODE:
        source = REPO / top
        if source.is_dir():
            shutil.copytree(source, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / top)
    first = plugin.code_digest(str(tmp_path))
    assert first == plugin.code_digest(str(REPO))  # the same files give the same digest wherever they are
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "anything.py").write_text("x = 1\n")
    (tmp_path / "roles" / "services" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "roles" / "services" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    plugin._code_digest.clear()
    assert plugin.code_digest(str(tmp_path)) == first
    template = tmp_path / "roles" / "services" / "templates" / "edge-llama-server.service.j2"
    template.write_text(template.read_text() + "# one more line\n")
    plugin._code_digest.clear()
    assert plugin.code_digest(str(tmp_path)) != first
