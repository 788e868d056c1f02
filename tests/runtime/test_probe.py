"""probe(): stream facts and durations from real files written with PyAV."""

from __future__ import annotations

import av
import pytest
from media_factory import index_frames, sine, write_indexed

from mvrt.errors import MediaError
from mvrt.runtime.decode import MediaInfo, probe
from mvrt.standin import write_clip


def test_mp4_h264_aac(tmp_path):
    path = write_indexed(tmp_path / "clip.mp4", count=60, size=(48, 64), audio=sine(3.0, 44100, [0.2, 0.2]))
    info = probe(path, require_streams=True)
    assert isinstance(info, MediaInfo) and info.path == str(path)
    assert info.duration_seconds == pytest.approx(3.0, abs=0.05)
    assert (info.has_audio, info.has_video) == (True, True)
    assert (info.video_codec, info.width, info.height) == ("h264", 64, 48)
    assert info.average_fps == pytest.approx(20.0)
    assert (info.audio_codec, info.audio_channels, info.audio_sample_rate) == ("aac", 2, 44100)
    assert "mp4" in info.container and info.start_seconds == 0.0


def test_matroska_duration_does_not_come_from_frame_counts(tmp_path):
    path = write_indexed(
        tmp_path / "clip.mkv",
        count=50,
        audio=sine(2.5, 48000, [0.1] * 6),
        sample_rate=48000,
        audio_codec="flac",
    )
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # Matroska does not count frames
    info = probe(path)
    assert info.duration_seconds == pytest.approx(2.5, abs=0.05)
    assert (info.audio_codec, info.audio_channels, info.audio_sample_rate) == ("flac", 6, 48000)
    assert info.container.startswith("matroska")


def test_live_webm_without_durations_falls_back_to_demuxing(tmp_path):
    path = write_clip(
        tmp_path / "live.webm",
        None,
        48000,
        index_frames(50),
        20,
        video_codec="libvpx-vp9",
        container_options={"live": "1"},
    )
    with av.open(str(path)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    info = probe(path)
    assert info.duration_seconds == pytest.approx(2.5, abs=0.06)  # 50 frames of 50 ms
    assert (info.video_codec, info.has_audio, info.audio_codec) == ("vp9", False, None)


def test_variable_frame_rate_duration(tmp_path):
    times = [0.0, 0.04, 0.5, 0.52, 1.3, 2.0, 2.75]
    path = write_indexed(tmp_path / "vfr.mkv", count=len(times), frame_times=times)
    assert probe(path).duration_seconds == pytest.approx(2.75, abs=0.1)


def test_require_streams_names_what_is_missing(tmp_path):
    audio_only = write_clip(tmp_path / "song.m4a", sine(1.0, 44100, [0.2]), 44100, None, 20)
    video_only = write_indexed(tmp_path / "silent.mp4", count=20)
    info = probe(audio_only)
    assert (info.has_audio, info.has_video, info.video_codec, info.width) == (True, False, None, None)
    with pytest.raises(MediaError, match=r"song\.m4a: no video stream"):
        probe(audio_only, require_streams=True)
    with pytest.raises(MediaError, match=r"silent\.mp4: no audio stream"):
        probe(video_only, require_streams=True)


@pytest.mark.parametrize(
    "content, match",
    [(None, "no such file"), (b"", "empty file"), (b"just some text, not a video\n" * 50, "not a readable")],
)
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=match) as info:
        probe(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_a_directory_is_not_media(tmp_path):
    with pytest.raises(MediaError, match="is a directory"):
        probe(tmp_path)


def _set_video_timescale(data: bytes, timescale: int) -> bytes:
    """The MP4 with the video track's `mdhd` timescale replaced (version 0 box)."""
    import struct

    for trak in range(data.count(b"trak")):
        start = [i for i in range(len(data)) if data.startswith(b"trak", i)][trak]
        handler = data.index(b"hdlr", start)
        if data[handler + 12 : handler + 16] == b"vide":
            mdhd = data.index(b"mdhd", start)
            assert data[mdhd + 4] == 0, "expected a version-0 mdhd"
            at = mdhd + 4 + 4 + 8  # version/flags, creation and modification times
            return data[:at] + struct.pack(">I", timescale) + data[at + 4 :]
    raise AssertionError("no video track")


def _fragmented(source, target):
    """`source` remuxed into a fragmented MP4 (durations come from the fragments' sample tables)."""
    with av.open(str(source)) as src, av.open(str(target), "w", options={"movflags": "frag_keyframe+empty_moov"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams if s.type in ("audio", "video")}
        for packet in src.demux(*src.streams):
            if packet.dts is not None and packet.stream.index in streams:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return target


def test_streams_whose_durations_disagree_wildly_are_refused(tmp_path):
    plain = write_indexed(tmp_path / "clip.mp4", count=60, size=(48, 64), audio=sine(3.0, 44100, [0.2, 0.2]))
    good = _fragmented(plain, tmp_path / "fragmented.mp4")
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(_set_video_timescale(good.read_bytes(), 1))  # 3 s of video now claims hours
    with av.open(str(damaged)) as container:
        assert float(container.streams.video[0].duration * container.streams.video[0].time_base) > 3600
    assert probe(damaged).has_video  # describing it is fine ...
    with pytest.raises(MediaError, match=r"damaged.mp4: the audio stream says it ends at 3\.\d\d s but the video "
                                         r"stream at \d+\.\d\d s; their timestamps look damaged"):
        probe(damaged, require_streams=True)  # ... planning windows over it is not
    assert probe(good, require_streams=True).duration_seconds == pytest.approx(3.0, abs=0.15)


def test_metadata_that_is_not_utf8_does_not_make_the_media_unreadable(tmp_path):
    good = write_indexed(tmp_path / "clip.mkv", count=40, audio=sine(2.0, 44100, [0.2, 0.2]))
    language = b"\x22\xb5\x9c\x83und"  # Matroska Language element, 3 bytes: "und"
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(good.read_bytes().replace(language, language[:4] + b"\xff\xff\xff"))
    info = probe(damaged, require_streams=True)  # was: "cannot open as media ('utf-8' codec can't decode ...)"
    assert info.duration_seconds == pytest.approx(probe(good).duration_seconds)
