"""Re-running site.yml to upgrade, on the upgrade scenario's host, one step after the other.

The scenario converged the tutorial's release (2023 llama.cpp, Makefile build, the tiny model) and the
other files of this directory checked it. These tests then run `ansible-playbook site.yml` again from
the controller with other settings, as a user upgrades, and check what serves afterwards with the
official openai SDK in the host's network namespace:

0. the tutorial's build (2023 Makefile, -march=x86-64-v3 appended) answers under qemu's Haswell CPU.
1. llama.cpp master (CMake, native /v1) with SmolLM2: upgraded, proven by the smoke check first, the
   chat answers.
1b. the current build (GGML_NATIVE=OFF: x86-64-v3) answers under qemu's Haswell CPU.
2. a commit that does not compile: the run fails naming the host, the commit and the compiler error;
   nothing was switched.
2b. a commit that builds and prints --help but dies with SIGILL at its first computation: the smoke
   check rejects it before any switch; its directory records why.
3. a commit that builds, passes the smoke check (tiny model), but whose server exits at start with the
   release's model: switched, the health gate fails, rolled back.
4. a model whose SHA-256 does not match its pin: the download is discarded, nothing was switched.
5. a model that downloads and verifies but does not load: switched, gate fails, rolled back.
6. check mode with the tutorial's commit: a drift report (commit, units), nothing changed.
7. the same release with services_keep_releases 1: the older and the rejected builds and models are
   pruned, the serving ones are kept, and nothing else changes (no restart, state unchanged). The
   scenario's idempotence step and tests/bench/rerun_walltime.py (which requires changed=0) cover a
   re-run with nothing at all to do.
8. the same commit with one more CMake argument: built beside the serving build (the directory is keyed
   by the build's identity), switched through the gate; the same values again: changed=0.
9. 23 bad settings in 5 runs (the 18 that only read the settings together, each named on its own line):
   each refused before any change, naming the variable (or the port's process, or the missing GPU); the
   host keeps serving.
10. a system prompt with quotes, a newline and unicode reaches the chat app's environment exactly.
11. a change of settings alone (an extra server argument this llama.cpp refuses) fails its gate and is
    rolled back: the units and settings files as they were, the gate passed again.

The broken commits are branches the test sources add on top of master (tests/setup/sources.py); the
model that does not load is the tiny model cut in half (its header whole, so the preflight passes).
The fleet summary comes from the edge_llama_summary callback (its JSON file).
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import appliance
import portable
from test_clients import sdk, target  # noqa: F401  (target is a fixture)

pytestmark = pytest.mark.upgrade

REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("EDGE_LLAMA_CACHE", REPO / ".cache"))
GIT_MIRROR = CACHE / "mirror" / "git" / "llama.cpp.git"
TINY_DIR = CACHE / "mirror" / "hf" / "models" / "edge-llama-test" / "tiny-llama-GGUF"
SMOLLM = yaml.safe_load((REPO / "inventory" / "local" / "group_vars" / "llm_appliances" / "model.yml").read_text())
BUILDS = "/opt/edge-llama/llama.cpp/builds"
MODELS = "/media/m2/models"

CURRENT = {
    "llama_cpp_version": "master",
    "model_repo_id": SMOLLM["model_repo_id"],
    "model_filename": SMOLLM["model_filename"],
    "model_sha256": SMOLLM["model_sha256"],
    "services_openai_chat_template": "chatml",
}


def commit_of(branch):
    return subprocess.run(["git", "--git-dir", str(GIT_MIRROR), "rev-parse", "refs/heads/" + branch],
                          capture_output=True, text=True, check=True).stdout.strip()


def sha256_of(path):
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def play(step, extra, check=False):
    """ansible-playbook site.yml against the scenario's inventory, with extra vars, as a user runs it."""
    return appliance.playbook("upgrade-" + step, extra, check=check)


def build_fact(host):
    return json.loads(host.file("/etc/ansible/facts.d/edge_llama_llama_cpp.fact").content_string)


def build_record(host, build_dir):
    """What the llama_cpp role recorded in a build's own directory (verified, unverified or rejected)."""
    return json.loads(host.file("%s/.edge-llama-build.json" % build_dir).content_string)


