"""Activation ranges for symmetric INT8: minmax, entropy (KL) and percentile, in at most two passes.

Pass 1 (every method): ONNX Runtime's MinMax calibrator, whose augmented graph reduces each
tensor to its min and max inside the session, so it is fast; it gives |x|max per tensor.
Pass 2 (entropy / percentile): the FP32 graph with every calibrated tensor as an output; each
tensor's |x| goes into a fixed 2048-bin histogram over [0, |x|max] (np.bincount, no re-binning).
From that one histogram come both thresholds:
- entropy: TensorRT's recipe, the clipping threshold whose 128-level quantisation of the
  histogram has the smallest KL divergence from the clipped reference distribution (the
  zero bin, swollen by ReLU, counts as much as its neighbour);
- percentile: the |x| below which 99.999% of the values lie.
(ONNX Runtime's own histogram calibrators keep every batch's tensors and re-bin as the range
grows; on the bundled model its entropy pass took 14 minutes where this takes about 3.)
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from mvrt.errors import UsageError

__all__ = ["BINS", "LEVELS", "PERCENTILE", "RangeSet", "collect_ranges", "entropy_threshold", "percentile_threshold"]

METHODS = ("minmax", "entropy", "percentile")
BINS = 2048
COARSE_STEP = 8  # entropy search: every 8th clip point, then each bin around the best (8x fewer KL evaluations)
LEVELS = 128  # positive int8 levels of a symmetric quantiser
PERCENTILE = 99.999
CHUNK_SAMPLES = 16


class RangeSet:
    """Per-tensor symmetric thresholds for each method, from the calibration passes."""

    def __init__(self, absmax: dict[str, float], histograms: dict[str, np.ndarray] | None = None):
        self.absmax = absmax
        self.histograms = histograms
        self._cache: dict[str, dict[str, float]] = {}

    def thresholds(self, method: str) -> dict[str, float]:
        """|x| threshold per tensor; tensors without a histogram (outputs no Q/DQ uses) keep |x|max."""
        if method == "minmax":
            return dict(self.absmax)
        if self.histograms is None:
            raise UsageError(f"method {method} needs the histogram pass; collect ranges with it")
        if method not in self._cache:
            rule = entropy_threshold if method == "entropy" else percentile_threshold
            found = {name: rule(hist, self.absmax[name]) for name, hist in self.histograms.items() if self.absmax[name] > 0}
            self._cache[method] = {**self.absmax, **found}
        return dict(self._cache[method])

    def tensors_data(self, method: str):
        """ONNX Runtime's `TensorsData` with ranges (-t, t) for `method`."""
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

        data = {name: TensorData(lowest=np.float32(-t), highest=np.float32(t)) for name, t in self.thresholds(method).items()}
        return TensorsData(CalibrationMethod.MinMax, data)


def entropy_threshold(hist: np.ndarray, absmax: float, levels: int = LEVELS) -> float:
    """The |x| threshold minimising KL(reference || quantised) over clip points of the histogram."""
    hist = hist.astype(np.float64)
    bins = hist.size
    if hist[1:].sum() == 0:
        return float(absmax)
    hist[0] = hist[1]  # the spike of exact zeros after ReLU would otherwise dominate the search (as TensorRT does)
    tail = np.cumsum(hist[::-1])[::-1]  # tail[i] = hist[i:].sum()

    def kl(i: int) -> float:
        return _kl_at(hist, i, tail[i] if i < bins else 0.0, levels)

    coarse = min(range(levels, bins + 1, COARSE_STEP), key=kl)  # then every bin around the best
    best_i = min(range(max(levels, coarse - COARSE_STEP + 1), min(bins, coarse + COARSE_STEP - 1) + 1), key=kl)
    return float(absmax) * best_i / bins


def _kl_at(hist: np.ndarray, i: int, outliers: float, levels: int) -> float:
    """KL divergence of clipping at bin i and quantising bins [0, i) into `levels` levels."""
    reference = hist[:i].copy()
    reference[i - 1] += outliers
    nonzero = hist[:i] != 0
    merged = i // levels
    edges = np.arange(levels + 1) * merged
    edges[-1] = i  # the last level also takes the leftover bins
    sums = np.add.reduceat(hist[:i], edges[:-1])
    counts = np.add.reduceat(nonzero.astype(np.float64), edges[:-1])
    per_bin = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    quantised = np.repeat(per_bin, np.diff(edges)) * nonzero
    p_total, q_total = reference.sum(), quantised.sum()
    if p_total == 0 or q_total == 0:
        return np.inf
    p, q = reference / p_total, quantised / q_total
    mask = p > 0
    if np.any(q[mask] == 0):
        return np.inf
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def percentile_threshold(hist: np.ndarray, absmax: float, percentile: float = PERCENTILE) -> float:
    """The upper bin edge below which `percentile`% of the |x| values lie."""
    total = hist.sum()
    if total == 0:
        return float(absmax)
    index = int(np.searchsorted(np.cumsum(hist), total * percentile / 100.0))
    return float(absmax) * min(index + 1, hist.size) / hist.size


