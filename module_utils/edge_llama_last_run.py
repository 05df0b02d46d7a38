# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""Whether a host is exactly as the last complete run left it, and that run's inputs are this run's.

A complete site.yml run that ends with the health gate passed records (library/edge_llama_last_run.py,
state=recorded) a fingerprint of its inputs (every role's settings as the host saw them, and the code of
edge-llama that applied them: action_plugins/edge_llama_inputs.py) and an observation of what it owns on
the host: files (SHA-256, mode, owner), large files (size, mtime: a 41 GB model is not hashed on every
run), units (enabled, active), users, Debian packages (installed), virtualenvs (the distributions in them)
and the llama.cpp commit its version named. The next run's first checks (state=check) compare: the same
fingerprint, the same observation now, and the same commit for a branch or tag (asked of the repository)
mean the run has nothing to do on that host; anything else sends the host through every role, which
reports and repairs the difference. This file holds the observation and the comparison, with unit tests.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import hashlib
import os
import pwd
import re

from ansible.module_utils.edge_llama_store import read_json

RECORD = "/etc/ansible/facts.d/edge_llama_last_run.fact"
VERSION = 1
KINDS = ("files", "trees", "large_files", "units", "users", "packages", "venvs")
HEX = re.compile(r"^[0-9a-f]{7,40}$")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file(path):
    """SHA-256, mode and owner of a file; None when it is not a regular file."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return {"sha256": _sha256(path), "mode": "%04o" % (info.st_mode & 0o7777), "uid": info.st_uid,
            "gid": info.st_gid}


def _tree(path):
    """{name: _file} of a build's outputs in a directory: its programs and shared libraries (the regular
    files directly in it that are executable or named *.so*; a Makefile build's directory is also its
    source tree, which is not read); None if the directory is absent."""
    if not os.path.isdir(path):
        return None
    found = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.islink(full) or not os.path.isfile(full):
            continue
        if ".so" in name or os.stat(full).st_mode & 0o100:
            found[name] = _file(full)
    return found


def _large(path):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "mode": "%04o" % (info.st_mode & 0o7777)}


def _users(names):
    found = {}
    for name in names:
        try:
            entry = pwd.getpwnam(name)
            found[name] = {"uid": entry.pw_uid, "gid": entry.pw_gid}
        except KeyError:
            found[name] = None
    return found


def _venv(path):
    """The distributions installed in a virtualenv (their dist-info names: name and version)."""
    if not os.path.isdir(path):
        return None
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(path, "lib", "python*", "site-packages",
                                                                      "*.dist-info")))


def _units(names, run):
    """{unit: "enabled/active"} from one systemctl call."""
    if not names:
        return {}
    rc, out, err = run(["systemctl", "show", "--property=Id,UnitFileState,ActiveState", "--"] + list(names))
    states = {}
    block = {}
    for line in (out or "").splitlines() + [""]:
        if not line.strip():
            if block.get("Id"):
                states[block["Id"]] = "%s/%s" % (block.get("UnitFileState", ""), block.get("ActiveState", ""))
            block = {}
            continue
        key, _, value = line.partition("=")
        block[key] = value
    return {name: states.get(name, "unknown") for name in names}


def _packages(names, run):
    """{package: True when installed} from one dpkg-query call."""
    if not names:
        return {}
    rc, out, err = run(["dpkg-query", "-W", "-f", "${Package}\\t${Status}\\n", "--"] + list(names))
    installed = set()
    for line in (out or "").splitlines():
        name, _, status = line.partition("\t")
        if status.strip().endswith(" installed"):
            installed.add(name.split(":")[0])
    return {name: name in installed for name in names}


def observe(spec, run):
    """What the host holds now of everything spec names. run(argv) -> (rc, stdout, stderr)."""
    spec = spec or {}
    return {
        "files": {p: _file(p) for p in spec.get("files") or []},
        "trees": {p: _tree(p) for p in spec.get("trees") or []},
        "large_files": {p: _large(p) for p in spec.get("large_files") or []},
        "units": _units(spec.get("units") or [], run),
        "users": _users(spec.get("users") or []),
        "packages": _packages(spec.get("packages") or [], run),
        "venvs": {p: _venv(p) for p in spec.get("venvs") or []},
    }


def differences(recorded, now):
    """One line per thing that is not as the last complete run left it ([] when all is)."""
    lines = []
    for kind in KINDS:
        before = (recorded or {}).get(kind) or {}
        after = (now or {}).get(kind) or {}
        for name in sorted(set(before) | set(after)):
            if before.get(name) == after.get(name):
                continue
            was, found = before.get(name), after.get(name)
            if found is None or found is False:
                what = "missing" if kind != "units" else "not found"
            elif kind == "units":
                what = "%s (was %s)" % (found, was)
            elif kind == "trees" and isinstance(was, dict) and isinstance(found, dict):
                changed = sorted(k for k in set(was) | set(found) if was.get(k) != found.get(k))
                what = "changed: %s" % ", ".join(changed[:5])
            elif kind == "venvs" and isinstance(was, list):
                what = "packages differ: %s" % ", ".join(sorted(set(was) ^ set(found))[:5])
            elif kind == "files" and isinstance(was, dict):
                what = "content changed" if was.get("sha256") != found.get("sha256") else "mode or owner changed"
            else:
                what = "changed"
            lines.append("%s %s: %s" % (kind.rstrip("s").replace("_", " "), name, what))
    return lines


def remote_commit(url, version, run):
    """The commit a branch or tag names in the repository at url (peeled for annotated tags), or None."""
    rc, out, err = run(["git", "ls-remote", "--", url, version, version + "^{}"])
    if rc != 0:
        return None
    refs = {}
    for line in (out or "").splitlines():
        sha, _, ref = line.partition("\t")
        refs[ref.strip()] = sha.strip()
    for ref in ("refs/tags/%s^{}" % version, "refs/heads/%s" % version, "refs/tags/%s" % version, version):
        if ref in refs:
            return refs[ref]
    return None


def remote_differences(remote, run):
    """[] when the version the last run built still names its commit, else one line saying why not."""
    if not remote:
        return []
    version, commit, url = str(remote.get("version") or ""), str(remote.get("commit") or ""), remote.get("url")
    if not commit:
        return ["llama.cpp: the last run recorded no commit"]
    if HEX.match(version) and commit.startswith(version):
        return []
    found = remote_commit(url, version, run)
    if found is None:
        return ["llama.cpp: could not ask %s which commit %s names" % (url, version)]
    if found != commit:
        return ["llama.cpp: %s moved from %s to %s" % (version, commit[:12], found[:12])]
    return []


def make_record(fingerprint, spec, observed, remote=None, reports=None, gate=None):
    return {"version": VERSION, "fingerprint": fingerprint, "spec": {k: list(spec.get(k) or []) for k in KINDS},
            "observed": observed, "remote": remote or {}, "reports": reports or {}, "gate": gate or {}}


def read(path=RECORD):
    """The record at path, or None when it is missing, unreadable or of another version."""
    record = read_json(path)
    return record if isinstance(record, dict) and record.get("version") == VERSION else None


def check(record, fingerprint, run):
    """(unchanged, reasons): whether this run has nothing to do on the host, and if not, why."""
    if not record:
        return False, ["no record of a complete run on this host"]
    if record.get("fingerprint") != fingerprint:
        return False, ["the settings or edge-llama changed since the last complete run"]
    reasons = differences(record.get("observed"), observe(record.get("spec"), run))
    reasons += remote_differences(record.get("remote"), run)
    return not reasons, reasons
