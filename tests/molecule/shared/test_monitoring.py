"""The fleet scenario's site Prometheus (playbooks/monitoring.yml on orin-a) and fleet report
(playbooks/fleet_report.yml), checked before test_rollout.py changes what serves.

orin-a's Prometheus scrapes orin-a on loopback and orin-b on the LAN with orin-b's API key, through each
endpoint's /metrics, /metrics/llama and /metrics/node; orin-c and orin-d keep their endpoints on loopback,
so no other host can scrape them (the role names them). Its alert rules are Debian's promtool-checked at
deploy and unit-tested here with promtool test rules; one alert is made to fire for real by stopping
orin-b's endpoint. Logs: tests/artifacts/fleet-report.{log,json}, tests/artifacts/fleet-report-*.md.
"""

import json
import os
import re
import time

import pytest

import appliance

pytestmark = pytest.mark.fleet

HERE = os.path.dirname(os.path.abspath(__file__))


HOSTS = appliance.fleet()
RELEASE_FACT = "/etc/ansible/facts.d/edge_llama_release.fact"
A, B, C, D = (HOSTS + [""] * 4)[:4]


def prometheus(path):
    """Prometheus' HTTP API on orin-a (loopback there), as JSON."""
    out = appliance.machine(A).check_output("curl -sS --max-time 20 'http://127.0.0.1:9090%s'", path)
    reply = json.loads(out)
    assert reply["status"] == "success", reply
    return reply["data"]


def targets():
    """{(job, appliance or gateway): target} of Prometheus' active targets."""
    return {(t["labels"]["job"], t["labels"].get("appliance") or t["labels"].get("gateway")): t
            for t in prometheus("/api/v1/targets")["activeTargets"]}


def test_prometheus_scrapes_the_appliances_it_can_reach_with_their_keys():
    assert len(HOSTS) == 4, HOSTS
    host = appliance.machine(A)
    assert host.service("prometheus").is_running and host.service("prometheus").is_enabled
    assert host.socket("tcp://127.0.0.1:9090").is_listening
    assert not host.socket("tcp://0.0.0.0:9090").is_listening
    # orin-b's key is in a file only Prometheus' group reads, never in prometheus.yml.
    key = appliance.host_vars_of(B).get("services_openai_api_key")
    assert key and key not in host.file("/etc/prometheus/prometheus.yml").content_string
    key_file = host.file("/etc/prometheus/edge-llama/%s.key" % B)
    assert key_file.mode == 0o640 and key_file.group == "prometheus"

    def all_up():
        try:
            found = targets()
        except (AssertionError, ValueError):  # Prometheus busy or reloading: ask again
            return None
        up = {k: t["health"] for k, t in found.items() if k[0] in ("edge_llama_openai", "edge_llama_node")}
        return found if up and all(h == "up" for h in up.values()) and len(up) == 4 else None

    # Right after test_gateway stopped and restarted orin-b's endpoint, on two busy cores: up to 2 minutes.
    found = appliance.wait_for("the endpoint and node jobs of orin-a and orin-b up", all_up, 120, every=3)
    assert {name for job, name in found if job != "edge_llama_gateway"} == {A, B}  # c and d: loopback only
    address = appliance.host_vars_of(B)["ansible_host"]
    assert found[("edge_llama_openai", B)]["scrapeUrl"].startswith("http://%s:" % address)
    # The release info of both, as Prometheus stored it: what the dashboard shows.
    result = prometheus("/api/v1/query?query=edge_llama_release_info%7Bstate%3D%22serving%22%7D")["result"]
    serving = {r["metric"]["appliance"]: r["metric"]["commit"] for r in result}
    for name in (A, B):
        release = json.loads(appliance.machine(name).file(RELEASE_FACT).content_string)
        assert serving.get(name) == release["releases"][0]["commit"][:12], (name, serving)


