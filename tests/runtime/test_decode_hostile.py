"""Hostile media: channel layout changes, many-channel planar audio, streams without a decoder,
damaged and empty packets, streams appearing mid-file, damaged timestamps."""

from __future__ import annotations

import logging
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from media_factory import chirp, index_frames, read_indices, remux_damaged, require_encoder, sine, write_indexed

from mvrt.errors import MediaError
from mvrt.runtime import _audio_decode
from mvrt.runtime._packet_skip import MAX_CONSECUTIVE_UNDECODABLE
from mvrt.runtime.decode import (
    AudioDecodeStats,
    VideoDecodeStats,
    decode_audio,
    frame_to_mono,
    iter_window_audio,
    iter_window_frames,
    probe,
)
from mvrt.runtime.windows import Window

FPS = 20
RATE = 48000
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1", 12: "7.1.4"}


def _windows(*starts: float, seconds: float = 1.0) -> list[Window]:
    return [Window(i, s, seconds, seconds) for i, s in enumerate(starts)]


def _one_line(info, path) -> str:
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def _encode_audio(out, stream, audio: np.ndarray, layout: str, chunk: int = 1024) -> None:
    """Encode (channels, n) float32 `audio` into `stream`, then flush the encoder."""
    for done in range(0, audio.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio[:, done : done + chunk].T.reshape(1, -1)), format="flt", layout=layout
        )
        frame.sample_rate, frame.pts, frame.time_base = stream.rate, done, Fraction(1, stream.rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


# -- 1. the channel layout changes mid-stream --------------------------------------------


def _adts(path, channels: int, seconds: float) -> bytes:
    """A raw ADTS AAC file (every frame carries its own channel configuration)."""
    with av.open(str(path), "w", format="adts") as out:
        stream = out.add_stream("aac", rate=RATE)
        stream.layout = _LAYOUTS[channels]
        _encode_audio(out, stream, sine(seconds, RATE, [0.3] * channels), _LAYOUTS[channels])
    return path.read_bytes()


@pytest.mark.parametrize("channels", [6, 1])
def test_a_channel_layout_change_mid_stream_is_refused_before_conversion(tmp_path, channels, monkeypatch):
    # Two ADTS files back to back: the aac decoder follows the in-band headers, stereo then 5.1 (or mono).
    path = tmp_path / f"stereo_then_{channels}.aac"
    path.write_bytes(_adts(tmp_path / "a.aac", 2, 1.0) + _adts(tmp_path / "b.aac", channels, 3.0))
    converted = []  # channel counts of the frames converted to mono
    real = _audio_decode._to_mono

    def spy(frame, *args):
        converted.append(frame.layout.nb_channels)
        return real(frame, *args)

    monkeypatch.setattr(_audio_decode, "_to_mono", spy)
    with pytest.raises(MediaError, match="channel layout changes mid-stream") as info:
        list(iter_window_audio(path, _windows(0.0, seconds=2.0), [8000], 2.0))  # needs both parts
    assert f"stereo, 2 channels -> {_LAYOUTS[channels]}, {channels} channels" in _one_line(info, path)
    assert converted and set(converted) == {2}  # no frame of the new layout was converted
    with pytest.raises(MediaError, match="channel"):
        decode_audio(path, 8000)


def test_frames_whose_planes_do_not_match_their_layout_are_refused():
    # No buffers: 0 planes for 2 channels, planar or packed (PyAV would read none / garbage).
    for fmt in ("fltp", "s16"):
        with pytest.raises(MediaError, match="0 data planes for 2"):
            frame_to_mono(av.AudioFrame(format=fmt, layout="stereo", samples=0))
    with pytest.raises(MediaError, match="65 channels"):
        frame_to_mono(av.AudioFrame(format="flt", layout="65 channels", samples=4))


@pytest.mark.parametrize(
    "codec, channels, options",
    [("aac", 8, {}), ("libopus", 12, {"mapping_family": "255"})],  # 7.1 and 7.1.4
)
def test_planar_audio_with_eight_or_more_channels_is_converted_safely(tmp_path, codec, channels, options):
    # Both decode as planar float. PyAV counts the planes of such a frame by scanning past
    # FFmpeg's plane pointers (9 planes for 8 channels; for 12, whatever the heap holds next,
    # e.g. 27) and converting it crashed the process, so the decode runs in a subprocess.
    require_encoder(codec)
    path = tmp_path / f"{channels}_channels.mkv"
    amplitudes = 0.05 * np.arange(1, channels + 1)
    if codec == "aac":
        amplitudes[3] = 0.0  # AAC low-passes the LFE channel: no 440 Hz there
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=RATE, options=options)
        stream.layout = _LAYOUTS[channels]
        _encode_audio(out, stream, sine(1.0, RATE, amplitudes), _LAYOUTS[channels], chunk=960)
    with av.open(str(path)) as container:
        frame = next(container.decode(audio=0))
        assert frame.format.is_planar and frame.layout.nb_channels == channels
        if channels == 8:  # past 8 pointers PyAV reads the first line size: always one plane too many
            assert len(frame.planes) == 9
    saved = tmp_path / "mono.npy"
    code = (
        "import numpy; from mvrt.runtime.decode import decode_audio; "
        f"numpy.save({str(saved)!r}, decode_audio({str(path)!r}, {RATE}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    got = np.load(saved)
    want = sine(1.0, RATE, [amplitudes.mean()])[0]
    body = slice(4800, 43200)
    assert np.abs(got[body] - want[body]).max() < 0.05  # lossy codecs (measured: AAC 0.034, Opus 0.004)


# -- 2. streams without a codec context -------------------------------------------------


def _without_decoder(tmp_path, kind: str):
    """An MP4 whose audio (or video) sample entry is damaged: FFmpeg finds no decoder for it."""
    good = write_indexed(tmp_path / "good.mp4", count=40, audio=sine(2.0, RATE, [0.3, 0.3]), sample_rate=RATE)
    data = bytearray(good.read_bytes())
    if kind == "audio":  # the fourcc of the sound track's `stsd` box
        at = data.index(b"stsd", data.index(b"soun"))
    else:  # the `avc1` sample entry inside the video track's `stsd`
        at = data.index(b"avc1", data.index(b"stsd"))
    data[at : at + 4] = b"\xff\xff\xff\xff"
    path = tmp_path / f"no_{kind}_decoder.mp4"
    path.write_bytes(bytes(data))
    with av.open(str(path)) as container:  # the damage this test is about
        assert getattr(container.streams, kind)[0].codec_context is None
    return path


@pytest.mark.parametrize("kind", ["audio", "video"])
def test_a_stream_without_a_decoder_is_a_media_error(tmp_path, kind):
    path = _without_decoder(tmp_path, kind)
    match = f"{kind} stream has no decoder: its codec is unknown or its header is damaged"
    read = {
        "audio": lambda: list(iter_window_audio(path, _windows(0.0), [8000], 1.0)),
        "video": lambda: list(iter_window_frames(path, _windows(0.0), frames=8, size=16)),
    }[kind]
    for call in (read, lambda: probe(path)):
        with pytest.raises(MediaError, match=match) as info:
            call()
        _one_line(info, path)
    other = "video" if kind == "audio" else "audio"  # the other stream still decodes
    if other == "audio":
        (samples,) = iter_window_audio(path, _windows(0.0), [8000], 1.0)
        assert np.abs(samples[8000]).max() > 0.2
    else:
        (frames,) = iter_window_frames(path, _windows(0.0), frames=8, size=16)
        assert frames.shape == (8, 16, 16, 3)


# -- 3. damaged and empty packets ----------------------------------------------------------


def _ogg_vp8_vorbis(path, seconds: float):
    """Ogg with VP8 video and Vorbis audio (the bundled FFmpeg has no Theora encoder)."""
    frames, audio = index_frames(int(seconds * FPS)), chirp(seconds, RATE)
    with av.open(str(path), "w", format="ogg") as out:
        video = out.add_stream("libvpx", rate=FPS)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("vorbis", rate=RATE, options={"strict": "experimental"})
        sound.layout = "stereo"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        _encode_audio(out, sound, audio, "stereo")
    return path


# Damage from 2 s on (audio packets of 1024 samples at 48 kHz: 21 ms; video: 50 ms).
DAMAGE = {("audio", 100): "garbage", ("audio", 101): "zero", ("audio", 150): "garbage",
          ("video", 45): "garbage", ("video", 60): "zero"}  # fmt: skip


def _clip(tmp_path, name: str):
    if name == "vp8_vorbis.ogg":
        require_encoder("libvpx")
        require_encoder("vorbis")
        return _ogg_vp8_vorbis(tmp_path / f"src_{name}", 4.0)
    return write_indexed(tmp_path / f"src_{name}", count=4 * FPS, audio=chirp(4.0, RATE), sample_rate=RATE)


@pytest.mark.parametrize("name", ["h264_aac.mkv", "h264_aac.ts", "vp8_vorbis.ogg"])
def test_isolated_damaged_packets_are_skipped_and_counted(tmp_path, name, caplog):
    src = _clip(tmp_path, name)
    path = remux_damaged(src, tmp_path / name, DAMAGE)
    windows = _windows(0.0, 1.0, 2.0, 3.0)
    audio, video = AudioDecodeStats(), VideoDecodeStats()
    with caplog.at_level(logging.WARNING):
        sound = list(iter_window_audio(path, windows, [8000], 1.0, stats=audio))
        frames = list(iter_window_frames(path, windows, frames=16, size=16, stats=video))
    assert len(sound) == len(frames) == len(windows)  # every window is filled
    assert 1 <= audio.undecodable_packets <= 3 and audio.empty_packets == 0
    assert f"{path}: skipped {audio.undecodable_packets} undecodable audio packet(s)" in caplog.messages
    # The undamaged start decodes exactly as from the source.
    (clean,) = iter_window_audio(src, windows[:1], [8000], 1.0)
    np.testing.assert_array_equal(sound[0][8000], clean[8000])
    (clean,) = iter_window_frames(src, windows[:1], frames=16, size=16)
    np.testing.assert_array_equal(frames[0], clean)
    assert len(set(read_indices(frames[0]))) == 16
    if video.undecodable_packets:  # H.264 conceals some damage without an error
        assert video.undecodable_packets <= 2
        assert f"{path}: skipped {video.undecodable_packets} undecodable video packet(s)" in caplog.messages
    if name != "h264_aac.ts":  # MPEG-TS: h264 hides the damage; AAC in TS is checked above
        assert video.undecodable_packets >= 1


EMPTY = {("audio", 30): "empty", ("audio", 90): "empty", ("video", 20): "empty", ("video", 30): "empty"}


@pytest.mark.parametrize("name", ["h264_aac.nut", "vp8_vorbis.ogg"])
def test_empty_packets_never_reach_the_decoder(tmp_path, name):
    # An empty packet sent to a decoder drains it: everything after it would fail to decode.
    src = _clip(tmp_path, name)
    path = remux_damaged(src, tmp_path / name, EMPTY)
    windows = _windows(0.0, 1.0, 2.0, 3.0)
    audio, video = AudioDecodeStats(), VideoDecodeStats()
    sound = list(iter_window_audio(path, windows, [8000], 1.0, stats=audio))
    frames = list(iter_window_frames(path, windows, frames=16, size=16, stats=video))
    clean_sound = list(iter_window_audio(src, windows, [8000], 1.0))
    clean_frames = list(iter_window_frames(src, windows, frames=16, size=16))
    assert audio.empty_packets == 2 and audio.undecodable_packets == 0  # the muxers keep both
    assert video.undecodable_packets == 0 and video.empty_packets == (2 if name.endswith(".nut") else 0)
    # Ogg derives the timestamps of a page's packets back from its granule position, so the
    # extra packets shift those before the last of them by one frame (in the file itself).
    equal_from = 0 if name.endswith(".nut") else 2
    for a, b in zip(sound[equal_from:], clean_sound[equal_from:]):
        np.testing.assert_allclose(a[8000], b[8000], atol=1e-6)  # soxr state: measured 3e-8
    assert all(np.abs(a[8000]).max() > 0.1 for a in sound)
    for a, b in zip(frames[equal_from:], clean_frames[equal_from:]):
        np.testing.assert_array_equal(a, b)
    assert all(len(set(read_indices(f))) >= 15 for f in frames)


def test_a_long_run_of_undecodable_packets_ends_the_stream(tmp_path, caplog):
    src = _clip(tmp_path, "h264_aac.mkv")
    first = 60  # audio packets from 1.28 s on are all garbage
    damage = {("audio", k): "garbage" for k in range(first, 4 * RATE // 1024 + 2)}
    path = remux_damaged(src, tmp_path / "h264_aac.mkv", damage)
    stats = AudioDecodeStats()
    chunks = iter_window_audio(path, _windows(0.0, 2.5), [8000], 1.0, stats=stats)
    with caplog.at_level(logging.WARNING):
        early = next(chunks)  # the first window lies before the damage
        with pytest.raises(MediaError, match="truncated or damaged") as info:
            next(chunks)
    _one_line(info, path)
    assert np.abs(early[8000]).max() > 0.1
    assert stats.undecodable_packets == MAX_CONSECUTIVE_UNDECODABLE
    gave_up = "gave up on the audio stream after 32 undecodable packets in a row"
    assert any(gave_up in message for message in caplog.messages)


def test_a_stream_appearing_mid_file_ends_the_demux_cleanly(tmp_path):
    # Two MPEG-TS files back to back, the second with other PIDs: FFmpeg adds its streams while
    # demuxing, and PyAV's final flush packets then index past its own stream list.
    audio = sine(4.0, RATE, [0.3, 0.3])
    first = write_indexed(tmp_path / "first.ts", count=4 * FPS, audio=audio, sample_rate=RATE)
    second = write_indexed(
        tmp_path / "second.ts", count=2 * FPS, audio=audio[:, : 2 * RATE], sample_rate=RATE,
        container_options={"mpegts_start_pid": "0x200", "mpegts_pmt_start_pid": "0x1100"},
    )
    path = tmp_path / "spliced.ts"
    path.write_bytes(first.read_bytes() + second.read_bytes())
    windows = _windows(0.0, 2.9)
    sound = list(iter_window_audio(path, windows, [8000], 1.0))
    frames = list(iter_window_frames(path, windows, frames=16, size=16))
    for got, want in zip(frames, iter_window_frames(first, windows, frames=16, size=16), strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(sound, iter_window_audio(first, windows, [8000], 1.0), strict=True):
        np.testing.assert_allclose(got[8000], want[8000], atol=1e-6)


def _shift_pes_pts(data: bytearray, pid: int, nth: int, ticks: int) -> None:
    """Add `ticks` (90 kHz) to the PTS of the `nth` PES packet of `pid` in MPEG-TS `data`."""
    seen = 0
    for at in range(0, len(data) - 187, 188):
        head = data[at : at + 4]
        if head[0] != 0x47 or ((head[1] & 0x1F) << 8 | head[2]) != pid or not head[1] & 0x40:
            continue
        start = at + 4 + (1 + data[at + 4] if head[3] & 0x20 else 0)  # past an adaptation field
        if data[start : start + 3] != b"\0\0\1" or not data[start + 7] & 0x80:
            continue
        if seen == nth:
            b = data[start + 9 : start + 14]
            pts = ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1
            pts = (pts + ticks) % (1 << 33)
            data[start + 9 : start + 14] = bytes([
                (b[0] & 0xF1) | ((pts >> 30) & 7) << 1, (pts >> 22) & 0xFF, ((pts >> 15) & 0x7F) << 1 | 1,
                (pts >> 7) & 0xFF, (pts & 0x7F) << 1 | 1,
            ])  # fmt: skip
            return
        seen += 1
    raise AssertionError(f"no PES packet {nth} for PID {pid:#x}")


def test_a_damaged_audio_timestamp_far_ahead_is_ignored(tmp_path, caplog):
    # One audio PES packet claims to start 20 minutes later. Honouring it filled 20 minutes of
    # silence (and far more memory for larger jumps: 13.7 GiB in a fuzzed file), and every later
    # frame, now "behind", was dropped: the rest of the audio came out silent.
    src = write_indexed(tmp_path / "clip.ts", count=4 * FPS, audio=chirp(4.0, RATE), sample_rate=RATE)
    with av.open(str(src)) as container:
        pid = container.streams.audio[0].id
    data = bytearray(src.read_bytes())
    _shift_pes_pts(data, pid, 10, 20 * 60 * 90000)
    path = tmp_path / "jump.ts"
    path.write_bytes(bytes(data))
    windows = _windows(0.0, 2.0)
    with caplog.at_level(logging.WARNING):
        got = list(iter_window_audio(path, windows, [8000], 1.0))
    assert any("audio timestamp jumps" in m and "ignored as damaged" in m for m in caplog.messages)
    for a, b in zip(got, iter_window_audio(src, windows, [8000], 1.0), strict=True):
        np.testing.assert_allclose(a[8000], b[8000], atol=1e-6)
        assert np.abs(a[8000]).max() > 0.1
