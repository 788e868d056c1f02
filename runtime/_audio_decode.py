"""Audio half of the decoder: one forward pass, mono float32, soxr resampling (DESIGN §4).

The first audio stream is decoded once per file, packet by packet and tolerantly (isolated
undecodable packets are skipped and counted, see `_packet_skip.decode_packets`). Each decoded
frame is checked (same sample rate and channel layout as the first, planes that match its
layout) before any conversion, down-mixed to mono as the mean of its channels, placed on the
media timeline by its presentation time, and fed to one streaming soxr resampler per target
rate. A rolling buffer per rate keeps only the samples that windows still to come can use, so
memory grows neither with the file length nor with the overlap of the windows.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import av
import numpy as np

from mvrt.errors import MediaError, UsageError
from mvrt.runtime._audio_timeline import CHUNK_SAMPLES, TRUNCATION_SECONDS, RateBuffer, Timeline
from mvrt.runtime._packet_skip import Feed, decode_packets
from mvrt.runtime._video_targets import GapLog
from mvrt.runtime.probe import (
    DEFAULT_READ_TIMEOUT_SECONDS,
    PathLike,
    check_read_timeout,
    decoder_context,
    expected_end_seconds,
    ffmpeg_reason,
    media_error,
    open_media,
    read_error,
)
from mvrt.runtime.windows import Window

_log = logging.getLogger(__name__)

# Integer sample formats -> (scale, offset) to float in [-1, 1).
_INT_FORMATS = {
    "u8": (1 / 128, -128.0),
    "s16": (1 / 2**15, 0.0),
    "s32": (1 / 2**31, 0.0),
    "s64": (1 / 2**63, 0.0),
}
# More channels than this is damage, not audio.
MAX_CHANNELS = 64
# PyAV counts a frame's planes by scanning FFmpeg's plane pointers up to a NULL, and there is
# one only after fewer than 8 planes (AV_NUM_DATA_POINTERS): with 8 planar channels it counts
# 9, with more whatever the heap holds next (27 for 12 once), and converting reads garbage
# pointers. Planar frames with more channels than this are made packed by FFmpeg first.
_PYAV_SAFE_PLANES = 7


@dataclass
class AudioDecodeStats:
    """Counters filled in while `iter_window_audio` or `decode_audio` runs."""

    undecodable_packets: int = 0  # packets the decoder rejected (skipped)
    empty_packets: int = 0  # zero-size packets in the stream (never sent to the decoder)


def _frame_problem(frame: "av.AudioFrame") -> str | None:
    """Why a decoded frame cannot be converted safely (None if it can); reads no samples."""
    channels = frame.layout.nb_channels
    if not 0 < channels <= MAX_CHANNELS:
        return f"audio frame with {channels} channels (damaged data; at most {MAX_CHANNELS} are accepted)"
    if frame.format.is_planar and channels > _PYAV_SAFE_PLANES:
        return None  # converted to packed by FFmpeg (`_Packer`), never through PyAV's planes
    planes = len(frame.planes)
    want = channels if frame.format.is_planar else 1
    if planes != want:
        kind = "planar" if frame.format.is_planar else "packed"
        return (
            f"audio frame with {planes} data planes for {channels} {kind} channels "
            f"({frame.format.name}, {frame.layout.name}): the data is damaged"
        )
    return None


class _Packer:
    """Planar frames with too many channels for PyAV's planes, made packed by FFmpeg.

    The same sample format, layout and rate in and out but for the packing, so FFmpeg's
    converter holds nothing back: each frame comes out whole at once.
    """

    def __init__(self, path: str | None = None):
        self._path = path
        self._key = self._resampler = None

    def __call__(self, frame: "av.AudioFrame") -> np.ndarray:
        """(1, samples * channels) interleaved samples of `frame`."""
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        try:
            if key != self._key:
                self._key = key
                self._resampler = av.AudioResampler(
                    format=frame.format.packed, layout=frame.layout, rate=frame.sample_rate
                )
            frames = self._resampler.resample(frame)
        except (av.error.FFmpegError, ValueError):
            frames = None
        if frames is None or sum(f.samples for f in frames) != frame.samples:
            problem = f"cannot convert {frame.layout.nb_channels}-channel planar audio ({frame.format.name})"
            raise media_error(self._path, problem) if self._path else MediaError(problem)
        return np.concatenate([f.to_ndarray() for f in frames], axis=1)


def frame_to_mono(frame: "av.AudioFrame") -> np.ndarray:
    """Mean of the channels of one decoded frame as float32, any sample format or layout.

    A frame that cannot be converted safely (see `_frame_problem`) is a MediaError.
    """
    problem = _frame_problem(frame)
    if problem:
        raise MediaError(problem)
    return _to_mono(frame, _Packer())


def _to_mono(frame: "av.AudioFrame", packer: _Packer) -> np.ndarray:
    """`frame_to_mono` of a frame already checked by `_frame_problem`."""
    channels = frame.layout.nb_channels
    fmt = frame.format
    if fmt.is_planar and channels > _PYAV_SAFE_PLANES:
        data, fmt = packer(frame), fmt.packed
    else:
        data = frame.to_ndarray()
    if not fmt.is_planar:  # packed: (1, samples*channels), interleaved
        data = data.reshape(-1, channels).T  # (channels, samples)
    base = fmt.name.rstrip("p")
    if base in _INT_FORMATS:
        scale, offset = _INT_FORMATS[base]
        mono = (data.astype(np.float64) + offset).mean(axis=0) * scale
    else:
        mono = data.mean(axis=0, dtype=np.float64)
    return mono.astype(np.float32)


def first_audio_stream(container: "av.container.InputContainer", path: str) -> "av.AudioStream":
    if not container.streams.audio:
        raise media_error(path, "no audio stream")
    stream = container.streams.audio[0]
    stream.thread_type = "AUTO"
    if not decoder_context(stream, path, "audio").sample_rate:
        raise media_error(path, "audio stream has no sample rate")
    return stream


def _layout(frame: "av.AudioFrame") -> tuple[str, int]:
    return frame.layout.name, frame.layout.nb_channels


def _check_frame(frame: "av.AudioFrame", rate: int, layout: tuple[str, int], path: str) -> None:
    """Refuse, before any conversion, a frame unlike the stream's first or unsafe to convert."""
    if frame.sample_rate != rate:
        raise media_error(path, f"audio sample rate changes mid-stream ({rate} -> {frame.sample_rate} Hz)")
    if _layout(frame) != layout:
        (was, was_count), (now, now_count) = layout, _layout(frame)
        raise media_error(
            path,
            f"audio channel layout changes mid-stream ({was}, {was_count} channels -> {now}, {now_count} "
            "channels); the stream is damaged or spliced",
        )
    problem = _frame_problem(frame)
    if problem:
        raise media_error(path, problem)


