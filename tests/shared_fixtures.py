"""Session fixtures shared by pipeline and CLI tests: tiny models and short real clips."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mvrt.config import ModelConfig


@dataclass(frozen=True)
class TinyModel:
    checkpoint: Path
    onnx: Path
    config: ModelConfig


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, TinyModel]:
    """Seeded tiny slowfast and musicvideo models with 4 s windows (checkpoint + ONNX)."""
    pytest.importorskip("torch")
    from model_factory import make_tiny_model

    folder = tmp_path_factory.mktemp("models")
    return {arch: TinyModel(*make_tiny_model(folder, arch)) for arch in ("slowfast", "musicvideo")}


def _moving_clip(path: Path, seconds: float, fps: int = 10, size: tuple[int, int] = (96, 64), seed: int = 0) -> Path:
    """H.264 + AAC clip with a moving gradient and a chord: content every window differs."""
    from mvrt.standin import write_clip

    rng = np.random.default_rng(seed)
    count = int(seconds * fps)
    w, h = size
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    phase = np.linspace(0, 6 * np.pi, count)[:, None, None, None]
    frames = 127 + 120 * np.sin(phase + 6 * x[None] + 3 * y[None] + np.array([0, 2, 4])[None, None, None])
    frames = frames.astype(np.uint8)  # (T, H, W, 3)
    rate = 22050
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    audio = (0.1 * tone + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)
    return write_clip(path, np.stack([audio, audio]), rate, frames, fps)


@pytest.fixture(scope="session")
def clip_10s(tmp_path_factory) -> Path:
    return _moving_clip(tmp_path_factory.mktemp("clips") / "clip10.mp4", 10.0)


@pytest.fixture(scope="session")
def clip_40s(tmp_path_factory) -> Path:
    return _moving_clip(tmp_path_factory.mktemp("clips") / "clip40.mp4", 40.0, seed=1)


@pytest.fixture(scope="session")
def calib_data(tmp_path_factory, tiny_models):
    """A small stand-in set (2 train + 2 validation clips per class, 2 s) and the tiny slowfast."""
    from mvrt.standin import generate_standin

    root = tmp_path_factory.mktemp("calib-data")
    generate_standin(root, clips_per_class={"train": 2, "validation": 2}, seconds=2.0, width=64, height=48,
                     splits=("train", "validation"), progress=False)
    return root, tiny_models["slowfast"]


def validation_feeds(root: Path, config: ModelConfig, cache: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(labels, one batch of model inputs) of the validation split, through the feature cache."""
    from mvrt.data import discover
    from mvrt.clip_cache import FeatureCache, load_batch

    entries = FeatureCache(cache, config).build(discover(root, "validation"), progress=False).entries
    return np.array([clip.label for clip, _ in entries]), load_batch([p for _, p in entries], config)
