"""Range methods: thresholds against direct references, and the two calibration passes."""

import numpy as np
import pytest

from mvrt.calibration.ranges import BINS, LEVELS, _kl_at, collect_ranges, entropy_threshold, percentile_threshold
from mvrt.calibration.quantize import OP_TYPES
from mvrt.errors import UsageError
from mvrt.export.parity import check_batch
from mvrt.runtime.model_meta import read_onnx_config


def _kl_reference(hist: np.ndarray, i: int, levels: int) -> float:
    """TensorRT's entropy step written out with loops: clip at bin i, merge into `levels`, expand, KL."""
    p = hist[:i].astype(float).copy()
    p[i - 1] += hist[i:].sum()
    merged = i // levels
    q = np.zeros(i)
    for j in range(levels):
        start = j * merged
        stop = i if j == levels - 1 else start + merged
        used = [k for k in range(start, stop) if hist[k] != 0]
        for k in used:
            q[k] = hist[start:stop].sum() / len(used)
    p, q = p / p.sum(), q / q.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask]))) if np.all(q[mask] > 0) else np.inf


def _hist(values: np.ndarray, absmax: float) -> np.ndarray:
    return np.bincount(np.minimum((np.abs(values) * BINS / absmax).astype(int), BINS - 1), minlength=BINS)


def test_entropy_threshold_matches_a_loop_reference_and_clips_outliers():
    rng = np.random.default_rng(0)
    values = rng.standard_normal(200_000)
    values[:3] = 30.0  # rare outliers: minmax would waste most levels on them
    hist = _hist(values, 30.0)
    tail = hist[::-1].cumsum()[::-1]
    for i in (LEVELS, 200, 333, 1000, BINS - 1, BINS):
        outliers = tail[i] if i < BINS else 0
        assert _kl_at(hist.astype(float), i, outliers, LEVELS) == pytest.approx(_kl_reference(hist, i, LEVELS), rel=1e-9)
    found = entropy_threshold(hist, 30.0)
    flat = hist.astype(float)
    flat[0] = flat[1]  # the zero-bin rule entropy_threshold applies
    tail = flat[::-1].cumsum()[::-1]
    kl = [_kl_at(flat, i, tail[i] if i < BINS else 0, LEVELS) for i in range(LEVELS, BINS + 1)]
    kl_found = kl[round(found * BINS / 30.0) - LEVELS]
    assert kl_found <= min(kl[::8]) and kl_found <= 1.25 * min(kl)  # coarse-to-fine: near the global minimum
    assert 2.0 < found < 6.0  # outliers clipped, the Gaussian body kept


def test_percentile_threshold_keeps_the_share_of_values():
    values = np.linspace(0, 10, 100_001)
    hist = _hist(values, 10.0)
    assert percentile_threshold(hist, 10.0, percentile=90.0) == pytest.approx(9.0, abs=2 * 10 / BINS)
    assert percentile_threshold(hist, 10.0, percentile=100.0) == pytest.approx(10.0)
    assert percentile_threshold(np.zeros(BINS, dtype=np.int64), 3.0) == 3.0


def test_collect_ranges_gives_minmax_as_the_largest_and_others_inside(tiny_models):
    model = tiny_models["slowfast"]
    batches = [check_batch(read_onnx_config(model.onnx), 2, seed=s) for s in range(2)]
    ranges = collect_ranges(model.onnx, lambda: iter(batches), ("minmax", "entropy", "percentile"), OP_TYPES,
                            total_samples=4, progress=False)
    minmax, entropy, pct = (ranges.thresholds(m) for m in ("minmax", "entropy", "percentile"))
    assert set(minmax) == set(entropy) == set(pct) and len(minmax) > 10
    assert 0 < len(ranges.histograms) < len(minmax)  # histograms only where Q/DQ nodes will sit
    assert any(entropy[name] < minmax[name] for name in ranges.histograms)
    first_input = "audio_fast"  # a float graph input a Conv reads directly
    assert "video" not in minmax and "/Cast_output_0" not in minmax  # contract 2's uint8 frames: no range
    expected = max(float(np.abs(b[first_input]).max()) for b in batches)
    assert minmax[first_input] == pytest.approx(expected, rel=1e-6)
    for name, top in minmax.items():
        assert 0 <= entropy[name] <= top * (1 + 1e-6) and 0 <= pct[name] <= top * (1 + 1e-6)
    data = ranges.tensors_data("entropy")
    low, high = data[first_input].range_value
    assert float(low) == pytest.approx(-entropy[first_input]) and float(high) == pytest.approx(entropy[first_input])


def test_minmax_only_skips_the_histogram_pass(tiny_models):
    model = tiny_models["slowfast"]
    batches = [check_batch(read_onnx_config(model.onnx), 1, seed=0)]  # contract 2: uint8 video
    ranges = collect_ranges(model.onnx, lambda: iter(batches), ("minmax",), OP_TYPES, total_samples=1, progress=False)
    assert ranges.histograms is None
    with pytest.raises(UsageError, match="needs the histogram pass"):
        ranges.thresholds("entropy")
    with pytest.raises(UsageError, match="unknown calibration method"):
        collect_ranges(model.onnx, lambda: iter(batches), ("kl",), OP_TYPES, total_samples=1, progress=False)
