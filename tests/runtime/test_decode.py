"""Decoding real encoded media: frame choice by PTS, seeking, audio down-mix and windows."""

from __future__ import annotations

import av
import numpy as np
import pytest
import soxr
from media_factory import (
    chirp,
    expected_indices,
    packet_reorders,
    read_indices,
    require_encoder,
    sine,
    write_indexed,
)

from mvrt.errors import MediaError, UsageError
from mvrt.runtime.decode import (
    VideoDecodeStats,
    decode_audio,
    iter_window_audio,
    iter_window_frames,
)
from mvrt.runtime.windows import Window

FPS = 20  # frame times are multiples of 50 ms: exact in every container's time base
FRAMES = 16  # targets (2k+1)/32 s into 1 s windows: never within 6 ms of a frame time
SIZE = 16


def _windows(*starts: float, seconds: float = 1.0) -> list[Window]:
    return [Window(i, s, seconds, seconds) for i, s in enumerate(starts)]


def _check_choice(path, windows, frame_seconds, **kwargs) -> VideoDecodeStats:
    stats = VideoDecodeStats()
    got = list(iter_window_frames(path, windows, frames=FRAMES, size=SIZE, stats=stats, **kwargs))
    assert len(got) == len(windows)
    for window, frames in zip(windows, got):
        assert frames.shape == (FRAMES, SIZE, SIZE, 3) and frames.dtype == np.uint8
        want = expected_indices(frame_seconds, window.frame_times(FRAMES))
        assert read_indices(frames) == want, f"window at {window.start_seconds} s"
    return stats


# Overlapping windows (0 / 0.4), a gap, and a window running past the end (held last frame).
WINDOWS = _windows(0.0, 0.4, 1.8, 2.4)


@pytest.mark.parametrize(
    "name, encoder, options",
    [
        ("h264.mp4", "libx264", dict(bframes=True)),
        ("h264_flac.mkv", "libx264", dict(audio_codec="flac", bframes=True)),
        ("hevc.mp4", "libx265", dict(video_codec="libx265", bframes=True)),
        ("vp9_opus.webm", "libvpx-vp9", dict(video_codec="libvpx-vp9", audio_codec="libopus")),
        ("av1.mkv", "libsvtav1", dict(video_codec="libsvtav1", audio_codec="libopus")),
        ("h264_mp3.mkv", "libmp3lame", dict(audio_codec="libmp3lame")),
    ],
)
def test_frames_are_chosen_by_presentation_time(tmp_path, name, encoder, options):
    require_encoder(encoder)
    path = write_indexed(
        tmp_path / name, count=60, audio=sine(3.0, 48000, [0.3, 0.3]), sample_rate=48000, **options
    )
    if options.get("bframes"):
        assert packet_reorders(path), "the clip should contain B-frames"
    stats = _check_choice(path, WINDOWS, np.arange(60) / FPS)
    assert stats.frames_converted <= FRAMES * len(WINDOWS)  # only displayed frames are resized


def test_variable_frame_rate_uses_decoded_timestamps(tmp_path):
    rng = np.random.default_rng(3)
    times = np.round(np.cumsum(rng.uniform(0.01, 0.2, size=40)) + 0.25, 3)  # first frame at >= 0.26 s
    path = write_indexed(
        tmp_path / "vfr.mkv",
        count=40,
        frame_times=times,
        audio=sine(times[-1], 48000, [0.2]),
        sample_rate=48000,
    )
    starts = [0.0, 0.5, 1.5, max(0.0, float(times[-1]) - 1.0)]
    windows = [Window(i, s, 1.0, 1.0) for i, s in enumerate(starts)]
    # A few targets fall before the first frame: they get the first frame.
    _check_choice(path, windows, times)


def test_variable_frame_rate_mp4_with_b_frames_starts_at_its_first_frame(tmp_path):
    rng = np.random.default_rng(4)
    times = np.round(np.cumsum(rng.uniform(0.02, 0.15, size=50)), 3)  # first frame at 0.123 s
    path = write_indexed(tmp_path / "vfr.mp4", count=50, frame_times=times, bframes=True)
    assert packet_reorders(path)
    # No stream starts before the video: the media origin is its first frame.
    _check_choice(path, _windows(0.0, 0.7, 1.5), times - times[0])


