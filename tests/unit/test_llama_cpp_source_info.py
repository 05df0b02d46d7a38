"""llama_cpp_source_info on excerpts of real llama.cpp trees (fixtures name their source)."""

import shutil

import pytest

import llama_cpp_source_info as module
from conftest import FIXTURES

TREES = FIXTURES / "llama_cpp"


def test_tutorial_commit_builds_with_make_into_server(run_module):
    result = run_module(module, {"path": str(TREES / "tutorial-e519621")})
    assert result["changed"] is False
    assert result["build_system"] == "make"
    assert result["cuda_option"] == "LLAMA_CUBLAS"
    assert result["server_binary"] == "server"
    assert result["server_source"] == "examples/server/server.cpp"
    assert result["features"] == {
        "health": False, "native_openai": False, "api_like_oai": True, "model_json": True, "api_key": False,
        # cpp-httplib's default at e519621 on Linux: SO_REUSEPORT alone (examples/server/httplib.h).
        "reuse_port": False, "bind_options": ["SO_REUSEPORT"], "metrics": False,
    }


def test_current_tree_builds_with_cmake_into_llama_server(run_module):
    result = run_module(module, {"path": str(TREES / "current-lcp-0.3.36")})
    assert result["build_system"] == "cmake"
    assert result["cuda_option"] == "GGML_CUDA"
    # tools/server/CMakeLists.txt defines server-context and llama-server-impl libraries first.
    assert result["server_target"] == "llama-server"
    assert result["server_binary"] == "build/bin/llama-server"
    assert result["features"]["health"] is True
    assert result["features"]["native_openai"] is True
    assert result["features"]["api_like_oai"] is False
    assert result["features"]["model_json"] is False
    # server-http.cpp sets SO_REUSEADDR itself, and SO_REUSEPORT with --reuse-port, which the role passes.
    assert result["features"]["reuse_port"] is True
    # --metrics (GET /metrics in Prometheus' format): llama.cpp b2258 (2024-02) and later.
    assert result["features"]["metrics"] is True
    assert result["features"]["bind_options"] == ["SO_REUSEADDR", "SO_REUSEPORT"]


def test_a_server_that_sets_its_own_socket_options_without_reuse_port_binds_with_reuseaddr(tmp_path, run_module):
    tree = tmp_path / "no-reuse-port"
    shutil.copytree(TREES / "current-lcp-0.3.36", tree)
    arg = tree / "common" / "arg.cpp"
    arg.write_text(arg.read_text().replace('{"--reuse-port"}', ""))
    result = run_module(module, {"path": str(tree)})
    assert result["features"]["reuse_port"] is False
    assert result["features"]["bind_options"] == ["SO_REUSEADDR"]


def test_mid_2024_tree_with_llama_cuda_and_no_make_server_target(tmp_path, run_module):
    # Between b2534 and b3143: CMake option LLAMA_CUDA, server still named `server` in
    # examples/server; the Makefile no longer has a plain `server:` rule here, so CMake is used.
    tree = tmp_path / "mid"
    shutil.copytree(TREES / "tutorial-e519621", tree)
    (tree / "Makefile").write_text("ifdef LLAMA_CUBLAS\n$(error LLAMA_CUBLAS is deprecated, use LLAMA_CUDA)\nendif\n")
    (tree / "CMakeLists.txt").write_text('option(LLAMA_CUDA "llama: use CUDA" OFF)\n')
    result = run_module(module, {"path": str(tree)})
    assert result["build_system"] == "cmake"
    assert result["cuda_option"] == "LLAMA_CUDA"
    assert result["server_binary"] == "build/bin/server"


def test_not_a_checkout_fails_with_the_path(tmp_path, run_module):
    result = run_module(module, {"path": str(tmp_path)})
    assert result["failed"]
    assert str(tmp_path) in result["msg"]
    assert "not a llama.cpp checkout" in result["msg"]


def test_missing_directory_fails_clearly(tmp_path, run_module):
    result = run_module(module, {"path": str(tmp_path / "nope")})
    assert result["failed"]
    assert "is not a directory" in result["msg"]


def test_tree_without_server_fails(tmp_path, run_module):
    (tmp_path / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.14)\n")
    result = run_module(module, {"path": str(tmp_path)})
    assert result["failed"]
    assert "no server source" in result["msg"]


@pytest.mark.parametrize("check_mode", [False, True])
def test_never_changes_anything(run_module, check_mode):
    result = run_module(module, {"path": str(TREES / "tutorial-e519621")}, check_mode=check_mode)
    assert result["changed"] is False


def test_cpu_options_of_each_era(run_module):
    tutorial = run_module(module, {"path": str(TREES / "tutorial-e519621")})
    assert tutorial["cpu_options"] == {"native_option": "LLAMA_NATIVE", "all_variants": False}
    current = run_module(module, {"path": str(TREES / "current-lcp-0.3.36")})
    assert current["cpu_options"] == {"native_option": "GGML_NATIVE", "all_variants": True}
