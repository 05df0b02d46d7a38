# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""Filters of edge-llama's roles."""

from __future__ import annotations

DOCUMENTATION = r"""
name: systemd_env_quote
short_description: Quote a value for a systemd EnvironmentFile= so that the process receives it unchanged
description:
  - Wraps the value in double quotes and puts a backslash before C("), C(\\), C($) and C(`), the
    characters systemd's environment-file parser unescapes inside double quotes (systemd.exec(5)).
    Newlines stay literal (kept inside double quotes); every other character, Unicode included, is
    written as itself.
  - JSON escaping is not the same thing - systemd does not decode C(\\uXXXX) or C(\\n), so a JSON-escaped
    system prompt arrives with its escapes.
positional: _input
options:
  _input:
    description: The value (converted to text).
    type: raw
    required: true
"""

_NEED_ESCAPE = '"\\`$'


def systemd_env_quote(value):
    text = "" if value is None else str(value)
    if "\0" in text:
        raise ValueError("a NUL character cannot be passed in an environment variable")
    return '"%s"' % "".join("\\" + ch if ch in _NEED_ESCAPE else ch for ch in text)


class FilterModule:
    def filters(self):
        return {"systemd_env_quote": systemd_env_quote}
