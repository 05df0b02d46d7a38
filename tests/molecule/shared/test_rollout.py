"""The fleet scenario's four hosts, checked last because they change what serves: one compile for the
fleet, a rolling change of settings through site.yml in serial batches with one host made to fail its
health gate (a host var that breaks only it), edge_llama_max_fail_percentage deciding whether the
batches after it go on, and a host that is down while the others are provisioned.

Each site.yml run goes over SSH to the hosts' own addresses, as a site's would; the checks read each
host through podman exec (testinfra). Logs and summaries: tests/artifacts/fleet-*.{log,json}.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

import appliance

sys.path.insert(0, str(appliance.REPO / "tests" / "bench"))
import rolling_upgrade_load  # noqa: E402

pytestmark = pytest.mark.fleet


HOSTS = appliance.fleet()
A, B, C, D = (HOSTS + [""] * 4)[:4]


@pytest.fixture(autouse=True)
def _four_hosts():
    assert len(HOSTS) == 4, "the fleet checks need the fleet scenario's four hosts, found %s" % HOSTS


# The host made to fail its gate: the extra server argument below, which llama.cpp refuses at start.
# orin-b: the gateway on orin-a balances it, so its rollback goes back into the gateway's rotation.
FAILING = B
BUILD_FACT = "/etc/ansible/facts.d/edge_llama_llama_cpp.fact"
RELEASE_FACT = "/etc/ansible/facts.d/edge_llama_release.fact"


machine = appliance.machine


def build_of(name):
    """(the build fact, the build's own record, the host) of a host."""
    host = machine(name)
    fact = json.loads(host.file(BUILD_FACT).content_string)
    record = json.loads(host.file(fact["build_dir"] + "/.edge-llama-build.json").content_string)
    return fact, record, host


def server(name):
    """The running llama.cpp server of a host: (its binary, its argv)."""
    host = machine(name)
    pid = host.check_output("systemctl show -p MainPID --value edge-llama-server.service")
    assert pid not in ("", "0"), "%s: edge-llama-server is not running:\n%s" % (
        name, host.run("journalctl -u edge-llama-server -n 20 --no-pager").stdout)
    argv = host.file("/proc/%s/cmdline" % pid).content_string.split("\0")
    return host.check_output("readlink /proc/%s/exe" % pid), argv


def ctx_size(name):
    argv = server(name)[1]
    flag = "-c" if "-c" in argv else "--ctx-size"
    return int(argv[argv.index(flag) + 1])


def started_at(name):
    """When the server's process started (the kernel's monotonic clock, shared by every container)."""
    return int(machine(name).check_output(
        "systemctl show -p ExecMainStartTimestampMonotonic --value edge-llama-server.service"))


def completes(name):
    """A few tokens from the host's llama.cpp server on its own loopback."""
    code = ("import json,urllib.request;r=urllib.request.urlopen(urllib.request.Request("
            "'http://127.0.0.1:8080/completion',data=json.dumps({'prompt':'Paris is','n_predict':4}).encode(),"
            "headers={'Content-Type':'application/json'}),timeout=60);print(json.load(r)['content'])")
    result = machine(name).run("python3 -c \"%s\"" % code)
    assert result.rc == 0 and result.stdout.strip(), "%s: no completion: %s" % (name, result.stderr[-2000:])


def one_host_breaks(tmp_name):
    """An extra inventory that gives only FAILING an extra server argument llama.cpp refuses."""
    appliance.ARTIFACTS.mkdir(exist_ok=True)
    path = appliance.ARTIFACTS / tmp_name
    path.write_text(yaml.safe_dump({"all": {"hosts": {FAILING: {"services_llama_extra_args": ["--no-such-flag"]}}}}))
    return path


def test_1_four_hosts_one_compile():
    """The four hosts have the same build key: the first compiled and proved it, the other three received
    that build (SHA-256 checked on arrival), proved it with their own smoke check, and compiled nothing."""
    builds = {name: build_of(name) for name in HOSTS}
    assert len({fact["build_dir"] for fact, _, _ in builds.values()}) == 1, builds
    compiled_here = [name for name, (_, record, _) in builds.items() if record.get("compiled_on") == name]
    assert compiled_here == [HOSTS[0]], {n: r.get("compiled_on") for n, (_, r, _) in builds.items()}
    fact, record, builder = builds[HOSTS[0]]
    build_dir = fact["build_dir"]
    pack = builder.file(build_dir + "/.edge-llama-build.tar").sha256sum
    assert builder.file(build_dir + "/build/CMakeCache.txt").exists
    binaries = set()
    for name in HOSTS:
        fact, record, host = builds[name]
        assert record["state"] == "verified" and record["smoke"]["tokens"] > 0, (name, record)
        binaries.add(host.file(fact["server_binary"]).sha256sum)
        assert server(name)[0] == fact["server_binary"], name
        if name == HOSTS[0]:
            continue
        assert record["compiled_on"] == HOSTS[0] and record["pack_sha256"] == pack, (name, record)
        # No compiler ran here: CMake never configured this directory, no object file was written.
        assert not host.file(build_dir + "/build/CMakeCache.txt").exists, name
        assert host.run("find %s -name '*.o' | head -1" % build_dir).stdout.strip() == "", name
    assert len(binaries) == 1, binaries


def play_hosts(output, play):
    """The hosts that ran the first task of a play (its banner's name), or [] if no host matched it."""
    at = output.index("PLAY [%s]" % play)
    section = output[at:output.index("PLAY [", at + 1)]
    if "skipping: no hosts matched" in section:
        return []
    first = section.split("TASK [", 2)[1]
    return sorted(set(re.findall(r"^(?:ok|changed|skipping|failed|fatal): \[([^\]]+)\]", first, re.M)))


def test_1b_a_rerun_with_nothing_to_do_ends_at_the_first_checks_and_a_hand_edit_brings_a_host_back():
    """site.yml again with the converge's inputs: each host's last complete run left it as this run would,
    so each passes its health gate in the first checks and leaves the run (no role runs on it, nothing
    restarts). Then a unit file edited by hand on orin-b: check mode reports it for b alone, and the next
    run takes b (only) through every role, which puts the file back through the gate."""
    release = json.loads(machine(A).file(RELEASE_FACT).content_string)["releases"][0]
    before = {name: started_at(name) for name in HOSTS}
    run = appliance.playbook("fleet-1b-nothing-to-do", {})
    assert run.rc == 0, run.output[-3000:]
    for name in HOSTS:
        row = run.host(name)
        assert row["state"] == "unchanged" and row["commit"] == release["commit"], (name, row)
        assert row["tokens_per_second"] and row["tokens_per_second"] > 0, (name, row)
        assert run.recap(name)["changed"] == 0, (name, run.recap(name))
        assert started_at(name) == before[name], name
    for play in ("Install the build toolchain (build-essential, cmake >= 3.17, git, ccache, python3-venv)",
                 "Build llama.cpp at the pinned commit",
                 "Plan the switch on every host (which hosts have a new release or new settings)"):
        assert play_hosts(run.output, play) == [], play

    unit = "/etc/systemd/system/edge-llama-chat.service"
    assert machine(B).run("echo '# edited by hand' >> %s" % unit).rc == 0
    check = appliance.playbook("fleet-1b-drift", {}, check=True)
    assert check.rc == 0, check.output[-3000:]
    assert "units" in check.host(B)["drift"], check.host(B)
    for name in (A, C, D):
        assert check.host(name)["drift"] == {} and check.host(name)["state"] == "unchanged", (name, check.host(name))
    assert play_hosts(check.output, "Build llama.cpp at the pinned commit") == [B]
    assert "# edited by hand" in machine(B).file(unit).content_string  # check mode changed nothing

    repair = appliance.playbook("fleet-1b-repair", {})
    assert repair.rc == 0, repair.output[-3000:]
    assert repair.host(B)["state"] == "reconfigured", repair.host(B)
    assert "# edited by hand" not in machine(B).file(unit).content_string
    for name in (A, C, D):
        assert repair.host(name)["state"] == "unchanged" and repair.recap(name)["changed"] == 0, name
    completes(B)


def loads():
    """Streaming chats through the gateway on orin-a (https, the site CA) and, for contrast, straight at
    orin-b's own endpoint (tests/bench/rolling_upgrade_load.py's Load): two clients each."""
    key = appliance.host_vars_of(B)["services_openai_api_key"]
    gateway = "https://%s/v1" % appliance.host_vars_of(A)["ansible_host"]
    direct = "http://%s:8081/v1" % appliance.host_vars_of(B)["ansible_host"]
    return [rolling_upgrade_load.Load("gateway", gateway, key, streams=2, max_tokens=16,
                                      ca=appliance.ARTIFACTS / "gateway-ca.crt"),
            rolling_upgrade_load.Load("direct", direct, key, streams=2, max_tokens=16)]


def test_2_a_rolling_change_goes_on_past_a_failed_host_within_max_fail_percentage():
    """serial [1, 3]: orin-a alone first (the canary), then b, c and d. b fails its gate and rolls back;
    one failed host of three is 33 %, within edge_llama_max_fail_percentage 50: c and d change too.
    Meanwhile clients stream chats through the gateway on orin-a, which takes a, then b, out of its
    rotation for their switch (drain, then back after the gate, b with the release it served before):
    none of them fails or is cut short."""
    before = {name: started_at(name) for name in HOSTS}
    release_before = json.loads(machine(FAILING).file(RELEASE_FACT).content_string)
    running = [load.start() for load in loads()]
    time.sleep(10)
    since = time.time()
    bases = {load.label: rolling_upgrade_load.baseline_median(load.records, since) for load in running}
    run = appliance.playbook("fleet-2-rolling", {"services_llama_ctx_size": 2048, "edge_llama_serial": [1, 3],
                                                 "edge_llama_max_fail_percentage": 50},
                             inventories=[one_host_breaks("fleet-2-failing-host.yml")])
    time.sleep(5)
    load = {load.label: rolling_upgrade_load.figures(load.stop(), since, bases[load.label]) for load in running}
    for label, figures in load.items():
        print(rolling_upgrade_load.render(label, figures))
    (appliance.ARTIFACTS / "fleet-2-load.json").write_text(json.dumps(load, indent=1))
    assert run.rc != 0, run.output[-3000:]
    # Through the gateway, nothing failed and nothing was cut while a, then b, restarted.
    assert bases["gateway"] is not None and load["gateway"]["sent"] >= 4, load
    assert load["gateway"]["failed"] == 0 and load["gateway"]["cut"] == 0, load
    # a after its gate, b (FAILING) after its rollback's: both back in the gateway's rotation.
    for name in (A, B):
        rotation = run.summary["hosts"][name]["services_report"]["rotation"]
        assert rotation["state"] == "in" and rotation["gateways"] == [A] and rotation["cut"] == 0, (name, rotation)
        assert "out of rotation" not in run.summary["hosts"][name]["note"], run.summary["hosts"][name]
    # c and d are not balanced (loopback only): no gateway took them out.
    for name in (C, D):
        assert run.summary["hosts"][name]["services_report"].get("rotation", {}).get("gateways", []) == [], name
    rows = run.summary["hosts"]
    assert not run.summary["aborted"], run.summary
    serving = release_before["releases"][0]["commit"]
    for name in HOSTS:
        row = rows[name]
        assert row["commit"] == serving and row["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf", (name, row)
        if name == FAILING:
            # The reason names the cause: the server refused the argument (its journal, in the gate's message).
            assert row["state"] == "rolled_back" and "invalid argument: --no-such-flag" in row["reason"], row
            continue
        assert row["state"] == "reconfigured", (name, row)
        assert row["tokens_per_second"] and row["tokens_per_second"] > 0, (name, row)
        assert ctx_size(name) == 2048, name
        assert started_at(name) > before[name], name
    # The canary's new server started before any host of the next batch was touched.
    assert started_at(HOSTS[0]) < min(started_at(n) for n in (B, C, D) if n != FAILING)
    # The failed host serves what it served, with its old settings, and answers.
    assert ctx_size(FAILING) == 4096
    assert "--no-such-flag" not in server(FAILING)[1]
    completes(FAILING)
    # The summary printed a row per host with the state and the reason.
    assert "%s" % FAILING in run.output and "rolled_back" in run.output


def test_3_a_failed_host_stops_the_rollout_when_no_failure_is_allowed():
    """The default batches (1, then 25 %: one host each) and edge_llama_max_fail_percentage 0: b fails its
    gate and rolls back, and c and d, whose batches come after, are not touched."""
    after = [name for name in HOSTS[HOSTS.index(FAILING) + 1:]]
    untouched = {name: started_at(name) for name in after}
    run = appliance.playbook("fleet-3-stop", {"services_llama_ctx_size": 3072, "edge_llama_max_fail_percentage": 0},
                             inventories=[one_host_breaks("fleet-3-failing-host.yml")])
    assert run.rc != 0, run.output[-3000:]
    rows = run.summary["hosts"]
    assert run.summary["aborted"], run.summary
    assert rows[FAILING]["state"] == "rolled_back", rows[FAILING]
    for name in HOSTS[:HOSTS.index(FAILING)]:
        assert rows[name]["state"] not in ("failed", "rolled_back"), (name, rows[name])
        assert ctx_size(name) == 3072, name
    assert after, HOSTS
    for name in after:
        assert "not finished" in rows[name]["reason"], rows[name]
        assert ctx_size(name) == 2048 and started_at(name) == untouched[name], name
        completes(name)
    assert ctx_size(FAILING) == 4096
    completes(FAILING)


def test_4_a_host_that_is_down_is_left_out_and_named():
    """orin-d stopped (its machine off): site.yml provisions the three others (b, its breaking argument
    gone, takes the new settings now) and the summary says d is unreachable."""
    subprocess.run(["podman", "stop", "-t", "2", D], check=True, capture_output=True, timeout=120)
    run = appliance.playbook("fleet-4-unreachable", {"services_llama_ctx_size": 3072, "edge_llama_connect_timeout": 10})
    assert run.rc != 0, run.output[-3000:]
    rows = run.summary["hosts"]
    assert rows[D]["state"] == "unreachable", rows[D]
    for name in (A, B, C):
        assert rows[name]["state"] not in ("failed", "rolled_back", "unreachable"), (name, rows[name])
        assert ctx_size(name) == 3072, name
    completes(FAILING)
    # The first play's wait for it timed out (PLAY RECAP: failed=1 there); nothing else ran on it. The
    # reason is ssh's own words, which differ with how the network answers a stopped host (refused,
    # timed out, no route; Ansible's own words around them differ too), so assert the part they share:
    # ssh could not connect to that host's address.
    address = yaml.safe_load(open(os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "host_vars", D + ".yml")))
    assert "ssh: connect to host %s port 22: " % address["ansible_host"] in rows[D]["reason"], rows[D]
