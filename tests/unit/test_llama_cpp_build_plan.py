"""llama_cpp_build_plan: how each era of llama.cpp is built for which CPU, and the build's identity.

The trees are the excerpts of real llama.cpp trees under fixtures/llama_cpp (their headers name the
source): the tutorial's e519621 (Makefile, -march=native on x86_64) and the tree llama-cpp-python 0.3.36
vendors (CMake with GGML_NATIVE, GGML_BACKEND_DL and GGML_CPU_ALL_VARIANTS).
"""

import shutil

import pytest

import llama_cpp_build_plan as module
from conftest import FIXTURES

TREES = FIXTURES / "llama_cpp"
TUTORIAL = TREES / "tutorial-e519621"
CURRENT = TREES / "current-lcp-0.3.36"
COMMIT = "e519621010cac02c6fec0f8f3b16cda0591042c0"


def args(tree, **overrides):
    base = {"path": str(tree), "commit": COMMIT, "install_dir": "/opt/edge-llama/llama.cpp", "machine": "x86_64"}
    base.update(overrides)
    return base


@pytest.fixture
def plan(run_module):
    def runner(tree, **overrides):
        result = run_module(module, args(tree, **overrides))
        assert not result.get("failed"), result
        assert result["changed"] is False
        return result
    return runner


def flat(result):
    return [arg for command in result["commands"] for arg in command]


