"""What `train` and `pretrain` share: the run's set-up (torch, device, feature cache), the schedule.

Progress goes to the `mvrt.training` loggers at INFO; `mvrt train` / `mvrt pretrain` show it on
stderr, API callers see it when they configure logging.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mvrt.config import AudioNorm, ModelConfig
from mvrt.errors import MissingDependencyError, UsageError
from mvrt.training.settings import LoopSettings

if TYPE_CHECKING:
    import torch

    from mvrt.clip_cache import CacheReport, FeatureCache
    from mvrt.data import Clip

__all__ = ["RunStart", "adamw", "audio_norm_stats", "batches", "epoch_start", "require_torch", "set_cosine_lr",
           "start_run", "torch_threads"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStart:
    """A checked run: its data folder and output, the network config (no audio statistics yet), the cache."""

    root: Path
    out: Path
    config: ModelConfig
    cache: "FeatureCache"
    progress: bool

    def features(self, clips: Sequence["Clip"], name: str) -> "CacheReport":
        """The cached front-end tensors of `clips` (the `name` split); none usable is an error."""
        report = self.cache.build(clips, progress=self.progress, desc=f"features {name}")
        log.info("%s: %s", name, report.summary())
        if not report.entries:
            raise UsageError(f"{self.root}: no usable {name} clips (all failed to decode)")
        return report

    def final_config(self, train_paths: Sequence[Path], trained_on: str) -> ModelConfig:
        """The config the checkpoint carries: audio statistics over `train_paths` and the provenance line."""
        return self.config.replace(audio_norm=audio_norm_stats(train_paths, self.config), trained_on=trained_on)


def start_run(settings: LoopSettings, data_root: str | os.PathLike, out: str | os.PathLike,
              cache_dir: str | os.PathLike | None, *, command: str, **config_fields) -> RunStart:
    """Check torch and the device, then open the feature cache (default `<data_root>/.mvrt-cache`).

    `command` ("train", "pretrain") names the run in messages; `config_fields` are further
    ModelConfig fields (train's dropout).
    """
    require_torch()
    check_device(settings.device, command)
    from mvrt.clip_cache import FeatureCache

    root = Path(data_root)
    config = settings.model_config(**config_fields)
    cache = FeatureCache(cache_dir if cache_dir is not None else root / ".mvrt-cache", config)
    return RunStart(root, Path(out), config, cache, settings.progress)


def check_device(device: str, command: str) -> None:
    """A CUDA device must be one torch sees (the form of `device` is checked by the settings)."""
    if device.startswith("cuda") and not require_torch().cuda.is_available():
        raise UsageError(f"device {device}: torch sees no CUDA device; {command} with device='cpu'", setting="device")


def audio_norm_stats(paths: Sequence[Path], config: ModelConfig) -> tuple[tuple[str, AudioNorm], ...]:
    """Per audio input, per channel mean/std (population) over the raw cached features."""
    from mvrt.clip_cache import load_entry

    sums = {name: np.zeros((2, 3)) for name in config.audio_inputs}  # (channel, [n, sum, sum of squares])
    for path in paths:
        raw = load_entry(path)
        for name, acc in sums.items():
            x = raw[name].astype(np.float64).reshape(2, -1)  # (2, n_mels * frames)
            acc += np.stack([np.full(2, x.shape[1]), x.sum(1), np.square(x).sum(1)], axis=1)
    norms = []
    for name, (count, total, squares) in ((n, a.T) for n, a in sums.items()):
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        std = np.where(std > 1e-8, std, 1.0)
        norms.append((name, AudioNorm(tuple(map(float, mean)), tuple(map(float, std)))))
    return tuple(sorted(norms))


def adamw(model: "torch.nn.Module", settings: LoopSettings) -> "torch.optim.AdamW":
    """AdamW over every parameter of `model` at the settings' peak lr and weight decay."""
    torch = require_torch()
    return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)


def epoch_start(optimizer, settings: LoopSettings, epoch: int, count: int) -> tuple[float, np.ndarray]:
    """Set the cosine lr of 1-based `epoch`; returns it and the epoch's shuffled order of `count` items."""
    lr = set_cosine_lr(optimizer, settings.lr, epoch, settings.epochs)
    return lr, np.random.default_rng([settings.seed, epoch]).permutation(count)


def set_cosine_lr(optimizer, peak_lr: float, epoch: int, epochs: int) -> float:
    """Set and return the cosine-decayed learning rate of 1-based `epoch` out of `epochs`."""
    lr = peak_lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def batches(items: list, size: int) -> list[list]:
    """`items` in consecutive slices of `size` (the last may be shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Use `threads` torch CPU threads inside the block (a process-wide setting), then restore."""
    torch = require_torch()
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def require_torch():
    """torch, or a one-line error saying how to install it."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "torch", "training") from None
    return torch
