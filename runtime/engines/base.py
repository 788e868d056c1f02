"""The engine interface every backend implements (DESIGN §7).

An engine is a context manager: it loads its model on enter (or on the first `infer`) and
releases it on exit. `infer` checks its feeds before they reach the backend.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from mvrt.config import ModelConfig
from mvrt.errors import BackendError, UsageError


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
        """Logits (B, classes) float32 for one batch of checked feeds."""
        checked, batch = self.check_feeds(feeds)
        self.load()
        logits = np.asarray(self._infer(checked), dtype=np.float32)
        expected = (batch, len(self.config.classes))
        if logits.shape != expected:
            raise BackendError(f"{self.path}: {self.name} returned logits of shape {logits.shape}, expected {expected}")
        return logits

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
        if self.max_batch is not None and batch > self.max_batch:
            raise UsageError(f"batch size {batch} exceeds this engine's maximum batch {self.max_batch}")
        return checked, batch

    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _release(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


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
