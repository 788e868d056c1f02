"""Result records of inference: one per window, one per video."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, C) logits, float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


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

    def __repr__(self) -> str:
        return (
            f"WindowResult(path={self.path!r}, index={self.index}, start_seconds={self.start_seconds:.2f}, "
            f"end_seconds={self.end_seconds:.2f}, label={self.label!r}, probabilities=<{self.probabilities.shape}>)"
        )

    def to_dict(self) -> dict:
        return {
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


@dataclass(frozen=True)
class VideoResult:
    """The reading of a whole video (mean of window probabilities), or the error it hit."""

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

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def probabilities(self) -> np.ndarray:
        """Mean of the window softmax probabilities, (C,)."""
        if self.mean_probabilities is not None and not self.windows:
            return self.mean_probabilities
        if not self.windows:
            return np.full(len(self.classes), np.nan)
        return np.mean([w.probabilities for w in self.windows], axis=0)

    @property
    def count(self) -> int:
        """Windows read (kept or, for a live source, only counted)."""
        return len(self.windows) if self.window_count is None else self.window_count

    @property
    def label(self) -> str | None:
        return self.classes[int(np.argmax(self.probabilities))] if self.count and self.ok else None

    def __repr__(self) -> str:
        if not self.ok:
            return f"VideoResult(path={self.path!r}, error={self.error!r})"
        return f"VideoResult(path={self.path!r}, label={self.label!r}, windows={self.count})"

    def to_dict(self) -> dict:
        data = {"path": self.path, "ok": self.ok}
        if not self.ok:
            data["error"] = self.error
            return data
        data["label"] = self.label
        data["probabilities"] = _named(self.classes, self.probabilities)
        data["undecodable_packets"] = self.undecodable_packets
        data["window_count"] = self.count
        data["windows"] = [w.to_dict() for w in self.windows]
        return data


def _named(classes: tuple[str, ...], values: np.ndarray) -> dict[str, float]:
    return {name: round(float(v), 6) for name, v in zip(classes, values)}
