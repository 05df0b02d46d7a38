"""The site Hugging Face mirror (playbooks/hf_mirror.yml) on the fleet scenario's edge-llama-orin-a:
olah in front of the controller's test olah, and the host's model fetched through it."""

import json

import pytest

pytestmark = pytest.mark.hf_mirror

MIRROR_HOSTS = ("edge-llama-orin-a",)
UNIT = "edge-llama-hf-mirror"
CACHE = "/media/m2/hf-mirror"


@pytest.fixture(autouse=True)
def only_on_the_mirror_host(host):
    if host.backend.get_hostname() not in MIRROR_HOSTS:
        pytest.skip("not a mirror host")


def test_mirror_active_enabled_and_listening_on_the_lan(host):
    service = host.service(UNIT)
    assert service.is_running
    assert service.is_enabled
    assert host.socket("tcp://0.0.0.0:8090").is_listening


def test_mirror_is_hardened_and_unprivileged(host):
    props = host.run("systemctl show -p User -p MainPID -p NoNewPrivileges -p ProtectSystem -p ProtectHome "
                     "-p PrivateTmp -p ReadWritePaths %s", UNIT).stdout
    values = dict(line.split("=", 1) for line in props.strip().splitlines())
    assert values["User"] == UNIT
    assert values["NoNewPrivileges"] == "yes"
    assert values["ProtectSystem"] == "strict"
    assert values["ProtectHome"] == "yes"
    assert values["PrivateTmp"] == "yes"
    assert values["ReadWritePaths"].split() == [CACHE]
    assert host.run("ps -o user= -p %s", values["MainPID"]).stdout.strip() == UNIT
    assert host.user(UNIT).uid != 0
    # In the unit's own mount namespace, the system is read-only and the cache is writable.
    for path, mode in (("/etc", "ro"), ("/opt/edge-llama/venvs/hf-mirror", "ro"), ("/usr", "ro"), (CACHE, "rw")):
        options = host.run("nsenter -t %s -m findmnt -n -o OPTIONS -T %s", values["MainPID"], path).stdout
        assert options.split(",")[0] == mode, "%s is %s for %s" % (path, options, UNIT)


def test_model_was_served_through_the_mirror(host):
    model = json.loads(host.file("/etc/ansible/facts.d/edge_llama_model.fact").content_string)
    blocks = "%s/files/models/%s/resolve/%s/%s/blocks" % (CACHE, model["repo_id"], model["commit"], model["filename"])
    assert host.file(blocks).is_directory, "olah's cache has no %s" % blocks
    # olah keeps the file as numbered blocks; together they are the file the host verified.
    digest = host.run("cat %s/block_*.bin | sha256sum", blocks).stdout.split()[0]
    assert digest == model["sha256"]
    log = host.run("journalctl -u %s -o cat --no-pager", UNIT).stdout
    assert '"GET /%s/resolve/main/%s HTTP/1.1" 200' % (model["repo_id"], model["filename"]) in log
