"""The services role's safety checks on its settings, run for real by ansible-playbook (check mode,
local connection; the role's preflight tasks only): loopback by default, the LAN only with the one
switch, and then only with an API key and a chat login."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
KEY = "k" * 24
PASSWORD = "p" * 14


def preflight(tmp_path, **settings):
    play = [{
        "hosts": "appliance", "gather_facts": False,
        "tasks": [{"name": "The services role's checks",
                   "ansible.builtin.include_role": {"name": "services", "tasks_from": "preflight.yml"}}],
    }]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(dict({
        "services_llama_server_binary": "/opt/edge-llama/llama.cpp/current/server",
        "services_model_path": "/media/m2/models/model.gguf"}, **settings)))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        ["ansible-playbook", "-i", "appliance,", "-c", "local", "--check", "-e", "@" + str(tmp_path / "vars.yml"),
         "-e", "ansible_python_interpreter=" + str(Path(os.sys.executable)), str(tmp_path / "play.yml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("settings", [
    {},
    {"services_expose_on_lan": True, "services_openai_api_key": KEY, "services_chat_password": PASSWORD},
    {"services_openai_host": "127.0.0.2", "services_llama_host": "localhost"},
], ids=["defaults", "lan-with-key-and-login", "other-loopback-addresses"])
def test_safe_settings_pass(tmp_path, settings):
    run = preflight(tmp_path, **settings)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("settings,needle", [
    ({"services_expose_on_lan": True}, "needs services_openai_api_key"),
    ({"services_expose_on_lan": True, "services_openai_api_key": "short", "services_chat_password": PASSWORD},
     "16 characters or more"),
    ({"services_expose_on_lan": True, "services_openai_api_key": KEY}, "services_chat_password of 12"),
    ({"services_openai_host": "0.0.0.0"}, "must be loopback addresses"),
    ({"services_chat_host": "192.168.1.20"}, "must be loopback addresses"),
    ({"services_llama_host": "0.0.0.0", "services_expose_on_lan": True, "services_openai_api_key": KEY,
      "services_chat_password": PASSWORD}, "must stay on loopback"),
], ids=["lan-without-anything", "short-key", "no-password", "openai-on-all", "chat-on-lan-ip", "llama-on-lan"])
def test_unsafe_settings_fail_with_a_clear_message(tmp_path, settings, needle):
    run = preflight(tmp_path, **settings)
    assert run.returncode != 0
    out = " ".join((run.stdout + run.stderr).split())
    assert needle in out, out[-3000:]
    assert "Traceback" not in out
    for secret in (KEY, PASSWORD):  # the messages name the settings, never their values
        assert secret not in out
