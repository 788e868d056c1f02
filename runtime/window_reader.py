"""From an input to per-window network inputs: one demux pass, both decoders, the front-end.

`iter_input_features` opens an input once (file, stdin, pipe, URL, device), decides whether
it is read as a file (windows planned over its duration) or live (DESIGN §9: W every H from
time 0, each window emitted once complete), and decodes its first audio and first video
stream from one pass of packets (`_demux.SharedDemux`): audio and video each in a background
thread (a live stream's frames are decoded as they arrive), both bounded, so memory grows
neither with the length of the input nor with how long a stream runs. Each window comes
with the arrival time of the last packet it needed and the seconds of it that were filled in
(a hole in the stream).

A `MediaPair` (sound and picture in two files, DESIGN §8, the authors' layout) is read the
same way (`iter_input_features` or `iter_pair_features`, through `_pair_reader`): each file
opened once, its own demux and decoder thread, windows planned as for the file that muxes the
two. `media_seconds` is the duration windows are planned over, for a file or a pair alike, and
`window_at` the one window from a given start that `mvrt features` and the feature cache use.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from mvrt.config import DEFAULT_READ_TIMEOUT_SECONDS, ModelConfig
from mvrt.errors import MediaError, UsageError
from mvrt.runtime._audio_decode import AudioFeed, first_audio_stream, window_audio
from mvrt.runtime._audio_timeline import CHUNK_SAMPLES
from mvrt.runtime._demux import LiveClock, SharedDemux
from mvrt.runtime._pair_reader import decode_pair, open_pair, pair_duration
from mvrt.runtime._packet_skip import LOOKAHEAD_PACKETS
from mvrt.runtime._threads import prefetch
from mvrt.runtime._video_decode import _Feed, first_video_stream, window_frames
from mvrt.runtime._video_targets import GapLog, gap_seconds
from mvrt.runtime.decode import AudioDecodeStats, VideoDecodeStats, probe
from mvrt.runtime.network_inputs import window_features
from mvrt.runtime.inputs import MediaPair
from mvrt.runtime.probe import (
    _check_stream_ends,
    abandon,
    check_read_timeout,
    media_error,
    missing_streams,
    open_media,
    origin_seconds,
    stated_duration_seconds,
)
from mvrt.runtime.sources import SourceOptions, file_windows_for, is_forced_live, live_windows
from mvrt.runtime.windows import Window

log = logging.getLogger(__name__)

# Live sources: audio is resampled in chunks this short, and the non-reference skip looks this
# few packets ahead, so that a window is not held back waiting for media it does not need.
LIVE_CHUNK_SAMPLES = 2048
LIVE_LOOKAHEAD_PACKETS = 4
_CLOSE_GRACE_SECONDS = 5.0
# Formats read from a file that describe a live session (an RTP stream's SDP).
_SESSION_FORMATS = {"sdp"}


@dataclass
class DecodeCounts:
    """What the decoders of one input skipped: undecodable and empty packets, both streams."""

    audio: AudioDecodeStats = field(default_factory=AudioDecodeStats)
    video: VideoDecodeStats = field(default_factory=VideoDecodeStats)

    @property
    def undecodable_packets(self) -> int:
        return self.audio.undecodable_packets + self.video.undecodable_packets


@dataclass(frozen=True)
class InputOpened:
    """An input was opened: live or a file, and (files) how many windows it will yield."""

    path: str
    live: bool
    windows: int | None


@dataclass(frozen=True)
class WindowFeatures:
    """One window's network inputs, when its last needed packet arrived, and what was filled in."""

    window: Window
    feeds: dict[str, np.ndarray] = field(repr=False)
    ready_monotonic: float | None = None  # time.monotonic() at the arrival of its last needed packet
    gap_seconds: float = 0.0


def file_windows(
    path: str | os.PathLike,
    config: ModelConfig,
    hop_seconds: float | None = None,
    *,
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
) -> list[Window]:
    """Probe `path` (both streams required) and plan its windows."""
    info = probe(path, require_streams=True, read_timeout_seconds=read_timeout_seconds)
    return file_windows_for(info.duration_seconds, config.frontend.window_seconds, hop_seconds, SourceOptions())


