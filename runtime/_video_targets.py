"""The video decoder's bookkeeping: target instants of windows given one by one, their frames.

`Targets` merges the target instants of a sequence of windows, which may be endless (a live
source): a window is added once its first target could be the next one to resolve, so the
state held is bounded by the window length, the hop and the frame rate. `WindowFrames` holds
each window's chosen images (shared between overlapping windows) until the window is complete.
`GapLog` records stretches of media that were filled in (a held frame, silence).
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import numpy as np

from mvrt.runtime.windows import Window

# Resolved targets older than this (before the upcoming one) are forgotten on live sources.
_KEEP_SECONDS = 10.0


class Targets:
    """Target instants of `windows` (given in start order), sorted, with their window and slot.

    `times`, `window` (position of the owning window) and `slot` are the targets known so
    far; `next` indexes the first unresolved one. `extend_to(t)` makes sure every target
    before `t` is known (the non-reference skip plan asks this before testing an interval).
    """

    def __init__(self, windows: Iterable[Window], frames: int, origin: float, prune: bool = False):
        self.frames, self.origin, self.prune = frames, origin, prune
        self._windows = iter(windows)
        self._pending: Window | None = next(self._windows, None)
        self.added = 0  # windows added so far
        self.times = np.zeros(0, np.float64)
        self.window = np.zeros(0, np.int64)
        self.slot = np.zeros(0, np.int64)
        self.next = 0
        self._add_due()

    @property
    def done(self) -> bool:
        self._add_due()
        return self._pending is None and self.next >= self.times.size

    @property
    def upcoming(self) -> float:
        self._add_due()
        return float(self.times[self.next])

    def window_at(self, position: int) -> int:
        return int(self.window[position])

    def extend_to(self, seconds: float) -> None:
        """Add every window with a target before `seconds` (stream timeline)."""
        while self._pending is not None and self._first_target(self._pending) < seconds:
            self._add(self._pending)

    def next_after(self, seconds: float, horizon: float) -> float:
        """The first target at or after `seconds`, resolved or not (math.inf past the last)."""
        self.extend_to(seconds + horizon)
        i = int(np.searchsorted(self.times, seconds, side="left"))
        if i < self.times.size:
            return float(self.times[i])
        return math.inf if self._pending is None else self._first_target(self._pending)

    def _first_target(self, window: Window) -> float:
        return float(window.frame_times(self.frames)[0]) + self.origin

    def _add_due(self) -> None:
        """Add windows until the next unresolved target is known to be the earliest."""
        while self._pending is not None and (
            self.next >= self.times.size or self._first_target(self._pending) <= self.times[self.next]
        ):
            self._add(self._pending)

    def _add(self, window: Window) -> None:
        times = window.frame_times(self.frames) + self.origin
        position = self.added
        self.added += 1
        self._pending = next(self._windows, None)
        if self._pending is not None and self._pending.start_seconds < window.start_seconds:
            raise ValueError("windows must be given in order of their start time")
        keep = self._kept_from()
        all_times = np.concatenate([self.times[keep:], times])
        order = np.argsort(all_times, kind="stable")
        resolved = self.next - keep  # resolved targets stay first: each is before every new one
        self.times = all_times[order]
        self.window = np.concatenate([self.window[keep:], np.full(times.size, position)])[order]
        self.slot = np.concatenate([self.slot[keep:], np.arange(times.size)])[order]
        self.next = resolved

    def _kept_from(self) -> int:
        if not self.prune or self.next == 0:
            return 0
        limit = self.times[min(self.next, self.times.size - 1)] - _KEEP_SECONDS
        return int(np.searchsorted(self.times[: self.next], limit, side="left"))


class WindowFrames:
    """Per-window slots, filled target by target and released (as arrays) in window order.

    A slot references the converted image shared by every target showing the same frame,
    so an image is held once and freed once no pending window references it; a window's
    (frames, size, size, 3) array exists only from its release on.
    """

    def __init__(self, frames: int):
        self.frames = frames
        self.slots: dict[int, list[np.ndarray | None]] = {}
        self.remaining: dict[int, int] = {}
        self.next_out = 0

    def put(self, window: int, slot: int, image: np.ndarray) -> None:
        slots = self.slots.get(window)
        if slots is None:
            slots = self.slots[window] = [None] * self.frames
            self.remaining[window] = self.frames
        slots[slot] = image
        self.remaining[window] -= 1

    def ready(self) -> Iterator[np.ndarray]:
        while self.remaining.get(self.next_out) == 0:
            del self.remaining[self.next_out]
            yield np.stack(self.slots.pop(self.next_out))
            self.next_out += 1


class GapLog:
    """Stretches of media (seconds from the origin) that were filled in, oldest first."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self.total_seconds = 0.0

    def add(self, start: float, end: float) -> None:
        if end > start:
            self.spans.append((start, end))
            self.total_seconds += end - start

    def overlap(self, start: float, end: float) -> float:
        """Seconds of [start, end) that were filled in."""
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in self.spans)

    def forget_before(self, seconds: float) -> None:
        self.spans = [(a, b) for a, b in self.spans if b > seconds]


# Frames further apart than this (and than 3 frame durations) leave a gap: the last one is held.
VIDEO_GAP_SECONDS = 0.5


class GapWatch:
    """Records, in a GapLog, the stretches where consecutive frames are unusually far apart."""

    def __init__(self, gaps: GapLog | None, origin: float, frame_seconds: float):
        self.gaps, self.origin = gaps, origin
        self.limit = max(VIDEO_GAP_SECONDS, 3 * frame_seconds)
        self.frame_seconds = frame_seconds
        self.last: float | None = None

    def frame(self, time: float) -> None:
        if self.gaps is not None and self.last is not None and time - self.last > self.limit:
            self.gaps.add(self.last + self.frame_seconds - self.origin, time - self.origin)
        self.last = time if self.last is None else max(self.last, time)


def gap_seconds(logs: Iterable[GapLog | None], start: float, end: float) -> float:
    """The largest filled-in stretch of [start, end) among the logs (audio, video)."""
    found = [log.overlap(start, end) for log in logs if log is not None]
    value = max(found, default=0.0)
    return 0.0 if value < 1e-6 or not math.isfinite(value) else value
