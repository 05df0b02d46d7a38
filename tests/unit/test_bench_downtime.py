"""The analysis of tests/bench/upgrade_downtime.py (probe records -> figures), on synthetic probe sequences."""

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "bench" / "upgrade_downtime.py"
spec = importlib.util.spec_from_file_location("upgrade_downtime", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def probes(kind, pattern, t0=100.0, step=0.1):
    """One probe per character: o = OK, x = failed (503), r = refused (no HTTP answer)."""
    status = {"o": 200, "x": 503, "r": None}
    return [{"t": t0 + i * step, "kind": kind, "ok": c == "o", "status": status[c],
             **({"error": "ConnectionRefusedError"} if c == "r" else {})} for i, c in enumerate(pattern)]


def test_downtime_outages_and_model_load():
    figures = bench.analyse(probes("llama", "o" * 10 + "r" * 20 + "x" * 10 + "o" * 30)
                            + probes("chat", "o" * 10 + "x" * 35 + "o" * 10 + "r" * 5 + "o" * 10))
    chat, llama = figures["chat"], figures["llama"]
    assert chat["downtime_s"] == pytest.approx(4.0)
    assert (chat["outages"], chat["longest_s"], chat["recovered"]) == (2, pytest.approx(3.5), True)
    assert llama["downtime_s"] == pytest.approx(3.0) and llama["outages"] == 1
    assert llama["periods"][0]["causes"] == {"ConnectionRefusedError": 20, "503": 10}
    assert figures["model_load_s"] == pytest.approx(3.0)  # the last llama.cpp outage
    assert figures["chat_over_load"] == pytest.approx(4.0 / 3.0)
    assert chat["spacing_s"] == pytest.approx(0.1)


def test_model_load_is_the_last_llama_outage():
    figures = bench.analyse(probes("llama", "oxxooxxxxo") + probes("chat", "oooooooooo"))
    assert figures["llama"]["outages"] == 2 and figures["llama"]["downtime_s"] == pytest.approx(0.6)
    assert figures["model_load_s"] == pytest.approx(0.4)
    assert figures["chat_over_load"] == 0.0


def test_an_outage_that_does_not_end_is_open():
    figures = bench.analyse(probes("llama", "ooxxx") + probes("chat", "ooooo"))
    assert figures["llama"]["recovered"] is False and figures["llama"]["downtime_s"] == pytest.approx(0.2)
    assert figures["model_load_s"] is None and figures["chat_over_load"] is None


def test_no_outage_and_since():
    figures = bench.analyse(probes("llama", "xxooo") + probes("chat", "xxooo"), since=100.15)
    assert figures["llama"]["outages"] == figures["chat"]["outages"] == 0
    assert figures["model_load_s"] is None
    assert bench.analyse(probes("llama", "xxooxo"), since=100.05)["llama"]["downtime_s"] == pytest.approx(0.2)


def test_settled_and_serving():
    records = probes("llama", "xo" + "o" * 30) + probes("chat", "x" * 5 + "o" * 30)
    assert not bench.settled(records, 103.4)  # chat's first OK after its last failure: 100.5
    assert bench.settled(records, 103.6)
    assert not bench.settled(probes("llama", "o" * 50) + probes("chat", "o" * 49 + "x"), 110)
    assert not bench.settled(probes("llama", "o" * 50), 110)  # no chat probe yet
    assert bench.serving(probes("llama", "xo") + probes("chat", "xo"))
    assert not bench.serving(probes("llama", "xo") + probes("chat", "ox"))


def test_journal_figures():
    text = """1700000000.000000 h systemd[1]: Started edge-llama-server.service - old start.
1700000000.200000 h systemd[1]: Stopping edge-llama-server.service - llama.cpp...
1700000000.500000 h systemd[1]: Started edge-llama-server.service - llama.cpp.
1700000001.000000 h llama-server[5]: llama_model_loader: loaded meta data
1700000002.250000 h llama-server[5]: srv    load_model: model loaded
1700000002.300000 h llama-server[5]: main: server is listening on http://127.0.0.1:8080
1700000003.000000 h llama-server[5]: llama_print_timings:        load time =   1234.56 ms
1700000004.000000 h llama-server[5]: llama_print_timings:        load time =   9999.00 ms
"""
    assert bench.journal_figures(text) == {"start_to_ready_s": pytest.approx(1.75), "load_time_ms": 1234.56}
    assert bench.journal_figures("-- No entries --\n") == {"start_to_ready_s": None, "load_time_ms": None}
