"""edge_llama_last_run: what a complete run records, and each way a host can differ from it afterwards.

Files, users, Debian packages (this machine's real dpkg-query) and a real git repository (ls-remote) are
real; systemd does not run here, so units are read from `systemctl show` output captured on a test host
(SYSTEMCTL_SHOW below, from tests/molecule's fleet host edge-llama-orin-a) through a stand-in runner.
"""

import json
import os
import subprocess

import pytest

import edge_llama_last_run as module
from ansible.module_utils import edge_llama_last_run as last_run

FINGERPRINT = "a" * 64
UNITS = ["edge-llama-server.service", "edge-llama-openai.service"]
# `systemctl show --property=Id,UnitFileState,ActiveState -- <units>` on a test host (real systemd 252,
# captured from the fleet scenario's first host after its converge).
SYSTEMCTL_SHOW = """Id=edge-llama-server.service
ActiveState=active
UnitFileState=enabled

Id=edge-llama-openai.service
ActiveState=active
UnitFileState=enabled
"""


class Host:
    """Runs commands for real, except systemctl, which answers with the captured output (or a stopped unit)."""

    def __init__(self):
        self.show = SYSTEMCTL_SHOW
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[0] == "systemctl":
            return 0, self.show, ""
        proc = subprocess.run(argv, capture_output=True, text=True)
        return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def host(monkeypatch):
    fake = Host()
    real = module.AnsibleModule.run_command

    def run_command(self, args, **kwargs):
        if args[0] == "systemctl":
            return fake(args)
        fake.calls.append(args)
        return real(self, args, **kwargs)

    monkeypatch.setattr(module.AnsibleModule, "run_command", run_command)
    return fake


@pytest.fixture
def tree(tmp_path):
    """A host's worth of owned things: a unit file, an env file with a secret, a build, a model, a venv."""
    unit = tmp_path / "edge-llama-server.service"
    unit.write_text("[Service]\nExecStart=/opt/server\n")
    env = tmp_path / "openai-api.env"
    env.write_text("OPENAI_API_KEY=secret-value\n")
    env.chmod(0o640)
    build = tmp_path / "build" / "bin"
    build.mkdir(parents=True)
    (build / "llama-server").write_bytes(b"\x7fELF server")
    (build / "llama-server").chmod(0o755)
    (build / "libllama.so").write_bytes(b"\x7fELF lib")
    (build / "CMakeFiles.txt").write_text("not an output")
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 1000)
    venv = tmp_path / "venv"
    (venv / "lib" / "python3.11" / "site-packages" / "fastapi-0.110.0.dist-info").mkdir(parents=True)
    return {"files": [str(unit), str(env)], "trees": [str(build)], "large_files": [str(model)],
            "units": UNITS, "users": ["root"], "packages": ["bash"], "venvs": [str(venv)]}


def record(run_module, tmp_path, tree, **extra):
    args = dict(tree, state="recorded", fingerprint=FINGERPRINT, path=str(tmp_path / "last-run.fact"),
                reports={"services_report": {"state": "deployed", "commit": "c" * 40}},
                gate={"chat_url": "http://127.0.0.1:7860/"})
    args.update(extra)
    return run_module(module, args)


def check(run_module, tmp_path, fingerprint=FINGERPRINT, check_mode=False):
    return run_module(module, {"fingerprint": fingerprint, "path": str(tmp_path / "last-run.fact")},
                      check_mode=check_mode)


def test_a_host_as_the_last_run_left_it_is_unchanged(run_module, tmp_path, tree, host):
    first = record(run_module, tmp_path, tree)
    assert first["changed"] is True
    path = tmp_path / "last-run.fact"
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # the reports and the gate are not for everyone
    assert "secret-value" not in path.read_text()  # files are hashed, never copied
    again = record(run_module, tmp_path, tree, reports={"services_report": {"tokens_per_second": 9.5}})
    assert again["changed"] is False  # only the reports differ: rewritten, not a change
    result = check(run_module, tmp_path, check_mode=True)
    assert result["unchanged"] is True and result["reasons"] == [] and result["changed"] is False
    assert result["reports"] == {"services_report": {"tokens_per_second": 9.5}}
    assert result["gate"] == {"chat_url": "http://127.0.0.1:7860/"}
    recorded = json.loads(path.read_text())
    assert sorted(recorded["observed"]["trees"][tree["trees"][0]]) == ["libllama.so", "llama-server"]


def test_check_mode_records_nothing(run_module, tmp_path, tree, host):
    result = run_module(module, dict(tree, state="recorded", fingerprint=FINGERPRINT,
                                     path=str(tmp_path / "last-run.fact")), check_mode=True)
    assert result["changed"] is True and not (tmp_path / "last-run.fact").exists()


def test_no_record_or_other_inputs_is_not_unchanged(run_module, tmp_path, tree, host):
    assert check(run_module, tmp_path)["reasons"] == ["no record of a complete run on this host"]
    record(run_module, tmp_path, tree)
    result = check(run_module, tmp_path, fingerprint="b" * 64)
    assert result["unchanged"] is False and result["reports"] == {} and result["gate"] == {}
    assert result["reasons"] == ["the settings or edge-llama changed since the last complete run"]