def builds_of(host, commit):
    return [d for d in host.check_output("ls %s" % BUILDS).split() if d.startswith(commit[:12] + "-")]


def serving(host):
    """The release record and the server's running binary and model, from the host itself."""
    record = json.loads(host.file("/etc/ansible/facts.d/edge_llama_release.fact").content_string)
    pid = host.check_output("systemctl show -p MainPID --value edge-llama-server.service")
    assert pid != "0", "edge-llama-server is not running:\n%s" % host.run(
        "journalctl -u edge-llama-server -n 30 --no-pager").stdout
    exe = host.check_output("readlink /proc/%s/exe" % pid)
    cmdline = host.file("/proc/%s/cmdline" % pid).content_string.split("\0")
    model = cmdline[cmdline.index("-m") + 1]
    return record, exe, model


def answers(target):  # noqa: F811
    reply = sdk(target, "chat")
    assert reply["status"] == 200 and reply["content"].strip(), reply
    return reply


def report_of(run, name, role):
    return run.host(name)["%s_report" % role] or {}


def assert_failed_with(run, name, *needles):
    assert run.rc != 0, "the run should have failed:\n%s" % run.output[-4000:]
    messages = "\n".join(line for line in run.output.splitlines() if "msg" in line or name in line)
    for needle in needles:
        assert needle in run.output, "%r not in the failure output; messages:\n%s" % (needle, messages[-6000:])


def test_0_the_tutorial_build_runs_on_a_baseline_x86_64_cpu(host):
    """The 2023 Makefile adds -march=native; the role appends -march=x86-64-v3, so the binary runs on
    any x86-64-v3 CPU (qemu's Haswell), not only on the machine that built it (AVX-512 here, maybe)."""
    fact = build_fact(host)
    assert fact["build_system"] == "make" and fact["cpu_build"] == "portable_baseline", fact
    assert build_record(host, fact["build_dir"])["state"] == "verified"
    portable.assert_answers(portable.copy_build(host, fact["server_binary"]), "Haswell-v4")
    # Its cpp-httplib binds with SO_REUSEPORT alone; wait_port.py binds the same way before it starts.
    assert "wait_port.py --options SO_REUSEPORT " in host.check_output("systemctl cat edge-llama-server.service")


def test_1_upgrade_to_current_llama_cpp_and_smollm2(host, target):  # noqa: F811
    before_record, before_exe, _ = serving(host)
    assert before_exe.endswith("/server"), before_exe  # the tutorial's Makefile build
    run = play("1-current", CURRENT)
    assert run.rc == 0, run.output[-6000:]
    name = appliance.name(host)
    report = run.host(name)
    assert report["state"] == "upgraded", report
    assert report["commit"] == commit_of("master")
    assert report["model"] == SMOLLM["model_filename"]
    assert float(report["tokens_per_second"]) > 0, report
    record, exe, model = serving(host)
    (master_build,) = builds_of(host, commit_of("master"))
    assert exe == "%s/%s/build/bin/llama-server" % (BUILDS, master_build), exe
    assert model == "%s/%s" % (MODELS, SMOLLM["model_filename"]), model
    assert [r["commit"] for r in record["releases"]] == [commit_of("master"), commit_of("tutorial")], record
    # The endpoint follows the build: native /v1 now, translated before.
    env = host.file("/etc/edge-llama/openai-api.env").content_string
    assert "EDGE_LLAMA_BACKEND_MODE=native" in env
    (tutorial_build,) = builds_of(host, commit_of("tutorial"))
    assert host.file("%s/%s/server" % (BUILDS, tutorial_build)).exists  # kept to roll back to
    # Proven before the switch: the smoke check computed tokens with the new binary.
    assert report_of(run, name, "llama_cpp")["smoke"]["tokens"] > 0
    assert build_record(host, "%s/%s" % (BUILDS, master_build))["state"] == "verified"
    answers(target)
    # The current server started with --reuse-port and wait_port.py bound the same way: it did not wait out
    # what the 2023 server (SO_REUSEPORT alone) left in TIME_WAIT (tests/unit/test_wait_port.py has the rule).
    pid = host.check_output("systemctl show -p MainPID --value edge-llama-server.service")
    assert "--reuse-port" in host.file("/proc/%s/cmdline" % pid).content_string.split("\0")
    assert "wait_port.py --options SO_REUSEADDR,SO_REUSEPORT " in host.check_output(
        "systemctl cat edge-llama-server.service")
    journal = host.check_output("journalctl -u edge-llama-server.service -o cat --no-pager")
    starts = [m.start() for m in re.finditer(r"^Starting .*llama\.cpp server", journal, re.M)]
    assert starts, journal[-3000:]
    since_switch = journal[starts[-1]:]
    assert "cannot be bound yet" not in since_switch, since_switch[-3000:]


