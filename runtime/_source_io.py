"""How a source is read: stdin, FIFOs and devices without blocking, and protocol defaults.

A FIFO or character device would block FFmpeg's file protocol inside open(2)/read(2), where no
interrupt callback reaches, so such paths (and stdin, `-`) are read here instead, through a
small non-seekable file object that polls with the read timeout.
"""

from __future__ import annotations

import math
import os
import select
import stat
import time

from mvrt.runtime._media_errors import media_error, stall_problem

# Bytes read at a time from a FIFO or character device (PyAV asks for its buffer size).
_RAW_READ_BYTES = 1 << 16


class PollingReader:
    """Raw reads of a FIFO or character device that wait at most `timeout_seconds` for data.

    Opened with O_NONBLOCK, so neither opening (a FIFO without a writer) nor reading blocks;
    `read` waits in poll(2) instead. Not seekable. After a stall or a read error it reports
    end of data, so that FFmpeg stops asking while PyAV re-raises the first error.
    """

    def __init__(self, path: str, timeout_seconds: float | None, fd: int | None = None):
        self.name, self._timeout = path, timeout_seconds
        if fd is None:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        else:  # an inherited descriptor (stdin): made non-blocking here
            os.set_blocking(fd, False)
        self._fd = fd
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN | select.POLLPRI)
        self._failed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        if self._failed or self._fd < 0:
            return b""
        count = size if 0 < size <= _RAW_READ_BYTES else _RAW_READ_BYTES
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:  # ends with data, end of data, or at the deadline
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self._failed = True
                raise media_error(self.name, stall_problem(self._timeout))
            if not self._poll.poll(None if left is None else max(1, math.ceil(left * 1000))):
                continue  # the deadline check above raises
            try:
                return os.read(self._fd, count)  # b"": the writer closed (end of data)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                self._failed = True
                raise media_error(self.name, f"reading failed ({exc.strerror or exc})") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _is_stream_device(name: str) -> bool:
    """A FIFO or character device (FFmpeg's file protocol would block on it)."""
    try:
        mode = os.stat(name).st_mode
    except (OSError, ValueError):
        return False  # a URL, or nothing there (av.open reports it)
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


STDIN = "-"


def reader_for(name: str, timeout: float | None) -> "PollingReader | None":
    """A polling reader for stdin (`-`), a FIFO or a character device; None for files and URLs."""
    if name == STDIN:
        if os.isatty(0):
            raise media_error(name, "stdin is a terminal; pipe media into mvrt (e.g. cat clip.ts | mvrt infer -)")
        if stat.S_ISREG(os.fstat(0).st_mode):  # `< clip.mp4`: a seekable file
            return None
        return PollingReader("/dev/stdin", timeout, fd=os.dup(0))
    return PollingReader(name, timeout) if _is_stream_device(name) else None


# How long an RTSP listener waits for a pusher when no read timeout is set (FFmpeg's own default,
# -1 for ever, fails with ERANGE in this build once an interrupt callback is installed).
_RTSP_LISTEN_FOREVER_SECONDS = 10**6


def with_defaults(name: str, options: dict[str, str] | None, timeout: float | None) -> dict[str, str]:
    """The FFmpeg input options, plus the defaults a protocol needs here.

    An RTSP listener (`rtsp_flags=listen`) waits for its pusher `listen_timeout` seconds: the
    read timeout unless given (FFmpeg's default fails to open at all under PyAV's timeout).
    """
    merged = dict(options or {})
    listening = "listen" in merged.get("rtsp_flags", "").split("+")
    if name.lower().startswith("rtsp") and listening and "listen_timeout" not in merged:
        merged["listen_timeout"] = str(_RTSP_LISTEN_FOREVER_SECONDS if timeout is None else math.ceil(timeout))
    return merged


def target_of(name: str) -> str:
    return "/dev/stdin" if name == STDIN else name
