"""Smoke runs of bench/bench_live.py: each mode with a tiny model, a 144p clip and a few windows."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("librosa")  # bench_pipeline.machine_info reports its version

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
CLIP = ["--height", "144", "--seconds", "8", "--fps", "25"]


@pytest.fixture(scope="module")
def bench_live():
    sys.path.insert(0, str(BENCH_DIR))
    try:
        import bench_live

        yield bench_live
    finally:
        sys.path.remove(str(BENCH_DIR))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model (4 s windows) and a shared clip cache."""
    from model_factory import make_tiny_model

    tmp = tmp_path_factory.mktemp("bench-live")
    _, onnx_path, _ = make_tiny_model(tmp / "model")
    return tmp, ["--model", str(onnx_path), "--cache-dir", str(tmp / "cache"), *CLIP]


def _run(bench_live, setup, name: str, *argv: str) -> tuple[dict, dict]:
    tmp, common = setup
    out = tmp / f"{name}.json"
    returned = bench_live.main([name, *common, "--json", str(out), "--max-wall-seconds", "40", *argv])
    return returned, json.loads(out.read_text())


def _sane(stats: dict, count: int) -> None:
    assert stats["count"] == count
    for key in ("p50", "p99", "max", "mean"):
        assert math.isfinite(stats[key]) and 0 < stats[key] < 10, (key, stats)
    assert stats["p50"] <= stats["p99"] <= stats["max"]


def _header_ok(result: dict) -> None:
    machine = result["machine"]
    assert machine["cores"] >= 1 and machine["av"]
    assert machine["load_average_1min_before"] >= 0 and machine["load_average_1min_after"] >= 0
    assert result["model"]["window_seconds"] == 4.0 and result["model"]["engine_batch1_seconds"] > 0


def test_latency_mode_measures_every_window(bench_live, setup, capsys):
    returned, written = _run(bench_live, setup, "latency", "--hop", "1", "--speed", "4", "--windows", "4")
    assert written == json.loads(json.dumps(returned))
    _header_ok(written)
    r = written["results"]
    assert r["windows"] == r["windows_asked"] == 4
    assert [w["index"] for w in r["per_window"]] == [0, 1, 2, 3]
    assert [w["end_seconds"] for w in r["per_window"]] == pytest.approx([4, 5, 6, 7])
    _sane(r["latency_seconds"], 4)
    assert "connected" in r["source_states"]
    assert r["sender"]["packets"] > 0  # the sender reported, and was ended by us
    assert abs(r["lag_growth_seconds"]) < 5
    out = capsys.readouterr().out
    assert "| hop (s) | windows |" in out and "p99 latency" in out and "load average" in out


def test_capacity_mode_reports_each_source_count(bench_live, setup, capsys):
    _, written = _run(bench_live, setup, "capacity", "--hop", "4", "--speed", "2", "--windows", "2",
                      "--sources", "1,2")
    r = written["results"]
    assert [s["sources"] for s in r["steps"]] == [1, 2]
    for step in r["steps"]:
        assert step["windows"] == 2 * step["sources"] and step["windows_per_source_min"] == 2
        assert step["all_delivered"] and not step["errors"]
        _sane(step["latency_seconds"], step["windows"])
        assert step["cpu"]["cores_used"] > 0 and step["senders_cores_used"] > 0
        assert step["sustained"] == (step["latency_seconds"]["p99"] <= 5.0 and not step["grows"])
    assert r["largest_sustained"] in (0, 1, 2)
    assert r["latency_bound_seconds"] == 5.0
    assert "| sources |" in capsys.readouterr().out


def test_capacity_staggered_sources_connect_to_mvrt(bench_live, setup):
    """--stagger: mvrt listens on each port, the senders connect one after another over a hop."""
    _, written = _run(bench_live, setup, "capacity", "--hop", "4", "--speed", "4", "--windows", "2",
                      "--sources", "2", "--stagger")
    r = written["results"]
    assert r["staggered"] is True
    (step,) = r["steps"]
    assert step["windows"] == 4 and step["all_delivered"] and not step["errors"]
    _sane(step["latency_seconds"], 4)
    assert step["senders_cores_used"] > 0  # both senders were started, measured and ended


def test_capacity_stops_at_the_first_count_not_sustained(bench_live, setup):
    """A bound no latency can meet: the first step fails and no larger N is tried."""
    _, written = _run(bench_live, setup, "capacity", "--hop", "4", "--speed", "4", "--windows", "2",
                      "--sources", "1,2", "--latency-bound", "0.000001")
    r = written["results"]
    assert [s["sources"] for s in r["steps"]] == [1]
    assert not r["steps"][0]["sustained"] and r["largest_sustained"] == 0


def test_soak_mode_reads_memory_at_both_marks(bench_live, setup, capsys):
    _, written = _run(bench_live, setup, "soak", "--hop", "0.5", "--speed", "8", "--windows", "12",
                      "--sample-at", "4")
    r = written["results"]
    assert r["windows"] == 12 and r["first_mark"] == 4
    assert set(r["memory_kib"]) == {"4", "12"}
    for mark in r["memory_kib"].values():
        assert 0 < mark["vm_rss_kib"] <= mark["vm_hwm_kib"]
    first, last = r["memory_kib"]["4"], r["memory_kib"]["12"]
    assert last["vm_hwm_kib"] >= first["vm_hwm_kib"]  # a peak never falls
    assert r["hwm_ratio"] == pytest.approx(last["vm_hwm_kib"] / first["vm_hwm_kib"], abs=1e-4)
    assert 1.0 <= r["hwm_ratio"] < 2.0
    _sane(r["latency_seconds"], 12)
    assert "peak RSS ratio" in capsys.readouterr().out


def test_bad_arguments_are_refused(bench_live, capsys):
    with pytest.raises(SystemExit):
        bench_live.parse_args(["capacity", "--sources", "4,x"])
    assert "--sources" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_live.parse_args(["soak", "--hop", "0"])
    assert "--hop" in capsys.readouterr().err


def test_listening_check_does_not_connect(bench_live):
    """is_listening reads /proc/net/tcp: a listener is seen, and no connection reaches it."""
    import socket

    import _live_support

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert not _live_support.is_listening(port)
        server.listen(1)
        assert _live_support.is_listening(port)
        server.settimeout(0.05)
        with pytest.raises(socket.timeout):
            server.accept()