def test_1b_the_current_build_runs_on_a_baseline_x86_64_cpu(host):
    """x86_64, current tree, the default llama_cpp_cpu_target (portable): one x86-64-v3 build
    (GGML_NATIVE=OFF), so the binary copied off the host answers under qemu's Haswell (AVX2, no AVX-512),
    whatever CPU built it. (-march=native on an AVX-512 machine dies there with SIGILL.)"""
    fact = build_fact(host)
    assert fact["build_system"] == "cmake" and fact["cpu_build"] == "portable_baseline", fact
    assert "-DGGML_NATIVE=OFF" in fact["build_command"] and "-DGGML_NATIVE=ON" not in fact["build_command"]
    binary = portable.copy_build(host, fact["server_binary"])
    assert portable.assert_answers(binary, "Haswell-v4") is None  # one build, no CPU-variant modules


def test_2_a_commit_that_does_not_compile_changes_nothing(host, target):  # noqa: F811
    _, exe_before, model_before = serving(host)
    pid_before = host.check_output("systemctl show -p MainPID --value edge-llama-server.service")
    run = play("2-broken-build", dict(CURRENT, llama_cpp_version="broken-build"))
    name = appliance.name(host)
    assert_failed_with(run, name,
                       "%s: llama.cpp broken-build (%s) did not build" % (name, commit_of("broken-build")[:12]),
                       "this tree does not compile", "Nothing was switched",
                       "llama.cpp %s keeps serving" % commit_of("master")[:12])
    assert run.host(name)["state"] == "failed", run.host(name)
    record, exe, model = serving(host)
    assert (exe, model) == (exe_before, model_before)
    assert host.check_output("systemctl show -p MainPID --value edge-llama-server.service") == pid_before, \
        "the server was restarted although nothing was switched"
    assert record["releases"][0]["commit"] == commit_of("master")
    answers(target)


def test_2b_a_build_that_dies_at_its_first_computation_is_rejected_before_any_switch(host, target):  # noqa: F811
    """broken-compute prints --help (the old build check passed it) and dies with SIGILL at its first
    computation, as a binary built for another CPU does. The smoke check runs it on loopback with a
    tiny model before anything switches: rejected, recorded so in its directory, nothing restarted."""
    _, exe_before, model_before = serving(host)
    pid_before = host.check_output("systemctl show -p MainPID --value edge-llama-server.service")
    broken = commit_of("broken-compute")
    run = play("2b-broken-compute", dict(CURRENT, llama_cpp_version="broken-compute"))
    name = appliance.name(host)
    assert_failed_with(run, name,
                       "%s: llama.cpp broken-compute (%s) built but did not compute" % (name, broken[:12]),
                       "was killed by SIGILL", "The build is rejected", "Nothing was switched",
                       "llama.cpp %s keeps serving" % commit_of("master")[:12])
    assert "Traceback" not in run.output
    assert run.host(name)["state"] == "rejected", run.host(name)
    llama = report_of(run, name, "llama_cpp")
    assert llama["state"] == "rejected" and llama["commit"] == broken, llama
    (build,) = builds_of(host, broken)
    record = build_record(host, "%s/%s" % (BUILDS, build))
    assert record["state"] == "rejected" and record["smoke"]["signal"] == "SIGILL", record
    assert record["identity"]["commit"] == broken
    _, exe, model = serving(host)
    assert (exe, model) == (exe_before, model_before)
    assert host.check_output("systemctl show -p MainPID --value edge-llama-server.service") == pid_before, \
        "the server was restarted although nothing was switched"
    answers(target)


