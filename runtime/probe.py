"""Open media files with PyAV and describe their streams (DESIGN §4).

Every failure becomes a one-line `MediaError` naming the file; no raw PyAV exception escapes.
Times in mvrt are seconds from the media origin: the container's start time when it is
positive (e.g. a cut transport stream), else 0.

Reads give up after `read_timeout_seconds` without data (None: wait for ever). Files and URLs
get FFmpeg's interrupt callback (PyAV's `timeout`). A FIFO or character device would block
FFmpeg's file protocol inside open(2)/read(2), where no callback reaches, so such paths are
read here instead, without blocking, through a small non-seekable file object.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Iterator

import av

from mvrt.config import DEFAULT_READ_TIMEOUT_SECONDS
from mvrt.errors import MediaError, UsageError
from mvrt.runtime._media_errors import (  # noqa: F401  (re-exported: the decoders import them from here)
    check_read_timeout,
    ffmpeg_reason,
    media_error,
    one_line,
    read_error,
    stall_problem,
)
from mvrt.runtime._source_io import (  # noqa: F401  (STDIN re-exported)
    STDIN,
    PollingReader,
    reader_for,
    target_of,
    with_defaults,
)

PathLike = str | os.PathLike

# Streams whose claimed ends differ by more than this factor (plus a minute) are damaged.
_END_DISAGREEMENT_FACTOR = 2.0
_END_DISAGREEMENT_SECONDS = 60.0


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


def decoder_context(stream: "av.stream.Stream", path: PathLike, kind: str) -> "av.CodecContext":
    """`stream`'s codec context, or a MediaError when FFmpeg found no decoder for it."""
    context = getattr(stream, "codec_context", None)
    codec = getattr(context, "codec", None) if context is not None else None
    if not getattr(codec, "name", None):
        raise media_error(path, f"{kind} stream has no decoder: its codec is unknown or its header is damaged")
    return context


def _open_problem(path: str, exc: BaseException, timeout_seconds: float | None) -> str:
    if isinstance(exc, av.error.ExitError) and timeout_seconds is not None:
        return stall_problem(timeout_seconds)
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a media file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, av.error.ProtocolNotFoundError):
        scheme = path.split("://", 1)[0] if "://" in path else path
        return (f"this FFmpeg build has no {scheme!r} protocol (PyAV's bundled FFmpeg lacks some, e.g. srt); "
                "use a PyAV built against an FFmpeg that has it")
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing is listening there yet; reconnect=True keeps trying)"
    if isinstance(exc, av.error.InvalidDataError):
        return "not a readable audio/video file (corrupt, truncated, or not media at all)"
    return f"cannot open as media ({ffmpeg_reason(exc)})"


@contextlib.contextmanager
def open_media(
    path: PathLike,
    *,
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
    input_format: str | None = None,
    input_options: dict[str, str] | None = None,
) -> Iterator["av.container.InputContainer"]:
    """Open `path` (file, `-` for stdin, FIFO, device or URL); every failure is a `MediaError` naming it.

    A read that waits `read_timeout_seconds` without data is a MediaError too (None: wait for
    ever). `input_format` and `input_options` are FFmpeg's (ffmpeg's `-f FMT` and `-KEY VALUE`
    before `-i`), e.g. `"v4l2"` and `{"rtsp_transport": "tcp"}`.
    """
    name = os.fspath(path)
    timeout = check_read_timeout(read_timeout_seconds)
    if os.path.isfile(name) and os.path.getsize(name) == 0:
        raise media_error(name, "empty file (0 bytes)")
    check_input_format(input_format)
    reader = None
    try:
        reader = reader_for(name, timeout)
        # Damaged metadata (a stream language of 0xFF bytes) must not make the media unreadable.
        container = av.open(target_of(name) if reader is None else reader, mode="r", format=input_format,
                            options=with_defaults(name, input_options, timeout), timeout=timeout,
                            metadata_errors="replace")
    except MediaError:  # the source stalled while FFmpeg probed it
        _close(reader)
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        _close(reader)
        raise MediaError(str(media_error(name, _open_problem(name, exc, timeout))),
                         setting="reconnect" if isinstance(exc, ConnectionRefusedError) else None) from None
    try:
        yield container
    finally:
        if not any(c is container for c in _ABANDONED):
            container.close()
            _close(reader)


