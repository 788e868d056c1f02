"""Calibration clip selection and the stacked calibration tensor file."""

from pathlib import Path

import numpy as np
import pytest

from mvrt.calibration.dataset import build_calibration_set, calibration_sha256, select_clips
from mvrt.config import CLASSES
from mvrt.data import Clip, discover
from mvrt.errors import UsageError
from mvrt.clip_cache import FeatureCache, load_batch


def _clips(sizes: dict[int, int]) -> list[Clip]:
    return [Clip(Path(f"{label}_{i}.mp4"), Path(f"{label}_{i}.mp4"), label, CLASSES[label], "train", f"{label}_{i:03d}")
            for label, size in sizes.items() for i in range(size)]


def _per_class(clips) -> dict[int, int]:
    counts: dict[int, int] = {}
    for clip in clips:
        counts[clip.label] = counts.get(clip.label, 0) + 1
    return counts


def test_select_is_even_across_classes_and_spread_within_each():
    chosen = select_clips(_clips({c: 10 for c in range(6)}), 12)
    assert _per_class(chosen) == {c: 2 for c in range(6)}
    assert [c.stem for c in chosen if c.label == 0] == ["0_000", "0_005"]  # spread, not the first two


def test_select_gives_a_small_class_everything_and_the_rest_to_others():
    chosen = select_clips(_clips({0: 1, 1: 10, 2: 10, 3: 10, 4: 10, 5: 10}), 30)
    counts = _per_class(chosen)
    assert len(chosen) == 30 and counts[0] == 1 and sorted(counts.values())[1:] == [5, 6, 6, 6, 6]


def test_select_caps_at_the_data_and_is_deterministic():
    clips = _clips({c: 3 for c in range(6)})
    assert len(select_clips(clips, 512)) == 18
    assert select_clips(clips[::-1], 7) == select_clips(clips, 7)
    with pytest.raises(UsageError, match="^samples must be at least 1"):
        select_clips(clips, 0)


def test_calibration_hash_depends_on_the_clips_their_order_and_the_frontend(calib_data):
    root, model = calib_data
    config = model.config
    base = calibration_sha256(config, ["a", "b"])
    assert base != calibration_sha256(config, ["b", "a"])
    assert base != calibration_sha256(config, ["a", "c"])
    other = config.replace(frontend=config.frontend.__class__(window_seconds=3.0))
    assert base != calibration_sha256(other, ["a", "b"])


def test_stacked_set_matches_the_per_clip_cache_and_is_reused(calib_data, tmp_path):
    root, model = calib_data
    clips = select_clips(discover(root, "train"), 4)
    calib = build_calibration_set(clips, model.config, tmp_path, progress=False)
    assert len(calib) == 4 and "samples=4" in repr(calib)
    assert calib.folder.parent == tmp_path / "calibration" and calib.folder.name == calib.sha256[:16]
    assert list(calib.labels) == [clip.label for clip in clips]
    entries = [p for _, p in FeatureCache(tmp_path, model.config).build(clips, progress=False).entries]
    batches = list(calib.batches(model.config, 3))
    assert [len(b["video_fast"]) for b in batches] == [3, 1]
    expected = load_batch(entries, model.config)
    for name in model.config.input_names:
        np.testing.assert_array_equal(np.concatenate([b[name] for b in batches]), expected[name])
    stamp = (calib.folder / "frames.npy").stat().st_mtime_ns
    again = build_calibration_set(clips, model.config, tmp_path, progress=False)
    assert again.sha256 == calib.sha256 and (again.folder / "frames.npy").stat().st_mtime_ns == stamp


def test_a_damaged_stack_says_how_to_fix_it(calib_data, tmp_path):
    root, model = calib_data
    clips = select_clips(discover(root, "train"), 2)
    calib = build_calibration_set(clips, model.config, tmp_path, progress=False)
    np.save(calib.folder / "labels.npy", np.zeros(5, dtype=np.int64))
    with pytest.raises(UsageError, match="damaged calibration tensor file; delete the folder"):
        build_calibration_set(clips, model.config, tmp_path, progress=False)
