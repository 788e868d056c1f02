"""The video decoder choice (`decode`: auto, cpu, nvdec, v4l2) on real encoded media.

Here (no GPU, no V4L2 decoder device) `auto` decodes on the CPU and says why, `nvdec` and `v4l2`
fail with one line naming the input and the setting. A decoder on a codec context of its own
(the NVDEC and V4L2 plumbing: the stream's parameters copied, a flush after every seek) is run
with FFmpeg's software decoder and must give the very frames the stream's own context gives.
The GPU test (skipped here, required under MVRT_REQUIRE_GPU=1) compares NVDEC with the CPU.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from gpu import require_nvdec
from media_factory import expected_indices, read_indices, write_indexed

from mvrt.errors import BackendError, UsageError
from mvrt.runtime import hw_decode
from mvrt.runtime.decode import VideoDecodeStats, iter_window_frames
from mvrt.runtime.pipeline import PipelineConfig
from mvrt.runtime.windows import Window

FPS = 20
FRAMES = 16
SIZE = 16
COUNT = 100  # 5 s at 20 fps


def _windows(*starts: float, seconds: float = 1.0) -> list[Window]:
    return [Window(i, s, seconds, seconds) for i, s in enumerate(starts)]


# Overlapping windows, then one 1.8 s after them (a seek), and one running past the end (the last frame held).
WINDOWS = _windows(0.0, 0.4, 3.2, 4.5)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Index-coded H.264 with B-frames, short GOPs (seekable), in MP4, Matroska and MPEG-TS."""
    folder = tmp_path_factory.mktemp("hw")
    return {suffix: write_indexed(folder / f"clip.{suffix}", count=COUNT, fps=FPS, gop=10)
            for suffix in ("mp4", "mkv", "ts")}


def _frames(path, decode: str, stats: VideoDecodeStats | None = None) -> list[np.ndarray]:
    return list(iter_window_frames(path, WINDOWS, frames=FRAMES, size=SIZE, decode=decode, stats=stats))


def _check_indices(got: list[np.ndarray], origin: float = 0.0) -> None:
    times = [i / FPS for i in range(COUNT)]
    for window, frames in zip(WINDOWS, got, strict=True):
        assert read_indices(frames) == expected_indices(times, window.frame_times(FRAMES)), window


def test_unknown_decode_values_are_refused_naming_the_setting(clips):
    for value in ("gpu", "CPU", "", None, 1):
        with pytest.raises(UsageError, match="decode must be one of auto, cpu, nvdec, v4l2") as info:
            hw_decode.check_decode(value)
        assert info.value.setting == "decode"
    with pytest.raises(UsageError) as info:
        PipelineConfig(decode="cuda")
    assert info.value.setting == "decode"
    with pytest.raises(UsageError, match="decode must be one of"):
        next(iter_window_frames(clips["mp4"], WINDOWS, frames=FRAMES, size=SIZE, decode="gpu"))
    assert PipelineConfig().decode == "auto"


def test_cpu_decodes_the_frames_shown_at_every_target(clips):
    stats = VideoDecodeStats()
    got = _frames(clips["mp4"], "cpu", stats)
    _check_indices(got)
    assert stats.seeks >= 1 and stats.packets_skipped > 0  # the seek and the non-reference skip still work


def test_auto_without_a_gpu_is_the_cpu_path_and_says_why(clips, caplog):
    if hw_decode.cuda_device()[0]:
        pytest.skip("this machine has a CUDA device: auto picks NVDEC (the GPU test covers it)")
    cpu_stats, auto_stats = VideoDecodeStats(), VideoDecodeStats()
    cpu = _frames(clips["mp4"], "cpu", cpu_stats)
    with caplog.at_level(logging.INFO, logger="mvrt.runtime.hw_decode"):
        auto = _frames(clips["mp4"], "auto", auto_stats)
    assert all(np.array_equal(a, b) for a, b in zip(cpu, auto, strict=True))
    assert auto_stats == cpu_stats  # the same work: same packets skipped, frames decoded, seeks
    lines = [r.getMessage() for r in caplog.records if r.name == "mvrt.runtime.hw_decode"]
    assert len(lines) == 1, lines  # one line per input
    assert lines[0].startswith(f"{clips['mp4']}: h264 video decoded on the CPU (decode='auto': ")
    assert "no CUDA device" in lines[0] or "no cuda hardware device" in lines[0]


