"""What the tests know about a molecule host, from the scenario's inventory (not from what the roles wrote).

The verifier runs in tests/molecule/shared with MOLECULE_SCENARIO_DIRECTORY set; a host's settings are
its host_vars file there (missing file or key: the role's defaults).
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "tests" / "artifacts"
CACHE = Path(os.environ.get("EDGE_LLAMA_CACHE", REPO / ".cache"))


def fleet():
    """The scenario's appliances, in inventory order (orin-a .. orin-d); read at collection, which every
    scenario's verifier does (the fleet marker deselects the fleet's tests elsewhere), so nothing is
    asserted here."""
    path = os.environ.get("MOLECULE_INVENTORY_FILE")
    inventory = (yaml.safe_load(open(path)) or {}) if path else {}
    return sorted((inventory.get("llm_appliances") or {}).get("hosts") or {})


def machine(hostname):
    """A test host by its inventory (= container) name, through podman exec."""
    import testinfra

    return testinfra.get_host("podman://" + hostname)


def wait_for(what, check, timeout, every=1.0):
    """check() until it returns something true (returned), or fail after timeout seconds."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError("%s: not within %d s (last: %r)" % (what, timeout, last))


def name(host):
    """The container (= inventory) name of a testinfra podman host."""
    return host.backend.name


def host_vars(host):
    return host_vars_of(name(host))


def host_vars_of(hostname):
    """The scenario's host_vars/<hostname>.yml (empty when there is none)."""
    scenario = os.environ.get("MOLECULE_SCENARIO_DIRECTORY")
    if not scenario:
        return {}
    path = Path(scenario) / "host_vars" / ("%s.yml" % hostname)
    settings = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    for key in ("services_openai_api_key", "services_chat_username", "services_chat_password"):
        assert "{{" not in str(settings.get(key, "")), \
            "%s: %s is a template; the tests need the literal test value" % (path, key)
    return settings


def main_pid(host, unit):
    pid = host.run("systemctl show -p MainPID --value %s", unit).stdout.strip()
    assert pid not in ("", "0"), "%s is not running on %s" % (unit, name(host))
    return pid


def in_mount_namespace(host, unit, *argv):
    """Run argv in the mount namespace of a unit's main process, with this controller's nsenter.

    The host's own nsenter cannot do it on the arm64 host: under qemu-user every process has a
    second thread, and the kernel refuses setns() into a mount namespace for a threaded process
    ("reassociate to namespace 'ns/mnt' failed: Invalid argument"). The command itself is the
    host's (its binaries run through binfmt_misc on the arm64 host)."""
    pid = main_pid(host, unit)
    top = subprocess.run(["podman", "top", name(host), "pid", "hpid"], capture_output=True, text=True, check=True)
    hpids = dict(line.split() for line in top.stdout.splitlines()[1:] if len(line.split()) == 2)
    assert pid in hpids, "pid %s of %s not in podman top of %s:\n%s" % (pid, unit, name(host), top.stdout)
    return subprocess.run(["nsenter", "-t", hpids[pid], "-m", "--", *argv], capture_output=True, text=True,
                          timeout=120)


def command_line(host, pid):
    """The argv of a process on the host. On the arm64 host the kernel starts each aarch64 program
    through qemu-user's binfmt_misc entry (flag P): /proc/PID/cmdline then reads
    [interpreter, program path, argv0, args...]; this returns [argv0, args...] either way."""
    argv = host.file("/proc/%s/cmdline" % pid).content_string.rstrip("\0").split("\0")
    # binfmt_misc is the kernel's, one for the controller and its containers.
    interpreters = set()
    for entry in Path("/proc/sys/fs/binfmt_misc").glob("*"):
        try:
            interpreters.update(line.split(" ", 1)[1] for line in entry.read_text().splitlines()
                                if line.startswith("interpreter "))
        except OSError:
            continue
    if argv and argv[0] in interpreters:
        argv = argv[2:]
    return argv


def exposed(host):
    """Whether the host has the LAN switch on (services_expose_on_lan)."""
    return bool(host_vars(host).get("services_expose_on_lan", False))


def api_key(host):
    """The key clients send: the host's services_openai_api_key, or a dummy the SDK insists on."""
    return host_vars(host).get("services_openai_api_key") or "unused"


def chat_login(host):
    """(user, password) of the chat app's login page, or None when it has none."""
    settings = host_vars(host)
    if not settings.get("services_chat_password"):
        return None
    return settings.get("services_chat_username", "edge-llama"), settings["services_chat_password"]


class Run:
    def __init__(self, rc, output, summary, seconds):
        self.rc, self.output, self.summary, self.seconds = rc, output, summary, seconds

    def host(self, name):
        return self.summary["hosts"][name]

    def recap(self, name):
        found = re.search(r"^%s\s*:\s*(.*)$" % re.escape(name), self.output, re.M)
        assert found, "no PLAY RECAP line for %s" % name
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found.group(1))}


def playbook(label, extra, check=False, playbooks=("site.yml",), env=None, inventories=()):
    """ansible-playbook (site.yml by default) against the scenario's inventory (and `inventories` after
    it, e.g. one host's own settings) with extra vars, as a user runs it from the repository. Its output
    and the edge_llama_summary JSON land in tests/artifacts/<label>.{log,json}."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    ARTIFACTS.mkdir(exist_ok=True)
    summary = ARTIFACTS / ("%s.json" % label)
    if summary.exists():
        summary.unlink()
    varsfile = ARTIFACTS / ("%s.vars.json" % label)
    varsfile.write_text(json.dumps(extra))
    argv = ["ansible-playbook", "-i", inventory]
    for more in inventories:
        argv += ["-i", str(more)]
    argv += [*[str(REPO / book) for book in playbooks], "-e", "@%s" % varsfile]
    if check:
        argv += ["--check", "--diff"]
    env = dict(os.environ, EDGE_LLAMA_SUMMARY_JSON=str(summary), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_MODULE_UTILS=str(REPO / "module_utils"), ANSIBLE_FILTER_PLUGINS=str(REPO / "filter_plugins"),
               **(env or {}))
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=30 * 60)
    took = time.monotonic() - started
    output = proc.stdout + proc.stderr
    (ARTIFACTS / ("%s.log" % label)).write_text(output)
    print("%s: rc %d in %.0f s" % (label, proc.returncode, took))
    assert summary.exists(), "no summary JSON after %s (rc %d):\n%s" % (label, proc.returncode, output[-6000:])
    return Run(proc.returncode, output, json.loads(summary.read_text()), took)
