"""Smoke run of bench/bench_kserve.py --quick with a small model (skipped without MLServer/tritonclient)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from mvrt.config import FrontendConfig

from kserve_server import require_kserve

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_kserve():
    sys.path.insert(0, str(BENCH_DIR))
    try:
        import bench_kserve

        yield bench_kserve
    finally:
        sys.path.remove(str(BENCH_DIR))


def test_quick_run_times_every_path_side_by_side(bench_kserve, tmp_path, capsys):
    require_kserve()
    pytest.importorskip("torch")
    from model_factory import make_tiny_model

    onnx = make_tiny_model(tmp_path / "model", frontend=FrontendConfig(window_seconds=4.0, image_size=32, n_mels=32))[1]
    out = tmp_path / "bench.json"
    returned = bench_kserve.main(["--quick", "--model", str(onnx), "--threads", "1", "--json", str(out),
                                  "--max-wall-seconds", "120"])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))
    assert written["agree"] is True and written["settings"]["batch_sizes"] == [1, 2]
    rows = written["rows"]
    assert [(r["batch"], r["path"]) for r in rows] == [(b, p) for b in (1, 2) for p in ("local", "grpc", "http")]
    for row in rows:
        assert row["windows"] >= 2 and math.isfinite(row["per_window_seconds"]) and row["per_window_seconds"] > 0
        assert row["per_window_seconds"] == pytest.approx(row["per_call_seconds"] / row["batch"])
        if row["path"] == "local":
            assert row["max_abs_dp"] is None and row["vs_local"] == pytest.approx(1.0)
        else:
            assert row["max_abs_dp"] <= 1e-5 and row["vs_local"] > 0
    assert rows[2]["http_binary_data"] is False  # MLServer 1.7 takes JSON only
    table = capsys.readouterr().out
    assert "| batch | path | per call (s) |" in table and "http (JSON)" in table and "grpc" in table


def test_bad_arguments_are_refused(bench_kserve, capsys):
    for argv in (["--batch-sizes", "1,x"], ["--protocols", "rest"], ["--windows", "0"]):
        with pytest.raises(SystemExit):
            bench_kserve.parse_args(argv)
    assert "--protocols" in capsys.readouterr().err