@pytest.mark.parametrize("name", ["long_gop.mp4", "long_gop.mkv"])
def test_seeking_skips_gops_and_matches_a_forward_pass(tmp_path, name):
    # 30 s with a keyframe exactly every 2 s (no scene-cut keyframes) and B-frames.
    path = write_indexed(
        tmp_path / name, count=600, gop=40, bframes=True, options={"x264-params": "scenecut=0"}
    )
    # Far-apart windows. The one at 11.92875 s has its first target (11.96 s) between the
    # decode time (11.9 s, what the MP4 index holds) and presentation time of the keyframe
    # at 12 s: the frame shown then comes from the GOP before.
    windows = _windows(0.5, 11.92875, 25.0)
    frame_seconds = np.arange(600) / FPS
    # Every packet decoded here (seeking alone is measured); skipping: test_video_skip.py.
    seeking = _check_choice(path, windows, frame_seconds, skip_nonref=False)
    forward = _check_choice(path, windows, frame_seconds, seek=False, skip_nonref=False)
    assert seeking.seeks == 2 and forward.seeks == 0
    assert forward.frames_decoded >= 26 * FPS
    assert seeking.frames_decoded < forward.frames_decoded / 3  # measured: 134 vs 522


def test_transport_stream_with_gaps_between_windows(tmp_path):
    # No index: a seek to the start (as done to load Matroska's index) lands mid-GOP in
    # MPEG-TS and loses every frame before the next keyframe (here: all of them).
    path = write_indexed(tmp_path / "clip.ts", count=80, bframes=True)
    stats = _check_choice(path, _windows(0.0, 2.5), np.arange(80) / FPS)
    assert stats.seeks == 0


def test_contiguous_windows_decode_the_stream_once(tmp_path):
    path = write_indexed(tmp_path / "short_gop.mp4", count=80, gop=10)
    windows = _windows(0.0, 1.0, 2.0, 3.0)
    stats = _check_choice(path, windows, np.arange(80) / FPS, skip_nonref=False)
    assert stats.seeks == 0 and stats.frames_decoded == 80
    # Skipping non-reference packets: each packet is still handled exactly once.
    stats = _check_choice(path, windows, np.arange(80) / FPS)
    assert stats.seeks == 0 and stats.frames_decoded + stats.packets_skipped == 80


def test_frames_are_resized_whole_with_area_averaging(tmp_path):
    from mvrt.standin import write_clip

    # 128x64 frame of 16x8 blocks in a red/blue checkerboard -> 8x8: each output pixel is
    # exactly one block, so area averaging returns the block colours; bilinear filtering
    # or half-resolution chroma would blend neighbouring blocks (measured: 66 / 100 levels).
    board = np.add.outer(np.arange(8), np.arange(8)) % 2 == 1
    colours = np.where(board[..., None], np.array([220, 40, 40]), np.array([30, 30, 200])).astype(np.uint8)
    image = np.repeat(np.repeat(colours, 8, axis=0), 16, axis=1)  # (64, 128, 3)
    path = write_clip(tmp_path / "board.mp4", None, 48000, np.stack([image] * 4), FPS, options={"crf": "12"})
    (frames,) = iter_window_frames(path, _windows(0.0, seconds=0.2), frames=2, size=8)
    assert frames.shape == (2, 8, 8, 3)
    with av.open(str(path)) as container:  # reference: block means of the full-size decoded frame
        full = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(np.float64)
    blocks = full.reshape(8, 8, 8, 16, 3).mean(axis=(1, 3))  # (8, 8, 3)
    assert np.abs(frames[0] - blocks).max() < 12  # measured: 7 (YUV rounding)


@pytest.mark.parametrize(
    "name, codec, amplitudes",
    [
        ("mono.mkv", "flac", [0.5]),
        ("stereo.mkv", "flac", [0.6, -0.2]),
        ("surround.mkv", "flac", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),  # 5.1, packed s16
        ("surround.mp4", "aac", [0.1, 0.2, 0.3, 0.0, 0.4, 0.5]),  # 5.1, planar float (AAC drops LFE tones)
        ("stereo.webm", "libopus", [0.4, 0.2]),
    ],
)
def test_audio_is_the_mean_of_the_channels(tmp_path, name, codec, amplitudes):
    rate = 48000
    video = "libvpx-vp9" if name.endswith(".webm") else "libx264"
    path = write_indexed(
        tmp_path / name,
        count=40,
        audio=sine(2.0, rate, amplitudes),
        sample_rate=rate,
        audio_codec=codec,
        video_codec=video,
    )
    got = decode_audio(path, rate)
    want = sine(2.0, rate, [np.mean(amplitudes)])[0]
    assert got.dtype == np.float32 and abs(got.size - want.size) <= 1024
    body = slice(2048, want.size - 2048)  # away from codec edge effects
    error = np.abs(got[body] - want[body]).max()
    # Lossless FLAC: s16 quantisation only. Lossy codecs: small error and no time shift.
    assert error < (1e-4 if codec == "flac" else 0.02 * max(np.abs(amplitudes)) + 2e-3)


