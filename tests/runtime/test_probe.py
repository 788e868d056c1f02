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
