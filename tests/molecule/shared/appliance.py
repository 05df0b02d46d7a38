"""What the tests know about a molecule host, from the scenario's inventory (not from what the roles wrote).

The verifier runs in tests/molecule/shared with MOLECULE_SCENARIO_DIRECTORY set; a host's settings are
its host_vars file there (missing file or key: the role's defaults).
"""

import os
from pathlib import Path

import yaml

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def name(host):
    """The container (= inventory) name of a testinfra podman host."""
    return host.backend.name


def host_vars(host):
    return host_vars_of(name(host))


def host_vars_of(hostname):
    """The scenario's host_vars/<hostname>.yml (empty when there is none)."""
    scenario = os.environ.get("MOLECULE_SCENARIO_DIRECTORY")
    if not scenario:
        return {}
    path = Path(scenario) / "host_vars" / ("%s.yml" % hostname)
    settings = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    for key in ("services_openai_api_key", "services_chat_username", "services_chat_password"):
        assert "{{" not in str(settings.get(key, "")), \
            "%s: %s is a template; the tests need the literal test value" % (path, key)
    return settings


def exposed(host):
    """Whether the host has the LAN switch on (services_expose_on_lan)."""
    return bool(host_vars(host).get("services_expose_on_lan", False))


def api_key(host):
    """The key clients send: the host's services_openai_api_key, or a dummy the SDK insists on."""
    return host_vars(host).get("services_openai_api_key") or "unused"


def chat_login(host):
    """(user, password) of the chat app's login page, or None when it has none."""
    settings = host_vars(host)
    if not settings.get("services_chat_password"):
        return None
    return settings.get("services_chat_username", "edge-llama"), settings["services_chat_password"]
