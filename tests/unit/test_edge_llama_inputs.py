"""module_utils/edge_llama_inputs.py: every public setting checked before any change, table-driven.

The argument specs are the roles' own (roles/*/meta/argument_specs.yml), so a new variable is covered
by its type as soon as it is declared. Values arrive as a user gives them: YAML types from an inventory,
strings from `-e`. The same rules run in every play through action_plugins/edge_llama_inputs.py; the
upgrade scenario runs site.yml with bad values against a serving host (tests/molecule/shared/test_upgrade.py).
"""

from pathlib import Path

import pytest
import yaml
from ansible.module_utils.edge_llama_inputs import RUN_CONTROL_SPECS, check

REPO = Path(__file__).resolve().parents[2]
ROLES = ["edge_llama_defaults", "preflight", "nvidia_cuda", "toolchain", "llama_cpp", "model", "metrics", "services",
         "hf_mirror"]


def role_specs():
    specs, defaults = {}, {}
    for role in ROLES:
        specs.update(yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
                     ["argument_specs"]["main"]["options"])
        defaults.update(yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text()) or {})
    # Templated defaults stand for what they render to on a host.
    defaults.update(preflight_backend="cuda", llama_cpp_build_jobs=2, hf_mirror_listen="0.0.0.0")
    return specs, {k: v for k, v in defaults.items() if not (isinstance(v, str) and "{{" in v)}


SPECS, DEFAULTS = role_specs()


def problems(extra_ports=(), **changes):
    found, _ = check(dict(DEFAULTS, **changes), SPECS, extra_ports=extra_ports)
    return found


def test_the_defaults_pass():
    assert problems() == []


GOOD = [
    {"services_openai_port": "8082"},  # -e gives strings
    {"services_expose_on_lan": "true", "services_private_users": "no"},
    {"services_llama_ctx_size": 2048, "services_keep_releases": "1"},
    {"model_filename": "llama-2-70b-chat.Q6_K.gguf-split-a"},
    {"model_repo_id": "TheBloke/Llama-2-70B-Chat-GGUF",
     "model_sha256": "c7e817ae9c84191ccfc57141e839cb1b1cb61822cd299e76d02ec49fd6fa3c3e"},
    {"llama_cpp_version": "b4500"}, {"llama_cpp_version": "e519621"}, {"llama_cpp_version": "release/2024-06"},
    {"llama_cpp_repo_url": "git://host.containers.internal:19418/llama.cpp.git"},
    {"llama_cpp_repo_url": "git@github.com:ggerganov/llama.cpp.git"},
    {"model_hf_endpoint": "http://mirror.lan:8090"},
    {"services_chat_system_prompt": 'Say "hi".\nBe brief \u2014 r\u00e9pondez en fran\u00e7ais. $HOME `x` \\ done'},
    {"services_lan_address": "192.168.10.5"}, {"services_llama_host": "::1"},
    {"llama_cpp_cuda_architecture": "86"}, {"llama_cpp_cmake_extra_args": "-DGGML_CUDA_F16=ON"},
]


@pytest.mark.parametrize("changes", GOOD, ids=[",".join(c) for c in GOOD])
def test_good_values_pass(changes):
    assert problems(**changes) == []


# (changes, variable named, words of the problem)
BAD = [
    ({"services_openai_port": "abc"}, "services_openai_port", "not a whole number"),
    ({"services_openai_port": 0}, "services_openai_port", "out of range (1 to 65535)"),
    ({"services_chat_port": "70000"}, "services_chat_port", "out of range"),
    ({"services_llama_port": True}, "services_llama_port", "a boolean"),
    ({"services_openai_port": 7860}, "services_openai_port and services_chat_port", "both 7860"),
    ({"services_chat_port": "8080"}, "services_llama_port and services_chat_port", "both 8080"),
    ({"services_llama_ctx_size": 0}, "services_llama_ctx_size", "out of range (64 to 1048576)"),
    ({"services_llama_ctx_size": "4k"}, "services_llama_ctx_size", "not a whole number"),
    ({"services_keep_releases": 0}, "services_keep_releases", "out of range (1 to 100)"),
    ({"services_llama_n_gpu_layers": -1}, "services_llama_n_gpu_layers", "out of range (at least 0)"),
    ({"services_chat_temperature": "hot"}, "services_chat_temperature", "not a number"),
    ({"services_chat_max_tokens": 0}, "services_chat_max_tokens", "out of range"),
    ({"services_ready_timeout": "-5"}, "services_ready_timeout", "out of range"),
    ({"services_expose_on_lan": "maybe"}, "services_expose_on_lan", "not a boolean"),
    ({"model_allow_root_filesystem": "sure"}, "model_allow_root_filesystem", "not a boolean"),
    ({"model_filename": "../../etc/passwd"}, "model_filename", "a file name, not a path"),
    ({"model_filename": ".."}, "model_filename", "not a file name"),
    ({"model_filename": ""}, "model_filename", "empty"),
    ({"model_repo_id": "a b"}, "model_repo_id", "not a Hugging Face repo id"),
    ({"model_repo_id": "TheBloke"}, "model_repo_id", "owner/name"),
    ({"model_sha256": "abc"}, "model_sha256", "not 64 hex digits"),
    ({"llama_cpp_version": "not..a-sha"}, "llama_cpp_version", "not a commit, tag or branch"),
    ({"llama_cpp_version": "master; rm -rf /"}, "llama_cpp_version", "not a commit, tag or branch"),
    ({"llama_cpp_repo_url": "ftp://example.com/llama.cpp"}, "llama_cpp_repo_url", "scheme"),
    ({"llama_cpp_repo_url": "https://"}, "llama_cpp_repo_url", "without a host"),
    ({"model_hf_endpoint": "huggingface.co"}, "model_hf_endpoint", "scheme https/http"),
    ({"model_hf_endpoint": "http://mirror:99999"}, "model_hf_endpoint", "port"),
    ({"llama_cpp_backend": "rocm"}, "llama_cpp_backend", "not one of cuda, cpu"),
    ({"llama_cpp_cpu_target": "fast"}, "llama_cpp_cpu_target", "not one of portable, all_variants, native"),
    ({"llama_cpp_cuda_architecture": "sm_86"}, "llama_cpp_cuda_architecture", "without sm_"),
    ({"services_lan_address": "my lan"}, "services_lan_address", "not an IP address or a host name"),
    ({"services_chat_system_prompt": "a\0b"}, "services_chat_system_prompt", "NUL"),
    ({"services_openai_api_key": ["x"]}, "services_openai_api_key", "not a string"),
    ({"llama_cpp_smoke_timeout": 0}, "llama_cpp_smoke_timeout", "out of range"),
    ({"services_gateway_drain_timeout": -1}, "services_gateway_drain_timeout", "out of range (0 to 86400)"),
    ({"services_gateway_ready_timeout": "0"}, "services_gateway_ready_timeout", "out of range (1 to 86400)"),
    ({"services_gateway_group": ["gateway"]}, "services_gateway_group", "not a string"),
]