def media_seconds(source: str | os.PathLike | MediaPair, *,
                  read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS) -> float:
    """The duration the reader plans the windows of a file or a `MediaPair` over (0: unknown).

    A file's: its container's, else the longer of its first audio and video streams', else
    measured from its packets. A pair's: the longer of its two files' (as for the file that
    muxes both), refused when they disagree wildly.
    """
    timeout = check_read_timeout(read_timeout_seconds)
    if isinstance(source, MediaPair):
        with open_pair(source, timeout) as (sound, picture):
            return pair_duration(source, sound, picture, timeout)
    name = os.fspath(source)
    with open_media(name, read_timeout_seconds=timeout) as container:
        duration = _duration(container, *_streams(container, name), name)
    if duration is None:  # a file that states no duration: measured by a scan of its packets
        duration = probe(name, require_streams=True, read_timeout_seconds=timeout).duration_seconds
    return duration


def window_at(source: str | os.PathLike | MediaPair, config: ModelConfig, start_seconds: float, *,
              read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS) -> Window:
    """The single window of a file or a `MediaPair` that starts at `start_seconds`, as the reader cuts it.

    Its span (where its frames are taken) reaches to `media_seconds(source)` at most. `mvrt
    features` and the feature cache (a clip's first window) both take their window from here.
    """
    duration = media_seconds(source, read_timeout_seconds=read_timeout_seconds)
    window_seconds = config.frontend.window_seconds
    if start_seconds < 0:
        raise UsageError(f"start_seconds must be >= 0, got {start_seconds}", setting="start_seconds")
    if duration > 0 and start_seconds >= duration:
        raise MediaError(f"{source}: start_seconds {start_seconds:g} lies beyond the end ({duration:.2f} s)",
                         setting="start_seconds")
    span = min(window_seconds, duration - start_seconds) if duration > 0 else window_seconds
    return Window(0, float(start_seconds), window_seconds, float(span))


def iter_file_features(
    path: str | os.PathLike,
    config: ModelConfig,
    windows: list[Window],
    *,
    implementation: str = "auto",
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
    counts: DecodeCounts | None = None,
    decode: str = "auto",
) -> Iterator[tuple[Window, dict[str, np.ndarray]]]:
    """Yield (window, inputs) for the given windows of a file, from one demux pass.

    `decode` picks the video decoder ("auto", "cpu", "nvdec", "v4l2"; `hw_decode`)."""
    name = os.fspath(path)
    timeout = check_read_timeout(read_timeout_seconds)
    counts = counts if counts is not None else DecodeCounts()
    with open_media(name, read_timeout_seconds=timeout) as container:
        audio, video = _streams(container, name)
        plan = _Plan(name, False, windows, origin_seconds(container))
        for item in _decode(container, audio, video, plan, config, implementation, timeout, counts, decode=decode):
            yield item.window, item.feeds


def iter_input_features(
    path: str | os.PathLike | MediaPair,
    config: ModelConfig,
    *,
    hop_seconds: float | None = None,
    options: SourceOptions = SourceOptions(),
    implementation: str = "auto",
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
    counts: DecodeCounts | None = None,
    first_index: int = 0,
    offset_seconds: float = 0.0,
    stop: threading.Event | None = None,
    decode: str = "auto",
) -> Iterator[InputOpened | WindowFeatures]:
    """`InputOpened`, then a `WindowFeatures` per window as it completes, from one open of `path`.

    `first_index` and `offset_seconds` continue the window numbering and media clock of an
    earlier connection to the same live source (reconnection). Once `stop` is set, reading
    ends at the next packet (a live source's window in progress is dropped). A `MediaPair`
    is read as `iter_pair_features` says (a file, never live). `decode` picks the video decoder
    ("auto", "cpu", "nvdec", "v4l2"; `hw_decode`).
    """
    timeout = check_read_timeout(read_timeout_seconds)
    counts = counts if counts is not None else DecodeCounts()
    if isinstance(path, MediaPair):
        yield from _pair_features(path, config, hop_seconds, options, implementation, timeout, counts, stop, decode)
        return
    name = os.fspath(path)
    window_seconds = config.frontend.window_seconds
    live = is_forced_live(name, options)
    with open_media(name, read_timeout_seconds=timeout, input_format=options.input_format,
                    input_options=options.options) as container:
        audio, video = _streams(container, name)
        duration = None if live else _duration(container, audio, video, name)
        if not live and duration is None and (not os.path.isfile(name) or container.format.name in _SESSION_FORMATS):
            live = True  # a stream that states no duration (an .sdp file describes one)
        if live:
            windows = live_windows(window_seconds, hop_seconds, options, first_index=first_index,
                                   offset_seconds=offset_seconds)
            plan = _Plan(name, True, windows, None, offset_seconds)
            yield InputOpened(name, True, None)
        else:
            if duration is None:  # a file that states no duration: measured by a scan of its packets
                duration = probe(name, require_streams=True, read_timeout_seconds=timeout).duration_seconds
            windows = file_windows_for(duration, window_seconds, hop_seconds, options)
            plan = _Plan(name, False, windows, origin_seconds(container))
            yield InputOpened(name, False, len(windows))
        yield from _decode(container, audio, video, plan, config, implementation, timeout, counts, stop, decode)


