"""One demux pass per input (DESIGN §9): the windows are bit-identical to the two separate passes.

`iter_window_audio` and `iter_window_frames` (each opening the file itself, the video one
seeking) are the decoders as they were; `iter_file_features` / `iter_input_features` read the
file once for both streams. Their window tensors must agree exactly, for adjacent, overlapping
and sparse windows, in MP4 and Matroska.
"""

from __future__ import annotations

import numpy as np
import pytest

from media_factory import chirp, write_indexed
from mvrt.config import FrontendConfig, ModelConfig
from mvrt.runtime import window_reader
from mvrt.runtime.decode import iter_window_audio, iter_window_frames
from mvrt.runtime.network_inputs import window_features
from mvrt.runtime.window_reader import InputOpened, WindowFeatures, iter_file_features, iter_input_features
from mvrt.runtime.sources import SourceOptions
from mvrt.runtime.windows import Window, plan_windows

CONFIG = ModelConfig(arch="slowfast", frontend=FrontendConfig(window_seconds=2.0))


def _chirp(seconds):
    return chirp(seconds, 44100)


def _moving(path, seconds=9.0):
    from shared_fixtures import _moving_clip

    return _moving_clip(path, seconds, fps=25)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("onepass")
    return {
        "mp4": _moving(root / "moving.mp4"),
        "mkv": write_indexed(root / "indexed.mkv", count=225, fps=25, gop=25, audio=_chirp(9.0), sample_rate=44100),
    }


def _separate(path, windows):
    fe = CONFIG.frontend
    rates = sorted(set(CONFIG.audio_inputs.values()))
    audio = list(iter_window_audio(path, windows, rates, fe.window_seconds))
    frames = list(iter_window_frames(path, windows, frames=fe.frames, size=fe.image_size))
    return [window_features(a, f, CONFIG, implementation="numpy") for a, f in zip(audio, frames)]


WINDOWS = {
    "adjacent": lambda: plan_windows(9.0, 2.0),
    "overlapping": lambda: plan_windows(9.0, 2.0, 0.5),
    "sparse": lambda: [Window(0, 0.0, 2.0, 2.0), Window(1, 4.5, 2.0, 2.0), Window(2, 6.9, 2.0, 2.0)],
}


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
@pytest.mark.parametrize("kind", sorted(WINDOWS))
def test_one_pass_windows_are_bit_identical_to_separate_passes(clips, ext, kind):
    path, windows = clips[ext], WINDOWS[kind]()
    want = _separate(path, windows)
    got = [feeds for _, feeds in iter_file_features(path, CONFIG, windows, implementation="numpy")]
    assert len(got) == len(want) == len(windows)
    for window, a, b in zip(windows, got, want):
        for name in CONFIG.input_names:
            assert np.array_equal(a[name], b[name]), f"{name} of the window at {window.start_seconds} s"


def test_far_apart_windows_skip_whole_groups_of_pictures_with_identical_output(clips):
    """The one-pass stand-in for seeking: groups no target shows are never decoded."""
    from mvrt.runtime.window_reader import DecodeCounts

    windows = WINDOWS["sparse"]()
    counts = DecodeCounts()
    got = [feeds for _, feeds in iter_file_features(clips["mkv"], CONFIG, windows, implementation="numpy",
                                                     counts=counts)]
    want = _separate(clips["mkv"], windows)
    assert all(np.array_equal(a[n], b[n]) for a, b in zip(got, want) for n in CONFIG.input_names)
    assert counts.video.gops_skipped >= 1  # 1 s GOPs; a 2.5 s stretch between windows 0 and 1
    assert counts.video.frames_decoded + counts.video.packets_skipped <= 225
    assert counts.video.frames_decoded < 225 - 25


def test_one_open_per_input(clips, monkeypatch):
    opened = []
    real = window_reader.open_media

    def counting(path, **kwargs):
        opened.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(window_reader, "open_media", counting)
    events = list(iter_input_features(clips["mp4"], CONFIG, implementation="numpy"))
    assert opened == [str(clips["mp4"])]
    assert isinstance(events[0], InputOpened) and not events[0].live and events[0].windows == 5
    windows = [e for e in events[1:] if isinstance(e, WindowFeatures)]
    assert [w.window.start_seconds for w in windows] == [0.0, 2.0, 4.0, 6.0, 7.0]
    assert all(w.ready_monotonic is not None and w.gap_seconds == 0.0 for w in windows)


def test_live_reading_of_a_file_matches_its_file_windows(clips):
    """`live=True` cuts W every H with no end-aligned window; each equals the file reading."""
    path = clips["mp4"]
    events = list(iter_input_features(path, CONFIG, options=SourceOptions(live=True), implementation="numpy"))
    assert isinstance(events[0], InputOpened) and events[0].live and events[0].windows is None
    live = [e for e in events[1:] if isinstance(e, WindowFeatures)]
    assert [w.window.start_seconds for w in live] == [0.0, 2.0, 4.0, 6.0]  # 8-10 s is not complete
    want = _separate(path, [w.window for w in live])
    for item, b in zip(live, want):
        for name in CONFIG.input_names:
            np.testing.assert_allclose(item.feeds[name], b[name], atol=1e-4, err_msg=name)


def test_max_windows_and_duration_bound_a_live_reading(clips):
    path = clips["mp4"]
    count = lambda options: sum(  # noqa: E731
        isinstance(e, WindowFeatures) for e in iter_input_features(path, CONFIG, options=options, implementation="numpy")
    )
    assert count(SourceOptions(live=True, max_windows=2)) == 2
    assert count(SourceOptions(live=True, duration_seconds=5.0)) == 2
    assert count(SourceOptions(duration_seconds=5.0)) == 3  # a file: 0-2, 2-4 and the end-aligned 3-5
