"""Separate audio and video files (the MVED authors' layout) read as one input.

Measured on the bundled FFmpeg: the AAC track muxed with the video and the AAC .m4a encoded from
the same samples decode bit-identically (the MP4 edit list hides the encoder's 1024-sample
priming in both, and both start at 0), so that pair gives the muxed file's reading exactly. A
float WAV of the same samples aligns at lag 0 (no priming shift) but differs by AAC's coding
loss; see `test_a_wav_pair_differs_from_the_muxed_aac_only_by_the_coding_loss`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from media_factory import chirp, index_frames
from mvrt.api import load_model
from mvrt.errors import MediaError, UsageError
from mvrt.runtime.decode import decode_audio
from mvrt.runtime.events import input_key
from mvrt.runtime.inputs import MediaPair, expand_inputs, item_key
from mvrt.runtime.window_reader import InputOpened, iter_input_features, iter_pair_features
from mvrt.runtime.results import VideoResult
from mvrt.standin import write_clip

pytest.importorskip("torch")  # the tiny models are exported from PyTorch
sf = pytest.importorskip("soundfile")

RATE, FPS, SECONDS = 22050, 10, 10.0
# libx264's macroblock tree encodes the same frames differently from run to run (measured); the
# muxed file and the video file must hold the same H.264 stream, so it is off here.
SAME_H264 = {"x264-params": "mbtree=0"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """One clip's raw audio and frames written muxed (H.264 + AAC) and as separate files."""
    folder = tmp_path_factory.mktemp("pairs")
    audio = chirp(SECONDS, RATE, channels=2)  # (2, n) float32
    frames = index_frames(int(SECONDS * FPS), 64, 96)  # (T, H, W, 3), every frame distinct
    files = {
        "muxed": write_clip(folder / "muxed.mp4", audio, RATE, frames, FPS, options=SAME_H264),
        "video": write_clip(folder / "video.mp4", None, RATE, frames, FPS, options=SAME_H264),
        "m4a": write_clip(folder / "audio.m4a", audio, RATE, None, FPS),
        "short_video": write_clip(folder / "short.mp4", None, RATE, frames[: int(8.5 * FPS)], FPS, options=SAME_H264),
        "short_muxed": write_clip(folder / "short_muxed.mp4", audio, RATE, frames[: int(8.5 * FPS)], FPS, options=SAME_H264),
    }
    sf.write(folder / "audio.wav", audio.T, RATE, subtype="FLOAT")  # soundfile: (n, channels)
    files["wav"] = folder / "audio.wav"
    other = chirp(SECONDS, RATE, channels=2, seed=5)  # a different soundtrack: the control
    sf.write(folder / "other.wav", other.T, RATE, subtype="FLOAT")
    files["other"] = folder / "other.wav"
    return files


@pytest.fixture(scope="module")
def model(tiny_models):
    # batch 1: how windows share a batch would change the last bits of the logits
    with load_model(tiny_models["slowfast"].onnx, batch_size=1) as loaded:
        yield loaded


def _probabilities(video) -> np.ndarray:
    return np.array([w.probabilities for w in video.windows])  # (N, C)


def _starts(video) -> list[float]:
    return [w.start_seconds for w in video.windows]


def test_a_pair_with_the_same_aac_gives_the_muxed_reading_exactly(model, clips):
    muxed = model.classify(clips["muxed"])
    pair = model.classify(clips["video"], audio=clips["m4a"])
    assert _starts(pair) == _starts(muxed) == [0.0, 4.0, 6.0]  # the end-aligned window too
    np.testing.assert_array_equal(_probabilities(pair), _probabilities(muxed))
    np.testing.assert_array_equal(pair.probabilities, muxed.probabilities)
    assert pair.path == str(clips["video"]) and pair.audio_path == str(clips["m4a"])
    assert all(w.path == str(clips["video"]) and w.audio_path == str(clips["m4a"]) for w in pair.windows)
    assert input_key(pair) == item_key(MediaPair(clips["m4a"], clips["video"]))  # how a caller matches inputs
    assert muxed.audio_path is None and "audio_path" not in muxed.to_dict()
    assert pair.to_dict()["audio_path"] == str(clips["m4a"])


