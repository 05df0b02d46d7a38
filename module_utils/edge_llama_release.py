# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""The release: which build of llama.cpp serves which model, with which settings. One owner for it.

A release is a dict: commit, build_dir, server_binary, features, model_path, model_sha256, chat_template,
probes, ports, since, and `artifacts` (the paths its build and its model consist of, as the roles that
made them registered them: llama_cpp's build directory; hf_model's file and its download record).

The record (/etc/ansible/facts.d/edge_llama_release.fact, so that it is also ansible_local.edge_llama_release)
holds `releases` (newest first: the serving one, then those kept to roll back to) and `rejected` (releases
that failed their health gate and were rolled back). This file decides, in Python with unit tests:

- plan(): what serves, what is wanted, whether that is a switch (another build, model or template);
- commit(): the record once the wanted release passed its gate, and what no kept release uses any more;
- reject(): the record once the wanted release failed its gate and the host went back.

Pruning never builds a path: it removes the artefacts older and rejected releases registered, and under
each root an owner declared wholly its own (llama_cpp's builds directory), anything no kept release uses.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

# What makes two releases the same release (the rest are where it answers, and when it began).
IDENTITY = ("server_binary", "model_path", "model_sha256", "chat_template")
RECORD = "/etc/ansible/facts.d/edge_llama_release.fact"


def empty():
    return {"releases": [], "rejected": []}


def normalise(record):
    """A record as read from disk (or nothing) with both lists present."""
    record = dict(record or {})
    return {"releases": [r for r in record.get("releases") or [] if isinstance(r, dict)],
            "rejected": [r for r in record.get("rejected") or [] if isinstance(r, dict)]}


def identity(release):
    return tuple(str((release or {}).get(key) or "") for key in IDENTITY)


def same(a, b):
    return bool(a) and bool(b) and identity(a) == identity(b)


def serving(record):
    """The release that serves now: the newest recorded one ({} before the first)."""
    releases = normalise(record)["releases"]
    return releases[0] if releases else {}


def artifacts(release):
    """The paths a release's build and model consist of. Records written before the roles registered
    their artefacts name only the build directory and the model file."""
    if release.get("artifacts") is not None:
        return [p for p in release["artifacts"] if p]
    return [p for p in (release.get("build_dir"), release.get("model_path")) if p]


def plan(record, wanted):
    """What this run is about: {serving, wanted, switching, first}."""
    current = serving(record)
    return {"serving": current, "wanted": dict(wanted), "switching": not same(current, wanted),
            "first": not current}


def commit(record, wanted, keep, now, roots=None, listdir=os.listdir):
    """The record after `wanted` passed its gate, and the paths to remove.

    The wanted release goes first (keeping its `since` when it was already serving), an older entry of
    the same release is dropped, the newest `keep` are kept; rejected releases are forgotten once pruned.
    Removed: every artefact of a release that is not kept (older or rejected) unless a kept one uses it,
    and under each of `roots` every entry no kept release uses (builds that failed before they became a
    release). Returns (record, remove)."""
    if keep < 1:
        raise ValueError("keep must be at least 1, not %r" % (keep,))
    record = normalise(record)
    current = serving(record)
    entry = dict(wanted)
    entry["since"] = current.get("since") or now if same(current, wanted) else now
    older = [r for r in record["releases"] if not same(r, wanted)]
    releases = [entry] + older
    kept, dropped = releases[:keep], releases[keep:] + record["rejected"]
    used = set()
    for release in kept:
        used.update(os.path.normpath(p) for p in artifacts(release))
    remove = []
    for release in dropped:
        for path in artifacts(release):
            if os.path.normpath(path) not in used and path not in remove:
                remove.append(path)
    for root in roots or []:
        try:
            names = sorted(listdir(root))
        except OSError:
            continue
        for name in names:
            path = os.path.join(root, name)
            inside = [u for u in used if u == os.path.normpath(path) or u.startswith(os.path.normpath(path) + os.sep)]
            if not inside and path not in remove:
                remove.append(path)
    return {"releases": kept, "rejected": []}, remove


def reject(record, wanted):
    """The record after `wanted` failed its gate and the host went back: the same releases, and `wanted`
    among the rejected (once), so that a later release that passes removes its build and model."""
    record = normalise(record)
    if not any(same(r, wanted) for r in record["rejected"]):
        record["rejected"].append(dict(wanted))
    return record
