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
    base = {"repo_id": REPO_ID, "filename": NAME, "dest": str(dest), "endpoint": hub.url, "chunk_size": 65536,
            "allow_root_filesystem": True, "space_margin": 1}
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
    # What the model consists of, for the release's pruning: the file and its record, nothing else.
    assert result["artifacts"] == [str(tmp_path / NAME), str(tmp_path / ".edge-llama" / (NAME + ".json"))]


def test_rerun_trusts_the_record_and_transfers_nothing(tmp_path, hub, run_module):
    run_module(module, args(hub, tmp_path))
    sent = hub.bytes_sent
    result = run_module(module, args(hub, tmp_path))
    assert result["changed"] is False
    assert result["verified"] == "record"
    assert hub.bytes_sent == sent
    assert [r[0] for r in hub.requests].count("GET") == 1


def test_a_pinned_file_with_its_record_is_answered_without_asking_the_hub(tmp_path, hub, run_module):
    first = run_module(module, args(hub, tmp_path, sha256=SHA))
    asked = len(hub.requests)
    result = run_module(module, args(hub, tmp_path, sha256=SHA))
    assert len(hub.requests) == asked  # not even a HEAD
    assert result["changed"] is False and result["verified"] == "record"
    assert (result["sha256"], result["size"], result["commit"]) == (SHA, len(DATA), first["commit"])
    # The action plugin's first question gets the same answer, and "pending" only when work is left.
    assert run_module(module, args(hub, tmp_path, sha256=SHA, only_if_verified=True))["verified"] == "record"
    os.utime(tmp_path / NAME, ns=(1, 1))  # the file is not the one recorded any more
    pending = run_module(module, args(hub, tmp_path, sha256=SHA, only_if_verified=True))
    assert pending["pending"] is True and pending["changed"] is False and len(hub.requests) == asked
    # Then the ordinary run asks the hub and hashes the file again.
    again = run_module(module, args(hub, tmp_path, sha256=SHA))
    assert len(hub.requests) > asked and again["verified"] == "hash"


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
    assert "not enough space" in result["msg"] and "1000 bytes (1.0 kB) free" in result["msg"]
    assert list(tmp_path.iterdir()) == []


# --- the root filesystem, split parts, fan-out copies, progress, a full disk --------------------------

def test_root_filesystem_is_refused_unless_allowed(tmp_path, hub, run_module):
    # tmp_path lives on this machine's root filesystem (pytest's basetemp under /tmp).
    assert os.stat(tmp_path).st_dev == os.stat("/").st_dev
    result = run_module(module, args(hub, tmp_path, allow_root_filesystem=False))
    assert result["failed"]
    msg = result["msg"]
    assert "on %s:" % __import__("socket").gethostname() in msg
    assert str(tmp_path) in msg and "root filesystem" in msg
    assert "bytes needed" not in msg  # the placement is refused, not the space
    assert str(len(DATA) + 1024 * 1024) in msg and "free" in msg
    assert list(tmp_path.iterdir()) == []
    # Check mode says the same without writing.
    result = run_module(module, args(hub, tmp_path, allow_root_filesystem=False), check_mode=True)
    assert result["failed"] and "root filesystem" in result["msg"]


PART_A = os.urandom(1024 * 1024 + 5)
PART_B = os.urandom(700 * 1024 + 3)
JOINED = PART_A + PART_B
SPLIT = "big.Q6_K.gguf"


@pytest.fixture
def split_hub():
    with Hub({(REPO_ID, SPLIT + "-split-a"): PART_A, (REPO_ID, SPLIT + "-split-b"): PART_B}) as server:
        yield server


def test_split_parts_are_found_and_joined(tmp_path, split_hub, run_module):
    result = run_module(module, args(split_hub, tmp_path, filename=SPLIT))
    assert result["changed"] is True
    assert result["parts"] == [SPLIT + "-split-a", SPLIT + "-split-b"]
    assert result["size"] == len(JOINED)
    assert result["sha256"] == hashlib.sha256(JOINED).hexdigest()
    assert (tmp_path / SPLIT).read_bytes() == JOINED
    assert sorted(p.name for p in tmp_path.iterdir()) == [".edge-llama", SPLIT]  # no part left behind
    again = run_module(module, args(split_hub, tmp_path, filename=SPLIT))
    assert again["changed"] is False and again["verified"] == "record"


def test_split_parts_resume_inside_the_second_part(tmp_path, split_hub, run_module):
    partial = tmp_path / ("." + SPLIT + ".partial")
    partial.write_bytes(JOINED[: len(PART_A) + 1000])
    parts = [SPLIT + "-split-a", SPLIT + "-split-b"]
    result = run_module(module, args(split_hub, tmp_path, filename=SPLIT, parts=parts))
    assert result["changed"] is True
    assert result["resumed_from"] == len(PART_A) + 1000
    assert split_hub.bytes_sent == len(PART_B) - 1000
    assert (tmp_path / SPLIT).read_bytes() == JOINED