def test_the_pair_features_equal_the_muxed_features(tiny_models, clips):
    config = tiny_models["slowfast"].config
    muxed = [e for e in iter_input_features(clips["muxed"], config) if not isinstance(e, InputOpened)]
    pair = [e for e in iter_pair_features(MediaPair(clips["wav"], clips["video"]), config)
            if not isinstance(e, InputOpened)]
    assert [e.window for e in pair] == [e.window for e in muxed]
    for a, b in zip(pair, muxed):
        for name in config.video_inputs:  # the picture comes from the same H.264 stream: identical frames
            np.testing.assert_array_equal(a.feeds[name], b.feeds[name])


def test_the_aac_files_decode_identically_and_the_wav_is_not_shifted(clips):
    muxed, m4a, wav = (decode_audio(clips[k], RATE) for k in ("muxed", "m4a", "wav"))
    np.testing.assert_array_equal(m4a, muxed)  # same encoder, same samples, same edit list
    n = wav.size
    assert muxed.size >= n  # AAC pads its last frame
    correlation = np.fft.irfft(np.fft.rfft(muxed[:n], 2 * n) * np.conj(np.fft.rfft(wav, 2 * n)))
    lag = int(np.argmax(np.r_[correlation[-2000:], correlation[:2000]])) - 2000
    assert lag == 0  # the edit list removes AAC's priming delay: no shift to compensate
    error = np.sqrt(np.mean((muxed[:n] - wav) ** 2)) / np.sqrt(np.mean(wav**2))
    assert 0 < error < 0.05  # lossy, about -40 dB (measured 0.011)


def test_a_wav_pair_differs_from_the_muxed_aac_only_by_the_coding_loss(model, clips):
    """Tolerance: AAC's coding loss (about -40 dB) moved these probabilities by at most 0.011;
    0.02 allows for encoder changes yet stays below what another soundtrack does (0.03)."""
    muxed = _probabilities(model.classify(clips["muxed"]))
    wav = model.classify(clips["video"], audio=clips["wav"])
    other = model.classify(clips["video"], audio=clips["other"])
    assert _starts(wav) == _starts(other) == [0.0, 4.0, 6.0]
    assert np.abs(_probabilities(wav) - muxed).max() < 0.02
    assert np.abs(_probabilities(other) - muxed).max() > 0.02  # the tolerance can tell soundtracks apart


def test_durations_that_differ_are_planned_as_the_muxed_file_and_warned(model, clips, caplog):
    with caplog.at_level(logging.WARNING, logger="mvrt"):
        pair = model.classify(clips["short_video"], audio=clips["m4a"])
    muxed = model.classify(clips["short_muxed"])  # its container says 10 s: the longer stream
    assert _starts(pair) == _starts(muxed) == [0.0, 4.0, 6.0]
    np.testing.assert_array_equal(_probabilities(pair), _probabilities(muxed))
    assert "audio file lasts 10.00 s and the video file 8.50 s" in caplog.text


def test_iter_windows_takes_the_audio_keyword_and_run_takes_pairs(model, clips):
    windows = list(model.iter_windows(clips["video"], audio=clips["m4a"]))
    assert [w.index for w in windows] == [0, 1, 2] and windows[0].audio_path == str(clips["m4a"])
    events = list(model.run([MediaPair(clips["m4a"], clips["video"]), clips["muxed"]]))
    videos = [e for e in events if isinstance(e, VideoResult)]
    assert sorted((v.path, v.audio_path) for v in videos) == sorted(
        [(str(clips["video"]), str(clips["m4a"])), (str(clips["muxed"]), None)])
    assert all(v.ok and len(v.windows) == 3 for v in videos)
    with pytest.raises(UsageError, match="already a pair"):
        model.classify(MediaPair(clips["m4a"], clips["video"]), audio=clips["wav"])