def iter_pair_features(pair: MediaPair, config: ModelConfig, **settings) -> Iterator[InputOpened | WindowFeatures]:
    """`iter_input_features(pair, config, **settings)`: sound from `pair.audio`, picture from `pair.video`.

    Each file is opened once and read by its own demux and decoder thread. The windows and the
    media clock are those of the file that muxes both streams: planned over the longer of the
    two durations (`media_seconds`), time 0 at the earlier positive start. Durations more
    than `_pair_reader.PAIR_MISMATCH_SECONDS` apart are a warning (the shorter stream is padded: silence, or
    its last frame held). A window is ready once both decoders have delivered it.
    """
    if not isinstance(pair, MediaPair):
        raise UsageError(f"iter_pair_features reads a MediaPair, got {pair!r}")
    return iter_input_features(pair, config, **settings)


def _pair_features(pair: MediaPair, config: ModelConfig, hop_seconds: float | None, options: SourceOptions,
                   implementation: str, timeout: float | None, counts: DecodeCounts,
                   stop: threading.Event | None, decode: str) -> Iterator[InputOpened | WindowFeatures]:
    with open_pair(pair, timeout) as (sound, picture):
        duration = pair_duration(pair, sound, picture, timeout)
        windows = file_windows_for(duration, config.frontend.window_seconds, hop_seconds, options)
        yield InputOpened(pair.video, False, len(windows))
        for window, audio_part, video_part, ready in decode_pair(pair, sound, picture, windows, config, timeout,
                                                                 counts, stop, decode):
            feeds = window_features(audio_part, video_part, config, implementation=implementation)
            yield WindowFeatures(window, feeds, ready)


def _streams(container, path: str):
    problem = missing_streams(bool(container.streams.audio), bool(container.streams.video))
    if problem:
        raise media_error(path, problem)
    return first_audio_stream(container, path), first_video_stream(container, path)


def _duration(container, audio, video, path: str) -> float | None:
    """A file's stated duration (None when it states none); refuses wildly disagreeing streams."""
    _check_stream_ends(container, audio, video, path)
    return stated_duration_seconds(container, (audio, video))


@dataclass
class _Plan:
    path: str
    live: bool
    windows: Iterable[Window]
    origin: float | None  # None: a live source's first timestamp
    offset_seconds: float = 0.0  # media time of this connection's time 0

    def copies(self) -> tuple[Iterable[Window], Iterable[Window], Iterable[Window]]:
        """The windows for the audio decoder, the video decoder (this connection's clock) and the caller."""
        if not self.live:
            return self.windows, self.windows, self.windows
        audio, video, caller = itertools.tee(self.windows, 3)  # apart by a few windows at most
        if not self.offset_seconds:
            return audio, video, caller
        return self._local(audio), self._local(video), caller

    def _local(self, windows: Iterable[Window]) -> Iterator[Window]:
        for window in windows:
            yield dataclasses.replace(window, start_seconds=window.start_seconds - self.offset_seconds)


def _stamped(items: Iterator, shared: SharedDemux, kind: str) -> Iterator[tuple[object, float | None]]:
    """Each item with the arrival of the last packet sent to `kind`'s decoder before it was made."""
    for item in items:
        yield item, shared.last_sent_arrival[kind]


