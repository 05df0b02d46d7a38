"""callback_plugins/edge_llama_summary.py: the fleet summary and the check-mode drift report.

Mostly real runs: ansible-playbook against hosts that all connect locally (h1..h3, ansible_connection=local)
plus one that is unreachable (ssh through an executable that fails the way ssh does, exit 255), with stand-in
roles llama_cpp / model / services in a temporary roles path that set the report facts the real roles set.
Each run asserts on the printed table and on the JSON file (EDGE_LLAMA_SUMMARY_JSON).
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "callback_plugins"
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
COMMIT_OLD = "0123456789abcdef0123456789abcdef01234567"
COMMIT_NEW = "fedcba9876543210fedcba9876543210fedcba98"
MODEL = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
LONG_REASON = "llama-server did not answer its health check on 127.0.0.1:8080 within 120 s; " * 4



class _Plugin:
    """The plugin module, imported on first use: importing it brings in ansible's Display, which takes over
    the module warnings that the other unit tests read; at collection time that would break them."""

    module = None

    def __getattr__(self, name):
        if name.startswith("_"):  # pytest's collection looks for __test__ and the like on every module global
            raise AttributeError(name)
        if _Plugin.module is None:
            spec = importlib.util.spec_from_file_location("edge_llama_summary", PLUGINS / "edge_llama_summary.py")
            _Plugin.module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(_Plugin.module)
        return getattr(_Plugin.module, name)


summary_cb = _Plugin()

FILES = {
    "ansible.cfg": """\
        [defaults]
        roles_path = roles
        retry_files_enabled = false
        gathering = explicit
        forks = 10
        nocows = true
        """,
    "ssh-refused": """\
        #!/bin/sh
        echo "ssh: connect to host 127.0.0.1 port 1: Connection refused" >&2
        exit 255
        """,
    "inventory.ini": """\
        [fleet]
        h1
        h2
        h3
        h4 ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=1 ansible_ssh_executable={tmp}/ssh-refused

        [fleet:vars]
        ansible_connection=local
        ansible_host=127.0.0.1
        ansible_python_interpreter={python}
        """,
    "roles/llama_cpp/tasks/main.yml": """\
        - name: Report the build
          ansible.builtin.set_fact:
            llama_cpp_report:
              commit: "{{ wanted_commit }}"
              version: b4500
              build_system: cmake
              state: built
              reason: ""
        - name: Check out the source
          ansible.builtin.copy:
            content: "{{ wanted_commit }}\\n"
            dest: "{{ root }}/opt/llama.cpp/COMMIT"
            mode: "0644"
          when: root is defined
        """,
    "roles/model/tasks/main.yml": """\
        - name: Report the model
          ansible.builtin.set_fact:
            model_report:
              repo_id: Qwen/Qwen2.5-0.5B-Instruct-GGUF
              filename: "{{ wanted_model }}"
              sha256: "{{ '0' * 64 }}"
              state: downloaded
              reason: ""
        """,
    # h1 upgrades, h2 fails (no report), h3 fails its health gate and is rolled back (then fails)
    "roles/services/tasks/main.yml": """\
        - name: An optional probe whose failure is ignored
          ansible.builtin.fail:
            msg: not a reason
          ignore_errors: true
          when: inventory_hostname == 'h1'
        - name: Start llama-server
          ansible.builtin.fail:
            msg: "{{ long_reason }}"
          when: inventory_hostname == 'h2'
        - name: Upgrade behind the health gate
          block:
            - name: Health gate
              ansible.builtin.fail:
                msg: "health gate: 0.4 tokens/s, below 5"
              when: inventory_hostname == 'h3'
            - name: Report the upgrade
              ansible.builtin.set_fact:
                services_report:
                  state: upgraded
                  commit: "{{ wanted_commit }}"
                  model: "/media/m2/models/{{ wanted_model }}"
                  tokens_per_second: 42.345
                  previous_commit: "{{ active_commit }}"
                  previous_model: old.gguf
                  reason: ""
                  rotation: {state: in, gateways: [gw1], drain_seconds: 1.5, cut: 0, ready_seconds: 2.1}
          rescue:
            - name: Report the rollback
              ansible.builtin.set_fact:
                services_report:
                  state: rolled_back
                  commit: "{{ active_commit }}"
                  model: "/media/m2/models/old.gguf"
                  tokens_per_second: 0.4
                  previous_commit: "{{ active_commit }}"
                  previous_model: old.gguf
                  reason: "health gate failed (0.4 tokens/s, below 5); rolled back to {{ active_commit[:12] }}"
                  # its rollback's gate passed, but the gateway did not see it healthy again
                  rotation: {state: out, gateways: [gw1], error: "health check has not passed within 60 s"}
            - name: Fail after the rollback
              ansible.builtin.fail:
                msg: rolled back
        """,
    "site.yml": """\
        - name: Build llama.cpp
          hosts: fleet
          gather_facts: false
          roles: [llama_cpp]
        - name: Fetch the model
          hosts: fleet
          gather_facts: false
          roles: [model]
        - name: Run the services
          hosts: fleet
          gather_facts: false
          roles: [services]
        """,
    # the canary (first serial batch) fails: the run stops with h2 and h3 never upgraded
    "canary.yml": """\
        - name: Build llama.cpp
          hosts: h1:h2:h3
          gather_facts: false
          roles: [llama_cpp]
        - name: Upgrade one host at a time
          hosts: h2:h1:h3
          gather_facts: false
          serial: 1
          max_fail_percentage: 0
          tasks:
            - name: Upgrade
              ansible.builtin.fail:
                msg: canary failed its health gate
              when: inventory_hostname == 'h2'
        """,
    # the first play of site.yml waits for each host: a host that never answers fails that wait
    "wait_first.yml": """\
        - name: Find the hosts that answer
          hosts: h1:h4
          gather_facts: false
          tasks:
            - name: Wait for a connection
              ansible.builtin.wait_for_connection:
                timeout: 2
        - name: Provision
          hosts: h1:h4
          gather_facts: false
          tasks:
            - name: Report what runs
              ansible.builtin.set_fact:
                services_report: {state: unchanged, commit: fedcba9876543210fedcba9876543210fedcba98}
        """,
    # the first serial batch is unreachable: no callback says the run stopped
    "unreachable_canary.yml": """\
        - name: Upgrade one host at a time
          hosts: h4:h1:h2
          gather_facts: false
          serial: 1
          tasks:
            - name: Upgrade
              ansible.builtin.ping:
        """,
    "roles/services/templates/unit.j2": """\
        [Service]
        ExecStart=/opt/edge-llama/bin/{{ item }}
        """,
    "check.yml": """\
        - name: Build llama.cpp
          hosts: h1
          gather_facts: false
          roles: [llama_cpp]
        - name: Services
          hosts: h1
          gather_facts: false
          tasks:
            - name: Report what runs
              ansible.builtin.set_fact:
                services_report:
                  state: unchanged
                  commit: "{{ active_commit }}"
                  model: "{{ wanted_model }}"
                  previous_commit: "{{ active_commit }}"
                  previous_model: "{{ wanted_model }}"
            - name: The units
              ansible.builtin.include_role:
                name: services
                tasks_from: units.yml
            - name: Write the login banner
              ansible.builtin.copy:
                content: "edge-llama\\n"
                dest: "{{ root }}/etc/motd"
                mode: "0644"
        """,
    "roles/services/tasks/units.yml": """\
        - name: Install the units
          ansible.builtin.template:
            src: unit.j2
            dest: "{{ root }}/etc/systemd/system/{{ item }}"
            mode: "0644"
          loop: [edge-llama-server.service, edge-llama-chat.service]
        - name: Install the environment file
          ansible.builtin.copy:
            content: "LLAMA_ARG_CTX_SIZE=4096\\n"
            dest: "{{ root }}/etc/edge-llama/server.env"
            mode: "0644"
        - name: A shared task file (a change there counts for services, which included it)
          ansible.builtin.include_role:
            name: edge_llama_common
            tasks_from: shared.yml
        """,
    "roles/edge_llama_common/tasks/shared.yml": """\
        - name: Write the shared file
          ansible.builtin.copy:
            content: "shared\\n"
            dest: "{{ root }}/opt/edge-llama/shared.txt"
            mode: "0644"
        """,
    # facts from a loop's items, and facts delegated to another host (delegate_facts)
    "facts.yml": """\
        - name: Facts
          hosts: h1
          gather_facts: false
          tasks:
            - name: Report each model in turn
              ansible.builtin.set_fact:
                model_report: {filename: "{{ item }}", state: unchanged}
              loop: [first.gguf, "{{ wanted_model }}"]
            - name: Report for the next host
              ansible.builtin.set_fact:
                services_report: {state: deployed, commit: "{{ wanted_commit }}", tokens_per_second: "7"}
              delegate_to: "{{ groups.fleet[1] }}"
              delegate_facts: true
        """,
    # nothing to change: the file is there already, with this content and mode
    "nodrift.yml": """\
        - name: Nothing to do
          hosts: h1
          gather_facts: false
          tasks:
            - name: Keep the banner
              ansible.builtin.copy:
                content: "edge-llama\\n"
                dest: "{{ playbook_dir }}/motd"
                mode: "0644"
        """,
}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("summary")
    for name, text in FILES.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).replace("{tmp}", str(tmp)).replace("{python}", sys.executable))
    (tmp / "ssh-refused").chmod(0o755)
    (tmp / "motd").write_text("edge-llama\n")
    (tmp / "motd").chmod(0o644)
    return tmp


def play(work, playbook, *args, json_name="out/summary.json", root="root"):
    """Run a playbook with the callback enabled: (returncode, stdout, summary JSON or None).

    root: the directory (under work) the stand-in roles write to, its parent directories there already."""
    for sub in ("opt/llama.cpp", "etc/systemd/system", "etc/edge-llama"):
        (work / root / sub).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    out = work / json_name
    if out.exists():
        out.unlink()
    env.update(
        ANSIBLE_CONFIG=str(work / "ansible.cfg"),
        ANSIBLE_HOME=str(work / ".ansible"),
        ANSIBLE_CALLBACK_PLUGINS=str(PLUGINS),
        ANSIBLE_CALLBACKS_ENABLED="edge_llama_summary",
        ANSIBLE_NOCOLOR="1",
        EDGE_LLAMA_SUMMARY_JSON=str(out),
    )
    extra = ["-e", "wanted_commit=%s active_commit=%s wanted_model=%s" % (COMMIT_NEW, COMMIT_OLD, MODEL),
             "-e", json.dumps({"long_reason": LONG_REASON, "root": str(work / root)})]
    proc = subprocess.run([str(PLAYBOOK), "-i", "inventory.ini", playbook, *extra, *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    data = json.loads(out.read_text()) if out.exists() else None
    return proc.returncode, proc.stdout + proc.stderr, data


def table(output):
    """The printed fleet summary: {host: [state, commit, model, tok/s, note?]}."""
    lines = output.split("edge-llama fleet summary", 1)[1].splitlines()[1:]
    assert lines[0].split() == ["HOST", "STATE", "LLAMA.CPP", "MODEL", "TOK/S", "NOTE"], lines[0]
    starts = [lines[0].index(col) for col in ("STATE", "LLAMA.CPP", "MODEL", "TOK/S", "NOTE")]
    rows = {}
    for line in lines[1:]:
        if not line.strip():
            break
        # aligned columns: every cell starts where its header does
        for start in starts:
            if start >= len(line):  # an empty note
                break
            assert line[start - 2:start] == "  " and line[start] != " ", (line, start)
        cells = re.split(r"\s{2,}", line.strip(), maxsplit=5)
        rows[cells[0]] = cells[1:]
    return rows


def drift_report(output):
    """The printed drift report: {host: [lines]}."""
    head = "edge-llama drift report (check mode: nothing was changed)"
    assert head in output, output
    report, host = {}, None
    for line in output.split(head, 1)[1].splitlines()[1:]:
        if not line.strip():
            break
        name, text = line[2:].split(None, 1) if line[2] != " " else (host, line.strip())
        host = name
        report.setdefault(host, []).append(text)
    return report


def test_fleet_summary(work):
    rc, out, data = play(work, "site.yml")
    assert rc != 0, out
    rows = table(out)
    assert list(rows) == ["h1", "h2", "h3", "h4"], out
    assert rows["h1"] == ["upgraded", COMMIT_NEW[:12], MODEL, "42.3"], out
    assert rows["h2"][:4] == ["failed", COMMIT_NEW[:12], MODEL, "-"], out
    assert rows["h2"][4].startswith("llama-server did not answer its health check")
    assert len(rows["h2"][4]) <= 160 and rows["h2"][4].endswith("...")
    assert rows["h3"] == ["rolled_back", COMMIT_OLD[:12], "old.gguf", "0.4",
                          "health gate failed (0.4 tokens/s, below 5); rolled back to %s; "
                          "out of rotation on gateway gw1" % COMMIT_OLD[:12]], out
    # set_fact needs no connection: h4 got its llama_cpp_report, then was unreachable and left the run
    assert rows["h4"][:4] == ["unreachable", COMMIT_NEW[:12], "-", "-"], out
    assert rows["h4"][4] == ("Failed to connect to the host via ssh: "
                             "ssh: connect to host 127.0.0.1 port 1: Connection refused")
    assert "drift report" not in out

    assert data["check_mode"] is False and data["aborted"] is False
    assert sorted(data["hosts"]) == ["h1", "h2", "h3", "h4"]
    h1, h2, h3 = data["hosts"]["h1"], data["hosts"]["h2"], data["hosts"]["h3"]
    assert (h1["state"], h1["commit"], h1["model"], h1["tokens_per_second"]) == ("upgraded", COMMIT_NEW, MODEL, 42.345)
    assert h1["note"] == "" and h1["failed_task"] is None  # the ignored failure is no reason
    assert h1["llama_cpp_report"]["build_system"] == "cmake" and h1["model_report"]["state"] == "downloaded"
    assert h2["state"] == "failed" and h2["failed_task"] == "services : Start llama-server"
    assert h2["reason"] == LONG_REASON.strip() and h2["services_report"] is None
    assert h3["state"] == "rolled_back" and h3["services_report"]["previous_commit"] == COMMIT_OLD
    assert h1["services_report"]["rotation"]["state"] == "in" and h3["services_report"]["rotation"]["state"] == "out"
    assert data["hosts"]["h4"]["state"] == "unreachable" and "drift" not in data["hosts"]["h4"]
    assert not list((work / "out").glob(".*.tmp")), "the temporary file was left behind"


def test_aborted_canary_still_prints_the_summary(work):
    rc, out, data = play(work, "canary.yml")
    assert rc != 0, out
    assert "edge-llama fleet summary (run aborted" in out, out
    rows = table(out)
    assert rows["h2"][:2] == ["failed", COMMIT_NEW[:12]] and rows["h2"][4] == "canary failed its health gate"
    # h1 and h3 were built, then the run stopped before their turn
    for host in ("h1", "h3"):
        assert rows[host][0] == "ok" and rows[host][4].startswith("not finished: the run was aborted"), out
    assert data["aborted"] is True
    assert sorted(data["hosts"]) == ["h1", "h2", "h3"]


def test_a_host_whose_wait_for_a_connection_times_out_is_unreachable_not_failed(work):
    rc, out, data = play(work, "wait_first.yml")
    assert rc != 0, out
    assert data["hosts"]["h4"]["state"] == "unreachable", data["hosts"]["h4"]
    assert "Connection refused" in data["hosts"]["h4"]["reason"] or "timed out" in data["hosts"]["h4"]["reason"]
    assert data["hosts"]["h1"]["state"] == "unchanged" and data["aborted"] is False
    assert table(out)["h4"][0] == "unreachable", out


def test_unreachable_first_batch_counts_as_aborted(work):
    rc, out, data = play(work, "unreachable_canary.yml")
    assert rc != 0, out
    assert list(table(out)) == ["h4"], out  # h1, h2: never touched
    assert data["aborted"] is True and data["hosts"]["h4"]["state"] == "unreachable"


def test_facts_from_loop_items_and_delegated_facts(work):
    rc, out, data = play(work, "facts.yml")
    assert rc == 0, out
    rows = table(out)
    assert rows["h1"] == ["ok", "-", MODEL, "-"], out
    assert rows["h2"] == ["deployed", COMMIT_NEW[:12], "-", "7.0"], out
    assert data["hosts"]["h2"]["services_report"]["state"] == "deployed"


def test_check_mode_drift_report(work):
    rc, out, data = play(work, "check.yml", "--check", "--diff", root="check-root")
    assert rc == 0, out
    assert "edge-llama fleet summary (check mode)" in out
    assert not [p for p in (work / "check-root").rglob("*") if p.is_file()], "check mode changed something"
    report = drift_report(out)
    assert report["h1"] == [
        "commit: %s -> %s" % (COMMIT_OLD[:12], COMMIT_NEW[:12]),
        "units: edge-llama-server.service, edge-llama-chat.service, %s/check-root/etc/edge-llama/server.env, "
        "%s/check-root/opt/edge-llama/shared.txt" % (work, work),
        "other: Write the login banner",
    ], out
    assert data["check_mode"] is True
    assert data["hosts"]["h1"]["drift"] == {
        "commit": ["%s -> %s" % (COMMIT_OLD[:12], COMMIT_NEW[:12])],
        "units": ["edge-llama-server.service", "edge-llama-chat.service",
                  "%s/check-root/etc/edge-llama/server.env" % work, "%s/check-root/opt/edge-llama/shared.txt" % work],
        "other": ["Write the login banner"],
    }


def test_check_mode_without_changes_says_no_drift(work):
    rc, out, data = play(work, "nodrift.yml", "--check", "--diff", json_name="nested/dir/s.json")
    assert rc == 0, out
    assert drift_report(out) == {"h1": ["no drift"]}, out
    assert table(out)["h1"] == ["ok", "-", "-", "-"]
    assert data["hosts"]["h1"]["drift"] == {} and data["check_mode"] is True and data["aborted"] is False


@pytest.mark.parametrize("action,role,args,result,expected", [
    ("ansible.builtin.apt", "toolchain", {"name": ["cmake", "ccache"]}, {}, ("packages", ["cmake", "ccache"])),
    ("ansible.builtin.dnf", None, {"name": "cmake,git"}, {}, ("packages", ["cmake", "git"])),
    ("ansible.builtin.package", None, {"name": "{{ toolchain_packages }}"}, {}, ("packages", ["Install"])),
    ("apt", None, {"upgrade": "dist"},
     {"diff": {"prepared": "The following packages will be upgraded:\n  cmake cmake-data\n1 upgraded\n"}},
     ("packages", ["cmake", "cmake-data"])),
    ("ansible.builtin.pip", "services", {"name": ["gradio==5.9.1"]}, {}, ("packages", ["gradio==5.9.1"])),
    ("ansible.builtin.template", None, {"dest": "/etc/systemd/system/edge-llama-openai.service"}, {},
     ("units", ["edge-llama-openai.service"])),
    ("ansible.builtin.copy", "services", {"dest": "/etc/edge-llama/openai.env"}, {},
     ("units", ["/etc/edge-llama/openai.env"])),
    ("ansible.builtin.copy", "preflight", {"dest": "/etc/motd"}, {}, ("other", ["Install"])),
    ("ansible.builtin.systemd_service", "services", {"name": "edge-llama-server.service"}, {},
     ("units", ["edge-llama-server.service"])),
    ("ansible.builtin.apt", "llama_cpp", {"name": "cmake"}, {}, ("commit", ["Install"])),
    ("ansible.builtin.get_url", "model", {}, {}, ("model", ["Install"])),
    ("ansible.builtin.command", None, {}, {}, ("other", ["Install"])),
    ("edge_llama_release", "services", {"state": "committed"},
     {"wanted": {"commit": COMMIT_NEW, "model_path": "/media/m2/models/" + MODEL},
      "removed": ["/opt/edge-llama/llama.cpp/builds/old"]},
     ("release", ["record %s with %s" % (COMMIT_NEW[:12], MODEL), "remove /opt/edge-llama/llama.cpp/builds/old"])),
])
def test_categorise(action, role, args, result, expected):
    assert summary_cb.categorise(action, role, args, result, "Install") == expected


def test_drift_falls_back_to_what_the_build_and_fetch_roles_found_serving():
    # the real roles' shapes: no services_report yet (check mode stops before), serving_* in the others
    record = {"drift": {"commit": ["llama_cpp : Check out"], "model": ["model : Fetch"], "other": ["x"]}}
    llama = {"state": "would_build", "commit": COMMIT_NEW, "serving_commit": COMMIT_OLD}
    model = {"state": "would_download", "filename": MODEL, "serving_model": "old.gguf"}
    assert summary_cb.CallbackModule._drift(record, llama, model, {}) == {
        "commit": ["%s -> %s" % (COMMIT_OLD[:12], COMMIT_NEW[:12])],
        "model": ["old.gguf -> %s" % MODEL],
        "other": ["x"],
    }
    # nothing serving yet: the changed tasks instead
    assert summary_cb.CallbackModule._drift(record, {"commit": COMMIT_NEW}, {}, {})["commit"] == [
        "llama_cpp : Check out"]


def test_failure_message_prefers_the_failed_item():
    result = {"msg": "One or more items failed", "results": [
        {"failed": False, "msg": "ok"}, {"failed": True, "msg": "cmake 3.16 is too old"}]}
    assert summary_cb.failure_message(result) == "cmake 3.16 is too old"
    assert summary_cb.failure_message({"stderr": "boom"}) == "boom"


def test_json_written_atomically_replaces_the_old_file(tmp_path):
    path = tmp_path / "a" / "b" / "summary.json"
    summary_cb.CallbackModule._write_json(str(path), {"hosts": {}, "check_mode": False, "aborted": False})
    summary_cb.CallbackModule._write_json(str(path), {"hosts": {"h": {}}, "check_mode": False, "aborted": True})
    assert json.loads(path.read_text())["aborted"] is True
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]
