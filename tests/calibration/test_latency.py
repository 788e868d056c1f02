"""Side-by-side ONNX Runtime CPU latency: rows, argument checks and the progress bar."""

import pytest

from mvrt.calibration.latency import LatencyRow, measure_latency
from mvrt.errors import UsageError


def test_rows_per_batch_size_with_a_progress_bar(tiny_models, capsys):
    onnx_path = tiny_models["slowfast"].onnx
    rows = measure_latency(onnx_path, onnx_path, (1, 2), rounds=2, threads=1, progress=True)
    assert [(r.batch_size, r.rounds) for r in rows] == [(1, 2), (2, 2)]
    assert all(r.fp32_ms > 0 and r.int8_ms > 0 for r in rows)
    err = capsys.readouterr().err
    assert "latency FP32 vs INT8" in err and "4/4" in err


def test_speedup_is_fp32_time_over_int8_time():
    row = LatencyRow(batch_size=8, rounds=3, fp32_ms=90.0, int8_ms=180.0)
    assert row.speedup == 0.5 and row.to_dict()["int8_speedup"] == 0.5


@pytest.mark.parametrize("rounds, sizes", [(0, (1,)), (2, ()), (2, (0, 1))])
def test_bad_arguments_are_usage_errors(tiny_models, rounds, sizes):
    onnx_path = tiny_models["slowfast"].onnx
    with pytest.raises(UsageError, match="latency needs rounds >= 1 and batch sizes >= 1"):
        measure_latency(onnx_path, onnx_path, sizes, rounds=rounds)
