"""Open media files with PyAV and describe their streams (DESIGN §4).

Every failure becomes a one-line `MediaError` naming the file; no raw PyAV exception escapes.
Times in mvrt are seconds from the media origin: the container's start time when it is
positive (e.g. a cut transport stream), else 0.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Iterator

import av

from mvrt.errors import MediaError

PathLike = str | os.PathLike


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` finds in a media file (first audio and first video stream)."""

    path: str
    duration_seconds: float
    has_audio: bool
    has_video: bool
    video_codec: str | None
    width: int | None
    height: int | None
    average_fps: float | None
    audio_codec: str | None
    audio_channels: int | None
    audio_sample_rate: int | None
    container: str
    # The instant that window times are relative to, in the streams' own timeline.
    start_seconds: float = 0.0


def one_line(text: str) -> str:
    """Collapse whitespace so that a message stays on one line."""
    return re.sub(r"\s+", " ", str(text)).strip()


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's own description of an error, without errno noise or the file name."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return one_line(reason)


def media_error(path: PathLike, problem: str) -> MediaError:
    return MediaError(one_line(f"{os.fspath(path)}: {problem}"))


def _open_problem(path: str, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a media file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, av.error.InvalidDataError):
        return "not a readable audio/video file (corrupt, truncated, or not media at all)"
    return f"cannot open as media ({ffmpeg_reason(exc)})"


@contextlib.contextmanager
def open_media(path: PathLike) -> Iterator["av.container.InputContainer"]:
    """Open `path` for reading; every failure to open is a `MediaError` naming the file."""
    name = os.fspath(path)
    if os.path.isfile(name) and os.path.getsize(name) == 0:
        raise media_error(name, "empty file (0 bytes)")
    try:
        container = av.open(name, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise media_error(name, _open_problem(name, exc)) from None
    try:
        yield container
    finally:
        container.close()


def origin_seconds(container: "av.container.InputContainer") -> float:
    """Media origin in the streams' timeline: a positive container start time, else 0."""
    start = container.start_time
    return max(0.0, start / av.time_base) if start is not None else 0.0


def _parse_clock(text: str) -> float | None:
    """'HH:MM:SS.fffffffff' (Matroska DURATION tags) -> seconds."""
    match = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", text.strip())
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def stream_end_seconds(container: "av.container.InputContainer", stream: "av.stream.Stream") -> float | None:
    """Where `stream` claims to end, in seconds from the media origin (None when unknown)."""
    origin = origin_seconds(container)
    if stream.duration is not None and stream.duration > 0 and stream.time_base is not None:
        start = stream.start_time if stream.start_time is not None else 0
        return float((start + stream.duration) * stream.time_base) - origin
    tagged = _parse_clock(stream.metadata.get("DURATION", "")) if stream.metadata else None
    if tagged:
        return tagged
    return None


def expected_end_seconds(
    container: "av.container.InputContainer", stream: "av.stream.Stream"
) -> float | None:
    """Expected end of `stream`: its own duration, else the container's."""
    end = stream_end_seconds(container, stream)
    if end is not None:
        return end
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _demuxed_end_seconds(container: "av.container.InputContainer", path: str) -> float:
    """Cheap duration fallback: demux (never decode) every packet and take the latest end."""
    origin = origin_seconds(container)
    end = 0.0
    try:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            stop = (packet.pts + (packet.duration or 0)) * packet.time_base
            end = max(end, float(stop) - origin)
    except av.error.FFmpegError as exc:
        raise media_error(path, f"cannot read packets to measure duration ({ffmpeg_reason(exc)})") from None
    return end


def _duration_seconds(container: "av.container.InputContainer", path: str) -> float:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    ends = [stream_end_seconds(container, s) for s in container.streams if s.type in ("audio", "video")]
    known = [e for e in ends if e is not None]
    if known:
        return max(known)
    return _demuxed_end_seconds(container, path)


def missing_streams(has_audio: bool, has_video: bool) -> str | None:
    if not has_audio and not has_video:
        return "no audio or video stream"
    if not has_audio:
        return "no audio stream (mvrt needs both sound and picture)"
    if not has_video:
        return "no video stream (mvrt needs both sound and picture)"
    return None


def probe(path: PathLike, *, require_streams: bool = False) -> MediaInfo:
    """Describe `path`. With `require_streams`, a file lacking audio or video is a MediaError."""
    name = os.fspath(path)
    with open_media(name) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if require_streams:
            problem = missing_streams(audio is not None, video is not None)
            if problem:
                raise media_error(name, problem)
        vctx = video.codec_context if video is not None else None
        actx = audio.codec_context if audio is not None else None
        rate = video.average_rate if video is not None else None
        return MediaInfo(
            path=name,
            duration_seconds=_duration_seconds(container, name),
            has_audio=audio is not None,
            has_video=video is not None,
            video_codec=vctx.codec.canonical_name if vctx is not None else None,
            width=vctx.width if vctx is not None else None,
            height=vctx.height if vctx is not None else None,
            average_fps=float(rate) if rate else None,
            audio_codec=actx.codec.canonical_name if actx is not None else None,
            audio_channels=actx.channels if actx is not None else None,
            audio_sample_rate=actx.sample_rate if actx is not None else None,
            container=container.format.name,
            start_seconds=origin_seconds(container),
        )
