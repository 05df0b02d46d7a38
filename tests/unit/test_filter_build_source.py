"""filter_plugins/edge_llama.py build_source: one host of a fleet compiles each distinct llama.cpp build,
the hosts with the same build key receive it."""

import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parents[2] / "filter_plugins" / "edge_llama.py"
spec = importlib.util.spec_from_file_location("edge_llama_filters", PATH)
filters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(filters)
source = filters.FilterModule().filters()["build_source"]

HOSTS = ["orin-a", "orin-b", "orin-c", "orin-d"]


def fleet(keys, verified=()):
    return {h: {"__llama_cpp_key": k, "__llama_cpp_has_verified": h in verified} for h, k in keys.items()}


def roles(hostvars, hosts=HOSTS, builder=""):
    return {h: (source(h, hostvars, hosts, builder)["role"], source(h, hostvars, hosts, builder)["source"])
            for h in hosts}


def test_four_hosts_with_one_key_compile_once_on_the_first():
    got = roles(fleet({h: "k1" for h in HOSTS}))
    assert got == {"orin-a": ("build", "orin-a"), "orin-b": ("receive", "orin-a"),
                   "orin-c": ("receive", "orin-a"), "orin-d": ("receive", "orin-a")}


def test_a_host_whose_key_differs_builds_its_own():
    got = roles(fleet({"orin-a": "k1", "orin-b": "k2", "orin-c": "k1", "orin-d": "k2"}))
    assert got == {"orin-a": ("build", "orin-a"), "orin-b": ("build", "orin-b"),
                   "orin-c": ("receive", "orin-a"), "orin-d": ("receive", "orin-b")}


def test_the_named_builder_compiles_for_its_key_only():
    got = roles(fleet({"orin-a": "k1", "orin-b": "k1", "orin-c": "k1", "orin-d": "k2"}), builder="orin-c")
    assert got["orin-c"] == ("build", "orin-c")
    assert got["orin-a"] == ("receive", "orin-c") and got["orin-b"] == ("receive", "orin-c")
    assert got["orin-d"] == ("build", "orin-d")


def test_a_host_that_already_holds_the_verified_build_is_the_source_and_nothing_compiles():
    got = roles(fleet({h: "k1" for h in HOSTS}, verified={"orin-c"}))
    assert got["orin-c"] == ("have", "orin-c")
    assert [got[h] for h in ("orin-a", "orin-b", "orin-d")] == [("receive", "orin-c")] * 3


def test_a_re_run_with_every_build_verified_changes_nothing():
    got = roles(fleet({h: "k1" for h in HOSTS}, verified=set(HOSTS)))
    assert {role for role, _ in got.values()} == {"have"}


def test_a_host_gone_from_the_play_is_not_chosen():
    # orin-a failed or is unreachable: ansible_play_hosts no longer lists it.
    got = roles(fleet({h: "k1" for h in HOSTS}), hosts=HOSTS[1:])
    assert got == {"orin-b": ("build", "orin-b"), "orin-c": ("receive", "orin-b"), "orin-d": ("receive", "orin-b")}


def test_a_host_without_a_plan_is_alone():
    hostvars = fleet({"orin-a": "k1", "orin-b": "k1"})
    hostvars["orin-c"] = {}
    assert source("orin-c", hostvars, HOSTS[:3])["role"] == "alone"
    assert source("orin-b", hostvars, HOSTS[:3])["role"] == "receive"
