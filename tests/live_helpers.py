"""Pytest-side helpers for live sources: ports, clips, the live_sender.py subprocess, a reader.

What PyAV 18.1 (FFmpeg 8.1) needs to read each transport on the loopback (measured with
tests/live_sender.py, MPEG-TS of an H.264 + AAC clip, keyframe every second):

=============  ==========================================================================
transport      av.open(...) that works
=============  ==========================================================================
stdin / pipe   av.open("pipe:0", format="mpegts")  (or "pipe:FD", or a binary file object
               such as sys.stdin.buffer / Popen.stdout: same packets).
named pipe     av.open(PATH, format="mpegts")
tcp (sender    av.open("tcp://127.0.0.1:PORT", format="mpegts", timeout=(OPEN, READ))
 listens)      Connecting before the sender listens: av.error.ConnectionRefusedError at
               once -> the reader must retry (see `open_retrying`).
tcp (reader    av.open("tcp://127.0.0.1:PORT?listen=1", format="mpegts", timeout=(OPEN, READ))
 listens)      URL `listen_timeout=MS` bounds the accept (av.error.TimeoutError).
udp            av.open("udp://127.0.0.1:PORT?overrun_nonfatal=1", format="mpegts",
                       timeout=(OPEN, READ))
               Defaults (fifo_size 28672 x 188 B = 5.4 MB circular buffer, kernel buffer)
               received every packet even at --speed 0 for an 8 s clip; a circular-buffer
               overrun is av.error.OSError(EIO) ("Circular buffer overrun") unless
               overrun_nonfatal=1 (then packets are dropped silently). buffer_size was not
               needed. The reader must be bound before the sender starts: UDP has no replay.
rtsp listen    av.open("rtsp://127.0.0.1:PORT/PATH", format="rtsp",
                       options={"rtsp_flags": "listen", "listen_timeout": "SECONDS"},
                       timeout=(OPEN, READ))
               listen_timeout is REQUIRED: its default (-1) becomes tcp listen_timeout=-1000
               ms, out of range in FFmpeg 8 -> av.error.OverflowError (ERANGE) at once.
               listen_timeout=0 waits for ever; N waits N s -> av.error.TimeoutError.
               Works whether the pusher uses rtsp_transport tcp or udp; the reader needs no
               rtsp_transport. It is RTP, not MPEG-TS: audio time base 1/SAMPLE_RATE, the
               first video packet(s) have pts None, the last AAC packet may be missing.
=============  ==========================================================================

- duration: container.duration is None on every live transport (mvrt: None -> live). A
  regular .ts *file* has one.
- start_time: MPEG-TS: the muxer shifts the first DTS to 0 (avoid_negative_ts), so
  start_time is the first *PTS*: 33556 us for the test clip (video pts 0.08 s after
  B-frame delay, audio 0.0336 s); stream.start_time is set per stream. RTSP: about
  -0.01 s (RTCP sync; audio slightly negative), video start ~0.2 s.
- av.open blocks until find_stream_info is done: about 0.7 media seconds of a paced stream
  (0.7 s wall at --speed 1). probesize=32 + analyzeduration=0 returns at once but leaves
  audio start_time None. fflags=nobuffer LOSES the probed packets (79 of 100 video) - avoid.
- Latency: the mpegts demuxer hands over a stream's PES only when the next one starts, so
  each stream's last packet surfaces only at EOF or at the read error (a stall's final video
  packets "arrive" at the timeout). The sender's muxer runs with flush_packets=1 and
  pes_payload_size=0 (otherwise ~2 AAC frames wait in the muxer for more audio).
- End of stream: pipe, FIFO, tcp (both ways) and rtsp-over-tcp end the demux loop cleanly
  (StopIteration, no exception) both when the sender closes and when it is SIGKILLed. UDP
  never ends: only a timeout ends it.
- Timeouts: PyAV timeout=(open, read) seconds (interrupt callback; error is
  av.error.ExitError "Immediate exit requested", NOT TimeoutError):
    * interrupts a blocked tcp read/accept, udp read, rtsp listen and rtsp read: yes.
      tcp read: error ~READ s after the last packet; rtsp read: ~2x READ.
    * udp open with no sender: fails after ~2x OPEN (open_input and find_stream_info each
      get the open timeout).
    * does NOT interrupt a pipe or FIFO read (blocking read(2)), nor open() of a FIFO with
      no writer (blocks in the kernel for ever). mvrt needs its own watchdog for those.
  URL/protocol options instead: tcp `timeout=US` -> av.error.TimeoutError (ETIMEDOUT) ~1x;
  udp `timeout=US` -> av.error.OSError (EIO) after 1.4x-7x the value (inexact); rtsp
  `timeout` (socket timeout, us) did NOT end a stalled listen-mode session.
- MPEG-TS wrap: the muxer writes PTS mod 2^33 (raw PES PTS go back to ~0 at 95443.7176 s).
  libavformat's correct_ts_overflow (default on) unwraps ONE wrap for the reader: first
  timestamp within 60 s of the wrap -> readers see negative times rising through 0
  (start_time < 0); earlier -> times continue past 95443.7 s. Pass
  options={"correct_ts_overflow": "0"} to see the raw jump back to ~0.
- UDP to a port nobody is bound to: the sender runs to completion (unconnected socket).
- Writing (live_sender.py): PyAV opens an output's AVIO lazily at the first mux, holding the
  GIL, with no options (URL options must be in the URL); so the sender does FIFO open /
  accept / connect itself in Python and gives FFmpeg "pipe:FD".
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

SENDER = Path(__file__).with_name("live_sender.py")
UDP_OPTIONS = {"overrun_nonfatal": "1"}
RTSP_LISTEN_OPTIONS = {"rtsp_flags": "listen", "listen_timeout": "10"}


def free_port() -> int:
    """A loopback TCP/UDP port that was free a moment ago (bind 127.0.0.1:0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_clip(path, seconds: float, fps: int = 25, size: tuple[int, int] = (160, 120), seed: int = 0) -> Path:
    """MP4 (H.264 with a keyframe every second + stereo AAC 22.05 kHz) of `seconds`.

    Moving gradient video and a modulated chord with a little noise (`seed`), like
    shared_fixtures' clips, but with a short GOP so readers joining mid-stream decode soon.
    """
    from mvrt.standin import write_clip

    rng = np.random.default_rng(seed)
    count = int(round(seconds * fps))
    width, height = size
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    phase = np.linspace(0, np.pi * seconds, count)[:, None, None, None]
    frames = 127 + 120 * np.sin(phase + 6 * x[None] + 3 * y[None] + np.array([0, 2, 4])[None, None, None])
    rate = 22050
    t = np.arange(int(round(seconds * rate))) / rate
    tone = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    audio = (0.1 * tone + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)
    return write_clip(path, np.stack([audio, audio]), rate, frames.astype(np.uint8), fps, gop=fps)


def sender_command(clip, to: str, **options) -> list[str]:
    """argv for live_sender.py: options by keyword, e.g. speed=4, stall_after=2 -> --stall-after 2."""
    argv = [sys.executable, str(SENDER), str(clip), "--to", str(to)]
    for name, value in options.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    return argv


@contextlib.contextmanager
def sender(clip, to: str, *, stop_seconds: float = 3.0, **options) -> Iterator[subprocess.Popen]:
    """Run live_sender.py (stdout piped when `to` is "stdout"); yield the Popen.

    On exit the process is terminated (SIGTERM, then SIGKILL after `stop_seconds`) and its
    JSON report is parsed into `proc.report` (None if it printed none); its whole stderr is
    in `proc.stderr_text`. stderr goes to a temporary file, so it can never fill a pipe.
    """
    options.setdefault("max_seconds", 30)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(sender_command(clip, to, **options), stderr=err,
                                stdout=subprocess.PIPE if to == "stdout" else subprocess.DEVNULL)
        proc.report = None
        try:
            yield proc
        finally:
            _stop(proc, stop_seconds)
            err.seek(0)
            proc.stderr_text = err.read().decode(errors="replace")
            proc.report = _last_json(proc.stderr_text)


def _stop(proc: subprocess.Popen, stop_seconds: float) -> None:
    if proc.stdout is not None:
        proc.stdout.close()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(stop_seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(stop_seconds)


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return None


def wait_exit(proc: subprocess.Popen, seconds: float) -> int | None:
    """Wait up to `seconds` for the sender to exit on its own; its return code or None."""
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return None


@dataclass
class Received:
    """What a plain PyAV reader got: per packet (kind, pts seconds or None, arrival epoch s)."""

    streams: list[str] = field(default_factory=list)
    duration: int | None = None  # container.duration, microseconds
    start_time: int | None = None  # container.start_time, microseconds
    packets: list[tuple[str, float | None, float]] = field(default_factory=list)
    error: BaseException | None = None
    opened_at: float | None = None  # epoch seconds

    def times(self, kind: str) -> list[float]:
        """Sorted presentation times (seconds) of one stream kind."""
        return sorted(t for k, t, _ in self.packets if k == kind and t is not None)

    def count(self, kind: str) -> int:
        return sum(1 for k, _, _ in self.packets if k == kind)

    def largest_gap(self, kind: str) -> float:
        times = self.times(kind)
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def open_retrying(url: str, *, retry_seconds: float = 5.0, **kwargs):
    """av.open, retrying ConnectionRefusedError (the sender is not listening yet) for a while."""
    import av

    deadline = time.monotonic() + retry_seconds
    for _ in range(10_000):
        try:
            return av.open(url, **kwargs)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    raise TimeoutError(f"{url}: still refused after {retry_seconds} s")


def read_stream(url, *, format: str | None = None, options: dict | None = None, timeout=None,
                retry_seconds: float = 0.0, max_seconds: float = 20.0, max_packets: int = 100_000) -> Received:
    """Demux `url` (a URL or a binary file object) to the end, an error or a bound.

    Errors (timeouts included) are recorded in `error`, not raised; a blocked read is only
    bounded by `timeout` (and, for pipes/FIFOs, by the sender's own --max-seconds).
    """
    got = Received()
    deadline = time.monotonic() + max_seconds
    try:
        container = open_retrying(url, retry_seconds=retry_seconds, format=format,
                                  options=dict(options or {}), timeout=timeout)
    except Exception as error:  # noqa: BLE001 - recorded for the test to assert on
        got.error = error
        return got
    with container:
        got.opened_at = time.time()
        got.streams = [s.type for s in container.streams]
        got.duration, got.start_time = container.duration, container.start_time
        try:
            for packet in container.demux():
                if packet.size:
                    pts = None if packet.pts is None else float(packet.pts * packet.time_base)
                    got.packets.append((packet.stream.type, pts, time.time()))
                if len(got.packets) >= max_packets or time.monotonic() > deadline:
                    break
        except Exception as error:  # noqa: BLE001
            got.error = error
    return got


class Background:
    """read_stream in a daemon thread (for readers that must listen/bind before the sender)."""

    def __init__(self, *args, **kwargs):
        self._result: Received | None = None
        self._thread = threading.Thread(target=self._run, args=args, kwargs=kwargs, daemon=True)
        self._thread.start()

    def _run(self, *args, **kwargs):
        self._result = read_stream(*args, **kwargs)

    def result(self, seconds: float) -> Received:
        self._thread.join(seconds)
        if self._result is None:
            raise TimeoutError(f"the reader did not finish within {seconds} s")
        return self._result


def make_fifo(path) -> Path:
    path = Path(path)
    os.mkfifo(path)
    return path