@pytest.mark.parametrize("change,reason", [
    (lambda t, h: open(t["files"][0], "a").write("# edited\n"), "file %(unit)s: content changed"),
    (lambda t, h: os.chmod(t["files"][1], 0o644), "file %(env)s: mode or owner changed"),
    (lambda t, h: os.unlink(t["files"][0]), "file %(unit)s: missing"),
    (lambda t, h: open(os.path.join(t["trees"][0], "libllama.so"), "ab").write(b"x"),
     "tree %(build)s: changed: libllama.so"),
    (lambda t, h: os.truncate(t["large_files"][0], 10), "large file %(model)s: changed"),
    (lambda t, h: os.rename(os.path.join(t["venvs"][0], "lib", "python3.11", "site-packages",
                                         "fastapi-0.110.0.dist-info"),
                            os.path.join(t["venvs"][0], "lib", "python3.11", "site-packages",
                                         "fastapi-0.111.0.dist-info")),
     "venv %(venv)s: packages differ: fastapi-0.110.0.dist-info, fastapi-0.111.0.dist-info"),
    (lambda t, h: setattr(h, "show", SYSTEMCTL_SHOW.replace("openai.service\nActiveState=active",
                                                            "openai.service\nActiveState=inactive")),
     "unit edge-llama-openai.service: enabled/inactive (was enabled/active)"),
    (lambda t, h: setattr(h, "show", SYSTEMCTL_SHOW.replace("UnitFileState=enabled\n\n",
                                                            "UnitFileState=disabled\n\n")),
     "unit edge-llama-server.service: disabled/active (was enabled/active)"),
])
def test_each_difference_is_named(run_module, tmp_path, tree, host, change, reason):
    record(run_module, tmp_path, tree)
    change(tree, host)
    result = check(run_module, tmp_path)
    names = {"unit": tree["files"][0], "env": tree["files"][1], "build": tree["trees"][0],
             "model": tree["large_files"][0], "venv": tree["venvs"][0]}
    assert result["unchanged"] is False
    assert result["reasons"] == [reason % names]


def test_a_package_removed_or_a_user_deleted_is_named(run_module, tmp_path, tree, host):
    record(run_module, tmp_path, tree)
    path = tmp_path / "last-run.fact"
    recorded = json.loads(path.read_text())
    assert recorded["observed"]["packages"] == {"bash": True}
    assert recorded["observed"]["users"]["root"] == {"uid": 0, "gid": 0}
    # What a removed package and a deleted user look like to the next check: the record says they were there.
    recorded["spec"]["packages"].append("edge-llama-no-such-package")
    recorded["observed"]["packages"]["edge-llama-no-such-package"] = True
    recorded["spec"]["users"].append("edge-llama-no-such-user")
    recorded["observed"]["users"]["edge-llama-no-such-user"] = {"uid": 999, "gid": 999}
    path.write_text(json.dumps(recorded))
    assert check(run_module, tmp_path)["reasons"] == ["user edge-llama-no-such-user: missing",
                                                      "package edge-llama-no-such-package: missing"]


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "llama.cpp.git"
    work = tmp_path / "work"
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")

    def git(*args, cwd=work):
        return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    work.mkdir()
    git("init", "-q", "-b", "master")
    git("commit", "-q", "--allow-empty", "-m", "one")
    git("tag", "-a", "b1", "-m", "release b1")
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(path)], check=True)
    return {"url": str(path), "head": git("rev-parse", "HEAD"), "git": git, "work": work}


def test_a_branch_that_moved_is_not_unchanged_and_a_commit_needs_no_network(run_module, tmp_path, tree, host, repo):
    head = repo["head"]
    record(run_module, tmp_path, tree, remote={"url": repo["url"], "version": "master", "commit": head})
    assert check(run_module, tmp_path)["unchanged"] is True
    repo["git"]("commit", "-q", "--allow-empty", "-m", "two")
    repo["git"]("push", "-q", repo["url"], "master")
    moved = repo["git"]("rev-parse", "HEAD")
    assert check(run_module, tmp_path)["reasons"] == ["llama.cpp: master moved from %s to %s" % (head[:12], moved[:12])]
    # an annotated tag is compared by the commit it names
    record(run_module, tmp_path, tree, remote={"url": repo["url"], "version": "b1", "commit": head})
    assert check(run_module, tmp_path)["unchanged"] is True
    # a commit (the pinned e519621 style) is not asked of the repository at all
    host.calls.clear()
    record(run_module, tmp_path, tree, remote={"url": "/nonexistent", "version": head[:7], "commit": head})
    assert check(run_module, tmp_path)["unchanged"] is True
    assert not [c for c in host.calls if c[0] == "git"]


def test_a_repository_that_does_not_answer_is_not_unchanged(run_module, tmp_path, tree, host):
    gone = str(tmp_path / "gone.git")
    record(run_module, tmp_path, tree, remote={"url": gone, "version": "master", "commit": "c" * 40})
    result = check(run_module, tmp_path)
    assert result["reasons"] == ["llama.cpp: could not ask %s which commit master names" % (tmp_path / "gone.git")]


def test_units_parse_whatever_order_systemd_prints():
    show = ("Id=b.service\nActiveState=failed\nUnitFileState=enabled\n\n"
            "UnitFileState=disabled\nId=a.service\nActiveState=active\n")
    assert last_run._units(["a.service", "b.service", "c.service"], lambda argv: (0, show, "")) == {
        "a.service": "disabled/active", "b.service": "enabled/failed", "c.service": "unknown"}
