"""The calibration set: clips drawn evenly across classes, stacked into one cached tensor file.

Per-clip front-end tensors come from the shared feature cache (`mvrt.clip_cache`, which
calls the runtime's front-end), so building is resumable clip by clip and shows progress.
The chosen clips are then stacked into `<cache>/calibration/<key>/` (DESIGN §5): one `.npy`
per raw array (uint8 frames, un-normalised audio), read memory-mapped and normalised with
the calibrated model's own statistics at load time, plus `clips.json`. The key hashes the
front-end parameters and the ordered list of clip fingerprints; its full sha256 is the
calibration-set hash recorded in the INT8 model and in TensorRT sidecars.

The stack is the same for both tensor contracts (DESIGN §3); `batches` gives each input in its
contract's dtype, so a contract-2 model's calibration batches carry the frames as uint8 `video`
(`input_bytes_per_window`: 5.5 MB a window for the bundled model instead of 16.6 MB of float32).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mvrt.config import ModelConfig
from mvrt.data import Clip
from mvrt.errors import UsageError
from mvrt.runtime.model_meta import input_bytes_per_window  # noqa: F401  (re-exported: the report's figure)

__all__ = ["CalibrationSet", "build_calibration_set", "calibration_sha256", "input_bytes_per_window", "select_clips"]

_FRAMES = "frames"


def select_clips(clips: Sequence[Clip], samples: int) -> list[Clip]:
    """At most `samples` clips, as even across classes as the data allows.

    Each class contributes `samples // classes` clips spread evenly over its sorted list;
    what a small class cannot fill goes to the others. Deterministic: same clips, same pick.
    """
    if samples < 1:
        raise UsageError(f"samples must be at least 1, got {samples}", setting="samples")
    by_class: dict[int, list[Clip]] = {}
    for clip in sorted(clips, key=lambda c: (c.label, c.stem)):
        by_class.setdefault(clip.label, []).append(clip)
    quota = _quotas({label: len(items) for label, items in by_class.items()}, samples)
    chosen = []
    for label, items in by_class.items():
        picks = np.linspace(0, len(items), quota[label], endpoint=False).astype(int) if quota[label] else []
        chosen += [items[i] for i in picks]
    return chosen


def _quotas(sizes: dict[int, int], samples: int) -> dict[int, int]:
    """Clips per class: equal shares, capped by class size, leftovers to classes with room."""
    quota = dict.fromkeys(sizes, 0)
    left = min(samples, sum(sizes.values()))
    while left:
        open_classes = [c for c in sizes if quota[c] < sizes[c]]
        share = max(1, left // len(open_classes))
        for label in open_classes:
            take = min(share, sizes[label] - quota[label], left)
            quota[label] += take
            left -= take
    return quota


def calibration_sha256(config: ModelConfig, fingerprints: Sequence[str]) -> str:
    """sha256 over the front-end parameters and the ordered clip fingerprints."""
    from mvrt.clip_cache import frontend_params

    text = json.dumps({"frontend": frontend_params(config), "clips": list(fingerprints)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CalibrationSet:
    """Stacked raw front-end tensors of N clips (memory-mapped), normalised per batch on read."""

    folder: Path
    sha256: str
    clips: tuple[str, ...] = field(repr=False)
    labels: np.ndarray = field(repr=False)
    arrays: dict[str, np.ndarray] = field(repr=False)
    skipped: int = 0

    def __len__(self) -> int:
        return int(self.labels.size)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.arrays.items())
        return f"CalibrationSet(samples={len(self)}, sha256={self.sha256[:12]}…, {shapes}, folder={self.folder})"

    @property
    def stored_bytes_per_window(self) -> int:
        """Bytes one window takes in the stacked tensor file (uint8 frames, float32 audio)."""
        return int(sum(a.dtype.itemsize * int(np.prod(a.shape[1:])) for a in self.arrays.values()))

    def batches(self, config: ModelConfig, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Network inputs (B, ...) in order, with `config`'s statistics, in its contract's dtypes
        (float32; uint8 `video` under contract 2)."""
        from mvrt.clip_cache import entry_features

        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            items = [entry_features({k: np.asarray(v[i]) for k, v in self.arrays.items()}, config)
                     for i in range(start, stop)]
            yield {name: np.stack([item[name] for item in items]) for name in config.input_names}


def build_calibration_set(clips: Sequence[Clip], config: ModelConfig, cache_root: str | os.PathLike, *,
                          progress: bool = True) -> CalibrationSet:
    """Features of `clips` (cached per clip), stacked once into the calibration tensor file."""
    from mvrt.clip_cache import FeatureCache, clip_fingerprint

    cache = FeatureCache(cache_root, config)
    report = cache.build(clips, progress=progress, desc="calibration features")
    if not report.entries:
        raise UsageError(f"none of the {len(clips)} calibration clips could be decoded; see the messages above")
    fingerprints = [clip_fingerprint(clip) for clip, _ in report.entries]
    digest = calibration_sha256(config, fingerprints)
    folder = Path(cache_root) / "calibration" / digest[:16]
    if not (folder / "clips.json").is_file():
        _write_stack(folder, report.entries, fingerprints)
    return _open_stack(folder, digest, report.failed_count)


def _write_stack(folder: Path, entries: Sequence[tuple[Clip, Path]], fingerprints: Sequence[str]) -> None:
    """Stack cache entries into one .npy per array (atomic: a temp folder renamed into place)."""
    from mvrt.clip_cache import load_entry

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        first = load_entry(entries[0][1])
        stacks = {name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=a.dtype,
                                                  shape=(len(entries), *a.shape)) for name, a in first.items()}
        for i, (_, path) in enumerate(entries):
            for name, array in load_entry(path).items():
                stacks[name][i] = array
        for stack in stacks.values():
            stack.flush()
        del stacks
        np.save(tmp / "labels.npy", np.array([clip.label for clip, _ in entries], dtype=np.int64))
        listing = [{"path": str(clip.video_path), "audio_path": str(clip.audio_path), "label": clip.class_name,
                    "fingerprint": fp} for (clip, _), fp in zip(entries, fingerprints)]
        (tmp / "clips.json").write_text(json.dumps(listing, indent=1) + "\n")
        os.chmod(tmp, 0o755)
        shutil.rmtree(folder, ignore_errors=True)  # a half-written folder from an older layout
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _open_stack(folder: Path, digest: str, skipped: int) -> CalibrationSet:
    listing = json.loads((folder / "clips.json").read_text())
    arrays = {p.stem: np.load(p, mmap_mode="r", allow_pickle=False) for p in sorted(folder.glob("*.npy"))}
    labels = np.asarray(arrays.pop("labels"))
    if _FRAMES not in arrays or any(len(a) != labels.size for a in arrays.values()):
        raise UsageError(f"{folder}: damaged calibration tensor file; delete the folder and run again")
    return CalibrationSet(folder, digest, tuple(item["path"] for item in listing), labels, arrays, skipped)