# Containers a thread may still be reading (see `abandon`): never closed, kept alive.
_ABANDONED: list = []


def abandon(container) -> None:
    """Leave `container` open for ever: another thread is blocked reading it, and closing it
    under that read would free memory FFmpeg is using (a stop during an endless stall)."""
    _ABANDONED.append(container)


def _close(reader: PollingReader | None) -> None:
    if reader is not None:
        reader.close()


def check_input_format(input_format: str | None) -> None:
    """Refuse an input format FFmpeg does not have (a UsageError naming the setting)."""
    if input_format is None:
        return
    if not isinstance(input_format, str) or input_format not in av.formats_available:
        raise UsageError(
            f"input_format {input_format!r} (--input-format) is not an input format of this FFmpeg; "
            "e.g. mpegts, matroska, alsa, lavfi (python -c 'import av; print(sorted(av.formats_available))' lists them)"
        )


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


def _demuxed_end_seconds(
    container: "av.container.InputContainer", path: str, timeout: float | None
) -> float:
    """Cheap duration fallback: demux (never decode) every packet and take the latest end."""
    origin = origin_seconds(container)
    end = 0.0
    try:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            stop = (packet.pts + (packet.duration or 0)) * packet.time_base
            end = max(end, float(stop) - origin)
    except IndexError:  # PyAV's flush packets, after the last one, for a stream added mid-file
        pass
    except av.error.FFmpegError as exc:
        problem = f"cannot read packets to measure duration ({ffmpeg_reason(exc)})"
        raise read_error(path, exc, problem, timeout) from None
    return end


def stated_duration_seconds(container: "av.container.InputContainer", streams) -> float | None:
    """What the file says it lasts: the container's duration, else the latest end `streams` claim (None: unstated)."""
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    ends = [e for e in (stream_end_seconds(container, s) for s in streams) if e is not None]
    return max(ends) if ends else None


def _duration_seconds(
    container: "av.container.InputContainer", path: str, timeout: float | None
) -> float:
    stated = stated_duration_seconds(container, [s for s in container.streams if s.type in ("audio", "video")])
    return stated if stated is not None else _demuxed_end_seconds(container, path, timeout)


def missing_streams(has_audio: bool, has_video: bool) -> str | None:
    if not has_audio and not has_video:
        return "no audio or video stream"
    if not has_audio:
        return "no audio stream (mvrt needs both sound and picture)"
    if not has_video:
        return "no video stream (mvrt needs both sound and picture)"
    return None


def ends_disagree(first_seconds: float, second_seconds: float) -> bool:
    """Whether two ends of one clip are too far apart to be real media (over 2x + 60 s)."""
    short, long = sorted((first_seconds, second_seconds))
    return long > _END_DISAGREEMENT_FACTOR * max(short, 0.0) + _END_DISAGREEMENT_SECONDS


def _check_stream_ends(container, audio, video, path: str) -> None:
    """Refuse streams whose own durations disagree wildly (a damaged timescale, not real media).

    A 3 s file whose video time base was damaged claims 46,080 s: planning 1,536 windows of
    silence over it would be a hang, not a reading.
    """
    ends = {kind: stream_end_seconds(container, s) for kind, s in (("audio", audio), ("video", video))}
    if None in ends.values():
        return
    if ends_disagree(ends["audio"], ends["video"]):
        raise media_error(
            path,
            f"the audio stream says it ends at {ends['audio']:.2f} s but the video stream at {ends['video']:.2f} s; "
            "their timestamps look damaged",
        )


def probe(
    path: PathLike,
    *,
    require_streams: bool = False,
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
) -> MediaInfo:
    """Describe `path`. With `require_streams`, a file lacking audio or video is a MediaError.

    The first audio and video streams must have a decoder (else a MediaError).
    """
    name = os.fspath(path)
    timeout = check_read_timeout(read_timeout_seconds)
    with open_media(name, read_timeout_seconds=timeout) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if require_streams:
            problem = missing_streams(audio is not None, video is not None)
            if problem:
                raise media_error(name, problem)
            _check_stream_ends(container, audio, video, name)
        vctx = decoder_context(video, name, "video") if video is not None else None
        actx = decoder_context(audio, name, "audio") if audio is not None else None
        rate = video.average_rate if video is not None else None
        return MediaInfo(
            path=name,
            duration_seconds=_duration_seconds(container, name, timeout),
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