def _decode(container, audio, video, plan: _Plan, config: ModelConfig, implementation: str,
            timeout: float | None, counts: DecodeCounts, stop: threading.Event | None = None,
            decode: str = "auto") -> Iterator[WindowFeatures]:
    """The windows of `plan` from one pass over the container's packets."""
    fe, path, live = config.frontend, plan.path, plan.live
    clock = LiveClock(path) if live else None
    shared = SharedDemux(container, audio, video, path, clock, stop)
    drift = _DriftWatch(path, clock)
    origin = plan.origin
    if origin is None:
        # A live source's time 0 is its first timestamp: negative too (FFmpeg unwraps an MPEG-TS
        # stream that began just before the 2**33 wrap to negative times).
        start = container.start_time
        origin = start / 1e6 if start is not None else (shared.first_seconds() or 0.0)
    gaps = (GapLog(), GapLog())
    audio_windows, video_windows, windows = plan.copies()
    rates = sorted(set(config.audio_inputs.values()))
    audio_feed = AudioFeed(shared.packets, lambda p: shared.sent(p, "audio"), origin=origin, live=live,
                           gaps=gaps[0], chunk_samples=LIVE_CHUNK_SAMPLES if live else CHUNK_SAMPLES)
    samples = prefetch(_stamped(window_audio(container, audio, audio_windows, path, rates, fe.window_seconds,
                                             stats=counts.audio, timeout=timeout, feed=audio_feed), shared, "audio"),
                       depth=2, name="mvrt-audio")
    video_feed = _Feed(shared.packets, lambda p: shared.sent(p, "video"),
                       LIVE_LOOKAHEAD_PACKETS if live else LOOKAHEAD_PACKETS, skip_gops=not live)
    # Video decodes in a thread of its own too: it keeps up with a live stream as it arrives,
    # instead of decoding a whole window's frames in a burst once its audio is complete.
    frames = prefetch(_stamped(window_frames(container, video, video_windows, path, fe.frames, fe.image_size, origin,
                                             stats=counts.video, timeout=timeout, feed=video_feed, live=live,
                                             gaps=gaps[1], decode=decode), shared, "video"),
                      depth=2, name="mvrt-video")
    try:
        for window in windows:
            try:
                (audio_part, audio_ready), (video_part, video_ready) = next(samples), next(frames)
            except StopIteration:
                if live or (stop is not None and stop.is_set()):
                    return  # the stream ended (or the run): the window in progress is not complete
                raise MediaError(f"{path}: decoding ended before window {window.index}") from None
            ready = _latest(audio_ready, video_ready)
            local = window.start_seconds - plan.offset_seconds
            gap = gap_seconds(gaps, local, local + window.span_seconds)
            for log in gaps:
                log.forget_before(local)
            drift.check()
            feeds = window_features(audio_part, video_part, config, implementation=implementation)
            yield WindowFeatures(window, feeds, ready, gap)
    finally:
        if not shared.release(_CLOSE_GRACE_SECONDS if timeout is None else timeout + _CLOSE_GRACE_SECONDS):
            abandon(container)
        samples.close()
        frames.close()


# Audio and video clocks further apart than this (two windows running) are reported.
MAX_DRIFT_SECONDS = 0.5


class _DriftWatch:
    """Warns when a live source's audio and video timestamps drift apart, and when they recover."""

    def __init__(self, path: str, clock: LiveClock | None):
        self.path, self.clock = path, clock
        self.over = 0
        self.reported = False

    def check(self) -> None:
        drift = self.clock.drift_seconds() if self.clock is not None else None
        if drift is None:
            return
        self.over = self.over + 1 if abs(drift) > MAX_DRIFT_SECONDS else 0
        if self.over >= 2 and not self.reported:
            self.reported = True
            ahead = "audio" if drift > 0 else "video"
            log.warning("%s: audio and video clocks have drifted %.2f s apart (%s ahead)", self.path, abs(drift), ahead)
        elif self.over == 0 and self.reported:
            self.reported = False
            log.warning("%s: audio and video clocks are back in step (%.2f s apart)", self.path, abs(drift))


def _latest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None