def test_3_a_server_that_exits_at_start_is_rolled_back(host, target):  # noqa: F811
    _, exe_before, model_before = serving(host)
    run = play("3-broken-start", dict(CURRENT, llama_cpp_version="broken-start"))
    name = appliance.name(host)
    broken = commit_of("broken-start")
    model = SMOLLM["model_filename"]
    assert_failed_with(run, name,
                       "%s: llama.cpp %s with %s failed its health gate" % (name, broken[:12], model),
                       "edge-llama-server.service", "refusing to read",
                       "Rolled back to llama.cpp %s" % commit_of("master")[:12], "which passed the gate again")
    report = run.host(name)
    assert report["state"] == "rolled_back", report
    assert report["commit"] == commit_of("master"), report
    record, exe, model = serving(host)
    assert (exe, model) == (exe_before, model_before)
    assert record["releases"][0]["commit"] == commit_of("master")
    assert broken in [r["commit"] for r in record["rejected"]], record
    answers(target)


def test_4_a_model_whose_checksum_does_not_match_changes_nothing(host, target):  # noqa: F811
    _, exe_before, model_before = serving(host)
    wrong = "0" * 64
    run = play("4-bad-checksum", dict(CURRENT, model_repo_id="edge-llama-test/tiny-llama-GGUF",
                                      model_filename="tiny-llama-2l.gguf", model_sha256=wrong))
    name = appliance.name(host)
    assert_failed_with(run, name,
                       "%s: the model edge-llama-test/tiny-llama-GGUF/tiny-llama-2l.gguf was not installed" % name,
                       "SHA-256 mismatch", "Nothing was switched", "%s keeps serving" % model_before)
    _, exe, model = serving(host)
    assert (exe, model) == (exe_before, model_before)
    answers(target)


def test_5_a_model_that_does_not_load_is_rolled_back(host, target):  # noqa: F811
    _, exe_before, model_before = serving(host)
    unloadable = TINY_DIR / "tiny-llama-2l-truncated.gguf"
    run = play("5-unloadable-model", dict(CURRENT, model_repo_id="edge-llama-test/tiny-llama-GGUF",
                                          model_filename=unloadable.name, model_sha256=sha256_of(unloadable)))
    name = appliance.name(host)
    assert_failed_with(run, name, "with %s failed its health gate" % unloadable.name,
                       "Rolled back to llama.cpp %s with %s" % (commit_of("master")[:12], SMOLLM["model_filename"]))
    assert run.host(name)["state"] == "rolled_back"
    _, exe, model = serving(host)
    assert (exe, model) == (exe_before, model_before)
    assert host.file("%s/%s" % (MODELS, unloadable.name)).exists  # pruned by the next good release
    answers(target)


def test_6_check_mode_reports_drift_and_changes_nothing(host, target):  # noqa: F811
    _, exe_before, model_before = serving(host)
    run = play("6-drift", dict(CURRENT, llama_cpp_version="tutorial"), check=True)
    name = appliance.name(host)
    assert run.rc == 0, run.output[-6000:]
    assert "drift report" in run.output, run.output[-4000:]
    drift = run.host(name).get("drift", {})
    assert "commit" in drift and "units" in drift, drift
    _, exe, model = serving(host)
    assert (exe, model) == (exe_before, model_before)


# What may change when the release is the serving one: the release record and the removals, the
# llama_cpp and model roles' records of what they last built or fetched (step 5 fetched another model),
# and the record of this complete run (another services_keep_releases: other inputs).
PRUNE_TASKS = {"Record the release that passed its health gate and prune what no kept release uses",
               "Record the model as a local fact", "Record the build as a local fact",
               "Record what this complete run left (a next run with the same inputs has nothing to do here)"}


def changed_tasks(output):
    """Names (without the role) of the tasks that reported changed, from ansible-playbook's output."""
    names, task = set(), None
    for line in output.splitlines():
        found = re.match(r"^TASK \[(?:[^:\]]+ : )?(.*?)\] \*+$", line)
        if found:
            task = found.group(1)
        elif line.startswith("changed: [") and task:
            names.add(task)
    return names


