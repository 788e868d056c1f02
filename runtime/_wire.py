"""Framing between the pipeline and its decode worker process: JSON headers and raw arrays, no pickle.

Every frame is an 8-byte little-endian length and that many bytes. A message is one JSON frame,
followed, for a window, by one raw frame per array it announces. The reader bounds every
length before it reads, so a worker that went wrong cannot make the parent allocate at will.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import BinaryIO

import numpy as np

_LENGTH = struct.Struct("<Q")
MAX_JSON_BYTES = 1 << 20


class WireError(Exception):
    """The other side sent something malformed, went away, or went silent."""


def send_json(out: BinaryIO, message: dict) -> None:
    _send(out, json.dumps(message, separators=(",", ":")).encode("utf-8"))


def send_array(out: BinaryIO, array: np.ndarray) -> None:
    _send(out, memoryview(np.ascontiguousarray(array)).cast("B"))


def _send(out: BinaryIO, payload) -> None:
    out.write(_LENGTH.pack(len(payload)))
    out.write(payload)
    out.flush()


class FrameReader:
    """Reads frames from a pipe's file descriptor, each read bounded by a stall deadline."""

    def __init__(self, fd: int, stall_seconds: float | None):
        self.fd, self.stall_seconds = fd, stall_seconds

    def json(self) -> dict:
        length = self._length(MAX_JSON_BYTES)
        data = self._read(length)
        try:
            message = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WireError(f"malformed message ({exc})") from None
        if not isinstance(message, dict):
            raise WireError("malformed message (not a JSON object)")
        return message

    def array(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """The next frame as an array of exactly `dtype` and `shape` (read straight into it)."""
        out = np.empty(shape, dtype)
        length = self._length(out.nbytes)
        if length != out.nbytes:
            raise WireError(f"array frame of {length} bytes, expected {out.nbytes}")
        self._read_into(memoryview(out).cast("B"))
        return out

    def _length(self, limit: int) -> int:
        (length,) = _LENGTH.unpack(self._read(_LENGTH.size))
        if length > limit:
            raise WireError(f"frame of {length} bytes exceeds the limit of {limit}")
        return length

    def _read(self, count: int) -> bytes:
        buf = bytearray(count)
        self._read_into(memoryview(buf))
        return bytes(buf)

    def _read_into(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            self._wait()
            n = os.readv(self.fd, [view[got:]])
            if n == 0:
                raise WireError("the worker closed its output")
            got += n

    def _wait(self) -> None:
        if self.stall_seconds is None:
            return
        deadline = time.monotonic() + self.stall_seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireError(f"no progress for {self.stall_seconds:g} s")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                return
