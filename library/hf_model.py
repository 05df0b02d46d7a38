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
    makes I(dest)/I(filename) that file.
  - Downloads into a hidden partial file next to the destination, checks size and SHA-256, then renames it
    into place, so the destination is either the old file, the new verified file, or absent; never half
    written. A partial file left by an interrupted run is continued with an HTTP Range request.
  - Records what it verified (size, mtime, SHA-256, commit) in I(dest)/.edge-llama/, so that a re-run with
    the verified file present does not hash it again; I(verify=full) forces a full re-hash.
  - Honours a mirror endpoint (C(HF_ENDPOINT)) and a token, which is never logged or returned.
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
verified:
  description: How the file present was trusted (C(record), C(hash), C(download)).
  returned: always
  type: str
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.six.moves.urllib.parse import urlparse
from ansible.module_utils.six.moves.urllib.request import Request, build_opener, HTTPRedirectHandler
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError

HF_IMPORT_ERROR = None
try:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers
except ImportError:  # pragma: no cover - reported by the module
    HF_IMPORT_ERROR = traceback.format_exc()

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
STATE_DIR = ".edge-llama"
SPACE_MARGIN = 64 * 1024 * 1024
PROGRESS_EVERY = 30.0


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


def state_path(dest, filename):
    return os.path.join(dest, STATE_DIR, filename + ".json")


def partial_path(dest, filename):
    return os.path.join(dest, "." + filename + ".partial")