class _ListReader:
    """A CalibrationDataReader over a list of batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._batches = iter(batches)

    def get_next(self):
        return next(self._batches, None)


def _chunks(batches: Iterable[dict[str, np.ndarray]], samples: int) -> Iterator[list[dict[str, np.ndarray]]]:
    """Lists of consecutive batches holding about `samples` samples (at least one batch each)."""
    chunk, size = [], 0
    for batch in batches:
        chunk.append(batch)
        size += len(next(iter(batch.values())))
        if size >= samples:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _size(batch: dict[str, np.ndarray]) -> int:
    return len(next(iter(batch.values())))


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's calibrators print to stdout; keep stdout for mvrt's own output."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def collect_ranges(onnx_path: str | os.PathLike, batches_factory, methods: Sequence[str], op_types: Sequence[str], *,
                   total_samples: int, threads: int | None = None, progress: bool = True) -> RangeSet:
    """Ranges of the FP32 model's calibrated tensors; `batches_factory()` yields the batches (once per pass)."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise UsageError(f"unknown calibration method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    absmax = _minmax_pass(onnx_path, batches_factory(), op_types, total_samples, progress)
    if set(methods) <= {"minmax"}:
        return RangeSet(absmax)
    inputs = _quantised_inputs(onnx_path, op_types, absmax)
    return RangeSet(absmax, _histogram_pass(onnx_path, batches_factory(), inputs, total_samples, threads, progress))


def _quantised_inputs(onnx_path, op_types: Sequence[str], absmax: dict[str, float]) -> dict[str, float]:
    """The calibrated tensors Q/DQ nodes will actually sit on: activation inputs of the quantised ops."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    names = {v for node in model.graph.node if node.op_type in op_types for v in node.input if v in absmax}
    return {name: absmax[name] for name in sorted(names)}


def _minmax_pass(onnx_path, batches, op_types, total: int, progress: bool) -> dict[str, float]:
    from tqdm import tqdm

    from mvrt.calibration.quantize import ort_quantization

    calibrate = ort_quantization().calibrate
    with tempfile.TemporaryDirectory(prefix="mvrt-calibrate-") as tmp, \
            tqdm(total=total, desc="calibrate: ranges", unit="clip", disable=not progress, file=sys.stderr) as bar:
        with _quiet():
            calibrator = calibrate.create_calibrator(
                Path(onnx_path), list(op_types), augmented_model_path=str(Path(tmp) / "minmax.onnx"),
                calibrate_method=calibrate.CalibrationMethod.MinMax, extra_options={"symmetric": True})
        seen = 0
        for chunk in _chunks(batches, CHUNK_SAMPLES):
            with _quiet():
                calibrator.collect_data(_ListReader(chunk))
            size = sum(_size(b) for b in chunk)
            seen, _ = seen + size, bar.update(size)
        if not seen:
            raise UsageError("the calibration set is empty")
        with _quiet():
            data = calibrator.compute_data()
    return {name: float(np.max(np.abs(np.concatenate([np.ravel(v) for v in data[name].range_value]))))
            for name in data}


def _histogram_pass(onnx_path, batches, absmax: dict[str, float], total: int, threads: int | None,
                    progress: bool) -> dict[str, np.ndarray]:
    from tqdm import tqdm

    names = sorted(absmax)
    session = _full_tensor_session(onnx_path, names, threads)
    histograms = {name: np.zeros(BINS, dtype=np.int64) for name in names}
    with tqdm(total=total, desc="calibrate: histograms", unit="clip", disable=not progress, file=sys.stderr) as bar:
        for batch in batches:
            for name, values in zip(names, session.run(names, batch)):
                if absmax[name] > 0:
                    histograms[name] += _abs_histogram(values, absmax[name])
            bar.update(_size(batch))
    return histograms


def _abs_histogram(values: np.ndarray, absmax: float) -> np.ndarray:
    scaled = np.abs(values.ravel()) * np.float32(BINS / absmax)
    index = np.minimum(scaled.astype(np.int32), BINS - 1)
    return np.bincount(index, minlength=BINS)


def _full_tensor_session(onnx_path, names: Sequence[str], threads: int | None):
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names if n not in present)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