def test_a_bad_part_is_caught_by_its_own_checksum(tmp_path, split_hub, run_module):
    partial = tmp_path / ("." + SPLIT + ".partial")
    partial.write_bytes(b"X" * 100 + PART_A[100:] + PART_B[:10])  # part a complete but wrong
    result = run_module(module, args(split_hub, tmp_path, filename=SPLIT))
    assert result["failed"]
    assert "SHA-256 mismatch for %s-split-a" % SPLIT in result["msg"]
    assert not partial.exists() and not (tmp_path / SPLIT).exists()
    result = run_module(module, args(split_hub, tmp_path, filename=SPLIT))  # the next run starts clean
    assert result["changed"] is True and (tmp_path / SPLIT).read_bytes() == JOINED


def test_pinned_checksum_of_the_joined_file(tmp_path, split_hub, run_module):
    result = run_module(module, args(split_hub, tmp_path, filename=SPLIT, sha256="1" * 64))
    assert result["failed"] and "SHA-256 mismatch for %s" % SPLIT in result["msg"]
    assert list(p.name for p in tmp_path.iterdir() if not p.name.startswith(".edge")) == []


def test_missing_file_without_parts_says_so(tmp_path, split_hub, run_module):
    result = run_module(module, args(split_hub, tmp_path, filename="other.gguf"))
    assert result["failed"] and "other.gguf-split-a" in result["msg"]


def test_src_copy_is_verified_and_moved_into_place(tmp_path, run_module):
    dest = tmp_path / "models"
    dest.mkdir()
    src = dest / ".incoming"
    src.write_bytes(DATA)
    base = {"repo_id": REPO_ID, "filename": NAME, "dest": str(dest), "src": str(src), "sha256": SHA}
    check = run_module(module, base, check_mode=True)
    assert check["changed"] is True and "would install" in check["msg"]
    result = run_module(module, base)
    assert result["changed"] is True and result["verified"] == "src"
    assert (dest / NAME).read_bytes() == DATA and not src.exists()
    again = run_module(module, base)
    assert again["changed"] is False and again["verified"] == "record"


def test_src_copy_with_a_wrong_checksum_is_refused(tmp_path, run_module):
    src = tmp_path / ".incoming"
    src.write_bytes(DATA[:-1] + b"!")
    result = run_module(module, {"repo_id": REPO_ID, "filename": NAME, "dest": str(tmp_path), "src": str(src),
                                 "sha256": SHA})
    assert result["failed"] and "SHA-256 mismatch" in result["msg"]
    assert not (tmp_path / NAME).exists() and not src.exists()


def test_progress_goes_to_the_log_and_the_progress_file(tmp_path, hub, run_module, monkeypatch):
    lines = []
    monkeypatch.setattr(module.AnsibleModule, "log", lambda self, msg, *a, **k: lines.append(msg))
    result = run_module(module, args(hub, tmp_path, progress_interval=0.0))
    assert result["changed"] is True
    progress_lines = [line for line in lines if line.startswith(NAME + ": ")]
    assert len(progress_lines) >= 10  # every 64 KiB block with interval 0
    assert "3.1 MB of 3.1 MB (100.0%)" in progress_lines[-1] and "MB/s" in progress_lines[-1]
    state = json.loads((tmp_path / ".edge-llama" / (NAME + ".progress.json")).read_text())
    assert state["state"] == "done" and state["done"] == state["total"] == len(DATA)


def test_a_full_disk_during_the_download_removes_the_partial(tmp_path, hub, run_module, monkeypatch):
    import builtins
    import errno

    real_open = builtins.open

    class Filling:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, block):
            if self.written > 1024 * 1024:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(block)
            return self.handle.write(block)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def fake_open(path, mode="r", *a, **k):
        handle = real_open(path, mode, *a, **k)
        return Filling(handle) if str(path).endswith(".partial") and "a" in mode else handle

    monkeypatch.setattr(builtins, "open", fake_open)
    result = run_module(module, args(hub, tmp_path))
    assert result["failed"]
    assert "filled up" in result["msg"] and "partial download was removed" in result["msg"]
    assert not (tmp_path / NAME).exists() and not (tmp_path / ("." + NAME + ".partial")).exists()


def test_the_hasher_thread_gives_the_digest_of_what_was_fed_each_digest_once():
    """The download hashes on a thread of its own; one digest object named twice (a single file's part
    and overall digests) must be updated once, and a copy taken after sync() sees every block fed."""
    blocks = [os.urandom(n) for n in (1, 70000, 3 * 1024 * 1024, 5)]
    hasher = module.Hasher(depth=2)
    try:
        overall, part = hashlib.sha256(), hashlib.sha256()
        hasher.use(overall, overall)
        hasher.feed(blocks[0])
        hasher.feed(blocks[1])
        hasher.sync()
        at_split = overall.copy()
        hasher.use(overall, part)
        for block in blocks[2:]:
            hasher.feed(block)
        hasher.sync()
    finally:
        hasher.close()
    assert at_split.hexdigest() == hashlib.sha256(blocks[0] + blocks[1]).hexdigest()
    assert overall.hexdigest() == hashlib.sha256(b"".join(blocks)).hexdigest()
    assert part.hexdigest() == hashlib.sha256(blocks[2] + blocks[3]).hexdigest()
    assert not hasher._thread.is_alive()
