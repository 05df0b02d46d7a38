# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""Every public setting of edge-llama's roles, checked before anything changes.

check(values, specs) takes the effective value of each role variable on one host (inventory, -e, or
the role's default) and the roles' argument specs, and returns the problems: the variable, what is
wrong, and an example of a good value. Types are read the way Ansible converts them (a value from -e is
a string: "8080", "true"); the rules beyond types (port ranges, distinct ports, file names, repo ids,
commits, URLs, counts) are here. Used by action_plugins/edge_llama_inputs.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import json
import os
import re

try:  # Python 3
    from urllib.parse import urlparse
except ImportError:  # pragma: no cover
    from urlparse import urlparse

TRUE = ("true", "yes", "on", "1", "y", "t")
FALSE = ("false", "no", "off", "0", "n", "f", "")
SECRET = re.compile(r"(password|api_key|(^|_)token$|secret)", re.I)  # model_hf_token, not max_tokens

SERVICE_PORTS = ("services_llama_port", "services_openai_port", "services_chat_port")
# name: (lowest, highest or None, example)
RANGES = {
    "services_llama_port": (1, 65535, "8080"),
    "services_openai_port": (1, 65535, "8081"),
    "services_chat_port": (1, 65535, "7860"),
    "hf_mirror_port": (1, 65535, "8090"),
    "metrics_node_exporter_port": (1, 65535, "9100"),
    "metrics_expected_tokens_per_second": (0, None, "0 (the last health gate's figure)"),
    "services_llama_ctx_size": (64, 1048576, "4096"),
    "services_llama_n_gpu_layers": (0, None, "1000 (all layers)"),
    "services_llama_threads": (0, 4096, "0 (llama.cpp chooses)"),
    "services_chat_temperature": (0, 2, "0"),
    "services_chat_max_tokens": (1, 1048576, "512"),
    "services_ready_timeout": (1, 86400, "900"),
    "services_gateway_drain_timeout": (0, 86400, "120"),
    "services_gateway_ready_timeout": (1, 86400, "60"),
    "services_keep_releases": (1, 100, "2 (the serving release and one to roll back to)"),
    "llama_cpp_smoke_timeout": (1, 86400, "300"),
    "llama_cpp_build_throttle": (0, None, "0 (no limit)"),
    "model_space_margin_mib": (0, None, "1024"),
    "model_progress_interval": (1, 86400, "10"),
    "preflight_overhead_mib": (0, None, "512"),
    "preflight_memory_reserve_mib": (0, None, "1024"),
    "nvidia_cuda_reboot_timeout": (1, 86400, "900"),
    "edge_llama_max_fail_percentage": (0, 100, "0 (stop at the first failed host)"),
    "edge_llama_connect_timeout": (1, 3600, "30"),
}
# How a run goes (site.yml's switches, no role's settings): checked like the roles' settings when they
# are set, never part of the fingerprint (RUN_CONTROL below).
RUN_CONTROL_SPECS = {
    "edge_llama_full_run": {"type": "bool"},
    "edge_llama_serial": {"type": "raw"},
    "edge_llama_max_fail_percentage": {"type": "int", "default": 0},
    "edge_llama_connect_timeout": {"type": "int", "default": 30},
}
_BATCH = re.compile(r"^([1-9][0-9]*|([1-9][0-9]?|100)%)$")
FILE_NAMES = ("model_filename",)
REPO_IDS = ("model_repo_id",)
GIT_REFS = ("llama_cpp_version",)
URLS = {"llama_cpp_repo_url": ("https", "http", "git", "ssh", "file"), "model_hf_endpoint": ("https", "http")}
ADDRESSES = ("services_llama_host", "services_openai_host", "services_chat_host", "services_lan_address")

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_GIT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)%s(\.%s)*$" % (_LABEL, _LABEL))
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:.+$")


class Problem(dict):
    """{variable, value (masked for secrets), problem, example}."""

    def __init__(self, variable, value, problem, example=""):
        shown = "(hidden)" if SECRET.search(variable) else value
        super().__init__(variable=variable, value=shown, problem=problem, example=example)

    def line(self):
        text = "%s = %r: %s" % (self["variable"], self["value"], self["problem"])
        return text + ("; e.g. %s" % self["example"] if self["example"] else "")


