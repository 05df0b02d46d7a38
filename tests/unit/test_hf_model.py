"""hf_model against a real local HTTP server with the hub's resolve layout (tests/unit/hubserver.py)."""

import hashlib
import json
import os

import pytest

pytest.importorskip("huggingface_hub")

import hf_model as module  # noqa: E402
from hubserver import Hub  # noqa: E402

REPO_ID = "TheBloke/Llama-2-70B-chat-GGUF"
NAME = "model.gguf"
DATA = os.urandom(3 * 1024 * 1024 + 17)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def hub():
    with Hub({(REPO_ID, NAME): DATA}) as server:
        yield server


def args(hub, dest, **extra):
    base = {"repo_id": REPO_ID, "filename": NAME, "dest": str(dest), "endpoint": hub.url, "chunk_size": 65536}
    base.update(extra)
    return base


def test_fresh_download_is_verified_and_recorded(tmp_path, hub, run_module):
    result = run_module(module, args(hub, tmp_path))
    assert result["changed"] is True
    assert result["sha256"] == SHA
    assert result["commit"] == hub.commit
    assert result["downloaded_bytes"] == len(DATA)
    assert (tmp_path / NAME).read_bytes() == DATA
    assert not (tmp_path / ("." + NAME + ".partial")).exists()
    record = json.loads((tmp_path / ".edge-llama" / (NAME + ".json")).read_text())
    assert record["sha256"] == SHA and record["size"] == len(DATA)


def test_rerun_trusts_the_record_and_transfers_nothing(tmp_path, hub, run_module):
    run_module(module, args(hub, tmp_path))
    sent = hub.bytes_sent
    result = run_module(module, args(hub, tmp_path))
    assert result["changed"] is False
    assert result["verified"] == "record"
    assert hub.bytes_sent == sent
    assert [r[0] for r in hub.requests].count("GET") == 1


def test_verify_full_rehashes(tmp_path, hub, run_module):
    run_module(module, args(hub, tmp_path))
    result = run_module(module, args(hub, tmp_path, verify="full"))
    assert result["changed"] is False
    assert result["verified"] == "hash"


def test_changed_file_is_detected_and_fetched_again(tmp_path, hub, run_module):
    run_module(module, args(hub, tmp_path))
    with open(tmp_path / NAME, "r+b") as handle:  # same size, different content, new mtime
        handle.write(b"corrupt!")
    result = run_module(module, args(hub, tmp_path))
    assert result["changed"] is True
    assert (tmp_path / NAME).read_bytes() == DATA


def test_pinned_checksum_wins_and_a_mismatch_leaves_nothing(tmp_path, hub, run_module):
    result = run_module(module, args(hub, tmp_path, sha256="0" * 64))
    assert result["failed"]
    assert "SHA-256 mismatch" in result["msg"]
    assert "0" * 64 in result["msg"]
    assert not (tmp_path / NAME).exists()
    assert not (tmp_path / ("." + NAME + ".partial")).exists()


def test_mismatch_keeps_the_previous_good_file(tmp_path, hub, run_module):
    run_module(module, args(hub, tmp_path))
    hub.files[(REPO_ID, NAME)] = DATA[::-1]
    hub.etag = SHA  # the hub lies: content changed, checksum did not
    result = run_module(module, args(hub, tmp_path, verify="full"))
    assert result["changed"] is False  # the file present matches the expected checksum
    assert (tmp_path / NAME).read_bytes() == DATA


def test_interrupted_download_resumes_with_range(tmp_path, hub, run_module):
    hub.fail_after = 1024 * 1024
    result = run_module(module, args(hub, tmp_path, timeout=5))
    assert result["failed"]
    assert "run again to continue" in result["msg"]
    partial = tmp_path / ("." + NAME + ".partial")
    assert partial.stat().st_size == 1024 * 1024
    assert not (tmp_path / NAME).exists()
    hub.fail_after = None
    hub.bytes_sent = 0
    result = run_module(module, args(hub, tmp_path))
    assert result["changed"] is True
    assert result["resumed_from"] == 1024 * 1024
    assert hub.bytes_sent == len(DATA) - 1024 * 1024
    assert hub.requests[-1][2] == "bytes=%d-" % (1024 * 1024)
    assert (tmp_path / NAME).read_bytes() == DATA


def test_server_ignoring_range_restarts_cleanly(tmp_path, hub, run_module):
    hub.ranges = False
    partial = tmp_path / ("." + NAME + ".partial")
    partial.write_bytes(DATA[:4096])
    result = run_module(module, args(hub, tmp_path))
    assert result["changed"] is True
    assert result["resumed_from"] == 0
    assert any("ignored the Range request" in w for w in result.get("warnings", []))
    assert (tmp_path / NAME).read_bytes() == DATA


def test_check_mode_reports_size_and_writes_nothing(tmp_path, hub, run_module):
    result = run_module(module, args(hub, tmp_path), check_mode=True, diff=True)
    assert result["changed"] is True
    assert str(len(DATA)) in result["msg"]
    assert SHA in result["diff"]["after"]
    assert list(tmp_path.iterdir()) == []
    assert [r[0] for r in hub.requests] == ["HEAD"]


def test_token_is_sent_but_never_returned(tmp_path, hub, run_module):
    token = "hf_secretsecretsecret"
    result = run_module(module, args(hub, tmp_path, token=token))
    assert result["changed"] is True
    assert any(r[3] == "Bearer " + token for r in hub.requests)
    assert token not in json.dumps(result)


def test_unknown_file_fails_with_repo_and_file(tmp_path, hub, run_module):
    result = run_module(module, args(hub, tmp_path, filename="missing.gguf", token="hf_abcdefgh12345"))
    assert result["failed"]
    assert "missing.gguf" in result["msg"] and REPO_ID in result["msg"]
    assert "hf_abcdefgh12345" not in result["msg"]


def test_bad_pinned_checksum_format(tmp_path, hub, run_module):
    result = run_module(module, args(hub, tmp_path, sha256="abc"))
    assert result["failed"]
    assert "64 hexadecimal" in result["msg"]


def test_not_enough_space_fails_before_writing(tmp_path, hub, run_module, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    result = run_module(module, args(hub, tmp_path))
    assert result["failed"]
    assert "not enough space" in result["msg"] and "1000 free" in result["msg"]
    assert list(tmp_path.iterdir()) == []