def test_a_missing_or_soundless_audio_file_is_a_one_line_error_naming_it(model, clips, tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(MediaError, match=r"missing\.wav: no such file") as caught:
        model.classify(clips["video"], audio=missing)
    assert "\n" not in str(caught.value)
    with pytest.raises(MediaError, match=r"video\.mp4: no audio stream"):
        model.classify(clips["video"], audio=clips["video"])
    with pytest.raises(MediaError, match=r"audio\.m4a: no video stream"):
        model.classify(clips["m4a"], audio=clips["wav"])
    events = list(model.run([MediaPair(missing, clips["video"]), clips["muxed"]]))
    results = {e.path: e for e in events if isinstance(e, VideoResult)}
    assert not results[str(clips["video"])].ok and results[str(clips["muxed"])].ok  # the other goes on


def test_a_live_pair_is_a_usage_error(model, clips):
    with pytest.raises(UsageError, match="read from files only.*udp://127.0.0.1:5999 is a live source"):
        model.classify(clips["video"], audio="udp://127.0.0.1:5999")
    with pytest.raises(UsageError, match="read from files only"):
        list(model.iter_windows("-", audio=clips["wav"]))
    with pytest.raises(UsageError, match="a pair of files is not a live source"):
        model.stream(MediaPair(clips["wav"], clips["video"]))


def test_an_isolated_pair_gives_the_same_reading(tiny_models, clips, tmp_path):
    with load_model(tiny_models["slowfast"].onnx, batch_size=1, isolate=True, read_timeout_seconds=5.0) as isolated:
        pair = isolated.classify(clips["video"], audio=clips["wav"])
        with pytest.raises(MediaError, match=r"missing\.wav: no such file"):
            isolated.classify(clips["video"], audio=tmp_path / "missing.wav")
    with load_model(tiny_models["slowfast"].onnx, batch_size=1) as local:
        reference = local.classify(clips["video"], audio=clips["wav"])
    assert pair.audio_path == str(clips["wav"]) and pair.windows[0].audio_path == str(clips["wav"])
    np.testing.assert_array_equal(_probabilities(pair), _probabilities(reference))


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")  # expand_inputs looks at names only


def test_expand_inputs_pairs_an_authors_layout_tree_by_stem(tmp_path, caplog):
    root = tmp_path / "mved"
    _touch(root, "Test/Sad/audio/a1.wav", "Test/Sad/audio/a2.wav", "Test/Sad/audio/a3.mp4",
           "Test/Sad/video/a1.mp4", "Test/Sad/video/a3.mp4", "Test/Sad/video/a4.mp4",
           "Test/Fear/Audio/f1.m4a", "Test/Fear/Video/f1.mkv", "Test/Fear/plain.mp4",
           "misc/video/clip.mp4", "Test/Sad/.hidden/h.mp4")
    (tmp_path / "empty").mkdir()
    _touch(tmp_path, "lonely/audio/x.wav")
    (tmp_path / "lonely" / "video").mkdir()
    pair = MediaPair("a.wav", "v.mp4")
    with caplog.at_level(logging.WARNING, logger="mvrt"):
        inputs, empty = expand_inputs([root, "udp://127.0.0.1:5000", "missing.mp4", pair,
                                       tmp_path / "empty", str(tmp_path / "lonely")])
    sad, fear = root / "Test" / "Sad", root / "Test" / "Fear"
    assert inputs == [
        MediaPair(str(fear / "Audio" / "f1.m4a"), str(fear / "Video" / "f1.mkv")),
        str(fear / "plain.mp4"),
        MediaPair(str(sad / "audio" / "a1.wav"), str(sad / "video" / "a1.mp4")),
        MediaPair(str(sad / "audio" / "a3.mp4"), str(sad / "video" / "a3.mp4")),  # never an input of its own
        str(root / "misc" / "video" / "clip.mp4"),  # a `video` folder without an `audio` one: plain files
        "udp://127.0.0.1:5000", "missing.mp4", pair,
    ]
    assert empty == [str(tmp_path / "empty"), str(tmp_path / "lonely")]
    assert "a4.mp4: no audio file of the same stem" in caplog.text
    assert "a2.wav: no video file of the same stem" in caplog.text
    assert str(pair) == "v.mp4 + a.wav"


def test_a_media_pair_takes_paths_only():
    assert MediaPair(Path("a.wav"), Path("v.mp4")) == MediaPair("a.wav", "v.mp4")
    with pytest.raises(UsageError, match="MediaPair audio must be a file path"):
        MediaPair(None, "v.mp4")
    with pytest.raises(UsageError, match="MediaPair video must be a file path, got an empty string"):
        MediaPair("a.wav", "")
