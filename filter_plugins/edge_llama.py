# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""Filters of edge-llama's roles."""

from __future__ import annotations

import re

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
# The other filters are documented in their docstrings: release_report, what the services role reports
# for a host (the summary callback's row), built in one place for every outcome; build_source, which
# host of a fleet compiles a llama.cpp build and which receive it.

_NEED_ESCAPE = '"\\`$'


def systemd_env_quote(value):
    text = "" if value is None else str(value)
    if "\0" in text:
        raise ValueError("a NUL character cannot be passed in an environment variable")
    return '"%s"' % "".join("\\" + ch if ch in _NEED_ESCAPE else ch for ch in text)


def _model(release):
    path = (release or {}).get("model_path") or ""
    return path.rstrip("/").rsplit("/", 1)[-1]


def release_report(release, state, previous=None, tokens_per_second=None, reason="", wanted=None, restored=None):
    """The services role's report of a host (services_report, read by the summary callback): the release
    that serves after this run (commit, model file), the one that served before, and why, for every
    outcome (deployed, upgraded, reconfigured, unchanged, not_started, would_switch, rolled_back, failed). `wanted`
    (a rollback): the release that was tried and refused; `restored`: the files put back."""
    release, previous = release or {}, previous or {}
    report = {"state": state, "commit": release.get("commit", ""), "model": _model(release),
              "tokens_per_second": tokens_per_second, "previous_commit": previous.get("commit", ""),
              "previous_model": _model(previous), "reason": reason or ""}
    if wanted is not None:
        report.update(wanted_commit=wanted.get("commit", ""), wanted_model=_model(wanted))
    if restored is not None:
        report["restored"] = list(restored)
    return report


def build_source(host, hostvars, hosts, builder=""):
    """Where `host` gets its llama.cpp build: {"role", "source", "key"}.

    Hosts of `hosts` (the play's hosts still in the run, in inventory order) whose `__llama_cpp_key`
    is the same share one build. For each key one host is the source: `builder` (llama_cpp_builder)
    when it has that key, else the first host that already holds the build verified, else the first
    host. role: `build` (the source, which compiles and proves it), `have` (a verified build is
    already here, or the source already holds it: nothing to do), `receive` (copy it from the source)
    or `alone` (no key: the plan was skipped, check mode on a fresh host).
    """
    mine = (hostvars.get(host) or {}).get("__llama_cpp_key") or ""
    if not mine:
        return {"role": "alone", "source": host, "key": ""}
    same, verified = [], []
    for name in hosts:
        facts = hostvars.get(name) or {}
        if (facts.get("__llama_cpp_key") or "") == mine:
            same.append(name)
            if facts.get("__llama_cpp_has_verified") in (True, "True", "true"):
                verified.append(name)
    if host not in same:
        same.append(host)
    source = builder if builder in same else (verified or same)[0]
    if host in verified:
        role = "have"
    elif host == source:
        role = "build"
    else:
        role = "receive"
    return {"role": role, "source": source, "key": mine}


def haproxy_server_name(host):
    """The HAProxy server name of an appliance (be_openai/NAME, be_chat/NAME): its inventory name with every
    character HAProxy refuses in a name (other than letters, digits, '.', '_', ':' and '-') as '_'. The
    gateway role names its servers with it and the services role drains them by it."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", str(host))


class FilterModule:
    def filters(self):
        return {"systemd_env_quote": systemd_env_quote, "release_report": release_report,
                "build_source": build_source, "haproxy_server_name": haproxy_server_name}