def read_state(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def write_json_atomic(path, data):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def record_matches(record, st, expected_sha256, remote):
    """True when the record of an earlier verification still describes the file present."""
    if not record:
        return False
    if record.get("size") != st.st_size or record.get("mtime_ns") != st.st_mtime_ns:
        return False
    if st.st_size != remote["size"]:
        return False
    if expected_sha256:
        return record.get("sha256") == expected_sha256
    # Without a checksum, trust the record while the hub still names the same object.
    return record.get("etag") == remote["etag"]


class _NoAuthAcrossHosts(HTTPRedirectHandler):
    """Follow redirects, but never carry the token to another host (a CDN)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = HTTPRedirectHandler.redirect_request(self, req, fp, code, msg, headers, newurl)
        if new is not None and urlparse(newurl).netloc != urlparse(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def download(module, url, headers, partial, total, chunk_size, timeout, log):
    """Download url into partial, continuing it when possible. Returns (digest, sent, resumed_from)."""
    offset = os.path.getsize(partial) if os.path.exists(partial) else 0
    if offset > total:
        os.unlink(partial)
        offset = 0
    digest = hashlib.sha256()
    request_headers = dict(headers)
    if 0 < offset < total:
        request_headers["Range"] = "bytes=%d-" % offset
    elif offset == total and total > 0:
        return hash_file(partial, chunk_size, digest), 0, offset
    opener = build_opener(_NoAuthAcrossHosts)
    try:
        response = opener.open(Request(url, headers=request_headers), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and offset:
            # The partial file is not a prefix the server recognises: start again.
            os.unlink(partial)
            return download(module, url, headers, partial, total, chunk_size, timeout, log)
        raise FetchError("the server answered HTTP %d for %s" % (exc.code, url)) from None
    except URLError as exc:
        raise FetchError("cannot reach %s: %s" % (url, exc.reason)) from None

    status = response.getcode()
    if offset and status == 206:
        hash_file(partial, chunk_size, digest)
        mode = "ab"
        resumed_from = offset
        log("resuming %s at %d of %d bytes" % (os.path.basename(partial), offset, total))
    else:
        if offset:
            module.warn("The server ignored the Range request (HTTP %d): downloading from the start." % status)
        mode = "wb"
        resumed_from = 0
        offset = 0

    sent = 0
    last = started = time.time()
    with open(partial, mode) as out:
        while True:
            block = response.read(chunk_size)
            if not block:
                break
            out.write(block)
            digest.update(block)
            sent += len(block)
            now = time.time()
            if now - last >= PROGRESS_EVERY:
                done = offset + sent
                log("%s: %d of %d bytes (%.1f%%), %.1f MB/s" % (
                    os.path.basename(partial), done, total, 100.0 * done / max(total, 1),
                    sent / max(now - started, 1e-6) / 1e6))
                last = now
        out.flush()
        os.fsync(out.fileno())
    return digest, sent, resumed_from


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

    endpoint = p["endpoint"] or os.environ.get("HF_ENDPOINT") or None
    try:
        url = hf_hub_url(p["repo_id"], filename, revision=p["revision"], endpoint=endpoint)
        meta = get_hf_file_metadata(url, token=p["token"] or False)
    except Exception as exc:  # huggingface_hub raises many types; all mean the same to the user
        raise FetchError("cannot resolve %s/%s at %s on %s: %s" % (
            p["repo_id"], filename, p["revision"], endpoint or "huggingface.co",
            to_native(exc).replace(p["token"] or "\0", "***"))) from None
    etag = (meta.etag or "").strip('"').lower()
    remote = {"size": meta.size, "etag": etag, "commit": meta.commit_hash, "url": meta.location or url}
    if remote["size"] is None:
        raise FetchError("the hub did not report the size of %s/%s" % (p["repo_id"], filename))
    expected = expected_pin or (etag if SHA256_RE.match(etag) else None)

    result = dict(changed=False, path=path, size=remote["size"], sha256=expected or "",
                  commit=remote["commit"] or "", downloaded_bytes=0, resumed_from=0, verified="")
    spath = state_path(dest, filename_local)
    record = read_state(spath)

    def new_record(st, sha):
        return {"repo_id": p["repo_id"], "filename": filename, "revision": p["revision"],
                "commit": remote["commit"], "etag": etag, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "sha256": sha, "verified_at": int(time.time())}

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
            actual = hash_file(path, p["chunk_size"]).hexdigest()
            if expected is None or actual == expected:
                result["verified"] = "hash"
                result["sha256"] = actual
                if not module.check_mode:
                    write_json_atomic(spath, new_record(st, actual))
                return result
            module.warn("%s does not match SHA-256 %s (it has %s): fetching it again." % (path, expected, actual))

    result["changed"] = True
    result["verified"] = "download"
    if module._diff:
        result["diff"] = {
            "before": json.dumps(before, indent=2, sort_keys=True) + "\n",
            "after": json.dumps({"path": path, "commit": remote["commit"], "sha256": expected,
                                 "size": remote["size"]}, indent=2, sort_keys=True) + "\n",
        }
    if module.check_mode:
        result["msg"] = "would download %d bytes from %s" % (remote["size"], endpoint or "huggingface.co")
        return result

    if not os.path.isdir(dest):
        raise FetchError("destination directory %s does not exist" % dest)
    partial = partial_path(dest, filename_local)
    have = os.path.getsize(partial) if os.path.exists(partial) else 0
    free = shutil.disk_usage(dest).free
    needed = max(remote["size"] - have, 0) + SPACE_MARGIN
    if free < needed:
        raise FetchError("not enough space in %s: %d bytes needed (file %d, margin %d, already have %d), %d free"
                         % (dest, needed, remote["size"], SPACE_MARGIN, have, free))

    headers = build_hf_headers(token=p["token"] or False)
    digest, sent, resumed_from = download(module, remote["url"], headers, partial, remote["size"],
                                          p["chunk_size"], p["timeout"], module.log)
    result["downloaded_bytes"] = sent
    result["resumed_from"] = resumed_from
    size = os.path.getsize(partial)
    if size != remote["size"]:
        raise FetchError("download of %s ended at %d of %d bytes; run again to continue" % (
            filename, size, remote["size"]))
    actual = digest.hexdigest()
    if expected and actual != expected:
        os.unlink(partial)
        raise FetchError("SHA-256 mismatch for %s: expected %s, got %s; the download was discarded and %s "
                         "was left as it was" % (filename, expected, actual, path))
    os.replace(partial, path)
    st = os.stat(path)
    write_json_atomic(spath, new_record(st, actual))
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
            verify=dict(type="str", default="auto", choices=["auto", "full"]),
            chunk_size=dict(type="int", default=8 * 1024 * 1024),
            timeout=dict(type="int", default=60),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    if HF_IMPORT_ERROR:
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
