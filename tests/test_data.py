"""Dataset discovery: both MVED layouts, case-insensitive names, pairing, errors."""

from __future__ import annotations

import logging

import pytest

from mvrt.config import CLASSES
from mvrt.data import discover
from mvrt.errors import UsageError


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_flat_layout_class_order_and_case(tmp_path):
    for name in ("sad", "EXCITED", "Tension"):
        _touch(tmp_path / "Train" / name / "b.mp4")
        _touch(tmp_path / "Train" / name / "a.MKV")
        _touch(tmp_path / "Train" / name / "notes.txt")
    clips = discover(tmp_path, "train")
    assert [(c.class_name, c.stem) for c in clips] == [
        ("Excited", "a"), ("Excited", "b"), ("Sad", "a"), ("Sad", "b"), ("Tension", "a"), ("Tension", "b")]
    assert [c.label for c in clips] == [CLASSES.index(c.class_name) for c in clips] == [0, 0, 4, 4, 5, 5]
    assert all(c.audio_path == c.video_path and c.split == "train" for c in clips)


def test_authors_layout_pairs_by_stem_and_skips_unpaired(tmp_path, caplog):
    base = tmp_path / "VAL" / "fear"
    _touch(base / "Audio" / "x1.m4a")
    _touch(base / "video" / "x1.mp4")
    _touch(base / "Audio" / "x2.wav")
    _touch(base / "video" / "x3.webm")
    with caplog.at_level(logging.WARNING):
        clips = discover(tmp_path, "validation")
    assert len(clips) == 1
    clip = clips[0]
    assert (clip.stem, clip.label, clip.class_name, clip.split) == ("x1", 1, "Fear", "validation")
    assert clip.audio_path.name == "x1.m4a" and clip.video_path.name == "x1.mp4"
    assert "skipped 2 clip(s)" in caplog.text


def test_unknown_class_folder_is_named(tmp_path):
    _touch(tmp_path / "test" / "Happy" / "a.mp4")
    _touch(tmp_path / "test" / "Sad" / "a.mp4")
    with pytest.raises(UsageError, match="unknown class folder.*Happy"):
        discover(tmp_path, "test")


def test_empty_or_missing_split_names_the_path(tmp_path):
    (tmp_path / "train" / "Sad").mkdir(parents=True)
    with pytest.raises(UsageError, match="no media clips found"):
        discover(tmp_path, "train")
    with pytest.raises(UsageError, match="no 'test' split folder"):
        discover(tmp_path, "test")
    with pytest.raises(UsageError, match="unknown split"):
        discover(tmp_path, "dev")
