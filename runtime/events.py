"""The events a run emits besides window results: inputs starting and ending, sources' states.

`SourceEvent` is the jsonl `{"type": "source", ...}` record of DESIGN §9: a live source was
`connected`, is `reconnecting` (after an end or an error, with `--reconnect`), has `ended`,
or was `lost` (an error and no reconnection). Events of a pair of files (`inputs.MediaPair`)
carry the video file as `path` and the audio file as `audio_path`; `input_key` tells inputs apart.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import numpy as np

from mvrt.errors import MvrtError
from mvrt.runtime.windows import Window

SOURCE_STATES = ("connected", "reconnecting", "ended", "lost")


def utc_now() -> str:
    """ISO 8601 UTC, millisecond precision: 2026-12-01T22:40:05.123Z."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class SourceEvent:
    """What happened to a live source; `detail` holds the state's own fields."""

    path: str
    state: str
    wall_time: str = field(default_factory=utc_now)
    detail: dict = field(default_factory=dict)
    # The error of a `lost` source (its message is detail["error"]); not part of `to_dict`.
    exception: Exception | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"type": "source", "path": self.path, "state": self.state, "wall_time": self.wall_time, **self.detail}


@dataclass(frozen=True)
class FileStarted:
    """An input was opened: how many windows it will yield (None: a live source, no end known)."""

    path: str
    windows: int | None
    audio_path: str | None = None  # the separate audio file of a pair (`inputs.MediaPair`)


@dataclass(frozen=True)
class FileDone:
    """The end of one input: its error (None when it succeeded) and what its decoders skipped."""

    path: str
    error: MvrtError | None = None
    undecodable_packets: int = 0
    audio_path: str | None = None


@dataclass(frozen=True)
class WindowItem:
    """One window's network inputs on their way to the engine."""

    path: str
    window: Window
    feeds: dict[str, np.ndarray] = field(repr=False)
    ready_monotonic: float | None = None  # arrival of the last packet it needed (time.monotonic())
    gap_seconds: float = 0.0
    audio_path: str | None = None


def input_key(event) -> tuple[str, str | None]:
    """Which input an event (or result) belongs to: (path, audio_path)."""
    return event.path, event.audio_path
