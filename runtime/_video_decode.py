"""Video half of the decoder: frames chosen by presentation time in one pass (DESIGN §4).

All target instants of all windows are merged and resolved during a single forward decode
of the first video stream (threaded). The frame displayed at t is the last decoded frame
with PTS <= t (the first frame if none). A frame is resized (inside `frame.reformat`, area
interpolation) only once it is known to be displayed at some target, so most frames are
never converted. The decoder seeks only when the stream's index shows a keyframe between
the current position and the next target that is worth jumping to.

Packets are demuxed and sent to the decoder one by one, so that those whose frame no target
shows and no other frame needs (H.264 non-reference pictures) are never decoded at all
(`_packet_skip`, `_h264_refs`): the frames chosen stay bit-identical. Packets are decoded
tolerantly (`_packet_skip.decode_packets`): empty ones are never sent, undecodable ones are
skipped and counted.

Each chosen frame is resized once and held once, however many windows show it: a window's
array is assembled only when the window is released, so memory is bounded by the window
length and the frame rate, not by the overlap of the windows.

`decode` ("auto", "cpu", "nvdec", "v4l2"; `hw_decode`) says which decoder makes the frames.
Only the decoding differs: the packets sent, the frame choice by presentation time and the
resize (`_video_resize.to_rgb`; a frame still on the GPU is copied to system memory inside
`reformat`) are the same code for every decoder.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import av
import numpy as np

from mvrt.errors import UsageError
from mvrt.runtime import hw_decode
from mvrt.runtime._gop_skip import skip_gops
from mvrt.runtime._h264_refs import H264Refs
from mvrt.runtime._packet_skip import LOOKAHEAD_PACKETS, Feed, SkipPlan, decode_packets, packets_to_decode
from mvrt.runtime._video_resize import Converter as _Converter
from mvrt.runtime._video_targets import GapLog, GapWatch, Targets, WindowFrames
from mvrt.runtime.probe import (
    DEFAULT_READ_TIMEOUT_SECONDS,
    PathLike,
    check_read_timeout,
    decoder_context,
    expected_end_seconds,
    ffmpeg_reason,
    media_error,
    open_media,
    origin_seconds,
    read_error,
)
from mvrt.runtime.windows import Window

_log = logging.getLogger(__name__)

# Seek only when it skips at least this much video (a seek refills the decoder's threads).
MIN_SKIP_SECONDS = 1.0
# A frame at t + _EPS_SECONDS still counts as displayed at t (float rounding of PTS).
_EPS_SECONDS = 1e-6
# Give up on a seek that keeps landing after its target after this many retries.
_SEEK_RETRIES = 3
_TRUNCATION_SECONDS = 0.5


@dataclass
class VideoDecodeStats:
    """Counters filled in while `iter_window_frames` runs (for tests and benchmarks)."""

    frames_decoded: int = 0
    frames_converted: int = 0
    seeks: int = 0
    packets_skipped: int = 0  # packets no target needs (never decoded)
    gops_skipped: int = 0  # whole groups of pictures passed over (the one-pass reading's seeks)
    undecodable_packets: int = 0  # packets the decoder rejected (skipped)
    empty_packets: int = 0  # zero-size packets in the stream (never sent to the decoder)


class _Feed(Feed):
    """The video decoder's packets (`Feed`: its own demux is seekable, a shared one is not),
    how far the non-reference skip looks ahead, and whether unseen GOPs are dropped."""

    def __init__(self, packets: Callable | None = None, on_send: Callable | None = None,
                 lookahead: int = LOOKAHEAD_PACKETS, skip_gops: bool = False):
        super().__init__(packets, on_send)
        self.lookahead = lookahead
        self.skip_gops = skip_gops and self.shared  # the one-pass reading's stand-in for seeks


class _OwnContext:
    """What `decode_packets` decodes with when the decoder is not the stream's own (NVDEC, V4L2)."""

    type = "video"

    def __init__(self, context):
        self.decode = context.decode


