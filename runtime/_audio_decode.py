"""Audio half of the decoder: one forward pass, mono float32, soxr resampling (DESIGN §4).

The first audio stream is decoded once per file. Each decoded frame is down-mixed to mono as
the mean of its channels, placed on the media timeline by its presentation time, and fed to
one streaming soxr resampler per target rate. A rolling buffer per rate keeps only the
samples that windows still to come can use, so memory does not grow with the file length.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import av
import numpy as np

from mvrt.errors import UsageError
from mvrt.runtime.probe import (
    PathLike,
    expected_end_seconds,
    ffmpeg_reason,
    media_error,
    open_media,
    origin_seconds,
)
from mvrt.runtime.windows import Window

# Integer sample formats -> (scale, offset) to float in [-1, 1).
_INT_FORMATS = {
    "u8": (1 / 128, -128.0),
    "s16": (1 / 2**15, 0.0),
    "s32": (1 / 2**31, 0.0),
    "s64": (1 / 2**63, 0.0),
}
# Decoded frames are batched into chunks of about this many samples before resampling.
_CHUNK_SAMPLES = 32768
# Timestamp jumps larger than this become silence (gaps) or are dropped (overlaps).
_GAP_SECONDS = 0.02
# A stream that stops this much before where it claims to end is reported as truncated.
_TRUNCATION_SECONDS = 0.5


def frame_to_mono(frame: "av.AudioFrame") -> np.ndarray:
    """Mean of the channels of one decoded frame as float32, any sample format or layout."""
    fmt = frame.format
    channels = len(frame.layout.channels)
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


def _first_audio_stream(container: "av.container.InputContainer", path: str) -> "av.AudioStream":
    if not container.streams.audio:
        raise media_error(path, "no audio stream")
    stream = container.streams.audio[0]
    stream.thread_type = "AUTO"
    if not stream.codec_context.sample_rate:
        raise media_error(path, "audio stream has no sample rate")
    return stream


def _decode_mono(container, stream, path: str) -> Iterator[np.ndarray]:
    """Mono float32 chunks at the stream's rate, sample 0 at the media origin.

    A first frame that starts late is preceded by silence; samples before the origin are
    dropped; later jumps in the timestamps larger than 20 ms become silence or are dropped.
    """
    rate = stream.codec_context.sample_rate
    origin = origin_seconds(container)
    produced = 0
    pending: list[np.ndarray] = []
    pending_samples = 0
    try:
        for frame in container.decode(stream):
            if frame.sample_rate != rate:
                raise media_error(
                    path, f"audio sample rate changes mid-stream ({rate} -> {frame.sample_rate} Hz)"
                )
            mono = frame_to_mono(frame)
            if frame.time is not None:
                start = int(round((frame.time - origin) * rate))
                jump = start - produced
                if produced == 0 or abs(jump) > _GAP_SECONDS * rate:
                    if jump > 0:
                        mono = np.concatenate([np.zeros(jump, np.float32), mono])
                    elif jump < 0:
                        mono = mono[-jump:]
            produced += mono.size
            pending.append(mono)
            pending_samples += mono.size
            if pending_samples >= _CHUNK_SAMPLES:
                yield np.concatenate(pending)
                pending, pending_samples = [], 0
    except av.error.FFmpegError as exc:
        where = f" after {produced / rate:.2f} s" if produced else ""
        raise media_error(
            path, f"audio decoding failed{where} ({ffmpeg_reason(exc)}); the file is corrupt or truncated"
        ) from None
    if pending:
        yield np.concatenate(pending)


def _check_complete(container, stream, path: str, decoded_seconds: float) -> None:
    """Raise if the stream stopped well before where the file says it ends."""
    if decoded_seconds <= 0:
        raise media_error(path, "audio stream contains no decodable samples")
    expected = expected_end_seconds(container, stream)
    if expected is not None and expected - decoded_seconds > max(_TRUNCATION_SECONDS, 0.02 * expected):
        raise media_error(
            path,
            f"audio stops at {decoded_seconds:.2f} s but the file says {expected:.2f} s; "
            "it looks truncated or damaged",
        )


class _RateBuffer:
    """Streaming resampler to one rate plus a rolling buffer of its output."""

    def __init__(self, in_rate: int, out_rate: int):
        import soxr

        self.rate = out_rate
        same = in_rate == out_rate
        self._stream = None if same else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
        self._chunks: list[np.ndarray] = []
        self.start = 0  # absolute index of the first held sample
        self.end = 0  # absolute index one past the last produced sample

    def feed(self, mono: np.ndarray, last: bool = False) -> None:
        out = mono if self._stream is None else self._stream.resample_chunk(mono, last=last)
        if out.size:
            self._chunks.append(np.asarray(out, dtype=np.float32))
            self.end += out.size

    def take(self, start: int, count: int) -> np.ndarray:
        """`count` samples from absolute index `start`, zero-padded outside what is held."""
        out = np.zeros(count, np.float32)
        if not self._chunks:
            return out
        held = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [held]
        lo, hi = max(start, self.start), min(start + count, self.end)
        if hi > lo:
            out[lo - start : hi - start] = held[lo - self.start : hi - self.start]
        return out

    def drop_before(self, index: int) -> None:
        """Forget samples before absolute `index` (no window still needs them)."""
        index = min(index, self.end)
        if index <= self.start:
            return
        held = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        cut = index - self.start
        self._chunks = [held[cut:]] if held.size > cut else []
        self.start = index


def _check_windows(windows: Sequence[Window], sample_rates: Sequence[int], window_seconds: float) -> None:
    if not window_seconds > 0:
        raise UsageError(f"window length must be positive, got {window_seconds}")
    if not sample_rates or any(int(sr) != sr or sr <= 0 for sr in sample_rates):
        raise UsageError(f"sample rates must be positive integers, got {list(sample_rates)}")
    starts = [w.start_seconds for w in windows]
    if any(b < a for a, b in zip(starts, starts[1:])):
        raise UsageError("windows must be given in order of their start time")


def iter_window_audio(
    path: PathLike, windows: Sequence[Window], sample_rates: Sequence[int], window_seconds: float
) -> Iterator[dict[int, np.ndarray]]:
    """Per window (in order): {rate: float32 mono samples}, round(window_seconds*rate) each.

    Samples start at round(start_seconds*rate); windows may overlap; the last ones are
    zero-padded where the media ends. One decode pass for all windows and rates.
    """
    name = os.fspath(path)
    rates = [int(sr) for sr in dict.fromkeys(sample_rates)]
    _check_windows(windows, rates, window_seconds)
    if not windows:
        return
    with open_media(name) as container:
        stream = _first_audio_stream(container, name)
        in_rate = stream.codec_context.sample_rate
        buffers = {sr: _RateBuffer(in_rate, sr) for sr in rates}
        chunks = _decode_mono(container, stream, name)
        decoded, finished = 0, False
        for pos, window in enumerate(windows):
            spans = {
                sr: (int(round(window.start_seconds * sr)), int(round(window_seconds * sr))) for sr in rates
            }
            while not finished and any(buffers[sr].end < a + n for sr, (a, n) in spans.items()):
                chunk = next(chunks, None)
                if chunk is None:
                    for buf in buffers.values():
                        buf.feed(np.zeros(0, np.float32), last=True)
                    finished = True
                    _check_complete(container, stream, name, decoded / in_rate)
                else:
                    decoded += chunk.size
                    for buf in buffers.values():
                        buf.feed(chunk)
            yield {sr: buffers[sr].take(a, n) for sr, (a, n) in spans.items()}
            if pos + 1 < len(windows):
                nxt = windows[pos + 1].start_seconds
                for sr, buf in buffers.items():
                    buf.drop_before(int(round(nxt * sr)))


def decode_audio(path: PathLike, sample_rate: int) -> np.ndarray:
    """The whole first audio stream as mono float32 at `sample_rate` (soxr HQ, whole array)."""
    import soxr

    name = os.fspath(path)
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise UsageError(f"sample rate must be a positive integer, got {sample_rate}")
    with open_media(name) as container:
        stream = _first_audio_stream(container, name)
        in_rate = stream.codec_context.sample_rate
        chunks = list(_decode_mono(container, stream, name))
        mono = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        _check_complete(container, stream, name, mono.size / in_rate)
    if in_rate == sample_rate:
        return mono
    return soxr.resample(mono, in_rate, int(sample_rate), quality="HQ").astype(np.float32, copy=False)