def test_nvdec_without_a_gpu_is_one_line_naming_the_input_codec_and_setting(clips):
    if hw_decode.cuda_device()[0]:
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(BackendError) as info:
        _frames(clips["mkv"], "nvdec")
    message = str(info.value)
    assert "\n" not in message and info.value.setting == "decode"
    assert message.startswith(f"{clips['mkv']}: decode='nvdec' cannot decode its h264 video: ")
    assert message.endswith("use decode='cpu' or decode='auto'")
    with pytest.raises(BackendError, match=r"^run: decode='nvdec' needs a CUDA device with NVDEC, but "):
        hw_decode.check_decode_available("nvdec", "run")
    hw_decode.check_decode_available("auto", "run")  # auto and cpu never need one
    hw_decode.check_decode_available("cpu", "run")


def test_v4l2_without_a_decoder_device_fails_cleanly(clips):
    try:
        got = _frames(clips["mp4"], "v4l2")
    except BackendError as exc:
        message = str(exc)
        assert "\n" not in message and exc.setting == "decode"
        assert message.startswith(f"{clips['mp4']}: decode='v4l2' cannot open the h264_v4l2m2m decoder here (")
        assert message.endswith("use decode='cpu' or decode='auto'")
    else:  # a machine with a V4L2 m2m decoder (a Jetson): it must pick the same frames
        _check_indices(got)


def test_the_decoder_table():
    assert hw_decode.nvdec_supports("h264") and hw_decode.nvdec_supports("hevc")
    assert not hw_decode.nvdec_supports("prores") and not hw_decode.nvdec_supports("no-such-codec")
    assert hw_decode.v4l2_decoder("h264") == "h264_v4l2m2m"
    assert hw_decode.v4l2_decoder("mpeg2video") == "mpeg2_v4l2m2m"
    assert hw_decode.v4l2_decoder("prores") is None
    with pytest.raises(BackendError, match=r"^x\.mov: decode='v4l2' cannot decode its prores video: this FFmpeg "):
        hw_decode.choose_decoder("prores", "v4l2", "x.mov")


def test_the_choice_with_and_without_a_cuda_device(monkeypatch):
    monkeypatch.setattr(hw_decode, "cuda_device", lambda: (True, "a CUDA device"))
    auto = hw_decode.choose_decoder("h264", "auto", "a.mp4")
    assert (auto.kind, auto.codec_name, auto.software_fallback) == ("nvdec", "h264", True)
    strict = hw_decode.choose_decoder("hevc", "nvdec", "a.mp4")
    assert (strict.kind, strict.software_fallback) == ("nvdec", False)
    prores = hw_decode.choose_decoder("prores", "auto", "a.mov")  # no NVDEC for it: the CPU, and why
    assert prores.kind == "cpu" and "no NVDEC decoder for prores" in prores.reason
    with pytest.raises(BackendError, match=r"^a\.mov: decode='nvdec' cannot decode its prores video: FFmpeg has no"):
        hw_decode.choose_decoder("prores", "nvdec", "a.mov")
    assert hw_decode.choose_decoder("h264", "cpu", "a.mp4").kind == "cpu"
    monkeypatch.setattr(hw_decode, "cuda_device", lambda: (False, "there is no CUDA device"))
    assert hw_decode.choose_decoder("h264", "auto", "a.mp4").kind == "cpu"


@pytest.mark.parametrize("suffix", ["mp4", "mkv", "ts"])
def test_a_decoder_of_its_own_gives_the_frames_of_the_streams_own(clips, suffix, monkeypatch):
    """The NVDEC/V4L2 plumbing (a separate codec context) run with the software h264 decoder."""
    want_stats = VideoDecodeStats()
    want = _frames(clips[suffix], "cpu", want_stats)
    own = hw_decode.DecodeChoice("v4l2", "h264", "test: the software decoder on a context of its own")
    assert own.own_context
    monkeypatch.setattr(hw_decode, "choose_decoder", lambda codec, decode, path: own)
    opened = []
    original = hw_decode.open_decoder
    monkeypatch.setattr(hw_decode, "open_decoder",
                        lambda stream, choice, path: opened.append(original(stream, choice, path)) or opened[-1])
    got_stats = VideoDecodeStats()
    got = _frames(clips[suffix], "cpu", got_stats)
    assert len(opened) == 1 and opened[0] is not None
    assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))
    assert got_stats == want_stats
    if suffix != "ts":  # MPEG-TS has no index: no seeks
        assert got_stats.seeks >= 1  # so the flush after a seek was exercised


