"""Files written whole or not at all: audio through soundfile, then the atomic rename."""

from __future__ import annotations

import numpy as np
import pytest

from mvrt.errors import OutputError
from mvrt.files import write_audio

soundfile = pytest.importorskip("soundfile")


def test_audio_round_trips_and_replaces_the_previous_file_whole(tmp_path):
    target = tmp_path / "a.wav"
    target.write_bytes(b"previous")
    samples = np.linspace(-0.5, 0.5, 8000, dtype=np.float32)
    assert write_audio(target, samples, 8000, "FLOAT") == target
    read, rate = soundfile.read(target, dtype="float32")
    assert rate == 8000 and np.array_equal(read, samples)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # no temporary file left beside it


def test_flac_by_suffix_with_channels(tmp_path):
    samples = np.stack([np.zeros(100), np.full(100, 0.25)], axis=1).astype(np.float32)  # (n, 2)
    write_audio(tmp_path / "b.FLAC", samples, 22050, "PCM_16")
    info = soundfile.info(tmp_path / "b.FLAC")
    assert (info.format, info.channels, info.frames) == ("FLAC", 2, 100)


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(OutputError, match=r"missing/a\.wav: cannot write output"):
        write_audio(tmp_path / "missing" / "a.wav", np.zeros(10, np.float32), 8000, "FLOAT")
    with pytest.raises(OutputError, match=r"a\.mp3: audio is written as \.wav or \.flac, not \.mp3"):
        write_audio(tmp_path / "a.mp3", np.zeros(10, np.float32), 8000, "FLOAT")
    with pytest.raises(OutputError, match=r"c\.wav: cannot encode audio"):
        write_audio(tmp_path / "c.wav", np.zeros(10, np.float32), 8000, "NOT_A_SUBTYPE")
    assert list(tmp_path.iterdir()) == []
