"""One-line MediaErrors for media problems, and the read-timeout setting they mention."""

from __future__ import annotations

import math
import numbers
import os
import re

import av

from mvrt.errors import MediaError, UsageError

PathLike = str | os.PathLike


def one_line(text: str) -> str:
    """Collapse whitespace so that a message stays on one line."""
    return re.sub(r"\s+", " ", str(text)).strip()


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's own description of an error, without errno noise or the file name."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return one_line(reason)


def media_error(path: PathLike, problem: str) -> MediaError:
    return MediaError(one_line(f"{os.fspath(path)}: {problem}"))


def check_read_timeout(value: float | None) -> float | None:
    """`read_timeout_seconds` as a float, or None (wait for ever); anything else is a UsageError."""
    if value is None:
        return None
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise UsageError(
            "read_timeout_seconds must be a positive number of seconds, or None to wait for ever; "
            f"got {value!r}"
        )
    return float(value)


def stall_problem(timeout_seconds: float) -> str:
    return f"no data for {timeout_seconds:g} s (read_timeout_seconds={timeout_seconds:g}); the source stalled"


def read_error(path: PathLike, exc: BaseException, problem: str, timeout_seconds: float | None) -> MediaError:
    """The MediaError for a failed read: a stall when FFmpeg's interrupt callback fired, else `problem`."""
    if isinstance(exc, av.error.ExitError) and timeout_seconds is not None:
        return media_error(path, stall_problem(timeout_seconds))
    return media_error(path, problem)
