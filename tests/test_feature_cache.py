"""Feature cache: keys, resume, recompute on change, exact equality with window_features."""

from __future__ import annotations

import numpy as np
import pytest

import mvrt.feature_cache as fc
from mvrt.config import AudioNorm, FrontendConfig, ModelConfig
from mvrt.data import discover
from mvrt.feature_cache import FeatureCache, entry_features, frontend_key, load_entry
from mvrt.runtime.media_features import iter_file_features, window_at
from mvrt.standin import generate_standin


def _config(arch="slowfast", **frontend) -> ModelConfig:
    fe = FrontendConfig(**{"window_seconds": 2.0, "image_size": 32, **frontend})
    return ModelConfig(arch=arch, width=1 / 16, frontend=fe)


@pytest.fixture(scope="module")
def flat_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("flat")
    generate_standin(root, clips_per_class=1, splits=("train",), seconds=1.5, width=64, height=48, progress=False)
    return root


def test_second_build_computes_nothing_and_change_recomputes(flat_root, tmp_path):
    clips = discover(flat_root, "train")
    cache = FeatureCache(tmp_path, _config())
    first = cache.build(clips, progress=False)
    assert (first.computed, first.cached, first.failed_count) == (6, 0, 0)
    second = cache.build(clips, progress=False)
    assert (second.computed, second.cached) == (0, 6)
    changed = tmp_path / "copy.mp4"
    changed.write_bytes(clips[0].video_path.read_bytes())
    moved = [c.__class__(changed, changed, c.label, c.class_name, c.split, c.stem) if i == 0 else c for i, c in enumerate(clips)]
    before = cache.path_for(moved[0])
    with open(changed, "ab") as f:
        f.write(b"\0")  # new content: a new fingerprint
    assert cache.path_for(moved[0]) != before
    third = cache.build(moved, progress=False)
    assert (third.computed, third.cached) == (1, 5)


def test_frontend_parameters_change_the_key():
    base = frontend_key(_config())
    assert frontend_key(_config()) == base
    assert frontend_key(_config(n_mels=64)) != base
    assert frontend_key(_config(window_seconds=3.0)) != base
    assert frontend_key(_config("musicvideo")) != base
    assert frontend_key(_config().replace(width=0.5, audio_norm=(("audio_slow", AudioNorm((1, 2), (3, 4))),))) == base


def test_interrupted_build_resumes(flat_root, tmp_path, monkeypatch):
    clips = discover(flat_root, "train")
    config = _config("musicvideo")
    real = fc.compute_clip_arrays
    calls = []

    def failing(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies after 2 clips
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fc, "compute_clip_arrays", failing)
    with pytest.raises(KeyboardInterrupt):
        FeatureCache(tmp_path, config).build(clips, progress=False)
    monkeypatch.setattr(fc, "compute_clip_arrays", real)
    assert not list(tmp_path.glob("*/.tmp-*"))  # no half-written entry left behind
    report = FeatureCache(tmp_path, config).build(clips, progress=False)
    assert (report.computed, report.cached) == (4, 2)


def test_cached_tensors_equal_window_features_exactly(flat_root, tmp_path):
    clip = discover(flat_root, "train")[3]
    norm = (("audio_fast", AudioNorm((-40.0, 0.1), (20.0, 1.7))), ("audio_slow", AudioNorm((-30.0, -0.2), (15.0, 1.5))))
    config = _config().replace(audio_norm=norm)
    report = FeatureCache(tmp_path, config.replace(audio_norm=())).build([clip], progress=False)
    raw = load_entry(report.entries[0][1])
    assert raw["frames"].dtype == np.uint8 and raw["frames"].shape == (64, 32, 32, 3)
    got = entry_features(raw, config)
    window = window_at(clip.video_path, config, 0.0)
    _, expected = next(iter_file_features(clip.video_path, config, [window]))
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_authors_layout_and_decode_failure(tmp_path):
    root = tmp_path / "data"
    generate_standin(root, clips_per_class=1, splits=("train",), seconds=1.5, width=64, height=48,
                     layout="authors", progress=False)
    broken = root / "train" / "Sad" / "video" / "sad_0000.mp4"
    broken.write_bytes(b"not a video")
    clips = discover(root, "train")
    assert all(c.audio_path != c.video_path for c in clips)
    report = FeatureCache(tmp_path / "cache", _config()).build(clips, progress=False)
    assert (report.computed, report.failed_count) == (5, 1)
    assert "sad_0000.mp4" in report.failed[0][1] and "\n" not in report.failed[0][1]
    raw = load_entry(report.entries[0][1])
    assert raw["audio_fast"].shape == (2, 128, 126) and raw["frames"].shape == (64, 32, 32, 3)