def test_nvdec_falling_back_to_software_gives_the_same_frames_and_says_so(clips, monkeypatch, caplog):
    """decode='auto' lets FFmpeg decode a stream NVDEC cannot in software: here, no hwaccel at all."""
    want = _frames(clips["mp4"], "cpu")
    fallback = hw_decode.DecodeChoice("nvdec", "h264", "test", software_fallback=True)
    monkeypatch.setattr(hw_decode, "choose_decoder", lambda codec, decode, path: fallback)
    monkeypatch.setattr(hw_decode, "_hwaccel", lambda software_fallback=False: None)
    with caplog.at_level(logging.WARNING, logger="mvrt.runtime._video_decode"):
        got = _frames(clips["mp4"], "auto")
    assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))
    warnings = [r.getMessage() for r in caplog.records if "NVDEC cannot decode" in r.getMessage()]
    assert warnings == [f"{clips['mp4']}: NVDEC cannot decode this h264 video (yuv420p); FFmpeg decodes it in "
                        "software, on one thread (decode='cpu' decodes it on every core)"]


def test_a_hardware_decoder_that_rejects_every_packet_is_one_line(clips, monkeypatch):
    """As NVDEC does with a profile the GPU lacks (here: the mpeg4 decoder handed H.264)."""
    wrong = hw_decode.DecodeChoice("nvdec", "mpeg4", "test: a decoder that cannot decode the stream")
    monkeypatch.setattr(hw_decode, "choose_decoder", lambda codec, decode, path: wrong)
    monkeypatch.setattr(hw_decode, "_hwaccel", lambda software_fallback=False: None)  # software mpeg4
    with pytest.raises(BackendError) as info:
        _frames(clips["mkv"], "auto")
    message = str(info.value)
    assert "\n" not in message and info.value.setting == "decode"
    assert message.startswith(f"{clips['mkv']}: decode='nvdec' decoded no frame of its mpeg4 video (")


# NVDEC against the CPU, on the GPU. Presentation times: the index-coded clip says which source
# frame each target got, so equal indices are equal presentation times at every target. Pixels:
# H.264 decoding is specified bit-exactly, and NVDEC's nv12 frames resized by `to_rgb` equal the
# software decoder's yuv420p frames resized by it (measured: a textured 1280x720 clip repacked to
# nv12 differs from yuv420p by 0 at every pixel), so any difference is the decoder's own. The
# tolerance, mean |diff| <= 1.0 and max <= 8 levels of 255 after the resize, allows rounding at a
# few pixels but not another frame (neighbouring frames of the textured clip differ by ~20 on average).
MEAN_TOLERANCE, MAX_TOLERANCE = 1.0, 8


def _textured(path, count: int = 40, size: tuple[int, int] = (1280, 720)):
    from mvrt.standin import write_clip

    rng = np.random.default_rng(3)
    width, height = size
    blocks = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    image = np.kron(blocks, np.ones((8, 8, 1), np.uint8))  # (H, W, 3)
    frames = np.stack([np.roll(image, 6 * i, axis=1) for i in range(count)])  # (T, H, W, 3), panning
    return write_clip(path, None, 44100, frames, FPS, bframes=True, gop=12)


def test_nvdec_picks_the_cpus_frames_within_the_tolerance(clips, tmp_path, caplog):
    require_nvdec("h264")
    with caplog.at_level(logging.INFO, logger="mvrt.runtime.hw_decode"):
        for suffix in ("mp4", "mkv", "ts"):
            nvdec_stats, cpu_stats = VideoDecodeStats(), VideoDecodeStats()
            nvdec = _frames(clips[suffix], "nvdec", nvdec_stats)
            _check_indices(nvdec)
            cpu = _frames(clips[suffix], "cpu", cpu_stats)
            assert [read_indices(f) for f in nvdec] == [read_indices(f) for f in cpu]
            assert nvdec_stats.frames_decoded == cpu_stats.frames_decoded
        auto = hw_decode.choose_decoder("h264", "auto", "clip.mp4")
        assert auto.kind == "nvdec"
    assert any("decoded with NVDEC" in r.getMessage() for r in caplog.records)
    textured = _textured(tmp_path / "textured.mp4")
    windows = _windows(0.0, 0.5, seconds=1.0)
    nvdec = np.stack(list(iter_window_frames(textured, windows, frames=64, size=128, decode="nvdec")))
    cpu = np.stack(list(iter_window_frames(textured, windows, frames=64, size=128, decode="cpu")))
    diff = np.abs(nvdec.astype(np.int16) - cpu.astype(np.int16))  # (windows, 64, 128, 128, 3)
    assert diff.mean() <= MEAN_TOLERANCE and diff.max() <= MAX_TOLERANCE, (diff.mean(), diff.max())
