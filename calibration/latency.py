"""INT8 against FP32 latency on ONNX Runtime CPU, measured side by side.

The two sessions run alternately (order flipped every round) on the same synthetic batch, so
machine noise hits both alike; the report gives medians and their ratio. INT8 is not always
faster on a CPU: without VNNI (AVX512-VNNI / AVX-VNNI) ONNX Runtime's int8 convolutions,
especially 3-D ones, can be slower than float32. The report names the CPU features it saw.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mvrt.errors import UsageError

__all__ = ["LatencyRow", "cpu_int8_features", "measure_latency"]


@dataclass(frozen=True)
class LatencyRow:
    batch_size: int
    rounds: int
    fp32_ms: float  # median per call
    int8_ms: float

    @property
    def speedup(self) -> float:
        """FP32 time over INT8 time: above 1 means INT8 is faster."""
        return self.fp32_ms / self.int8_ms

    def to_dict(self) -> dict:
        return {"batch_size": self.batch_size, "rounds": self.rounds, "fp32_ms": round(self.fp32_ms, 3),
                "int8_ms": round(self.int8_ms, 3), "int8_speedup": round(self.speedup, 3)}


def cpu_int8_features() -> list[str]:
    """The int8 dot-product extensions this CPU reports (Linux /proc/cpuinfo), e.g. avx512_vnni."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    wanted = ("avx512_vnni", "avx_vnni", "avx512bw", "amx_int8", "avx2")
    return [flag for flag in wanted if flag in flags]


def measure_latency(fp32_path: str | os.PathLike, int8_path: str | os.PathLike, batch_sizes: Sequence[int] = (1,), *,
                    rounds: int = 5, threads: int | None = None, progress: bool = False) -> list[LatencyRow]:
    """Median latency of both models on ONNX Runtime CPU, alternating calls."""
    from tqdm import tqdm

    from mvrt.runtime.engine_timing import synthetic_feeds
    from mvrt.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    if rounds < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise UsageError(f"latency needs rounds >= 1 and batch sizes >= 1, got {rounds} and {list(batch_sizes)}")
    rows = []
    bar = tqdm(total=len(batch_sizes) * rounds, desc="latency FP32 vs INT8", unit="round", disable=not progress)
    with bar, OnnxRuntimeEngine(fp32_path, providers="cpu", threads=threads) as fp32, \
            OnnxRuntimeEngine(int8_path, providers="cpu", threads=threads) as int8:
        for batch in batch_sizes:
            fp32_ms, int8_ms = _median_ms(fp32, int8, _feeds(fp32, batch, synthetic_feeds), rounds, bar)
            rows.append(LatencyRow(batch, rounds, fp32_ms, int8_ms))
    return rows


def _feeds(engine, batch: int, synthetic_feeds) -> dict[str, np.ndarray]:
    """Seeded synthetic inputs of the engine's dtypes: random frames for a uint8 `video` (contract 2)."""
    feeds = synthetic_feeds(engine.input_shapes, batch)
    rng = np.random.default_rng(0)
    for name, dtype in engine.input_dtypes.items():
        if dtype == np.uint8:
            feeds[name] = rng.integers(0, 256, feeds[name].shape, dtype=np.uint8)
    return feeds


def _median_ms(fp32, int8, feeds: dict[str, np.ndarray], rounds: int, bar) -> tuple[float, float]:
    """Median milliseconds per call of both engines, the order flipped every round."""
    fp32.infer(feeds), int8.infer(feeds)  # warm-up
    times = np.empty((rounds, 2))
    for r in range(rounds):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            (fp32, int8)[which].infer(feeds)
            times[r, which] = time.perf_counter() - start
        bar.update()
    fp32_ms, int8_ms = np.median(times, axis=0) * 1e3
    return float(fp32_ms), float(int8_ms)
