"""The audio decoder's timeline: samples placed by timestamp, and per-rate rolling buffers.

`Timeline` places mono frames on the media timeline (sample 0 at the origin), filling holes
with silence (recorded in a `GapLog` when given) and dropping overlaps; `RateBuffer` resamples
the result to one target rate with a streaming soxr resampler and keeps only the samples that
windows still to come can use.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np

from mvrt.runtime._video_targets import GapLog
from mvrt.runtime.probe import expected_end_seconds, origin_seconds

_log = logging.getLogger(__name__)

# Decoded frames are batched into chunks of about this many samples before resampling.
CHUNK_SAMPLES = 32768
# Timestamp jumps larger than this become silence (gaps) or are dropped (overlaps).
_GAP_SECONDS = 0.02
# Silence inserted for a hole at least this long is reported as a gap.
REPORTED_GAP_SECONDS = 0.1
# A stream that stops this much before where it claims to end is reported as truncated.
TRUNCATION_SECONDS = 0.5
# A forward jump in the timestamps longer than this (or past the stream's end) is damage, not a gap.
_MAX_GAP_SECONDS = 60.0


class Timeline:
    """Mono frames placed by their timestamps, sample 0 at the media origin, in chunks.

    A first frame that starts late is preceded by silence; samples before the origin are
    dropped; later jumps in the timestamps larger than 20 ms (e.g. where an undecodable
    packet was skipped) become silence or are dropped. A jump longer than _MAX_GAP_SECONDS
    or past where the stream ends is a damaged timestamp: ignored (the samples follow on).
    """

    def __init__(
        self,
        container,
        stream,
        path: str,
        *,
        origin: float | None = None,
        chunk_samples: int = CHUNK_SAMPLES,
        live: bool = False,
        gaps: GapLog | None = None,
    ):
        self.rate, self.path = stream.codec_context.sample_rate, path
        self.origin = origin_seconds(container) if origin is None else origin
        self.chunk_samples, self.gaps = chunk_samples, gaps
        expected = None if live else expected_end_seconds(container, stream)
        slack = None if expected is None else max(TRUNCATION_SECONDS, 0.02 * expected)
        self.end_limit = None if expected is None else int((expected + slack) * self.rate)
        self.produced = 0  # samples placed so far
        self.pending: list[np.ndarray] = []
        self.pending_samples = 0
        self.ignored = 0  # damaged timestamps

    def add(self, mono: np.ndarray, time: float | None) -> Iterator[np.ndarray]:
        """Place one frame's samples; yields the chunks completed."""
        if time is not None:
            start = int(round((time - self.origin) * self.rate))
            jump = start - self.produced
            if self.produced == 0 or abs(jump) > _GAP_SECONDS * self.rate:
                if jump > 0 and self._plausible(start):
                    if self.gaps is not None and self.produced and jump >= REPORTED_GAP_SECONDS * self.rate:
                        self.gaps.add(self.produced / self.rate, start / self.rate)
                    while jump > self.chunk_samples:  # a long gap: silence one chunk at a time
                        yield from self._append(np.zeros(self.chunk_samples, np.float32))
                        jump -= self.chunk_samples
                    mono = np.concatenate([np.zeros(jump, np.float32), mono])
                elif jump < 0:
                    mono = mono[-jump:]
        yield from self._append(mono)

    def _plausible(self, start: int) -> bool:
        limit = self.produced + int(_MAX_GAP_SECONDS * self.rate)
        if self.end_limit is not None:
            limit = min(limit, self.end_limit)
        if start <= limit:
            return True
        if not self.ignored:
            _log.warning(
                "%s: an audio timestamp jumps from %.2f s to %.2f s (past the stream's end or %g s on); "
                "ignored as damaged", self.path, self.produced / self.rate, start / self.rate, _MAX_GAP_SECONDS,
            )
        self.ignored += 1
        return False

    def _append(self, mono: np.ndarray) -> Iterator[np.ndarray]:
        self.produced += mono.size
        self.pending.append(mono)
        self.pending_samples += mono.size
        if self.pending_samples >= self.chunk_samples:
            yield np.concatenate(self.pending)
            self.pending, self.pending_samples = [], 0

    def rest(self) -> Iterator[np.ndarray]:
        if self.pending:
            yield np.concatenate(self.pending)


class RateBuffer:
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
        if index <= self.start or not self._chunks:
            return
        # One chunk is cut as a view (no copy per window, however densely they overlap).
        held = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        cut = index - self.start
        self._chunks = [held[cut:]] if held.size > cut else []
        self.start = index