def test_windowed_audio_equals_the_whole_file_resampled(tmp_path):
    path = write_indexed(
        tmp_path / "chirp.mkv", count=80, audio=chirp(4.0, 44100), sample_rate=44100, audio_codec="flac"
    )
    windows = _windows(0.0, 0.5, 1.7, 3.2)  # overlapping, a gap, and one running past the end
    rates = [8000, 22050, 32000, 44100]
    whole = {sr: decode_audio(path, sr) for sr in rates}
    got = list(iter_window_audio(path, windows, rates, 1.0))
    assert len(got) == len(windows)
    worst = 0.0
    for window, samples in zip(windows, got):
        assert set(samples) == set(rates)
        for sr in rates:
            start, count = round(window.start_seconds * sr), round(1.0 * sr)
            ref = np.zeros(count, np.float32)
            part = whole[sr][start : start + count]
            ref[: part.size] = part
            assert samples[sr].shape == (count,) and samples[sr].dtype == np.float32
            worst = max(worst, float(np.abs(samples[sr] - ref).max()))
    assert worst < 1e-5  # streaming vs whole-array soxr HQ (measured: exactly 0)
    # decode_audio itself is soxr HQ of the native-rate signal
    np.testing.assert_allclose(whole[8000], soxr.resample(whole[44100], 44100, 8000, quality="HQ"), atol=1e-6)


def test_audio_is_zero_padded_past_the_end(tmp_path):
    path = write_indexed(
        tmp_path / "short.mkv", count=30, audio=sine(1.5, 32000, [0.5]), sample_rate=32000, audio_codec="flac"
    )
    windows = [Window(0, 0.0, 4.0, 1.5), Window(1, 3.0, 4.0, 1.5)]  # the second lies past the end
    first, second = iter_window_audio(path, windows, [32000, 8000], 4.0)
    for sr, x in first.items():
        assert x.shape == (4 * sr,)
        assert np.all(x[int(1.52 * sr) :] == 0) and np.abs(x[: int(1.4 * sr)]).max() > 0.45
    assert all(x.shape == (4 * sr,) and not x.any() for sr, x in second.items())