def test_prometheus_scrapes_the_gateways_own_exporter():
    """HAProxy's Prometheus exporter on orin-a (gateway_metrics_port, loopback): the job edge_llama_gateway
    is up and both balanced appliances are UP in be_openai, as the gateway sees them; c and d are not
    there (loopback only). The exporter is not on the LAN."""
    host = appliance.machine(A)
    assert host.socket("tcp://127.0.0.1:8405").is_listening and not host.socket("tcp://0.0.0.0:8405").is_listening

    def up():
        try:
            found = targets().get(("edge_llama_gateway", A))
            result = prometheus("/api/v1/query?query=haproxy_server_status%7Bjob%3D%22edge_llama_gateway%22%2C"
                                "proxy%3D%22be_openai%22%2Cstate%3D%22UP%22%7D")["result"]
        except (AssertionError, ValueError):
            return None
        servers = {r["metric"]["server"]: r["value"][1] for r in result}
        return servers if found and found["health"] == "up" and servers.get(A) == "1" and servers.get(B) == "1" \
            else None

    servers = appliance.wait_for("the gateway's exporter scraped, orin-a and orin-b UP", up, 120, every=3)
    assert set(servers) == {A, B}, servers


def test_the_alert_rules_pass_their_promtool_unit_tests():
    """tests/molecule/shared/files/edge-llama-rules.test.yml against the rules the role deployed (this
    scenario keeps the rule thresholds at their defaults), with the host's promtool."""
    host = appliance.machine(A)
    with open(os.path.join(HERE, "files", "edge-llama-rules.test.yml")) as handle:
        tests = handle.read()
    host.check_output("install -d -m 0755 /tmp/edge-llama-rules-test && cp /etc/prometheus/edge-llama.rules.yml "
                      "/tmp/edge-llama-rules-test/")
    host.check_output("cat > /tmp/edge-llama-rules-test/edge-llama-rules.test.yml <<'EOF'\n%s\nEOF" % tests)
    checked = host.run("promtool check rules /etc/prometheus/edge-llama.rules.yml")
    assert checked.rc == 0 and "SUCCESS: 6 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = host.run("cd /tmp/edge-llama-rules-test && promtool test rules edge-llama-rules.test.yml")
    assert tested.rc == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_an_appliance_that_stops_answering_fires_its_alert():
    """orin-b's endpoint stopped: EdgeLlamaApplianceDown fires for orin-b (after the rule's 1m), and for
    no other appliance; started again, the target is up again."""
    started = time.monotonic()
    appliance.machine(B).check_output("systemctl stop edge-llama-openai.service")
    try:
        def firing():
            alerts = prometheus("/api/v1/alerts")["alerts"]
            return [a for a in alerts
                    if a["labels"]["alertname"] == "EdgeLlamaApplianceDown" and a["state"] == "firing"]

        alerts = appliance.wait_for("EdgeLlamaApplianceDown firing for orin-b", firing, 150, every=5)
        took = time.monotonic() - started
        print("EdgeLlamaApplianceDown fired %.0f s after orin-b's endpoint stopped: %s" % (took, alerts))
        assert [a["labels"]["appliance"] for a in alerts] == [B]
        assert alerts[0]["labels"]["severity"] == "critical"
        assert B in alerts[0]["annotations"]["summary"]
        assert took >= 60  # monitoring_down_for: not before the rule's own `for`
    finally:
        appliance.machine(B).check_output("systemctl start edge-llama-openai.service")
    appliance.wait_for("orin-b's endpoint target up again",
             lambda: targets()[("edge_llama_openai", B)]["health"] == "up", 60)


def test_the_fleet_report_measures_every_host_and_says_no_ceiling_is_known_for_a_cpu():
    run = appliance.playbook("fleet-report", {"edge_llama_report_dir": str(appliance.ARTIFACTS),
                                              "edge_llama_report_repeat": 1, "edge_llama_report_n_predict": 32},
                             playbooks=("playbooks/fleet_report.yml",))
    assert run.rc == 0, run.output[-4000:]
    reports = sorted(appliance.ARTIFACTS.glob("fleet-report-*.json"))
    assert reports, "no fleet-report-*.json in %s" % appliance.ARTIFACTS
    rows = {row["host"]: row for row in json.loads(reports[-1].read_text())["hosts"]}
    assert sorted(rows) == HOSTS
    for name, row in rows.items():
        release = json.loads(appliance.machine(name).file(RELEASE_FACT).content_string)
        assert row["state"] == "measured" and row["prompt_tps"] > 0 and row["generation_tps"] > 0, row
        assert row["ceiling"] is None and row["ratio"] is None, row
        assert "no ceiling known: CPU only" in row["note"], row
        assert release["releases"][0]["commit"].startswith(row["commit"]), (row, release["releases"][0]["commit"])
    table = re.search(r"host\s+GPU\s+commit.*?(?=\n\S*\n|\Z)", run.output, re.S)
    print(table.group(0) if table else run.output[-3000:])