# (tree, machine, cpu_target) -> the CPU build and the switches it must and must not contain
CASES = [
    (CURRENT, "x86_64", "portable", "portable_baseline", ["-DGGML_NATIVE=OFF"],
     ["-DGGML_NATIVE=ON", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"]),
    (CURRENT, "x86_64", "all_variants", "all_variants",
     ["-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"], ["-DGGML_NATIVE=ON"]),
    (CURRENT, "x86_64", "native", "native", ["-DGGML_NATIVE=ON"], ["-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON"]),
    (CURRENT, "aarch64", "portable", "default", [], ["-DGGML_NATIVE=OFF", "-DGGML_NATIVE=ON", "-DGGML_BACKEND_DL=ON"]),
    (TUTORIAL, "x86_64", "portable", "portable_baseline",
     ["CFLAGS=-march=x86-64-v3 -mtune=generic", "HOST_CXXFLAGS=-march=x86-64-v3 -mtune=generic"], []),
    # The 2023 tree cannot choose variants at run time: all_variants is the portable baseline there.
    (TUTORIAL, "x86_64", "all_variants", "portable_baseline", ["CFLAGS=-march=x86-64-v3 -mtune=generic"], []),
    (TUTORIAL, "x86_64", "native", "native", [], ["CFLAGS=-march=x86-64-v3 -mtune=generic"]),
    (TUTORIAL, "aarch64", "portable", "default", [], ["CFLAGS=-march=x86-64-v3 -mtune=generic"]),
]


@pytest.mark.parametrize("tree,machine,target,kind,present,absent", CASES,
                         ids=["%s-%s-%s" % (c[0].name, c[1], c[2]) for c in CASES])
def test_cpu_build_per_era_machine_and_target(plan, tree, machine, target, kind, present, absent):
    result = plan(tree, machine=machine, cpu_target=target)
    assert result["cpu_build"] == kind
    assert result["identity"]["cpu_build"] == kind
    for arg in present:
        assert arg in flat(result), (arg, result["commands"])
    for arg in absent:
        assert arg not in flat(result), (arg, result["commands"])
    assert result["cpu_build_reason"]


def test_a_tree_without_cpu_variants_builds_one_portable_baseline(plan, tmp_path):
    # Mid-2024 trees: GGML_NATIVE but no GGML_CPU_ALL_VARIANTS (added 2024-11).
    tree = tmp_path / "mid"
    shutil.copytree(CURRENT, tree)
    (tree / "ggml" / "CMakeLists.txt").write_text(
        'option(GGML_CUDA "ggml: use CUDA" OFF)\n'
        'option(GGML_NATIVE "ggml: optimize the build for the current system" ${GGML_NATIVE_DEFAULT})\n')
    result = plan(tree, cpu_target="all_variants")
    assert "cannot choose CPU variants" in result["cpu_build_reason"]
    assert result["cpu_build"] == "portable_baseline"
    assert "-DGGML_NATIVE=OFF" in result["commands"][0]
    assert "-DGGML_BACKEND_DL=ON" not in result["commands"][0]


def test_make_era_commands_and_binary(plan):
    result = plan(TUTORIAL, backend="cuda", cuda_architectures=["89", "86"], cuda_home="/usr", jobs=12)
    assert result["build_system"] == "make"
    (make,) = result["commands"]
    assert make[:3] == ["make", "-j", "12"]
    # One architecture in the Makefile era: the oldest, which the newer GPU runs too.
    assert "LLAMA_CUBLAS=1" in make and "CUDA_DOCKER_ARCH=sm_86" in make and make[-1] == "server"
    assert result["server_binary"] == result["build_dir"] + "/server"
    # What a host with the same identity receives: the statically linked server, nothing else.
    assert result["outputs"] == ["server"]
    assert result["environment"]["PATH"].startswith("/usr/lib/ccache:/usr/bin:")
    assert result["environment"]["CCACHE_BASEDIR"] == result["build_dir"]


def test_cmake_era_commands_and_binary(plan):
    result = plan(CURRENT, backend="cuda", cuda_architectures=["86"], cuda_home="/usr/local/cuda",
                  cmake_extra_args=["-DGGML_CUDA_F16=ON"])
    configure, build = result["commands"]
    assert configure[:6] == ["cmake", "-S", ".", "-B", "build", "-DCMAKE_BUILD_TYPE=Release"]
    assert "-DGGML_CUDA=ON" in configure and "-DCMAKE_CUDA_ARCHITECTURES=86" in configure
    assert "-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc" in configure
    assert configure[-1] == "-DGGML_CUDA_F16=ON"  # the user's word comes last
    assert build == ["cmake", "--build", "build", "-j", "2", "--target", "llama-server"]
    assert result["server_binary"] == result["build_dir"] + "/build/bin/llama-server"
    # The server and the shared libraries it loads (libllama, libggml-*) live in build/bin.
    assert result["outputs"] == ["build/bin"]
    assert result["environment"]["PATH"].startswith("/usr/local/cuda/bin:")


def test_build_dir_is_keyed_by_commit_and_identity(plan):
    result = plan(CURRENT)
    assert result["build_dir"] == "/opt/edge-llama/llama.cpp/builds/%s-%s" % (COMMIT[:12], result["build_id"])
    assert len(result["build_id"]) == 12
    assert plan(CURRENT)["build_dir"] == result["build_dir"]  # same inputs, same directory
    # The build is its directory; every entry of the builds directory is some build (the release prunes it).
    assert result["artifacts"] == [result["build_dir"]]
    assert result["artifact_root"] == "/opt/edge-llama/llama.cpp/builds"


# Each changes the binary, so each must build beside the serving one.
CHANGES = {
    "commit": {"commit": "f" * 40},
    "cmake_extra_args": {"cmake_extra_args": ["-DGGML_CUDA_F16=ON"]},
    "cpu_target": {"cpu_target": "native"},
    "all_variants": {"cpu_target": "all_variants"},
    "backend": {"backend": "cuda", "cuda_architectures": ["86"], "cuda_home": "/usr"},
    "machine": {"machine": "aarch64"},
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_what_changes_the_binary_changes_the_directory(plan, change):
    assert plan(CURRENT, **CHANGES[change])["build_dir"] != plan(CURRENT)["build_dir"]


def test_cuda_architectures_and_toolkit_are_part_of_the_identity(plan):
    cuda = {"backend": "cuda", "cuda_home": "/usr/local/cuda"}
    a86 = plan(CURRENT, cuda_architectures=["86"], **cuda)["build_dir"]
    assert plan(CURRENT, cuda_architectures=["89"], **cuda)["build_dir"] != a86
    assert plan(CURRENT, cuda_architectures=["86"], backend="cuda", cuda_home="/usr")["build_dir"] != a86


def test_make_extra_args_are_part_of_the_identity(plan):
    assert plan(TUTORIAL, make_extra_args=["LLAMA_CUDA_F16=1"])["build_dir"] != plan(TUTORIAL)["build_dir"]


def test_jobs_ccache_and_targets_do_not_rebuild(plan):
    base = plan(CURRENT)["build_dir"]
    assert plan(CURRENT, jobs=16)["build_dir"] == base
    assert plan(CURRENT, ccache=False)["build_dir"] == base
    assert plan(CURRENT, cmake_extra_args=["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"])["build_dir"] == base
    assert plan(CURRENT, cmake_targets=["llama-server", "llama-cli"])["build_dir"] == base


def test_ccache_off_leaves_the_launcher_out(plan):
    assert not any("LAUNCHER" in a for a in plan(CURRENT, ccache=False)["commands"][0])
    assert "/usr/lib/ccache" not in plan(TUTORIAL, ccache=False)["environment"]["PATH"]


def test_cuda_without_architectures_fails_naming_it(run_module):
    result = run_module(module, args(CURRENT, backend="cuda", cuda_home="/usr"))
    assert result["failed"] and "CUDA architecture" in result["msg"]


def test_cuda_without_a_toolkit_yet_leaves_nvcc_to_the_path(plan):
    # Check mode on a host whose toolkit the nvidia_cuda role would install.
    make = plan(TUTORIAL, backend="cuda", cuda_architectures=["86"])
    assert "LLAMA_CUBLAS=1" in make["commands"][0] and "CUDA_DOCKER_ARCH=sm_86" in make["commands"][0]
    cmake = plan(CURRENT, backend="cuda", cuda_architectures=["86"])
    assert "-DGGML_CUDA=ON" in cmake["commands"][0]
    assert not any(a.startswith("-DCMAKE_CUDA_COMPILER=") for a in cmake["commands"][0])


def test_not_a_checkout_fails_with_the_path(run_module, tmp_path):
    result = run_module(module, args(tmp_path))
    assert result["failed"] and str(tmp_path) in result["msg"]


def test_check_mode_plans_too(run_module):
    result = run_module(module, args(CURRENT), check_mode=True)
    assert result["changed"] is False and result["cpu_build"] == "portable_baseline"
