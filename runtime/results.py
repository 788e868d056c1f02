"""Result records of inference: one per window, one per video.

The whole-video reading weights each window by the media time it covers (`window_weights`):
the timeline is cut at every window start and end, each piece's length is shared equally by
the windows covering it, and a window's weight is the sum of its shares, so every second of
media counts once: the end-aligned last window (README "Windows") does not count its overlap
with the previous window twice. With windows that do not overlap (hop = W, no end-aligned
one) the weights are equal and the reading is exactly the plain mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, C) logits, float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def window_weights(starts_seconds, ends_seconds) -> np.ndarray:
    """Seconds of media each window stands for, (N,) float64; they sum to the time covered.

    Every stretch between consecutive window boundaries is shared equally by the windows that
    cover it (a stretch no window covers counts for none). O(N log N).
    """
    starts = np.asarray(starts_seconds, dtype=np.float64)
    ends = np.asarray(ends_seconds, dtype=np.float64)
    if starts.size == 0:
        return np.zeros(0)
    cuts = np.unique(np.concatenate([starts, ends]))  # sorted boundaries
    lengths = np.diff(cuts)
    middles = cuts[:-1] + lengths / 2
    covering = (np.searchsorted(np.sort(starts), middles, side="right")
                - np.searchsorted(np.sort(ends), middles, side="right"))  # windows over each stretch
    shares = np.divide(lengths, covering, out=np.zeros_like(lengths), where=covering > 0)
    total = np.concatenate([[0.0], np.cumsum(shares)])  # share from cuts[0] up to each boundary
    return total[np.searchsorted(cuts, ends)] - total[np.searchsorted(cuts, starts)]


def weighted_mean(probabilities: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean of (N, C) rows weighted by (N,) weights; equal weights give exactly `np.mean`."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.size and (np.all(weights == weights[0]) or not weights.sum() > 0):
        return np.mean(probabilities, axis=0)
    return weights @ probabilities / weights.sum()


def top_classes(classes: tuple[str, ...], values: np.ndarray, count: int = 3) -> str:
    """'Sad 0.62, Fear 0.21, Neutral 0.08': the `count` highest, for reprs."""
    order = np.argsort(-np.asarray(values), kind="stable")[:count]
    return ", ".join(f"{classes[i]} {float(values[i]):.2f}" for i in order)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, float64 (the paper's Fig. 11 curves)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


@dataclass(frozen=True)
class WindowResult:
    """The reading of one window: softmax probabilities, per-class sigmoids and top label."""

    path: str
    index: int
    start_seconds: float
    end_seconds: float
    logits: np.ndarray = field(repr=False)
    probabilities: np.ndarray = field(repr=False)
    sigmoids: np.ndarray = field(repr=False)
    label: str
    classes: tuple[str, ...] = field(repr=False)
    # When it was emitted (ISO 8601 UTC), and how long after its last needed packet arrived.
    wall_time: str | None = field(default=None, repr=False)
    latency_seconds: float | None = field(default=None, repr=False)
    # Seconds of the window filled in (silence, a held frame) where the media had a hole.
    gap_seconds: float = field(default=0.0, repr=False)
    # The separate audio file of a pair of files (`path` is then the video file).
    audio_path: str | None = field(default=None, repr=False)

    @property
    def by_class(self) -> dict[str, float]:
        """Softmax probability by class name."""
        return {name: float(p) for name, p in zip(self.classes, self.probabilities)}

    def __repr__(self) -> str:
        return (
            f"WindowResult(path={self.path!r}, index={self.index}, {self.start_seconds:.2f}-{self.end_seconds:.2f} s, "
            f"label={self.label!r}, top: {top_classes(self.classes, self.probabilities)})"
        )

    def to_dict(self) -> dict:
        data = {
            "type": "window",
            "path": self.path,
            "window": self.index,
            "start_seconds": round(self.start_seconds, 3),
            "end_seconds": round(self.end_seconds, 3),
            "label": self.label,
            "probabilities": _named(self.classes, self.probabilities),
            "sigmoids": _named(self.classes, self.sigmoids),
            "wall_time": self.wall_time,
            "latency_seconds": None if self.latency_seconds is None else round(self.latency_seconds, 4),
            "gap_seconds": round(self.gap_seconds, 3),
        }
        if self.audio_path is not None:
            data["audio_path"] = self.audio_path
        return data


@dataclass(frozen=True)
class VideoResult:
    """The reading of a whole video (window probabilities weighted by the time each covers), or its error.

    A live source keeps no windows, only their count and running plain mean: its windows are
    all regular and of one length, and weighting the first few (the only ones that differ)
    would need state that grows with the stream.
    """

    path: str
    windows: tuple[WindowResult, ...] = field(repr=False)
    classes: tuple[str, ...] = field(repr=False)
    error: str | None = None
    # The error itself (its class tells MediaError from ModelError, ...); None when ok.
    exception: Exception | None = field(default=None, repr=False, compare=False)
    # Packets the decoders could not decode and skipped (tolerated damage).
    undecodable_packets: int = 0
    # Live sources keep no windows (a stream may run for weeks): their count and mean instead.
    window_count: int | None = field(default=None, repr=False)
    mean_probabilities: np.ndarray | None = field(default=None, repr=False, compare=False)
    # The separate audio file of a pair of files (`path` is then the video file); None for one file.
    audio_path: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def window_weights(self) -> np.ndarray:
        """Seconds of media each kept window stands for in `probabilities`, (N,) (`window_weights`)."""
        return window_weights([w.start_seconds for w in self.windows], [w.end_seconds for w in self.windows])

    @property
    def probabilities(self) -> np.ndarray:
        """Whole-video softmax probabilities, (C,): the windows' weighted by `window_weights`."""
        if self.mean_probabilities is not None and not self.windows:
            return self.mean_probabilities
        if not self.windows:
            return np.full(len(self.classes), np.nan)
        return weighted_mean([w.probabilities for w in self.windows], self.window_weights)

    @property
    def by_class(self) -> dict[str, float]:
        """Whole-video probability by class name (NaN when no window was read)."""
        return {name: float(p) for name, p in zip(self.classes, self.probabilities)}

    @property
    def count(self) -> int:
        """Windows read (kept or, for a live source, only counted)."""
        return len(self.windows) if self.window_count is None else self.window_count

    @property
    def label(self) -> str | None:
        return self.classes[int(np.argmax(self.probabilities))] if self.count and self.ok else None

    def __repr__(self) -> str:
        audio = f", audio_path={self.audio_path!r}" if self.audio_path is not None else ""
        if not self.ok:
            return f"VideoResult(path={self.path!r}{audio}, error={self.error!r})"
        span = f" ({self.windows[0].start_seconds:.2f}-{self.windows[-1].end_seconds:.2f} s)" if self.windows else ""
        top = f", top: {top_classes(self.classes, self.probabilities)}" if self.count else ""
        return f"VideoResult(path={self.path!r}{audio}, label={self.label!r}, windows={self.count}{span}{top})"

    def to_dict(self) -> dict:
        data = {"path": self.path}
        if self.audio_path is not None:
            data["audio_path"] = self.audio_path
        data["ok"] = self.ok
        if not self.ok:
            data["error"] = self.error
            return data
        data["label"] = self.label
        data["probabilities"] = _named(self.classes, self.probabilities)
        data["undecodable_packets"] = self.undecodable_packets
        data["window_count"] = self.count
        data["windows"] = [{**w.to_dict(), "weight_seconds": round(float(weight), 6)}
                           for w, weight in zip(self.windows, self.window_weights)]
        return data


def _named(classes: tuple[str, ...], values: np.ndarray) -> dict[str, float]:
    return {name: round(float(v), 6) for name, v in zip(classes, values)}