class AudioFeed(Feed):
    """The audio decoder's packets (`Feed`) and how they are timed.

    By default the file's origin; a live source passes its own origin, short chunks (low
    latency) and a `GapLog` for the silence it fills in.
    """

    def __init__(self, packets: Callable | None = None, on_send: Callable | None = None, *,
                 origin: float | None = None, chunk_samples: int = CHUNK_SAMPLES, live: bool = False,
                 gaps: GapLog | None = None):
        super().__init__(packets, on_send)
        self.origin, self.chunk_samples, self.live, self.gaps = origin, chunk_samples, live, gaps

    def timeline(self, container, stream, path: str) -> Timeline:
        return Timeline(container, stream, path, origin=self.origin, chunk_samples=self.chunk_samples,
                        live=self.live, gaps=self.gaps)


def _decode_mono(
    container, stream, path: str, stats: AudioDecodeStats, timeout: float | None, feed: AudioFeed | None = None
) -> Iterator[np.ndarray]:
    """Mono float32 chunks at the stream's rate, sample 0 at the media origin (`Timeline`)."""
    feed = feed or AudioFeed()
    rate = stream.codec_context.sample_rate
    timeline = feed.timeline(container, stream, path)
    layout = None  # the first frame's (layout name, channels)
    packer = _Packer(path)
    try:
        packets = feed.packets(container, stream)
        for frame in decode_packets(stream, packets, stats, path, feed.on_send):
            layout = layout or _layout(frame)
            _check_frame(frame, rate, layout, path)
            yield from timeline.add(_to_mono(frame, packer), frame.time)
    except av.error.FFmpegError as exc:
        where = f" after {timeline.produced / rate:.2f} s" if timeline.produced else ""
        problem = f"audio decoding failed{where} ({ffmpeg_reason(exc)}); the file is corrupt or truncated"
        raise read_error(path, exc, problem, timeout) from None
    yield from timeline.rest()


def _log_skipped(path: str, stats: AudioDecodeStats, before: int) -> None:
    if stats.undecodable_packets > before:
        _log.warning("%s: skipped %d undecodable audio packet(s)", path, stats.undecodable_packets - before)


def _check_complete(container, stream, path: str, decoded_seconds: float) -> None:
    """Raise if the stream stopped well before where the file says it ends."""
    if decoded_seconds <= 0:
        raise media_error(path, "audio stream contains no decodable samples")
    expected = expected_end_seconds(container, stream)
    if expected is not None and expected - decoded_seconds > max(TRUNCATION_SECONDS, 0.02 * expected):
        raise media_error(
            path,
            f"audio stops at {decoded_seconds:.2f} s but the file says {expected:.2f} s; "
            "it looks truncated or damaged",
        )


