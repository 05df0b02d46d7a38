"""The model fetch for real: hf_model through its action plugin, run by ansible-playbook against a real
HTTP server with the hub's resolve layout that honours Range and counts what it sends
(tests/unit/hubserver.py). The host is this machine over a local connection; downloads go into
temporary directories, and the small filesystems are real tmpfs mounts (root, as in CI).
"""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "unit"))

from hubserver import Hub  # noqa: E402

pytest.importorskip("huggingface_hub")

REPO_ID, NAME = "edge-llama-test/fetch-GGUF", "model.gguf"
DATA = os.urandom(16 * 1024 * 1024 + 123)
SHA = hashlib.sha256(DATA).hexdigest()
HOST = socket.gethostname()


@pytest.fixture
def hub():
    with Hub({(REPO_ID, NAME): DATA}) as server:
        yield server


@pytest.fixture
def small_fs(tmp_path):
    """A real 12 MiB filesystem of its own (a tmpfs mount point)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def playbook(tmp_path, hub, hosts, tasks, **group_vars):
    inventory = {"all": {"hosts": {name: dict(v) for name, v in hosts.items()}, "vars": {
        "ansible_connection": "local", "ansible_become": False, "ansible_python_interpreter": sys.executable,
        "hub": hub.url, **group_vars}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(
        [{"name": "Fetch", "hosts": "all", "gather_facts": False, "tasks": tasks}], sort_keys=False))
    # Earlier tests in the same pytest process (gradio's import) may have set HF_HUB_OFFLINE; the hosts
    # here talk to the test hub only, so no inherited hub setting may reach them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_CACHE_PLUGIN="memory")
    return ["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")], env


def fetch_task(dest, **extra):
    args = {"repo_id": REPO_ID, "filename": NAME, "dest": str(dest), "endpoint": "{{ hub }}",
            "progress_interval": 1, "space_margin": 1, "chunk_size": 65536}
    args.update(extra)
    return {"name": "Fetch the model", "hf_model": args, "register": "fetched"}


SHOW = {"name": "Show the result", "ansible.builtin.debug": {"msg": "RESULT {{ fetched | to_json }}"}}


def run(tmp_path, hub, dest, hosts=None, **extra):
    cmd, env = playbook(tmp_path, hub, hosts or {"h1": {}}, [fetch_task(dest, **extra), SHOW])
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    results = [json.loads(line.split("RESULT ", 1)[1].rstrip('",').replace('\\"', '"'))
               for line in out.splitlines() if '"msg": "RESULT ' in line]
    return proc, out, results


def one(out, results):
    assert len(results) == 1, out
    return results[0]


def test_progress_is_shown_in_the_play_during_the_download(tmp_path, hub):
    hub.rate = 4 * 1024 * 1024  # about 4 s for the 16 MiB
    proc, out, results = run(tmp_path, hub, tmp_path, allow_root_filesystem=True)
    assert proc.returncode == 0, out
    lines = [line for line in out.splitlines() if line.startswith("[h1] hf_model: model.gguf: ")]
    assert len(lines) >= 2, out  # one per second
    assert any("%)" in line and "MB/s" in line and " of 16.8 MB " in line for line in lines), lines
    assert one(out, results)["sha256"] == SHA
    assert (tmp_path / NAME).read_bytes() == DATA


def test_a_killed_download_resumes_where_it_stopped(tmp_path, hub):
    hub.rate = 4 * 1024 * 1024
    cmd, env = playbook(tmp_path, hub, {"h1": {}}, [fetch_task(tmp_path, allow_root_filesystem=True), SHOW])
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    partial, lock = tmp_path / ("." + NAME + ".partial"), tmp_path / ".edge-llama" / (NAME + ".lock")
    deadline = time.time() + 60
    while time.time() < deadline and not (partial.exists() and partial.stat().st_size > 6 * 1024 * 1024):
        time.sleep(0.1)
    # Kill the download itself (the module runs as a detached async job) and the play that watched it.
    pid = int(lock.read_text().split()[1])
    os.kill(pid, signal.SIGKILL)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.5)
    kept = partial.stat().st_size
    assert 6 * 1024 * 1024 < kept < len(DATA)
    assert not (tmp_path / NAME).exists()

    hub.rate, hub.bytes_sent = None, 0
    proc, out, results = run(tmp_path, hub, tmp_path, allow_root_filesystem=True)
    assert proc.returncode == 0, out
    result = one(out, results)
    assert result["resumed_from"] == kept
    assert hub.requests[-1][2] == "bytes=%d-" % kept
    print("resume: kept %d bytes, the server sent %d more for the remaining %d" % (
        kept, hub.bytes_sent, len(DATA) - kept))
    assert hub.bytes_sent == len(DATA) - kept  # the remainder, not one byte more
    assert (tmp_path / NAME).read_bytes() == DATA


def test_corruption_is_detected_and_fetched_again(tmp_path, hub):
    assert run(tmp_path, hub, tmp_path, allow_root_filesystem=True)[0].returncode == 0
    path = tmp_path / NAME
    st = path.stat()
    with open(path, "r+b") as handle:  # bit rot: same size, and the mtime put back
        handle.seek(1000)
        handle.write(b"\0" * 8)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    # The cheap re-run trusts its record of size and mtime (that is what keeps 41 GB re-runs cheap) ...
    proc, out, results = run(tmp_path, hub, tmp_path, allow_root_filesystem=True)
    assert one(out, results)["changed"] is False and results[0]["verified"] == "record"
    # ... the forced re-verify hashes, finds the damage and fetches the file again.
    hub.bytes_sent = 0
    proc, out, results = run(tmp_path, hub, tmp_path, allow_root_filesystem=True, verify="full")
    assert proc.returncode == 0, out
    assert one(out, results)["changed"] is True and "does not match SHA-256" in out
    assert hub.bytes_sent == len(DATA) and path.read_bytes() == DATA
    # A damaged file whose mtime changed is caught without being asked.
    with open(path, "r+b") as handle:
        handle.write(b"damaged!")
    proc, out, results = run(tmp_path, hub, tmp_path, allow_root_filesystem=True)
    assert one(out, results)["changed"] is True and path.read_bytes() == DATA


def test_a_wrong_pinned_checksum_fails_and_leaves_nothing(tmp_path, hub):
    proc, out, _ = run(tmp_path, hub, tmp_path, allow_root_filesystem=True, sha256="ab" * 32)
    assert proc.returncode != 0
    assert "SHA-256 mismatch for model.gguf: expected %s, got %s" % ("ab" * 32, SHA) in out
    assert "the download was discarded" in out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in ("inventory.yml", "play.yml")) == [".edge-llama"]


def test_no_room_on_a_small_filesystem_fails_before_writing(tmp_path, hub, small_fs):
    big = dict(hub.files)
    hub.files[(REPO_ID, NAME)] = DATA + DATA  # 32 MiB for 12 MiB
    models = small_fs / "models"  # not there yet: the download would create it
    proc, out, _ = run(tmp_path, hub, models)
    assert proc.returncode != 0
    needed = 2 * len(DATA) + 1024 * 1024
    assert "on %s: not enough space in %s (filesystem %s): %d bytes needed" % (HOST, models, small_fs, needed) in out
    assert "12.6 MB) free" in out or "bytes (12." in out, out
    assert list(small_fs.iterdir()) == []  # nothing written: not the directory, not the state directory
    hub.files.update(big)


def test_a_disk_that_fills_up_during_the_download_leaves_nothing_half_written(tmp_path, hub, small_fs):
    hub.files[(REPO_ID, NAME)] = DATA[: 8 * 1024 * 1024]  # fits the 12 MiB with the 1 MiB margin
    hub.rate = 2 * 1024 * 1024
    cmd, env = playbook(tmp_path, hub, {"h1": {}}, [fetch_task(small_fs), SHOW])
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    partial = small_fs / ("." + NAME + ".partial")
    deadline = time.time() + 60
    while time.time() < deadline and not (partial.exists() and partial.stat().st_size > 1024 * 1024):
        time.sleep(0.05)
    # Something else on the host (logs, another model) takes the room meanwhile.
    with open(small_fs / "other-writer", "wb") as filler:
        try:
            filler.write(b"\0" * 9 * 1024 * 1024)
        except OSError:
            pass
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, out
    assert "the filesystem of %s filled up at" % small_fs in out and "partial download was removed" in out
    assert sorted(p.name for p in small_fs.iterdir()) == [".edge-llama", "other-writer"]


def test_a_model_directory_on_the_root_filesystem_is_refused_unless_allowed(tmp_path, hub, small_fs):
    assert os.stat(tmp_path).st_dev == os.stat("/").st_dev
    proc, out, _ = run(tmp_path, hub, tmp_path / "models")
    assert proc.returncode != 0
    assert "on %s: %s is on the root filesystem (mount point /)" % (HOST, tmp_path / "models") in out
    assert "the model needs %d bytes" % (len(DATA) + 1024 * 1024) in out
    assert not (tmp_path / "models").exists()
    # A mounted filesystem of its own is accepted without asking ...
    hub.files[(REPO_ID, NAME)] = DATA[: 4 * 1024 * 1024]
    proc, out, results = run(tmp_path, hub, small_fs)
    assert proc.returncode == 0, out
    # ... and the root filesystem when the inventory says so.
    (tmp_path / "models").mkdir()
    proc, out, results = run(tmp_path, hub, tmp_path / "models", allow_root_filesystem=True)
    assert proc.returncode == 0, out


def fan_out_play(tmp_path, hub, hosts, *more_tasks):
    """The model role's fan-out (model_fanout: controller) from tmp_path/controller to the hosts."""
    tasks = [{"name": "Fan out", "ansible.builtin.include_role": {"name": "model", "tasks_from": "fanout.yml"}},
             *more_tasks]
    group = {"model_repo_id": REPO_ID, "model_filename": NAME, "model_hf_endpoint": "{{ hub }}",
             "model_fanout": "controller", "model_fanout_controller_dir": str(tmp_path / "controller"),
             "model_venv": sys.prefix, "model_allow_root_filesystem": True, "model_space_margin_mib": 1}
    (tmp_path / "controller").mkdir(exist_ok=True)
    return playbook(tmp_path, hub, hosts, tasks, **group)