def test_7_older_and_rejected_releases_are_pruned_and_nothing_else_changes(host, target):  # noqa: F811
    pid_before = host.check_output("systemctl show -p MainPID --value edge-llama-server.service")
    run = play("7-prune", dict(CURRENT, services_keep_releases=1))
    name = appliance.name(host)
    assert run.rc == 0, run.output[-6000:]
    assert run.host(name)["state"] == "unchanged", run.host(name)
    # The same release as before: only the record and the removals change, nothing restarts.
    assert changed_tasks(run.output) <= PRUNE_TASKS, changed_tasks(run.output)
    assert run.recap(name)["failed"] == 0
    assert host.check_output("systemctl show -p MainPID --value edge-llama-server.service") == pid_before
    builds = host.check_output("ls %s" % BUILDS).split()
    assert builds == builds_of(host, commit_of("master")) and len(builds) == 1, builds
    models = host.check_output("ls %s" % MODELS).split()
    assert models == [SMOLLM["model_filename"]], models
    worktrees = host.check_output("git -C /opt/edge-llama/llama.cpp/src worktree list --porcelain")
    for gone in ("tutorial", "broken-start", "broken-compute"):
        assert commit_of(gone) not in worktrees, (gone, worktrees)
    record, _, _ = serving(host)
    assert [r["commit"] for r in record["releases"]] == [commit_of("master")] and record["rejected"] == [], record
    answers(target)
    print("re-run with the same release (pruning only), 1 host: %.1f s" % run.seconds)


def test_8_changing_only_the_cmake_arguments_builds_beside_and_switches_through_the_gate(host, target):  # noqa: F811
    """The build directory is keyed by the build's identity, not by the commit alone: the same commit
    with another CMake argument is another build, made beside the serving one, proven, switched to
    through the health gate; the same values again change nothing."""
    _, exe_before, _ = serving(host)
    (before,) = builds_of(host, commit_of("master"))
    extra = dict(CURRENT, services_keep_releases=2, llama_cpp_cmake_extra_args=["-DLLAMA_BUILD_COMMON=ON"])
    run = play("8-cmake-args", extra)
    name = appliance.name(host)
    assert run.rc == 0, run.output[-6000:]
    assert run.host(name)["state"] == "upgraded", run.host(name)
    assert report_of(run, name, "llama_cpp")["state"] == "built"
    builds = builds_of(host, commit_of("master"))
    assert len(builds) == 2 and before in builds, builds
    (after,) = [b for b in builds if b != before]
    _, exe, _ = serving(host)
    assert exe == "%s/%s/build/bin/llama-server" % (BUILDS, after) and exe != exe_before, exe
    record = build_record(host, "%s/%s" % (BUILDS, after))
    assert record["state"] == "verified" and "-DLLAMA_BUILD_COMMON=ON" in record["identity"]["args"], record
    answers(target)
    again = play("8-cmake-args-again", extra)
    assert again.rc == 0, again.output[-6000:]
    assert again.recap(name)["changed"] == 0, changed_tasks(again.output)
    assert again.host(name)["state"] == "unchanged"


# What test 8 left serving: the same values again are a re-run with nothing to change.
SERVING = dict(CURRENT, services_keep_releases=2, llama_cpp_cmake_extra_args=["-DLLAMA_BUILD_COMMON=ON"])
FOREIGN_PORT = 18099

