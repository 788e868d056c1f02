"""Frame thumbnails for the timeline plot (the paper's Fig. 11 shows frames under the curves).

A thumbnail is the frame displayed at an instant (the last frame with PTS <= t). The instants
are visited in order: the reader seeks to the keyframe before an instant when the index shows
one well past where it is, else decodes on, and gives up on an instant after a bounded number
of frames (showing the last one decoded), so the whole file is never decoded.

Only regular files are read again; a live source (stdin, a URL, a FIFO, a device), a file that
is gone or one that cannot be decoded gives no thumbnails and a short note saying why. Nothing
here raises for the media: a plot never fails for its thumbnails.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mvrt.files import is_regular

# At most this many thumbnails per video, however wide the strip.
MAX_THUMBNAILS = 12
# Decoding towards one instant gives up (and shows the last frame decoded) after this many frames.
MAX_FRAMES_PER_SEEK = 300
# Packets demuxed per seek, damaged or not, before giving up on the rest of the strip.
_MAX_PACKETS_PER_SEEK = 600
# Seek forward only when the index shows a keyframe this far past the frame decoded last
# (index times may be decode times): otherwise decoding on is cheaper.
_SKIP_SECONDS = 1.0
# A frame at t + _EPS_SECONDS still counts as displayed at t (float rounding of PTS).
_EPS_SECONDS = 1e-6


@dataclass(frozen=True)
class Thumbnail:
    """One small RGB frame: `seconds` is the instant asked for (from the media origin)."""

    seconds: float
    image: np.ndarray  # uint8 (H, W, 3)


@dataclass(frozen=True)
class ThumbnailStrip:
    """The thumbnails of one video, or none and `note` saying why."""

    thumbnails: tuple[Thumbnail, ...] = ()
    note: str | None = None


def strip_times(start_seconds: float, end_seconds: float, count: int) -> list[float]:
    """`count` instants evenly spaced over [start, end]: the centres of equal slots."""
    if count <= 0 or not end_seconds > start_seconds:
        return [start_seconds] if count > 0 else []
    slot = (end_seconds - start_seconds) / count
    return [start_seconds + (i + 0.5) * slot for i in range(count)]


def strip_count(aspect: float, strip_width_inches: float, strip_height_inches: float, limit: int) -> int:
    """How many thumbnails of display aspect `aspect` (w/h) fit side by side in the strip."""
    thumb_width_inches = max(strip_height_inches * aspect, 1e-6)
    fits = int(strip_width_inches // thumb_width_inches)
    return max(1, min(fits, limit, MAX_THUMBNAILS))


def unreadable_reason(path: str) -> str | None:
    """Why `path` cannot be read again for thumbnails (None: it is a regular file)."""
    from mvrt.runtime.sources import is_url

    if path == "-" or is_url(path):
        return "live source"
    if not os.path.exists(path):
        return "file not found"
    if not is_regular(path):
        return "live source"
    return None


def display_aspect(path: str) -> float | None:
    """Width / height of the first video stream as displayed (None: no readable video)."""
    if unreadable_reason(path) is not None:
        return None
    import av

    try:
        with av.open(path, metadata_errors="replace") as container:
            stream = _video_stream(container)
            return None if stream is None else _aspect(stream)
    except (av.error.FFmpegError, OSError, ValueError):
        return None


def grab_strip(path: str, times_seconds: Sequence[float], height_px: int = 96) -> ThumbnailStrip:
    """The frames of `path` displayed at `times_seconds` (from the media origin), `height_px` high, in time order."""
    reason = unreadable_reason(path)
    if reason is not None:
        return ThumbnailStrip(note=f"no thumbnails ({reason})")
    import av

    try:
        with av.open(path, metadata_errors="replace") as container:
            return _grab(container, times_seconds, height_px)
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as exc:
        return ThumbnailStrip(note=f"no thumbnails (cannot decode: {_short(exc)})")


def _grab(container, times_seconds: Sequence[float], height_px: int) -> ThumbnailStrip:
    from mvrt.runtime.probe import origin_seconds

    stream = _video_stream(container)
    if stream is None:
        return ThumbnailStrip(note="no thumbnails (no video stream)")
    stream.thread_type = "AUTO"
    height = max(2, int(height_px))
    width = max(2, int(round(height * _aspect(stream))))
    origin = origin_seconds(container)
    reader = _Reader(container, stream)
    thumbnails = []
    for t in sorted(times_seconds):
        frame = reader.frame_at(origin + t)
        if frame is None:
            return ThumbnailStrip(note="no thumbnails (no frame decoded)")
        thumbnails.append(Thumbnail(float(t), _to_rgb(frame, width, height)))
    return ThumbnailStrip(tuple(thumbnails))


def _video_stream(container):
    return container.streams.video[0] if container.streams.video else None


def _aspect(stream) -> float:
    context = stream.codec_context
    width, height = context.width or 0, context.height or 0
    if width <= 0 or height <= 0:
        return 1.0
    sar = stream.sample_aspect_ratio or context.sample_aspect_ratio
    sar = float(sar) if sar and float(sar) > 0 else 1.0
    return min(max(width * sar / height, 0.2), 5.0)


class _Reader:
    """Frames displayed at increasing instants: decode forward, seek only to skip ahead (bounded)."""

    def __init__(self, container, stream):
        self.container, self.stream = container, stream
        self._frames = None  # the frame iterator since the last seek
        self._shown = None  # the frame displayed at the last instant asked for
        self._ahead = None  # the first frame after it, already decoded

    def frame_at(self, target_seconds: float):
        """The frame displayed at `target_seconds` (stream timeline): the last with time <= it."""
        if self._should_seek(target_seconds):
            self._seek(target_seconds)
        for _ in range(MAX_FRAMES_PER_SEEK):
            frame = self._ahead if self._ahead is not None else next(self._frames, None)
            self._ahead = None
            if frame is None:
                return self._shown  # the stream ended before the target: its last frame is displayed
            if frame.time is not None and frame.time > target_seconds + _EPS_SECONDS and self._shown is not None:
                self._ahead = frame
                return self._shown
            self._shown = frame
            if frame.time is not None and frame.time > target_seconds + _EPS_SECONDS:
                return frame  # nothing before the target (a seek landed after it): the first after
        return self._shown  # gave up: the last frame decoded

    def _should_seek(self, target_seconds: float) -> bool:
        current = None if self._shown is None else self._shown.time
        if self._frames is None or current is None or target_seconds < current:
            return True
        keyframe = self._keyframe_before(target_seconds)
        return keyframe is not None and keyframe > current + _SKIP_SECONDS

    def _keyframe_before(self, target_seconds: float) -> float | None:
        entries, base = self.stream.index_entries, self.stream.time_base
        if not len(entries) or base is None:
            return None
        index = entries.search_timestamp(int(math.floor(target_seconds / base)), backward=True)
        return float(entries[index].timestamp * base) if index >= 0 else None

    def _seek(self, target_seconds: float) -> None:
        stream = self.stream
        timestamp = max(int(math.floor(target_seconds / stream.time_base)), stream.start_time or 0)
        self.container.seek(timestamp, stream=stream, backward=True, any_frame=False)
        self._frames, self._shown, self._ahead = self._decode(), None, None

    def _decode(self):
        import av

        for count, packet in enumerate(self.container.demux(self.stream)):
            if count >= _MAX_PACKETS_PER_SEEK * MAX_THUMBNAILS:
                return
            try:
                yield from packet.decode()
            except av.error.InvalidDataError:
                continue  # a damaged packet: the next ones may still decode


def _to_rgb(frame, width: int, height: int) -> np.ndarray:
    from av.video.reformatter import Interpolation

    small = frame.reformat(width=width, height=height, format="rgb24", interpolation=Interpolation.AREA)
    return small.to_ndarray().copy()


def _short(exc: BaseException) -> str:
    """The reason alone (FFmpeg's message without its errno and file name), at most 60 characters."""
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    text = str(text).splitlines()[0]
    return text if len(text) <= 60 else text[:57] + "..."
