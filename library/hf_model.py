#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hf_model
short_description: Fetch one file of a Hugging Face model repository, verified and atomically
description:
  - Resolves I(repo_id)/I(filename) at I(revision) through C(huggingface_hub) (commit, size, ETag), and
    makes I(dest)/I(filename) that file. Files the hub splits into parts (C(-split-a), C(-split-b) for
    TheBloke's Q6_K and Q8_0) are fetched one after the other into the same partial file, each part
    verified against its own checksum, which joins them without a second copy.
  - Downloads into a hidden partial file next to the destination, checks size and SHA-256, then renames it
    into place, so the destination is either the old file, the new verified file, or absent; never half
    written. A partial file left by an interrupted run is continued with an HTTP Range request.
  - Records what it verified (size, mtime, SHA-256, commit) in I(dest)/.edge-llama/, so that a re-run with
    the verified file present does not hash it again; I(verify=full) forces a full re-hash.
  - Honours a mirror endpoint (C(HF_ENDPOINT)) and a token, which is never logged or returned.
  - Before writing, checks that I(dest) has room for the file plus a margin and is not on the root
    filesystem (unless I(allow_root_filesystem)); errors name the host, the path, the bytes needed and free.
  - During a download, progress (bytes, percent, rate) goes to the host's log every I(progress_interval)
    seconds and to I(dest)/.edge-llama/FILE.progress.json, which the C(hf_model) action plugin shows in
    the play's output.
  - With I(src), installs a file already copied onto the host (fan-out from the controller) the same
    way: verified against I(sha256), then moved into place atomically.
version_added: "0.1.0"
author: edge-llama contributors
requirements:
  - huggingface_hub >= 0.20 on the managed host (run the task with a virtualenv interpreter)
options:
  repo_id:
    description: Repository on the hub, for example C(TheBloke/Llama-2-70B-chat-GGUF).
    type: str
    required: true
  filename:
    description: File inside the repository.
    type: str
    required: true
  revision:
    description: Branch, tag or commit.
    type: str
    default: main
  dest:
    description: Directory that receives the file.
    type: path
    required: true
  endpoint:
    description: Hub or mirror URL; empty uses C(HF_ENDPOINT) or huggingface.co.
    type: str
  token:
    description: Hugging Face token for gated or private repositories.
    type: str
  sha256:
    description:
      - Expected SHA-256 of the file. Wins over the hub's; without it the hub's ETag is used when it is a
        SHA-256 (LFS files), otherwise only the size is checked.
    type: str
  parts:
    description:
      - Files of the repository whose concatenation is I(filename), in order.
      - Empty, and the hub has no I(filename) but has I(filename)C(-split-a), the parts are found by
        asking for C(-split-a), C(-split-b), ... until one is missing.
    type: list
    elements: str
  src:
    description:
      - A file on the host to install instead of downloading (the role's fan-out copies it there). It is
        verified against I(sha256), which is then required, and removed once moved into place.
      - The hub is not contacted.
    type: path
  size:
    description: With I(src), the size of the file to come, checked against the room in I(dest) before it is copied.
    type: int
  allow_root_filesystem:
    description:
      - Allow I(dest) on the root filesystem. By default a download that would land on C(/) is refused so
        that 41 GB do not silently fill it when the SSD is not mounted.
    type: bool
    default: false
  space_margin:
    description: MiB that must stay free on the filesystem of I(dest) after the download.
    type: int
    default: 1024
  progress_interval:
    description: Seconds between progress reports during a download.
    type: float
    default: 30
  verify:
    description:
      - C(auto) trusts the record of an earlier verification while size and mtime are unchanged.
      - C(full) hashes the file present again.
    type: str
    choices: [auto, full]
    default: auto
  chunk_size:
    description: Bytes read and written at a time.
    type: int
    default: 8388608
  timeout:
    description: Seconds without data before the download gives up.
    type: int
    default: 60
  only_if_verified:
    description:
      - Return at once - the result when the file is already verified against I(sha256) by its record
        (the re-run's case, without contacting the hub), else C(pending=true) having done nothing. The
        action plugin asks this first and starts the download as a job, with progress, only when pending.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.files
notes:
  - Supports check mode (reports what would be downloaded and its size) and diff mode.
  - File attributes (mode, owner, group) are taken as for M(ansible.builtin.file).
"""

EXAMPLES = r"""
- name: Fetch the tutorial's model onto the SSD
  hf_model:
    repo_id: TheBloke/Llama-2-70B-chat-GGUF
    filename: llama-2-70b-chat.Q4_K_M.gguf
    dest: /media/m2/models
    sha256: c7e817ae9c84191ccfc57141e839cb1b1cb61822cd299e76d02ec49fd6fa3c3e
    mode: "0644"
  vars:
    ansible_python_interpreter: /opt/edge-llama/venvs/model/bin/python

- name: Fetch a model the hub splits in two, joined into one file
  hf_model:
    repo_id: TheBloke/Llama-2-70B-chat-GGUF
    filename: llama-2-70b-chat.Q6_K.gguf   # parts -split-a and -split-b are found on the hub
    dest: /media/m2/models
"""

RETURN = r"""
path:
  description: Absolute path of the file.
  returned: always
  type: str
  sample: /media/m2/models/llama-2-70b-chat.Q4_K_M.gguf
size:
  description: Size in bytes according to the hub.
  returned: always
  type: int
  sample: 41422937344
sha256:
  description: SHA-256 the file was verified against, when one is known.
  returned: always
  type: str
commit:
  description: Commit of the repository the file was resolved at.
  returned: always
  type: str
downloaded_bytes:
  description: Bytes transferred by this run.
  returned: always
  type: int
resumed_from:
  description: Offset a partial download was continued from (0 when it started from scratch).
  returned: always
  type: int
parts:
  description: The parts the file was joined from (empty for a single file).
  returned: always
  type: list
  elements: str
verified:
  description: How the file present was trusted (C(record), C(hash), C(download), C(src)).
  returned: always
  type: str
artifacts:
  description:
    - The paths the model consists of on the host (the file and its download record), so that removing the
      model later takes exactly these and builds no path of its own.
  returned: always
  type: list
  elements: str
  sample:
    - /media/m2/models/llama-2-70b-chat.Q4_K_M.gguf
    - /media/m2/models/.edge-llama/llama-2-70b-chat.Q4_K_M.gguf.json
"""

import errno
import fcntl
import hashlib
import itertools
import json
import os
import queue
import re
import shutil
import socket
import threading
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.edge_llama_hub import endpoint as hub_endpoint, open_url, split_names
from ansible.module_utils.edge_llama_store import (existing_ancestor, mount_point, read_json as read_state,
                                                   write_json_atomic)
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.http_client import HTTPException

HF_IMPORT_ERROR = None
try:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers
except ImportError:  # pragma: no cover - reported by the module
    HF_IMPORT_ERROR = traceback.format_exc()

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
STATE_DIR = ".edge-llama"
MIB = 1024 * 1024
# Every this many bytes the hasher thread fdatasyncs the partial file (Hasher.write_behind).
WRITE_BEHIND = 128 * MIB


class FetchError(Exception):
    """A failure with a message meant for the user."""


def hash_file(path, chunk_size, digest=None):
    digest = digest or hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk_size)
            if not block:
                break
            digest.update(block)
    return digest


class Hasher:
    """SHA-256 of the blocks a download writes, computed on a thread of its own.

    The reading thread only reads from the socket and writes to the file; the digests are updated
    beside it (hashlib lets go of the GIL for large blocks, so both run at once). Measured with
    tests/bench/model_fetch.py: hashing on the reading thread took the module from the wire speed of
    `curl` to about half of it. A bounded queue keeps at most `depth` blocks in memory, so a slow disk
    or hasher slows the reader instead of filling memory. `sync()` waits until every block fed is in the
    digests: call it before reading or copying them."""

    def __init__(self, depth=4):
        self.depth = depth
        self._queue = queue.Queue(depth)
        self._digests = ()
        self._error = None
        self._thread = threading.Thread(target=self._work, name="sha256", daemon=True)
        self._thread.start()

    def _work(self):
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                digests, block = item
                if digests is None:  # write-behind: the file's pages so far, to the disk now
                    os.fdatasync(block)
                    continue
                for digest in digests:
                    digest.update(block)
            except Exception as exc:  # pragma: no cover - hashlib does not fail on bytes
                self._error = exc
            finally:
                self._queue.task_done()

    def use(self, *digests):
        """The digests that the next blocks go into (one object given twice is updated once)."""
        unique = []
        for digest in digests:
            if all(digest is not other for other in unique):
                unique.append(digest)
        self._digests = tuple(unique)

    def feed(self, block):
        self._queue.put((self._digests, block))

    def write_behind(self, fd):
        """fdatasync(fd) on this thread, between blocks: the disk writes the download while it arrives, and
        the fsync before the rename has only the last blocks left to wait for."""
        self._queue.put((None, fd))

    def sync(self):
        self._queue.join()
        if self._error is not None:  # pragma: no cover
            raise self._error

    def close(self):
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def state_path(dest, filename):
    return os.path.join(dest, STATE_DIR, filename + ".json")


def progress_path(dest, filename):
    return os.path.join(dest, STATE_DIR, filename + ".progress.json")


def partial_path(dest, filename):
    return os.path.join(dest, "." + filename + ".partial")


def human(nbytes):
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if nbytes >= size:
            return "%.1f %s" % (nbytes / float(size), unit)
    return "%d B" % nbytes


def record_matches(record, st, expected_sha256, remote):
    """True when the record of an earlier verification still describes the file present."""
    if not record:
        return False
    if record.get("size") != st.st_size or record.get("mtime_ns") != st.st_mtime_ns:
        return False
    if remote.get("size") is not None and st.st_size != remote["size"]:
        return False
    if expected_sha256:
        return record.get("sha256") == expected_sha256
    # Without a checksum, trust the record while the hub still names the same object.
    return bool(remote.get("etag")) and record.get("etag") == remote["etag"]


def same_request(record, params):
    """Whether a record was written for the same repository, file and revision as asked now."""
    return bool(record) and all(record.get(key) == params[key] for key in ("repo_id", "filename", "revision"))


class Progress:
    """Progress of one download, for the host's log and the progress file the action plugin reads."""

    def __init__(self, log, path, name, total, interval, resumed_from):
        self.log, self.path, self.name, self.total = log, path, name, total
        self.interval = interval
        self.started = self.last = time.time()
        self.resumed_from = resumed_from
        self.sent = 0

    def line(self, done, now):
        rate = self.sent / max(now - self.started, 1e-6)
        eta = (self.total - done) / rate if rate > 0 else None
        return "%s: %s of %s (%.1f%%), %.1f MB/s%s" % (
            self.name, human(done), human(self.total), 100.0 * done / max(self.total, 1), rate / 1e6,
            ", about %d s left" % eta if eta is not None and done < self.total else "")

    def write(self, done, now, state="downloading"):
        try:
            write_json_atomic(self.path, {
                "file": self.name, "done": done, "total": self.total, "state": state,
                "sent": self.sent, "resumed_from": self.resumed_from, "started": self.started, "updated": now,
                "rate": self.sent / max(now - self.started, 1e-6), "line": self.line(done, now)})
        except (IOError, OSError):
            pass  # progress is a courtesy; the download must not fail for it

    def update(self, done, force=False):
        now = time.time()
        if force or now - self.last >= self.interval:
            self.log(self.line(done, now))
            self.write(done, now)
            self.last = now


def download(module, segments, headers, partial, chunk_size, timeout, progress):
    """Download the segments, one after the other, into partial, continuing it where it stopped.

    segments: [{"name", "url", "size", "sha256"}]. Each part is checked against its own SHA-256 when the
    hub gives one. Returns (overall digest, bytes sent, offset resumed from)."""
    hasher = Hasher()
    try:
        return _download(module, segments, headers, partial, chunk_size, timeout, progress, hasher)
    finally:
        hasher.close()


def _download(module, segments, headers, partial, chunk_size, timeout, progress, hasher):
    total = sum(seg["size"] for seg in segments)
    have = os.path.getsize(partial) if os.path.exists(partial) else 0
    if have > total:
        os.unlink(partial)
        have = 0
    # One file: its part digest is the overall digest (one SHA-256 of each byte, not two).
    single = len(segments) == 1

    def new_part(overall):
        return overall if single else hashlib.sha256()

    # Re-read what is there: the overall digest needs it, and so does each finished part's check.
    overall = hashlib.sha256()
    starts, offset = [], 0
    for seg in segments:
        starts.append(offset)
        offset += seg["size"]
    state = {"overall_at_start": [], "part_digest": None}
    index = 0
    if have:
        with open(partial, "rb") as handle:
            for index, seg in enumerate(segments):
                state["overall_at_start"].append(overall.copy())
                part = new_part(overall)
                hasher.use(overall, part)
                todo = min(seg["size"], have - starts[index])
                while todo > 0:
                    block = handle.read(min(chunk_size, todo))
                    if not block:
                        break
                    hasher.feed(block)
                    todo -= len(block)
                hasher.sync()
                if have < starts[index] + seg["size"]:
                    state["part_digest"] = part
                    break
                check_part(seg, part, partial)
            else:
                index = len(segments)
    sent = 0
    resumed_from = have
    progress.resumed_from = have
    done = have
    first = index
    for index in range(first, len(segments)):
        seg = segments[index]
        seg_offset = done - starts[index]
        if len(state["overall_at_start"]) <= index:
            state["overall_at_start"].append(overall.copy())
        part = state["part_digest"] if seg_offset else new_part(overall)
        state["part_digest"] = None
        request_headers = dict(headers)
        if seg_offset:
            request_headers["Range"] = "bytes=%d-" % seg_offset
        try:
            response = open_url(seg["url"], request_headers, timeout)
        except HTTPError as exc:
            if exc.code == 416 and seg_offset:
                # The partial file is not a prefix the server recognises: start the part again.
                module.warn("The server refused to continue %s at byte %d (HTTP 416): downloading it again."
                            % (seg["name"], seg_offset))
                response = None
            else:
                raise FetchError("the server answered HTTP %d for %s" % (exc.code, seg["url"])) from None
        except URLError as exc:
            raise FetchError("cannot reach %s: %s" % (seg["url"], exc.reason)) from None
        if seg_offset and (response is None or response.getcode() != 206):
            if response is not None:
                module.warn("The server ignored the Range request for %s (HTTP %d): downloading it from the "
                            "start, %d bytes already here are discarded." % (seg["name"], response.getcode(),
                                                                            seg_offset))
            with open(partial, "r+b") as handle:
                handle.truncate(starts[index])
            overall = state["overall_at_start"][index].copy()
            part = new_part(overall)
            done = starts[index]
            resumed_from = min(resumed_from, done)
            progress.resumed_from = resumed_from
            if response is None:
                try:
                    response = open_url(seg["url"], dict(headers), timeout)
                except (HTTPError, URLError) as exc:
                    raise FetchError("cannot download %s: %s" % (seg["url"], exc)) from None
        elif seg_offset:
            module.log("resuming %s at byte %d of %d" % (seg["name"], seg_offset, seg["size"]))
        progress.update(done, force=True)
        hasher.use(overall, part)
        # Blocks are read into a ring of buffers (readinto: no 8 MiB allocation and copy per block). A
        # buffer is read into again only once the hasher is done with it: at most depth blocks wait in its
        # queue and one is being hashed, so depth + 2 buffers are enough.
        ring = [bytearray(chunk_size) for _ in range(hasher.depth + 2)]
        with open(partial, "ab") as out:
            try:
                for turn in itertools.count():
                    buf = ring[turn % len(ring)]
                    length = response.readinto(buf)
                    if not length:
                        break
                    block = memoryview(buf)[:length]
                    out.write(block)
                    hasher.feed(block)
                    if (done + length) // WRITE_BEHIND > done // WRITE_BEHIND:
                        out.flush()
                        hasher.write_behind(out.fileno())
                    sent += len(block)
                    done += len(block)
                    progress.sent = sent
                    progress.update(done)
                out.flush()
                os.fsync(out.fileno())
            except (IOError, OSError, HTTPException) as exc:
                if getattr(exc, "errno", None) != errno.ENOSPC:
                    progress.update(done, force=True)
                    raise FetchError("download of %s stopped at %d of %d bytes (%s); run again to continue" % (
                        seg["name"], done - starts[index], seg["size"], to_native(exc) or type(exc).__name__)) from None
                out.close()
                os.unlink(partial)
                raise FetchError("the filesystem of %s filled up at %d of %d bytes (%d free now); the partial "
                                 "download was removed" % (os.path.dirname(partial), done, total,
                                                           shutil.disk_usage(os.path.dirname(partial)).free)) \
                    from None
        hasher.sync()
        if done - starts[index] != seg["size"]:
            progress.update(done, force=True)
            raise FetchError("download of %s ended at %d of %d bytes; run again to continue" % (
                seg["name"], done - starts[index], seg["size"]))
        check_part(seg, part, partial)
    progress.sent = sent
    progress.update(done, force=True)
    return overall, sent, resumed_from


def check_part(seg, digest, partial):
    if seg.get("check", True) and seg.get("sha256"):
        actual = digest.hexdigest()
        if actual != seg["sha256"]:
            os.unlink(partial)
            raise FetchError("SHA-256 mismatch for %s: expected %s, got %s; the download was discarded"
                             % (seg["name"], seg["sha256"], actual))


def resolve(module, endpoint, filename):
    p = module.params
    url = hf_hub_url(p["repo_id"], filename, revision=p["revision"], endpoint=endpoint)
    meta = get_hf_file_metadata(url, token=p["token"] or False)
    etag = (meta.etag or "").strip('"').lower()
    if meta.size is None:
        raise FetchError("the hub did not report the size of %s/%s" % (p["repo_id"], filename))
    return {"name": filename, "url": meta.location or url, "size": meta.size, "etag": etag,
            "sha256": etag if SHA256_RE.match(etag) else None, "commit": meta.commit_hash}


def is_not_found(exc):
    response = getattr(exc, "response", None)
    return type(exc).__name__ in ("EntryNotFoundError", "RemoteEntryNotFoundError") or \
        getattr(response, "status_code", None) == 404


def resolve_all(module, endpoint):
    """The segments that make up the file: itself, the parts asked for, or the -split-X parts found."""
    p = module.params
    where = "%s at %s on %s" % (p["repo_id"], p["revision"], endpoint)

    def describe(exc):
        return to_native(exc).replace(p["token"] or "\0", "***")

    names = p["parts"] or [p["filename"]]
    segments = []
    try:
        for name in names:
            segments.append(resolve(module, endpoint, name))
    except FetchError:
        raise
    except Exception as exc:  # huggingface_hub raises many types; all mean the same to the user
        if p["parts"] or not is_not_found(exc):
            raise FetchError("cannot resolve %s in %s: %s" % (names[len(segments)], where, describe(exc))) from None
        # Not on the hub as one file: look for TheBloke's -split-a, -split-b, ...
        for name in split_names(p["filename"]):
            try:
                segments.append(resolve(module, endpoint, name))
            except Exception as exc2:
                if is_not_found(exc2):
                    break
                raise FetchError("cannot resolve %s in %s: %s" % (name, where, describe(exc2))) from None
        if not segments:
            raise FetchError("cannot resolve %s in %s: %s (and there is no %s-split-a either)" % (
                p["filename"], where, describe(exc), p["filename"])) from None
        module.log("%s is split into %s" % (p["filename"], ", ".join(s["name"] for s in segments)))
    return segments


def take_lock(dest, filename):
    """One download of a file at a time: an interrupted play can leave its async job running."""
    path = os.path.join(dest, STATE_DIR, filename + ".lock")
    if not os.path.isdir(os.path.dirname(path)):
        os.makedirs(os.path.dirname(path), 0o755)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (IOError, OSError):
        handle.seek(0)
        owner = handle.read().strip()
        handle.close()
        raise FetchError("another download of %s into %s is running (%s); wait for it or stop it"
                         % (filename, dest, owner or "pid unknown")) from None
    handle.seek(0)
    handle.truncate()
    handle.write("pid %d since %s" % (os.getpid(), time.strftime("%Y-%m-%d %H:%M:%S")))
    handle.flush()
    return handle


def space_and_place(module, dest, needed_file, have):
    """Refuse to start when dest is on / (unless allowed) or lacks room. Errors name host, path and bytes."""
    p = module.params
    host = socket.gethostname()
    margin = p["space_margin"] * MIB
    needed = max(needed_file - have, 0) + margin
    probe = existing_ancestor(dest)
    free = shutil.disk_usage(probe).free
    mount = mount_point(dest)
    if not p["allow_root_filesystem"] and os.stat(probe).st_dev == os.stat("/").st_dev:
        raise FetchError(
            "on %s: %s is on the root filesystem (mount point %s), not on a filesystem of its own; the model "
            "needs %d bytes (%s) and / has %d bytes (%s) free. Mount the SSD there, point the model "
            "directory at a mounted filesystem, or allow the root filesystem explicitly "
            "(allow_root_filesystem / model_allow_root_filesystem: true)."
            % (host, dest, mount, needed, human(needed), free, human(free)))
    if free < needed:
        raise FetchError(
            "on %s: not enough space in %s (filesystem %s): %d bytes needed (%s: file %d, margin %d, already "
            "downloaded %d), %d bytes (%s) free" % (host, dest, mount, needed, human(needed), needed_file,
                                                    margin, have, free, human(free)))
    return {"free": free, "needed": needed, "mount": mount}


def install_src(module, result, path, spath, expected, record):
    """Fan-out: take the copy of the file that sits at src on this host."""
    p = module.params
    src = p["src"]
    if not expected:
        raise FetchError("src needs sha256: a copy is only installed when it matches a known checksum")
    remote = {"size": os.path.getsize(src) if os.path.isfile(src) else None, "etag": ""}
    if os.path.isfile(path):
        st = os.stat(path)
        if p["verify"] == "auto" and record_matches(record, st, expected, remote):
            result.update(verified="record", sha256=expected)
            return result
        if hash_file(path, p["chunk_size"]).hexdigest() == expected:
            if not module.check_mode:
                write_json_atomic(spath, dict(record or {}, size=st.st_size, mtime_ns=st.st_mtime_ns,
                                              sha256=expected, verified_at=int(time.time())))
            result.update(verified="hash", sha256=expected)
            return result
    result.update(changed=True, verified="src", sha256=expected)
    have = os.path.getsize(src) if os.path.isfile(src) else 0
    if p["size"] and have < p["size"]:
        # The copy has yet to arrive, or to be finished (a copy cut short is continued): room for the rest.
        space_and_place(module, p["dest"], p["size"], have)
    if module.check_mode:
        result["msg"] = "would install %s from %s" % (path, src)
        return result
    if not os.path.isfile(src):
        raise FetchError("src %s does not exist" % src)
    actual = hash_file(src, p["chunk_size"]).hexdigest()
    if actual != expected:
        os.unlink(src)
        raise FetchError("SHA-256 mismatch for %s: expected %s, got %s; the copy was removed and %s was left as "
                         "it was" % (src, expected, actual, path))
    if os.stat(src).st_dev == os.stat(p["dest"]).st_dev:
        os.replace(src, path)
    else:
        partial = partial_path(p["dest"], os.path.basename(path))
        shutil.copyfile(src, partial)
        os.replace(partial, path)
        os.unlink(src)
    st = os.stat(path)
    write_json_atomic(spath, {"repo_id": p["repo_id"], "filename": p["filename"], "revision": p["revision"],
                              "commit": (record or {}).get("commit"), "etag": "", "size": st.st_size,
                              "mtime_ns": st.st_mtime_ns, "sha256": expected, "verified_at": int(time.time())})
    result["size"] = st.st_size
    return result


def run(module):
    p = module.params
    dest = p["dest"]
    filename = p["filename"]
    # A file in a sub-directory of the repository lands flat in dest.
    filename_local = os.path.basename(filename)
    path = os.path.join(dest, filename_local)
    expected_pin = (p["sha256"] or "").strip().lower() or None
    if expected_pin and not SHA256_RE.match(expected_pin):
        raise FetchError("sha256 must be 64 hexadecimal characters, got %r" % p["sha256"])
    spath = state_path(dest, filename_local)
    record = read_state(spath)
    # What the model consists of on the host, for whoever removes it later (the release's pruning).
    result = dict(changed=False, path=path, size=None, sha256=expected_pin or "", commit="", downloaded_bytes=0,
                  resumed_from=0, verified="", parts=[], artifacts=[path, spath])
    # The common re-run: a pinned SHA-256 that the record says this very file (same size and mtime, same
    # repository, file and revision) was verified against. Nothing to ask the hub, nothing to read.
    if expected_pin and p["verify"] == "auto" and os.path.isfile(path) and same_request(record, p):
        st = os.stat(path)
        if record_matches(record, st, expected_pin, {}):
            result.update(verified="record", size=st.st_size, commit=record.get("commit") or "",
                          parts=record.get("parts") or [])
            return result
    if p["only_if_verified"]:
        result["pending"] = True
        return result
    if p["src"]:
        return install_src(module, result, path, spath, expected_pin, record)

    endpoint = hub_endpoint(p["endpoint"])
    segments = resolve_all(module, endpoint)
    split = len(segments) > 1 or segments[0]["name"] != filename
    etag = ",".join(seg["etag"] for seg in segments)
    remote = {"size": sum(seg["size"] for seg in segments), "etag": etag, "commit": segments[0]["commit"]}
    expected = expected_pin or (None if split else segments[0]["sha256"])
    result.update(size=remote["size"], sha256=expected or "", commit=remote["commit"] or "",
                  parts=[seg["name"] for seg in segments] if split else [])

    def new_record(st, sha):
        return {"repo_id": p["repo_id"], "filename": filename, "revision": p["revision"],
                "commit": remote["commit"], "etag": etag, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "sha256": sha, "parts": result["parts"], "verified_at": int(time.time())}

    before = {"path": path, "commit": (record or {}).get("commit"), "sha256": (record or {}).get("sha256"),
              "size": None}
    if os.path.isfile(path):
        st = os.stat(path)
        before["size"] = st.st_size
        if p["verify"] == "auto" and record_matches(record, st, expected, remote):
            result["verified"] = "record"
            result["sha256"] = record.get("sha256") or ""
            return result
        if st.st_size == remote["size"]:
            if split and not expected:
                digests = []
                with open(path, "rb") as handle:
                    for seg in segments:
                        digest, todo = hashlib.sha256(), seg["size"]
                        while todo:
                            block = handle.read(min(p["chunk_size"], todo))
                            digest.update(block)
                            todo -= len(block)
                        digests.append(digest.hexdigest())
                good = all(not seg["sha256"] or seg["sha256"] == d for seg, d in zip(segments, digests, strict=True))
                actual = hash_file(path, p["chunk_size"]).hexdigest() if good else None
            else:
                actual = hash_file(path, p["chunk_size"]).hexdigest()
                good = expected is None or actual == expected
            if good:
                result["verified"] = "hash"
                result["sha256"] = actual
                if not module.check_mode:
                    write_json_atomic(spath, new_record(st, actual))
                return result
            module.warn("%s does not match %s: fetching it again." % (
                path, "SHA-256 %s (it has %s)" % (expected, actual) if expected else "the hub's part checksums"))

    result["changed"] = True
    result["verified"] = "download"
    if module._diff:
        result["diff"] = {
            "before": json.dumps(before, indent=2, sort_keys=True) + "\n",
            "after": json.dumps({"path": path, "commit": remote["commit"], "sha256": expected,
                                 "size": remote["size"]}, indent=2, sort_keys=True) + "\n",
        }
    partial = partial_path(dest, filename_local)
    have = os.path.getsize(partial) if os.path.exists(partial) else 0
    room = space_and_place(module, dest, remote["size"], have)
    if module.check_mode:
        result["msg"] = "would download %d bytes (%s)%s from %s into %s (%d bytes free)" % (
            remote["size"] - have, human(remote["size"] - have),
            " in %d parts" % len(segments) if split else "", endpoint, dest, room["free"])
        return result
    # Created only now, once the place and the room are known to be right: a refused download leaves
    # the host as it was (no empty model directory).
    if not os.path.isdir(dest):
        os.makedirs(dest, 0o755)

    lock = take_lock(dest, filename_local)
    headers = build_hf_headers(token=p["token"] or False)
    progress = Progress(module.log, progress_path(dest, filename_local), filename_local, remote["size"],
                        p["progress_interval"], have)
    for seg in segments:
        seg["check"] = bool(split)  # a single file is checked against `expected` below
    digest, sent, resumed_from = download(module, segments, headers, partial, p["chunk_size"], p["timeout"],
                                          progress)
    result["downloaded_bytes"] = sent
    result["resumed_from"] = resumed_from
    actual = digest.hexdigest()
    if expected and actual != expected:
        os.unlink(partial)
        raise FetchError("SHA-256 mismatch for %s: expected %s, got %s; the download was discarded and %s "
                         "was left as it was" % (filename, expected, actual, path))
    os.replace(partial, path)
    st = os.stat(path)
    write_json_atomic(spath, new_record(st, actual))
    progress.write(st.st_size, time.time(), state="done")
    lock.close()
    result["sha256"] = actual
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repo_id=dict(type="str", required=True),
            filename=dict(type="str", required=True),
            revision=dict(type="str", default="main"),
            dest=dict(type="path", required=True),
            endpoint=dict(type="str"),
            token=dict(type="str", no_log=True),
            sha256=dict(type="str"),
            parts=dict(type="list", elements="str"),
            src=dict(type="path"),
            size=dict(type="int"),
            allow_root_filesystem=dict(type="bool", default=False),
            space_margin=dict(type="int", default=1024),
            progress_interval=dict(type="float", default=30.0),
            verify=dict(type="str", default="auto", choices=["auto", "full"]),
            chunk_size=dict(type="int", default=8 * 1024 * 1024),
            timeout=dict(type="int", default=60),
            only_if_verified=dict(type="bool", default=False),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    if HF_IMPORT_ERROR and not module.params["src"]:
        module.fail_json(msg=missing_required_lib("huggingface_hub"), exception=HF_IMPORT_ERROR)
    try:
        result = run(module)
    except FetchError as exc:
        module.fail_json(msg="%s: %s" % (module.params["repo_id"], exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg="%s: %s" % (module.params["repo_id"], to_native(exc)))
    if os.path.exists(result["path"]):
        file_args = module.load_file_common_arguments(module.params, path=result["path"])
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
