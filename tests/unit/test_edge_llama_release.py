"""The release owner: module_utils/edge_llama_release.py (plan, commit, reject, prune) and the
edge_llama_release module on a real record file and real directories."""

import json

import pytest

import edge_llama_release as module
from ansible.module_utils import edge_llama_release as release

NOW = "2026-12-02T12:00:00Z"


def rel(name, model="m.gguf", **extra):
    build = "/opt/edge-llama/llama.cpp/builds/%s" % name
    entry = {"commit": name, "build_dir": build, "server_binary": build + "/build/bin/llama-server",
             "model_path": "/media/m2/models/" + model, "model_sha256": "", "chat_template": "chatml",
             "artifacts": [build, "/media/m2/models/" + model, "/media/m2/models/.edge-llama/%s.json" % model]}
    entry.update(extra)
    return entry


def test_plan_first_release_switches():
    assert release.plan(None, rel("a")) == {"serving": {}, "wanted": rel("a"), "switching": True, "first": True}


def test_plan_same_build_model_and_template_is_no_switch_even_with_other_ports():
    record = {"releases": [dict(rel("a"), since="then", ports={"llama": 8080})]}
    planned = release.plan(record, dict(rel("a"), ports={"llama": 9090}))
    assert planned["switching"] is False and planned["first"] is False


@pytest.mark.parametrize("change", [{"model_path": "/media/m2/models/n.gguf"}, {"chat_template": "llama2"},
                                    {"model_sha256": "ab" * 32}, {"server_binary": "/other/server"}])
def test_plan_another_build_model_sha_or_template_is_a_switch(change):
    assert release.plan({"releases": [rel("a")]}, dict(rel("a"), **change))["switching"] is True


def test_commit_puts_the_new_release_first_keeps_n_and_prunes_the_rest():
    record = {"releases": [dict(rel("b"), since="t2"), dict(rel("a", "old.gguf"), since="t1")], "rejected": []}
    new, remove = release.commit(record, rel("c"), keep=2, now=NOW)
    assert [r["commit"] for r in new["releases"]] == ["c", "b"] and new["releases"][0]["since"] == NOW
    assert remove == ["/opt/edge-llama/llama.cpp/builds/a", "/media/m2/models/old.gguf",
                      "/media/m2/models/.edge-llama/old.gguf.json"]


def test_commit_of_the_serving_release_keeps_its_since_and_removes_nothing():
    record = {"releases": [dict(rel("a"), since="t1")]}
    new, remove = release.commit(record, rel("a"), keep=2, now=NOW)
    assert new == {"releases": [dict(rel("a"), since="t1")], "rejected": []} and remove == []


def test_commit_never_removes_what_a_kept_release_uses():
    # b and a share the model; a is dropped (keep 1), its build goes, the shared model stays.
    record = {"releases": [rel("b"), rel("a")], "rejected": [rel("x")]}
    new, remove = release.commit(record, rel("b"), keep=1, now=NOW)
    assert [r["commit"] for r in new["releases"]] == ["b"] and new["rejected"] == []
    assert remove == ["/opt/edge-llama/llama.cpp/builds/a", "/opt/edge-llama/llama.cpp/builds/x"]


def test_commit_moves_an_older_entry_of_the_same_release_to_the_front():
    record = {"releases": [rel("b"), dict(rel("a"), since="t0")]}
    new, _ = release.commit(record, rel("a"), keep=2, now=NOW)
    assert [r["commit"] for r in new["releases"]] == ["a", "b"] and new["releases"][0]["since"] == NOW


def test_commit_prunes_entries_of_a_root_no_release_uses():
    listing = {"/builds": ["a", "b", "broken"]}
    wanted = dict(rel("b"), build_dir="/builds/b", artifacts=["/builds/b"])
    kept_a = dict(rel("a"), build_dir="/builds/a", artifacts=["/builds/a"])
    record = {"releases": [kept_a]}
    _, remove = release.commit(record, wanted, keep=2, now=NOW, roots=["/builds"], listdir=lambda d: listing[d])
    assert remove == ["/builds/broken"]  # a failed build that never became a release


def test_records_from_before_artifacts_prune_the_build_and_the_model():
    old = {k: v for k, v in rel("a", "old.gguf").items() if k != "artifacts"}
    _, remove = release.commit({"releases": [old]}, rel("b"), keep=1, now=NOW)
    assert remove == ["/opt/edge-llama/llama.cpp/builds/a", "/media/m2/models/old.gguf"]