def test_fan_out_downloads_once_and_copies_to_each_host(tmp_path, hub):
    hosts = {name: {"model_dir": str(tmp_path / name / "models")} for name in ("orin-a", "orin-b")}
    for spec in hosts.values():
        Path(spec["model_dir"]).mkdir(parents=True)
    cmd, env = fan_out_play(tmp_path, hub, hosts)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert hub.bytes_sent == len(DATA)  # one download for two hosts
    assert [r[0] for r in hub.requests].count("GET") == 1
    for name in hosts:
        assert (tmp_path / name / "models" / NAME).read_bytes() == DATA
        assert list((tmp_path / name / "models" / ".edge-llama" / "incoming").iterdir()) == []
        record = json.loads((tmp_path / name / "models" / ".edge-llama" / (NAME + ".json")).read_text())
        assert record["sha256"] == SHA
    # Again: nothing fetched, nothing copied, nothing changed.
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert hub.bytes_sent == len(DATA)
    for name in hosts:
        assert re.search(r"%s\s+: ok=\d+\s+changed=0 " % name, out), out


def test_fan_out_continues_a_copy_cut_short_and_resends_a_wrong_one(tmp_path, hub):
    """rsync --append-verify (ansible.posix.synchronize) behind the fan-out: a host holding the first
    5 MiB of a copy receives only the rest; a host whose half-copy is not the file's beginning gets it
    again in full; both end with the verified file. Real rsync, on this machine (local connection)."""
    hosts = {name: {"model_dir": str(tmp_path / name / "models")} for name in ("orin-cut", "orin-wrong")}
    cut = 5 * 1024 * 1024
    for name, prefix in (("orin-cut", DATA[:cut]), ("orin-wrong", os.urandom(cut))):
        incoming = tmp_path / name / "models" / ".edge-llama" / "incoming"
        incoming.mkdir(parents=True)
        (incoming / NAME).write_bytes(prefix)
    cmd, env = fan_out_play(tmp_path, hub, hosts, {
        "name": "Show what was copied", "ansible.builtin.debug": {"msg": "COPIED {{ __model_fetch.copied_bytes }}"}})
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    copied = {}
    for name in hosts:  # the debug task's result, printed per host
        match = re.search(r"ok: \[%s\] => \{\s*\"msg\": \"COPIED (\d+)\"" % name, out)
        assert match, out
        copied[name] = int(match.group(1))
        assert (tmp_path / name / "models" / NAME).read_bytes() == DATA
        assert list((tmp_path / name / "models" / ".edge-llama" / "incoming").iterdir()) == []
    assert copied["orin-cut"] == len(DATA) - cut, copied
    assert copied["orin-wrong"] >= len(DATA), copied