def as_int(value):
    if isinstance(value, bool):
        raise ValueError("a boolean, not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.match(r"^\s*[-+]?\d+\s*$", value):
        return int(value)
    raise ValueError("not a whole number")


def as_float(value):
    if isinstance(value, bool):
        raise ValueError("a boolean, not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError("not a number") from None


def as_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    raise ValueError("not a boolean (true or false)")


def check_type(name, value, spec):
    """The value converted to the spec's type, or a Problem."""
    kind = spec.get("type", "str")
    try:
        if kind == "int":
            value = as_int(value)
        elif kind == "float":
            value = as_float(value)
        elif kind == "bool":
            value = as_bool(value)
        elif kind in ("str", "path"):
            if isinstance(value, (dict, list)):
                raise ValueError("a %s, not a string" % type(value).__name__)
            value = "" if value is None else str(value)
        elif kind == "list":
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
            elif not isinstance(value, (list, tuple)):
                raise ValueError("not a list")
            value = list(value)
        elif kind == "raw":
            pass
        elif kind == "dict":
            if not isinstance(value, dict):
                raise ValueError("not a mapping")
    except ValueError as exc:
        examples = {"bool": "true or false", "str": "a string", "path": "/an/absolute/path"}
        example = examples.get(kind, spec.get("default"))
        return None, Problem(name, value, str(exc), "" if example in (None, "") else str(example))
    choices = spec.get("choices")
    if choices and value not in choices:
        return None, Problem(name, value, "not one of %s" % ", ".join(str(c) for c in choices), str(choices[0]))
    return value, None


def _file_name(name, value):
    if not value:
        return "empty"
    if "\0" in value:
        return "contains a NUL character"
    if "/" in value or "\\" in value:
        return "a file name, not a path: no / or \\"
    if value in (".", "..") or value.startswith(".."):
        return "not a file name (. or ..)"
    if len(value.encode("utf-8")) > 255:
        return "longer than 255 bytes"
    return None


def _git_ref(value):
    if not value:
        return "empty"
    if not _GIT_REF.match(value) or ".." in value or "@{" in value or value.endswith((".lock", "/", ".")) \
            or "//" in value:
        return "not a commit, tag or branch name"
    return None


def _url(value, schemes):
    if _SCP_LIKE.match(value) and "ssh" in schemes:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in schemes:
        return "not a URL with scheme %s" % "/".join(schemes)
    if parsed.scheme != "file" and not parsed.netloc:
        return "a URL without a host"
    if any(ch.isspace() for ch in value):
        return "a URL with white space"
    try:
        parsed.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        return "a URL whose port is not a number from 1 to 65535"
    return None


def _address(value):
    try:
        ipaddress.ip_address(value.strip("[]"))
        return None
    except ValueError:
        pass
    return None if value == "localhost" or _HOSTNAME.match(value) else "not an IP address or a host name"


def check(values, specs, extra_ports=()):
    """Problems of one host's settings. values: {name: effective value}; specs: {name: argument spec}.

    extra_ports: names of further port variables that must not collide with the services' ports
    (hf_mirror_port on a mirror host)."""
    problems, typed = [], {}
    for name in sorted(values):
        spec = specs.get(name)
        if spec is None:
            continue
        value, problem = check_type(name, values[name], spec)
        if problem:
            problems.append(problem)
        else:
            typed[name] = value

    for name, (low, high, example) in RANGES.items():
        if name not in typed:
            continue
        value = typed[name]
        if value < low or (high is not None and value > high):
            span = ("%s to %s" % (low, high)) if high is not None else ("at least %s" % low)
            problems.append(Problem(name, values[name], "out of range (%s)" % span, example))
    for name in FILE_NAMES:
        if name in typed and _file_name(name, typed[name]):
            problems.append(Problem(name, values[name], _file_name(name, typed[name]),
                                    "llama-2-70b-chat.Q4_K_M.gguf"))
    for name in REPO_IDS:
        if name in typed and not _REPO_ID.match(typed[name]):
            problems.append(Problem(name, values[name], "not a Hugging Face repo id (owner/name)",
                                    "TheBloke/Llama-2-70B-Chat-GGUF"))
    if typed.get("model_sha256") and not _SHA256.match(typed["model_sha256"]):
        problems.append(Problem("model_sha256", values["model_sha256"], "not 64 hex digits (or empty)",
                                "c7e817ae9c84191ccfc57141e839cb1b1cb61822cd299e76d02ec49fd6fa3c3e"))
    for name in GIT_REFS:
        if name in typed and _git_ref(typed[name]):
            problems.append(Problem(name, values[name], _git_ref(typed[name]),
                                    "e519621010cac02c6fec0f8f3b16cda0591042c0, b4500 or master"))
    for name, schemes in URLS.items():
        if typed.get(name) and _url(typed[name], schemes):
            problems.append(Problem(name, values[name], _url(typed[name], schemes),
                                    "https://github.com/ggerganov/llama.cpp.git" if name == "llama_cpp_repo_url"
                                    else "https://huggingface.co"))
    for name in ADDRESSES:
        if name in typed and _address(typed[name]):
            problems.append(Problem(name, values[name], _address(typed[name]), "127.0.0.1"))
    if "edge_llama_serial" in typed:
        batches = typed["edge_llama_serial"]
        batches = batches if isinstance(batches, list) else [batches]
        if not batches or any(isinstance(b, bool) or not _BATCH.match(str(b).strip()) for b in batches):
            problems.append(Problem("edge_llama_serial", values["edge_llama_serial"],
                                    "batch sizes: a number of hosts or a percentage, or a list of them",
                                    '[1, "25%"] (a canary, then a quarter at a time)'))
    arch = typed.get("llama_cpp_cuda_architecture")
    if arch and not re.match(r"^[0-9]{2,3}[a-z]?$", arch):
        problems.append(Problem("llama_cpp_cuda_architecture", arch, "a CUDA architecture without sm_", "86"))
    for name in ("services_chat_system_prompt", "services_openai_api_key", "services_chat_password"):
        if "\0" in str(typed.get(name, "")):
            problems.append(Problem(name, values[name], "contains a NUL character, which no process can receive"))

    ports = [n for n in SERVICE_PORTS + tuple(extra_ports) if n in typed]
    seen = {}
    for name in ports:
        port = typed[name]
        if port in seen:
            first = seen[port]
            problems.append(Problem("%s and %s" % (first, name), port,
                                    "both %s: each service needs a port of its own" % port,
                                    "%s: %s, %s: %s" % (first, RANGES[first][2], name, RANGES[name][2])))
        else:
            seen[port] = name
    return problems, typed


def binds(typed, extra_ports=()):
    """The ports the services (and a mirror host's hf_mirror) will bind, with their addresses:
    [{name, port, address}], from the checked settings."""
    lan = typed.get("services_expose_on_lan") is True
    where = {
        "services_llama_port": typed.get("services_llama_host", "127.0.0.1"),
        "services_openai_port": typed.get("services_lan_address") if lan else typed.get("services_openai_host"),
        "services_chat_port": typed.get("services_lan_address") if lan else typed.get("services_chat_host"),
        "hf_mirror_port": typed.get("hf_mirror_listen", "0.0.0.0"),
        "metrics_node_exporter_port": "127.0.0.1",
    }
    return [{"name": name, "port": typed[name], "address": where[name] or "127.0.0.1"}
            for name in SERVICE_PORTS + tuple(extra_ports) if name in typed]


# --- the fingerprint of a run's inputs (what a re-run compares with the last complete run) ---------

# How a run goes, not what it leaves on a host: not part of the fingerprint.
RUN_CONTROL = set(RUN_CONTROL_SPECS)
# The code that decides what a run leaves on a host, relative to the checkout's root.
CODE = ("site.yml", "playbooks", "roles", "library", "module_utils", "action_plugins", "filter_plugins")
_code_digest = {}


def code_digest(root):
    """SHA-256 of the names and contents of edge-llama's code in the checkout at root (once per process)."""
    if root not in _code_digest:
        digest = hashlib.sha256()
        for top in CODE:
            base = os.path.join(root, top)
            paths = [base] if os.path.isfile(base) else []
            for folder, dirs, files in os.walk(base):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                paths += [os.path.join(folder, f) for f in sorted(files) if not f.endswith(".pyc")]
            for path in paths:
                digest.update(os.path.relpath(path, root).encode() + b"\0")
                with open(path, "rb") as handle:
                    digest.update(hashlib.sha256(handle.read()).digest())
        _code_digest[root] = digest.hexdigest()
    return _code_digest[root]


def fingerprint(values, unresolved, code):
    """One SHA-256 of the settings' values (JSON, keys sorted) and the code."""
    kept = {k: v for k, v in values.items() if k not in RUN_CONTROL}
    unresolved = sorted(u for u in unresolved if u not in RUN_CONTROL)
    text = json.dumps({"values": kept, "unresolved": unresolved, "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
