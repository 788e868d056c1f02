"""On-disk cache of the front-end tensors of every clip, so that epochs never decode again.

Layout: `<cache>/<frontend key>/<clip fingerprint>.npz`, one window per clip (the clip's
first window, `window_at(path, config, 0.0)` semantics). Each entry holds, exactly as the
front-end computes them:

- `frames`: uint8 (frames, size, size, 3) RGB, normalised at load time by `normalize_frames`;
- one float32 (2, n_mels, T) array per audio input, NOT normalised: the model's `audio_norm`
  is applied at load time with the same arithmetic as `mvrt.runtime.features.audio_input`.

The frontend key hashes `FrontendConfig`, the architecture's audio rates and frame counts and
`FRONTEND_VERSION`. The clip fingerprint is sha256 over (size, mtime_ns, first MiB, last MiB)
of its file(s): fast on multi-MB videos, and any rewrite changes mtime; a rewrite that keeps
size, mtime and both ends would go unnoticed (delete the entry, or the cache, then).
Entries are written atomically (temp file + rename), so an interrupted build resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mvrt.config import ModelConfig
from mvrt.data import Clip
from mvrt.errors import MvrtError, UsageError
from mvrt.runtime.features import audio_input, normalize_frames
from mvrt.runtime.windows import Window, slow_indices

__all__ = ["FRONTEND_VERSION", "CacheReport", "FeatureCache", "clip_fingerprint", "frontend_key"]

# Bump when the front-end's output for the same parameters changes (invalidates caches).
FRONTEND_VERSION = 1
_MIB = 1 << 20
_log = logging.getLogger(__name__)


def frontend_params(config: ModelConfig) -> dict:
    """Everything the cached tensors depend on besides the clip itself."""
    return {
        "frontend": dataclasses.asdict(config.frontend),
        "audio_inputs": config.audio_inputs,
        "video_inputs": config.video_inputs,
        "frontend_version": FRONTEND_VERSION,
    }


def frontend_key(config: ModelConfig) -> str:
    """Short hex key of `frontend_params(config)`."""
    text = json.dumps(frontend_params(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def clip_fingerprint(clip: Clip) -> str:
    """sha256 of (size, mtime_ns, first MiB, last MiB) of the clip's file(s)."""
    digest = hashlib.sha256()
    for path in dict.fromkeys((clip.audio_path, clip.video_path)):
        stat = os.stat(path)
        digest.update(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
        with open(path, "rb") as f:
            digest.update(f.read(_MIB))
            if stat.st_size > _MIB:
                f.seek(max(_MIB, stat.st_size - _MIB))
                digest.update(f.read(_MIB))
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheReport:
    """What `FeatureCache.build` did; `failed` holds (clip, one-line error)."""

    computed: int
    cached: int
    failed: tuple[tuple[Clip, str], ...] = field(default=(), repr=False)
    entries: tuple[tuple[Clip, Path], ...] = field(default=(), repr=False)

    @property
    def failed_count(self) -> int:
        return len(self.failed)

    def summary(self) -> str:
        return f"{self.computed} computed, {self.cached} cached, {self.failed_count} failed"


class FeatureCache:
    """The cached front-end tensors of clips for one model config's front-end."""

    def __init__(self, root: str | os.PathLike, config: ModelConfig, *, implementation: str = "auto"):
        self.config = config
        self.folder = Path(root) / frontend_key(config)
        self.implementation = implementation

    def path_for(self, clip: Clip) -> Path:
        return self.folder / f"{clip_fingerprint(clip)}.npz"

    def build(self, clips: Sequence[Clip], *, progress: bool = True, desc: str = "features") -> CacheReport:
        """Compute every clip not cached yet; a clip that fails is recorded and skipped."""
        from tqdm import tqdm

        self._prepare_folder()
        computed = cached = 0
        failed, entries = [], []
        with tqdm(clips, desc=desc, unit="clip", file=sys.stderr, disable=not progress) as bar:
            for clip in bar:
                try:
                    path = self.path_for(clip)
                    if path.is_file():
                        cached += 1
                    else:
                        _write_atomic(path, compute_clip_arrays(clip, self.config, self.implementation))
                        computed += 1
                except (MvrtError, OSError) as exc:
                    message = " ".join(str(exc).split())
                    failed.append((clip, message))
                    bar.write(f"mvrt: skipped {clip.video_path}: {message}", file=sys.stderr)
                    continue
                entries.append((clip, path))
        return CacheReport(computed, cached, tuple(failed), tuple(entries))

    def _prepare_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            params = self.folder / "frontend.json"
            if not params.is_file():
                params.write_text(json.dumps(frontend_params(self.config), indent=2, sort_keys=True))
        except OSError as exc:
            raise UsageError(f"{self.folder}: cannot create the feature cache: {exc.strerror}") from None


def load_entry(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The raw arrays of one cache entry (no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def entry_features(raw: dict[str, np.ndarray], config: ModelConfig) -> dict[str, np.ndarray]:
    """Network inputs (no batch axis) from raw cached arrays, normalised with `config`."""
    feeds = {}
    for name in config.audio_inputs:
        norm = config.norm_for(name)
        mean = np.asarray(norm.mean, dtype=np.float32)[:, None, None]  # (2, 1, 1)
        std = np.asarray(norm.std, dtype=np.float32)[:, None, None]  # (2, 1, 1)
        feeds[name] = ((raw[name] - mean) / std).astype(np.float32, copy=False)
    video = normalize_frames(raw["frames"], config.frontend)  # (3, T, H, W)
    for name, count in config.video_inputs.items():
        feeds[name] = video if count == video.shape[1] else np.ascontiguousarray(video[:, slow_indices(video.shape[1], count)])
    return feeds


def load_batch(paths: Sequence[str | os.PathLike], config: ModelConfig) -> dict[str, np.ndarray]:
    """Stacked normalised inputs (B, ...) of several cache entries."""
    items = [entry_features(load_entry(p), config) for p in paths]
    return {name: np.stack([item[name] for item in items]) for name in config.input_names}


def compute_clip_arrays(clip: Clip, config: ModelConfig, implementation: str = "auto") -> dict[str, np.ndarray]:
    """Raw arrays of the clip's first window: uint8 frames and un-normalised audio inputs."""
    from mvrt.runtime.decode import iter_window_audio, iter_window_frames

    fe = config.frontend
    window = clip_window(clip, config)
    rates = sorted(set(config.audio_inputs.values()))
    samples = _first(iter_window_audio(clip.audio_path, [window], rates, fe.window_seconds), clip.audio_path)
    frames = _first(iter_window_frames(clip.video_path, [window], frames=fe.frames, size=fe.image_size), clip.video_path)
    raw_config = config.replace(audio_norm=())  # mean 0, std 1: the exact log-mel/phase
    arrays = {name: audio_input(samples, sr, name, raw_config, implementation) for name, sr in config.audio_inputs.items()}
    arrays["frames"] = np.ascontiguousarray(frames, dtype=np.uint8)
    return arrays


def clip_window(clip: Clip, config: ModelConfig) -> Window:
    """The clip's first window; the authors' layout takes the span from the video file."""
    from mvrt.runtime.decode import probe
    from mvrt.runtime.media_features import window_at

    if clip.audio_path == clip.video_path:
        return window_at(clip.video_path, config, 0.0)
    probe(clip.audio_path)  # a clear error for an unreadable audio file
    duration = probe(clip.video_path).duration_seconds
    window_seconds = config.frontend.window_seconds
    span = min(window_seconds, duration) if duration > 0 else window_seconds
    return Window(0, 0.0, window_seconds, float(span))


def _first(iterator, path) -> np.ndarray | dict:
    from mvrt.errors import MediaError

    try:
        return next(iterator)
    except StopIteration:
        raise MediaError(f"{path}: decoding produced no window") from None
    finally:
        iterator.close()


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; cache entries are shareable like any output
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
