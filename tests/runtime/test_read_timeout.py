"""read_timeout_seconds: a source that stops delivering data is a MediaError, not a hang.

FIFOs and a loopback TCP server (127.0.0.1 only); every wait is bounded in time.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time

import numpy as np
import pytest
from media_factory import sine, write_indexed

from mvrt.errors import MediaError, UsageError
from mvrt.runtime.decode import iter_window_audio, iter_window_frames, probe
from mvrt.runtime.windows import Window

TIMEOUT = 1.0
SLACK_SECONDS = 1.5  # a stall must be reported within TIMEOUT + this
WINDOWS = [Window(0, 0.0, 1.0, 1.0), Window(1, 1.0, 1.0, 1.0)]
READS = {
    "probe": lambda src, **kw: probe(src, **kw),
    "audio": lambda src, **kw: list(iter_window_audio(src, WINDOWS, [8000], 1.0, **kw)),
    "video": lambda src, **kw: list(iter_window_frames(src, WINDOWS, frames=8, size=16, **kw)),
}


@pytest.fixture(scope="module")
def clip_ts(tmp_path_factory):
    """A 2 s MPEG-TS clip (readable without seeking)."""
    root = tmp_path_factory.mktemp("stall")
    return write_indexed(root / "clip.ts", count=40, audio=sine(2.0, 48000, [0.3, 0.3]), sample_rate=48000)


def _stall_message(source) -> str:
    return f"{source}: no data for 1 s (read_timeout_seconds=1); the source stalled"


def _timed(call, bound_seconds: float):
    """Run `call()` in a thread; (its exception or None, elapsed seconds, still running)."""
    result: dict = {}

    def target():
        try:
            call()
        except BaseException as exc:  # handed to the test
            result["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound_seconds)
    return result.get("error"), time.monotonic() - started, thread.is_alive()


def _assert_stalled(call, source) -> None:
    error, elapsed, running = _timed(call, TIMEOUT + SLACK_SECONDS + 3)
    assert not running, "the read did not give up"
    assert isinstance(error, MediaError) and str(error) == _stall_message(source), repr(error)
    assert TIMEOUT - 0.05 <= elapsed <= TIMEOUT + SLACK_SECONDS


def _open_writer(fifo, deadline: float) -> int | None:
    """Open `fifo` for writing once a reader has it open (None at the deadline)."""
    while time.monotonic() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            time.sleep(0.01)
            continue
        os.set_blocking(fd, True)
        return fd
    return None


def _feed_fifo(fifo, data: bytes, hold: threading.Event | None) -> threading.Thread:
    """A writer thread: `data` into `fifo`, then close it, or keep it open until `hold` is set."""

    def write():
        fd = _open_writer(fifo, time.monotonic() + 10)
        if fd is None:
            return
        try:
            os.write(fd, data)
            if hold is not None:
                hold.wait(10)
        except BrokenPipeError:  # the reader gave up
            pass
        finally:
            os.close(fd)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _release_fifo(fifo) -> None:
    """Unblock a reader stuck in open(2) on `fifo` (code that does not poll)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


@pytest.mark.parametrize("read", sorted(READS))
def test_a_fifo_nobody_writes_stalls(tmp_path, read):
    fifo = tmp_path / "nobody.ts"
    os.mkfifo(fifo)
    try:
        _assert_stalled(lambda: READS[read](fifo, read_timeout_seconds=TIMEOUT), fifo)
    finally:
        _release_fifo(fifo)


def test_a_fifo_that_stops_mid_stream_stalls(tmp_path, clip_ts):
    fifo = tmp_path / "stops.ts"
    os.mkfifo(fifo)
    hold = threading.Event()
    writer = _feed_fifo(fifo, clip_ts.read_bytes()[:20_000], hold)
    try:
        _assert_stalled(lambda: READS["video"](fifo, read_timeout_seconds=TIMEOUT), fifo)
    finally:
        hold.set()
        _release_fifo(fifo)
        writer.join(5)
    assert not writer.is_alive()


def test_a_fifo_that_delivers_the_whole_stream_decodes_like_the_file(tmp_path, clip_ts):
    for read in ("audio", "video"):
        fifo = tmp_path / f"whole_{read}.ts"
        os.mkfifo(fifo)
        writer = _feed_fifo(fifo, clip_ts.read_bytes(), None)
        got = READS[read](fifo, read_timeout_seconds=5)
        writer.join(5)
        assert not writer.is_alive()
        want = READS[read](clip_ts)
        for a, b in zip(got, want, strict=True):
            if read == "audio":
                np.testing.assert_array_equal(a[8000], b[8000])
            else:
                np.testing.assert_array_equal(a, b)


class _Server:
    """A loopback TCP server for one client: sends `data`, then holds (stalls) or closes."""

    def __init__(self, data: bytes, stall: bool):
        self.data, self.stall = data, stall
        self.release = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(10)
        self.url = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            client, _ = self.sock.accept()
        except OSError:  # no client within 10 s, or closed
            return
        with client:
            try:
                client.sendall(self.data)
                if self.stall:
                    self.release.wait(10)
            except OSError:  # the client went away
                pass

    def close(self) -> None:
        self.release.set()
        self.thread.join(12)
        self.sock.close()


@pytest.mark.parametrize("read", ["probe", "video"])
def test_a_tcp_source_that_stalls(clip_ts, read):
    server = _Server(clip_ts.read_bytes()[:3000], stall=True)  # a few packets of real MPEG-TS
    try:
        _assert_stalled(lambda: READS[read](server.url, read_timeout_seconds=TIMEOUT), server.url)
    finally:
        server.close()
    assert not server.thread.is_alive()


def test_a_tcp_source_that_delivers_the_whole_stream_decodes(clip_ts):
    server = _Server(clip_ts.read_bytes(), stall=False)
    try:
        error, _, running = _timed(lambda: READS["audio"](server.url, read_timeout_seconds=5), 15)
    finally:
        server.close()
    assert not running and error is None, repr(error)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "2", True])
def test_the_timeout_must_be_a_positive_number(clip_ts, bad):
    for read in READS.values():
        with pytest.raises(UsageError, match="read_timeout_seconds must be a positive number"):
            read(clip_ts, read_timeout_seconds=bad)


def test_no_timeout_waits_for_ever_and_still_reads_files(clip_ts):
    assert probe(clip_ts, read_timeout_seconds=None).has_video
    (window, _) = READS["video"](clip_ts, read_timeout_seconds=None)
    assert window.shape == (8, 16, 16, 3)
