"""The engine interface every backend implements (DESIGN §7).

An engine is a context manager: it loads its model on enter (or on the first `infer`) and
releases it on exit. `infer` checks its feeds before they reach the backend.

Padding: a backend whose model runs only some batch sizes says so with `fixed_batch` (a plan
whose profile has MIN == MAX, an ONNX graph whose batch axis is a number) or `min_batch` (a
plan's profile MIN). A smaller batch is padded with zero rows (each input's dtype) up to that
size, run, and the padding's logits dropped, so the last, partial batch of a run does not abort
it; a batch over `fixed_batch` / `max_batch` is a UsageError.
"""

from __future__ import annotations

import abc
import logging
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from mvrt.config import ModelConfig
from mvrt.errors import BackendError, UsageError

log = logging.getLogger(__name__)


class Engine(abc.ABC):
    """Runs one model: feeds (name -> array with a batch axis, of the dtype the model's contract
    gives each input: float32, or uint8 for contract 2's `video`) to logits (B, classes)."""

    name: str = ""

    def __init__(self, path: str | os.PathLike, config: ModelConfig, max_batch: int | None = None):
        self.path = Path(path)
        self.config = config
        self.input_shapes: dict[str, tuple[int, ...]] = config.input_shapes()  # without batch
        self.input_dtypes: dict[str, np.dtype] = {n: np.dtype(d) for n, d in config.input_dtypes().items()}
        self.max_batch = max_batch
        # Set by a backend once it knows its model (before or on load): the one batch size it runs,
        # or the smallest; a smaller batch is padded with zero rows (see `batch_to_run`).
        self.fixed_batch: int | None = None
        self.min_batch: int = 1
        self._padding_logged = False
        self._loaded = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r}, arch={self.config.arch!r}, loaded={self._loaded})"

    def __enter__(self) -> "Engine":
        self.load()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def load(self) -> None:
        if not self._loaded:
            self._load()
            self._loaded = True

    def close(self) -> None:
        if self._loaded:
            self._release()
            self._loaded = False

    def infer(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Logits (B, classes) float32 for one batch of checked feeds (padded first when the model needs it)."""
        checked, batch = self.check_feeds(feeds)
        self.load()
        run = self.batch_to_run(batch)  # the backend may know fixed_batch only once loaded
        if run > batch:
            self._log_padding(batch, run)
            checked = pad_feeds(checked, run)
        logits = np.asarray(self._infer(checked), dtype=np.float32)
        expected = (run, len(self.config.classes))
        if logits.shape != expected:
            raise BackendError(f"{self.path}: {self.name} returned logits of shape {logits.shape}, expected {expected}")
        return logits[:batch]  # (B, classes): the padding's rows dropped

    def batch_to_run(self, batch: int) -> int:
        """The batch size the backend is given for `batch` samples: `fixed_batch` when set, else at least
        `min_batch`; UsageError when `batch` is over what the model runs."""
        self._check_batch_limit(batch)
        if self.fixed_batch is not None:
            return self.fixed_batch
        return max(batch, self.min_batch)

    def _check_batch_limit(self, batch: int) -> None:
        if self.fixed_batch is not None and batch > self.fixed_batch:
            raise UsageError(f"batch size {batch} exceeds this engine's fixed batch {self.fixed_batch} "
                             f"({self.path.name} runs batches of exactly {self.fixed_batch}; smaller ones are padded)")
        if self.max_batch is not None and batch > self.max_batch:
            raise UsageError(f"batch size {batch} exceeds this engine's maximum batch {self.max_batch}")

    def _log_padding(self, batch: int, run: int) -> None:
        """Say once per engine that batches are padded (it costs the padding's compute)."""
        if not self._padding_logged:
            self._padding_logged = True
            why = f"its fixed batch {self.fixed_batch}" if self.fixed_batch is not None else f"its smallest batch {self.min_batch}"
            log.info("%s: %s runs %s: a batch of %d is padded with %d zero row(s), whose outputs are dropped "
                     "(said once)", self.name, self.path.name, why, batch, run - batch)

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """Feeds as contiguous arrays (each of its input's dtype) in input order, and their common batch size."""
        if not isinstance(feeds, Mapping):
            raise UsageError(f"feeds must map input names to arrays, got {type(feeds).__name__}")
        names = self.config.input_names
        missing = [n for n in names if n not in feeds]
        unexpected = sorted(set(feeds) - set(names))
        if missing or unexpected:
            raise UsageError(
                f"feeds do not match the model's inputs: missing {missing or 'none'}, unexpected "
                f"{unexpected or 'none'} (expected {', '.join(names)})"
            )
        checked = {name: _check_array(name, feeds[name], self.input_shapes[name], self.input_dtypes[name]) for name in names}
        batches = {name: a.shape[0] for name, a in checked.items()}
        if len(set(batches.values())) != 1:
            raise UsageError(f"inputs have different batch sizes: {batches}")
        batch = next(iter(batches.values()))
        if batch < 1:
            raise UsageError("feeds have an empty batch (batch size 0)")
        self._check_batch_limit(batch)
        return checked, batch

    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _release(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


def pad_feeds(feeds: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """Each feed with zero rows (of its dtype) appended up to `batch` rows: (B, ...) -> (batch, ...)."""
    padded = {}
    for name, value in feeds.items():
        out = np.zeros((batch, *value.shape[1:]), dtype=value.dtype)  # (batch, *per-sample shape)
        out[: value.shape[0]] = value
        padded[name] = out
    return padded


def _check_array(name: str, value: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise UsageError(f"input {name!r} must be a numpy array, got {type(value).__name__}")
    if value.dtype != dtype:
        how = ("the model takes frames as uint8 (tensor contract 2); pass the decoded frames, not normalised floats"
               if dtype == np.uint8 else f"convert with .astype(np.{dtype.name})")
        raise UsageError(f"input {name!r} must be {dtype.name}, got {value.dtype} ({how})")
    if value.ndim != len(shape) + 1 or tuple(value.shape[1:]) != shape:
        raise UsageError(f"input {name!r} has shape {tuple(value.shape)}, expected (batch, {', '.join(map(str, shape))})")
    return np.ascontiguousarray(value)
