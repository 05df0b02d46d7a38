# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""Callback plugin: a one-screen fleet summary at the end of every run, and a drift report in check mode.

The roles leave what they did in three facts (ansible.builtin.set_fact), which this plugin reads from the
task results: llama_cpp_report, model_report and services_report. See DOCUMENTATION for the columns.

A run counts as aborted ("aborted": true in the JSON, "run aborted" in the title) when the executor stopped it
early because of failures. No callback says so directly; any of these signals does:
- v2_playbook_on_no_hosts_remaining: the linear and free strategies send it when max_fail_percentage is
  exceeded, when any_errors_fatal fails the play, and when every host of a play or serial batch has failed
  (so a last play in which every host failed counts as aborted too, though nothing was left to run);
- the last play that started is not the playbook's last play (the executor broke out of the playbook);
- hosts of the last play's pattern (inventory, --limit applied) that were neither seen in it nor already
  failed or unreachable: its later serial batches never started (e.g. a batch whose hosts were all
  unreachable, for which no callback fires).
In an aborted run, a host that is "ok" but never reached the playbook's last play gets the note
"not finished: the run was aborted (last play: ...)". Hosts that no task ever ran on (later serial batches)
are not listed: the summary covers the hosts the run touched.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: edge_llama_summary
type: aggregate
short_description: edge-llama fleet summary and check-mode drift report
description:
  - At the end of every run (also one stopped early by a failed canary, C(any_errors_fatal) or
    C(max_fail_percentage)) prints one line per host the run touched - host, state, llama.cpp commit,
    model file, tokens/s of the health gate's probe completion and a short note (why a host failed or was
    rolled back, and that it is left out of a gateway's rotation when it is).
  - The data comes from the facts the roles set with ansible.builtin.set_fact - C(llama_cpp_report),
    C(model_report) and C(services_report) - plus the hosts' failed and unreachable results.
  - In check mode it also prints a drift report - per host, what a real run would change, grouped as
    commit, model, units, packages, release (the record edge_llama_release would write and the builds and
    models it would remove) and other.
  - The same data can be written as JSON to O(summary_json).
version_added: "1.0.0"
requirements:
  - enable it in ansible.cfg (C(callbacks_enabled = edge_llama_summary)) or with ANSIBLE_CALLBACKS_ENABLED
options:
  summary_json:
    description:
      - Path of a JSON file to write the summary to, replaced atomically at the end of each run;
        parent directories are created.
      - Nothing is written when unset.
    type: path
    env:
      - name: EDGE_LLAMA_SUMMARY_JSON
    ini:
      - section: callback_edge_llama_summary
        key: summary_json
"""

REPORT_FACTS = ("llama_cpp_report", "model_report", "services_report")
NOTE_CHARS = 160
COMMIT_CHARS = 12

PACKAGE_ACTIONS = {"apt", "package", "pip", "dnf", "dnf5", "yum"}
FILE_ACTIONS = {"template", "copy"}
WAIT_FOR_CONNECTION = {"wait_for_connection"}
UNIT_ACTIONS = {"systemd", "systemd_service", "service"}
CATEGORIES = ("commit", "model", "units", "packages", "release", "other")
SYSTEMD_DIR = re.compile(r"(?:^|/)etc/systemd/system/")
# apt's check-mode diff ("prepared"): the indented lines after "The following ... packages will be ...:"
APT_LIST_HEADER = re.compile(r"^The following (?:NEW |additional )?packages will be (?:installed|upgraded)")


def short_action(action):
    """'ansible.builtin.apt' / 'ansible.legacy.apt' / 'apt' -> 'apt'."""
    return (action or "").rsplit(".", 1)[-1]


def _clean_args(args):
    return {k: v for k, v in (args or {}).items() if not str(k).startswith("_ansible")}


def _names(value):
    """A module's `name` argument (string, comma list or list) as a list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [n.strip() for n in value.split(",") if n.strip()]
    if isinstance(value, (list, tuple)):
        return [str(n).strip() for n in value if str(n).strip()]
    return [str(value)]