# (case, extra vars, what the failure must say). Each is refused before any change, naming the variable
# (or the port, process or device); the host keeps serving. The values are given as a user types them.
# The check names every problem of a run at once, so the cases that read only the settings share a run
# (one line each in the same failure); those that need the host (a port another process holds, a GPU
# that is not there) or that would hide each other (two port clashes, two values of one variable) run
# alone. The rules one by one: tests/unit/test_edge_llama_inputs.py.
BAD_INPUTS = [
    ("settings", [
        ("port-not-a-number", {"services_openai_port": "abc"}, ["services_openai_port = 'abc': not a whole number"]),
        ("port-out-of-range", {"services_llama_port": 70000},
         ["services_llama_port = 70000: out of range (1 to 65535)"]),
        ("ctx-size-zero", {"services_llama_ctx_size": 0},
         ["services_llama_ctx_size = 0: out of range (64 to 1048576)"]),
        ("keep-releases-zero", {"services_keep_releases": "0"},
         ["services_keep_releases = '0': out of range (1 to 100)"]),
        ("max-tokens-zero", {"services_chat_max_tokens": 0}, ["services_chat_max_tokens = 0: out of range"]),
        ("temperature-not-a-number", {"services_chat_temperature": "hot"}, ["services_chat_temperature = 'hot'"]),
        ("negative-gpu-layers", {"services_llama_n_gpu_layers": -1}, ["services_llama_n_gpu_layers = -1"]),
        ("ready-timeout-zero", {"services_ready_timeout": 0}, ["services_ready_timeout = 0"]),
        ("smoke-timeout-not-a-number", {"llama_cpp_smoke_timeout": "soon"}, ["llama_cpp_smoke_timeout = 'soon'"]),
        ("lan-switch-not-a-boolean", {"services_expose_on_lan": "maybe"},
         ["services_expose_on_lan = 'maybe': not a boolean (true or false)"]),
        ("lan-address-not-an-address", {"services_lan_address": "my lan"}, ["services_lan_address = 'my lan'"]),
        ("model-file-is-a-path", {"model_filename": "../../etc/passwd"},
         ["model_filename = '../../etc/passwd': a file name, not a path"]),
        ("repo-id-with-spaces", {"model_repo_id": "the bloke/llama 2"}, ["model_repo_id = 'the bloke/llama 2'"]),
        ("sha256-not-hex", {"model_sha256": "xyz"}, ["model_sha256 = 'xyz': not 64 hex digits"]),
        ("commit-not-a-ref", {"llama_cpp_version": "master..HEAD"}, ["llama_cpp_version = 'master..HEAD'"]),
        ("repo-url-bad-scheme", {"llama_cpp_repo_url": "ftp://mirror/llama.cpp"},
         ["llama_cpp_repo_url = 'ftp://mirror"]),
        ("hub-endpoint-no-scheme", {"model_hf_endpoint": "huggingface.co"}, ["model_hf_endpoint = 'huggingface.co'"]),
        ("cpu-target-unknown", {"llama_cpp_cpu_target": "fast"}, ["llama_cpp_cpu_target = 'fast': not one of"]),
    ]),
    ("two-services-one-port", [
        ("two-services-one-port", {"services_chat_port": 8080},
         ["services_llama_port and services_chat_port = 8080: both 8080"]),
        ("model-file-dot-dot", {"model_filename": ".."}, ["model_filename = '..'"]),
    ]),
    ("endpoint-on-the-chat-port", [
        ("endpoint-on-the-chat-port", {"services_openai_port": "7860"},
         ["services_openai_port and services_chat_port", "both 7860"]),
    ]),
    ("port-held-by-another-process", [
        ("port-held-by-another-process", {"services_openai_port": FOREIGN_PORT},
         ["services_openai_port: port %d is held by pid" % FOREIGN_PORT, "http.server", "Nothing was changed"]),
    ]),
    ("cuda-without-a-gpu", [
        ("cuda-without-a-gpu", {"llama_cpp_backend": "cuda"},
         ["llama_cpp_backend is cuda but this host has no NVIDIA GPU", "Nothing was installed"]),
    ]),
]


@pytest.fixture
def foreign_listener(host):
    """A process that is not edge-llama's, listening on FOREIGN_PORT inside the host."""
    host.run("setsid python3 -m http.server %d --bind 127.0.0.1 >/dev/null 2>&1 < /dev/null &" % FOREIGN_PORT)
    for _ in range(50):
        if host.socket("tcp://127.0.0.1:%d" % FOREIGN_PORT).is_listening:
            break
        time.sleep(0.1)
    yield
    host.run("pkill -f 'http.server %d'" % FOREIGN_PORT)


