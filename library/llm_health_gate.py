#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: llm_health_gate
short_description: Decide whether a host serves chat again after llama.cpp or the model changed
description:
  - The gate run after an upgrade switched llama.cpp's build or the model and restarted the units.
    It waits until llama.cpp's server is ready, then until the OpenAI-compatible endpoint is, and then
    asks the endpoint for one short chat answer, which must not be empty.
  - While it waits it watches the given systemd units and fails at once, without waiting for
    I(timeout), when one of them failed, is waiting to be restarted (C(auto-restart)), was restarted
    by systemd (its C(NRestarts) grew), stopped, or is not installed. The message then names the
    unit, how its process ended, how many times systemd restarted it and the unit's last journal
    lines.
  - On a timeout the message says which URL was being waited for and what it last answered
    (the HTTP status and the server's error message, or the connection error).
  - HTTP goes through Python's standard library; proxies from the environment are not used.
  - I(api_key) is never part of a message or of the result.
version_added: "0.3.0"
author: edge-llama contributors
options:
  server_url:
    description: Base URL of llama.cpp's server, for example C(http://127.0.0.1:8080).
    type: str
    required: true
  server_ready_path:
    description:
      - Path that answers 200 once llama.cpp's server has loaded the model.
      - C(/health) for current llama.cpp (it answers 503 while the model loads), C(/model.json) for
        the 2023 server, which has no C(/health).
    type: str
    default: /health
  openai_url:
    description:
      - Base URL of the OpenAI-compatible endpoint, without C(/v1), for example C(http://127.0.0.1:8081).
        A trailing C(/v1) is ignored.
      - The gate waits for its C(/health) and then posts to its C(/v1/chat/completions).
    type: str
    required: true
  api_key:
    description: Bearer token the endpoint wants; empty sends no C(Authorization) header.
    type: str
    default: ""
  model:
    description: Model name sent in the chat request.
    type: str
    default: llama_2
  units:
    description:
      - systemd units to watch while waiting, for example C(edge-llama-server.service) and
        C(edge-llama-openai.service). Their C(NRestarts) is recorded when the gate starts.
      - Empty watches nothing; the gate then only finds a crash through I(timeout).
    type: list
    elements: str
    default: []
  listeners:
    description:
      - Ports whose answers must come from a given unit - C(port), C(unit) and the C(address) probed. Once
        the server and the endpoint answer, the process listening on each port (read from
        C(/proc/net/tcp) and C(/proc/PID/fd), its unit from C(/proc/PID/cgroup)) must belong to that unit;
        another process answering on the port fails the gate, naming it. Needs C(become).
    type: list
    elements: dict
    default: []
    suboptions:
      port:
        description: TCP port.
        type: int
        required: true
      unit:
        description: The systemd unit that must own the listening socket, for example C(edge-llama-openai.service).
        type: str
        required: true
      address:
        description: The address the port is probed at.
        type: str
        default: 127.0.0.1
  timeout:
    description:
      - Seconds to wait, overall, until the server and the endpoint are ready and the endpoint answers.
      - The chat request itself gets what is left of it, but at least 60 seconds.
    type: int
    default: 900
  interval:
    description: Seconds between two polls.
    type: float
    default: 1.0
  prompt:
    description: The user message of the chat request.
    type: str
    default: Reply with one short sentence.
  max_tokens:
    description: C(max_tokens) of the chat request.
    type: int
    default: 16
notes:
  - Supports check mode. It only reads (HTTP requests, C(systemctl show), C(journalctl)), so it does
    the same in check mode; C(changed) is always false.
  - Reading the journal of a system unit may need C(become); without C(journalctl) the message says so
    and I(journal) is empty.
"""

EXAMPLES = r"""
- name: Wait until the host serves chat again
  llm_health_gate:
    server_url: http://127.0.0.1:8080
    server_ready_path: /health
    openai_url: http://127.0.0.1:8081
    api_key: "{{ services_api_key }}"
    model: llama_2
    units:
      - edge-llama-server.service
      - edge-llama-openai.service
    timeout: 900
  register: gate
  become: true

- name: The 2023 server has no /health
  llm_health_gate:
    server_url: http://127.0.0.1:8080
    server_ready_path: /model.json
    openai_url: http://127.0.0.1:8081
    units: [edge-llama-server.service, edge-llama-openai.service]

- name: Show the speed of the first answer
  ansible.builtin.debug:
    msg: "ready after {{ gate.ready_seconds }} s, {{ gate.completion.tokens_per_second }} tokens/s"
"""

RETURN = r"""
ready_seconds:
  description: Seconds from the start until the server and the endpoint both answered 200.
  returned: success
  type: float
  sample: 42.7
completion:
  description: The chat answer that passed the gate.
  returned: success
  type: dict
  contains:
    text:
      description: The answer's C(choices[0].message.content), cut to 200 characters.
      type: str
      sample: Paris is the capital of France.
    completion_tokens:
      description: C(usage.completion_tokens) of the answer, or its number of words when it has no usage.
      type: int
      sample: 8
    seconds:
      description: Seconds the chat request took, end to end.
      type: float
      sample: 0.61
    tokens_per_second:
      description: I(completion_tokens) divided by I(seconds) (end to end, prompt included).
      type: float
      sample: 13.1
    finish_reason:
      description: C(choices[0].finish_reason) of the answer, if any.
      type: str
      sample: stop
units:
  description: State of each watched unit when the gate ended (also returned on failure).
  returned: always
  type: dict
  sample:
    edge-llama-server.service:
      active_state: active
      sub_state: running
      n_restarts: 0
reason:
  description: >-
    On failure, why: C(unit_failed) (a watched unit failed, stopped or restarted), C(timeout) (not ready
    or no answer within I(timeout)) or C(bad_answer) (an answer that waiting will not fix: 401, 404,
    an error status for the chat request, an empty answer or one that is not JSON).
  returned: failure
  type: str
  sample: unit_failed
journal:
  description: >-
    On failure, the last journal lines of the unit that failed; for the other reasons the last lines of
    every watched unit, each prefixed with C([unit]).
  returned: failure
  type: list
  elements: str
"""

import json
import signal
import socket
import time
from http.client import HTTPException
from urllib import error as urllib_error
from urllib import request as urllib_request

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edge_llama_text import int_or_none, one_line
from ansible.module_utils.edge_llama_ports import holders

PROPERTIES = ("LoadState", "ActiveState", "SubState", "NRestarts", "ExecMainStatus", "ExecMainCode", "MainPID",
              "Result")
JOURNAL_LINES = 12
TEXT_LIMIT = 200
COMPLETION_MIN_SECONDS = 60.0
PROBE_MAX_SECONDS = 10.0
# Statuses of a readiness probe that waiting will not change.
PERMANENT = {401: "the URL wants credentials", 403: "access is forbidden", 404: "the path does not exist here",
             405: "the path does not take GET"}
# systemd's own exit statuses (systemd.exec(5), "Process Exit Codes").
SYSTEMD_EXIT = {
    200: "200/CHDIR: could not change to the WorkingDirectory",
    203: "203/EXEC: the program could not be executed; is the binary there?",
    209: "209/STDOUT: could not set up standard output",
    217: "217/USER: the User= does not exist",
    226: "226/NAMESPACE: could not set up the sandbox's mount namespace",
}


class Gate(object):
    def __init__(self, module):
        self.module = module
        params = module.params
        self.api_key = params["api_key"] or ""
        self.server_url = params["server_url"].rstrip("/")
        path = params["server_ready_path"] or "/"
        self.server_ready_url = self.server_url + (path if path.startswith("/") else "/" + path)
        openai = params["openai_url"].rstrip("/")
        if openai.endswith("/v1"):
            openai = openai[: -len("/v1")]
        self.openai_health_url = openai + "/health"
        self.completions_url = openai + "/v1/chat/completions"
        self.units = list(params["units"] or [])
        self.listeners = list(params.get("listeners") or [])
        self.timeout = params["timeout"]
        self.interval = params["interval"]
        self.opener = urllib_request.build_opener(urllib_request.ProxyHandler({}))
        self.systemctl = None
        self.journalctl = None
        self.initial_restarts = {}
        self.states = {}
        self.start = None
        self.last_seen = (self.server_ready_url, "nothing was tried")

    # --- helpers -------------------------------------------------------------------------------

    def scrub(self, text):
        """Text with the api_key masked, whatever produced it."""
        if text is None:
            return text
        text = "%s" % text
        if self.api_key:
            text = text.replace(self.api_key, "********")
        return text

    def elapsed(self):
        return time.monotonic() - self.start

    def remaining(self):
        return self.timeout - self.elapsed()

    def fail(self, reason, msg, journal=None):
        self.module.fail_json(
            msg=self.scrub(msg),
            reason=reason,
            journal=[self.scrub(line) for line in (journal or [])],
            units=self.units_result(),
        )

    def units_result(self):
        result = {}
        for unit in self.units:
            state = self.states.get(unit)
            if state is None:
                continue
            result[unit] = {
                "active_state": state.get("ActiveState"),
                "sub_state": state.get("SubState"),
                "n_restarts": int_or_none(state.get("NRestarts")),
            }
        return result

    # --- systemd -------------------------------------------------------------------------------

    def show(self, unit):
        """The unit's properties as a dict, or None when systemctl cannot tell."""
        rc, out, err = self.module.run_command(
            [self.systemctl, "show", "--property=" + ",".join(PROPERTIES), "--", unit],
            environ_update={"LC_ALL": "C"},
        )
        if rc != 0:
            return None, (err or out or "").strip()
        state = {}
        for line in (out or "").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in PROPERTIES:
                state[key.strip()] = value.strip()
        if "ActiveState" not in state:
            return None, "no ActiveState in the output of systemctl show"
        return state, None

    def journal(self, unit):
        """The unit's last journal lines and, when there are none, why."""
        if not self.journalctl:
            return [], "journalctl is not available on this host"
        try:
            rc, out, err = self.module.run_command(
                [self.journalctl, "-u", unit, "-n", str(JOURNAL_LINES), "--no-pager", "-o", "cat"],
                environ_update={"LC_ALL": "C"},
            )
        except Exception as exc:  # the gate's message matters more than the journal
            return [], "journalctl failed: %s" % exc
        if rc != 0:
            return [], "journalctl failed (rc=%s): %s" % (rc, (err or out or "").strip()[:200])
        lines = [line.rstrip()[:500] for line in (out or "").splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith("-- ")]  # "-- No entries --", "-- Boot ... --"
        if not lines:
            return [], "the journal has no lines for %s (reading it may need become)" % unit
        return lines[-JOURNAL_LINES:], None

    def start_watching(self):
        if not self.units:
            return
        self.systemctl = self.module.get_bin_path("systemctl", opt_dirs=["/usr/bin", "/bin"])
        self.journalctl = self.module.get_bin_path("journalctl", opt_dirs=["/usr/bin", "/bin"])
        if not self.systemctl:
            self.module.warn("systemctl not found: not watching %s; a crash is only found by the timeout."
                             % ", ".join(self.units))
            self.units = []
            return
        watched = []
        for unit in self.units:
            state, error = self.show(unit)
            if state is None:
                self.module.warn("Cannot read the state of %s (%s): not watching it." % (unit, error))
                continue
            self.states[unit] = state
            self.initial_restarts[unit] = int_or_none(state.get("NRestarts"))
            watched.append(unit)
        self.units = watched

    def check_units(self, waiting_for):
        for unit in self.units:
            state, _error = self.show(unit)
            if state is None:  # a transient systemctl failure: keep the last state, look again next time
                continue
            self.states[unit] = state
            problem = unit_problem(state, self.initial_restarts.get(unit))
            if problem:
                lines, why = self.journal(unit)
                msg = "%s while waiting for %s." % (describe(unit, state, self.initial_restarts.get(unit)),
                                                    waiting_for)
                if lines:
                    msg += " Last journal lines:\n" + "\n".join("  " + line for line in lines)
                else:
                    msg += " No journal lines: %s." % why
                self.fail("unit_failed", msg, lines)

    def all_journals(self):
        lines = []
        for unit in self.units:
            unit_lines, _why = self.journal(unit)
            lines.extend("[%s] %s" % (unit, line) for line in unit_lines)
        return lines

    def units_summary(self):
        parts = []
        for unit in self.units:
            state = self.states.get(unit, {})
            parts.append("%s %s/%s (%s restart(s))" % (unit, state.get("ActiveState"), state.get("SubState"),
                                                       state.get("NRestarts") or "?"))
        return "; ".join(parts)

    # --- HTTP ----------------------------------------------------------------------------------

    def headers(self):
        headers = {"Accept": "application/json", "User-Agent": "edge-llama-health-gate"}
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        return headers

    def request(self, url, timeout, body=None, auth=False):
        """(status, text) of a request; raises ProbeError with a readable reason when there is no answer."""
        headers = self.headers() if auth else {"Accept": "application/json", "User-Agent": "edge-llama-health-gate"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib_request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
        try:
            reply = self.opener.open(req, timeout=max(timeout, 0.1))
            try:
                return reply.getcode(), reply.read().decode("utf-8", "replace")
            finally:
                reply.close()
        except urllib_error.HTTPError as exc:
            try:
                text = exc.read().decode("utf-8", "replace")
            except Exception:
                text = ""
            return exc.code, text
        except urllib_error.URLError as exc:
            raise ProbeError(describe_connection_error(exc.reason, timeout)) from None
        except (socket.timeout, OSError, HTTPException) as exc:
            raise ProbeError(describe_connection_error(exc, timeout)) from None

    def probe(self, url, what, auth):
        """True when url answers 200. Records what was seen otherwise; fails at once on a permanent status."""
        try:
            status, text = self.request(url, min(PROBE_MAX_SECONDS, max(self.remaining(), 0.5)), auth=auth)
        except ProbeError as exc:
            self.last_seen = (url, "the last attempt failed: %s" % exc)
            return False
        if status == 200:
            return True
        detail = error_detail(text)
        answer = "HTTP %d%s" % (status, " (%s)" % detail if detail else "")
        self.last_seen = (url, "the last answer was %s" % answer)
        if status in PERMANENT:
            hint = PERMANENT[status]
            if status == 401 and url == self.openai_health_url:
                hint += self.key_hint()
            if url == self.server_ready_url and status == 404 and self.server_ready_url.endswith("/health"):
                hint += ": the 2023 llama.cpp server has no /health, use server_ready_path: /model.json"
            self.fail("bad_answer", "%s answered %s while waiting for %s to be ready: %s."
                      % (url, answer, what, hint), self.all_journals())
        return False

    def key_hint(self):
        if self.api_key:
            return "; the endpoint does not take the api_key given (is it the one the endpoint was started with?)"
        return "; the endpoint wants an API key and no api_key was given"

    def chat(self):
        """(result dict) or None when the endpoint is temporarily unavailable; fails on a bad answer."""
        params = self.module.params
        body = {
            "model": params["model"],
            "messages": [{"role": "user", "content": params["prompt"]}],
            "max_tokens": params["max_tokens"],
            "temperature": 0,
        }
        url = self.completions_url
        started = time.monotonic()
        try:
            status, text = self.request(url, max(self.remaining(), COMPLETION_MIN_SECONDS), body=body, auth=True)
        except ProbeError as exc:
            self.last_seen = (url, "the last attempt failed: %s" % exc)
            return None
        seconds = time.monotonic() - started
        detail = error_detail(text)
        answer = "HTTP %d%s" % (status, " (%s)" % detail if detail else "")
        if status in (502, 503, 504):  # the backend is (re)loading: wait for it
            self.last_seen = (url, "the last answer was %s" % answer)
            return None
        if status != 200:
            hint = ""
            if status in (401, 403):
                hint = self.key_hint()
            elif status == 404:
                hint = ("; is the model name %r one the endpoint serves, and is openai_url the endpoint's base URL "
                        "(without /v1)?" % params["model"])
            self.fail("bad_answer", "%s refused the chat request: %s%s." % (url, answer, hint), self.all_journals())
        try:
            payload = json.loads(text)
            choice = payload["choices"][0]
            message = choice.get("message") or {}
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            self.fail("bad_answer", "%s answered 200 but not with a chat completion: %s"
                      % (url, one_line(text)[:TEXT_LIMIT] or "an empty body"), self.all_journals())
        if not isinstance(content, str) or not content.strip():
            why = "empty answer"
            if message.get("reasoning_content"):
                why += " (the model spent all %d max_tokens on reasoning; raise max_tokens)" % params["max_tokens"]
            self.fail("bad_answer", "%s gave an %s to %r (finish_reason: %s)."
                      % (url, why, params["prompt"], choice.get("finish_reason")), self.all_journals())
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        tokens = int_or_none(usage.get("completion_tokens"))
        if tokens is None:
            tokens = len(content.split())
        return {
            "text": self.scrub(content.strip())[:TEXT_LIMIT],
            "completion_tokens": tokens,
            "seconds": round(seconds, 3),
            "tokens_per_second": round(tokens / seconds, 2) if seconds > 0 else 0.0,
            "finish_reason": choice.get("finish_reason"),
        }

    # --- who answered -------------------------------------------------------------------------

    def check_listeners(self):
        """Each port answered: from the process of the unit being gated, not from another one."""
        for entry in self.listeners:
            found = holders(entry["port"], entry.get("address") or "127.0.0.1")
            if not found:
                continue  # it answered over loopback, so it listens; a race with a restart, seen next round
            foreign = [h for h in found if h["pid"] and h["unit"] != entry["unit"]]
            if foreign:
                other = foreign[0]
                self.fail("foreign_listener",
                          "Port %d answered, but from pid %d (%s%s), not from %s: another process holds the port. "
                          "Stop it or choose another port." % (
                              entry["port"], other["pid"], other["process"] or "?",
                              (", unit " + other["unit"]) if other["unit"] else ", no systemd unit",
                              entry["unit"]), self.all_journals())

    # --- the gate ------------------------------------------------------------------------------

    def run(self):
        self.start = time.monotonic()
        self.start_watching()
        server_ready = endpoint_ready = False
        server_seconds = ready_seconds = None
        while True:
            if not server_ready:
                waiting_for = self.server_ready_url
            elif not endpoint_ready:
                waiting_for = self.openai_health_url
            else:
                waiting_for = "a chat answer from " + self.completions_url
            self.check_units(waiting_for)

            if not server_ready:
                server_ready = self.probe(self.server_ready_url, "llama.cpp's server", auth=False)
                if server_ready:
                    server_seconds = self.elapsed()
            if server_ready and not endpoint_ready:
                endpoint_ready = self.probe(self.openai_health_url, "the OpenAI-compatible endpoint", auth=True)
                if endpoint_ready:
                    ready_seconds = self.elapsed()
            if server_ready and endpoint_ready:
                self.check_listeners()
                completion = self.chat()
                if completion is not None:
                    self.check_units(waiting_for)  # a restart during the request counts too
                    return {
                        "changed": False,
                        "ready_seconds": round(ready_seconds, 3),
                        "completion": completion,
                        "units": self.units_result(),
                    }
                server_ready = endpoint_ready = False  # look again from the start

            if self.remaining() <= 0:
                self.check_units(waiting_for)
                url, seen = self.last_seen
                msg = "Timed out after %s s waiting for %s to answer 200: %s." % (self.timeout, url, seen)
                if server_seconds is not None and url != self.server_ready_url:
                    msg += " (llama.cpp's server at %s was ready after %.1f s.)" % (self.server_ready_url,
                                                                                    server_seconds)
                if self.units:
                    msg += " Units: %s." % self.units_summary()
                journal = self.all_journals()
                if journal:
                    msg += " Last journal lines:\n" + "\n".join("  " + line for line in journal)
                self.fail("timeout", msg, journal)
            time.sleep(max(0.0, min(self.interval, self.remaining())))


class ProbeError(Exception):
    pass




def error_detail(text):
    """The server's error message from a JSON error body (llama.cpp, OpenAI, FastAPI), else the text's start."""
    return _error_detail(text).rstrip(" .")


def _error_detail(text):
    text = text or ""
    try:
        payload = json.loads(text)
    except ValueError:
        return one_line(text)[:TEXT_LIMIT]
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return one_line(str(error["message"]))[:TEXT_LIMIT]
        if isinstance(error, str) and error:
            return one_line(error)[:TEXT_LIMIT]
        if payload.get("detail"):
            return one_line(str(payload["detail"]))[:TEXT_LIMIT]
        if payload.get("status") and payload.get("status") != "ok":
            return one_line(str(payload["status"]))[:TEXT_LIMIT]
        return ""
    return one_line(text)[:TEXT_LIMIT]


def describe_connection_error(reason, timeout):
    if isinstance(reason, socket.timeout) or "timed out" in str(reason):
        return "no answer within %.1f s" % timeout
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (nothing listens there yet)"
    if isinstance(reason, ConnectionResetError):
        return "connection reset"
    if isinstance(reason, HTTPException):
        return "the connection closed without an HTTP answer (%s)" % type(reason).__name__
    if isinstance(reason, socket.gaierror):
        return "the host name does not resolve (%s)" % reason
    text = getattr(reason, "strerror", None) or str(reason)
    return "%s (%s)" % (text, type(reason).__name__)


def unit_problem(state, initial_restarts):
    """Why the unit counts as down, or None while it may still come up."""
    if state.get("LoadState") == "not-found":
        return "not-found"
    if state.get("ActiveState") == "failed":
        return "failed"
    if state.get("SubState") == "auto-restart":
        return "auto-restart"
    now = int_or_none(state.get("NRestarts"))
    if initial_restarts is not None and now is not None and now > initial_restarts:
        return "restarted"
    if state.get("ActiveState") == "inactive":
        return "inactive"
    return None


def describe_exit(state):
    """How the unit's main process ended, in words, or None when systemd does not say."""
    code = int_or_none(state.get("ExecMainCode"))
    status = int_or_none(state.get("ExecMainStatus"))
    result = state.get("Result")
    if result == "oom-kill":
        return "killed by the out-of-memory killer"
    if code == 1 and status is not None:  # CLD_EXITED
        if status in SYSTEMD_EXIT:
            return "exited with status %s" % SYSTEMD_EXIT[status]
        return "exited with status %d" % status
    if code in (2, 3) and status is not None:  # CLD_KILLED, CLD_DUMPED
        try:
            name = signal.Signals(status).name
        except ValueError:
            name = "signal %d" % status
        verb = "killed by signal" if code == 2 else "dumped core on signal"
        return "%s %d (%s)" % (verb, status, name)
    if result and result not in ("success", ""):
        return "ended with result %s" % result
    return None


def describe(unit, state, initial_restarts):
    problem = unit_problem(state, initial_restarts)
    if problem == "not-found":
        return "%s is not installed (systemd does not know it)" % unit
    what = {
        "failed": "%s failed" % unit,
        "auto-restart": "%s stopped" % unit,
        "restarted": "%s stopped" % unit,
        "inactive": "%s is not running (%s/%s)" % (unit, state.get("ActiveState"), state.get("SubState")),
    }.get(problem, unit)
    details = []
    exit_text = describe_exit(state)
    running_again = state.get("SubState") == "running"
    if exit_text and not running_again:
        details.append(exit_text)
    now = int_or_none(state.get("NRestarts"))
    grew = now - initial_restarts if now is not None and initial_restarts is not None else 0
    if grew > 0:
        details.append("restarted %d time(s) by systemd" % grew)
    if problem == "auto-restart":
        details.append("systemd is about to restart it")
    if running_again:
        details.append("it runs again as PID %s (the journal says why it stopped)" % state.get("MainPID"))
    if details:
        return "%s: %s" % (what, ", ".join(details))
    return what


def main():
    module = AnsibleModule(
        argument_spec=dict(
            server_url=dict(type="str", required=True),
            server_ready_path=dict(type="str", default="/health"),
            openai_url=dict(type="str", required=True),
            api_key=dict(type="str", default="", no_log=True),
            model=dict(type="str", default="llama_2"),
            units=dict(type="list", elements="str", default=[]),
            listeners=dict(type="list", elements="dict", default=[], options=dict(
                port=dict(type="int", required=True),
                unit=dict(type="str", required=True),
                address=dict(type="str", default="127.0.0.1"),
            )),
            timeout=dict(type="int", default=900),
            interval=dict(type="float", default=1.0),
            prompt=dict(type="str", default="Reply with one short sentence."),
            max_tokens=dict(type="int", default=16),
        ),
        supports_check_mode=True,
    )
    if module.params["interval"] <= 0:
        module.fail_json(msg="interval must be more than 0 (got %s)" % module.params["interval"])
    if module.params["timeout"] < 0:
        module.fail_json(msg="timeout must not be negative (got %s)" % module.params["timeout"])
    if module.params["max_tokens"] < 1:
        module.fail_json(msg="max_tokens must be at least 1 (got %s)" % module.params["max_tokens"])
    module.exit_json(**Gate(module).run())


if __name__ == "__main__":
    main()