@pytest.mark.parametrize("changes,variable,words", BAD, ids=["%s=%r" % (b[1], list(b[0].values())[0]) for b in BAD])
def test_bad_values_are_named_with_the_problem_and_an_example(changes, variable, words):
    found = problems(**changes)
    assert [p["variable"] for p in found] == [variable], found
    (problem,) = found
    assert words in problem["problem"], problem
    assert problem.line().startswith(variable + " = ") and variable in problem.line()
    if "NUL" not in words:
        assert problem["example"], problem


def test_the_mirror_port_must_not_collide_on_a_mirror_host():
    assert problems(extra_ports=["hf_mirror_port"], hf_mirror_port=8081)[0]["variable"] == \
        "services_openai_port and hf_mirror_port"
    assert problems(hf_mirror_port=8081) == []  # not a mirror host: its port is not bound there


def test_secrets_are_never_shown():
    (problem,) = problems(services_openai_api_key=["my-secret"])
    assert problem["value"] == "(hidden)" and "my-secret" not in problem.line()
    (problem,) = problems(model_hf_token=["hf_secret"])
    assert problem["value"] == "(hidden)"
    (problem,) = problems(services_chat_max_tokens=0)  # a count, not a token
    assert problem["value"] == 0


def test_every_problem_at_once():
    found = problems(services_openai_port="abc", model_filename="a/b", services_keep_releases=0)
    assert sorted(p["variable"] for p in found) == ["model_filename", "services_keep_releases", "services_openai_port"]


def test_binds_follow_the_lan_switch():
    from ansible.module_utils.edge_llama_inputs import binds
    _, typed = check(dict(DEFAULTS, services_expose_on_lan="true", services_lan_address="192.168.10.5"), SPECS)
    assert binds(typed) == [
        {"name": "services_llama_port", "port": 8080, "address": "127.0.0.1"},
        {"name": "services_openai_port", "port": 8081, "address": "192.168.10.5"},
        {"name": "services_chat_port", "port": 7860, "address": "192.168.10.5"},
    ]
    _, typed = check(dict(DEFAULTS, services_openai_port="9000"), SPECS)
    assert binds(typed, ["hf_mirror_port"])[1:] == [
        {"name": "services_openai_port", "port": 9000, "address": "127.0.0.1"},
        {"name": "services_chat_port", "port": 7860, "address": "127.0.0.1"},
        {"name": "hf_mirror_port", "port": 8090, "address": "0.0.0.0"},
    ]


RUN_GOOD = [{"edge_llama_full_run": "true"}, {"edge_llama_full_run": False}, {"edge_llama_serial": [1, "25%"]},
            {"edge_llama_serial": "2"}, {"edge_llama_serial": 3}, {"edge_llama_serial": ["100%"]},
            {"edge_llama_max_fail_percentage": "50"}, {"edge_llama_connect_timeout": 10}]
RUN_BAD = [({"edge_llama_full_run": "maybe"}, "edge_llama_full_run"),
           ({"edge_llama_serial": [1, "25 %"]}, "edge_llama_serial"),
           ({"edge_llama_serial": [0]}, "edge_llama_serial"),
           ({"edge_llama_serial": "150%"}, "edge_llama_serial"),
           ({"edge_llama_serial": []}, "edge_llama_serial"),
           ({"edge_llama_max_fail_percentage": 101}, "edge_llama_max_fail_percentage"),
           ({"edge_llama_max_fail_percentage": "some"}, "edge_llama_max_fail_percentage"),
           ({"edge_llama_connect_timeout": 0}, "edge_llama_connect_timeout")]


@pytest.mark.parametrize("changes", RUN_GOOD, ids=[repr(g) for g in RUN_GOOD])
def test_the_runs_own_switches_pass_when_good(changes):
    found, _ = check(dict(DEFAULTS, **changes), dict(SPECS, **RUN_CONTROL_SPECS))
    assert found == []


@pytest.mark.parametrize("changes,variable", RUN_BAD, ids=[repr(b[0]) for b in RUN_BAD])
def test_the_runs_own_switches_are_refused_when_wrong(changes, variable):
    """A wrong -e edge_llama_full_run=maybe was read as false by `| bool` (the fast path ran); now it is
    refused before anything changes, like a role's setting."""
    found, _ = check(dict(DEFAULTS, **changes), dict(SPECS, **RUN_CONTROL_SPECS))
    assert [p["variable"] for p in found] == [variable], found
    assert found[0]["example"]