def test_windows_out_of_order_are_a_usage_error(tmp_path):
    path = write_indexed(tmp_path / "clip.mp4", count=20, audio=sine(1.0, 48000, [0.1]), sample_rate=48000)
    backwards = [Window(0, 0.5, 1.0, 1.0), Window(1, 0.0, 1.0, 1.0)]
    with pytest.raises(UsageError, match="order"):
        list(iter_window_frames(path, backwards))
    with pytest.raises(UsageError, match="order"):
        list(iter_window_audio(path, backwards, [8000], 1.0))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Files that must each fail with a one-line MediaError naming them."""
    root = tmp_path_factory.mktemp("broken")
    audio = sine(4.0, 48000, [0.3, 0.3])
    good_mp4 = write_indexed(root / "good.mp4", count=80, audio=audio, sample_rate=48000)
    fast_mp4 = write_indexed(
        root / "faststart.mp4",
        count=80,
        audio=audio,
        sample_rate=48000,
        container_options={"movflags": "faststart"},
    )
    good_mkv = write_indexed(root / "good.mkv", count=80, audio=audio, sample_rate=48000)
    (root / "text.mp4").write_text("this is a text file, not a video\n" * 20)
    (root / "empty.mp4").write_bytes(b"")
    return root, good_mp4, fast_mp4, good_mkv


def _one_line_error(call, path, match):
    with pytest.raises(MediaError, match=match) as info:
        call()
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "name, match",
    [("text.mp4", "not a readable"), ("empty.mp4", "empty file"), ("missing.mp4", "no such file")],
)
def test_unreadable_files_fail_cleanly(broken, name, match):
    path = broken[0] / name
    _one_line_error(lambda: list(iter_window_frames(path, _windows(0.0))), path, match)
    _one_line_error(lambda: list(iter_window_audio(path, _windows(0.0), [8000], 1.0)), path, match)
    _one_line_error(lambda: decode_audio(path, 8000), path, match)


def test_truncated_files_fail_cleanly(broken):
    from media_factory import cut_file

    root, good_mp4, fast_mp4, good_mkv = broken
    whole = _windows(0.0, seconds=4.0)
    # moov atom at the end: half a file has no index at all
    cut = cut_file(good_mp4, root / "cut_moov_at_end.mp4")
    _one_line_error(lambda: list(iter_window_frames(cut, whole)), cut, "not a readable")
    # faststart MP4 and Matroska keep their headers: decoding stops at the cut, and a
    # window that needs media past it is refused instead of padded
    for good in (fast_mp4, good_mkv):
        cut = cut_file(good, root / f"cut_{good.name}")
        _one_line_error(
            lambda: list(iter_window_frames(cut, whole, frames=FRAMES, size=SIZE)), cut, "truncated"
        )
        _one_line_error(lambda: list(iter_window_audio(cut, whole, [8000], 4.0)), cut, "truncated")
        # what lies before the cut still decodes
        (early,) = iter_window_frames(cut, _windows(0.0), frames=FRAMES, size=SIZE)
        assert read_indices(early) == expected_indices(
            np.arange(80) / FPS, _windows(0.0)[0].frame_times(FRAMES)
        )


def test_missing_streams_fail_cleanly(tmp_path):
    from mvrt.standin import write_clip

    audio_only = write_clip(tmp_path / "audio_only.m4a", sine(1.0, 48000, [0.2]), 48000, None, FPS)
    video_only = write_indexed(tmp_path / "video_only.mp4", count=10)
    _one_line_error(
        lambda: list(iter_window_frames(audio_only, _windows(0.0))), audio_only, "no video stream"
    )
    _one_line_error(
        lambda: list(iter_window_audio(video_only, _windows(0.0), [8000], 1.0)), video_only, "no audio stream"
    )


def test_memory_does_not_grow_with_the_number_of_windows(tmp_path):
    import tracemalloc

    from mvrt.standin import write_clip

    audio_path = write_clip(
        tmp_path / "long.mka", chirp(40.0, 44100, channels=1), 44100, None, FPS, audio_codec="flac"
    )
    video_path = write_indexed(tmp_path / "long.mkv", count=40 * FPS, gop=20)
    windows = [Window(i, 2.0 * i, 2.0, 2.0) for i in range(20)]
    window_bytes = {"audio": 2 * 44100 * 4, "video": 16 * 64 * 64 * 3}
    for kind, run in (
        ("audio", lambda: iter_window_audio(audio_path, windows, [44100], 2.0)),
        ("video", lambda: iter_window_frames(video_path, windows, frames=16, size=64)),
    ):
        tracemalloc.start()
        count = sum(1 for _ in run())  # each window is dropped as soon as it arrives
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == 20
        # Keeping all 20 windows peaks at ~22 windows' worth; streaming measured ~5.5 (audio:
        # window + chunk, copied once while slicing) and ~8 (video, small windows + buffers).
        assert peak < 10 * window_bytes[kind] + 300_000, (kind, peak)


def test_memory_does_not_grow_with_the_overlap_of_the_windows(tmp_path):
    import tracemalloc

    from mvrt.standin import write_clip

    # 4 s windows every 0.05 s: 80 windows in flight at a time, sharing their frames.
    video_path = write_indexed(tmp_path / "clip.mkv", count=12 * FPS, gop=20)
    audio_path = write_clip(
        tmp_path / "clip.mka", chirp(12.0, 44100, channels=1), 44100, None, FPS, audio_codec="flac"
    )
    dense = [Window(i, 0.05 * i, 4.0, 4.0) for i in range(161)]
    sparse = dense[::80]  # 0, 4 and 8 s: no overlap
    frames, size = 64, 32
    runs = {
        "video": lambda windows: iter_window_frames(video_path, windows, frames=frames, size=size),
        "audio": lambda windows: iter_window_audio(audio_path, windows, [44100], 4.0),
    }
    peaks, kept = {}, {}
    for kind, run in runs.items():
        for name, windows in (("dense", dense), ("sparse", sparse)):
            tracemalloc.start()
            got = [w for i, w in enumerate(run(windows)) if name == "sparse" or i % 80 == 0]
            peaks[kind, name] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            kept[kind, name] = got
    # Identical output, overlapping or not.
    for a, b in zip(kept["video", "dense"], kept["video", "sparse"], strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(kept["audio", "dense"], kept["audio", "sparse"], strict=True):
        np.testing.assert_array_equal(a[44100], b[44100])
    want = expected_indices(np.arange(12 * FPS) / FPS, dense[80].frame_times(frames))
    assert read_indices(kept["video", "dense"][1]) == want
    # One (64, 32, 32, 3) window is 197 kB. A copy of every window in flight peaked at 16.3 MB;
    # each frame held once: 1.06 MB (the window, the ~80 frames in flight, all windows' targets).
    window_bytes = frames * size * size * 3
    assert peaks["video", "dense"] < 10 * window_bytes, peaks
    # Audio holds one window plus a chunk per rate, whatever the overlap (measured 3.5 / 3.4 MB).
    assert peaks["audio", "dense"] < 1.5 * peaks["audio", "sparse"], peaks
