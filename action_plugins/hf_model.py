# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin for library/hf_model.py: show a long download's progress in the play's output.

A module cannot print while it runs, so for a real (not check mode) run this plugin first asks the module
whether the file is already verified (only_if_verified: a re-run's answer, one ordinary call), and otherwise
starts the module as an async job on the host and polls it: every poll_interval seconds it asks async_status
whether the job has finished and reads the progress file the module keeps
(DEST/.edge-llama/FILE.progress.json); each new progress line (bytes, percent, rate) is displayed as
`[host] hf_model: ...`. The task's result is the module's. Check mode, and a task that sets `async:`
itself, run the module the ordinary way.
"""

from __future__ import annotations

import base64
import json
import os
import time

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

# async_wrapper kills the job after this many seconds: a day covers 41 GB at 0.5 MB/s.
ASYNC_LIMIT = 86400
JOB_KEYS = ("ansible_job_id", "started", "finished", "results_file", "stdout_lines", "stderr_lines")


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        if self._task.check_mode or self._task.async_val or self._connection.has_native_async:
            wrap = bool(self._task.async_val) and not self._connection.has_native_async
            result.update(self._execute_module(task_vars=task_vars, wrap_async=wrap))
            return result

        # A re-run finds the file verified: one ordinary module call answers it (no job, no polling).
        quick = self._execute_module(task_vars=task_vars, module_args=dict(args, only_if_verified=True))
        if quick.get("failed") or not quick.get("pending"):
            result.update(quick)
            return result

        interval = float(args.get("progress_interval", 30) or 30)
        poll = min(max(interval / 3.0, 0.5), 10.0)
        filename = os.path.basename(str(args.get("filename", "")))
        progress_file = os.path.join(str(args.get("dest", "")), ".edge-llama", filename + ".progress.json")
        host = task_vars.get("inventory_hostname", "?")

        self._task.async_val = ASYNC_LIMIT
        try:
            started = self._execute_module(task_vars=task_vars, wrap_async=True)
        finally:
            self._task.async_val = 0
        if started.get("failed") or "ansible_job_id" not in started:
            result.update(started)
            return result
        jid = started["ansible_job_id"]
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        status_args = {"jid": jid, "mode": "status", "_async_dir": async_dir}

        shown = None
        began = time.time()
        wait = 0.1  # a re-run that finds the file verified answers at once: do not make it wait `poll`
        while True:
            time.sleep(wait)
            wait = min(wait * 2, poll)
            status = self._execute_module(module_name="ansible.legacy.async_status", module_args=status_args,
                                          task_vars=task_vars)
            if status.get("finished") or status.get("failed") and "finished" not in status:
                break
            line = self._progress_line(progress_file, task_vars, began)
            if line and line != shown:
                display.display("[%s] hf_model: %s" % (host, line))
                shown = line
        self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                             module_args=dict(status_args, mode="cleanup"))
        for key in JOB_KEYS:
            status.pop(key, None)
        if "changed" not in status and not status.get("failed"):
            raise AnsibleError("hf_model's job %s ended without a result: %s" % (jid, json.dumps(status)[:500]))
        result.update(status)
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _progress_line(self, path, task_vars, began):
        """The line the module last wrote, when it wrote it during this run."""
        data = self._execute_module(module_name="ansible.legacy.slurp", module_args={"src": path},
                                    task_vars=task_vars)
        if data.get("failed") or "content" not in data:
            return None
        try:
            state = json.loads(base64.b64decode(data["content"]).decode("utf-8"))
        except ValueError:
            return None
        if float(state.get("updated", 0)) < began - 5:
            return None  # left by an earlier run
        return state.get("line")