def _check_windows(windows: Sequence[Window], sample_rates: Sequence[int], window_seconds: float) -> None:
    if not window_seconds > 0:
        raise UsageError(f"window length must be positive, got {window_seconds}")
    if not sample_rates or any(int(sr) != sr or sr <= 0 for sr in sample_rates):
        raise UsageError(f"sample rates must be positive integers, got {list(sample_rates)}")
    starts = [w.start_seconds for w in windows]
    if any(b < a for a, b in zip(starts, starts[1:])):
        raise UsageError("windows must be given in order of their start time")


def iter_window_audio(
    path: PathLike,
    windows: Sequence[Window],
    sample_rates: Sequence[int],
    window_seconds: float,
    *,
    stats: AudioDecodeStats | None = None,
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
) -> Iterator[dict[int, np.ndarray]]:
    """Per window (in order): {rate: float32 mono samples}, round(window_seconds*rate) each.

    Samples start at round(start_seconds*rate); windows may overlap; the last ones are
    zero-padded where the media ends. One decode pass for all windows and rates. `stats`
    counts the packets skipped; a read waiting `read_timeout_seconds` for data is a MediaError.
    """
    name = os.fspath(path)
    rates = [int(sr) for sr in dict.fromkeys(sample_rates)]
    _check_windows(windows, rates, window_seconds)
    timeout = check_read_timeout(read_timeout_seconds)
    if not windows:
        return
    with open_media(name, read_timeout_seconds=timeout) as container:
        stream = first_audio_stream(container, name)
        yield from window_audio(container, stream, windows, name, rates, window_seconds, stats=stats, timeout=timeout)


def window_audio(
    container,
    stream,
    windows: Iterable[Window],
    path: str,
    rates: Sequence[int],
    window_seconds: float,
    *,
    stats: AudioDecodeStats | None = None,
    timeout: float | None = None,
    feed: AudioFeed | None = None,
) -> Iterator[dict[int, np.ndarray]]:
    """`iter_window_audio` on an open container; windows may be endless (a live source).

    A window is yielded as soon as audio up to its end has been decoded. On a live `feed`
    the end of the stream ends the windows: those not complete are never yielded.
    """
    feed = feed or AudioFeed()
    stats = stats if stats is not None else AudioDecodeStats()
    skipped_before = stats.undecodable_packets
    in_rate = stream.codec_context.sample_rate
    buffers = {sr: RateBuffer(in_rate, sr) for sr in rates}
    chunks = _decode_mono(container, stream, path, stats, timeout, feed)
    decoded, finished = 0, False
    ahead = iter(windows)
    window = next(ahead, None)
    try:
        while window is not None:
            spans = {sr: (int(round(window.start_seconds * sr)), int(round(window_seconds * sr))) for sr in rates}
            while not finished and any(buffers[sr].end < a + n for sr, (a, n) in spans.items()):
                chunk = next(chunks, None)
                if chunk is None:
                    for buf in buffers.values():
                        buf.feed(np.zeros(0, np.float32), last=True)
                    finished = True
                    _log_skipped(path, stats, skipped_before)
                    if feed.live:
                        if decoded <= 0:
                            raise media_error(path, "audio stream contains no decodable samples")
                    else:
                        _check_complete(container, stream, path, decoded / in_rate)
                else:
                    decoded += chunk.size
                    for buf in buffers.values():
                        buf.feed(chunk)
            if feed.live and finished and any(buffers[sr].end < a + n for sr, (a, n) in spans.items()):
                return  # the stream ended inside this window: it is not complete
            yield {sr: buffers[sr].take(a, n) for sr, (a, n) in spans.items()}
            window = next(ahead, None)
            if window is not None:
                for sr, buf in buffers.items():
                    buf.drop_before(int(round(window.start_seconds * sr)))
    finally:
        if not finished:  # the windows ended before the stream did
            _log_skipped(path, stats, skipped_before)


def decode_audio(
    path: PathLike,
    sample_rate: int,
    *,
    stats: AudioDecodeStats | None = None,
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
) -> np.ndarray:
    """The whole first audio stream as mono float32 at `sample_rate` (soxr HQ, whole array)."""
    import soxr

    name = os.fspath(path)
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise UsageError(f"sample rate must be a positive integer, got {sample_rate}")
    timeout = check_read_timeout(read_timeout_seconds)
    stats = stats if stats is not None else AudioDecodeStats()
    skipped_before = stats.undecodable_packets
    with open_media(name, read_timeout_seconds=timeout) as container:
        stream = first_audio_stream(container, name)
        in_rate = stream.codec_context.sample_rate
        chunks = list(_decode_mono(container, stream, name, stats, timeout))
        _log_skipped(name, stats, skipped_before)
        mono = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        _check_complete(container, stream, name, mono.size / in_rate)
    if in_rate == sample_rate:
        return mono
    return soxr.resample(mono, in_rate, int(sample_rate), quality="HQ").astype(np.float32, copy=False)