def test_reject_remembers_once_and_keeps_the_releases():
    record = {"releases": [rel("a")]}
    once = release.reject(record, rel("bad"))
    assert release.reject(once, rel("bad")) == once == {"releases": [rel("a")], "rejected": [rel("bad")]}


def test_keep_must_be_positive():
    with pytest.raises(ValueError):
        release.commit({}, rel("a"), keep=0, now=NOW)


# ---- the module, on real files ----


@pytest.fixture
def host(tmp_path):
    """A record path and two real builds and models under tmp_path."""
    builds, models = tmp_path / "builds", tmp_path / "models"
    (models / ".edge-llama").mkdir(parents=True)
    made = {}
    for name in ("old", "new", "failed"):
        (builds / name / "build" / "bin").mkdir(parents=True)
        (builds / name / "build" / "bin" / "llama-server").write_text("binary")
    for name in ("old.gguf", "new.gguf"):
        (models / name).write_text("gguf")
        (models / ".edge-llama" / (name + ".json")).write_text("{}")
    for name, model in (("old", "old.gguf"), ("new", "new.gguf")):
        made[name] = {"commit": name, "build_dir": str(builds / name),
                      "server_binary": str(builds / name / "build" / "bin" / "llama-server"),
                      "model_path": str(models / model), "model_sha256": "", "chat_template": "chatml",
                      "artifacts": [str(builds / name), str(models / model),
                                    str(models / ".edge-llama" / (model + ".json"))]}
    return tmp_path / "edge_llama_release.fact", builds, models, made


def test_module_commit_writes_the_record_and_prunes(run_module, host):
    path, builds, models, made = host
    path.write_text(json.dumps({"releases": [made["old"]], "rejected": []}))
    args = {"state": "committed", "wanted": made["new"], "keep": 1, "roots": [str(builds)], "path": str(path)}
    preview = run_module(module, args, check_mode=True, diff=True)
    assert preview["changed"] is True and preview["switching"] is True and preview["serving"]["commit"] == "old"
    assert sorted(preview["removed"]) == sorted(made["old"]["artifacts"] + [str(builds / "failed")])
    assert (builds / "old").exists() and json.loads(path.read_text())["releases"][0]["commit"] == "old"
    assert preview["diff"]["after"]["releases"][0]["commit"] == "new"

    done = run_module(module, args)
    assert done["changed"] is True and done["removed"] == preview["removed"]
    assert sorted(p.name for p in builds.iterdir()) == ["new"]
    assert sorted(p.name for p in models.iterdir()) == [".edge-llama", "new.gguf"]
    assert [p.name for p in (models / ".edge-llama").iterdir()] == ["new.gguf.json"]
    record = json.loads(path.read_text())
    assert [r["commit"] for r in record["releases"]] == ["new"] and record["rejected"] == []

    again = run_module(module, args)
    assert again["changed"] is False and again["removed"] == [] and again["switching"] is False
    assert json.loads(path.read_text()) == record


def test_module_reject_then_plan(run_module, host):
    path, builds, models, made = host
    path.write_text(json.dumps({"releases": [made["old"]]}))
    rejected = run_module(module, {"state": "rejected", "wanted": made["new"], "path": str(path)})
    assert rejected["changed"] is True and rejected["removed"] == []
    assert (builds / "new").exists()  # kept for a look until a later release passes
    planned = run_module(module, {"wanted": made["old"], "path": str(path)})
    assert planned["changed"] is False and planned["switching"] is False
    assert [r["commit"] for r in planned["record"]["rejected"]] == ["new"]


def test_module_plan_without_a_record(run_module, tmp_path):
    result = run_module(module, {"wanted": {"server_binary": "/s", "model_path": "/m"},
                                 "path": str(tmp_path / "none.fact")})
    assert result["first"] is True and result["switching"] is True and result["record"] == {"releases": [],
                                                                                              "rejected": []}
    assert not (tmp_path / "none.fact").exists()


def test_module_refuses_keep_zero(run_module, tmp_path):
    result = run_module(module, {"state": "committed", "wanted": {}, "keep": 0, "path": str(tmp_path / "r")})
    assert result["failed"] is True and "keep must be at least 1" in result["msg"]
