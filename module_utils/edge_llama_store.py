# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""Files edge-llama's modules keep on a host: JSON records written whole or not at all, and where a
path would land (the mount point of its nearest existing ancestor: is the model SSD mounted?).

Used by hf_model (download records and progress) and mount_point_info (hf_mirror's cache check).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import tempfile


def read_json(path):
    """The JSON at path, or None when it is missing or unreadable (a record is a hint, never a must)."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def write_json_atomic(path, data, mode=0o644):
    """Write data as JSON to path through a temporary file in the same directory, synced and renamed
    over it: a reader sees the old record or the new one, never half of one."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def existing_ancestor(path):
    """path itself when it exists, else its nearest existing parent directory."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def mount_point(path):
    """The mount point that holds path, or would hold it once created."""
    path = os.path.realpath(existing_ancestor(path))
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path
