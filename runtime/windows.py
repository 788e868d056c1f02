"""Where windows fall in a video and which instants each one samples (DESIGN §4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvrt.errors import UsageError

# Windows whose end falls within this many seconds past the media end still count as full.
_EPS_SECONDS = 1e-3


@dataclass(frozen=True)
class Window:
    """One analysis window of a media file.

    `start_seconds` is where the window's audio begins; `span_seconds` is the stretch of
    real media it covers (shorter than the nominal window only for media shorter than it).
    """

    index: int
    start_seconds: float
    window_seconds: float
    span_seconds: float

    @property
    def end_seconds(self) -> float:
        return self.start_seconds + self.span_seconds

    def frame_times(self, frames: int) -> np.ndarray:
        """Target instants t_k = start + (k + 0.5) * span / frames, float64 seconds."""
        k = np.arange(frames, dtype=np.float64)
        return self.start_seconds + (k + 0.5) * self.span_seconds / frames


def plan_windows(duration_seconds: float, window_seconds: float, hop_seconds: float | None = None) -> list[Window]:
    """Windows of `window_seconds` every `hop_seconds` (default: no overlap).

    Media shorter than a window get one window spanning their real duration. Otherwise
    windows start at 0, H, 2H, ... while they fit; if the last one ends before the media
    does, one more window is aligned to the media end so that every second is covered.
    """
    hop = window_seconds if hop_seconds is None else hop_seconds
    if not window_seconds > 0:
        raise UsageError(f"window_seconds must be positive, got {window_seconds}", setting="window_seconds")
    if not hop > 0:
        raise UsageError(f"hop_seconds must be positive, got {hop}", setting="hop_seconds")
    if not duration_seconds > 0:
        return [Window(0, 0.0, window_seconds, window_seconds)]
    if duration_seconds <= window_seconds + _EPS_SECONDS:
        return [Window(0, 0.0, window_seconds, min(duration_seconds, window_seconds))]
    count = int(np.floor((duration_seconds - window_seconds + _EPS_SECONDS) / hop)) + 1
    starts = [i * hop for i in range(count)]
    if starts[-1] + window_seconds < duration_seconds - _EPS_SECONDS:
        starts.append(duration_seconds - window_seconds)
    return [Window(i, float(s), window_seconds, window_seconds) for i, s in enumerate(starts)]


def slow_indices(fast_frames: int, slow_frames: int) -> np.ndarray:
    """Fast-pathway frame indices the slow pathway takes: round(linspace(0, F-1, S))."""
    return np.round(np.linspace(0, fast_frames - 1, slow_frames)).astype(np.int64)