def _templated(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _diff_packages(diff):
    """Package names from a package module's diff (apt's 'prepared' text), else []."""
    diffs = diff if isinstance(diff, list) else [diff]
    names = []
    for entry in diffs:
        if not isinstance(entry, dict):
            continue
        prepared = entry.get("prepared")
        if not isinstance(prepared, str):
            continue
        collecting = False
        for line in prepared.splitlines():
            if APT_LIST_HEADER.match(line):
                collecting = True
            elif collecting and line.startswith(" "):
                names.extend(line.split())
            else:
                collecting = False
    return names


def unit_label(path):
    """A unit file's name relative to the systemd directory, other paths as they are."""
    match = SYSTEMD_DIR.search(path)
    return path[match.end():] if match else path


# Task files several roles share (roles/edge_llama_common): their changes count for the role that included them.
SHARED_TASK_ROLES = {"edge_llama_common"}


def acting_role(task):
    """The name of the role a task acts for: its own, or for a shared task file, the including role's."""
    role = task._role.get_name(include_role_fqcn=False) if getattr(task, "_role", None) else None
    parent = getattr(task, "_parent", None)
    while role in SHARED_TASK_ROLES and parent is not None:
        caller = getattr(parent, "_parent_role", None)  # set on the include_role task that brought it in
        if caller is not None:
            role = caller.get_name(include_role_fqcn=False)
        parent = getattr(parent, "_parent", None)
    return role


def categorise(action, role, args, result, task_name):
    """The drift category of a changed task and the items it contributes: (category, [labels]).

    action: the task's action (any spelling); role: the role name or None; args: the module arguments as
    the module saw them when known (else the task's); result: the task (or loop item) result.
    """
    action = short_action(action)
    args = _clean_args(args)
    result = result or {}
    if action == "edge_llama_release":
        # The release owner's own answer: the release it would record, the paths it would remove.
        wanted = result.get("wanted") or {}
        items = ["record %s with %s" % (_commit(wanted.get("commit")) or "?",
                                        _model_file(wanted.get("model_path")) or "?")]
        return "release", items + ["remove %s" % path for path in result.get("removed") or []]
    if role == "llama_cpp":
        return "commit", [task_name]
    if role == "model":
        return "model", [task_name]
    if action in PACKAGE_ACTIONS:
        names = [] if _templated(args.get("name")) else _names(args.get("name"))
        if not names or names == ["*"]:
            names = _diff_packages(result.get("diff")) or names
        return "packages", names or [task_name]
    if action in FILE_ACTIONS:
        dest = result.get("dest") or args.get("dest")
        if isinstance(dest, str) and not _templated(dest) and (role == "services" or SYSTEMD_DIR.search(dest)):
            return "units", [unit_label(dest)]
        if role == "services":
            return "units", [task_name]
    if action in UNIT_ACTIONS and role == "services":
        name = args.get("name")
        if name and not _templated(name):
            return "units", [str(name)]
        return "units", ["daemon-reload" if args.get("daemon_reload") else task_name]
    return "other", [task_name]


def _one_line(text, limit=NOTE_CHARS):
    text = " ".join(str(text).split())
    # ansible-core 2.19 opens connection errors with "Task failed: "; the table says so already
    text = text[len("Task failed: "):] if text.startswith("Task failed: ") else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_message(result):
    """The reason of a failed or unreachable result: its msg, a failed loop item's msg, stderr."""
    for item in result.get("results") or []:
        if isinstance(item, dict) and (item.get("failed") or item.get("unreachable")):
            msg = failure_message(item)
            if msg:
                return msg
    for key in ("msg", "stderr", "exception"):
        value = result.get(key)
        if value and not (key == "msg" and value in ("All items completed", "One or more items failed")):
            return str(value).strip().splitlines()[0] if key == "exception" else str(value)
    return result.get("msg") or ""


def _commit(value):
    return str(value)[:COMMIT_CHARS] if value else ""


def _model_file(value):
    return os.path.basename(str(value).rstrip("/")) if value else ""


def _tokens(value):
    try:
        return "%.1f" % float(value)
    except (TypeError, ValueError):
        return ""


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _result_of(result):
    # ansible-core 2.19 names it `result`; older cores only have `_result`.
    return getattr(result, "result", None) if hasattr(result, "result") else result._result


def _task_of(result):
    return getattr(result, "task", None) or result._task


def _host_of(result):
    return (getattr(result, "host", None) or result._host).get_name()


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "edge_llama_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, options=None):
        super().__init__(display=display, options=options)
        self._hosts = {}
        self._playbook_plays = []
        self._plays_started = []
        self._play_uuid = None
        self._play_name = ""
        self._play_targets = None  # inventory hosts of the current play (all batches), None when unknown
        self._play_seen = set()
        self._no_hosts_remaining = False

    # --- bookkeeping -------------------------------------------------------------------------------

    def _host(self, name):
        record = self._hosts.get(name)
        if record is None:
            record = self._hosts[name] = {
                "facts": {},
                "unreachable": None,
                "failure": None,
                "drift": {},
                "last_play": None,
            }
        record["last_play"] = self._play_uuid
        self._play_seen.add(name)
        return record

    @staticmethod
    def _check_mode():
        return bool(context.CLIARGS.get("check", False))

    def _fact_host(self, result, res):
        """The host a result's facts belong to (the delegated host with delegate_facts)."""
        task = _task_of(result)
        if getattr(task, "delegate_to", None) and getattr(task, "delegate_facts", False):
            # 2.19 strips ansible_delegated_host from the callbacks' copy; the worker's task fields have
            # delegate_to templated
            fields = getattr(result, "task_fields", None) or getattr(result, "_task_fields", None) or {}
            delegated = ((res.get("_ansible_delegated_vars") or {}).get("ansible_delegated_host")
                         or fields.get("delegate_to") or task.delegate_to)
            if isinstance(delegated, str) and not _templated(delegated):
                return delegated
        return _host_of(result)

    def _take_facts(self, result, res):
        facts = res.get("ansible_facts")
        if isinstance(facts, dict):
            for name in REPORT_FACTS:
                if isinstance(facts.get(name), dict):
                    self._host(self._fact_host(result, res))["facts"][name] = dict(facts[name])

    def _record_change(self, result, res):
        if not self._check_mode() or not res.get("changed"):
            return
        task = _task_of(result)
        role = acting_role(task)
        args = (res.get("invocation") or {}).get("module_args") or task.args
        category, labels = categorise(task.action, role, args, res, task.get_name())
        items = self._host(_host_of(result))["drift"].setdefault(category, [])
        for label in labels:
            if label not in items:
                items.append(label)

    # --- callbacks ---------------------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        try:
            self._playbook_plays = [play._uuid for play in playbook.get_plays()]
        except Exception:  # a summary must never break a run
            self._playbook_plays = []
        self._plays_started = []
        self._no_hosts_remaining = False

    def v2_playbook_on_play_start(self, play):
        # Each serial batch starts the play again (a copy with the same _uuid).
        if play._uuid == self._play_uuid:
            return
        self._play_uuid = play._uuid
        self._play_name = play.get_name()
        self._plays_started.append(play._uuid)
        self._play_seen = set()
        self._play_targets = None
        try:
            inventory = play._variable_manager._inventory
            hosts = inventory.get_hosts(play.hosts, ignore_restrictions=True)
            self._play_targets = {h.get_name() for h in hosts}
        except Exception:  # internals; without them the other abort signals still count
            self._play_targets = None

    def v2_playbook_on_no_hosts_remaining(self):
        self._no_hosts_remaining = True

    def v2_runner_on_ok(self, result):
        res = _result_of(result)
        self._host(_host_of(result))
        self._take_facts(result, res)
        loop = res.get("results")
        if isinstance(loop, list):
            # set_fact in a loop: the facts are in the items; changes come through v2_runner_item_on_ok.
            for item in loop:
                if isinstance(item, dict):
                    self._take_facts(result, item)
        else:
            self._record_change(result, res)

    def v2_runner_item_on_ok(self, result):
        res = _result_of(result)
        self._host(_host_of(result))
        self._take_facts(result, res)
        self._record_change(result, res)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        record = self._host(_host_of(result))
        if ignore_errors:
            return
        if short_action(_task_of(result).action) in WAIT_FOR_CONNECTION:
            # The first play's wait for each host (playbooks/preflight.yml) fails, rather than being
            # unreachable, when a host never answers: that host is unreachable all the same.
            record["unreachable"] = failure_message(_result_of(result)) or "unreachable"
            return
        record["failure"] = {
            "task": _task_of(result).get_name(),
            "msg": failure_message(_result_of(result)),
        }

    def v2_runner_on_unreachable(self, result):
        record = self._host(_host_of(result))
        if getattr(_task_of(result), "ignore_unreachable", False):
            return
        record["unreachable"] = failure_message(_result_of(result)) or "unreachable"

    def v2_runner_on_skipped(self, result):
        self._host(_host_of(result))

    def v2_playbook_on_stats(self, stats):
        try:
            summary = self._summary(stats)
        except Exception as exc:  # a summary must never break a run
            self._display.warning("edge_llama_summary: no summary (%s: %s)" % (type(exc).__name__, exc))
            return
        self._display.display(self._render(summary))
        path = self.get_option("summary_json")
        if path:
            try:
                self._write_json(path, summary)
            except OSError as exc:
                self._display.warning("edge_llama_summary: cannot write %s: %s" % (path, exc))

    # --- the summary -------------------------------------------------------------------------------

    def _aborted(self, stats):
        """Whether the run stopped before its end because of failures (see the module docstring)."""
        if self._no_hosts_remaining:
            return True
        if self._playbook_plays and self._plays_started[-1:] != self._playbook_plays[-1:]:
            # a later play never started: the executor broke out of the playbook
            return bool(self._plays_started)
        if self._play_targets is not None and self._play_seen:
            down = {h for h in self._hosts if self._hosts[h]["unreachable"] or self._hosts[h]["failure"]}
            down.update(h for h in stats.processed if stats.summarize(h).get("unreachable"))
            if self._play_targets - self._play_seen - down:
                # hosts of the last play never ran in it: its later serial batches were not started
                return True
        return False

    def _summary(self, stats):
        for name in getattr(stats, "processed", {}):
            if name not in self._hosts:
                self._hosts[name] = {"facts": {}, "unreachable": None, "failure": None, "drift": {},
                                     "last_play": None}
        aborted = self._aborted(stats)
        last_play = self._playbook_plays[-1] if self._playbook_plays else None
        check = self._check_mode()
        hosts = {}
        for name in sorted(self._hosts, key=_natural_key):
            record = self._hosts[name]
            counts = stats.summarize(name) if name in getattr(stats, "processed", {}) else {}
            llama = record["facts"].get("llama_cpp_report") or {}
            model = record["facts"].get("model_report") or {}
            services = record["facts"].get("services_report") or {}
            failure = record["failure"] if counts.get("failures", 1 if record["failure"] else 0) else None
            reason = ""
            if record["unreachable"] or counts.get("unreachable"):
                state = "unreachable"
                reason = record["unreachable"] or "unreachable"
            elif services.get("state"):
                state = services["state"]
                if state in ("failed", "rejected", "rolled_back"):
                    reason = services.get("reason") or (failure or {}).get("msg", "")
                elif failure:
                    reason = failure["msg"]
            elif failure:
                # a build that compiled but did not compute (the smoke check) is rejected, not just failed
                state = "rejected" if llama.get("state") == "rejected" else "failed"
                reason = failure["msg"]
            else:
                state = "ok"
            if not reason:
                for report in (llama, model):
                    if report.get("state") in ("failed", "rejected") and report.get("reason"):
                        reason = report["reason"]
                        break
            rotation = services.get("rotation") or {}
            if rotation.get("state") == "out" and rotation.get("gateways") and "rotation" not in reason:
                # taken out of a gateway's rotation for its switch, and not put back
                reason = "%s%sout of rotation on gateway %s" % (reason, "; " if reason else "",
                                                                ", ".join(rotation["gateways"]))
            if not reason and aborted and state == "ok" and last_play and record["last_play"] != last_play:
                reason = "not finished: the run was aborted (last play: %s)" % self._play_name
            entry = {
                "state": state,
                # What serves: the services role's word, else what the build and fetch roles found
                # serving (a host that stopped before the switch), else what was wanted.
                "commit": services.get("commit") or llama.get("serving_commit") or llama.get("commit") or None,
                "model": _model_file(services.get("model") or model.get("serving_model")
                                     or model.get("filename")) or None,
                "tokens_per_second": services.get("tokens_per_second"),
                "note": _one_line(reason) if reason else "",
                "reason": str(reason).strip(),
                "failed_task": (failure or {}).get("task"),
                "llama_cpp_report": llama or None,
                "model_report": model or None,
                "services_report": services or None,
            }
            if check:
                entry["drift"] = self._drift(record, llama, model, services)
            hosts[name] = entry
        return {"hosts": hosts, "check_mode": check, "aborted": aborted}

    @staticmethod
    def _drift(record, llama, model, services):
        drift = {}
        for category in CATEGORIES:
            items = list(record["drift"].get(category) or [])
            if not items:
                continue
            # what runs: the services role's record of the release before it, else what the build / fetch
            # roles found serving (serving_commit, serving_model); what is wanted: the build / fetch roles'
            if category == "commit":
                active = _commit(services.get("previous_commit") or llama.get("serving_commit"))
                wanted = _commit(llama.get("commit") or services.get("wanted_commit"))
                if active and wanted and active != wanted:
                    items = ["%s -> %s" % (active, wanted)]
            elif category == "model":
                active = _model_file(services.get("previous_model") or model.get("serving_model"))
                wanted = _model_file(model.get("filename") or services.get("wanted_model"))
                if active and wanted and active != wanted:
                    items = ["%s -> %s" % (active, wanted)]
            drift[category] = items
        return drift

    @staticmethod
    def _render(summary):
        header = ("HOST", "STATE", "LLAMA.CPP", "MODEL", "TOK/S", "NOTE")
        rows = [header]
        for name, h in summary["hosts"].items():
            rows.append((name, h["state"], _commit(h["commit"]) or "-", h["model"] or "-",
                         _tokens(h["tokens_per_second"]) or "-", h["note"]))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        title = "edge-llama fleet summary"
        if summary["aborted"]:
            title += " (run aborted: hosts failed and the run stopped early)"
        if summary["check_mode"]:
            title += " (check mode)"
        lines = ["", title]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)] + [row[-1]]
            lines.append("  " + "  ".join(cells).rstrip())
        if not summary["hosts"]:
            lines.append("  (no hosts)")
        if summary["check_mode"]:
            lines += ["", "edge-llama drift report (check mode: nothing was changed)"]
            width = max([len(name) for name in summary["hosts"]] or [0])
            for name, h in summary["hosts"].items():
                if h["state"] == "unreachable":
                    found = ["unreachable: drift unknown"]
                elif h["drift"]:
                    found = ["%s: %s" % (cat, ", ".join(items)) for cat, items in h["drift"].items()]
                elif h["state"] in ("failed", "rejected", "rolled_back"):
                    found = ["no drift before the host failed"]
                else:
                    found = ["no drift"]
                for i, line in enumerate(found):
                    lines.append("  %s  %s" % ((name if i == 0 else "").ljust(width), line))
        lines.append("")
        return "\n".join(lines)

    @staticmethod
    def _write_json(path, summary):
        path = os.path.abspath(os.path.expanduser(path))
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w") as stream:
                json.dump(summary, stream, indent=2, sort_keys=True, default=str)
                stream.write("\n")
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