class _Decoder:
    """Forward decoding of one video stream with optional index-guided seeks.

    `choice` (`hw_decode.DecodeChoice`) says which decoder: the stream's own codec context
    (CPU), or one of its own (`hw_decode.open_decoder`), flushed after every seek.
    """

    def __init__(
        self,
        container,
        stream,
        path: str,
        stats: VideoDecodeStats,
        seek: bool,
        skip: SkipPlan | None,
        timeout: float | None = None,
        feed: "_Feed | None" = None,
        choice: hw_decode.DecodeChoice | None = None,
    ):
        self.container, self.stream, self.path, self.stats = container, stream, path, stats
        self.choice = choice or hw_decode.DecodeChoice("cpu", stream.codec_context.name, "decode='cpu'")
        self.context = hw_decode.open_decoder(stream, self.choice, path)
        self._decoding = _OwnContext(self.context) if self.choice.own_context else stream
        self._undecodable_before = stats.undecodable_packets
        self.timeout = timeout
        self.feed = feed or _Feed()
        self.targets: Targets | None = None  # set by window_frames (GOP skipping asks it)
        self.allow_seek = seek
        self.skip = skip
        rate = stream.average_rate or stream.guessed_rate
        self.frame_seconds = 1.0 / float(rate) if rate else 0.0
        self.last_time: float | None = None
        self._frames = self._decode()

    def _packets(self) -> Iterator["av.Packet"]:
        """Demuxed packets from the current position (a fresh lookahead after every seek)."""
        packets = self.feed.packets(self.container, self.stream)
        if self.feed.skip_gops and self.targets is not None:
            packets = skip_gops(packets, self._next_target, self._count_gop, _EPS_SECONDS)
        if self.skip is None:
            return packets
        return packets_to_decode(packets, self.skip, self._count_skip, self.feed.lookahead)

    def _count_skip(self) -> None:
        self.stats.packets_skipped += 1

    def _count_gop(self, packets: int) -> None:
        self.stats.gops_skipped += 1
        self.stats.packets_skipped += packets

    def _next_target(self, seconds: float) -> float:
        return self.targets.next_after(seconds, 2 * MIN_SKIP_SECONDS)

    def _decode(self) -> Iterator["av.VideoFrame"]:
        try:  # the packets end with an empty one, which flushes
            yield from decode_packets(self._decoding, self._packets(), self.stats, self.path, self.feed.on_send)
        except av.error.FFmpegError as exc:  # reading packets failed (decoding errors are skipped)
            where = f" near {self.last_time:.2f} s" if self.last_time is not None else ""
            problem = f"video decoding failed{where} ({ffmpeg_reason(exc)}); the file is corrupt or truncated"
            raise read_error(self.path, exc, problem, self.timeout) from None

    def next_frame(self) -> tuple["av.VideoFrame", float] | None:
        frame = next(self._frames, None)
        if frame is None:
            rejected = self.stats.undecodable_packets > self._undecodable_before
            if self.last_time is None and self.choice.own_context and rejected:
                raise hw_decode.decoded_nothing(self.path, self.choice)
            return None
        self.stats.frames_decoded += 1
        if self.last_time is None:
            self._first_frame(frame)
        if frame.time is not None:
            time = float(frame.time)
        else:  # no timestamp: assume the nominal frame rate (so every frame must be decoded)
            if self.skip is not None:
                self.skip.enabled = False
            time = self.last_time + self.frame_seconds if self.last_time is not None else 0.0
        self.last_time = time
        return frame, time

    def _first_frame(self, frame) -> None:
        """NVDEC under decode='auto' may hand a stream the GPU cannot decode to the software decoder."""
        if self.choice.kind == "nvdec" and not hw_decode.on_device(frame):
            _log.warning("%s: NVDEC cannot decode this %s video (%s); FFmpeg decodes it in software, on one "
                         "thread (decode='cpu' decodes it on every core)", self.path, self.choice.codec_name,
                         frame.format.name)

    def _keyframe_before(self, target: float) -> tuple[int, int] | None:
        """(index entry, timestamp) of the last indexed keyframe at or before `target`."""
        entries = self.stream.index_entries
        base = self.stream.time_base
        if not len(entries) or base is None:
            return None
        index = entries.search_timestamp(int(math.floor(target / base)), backward=True)
        return (index, entries[index].timestamp) if index >= 0 else None

    def seek_towards(self, target: float, current: float) -> "tuple[av.VideoFrame, float] | None":
        """Jump towards `target` if the index shows a keyframe before it well past `current`.

        Returns the first frame decoded after the jump (its PTS <= target), or None when no
        jump was made. Index timestamps may be decode times (MP4), so the seek itself asks
        FFmpeg for the target; a landing after the target retries from earlier keyframes,
        and repeated failure restarts from the stream start with seeking disabled.
        """
        if not self.allow_seek:
            return None
        found = self._keyframe_before(target)
        if found is None or float(found[1] * self.stream.time_base) - current < MIN_SKIP_SECONDS:
            return None
        entries = self.stream.index_entries
        timestamp = int(math.floor(target / self.stream.time_base))
        for _ in range(_SEEK_RETRIES):
            landed = self._seek(timestamp)
            if landed is not None and landed[1] <= target + _EPS_SECONDS:
                return landed
            before = landed[0].pts if landed is not None and landed[0].pts is not None else timestamp
            index = entries.search_timestamp(min(before, timestamp) - 1, backward=True)
            if index < 0:
                break
            timestamp = entries[index].timestamp
        self.allow_seek = False
        return self._seek(self.stream.start_time or 0)

    def _seek(self, timestamp: int) -> tuple["av.VideoFrame", float] | None:
        # Close the packet reader first: while it is open, PyAV's read timeout counts from its
        # last read, and a seek after a long wait (the consumer's) would be interrupted.
        self._frames.close()
        try:
            self.container.seek(timestamp, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            problem = f"seeking in the video failed ({ffmpeg_reason(exc)})"
            raise read_error(self.path, exc, problem, self.timeout) from None
        if self.choice.own_context:  # the container's seek flushes the stream's own context only
            self.context.flush_buffers()
        self.stats.seeks += 1
        self._frames = self._decode()
        return self.next_frame()

    def load_index(self) -> None:
        """Matroska loads its keyframe index (Cues) on the first seek: seek to the start.

        Only Matroska: formats without an index (MPEG-TS) seek by byte position, which can
        land after the first keyframe and lose every frame before the next one.
        """
        matroska = "matroska" in self.container.format.name
        if not self.allow_seek or not matroska or len(self.stream.index_entries) > 1:
            return
        try:
            self.container.seek(
                self.stream.start_time or 0, stream=self.stream, backward=True, any_frame=False
            )
        except av.error.FFmpegError:
            self.allow_seek = False


def _check_windows(windows: Sequence[Window], frames: int, size: int) -> None:
    if frames <= 0 or size <= 0:
        raise UsageError(f"frames and size must be positive, got frames={frames}, size={size}")
    starts = [w.start_seconds for w in windows]
    if any(b < a for a, b in zip(starts, starts[1:])):
        raise UsageError("windows must be given in order of their start time")


def _skip_plan(stream, targets: Targets, path: str) -> SkipPlan | None:
    """How to skip non-reference packets, for the codecs where that is known to be safe."""
    context = decoder_context(stream, path, "video")
    if context.name != "h264":
        return None
    refs = H264Refs(context.extradata)
    return SkipPlan(targets, refs.droppable, _EPS_SECONDS)


def first_video_stream(container, path: str):
    if not container.streams.video:
        raise media_error(path, "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    decoder_context(stream, path, "video")
    return stream


def _check_complete(container, stream, path: str, decoder: _Decoder, targets: Targets) -> None:
    """At the end of the stream: raise if targets remain well past a premature end."""
    if decoder.last_time is None:
        raise media_error(path, "video stream contains no decodable frames")
    reached = decoder.last_time + decoder.frame_seconds
    expected = expected_end_seconds(container, stream)
    if expected is None or targets.done or targets.upcoming <= reached:
        return
    expected += origin_seconds(container)
    if expected - reached > max(_TRUNCATION_SECONDS, 0.02 * expected):
        origin = origin_seconds(container)
        raise media_error(
            path,
            f"video stops at {reached - origin:.2f} s but the file says {expected - origin:.2f} s; "
            "it looks truncated or damaged",
        )


def iter_window_frames(
    path: PathLike,
    windows: Sequence[Window],
    frames: int = 64,
    size: int = 128,
    *,
    seek: bool = True,
    skip_nonref: bool = True,
    stats: VideoDecodeStats | None = None,
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
    decode: str = "auto",
) -> Iterator[np.ndarray]:
    """Per window (in order): uint8 (frames, size, size, 3) RGB frames displayed at its targets.

    Targets are `window.frame_times(frames)` from the media origin. One forward pass serves
    all windows (overlapping ones share it); `seek=False` forbids seeking, and
    `skip_nonref=False` decodes even the non-reference frames that no target shows. `stats`
    counts the work done and the packets skipped; a read waiting `read_timeout_seconds` for
    data is a MediaError (None: wait for ever). `decode` picks the decoder (`hw_decode`).
    """
    name = os.fspath(path)
    _check_windows(windows, frames, size)
    hw_decode.check_decode(decode)
    timeout = check_read_timeout(read_timeout_seconds)
    if not windows:
        return
    with open_media(name, read_timeout_seconds=timeout) as container:
        stream = first_video_stream(container, name)
        yield from window_frames(container, stream, windows, name, frames, size, origin_seconds(container),
                                 seek=seek, skip_nonref=skip_nonref, stats=stats, timeout=timeout, decode=decode)


def window_frames(
    container,
    stream,
    windows: Iterable[Window],
    path: str,
    frames: int,
    size: int,
    origin: float,
    *,
    seek: bool = True,
    skip_nonref: bool = True,
    stats: VideoDecodeStats | None = None,
    timeout: float | None = None,
    feed: _Feed | None = None,
    live: bool = False,
    gaps: GapLog | None = None,
    decode: str = "auto",
) -> Iterator[np.ndarray]:
    """`iter_window_frames` on an open container: windows may be endless (a live source).

    `feed` supplies the packets (a shared demux: then no seeking); `live` skips the
    end-of-file checks (a stream has no claimed end) and forgets old targets; `gaps` records
    where frames were missing and the previous one was held; `decode` picks the decoder
    (`hw_decode`: "auto", "cpu", "nvdec", "v4l2"), logged once per input.
    """
    stats = stats if stats is not None else VideoDecodeStats()
    skipped_before = stats.undecodable_packets
    targets = Targets(windows, frames, origin, prune=live)
    out = WindowFrames(frames)
    skip = _skip_plan(stream, targets, path) if skip_nonref else None
    choice = hw_decode.choose_decoder(decoder_context(stream, path, "video").name, decode, path)
    hw_decode.log_choice(path, choice)
    decoder = _Decoder(container, stream, path, stats, seek and feed is None, skip, timeout, feed, choice)
    decoder.targets = targets
    if decoder.allow_seek and isinstance(windows, Sequence) and len(windows):
        times = np.sort(np.concatenate([w.frame_times(frames) for w in windows])) + origin
        if np.diff(times, prepend=origin).max() >= MIN_SKIP_SECONDS:
            decoder.load_index()
    convert = _Converter(size, stats)
    watch = GapWatch(gaps, origin, decoder.frame_seconds)
    try:
        yield from _pick(decoder, targets, out, convert, watch, live)
    finally:
        if stats.undecodable_packets > skipped_before:
            skipped = stats.undecodable_packets - skipped_before
            _log.warning("%s: skipped %d undecodable video packet(s)", path, skipped)
    if not targets.done and not live:
        raise media_error(path, "video stream contains no decodable frames")


def _pick(
    decoder: _Decoder, targets: Targets, out: WindowFrames, convert: _Converter, watch: GapWatch, live: bool
) -> Iterator[np.ndarray]:
    """The frame-choice loop: assign each target the last frame with PTS <= target."""
    previous = None  # (frame, time): latest frame not after the upcoming target
    decoded = decoder.next_frame()  # the frame after `previous`
    checked = -1  # the target whose keyframe was last looked up
    while not targets.done:
        if decoded is not None and decoded[1] <= targets.upcoming + _EPS_SECONDS and checked != targets.next:
            checked = targets.next
            landed = decoder.seek_towards(targets.upcoming, decoded[1])
            if landed is not None:
                previous, decoded = None, landed
        if decoded is None:  # end of stream: the last frame stays on screen
            if live:  # no claimed end: the last frame shows for one frame, later windows stay incomplete
                if decoder.last_time is None:
                    raise media_error(decoder.path, "video stream contains no decodable frames")
                if previous is not None:
                    _assign_until(targets, out, convert, previous[0], previous[1] + decoder.frame_seconds)
                    yield from out.ready()
                return
            _check_complete(decoder.container, decoder.stream, decoder.path, decoder, targets)
            if previous is None:
                return
            _assign_until(targets, out, convert, previous[0], math.inf)
        else:
            watch.frame(decoded[1])
            if decoded[1] > targets.upcoming + _EPS_SECONDS:
                frame = previous[0] if previous is not None else decoded[0]  # first frame if none before
                _assign_until(targets, out, convert, frame, decoded[1])
            previous, decoded = decoded, decoder.next_frame()
        yield from out.ready()


def _assign_until(targets: Targets, out: WindowFrames, convert: _Converter, frame, before: float) -> None:
    """Give `frame` to every unresolved target earlier than `before` (minus the tolerance)."""
    while not targets.done and targets.upcoming + _EPS_SECONDS < before:
        i = targets.next
        out.put(targets.window_at(i), int(targets.slot[i]), convert(frame))
        targets.next += 1
