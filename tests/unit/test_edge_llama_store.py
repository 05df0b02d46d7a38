"""module_utils/edge_llama_store.py and mount_point_info: records written whole, and where a path lands."""

import json
import os

import pytest

import mount_point_info as module
from ansible.module_utils import edge_llama_store as store


def test_write_json_atomic_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state" / "record.json"
    store.write_json_atomic(str(path), {"b": 1, "a": [1, 2]})
    store.write_json_atomic(str(path), {"c": 3})
    assert json.loads(path.read_text()) == {"c": 3}
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert os.listdir(path.parent) == ["record.json"]


def test_write_json_atomic_keeps_the_old_record_when_the_new_cannot_be_written(tmp_path):
    path = tmp_path / "record.json"
    store.write_json_atomic(str(path), {"old": True})
    with pytest.raises(TypeError):
        store.write_json_atomic(str(path), {"new": object()})  # not JSON
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["record.json"]


def test_read_json_is_none_for_missing_or_broken(tmp_path):
    assert store.read_json(str(tmp_path / "missing.json")) is None
    (tmp_path / "broken.json").write_text("{half")
    assert store.read_json(str(tmp_path / "broken.json")) is None


def test_mount_point_of_a_path_not_created_yet(tmp_path):
    wanted = tmp_path / "not" / "yet" / "models"
    assert store.existing_ancestor(str(wanted)) == str(tmp_path)
    expected = str(tmp_path)
    while not os.path.ismount(expected):
        expected = os.path.dirname(expected)
    assert store.mount_point(str(wanted)) == expected


def test_mount_point_info_reports_without_creating(run_module, tmp_path):
    wanted = tmp_path / "cache"
    result = run_module(module, {"path": str(wanted)}, check_mode=True)
    assert result["changed"] is False and result["exists"] is False
    assert result["existing"] == str(tmp_path) and os.path.ismount(result["mount_point"])
    assert not wanted.exists()
    proc = run_module(module, {"path": "/proc/self"})
    assert proc["mount_point"] == "/proc"


def test_small_parsers():
    from ansible.module_utils.edge_llama_text import int_or_none, one_line
    assert [int_or_none(v) for v in ("46068", "46068.0", 12, "[N/A]", "", None)] == [46068, 46068, 12, None, None, None]
    assert one_line("a\n  b\tc ") == "a b c" and one_line(None) == ""
