"""What an input is and how its windows are cut: files, stdin, pipes, streams, devices (DESIGN §9).

`SourceOptions` holds the per-run source settings (FFmpeg's input format and options, live
windows, reconnection, when to stop). A path names a *live* source when it is stdin (`-`), a
FIFO, a character device or a URL, when an input format is forced (a capture device), or when
`live=True`; a URL whose container states a duration (an HLS VOD playlist, a file over HTTP) is
read as a file. Live sources are cut by `live_windows`: W seconds every H from time 0, never
an end-aligned last window, and as many as `max_windows` / `duration_seconds` allow.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from mvrt.errors import UsageError
from mvrt.runtime.probe import STDIN, check_input_format
from mvrt.runtime.windows import Window, plan_windows

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Network protocols that --reconnect may reopen.
_RECONNECTABLE = ("tcp", "udp", "rtp", "rtsp", "rtsps", "rtmp", "rtmps", "srt", "http", "https", "hls")


def _freeze_options(options) -> tuple[tuple[str, str], ...]:
    if options is None:
        return ()
    items = options.items() if isinstance(options, Mapping) else options
    frozen = []
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            raise UsageError(f"input_options must map option names to values, got {item!r}") from None
        if not isinstance(key, str) or not key or key.startswith("-"):
            raise UsageError(f"input option name must be a non-empty string without a leading '-', got {key!r}")
        frozen.append((key, str(value)))
    return tuple(frozen)


def parse_input_option(text: str) -> tuple[str, str]:
    """`KEY=VALUE` (one of `input_options`, as the CLI's --input-option gives it) -> (key, value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"input_options {text!r}: expected KEY=VALUE, e.g. rtsp_transport=tcp", setting="input_options")
    return key.strip(), value


@dataclass(frozen=True)
class SourceOptions:
    """How inputs are opened and cut. Each field is one `mvrt infer` option."""

    input_format: str | None = None  # --input-format (ffmpeg -f)
    input_options: tuple[tuple[str, str], ...] = field(default=())  # --input-option KEY=VALUE
    live: bool = False  # --live: live windows even for a file
    reconnect: bool = False  # --reconnect: reopen a network source after EOF or an error
    max_windows: int | None = None  # --max-windows: stop after this many windows per input
    duration_seconds: float | None = None  # --duration: only the first SECONDS of media

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_options", _freeze_options(self.input_options))
        check_input_format(self.input_format)
        if self.max_windows is not None and (isinstance(self.max_windows, bool) or not isinstance(self.max_windows, int)
                                             or self.max_windows < 1):
            raise UsageError(f"max_windows must be a positive integer, got {self.max_windows!r}", setting="max_windows")
        duration = self.duration_seconds
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                     or not math.isfinite(duration) or duration <= 0):
            raise UsageError(f"duration_seconds must be a positive number of seconds, got {duration!r}",
                             setting="duration_seconds")

    @property
    def options(self) -> dict[str, str]:
        return dict(self.input_options)


def is_url(path: str) -> bool:
    return bool(_URL.match(path)) and not path.startswith("file://")


def is_live_path(path: str, options: SourceOptions) -> bool:
    """May `path` be a live source (a URL is one unless its container states a duration)?"""
    return is_url(path) or is_forced_live(path, options)


def is_forced_live(path: str, options: SourceOptions) -> bool:
    """Is `path` read live whatever its container says: `live`, a device, stdin, a FIFO?"""
    if options.live or options.input_format is not None and not os.path.isfile(path):
        return True
    if path == STDIN:
        return True
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def can_reconnect(path: str) -> bool:
    scheme = path.split("://", 1)[0].lower() if is_url(path) else ""
    return scheme in _RECONNECTABLE


def live_windows(
    window_seconds: float,
    hop_seconds: float | None,
    options: SourceOptions,
    *,
    first_index: int = 0,
    offset_seconds: float = 0.0,
) -> Iterator[Window]:
    """Windows of W every H seconds from `offset_seconds` (endless unless options bound them).

    `first_index` / `offset_seconds` continue the numbering and the clock of an earlier
    connection; `max_windows` and `duration_seconds` count from the start of the run.
    """
    hop = window_seconds if hop_seconds is None else hop_seconds
    if not hop > 0:
        raise UsageError(f"hop_seconds must be positive, got {hop}", setting="hop_seconds")
    index = first_index
    while options.max_windows is None or index < options.max_windows:
        start = offset_seconds + (index - first_index) * hop
        if options.duration_seconds is not None and start + window_seconds > options.duration_seconds + 1e-9:
            return
        yield Window(index, float(start), window_seconds, window_seconds)
        index += 1


def file_windows_for(
    duration_seconds: float, window_seconds: float, hop_seconds: float | None, options: SourceOptions
) -> list[Window]:
    """A file's windows (`plan_windows`), limited by `duration_seconds` and `max_windows`."""
    if options.duration_seconds is not None and duration_seconds > 0:
        duration_seconds = min(duration_seconds, options.duration_seconds)
    windows = plan_windows(duration_seconds, window_seconds, hop_seconds)
    return windows if options.max_windows is None else windows[: options.max_windows]