@pytest.mark.parametrize("group,cases", BAD_INPUTS, ids=[g[0] for g in BAD_INPUTS])
def test_9_a_bad_setting_is_refused_before_any_change(host, target, request, group, cases):  # noqa: F811
    if group == "port-held-by-another-process":
        request.getfixturevalue("foreign_listener")
    extra = {}
    for _, values, _ in cases:
        assert not set(values) & set(extra), "two values of one variable in a run: %s" % group
        extra.update(values)
    pid_before = host.check_output("systemctl show -p MainPID --value edge-llama-server.service")
    run = play("9-bad-" + group, dict(SERVING, **extra))
    name = appliance.name(host)
    assert run.rc != 0, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-3000:]
    assert run.recap(name)["changed"] == 0, run.output[-3000:]
    missing = ["%s: %r" % (case, needle) for case, _, needles in cases for needle in needles
               if needle not in run.output]
    assert not missing, "not in the failure output: %s\n%s" % (missing, run.output[-6000:])
    assert host.check_output("systemctl show -p MainPID --value edge-llama-server.service") == pid_before
    if group == "cuda-without-a-gpu":
        assert host.run("dpkg -l | grep -i -E 'nvidia|cuda'").stdout.strip() == ""  # nothing installed
    answers(target)


def test_10_a_system_prompt_with_quotes_newlines_and_unicode_reaches_the_chat_app_exactly(host, target):  # noqa: F811
    """systemd's EnvironmentFile decodes neither JSON nor \\uXXXX escapes: the prompt is quoted the way
    systemd reads it, and the chat app's process environment holds exactly what the inventory says.
    The same run gives booleans and numbers as strings, as `-e key=value` does."""
    prompt = ('Say "bonjour" \u2014 r\u00e9ponds en fran\u00e7ais.\n'
              "Second line: $HOME `date` \\ back\\slash; # not a comment")
    # Booleans and numbers as `-e` gives them: strings. "false" must not read as true.
    as_typed = {"services_expose_on_lan": "false", "services_private_users": "true", "services_keep_releases": "2"}
    run = play("10-prompt", dict(SERVING, services_chat_system_prompt=prompt, **as_typed))
    assert run.rc == 0, run.output[-4000:]
    assert "EDGE_LLAMA_API_HOST=127.0.0.1" in host.file("/etc/edge-llama/openai-api.env").content_string
    pid = host.check_output("systemctl show -p MainPID --value edge-llama-chat.service")
    environ = host.file("/proc/%s/environ" % pid).content.split(b"\0")
    (value,) = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"EDGE_LLAMA_SYSTEM_PROMPT=")]
    assert value.decode("utf-8") == prompt
    answers(target)


def test_11_a_change_of_settings_alone_that_fails_its_gate_is_rolled_back(host, target):  # noqa: F811
    """Not a new build or model: only an extra server argument, which this llama.cpp refuses. The switch
    is gated like a release; the gate fails; every unit and settings file the run replaced is put back
    as it was, and the previous settings pass the gate again. Nothing is recorded as rejected."""
    record_before, exe_before, model_before = serving(host)
    run = play("11-bad-server-argument", dict(SERVING, services_llama_extra_args=["--no-such-flag"]))
    name = appliance.name(host)
    assert_failed_with(run, name, "%s: the new settings failed its health gate" % name,
                       "edge-llama-server.service", "Rolled back to llama.cpp %s" % commit_of("master")[:12],
                       "restored", "edge-llama-server.service", "which passed the gate again")
    report = run.host(name)
    assert report["state"] == "rolled_back", report
    assert "/etc/systemd/system/edge-llama-server.service" in report["services_report"]["restored"], report
    record, exe, model = serving(host)
    assert (exe, model) == (exe_before, model_before)
    assert record["rejected"] == record_before["rejected"], record  # no build or model was rejected
    pid = host.check_output("systemctl show -p MainPID --value edge-llama-server.service")
    assert "--no-such-flag" not in host.file("/proc/%s/cmdline" % pid).content_string
    assert "--no-such-flag" not in host.file("/etc/systemd/system/edge-llama-server.service").content_string
    # The backups were put back and removed: nothing is left beside the files.
    leftovers = host.run("ls /etc/systemd/system/edge-llama-*~ /etc/edge-llama/*~ 2>/dev/null").stdout.strip()
    assert leftovers == "", leftovers
    answers(target)
