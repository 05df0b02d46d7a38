"""filter_plugins/edge_llama.py release_report: the services role's report of a host, one shape for
every outcome (the summary callback's row reads it)."""

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "filter_plugins" / "edge_llama.py"
spec = importlib.util.spec_from_file_location("edge_llama_filters", PATH)
filters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(filters)
report = filters.FilterModule().filters()["release_report"]

NEW = {"commit": "bcef6c509b0d" + "0" * 28, "model_path": "/media/m2/models/SmolLM2-135M-Instruct.Q4_1.gguf"}
OLD = {"commit": "e519621010cac02c6fec0f8f3b16cda0591042c0", "model_path": "/media/m2/models/tiny-llama-2l.gguf"}
KEYS = ["commit", "model", "previous_commit", "previous_model", "reason", "state", "tokens_per_second"]


def test_an_upgrade_names_both_releases_by_commit_and_model_file():
    row = report(NEW, "upgraded", previous=OLD, tokens_per_second=41.5)
    assert row == {"state": "upgraded", "commit": NEW["commit"], "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
                   "tokens_per_second": 41.5, "previous_commit": OLD["commit"],
                   "previous_model": "tiny-llama-2l.gguf", "reason": ""}


def test_a_first_deployment_has_no_previous_release():
    row = report(NEW, "deployed", previous={})
    assert row["previous_commit"] == "" and row["previous_model"] == "" and sorted(row) == KEYS


def test_a_rollback_says_what_was_refused_and_what_was_put_back():
    row = report(OLD, "rolled_back", previous=OLD, reason="the gate failed", tokens_per_second=7.0, wanted=NEW,
                 restored=["/etc/systemd/system/edge-llama-server.service"])
    assert row["commit"] == OLD["commit"] and row["wanted_commit"] == NEW["commit"]
    assert row["wanted_model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert row["restored"] == ["/etc/systemd/system/edge-llama-server.service"]
    assert row["reason"] == "the gate failed"


@pytest.mark.parametrize("release", [None, {}])
def test_nothing_known_gives_empty_fields_not_an_error(release):
    row = report(release, "failed", previous=None, reason="no build")
    assert row["commit"] == "" and row["model"] == "" and row["state"] == "failed" and row["tokens_per_second"] is None


@pytest.mark.parametrize("host, name", [
    ("edge-llama-orin-a", "edge-llama-orin-a"),
    ("orin.site.example:2", "orin.site.example:2"),
    ("orin a/b", "orin_a_b"),
    ("lab-ø", "lab-_"),
])
def test_haproxy_server_name_keeps_what_haproxy_takes_and_replaces_the_rest(host, name):
    """The gateway names its servers with it and the services role drains them by the same name."""
    assert filters.FilterModule().filters()["haproxy_server_name"](host) == name
