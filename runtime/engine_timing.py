"""Engine latency and throughput on synthetic inputs of the model's shapes (`mvrt bench`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from mvrt.errors import UsageError


@dataclass(frozen=True)
class BenchRow:
    """Latencies (ms) of `iterations` timed calls at one batch size, and throughput."""

    batch_size: int
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    samples_per_second: float

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def synthetic_feeds(input_shapes: dict[str, tuple[int, ...]], batch: int, seed: int = 0,
                    input_dtypes: Mapping[str, str | np.dtype] | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs with a batch axis: standard-normal float32, or uniform 0..255 for a uint8 input
    (tensor contract 2's `video`) where `input_dtypes` (name -> dtype; float32 when absent) says so."""
    rng = np.random.default_rng(seed)
    dtypes = {name: np.dtype((input_dtypes or {}).get(name, np.float32)) for name in input_shapes}
    return {name: _random(rng, (batch, *shape), dtypes[name]) for name, shape in input_shapes.items()}


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)


def bench_engine(engine, batch_sizes: Sequence[int], *, warmup: int = 3, iterations: int = 20,
                 clock: Callable[[], float] = time.perf_counter) -> list[BenchRow]:
    """Time `engine.infer` per batch size after `warmup` untimed calls."""
    if warmup < 0 or iterations < 1:
        raise UsageError(f"need warmup >= 0 and iterations >= 1, got {warmup} and {iterations}")
    if any(b < 1 for b in batch_sizes):
        raise UsageError(f"batch sizes must be at least 1, got {list(batch_sizes)}")
    if engine.max_batch is not None and max(batch_sizes) > engine.max_batch:
        raise UsageError(f"batch size {max(batch_sizes)} exceeds the engine's maximum batch {engine.max_batch}")
    return [_bench_one(engine, batch, warmup, iterations, clock) for batch in batch_sizes]


def _bench_one(engine, batch: int, warmup: int, iterations: int, clock) -> BenchRow:
    feeds = synthetic_feeds(engine.input_shapes, batch, input_dtypes=getattr(engine, "input_dtypes", None))
    for _ in range(warmup):
        engine.infer(feeds)
    seconds = np.empty(iterations)
    for i in range(iterations):
        start = clock()
        engine.infer(feeds)  # returns host logits: the time includes the device -> host copy
        seconds[i] = clock() - start
    ms = seconds * 1e3
    return BenchRow(batch, iterations, float(np.percentile(ms, 50)), float(np.percentile(ms, 90)),
                    float(np.percentile(ms, 99)), float(ms.mean()), float(batch / seconds.mean()))


_JSON_ONLY = ("providers", "provider_options")  # in the JSON; the title shows `provider` (the one used) instead


def settings_title(setting: dict) -> str:
    """The table's header line: model, then architecture, backend and precision, then the other settings."""
    shown = ("model", "arch", "backend", "precision")
    rest = ", ".join(f"{k}={v}" for k, v in setting.items()
                     if k not in shown and k not in _JSON_ONLY and v not in (None, False, [], {}))
    how = ", ".join(str(setting[k]) for k in shown[1:] if setting.get(k))
    return f"mvrt bench: {setting.get('model')} ({how})" + (f"; {rest}" if rest else "")


def render_table(rows: Sequence[BenchRow], title: str) -> str:
    lines = [title, f"{'batch':>6} {'p50 ms':>10} {'p90 ms':>10} {'p99 ms':>10} {'mean ms':>10} {'samples/s':>10}"]
    for r in rows:
        lines.append(f"{r.batch_size:>6} {r.p50_ms:>10.2f} {r.p90_ms:>10.2f} {r.p99_ms:>10.2f} "
                     f"{r.mean_ms:>10.2f} {r.samples_per_second:>10.1f}")
    return "\n".join(lines) + "\n"
